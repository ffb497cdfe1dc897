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
// task may add sibling tasks). wait() may be called from any thread, one at a time, but not
// concurrently with run() calls made by the thread that constructed the group (that thread
// reserves pending counts in batches, which wait() hands back).
//
// Example
//   parx::TaskGroup tg(pool);
//   for (int i = 0; i < 1000; ++i) tg.run([&, i] { out[i] = work(i); });
//   tg.wait();
#pragma once

#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "parx/thread_pool.hpp"

namespace parx {

class TaskGroup {
 public:
  explicit TaskGroup(ThreadPool& pool)
      : pool_(pool), slot_(pool.acquire_external_slot()), owner_(std::this_thread::get_id()) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup() {
    wait_quiet();
    if (slot_ >= 0) pool_.release_external_slot(slot_);
    for (void* b : blocks_)
      ::operator delete(b);
  }

  template <class F>
  void run(F&& f) {
    const bool own = owns_slot();
    if (own) {
      // The owner reserves pending counts in batches, so a run() does not touch the counter's
      // cache line that finishing workers keep writing.
      if (credit_ == 0) {
        ctl_.state.fetch_add(kCreditBatch, std::memory_order_relaxed);
        credit_ = kCreditBatch;
      }
      --credit_;
    } else {
      ctl_.state.fetch_add(1, std::memory_order_relaxed);
    }
    try {
      using T = Task<std::decay_t<F>>;
      T* t;
      if (own && sizeof(T) <= kBlock && alignof(T) <= alignof(std::max_align_t)) {
        void* mem = take_block();
        try {
          t = ::new (mem) T(ctl_, std::forward<F>(f), /*pooled=*/true);
        } catch (...) {
          ctl_.recycle(mem);
          throw;
        }
      } else {
        t = new T(ctl_, std::forward<F>(f), /*pooled=*/false);
      }
      if (own) {
        pool_.schedule_to_slot(slot_, t);
      } else {
        pool_.schedule(t);
      }
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
  // Task nodes of up to kBlock bytes are recycled instead of going through malloc: the owner
  // allocates them and workers finish them, so with malloc every allocation would miss the
  // owner's thread cache (it was 40% of the time of an empty task). Finished blocks go onto a
  // lock-free stack; the owner takes the whole stack back in one exchange when its own list runs
  // dry. All blocks are freed with the group.
  static constexpr std::size_t kBlock = 64;
  struct Block {
    Block* next;
  };

  struct Ctl final : detail::Waitable {
    static constexpr std::uint32_t kWaiters = 1u << 31;
    std::atomic<Block*> returned{nullptr};
    void recycle(void* mem) noexcept {
      auto* b = static_cast<Block*>(mem);
      Block* head = returned.load(std::memory_order_relaxed);
      do {
        b->next = head;
      } while (!returned.compare_exchange_weak(head, b, std::memory_order_release,
                                               std::memory_order_relaxed));
    }
    std::atomic<std::uint32_t> state{0};  // pending count | kWaiters
    std::atomic<bool> cancelled{false};
    std::mutex mu;
    std::exception_ptr error;

    void finish() noexcept { give_back(1); }
    void give_back(std::uint32_t k) noexcept {
      if (k == 0) return;
      // The decrement that reaches zero may release the waiter, which may then destroy the
      // group: touch no member after it. (The futex wake only names the address; a wake that
      // lands on reused memory is a harmless spurious wake-up.) The waiter bit stays set; a
      // later round merely pays one unneeded wake.
      const std::uint32_t old = state.fetch_sub(k, std::memory_order_acq_rel);
      if ((old & ~kWaiters) == k && (old & kWaiters)) detail::futex_wake(&state, INT_MAX);
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
    Task(Ctl& c, F f, bool pooled) : ctl_(c), f_(std::move(f)), pooled_(pooled) {}
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
      dispose();
    }
    void drop(detail::TaskObserver* obs) noexcept override {
      if (obs) obs->on(observe::EventKind::TaskCancelled, task_id);
      dispose();
    }

   private:
    // Frees the node, then counts it finished; nothing of the group is touched after that.
    void dispose() noexcept {
      Ctl& c = ctl_;
      if (pooled_) {
        this->~Task();
        c.recycle(this);
      } else {
        delete this;
      }
      c.finish();
    }
    Ctl& ctl_;
    F f_;
    bool pooled_;
  };

  void* take_block() {
    if (!free_) free_ = ctl_.returned.exchange(nullptr, std::memory_order_acquire);
    if (free_) {
      Block* b = free_;
      free_ = b->next;
      return b;
    }
    void* mem = ::operator new(kBlock);
    blocks_.push_back(mem);
    return mem;
  }

  // A group built on an outside thread gets a deque of its own (like TBB's slot for an external
  // thread): run() from that thread pushes without locks, workers steal, and wait() runs what is
  // left on the calling thread. Other threads' run() calls go through the pool's shared queue.
  bool owns_slot() const noexcept { return slot_ >= 0 && owner_ == std::this_thread::get_id(); }
  void wait_quiet() {
    if (owns_slot())
      while (pool_.run_external_slot(slot_)) {
      }
    ctl_.give_back(std::exchange(credit_, 0));
    detail::wait_for_done(ctl_, -1);
  }

  ThreadPool& pool_;
  Ctl ctl_;
  static constexpr std::uint32_t kCreditBatch = 64;
  const int slot_;  // fixed at construction, so run() may race with run() safely
  const std::thread::id owner_;
  std::uint32_t credit_ = 0;   // owner only: reserved pending counts not yet used
  Block* free_ = nullptr;      // owner only: recycled blocks ready for reuse
  std::vector<void*> blocks_;  // owner only: every block ever allocated, freed with the group
};

}  // namespace parx
