#!/usr/bin/env bash
# secvec's GPU checks, from the bundle scripts/gpu-bundle.sh builds, on a host with only a GPU,
# bash and a Python with torch 2.11, transformers and PEFT: no network, no Rust, no secvec
# checkout. One command, a few minutes:
#   1. logits of two tiny models (Llama, Qwen2) against the host's transformers, f32 and bf16;
#   2. ten LoRA SFT steps against PEFT (losses and the final adapter);
#   3. one LPO step against SecVecCoder's loss written out in PyTorch;
#   4. a steering merge (materialised) and greedy sampling with the steered adapter, the merged
#      model's logits against transformers;
#   5. the quickstart's model stages on the device (pairs, tiny model, SFT, LPO, held-out
#      margins, diagnose, merges, generation, latency; scoring is left out: its sandboxed tools
#      are not there);
#   6. sampling throughput, secvec against transformers, on a random Llama the host's
#      transformers writes (hidden 1024, 4 layers, 16k vocabulary);
#   7. Table VI's 20-new-token latency, base and steered.
# A check that fails does not stop the others. The table comes last; the full logs go to $OUT
# (default: logs/ beside this script). Exits 1 if a check failed.
#
# Settings: DEVICE (cuda; cpu for a dry run), PYTHON (/opt/torch/.venv/bin/python), TORCH_LIB
# (that Python's torch/lib), OUT, TIMEOUT (seconds per step, 240), BUDGET (seconds for the
# whole run, 540: a step never runs past it, so the table is printed within a host's 10-minute
# limit on a command).
set -uo pipefail
bundle=$(cd "$(dirname "$0")" && pwd)
export DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-/opt/torch/.venv/bin/python}
OUT=${OUT:-$bundle/logs}
TIMEOUT=${TIMEOUT:-240}
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/secvec-gpu.XXXXXX")
log="$OUT/run.log"
results="$OUT/results.tsv"
: > "$log"
: > "$results"
start=$(date +%s)

if [ ! -x "$PYTHON" ]; then
  echo "run.sh: no Python at $PYTHON: set PYTHON to one with torch, transformers and peft" >&2
  exit 2
fi
if [ -z "${TORCH_LIB:-}" ]; then
  TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') || {
    echo "run.sh: $PYTHON cannot import torch: set PYTHON, or TORCH_LIB to a torch 2.11 lib folder" >&2
    exit 2
  }
fi
# The binaries have no rpath: they take this torch's libraries, and libtorch_cuda.so from the
# folder its libtorch_cpu.so was loaded from.
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
bin="$work/bin"
mkdir -p "$bin"
"$PYTHON" - "$bundle/bin" "$bin" <<'PY' || exit 2
import gzip, os, shutil, sys
for name in os.listdir(sys.argv[1]):
    target = os.path.join(sys.argv[2], name.removesuffix(".gz"))
    with gzip.open(os.path.join(sys.argv[1], name)) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.chmod(target, 0o755)
PY
py="$bundle/py"
checks() { "$PYTHON" "$py/checks.py" "$@"; }
# record CHECK "ok|FAILED<TAB>detail" (what checks.py prints); fail CHECK DETAIL.
record() { printf '%s\t%s\n' "$1" "$2" >> "$results"; printf '== %s: %s\n' "$1" "$2" | tee -a "$log"; }
fail() { record "$1" "FAILED"$'\t'"$2"; }
# Runs a step's command within TIMEOUT and what is left of BUDGET, its stderr appended to
# $OUT/NAME.log.
step() {
  local name=$1; shift
  local left=$(( start + BUDGET - $(date +%s) ))
  echo "== $*" >> "$OUT/$name.log"
  if [ "$left" -le 0 ]; then
    echo "not run: the budget of $BUDGET s is spent" >> "$OUT/$name.log"
    return 1
  fi
  timeout -k 10 "$(( left < TIMEOUT ? left : TIMEOUT ))" "$@" 2>> "$OUT/$name.log"
}

{
  echo "secvec GPU bundle $(cat "$bundle/VERSION"), device $DEVICE, $(date -u '+%F %T') UTC"
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PYTHON" -c 'import sys, torch, transformers, peft; print(f"host: Python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}), transformers {transformers.__version__}, peft {peft.__version__}")'
  echo "torch libraries: $TORCH_LIB"
  timeout -k 10 120 "$bin/secvec-worker" devices
} 2>&1 | tee -a "$log"

