// Event and Semaphore: lock-free words in shared memory with shared-futex wake-ups.
#include "parx/event.hpp"

#include <climits>
#include <new>

#include "parx/detail/sync.hpp"

namespace parx {
namespace {

std::int64_t deadline_of(long long timeout_ns) {
  return timeout_ns < 0 ? -1 : detail::now_ns() + (timeout_ns > 0 ? timeout_ns : 0);
}

// Sleeps on `seq` while it still reads `seen`; false once the deadline has passed.
bool sleep_on(std::atomic<std::uint32_t>& seq, std::uint32_t seen, std::int64_t deadline) {
  std::int64_t left = -1;
  if (deadline >= 0) {
    left = deadline - detail::now_ns();
    if (left <= 0) return false;
  }
  detail::futex_wait_shared(&seq, seen, left);
  return true;
}

}  // namespace

// ---- Event ----------------------------------------------------------------------------------

Event::Event()
    : seg_(std::make_shared<SharedMemory>(SharedMemory::create(sizeof(detail::EventWord)))) {
  w_ = new (seg_->data()) detail::EventWord{};
  w_->magic = detail::EventWord::kMagic;
}

Event::Event(detail::AttachTo, std::shared_ptr<SharedMemory> seg)
    : seg_(std::move(seg)), w_(detail::checked_word<detail::EventWord>(seg_, kName)) {}

void Event::set() {
  w_->flag.store(1, std::memory_order_release);
  w_->seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake_shared(&w_->seq, INT_MAX);
}

void Event::clear() {
  w_->flag.store(0, std::memory_order_release);
}

bool Event::is_set() const noexcept {
  return w_->flag.load(std::memory_order_acquire) != 0;
}

bool Event::wait() {
  return wait_ns(-1);
}

bool Event::wait_ns(long long timeout_ns) {
  const std::int64_t deadline = deadline_of(timeout_ns);
  for (;;) {
    const std::uint32_t seen = w_->seq.load(std::memory_order_acquire);
    if (is_set()) return true;  // checked after reading seq: a set() in between changes seq
    if (timeout_ns == 0 || !sleep_on(w_->seq, seen, deadline)) return is_set();
  }
}

// ---- Semaphore ------------------------------------------------------------------------------

Semaphore::Semaphore(std::uint32_t value, std::uint32_t max)
    : seg_(std::make_shared<SharedMemory>(SharedMemory::create(sizeof(detail::SemaphoreWord)))) {
  w_ = new (seg_->data()) detail::SemaphoreWord{};
  w_->value.store(value, std::memory_order_relaxed);
  w_->max = max;
  w_->magic = detail::SemaphoreWord::kMagic;
}

Semaphore::Semaphore(detail::AttachTo, std::shared_ptr<SharedMemory> seg, const char* name)
    : seg_(std::move(seg)), w_(detail::checked_word<detail::SemaphoreWord>(seg_, name)) {}

bool Semaphore::try_acquire() {
  std::uint32_t v = w_->value.load(std::memory_order_acquire);
  while (v > 0)
    if (w_->value.compare_exchange_weak(v, v - 1, std::memory_order_acq_rel)) return true;
  return false;
}

bool Semaphore::acquire() {
  return acquire_ns(-1);
}

bool Semaphore::acquire_ns(long long timeout_ns) {
  const std::int64_t deadline = deadline_of(timeout_ns);
  for (;;) {
    const std::uint32_t seen = w_->seq.load(std::memory_order_acquire);
    if (try_acquire()) return true;  // a release after this point changes seq: no lost wake-up
    if (timeout_ns == 0 || !sleep_on(w_->seq, seen, deadline)) return try_acquire();
  }
}

void Semaphore::release() {
  std::uint32_t v = w_->value.load(std::memory_order_acquire);
  do {
    if (w_->max && v >= w_->max)
      throw InvalidState("BoundedSemaphore released more times than it was acquired");
  } while (!w_->value.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel));
  w_->seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake_shared(&w_->seq, 1);
}

std::uint32_t Semaphore::value() const noexcept {
  return w_->value.load(std::memory_order_acquire);
}

}  // namespace parx
