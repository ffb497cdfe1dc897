// parx/aio/sync.hpp — coroutine-aware synchronisation for parx::aio tasks (asyncio.Event, Lock,
// Semaphore, Queue): waiting suspends the task, never the loop's thread.
//
// Contract
//   * Every wait is cancellable: a task cancelled while waiting ends the wait with
//     parx::Cancelled and takes nothing (no permit, no item, no lock).
//   * Waiters are served in arrival order (Semaphore, Lock, Queue).
//   * Unlike asyncio's, these are thread-safe: tasks on a loop driven by several threads, and
//     plain threads (the non-waiting calls: set, release, put_nowait…), may use them concurrently.
//
// Example
//   parx::aio::Queue<int> q(100);                      // bounded
//   auto producer = [&]() -> parx::aio::Task<void> {
//     for (int i = 0; i < 1000; ++i) co_await q.put(i);   // waits while full
//   };
//   auto consumer = [&]() -> parx::aio::Task<void> {
//     for (;;) { int v = co_await q.get(); use(v); q.task_done(); }
//   };
//   co_await q.join();                                 // every item put was task_done
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "parx/aio/task.hpp"
#include "parx/errors.hpp"

namespace parx::aio {

// A flag tasks can wait for (asyncio.Event).
class Event {
 public:
  void set() {
    std::lock_guard lk(s_->mu);
    s_->set = true;
    s_->waiters.notify_all();
  }
  void clear() {
    std::lock_guard lk(s_->mu);
    s_->set = false;
  }
  bool is_set() const {
    std::lock_guard lk(s_->mu);
    return s_->set;
  }
  // Returns once the flag is set.
  Task<void> wait() {
    auto s = s_;
    const auto enlist = [s](std::shared_ptr<detail::Waiter> w) {
      std::lock_guard lk(s->mu);
      if (s->set)
        w->fire({});
      else
        s->waiters.add(std::move(w));
    };
    co_await detail::wait_on(enlist);
  }

 private:
  struct State {
    std::mutex mu;
    bool set = false;
    detail::WaitList waiters;
  };
  std::shared_ptr<State> s_ = std::make_shared<State>();
};

// A counter of permits (asyncio.Semaphore / BoundedSemaphore).
class Semaphore {
 public:
  // `bound`: release() beyond it throws parx::InvalidState (0: unbounded).
  explicit Semaphore(std::size_t permits, std::size_t bound = 0) {
    s_->count = permits;
    s_->bound = bound;
  }
  // Takes a permit, waiting for one if none is free.
  Task<void> acquire() {
    auto s = s_;
    const auto enlist = [s](std::shared_ptr<detail::Waiter> w) {
      std::lock_guard lk(s->mu);
      if (s->count > 0 && s->waiters.empty()) {
        --s->count;
        w->fire({});
      } else {
        s->waiters.add(std::move(w));
      }
    };
    co_await detail::wait_on(enlist);
  }
  bool try_acquire() {
    std::lock_guard lk(s_->mu);
    if (s_->count == 0 || !s_->waiters.empty()) return false;
    --s_->count;
    return true;
  }
  // Returns a permit: handed to the first waiter, or counted.
  void release() {
    std::lock_guard lk(s_->mu);
    if (s_->waiters.notify_one()) return;  // the permit passes straight to a waiter
    if (s_->bound && s_->count >= s_->bound)
      throw InvalidState("parx::aio::Semaphore::release: released more often than acquired");
    ++s_->count;
  }
  std::size_t available() const {
    std::lock_guard lk(s_->mu);
    return s_->count;
  }

 private:
  struct State {
    std::mutex mu;
    std::size_t count = 0;
    std::size_t bound = 0;
    detail::WaitList waiters;
  };
  std::shared_ptr<State> s_ = std::make_shared<State>();
};

// Mutual exclusion between tasks (asyncio.Lock). `auto g = co_await lock.lock();` holds it until
// g is destroyed (or g.unlock()).
class Lock {
 public:
  class Guard {
   public:
    Guard() = default;
    explicit Guard(Semaphore* s) : s_(s) {}
    Guard(Guard&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        unlock();
        s_ = std::exchange(o.s_, nullptr);
      }
      return *this;
    }
    ~Guard() { unlock(); }
    void unlock() {
      if (s_) std::exchange(s_, nullptr)->release();
    }
    bool owns_lock() const noexcept { return s_ != nullptr; }

