#!/usr/bin/env bash
# The Slurm executor against local execution, on the one-node cluster of scripts/slurm-up.sh:
#  1. scheduling overhead per stage: STAGES independent `pair` stages run on each executor; a
#     stage's overhead is the executor's time for it (`finished.seconds` of `run --json`) minus
#     the stage's own run time (its provenance's `seconds`): submit, queue, start, and noticing
#     the result on Slurm; thread hand-off and commit bookkeeping locally;
#  2. the quickstart's wall time, local then Slurm, each into a fresh cache;
#  3. an all-cached rerun of PAIRS pair+report stages (2 x PAIRS) with `--executor slurm` against
#     local (median of REPS), checking that nothing was submitted.
# Usage: engine/bench/slurm_vs_local.sh [STAGES] [PAIRS] [REPS]. Needs root for the cluster.
set -euo pipefail
stages=${1:-20}
pairs=${2:-500}
reps=${3:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
work="$root/bench-work/slurm"
rm -rf "$work" && mkdir -p "$work"
source "$root/scripts/env.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
secvec="$root/target/release/secvec"
eval "$("$root/scripts/slurm-up.sh")"
cp -r "$root/manifests/data/quickstart-pairs" "$work/data"
cd "$work"

pair_manifest() { # NAME COUNT WITH_REPORTS
  echo "name: $1"
  echo "stages:"
  for i in $(seq 1 "$2"); do
    echo "  p$i: {kind: pair, inputs: {data: {path: data}}, params: {instruction: \"$1 $i {func_name}\"}}"
    if [ "$3" = 1 ]; then
      echo "  r$i: {kind: report, inputs: {results: p$i}, params: {title: r$i, tables: [{title: t, rows: [cwe], columns: [pairs], aggregate: sum}]}}"
    fi
  done
}

overhead() { # EXECUTOR → median and mean overhead per stage, in seconds
  local name="overhead-$1"
  pair_manifest "$name" "$stages" 0 > "$name.yaml"
  "$secvec" --cache "cache-$1" --out "out-$1" run "$name.yaml" --json --executor "$1" --poll 0.2 --jobs 2 > "$name.jsonl"
  python3 - "$name.jsonl" "out-$1/$name" <<'PY'
import json, sys, statistics
events = [json.loads(l) for l in open(sys.argv[1])]
over = []
for e in events:
    if e.get("event") != "finished":
        continue
    own = json.load(open(f"{sys.argv[2]}/{e['stage']}.provenance.json"))["provenance"]["seconds"]
    over.append(e["seconds"] - own)
print(f"{statistics.median(over):.3f} {statistics.mean(over):.3f} {len(over)}")
PY
}

read -r local_med local_mean n <<< "$(overhead local)"
read -r slurm_med slurm_mean _ <<< "$(overhead slurm)"

wall() { # EXECUTOR
  local start end
  start=$(date +%s.%N)
  (cd "$root" && "$secvec" --cache "$work/qs-cache-$1" --out "$work/qs-out-$1" run manifests/quickstart.yaml --executor "$1" --poll 0.2 > "$work/qs-$1.log" 2>&1)
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.1f}')"
}
qs_local=$(wall local)
qs_slurm=$(wall slurm)

pair_manifest noop "$pairs" 1 > noop.yaml
# Filled locally (twice, so the second run stamps what the first wrote within the clock's tick).
"$secvec" --cache cache-noop --out out-noop run noop.yaml > noop-fill.log 2>&1
"$secvec" --cache cache-noop --out out-noop run noop.yaml > /dev/null 2>&1
submitted=$(ls cache-noop/jobs | wc -l)
median() { # COMMAND… → median wall seconds of REPS runs
  python3 - "$reps" "$@" <<'PY'
import subprocess, sys, time, statistics
reps, cmd = int(sys.argv[1]), sys.argv[2:]
times = []
for _ in range(reps):
    t = time.perf_counter(); subprocess.run(cmd, check=True, capture_output=True); times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.3f}")
PY
}
noop_slurm=$(median "$secvec" --cache cache-noop --out out-noop run noop.yaml --executor slurm)
noop_local=$(median "$secvec" --cache cache-noop --out out-noop run noop.yaml)
after=$(ls cache-noop/jobs | wc -l)

echo "| what | local | Slurm (one node) |"
echo "|---|---|---|"
echo "| overhead per stage, median (mean) over $n \`pair\` stages | ${local_med} s (${local_mean} s) | ${slurm_med} s (${slurm_mean} s) |"
echo "| quickstart wall time, fresh cache | ${qs_local} s | ${qs_slurm} s |"
echo "| all-cached rerun of $((2 * pairs)) stages, median of $reps | ${noop_local} s | ${noop_slurm} s (jobs submitted: $((after - submitted))) |"
