#!/usr/bin/env bash
# Generation throughput and latency of secvec vs transformers on the quickstart's tiny model,
# and peak RSS to load models of about 370 and 720 MB. Run from the repo root after scripts/setup.sh:
#   model/bench/generate_vs_transformers.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
cargo build --release --quiet --example model_bench -p secvec-model
cargo build --release --quiet
bench="$root/target/release/examples/model_bench"
py="$root/.venv/bin/python $root/model/bench/transformers_bench.py"
work="$root/bench-work/models"
mkdir -p "$work"
target/release/secvec --cache "$work/cache" --out "$work/out" run manifests/quickstart.yaml --only tiny-model > /dev/null
tiny="$work/out/quickstart/tiny-model"
for layers in 4 10; do
  [ -f "$work/large-$layers/model.safetensors" ] || $py make-large "$work/large-$layers" "$tiny" $layers 2> /dev/null
done
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }
echo "| side | tokens/s (n=100, 128 new) | seconds | prefill + first token (ms) | decode tokens/s (batch 1) |"
echo "|---|---|---|---|---|"
for side in secvec transformers; do
  run() { if [ $side = secvec ]; then "$bench" "$@"; else $py "$@" 2> /dev/null; fi; }
  t=$(run throughput "$tiny" 100 128)
  l=$(run latency "$tiny" 128)
  echo "| $side | $(field "$t" tokens_per_s) | $(field "$t" seconds) | $(field "$l" prefill_first_token_ms) | $(field "$l" decode_tokens_per_s) |"
done
echo
echo "| load | weights (MB) | peak RSS (MB) | RSS / weights | RSS above an idle process / weights |"
echo "|---|---|---|---|---|"
rss() { /usr/bin/time -v "$@" 2>&1 > /dev/null | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2 * 1024}'; }
# transformers maps safetensors lazily (its load reads nothing yet), so only secvec is measured here.
idle=$(rss "$bench" load "$tiny")
for layers in 4 10; do
  weights=$(du -b "$work/large-$layers/model.safetensors" | cut -f1)
  peak=$(rss "$bench" load "$work/large-$layers")
  echo "| secvec, $layers layers | $((weights / 1000000)) | $((peak / 1000000)) | $(python3 -c "print(round($peak/$weights, 2))") | $(python3 -c "print(round(($peak-$idle)/$weights, 2))") |"
done
echo "(an idle process — libtorch loaded, no weights — peaks at $((idle / 1000000)) MB)"
