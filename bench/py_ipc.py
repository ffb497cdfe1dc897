"""Python's multiprocessing Queue, SimpleQueue and Pipe on the same patterns as bench_ipc.cpp:
a producer process sending small messages (an int) or 1 MiB messages to the main process."""
import multiprocessing as mp
import time

SMALL_N = 200_000
BIG_N = 1000
MIB = 1 << 20


def put_queue(q, n, big):
    payload = b"x" * MIB
    for i in range(n):
        q.put(payload if big else i)


def send_pipe(conn, n, big):
    payload = b"x" * MIB
    for i in range(n):
        conn.send(payload if big else i)
    conn.close()


def run_queue(cls, n, big):
    q = cls()
    p = mp.Process(target=put_queue, args=(q, n, big))
    t0 = time.perf_counter()
    p.start()
    for _ in range(n):
        q.get()
    dt = time.perf_counter() - t0
    p.join()
    return dt


def run_pipe(n, big):
    recv, send = mp.Pipe(duplex=False)
    p = mp.Process(target=send_pipe, args=(send, n, big))
    t0 = time.perf_counter()
    p.start()
    for _ in range(n):
        recv.recv()
    dt = time.perf_counter() - t0
    p.join()
    return dt


def lock_loop(lock, n):
    for _ in range(n):
        lock.acquire()
        lock.release()


def run_locks():
    lock = mp.Lock()
    n = 1_000_000
    t0 = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    print(f"py_lock_uncontended ns_per_pair {(time.perf_counter() - t0) / n * 1e9:.1f}")
    m = 200_000
    ps = [mp.Process(target=lock_loop, args=(lock, m)) for _ in range(2)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    for p in ps:
        p.join()
    print(f"py_lock_contended ns_per_pair {(time.perf_counter() - t0) / (2 * m) * 1e9:.1f}")


if __name__ == "__main__":
    run_locks()
    for name, fn in (("py_queue", lambda n, b: run_queue(mp.Queue, n, b)),
                     ("py_simplequeue", lambda n, b: run_queue(mp.SimpleQueue, n, b)),
                     ("py_pipe", run_pipe)):
        s = fn(SMALL_N, False)
        print(f"{name}_small us_per_msg {s / SMALL_N * 1e6:.4f}")
        s = fn(BIG_N, True)
        print(f"{name}_1mib GB_per_s {BIG_N * MIB / s / 1e9:.3f} us_per_msg {s / BIG_N * 1e6:.1f}")
