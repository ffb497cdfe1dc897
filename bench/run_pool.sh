#!/usr/bin/env bash
# ProcessPool against Python's multiprocessing.Pool, ProcessPoolExecutor and joblib
# (/usr/bin/python3, python3-joblib), alternating runs, medians; prints a Markdown table.
#   bash bench/run_pool.sh [repetitions]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-5}"
bash tools/install-deps.sh
cmake --preset bench >/dev/null
cmake --build --preset bench --target bench_process_pool >/dev/null
out=build/bench/pool_results.txt
: >"$out"
for ((r = 1; r <= reps; r++)); do
  ./build/bench/bench/bench_process_pool >>"$out"
  /usr/bin/python3 bench/py_pool.py >>"$out"
done
/usr/bin/python3 - "$out" <<'PY'
import os, statistics, sys
vals = {}
for line in open(sys.argv[1]):
    parts = line.split()
    for k, v in zip(parts[1::2], parts[2::2]):
        try:
            vals.setdefault((parts[0], k), []).append(float(v))
        except ValueError:
            pass
m = {k: statistics.median(v) for k, v in vals.items()}
reps = min(len(v) for v in vals.values())
print(f"medians of {reps} alternating runs; {os.cpu_count()} workers (one per core); no pinning\n")
print("| case | parx::ProcessPool | peer | ratio (peer time / parx time) |")
print("|---|---|---|---|")
rt = m[("parx_roundtrip", "us_per_task")]
for peer, label in (("py_pool_roundtrip", "Pool.apply"), ("py_executor_roundtrip", "ProcessPoolExecutor.submit().result()")):
    p = m[(peer, "us_per_task")]
    print(f"| single-task round trip, vs {label} | {rt:.2f} µs | {p:.1f} µs | {p / rt:.1f} |")
c1 = m[("parx_map_chunk1", "us_per_task")]
for peer, label in (("py_pool_map_chunk1", "Pool.map(chunksize=1)"), ("py_executor_map", "ProcessPoolExecutor.map (chunksize 1)")):
    p = m[(peer, "us_per_task")]
    print(f"| tiny tasks one per message, vs {label} | {c1:.2f} µs/task | {p:.2f} µs/task | {p / c1:.1f} |")
au = m[("parx_map_auto", "us_per_task")]
best = None
for peer, label in (("py_pool_map_default", "Pool.map (default chunksize)"),
                    ("py_executor_map_chunked", "ProcessPoolExecutor.map(chunksize=10000)"),
                    ("py_joblib", "joblib.Parallel (auto batching)"),
                    ("py_pool_map_chunk1", "Pool.map(chunksize=1)")):
    p = m[(peer, "us_per_task")]
    best = p if best is None else min(best, p)
    print(f"| tiny tasks batched (parx automatic), vs {label} | {au * 1e3:.1f} ns/task | {p * 1e3:.0f} ns/task | {p / au:.1f} |")
print(f"| tiny tasks batched, vs Python's best | {au * 1e3:.1f} ns/task | {best * 1e3:.0f} ns/task | {best / au:.1f} |")
sa = m[("parx_starmap_auto", "us_per_task")]
ps = m[("py_pool_starmap_default", "us_per_task")]
print(f"| tiny tasks of two arguments (encoded items, no packed form), vs Pool.starmap (default chunksize) | {sa * 1e3:.1f} ns/task | {ps * 1e3:.0f} ns/task | {ps / sa:.1f} |")
print(f"\nparx automatic chunk size at the end of the 4·10⁶-item map: {m[('parx_map_auto', 'chunksize')]:.0f}\n")
print("| CPU-bound sweep (12 tasks per core) | serial | pool | speedup | speedup / cores |")
print("|---|---|---|---|---|")
for name, label in (("parx_cpu", "parx::ProcessPool (40 ms C++ tasks)"), ("py_pool_cpu", "multiprocessing.Pool (Python tasks)")):
    print(f"| {label} | {m[(name, 'serial_s')]:.2f} s | {m[(name, 'pool_s')]:.2f} s | {m[(name, 'speedup')]:.2f} | {m[(name, 'per_core')]:.3f} |")
PY
