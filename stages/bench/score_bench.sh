#!/usr/bin/env bash
# Scores the 29 scenarios SecVecCoder reports × 100 distinct samples each on this machine, three
# ways in one run: sandbox + security oracles, sandbox only, and neither (the same tests run
# unconfined). Prints wall time, samples/s and the mean time of one test per configuration.
# Samples: the project's secure and vulnerable completions (manifests/oracle-check/), 50 of
# each per scenario, made distinct by a numbered comment so that none is de-duplicated away.
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
        comment = "#" if pid.endswith("-py") else "//"
        for i in range(100):
            text = f"\n    {comment} sample {i}" + texts[i % 2]
            out.write(json.dumps({"prompt_id": pid, "text": text}) + "\n")
PY
cargo build --release --quiet
bin=target/release/secvec
$bin run stages/bench/score.yaml --cache "$work/cache" --out "$work/out" --only scenarios >/dev/null
echo "samples: $(wc -l < "$work/samples.jsonl"), jobs: $(nproc)"
printf '%-28s %8s %10s %14s %12s\n' config wall_s samples/s mean_test_ms programs
for config in "sandbox+oracles:true:open" "sandbox:true:off" "no-sandbox:false:off"; do
  IFS=: read -r name sandbox security <<<"$config"
  start=$(date +%s.%N)
  $bin run stages/bench/score.yaml --cache "$work/cache" --out "$work/out" --force score \
    --set stages.score.params.sandbox=$sandbox --set stages.score.params.security=$security >/dev/null
  end=$(date +%s.%N)
  python3 - "$name" "$start" "$end" "$work/out/score-bench/score/judged.jsonl" <<'PY'
import json, sys
name, start, end, judged = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rows = [json.loads(l) for l in open(judged)]
n = sum(r["count"] for r in rows)
wall = end - start
mean_ms = 1000 * sum(r["seconds"] for r in rows) / len(rows)
print(f"{name:<28} {wall:8.1f} {n / wall:10.2f} {mean_ms:14.1f} {len(rows):12d}")
PY
done
