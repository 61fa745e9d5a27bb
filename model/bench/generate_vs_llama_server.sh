#!/usr/bin/env bash
# `generate` on secvec's own generator against the same stage sampling from llama.cpp's
# `llama-server` (parallel slots, continuous batching) serving the same GGUF, alternating for
# ROUNDS rounds. Run from the repo root after scripts/test.sh's setup (scripts/setup.sh and
# scripts/llama-server.sh), with the shared data in $SECVEC_DATA (or ../shared/data):
#   model/bench/generate_vs_llama_server.sh [ROUNDS] [SLOTS] [smollm2|qwen]
# Both sides run model/bench/generate_bench.yaml from an empty cache and only the `generate`
# stage's own seconds count; the served side's stage asks `SLOTS` requests at a time of a server
# with `SLOTS` slots, started (and its model loaded) before the clock starts. Threads: 2 on both.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
rounds=${1:-1}
slots=${2:-8}
case "${3:-smollm2}" in
  smollm2) gguf=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; model=() ;;
  qwen) gguf=.models/qwen2.5-coder-0.5b/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf; model=(-o model/bench/generate_bench_qwen.yaml) ;;
  *) echo "model: smollm2 or qwen" >&2; exit 1 ;;
esac
server="$root/.tools/llama-server"
[ -x "$server" ] || { echo "no .tools/llama-server: run scripts/llama-server.sh" >&2; exit 1; }
cargo build --release --quiet
work="$root/bench-work/generate-vs-llama-server"
mkdir -p "$work"
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$server" -m "$gguf" -a served --host 127.0.0.1 --port "$port" \
  -np "$slots" -c $((slots * 1024)) -t 2 > "$work/server.log" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 0.5; done
cat > "$work/served.yaml" <<EOF
name: generate-bench
stages:
  samples:
    inputs: {model: null}
    params: {backend: {http: {url: "http://127.0.0.1:$port/v1", model: served, concurrency: $slots, timeout_s: 600}}}
EOF
export SECVEC_HOME="$root"
echo "| round | side | generate (s) | samples | completion tokens | completion tokens/s |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  for side in secvec llama-server; do
    d="$work/run-$side"
    rm -rf "$d" && mkdir -p "$d"
    overlay=("${model[@]}")
    [ "$side" = llama-server ] && overlay+=(-o "$work/served.yaml")
    target/release/secvec --cache "$d/cache" --out "$d/out" run model/bench/generate_bench.yaml "${overlay[@]}" \
      --json > "$d/events" 2> "$d/log"
    python3 - "$d" "$round" "$side" <<'PY'
import json, sys
d, round_, side = sys.argv[1:]
seconds = next(e["seconds"] for e in map(json.loads, open(f"{d}/events"))
               if e.get("event") == "finished" and e["stage"] == "samples")
row = json.load(open(f"{d}/out/generate-bench/samples/results.json"))["rows"][0]
tokens = row["samples"] * row["mean_completion_tokens"]
print(f"| {round_} | {side} | {seconds:.1f} | {row['samples']} | {tokens:.0f} | {tokens / seconds:.0f} |")
PY
  done
done
