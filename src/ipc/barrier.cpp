// Barrier in shared memory: a robust lock around the round's state, a sequence word to sleep on,
// and one robust "alive" lock per party so a dead party breaks the barrier.
#include "parx/barrier.hpp"

#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "parx/detail/sync.hpp"

namespace parx {

struct Barrier::Header {
  static constexpr std::uint64_t kMagic = 0x7061727842415252ull;  // "parxBARR"
  std::uint64_t magic;
  std::uint32_t parties;
  std::uint32_t count;       // arrived in this round
  std::uint32_t generation;  // rounds completed
  std::uint32_t broken;
  std::uint32_t claimed[kMaxParties];  // slot taken by a party
  std::int32_t pid[kMaxParties];       // the party's process ...
  std::uint64_t start[kMaxParties];    // ... and its start time (so a recycled pid is not it)
  std::atomic<std::uint32_t> seq;      // bumped when a round completes or the barrier breaks
};

namespace {
// [lock][header], one page.
std::size_t header_offset() {
  return Lock::footprint();
}
constexpr std::size_t kSegmentSize = 4096;

// Start time of `pid` (field 22 of /proc/pid/stat), 0 if it does not exist or is a zombie.
std::uint64_t start_time(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return 0;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = 0;
  const char* p = std::strrchr(buf, ')');  // the command name may contain spaces
  if (!p || p[1] != ' ') return 0;
  const char state = p[2];
  if (state == 'Z' || state == 'X') return 0;
  // Fields after ")": 3 is the state; skip to field 22, the start time.
  const char* q = p + 2;
  for (int field = 3; field < 22 && q; ++field) {
    q = std::strchr(q, ' ');
    if (q) ++q;
  }
  unsigned long long v = 0;
  if (!q || std::sscanf(q, "%llu", &v) != 1) return 0;
  return v;
}
}  // namespace

Barrier::Header* Barrier::header() const {
  return reinterpret_cast<Header*>(seg_->data() + header_offset());
}

Barrier::Barrier(std::uint32_t parties) {
  if (header_offset() + sizeof(Header) > kSegmentSize)
    throw Error("Barrier: header layout overflow");
  if (parties == 0 || parties > kMaxParties)
    throw InvalidArgument("Barrier parties must be 1.." + std::to_string(kMaxParties));
  seg_ = std::make_shared<SharedMemory>(SharedMemory::create(kSegmentSize));
  lock_ = Lock(seg_, 0, true);
  auto* h = new (seg_->data() + header_offset()) Header{};
  h->parties = parties;
  h->magic = Header::kMagic;
}

Barrier::Barrier(detail::AttachTo, std::shared_ptr<SharedMemory> seg) : seg_(std::move(seg)) {
  (void)detail::checked_word<Header>(seg_, kName, header_offset());
  lock_ = Lock(seg_, 0, false);
}

Barrier::Barrier(const Barrier& o) : seg_(o.seg_), lock_(o.lock_) {}  // a new party: no slot yet

Barrier::Barrier(Barrier&& o) noexcept
    : seg_(std::move(o.seg_)), lock_(std::move(o.lock_)), slot_(std::exchange(o.slot_, -1)) {}

Barrier& Barrier::operator=(Barrier&& o) noexcept {
  if (this != &o) {
    this->~Barrier();
    new (this) Barrier(std::move(o));
  }
  return *this;
}

Barrier& Barrier::operator=(const Barrier& o) {
  if (this != &o) {
    Barrier tmp(o);
    *this = std::move(tmp);
  }
  return *this;
}

Barrier::~Barrier() {
  if (slot_ < 0 || !seg_) return;
  try {
    std::lock_guard g(lock_);  // this party leaves in good order (from any thread)
    header()->claimed[slot_] = 0;
  } catch (...) {
  }
}

void Barrier::claim_slot() {
  // Called with lock_ held.
  Header* h = header();
  const pid_t me = getpid();
  for (std::uint32_t i = 0; i < kMaxParties; ++i) {
    if (h->claimed[i]) continue;
    h->claimed[i] = 1;
    h->pid[i] = me;
    h->start[i] = start_time(me);
    slot_ = static_cast<int>(i);
    return;
  }
  throw InvalidState("Barrier: more than " + std::to_string(kMaxParties) + " parties");
}

bool Barrier::a_party_died() {
  // Called with lock_ held. A claimed slot whose process is gone (or is a zombie, or whose pid
  // now belongs to a process started at another time) is a dead party.
  Header* h = header();
  const pid_t me = getpid();
  for (std::uint32_t i = 0; i < kMaxParties; ++i) {
    if (!h->claimed[i] || h->pid[i] == me) continue;
    if (start_time(h->pid[i]) == h->start[i]) continue;  // alive
    h->claimed[i] = 0;
    return true;
  }
  return false;
}

void Barrier::break_locked(const char* why) {
  Header* h = header();
  if (!h->broken) {
    h->broken = 1;
    h->seq.fetch_add(1, std::memory_order_release);
    detail::futex_wake_shared(&h->seq, INT_MAX);
  }
  throw BrokenBarrier(why);
}

std::uint32_t Barrier::wait_ns(long long timeout_ns) {
  const std::int64_t deadline = timeout_ns < 0 ? -1 : detail::now_ns() + timeout_ns;
  std::unique_lock g(lock_);
  Header* h = header();
  if (slot_ < 0) claim_slot();
  if (h->broken) throw BrokenBarrier("the barrier is broken (reset() mends it)");
  if (a_party_died()) break_locked("a party died");
  const std::uint32_t index = h->count++;
  const std::uint32_t generation = h->generation;
  if (h->count == h->parties) {  // the last one releases the round
    h->count = 0;
    ++h->generation;
    h->seq.fetch_add(1, std::memory_order_release);
    detail::futex_wake_shared(&h->seq, INT_MAX);
    return index;
  }
  for (;;) {
    const std::uint32_t seen = h->seq.load(std::memory_order_acquire);
    g.unlock();
    std::int64_t slice = 20'000'000;  // probe the other parties' liveness every 20 ms
    if (deadline >= 0)
      slice = std::min<std::int64_t>(slice, std::max<std::int64_t>(0, deadline - detail::now_ns()));
    detail::futex_wait_shared(&h->seq, seen, slice);
    g.lock();
    if (h->generation != generation) return index;  // the round completed
    if (h->broken) throw BrokenBarrier("the barrier broke while waiting");
    if (a_party_died()) {
      --h->count;
      break_locked("a party died while the others waited");
    }
    if (deadline >= 0 && detail::now_ns() >= deadline) {
      --h->count;
      break_locked("wait timed out");
    }
  }
}

void Barrier::abort() {
  std::lock_guard g(lock_);
  Header* h = header();
  h->broken = 1;
  h->seq.fetch_add(1, std::memory_order_release);
  detail::futex_wake_shared(&h->seq, INT_MAX);
}

void Barrier::reset() {
  std::lock_guard g(lock_);
  Header* h = header();
  if (h->count != 0) throw InvalidState("Barrier::reset while parties are waiting");
  h->broken = 0;
}

bool Barrier::broken() const {
  std::lock_guard g(lock_);
  return header()->broken != 0;
}
std::uint32_t Barrier::parties() const {
  return header()->parties;
}
std::uint32_t Barrier::n_waiting() const {
  std::lock_guard g(lock_);
  return header()->count;
}

}  // namespace parx
