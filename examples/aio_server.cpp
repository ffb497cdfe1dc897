// An asyncio-style TCP server in C++: every request is a line "N"; the server answers with the
// number of primes below N, computed in a crash-isolated worker process, while the event loop
// keeps serving every other connection. Then the seeds' asyncio.gather example.
//
//   aio_server                   # serves on 127.0.0.1 and runs 200 concurrent clients against it
//   aio_server --port 9000 --serve   # serves until Ctrl-C (try: printf '100000\n' | nc 127.0.0.1
//   9000)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <parx/aio.hpp>
#include <parx/parx.hpp>

namespace aio = parx::aio;
using aio::Task;
using namespace std::chrono_literals;

// CPU-heavy work: it runs in the ProcessPool's workers, never on the event loop.
long count_primes(long n) {
  long count = 0;
  for (long k = 2; k < n; ++k) {
    bool prime = true;
    for (long d = 2; d * d <= k; ++d)
      if (k % d == 0) {
        prime = false;
        break;
      }
    count += prime;
  }
  return count;
}
PARX_REMOTE(count_primes);

// One connection: read a line, compute on the pool, answer; until the client closes.
Task<void> serve(aio::TcpStream s, parx::ProcessPool& pool) {
  try {
    while (auto line = co_await s.read_line(64, 30s)) {
      char* end = nullptr;
      const long n = std::strtol(line->c_str(), &end, 10);
      if (end == line->c_str() || n < 0 || n > 50'000'000) {
        co_await s.write("error: send a number between 0 and 50000000\n");
        continue;
      }
      const long primes = co_await aio::wrap(pool.submit(count_primes, n));
      co_await s.write(std::to_string(primes) + "\n");
    }
  } catch (const std::exception& e) {  // one bad connection never stops the server
    std::fprintf(stderr, "connection closed: %s\n", e.what());
  }
}

Task<void> accept_loop(aio::TcpListener& listener, parx::ProcessPool& pool) {
  for (;;)
    aio::spawn(serve(co_await listener.accept(), pool));
}

// A client: a few requests on one connection; returns how many answers were right.
Task<int> client(std::uint16_t port, int id) {
  auto s = co_await aio::TcpStream::connect("localhost", port, 10s);
  int right = 0;
  for (int k = 0; k < 3; ++k) {
    const long n = 20'000 + 1000 * ((id * 3 + k) % 50);
    co_await s.write(std::to_string(n) + "\n");
    const auto answer = co_await s.read_line(64, 60s);
    // The check is CPU work too: off the loop, on its thread pool.
    const long expect = co_await aio::to_thread(count_primes, n);
    right += answer && std::stol(*answer) == expect;
  }
  co_return right;
}

// The seeds' example: asyncio.gather(*(worker(task) for task in tasks)).
Task<void> worker(std::string task) {
  std::printf("Executing task: %s\n", task.c_str());
  co_await aio::sleep(1s);
}

Task<int> amain(int argc, char** argv) {
  std::uint16_t port = 0;
  bool serve_forever = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--port") && i + 1 < argc)
      port = static_cast<std::uint16_t>(std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--serve"))
      serve_forever = true;
  }
  parx::ProcessPool pool;  // one worker process per core
  auto listener = aio::TcpListener::bind("127.0.0.1", port);
  std::printf("serving on 127.0.0.1:%u with %zu worker processes\n", listener.port(),
              pool.workers());
  auto server = aio::spawn(accept_loop(listener, pool));
  if (serve_forever) {
    co_await server.join();
    co_return 0;
  }

  const int clients = 200;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Task<int>> all;
  for (int i = 0; i < clients; ++i)
    all.push_back(client(listener.port(), i));
  const auto results = co_await aio::gather(std::move(all));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int right = 0;
  for (int r : results)
    right += r;
  std::printf("%d concurrent clients, %d requests answered correctly of %d, in %.2f s\n", clients,
              right, 3 * clients, s);
  server.cancel();
  try {
    co_await server.join();
  } catch (const parx::Cancelled&) {
  }

  const auto g0 = std::chrono::steady_clock::now();
  co_await aio::gather(worker("task1"), worker("task2"), worker("task3"));
  std::printf("gather of three 1 s workers took %.2f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count());
  co_return right == 3 * clients ? 0 : 1;
}

int main(int argc, char** argv) {
  parx::init(argc, argv);
  return aio::run(amain(argc, argv));
}
