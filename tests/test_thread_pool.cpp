// ThreadPool: submit, exceptions, cancellation, nested waits, shutdown, stress, initializers.
#include <gtest/gtest.h>
#include <pthread.h>

#include <parx/parx.hpp>

#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using parx_test::Gate;
using parx_test::Workers;

static_assert(parx::Executor<parx::ThreadPool>);

TEST_P(Workers, SubmitReturnsValuesAndCopiesArguments) {
  parx::ThreadPool pool(GetParam());
  EXPECT_EQ(pool.workers(), GetParam());
  std::string s = "abc";
  auto f = pool.submit([](std::string x, int n) { return x + std::to_string(n); }, s, 1);
  s = "changed";
  EXPECT_EQ(f.get(), "abc1");
  auto g = pool.submit([](std::unique_ptr<int> p) { return *p * 2; }, std::make_unique<int>(21));
  EXPECT_EQ(g.get(), 42);
  auto v = pool.submit([] {});
  EXPECT_NO_THROW(v.get());
}

TEST_P(Workers, ExceptionReachesCallerAndOthersAreUnaffected) {
  parx::ThreadPool pool(GetParam());
  std::vector<parx::Future<int>> fs;
  for (int i = 0; i < 100; ++i)
    fs.push_back(pool.submit([i] {
      if (i % 10 == 3) throw std::out_of_range("bad " + std::to_string(i));
      return i;
    }));
  int ok = 0, failed = 0;
  for (int i = 0; i < 100; ++i) {
    try {
      EXPECT_EQ(fs[i].get(), i);
      ++ok;
    } catch (const std::out_of_range& e) {
      EXPECT_EQ(std::string(e.what()), "bad " + std::to_string(i));
      ++failed;
    }
  }
  EXPECT_EQ(ok, 90);
  EXPECT_EQ(failed, 10);
  EXPECT_EQ(pool.submit([] { return 1; }).get(), 1);  // still serving
}

TEST_P(Workers, CancelledTaskNeverRuns) {
  parx::ThreadPool pool(GetParam());
  Gate gate;
  std::atomic<int> blocked{0};
  std::vector<parx::Future<void>> blockers;
  for (std::size_t i = 0; i < GetParam(); ++i)
    blockers.push_back(pool.submit([&] {
      blocked.fetch_add(1);
      gate.wait();
    }));
  ASSERT_TRUE(
      parx_test::eventually([&] { return blocked.load() == static_cast<int>(GetParam()); }));
  std::atomic<bool> ran{false};
  auto victim = pool.submit([&] {
    ran = true;
    return 1;
  });
  EXPECT_FALSE(victim.started());
  EXPECT_TRUE(victim.cancel());
  gate.open();
  for (auto& b : blockers)
    b.get();
  EXPECT_THROW(victim.get(), parx::Cancelled);
  pool.submit([] {}).get();  // the cancelled node has been popped by now or will be skipped
  pool.shutdown();
  EXPECT_FALSE(ran.load());
}

TEST_P(Workers, RunningTaskCannotBeCancelled) {
  parx::ThreadPool pool(GetParam());
  Gate gate;
  std::atomic<bool> started{false};
  auto f = pool.submit([&] {
    started = true;
    gate.wait();
    return 5;
  });
  ASSERT_TRUE(parx_test::eventually([&] { return started.load(); }));
  EXPECT_FALSE(f.cancel());
  gate.open();
  EXPECT_EQ(f.get(), 5);
}

long fib(parx::ThreadPool& pool, int n) {
  if (n < 2) return n;
  auto a = pool.submit([&pool, n] { return fib(pool, n - 1); });
  long b = fib(pool, n - 2);
  return a.get() + b;  // waits inside a worker: must help, not block
}

TEST_P(Workers, NestedSubmitAndWaitNeverDeadlocks) {
  parx::ThreadPool pool(GetParam());
  EXPECT_EQ(pool.submit([&] { return fib(pool, 18); }).get(), 2584);
}

