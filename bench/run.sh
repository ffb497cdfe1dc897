#!/usr/bin/env bash
# Builds the benchmarks (release, with oneTBB and OpenMP peers), runs them with interleaved
# repetitions, and prints medians and parx-vs-peer ratios as a Markdown table.
#   bash bench/run.sh [repetitions]      (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-7}"
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench >/dev/null
out="build/bench/bench_thread_pool.json"
./build/bench/bench/bench_thread_pool --benchmark_repetitions="$reps" \
  --benchmark_enable_random_interleaving=true --benchmark_min_time=0.2 \
  --benchmark_report_aggregates_only=true --benchmark_format=json >"$out"
/usr/bin/python3 bench/ratios.py "$out"
