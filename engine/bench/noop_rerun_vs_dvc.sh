#!/usr/bin/env bash
# No-op rerun of a generated manifest of PAIRS `pair` stages each feeding a `report` (2 x PAIRS
# stages): secvec vs `dvc repro` on the equivalent dvc.yaml, plus secvec's peak RSS for that
# plan. With BLOB_MIB, the data folder every stage reads also holds a file of that size.
# Usage: engine/bench/noop_rerun_vs_dvc.sh [REPS] [PAIRS] [BLOB_MIB]; NO_DVC=1 times secvec only.
# Installs DVC into bench-work/venv (Python registry). Prints a Markdown table.
set -euo pipefail
reps=${1:-5}
pairs=${2:-500}
blob_mib=${3:-0}
root=$(cd "$(dirname "$0")/../.." && pwd)
work="$root/bench-work/noop"
rm -rf "$work" && mkdir -p "$work"
source "$root/scripts/env.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
secvec="$root/target/release/secvec"
if [ ! -x "$root/bench-work/venv/bin/dvc" ]; then
  python3 -m venv "$root/bench-work/venv"
  "$root/bench-work/venv/bin/pip" install --quiet dvc==3.67.1
fi
dvc="$root/bench-work/venv/bin/dvc"

# Pair stages over the quickstart data (distinct params, so distinct keys), each feeding a report.
cp -r "$root/manifests/data/quickstart-pairs" "$work/data"
if [ "$blob_mib" -gt 0 ]; then
  blob="$root/bench-work/blob-$blob_mib"
  [ -f "$blob" ] || head -c $((blob_mib << 20)) /dev/urandom > "$blob"
  cp "$blob" "$work/data/blob.bin"
fi
{
  echo "name: noop-bench"
  echo "stages:"
  for i in $(seq 1 "$pairs"); do
    echo "  p$i:"
    echo "    kind: pair"
    echo "    inputs: {data: {path: data}}"
    echo "    params: {instruction: \"variant $i {func_name}\"}"
    echo "  r$i:"
    echo "    kind: report"
    echo "    inputs: {results: p$i}"
    echo "    params: {title: r$i, tables: [{title: t, rows: [cwe], columns: [pairs], aggregate: sum}]}"
  done
} > "$work/secvec.yaml"
# The same DAG for DVC: each stage copies its input to its output.
{
  echo "stages:"
  for i in $(seq 1 "$pairs"); do
    echo "  p$i:"
    echo "    cmd: cat data/train/*.jsonl > o/p$i.txt"
    echo "    deps: [data]"
    echo "    outs: [o/p$i.txt]"
    echo "  r$i:"
    echo "    cmd: cp o/p$i.txt o/r$i.txt"
    echo "    deps: [o/p$i.txt]"
    echo "    outs: [o/r$i.txt]"
  done
} > "$work/dvc.yaml"

cd "$work"
mkdir -p o
"$secvec" run secvec.yaml > /dev/null
# The first no-op run stamps what the filling run wrote within the clock's tick.
"$secvec" run secvec.yaml > /dev/null
if [ -z "${NO_DVC:-}" ]; then
  "$dvc" init --no-scm -q
  "$dvc" config core.analytics false
  "$dvc" repro -q > /dev/null 2>&1
fi

time_it() { # prints seconds of the median of $reps runs of "$@"
  local t=()
  for _ in $(seq 1 "$reps"); do
    local s e; s=$(date +%s.%N); "$@" > /dev/null 2>&1; e=$(date +%s.%N)
    t+=("$(echo "$e - $s" | bc -l)")
  done
  printf '%s\n' "${t[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'
}
s=$(time_it "$secvec" run secvec.yaml)
rss=$( { /usr/bin/time -v "$secvec" run secvec.yaml > /dev/null; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
plan_rss=$( { /usr/bin/time -v "$secvec" plan secvec.yaml > /dev/null; } 2>&1 | awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}')
what="$((2 * pairs)) stages"
[ "$blob_mib" -gt 0 ] && what="$what, a $blob_mib MiB file in their input"
echo "| what ($what, all cached, median of $reps) | seconds |"
echo "|---|---|"
echo "| secvec run (no-op) | $s |"
if [ -z "${NO_DVC:-}" ]; then
  d=$(time_it "$dvc" repro)
  echo "| dvc repro (no-op), DVC $("$dvc" version 2>/dev/null | awk '/^DVC version/ {print $3}') | $d |"
  echo "| speed-up | $(echo "$d / $s" | bc -l | xargs printf '%.1f')x |"
fi
echo "| secvec run peak RSS | $((rss / 1024)) MB |"
echo "| secvec plan peak RSS | $((plan_rss / 1024)) MB |"
