#!/usr/bin/env bash
# Sets up secvec and runs the whole test suite (CI runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# llama.cpp's server, for the served-generation tests (cached per machine after the first build).
scripts/llama-server.sh
source scripts/env.sh
# The Slurm executor is tested on a real one-node cluster, which needs root to start; where it
# can be started, a test that finds no cluster fails rather than skipping.
if [ "$(id -u)" = 0 ]; then
  eval "$(scripts/slurm-up.sh)"
  export SECVEC_REQUIRE_SLURM=1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo's last "test result" line is the (empty) doc-test run; sum every binary instead.
awk '/^test result:/ {p += $4; f += $6} END {printf "tests: %d passed, %d failed\n", p, f}' "$log"
exit "$status"