TEST_P(Workers, NestedWaitOnManyFuturesFromAWorker) {
  parx::ThreadPool pool(GetParam());
  auto outer = pool.submit([&] {
    std::vector<parx::Future<int>> fs;
    for (int i = 0; i < 64; ++i)
      fs.push_back(pool.submit([i] { return i; }));
    auto r = parx::wait(fs);
    int s = 0;
    for (auto& f : parx::as_completed(fs))
      s += f.get();
    return static_cast<int>(r.done.size()) * 1000 + s;
  });
  EXPECT_EQ(outer.get(), 64 * 1000 + 63 * 64 / 2);
}

TEST_P(Workers, ShutdownCancelsPendingWhenAsked) {
  parx::ThreadPool pool(GetParam());
  Gate gate;
  std::atomic<int> blocked{0};
  std::vector<parx::Future<void>> running;
  for (std::size_t i = 0; i < GetParam(); ++i)
    running.push_back(pool.submit([&] {
      blocked.fetch_add(1);
      gate.wait();
    }));
  ASSERT_TRUE(
      parx_test::eventually([&] { return blocked.load() == static_cast<int>(GetParam()); }));
  std::atomic<int> ran{0};
  std::vector<parx::Future<void>> pending;
  for (int i = 0; i < 100; ++i)
    pending.push_back(pool.submit([&] { ran.fetch_add(1); }));
  std::thread closer([&] { pool.shutdown({.cancel_pending = true}); });
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(pool.is_shutdown());
  EXPECT_THROW(pool.submit([] {}), parx::ExecutorShutdown);
  gate.open();
  closer.join();
  for (auto& r : running)
    EXPECT_NO_THROW(r.get());  // started tasks finish
  int cancelled = 0;
  for (auto& p : pending) {
    try {
      p.get();
    } catch (const parx::Cancelled&) {
      ++cancelled;
    }
  }
  EXPECT_EQ(cancelled + ran.load(), 100);
  EXPECT_GT(cancelled, 0);
}

TEST_P(Workers, ShutdownWithoutCancelRunsEverything) {
  std::atomic<int> ran{0};
  std::vector<parx::Future<void>> fs;
  {
    parx::ThreadPool pool(GetParam());
    for (int i = 0; i < 1000; ++i)
      fs.push_back(pool.submit([&] { ran.fetch_add(1); }));
    pool.shutdown({.wait = false});
    EXPECT_THROW(pool.submit([] {}), parx::ExecutorShutdown);
  }  // destructor joins
  EXPECT_EQ(ran.load(), 1000);
  for (auto& f : fs)
    EXPECT_TRUE(f.ready());
}

TEST_P(Workers, TasksMaySubmitDuringShutdown) {
  parx::ThreadPool pool(GetParam());
  Gate gate;
  auto f = pool.submit([&] {
    gate.wait();
    // Nested work submitted from a worker after shutdown began still runs.
    return pool.submit([] { return 7; }).get();
  });
  std::thread closer([&] { pool.shutdown(); });
  std::this_thread::sleep_for(10ms);
  gate.open();
  closer.join();
  EXPECT_EQ(f.get(), 7);
}

TEST_P(Workers, FuturesDroppedBeforeCompletion) {
  std::atomic<int> ran{0};
  {
    parx::ThreadPool pool(GetParam());
    for (int i = 0; i < 2000; ++i)
      (void)pool.submit([&ran] {
        ran.fetch_add(1);
        return std::vector<int>(64, 1);
      });
  }
  EXPECT_EQ(ran.load(), 2000);
}

TEST_P(Workers, StressMillionTasks) {
  parx::ThreadPool pool(GetParam());
  constexpr int kTasks = 1'000'000;
  constexpr int kBatch = 10'000;
  std::atomic<long> sum{0};
  long expect = 0;
  std::vector<parx::Future<int>> fs;
  fs.reserve(kBatch);
  for (int base = 0; base < kTasks; base += kBatch) {
    fs.clear();
    for (int i = base; i < base + kBatch; ++i) {
      fs.push_back(pool.submit([i, &sum] {
        sum.fetch_add(i % 7, std::memory_order_relaxed);
        return i % 7;
      }));
      expect += i % 7;
    }
    long got = 0;
    for (auto& f : fs)
      got += f.get();
    (void)got;
  }
  EXPECT_EQ(sum.load(), expect);
}

