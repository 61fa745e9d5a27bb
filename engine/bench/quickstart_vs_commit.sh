#!/usr/bin/env bash
# The quickstart's wall time on a cold cache, this checkout against another commit, alternating
# for ROUNDS rounds. Run from the repo root after scripts/setup.sh:
#   engine/bench/quickstart_vs_commit.sh COMMIT [ROUNDS]
# COMMIT is built in bench-work/quickstart/<commit> (a git worktree, its own target folder);
# both sides run this checkout's manifests/quickstart.yaml with this checkout's tools.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
commit=$(git rev-parse --short "$1")
rounds=${2:-3}
work="$root/bench-work/quickstart"
old="$work/$commit"
mkdir -p "$work"
[ -d "$old" ] || git worktree add -q --detach "$old" "$commit"
CARGO_TARGET_DIR="$old/target" cargo build --release --quiet --manifest-path "$old/Cargo.toml"
cargo build --release --quiet
export SECVEC_HOME="$root"
echo "| round | side | wall (s) |"
echo "|---|---|---|"
for round in $(seq "$rounds"); do
  for side in "$commit" this; do
    bin=$([ "$side" = this ] && echo "$root/target/release/secvec" || echo "$old/target/release/secvec")
    d="$work/run-$side"
    rm -rf "$d" && mkdir -p "$d"
    start=$(date +%s.%N)
    "$bin" run manifests/quickstart.yaml --cache "$d/cache" --out "$d/out" > "$d/log" 2>&1
    printf "| %s | %s | %.1f |\n" "$round" "$side" "$(echo "$(date +%s.%N) - $start" | bc)"
  done
done
