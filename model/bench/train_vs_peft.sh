#!/usr/bin/env bash
# LoRA SFT training throughput and peak RSS: secvec's trainer vs PEFT + transformers on the same
# model, tokens, LoRA (r 16, alpha 32, dropout 0.1 on every projection), AdamW and clipping,
# side by side on CPU, for the quickstart's tiny model and a random ~100M-parameter Llama.
# Run from the repo root after scripts/setup.sh:  model/bench/train_vs_peft.sh
# Steps per measurement: 50 on the tiny model, 8 on the 100M one (the first is not timed).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
cargo build --release --quiet --example train_bench -p secvec-model
cargo build --release --quiet
bench="$root/target/release/examples/train_bench"
py="$root/.venv/bin/python $root/model/bench/train_peft_bench.py"
work="$root/bench-work/train"
mkdir -p "$work"
target/release/secvec --cache "$work/cache" --out "$work/out" run manifests/quickstart.yaml --only tiny-model > /dev/null
[ -f "$work/llama-100m/model.safetensors" ] || $py make-100m "$work/llama-100m" 2> /dev/null
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], $3))" "$1"; }
rss() { awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print int($2/1024)}' "$1"; }
echo "| model (batch x tokens) | side | tokens/s | s/step | peak RSS (MB) |"
echo "|---|---|---|---|---|"
for spec in "tiny:$work/out/quickstart/tiny-model:8:128:50" "100M:$work/llama-100m:4:256:8"; do
  IFS=: read -r name dir batch seq steps <<< "$spec"
  for side in secvec peft; do
    if [ $side = secvec ]; then
      out=$( { /usr/bin/time -v -o "$work/time" "$bench" "$dir" "$batch" "$seq" "$steps"; } )
    else
      out=$( { /usr/bin/time -v -o "$work/time" $py "$dir" "$batch" "$seq" "$steps" 2> /dev/null; } )
    fi
    echo "| $name ($batch x $seq) | $side | $(field "$out" tokens_per_s 0) | $(field "$out" seconds_per_step 3) | $(rss "$work/time") |"
  done
done
