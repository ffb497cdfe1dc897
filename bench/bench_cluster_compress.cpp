// When zstd pays: a 16 MiB argument and its 16 MiB result crossing hosts, with compression off
// and automatic, for compressible and incompressible data (bench/run_cluster.sh runs it across
// two network-namespace hosts, with the link unlimited and shaped to 1 Gbit/s).
// Prints "compress <data> <mode> <median seconds per round trip>".
#include <parx/mpi.hpp>
#include <parx/parx.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

std::vector<double> echo(const std::vector<double>& v) {
  return v;
}
PARX_REMOTE(echo);

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const std::size_t n = std::size_t{2} << 20;  // 16 MiB of doubles
  std::vector<double> smooth(n), noise(n);
  std::uint64_t x = 88172645463325252ull;
  for (std::size_t i = 0; i < n; ++i) {
    smooth[i] = static_cast<double>(i % 4096) * 0.25;  // gridded measurements: compress well
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    noise[i] = static_cast<double>(x) * 1e-3;  // full-entropy mantissas: do not
  }
  using C = parx::ClusterPool::Compression;
  for (const auto* data : {&smooth, &noise}) {
    for (C mode : {C::never, C::automatic}) {
      parx::ClusterPool pool(
          {.workers_per_rank = 1, .driver_runs_tasks = false, .compression = mode});
      if (!pool.is_driver()) continue;
      std::vector<double> t;
      (void)pool.submit(echo, *data).get();  // warm up
      for (int r = 0; r < rounds; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const auto out = pool.submit(echo, *data).get();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        if (out.size() != n || out[n / 2] != (*data)[n / 2]) std::abort();
      }
      std::sort(t.begin(), t.end());
      std::printf("compress %s %s %.4f\n", data == &smooth ? "smooth" : "noise",
                  mode == C::never ? "never" : "automatic", t[t.size() / 2]);
    }
  }
  return 0;
}
