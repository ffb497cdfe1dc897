// ProcessPool on the patterns of bench/py_pool.py (Python's multiprocessing.Pool,
// ProcessPoolExecutor and joblib): single-task round trip, tiny tasks batched, tiny tasks one per
// message, and a CPU-bound sweep. Prints "case key value" lines; bench/run_pool.sh takes medians.
#include <chrono>
#include <cstdio>
#include <thread>
#include <tuple>
#include <vector>

#include <parx/parx.hpp>

int tiny(int x) {
  return x * x;
}
PARX_REMOTE(tiny);

// Two arguments: no packed form, every item is encoded on its own.
int tiny2(int x, int y) {
  return x * y;
}
PARX_REMOTE(tiny2);

// About 40 ms of floating-point work on this class of machine.
double cpu_task(int seed) {
  double x = seed, acc = 0;
  for (int i = 0; i < 12'000'000; ++i) {
    x = x * 1.0000001 + 0.5;
    if (x > 1e6) x -= 1e6;
    acc += x * 1e-9;
  }
  return acc;
}
PARX_REMOTE(cpu_task);

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const std::size_t cores = std::thread::hardware_concurrency();
  parx::ProcessPool pool(cores);

  // Round trip: one task at a time, submit then wait.
  for (int i = 0; i < 2000; ++i)
    pool.submit(tiny, i).get();
  {
    const int n = 20'000;
    const auto t0 = std::chrono::steady_clock::now();
    long sum = 0;
    for (int i = 0; i < n; ++i)
      sum += pool.submit(tiny, i).get();
    const double s = seconds_since(t0);
    std::printf("parx_roundtrip us_per_task %.3f check %ld\n", s / n * 1e6, sum % 7);
  }
  // Tiny tasks, automatic batching.
  {
    const int n = 4'000'000;
    parx::MapStats st;
    const auto t0 = std::chrono::steady_clock::now();
    auto ys = pool.map(tiny, parx::range(n), {.stats = &st});
    const double s = seconds_since(t0);
    std::printf("parx_map_auto us_per_task %.5f tasks_per_s %.0f chunksize %zu check %d\n",
                s / n * 1e6, n / s, st.chunksize, ys[12345] == 12345 * 12345);
  }
  // Tiny tasks of two arguments (encoded items), automatic batching (Pool.starmap).
  {
    const int n = 2'000'000;
    std::vector<std::tuple<int, int>> args;
    args.reserve(n);
    for (int i = 0; i < n; ++i)
      args.emplace_back(i, i);
    const auto t0 = std::chrono::steady_clock::now();
    auto ys = pool.starmap(tiny2, args);
    const double s = seconds_since(t0);
    std::printf("parx_starmap_auto us_per_task %.5f tasks_per_s %.0f check %d\n", s / n * 1e6,
                n / s, ys[12345] == 12345 * 12345);
  }
  // Tiny tasks, one per message (Pool.map(chunksize=1) territory).
  {
    const int n = 200'000;
    const auto t0 = std::chrono::steady_clock::now();
    auto ys = pool.map(tiny, parx::range(n), {.chunksize = 1});
    const double s = seconds_since(t0);
    std::printf("parx_map_chunk1 us_per_task %.4f tasks_per_s %.0f check %d\n", s / n * 1e6, n / s,
                ys[777] == 777 * 777);
  }
  // CPU-bound: serial in this process, then on the pool.
  {
    const int tasks = static_cast<int>(12 * cores);
    auto t0 = std::chrono::steady_clock::now();
    double serial_sum = 0;
    for (int i = 0; i < tasks; ++i)
      serial_sum += cpu_task(i);
    const double serial = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    auto ys = pool.map(cpu_task, parx::range(tasks));
    const double par = seconds_since(t0);
    double sum = 0;
    for (double y : ys)
      sum += y;
    std::printf("parx_cpu serial_s %.4f pool_s %.4f speedup %.3f per_core %.3f check %d\n", serial,
                par, serial / par, serial / par / static_cast<double>(cores),
                std::abs(sum - serial_sum) < 1e-6 * std::abs(serial_sum));
  }
  return 0;
}
