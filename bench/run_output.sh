#!/usr/bin/env bash
# The cost of relaying worker output (parx::Output): the ProcessPool and ClusterPool round trips
# with output relayed (`lines`, the default) and inherited (`inherit`, no relay), alternating
# `reps` times, medians. Prints a Markdown table.
#   bash bench/run_output.sh [repetitions]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench --target bench_cluster_pool bench_process_pool >/dev/null
bin=./build/bench/bench
out=build/bench/output_results.txt
: >"$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for ((r = 1; r <= reps; r++)); do
  for mode in inherit lines; do
    PARX_OUTPUT=$mode "$bin/bench_process_pool" 2>/dev/null |
      awk -v m=$mode '/^parx_roundtrip|^parx_map_chunk1/ {print m, $1, $3}' >>"$out"
    PARX_OUTPUT=$mode mpiexec -n 2 --bind-to none -x PARX_OUTPUT "$bin/bench_cluster_pool" 3 \
      2>/dev/null | awk -v m=$mode '$2 == "roundtrip_us" {print m, "cluster_roundtrip", $3}' >>"$out"
  done
done
/usr/bin/python3 - "$out" "$reps" <<'PY'
import os, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    mode, key, v = line.split()
    vals.setdefault((mode, key), []).append(float(v))
m = {k: statistics.median(v) for k, v in vals.items()}
print(f"medians of {sys.argv[2]} alternating runs; {os.cpu_count()} cores; µs, lower is better\n")
print("| measure | inherit (no relay) | lines (relayed) | relayed / inherit |")
print("|---|---|---|---|")
for key, name in (("parx_roundtrip", "ProcessPool submit round trip"),
                  ("parx_map_chunk1", "ProcessPool map, one item per message, per item"),
                  ("cluster_roundtrip", "ClusterPool round trip, task on rank 1")):
    a, b = m[("inherit", key)], m[("lines", key)]
    print(f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f} |")
PY
