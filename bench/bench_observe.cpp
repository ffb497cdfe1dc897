// The cost of observation: the same maps with nothing listening, with a progress bar, and with a
// trace being recorded, on a ThreadPool and a ProcessPool. Prints medians of `runs` alternating
// runs and the ratio of each observed variant to the unobserved one (1.00 = free). Then the cost
// of one event alone: emitted by 1 and 2 threads at once to an empty listener and into a
// TraceRecorder.
//
//   bench_observe [runs] 2>/dev/null      (the progress bar's plain lines go to stderr)
#include <parx/parx.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

long empty_task(long x) {
  return x;
}
PARX_REMOTE(empty_task);

long ten_us(long x) {  // ~10 µs of work
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(10);
  long acc = x;
  while (std::chrono::steady_clock::now() < end)
    acc = acc * 6364136223846793005L + 1;
  return acc;
}
PARX_REMOTE(ten_us);

namespace {

enum class Mode { None, Progress, Trace };
const char* mode_name(Mode m) {
  return m == Mode::None ? "nothing listening" : m == Mode::Progress ? "progress on" : "tracing on";
}

template <class Run>
double seconds(Mode m, Run&& run) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "parx-bench-observe.json").string();
  std::unique_ptr<parx::observe::TraceRecorder> rec;
  if (m == Mode::Trace) rec = std::make_unique<parx::observe::TraceRecorder>(path);
  const auto t0 = std::chrono::steady_clock::now();
  run(parx::MapOptions{.progress = m == Mode::Progress});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  rec.reset();  // writing the file is not part of the run
  std::filesystem::remove(path);
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void measure(const char* what, std::size_t items, int runs,
             const std::function<void(const parx::MapOptions&)>& run) {
  const Mode modes[] = {Mode::None, Mode::Progress, Mode::Trace};
  std::vector<double> t[3];
  run({});  // warm-up
  for (int r = 0; r < runs; ++r)
    for (int m = 0; m < 3; ++m)
      t[m].push_back(seconds(modes[m], run));
  const double base = median(t[0]);
  for (int m = 0; m < 3; ++m) {
    const double s = median(t[m]);
    std::printf("%-44s %-18s %10.2f M items/s   %.3f of nothing-listening\n", what,
                mode_name(modes[m]), static_cast<double>(items) / s / 1e6, base / s);
  }
}

// Nanoseconds per event, each of `threads` threads emitting `n` task events.
double emit_ns(int threads, int n) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int w = 0; w < threads; ++w)
    ts.emplace_back([w, n] {
      for (int i = 0; i < n; ++i) {
        parx::observe::Event e{parx::observe::EventKind::TaskStarted};
        e.executor_id = 1;
        e.executor_kind = "thread";
        e.task_id = static_cast<std::uint64_t>(i);
        e.worker = w;
        e.name = "empty_task";
        parx::observe::emit(e);
      }
    });
  for (auto& t : ts)
    t.join();
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
         n;
}

void measure_events(int threads, int runs) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "parx-bench-observe-events.json").string();
  std::vector<double> empty, traced;
  for (int r = 0; r < runs; ++r) {
    {
      auto sub = parx::observe::subscribe([](const parx::observe::Event&) {});
      empty.push_back(emit_ns(threads, 1'000'000));
    }
    parx::observe::TraceRecorder rec(path);
    traced.push_back(emit_ns(threads, 1'000'000));
    rec.discard();  // writing is not measured
  }
  std::printf(
      "emit 10^6 events on each of %d thread(s)   %6.1f ns/event to an empty listener, "
      "%6.1f ns/event into a TraceRecorder\n",
      threads, median(empty), median(traced));
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const int runs = argc > 1 ? std::atoi(argv[1]) : 5;
  std::vector<long> million(1'000'000), twenty_k(20'000);
  for (std::size_t i = 0; i < million.size(); ++i)
    million[i] = static_cast<long>(i);
  for (std::size_t i = 0; i < twenty_k.size(); ++i)
    twenty_k[i] = static_cast<long>(i);
  {
    parx::ThreadPool pool;
    measure("ThreadPool map, 10^6 empty tasks", million.size(), runs,
            [&](const parx::MapOptions& o) { (void)pool.map(empty_task, million, o); });
    measure("ThreadPool map, 2*10^4 tasks of 10 us", twenty_k.size(), runs,
            [&](const parx::MapOptions& o) { (void)pool.map(ten_us, twenty_k, o); });
    // 10^5 individually submitted tasks of `fn`, then every result.
    auto submit_all = [&pool](long (*fn)(long)) {
      return [&pool, fn](const parx::MapOptions&) {
        std::vector<parx::Future<long>> fs;
        fs.reserve(100'000);
        for (long i = 0; i < 100'000; ++i)
          fs.push_back(pool.submit(fn, i));
        for (auto& f : fs)
          (void)f.get();
      };
    };
    measure("ThreadPool submit, 10^5 empty tasks", 100'000, runs, submit_all(empty_task));
    measure("ThreadPool submit, 10^5 tasks of 10 us", 100'000, runs, submit_all(ten_us));
  }
  {
    parx::ProcessPool pool;
    measure("ProcessPool map, 10^6 empty tasks", million.size(), runs,
            [&](const parx::MapOptions& o) { (void)pool.map(empty_task, million, o); });
    measure("ProcessPool map, 2*10^4 tasks of 10 us", twenty_k.size(), runs,
            [&](const parx::MapOptions& o) { (void)pool.map(ten_us, twenty_k, o); });
  }
  measure_events(1, runs);
  measure_events(2, runs);
  std::printf("(%d alternating runs, medians; %u cores)\n", runs,
              std::thread::hardware_concurrency());
}
