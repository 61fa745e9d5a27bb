#!/usr/bin/env bash
# LoRA SFT training throughput on a GPU, secvec vs PEFT + transformers side by side in one run
# (bf16, a random model of DeepSeek-Coder-1.3B-base's shape, LoRA r 16 / alpha 32 / dropout 0.1
# on every projection, AdamW, clipping), and from it an estimate of the GPU-hours of the
# SecVecCoder paper's full training run, to set beside its Table VI (0.68-1.80 A6000 GPU-hours).
#
# Run from the repo root after scripts/setup.sh, on a machine with a CUDA GPU:
#   model/bench/train_gpu.sh
# To check the script itself on a CPU with a small model:
#   DEVICE=cpu DTYPE=f32 MODEL=bench-work/train/llama-100m BATCH=2 SEQ=64 STEPS=3 model/bench/train_gpu.sh
# The paper run's tokens come from the SVEN pairs ($SECVEC_DATA, else ../shared/data): SFT 2
# epochs and LPO 3 and 5 epochs, each for a secure and a vulnerable adapter, LPO reading both
# sides of every pair. Tokens are estimated at 3.5 characters each (code under a BPE of
# DeepSeek-Coder's kind; its tokenizer is not shipped), over the paper's template + instruction
# + completion.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
device=${DEVICE:-cuda}
dtype=${DTYPE:-bf16}
batch=${BATCH:-8}
seq=${SEQ:-512}
steps=${STEPS:-12}
work="$root/bench-work/train-gpu"
mkdir -p "$work"
py="$root/.venv/bin/python $root/model/bench/train_peft_bench.py"
model=${MODEL:-$work/deepseek-coder-1.3b-shaped}
if [ ! -f "$model/config.json" ]; then
  $py make-1.3b "$model" 2> /dev/null
fi
cargo build --release --quiet --example train_bench -p secvec-model
bench="$root/target/release/examples/train_bench"
data=${SECVEC_DATA:-$root/../shared/data}
echo "device $device, dtype $dtype, batch $batch x $seq tokens, $steps steps (the first not timed)"
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
echo
echo "| side | gradient checkpointing | tokens/s | s/step | estimated GPU-hours, SFT 2 ep. + LPO 3 ep. | SFT 2 ep. + LPO 5 ep. |"
echo "|---|---|---|---|---|---|"
for ckpt in no yes; do
  extra=("device=$device" "dtype=$dtype"); [ $ckpt = yes ] && extra+=(checkpoint)
  for side in secvec peft; do
    if [ $side = secvec ]; then
      out=$("$bench" "$model" "$batch" "$seq" "$steps" "${extra[@]}")
    else
      out=$($py "$model" "$batch" "$seq" "$steps" "${extra[@]}" 2> /dev/null)
    fi
    python3 - "$out" "$data/sven/data_train_val" "$side" "$ckpt" <<'PY'
import glob, json, sys
measured, sven, side, ckpt = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
template = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n\n\n### Response:\n"
pairs = [json.loads(l) for f in sorted(glob.glob(f"{sven}/*/*.jsonl")) for l in open(f) if l.strip()]
if not pairs:
    sys.exit(f"no SVEN pairs under {sven}: set SECVEC_DATA")
def chars(p, side):
    return len(template) + len(p.get("description") or "") + 40 + len(p[side])
secure = sum(chars(p, "func_src_after") for p in pairs) / 3.5
vulnerable = sum(chars(p, "func_src_before") for p in pairs) / 3.5
# SFT trains each adapter on its own side; LPO reads both sides for each adapter.
sft = 2 * (secure + vulnerable)
lpo = lambda epochs: epochs * 2 * (secure + vulnerable)
hours = lambda tokens: tokens / measured["tokens_per_s"] / 3600
print(f"| {side} | {ckpt} | {measured['tokens_per_s']:.0f} | {measured['seconds_per_step']:.3f} "
      f"| {hours(sft + lpo(3)):.2f} | {hours(sft + lpo(5)):.2f} |")
PY
  done
done
echo
echo "($(python3 -c "import glob,sys; print(sum(1 for f in glob.glob(sys.argv[1]+'/*/*.jsonl') for l in open(f) if l.strip()))" "$data/sven/data_train_val") SVEN pairs; the paper reports 0.68-1.80 A6000 GPU-hours for its runs, Table VI)"
