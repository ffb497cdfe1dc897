// ThreadPool benchmarks, each beside the oneTBB and OpenMP version of the same program.
//
//   EmptyTasks/*     submit-to-completion throughput of empty tasks (10'000 per iteration),
//                    from an outside thread, then wait for all (TBB task_group::run).
//   ForkJoin/*       latency of one fork-join over every worker (a parallel loop of W empty items).
//   ParallelFor/*    a loop of 10^6 trivial iterations (y[i] = a*x[i] + y[i]).
//   Compute/*        a compute-bound parameter sweep (256 tasks of ~0.2 ms) — compare with Serial.
//
// Run through bench/run.sh, which repeats, takes medians and prints the ratios.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <parx/parx.hpp>

#include <chrono>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

namespace {

const int kCores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

// One pool per worker count, made once. `pool()` has one worker per core (parx's default);
// pool(kCores - 1) plus the calling thread uses as many threads as TBB's default arena.
parx::ThreadPool& pool(int workers = kCores) {
  static std::vector<std::unique_ptr<parx::ThreadPool>> pools(64);
  auto& p = pools[static_cast<std::size_t>(workers)];
  if (!p) p = std::make_unique<parx::ThreadPool>(static_cast<std::size_t>(workers));
  return *p;
}

// ---- empty-task throughput ----------------------------------------------------------------------
constexpr int kTasks = 10'000;

void EmptyTasks_parx_TaskGroup(benchmark::State& st) {
  parx::TaskGroup tg(pool(static_cast<int>(st.range(0))));
  for (auto _ : st) {
    for (int i = 0; i < kTasks; ++i)
      tg.run([] {});
    tg.wait();
  }
  st.SetItemsProcessed(st.iterations() * kTasks);
}

void EmptyTasks_parx_submit(benchmark::State& st) {
  std::vector<parx::Future<void>> fs;
  fs.reserve(kTasks);
  for (auto _ : st) {
    fs.clear();
    for (int i = 0; i < kTasks; ++i)
      fs.push_back(pool().submit([] {}));
    for (auto& f : fs)
      f.get();
  }
  st.SetItemsProcessed(st.iterations() * kTasks);
}

void EmptyTasks_tbb(benchmark::State& st) {
  tbb::task_group tg;
  for (auto _ : st) {
    for (int i = 0; i < kTasks; ++i)
      tg.run([] {});
    tg.wait();
  }
  st.SetItemsProcessed(st.iterations() * kTasks);
}

void EmptyTasks_omp(benchmark::State& st) {
  for (auto _ : st) {
#pragma omp parallel
#pragma omp single
    for (int i = 0; i < kTasks; ++i) {
#pragma omp task
      { benchmark::ClobberMemory(); }
    }
  }
  st.SetItemsProcessed(st.iterations() * kTasks);
}

// ---- fork-join latency --------------------------------------------------------------------------
void ForkJoin_parx(benchmark::State& st) {
  for (auto _ : st)
    pool().parallel_for(
        0, kCores, [](int) { benchmark::ClobberMemory(); }, 1);
}
void ForkJoin_tbb(benchmark::State& st) {
  for (auto _ : st)
    tbb::parallel_for(
        0, kCores, [](int) { benchmark::ClobberMemory(); }, tbb::simple_partitioner());
}
void ForkJoin_omp(benchmark::State& st) {
  for (auto _ : st) {
#pragma omp parallel for schedule(static, 1)
    for (int i = 0; i < kCores; ++i)
      benchmark::ClobberMemory();
  }
}

// A fork-join that really forks: every worker gets ~20 µs of work.
void spin_for_20us() {
  const auto end = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
  while (std::chrono::steady_clock::now() < end)
    benchmark::ClobberMemory();
}
void ForkJoinWork_parx(benchmark::State& st) {
  for (auto _ : st)
    pool().parallel_for(
        0, kCores, [](int) { spin_for_20us(); }, 1);
}
void ForkJoinWork_tbb(benchmark::State& st) {
  for (auto _ : st)
    tbb::parallel_for(
        0, kCores, [](int) { spin_for_20us(); }, tbb::simple_partitioner());
}
void ForkJoinWork_omp(benchmark::State& st) {
  for (auto _ : st) {
#pragma omp parallel for schedule(static, 1)
    for (int i = 0; i < kCores; ++i)
      spin_for_20us();
  }
}

// ---- parallel_for over 10^6 trivial iterations
// -----------------------------------------------------
constexpr long kN = 1'000'000;
std::vector<float>& xs() {
  static std::vector<float> v(kN, 1.0f);
  return v;
}
std::vector<float>& ys() {
  static std::vector<float> v(kN, 2.0f);
  return v;
}

void ParallelFor_parx(benchmark::State& st) {
  float* x = xs().data();
  float* y = ys().data();
  for (auto _ : st) {
    pool().parallel_for(0L, kN, [=](long b, long e) {
      for (long i = b; i < e; ++i)
        y[i] = 0.5f * x[i] + y[i];
    });
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * kN);
}
void ParallelFor_parx_per_index(benchmark::State& st) {
  float* x = xs().data();
  float* y = ys().data();
  for (auto _ : st) {
    pool().parallel_for(0L, kN, [=](long i) { y[i] = 0.5f * x[i] + y[i]; });
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * kN);
}
void ParallelFor_tbb(benchmark::State& st) {
  float* x = xs().data();
  float* y = ys().data();
  for (auto _ : st) {
    tbb::parallel_for(tbb::blocked_range<long>(0, kN), [=](const tbb::blocked_range<long>& r) {
      for (long i = r.begin(); i < r.end(); ++i)
        y[i] = 0.5f * x[i] + y[i];
    });
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * kN);
}
void ParallelFor_omp(benchmark::State& st) {
  float* x = xs().data();
  float* y = ys().data();
  for (auto _ : st) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < kN; ++i)
      y[i] = 0.5f * x[i] + y[i];
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * kN);
}

