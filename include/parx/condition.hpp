// parx/condition.hpp — Condition: a condition variable shared by processes and threads
// (Python's multiprocessing.Condition), paired with a parx::Lock.
//
// Contract
//   * wait()/wait(timeout) must be called with the lock held: it releases the lock, sleeps until
//     notified (or the timeout), and re-acquires it before returning. Like every condition
//     variable it may wake spuriously: loop on the condition, or use wait_for(predicate).
//   * wait(timeout) returns false if it timed out; wait_for(pred, timeout) returns pred() after
//     waiting at most `timeout` for it to become true.
//   * notify(n) wakes up to n waiters, notify_all() all; call them with the lock held (as Python
//     requires) so no waiter can miss a change it was about to wait for.
//   * If the lock's previous holder died, the re-acquisition inside wait still succeeds, and
//     lock().previous_owner_died() tells so.
//   * Passed to a parx::Process it travels as the names of its segments (its own and its lock's).
//   * The lock must be a parx::Lock (not an RLock: a recursive lock cannot be released in full
//     by wait).
//
// Thread-safety: all members, from any thread of any process.
//
// Example
//   parx::Lock lock;  parx::Condition ready(lock);  parx::SharedValue<int> stage(0);
//   // waiter:   std::unique_lock g(ready.lock()); ready.wait_for([&] { return stage.ref() == 2;
//   });
//   // notifier: { std::lock_guard g(ready.lock()); stage.ref() = 2; ready.notify_all(); }
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "parx/detail/ipc_handle.hpp"
#include "parx/lock.hpp"

namespace parx {

namespace detail {
struct ConditionWord {
  static constexpr std::uint64_t kMagic = 0x70617278434f4e44ull;  // "parxCOND"
  std::uint64_t magic;
  std::atomic<std::uint32_t> seq;
};
}  // namespace detail

class Condition {
 public:
  // A condition over `lock` (shared with the caller: copies of a Lock share the mutex).
  explicit Condition(Lock lock = Lock());

  Lock& lock() noexcept { return lock_; }

  bool wait() { return wait_ns(-1); }
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count());
  }
  template <class Pred>
  bool wait_for(Pred pred) {
    while (!pred())
      wait();
    return true;
  }
  template <class Pred, class Rep, class Period>
  bool wait_for(Pred pred, std::chrono::duration<Rep, Period> timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      const auto left = end - std::chrono::steady_clock::now();
      if (left <= decltype(left)::zero()) return pred();
      wait(left);
    }
    return true;
  }
  void notify(int n = 1);
  void notify_all();

  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 private:
  friend struct Codec<Condition>;
  static constexpr const char* kName = "Condition";
  Condition(Lock lock, std::shared_ptr<SharedMemory> seg);
  bool wait_ns(long long timeout_ns);
  Lock lock_;
  std::shared_ptr<SharedMemory> seg_;
  detail::ConditionWord* w_ = nullptr;
};

template <>
struct Codec<Condition> {
  static void encode(Encoder& e, const Condition& c) {
    e.put(const_cast<Condition&>(c).lock());
    e.put(*c.segment());
  }
  static Condition make(Decoder& d) {
    Lock l = d.make<Lock>();
    return Condition(std::move(l), detail::decode_segment(d, Condition::kName));
  }
  static void decode(Decoder& d, Condition& c) { c = make(d); }
};

}  // namespace parx