# 1. Logits against transformers.
for model in llama qwen2; do
  for dtype in f32 bf16; do
    name="logits-$model-$dtype"
    if step "$name" env DTYPE=$dtype "$bin/model_bench" logits "$bundle/fixtures/$model" > "$work/$name.secvec.json" &&
      step "$name" env DTYPE=$dtype "$PYTHON" "$py/transformers_bench.py" logits "$bundle/fixtures/$model" > "$work/$name.hf.json"; then
      record "1. logits, $model, $dtype" "$(checks logits "$work/$name.secvec.json" "$work/$name.hf.json" $dtype)"
    else
      fail "1. logits, $model, $dtype" "see $name.log"
    fi
  done
done
record "1. logits, SmolLM2-135M" "skipped"$'\t'"its GGUF (about 100 MB) does not fit the bundle's 64 MiB"

# 2-3. Training against PEFT. GPU kernels reduce in other orders than the CPU's: 1e-3 there.
tolerance=$([ "$DEVICE" = cpu ] && echo 1e-4 || echo 1e-3)
for what in sft lpo; do
  label=$([ $what = sft ] && echo "2. ten LoRA SFT steps vs PEFT" || echo "3. one LPO step vs PyTorch")
  if step "$what" "$bin/peft_check" $what "$bundle/fixtures/llama" "$PYTHON" "$py/training_reference.py" "$work/$what" > "$work/$what.json"; then
    record "$label" "$(checks training "$work/$what.json" $tolerance)"
  else
    fail "$label" "see $what.log"
  fi
done

# 4-5, 7. The quickstart's model stages on the device, with the bundle's overlay.
stages=(tiny-model samples sft lpo lpo-samples margins-base margins steered-margins diagnose-sft diagnose-lpo steered steered-samples
  steered-model scenario-samples latency latency-merged)
only=()
for s in "${stages[@]}"; do only+=(--only "$s"); done
t0=$(date +%s)
if step quickstart "$bin/secvec" --cache "$work/cache" --out "$work/out" run "$bundle/manifests/quickstart.yaml" \
  -o "$bundle/overlay.yaml" --set "defaults.device=$DEVICE" "${only[@]}" >> "$OUT/quickstart.log"; then
  record "5. quickstart model stages on $DEVICE" "ok"$'\t'"$(grep -E '^[0-9]+ stages:' "$OUT/quickstart.log") in $(( $(date +%s) - t0 )) s; scoring skipped (its sandboxed tools are not on the host)"
else
  fail "5. quickstart model stages on $DEVICE" "see quickstart.log"
fi
q="$work/out/quickstart"
steered="$q/steered-model"
if step merged env DTYPE=f32 "$bin/model_bench" logits "$steered" > "$work/merged.secvec.json" &&
  step merged env DTYPE=f32 "$PYTHON" "$py/transformers_bench.py" logits "$steered" > "$work/merged.hf.json"; then
  record "4. steered model (negation, θ 0.5), logits vs transformers" "$(checks logits "$work/merged.secvec.json" "$work/merged.hf.json" f32)"
else
  fail "4. steered model (negation, θ 0.5), logits vs transformers" "see merged.log"
fi
record "4. greedy sampling, steered adapter (negation, θ 0.5)" "$(checks samples "$q/steered-samples@operator=negation,theta=0.5/samples.jsonl")"

# 6. Throughput, 16 samples x 64 new tokens.
large="$work/large"
if step throughput "$PYTHON" "$py/transformers_bench.py" make-large "$large" "$bundle/fixtures/llama" 4 &&
  step throughput "$bin/model_bench" throughput "$large" 16 64 > "$work/throughput.secvec.json" &&
  step throughput "$PYTHON" "$py/transformers_bench.py" throughput "$large" 16 64 > "$work/throughput.hf.json"; then
  record "6. sampling throughput, 16 x 64 new tokens, f32" "$(checks throughput "$work/throughput.secvec.json" "$work/throughput.hf.json" $((16 * 64)))"
else
  fail "6. sampling throughput, 16 x 64 new tokens, f32" "see throughput.log"
fi

record "7. 20-token latency (Table VI), base" "$(checks latency "$q/latency/results.json" "$DEVICE")"
record "7. 20-token latency (Table VI), steered merged" "$(checks latency "$q/latency-merged/results.json" "$DEVICE")"

cp "$work"/*.json "$OUT/" 2> /dev/null
cp -rL "$q" "$OUT/quickstart-out" 2> /dev/null
rm -rf "$work"
echo
echo "secvec GPU bundle on $DEVICE: $(( $(date +%s) - start )) s"
echo
checks table "$results" | tee "$OUT/summary.md"
# Any verdict but ok or skipped (FAILED, or none at all) fails the run.
verdicts=$(cut -f2 "$results")
! grep -qvxE 'ok|skipped' <<< "$verdicts"
