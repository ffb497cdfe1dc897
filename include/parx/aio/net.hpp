// parx/aio/net.hpp — TCP for parx::aio tasks (asyncio streams): connect with name resolution,
// listen/accept, exact and partial reads, whole writes, lines and length-prefixed frames, with
// optional timeouts; every operation is cancellable.
//
// Contract
//   * Errors throw std::system_error with the OS's error (connection refused, reset…);
//     cancellation throws parx::Cancelled; a timeout throws parx::TimeoutError. A stream whose
//     operation failed or timed out should be closed: data may have been partly transferred.
//   * read_line / read_frame return std::nullopt at a clean end of stream (the peer closed
//     between messages); an end of stream inside a message, a line longer than `max`, or a frame
//     larger than `max` throws parx::Error. Frames are a 4-byte big-endian length and the bytes.
//   * A TcpStream or TcpListener closes its socket when destroyed (also when its task is
//     cancelled or throws: nothing leaks). Objects are used by one task at a time (one reader and
//     one writer task may share a stream, if the writer does not use queue()).
//   * Buffered writes: queue(bytes) appends to the stream's output buffer without a system call;
//     flush() sends it. A read that has to wait for the peer flushes first, and so does write()
//     (output keeps its order), so a request/response loop that answers with queue() never
//     stalls: it sends every answer to a batch of pipelined requests in one system call. Output
//     still queued when the stream is closed or destroyed is discarded.
//
// Example
//   parx::aio::Task<void> serve(parx::aio::TcpStream s) {
//     // Each answer is queued, and sent when the next read_line has to wait.
//     while (auto line = co_await s.read_line()) s.queue(*line + "\n");
//   }
//   parx::aio::Task<void> server() {
//     auto l = parx::aio::TcpListener::bind("127.0.0.1", 0);
//     for (;;) parx::aio::spawn(serve(co_await l.accept()));
//   }
#pragma once

#include <asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parx/aio/task.hpp"
#include "parx/codec.hpp"

namespace parx::aio {

using Duration = std::chrono::steady_clock::duration;

class TcpStream {
 public:
  explicit TcpStream(asio::ip::tcp::socket s) : s_(std::move(s)) {}
  TcpStream(TcpStream&&) noexcept = default;
  TcpStream& operator=(TcpStream&&) noexcept = default;

  // Resolves `host` (a name such as "localhost", or an address) and connects to the first
  // address that accepts. Timeout 0: none.
  static Task<TcpStream> connect(std::string host, std::uint16_t port, Duration timeout = {});

  // Some bytes (at least one), or 0 at the end of the stream.
  Task<std::size_t> read_some(std::span<std::byte> buf, Duration timeout = {});
  // Exactly buf.size() bytes; parx::Error if the stream ends first.
  Task<void> read_exact(std::span<std::byte> buf, Duration timeout = {});
  // All of `data`.
  Task<void> write(std::span<const std::byte> data, Duration timeout = {});
  Task<void> write(std::string_view text, Duration timeout = {});
  // Appends to the output buffer (no system call); see the contract for when it is sent.
  void queue(std::span<const std::byte> data);
  void queue(std::string_view text);
  // Bytes queued and not yet sent.
  std::size_t queued() const noexcept { return out_.size(); }
  // Sends everything queued.
  Task<void> flush(Duration timeout = {});
  // A line without its "\n" (a trailing "\r" is dropped too).
  Task<std::optional<std::string>> read_line(std::size_t max = 1 << 20, Duration timeout = {});
  // Length-prefixed messages.
  Task<void> write_frame(std::string_view payload, Duration timeout = {});
  Task<std::optional<std::string>> read_frame(std::size_t max = 64 << 20, Duration timeout = {});

  // Sends end-of-stream to the peer (reads stay open).
  void shutdown_write();
  void close();
  bool is_open() const { return s_.is_open(); }
  std::uint16_t local_port() const;
  std::string remote_address() const;
  asio::ip::tcp::socket& socket() noexcept { return s_; }

 private:
  // Reads until at least `n` unread bytes are buffered, or the stream ends (then false).
  Task<bool> fill(std::size_t n, Duration timeout);
  std::size_t buffered() const noexcept { return buf_.size() - pos_; }
  const char* unread() const noexcept { return buf_.data() + pos_; }
  void consume(std::size_t n) noexcept;
  asio::ip::tcp::socket s_;
  // Bytes read ahead by read_line / read_frame: buf_[pos_, size) is unread. Resizing does not
  // zero-fill.
  std::vector<char, parx::detail::DefaultInitAllocator<char>> buf_;
  std::size_t pos_ = 0;
  // Output queued by queue(); `sending_` holds what a flush is sending (queue() may append to
  // out_ meanwhile).
  std::string out_, sending_;
};

class TcpListener {
 public:
  // Listens on `host`:`port` (port 0: any free port; see port()). Runs on the current loop.
  static TcpListener bind(const std::string& host, std::uint16_t port, int backlog = 1024);
  Task<TcpStream> accept(Duration timeout = {});
  std::uint16_t port() const;
  void close();

 private:
  explicit TcpListener(asio::ip::tcp::acceptor a) : a_(std::move(a)) {}
  asio::ip::tcp::acceptor a_;
};

namespace detail {
// Runs an Asio operation (started by `start(token)`) with an optional timeout, turning
// operation_aborted into parx::Cancelled or parx::TimeoutError and other errors into
// std::system_error.
[[noreturn]] void throw_net_error(std::error_code ec, const char* what, bool timed_out);
}  // namespace detail

}  // namespace parx::aio
