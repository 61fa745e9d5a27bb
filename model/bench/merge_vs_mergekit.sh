#!/usr/bin/env bash
# A materialised steering merge (secure-anchored, θ = 1.5: W_base + τ_sec − 1.5 τ_insec) of a
# random Llama base in bf16 (hidden 2048, 10 layers by default: 1.27 GB), secvec's `merge`
# with `materialize: true` against mergekit's `task_arithmetic` on the same base and deltas,
# side by side, and secvec's default (one stacked LoRA adapter) beside them. Wall time and
# peak RSS of each, the outputs' sizes, and how far the two materialised models are apart.
# Run from the repo root after scripts/setup.sh:
#   model/bench/merge_vs_mergekit.sh [LAYERS]
# mergekit 0.1.5 is installed from PyPI into bench-work/merge/venv on top of .venv's torch and
# transformers (a .pth file), and the inputs are written once under bench-work/merge/.
# mergekit needs whole fine-tuned models (the base plus each update, in bf16); secvec reads the
# base and the two adapters.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
layers=${1:-10}
work="$root/bench-work/merge"
mkdir -p "$work"
cargo build --release --quiet

venv="$work/venv"
if [ ! -x "$venv/bin/mergekit-yaml" ]; then
  python3 -m venv "$venv"
  site=$("$root/.venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
  echo "$site" > "$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')/secvec-venv.pth"
  "$venv/bin/pip" install --quiet mergekit==0.1.5
fi
inputs="$work/l$layers"
if [ ! -f "$inputs/model-vulnerable/config.json" ]; then
  "$root/.venv/bin/python" model/bench/merge_fixtures.py "$inputs" "$layers"
fi

cat > "$work/mergekit.yaml" <<YAML
merge_method: task_arithmetic
base_model: $inputs/base
models:
  - model: $inputs/model-secure
    parameters: {weight: 1.0}
  - model: $inputs/model-vulnerable
    parameters: {weight: -1.5}
parameters: {normalize: false}
dtype: bfloat16
YAML
cat > "$work/secvec.yaml" <<YAML
name: merge-bench
stages:
  materialized:
    kind: merge
    inputs: {model: {path: $inputs/base}, secure: {path: $inputs/adapter-secure}, vulnerable: {path: $inputs/adapter-vulnerable}}
    params: {operator: secure-anchored, theta: 1.5, materialize: true}
  adapter:
    kind: merge
    inputs: {secure: {path: $inputs/adapter-secure}, vulnerable: {path: $inputs/adapter-vulnerable}}
    params: {operator: secure-anchored, theta: 1.5}
YAML

rss() { awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print int($2/1024)}' "$1"; }
wall() { awk '/Elapsed \(wall clock\)/ {n=split($NF,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$1"; }
size() { du -sm "$1" | cut -f1; }

base_mb=$(size "$inputs/base")
echo "base: $layers layers, $base_mb MB of bf16 safetensors"
echo
echo "| side | output | wall (s) | peak RSS (MB) | output size (MB) |"
echo "|---|---|---|---|---|"
rm -rf "$work/mergekit-out"
sync
/usr/bin/time -v -o "$work/time-mergekit" "$venv/bin/mergekit-yaml" "$work/mergekit.yaml" "$work/mergekit-out" \
  --lazy-unpickle --out-shard-size 5B > "$work/mergekit.log" 2>&1
echo "| mergekit task_arithmetic | whole model | $(wall "$work/time-mergekit") | $(rss "$work/time-mergekit") | $(size "$work/mergekit-out") |"
for stage in materialized adapter; do
  rm -rf "$work/run" && mkdir -p "$work/run"
  sync
  (cd "$work/run" && /usr/bin/time -v -o "$work/time-$stage" "$root/target/release/secvec" run "$work/secvec.yaml" --only "$stage" > "$work/secvec-$stage.log" 2>&1)
  what=$([ "$stage" = materialized ] && echo "whole model" || echo "stacked adapter (rank 32)")
  echo "| secvec merge | $what | $(wall "$work/time-$stage") | $(rss "$work/time-$stage") | $(size "$work/run/out/merge-bench/$stage/") |"
  if [ "$stage" = materialized ]; then
    compare=$("$root/.venv/bin/python" model/bench/merge_compare.py "$work/mergekit-out" "$work/run/out/merge-bench/$stage/")
  fi
done
echo
echo "mergekit vs secvec, materialised weights: $compare"
