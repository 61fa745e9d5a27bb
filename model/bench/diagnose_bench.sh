#!/usr/bin/env bash
# Task-vector diagnostics (cosine from the factors, sign agreement streamed module by module) on
# two random adapters of a 7B model's shape (28 layers, 7 target modules each), at ranks 16 and
# 32: wall time and peak RSS. Run from the repo root after scripts/setup.sh:
#   model/bench/diagnose_bench.sh
# The adapters are written once under bench-work/diagnose/ (about 0.3 and 0.6 GB per pair).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
cargo build --release --quiet --example diagnose_bench -p secvec-model
work="$root/bench-work/diagnose"
echo "| rank | modules | load both (s) | diagnose (s) | peak RSS (MB) |"
echo "|---|---|---|---|---|"
for r in 16 32; do
  # The first call writes the adapters; the second is the measurement.
  target/release/examples/diagnose_bench "$r" "$work/r$r" > /dev/null
  out=$(/usr/bin/time -v -o "$work/time" target/release/examples/diagnose_bench "$r" "$work/r$r")
  rss=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print int($2/1024)}' "$work/time")
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"| {d['rank']} | {d['modules']} | {d['load_s']:.2f} | {d['diagnose_s']:.2f} | {sys.argv[2]} |\")" "$out" "$rss"
done
