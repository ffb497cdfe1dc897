// parx::aio TCP streams (see parx/aio/net.hpp).
#include <arpa/inet.h>

#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>
#include <cstring>

#include "parx/aio/net.hpp"

namespace parx::aio {

namespace detail {

void throw_net_error(std::error_code ec, const char* what, bool timed_out) {
  if (timed_out)
    throw TimeoutError(std::string("parx::TimeoutError: parx::aio::") + what + ": timed out");
  if (ec == asio::error::operation_aborted)
    throw Cancelled(std::string("parx::Cancelled: cancelled in parx::aio::") + what);
  throw std::system_error(ec, std::string("parx::aio::") + what);
}

}  // namespace detail

namespace {

using asio::ip::tcp;
namespace ex = asio::experimental;

// Runs `start(token)` (an Asio operation completing with (error_code, T)) with an optional
// timeout; errors become exceptions.
template <class T, class Start>
Task<T> timed(Start start, Duration timeout, const char* what) {
  if (timeout.count() <= 0) {
    auto [ec, v] = co_await start(asio::experimental::as_tuple(asio::use_awaitable));
    if (ec) detail::throw_net_error(ec, what, false);
    co_return std::move(v);
  }
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  auto [order, ec, v, tec] =
      co_await ex::make_parallel_group(start(ex::deferred), timer.async_wait(ex::deferred))
          .async_wait(ex::wait_for_one(), asio::use_awaitable);
  if (order[0] == 1 && !tec) detail::throw_net_error(ec, what, true);
  if (ec) detail::throw_net_error(ec, what, false);
  co_return std::move(v);
}

// What is left of an optional timeout spread over several operations (0: no timeout).
class Budget {
 public:
  explicit Budget(Duration timeout)
      : timeout_(timeout), deadline_(std::chrono::steady_clock::now() + timeout) {}
  Duration left() const {
    if (timeout_.count() <= 0) return Duration{};
    return std::max(Duration{1}, deadline_ - std::chrono::steady_clock::now());
  }

