// parx::Queue between two processes: small messages (an 8-byte integer) and 1 MiB messages,
// producer process -> consumer (main). Prints one line per case; bench/run_ipc.sh runs it beside
// Python's multiprocessing.Queue, SimpleQueue and Pipe (bench/py_ipc.py) and computes ratios.
#include <parx/parx.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

void put_small(parx::Queue<long> q, long n) {
  for (long i = 0; i < n; ++i)
    q.put(i);
}
void put_big(parx::Queue<std::vector<std::uint8_t>> q, long n) {
  std::vector<std::uint8_t> payload(1 << 20, 7);
  for (long i = 0; i < n; ++i)
    q.put(payload);
}
PARX_REMOTE(put_small);
PARX_REMOTE(put_big);

int main(int argc, char** argv) {
  parx::init(argc, argv);
  {
    const long n = 500'000;
    parx::Queue<long> q;
    parx::Process p(put_small, q, n);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    long sum = 0;
    for (long i = 0; i < n; ++i)
      sum += q.get();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.join();
    std::printf("parx_queue_small us_per_msg %.4f (sum %ld)\n", s / n * 1e6, sum);
  }
  {
    const long n = 2000;
    parx::Queue<std::vector<std::uint8_t>> q;  // default capacity
    parx::Process p(put_big, q, n);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    std::size_t bytes = 0;
    for (long i = 0; i < n; ++i)
      bytes += q.get().size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.join();
    std::printf("parx_queue_1mib GB_per_s %.3f us_per_msg %.1f\n",
                static_cast<double>(bytes) / s / 1e9, s / n * 1e6);
  }
}
