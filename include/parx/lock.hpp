// parx/lock.hpp — parx::Lock: a mutex shared by processes (and threads) that survives its holder
// dying (Python's multiprocessing.Lock, made robust).
//
// A Lock lives in shared memory (a robust, process-shared pthread mutex). If a process dies while
// holding it, the next acquirer gets it — with LockStatus::owner_died, so it knows the data the
// lock protects may be half-updated — instead of hanging for ever. (Boost.Interprocess's named
// mutexes hang in that case; Python's Lock hangs too.)
//
// Contract
//   * acquire() blocks; acquire(timeout) gives up with LockStatus::timed_out. Both return
//     acquired or owner_died when the caller holds the lock.
//   * lock()/try_lock()/unlock() make it a standard Lockable (std::lock_guard, std::unique_lock,
//     std::scoped_lock); after lock(), previous_owner_died() tells whether the last acquisition
//     recovered a dead owner's lock.
//   * Unlocking a lock the caller does not hold throws parx::InvalidState.
//   * A Lock passed to a parx::Process travels as its segment's name; the child shares the same
//     mutex. Copies of a Lock object (in one process) share the mutex too.
//
// Thread-safety: all members are thread-safe; the lock is owned by the acquiring thread.
//
// Example
//   parx::Lock lock;
//   parx::Process p(update_ledger, lock, ledger);  // the child locks the same mutex
//   if (lock.acquire(std::chrono::seconds(1)) == parx::LockStatus::owner_died) repair(ledger);
//   lock.unlock();
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "parx/detail/ipc_handle.hpp"
#include "parx/shared_memory.hpp"

namespace parx {

enum class LockStatus {
  acquired,    // the caller holds the lock
  owner_died,  // the caller holds the lock; its previous holder died while holding it
  timed_out,   // the caller does not hold the lock
};

namespace detail {
struct RobustMutex;  // lives in shared memory
}

class Lock {
 public:
  // A new lock. Its shared segment is made on first use, so constructing one is cheap (and a
  // Lock decoded from a message never makes a segment of its own).
  Lock();
  // A lock placed at `offset` of an existing segment, initialised if `create` (used by
  // SharedValue/SharedArray and the other ipc types). Keeps the segment mapped.
  Lock(std::shared_ptr<SharedMemory> segment, std::size_t offset, bool create);

  LockStatus acquire();
  template <class Rep, class Period>
  LockStatus acquire(std::chrono::duration<Rep, Period> timeout) {
    return acquire_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count());
  }
  void lock();
  bool try_lock();
  void unlock();
  bool previous_owner_died() const noexcept { return owner_died_; }

  // The segment and offset holding the mutex (made now if not yet).
  const std::shared_ptr<SharedMemory>& segment() const;
  std::size_t offset() const;
  // Bytes a lock occupies in a segment (for layouts that embed one).
  static std::size_t footprint() noexcept;

 protected:
  struct Recursive {};
  explicit Lock(Recursive);

 private:
  struct Impl;
  detail::RobustMutex* mutex() const;
  LockStatus acquire_ns(long long timeout_ns);
  std::shared_ptr<Impl> impl_;
  bool owner_died_ = false;
};

// A reentrant Lock (Python's RLock): the holding thread may acquire it again; it is free once
// released as many times. Robust like Lock: a holder that dies gives the next acquirer
// LockStatus::owner_died.
class RLock : public Lock {
 public:
  RLock() : Lock(Recursive{}) {}

 private:
  friend struct Codec<RLock>;
  explicit RLock(Lock&& l) : Lock(std::move(l)) {}
};

template <>
struct Codec<Lock> {
  static void encode(Encoder& e, const Lock& l) {
    const auto& seg = l.segment();  // made now if the lock was never used
    e.put(*seg);
    e.put(static_cast<std::uint64_t>(l.offset()));
  }
  static Lock make(Decoder& d) {
    auto seg = detail::decode_segment(d, "Lock");
    std::uint64_t off = 0;
    d.get(off);
    if (off > seg->size() || seg->size() - off < Lock::footprint())
      throw SerializationError("Lock: segment too small for a lock at offset " +
                               std::to_string(off));
    return Lock(std::move(seg), static_cast<std::size_t>(off), false);
  }
  static void decode(Decoder& d, Lock& l) { l = make(d); }
};

template <>
struct Codec<RLock> {
  static void encode(Encoder& e, const RLock& l) { Codec<Lock>::encode(e, l); }
  static RLock make(Decoder& d) { return RLock(Codec<Lock>::make(d)); }
  static void decode(Decoder& d, RLock& l) { l = make(d); }
};

}  // namespace parx