// ---- compute-bound sweep ----------------------------------------------------------------------
constexpr int kSweep = 256;
double lyapunov(double r) {
  double x = 0.5, sum = 0.0;
  for (int i = 0; i < 20'000; ++i) {
    x = r * x * (1 - x);
    sum += std::log(std::fabs(r * (1 - 2 * x)));
  }
  return sum;
}
double param(int i) {
  return 2.8 + 1.2 * i / kSweep;
}

void Compute_serial(benchmark::State& st) {
  std::vector<double> out(kSweep);
  for (auto _ : st) {
    for (int i = 0; i < kSweep; ++i)
      out[i] = lyapunov(param(i));
    benchmark::DoNotOptimize(out.data());
  }
}
void Compute_parx_map(benchmark::State& st) {
  for (auto _ : st) {
    auto out = pool().map([](int i) { return lyapunov(param(i)); }, parx::range(kSweep));
    benchmark::DoNotOptimize(out.data());
  }
}
void Compute_tbb(benchmark::State& st) {
  std::vector<double> out(kSweep);
  for (auto _ : st) {
    tbb::parallel_for(0, kSweep, [&](int i) { out[i] = lyapunov(param(i)); });
    benchmark::DoNotOptimize(out.data());
  }
}
void Compute_omp(benchmark::State& st) {
  std::vector<double> out(kSweep);
  for (auto _ : st) {
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < kSweep; ++i)
      out[i] = lyapunov(param(i));
    benchmark::DoNotOptimize(out.data());
  }
}

}  // namespace

BENCHMARK(EmptyTasks_parx_TaskGroup)
    ->ArgName("workers")
    ->Arg(kCores)
    ->Arg(std::max(1, kCores - 1))
    ->UseRealTime();
BENCHMARK(EmptyTasks_parx_submit)->UseRealTime();
BENCHMARK(EmptyTasks_tbb)->UseRealTime();
BENCHMARK(EmptyTasks_omp)->UseRealTime();
BENCHMARK(ForkJoin_parx)->UseRealTime();
BENCHMARK(ForkJoin_tbb)->UseRealTime();
BENCHMARK(ForkJoin_omp)->UseRealTime();
BENCHMARK(ForkJoinWork_parx)->UseRealTime();
BENCHMARK(ForkJoinWork_tbb)->UseRealTime();
BENCHMARK(ForkJoinWork_omp)->UseRealTime();
BENCHMARK(ParallelFor_parx)->UseRealTime();
BENCHMARK(ParallelFor_parx_per_index)->UseRealTime();
BENCHMARK(ParallelFor_tbb)->UseRealTime();
BENCHMARK(ParallelFor_omp)->UseRealTime();
BENCHMARK(Compute_serial)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(Compute_parx_map)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(Compute_tbb)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(Compute_omp)->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
