#!/usr/bin/env bash
# Rescue's retrieval latency per query (both steps, model calls excluded; the goal is under
# 5 ms) over the knowledge base of SVEN's train split and SafeCoder's sec-new-desc.jsonl
# ($SECVEC_DATA, else ../shared/data). Run from the repo root after scripts/setup.sh:
#   retrieval/bench/retrieval_latency.sh [queries]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
# The manifest runs in its own folder, so the datasets' path must not be relative.
SECVEC_DATA=$(realpath -m "${SECVEC_DATA:-$root/../shared/data}")
export SECVEC_DATA
work="$root/bench-work/retrieval"
mkdir -p "$work"
cargo build --release --quiet --locked
cargo build --release --quiet --example retrieve_bench -p secvec-retrieval
cat > "$work/kb.yaml" <<YAML
name: retrieval-bench
stages:
  kb-examples:
    kind: kb-slice
    inputs:
      data: {path: "\${SECVEC_DATA}"}
    params:
      files: ["sven/data_train_val/train/*.jsonl", "safecoder/data_train_val/train/sec-new-desc.jsonl"]
YAML
(cd "$work" && "$root/target/release/secvec" run kb.yaml >/dev/null)
target/release/examples/retrieve_bench "$work/out/retrieval-bench/kb-examples/examples.jsonl" "${1:-2000}"
