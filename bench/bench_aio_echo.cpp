// TCP echo on 127.0.0.1: parx::aio's server, a plain callback-style Asio server, and the client
// that measures any server (the same client drives Python's asyncio server in bench/run_aio.sh).
//
//   bench_aio_echo server-parx PORT   line echo written with parx::aio (read_line / queue)
//   bench_aio_echo server-asio PORT   the same with Asio callbacks (async_read_until, then every
//                                     complete line, one async_write for all their answers)
//   bench_aio_echo client PORT CONNS MSGS [DEPTH]
//       CONNS connections, MSGS 64-byte lines each, at most DEPTH (default 1) unanswered per
//       connection: 1 is ping-pong, more is pipelining; prints "echo_client ... msgs_per_s N"
#include <algorithm>
#include <array>
#include <asio.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <parx/aio.hpp>

namespace aio = parx::aio;
using asio::ip::tcp;

namespace {

aio::Task<void> parx_session(aio::TcpStream s) {
  try {
    while (auto line = co_await s.read_line()) {
      s.queue(*line);  // sent when the next read_line has to wait: one write per batch
      s.queue("\n");
    }
  } catch (const std::exception&) {
  }
}

aio::Task<void> parx_server(std::uint16_t port) {
  auto l = aio::TcpListener::bind("127.0.0.1", port);
  std::printf("ready\n");
  std::fflush(stdout);
  for (;;)
    aio::spawn(parx_session(co_await l.accept()));
}

// The callback echo session, written for speed: reads up to 64 KiB at a time into its own
// buffer, answers every complete line with one async_write, keeps a partial line for the next
// read.
class AsioSession : public std::enable_shared_from_this<AsioSession> {
 public:
  explicit AsioSession(tcp::socket s) : s_(std::move(s)) {}
  void start() { read(); }

 private:
  void read() {
    s_.async_read_some(asio::buffer(in_.data() + have_, in_.size() - have_),
                       [self = shared_from_this()](std::error_code ec, std::size_t n) {
                         if (ec) return;
                         self->answer(n);
                       });
  }
  void answer(std::size_t n) {
    have_ += n;
    std::size_t start = 0;
    out_.clear();
    while (const auto* nl =
               static_cast<const char*>(std::memchr(in_.data() + start, '\n', have_ - start))) {
      const auto end = static_cast<std::size_t>(nl - in_.data()) + 1;
      out_.append(in_.data() + start, end - start);
      start = end;
    }
    std::memmove(in_.data(), in_.data() + start, have_ - start);  // the partial line
    have_ -= start;
    if (have_ == in_.size()) return;  // a line longer than the buffer: drop the client
    if (out_.empty()) return read();
    asio::async_write(s_, asio::buffer(out_),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        if (!ec) self->read();
                      });
  }
  tcp::socket s_;
  std::array<char, 65536> in_{};
  std::size_t have_ = 0;
  std::string out_;
};

void asio_accept(tcp::acceptor& a) {
  a.async_accept([&a](std::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      std::make_shared<AsioSession>(std::move(s))->start();
    }
    asio_accept(a);
  });
}

// Client: every connection keeps up to `depth` lines unanswered; as echoes arrive it sends as
// many new lines, in one write.
struct ClientConn : std::enable_shared_from_this<ClientConn> {
  ClientConn(asio::io_context& io, long msgs, int depth, long& done)
      : s(io), to_send(msgs), to_receive(msgs), depth(depth), done(done) {}
  void start() {
    send(depth);
    read();
  }
  void send(long n) {
    n = std::min(n, to_send);
    to_send -= n;
    for (long i = 0; i < n; ++i)
      pending += line;
    flush();
  }
  void flush() {
    if (writing || pending.empty()) return;
    writing = true;
    sending.swap(pending);
    pending.clear();
    asio::async_write(s, asio::buffer(sending),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        self->writing = false;
                        if (!ec) self->flush();
                      });
  }
  void read() {
    s.async_read_some(asio::buffer(in),
                      [self = shared_from_this()](std::error_code ec, std::size_t n) {
                        if (ec) return;
                        long lines = 0;
                        for (std::size_t i = 0; i < n; ++i)
                          lines += self->in[i] == '\n';
                        self->to_receive -= lines;
                        self->done += lines;
                        self->send(lines);
                        if (self->to_receive > 0) self->read();
                      });
  }
  tcp::socket s;
  std::array<char, 65536> in{};
  std::string pending, sending;
  const std::string line = std::string(63, 'x') + "\n";
  long to_send, to_receive;
  int depth;
  bool writing = false;
  long& done;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s server-parx|server-asio PORT | client PORT CONNS MSGS [DEPTH]\n",
                 argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const auto port = static_cast<std::uint16_t>(std::atoi(argv[2]));
  if (mode == "server-parx") {
    aio::run(parx_server(port));
  } else if (mode == "server-asio") {
    asio::io_context io(1);
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    std::printf("ready\n");
    std::fflush(stdout);
    asio_accept(a);
    io.run();
  } else if (mode == "client" && argc >= 5) {
    const int conns = std::atoi(argv[3]), msgs = std::atoi(argv[4]);
    const int depth = argc >= 6 ? std::max(1, std::atoi(argv[5])) : 1;
    asio::io_context io(1);
    long done = 0;
    std::vector<std::shared_ptr<ClientConn>> cs;
    for (int i = 0; i < conns; ++i) {
      auto c = std::make_shared<ClientConn>(io, msgs, depth, done);
      c->s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
      c->s.set_option(tcp::no_delay(true));
      cs.push_back(c);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (auto& c : cs)
      c->start();
    io.run();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("echo_client conns %d depth %d msgs %ld seconds %.3f msgs_per_s %.0f\n", conns,
                depth, done, s, static_cast<double>(done) / s);
    return done == static_cast<long>(conns) * msgs ? 0 : 1;
  } else {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
}
