// A 20-line ProcessPool program: what including parx/process_pool.hpp costs to compile.
#include <parx/init.hpp>
#include <parx/process_pool.hpp>
#include <parx/range.hpp>

#include <cmath>
#include <cstdio>
#include <numeric>

double simulate(int seed) {
  double x = seed;
  for (int i = 0; i < 1000; ++i)
    x = std::sin(x) + 1.0;
  return x;
}
PARX_REMOTE(simulate);

int main(int argc, char** argv) {
  parx::init(argc, argv);
  parx::ProcessPool pool;
  const std::vector<double> ys = pool.map(simulate, parx::range(10'000));
  std::printf("%f\n", std::accumulate(ys.begin(), ys.end(), 0.0));
}
