// Built against an installed parx (CMake package and pkg-config): proves the install is usable.
#include <parx/parx.hpp>

#include <cstdio>

int main() {
  parx::ThreadPool pool(2);
  long sum = pool.parallel_reduce(
      0L, 1000L, 0L, [](long i) { return i; }, [](long a, long b) { return a + b; });
  std::printf("sum=%ld\n", sum);
  return sum == 499500 ? 0 : 1;
}
