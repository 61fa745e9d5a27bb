#!/usr/bin/env bash
# Sampling DeepGuard's scenario prompts with secvec's `generate` and with transformers'
# `generate` (one call per prompt for its 10 samples, as its users write it), then batch-1
# greedy decoding with secvec, transformers and llama.cpp's `llama-server` (one slot; its own
# timings of the same prompt, EOS ignored), all in one run. Run from the repo root after
# scripts/test.sh's setup, with the shared data in $SECVEC_DATA (or ../shared/data):
#   model/bench/generate_vs_peers.sh [LIMIT] [smollm2|qwen]
# Sampling: the first LIMIT (17) scenarios, n 10, T 0.4, top-p 0.95, 128 new tokens; secvec
# stops each sample at its function's end, transformers at EOS, so both are compared in
# completion tokens per second. Batch 1: 128 new tokens of model_bench.rs's prompt, best of 5.
# Threads: 2 everywhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
limit=${1:-17}
case "${2:-qwen}" in
  smollm2) gguf=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; model=() ;;
  qwen) gguf=.models/qwen2.5-coder-0.5b/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf; model=(-o model/bench/generate_bench_qwen.yaml) ;;
  *) echo "model: smollm2 or qwen" >&2; exit 1 ;;
esac
cargo build --release --quiet
cargo build --release --quiet --example model_bench -p secvec-model
work="$root/bench-work/generate-vs-peers"
rm -rf "$work" && mkdir -p "$work"
cat > "$work/limit.yaml" <<EOF
name: generate-bench
stages:
  samples:
    params: {limit: $limit}
EOF
export SECVEC_HOME="$root" OMP_NUM_THREADS=2
target/release/secvec --cache "$work/cache" --out "$work/out" run model/bench/generate_bench.yaml "${model[@]}" \
  -o "$work/limit.yaml" --json > "$work/events"
out="$work/out/generate-bench"
dir=$(readlink -f "$out/base")
py="$root/.venv/bin/python $root/model/bench/transformers_bench.py"
theirs=$($py scenarios "$dir" "$out/scenarios/prompts.jsonl" "$limit" 10 128 0.4 2> "$work/transformers.log")
python3 - "$work/events" "$out/samples/results.json" "$theirs" <<'PY'
import json, sys
seconds = next(e["seconds"] for e in map(json.loads, open(sys.argv[1]))
               if e.get("event") == "finished" and e["stage"] == "samples")
row = json.load(open(sys.argv[2]))["rows"][0]
tokens = row["samples"] * row["mean_completion_tokens"]
t = json.loads(sys.argv[3])
print("| sampling | seconds | samples | completion tokens | completion tokens/s |")
print("|---|---|---|---|---|")
print(f"| secvec `generate` | {seconds:.1f} | {row['samples']} | {tokens:.0f} | {tokens / seconds:.1f} |")
print(f"| transformers `generate` | {t['seconds']:.1f} | {t['samples']} | {t['new_tokens']} | {t['tokens_per_s']:.1f} |")
PY
echo
prompt=$(python3 -c "import re; print(re.search(r'const PROMPT: &str = \"(.*)\";', open('model/examples/model_bench.rs').read()).group(1))")
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
.tools/llama-server -m "$gguf" -a served --host 127.0.0.1 --port "$port" -np 1 -c 2048 -t 2 > "$work/llama-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 0.5; done
echo "| batch 1, greedy, 128 new tokens | prompt tokens | prefill (ms; + first token on secvec and transformers) | decode tokens/s |"
echo "|---|---|---|---|"
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['prompt_tokens'], '|', round(d['prefill_first_token_ms'], 1), '|', round(d['decode_tokens_per_s'], 1))" "$1"; }
echo "| secvec (f32) | $(field "$(target/release/examples/model_bench latency "$dir" 128)") |"
echo "| transformers (f32) | $(field "$($py latency "$dir" 128 2> /dev/null)") |"
python3 - "$port" "$prompt" <<'PY'
import json, sys, urllib.request
port, prompt = sys.argv[1], sys.argv[2].encode().decode("unicode_escape")
def timings():
    body = json.dumps({"prompt": prompt, "n_predict": 128, "temperature": 0, "ignore_eos": True,
                       "cache_prompt": False}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))["timings"]
timings()  # warms up
runs = [timings() for _ in range(5)]
best = max(runs, key=lambda t: t["predicted_per_second"])
best["prompt_ms"] = min(t["prompt_ms"] for t in runs)
print(f"| llama-server (GGUF weights) | {best['prompt_n']} | {best['prompt_ms']:.1f} | {best['predicted_per_second']:.1f} |")
PY
