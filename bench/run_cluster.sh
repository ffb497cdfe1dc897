#!/usr/bin/env bash
# ClusterPool against mpi4py.futures under mpiexec -n 2 (Open MPI, shared memory), alternating
# `reps` times, medians: single-task round trip and tiny-task throughput. Then, when network
# namespaces can be made (root), a 16 MiB round trip across two namespace hosts with zstd off
# and automatic, on an unlimited link and on one shaped to 1 Gbit/s. Prints Markdown tables.
#   bash bench/run_cluster.sh [repetitions]     (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench --target bench_cluster_pool bench_cluster_compress >/dev/null
bin=./build/bench/bench
out=build/bench/cluster_results.txt
: >"$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for ((r = 1; r <= reps; r++)); do
  mpiexec -n 2 --bind-to none "$bin/bench_cluster_pool" 3 >>"$out"
  mpiexec -n 2 --bind-to none /usr/bin/python3 -m mpi4py.futures bench/py_cluster_futures.py 3 >>"$out"
done
netns=1
for ((r = 1; r <= reps; r++)); do
  if ! tests/netns/netns_mpirun.sh -k 2 -n 2 -- "$bin/bench_cluster_compress" 3 | sed 's/^compress /compress-unlimited /' >>"$out"; then
    netns=0
    break
  fi
  PARX_NETNS_RATE=1gbit tests/netns/netns_mpirun.sh -k 2 -n 2 -- "$bin/bench_cluster_compress" 3 |
    sed 's/^compress /compress-1gbit /' >>"$out"
done
/usr/bin/python3 - "$out" "$reps" "$netns" <<'PY'
import os, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    p = line.split()
    if len(p) == 3:
        vals.setdefault((p[0], p[1]), []).append(float(p[2]))
    elif len(p) == 4:
        vals.setdefault((p[0], p[1], p[2]), []).append(float(p[3]))
m = {k: statistics.median(v) for k, v in vals.items()}
print(f"medians of {sys.argv[2]} runs; mpiexec -n 2 (Open MPI, shared memory); {os.cpu_count()} cores\n")
print("| measure | parx ClusterPool | mpi4py.futures | parx / mpi4py |")
print("|---|---|---|---|")
rt_p, rt_m = m[("cluster", "roundtrip_us")], m[("mpi4py", "roundtrip_us")]
print(f"| single-task round trip (µs, lower is better) | {rt_p:.1f} | {rt_m:.1f} | {rt_m / rt_p:.1f}x faster |")
for k, name in (("packed_tps", "tiny tasks int -> int, per second"), ("encoded_tps", "tiny tasks of two arguments, per second")):
    a, b = m[("cluster", k)], m[("mpi4py", k)]
    print(f"| {name} | {a / 1e6:.1f} M | {b / 1e6:.2f} M | {a / b:.0f}x |")
if sys.argv[3] == "1":
    print("\n16 MiB argument and 16 MiB result across two network-namespace hosts (TCP), seconds per round trip:\n")
    print("| link | data | zstd off | zstd automatic | speedup |")
    print("|---|---|---|---|---|")
    for link in ("unlimited", "1gbit"):
        for data in ("smooth", "noise"):
            off, auto = m[(f"compress-{link}", data, "never")], m[(f"compress-{link}", data, "automatic")]
            print(f"| {link} | {data} | {off:.3f} | {auto:.3f} | {off / auto:.2f}x |")
PY
