#!/usr/bin/env bash
# LoRA SFT training throughput and peak RSS: secvec's trainer vs PEFT + transformers on the same
# model, tokens, LoRA (r 16, alpha 32, dropout 0.1 on every projection), AdamW and clipping,
# side by side on CPU, for the quickstart's tiny model and a random ~100M-parameter Llama, with
# and without gradient checkpointing.
# Run from the repo root after scripts/setup.sh:  model/bench/train_vs_peft.sh [ROUNDS]
# Steps per measurement: 50 on the tiny model, 6 on the 100M one (the first is not timed). The
# sides alternate for ROUNDS rounds (default 3); each row is the median round by tokens/s, and
# the highest peak RSS of its side.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
rounds=${1:-3}
source scripts/env.sh
cargo build --release --quiet --example train_bench -p secvec-model
cargo build --release --quiet
bench="$root/target/release/examples/train_bench"
py="$root/.venv/bin/python $root/model/bench/train_peft_bench.py"
work="$root/bench-work/train"
mkdir -p "$work"
target/release/secvec --cache "$work/cache" --out "$work/out" run manifests/quickstart.yaml --only tiny-model > /dev/null
[ -f "$work/llama-100m/model.safetensors" ] || $py make-100m "$work/llama-100m" 2> /dev/null
rss() { awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print int($2/1024)}' "$1"; }
# median tokens/s (and its s/step), max RSS of the lines "tokens_per_s seconds_per_step rss".
summary() {
  sort -n | awk '{t[NR]=$1; s[NR]=$2; if ($3>m) m=$3} END {i=int((NR+1)/2); printf "%d | %.3f | %d", t[i], s[i], m}'
}
echo "| model (batch x tokens) | side | gradient checkpointing | tokens/s | s/step | peak RSS (MB) |"
echo "|---|---|---|---|---|---|"
for spec in "tiny:$work/out/quickstart/tiny-model:8:128:50" "100M:$work/llama-100m:4:256:6"; do
  IFS=: read -r name dir batch seq steps <<< "$spec"
  for ckpt in no yes; do
    extra=(); [ $ckpt = yes ] && extra=(checkpoint)
    rm -f "$work"/rounds.*
    for _ in $(seq "$rounds"); do
      for side in secvec peft; do
        if [ $side = secvec ]; then
          out=$(/usr/bin/time -v -o "$work/time" "$bench" "$dir" "$batch" "$seq" "$steps" "${extra[@]}")
        else
          out=$(/usr/bin/time -v -o "$work/time" $py "$dir" "$batch" "$seq" "$steps" "${extra[@]}" 2> /dev/null)
        fi
        python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['tokens_per_s'], d['seconds_per_step'], sys.argv[2])" \
          "$out" "$(rss "$work/time")" >> "$work/rounds.$side"
      done
    done
    for side in secvec peft; do
      echo "| $name ($batch x $seq) | $side | $ckpt | $(summary < "$work/rounds.$side") |"
    done
  done
done
