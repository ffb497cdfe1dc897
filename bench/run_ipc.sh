#!/usr/bin/env bash
# parx::Queue against Python's multiprocessing Queue, SimpleQueue and Pipe (/usr/bin/python3),
# alternating runs, medians; prints a Markdown table.
#   bash bench/run_ipc.sh [repetitions]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench --target bench_ipc >/dev/null
out=build/bench/ipc_results.txt
: >"$out"
for ((r = 1; r <= reps; r++)); do
  ./build/bench/bench/bench_ipc >>"$out"
  /usr/bin/python3 bench/py_ipc.py >>"$out"
done
/usr/bin/python3 - "$out" <<'PY'
import statistics, sys
vals = {}
for line in open(sys.argv[1]):
    parts = line.split()
    name = parts[0]
    for k, v in zip(parts[1::2], parts[2::2]):
        try:
            x = float(v)
        except ValueError:
            continue
        vals.setdefault((name, k), []).append(x)
m = {k: statistics.median(v) for k, v in vals.items()}
reps = min(len(v) for v in vals.values())
print(f"medians of {reps} alternating runs; producer process -> consumer process; no pinning\n")
print("| case | parx::Queue | peer | ratio (peer time / parx time) |")
print("|---|---|---|---|")
ps = m[("parx_queue_small", "us_per_msg")]
pb = m[("parx_queue_1mib", "us_per_msg")]
for py in ("py_queue", "py_simplequeue", "py_pipe"):
    qs = m[(py + "_small", "us_per_msg")]
    print(f"| small messages, vs {py[3:]} | {ps:.3f} µs/msg | {qs:.2f} µs/msg | {qs / ps:.1f} |")
pp = m[("parx_pipe_small", "us_per_msg")]
print(f"| small messages, parx Pipe vs Python Pipe | {pp:.3f} µs/msg | {m[('py_pipe_small', 'us_per_msg')]:.2f} µs/msg | "
      f"{m[('py_pipe_small', 'us_per_msg')] / pp:.1f} |")
bs = m[("boost_mq_small", "us_per_msg")]
print(f"| small messages, vs Boost.Interprocess message_queue | {ps:.3f} µs/msg | {bs:.3f} µs/msg | {bs / ps:.1f} |")
for py in ("py_queue", "py_simplequeue", "py_pipe"):
    qb = m[(py + "_1mib", "us_per_msg")]
    print(f"| 1 MiB messages, vs {py[3:]} | {m[('parx_queue_1mib', 'GB_per_s')]:.2f} GB/s | "
          f"{m[(py + '_1mib', 'GB_per_s')]:.2f} GB/s | {qb / pb:.1f} |")
ppb = m[("parx_pipe_1mib", "us_per_msg")]
print(f"| 1 MiB messages, parx Pipe vs Python Pipe | {m[('parx_pipe_1mib', 'GB_per_s')]:.2f} GB/s | "
      f"{m[('py_pipe_1mib', 'GB_per_s')]:.2f} GB/s | {m[('py_pipe_1mib', 'us_per_msg')] / ppb:.1f} |")
bb = m[("boost_mq_1mib", "us_per_msg")]
print(f"| 1 MiB messages, vs Boost.Interprocess message_queue | {m[('parx_queue_1mib', 'GB_per_s')]:.2f} GB/s | "
      f"{m[('boost_mq_1mib', 'GB_per_s')]:.2f} GB/s | {bb / pb:.1f} |")
print("\n| lock acquire+release | parx::Lock | Python multiprocessing.Lock | ratio (Python / parx time) |")
print("|---|---|---|---|")
for case in ("uncontended", "contended"):
    pl = m[(f"parx_lock_{case}", "ns_per_pair")]
    yl = m[(f"py_lock_{case}", "ns_per_pair")]
    label = "one process" if case == "uncontended" else "two processes contending"
    print(f"| {label} | {pl:.0f} ns | {yl:.0f} ns | {yl / pl:.1f} |")
PY
