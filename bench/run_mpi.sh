#!/usr/bin/env bash
# Comm ping-pong under mpiexec -n 2 (Open MPI): raw MPI_Send/MPI_Recv, parx buffers and parx
# objects (one binary, alternating), and mpi4py lowercase/uppercase (/usr/bin/python3), run
# alternately `reps` times; medians; prints a Markdown table.
#   bash bench/run_mpi.sh [repetitions]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench --target bench_mpi_pingpong >/dev/null
bin=./build/bench/bench/bench_mpi_pingpong
out=build/bench/mpi_results.txt
: >"$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for ((r = 1; r <= reps; r++)); do
  mpiexec -n 2 "$bin" 5 >>"$out"
  mpiexec -n 2 /usr/bin/python3 bench/py_mpi_pingpong.py 5 >>"$out"
done
/usr/bin/python3 - "$out" "$reps" <<'PY'
import os, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    p = line.split()
    if not p or p[0] != "pingpong":
        continue
    n = int(p[2])
    for k in range(3, len(p), 2):
        vals.setdefault((n, p[k]), []).append(float(p[k + 1]))
m = {k: statistics.median(v) for k, v in vals.items()}
sizes = sorted({n for n, _ in m})
print(f"medians of {sys.argv[2]} runs (each the median of 5 rounds); one-way latency in µs; "
      f"mpiexec -n 2, Open MPI shared memory; {os.cpu_count()} cores; no pinning\n")
print("| message | raw MPI | parx buffers | buffers / raw | parx objects | objects / raw | mpi4py upper | mpi4py lower |")
print("|---|---|---|---|---|---|---|---|")
label = lambda n: f"{n} B" if n < 1024 else (f"{n >> 10} KiB" if n < 1 << 20 else f"{n >> 20} MiB")
for n in sizes:
    raw, b, o = m[(n, "raw_us")], m[(n, "parx_buffer_us")], m[(n, "parx_object_us")]
    print(f"| {label(n)} | {raw:.2f} | {b:.2f} | {b / raw:.2f} | {o:.2f} | {o / raw:.2f} | "
          f"{m[(n, 'mpi4py_upper_us')]:.2f} | {m[(n, 'mpi4py_lower_us')]:.2f} |")
PY
