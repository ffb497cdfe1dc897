#!/usr/bin/env bash
# What three 20-line programs cost to compile (bench/header_cost/: ThreadPool only, ProcessPool,
# everything through parx.hpp): preprocessed lines, and the median of `reps` compiles to an object
# file at -O2 (g++, no ccache). With a second source tree (an older checkout), both are measured,
# alternating.
#   bash bench/header_cost.sh [repetitions] [other-tree]
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
trees=("$PWD")
if [ -n "${2:-}" ]; then trees+=("$2"); fi
mpi_inc=$(mpicxx --showme:compile 2>/dev/null || echo "-I/usr/lib/x86_64-linux-gnu/openmpi/include")
out=$(mktemp)
for prog in thread_only process_pool everything; do
  src=bench/header_cost/$prog.cpp
  for t in "${trees[@]}"; do
    lines=$(g++ -std=c++20 -E -DASIO_DISABLE_STD_ALIGNED_ALLOC -I"$t/include" $mpi_inc "$src" | wc -l)
    echo "$prog $t lines $lines" >>"$out"
  done
  for ((r = 1; r <= reps; r++)); do
    for t in "${trees[@]}"; do
      s=$(date +%s.%N)
      g++ -std=c++20 -O2 -c -DASIO_DISABLE_STD_ALIGNED_ALLOC -I"$t/include" $mpi_inc "$src" -o /dev/null
      e=$(date +%s.%N)
      echo "$prog $t seconds $(echo "$e - $s" | bc)" >>"$out"
    done
  done
done
/usr/bin/python3 - "$out" "${trees[@]}" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    prog, tree, key, val = line.split()
    rows.setdefault((prog, tree, key), []).append(float(val))
trees = sys.argv[2:]
head = "| program | " + " | ".join(f"lines ({'this tree' if i == 0 else 'other'})" for i in range(len(trees))) + " | " + " | ".join(f"compile s ({'this tree' if i == 0 else 'other'})" for i in range(len(trees))) + " |"
print(head)
print("|" + "---|" * (1 + 2 * len(trees)))
for prog in ("thread_only", "process_pool", "everything"):
    lines = [f"{int(rows[(prog, t, 'lines')][0]):,}" for t in trees]
    secs = [f"{statistics.median(rows[(prog, t, 'seconds')]):.2f}" for t in trees]
    print(f"| {prog} | " + " | ".join(lines) + " | " + " | ".join(secs) + " |")
PY
rm -f "$out"
