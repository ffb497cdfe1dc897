// The observe event interface: every task and worker lifecycle step is reported to listeners.
#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <map>
#include <mutex>

namespace {

using parx::observe::EventKind;

struct Recorder {
  std::mutex mu;
  std::map<EventKind, int> counts;
  std::map<std::uint64_t, std::vector<EventKind>> per_task;
  void operator()(const parx::observe::Event& e) {
    std::lock_guard lk(mu);
    counts[e.kind]++;
    if (e.task_id) per_task[e.task_id].push_back(e.kind);
    EXPECT_STREQ(e.executor_kind, "thread");
    EXPECT_GT(e.time_ns, 0);
  }
};

TEST(Observe, TaskAndWorkerLifecycle) {
  auto rec = std::make_shared<Recorder>();
  auto sub = parx::observe::subscribe([rec](const parx::observe::Event& e) { (*rec)(e); });
  EXPECT_TRUE(parx::observe::active());
  {
    parx::ThreadPool pool(2);
    std::vector<parx::Future<int>> fs;
    for (int i = 0; i < 10; ++i)
      fs.push_back(pool.submit([i] {
        if (i == 3) throw std::runtime_error("x");
        return i;
      }));
    for (auto& f : fs)
      f.wait();
  }
  std::lock_guard lk(rec->mu);
  EXPECT_EQ(rec->counts[EventKind::WorkerStarted], 2);
  EXPECT_EQ(rec->counts[EventKind::WorkerStopped], 2);
  EXPECT_EQ(rec->counts[EventKind::TaskQueued], 10);
  EXPECT_EQ(rec->counts[EventKind::TaskStarted], 10);
  EXPECT_EQ(rec->counts[EventKind::TaskFinished], 9);
  EXPECT_EQ(rec->counts[EventKind::TaskFailed], 1);
  for (auto& [id, kinds] : rec->per_task) {
    ASSERT_EQ(kinds.size(), 3u);
    EXPECT_EQ(kinds[0], EventKind::TaskQueued);
    EXPECT_EQ(kinds[1], EventKind::TaskStarted);
  }
}

TEST(Observe, CancelledTasksAreReported) {
  std::atomic<int> cancelled{0};
  auto sub = parx::observe::subscribe([&](const parx::observe::Event& e) {
    if (e.kind == EventKind::TaskCancelled) cancelled.fetch_add(1);
  });
  parx::ThreadPool pool(1);
  std::atomic<bool> go{false};
  auto blocker = pool.submit([&] { go.wait(false); });
  auto victim = pool.submit([] {});
  victim.cancel();
  go = true;
  go.notify_all();
  blocker.get();
  pool.shutdown();
  EXPECT_EQ(cancelled.load(), 1);
}

TEST(Observe, UnsubscribeStopsDelivery) {
  std::atomic<int> n{0};
  auto sub = parx::observe::subscribe([&](const parx::observe::Event&) { n.fetch_add(1); });
  sub.reset();
  EXPECT_FALSE(parx::observe::active());
  parx::ThreadPool pool(2);
  pool.submit([] {}).get();
  EXPECT_EQ(n.load(), 0);
  EXPECT_STREQ(parx::observe::to_string(EventKind::TaskFailed), "task_failed");
}

}  // namespace
