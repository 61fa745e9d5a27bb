#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` (OpenAI-compatible, parallel slots with continuous batching)
# from the llama.cpp sources vendored in the registry's llama-cpp-python sdist, pinned by version
# and sha256, and links it at .tools/llama-server for the served-generation tests and the
# generation benchmark. Not on the quickstart's path. The build (about 10 minutes on 2 cores) is
# kept in the user's cache, keyed by the sdist's hash and the compiler, so a fresh clone on the
# same machine links it again instead of rebuilding. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
URL=https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-$VERSION.tar.gz
if ! command -v cmake >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q cmake >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q cmake >/dev/null; }
  else
    echo "llama-server needs cmake: sudo apt-get install cmake" >&2
    exit 1
  fi
fi
compiler=$( (c++ --version | head -1; uname -m) | sha256sum | cut -c1-12)
home="${XDG_CACHE_HOME:-$HOME/.cache}/secvec/llama-server-$VERSION-${SHA256:0:12}-$compiler"
if [ ! -x "$home/llama-server" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -sSfL "$URL" -o "$tmp/sdist.tar.gz"
  echo "$SHA256  $tmp/sdist.tar.gz" | sha256sum --check --quiet
  tar -xzf "$tmp/sdist.tar.gz" -C "$tmp"
  src="$tmp/llama_cpp_python-$VERSION/vendor/llama.cpp"
  # No network at build or run time (no web UI download, no model fetching over HTTPS).
  cmake -S "$src" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DGGML_NATIVE=ON >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; exit 1; }
  echo "building llama-server $VERSION (about 10 minutes on 2 cores; once per machine)" >&2
  cmake --build "$tmp/build" --target llama-server -j"$(nproc)" >"$tmp/build.log" 2>&1 ||
    { tail -n 40 "$tmp/build.log" >&2; exit 1; }
  mkdir -p "$home"
  cp "$tmp/build/bin/llama-server" "$home/llama-server.partial"
  mv "$home/llama-server.partial" "$home/llama-server"
fi
mkdir -p .tools
ln -sfn "$home/llama-server" .tools/llama-server
