// parx/task_group.hpp — TaskGroup: fork-join over a ThreadPool without futures (TBB's
// task_group, Taskflow's TaskGroup). The cheapest way to run many small void tasks and wait for
// all of them.
//
// Contract
//   * `run(f)` queues f() on the pool; `wait()` returns when every task run so far has finished,
//     then rethrows the first exception any of them threw (the others are dropped). The group can
//     be reused after wait().
//   * `cancel()`: tasks of the group that have not started are skipped (they count as finished).
//   * On a pool worker, wait() runs other tasks meanwhile (nested groups never deadlock). From an
//     outside thread it spins briefly, then sleeps.
//   * The destructor waits and discards any exception not collected by wait().
//
// Thread-safety: run() may be called from several threads and from the group's own tasks (a
// task may add sibling tasks); wait() from one thread at a time.
//
// Example
//   parx::TaskGroup tg(pool);
//   for (int i = 0; i < 1000; ++i) tg.run([&, i] { out[i] = work(i); });
//   tg.wait();
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>
#include <exception>
#include <mutex>
#include <type_traits>
#include <utility>

#include "parx/thread_pool.hpp"

namespace parx {

class TaskGroup {
 public:
  explicit TaskGroup(ThreadPool& pool) : pool_(pool) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup() { wait_quiet(); }

  template <class F>
  void run(F&& f) {
    ctl_.state.fetch_add(1, std::memory_order_relaxed);
    try {
      pool_.schedule(new Task<std::decay_t<F>>(ctl_, std::forward<F>(f)));
    } catch (...) {
      ctl_.finish();
      throw;
    }
  }

  void wait() {
    wait_quiet();
    std::exception_ptr e;
    {
      std::lock_guard lk(ctl_.mu);
      e = std::exchange(ctl_.error, nullptr);
    }
    ctl_.cancelled.store(false, std::memory_order_relaxed);
    if (e) std::rethrow_exception(e);
  }

  void cancel() noexcept { ctl_.cancelled.store(true, std::memory_order_relaxed); }
  bool is_cancelled() const noexcept { return ctl_.cancelled.load(std::memory_order_relaxed); }

 private:
  struct Ctl final : detail::Waitable {
    static constexpr std::uint32_t kWaiters = 1u << 31;
    std::atomic<std::uint32_t> state{0};  // pending count | kWaiters
    std::atomic<bool> cancelled{false};
    std::mutex mu;
    std::exception_ptr error;

    void finish() noexcept {
      const std::uint32_t old = state.fetch_sub(1, std::memory_order_acq_rel);
      if ((old & ~kWaiters) == 1 && (old & kWaiters)) {
        state.fetch_and(~kWaiters, std::memory_order_relaxed);
        detail::futex_wake(&state, INT_MAX);
      }
    }
    bool is_done() const noexcept override {
      return (state.load(std::memory_order_acquire) & ~kWaiters) == 0;
    }
    bool arm(const std::atomic<std::uint32_t>*& word, std::uint32_t& value) noexcept override {
      std::uint32_t s = state.load(std::memory_order_acquire);
      for (;;) {
        if ((s & ~kWaiters) == 0) return false;
        if ((s & kWaiters) || state.compare_exchange_weak(s, s | kWaiters)) break;
      }
      word = &state;
      value = s | kWaiters;
      return true;
    }
  };

  template <class F>
  class Task final : public detail::TaskNode {
   public:
    Task(Ctl& c, F f) : ctl_(c), f_(std::move(f)) {}
    void run(detail::TaskObserver* obs) noexcept override {
      if (!ctl_.cancelled.load(std::memory_order_relaxed)) {
        if (obs) obs->on(observe::EventKind::TaskStarted, task_id);
        bool ok = true;
        try {
          f_();
        } catch (...) {
          ok = false;
          std::lock_guard lk(ctl_.mu);
          if (!ctl_.error) ctl_.error = std::current_exception();
        }
        if (obs)
          obs->on(ok ? observe::EventKind::TaskFinished : observe::EventKind::TaskFailed, task_id);
      } else if (obs) {
        obs->on(observe::EventKind::TaskCancelled, task_id);
      }
      Ctl& c = ctl_;
      delete this;
      c.finish();
    }
    void drop(detail::TaskObserver* obs) noexcept override {
      if (obs) obs->on(observe::EventKind::TaskCancelled, task_id);
      Ctl& c = ctl_;
      delete this;
      c.finish();
    }

   private:
    Ctl& ctl_;
    F f_;
  };

  void wait_quiet() { detail::wait_for_done(ctl_, -1); }

  ThreadPool& pool_;
  Ctl ctl_;
};

}  // namespace parx
