#!/usr/bin/env bash
# Steered models through vLLM, on a GPU machine with network where vLLM can be installed (the GPU
# bundle's hosts have no network, so this is not in the bundle). From a checkout after
# scripts/setup.sh and a release build:
#   scripts/vllm-check.sh [MODEL_OVERLAY]     (default: manifests/overlays/positive-control/qwen-0.5b.yaml)
# 1. runs the positive controls on the GPU (the model overlay, `device: cuda`) up to the paper's
#    final model, W_base + τ_sec − 1.5 τ_insec (LPO vectors), and its in-process samples and scores;
# 2. serves the base model's directory with vLLM and the final model's adapter as the LoRA module
#    `final` (`--enable-lora --lora-modules`);
# 3. samples the same prompts through vLLM (overlays/positive-control/vllm-final.yaml) and scores
#    them: the report's `W_final (vLLM) − W_final` row, paired over scenarios, should hold 0.
# Not run by the project yet: no machine lent to it so far had both a GPU and a network.
set -euo pipefail
cd "$(dirname "$0")/.."
overlay=${1:-manifests/overlays/positive-control/qwen-0.5b.yaml}
VLLM_VERSION=${VLLM_VERSION:-0.9.2}
venv=.venv-vllm
[ -x "$venv/bin/vllm" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "vllm==$VLLM_VERSION"; }
secvec=target/release/secvec
cuda=(-o "$overlay" --set defaults.device=cuda --set defaults.dtype=bf16)
"$secvec" run manifests/positive-control.yaml "${cuda[@]}" --only scores-final
name=$(sed -n 's/^name: //p' "$overlay")
out="out/$name"
base=$(realpath "$out/base")
final=$(realpath "$out/steer-lpo@operator=secure-anchored,theta=1.5")
"$venv/bin/vllm" serve "$base" --served-model-name base --enable-lora --max-lora-rank 64 \
  --lora-modules "final=$final" --port 8000 --dtype bfloat16 > vllm.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf http://127.0.0.1:8000/v1/models > /dev/null; do
  kill -0 $server 2>/dev/null || { tail -n 30 vllm.log >&2; exit 1; }
  sleep 2
done
"$secvec" run manifests/positive-control.yaml "${cuda[@]}" -o manifests/overlays/positive-control/vllm-final.yaml \
  --only gen-vllm-over-local
cat "$out/gen-vllm-over-local/results.json"
