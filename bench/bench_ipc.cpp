// parx::Queue between two processes: small messages (an 8-byte integer) and 1 MiB messages,
// producer process -> consumer (main). Prints one line per case; bench/run_ipc.sh runs it beside
// Python's multiprocessing.Queue, SimpleQueue and Pipe (bench/py_ipc.py) and computes ratios.
#include <boost/interprocess/ipc/message_queue.hpp>
#include <parx/parx.hpp>

#include <unistd.h>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

void put_small(parx::Queue<long> q, long n) {
  for (long i = 0; i < n; ++i)
    q.put(i);
}
void put_big(parx::Queue<std::vector<std::uint8_t>> q, long n) {
  std::vector<std::uint8_t> payload(1 << 20, 7);
  for (long i = 0; i < n; ++i)
    q.put(payload);
}
namespace bip = boost::interprocess;

// Boost.Interprocess message_queue peers: the child opens the queue by name.
void boost_put_small(std::string name, long n) {
  bip::message_queue mq(bip::open_only, name.c_str());
  for (long i = 0; i < n; ++i)
    mq.send(&i, sizeof i, 0);
}
void boost_put_big(std::string name, long n) {
  bip::message_queue mq(bip::open_only, name.c_str());
  std::vector<std::uint8_t> payload(1 << 20, 7);
  for (long i = 0; i < n; ++i)
    mq.send(payload.data(), payload.size(), 0);
}

// Lock contention: `n` acquire/release pairs.
void lock_loop(parx::Lock lock, long n) {
  for (long i = 0; i < n; ++i) {
    lock.lock();
    lock.unlock();
  }
}

void pipe_send_small(parx::Connection c, long n) {
  for (long i = 0; i < n; ++i)
    c.send(i);
}
void pipe_send_big(parx::Connection c, long n) {
  std::vector<std::uint8_t> payload(1 << 20, 7);
  for (long i = 0; i < n; ++i)
    c.send(payload);
}

PARX_REMOTE(pipe_send_small);
PARX_REMOTE(pipe_send_big);
PARX_REMOTE(put_small);
PARX_REMOTE(put_big);
PARX_REMOTE(boost_put_small);
PARX_REMOTE(boost_put_big);
PARX_REMOTE(lock_loop);

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char** argv) {
  parx::init(argc, argv);
  {
    const long n = 500'000;
    parx::Queue<long> q;
    parx::Process p(put_small, q, n);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    long sum = 0;
    for (long i = 0; i < n; ++i)
      sum += q.get();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.join();
    std::printf("parx_queue_small us_per_msg %.4f (sum %ld)\n", s / n * 1e6, sum);
  }
  {
    const long n = 2000;
    parx::Queue<std::vector<std::uint8_t>> q;  // default capacity
    parx::Process p(put_big, q, n);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    std::size_t bytes = 0;
    for (long i = 0; i < n; ++i)
      bytes += q.get().size();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    p.join();
    std::printf("parx_queue_1mib GB_per_s %.3f us_per_msg %.1f\n",
                static_cast<double>(bytes) / s / 1e9, s / n * 1e6);
  }
  {
    const long n = 500'000;
    auto [r, w] = parx::make_pipe(false);
    parx::Process p(pipe_send_small, w, n);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    long sum = 0;
    for (long i = 0; i < n; ++i)
      sum += r.recv<long>();
    const double s = since(t0);
    p.join();
    std::printf("parx_pipe_small us_per_msg %.4f (sum %ld)\n", s / n * 1e6, sum);
  }
  {
    const long n = 2000;
    auto [r, w] = parx::make_pipe(false);
    parx::Process p(pipe_send_big, w, n);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    std::size_t bytes = 0;
    for (long i = 0; i < n; ++i)
      bytes += r.recv<std::vector<std::uint8_t>>().size();
    const double s = since(t0);
    p.join();
    std::printf("parx_pipe_1mib GB_per_s %.3f us_per_msg %.1f\n",
                static_cast<double>(bytes) / s / 1e9, s / n * 1e6);
  }
  {
    const long n = 500'000;
    const std::string name = "parx-bench-mq-small-" + std::to_string(getpid());
    bip::message_queue::remove(name.c_str());
    bip::message_queue mq(bip::create_only, name.c_str(), 1024, sizeof(long));
    parx::Process p(boost_put_small, name, n);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    long sum = 0, v = 0;
    std::size_t got = 0;
    unsigned prio = 0;
    for (long i = 0; i < n; ++i) {
      mq.receive(&v, sizeof v, got, prio);
      sum += v;
    }
    const double s = since(t0);
    p.join();
    bip::message_queue::remove(name.c_str());
    std::printf("boost_mq_small us_per_msg %.4f (sum %ld)\n", s / n * 1e6, sum);
  }
  {
    const long n = 2000;
    const std::string name = "parx-bench-mq-big-" + std::to_string(getpid());
    bip::message_queue::remove(name.c_str());
    bip::message_queue mq(bip::create_only, name.c_str(), 8, 1 << 20);
    parx::Process p(boost_put_big, name, n);
    std::vector<std::uint8_t> buf(1 << 20);
    const auto t0 = std::chrono::steady_clock::now();
    p.start();
    std::size_t bytes = 0, got = 0;
    unsigned prio = 0;
    for (long i = 0; i < n; ++i) {
      mq.receive(buf.data(), buf.size(), got, prio);
      bytes += got;
    }
    const double s = since(t0);
    p.join();
    bip::message_queue::remove(name.c_str());
    std::printf("boost_mq_1mib GB_per_s %.3f us_per_msg %.1f\n",
                static_cast<double>(bytes) / s / 1e9, s / n * 1e6);
  }
  {
    parx::Lock lock;
    const long n = 2'000'000;
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) {
      lock.lock();
      lock.unlock();
    }
    std::printf("parx_lock_uncontended ns_per_pair %.1f\n", since(t0) / n * 1e9);
    const long m = 500'000;
    parx::Process a(lock_loop, lock, m), b(lock_loop, lock, m);
    t0 = std::chrono::steady_clock::now();
    a.start();
    b.start();
    a.join();
    b.join();
    std::printf("parx_lock_contended ns_per_pair %.1f\n", since(t0) / (2 * m) * 1e9);
  }
}
