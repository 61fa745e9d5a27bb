#!/usr/bin/env bash
# `secvec serve` against the same generation in-process: SmolLM2-135M-Instruct (imported from
# the GGUF setup fetches), greedy, one prompt, 1 warm-up then RUNS timed generations each side,
# one after the other in one run. In-process is the `latency` stage (no stop: exactly TOKENS
# new tokens); served is POST /v1/completions with max_tokens TOKENS, timed by the client, so
# HTTP, JSON and detokenising are included (a served answer may stop early at EOS, so both are
# reported as tokens per second). Run from the repo root after scripts/setup.sh:
#   model/bench/serve_vs_inprocess.sh [TOKENS] [RUNS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
tokens=${1:-128}
runs=${2:-5}
work="$root/bench-work/serve"
mkdir -p "$work"
cargo build --release --quiet --locked
prompt="Write a Python function that reads a configuration file and returns its sections as a dictionary."
cat > "$work/serve.yaml" <<YAML
name: serve-bench
stages:
  smollm2:
    kind: import-gguf
    inputs:
      gguf: {path: $root/.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
  in-process:
    kind: latency
    inputs: {model: smollm2}
    params: {new_tokens: $tokens, runs: $runs, warmup: 1, prompt: "$prompt"}
YAML
(cd "$work" && "$root/target/release/secvec" run serve.yaml --force in-process >/dev/null)
model_dir=$(readlink -f "$work/out/serve-bench/smollm2")
in_ms=$(python3 -c "import json; print(json.load(open('$work/out/serve-bench/in-process/results.json'))['rows'][0]['mean_ms'])")
target/release/secvec serve "$model_dir" --port 0 > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/serve.log" && break; sleep 0.2; done
url=$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$work/serve.log")
model=$(sed -n 's/^listening on .*(model `\([^`]*\)`).*/\1/p' "$work/serve.log")
.venv/bin/python - "$url" "$model" "$prompt" "$tokens" "$runs" "$in_ms" <<'PY'
import json, sys, time, urllib.request
url, model, prompt = sys.argv[1], sys.argv[2], sys.argv[3]
tokens, runs, in_ms = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
def ask():
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0}).encode()
    req = urllib.request.Request(f"{url}/completions", body, {"Content-Type": "application/json"})
    t = time.perf_counter()
    answer = json.load(urllib.request.urlopen(req))
    return time.perf_counter() - t, answer["usage"]["completion_tokens"]
ask()
timed = [ask() for _ in range(runs)]
secs = sum(t for t, _ in timed) / runs
got = sum(n for _, n in timed) / runs
print("| side | new tokens | mean time (ms) | tokens/s |")
print("|---|---|---|---|")
print(f"| in-process (`latency` stage) | {tokens} | {in_ms:.0f} | {tokens / in_ms * 1000:.1f} |")
print(f"| `secvec serve`, /v1/completions | {got:.0f} | {secs * 1000:.0f} | {got / secs:.1f} |")
PY
