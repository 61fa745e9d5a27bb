#!/usr/bin/env bash
# Generation throughput and latency of secvec vs transformers on the quickstart's tiny model,
# and peak RSS to load a ~400 MB model. Run from the repo root after scripts/setup.sh:
#   stages/bench/generate_vs_transformers.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
cargo build --release --quiet --example model_bench -p secvec-stages
cargo build --release --quiet
bench="$root/target/release/examples/model_bench"
py="$root/.venv/bin/python $root/stages/bench/transformers_bench.py"
work="$root/bench-work/models"
mkdir -p "$work"
target/release/secvec --cache "$work/cache" --out "$work/out" run manifests/quickstart.yaml --only tiny-model > /dev/null
tiny="$work/out/quickstart/tiny-model"
[ -f "$work/large/model.safetensors" ] || $py make-large "$work/large" "$tiny" 2> /dev/null
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }
echo "| side | tokens/s (n=100, 128 new) | seconds | prefill + first token (ms) | decode tokens/s (batch 1) |"
echo "|---|---|---|---|---|"
for side in secvec transformers; do
  run() { if [ $side = secvec ]; then "$bench" "$@"; else $py "$@" 2> /dev/null; fi; }
  t=$(run throughput "$tiny" 100 128)
  l=$(run latency "$tiny" 128)
  echo "| $side | $(field "$t" tokens_per_s) | $(field "$t" seconds) | $(field "$l" prefill_first_token_ms) | $(field "$l" decode_tokens_per_s) |"
done
weights=$(du -b "$work/large/model.safetensors" | cut -f1)
for side in secvec transformers; do
  if [ $side = secvec ]; then cmd=("$bench" load "$work/large"); else cmd=($py load "$work/large"); fi
  rss=$(/usr/bin/time -v "${cmd[@]}" 2>&1 > /dev/null | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
  echo "| load $side | weights $((weights / 1000000)) MB | peak RSS $((rss / 1000)) MB | $(python3 -c "print(round($rss*1024/$weights, 2))")x |"
done
