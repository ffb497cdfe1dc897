# mpi4py.futures peer of bench_cluster_pool.cpp, run as
#   mpiexec -n 2 /usr/bin/python3 -m mpi4py.futures bench/py_cluster_futures.py [rounds]
# (rank 0 runs this script, rank 1 serves as the executor's worker; Debian's python3-mpi4py).
#   roundtrip_us  submit(f, i).result() one after another, mean over 2000 calls
#   packed_tps    map(tiny, range(400_000), chunksize=10_000)   (no packed form: items pickled)
#   encoded_tps   starmap-style map(add, a, b) over 200_000 pairs, chunksize=10_000
# Prints "mpi4py <measure> <median of rounds>".
import statistics
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def tiny(x):
    return x + 1


def add(a, b):
    return a + b


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rt, packed, encoded = [], [], []
    with MPIPoolExecutor() as ex:
        for i in range(200):
            ex.submit(tiny, i).result()
        for _ in range(rounds):
            n = 2000
            t0 = time.perf_counter()
            s = 0
            for i in range(n):
                s += ex.submit(tiny, i).result()
            rt.append((time.perf_counter() - t0) / n * 1e6)
            assert s == n * (n + 1) // 2
            n = 400_000
            t0 = time.perf_counter()
            ys = list(ex.map(tiny, range(n), chunksize=10_000))
            packed.append(n / (time.perf_counter() - t0))
            assert ys[-1] == n
            n = 200_000
            t0 = time.perf_counter()
            zs = list(ex.map(add, range(n), [1] * n, chunksize=10_000))
            encoded.append(n / (time.perf_counter() - t0))
            assert zs[-1] == n
    print(f"mpi4py roundtrip_us {statistics.median(rt):.2f}")
    print(f"mpi4py packed_tps {statistics.median(packed):.0f}")
    print(f"mpi4py encoded_tps {statistics.median(encoded):.0f}")


if __name__ == "__main__":
    main()
