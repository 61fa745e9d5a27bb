#!/usr/bin/env bash
# Sets up everything secvec needs and builds it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "secvec needs a Rust toolchain (cargo, rustc >= 1.89): install one with rustup first." >&2
  exit 1
fi
cargo build --release --locked
