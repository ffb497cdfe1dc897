"""Reads one Google Benchmark JSON file per (benchmark, repetition) from a folder and prints
parx-vs-peer ratios of the medians."""
import glob
import json
import os
import statistics
import sys

times = {}
ctx = {}
for path in glob.glob(os.path.join(sys.argv[1], "*.json")):
    data = json.load(open(path))
    ctx = data["context"]
    for b in data["benchmarks"]:
        name = b["run_name"].replace("/real_time", "")
        unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        times.setdefault(name, []).append(b["real_time"] * unit)
med = {k: statistics.median(v) for k, v in times.items()}
reps = min(len(v) for v in times.values())

cores = ctx.get("num_cpus", os.cpu_count())
print(f"machine: {cores} cores, {ctx.get('mhz_per_cpu', '?')} MHz; no thread pinning; each benchmark "
      f"in its own process; medians of {reps} repetitions alternating across benchmarks\n")


def t(name):
    return med[name]


rows = []
tasks = 10_000
tg_full = [k for k in med if k.startswith("EmptyTasks_parx_TaskGroup/workers:")]
for k in sorted(tg_full, reverse=True):
    w = k.split(":")[1]
    rows.append((f"empty tasks, TaskGroup.run ({w} workers + caller) vs tbb::task_group::run",
                 f"{t(k) / tasks * 1e9:.0f} ns/task", f"{t('EmptyTasks_tbb') / tasks * 1e9:.0f} ns/task",
                 t("EmptyTasks_tbb") / t(k)))
rows.append(("empty tasks, submit() with futures vs tbb::task_group::run",
             f"{t('EmptyTasks_parx_submit') / tasks * 1e9:.0f} ns/task",
             f"{t('EmptyTasks_tbb') / tasks * 1e9:.0f} ns/task",
             t("EmptyTasks_tbb") / t("EmptyTasks_parx_submit")))
rows.append(("empty tasks, TaskGroup.run vs OpenMP task", f"{t(sorted(tg_full)[-1]) / tasks * 1e9:.0f} ns/task",
             f"{t('EmptyTasks_omp') / tasks * 1e9:.0f} ns/task", t("EmptyTasks_omp") / t(sorted(tg_full)[-1])))
for peer in ("tbb", "omp"):
    rows.append((f"fork-join over {cores} workers, vs {peer}", f"{t('ForkJoin_parx') * 1e9:.0f} ns",
                 f"{t('ForkJoin_' + peer) * 1e9:.0f} ns", t(f"ForkJoin_{peer}") / t("ForkJoin_parx")))
    rows.append((f"fork-join with 20 µs of work per worker, vs {peer}", f"{t('ForkJoinWork_parx') * 1e6:.1f} µs",
                 f"{t('ForkJoinWork_' + peer) * 1e6:.1f} µs", t(f"ForkJoinWork_{peer}") / t("ForkJoinWork_parx")))
    rows.append((f"parallel_for 10^6 trivial iterations, vs {peer}", f"{t('ParallelFor_parx') * 1e6:.0f} µs",
                 f"{t('ParallelFor_' + peer) * 1e6:.0f} µs", t(f"ParallelFor_{peer}") / t("ParallelFor_parx")))
rows.append(("parallel_for 10^6, per-index body vs tbb", f"{t('ParallelFor_parx_per_index') * 1e6:.0f} µs",
             f"{t('ParallelFor_tbb') * 1e6:.0f} µs", t("ParallelFor_tbb") / t("ParallelFor_parx_per_index")))

print("| what | parx | peer | ratio (peer time / parx time; ≥ 1 means parx is faster) |")
print("|---|---|---|---|")
for what, a, b, r in rows:
    print(f"| {what} | {a} | {b} | {r:.2f} |")

print("\n| compute-bound sweep (256 tasks) | seconds | speedup over serial | speedup / cores |")
print("|---|---|---|---|")
s = t("Compute_serial")
for k, label in (("Compute_serial", "serial"), ("Compute_parx_map", "parx ThreadPool::map"),
                 ("Compute_tbb", "oneTBB parallel_for"), ("Compute_omp", "OpenMP dynamic")):
    print(f"| {label} | {t(k):.4f} | {s / t(k):.2f} | {s / t(k) / cores:.2f} |")
