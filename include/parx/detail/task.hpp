// parx/detail/task.hpp — the unit a scheduler queues, and the data-parallel loop engine shared by
// parallel_for, parallel_reduce and map. Internal.
#pragma once

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <utility>

#include "parx/detail/sync.hpp"
#include "parx/observe/events.hpp"

namespace parx::detail {

// What a data-parallel loop reports back to map() for MapStats.
struct LoopStats {
  std::size_t chunks = 0;
  std::size_t chunksize = 0;  // mean items per chunk
};

// Told by a task when it really starts and how it ends; non-null only when someone observes.
// `items` is how many of the pool's counted tasks (observe/metrics.hpp: items) the step covers:
// 1 for a submit, the chunk's size for a map chunk.
class TaskObserver {
 public:
  virtual void on(observe::EventKind kind, std::uint64_t task_id,
                  const std::exception_ptr* error = nullptr, std::uint64_t items = 1) noexcept = 0;
  // Counts `items` without an event (a map chunk's items that threw): counters only.
  virtual void count(observe::EventKind kind, std::uint64_t items = 1) noexcept = 0;
  // A parallel loop's indices count as submitted when a participant claims them (and as
  // cancelled, if a failure stops the loop before anyone does). A per-chunk observer (a worker:
  // cheap stores to its own counters) is told each chunk as it is claimed and as it ends
  // (claimed, then count(TaskFinished or TaskFailed)), the indices nobody will claim (skipped),
  // and its chunks when it runs out of work (count_loop with zero items). Another observer (a
  // thread outside the pool: as few shared writes as possible) is told once, with count_loop.
  virtual bool per_chunk() const noexcept = 0;
  virtual void claimed(std::uint64_t items) noexcept = 0;
  virtual void skipped(std::uint64_t items) noexcept = 0;
  virtual void count_loop(std::uint64_t chunks, std::uint64_t done, std::uint64_t failed,
                          std::uint64_t cancelled) noexcept = 0;

 protected:
  ~TaskObserver() = default;
};

// A queued unit of work. Exactly one of run()/drop() is called, once; both dispose of the node.
class TaskNode {
 public:
  // Runs the task (or skips it if it was cancelled meanwhile) and disposes of the node.
  virtual void run(TaskObserver* obs) noexcept = 0;
  // Disposes of the node without running it; its future (if any) ends Cancelled.
  virtual void drop(TaskObserver* obs) noexcept = 0;
  std::uint64_t task_id = 0;
  const char* name = nullptr;  // for observe events (static or outliving the task), or null
  std::uint32_t items = 1;     // the items it runs, as the pool's counters count them

 protected:
  ~TaskNode() = default;
};

// Shared state of one data-parallel loop over [0, n). The calling thread and helper tasks claim
// chunks from one atomic cursor — guided self-scheduling (each claim takes a fraction of what is
// left, so chunks shrink towards the end and no participant straggles), or fixed-size chunks
// when a grain is given. The caller waits until every claimed chunk has finished, so the body
// (on the caller's stack) is never touched after the loop returns: late helpers find the cursor
// exhausted and leave.
class LoopCtl final : public Waitable {
 public:
  using Body = void (*)(void* ctx, std::int64_t begin, std::int64_t end);

  // Iterates [0, n) and calls body with indices shifted by `base`. Each index stands for `scale`
  // of the pool's counted items, `items` in all (-1: n * scale).
  LoopCtl(std::int64_t base, std::int64_t n, std::int64_t fixed_chunk, std::int64_t min_chunk,
          int participants, Body body, void* ctx, std::int64_t scale = 1,
          std::int64_t items = -1) noexcept
      : base_(base),
        n_(n),
        scale_(scale),
        items_(items < 0 ? n * scale : items),
        fixed_(fixed_chunk),
        // Guided chunks shrink no further than 1/32 of a fair share (TBB's auto-partitioner keeps
        // a similar floor): the tail stays balanced without a storm of one-item claims.
        min_(std::max<std::int64_t>(
            {1, min_chunk, n / (std::int64_t{32} * std::max(1, participants))})),
        parts_(std::max(1, participants)),
        body_(body),
        ctx_(ctx) {}

