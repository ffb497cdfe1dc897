// parx/barrier.hpp — Barrier: `parties` processes (or threads) wait until all have arrived
// (Python's multiprocessing.Barrier), and a party that dies breaks it instead of hanging the rest.
//
// Contract
//   * wait() blocks until `parties` calls of the current round have arrived, then releases them
//     all and returns each a distinct index in [0, parties); the barrier is then reusable.
//   * The barrier breaks — every current and later wait() throws parx::BrokenBarrier until
//     reset() — when a wait times out, abort() is called, or a party's process dies: from its
//     first wait() on, each party is recorded with its process id and start time, and waiters
//     check those processes while they sleep (every 20 ms), so a party SIGKILLed between two
//     rounds, or while waiting, is noticed within about that long (a recycled pid is told apart
//     by its start time).
//   * A party is a Barrier object: give each process (or thread) its own copy. At most 64 parties.
//   * Passed to a parx::Process it travels as its segment's name.
//
// Thread-safety: distinct copies may be used concurrently from any thread of any process.
//
// Example
//   void step(parx::Barrier b, int rank) { for (int i = 0; i < 10; ++i) { compute(rank, i);
//   b.wait(); } } parx::Barrier b(4); for (int r = 0; r < 4; ++r) procs.emplace_back(step, b, r);
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "parx/detail/ipc_handle.hpp"
#include "parx/lock.hpp"

namespace parx {

class BrokenBarrier : public Error {
 public:
  explicit BrokenBarrier(const std::string& why) : Error("parx::BrokenBarrier: " + why) {}
};

class Barrier {
 public:
  static constexpr std::uint32_t kMaxParties = 64;

  explicit Barrier(std::uint32_t parties);
  Barrier(const Barrier& o);  // a new party handle on the same barrier
  Barrier& operator=(const Barrier& o);
  Barrier(Barrier&& o) noexcept;
  Barrier& operator=(Barrier&& o) noexcept;
  ~Barrier();

  std::uint32_t wait() { return wait_ns(-1); }
  template <class Rep, class Period>
  std::uint32_t wait(std::chrono::duration<Rep, Period> timeout) {
    return wait_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count());
  }
  // Breaks the barrier: waiters get BrokenBarrier.
  void abort();
  // Mends a broken barrier for a new round (no party may be waiting).
  void reset();
  bool broken() const;
  std::uint32_t parties() const;
  std::uint32_t n_waiting() const;

  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 private:
  friend struct detail::SegmentCodec<Barrier>;
  struct Header;
  static constexpr const char* kName = "Barrier";
  Barrier(detail::AttachTo, std::shared_ptr<SharedMemory> seg);
  std::uint32_t wait_ns(long long timeout_ns);
  void claim_slot();
  bool a_party_died();
  void break_locked(const char* why);
  Header* header() const;

  std::shared_ptr<SharedMemory> seg_;
  mutable Lock lock_;
  int slot_ = -1;  // this handle's party slot, once it has waited
};

template <>
struct Codec<Barrier> : detail::SegmentCodec<Barrier> {};

}  // namespace parx
