// memory_cache — parx::Memory, the persistent result cache (joblib.Memory): a slow function runs
// once per input; later calls, later runs of the program and other processes read its results
// from disk. Run it twice with the same directory to see the second run start warm:
//   memory_cache /tmp/parx-demo-cache
// Without an argument it uses a fresh temporary directory and removes it at the end.
#include <parx/parx.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

struct Result {
  int seed;
  double energy;
  std::vector<double> trace;
};

int g_ran = 0;  // how many times simulate really ran in this process

Result simulate(int seed, double temperature) {
  ++g_ran;
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the expensive part
  Result r{seed, 0.0, {}};
  double x = 0.1 + 0.8 / (1 + seed);  // a logistic map, nudged by the temperature
  for (int i = 0; i < 16; ++i) {
    x = 3.9 * x * (1 - x) + temperature * 1e-6;
    r.trace.push_back(x);
    r.energy += x;
  }
  return r;
}
PARX_REMOTE(simulate);  // its registered name keys the cache, the same in every run

// Runs the sweep through the cache; prints what ran and how long it took.
double sweep(const parx::Memory& cache, const char* label) {
  const int ran_before = g_ran;
  const auto t0 = std::chrono::steady_clock::now();
  double total = 0;
  for (int seed = 1; seed <= 8; ++seed)
    total += cache.call(simulate, seed, 300.0).energy;
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const int ran = g_ran - ran_before;
  std::printf("%-13s %d ran, %d from the cache, %6.1f ms, total energy %.6f\n", label, ran, 8 - ran,
              ms, total);
  return total;
}

int main(int argc, char** argv) {
  parx::init(argc, argv);
  namespace fs = std::filesystem;
  fs::path dir;
  bool temporary = false;
  if (argc > 1) {
    dir = argv[1];
  } else {
    std::string tmpl = (fs::temp_directory_path() / "parx-memory-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) return 1;
    dir = tmpl;
    temporary = true;
  }

  {
    parx::Memory cache(dir);
    std::printf("cache directory: %s\n", cache.dir().c_str());
    const double a = sweep(cache, "first pass:");
    const double b = sweep(cache, "second pass:");  // every result read back from disk
    if (a != b) return 1;

    // The user's code changed: a new version ignores every older entry.
    parx::Memory v2(dir, {.version = 2});
    sweep(v2, "version 2:");

    // The same cache as a callable, and for a lambda under a name.
    auto cached = cache.wrap(simulate);
    std::printf("wrapped:      seed 3 energy %.6f (ran %d times in all)\n", cached(3, 300.0).energy,
                g_ran);
    const int n = cache.call(
        "trace_length", [](int seed) { return seed * 16; }, 4);
    std::printf("named lambda: %d\n", n);

    // Keep at most 4 entries, the most recently used.
    cache.reduce_size(0, 4);
    const parx::Memory::Stats s = cache.stats();
    std::printf("stats: %llu hits, %llu misses, %llu evicted; on disk %llu entries, %llu bytes\n",
                static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses),
                static_cast<unsigned long long>(s.evictions),
                static_cast<unsigned long long>(s.entries),
                static_cast<unsigned long long>(s.bytes));
  }
  if (temporary) fs::remove_all(dir);
  return 0;
}