TEST_P(Workers, InitializerRunsOncePerWorkerAndThreadsAreNamed) {
  std::mutex mu;
  std::set<std::size_t> seen;
  parx::ThreadPool pool({.workers = GetParam(),
                         .initializer =
                             [&](std::size_t i) {
                               std::lock_guard lk(mu);
                               seen.insert(i);
                             },
                         .name = "simwork"});
  {
    std::lock_guard lk(mu);
    EXPECT_EQ(seen.size(), GetParam());
  }
  auto name = pool.submit([&] {
                    char buf[32] = {};
                    pthread_getname_np(pthread_self(), buf, sizeof buf);
                    return std::string(buf) + "/" + std::to_string(pool.current_worker());
                  })
                  .get();
  EXPECT_EQ(name.rfind("simwork-", 0), 0u) << name;
  EXPECT_EQ(pool.current_worker(), -1);
}

TEST(ThreadPool, InitializerFailureIsReported) {
  EXPECT_THROW(parx::ThreadPool({.workers = 3,
                                 .initializer =
                                     [](std::size_t i) {
                                       if (i == 1) throw std::runtime_error("no GPU for worker 1");
                                     }}),
               std::runtime_error);
}

TEST(ThreadPool, DefaultsToHardwareConcurrency) {
  parx::ThreadPool pool;
  EXPECT_EQ(pool.workers(), std::max(1u, std::thread::hardware_concurrency()));
}

TEST_P(Workers, SubmitFromManyOutsideThreads) {
  parx::ThreadPool pool(GetParam());
  std::atomic<long> sum{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      std::vector<parx::Future<void>> fs;
      for (int i = 0; i < 5000; ++i)
        fs.push_back(pool.submit([&] { sum.fetch_add(1); }));
      for (auto& f : fs)
        f.get();
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(sum.load(), 20000);
}

// The loops count indices as tasks (observe/metrics.hpp), whoever runs them: the workers, the
// calling thread, a TaskGroup's owner.
TEST_P(Workers, LoopsCountTheirIndices) {
  parx::ThreadPool pool(GetParam());
  std::atomic<long> sum{0};
  pool.parallel_for(0, 1000, [&](int i) { sum += i; });
  auto c = parx_test::settled_counters(pool);
  EXPECT_EQ(c.submitted, 1000u);
  EXPECT_EQ(c.done, 1000u);
  EXPECT_EQ(pool.parallel_reduce(
                0L, 10'007L, 0L, [](long i) { return i; }, std::plus<>{}, 100),
            10'006L * 10'007L / 2);
  c = parx_test::settled_counters(pool);
  EXPECT_EQ(c.done, 11'007u) << "parallel_reduce counts indices, not blocks";
  // A loop that throws: its failed chunk and what nobody claimed still add up.
  EXPECT_THROW(pool.parallel_for(
                   0, 100'000,
                   [](int i) {
                     if (i == 50'000) throw std::runtime_error("stop");
                   },
                   64),
               std::runtime_error);
  c = parx_test::settled_counters(pool);
  EXPECT_EQ(c.submitted, 111'007u);
  EXPECT_EQ(c.failed, 64u) << "the chunk that threw; the others ran or were never claimed";
  // A TaskGroup driven from this thread runs some of its tasks here.
  parx::TaskGroup g(pool);
  for (int i = 0; i < 200; ++i)
    g.run([&] { sum += 1; });
  g.wait();
  c = parx_test::settled_counters(pool);
  EXPECT_EQ(c.submitted, 111'207u);
  EXPECT_EQ(c.done + c.failed + c.cancelled, 111'207u);
}

PARX_WORKER_PARAMS(Workers);

}  // namespace
