#!/usr/bin/env bash
# Everything CUDA, in one run of under 10 minutes on a machine with a GPU, after scripts/setup.sh:
#  1. build, and what libtorch sees (`secvec doctor`);
#  2. logits of the quickstart's tiny model on the GPU against transformers on the same GPU, in
#     f32 (max |diff| <= 1e-3) and bf16 (max |diff| <= 5% of the largest |logit|, same argmax:
#     bf16 keeps 8 bits of mantissa, and the two stacks order their reductions differently);
#  3. the quickstart with every model stage on `cuda` (`--set defaults.device=cuda`): LoRA
#     training steps, merges, generation and the latency stage, into a fresh cache;
#  4. generation throughput, secvec vs transformers, 16 samples x 64 new tokens;
#  5. the paper's 20-new-token latency (Table VI) for the base model (the quickstart's `latency`
#     stage) and with a steered adapter merged into it (a stage this script's overlay adds).
# Prints a Markdown summary for BENCHMARKS.md; exits non-zero if a parity check fails.
# DEVICE=cpu runs the same steps on the CPU (to check the script where there is no GPU).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env.sh
export DEVICE=${DEVICE:-cuda}
work="$root/bench-work/gpu-check"
rm -rf "$work" && mkdir -p "$work"
start=$(date +%s)
cargo build --release --quiet
cargo build --release --quiet --example model_bench -p secvec-model
secvec="$root/target/release/secvec"
bench="$root/target/release/examples/model_bench"
py="$root/.venv/bin/python $root/model/bench/transformers_bench.py"
command -v nvidia-smi >/dev/null && nvidia-smi -L
"$secvec" doctor || true

"$secvec" --cache "$work/cache" --out "$work/out" run manifests/quickstart.yaml --only tiny-model > /dev/null
tiny="$work/out/quickstart/tiny-model"
compare() { # DTYPE → max |diff|, largest |logit|, argmax equal, verdict
  DTYPE=$1 "$bench" logits "$tiny" > "$work/secvec-$1.json"
  DTYPE=$1 $py logits "$tiny" > "$work/transformers-$1.json" 2> /dev/null
  python3 - "$work/secvec-$1.json" "$work/transformers-$1.json" "$1" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["logits"]; b = json.load(open(sys.argv[2]))["logits"]
diff = max(abs(x - y) for x, y in zip(a, b)); top = max(abs(y) for y in b)
same = a.index(max(a)) == b.index(max(b))
ok = same and (diff <= 1e-3 if sys.argv[3] == "f32" else diff <= 0.05 * top)
print(f"{diff:.2e} {top:.2f} {same} {'ok' if ok else 'FAILED'}")
PY
}
read -r f32_diff f32_top f32_same f32_ok <<< "$(compare f32)"
read -r bf16_diff bf16_top bf16_same bf16_ok <<< "$(compare bf16)"

cat > "$work/merged-latency.yaml" <<'YAML'
stages:
  latency-merged:
    kind: latency
    inputs: {model: tiny-model, adapter: "steered@operator=negation,theta=0.5"}
    params: {merge_adapter: true}
YAML
t0=$(date +%s.%N)
"$secvec" --cache "$work/cache" --out "$work/out" run manifests/quickstart.yaml -o "$work/merged-latency.yaml" \
  --set "defaults.device=$DEVICE" > "$work/quickstart.log" 2>&1
t1=$(date +%s.%N)
qs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")

secvec_tps=$("$bench" throughput "$tiny" 16 64 | python3 -c "import json,sys; print(round(json.load(sys.stdin)['tokens_per_s']))")
hf_tps=$($py throughput "$tiny" 16 64 2> /dev/null | python3 -c "import json,sys; print(round(json.load(sys.stdin)['tokens_per_s']))")

echo
echo "gpu-check on $DEVICE ($(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name --format=csv,noheader | head -1 || echo 'no GPU')), $(date -u +%F):"
echo
echo "| check | result |"
echo "|---|---|"
echo "| logits vs transformers, f32 | max diff $f32_diff (largest logit $f32_top), same argmax: $f32_same: $f32_ok |"
echo "| logits vs transformers, bf16 | max diff $bf16_diff (largest logit $bf16_top), same argmax: $bf16_same: $bf16_ok |"
echo "| quickstart, model stages on $DEVICE | ${qs} s, $(tail -2 "$work/quickstart.log" | head -1) |"
echo "| generation, 16 x 64 new tokens | secvec ${secvec_tps} tok/s, transformers ${hf_tps} tok/s |"
latency() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['rows'][0]; print(f\"{r['mean_ms']:.2f} ± {r['std_ms']:.2f} ms\")" "$1"; }
echo "| 20-token latency (Table VI), base | $(latency "$work/out/quickstart/latency/results.json") |"
echo "| 20-token latency (Table VI), negation θ=0.5 merged | $(latency "$work/out/quickstart/latency-merged/results.json") |"
echo
echo "total $(( $(date +%s) - start )) s"
[ "$f32_ok" = ok ] && [ "$bf16_ok" = ok ]
