// thread/counters.hpp — how a ThreadPool counts its items (observe/metrics.hpp) without costing
// its hot path: each worker writes counters of its own (plain stores to its own cache line), each
// thread outside the pool a slot of its own, and counters() adds them up. Private to
// thread_pool.cpp.
//
// Contract: see observe/metrics.hpp (a task is one item) and detail/task.hpp (TaskObserver: what
// a task and a loop tell their observer, and when).
// Thread-safety: an ItemCounters<false> has one writer (its worker or its outside thread) and any
// number of readers; an ItemCounters<true> any number of writers.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "parx/detail/task.hpp"
#include "parx/errors.hpp"
#include "parx/observe/events.hpp"

namespace parx::detail {

// Item counters (observe/metrics.hpp). A worker's are written only by that worker (load + store,
// no read-modify-write); the pool's `outside` ones by any other thread (fetch_add). Both are read
// by counters() from any thread.
template <bool Shared>
struct ItemCounters {
  std::atomic<std::uint64_t> submitted{0}, chunks{0}, started{0}, done{0}, failed{0}, cancelled{0};
  // Loops run by a thread outside the pool, counted when that thread ran out of work: these are
  // submitted, started and ended at once (never "queued" or "running").
  std::atomic<std::uint64_t> loop_done{0}, loop_failed{0}, loop_cancelled{0};
  static void add(std::atomic<std::uint64_t>& c, std::uint64_t n) noexcept {
    if constexpr (Shared)
      c.fetch_add(n, std::memory_order_relaxed);
    else
      c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void count(observe::EventKind kind, std::uint64_t n) noexcept {
    switch (kind) {
      case observe::EventKind::TaskStarted:
        add(started, n);
        break;
      case observe::EventKind::TaskFinished:
        add(done, n);
        break;
      case observe::EventKind::TaskFailed:
        add(failed, n);
        break;
      case observe::EventKind::TaskCancelled:
        add(cancelled, n);
        break;
      default:
        break;
    }
  }
  // A task's event: its items, and the task itself as one chunk once it ends.
  void count_task(observe::EventKind kind, std::uint64_t n) noexcept {
    count(kind, n);
    if (kind != observe::EventKind::TaskStarted) add(chunks, 1);
  }
};

inline bool ends_task(observe::EventKind kind) noexcept {
  return kind == observe::EventKind::TaskFinished || kind == observe::EventKind::TaskFailed ||
         kind == observe::EventKind::TaskCancelled;
}

// A task's observe event, when anyone listens.
inline void emit_task_event(std::uint64_t pool_id, int worker, observe::EventKind kind,
                            std::uint64_t task_id, const std::exception_ptr* error) noexcept {
  if (!observe::active()) return;
  std::string detail;
  if (error && *error) {
    try {
      detail = exception_type_name(*error) + ": " + exception_message(*error);
    } catch (...) {
    }
  }
  observe::Event e{};
  e.detail = detail.empty() ? nullptr : detail.c_str();
  e.kind = kind;
  e.executor_id = pool_id;
  e.executor_kind = "thread";
  e.task_id = task_id;
  e.worker = worker;
  observe::emit(e);
}

// What threads that are not the pool's workers count into: a TaskGroup's owner running its own
// tasks, the caller of parallel_for taking part in the loop, a task refused at shutdown. These
// count their items only when they end (shared atomics, so as few as possible): what such a
// thread runs is never shown as running, and counters() takes its ended items as started.
struct OutsideObserver final : TaskObserver {
  explicit OutsideObserver(std::uint64_t id) : pool_id(id) {}
  void count(observe::EventKind kind, std::uint64_t n) noexcept override {
    if (kind != observe::EventKind::TaskStarted) with([&](auto& k) { k.count(kind, n); });
  }
  void on(observe::EventKind kind, std::uint64_t task_id, const std::exception_ptr* error,
          std::uint64_t n) noexcept override {
    if (ends_task(kind)) with([&](auto& k) { k.count_task(kind, n); });
    emit_task_event(pool_id, -1, kind, task_id, error);
  }
  bool per_chunk() const noexcept override { return false; }
  void claimed(std::uint64_t) noexcept override {}
  void skipped(std::uint64_t) noexcept override {}
  void count_loop(std::uint64_t, std::uint64_t done, std::uint64_t failed,
                  std::uint64_t cancelled) noexcept override {
    with([&](auto& k) {
      if (done) k.add(k.loop_done, done);
      if (failed) k.add(k.loop_failed, failed);
      if (cancelled) k.add(k.loop_cancelled, cancelled);
    });
  }
  void count_submitted(std::uint64_t n) noexcept {
    with([&](auto& k) { k.add(k.submitted, n); });
  }
  // Every outside thread's counts, added to `c` (the levels are the caller's business).
  template <class Add>
  void add_to(Add&& add) const {
    add(shared);
    std::lock_guard lk(mu);
    for (const auto& s : slots)
      add(s->k);
  }

 private:
  // Each thread outside the pool counts into a slot of its own (plain stores, as a worker does),
  // found through a thread_local cache of the last pool it used; past kMaxSlots threads, the
  // rest share atomic counters.
  struct alignas(64) Slot {
    ItemCounters<false> k;
    std::thread::id owner = std::this_thread::get_id();
  };
  static constexpr std::size_t kMaxSlots = 64;
  struct Cache {
    std::uint64_t pool;
    ItemCounters<false>* k;
  };
  static inline thread_local Cache cache_{0, nullptr};
  ItemCounters<false>* mine() noexcept {
    if (cache_.pool == pool_id) return cache_.k;
    try {
      std::lock_guard lk(mu);
      const auto me = std::this_thread::get_id();
      for (const auto& sl : slots)  // this thread's slot, from before it used another pool
        if (sl->owner == me) {
          cache_ = {pool_id, &sl->k};
          return cache_.k;
        }
      if (slots.size() >= kMaxSlots) return nullptr;
      slots.push_back(std::make_unique<Slot>());
      cache_ = {pool_id, &slots.back()->k};
      return cache_.k;
    } catch (...) {
      return nullptr;
    }
  }
  template <class F>
  void with(F&& f) noexcept {
    if (ItemCounters<false>* k = mine())
      f(*k);
    else
      f(shared);
  }

 public:
  const std::uint64_t pool_id;

 private:
  alignas(64) ItemCounters<true> shared;
  mutable std::mutex mu;
  std::vector<std::unique_ptr<Slot>> slots;
};

}  // namespace parx::detail
