// parx/pipe.hpp — Pipe: two connected endpoints between processes (Python's
// multiprocessing.Pipe), and wait_ready: block until any of several pipes, queues or processes
// is ready (Python's multiprocessing.connection.wait).
//
// Contract
//   * make_pipe(duplex = true) returns two Connections. Duplex: each end sends and receives.
//     Simplex (duplex = false): the first end only receives, the second only sends (using the
//     other direction throws parx::InvalidState).
//   * send(v)/recv<T>() carry any codec type; send_bytes/recv_bytes raw bytes. recv blocks;
//     recv(timeout) throws parx::TimeoutError; poll(timeout) says whether a recv would not block.
//   * close(): the peer's recv drains what was sent, then throws parx::QueueClosed (Python:
//     EOFError); sends after close throw it too.
//   * Each direction is a parx::Queue-style ring in shared memory (robust to a peer killed in the
//     middle of a send). Passed to a parx::Process a Connection travels by its segments' names.
//   * wait_ready({...}, timeout) returns the indices of the items that are ready — a Connection
//     or Queue with a message (or closed), a Process that has exited — waiting until at least
//     one is, or the timeout passes (then the result is empty).
//
// Thread-safety: like Queue — any thread of any process; several senders on one end are safe
// (messages never interleave), unlike Python's Pipe.
//
// Example
//   auto [parent_end, child_end] = parx::make_pipe();
//   parx::Process p(serve, child_end);                    // serve: loop {
//   c.send(work(c.recv<Req>())); } parent_end.send(Req{...}); if
//   (parent_end.poll(std::chrono::seconds(1))) Reply r = parent_end.recv<Reply>();
#pragma once

#include <chrono>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "parx/process.hpp"
#include "parx/queue.hpp"

namespace parx {

class Connection {
 public:
  Connection() = default;  // not connected

  template <class T>
  void send(const T& v) {
    out().put(detail::encode_reused(v), -1);
  }
  template <class T>
  T recv() {
    std::optional<T> v;
    (void)detail::take_decoded(in(), v, -1);
    return std::move(*v);
  }
  template <class T, class Rep, class Period>
  T recv(std::chrono::duration<Rep, Period> timeout) {
    std::optional<T> v;
    if (!detail::take_decoded(in(), v, detail::to_ns(timeout)))
      throw TimeoutError("parx::TimeoutError: Connection::recv: nothing arrived");
    return std::move(*v);
  }
  void send_bytes(std::span<const std::byte> b) { out().put(b, -1); }
  Bytes recv_bytes() {
    Bytes b;
    (void)in().get(b, -1);
    return b;
  }
  // True if a recv would not block (a message is waiting, or the peer closed).
  bool poll() { return in().ready(); }
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return in().wait_ready(detail::to_ns(timeout));
  }
  // Closes both directions of this end: the peer's recv drains, then throws QueueClosed.
  void close() {
    if (out_) out_->close();
    if (in_) in_->close();
  }
  bool readable() const noexcept { return static_cast<bool>(in_); }
  bool writable() const noexcept { return static_cast<bool>(out_); }

 private:
  friend std::pair<Connection, Connection> make_pipe(bool duplex, std::size_t capacity_bytes);
  friend struct Codec<Connection>;
  friend class WaitItem;
  Connection(std::shared_ptr<detail::ByteQueue> in, std::shared_ptr<detail::ByteQueue> out)
      : in_(std::move(in)), out_(std::move(out)) {}
  detail::ByteQueue& in() const {
    if (!in_)
      throw InvalidState("this Connection cannot receive (the sending end of a simplex Pipe)");
    return *in_;
  }
  detail::ByteQueue& out() const {
    if (!out_)
      throw InvalidState("this Connection cannot send (the receiving end of a simplex Pipe)");
    return *out_;
  }
  std::shared_ptr<detail::ByteQueue> in_, out_;
};

// Two connected ends; see the header comment.
std::pair<Connection, Connection> make_pipe(
    bool duplex = true, std::size_t capacity_bytes = detail::ByteQueue::kDefaultCapacity);

// Something wait_ready can wait for.
class WaitItem {
 public:
  WaitItem(const Connection& c) : ready_([q = c.in_] { return q && q->ready(); }) {}  // NOLINT
  template <class T>
  WaitItem(const Queue<T>& q) : ready_([q] { return q.ready(); }) {}                     // NOLINT
  WaitItem(const Process& p) : ready_([&p] { return p.started() && !p.is_alive(); }) {}  // NOLINT
  bool ready() const { return ready_(); }

 private:
  std::function<bool()> ready_;
};

// Indices of the items that are ready, waiting up to `timeout` for at least one (empty on timeout).
std::vector<std::size_t> wait_ready(
    std::initializer_list<WaitItem> items,
    std::chrono::nanoseconds timeout = std::chrono::nanoseconds(-1));

template <>
struct Codec<Connection> {
  static void encode(Encoder& e, const Connection& c) {  // segment names; empty for no direction
    e.put(c.in_ ? c.in_->segment()->name() : std::string());
    e.put(c.out_ ? c.out_->segment()->name() : std::string());
  }
  static Connection make(Decoder& d) {
    auto in = std::make_shared<SharedMemory>(d.make<SharedMemory>());
    auto out = std::make_shared<SharedMemory>(d.make<SharedMemory>());
    return Connection(*in ? std::make_shared<detail::ByteQueue>(in, "Connection") : nullptr,
                      *out ? std::make_shared<detail::ByteQueue>(out, "Connection") : nullptr);
  }
  static void decode(Decoder& d, Connection& c) { c = make(d); }
};

}  // namespace parx
