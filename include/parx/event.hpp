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
  friend struct Codec<Event>;
  explicit Event(std::shared_ptr<SharedMemory> attach);
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
  friend struct Codec<Semaphore>;
  friend class BoundedSemaphore;
  explicit Semaphore(std::shared_ptr<SharedMemory> attach);
  bool acquire_ns(long long timeout_ns);
  std::shared_ptr<SharedMemory> seg_;
  detail::SemaphoreWord* w_ = nullptr;
};

// A semaphore that refuses to be released above its initial value.
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(std::uint32_t value = 1) : Semaphore(value, value) {}

 private:
  friend struct Codec<BoundedSemaphore>;
  explicit BoundedSemaphore(Semaphore&& s) : Semaphore(std::move(s)) {}
};

template <>
struct Codec<Event> {
  static void encode(Encoder& e, const Event& v) { e.put(*v.segment()); }
  static Event make(Decoder& d) {
    return Event(std::make_shared<SharedMemory>(d.make<SharedMemory>()));
  }
  static void decode(Decoder& d, Event& v) { v = make(d); }
};
template <>
struct Codec<Semaphore> {
  static void encode(Encoder& e, const Semaphore& v) { e.put(*v.segment()); }
  static Semaphore make(Decoder& d) {
    return Semaphore(std::make_shared<SharedMemory>(d.make<SharedMemory>()));
  }
  static void decode(Decoder& d, Semaphore& v) { v = make(d); }
};
template <>
struct Codec<BoundedSemaphore> {
  static void encode(Encoder& e, const BoundedSemaphore& v) { e.put(*v.segment()); }
  static BoundedSemaphore make(Decoder& d) { return BoundedSemaphore(Codec<Semaphore>::make(d)); }
  static void decode(Decoder& d, BoundedSemaphore& v) { v = make(d); }
};

}  // namespace parx
