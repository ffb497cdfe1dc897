"""Python's process pools on the patterns of bench_process_pool.cpp: multiprocessing.Pool
(chunksize 1 and default), concurrent.futures.ProcessPoolExecutor and joblib (loky), each with
one worker per core. Prints "case key value" lines."""
import concurrent.futures as cf
import multiprocessing as mp
import os
import time

import joblib


def tiny(x):
    return x * x


def tiny2(x, y):
    return x * y


def cpu_task(seed):
    # About as long as the C++ cpu_task is in C++ would be far too long here; this is the same
    # loop shape, shorter, and only Python's own speedup over serial Python is compared.
    x = float(seed)
    acc = 0.0
    for _ in range(600_000):
        x = x * 1.0000001 + 0.5
        if x > 1e6:
            x -= 1e6
        acc += x * 1e-9
    return acc


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    cores = os.cpu_count()
    with mp.Pool(cores) as pool:
        for i in range(200):
            pool.apply(tiny, (i,))
        n = 5000
        s = timed(lambda: [pool.apply(tiny, (i,)) for i in range(n)])
        print(f"py_pool_roundtrip us_per_task {s / n * 1e6:.3f}")
        n = 200_000
        s = timed(lambda: pool.map(tiny, range(n), chunksize=1))
        print(f"py_pool_map_chunk1 us_per_task {s / n * 1e6:.4f} tasks_per_s {n / s:.0f}")
        n = 2_000_000
        s = timed(lambda: pool.map(tiny, range(n)))
        print(f"py_pool_map_default us_per_task {s / n * 1e6:.5f} tasks_per_s {n / s:.0f}")
        args = [(i, i) for i in range(n)]
        s = timed(lambda: pool.starmap(tiny2, args))
        print(f"py_pool_starmap_default us_per_task {s / n * 1e6:.5f} tasks_per_s {n / s:.0f}")
        tasks = 12 * cores
        serial = timed(lambda: [cpu_task(i) for i in range(tasks)])
        par = timed(lambda: pool.map(cpu_task, range(tasks)))
        print(f"py_pool_cpu serial_s {serial:.4f} pool_s {par:.4f} speedup {serial / par:.3f} "
              f"per_core {serial / par / cores:.3f}")
    with cf.ProcessPoolExecutor(cores) as ex:
        list(ex.map(tiny, range(200)))
        n = 5000
        s = timed(lambda: [ex.submit(tiny, i).result() for i in range(n)])
        print(f"py_executor_roundtrip us_per_task {s / n * 1e6:.3f}")
        n = 50_000
        s = timed(lambda: list(ex.map(tiny, range(n))))
        print(f"py_executor_map us_per_task {s / n * 1e6:.4f} tasks_per_s {n / s:.0f}")
        n = 1_000_000
        s = timed(lambda: list(ex.map(tiny, range(n), chunksize=10_000)))
        print(f"py_executor_map_chunked us_per_task {s / n * 1e6:.5f} tasks_per_s {n / s:.0f}")
    with joblib.Parallel(n_jobs=cores) as par:
        par(joblib.delayed(tiny)(i) for i in range(200))
        n = 500_000
        s = timed(lambda: par(joblib.delayed(tiny)(i) for i in range(n)))
        print(f"py_joblib us_per_task {s / n * 1e6:.4f} tasks_per_s {n / s:.0f}")


if __name__ == "__main__":
    main()
