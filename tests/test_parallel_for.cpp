// parallel_for and parallel_reduce: coverage, grains, nesting, errors, determinism.
#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <cmath>
#include <vector>

#include "test_util.hpp"

namespace {

using parx_test::Workers;

TEST_P(Workers, EveryIndexExactlyOnce) {
  parx::ThreadPool pool(GetParam());
  for (long n : {0L, 1L, 2L, 7L, 1000L, 123'457L}) {
    for (std::size_t grain : {0u, 1u, 64u, 100'000u}) {
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
      pool.parallel_for(
          0L, n, [&](long i) { hits[static_cast<std::size_t>(i)].fetch_add(1); }, grain);
      for (long i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<std::size_t>(i)].load(), 1) << n << " " << grain;
    }
  }
}

TEST_P(Workers, NegativeBoundsAndBlockForm) {
  parx::ThreadPool pool(GetParam());
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(-500, 500,
                    [&](int i) { hits[static_cast<std::size_t>(i + 500)].fetch_add(1); });
  for (auto& h : hits)
    ASSERT_EQ(h.load(), 1);
  std::atomic<long> covered{0};
  pool.parallel_for(10L, 100'010L, [&](long b, long e) {
    ASSERT_LT(b, e);
    covered.fetch_add(e - b);
  });
  EXPECT_EQ(covered.load(), 100'000);
  pool.parallel_for(5, 5, [&](int) { FAIL(); });
  pool.parallel_for(5, 1, [&](int) { FAIL(); });
}

TEST_P(Workers, NestedParallelForNeverDeadlocks) {
  parx::ThreadPool pool(GetParam());
  std::atomic<long> total{0};
  pool.parallel_for(0, 64, [&](int) {
    pool.parallel_for(0, 64, [&](int) { total.fetch_add(1, std::memory_order_relaxed); });
  });
  EXPECT_EQ(total.load(), 64 * 64);
  // And from inside a submitted task.
  auto f = pool.submit([&] {
    return pool.parallel_reduce(
        0L, 10'000L, 0L, [](long i) { return i; }, std::plus<>{});
  });
  EXPECT_EQ(f.get(), 49'995'000L);
}

TEST_P(Workers, ExceptionPropagatesAndStopsNewChunks) {
  parx::ThreadPool pool(GetParam());
  std::atomic<long> ran{0};
  EXPECT_THROW(pool.parallel_for(
                   0L, 1'000'000L,
                   [&](long i) {
                     ran.fetch_add(1, std::memory_order_relaxed);
                     if (i == 10) throw std::domain_error("ten");
                   },
                   10),
               std::domain_error);
  EXPECT_LT(ran.load(), 1'000'000);  // the rest was abandoned
  std::atomic<int> after{0};
  pool.parallel_for(0, 100, [&](int) { after.fetch_add(1); });
  EXPECT_EQ(after.load(), 100);
}

TEST_P(Workers, ReduceIsCorrectAndIndependentOfWorkerCount) {
  parx::ThreadPool pool(GetParam());
  parx::ThreadPool one(1);
  const long n = 1'000'003;
  auto term = [](long i) { return std::sin(static_cast<double>(i)) / static_cast<double>(i + 1); };
  double a = pool.parallel_reduce(0L, n, 0.0, term, std::plus<>{});
  double b = one.parallel_reduce(0L, n, 0.0, term, std::plus<>{});
  EXPECT_EQ(a, b);  // bitwise: same chunks, combined in the same order
  long s = pool.parallel_reduce(
      0L, n, 0L, [](long i) { return i; }, std::plus<>{});
  EXPECT_EQ(s, n * (n - 1) / 2);
  EXPECT_EQ(pool.parallel_reduce(
                3, 3, 17, [](int i) { return i; }, std::plus<>{}),
            17);
  std::string cat = pool.parallel_reduce(
      0, 5, std::string{}, [](int i) { return std::to_string(i); },
      [](std::string x, std::string y) { return x + y; }, 1);
  EXPECT_EQ(cat, "01234");
}

PARX_WORKER_PARAMS(Workers);

}  // namespace
