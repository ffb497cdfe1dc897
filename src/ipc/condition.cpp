// Condition: a sequence word in shared memory; waiters sleep on it with the lock released.
#include "parx/condition.hpp"

#include <climits>
#include <new>

#include "parx/detail/sync.hpp"

namespace parx {

Condition::Condition(Lock lock)
    : lock_(std::move(lock)),
      seg_(std::make_shared<SharedMemory>(SharedMemory::create(sizeof(detail::ConditionWord)))) {
  w_ = new (seg_->data()) detail::ConditionWord{};
  w_->magic = detail::ConditionWord::kMagic;
}

Condition::Condition(Lock lock, std::shared_ptr<SharedMemory> seg)
    : lock_(std::move(lock)),
      seg_(std::move(seg)),
      w_(detail::checked_word<detail::ConditionWord>(seg_, kName)) {}

bool Condition::wait_ns(long long timeout_ns) {
  // Read the word while holding the lock: a notify after this point (made under the lock, after
  // we release it) changes it, so the futex wait returns at once — no lost wake-up.
  const std::uint32_t seen = w_->seq.load(std::memory_order_acquire);
  lock_.unlock();
  detail::futex_wait_shared(&w_->seq, seen, timeout_ns < 0 ? -1 : timeout_ns);
  lock_.lock();
  return w_->seq.load(std::memory_order_acquire) != seen;
}

void Condition::notify(int n) {
  w_->seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake_shared(&w_->seq, n);
}

void Condition::notify_all() {
  w_->seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake_shared(&w_->seq, INT_MAX);
}

}  // namespace parx
