// The observe event interface: every task and worker lifecycle step is reported to listeners;
// subscribing and unsubscribing while other threads emit (and from inside a listener).
#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

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

parx::observe::Event probe(std::uint64_t exec) {
  parx::observe::Event e{EventKind::TaskStarted};
  e.executor_id = exec;
  e.executor_kind = "thread";
  return e;
}

TEST(Observe, UnsubscribeWaitsForADeliveryInProgress) {
  const std::uint64_t exec = parx::observe::next_executor_id();
  std::atomic<bool> entered{false}, release{false}, finished{false};
  auto sub = parx::observe::subscribe([&](const parx::observe::Event& e) {
    if (e.executor_id != exec) return;
    entered = true;
    while (!release.load())
      std::this_thread::yield();
    finished = true;
  });
  std::thread emitter([&] { parx::observe::emit(probe(exec)); });
  while (!entered.load())
    std::this_thread::yield();
  std::atomic<bool> reset_done{false};
  bool finished_first = false;
  std::thread resetter([&] {
    sub.reset();
    finished_first = finished.load();
    reset_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(reset_done.load());
  release = true;
  resetter.join();
  emitter.join();
  EXPECT_TRUE(finished_first);
}

TEST(Observe, AListenerMayEmitAndUnsubscribe) {
  // From inside a delivery: a nested emit reaches every listener, and unsubscribing (itself or
  // another) neither deadlocks nor frees the list being delivered.
  const std::uint64_t exec = parx::observe::next_executor_id();
  const std::uint64_t inner = parx::observe::next_executor_id();
  std::atomic<int> outer{0}, nested{0}, other{0};
  parx::observe::Subscription self, victim;
  victim = parx::observe::subscribe([&](const parx::observe::Event& e) {
    if (e.executor_id == exec) other.fetch_add(1);
  });
  self = parx::observe::subscribe([&](const parx::observe::Event& e) {
    if (e.executor_id == inner) {
      nested.fetch_add(1);
      return;
    }
    if (e.executor_id != exec) return;
    outer.fetch_add(1);
    parx::observe::emit(probe(inner));
    victim.reset();
    self.reset();
  });
  std::thread([&] { parx::observe::emit(probe(exec)); }).join();
  parx::observe::emit(probe(exec));
  EXPECT_EQ(outer.load(), 1);
  EXPECT_EQ(nested.load(), 1);
  EXPECT_EQ(other.load(), 1);  // subscribed first, so called before `self` resets it
  EXPECT_FALSE(self);
  EXPECT_FALSE(victim);
}

TEST(Observe, ListenersOnTwoThreadsMayUnsubscribeAtOnce) {
  // Each waits for the other to be inside a delivery too, then unsubscribes: neither may wait
  // for the other's delivery to end.
  const std::uint64_t exec = parx::observe::next_executor_id();
  std::atomic<int> inside{0};
  parx::observe::Subscription subs[2];
  for (auto& s : subs)
    s = parx::observe::subscribe([](const parx::observe::Event&) {});
  auto sub = parx::observe::subscribe([&](const parx::observe::Event& e) {
    if (e.executor_id != exec) return;
    inside.fetch_add(1);
    while (inside.load() < 2)
      std::this_thread::yield();
    subs[e.worker].reset();
  });
  std::vector<std::thread> ts;
  for (int w = 0; w < 2; ++w)
    ts.emplace_back([&, w] {
      auto e = probe(exec);
      e.worker = w;
      parx::observe::emit(e);
    });
  for (auto& t : ts)
    t.join();
  EXPECT_FALSE(subs[0]);
  EXPECT_FALSE(subs[1]);
}

TEST(Observe, SubscriptionsChangeWhileThreadsComeAndGoEmitting) {
  // After reset() returns, its listener is never called again, however busy the emitters are.
  struct Probe final : parx::observe::Listener {
    std::atomic<bool> gone{false};
    std::atomic<int> calls{0}, late{0};
    void on_event(const parx::observe::Event&) noexcept override {
      calls.fetch_add(1, std::memory_order_relaxed);
      if (gone.load(std::memory_order_relaxed)) late.fetch_add(1);
    }
  };
  const std::uint64_t exec = parx::observe::next_executor_id();
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i)
    ts.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed))  // short-lived threads: slots are reused
        std::thread([&] {
          for (int k = 0; k < 200; ++k)
            parx::observe::emit(probe(exec));
        }).join();
    });
  auto keep = parx::observe::subscribe([](const parx::observe::Event&) {});
  int late = 0, calls = 0;
  for (int round = 0; round < 200; ++round) {
    auto p = std::make_shared<Probe>();
    auto sub = parx::observe::subscribe(p);
    while (p->calls.load() == 0 && round % 20 == 0)
      std::this_thread::yield();
    sub.reset();
    p->gone = true;
    std::this_thread::yield();
    late += p->late.load();
    calls += p->calls.load();
  }
  stop = true;
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(late, 0);
  EXPECT_GT(calls, 0);
}

}  // namespace
