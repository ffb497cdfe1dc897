// parx/event.hpp — Event and Semaphore/BoundedSemaphore shared by processes and threads
// (Python's multiprocessing.Event, Semaphore, BoundedSemaphore).
//
// Both are lock-free words in shared memory with futex wake-ups: there is no lock a dying process
// could hold, so a process killed at any point never wedges the others.
//
// Contract
//   * Event: set() wakes every waiter and keeps the flag set until clear(); wait(timeout)
//     returns the flag (false on timeout).
//   * Semaphore(n): acquire() takes one unit, blocking while none is left; acquire(timeout)
//     returns false on timeout; release() returns one. BoundedSemaphore(n) throws
//     parx::InvalidState if released above n (Python raises ValueError).
//   * A semaphore has no owner: units held by a process that dies are not returned (as in
//     Python) — use parx::Lock where the holder's death must be detected.
//   * Passed to a parx::Process, the object travels as its segment's name.
//
// Thread-safety: all members, from any thread of any process.
//
// Example
//   parx::Event ready;
//   parx::Semaphore slots(4);                    // at most 4 processes in the critical section
//   parx::Process p(worker, ready, slots);       // worker: ready.wait(); slots.acquire(); ...
//   ready.set();
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "parx/detail/ipc_handle.hpp"
#include "parx/shared_memory.hpp"

namespace parx {

namespace detail {
struct EventWord {
  static constexpr std::uint64_t kMagic = 0x7061727845564e54ull;  // "parxEVNT"
  std::uint64_t magic;
  std::atomic<std::uint32_t> flag;
  std::atomic<std::uint32_t> seq;
};
struct SemaphoreWord {
  static constexpr std::uint64_t kMagic = 0x7061727853454d41ull;  // "parxSEMA"
  std::uint64_t magic;
  std::atomic<std::uint32_t> value;
  std::atomic<std::uint32_t> seq;
  std::uint32_t max;  // 0: unbounded
};
}  // namespace detail

class Event {
 public:
  Event();
  void set();
  void clear();
  bool is_set() const noexcept;
  // Waits until set; returns true then, false if the timeout passed first.
  bool wait();
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count());
  }
  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 private:
  friend struct detail::SegmentCodec<Event>;
  static constexpr const char* kName = "Event";
  Event(detail::AttachTo, std::shared_ptr<SharedMemory> seg);
  bool wait_ns(long long timeout_ns);
  std::shared_ptr<SharedMemory> seg_;
  detail::EventWord* w_ = nullptr;
};

class Semaphore {
 public:
  explicit Semaphore(std::uint32_t value = 1) : Semaphore(value, 0) {}
  bool acquire();
  template <class Rep, class Period>
  bool acquire(std::chrono::duration<Rep, Period> timeout) {
    return acquire_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count());
  }
  bool try_acquire();
  void release();
  std::uint32_t value() const noexcept;
  // std::lock_guard compatibility.
  void lock() { (void)acquire(); }
  bool try_lock() { return try_acquire(); }
  void unlock() { release(); }
  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 protected:
  Semaphore(std::uint32_t value, std::uint32_t max);

 private:
  friend struct detail::SegmentCodec<Semaphore>;
  friend class BoundedSemaphore;
  static constexpr const char* kName = "Semaphore";
  Semaphore(detail::AttachTo, std::shared_ptr<SharedMemory> seg, const char* name = kName);
  bool acquire_ns(long long timeout_ns);
  std::shared_ptr<SharedMemory> seg_;
  detail::SemaphoreWord* w_ = nullptr;
};

// A semaphore that refuses to be released above its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::uint32_t value = 1) : Semaphore(value, value) {}

 private:
  friend struct detail::SegmentCodec<BoundedSemaphore>;
  static constexpr const char* kName = "BoundedSemaphore";
  BoundedSemaphore(detail::AttachTo a, std::shared_ptr<SharedMemory> seg)
      : Semaphore(a, std::move(seg), kName) {}
};

template <>
struct Codec<Event> : detail::SegmentCodec<Event> {};
template <>
struct Codec<Semaphore> : detail::SegmentCodec<Semaphore> {};
template <>
struct Codec<BoundedSemaphore> : detail::SegmentCodec<BoundedSemaphore> {};

}  // namespace parx
