#!/usr/bin/env bash
# `generate`'s time on a real model, this checkout against another commit, alternating for ROUNDS
# rounds, at each batch size given. Run from the repo root after scripts/setup.sh, with the shared
# data in $SECVEC_DATA (or ../shared/data):
#   model/bench/generate_vs_commit.sh COMMIT|BINARY [ROUNDS] [BATCH...]
# COMMIT is built in bench-work/generate/<commit> (a git worktree, its own target folder), or
# BINARY is an earlier `secvec` already built (its `secvec-worker` beside it); both
# sides run model/bench/generate_bench.yaml from this checkout, each from an empty cache (the
# model import and the scenarios are not timed: only the `generate` stage's own seconds).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
source scripts/env.sh
work="$root/bench-work/generate"
mkdir -p "$work"
if [ -x "$1" ] && [ -f "$1" ]; then
  commit=earlier
  old_bin=$(realpath "$1")
else
  commit=$(git rev-parse --short "$1")
  old="$work/$commit"
  [ -d "$old" ] || git worktree add -q --detach "$old" "$commit"
  CARGO_TARGET_DIR="$old/target" cargo build --release --quiet --manifest-path "$old/Cargo.toml"
  old_bin="$old/target/release/secvec"
fi
rounds=${2:-1}
shift $(( $# < 2 ? $# : 2 ))
batches=("${@:-32}")
cargo build --release --quiet
export SECVEC_HOME="$root"
echo "| round | batch_size | side | generate (s) | completion tokens/s |"
echo "|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  for batch in "${batches[@]}"; do
    for side in "$commit" this; do
      bin=$([ "$side" = this ] && echo "$root/target/release/secvec" || echo "$old_bin")
      d="$work/run-$side"
      rm -rf "$d" && mkdir -p "$d"
      "$bin" --cache "$d/cache" --out "$d/out" run model/bench/generate_bench.yaml \
        --set "stages.samples.params.batch_size=$batch" --json > "$d/events" 2> "$d/log"
      seconds=$(python3 -c "import json,sys; print(next(e['seconds'] for e in map(json.loads, open(sys.argv[1])) if e.get('event') == 'finished' and e['stage'] == 'samples'))" "$d/events")
      tokens=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['rows'][0]; print(r['samples'] * r['mean_completion_tokens'])" "$d/out/generate-bench/samples/results.json")
      printf "| %s | %s | %s | %.1f | %.0f |\n" "$round" "$batch" "$side" "$seconds" "$(echo "$tokens / $seconds" | bc -l)"
    done
  done
done
