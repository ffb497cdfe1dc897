// map, starmap, imap, imap_unordered: order, laziness, bounded memory, errors, statistics.
#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <algorithm>
#include <list>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;
using parx_test::Workers;

TEST_P(Workers, MapKeepsInputOrder) {
  parx::ThreadPool pool(GetParam());
  auto sq = pool.map([](long i) { return i * i; }, parx::range(10'000L));
  ASSERT_EQ(sq.size(), 10'000u);
  for (long i = 0; i < 10'000; ++i)
    ASSERT_EQ(sq[static_cast<std::size_t>(i)], i * i);

  std::vector<std::string> words{"a", "bb", "ccc"};
  auto lens = pool.map([](const std::string& s) { return s.size(); }, words);
  EXPECT_EQ(lens, (std::vector<std::size_t>{1, 2, 3}));

  auto flags = pool.map([](int i) { return i % 2 == 0; }, parx::range(1000));  // vector<bool> safe
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(flags[static_cast<std::size_t>(i)], i % 2 == 0);
}

TEST_P(Workers, MapOverEmptyAndVoid) {
  parx::ThreadPool pool(GetParam());
  EXPECT_TRUE(pool.map([](int i) { return i; }, std::vector<int>{}).empty());
  std::atomic<int> n{0};
  pool.map([&](int) { n.fetch_add(1); }, parx::range(500));
  EXPECT_EQ(n.load(), 500);
}

TEST_P(Workers, MapOverLazyAndNonRandomAccessInputs) {
  parx::ThreadPool pool(GetParam());
  std::list<int> l{5, 6, 7};
  EXPECT_EQ(pool.map([](int x) { return x + 1; }, l), (std::vector<int>{6, 7, 8}));
  int k = 0;
  auto gen = parx::generate(
      [&]() -> std::optional<int> { return k < 1000 ? std::optional(k++) : std::nullopt; });
  auto out = pool.map([](int x) { return 2 * x; }, gen);
  ASSERT_EQ(out.size(), 1000u);
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i)], 2 * i);
}

TEST_P(Workers, StarmapAppliesTuples) {
  parx::ThreadPool pool(GetParam());
  std::vector<std::tuple<int, int>> args{{1, 2}, {3, 4}, {5, 6}};
  EXPECT_EQ(pool.starmap([](int a, int b) { return a * b; }, args), (std::vector<int>{2, 12, 30}));
}

TEST_P(Workers, MapRethrowsLowestIndexFailureAndPoolSurvives) {
  parx::ThreadPool pool(GetParam());
  try {
    pool.map(
        [](int i) {
          if (i == 700 || i == 9000) throw std::runtime_error("item " + std::to_string(i));
          return i;
        },
        parx::range(10'000), {.chunksize = 10});
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    const std::string w = e.what();
    EXPECT_TRUE(w == "item 700" || w == "item 9000") << w;
  }
  EXPECT_EQ(pool.map([](int i) { return i; }, parx::range(3)), (std::vector<int>{0, 1, 2}));
}

TEST_P(Workers, ExplicitChunksizeAndStats) {
  parx::ThreadPool pool(GetParam());
  parx::MapStats st;
  pool.map([](int i) { return i; }, parx::range(1000), {.chunksize = 100, .stats = &st});
  EXPECT_EQ(st.items, 1000u);
  EXPECT_EQ(st.chunks, 10u);
  EXPECT_EQ(st.chunksize, 100u);
  EXPECT_GE(st.seconds, 0.0);
}

TEST_P(Workers, ImapIsOrderedAndLazy) {
  parx::ThreadPool pool(GetParam());
  std::atomic<int> pulled{0};
  int k = 0;
  auto gen = parx::generate([&]() -> std::optional<int> {
    pulled.fetch_add(1);
    return k < 1'000'000'000 ? std::optional(k++) : std::nullopt;
  });
  auto results = pool.imap([](int x) { return x * 3; }, gen, {.max_in_flight = 64});
  EXPECT_EQ(pulled.load(), 0);  // nothing happens before iteration
  int expect = 0;
  for (int v : results) {
    ASSERT_EQ(v, expect * 3);
    ASSERT_LE(pulled.load() - expect, 64 + 1);  // bounded: never far ahead of the consumer
    if (++expect == 20'000) break;
  }
  EXPECT_LE(pulled.load(), 20'000 + 65);
}

TEST_P(Workers, ImapOverHugeRangeRunsInBoundedMemory) {
  parx::ThreadPool pool(GetParam());
  // 10^9 inputs: only the first 200'000 are consumed; the rest are never materialised.
  auto huge = parx::range(1'000'000'000L) | std::views::transform([](long i) { return i; });
  parx::MapStats st;
  long n = 0, sum = 0;
  {
    auto r = pool.imap([](long x) { return x & 1; }, huge, {.stats = &st});
    for (long v : r) {
      sum += v;
      if (++n == 200'000) break;
    }
  }
  EXPECT_EQ(sum, 100'000);
  EXPECT_GE(st.chunks, 1u);
  EXPECT_LE(st.items, 200'000u);
}

TEST_P(Workers, AdaptiveChunkingGrowsForTinyTasks) {
  parx::ThreadPool pool(GetParam());
  parx::MapStats st;
  std::list<int> input(50'000, 1);  // not random access: goes through the adaptive engine
  auto out = pool.map([](int x) { return x + 1; }, input, {.stats = &st});
  EXPECT_EQ(out.size(), 50'000u);
  EXPECT_GT(st.chunksize, 16u);  // tiny tasks get batched
  EXPECT_LT(st.chunks, 50'000u);
}

TEST_P(Workers, ImapUnorderedYieldsEverythingInCompletionOrder) {
  parx::ThreadPool pool(GetParam());
  std::multiset<int> got;
  std::vector<int> order;
  for (int v : pool.imap_unordered(
           [](int i) {
             if (i == 0) std::this_thread::sleep_for(100ms);
             return i;
           },
           parx::range(40), {.chunksize = 1})) {
    got.insert(v);
    order.push_back(v);
  }
  EXPECT_EQ(got.size(), 40u);
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(got.count(i), 1u);
  if (GetParam() > 1) EXPECT_NE(order.front(), 0);  // the slow item does not hold the others back
}

TEST_P(Workers, ImapExceptionAtItsPositionThenContinues) {
  parx::ThreadPool pool(GetParam());
  auto r = pool.imap(
      [](int i) {
        if (i == 5) throw std::invalid_argument("five");
        return i;
      },
      parx::range(10));
  std::vector<int> seen;
  int errors = 0;
  for (;;) {
    try {
      auto v = r.next();
      if (!v) break;
      seen.push_back(*v);
    } catch (const std::invalid_argument&) {
      ++errors;
      EXPECT_EQ(seen.size(), 5u);  // raised exactly at item 5
    }
  }
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 6, 7, 8, 9}));
}

TEST_P(Workers, AbandonedImapCancelsPendingWork) {
  parx::ThreadPool pool(GetParam());
  std::atomic<int> ran{0};
  {
    auto r = pool.imap(
        [&](int i) {
          ran.fetch_add(1);
          std::this_thread::sleep_for(1ms);
          return i;
        },
        parx::range(100'000), {.chunksize = 1, .max_in_flight = 32});
    auto it = r.begin();
    EXPECT_EQ(*it, 0);
  }
  pool.shutdown();
  EXPECT_LE(ran.load(), 40);
}

TEST_P(Workers, NestedMapInsideTasks) {
  parx::ThreadPool pool(GetParam());
  auto outer = pool.map(
      [&](int i) {
        auto inner = pool.map([i](int j) { return i * j; }, parx::range(100));
        return std::accumulate(inner.begin(), inner.end(), 0);
      },
      parx::range(20));
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(outer[static_cast<std::size_t>(i)], i * 4950);
}

PARX_WORKER_PARAMS(Workers);

}  // namespace