 private:
  Duration timeout_;
  std::chrono::steady_clock::time_point deadline_;
};

}  // namespace

Task<TcpStream> TcpStream::connect(std::string host, std::uint16_t port, Duration timeout) {
  auto exec = co_await asio::this_coro::executor;
  tcp::resolver resolver(exec);
  const Budget budget(timeout);
  auto endpoints = co_await timed<tcp::resolver::results_type>(
      [&](auto token) { return resolver.async_resolve(host, std::to_string(port), token); },
      budget.left(), "connect (resolving the host)");
  tcp::socket s(exec);
  co_await timed<tcp::endpoint>(
      [&](auto token) { return asio::async_connect(s, endpoints, token); }, budget.left(),
      "connect");
  s.set_option(tcp::no_delay(true));
  co_return TcpStream(std::move(s));
}

Task<std::size_t> TcpStream::read_some(std::span<std::byte> buf, Duration timeout) {
  if (buffered()) {  // read ahead by read_line / read_frame
    const std::size_t n = std::min(buf.size(), buffered());
    std::memcpy(buf.data(), unread(), n);
    consume(n);
    co_return n;
  }
  const Budget budget(timeout);
  if (!out_.empty()) co_await flush(budget.left());  // the peer may be waiting for it
  timeout = budget.left();
  try {
    co_return co_await timed<std::size_t>(
        [&](auto token) { return s_.async_read_some(asio::buffer(buf.data(), buf.size()), token); },
        timeout, "read");
  } catch (const std::system_error& e) {
    if (e.code() != asio::error::eof) throw;
  }
  co_return 0;
}

Task<void> TcpStream::read_exact(std::span<std::byte> buf, Duration timeout) {
  const Budget budget(timeout);
  std::size_t got = 0;
  while (got < buf.size()) {
    const Duration left = budget.left();
    const std::size_t n = co_await read_some(buf.subspan(got), left);
    if (n == 0)
      throw Error("parx::aio::TcpStream::read_exact: the stream ended after " +
                  std::to_string(got) + " of " + std::to_string(buf.size()) + " bytes");
    got += n;
  }
}

Task<void> TcpStream::write(std::span<const std::byte> data, Duration timeout) {
  if (!out_.empty()) {  // queued output goes first, in the same system call
    queue(data);
    co_await flush(timeout);
    co_return;
  }
  co_await timed<std::size_t>(
      [&](auto token) {
        return asio::async_write(s_, asio::buffer(data.data(), data.size()), token);
      },
      timeout, "write");
}

void TcpStream::queue(std::span<const std::byte> data) {
  out_.append(reinterpret_cast<const char*>(data.data()), data.size());
}

void TcpStream::queue(std::string_view text) {
  out_.append(text);
}

Task<void> TcpStream::flush(Duration timeout) {
  const Budget budget(timeout);
  while (!out_.empty()) {
    sending_.swap(out_);  // out_ is now the empty buffer queue() appends to while this is sent
    const Duration left = budget.left();
    try {
      co_await timed<std::size_t>(
          [&](auto token) { return asio::async_write(s_, asio::buffer(sending_), token); }, left,
          "flush");
    } catch (...) {
      sending_.clear();
      throw;
    }
    sending_.clear();
  }
}

Task<void> TcpStream::write(std::string_view text, Duration timeout) {
  return write(std::as_bytes(std::span(text.data(), text.size())), timeout);
}

Task<bool> TcpStream::fill(std::size_t n, Duration timeout) {
  const Budget budget(timeout);
  if (pos_ && buffered() < n) {  // move the unread tail to the front before reading more
    std::memmove(buf_.data(), unread(), buffered());
    buf_.resize(buffered());
    pos_ = 0;
  }
  while (buffered() < n) {
    if (!out_.empty()) co_await flush(budget.left());  // the peer may be waiting for it
    const Duration left = budget.left();
    // Read straight into the buffer's spare room (no bounce buffer in the coroutine frame).
    const std::size_t have = buf_.size();
    buf_.resize(have + std::max<std::size_t>(n - have, 4096));
    std::size_t got = 0;
    std::exception_ptr err;
    try {
      got = co_await timed<std::size_t>(
          [&](auto token) {
            return s_.async_read_some(asio::buffer(buf_.data() + have, buf_.size() - have), token);
          },
          left, "read");
    } catch (const std::system_error& e) {
      if (e.code() != asio::error::eof) err = std::current_exception();
    } catch (...) {
      err = std::current_exception();
    }
    buf_.resize(have + got);
    if (err) std::rethrow_exception(err);
    if (got == 0) co_return false;
  }
  co_return true;
}

Task<std::optional<std::string>> TcpStream::read_line(std::size_t max, Duration timeout) {
  const Budget budget(timeout);
  std::size_t scanned = 0;
  for (;;) {
    const char* nl = nullptr;
    if (buffered() > scanned)  // (memchr on an empty, never-allocated buffer is undefined)
      nl = static_cast<const char*>(std::memchr(unread() + scanned, '\n', buffered() - scanned));
    if (nl) {
      const std::size_t len = static_cast<std::size_t>(nl - unread());
      if (len > max)
        throw Error("parx::aio::TcpStream::read_line: line longer than " + std::to_string(max) +
                    " bytes");
      std::string line(unread(), len);
      consume(len + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      co_return line;
    }
    scanned = buffered();
    if (buffered() > max)
      throw Error("parx::aio::TcpStream::read_line: line longer than " + std::to_string(max) +
                  " bytes");
    const Duration left = budget.left();
    if (!co_await fill(buffered() + 1, left)) {
      if (!buffered()) co_return std::nullopt;
      throw Error("parx::aio::TcpStream::read_line: the stream ended inside a line");
    }
  }
}

Task<void> TcpStream::write_frame(std::string_view payload, Duration timeout) {
  if (payload.size() > 0xffffffffu)
    throw InvalidArgument("parx::aio::TcpStream::write_frame: payload over 4 GiB");
  const std::uint32_t len = htonl(static_cast<std::uint32_t>(payload.size()));
  std::string msg(sizeof len + payload.size(), '\0');
  std::memcpy(msg.data(), &len, sizeof len);
  std::memcpy(msg.data() + sizeof len, payload.data(), payload.size());
  co_await write(std::string_view(msg), timeout);
}

Task<std::optional<std::string>> TcpStream::read_frame(std::size_t max, Duration timeout) {
  const Budget budget(timeout);
  if (!co_await fill(4, budget.left())) {
    if (!buffered()) co_return std::nullopt;
    throw Error("parx::aio::TcpStream::read_frame: the stream ended inside a frame header");
  }
  std::uint32_t len = 0;
  std::memcpy(&len, unread(), sizeof len);
  len = ntohl(len);
  if (len > max)
    throw Error("parx::aio::TcpStream::read_frame: frame of " + std::to_string(len) +
                " bytes exceeds the limit of " + std::to_string(max));
  if (!co_await fill(4 + std::size_t{len}, budget.left()))
    throw Error("parx::aio::TcpStream::read_frame: the stream ended inside a frame");
  std::string out(unread() + 4, len);
  consume(4 + std::size_t{len});
  co_return out;
}

void TcpStream::consume(std::size_t n) noexcept {
  pos_ += n;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
}

void TcpStream::shutdown_write() {
  std::error_code ec;
  s_.shutdown(tcp::socket::shutdown_send, ec);
}

void TcpStream::close() {
  std::error_code ec;
  s_.close(ec);
}

std::uint16_t TcpStream::local_port() const {
  return s_.local_endpoint().port();
}

std::string TcpStream::remote_address() const {
  const auto e = s_.remote_endpoint();
  return e.address().to_string() + ":" + std::to_string(e.port());
}

TcpListener TcpListener::bind(const std::string& host, std::uint16_t port, int backlog) {
  auto& loop = detail::require_loop("TcpListener::bind");
  std::error_code ec;
  const auto addr = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec)
    throw InvalidArgument("parx::aio::TcpListener::bind: '" + host + "' is not an IP address (" +
                          ec.message() + ")");
  tcp::acceptor a(loop.context());
  const tcp::endpoint ep(addr, port);
  a.open(ep.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(ep, ec);
  if (ec)
    throw std::system_error(ec,
                            "parx::aio::TcpListener::bind " + host + ":" + std::to_string(port));
  a.listen(backlog);
  return TcpListener(std::move(a));
}

Task<TcpStream> TcpListener::accept(Duration timeout) {
  auto s = co_await timed<tcp::socket>([&](auto token) { return a_.async_accept(token); }, timeout,
                                       "accept");
  s.set_option(tcp::no_delay(true));
  co_return TcpStream(std::move(s));
}

std::uint16_t TcpListener::port() const {
  return a_.local_endpoint().port();
}

void TcpListener::close() {
  std::error_code ec;
  a_.close(ec);
}

}  // namespace parx::aio
