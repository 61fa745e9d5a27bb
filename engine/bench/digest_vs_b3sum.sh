#!/usr/bin/env bash
# Hashing a 2 GiB artifact: `secvec digest` (blake3, memory-mapped, all cores) vs b3sum (the
# BLAKE3 team's CLI, also memory-mapped and multi-threaded) and md5sum, on a file already in the
# page cache. Usage: engine/bench/digest_vs_b3sum.sh [SIZE_MIB]
# Installs b3sum into bench-work/b3sum (crates.io).
set -euo pipefail
mib=${1:-2048}
root=$(cd "$(dirname "$0")/../.." && pwd)
work="$root/bench-work/hash"
mkdir -p "$work"
source "$root/scripts/env.sh"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
secvec="$root/target/release/secvec"
b3sum="$root/bench-work/b3sum/bin/b3sum"
[ -x "$b3sum" ] || cargo install --quiet --locked --root "$root/bench-work/b3sum" b3sum@1.8.7
f="$work/blob"
[ "$(stat -c %s "$f" 2>/dev/null || echo 0)" = $((mib << 20)) ] || head -c $((mib << 20)) /dev/urandom > "$f"
cat "$f" > /dev/null
best() { # best of 3 wall-clock seconds
  local b=999999
  for _ in 1 2 3; do
    local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N)
    b=$(echo "t=$e - $s; if (t < $b) t else $b" | bc -l)
  done
  printf '%.3f' "$b"
}
s=$(best "$secvec" digest "$f")
b=$(best "$b3sum" "$f")
m=$(best md5sum "$f")
gb=$(echo "$mib * 1048576 / 1000000000" | bc -l)
echo "| tool ($mib MiB, page cache warm, best of 3) | seconds | GB/s |"
echo "|---|---|---|"
echo "| secvec digest (blake3) | $s | $(echo "$gb / $s" | bc -l | xargs printf '%.2f') |"
echo "| b3sum $("$b3sum" --version | awk '{print $2}') | $b | $(echo "$gb / $b" | bc -l | xargs printf '%.2f') |"
echo "| md5sum | $m | $(echo "$gb / $m" | bc -l | xargs printf '%.2f') |"
echo "| secvec / b3sum time | $(echo "$s / $b" | bc -l | xargs printf '%.2f')x | |"
