"""mpi4py ping-pong between ranks 0 and 1, lowercase (pickled objects) and uppercase (buffers),
at 8 B, 1 KiB, 1 MiB and 16 MiB: the Python peer of bench_mpi_pingpong.
   mpiexec -n 2 /usr/bin/python3 bench/py_mpi_pingpong.py [rounds]"""
import sys
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7


def iterations_for(n):
    if n <= 1024:
        return 20000
    if n <= 1 << 20:
        return 400
    return 40


def lower(obj, iters):
    for _ in range(iters):
        if rank == 0:
            comm.send(obj, 1)
            obj = comm.recv(source=1)
        else:
            obj = comm.recv(source=0)
            comm.send(obj, 0)


def upper(buf, iters):
    for _ in range(iters):
        if rank == 0:
            comm.Send(buf, 1)
            comm.Recv(buf, 1)
        else:
            comm.Recv(buf, 0)
            comm.Send(buf, 0)


for n in (8, 1024, 1 << 20, 16 << 20):
    iters = iterations_for(n)
    buf = bytearray(b"x" * n)  # any buffer-protocol object; numpy is not needed
    obj = bytes(n)
    lo, up = [], []
    for _ in range(rounds):
        comm.Barrier()
        t0 = time.perf_counter()
        lower(obj, iters)
        lo.append((time.perf_counter() - t0) / iters / 2 * 1e6)
        comm.Barrier()
        t0 = time.perf_counter()
        upper(buf, iters)
        up.append((time.perf_counter() - t0) / iters / 2 * 1e6)
    if rank == 0:
        print(f"pingpong bytes {n} mpi4py_lower_us {sorted(lo)[len(lo) // 2]:.3f} "
              f"mpi4py_upper_us {sorted(up)[len(up) // 2]:.3f}", flush=True)
