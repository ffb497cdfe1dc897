#!/usr/bin/env bash
# This tree's benchmarks beside another tree's (an older checkout with the bench preset built),
# alternating run by run on the same machine, medians: the ThreadPool (Google Benchmark), the
# ProcessPool, ipc, mpi::Comm ping-pong and ClusterPool round trip and throughput. Prints one
# Markdown table, before (the other tree) and after (this one) side by side.
#   git worktree add /tmp/before <rev> && (cd /tmp/before && cmake --preset bench && cmake --build --preset bench)
#   bash bench/run_before_after.sh /tmp/before [repetitions]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
other="$1"
reps="${2:-5}"
cmake --preset bench >/dev/null
cmake --build --preset bench >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp)
run() {  # tag bin-dir
  local tag=$1 b=$2/build/bench/bench
  "$b/bench_thread_pool" --benchmark_min_time=0.2 --benchmark_format=csv 2>/dev/null |
    sed -n 's/^"\([^"]*\)\/real_time",[0-9]*,\([0-9.e+]*\),.*/gbench \1 ns \2/p' | sed "s/^/$tag /" >>"$out"
  "$b/bench_process_pool" | sed "s/^/$tag /" >>"$out"
  "$b/bench_ipc" | sed "s/^/$tag /" >>"$out"
  mpiexec -n 2 --bind-to none "$b/bench_mpi_pingpong" 5 | sed "s/^/$tag /" >>"$out"
  mpiexec -n 2 --bind-to none "$b/bench_cluster_pool" 3 | sed "s/^/$tag /" >>"$out"
}
for ((r = 1; r <= reps; r++)); do
  run before "$other"
  run after "$PWD"
done
/usr/bin/python3 - "$out" "$reps" <<'PY'
import statistics, sys
vals = {}
def num(s):
    try:
        return float(s)
    except ValueError:
        return None
for line in open(sys.argv[1]):
    t = line.split()
    if len(t) < 3:
        continue
    tag, name, rest = t[0], t[1], t[2:]
    if name == "gbench":
        vals.setdefault((rest[0], "ns"), {}).setdefault(tag, []).append(float(rest[2]))
        continue
    if name == "pingpong":  # pingpong bytes N raw_us x parx_buffer_us y parx_object_us z
        name = f"pingpong {rest[1]} B"
        rest = rest[2:]
    for k, v in zip(rest[0::2], rest[1::2]):
        x = num(v)
        if x is None or k.startswith("("):
            break
        vals.setdefault((name, k), {}).setdefault(tag, []).append(x)
print(f"medians of {sys.argv[2]} alternating runs of each tree; 2 cores, no pinning\n")
print("| benchmark | measure | before | after | after / before |")
print("|---|---|---|---|---|")
for (name, k), d in vals.items():
    if "before" not in d or "after" not in d or k in ("sum",):
        continue
    b, a = statistics.median(d["before"]), statistics.median(d["after"])
    ratio = a / b if b else float("nan")
    print(f"| {name} | {k} | {b:.4g} | {a:.4g} | {ratio:.2f} |")
PY
rm -f "$out"
