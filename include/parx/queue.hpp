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
//     used. Default capacity: 64 MiB.
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
#include <memory>
#include <optional>
#include <span>

#include "parx/codec.hpp"
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
  static constexpr std::size_t kDefaultCapacity = std::size_t{64} << 20;

  ByteQueue(std::size_t maxsize, std::size_t capacity_bytes);
  explicit ByteQueue(std::shared_ptr<SharedMemory> attach);

  // timeout_ns < 0: wait for ever; 0: do not wait. false: timed out / would block.
  bool put(std::span<const std::byte> msg, std::int64_t timeout_ns);
  bool get(Bytes& out, std::int64_t timeout_ns);
  void close();
  std::size_t size() const;
  std::size_t maxsize() const;
  void task_done();
  bool join(std::int64_t timeout_ns);
  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 private:
  struct Header;
  static std::size_t header_offset() noexcept;
  void bind(bool create, std::size_t maxsize, std::size_t capacity);
  void copy_in(std::uint64_t pos, const void* src, std::size_t n) noexcept;
  void copy_out(std::uint64_t pos, void* dst, std::size_t n) const noexcept;

  std::shared_ptr<SharedMemory> seg_;
  mutable Lock lock_;
  Header* h_ = nullptr;
  std::byte* ring_ = nullptr;
  std::uint64_t cap_ = 0;
};

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

  void put(const T& v) { (void)q_->put(parx::encode(v), -1); }
  template <class Rep, class Period>
  void put(const T& v, std::chrono::duration<Rep, Period> timeout) {
    if (!q_->put(parx::encode(v), detail::to_ns(timeout)))
      throw TimeoutError("parx::TimeoutError: Queue::put: the queue stayed full");
  }
  bool try_put(const T& v) { return q_->put(parx::encode(v), 0); }

  T get() {
    Bytes b;
    (void)q_->get(b, -1);
    return parx::decode<T>(b);
  }
  template <class Rep, class Period>
  T get(std::chrono::duration<Rep, Period> timeout) {
    Bytes b;
    if (!q_->get(b, detail::to_ns(timeout)))
      throw TimeoutError("parx::TimeoutError: Queue::get: the queue stayed empty");
    return parx::decode<T>(b);
  }
  std::optional<T> try_get() {
    Bytes b;
    if (!q_->get(b, 0)) return std::nullopt;
    return parx::decode<T>(b);
  }

  void close() { q_->close(); }
  // Items queued now (exact at the moment of the call; may change at once).
  std::size_t qsize() const { return q_->size(); }
  bool empty() const { return qsize() == 0; }
  std::size_t maxsize() const { return q_->maxsize(); }

  const std::shared_ptr<SharedMemory>& segment() const noexcept { return q_->segment(); }

 protected:
  friend struct Codec<Queue<T>>;
  explicit Queue(std::shared_ptr<detail::ByteQueue> q) : q_(std::move(q)) {}
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
  friend struct Codec<JoinableQueue<T>>;
  explicit JoinableQueue(std::shared_ptr<detail::ByteQueue> q) : Queue<T>(std::move(q)) {}
};

template <class T>
struct Codec<Queue<T>> {
  static void encode(Encoder& e, const Queue<T>& q) { e.put(*q.segment()); }
  static Queue<T> make(Decoder& d) {
    auto seg = std::make_shared<SharedMemory>();
    d.get(*seg);
    if (!*seg) throw SerializationError("Queue: no segment in the message");
    return Queue<T>(std::make_shared<detail::ByteQueue>(std::move(seg)));
  }
  static void decode(Decoder& d, Queue<T>& q) { q = make(d); }
};

template <class T>
struct Codec<JoinableQueue<T>> {
  static void encode(Encoder& e, const JoinableQueue<T>& q) { e.put(*q.segment()); }
  static JoinableQueue<T> make(Decoder& d) {
    auto seg = std::make_shared<SharedMemory>();
    d.get(*seg);
    if (!*seg) throw SerializationError("JoinableQueue: no segment in the message");
    return JoinableQueue<T>(std::make_shared<detail::ByteQueue>(std::move(seg)));
  }
  static void decode(Decoder& d, JoinableQueue<T>& q) { q = make(d); }
};

}  // namespace parx
