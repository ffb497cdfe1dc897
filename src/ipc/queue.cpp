// The shared-memory ring behind parx::Queue: a robust lock guards the indices; waiting uses
// shared futexes on sequence words, after a short spin.
#include "parx/queue.hpp"

#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>

#include "parx/detail/sync.hpp"

namespace parx::detail {

struct ByteQueue::Header {
  static constexpr std::uint64_t kMagic = 0x7061727851554555ull;  // "parxQUEU"
  std::uint64_t magic;
  std::uint64_t capacity;    // ring bytes
  std::uint64_t maxsize;     // items; 0 = no limit
  std::uint64_t head;        // byte position of the oldest message (grows for ever)
  std::uint64_t tail;        // byte position after the newest message
  std::uint64_t count;       // messages in the ring
  std::uint64_t unfinished;  // puts minus task_done calls
  std::uint32_t closed;
  std::uint32_t getters;  // consumers asleep (approximate: a consumer that dies asleep stays)
  std::uint32_t putters;  // producers asleep
  std::uint32_t joiners;
  alignas(64) std::atomic<std::uint32_t> items_seq;  // bumped by every put and by close
  alignas(64) std::atomic<std::uint32_t> space_seq;  // bumped by every get and by close
  alignas(64) std::atomic<std::uint32_t> done_seq;   // bumped when unfinished reaches 0
  std::atomic<std::uint64_t> count_hint;             // count, readable without the lock
};

namespace {

constexpr std::size_t kLenBytes = sizeof(std::uint64_t);
std::uint64_t padded(std::uint64_t n) {
  return (n + 7) / 8 * 8;
}

std::int64_t deadline_of(std::int64_t timeout_ns) {
  return timeout_ns > 0 ? now_ns() + timeout_ns : timeout_ns;
}

// Sleeps on `seq` (observed under the lock as `seen`) with the lock released; false on timeout.
bool wait_on(Lock& lock, std::atomic<std::uint32_t>& seq, std::uint32_t seen,
             std::uint32_t& sleepers, std::int64_t deadline) {
  std::int64_t left = -1;
  if (deadline >= 0) {
    left = deadline - now_ns();
    if (left <= 0) return false;
  }
  ++sleepers;
  lock.unlock();
  futex_wait_shared(&seq, seen, left);
  lock.lock();  // owner_died is fine: the ring is consistent between operations
  --sleepers;
  return true;
}

}  // namespace

std::size_t ByteQueue::header_offset() noexcept {
  return (Lock::footprint() + 63) / 64 * 64;
}

ByteQueue::ByteQueue(std::size_t maxsize, std::size_t capacity_bytes) {
  if (capacity_bytes < 64) throw InvalidArgument("Queue capacity must be at least 64 bytes");
  const std::size_t cap = padded(capacity_bytes);
  seg_ = std::make_shared<SharedMemory>(
      SharedMemory::create(header_offset() + padded(sizeof(Header)) + cap));
  lock_ = Lock(seg_, 0, true);
  bind(true, maxsize, cap);
}

ByteQueue::ByteQueue(std::shared_ptr<SharedMemory> attach, const char* what)
    : seg_(std::move(attach)) {
  (void)checked_word<Header>(seg_, what, header_offset());
  if (seg_->size() < header_offset() + padded(sizeof(Header)))
    throw SerializationError(std::string(what) + ": segment '" + seg_->name() + "' is too small");
  lock_ = Lock(seg_, 0, false);
  bind(false, 0, 0);
}

void ByteQueue::bind(bool create, std::size_t maxsize, std::size_t capacity) {
  h_ = reinterpret_cast<Header*>(seg_->data() + header_offset());
  ring_ = seg_->data() + header_offset() + padded(sizeof(Header));
  if (create) {
    new (h_) Header{};
    h_->capacity = capacity;
    h_->maxsize = maxsize;
    h_->magic = Header::kMagic;
  } else if (h_->magic != Header::kMagic || h_->capacity < 64 ||
             h_->capacity != padded(h_->capacity) ||
             h_->capacity > seg_->size() - header_offset() - padded(sizeof(Header))) {
    // The ring's size as its creator made it: at least 64 bytes, padded, inside the segment (a
    // capacity of 0 would divide by zero at the first put or get).
    throw SerializationError("Queue: segment '" + seg_->name() +
                             "' holds a damaged queue header (ring capacity " +
                             std::to_string(h_->capacity) + " bytes)");
  }
  cap_ = h_->capacity;
}

void ByteQueue::copy_in(std::uint64_t pos, const void* src, std::size_t n) noexcept {
  const std::size_t at = static_cast<std::size_t>(pos % cap_);
  const std::size_t first = std::min<std::size_t>(n, cap_ - at);
  std::memcpy(ring_ + at, src, first);
  std::memcpy(ring_, static_cast<const std::byte*>(src) + first, n - first);
}

void ByteQueue::copy_out(std::uint64_t pos, void* dst, std::size_t n) const noexcept {
  const std::size_t at = static_cast<std::size_t>(pos % cap_);
  const std::size_t first = std::min<std::size_t>(n, cap_ - at);
  std::memcpy(dst, ring_ + at, first);
  std::memcpy(static_cast<std::byte*>(dst) + first, ring_, n - first);
}

bool ByteQueue::put(std::span<const std::byte> msg, std::int64_t timeout_ns) {
  const std::uint64_t need = padded(kLenBytes + msg.size());
  if (need > cap_)
    throw InvalidArgument("a message of " + std::to_string(msg.size()) +
                          " bytes does not fit a queue of " + std::to_string(cap_) +
                          " bytes; give the Queue a larger capacity");
  const std::int64_t deadline = deadline_of(timeout_ns);
  bool wake;
  {
    std::unique_lock lk(lock_);
    for (;;) {
      if (h_->closed) throw QueueClosed();
      const bool room = cap_ - (h_->tail - h_->head) >= need;
      if (room && (h_->maxsize == 0 || h_->count < h_->maxsize)) break;
      if (timeout_ns == 0) return false;
      const std::uint32_t seen = h_->space_seq.load(std::memory_order_acquire);
      if (!wait_on(lock_, h_->space_seq, seen, h_->putters, deadline)) return false;
    }
    // Write first, publish last: a producer killed before the tail moves leaves no trace.
    const std::uint64_t len = msg.size();
    copy_in(h_->tail, &len, kLenBytes);
    copy_in(h_->tail + kLenBytes, msg.data(), msg.size());
    h_->tail += need;
    ++h_->count;
    ++h_->unfinished;
    h_->count_hint.store(h_->count, std::memory_order_release);
    h_->items_seq.fetch_add(1, std::memory_order_release);
    wake = h_->getters > 0;
  }
  if (wake) futex_wake_shared(&h_->items_seq, 1);
  return true;
}

bool ByteQueue::get(Bytes& out, std::int64_t timeout_ns) {
  // A message that wraps the ring's end is copied into `out` itself (the scratch buffer): only
  // a message read in place needs copying out.
  return get_view(
      [&](std::span<const std::byte> m) {
        if (m.data() != out.data()) out.assign(m.begin(), m.end());
      },
      out, timeout_ns);
}

bool ByteQueue::get_view_impl(View view, void* ctx, Bytes& scratch, std::int64_t timeout_ns) {
  // A short spin before taking the lock: a producer is often only microseconds behind, and
  // waking a sleeping process costs tens of them.
  if (timeout_ns != 0) {
    const std::int64_t spin_end = now_ns() + 20'000;
    while (h_->count_hint.load(std::memory_order_acquire) == 0 && now_ns() < spin_end)
      cpu_relax();
  }
  const std::int64_t deadline = deadline_of(timeout_ns);
  bool wake;
  {
    std::unique_lock lk(lock_);
    for (;;) {
      if (h_->count > 0) break;
      if (h_->closed) throw QueueClosed();
      if (timeout_ns == 0) return false;
      const std::uint32_t seen = h_->items_seq.load(std::memory_order_acquire);
      if (!wait_on(lock_, h_->items_seq, seen, h_->getters, deadline)) return false;
    }
    std::uint64_t len = 0;
    copy_out(h_->head, &len, kLenBytes);
    if (len > cap_ - kLenBytes || padded(kLenBytes + len) > h_->tail - h_->head)
      throw Error("parx::Queue: the shared ring is corrupt (message length " + std::to_string(len) +
                  ")");
    const std::uint64_t at = (h_->head + kLenBytes) % cap_;
    if (at + len <= cap_) {
      view(ctx, std::span<const std::byte>(ring_ + at, static_cast<std::size_t>(len)));  // in place
    } else {
      scratch.resize(static_cast<std::size_t>(len));  // wraps around the ring's end: copy once
      copy_out(h_->head + kLenBytes, scratch.data(), static_cast<std::size_t>(len));
      view(ctx, std::span<const std::byte>(scratch.data(), scratch.size()));
    }
    h_->head += padded(kLenBytes + len);
    --h_->count;
    h_->count_hint.store(h_->count, std::memory_order_release);
    h_->space_seq.fetch_add(1, std::memory_order_release);
    wake = h_->putters > 0;
  }
  if (wake) futex_wake_shared(&h_->space_seq, 1);
  return true;
}

void ByteQueue::close() {
  {
    std::unique_lock lk(lock_);
    h_->closed = 1;
    h_->items_seq.fetch_add(1, std::memory_order_release);
    h_->space_seq.fetch_add(1, std::memory_order_release);
  }
  futex_wake_shared(&h_->items_seq, INT_MAX);
  futex_wake_shared(&h_->space_seq, INT_MAX);
}

bool ByteQueue::ready() const noexcept {
  return h_->count_hint.load(std::memory_order_acquire) > 0 || h_->closed;
}

bool ByteQueue::wait_ready(std::int64_t timeout_ns) {
  if (ready()) return true;
  const std::int64_t deadline = deadline_of(timeout_ns);
  std::unique_lock lk(lock_);
  for (;;) {
    if (h_->count > 0 || h_->closed) return true;
    if (timeout_ns == 0) return false;
    const std::uint32_t seen = h_->items_seq.load(std::memory_order_acquire);
    if (!wait_on(lock_, h_->items_seq, seen, h_->getters, deadline)) return false;
  }
}

std::size_t ByteQueue::size() const {
  std::unique_lock lk(lock_);
  return static_cast<std::size_t>(h_->count);
}

std::size_t ByteQueue::maxsize() const {
  return static_cast<std::size_t>(h_->maxsize);
}

void ByteQueue::task_done() {
  bool wake = false;
  {
    std::unique_lock lk(lock_);
    if (h_->unfinished == 0)
      throw InvalidState("JoinableQueue::task_done called more times than items were put");
    if (--h_->unfinished == 0) {
      h_->done_seq.fetch_add(1, std::memory_order_release);
      wake = h_->joiners > 0;
    }
  }
  if (wake) futex_wake_shared(&h_->done_seq, INT_MAX);
}

bool ByteQueue::join(std::int64_t timeout_ns) {
  const std::int64_t deadline = deadline_of(timeout_ns);
  std::unique_lock lk(lock_);
  while (h_->unfinished > 0) {
    if (timeout_ns == 0) return false;
    const std::uint32_t seen = h_->done_seq.load(std::memory_order_acquire);
    if (!wait_on(lock_, h_->done_seq, seen, h_->joiners, deadline)) return false;
  }
  return true;
}

}  // namespace parx::detail