  // Claims and runs chunks until none are left. Never throws; the first failure is kept. `obs`
  // (the participant's counters, or null) counts the items (TaskObserver): a chunk that throws
  // counts all its items failed, and what nobody had claimed then, cancelled.
  // Finished items and chunks are published to the loop once, when this participant runs out of
  // work: one contended atomic per chunk (the claim) instead of three.
  void work(TaskObserver* obs) noexcept {
    std::int64_t b = 0, e = 0, finished = 0, chunks = 0;
    std::uint64_t ok = 0, bad = 0, never = 0;
    const bool each = obs && obs->per_chunk();
    while (claim(b, e)) {
      ++chunks;
      const auto k = static_cast<std::uint64_t>(items_in(b, e));
      if (each) obs->claimed(k);
      try {
        body_(ctx_, base_ + b, base_ + e);
        if (each) obs->count(observe::EventKind::TaskFinished, k);
        ok += k;
      } catch (...) {
        if (each) obs->count(observe::EventKind::TaskFailed, k);
        bad += k;
        if (const std::int64_t left = fail(base_ + b, std::current_exception())) {
          never = static_cast<std::uint64_t>(items_in(n_ - left, n_));
          if (each) obs->skipped(never);
        }
      }
      finished += e - b;
    }
    if (chunks) {
      chunks_.fetch_add(chunks, std::memory_order_relaxed);
      if (obs)
        obs->count_loop(static_cast<std::uint64_t>(chunks), each ? 0 : ok, each ? 0 : bad,
                        each ? 0 : never);
    }
    if (finished) finish(finished);  // after the counts: measured faster than before them
  }
  bool is_done() const noexcept override { return flag_.load(std::memory_order_acquire) == 2; }
  bool arm(const std::atomic<std::uint32_t>*& word, std::uint32_t& value) noexcept override {
    std::uint32_t f = 0;
    if (!flag_.compare_exchange_strong(f, 1, std::memory_order_acq_rel) && f == 2) return false;
    word = &flag_;
    value = 1;
    return true;
  }
  // Moves out the exception of the failing chunk with the lowest start, if any. Call after the
  // loop is done, from the waiting thread: the exception then lives on that thread only, even if
  // a late helper is the one that frees this object.
  std::exception_ptr take_error() noexcept {
    std::lock_guard lk(mu_);
    return std::exchange(error_, nullptr);
  }
  std::int64_t chunks() const noexcept { return chunks_.load(std::memory_order_relaxed); }

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  std::int64_t items_in(std::int64_t b, std::int64_t e) const noexcept {
    return std::min(items_, e * scale_) - std::min(items_, b * scale_);
  }
  bool claim(std::int64_t& b, std::int64_t& e) noexcept {
    std::int64_t cur = next_.load(std::memory_order_relaxed);
    if (cur >= n_) return false;
    const std::int64_t chunk =
        fixed_ > 0 ? fixed_ : std::max(min_, (n_ - cur) / (4 * static_cast<std::int64_t>(parts_)));
    b = next_.fetch_add(chunk, std::memory_order_relaxed);
    if (b >= n_) return false;
    e = std::min(n_, b + chunk);
    return true;
  }
  void finish(std::int64_t k) noexcept {
    if (done_.fetch_add(k, std::memory_order_acq_rel) + k == n_) {
      if (flag_.exchange(2, std::memory_order_acq_rel) == 1) futex_wake(&flag_, INT_MAX);
    }
  }
  // Keeps the failure and stops the loop; returns how many indices nobody had claimed.
  std::int64_t fail(std::int64_t at, std::exception_ptr e) noexcept {
    {
      std::lock_guard lk(mu_);
      if (!error_ || at < error_at_) {
        error_ = std::move(e);
        error_at_ = at;
      }
    }
    // Stop handing out work; what nobody claimed counts as finished.
    const std::int64_t old = next_.exchange(n_, std::memory_order_relaxed);
    if (old >= n_) return 0;
    finish(n_ - old);
    return n_ - old;
  }

  const std::int64_t base_, n_, scale_, items_, fixed_, min_;
  const int parts_;
  Body body_;
  void* ctx_;
  alignas(64) std::atomic<std::int64_t> next_{0};
  alignas(64) std::atomic<std::int64_t> done_{0};
  std::atomic<std::uint32_t> flag_{0};  // 0 running, 1 someone sleeps, 2 done
  std::atomic<std::int64_t> chunks_{0};
  std::atomic<std::uint32_t> refs_{1};
  std::mutex mu_;
  std::exception_ptr error_;
  std::int64_t error_at_ = 0;
};

}  // namespace parx::detail
