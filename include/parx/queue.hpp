// parx/queue.hpp — Queue<T> and JoinableQueue<T>: multi-producer multi-consumer queues between
// processes (and threads), Python's multiprocessing.Queue / JoinableQueue without the feeder
// thread and its deadlocks.
//
// Messages are codec-encoded values of any size up to the queue's byte capacity, kept in a ring
// in shared memory and guarded by a robust lock.
//
// Contract
//   * FIFO per queue. put() blocks while the queue is full (maxsize items, or no room in the
//     byte ring); get() blocks while it is empty. Timed variants throw parx::TimeoutError;
//     try_put/try_get never block.
//   * close(): later puts throw parx::QueueClosed; gets drain what is queued, then throw
//     parx::QueueClosed instead of blocking — a sentinel-free way to end a pipeline.
//   * A producer killed in the middle of a put never corrupts the queue or wedges the others: the
//     ring's indices move only after a message is fully written, under a robust lock, so a dead
//     writer's partial message is simply not there. A consumer killed in the middle of a get
//     loses nothing either (the message stays until a get completes).
//   * Passed to a parx::Process the queue travels as its segment's name; both sides use the same
//     queue. The ring is sparse shared memory: capacity costs address space, not memory, until
//     used. Default capacity: 8 MiB (it stays in the cache; pass a larger capacity for messages
//     bigger than that).
//   * JoinableQueue adds task_done() and join(): join returns once every item put has been
//     marked done.
//
// Thread-safety: every member may be called concurrently from any thread of any process.
//
// Example (a pipeline across processes)
//   void produce(parx::Queue<Job> q, int n) { for (int i = 0; i < n; ++i) q.put(make_job(i)); }
//   void consume(parx::Queue<Job> in, parx::Queue<Result> out) {
//     try { for (;;) out.put(run(in.get())); } catch (const parx::QueueClosed&) {}
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>

#include "parx/codec.hpp"
#include "parx/detail/ipc_handle.hpp"
#include "parx/lock.hpp"

namespace parx {

// put/get on a queue that was closed (gets: once it is also empty).
class QueueClosed : public Error {
 public:
  QueueClosed() : Error("parx::QueueClosed: the queue is closed") {}
};

namespace detail {

// The untyped queue in shared memory that Queue<T> encodes into.
class ByteQueue {
 public:
  // 8 MiB: big enough to buffer several large messages, small enough to stay in the cache
  // (a 64 MiB ring moved 1 MiB messages at 4.3 GB/s, an 8 MiB one at 7.5 GB/s).
  static constexpr std::size_t kDefaultCapacity = std::size_t{8} << 20;

  ByteQueue(std::size_t maxsize, std::size_t capacity_bytes);
  // Attaches to a queue's segment; throws SerializationError naming `what` if it holds none.
  explicit ByteQueue(std::shared_ptr<SharedMemory> attach, const char* what = "Queue");

  // timeout_ns < 0: wait for ever; 0: do not wait. false: timed out / would block.
  bool put(std::span<const std::byte> msg, std::int64_t timeout_ns);
  bool get(Bytes& out, std::int64_t timeout_ns);
  // Takes the next message and hands its bytes to `use` before the space is released: decoding
  // straight from the ring when the message is contiguous saves a copy. The message is consumed
  // even if `use` throws (the exception is rethrown).
  template <class F>
  bool get_with(F&& use, Bytes& scratch, std::int64_t timeout_ns) {
    std::exception_ptr err;
    const bool got = get_view(
        [&](std::span<const std::byte> msg) noexcept {
          try {
            use(msg);
          } catch (...) {
            err = std::current_exception();
          }
        },
        scratch, timeout_ns);
    if (err) std::rethrow_exception(err);
    return got;
  }
  void close();
  // Waits until a get would not block (a message is queued, or the queue is closed); false if
  // the timeout passed first. Takes nothing.
  bool wait_ready(std::int64_t timeout_ns);
  bool ready() const noexcept;
  std::size_t size() const;
  std::size_t maxsize() const;
  void task_done();
  bool join(std::int64_t timeout_ns);
  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 private:
  struct Header;
  static std::size_t header_offset() noexcept;
  void bind(bool create, std::size_t maxsize, std::size_t capacity);
  using View = void (*)(void* ctx, std::span<const std::byte> msg);
  template <class F>
  bool get_view(F&& f, Bytes& scratch, std::int64_t timeout_ns) {
    return get_view_impl(
        [](void* c, std::span<const std::byte> m) {
          (*static_cast<std::remove_reference_t<F>*>(c))(m);
        },
        &f, scratch, timeout_ns);
  }
  bool get_view_impl(View view, void* ctx, Bytes& scratch, std::int64_t timeout_ns);
  void copy_in(std::uint64_t pos, const void* src, std::size_t n) noexcept;
  void copy_out(std::uint64_t pos, void* dst, std::size_t n) const noexcept;

