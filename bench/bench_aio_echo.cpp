// TCP echo on 127.0.0.1: parx::aio's server, a plain callback-style Asio server, and the client
// that measures any server (the same client drives Python's asyncio server in bench/run_aio.sh).
//
//   bench_aio_echo server-parx PORT        line echo written with parx::aio (read_line / write)
//   bench_aio_echo server-asio PORT        the same with Asio callbacks (async_read_until)
//   bench_aio_echo client PORT CONNS MSGS  CONNS connections, MSGS round trips each, 64-byte lines;
//                                          prints "echo_client ... msgs_per_s N"
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
      line->push_back('\n');
      co_await s.write(*line);
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

// The classic callback echo session.
class AsioSession : public std::enable_shared_from_this<AsioSession> {
 public:
  explicit AsioSession(tcp::socket s) : s_(std::move(s)) {}
  void start() { read(); }

 private:
  void read() {
    asio::async_read_until(
        s_, buf_, '\n', [self = shared_from_this()](std::error_code ec, std::size_t n) {
          if (ec) return;
          self->out_.assign(
              asio::buffers_begin(self->buf_.data()),
              asio::buffers_begin(self->buf_.data()) + static_cast<std::ptrdiff_t>(n));
          self->buf_.consume(n);
          asio::async_write(self->s_, asio::buffer(self->out_),
                            [self](std::error_code ec2, std::size_t) {
                              if (!ec2) self->read();
                            });
        });
  }
  tcp::socket s_;
  asio::streambuf buf_;
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

// Client: every connection sends a line, waits for its echo, and repeats.
struct ClientConn : std::enable_shared_from_this<ClientConn> {
  ClientConn(asio::io_context& io, int msgs, long& done) : s(io), left(msgs), done(done) {}
  void go() {
    asio::async_write(s, asio::buffer(msg),
                      [self = shared_from_this()](std::error_code ec, std::size_t) {
                        if (ec) return;
                        asio::async_read_until(self->s, self->in, '\n',
                                               [self](std::error_code ec2, std::size_t n) {
                                                 if (ec2) return;
                                                 self->in.consume(n);
                                                 ++self->done;
                                                 if (--self->left > 0) self->go();
                                               });
                      });
  }
  tcp::socket s;
  asio::streambuf in;
  std::string msg = std::string(63, 'x') + "\n";
  int left;
  long& done;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s server-parx|server-asio PORT | client PORT CONNS MSGS\n",
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
    asio::io_context io(1);
    long done = 0;
    std::vector<std::shared_ptr<ClientConn>> cs;
    for (int i = 0; i < conns; ++i) {
      auto c = std::make_shared<ClientConn>(io, msgs, done);
      c->s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
      c->s.set_option(tcp::no_delay(true));
      cs.push_back(c);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (auto& c : cs)
      c->go();
    io.run();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("echo_client conns %d msgs %ld seconds %.3f msgs_per_s %.0f\n", conns, done, s,
                static_cast<double>(done) / s);
    return done == static_cast<long>(conns) * msgs ? 0 : 1;
  } else {
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  }
}
