#!/usr/bin/env bash
# Scores the 29 scenarios SecVecCoder reports × 100 distinct samples each on this machine, and
# times its peer in the same run: with the security oracles, without them (`security: off`),
# and merely starting the scoring Python and importing flask, func_timeout and unittest.mock
# once per program, as many at once as there are cores. Prints wall time, samples/s, and each
# configuration's wall time over the peer's.
# Samples: the project's secure and vulnerable completions (manifests/oracle-check/), 50 of
# each per scenario, made distinct by a numbered comment so that none is de-duplicated away.
# BASELINE=path/to/an/older/secvec adds its rows to the same run (side by side; its own
# secvec-parse beside it), e.g. a build of an earlier commit. RUNS=N times every configuration N
# times, taking them in turn, so that a drift of the machine falls on each alike.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
export SECVEC_DATA="${SECVEC_DATA:-$(cd .. && pwd)/shared/data}"
work=bench-work/score
mkdir -p "$work"
python3 - "$work/samples.jsonl" <<'PY'
import json, sys
pairs = {}
for kind in ("secure", "vulnerable"):
    for line in open(f"manifests/oracle-check/{kind}.jsonl"):
        s = json.loads(line)
        pairs.setdefault(s["prompt_id"], []).append(s["text"])
with open(sys.argv[1], "w") as out:
    for pid, texts in sorted(pairs.items()):
        for i in range(100):
            text = texts[i % 2]
            if pid.endswith("-py"):
                text = f"\n    # sample {i}" + text
            else:
                # After the completion's first line, which may continue a call of the prefix.
                first, rest = text.split("\n", 1)
                text = f"{first}\n    // sample {i}\n{rest}"
            out.write(json.dumps({"prompt_id": pid, "text": text}) + "\n")
PY
cargo build --release --quiet --bin secvec --bin secvec-parse
bin=target/release/secvec
$bin run stages/bench/score.yaml --cache "$work/cache" --out "$work/out" --only scenarios >/dev/null
echo "samples: $(wc -l < "$work/samples.jsonl"), jobs: $(nproc)"
printf '%-28s %8s %10s %12s\n' config wall_s samples/s programs
# The peer: a fresh interpreter and the tests' imports per program, nothing else.
n=$(wc -l < "$work/samples.jsonl")
start=$(date +%s.%N)
seq "$n" | xargs -P "$(nproc)" -n 50 sh -c 'for _ in "$@"; do python3 -c "import flask, func_timeout, unittest.mock"; done' _
end=$(date +%s.%N)
peer=$(echo "$end - $start" | bc)
printf '%-28s %8.1f %10.2f %12d\n' "peer: python + imports" "$peer" "$(echo "$n / $peer" | bc -l)" "$n"
configs=("sandbox+oracles:open:$bin" "sandbox:off:$bin")
if [ -n "${BASELINE:-}" ]; then
  configs+=("baseline sandbox+oracles:open:$BASELINE" "baseline sandbox:off:$BASELINE")
fi
for _ in $(seq "${RUNS:-1}"); do
  for config in "${configs[@]}"; do
    IFS=: read -r name security binary <<<"$config"
    start=$(date +%s.%N)
    SECVEC_HOME="$PWD" $binary run stages/bench/score.yaml --cache "$work/cache" --out "$work/out" --force score \
      --set stages.score.params.security=$security >/dev/null
    end=$(date +%s.%N)
    python3 - "$name" "$start" "$end" "$work/out/score-bench/score/judged.jsonl" "$peer" <<'PY'
import json, sys
name, start, end, judged, peer = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
rows = [json.loads(l) for l in open(judged)]
n = sum(r["count"] for r in rows)
wall = end - start
functional = sum(r["count"] for r in rows if r["functional"])
print(f"{name:<28} {wall:8.1f} {n / wall:10.2f} {len(rows):12d}  ({wall / peer:.2f}x the peer; {functional} functional)")
PY
  done
done