  std::shared_ptr<SharedMemory> seg_;
  mutable Lock lock_;
  Header* h_ = nullptr;
  std::byte* ring_ = nullptr;
  std::uint64_t cap_ = 0;
};

// Per-thread buffers reused across messages: a fresh megabyte per message would cost more in
// page faults than the copy itself.
template <class T>
std::span<const std::byte> encode_reused(const T& v) {
  thread_local Encoder e(4096);
  e.clear();
  e.put(v);
  return e.bytes();
}
inline Bytes& reused_scratch() {
  thread_local Bytes b;
  return b;
}
// Takes one message from `q` and decodes it in place (from the ring when contiguous).
template <class T>
bool take_decoded(ByteQueue& q, std::optional<T>& out, std::int64_t timeout_ns) {
  return q.get_with([&](std::span<const std::byte> m) { out.emplace(parx::decode<T>(m)); },
                    reused_scratch(), timeout_ns);
}

template <class Rep, class Period>
std::int64_t to_ns(std::chrono::duration<Rep, Period> d) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return ns < 0 ? 0 : static_cast<std::int64_t>(ns);
}

}  // namespace detail

template <class T>
class Queue {
 public:
  // maxsize: most items queued at once (0: no limit besides the byte capacity).
  explicit Queue(std::size_t maxsize = 0,
                 std::size_t capacity_bytes = detail::ByteQueue::kDefaultCapacity)
      : q_(std::make_shared<detail::ByteQueue>(maxsize, capacity_bytes)) {}

  void put(const T& v) { (void)q_->put(detail::encode_reused(v), -1); }
  template <class Rep, class Period>
  void put(const T& v, std::chrono::duration<Rep, Period> timeout) {
    if (!q_->put(detail::encode_reused(v), detail::to_ns(timeout)))
      throw TimeoutError("parx::TimeoutError: Queue::put: the queue stayed full");
  }
  bool try_put(const T& v) { return q_->put(detail::encode_reused(v), 0); }

  T get() {
    std::optional<T> v;
    (void)q_->get_with([&](std::span<const std::byte> m) { v.emplace(parx::decode<T>(m)); },
                       detail::reused_scratch(), -1);
    return std::move(*v);
  }
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    std::optional<T> v;
    if (!q_->get_with([&](std::span<const std::byte> m) { v.emplace(parx::decode<T>(m)); },
                      detail::reused_scratch(), detail::to_ns(timeout)))
      throw TimeoutError("parx::TimeoutError: Queue::get: the queue stayed empty");
    return std::move(*v);
  }
  std::optional<T> try_get() {
    std::optional<T> v;
    if (!q_->get_with([&](std::span<const std::byte> m) { v.emplace(parx::decode<T>(m)); },
                      detail::reused_scratch(), 0))
      return std::nullopt;
    return v;
  }

  void close() { q_->close(); }
  // Items queued now (exact at the moment of the call; may change at once).
  std::size_t qsize() const { return q_->size(); }
  bool empty() const { return qsize() == 0; }
  // True if a get would not block now (a message is queued, or the queue is closed).
  bool ready() const noexcept { return q_->ready(); }
  std::size_t maxsize() const { return q_->maxsize(); }

  const std::shared_ptr<SharedMemory>& segment() const noexcept { return q_->segment(); }

 protected:
  friend struct detail::SegmentCodec<Queue<T>>;
  static constexpr const char* kName = "Queue";
  Queue(detail::AttachTo, std::shared_ptr<SharedMemory> seg, const char* name = kName)
      : q_(std::make_shared<detail::ByteQueue>(std::move(seg), name)) {}
  std::shared_ptr<detail::ByteQueue> q_;
};

template <class T>
class JoinableQueue : public Queue<T> {
 public:
  using Queue<T>::Queue;
  // Marks one item taken by get() as processed. Throws InvalidState if called more often than
  // items were put.
  void task_done() { this->q_->task_done(); }
  // Waits until every item put has been marked done.
  void join() { (void)this->q_->join(-1); }
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return this->q_->join(detail::to_ns(timeout));
  }

 private:
  friend struct detail::SegmentCodec<JoinableQueue<T>>;
  static constexpr const char* kName = "JoinableQueue";
  JoinableQueue(detail::AttachTo a, std::shared_ptr<SharedMemory> seg)
      : Queue<T>(a, std::move(seg), kName) {}
};

template <class T>
struct Codec<Queue<T>> : detail::SegmentCodec<Queue<T>> {};
template <class T>
struct Codec<JoinableQueue<T>> : detail::SegmentCodec<JoinableQueue<T>> {};

}  // namespace parx
