#!/usr/bin/env bash
# Compiles the scoring tests' packages and the oracles (scripts/*-requirements.in) into lock files
# with every dependency's version and hashes (scripts/*-requirements.txt), for CPython 3.11 on
# Linux, so that a fresh machine installs what CI tested. Run it after changing a .in file, and
# commit both. Needs uv (pip install uv).
set -euo pipefail
cd "$(dirname "$0")"
for name in scoring oracle; do
  uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
    --custom-compile-command "scripts/lock.sh" "$name-requirements.in" -o "$name-requirements.txt"
done
