// A 20-line ThreadPool program: what including parx/thread_pool.hpp costs to compile.
#include <parx/range.hpp>
#include <parx/thread_pool.hpp>

#include <cmath>
#include <cstdio>
#include <numeric>

double simulate(int seed) {
  double x = seed;
  for (int i = 0; i < 1000; ++i)
    x = std::sin(x) + 1.0;
  return x;
}

int main() {
  parx::ThreadPool pool;
  const std::vector<double> ys = pool.map(simulate, parx::range(10'000));
  std::printf("%f\n", std::accumulate(ys.begin(), ys.end(), 0.0));
}
