#!/usr/bin/env bash
# Builds the benchmarks (release, with oneTBB and OpenMP peers) and measures every benchmark in a
# process of its own, repetitions alternating across benchmarks (idle threads of one runtime —
# OpenMP and TBB workers spin after a region — would otherwise slow the next benchmark in the same
# process). Prints medians and parx-vs-peer ratios as Markdown.
#   bash bench/run.sh [repetitions]      (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-7}"
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench >/dev/null
bin=./build/bench/bench/bench_thread_pool
dir=build/bench/results
rm -rf "$dir" && mkdir -p "$dir"
mapfile -t names < <("$bin" --benchmark_list_tests | sed 's|/real_time$||')
for ((r = 1; r <= reps; r++)); do
  for n in "${names[@]}"; do
    safe=$(echo "$n" | tr '/:' '__')
    "$bin" --benchmark_filter="^${n}(/real_time)?\$" --benchmark_min_time=0.2 \
      --benchmark_format=json >"$dir/${safe}.${r}.json" 2>/dev/null
  done
done
/usr/bin/python3 bench/ratios.py "$dir"
