// Out-of-line parts of parx/future.hpp and parx/detail/sync.hpp: the completion protocol of a
// shared state, futex wrappers, and the spin-then-help-then-sleep wait loop.
#include "parx/future.hpp"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

namespace parx::detail {

// ---- futex ------------------------------------------------------------------------------------

namespace {
// FUTEX_WAIT with a relative timeout (< 0: none); EINTR, EAGAIN and ETIMEDOUT all mean "re-check".
void futex_wait_op(const std::atomic<std::uint32_t>* word, int op, std::uint32_t expected,
                   std::int64_t timeout_ns) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), op, expected, tsp, nullptr, 0);
}
}  // namespace

void futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                std::int64_t timeout_ns) noexcept {
  futex_wait_op(word, FUTEX_WAIT_PRIVATE, expected, timeout_ns);
}

void futex_wake(const std::atomic<std::uint32_t>* word, int count) noexcept {
  syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), FUTEX_WAKE_PRIVATE, count,
          nullptr, nullptr, 0);
}

void futex_wait_shared(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::int64_t timeout_ns) noexcept {
  futex_wait_op(word, FUTEX_WAIT, expected, timeout_ns);
}

void futex_wake_shared(const std::atomic<std::uint32_t>* word, int count) noexcept {
  syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), FUTEX_WAKE, count, nullptr,
          nullptr, 0);
}

// ---- helping ----------------------------------------------------------------------------------

namespace {
thread_local Helper* tls_helper = nullptr;

// How long a waiter spins (pause, then yield) before it sleeps or helps. Waking a sleeping thread
// costs ~30 µs on the reference machine, so a short spin keeps fork-join latency low while
// costing little when the wait is long. Default: 20 µs.
constexpr std::int64_t kSpinNs = 20'000;
// A helping worker that finds nothing to run naps for this long, doubling up to kMaxNapNs, then
// looks for work again (new tasks do not wake a thread that sleeps on a future).
constexpr std::int64_t kMinNapNs = 20'000;
constexpr std::int64_t kMaxNapNs = 1'000'000;
}  // namespace

Helper* current_helper() noexcept {
  return tls_helper;
}
Helper* set_current_helper(Helper* h) noexcept {
  return std::exchange(tls_helper, h);
}

bool wait_for_done(Waitable& w, std::int64_t deadline_ns) {
  Helper* const helper = tls_helper;
  // Phase 1: spin briefly (unless helping, where running other work beats spinning).
  if (!helper) {
    for (int i = 0; i < 128; ++i) {
      if (w.is_done()) return true;
      cpu_relax();
    }
    const std::int64_t spin_end = now_ns() + kSpinNs;
    while (now_ns() < spin_end) {
      if (w.is_done()) return true;
      if (deadline_ns >= 0 && now_ns() >= deadline_ns) return false;
      sched_yield();
    }
  }
  // Phase 2: help (workers) or sleep (everyone else).
  std::int64_t nap = kMinNapNs;
  for (;;) {
    if (w.is_done()) return true;
    if (helper && helper->help_one()) {
      nap = kMinNapNs;
      continue;
    }
    const std::int64_t now = now_ns();
    if (deadline_ns >= 0 && now >= deadline_ns) return w.is_done();
    const std::atomic<std::uint32_t>* word = nullptr;
    std::uint32_t value = 0;
    if (!w.arm(word, value)) return true;
    std::int64_t timeout = -1;
    if (helper) {
      timeout = nap;
      nap = std::min(nap * 2, kMaxNapNs);
    }
    if (deadline_ns >= 0) {
      const std::int64_t left = deadline_ns - now;
      timeout = timeout < 0 ? left : std::min(timeout, left);
    }
    futex_wait(word, value, timeout);
  }
}

// ---- state ------------------------------------------------------------------------------------

bool StateBase::arm(const std::atomic<std::uint32_t>*& word, std::uint32_t& value) noexcept {
  std::uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    if ((w & kStatusMask) >= kValue) return false;
    if (w & kWaiters) break;
    if (word_.compare_exchange_weak(w, w | kWaiters, std::memory_order_acq_rel)) {
      w |= kWaiters;
      break;
    }
  }
  word = &word_;
  value = w;
  return true;
}

bool StateBase::complete(std::uint32_t to, bool only_if_pending) noexcept {
  std::uint32_t w = word_.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint32_t st = w & kStatusMask;
    if (st >= kValue) return false;
    if (only_if_pending && st != kPending) return false;
    if (word_.compare_exchange_weak(w, to, std::memory_order_acq_rel, std::memory_order_relaxed))
      break;
  }
  if (w & kWaiters) futex_wake(&word_, INT_MAX);
  run_callbacks();
  return true;
}

void StateBase::add_callback(CallbackNode* n) noexcept {
  CallbackNode* head = callbacks_.load(std::memory_order_acquire);
  do {
    if (head == closed()) {
      n->run(*this);
      delete n;
      return;
    }
    n->next = head;
  } while (!callbacks_.compare_exchange_weak(head, n, std::memory_order_acq_rel,
                                             std::memory_order_acquire));
}

void StateBase::run_callbacks() noexcept {
  CallbackNode* head = callbacks_.exchange(closed(), std::memory_order_acq_rel);
  if (head == nullptr) return;
  // Registered last-in-first-out; run them in registration order.
  CallbackNode* fifo = nullptr;
  while (head) {
    CallbackNode* next = head->next;
    head->next = fifo;
    fifo = head;
    head = next;
  }
  // A callback may drop what was the last other reference to *this: hold one while they run.
  add_ref();
  while (fifo) {
    CallbackNode* next = fifo->next;
    fifo->run(*this);
    delete fifo;
    fifo = next;
  }
  release();
}

void throw_timeout(const char* what) {
  throw TimeoutError(what);
}
void throw_invalid(const char* what) {
  throw InvalidState(what);
}

}  // namespace parx::detail