   private:
    Semaphore* s_ = nullptr;
  };

  Task<Guard> lock() {
    co_await sem_.acquire();
    co_return Guard(&sem_);
  }
  std::optional<Guard> try_lock() {
    if (!sem_.try_acquire()) return std::nullopt;
    return Guard(&sem_);
  }
  bool locked() const { return sem_.available() == 0; }

 private:
  Semaphore sem_{1, 1};
};

// A FIFO queue between tasks (asyncio.Queue): bounded (maxsize > 0) or not; put waits while full,
// get while empty; join() waits until every item put has been marked task_done().
template <class T>
class Queue {
 public:
  explicit Queue(std::size_t maxsize = 0) { s_->maxsize = maxsize; }

  Task<void> put(T v) {
    auto s = s_;
    for (;;) {
      {
        std::lock_guard lk(s->mu);
        if (!s->full()) {
          s->push(std::move(v));
          co_return;
        }
      }
      const auto enlist = [s](std::shared_ptr<detail::Waiter> w) {
        std::lock_guard lk(s->mu);
        if (!s->full())
          w->fire({});
        else
          s->not_full.add(std::move(w));
      };
      co_await detail::wait_on(enlist);
    }
  }
  Task<T> get() {
    auto s = s_;
    for (;;) {
      {
        std::lock_guard lk(s->mu);
        if (!s->items.empty()) co_return s->pop();
      }
      const auto enlist = [s](std::shared_ptr<detail::Waiter> w) {
        std::lock_guard lk(s->mu);
        if (!s->items.empty())
          w->fire({});
        else
          s->not_empty.add(std::move(w));
      };
      co_await detail::wait_on(enlist);
    }
  }
  // False if the queue is full.
  bool put_nowait(T v) {
    std::lock_guard lk(s_->mu);
    if (s_->full()) return false;
    s_->push(std::move(v));
    return true;
  }
  std::optional<T> get_nowait() {
    std::lock_guard lk(s_->mu);
    if (s_->items.empty()) return std::nullopt;
    return s_->pop();
  }
  // Marks one item taken with get as processed. parx::InvalidState if called more often than
  // items were put.
  void task_done() {
    std::lock_guard lk(s_->mu);
    if (s_->unfinished == 0)
      throw InvalidState("parx::aio::Queue::task_done: called more times than items were put");
    if (--s_->unfinished == 0) s_->all_done.notify_all();
  }
  // Returns once every item put so far has been marked task_done.
  Task<void> join() {
    auto s = s_;
    const auto enlist = [s](std::shared_ptr<detail::Waiter> w) {
      std::lock_guard lk(s->mu);
      if (s->unfinished == 0)
        w->fire({});
      else
        s->all_done.add(std::move(w));
    };
    co_await detail::wait_on(enlist);
  }
  std::size_t size() const {
    std::lock_guard lk(s_->mu);
    return s_->items.size();
  }
  bool empty() const { return size() == 0; }
  std::size_t maxsize() const noexcept { return s_->maxsize; }

 private:
  struct State {
    std::mutex mu;
    std::deque<T> items;
    std::size_t maxsize = 0;
    std::size_t unfinished = 0;
    detail::WaitList not_empty, not_full, all_done;
    bool full() const { return maxsize && items.size() >= maxsize; }
    void push(T v) {
      items.push_back(std::move(v));
      ++unfinished;
      not_empty.notify_one();
    }
    T pop() {
      T v = std::move(items.front());
      items.pop_front();
      not_full.notify_one();
      return v;
    }
  };
  std::shared_ptr<State> s_ = std::make_shared<State>();
};

}  // namespace parx::aio
