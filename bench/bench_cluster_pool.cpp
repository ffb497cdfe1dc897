// ClusterPool under `mpiexec -n 2` (bench/run_cluster.sh): single-task round trip and batched
// throughput of tiny tasks, the figures compared with mpi4py.futures (bench/py_cluster_futures.py).
//
//   roundtrip_us   submit(f, i).get() one after another, task on rank 1 (the driver runs none,
//                  as in mpi4py.futures), mean over 2000 calls; the median of `rounds` rounds
//   packed_tps     map(tiny, range(4'000'000)): int -> int, chunks travel as packed arrays;
//                  every slot of both ranks runs tasks
//   encoded_tps    starmap(add, 1'000'000 tuples): two arguments, each item encoded
// Prints one line per measure: "cluster <measure> <median>".
#include <parx/mpi.hpp>
#include <parx/parx.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <vector>

long tiny(long x) {
  return x + 1;
}
PARX_REMOTE(tiny);

long add(long a, long b) {
  return a + b;
}
PARX_REMOTE(add);

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  std::vector<double> rt, packed, encoded;
  {
    parx::ClusterPool pool({.workers_per_rank = 1, .driver_runs_tasks = false});
    if (pool.is_driver()) {
      for (int i = 0; i < 200; ++i)
        (void)pool.submit(tiny, static_cast<long>(i)).get();  // warm up
      for (int r = 0; r < rounds; ++r) {
        const int n = 2000;
        const double t0 = now_s();
        long sum = 0;
        for (int i = 0; i < n; ++i)
          sum += pool.submit(tiny, static_cast<long>(i)).get();
        rt.push_back((now_s() - t0) / n * 1e6);
        if (sum != static_cast<long>(n) * (n + 1) / 2) std::abort();
      }
    }
  }
  {
    parx::ClusterPool pool;
    if (pool.is_driver()) {
      std::vector<std::tuple<long, long>> pairs;
      for (long i = 0; i < 1'000'000; ++i)
        pairs.emplace_back(i, 1);
      (void)pool.map(tiny, parx::range(200'000L));  // warm up
      for (int r = 0; r < rounds; ++r) {
        const long n = 4'000'000;
        double t0 = now_s();
        const auto ys = pool.map(tiny, parx::range(n));
        packed.push_back(static_cast<double>(n) / (now_s() - t0));
        if (ys.back() != n) std::abort();
        t0 = now_s();
        const auto zs = pool.starmap(add, pairs);
        encoded.push_back(static_cast<double>(pairs.size()) / (now_s() - t0));
        if (zs.back() != 1'000'000) std::abort();
      }
    }
  }
  if (parx::mpi::rank() == 0) {
    std::printf("cluster roundtrip_us %.2f\n", median(rt));
    std::printf("cluster packed_tps %.0f\n", median(packed));
    std::printf("cluster encoded_tps %.0f\n", median(encoded));
  }
  return 0;
}
