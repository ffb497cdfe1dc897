// TaskGroup: fork-join without futures.
#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <memory>
#include <thread>

#include "test_util.hpp"

namespace {

using parx_test::Workers;

TEST_P(Workers, RunAndWait) {
  parx::ThreadPool pool(GetParam());
  parx::TaskGroup tg(pool);
  std::vector<int> out(10'000, 0);
  for (int i = 0; i < 10'000; ++i)
    tg.run([&out, i] { out[static_cast<std::size_t>(i)] = i; });
  tg.wait();
  for (int i = 0; i < 10'000; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i)], i);
  // Reusable.
  std::atomic<int> n{0};
  for (int i = 0; i < 100; ++i)
    tg.run([&] { n.fetch_add(1); });
  tg.wait();
  EXPECT_EQ(n.load(), 100);
}

TEST_P(Workers, FirstExceptionRethrownOthersFinish) {
  parx::ThreadPool pool(GetParam());
  parx::TaskGroup tg(pool);
  std::atomic<int> n{0};
  for (int i = 0; i < 100; ++i)
    tg.run([&, i] {
      n.fetch_add(1);
      if (i == 50) throw std::runtime_error("fifty");
    });
  EXPECT_THROW(tg.wait(), std::runtime_error);
  EXPECT_EQ(n.load(), 100);
  tg.run([] {});
  EXPECT_NO_THROW(tg.wait());  // the error was collected
}

TEST_P(Workers, CancelSkipsUnstartedTasks) {
  parx::ThreadPool pool(GetParam());
  parx_test::Gate gate;
  parx::TaskGroup blockers(pool);
  std::atomic<int> blocked{0};
  for (std::size_t i = 0; i < GetParam(); ++i)
    blockers.run([&] {
      blocked.fetch_add(1);
      gate.wait();
    });
  ASSERT_TRUE(
      parx_test::eventually([&] { return blocked.load() == static_cast<int>(GetParam()); }));
  parx::TaskGroup tg(pool);
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i)
    tg.run([&] { ran.fetch_add(1); });
  tg.cancel();
  gate.open();
  tg.wait();
  blockers.wait();
  EXPECT_EQ(ran.load(), 0);
}

TEST_P(Workers, NestedGroupsAndSiblingSpawns) {
  parx::ThreadPool pool(GetParam());
  std::atomic<long> leaves{0};
  std::function<void(int)> tree = [&](int depth) {
    if (depth == 0) {
      leaves.fetch_add(1);
      return;
    }
    parx::TaskGroup g(pool);
    g.run([&, depth] { tree(depth - 1); });
    g.run([&, depth] { tree(depth - 1); });
    g.wait();
  };
  parx::TaskGroup root(pool);
  root.run([&] { tree(10); });
  root.wait();
  EXPECT_EQ(leaves.load(), 1024);
}

PARX_WORKER_PARAMS(Workers);

}  // namespace

namespace {

TEST(TaskGroup, WaitFromAnotherThreadThanTheOwner) {
  parx::ThreadPool pool(2);
  parx::TaskGroup tg(pool);
  std::atomic<int> n{0};
  for (int i = 0; i < 1000; ++i)
    tg.run([&] { n.fetch_add(1); });
  std::thread other([&] { tg.wait(); });  // hands back the owner's reserved counts
  other.join();
  EXPECT_EQ(n.load(), 1000);
}

TEST(TaskGroup, RunFromManyOutsideThreads) {
  parx::ThreadPool pool(2);
  parx::TaskGroup tg(pool);
  std::atomic<int> n{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 2000; ++i)
        tg.run([&] { n.fetch_add(1); });
    });
  for (auto& t : ts)
    t.join();
  tg.wait();
  EXPECT_EQ(n.load(), 8000);
}

TEST(TaskGroup, MoreGroupsThanSlots) {
  parx::ThreadPool pool(2);
  std::vector<std::unique_ptr<parx::TaskGroup>> groups;
  std::atomic<int> n{0};
  for (int g = 0; g < 20; ++g) {  // beyond the pool's lent deques: falls back to the shared queue
    groups.push_back(std::make_unique<parx::TaskGroup>(pool));
    for (int i = 0; i < 100; ++i)
      groups.back()->run([&] { n.fetch_add(1); });
  }
  for (auto& g : groups)
    g->wait();
  EXPECT_EQ(n.load(), 2000);
}

}  // namespace
