// Built against an installed parx (CMake package and pkg-config): proves the install is usable,
// including the parts of libparx.a that pull in its dependencies (a ClusterPool links zstd and
// MPI, every pool cpp-httplib).
#include <parx/parx.hpp>

#include <cstdio>
#include <numeric>

namespace {
long triple(long x) {
  return 3 * x;
}
PARX_REMOTE(triple);
}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  parx::ThreadPool pool(2);
  long sum = pool.parallel_reduce(
      0L, 1000L, 0L, [](long i) { return i; }, [](long a, long b) { return a + b; });
  parx::ClusterPool cluster({.workers_per_rank = 2});  // no launcher: this machine alone
  const auto ys = cluster.map(triple, parx::range(1000L));
  const long tripled = std::accumulate(ys.begin(), ys.end(), 0L);
  std::printf("sum=%ld tripled=%ld\n", sum, tripled);
  return sum == 499500 && tripled == 3 * 499500 ? 0 : 1;
}
