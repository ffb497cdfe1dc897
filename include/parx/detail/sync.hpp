// parx/detail/sync.hpp — futex wait/wake, CPU relax, and the hook through which a waiting pool
// worker helps run other tasks. Internal: used by Future, the schedulers and the IPC layer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace parx::detail {

// Pause instruction inside spin loops (lets the sibling hyper-thread run, saves power).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// Blocks while `*word == expected`, for at most `timeout_ns` (< 0: no limit). Returns when woken,
// on a value change, on timeout or spuriously: callers always re-check their condition.
void futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                std::int64_t timeout_ns = -1) noexcept;
// Wakes up to `count` threads blocked in futex_wait on `word`.
void futex_wake(const std::atomic<std::uint32_t>* word, int count) noexcept;
// The same for words in memory shared between processes (no FUTEX_PRIVATE_FLAG).
void futex_wait_shared(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::int64_t timeout_ns = -1) noexcept;
void futex_wake_shared(const std::atomic<std::uint32_t>* word, int count) noexcept;

// Monotonic clock in nanoseconds (steady_clock).
inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A thread that can run queued work while it waits (a pool worker) installs a Helper for its
// lifetime. Future::wait and friends call help_one() instead of blocking, which is what makes
// nested parallelism (a task that submits tasks and waits on them) deadlock-free even on one
// worker.
class Helper {
 public:
  // Runs at most one pending task. Returns false when there was nothing to run.
  virtual bool help_one() = 0;

 protected:
  ~Helper() = default;
};

// The helper installed on this thread, or nullptr for a plain thread.
Helper* current_helper() noexcept;
// Installs `h` on this thread and returns the previous one (restore it when done).
Helper* set_current_helper(Helper* h) noexcept;

// Something a thread can wait on: a future's state, as_completed's counter, a latch.
class Waitable {
 public:
  virtual bool is_done() const noexcept = 0;
  // Prepares to sleep: registers interest so the completer will futex_wake `*word`, and returns
  // the value to wait on. Returns false if the wait is over already.
  virtual bool arm(const std::atomic<std::uint32_t>*& word, std::uint32_t& value) noexcept = 0;

 protected:
  ~Waitable() = default;
};

// Waits until `w.is_done()` or the deadline (now_ns() scale; < 0: none). Spins briefly, then, on
// a pool worker, runs other tasks while waiting; otherwise sleeps on a futex. Returns is_done().
bool wait_for_done(Waitable& w, std::int64_t deadline_ns);

}  // namespace parx::detail
