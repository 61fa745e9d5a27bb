#!/usr/bin/env bash
# `generate` on secvec's own generator against the same stage sampling from llama.cpp's
# `llama-server` (parallel slots, continuous batching) serving the same GGUF, and from
# `secvec serve` serving the model secvec imported, in turn for ROUNDS rounds. Run from the repo
# root after scripts/test.sh's setup (scripts/setup.sh and scripts/llama-server.sh), with the
# shared data in $SECVEC_DATA (or ../shared/data):
#   [SIDES="secvec secvec-serve llama-server"] [PER_REQUEST=1] \
#     model/bench/generate_vs_llama_server.sh [ROUNDS] [SLOTS] [smollm2|qwen]
# Every side runs model/bench/generate_bench.yaml from an empty cache and only the `generate`
# stage's own seconds count. A served side's stage asks SLOTS requests at a time, each for
# PER_REQUEST samples, of a server started (and its model loaded) before the clock starts:
# llama-server with SLOTS slots, or `secvec serve`, whose one batch takes up to 64 rows of all
# requests. Threads: 2 everywhere. The secvec side runs first: `secvec serve` serves what it
# imported.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
rounds=${1:-1}
slots=${2:-8}
sides=${SIDES:-secvec secvec-serve llama-server}
per_request=${PER_REQUEST:-1}
case "${3:-smollm2}" in
  smollm2) gguf=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf; model=() ;;
  qwen) gguf=.models/qwen2.5-coder-0.5b/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf; model=(-o model/bench/generate_bench_qwen.yaml) ;;
  *) echo "model: smollm2 or qwen" >&2; exit 1 ;;
esac
case " $sides " in
  *" secvec-serve "*) case " $sides " in *" secvec "*) ;; *) echo "secvec-serve needs the secvec side" >&2; exit 1 ;; esac ;;
esac
server="$root/.tools/llama-server"
cargo build --release --quiet
work="$root/bench-work/generate-vs-llama-server"
mkdir -p "$work"
rm -f "$work/secvec-serve.yaml" "$work/llama-server.yaml"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
# A served side's overlay ($1): SLOTS requests in flight to the server at $2 serving `served`.
served_overlay() {
  cat > "$work/$1.yaml" <<EOF
name: generate-bench
stages:
  samples:
    inputs: {model: null}
    params: {backend: {http: {url: "$2", model: served, concurrency: $slots, timeout_s: 600}, samples_per_request: $per_request}}
EOF
}
start_llama_server() {
  [ -x "$server" ] || { echo "no .tools/llama-server: run scripts/llama-server.sh" >&2; exit 1; }
  local port
  port=$(free_port)
  "$server" -m "$gguf" -a served --host 127.0.0.1 --port "$port" \
    -np "$slots" -c $((slots * 1024)) -t 2 > "$work/llama-server.log" 2>&1 &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$port/health" > /dev/null; do sleep 0.5; done
  served_overlay llama-server "http://127.0.0.1:$port/v1"
}
start_secvec_serve() {
  local imported
  imported=$(readlink -f "$work/run-secvec/out/generate-bench/base")
  target/release/secvec serve "$imported" --port 0 --name served > "$work/secvec-serve.log" 2>&1 &
  pids+=($!)
  until grep -q "listening on" "$work/secvec-serve.log"; do
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/secvec-serve.log" >&2; exit 1; }
    sleep 0.2
  done
  served_overlay secvec-serve "$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$work/secvec-serve.log")"
}
export SECVEC_HOME="$root"
echo "| round | side | generate (s) | samples | completion tokens | completion tokens/s |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  for side in $sides; do
    [ "$side" = secvec ] || [ -f "$work/$side.yaml" ] || "start_${side//-/_}"
    d="$work/run-$side"
    rm -rf "$d" && mkdir -p "$d"
    overlay=("${model[@]}")
    [ "$side" = secvec ] || overlay+=(-o "$work/$side.yaml")
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
