// parx::aio: the loop, spawn, TaskGroup and gather semantics, timeouts, cancellation at every
// kind of await, Queue/Semaphore/Lock/Event, TCP over loopback (1,000 concurrent connections),
// and awaiting ThreadPool and ProcessPool futures without blocking the loop.
#include <sys/resource.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <parx/aio.hpp>
#include <parx/parx.hpp>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace std::chrono_literals;
namespace aio = parx::aio;
using aio::Task;

int square(int x) {
  return x * x;
}
PARX_REMOTE(square);

namespace {

using parx_test::expect_throw;

auto elapsed_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::steady_clock::now() - t0;
}

Task<int> after(std::chrono::milliseconds d, int v) {
  co_await aio::sleep(d);
  co_return v;
}

Task<int> fails_after(std::chrono::milliseconds d, std::string msg) {
  co_await aio::sleep(d);
  throw std::runtime_error(msg);
}

// Spawns `waiter`, lets it block, cancels it, and checks it ends with parx::Cancelled promptly.
Task<void> expect_cancelled_while_waiting(Task<void> waiter) {
  auto h = aio::spawn(std::move(waiter));
  co_await aio::sleep(20ms);
  EXPECT_FALSE(h.done());
  const auto t0 = std::chrono::steady_clock::now();
  h.cancel();
  bool cancelled = false;
  try {
    co_await h.join();
  } catch (const parx::Cancelled&) {
    cancelled = true;
  }
  EXPECT_TRUE(cancelled);
  EXPECT_TRUE(h.cancelled());
  EXPECT_LT(elapsed_since(t0), 1s);
}

}  // namespace

// ---- the loop -----------------------------------------------------------------------------------

TEST(Aio, RunReturnsTheResultOrRethrows) {
  EXPECT_EQ(aio::run(after(1ms, 42)), 42);
  auto e = expect_throw<std::runtime_error>([] { aio::run(fails_after(1ms, "boom")); });
  EXPECT_STREQ(e.what(), "boom");
  // void main
  int ran = 0;
  aio::run([&]() -> Task<void> {
    co_await aio::sleep(1ms);
    ++ran;
  }());
  EXPECT_EQ(ran, 1);
}

TEST(Aio, MisuseGivesClearErrors) {
  auto e = expect_throw<parx::InvalidState>([] { aio::spawn(after(1ms, 1)); });
  EXPECT_NE(std::string(e.what()).find("no running loop"), std::string::npos) << e.what();
  aio::run([]() -> Task<void> {
    auto e2 = expect_throw<parx::InvalidState>([] { aio::run(after(1ms, 1)); });
    EXPECT_NE(std::string(e2.what()).find("inside a running loop"), std::string::npos);
    aio::TaskHandle<int> empty;
    EXPECT_THROW(empty.result(), parx::InvalidState);
    auto h = aio::spawn(after(50ms, 1));
    EXPECT_THROW(h.result(), parx::InvalidState);  // not finished
    co_await h.join();
  }());
}

TEST(Aio, SpawnedTasksRunConcurrentlyAndLeftoversAreCancelledAtTheEnd) {
  aio::TaskHandle<int> leftover;
  const auto t0 = std::chrono::steady_clock::now();
  const int sum = aio::run([&]() -> Task<int> {
    std::vector<aio::TaskHandle<int>> hs;
    for (int i = 0; i < 100; ++i)
      hs.push_back(aio::spawn(after(50ms, i)));
    leftover = aio::spawn(after(1h, -1));  // never awaited
    int s = 0;
    for (auto& h : hs)
      s += co_await h.join();
    co_return s;
  }());
  EXPECT_EQ(sum, 4950);
  EXPECT_LT(elapsed_since(t0), 2s);  // concurrent, and the 1 h task did not hold run() up
  EXPECT_TRUE(leftover.done());
  EXPECT_TRUE(leftover.cancelled());
  EXPECT_THROW(leftover.result(), parx::Cancelled);
}

TEST(Aio, DroppedHandlesDoNotLoseTasks) {
  std::atomic<int> done{0};
  aio::run([&]() -> Task<void> {
    // A lambda coroutine keeps its captures in the closure, which dies with the statement: pass
    // what the task needs as parameters (they live in the coroutine frame).
    for (int i = 0; i < 50; ++i)
      aio::spawn([](std::atomic<int>& n) -> Task<void> {
        co_await aio::sleep(5ms);
        ++n;
      }(done));
    co_await aio::sleep(200ms);
  }());
  EXPECT_EQ(done.load(), 50);
}

// ---- time limits
// ----------------------------------------------------------------------------------

TEST(Aio, WaitForReturnsTimesOutAndPassesExceptionsAtOnce) {
  aio::run([]() -> Task<void> {
    EXPECT_EQ(co_await aio::wait_for(after(5ms, 7), 2s), 7);

    auto t0 = std::chrono::steady_clock::now();
    bool timed_out = false;
    try {
      co_await aio::wait_for(after(10s, 1), 50ms);
    } catch (const parx::TimeoutError& e) {
      timed_out = true;
      EXPECT_NE(std::string(e.what()).find("50 ms"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(timed_out);
    EXPECT_LT(elapsed_since(t0), 2s);

    // An exception arrives when it happens, not when the deadline passes.
    t0 = std::chrono::steady_clock::now();
    bool failed = false;
    try {
      co_await aio::wait_for(fails_after(5ms, "early"), 10s);
    } catch (const std::runtime_error& e) {
      failed = std::string(e.what()) == "early";
    }
    EXPECT_TRUE(failed);
    EXPECT_LT(elapsed_since(t0), 2s);

    co_await aio::wait_for([]() -> Task<void> { co_await aio::sleep(1ms); }(), 1s);  // void
  }());
}

TEST(Aio, TimeoutScopesShareOneDeadlineAndNest) {
  aio::run([]() -> Task<void> {
    // A block of awaits under one limit: each await alone fits, together they do not.
    int steps = 0;
    auto t0 = std::chrono::steady_clock::now();
    bool timed_out = false;
    try {
      co_await aio::timeout(150ms, [&]() -> Task<void> {
        for (int i = 0; i < 10; ++i) {
          co_await aio::sleep(40ms);
          ++steps;
        }
      });
    } catch (const parx::TimeoutError& e) {
      timed_out = true;
      EXPECT_NE(std::string(e.what()).find("timeout: not finished within 150 ms"),
                std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(timed_out);
    EXPECT_GE(steps, 1);
    EXPECT_LE(steps, 3);  // cancelled mid-block: the later steps never ran
    EXPECT_LT(elapsed_since(t0), 2s);

    // A block that finishes in time returns its value.
    const int v = co_await aio::timeout(2s, [&]() -> Task<int> {
      const int a = co_await after(2ms, 20);
      co_return a + co_await after(2ms, 22);
    });
    EXPECT_EQ(v, 42);

    // A block capturing by value: named first (g++ 12 destroys a lambda-expression with
    // non-trivial captures twice when it appears inside a co_await expression; see docs/aio.md).
    const std::string tag(40, 't');
    auto sized = [tag]() -> Task<std::size_t> {
      co_await aio::sleep(1ms);
      co_return tag.size();
    };
    EXPECT_EQ(co_await aio::timeout(1s, sized), 40u);

    // A Deadline spread over separate awaits: the second gets only what the first left.
    aio::Deadline dl(120ms);
    EXPECT_FALSE(dl.expired());
    EXPECT_EQ(co_await dl(after(70ms, 1)), 1);
    EXPECT_LE(dl.remaining(), 55ms);
    t0 = std::chrono::steady_clock::now();
    timed_out = false;
    try {
      co_await dl(after(70ms, 2));
    } catch (const parx::TimeoutError& e) {
      timed_out = true;
      EXPECT_NE(std::string(e.what()).find("Deadline: not finished within 120 ms"),
                std::string::npos)
          << e.what();
    }
    EXPECT_TRUE(timed_out);
    EXPECT_LT(elapsed_since(t0), 60ms + 1s);
    EXPECT_TRUE(dl.expired());
    EXPECT_EQ(dl.remaining(), std::chrono::steady_clock::duration::zero());
    EXPECT_THROW(co_await dl(after(0ms, 3)), parx::TimeoutError);  // already passed

    // Nesting: the tighter limit wins, whichever is inside.
    aio::Deadline outer(10s);
    const auto inner = outer.within(30ms);
    EXPECT_LE(inner.remaining(), 30ms);
    EXPECT_THROW(co_await inner(after(5s, 0)), parx::TimeoutError);
    EXPECT_GE(outer.remaining(), 8s);
    EXPECT_EQ(aio::Deadline(20ms).within(10s).remaining() <= 20ms, true);
    t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(co_await aio::timeout(40ms,
                                       [&]() -> Task<void> {
                                         co_await aio::timeout(
                                             10s, [&]() -> Task<void> { co_await aio::sleep(5s); });
                                       }),
                 parx::TimeoutError);
    EXPECT_LT(elapsed_since(t0), 2s);

    // An exception inside a scope passes through unchanged.
    EXPECT_THROW(
        co_await aio::timeout(1s, [&]() -> Task<int> { co_return co_await fails_after(1ms, "x"); }),
        std::runtime_error);
  }());
}

// ---- structured concurrency --------------------------------------------------------------------

TEST(Aio, TaskGroupFirstFailureCancelsSiblingsAndReportsAllFailures) {
  aio::run([]() -> Task<void> {
    aio::TaskGroup g;
    auto slow1 = g.spawn(after(10s, 1));
    auto slow2 = g.spawn(after(10s, 2));
    auto bad = g.spawn(fails_after(10ms, "first"));
    const auto t0 = std::chrono::steady_clock::now();
    bool caught = false;
    try {
      co_await g.join();
    } catch (const aio::ExceptionGroup& eg) {
      caught = true;
      EXPECT_EQ(eg.errors().size(), 1u);
      EXPECT_EQ(parx::exception_message(eg.errors().at(0)), "first");
      EXPECT_NE(std::string(eg.what()).find("std::runtime_error: first"), std::string::npos);
    }
    EXPECT_TRUE(caught);
    EXPECT_LT(elapsed_since(t0), 2s);
    EXPECT_TRUE(slow1.cancelled());
    EXPECT_TRUE(slow2.cancelled());
    EXPECT_FALSE(bad.cancelled());
    EXPECT_THROW(g.spawn(after(1ms, 3)), parx::InvalidState);  // a failed group takes no more

    // Failures at the same time are all reported: one Event wakes both tasks at once, so the
    // first failure's cancellation finds the second already running (no race of two timers).
    aio::TaskGroup g2;
    aio::Event go;
    auto fail_on = [](aio::Event& e, std::string msg) -> Task<void> {
      co_await e.wait();
      throw std::runtime_error(msg);
    };
    g2.spawn(fail_on(go, "a"));
    g2.spawn(fail_on(go, "b"));
    co_await aio::sleep(5ms);  // both are waiting
    go.set();
    std::size_t n = 0;
    try {
      co_await g2.join();
    } catch (const aio::ExceptionGroup& eg) {
      n = eg.errors().size();
    }
    EXPECT_EQ(n, 2u);

    // Success: results through the handles.
    aio::TaskGroup g3;
    auto a = g3.spawn(after(5ms, 10));
    auto b = g3.spawn(after(1ms, 20));
    co_await g3.join();
    EXPECT_EQ(a.result() + b.result(), 30);
  }());
}

TEST(Aio, CancellingAJoinCancelsTheGroupFirst) {
  aio::run([]() -> Task<void> {
    auto child = std::make_shared<aio::TaskHandle<int>>();
    auto joiner = aio::spawn([](std::shared_ptr<aio::TaskHandle<int>> c) -> Task<void> {
      aio::TaskGroup g;
      *c = g.spawn(after(10s, 1));
      co_await g.join();
    }(child));
    co_await aio::sleep(20ms);
    joiner.cancel();
    EXPECT_THROW(co_await joiner.join(), parx::Cancelled);
    EXPECT_TRUE(child->done());  // the group's task ended before the cancellation propagated
    EXPECT_TRUE(child->cancelled());
  }());
}

TEST(Aio, GatherReturnsAllResultsOrTheFirstFailure) {
  aio::run([]() -> Task<void> {
    auto [a, b, c] = co_await aio::gather(after(10ms, 1), after(1ms, 2),
                                          []() -> Task<void> { co_await aio::sleep(1ms); }());
    EXPECT_EQ(a, 1);
    EXPECT_EQ(b, 2);
    (void)c;
    std::vector<Task<int>> many;
    for (int i = 0; i < 20; ++i)
      many.push_back(after(std::chrono::milliseconds(20 - i), i));
    auto v = co_await aio::gather(std::move(many));
    EXPECT_EQ(v.size(), 20u);
    for (int i = 0; i < 20 && i < static_cast<int>(v.size()); ++i)
      EXPECT_EQ(v[static_cast<std::size_t>(i)], i);  // input order, not completion order
    bool failed = false;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      co_await aio::gather(after(10s, 1), fails_after(5ms, "gather"));
    } catch (const std::runtime_error& e) {  // the original type, not a group
      failed = std::string(e.what()) == "gather";
    }
    EXPECT_TRUE(failed);
    EXPECT_LT(elapsed_since(t0), 2s);
  }());
}

// ---- cancellation at every kind of await -------------------------------------------------------
// (The lambdas below capture by reference: g++ 12 destroys a temporary closure twice when its
// coroutine is awaited in the same expression, which only matters for captures with destructors.)

TEST(Aio, CancellationReachesEveryKindOfAwait) {
  parx::ThreadPool pool(1);
  std::latch release(1);
  aio::run([&]() -> Task<void> {
    co_await expect_cancelled_while_waiting([]() -> Task<void> { co_await aio::sleep(1h); }());

    aio::Event ev;
    co_await expect_cancelled_while_waiting([&ev]() -> Task<void> { co_await ev.wait(); }());

    aio::Queue<int> q(1);
    co_await expect_cancelled_while_waiting(
        [&q]() -> Task<void> { (void)co_await q.get(); }());  // empty
    EXPECT_TRUE(q.put_nowait(5));
    co_await expect_cancelled_while_waiting([&q]() -> Task<void> { co_await q.put(6); }());  // full
    EXPECT_EQ(q.size(), 1u);  // the cancelled put added nothing
    EXPECT_EQ(*q.get_nowait(), 5);

    aio::Semaphore sem(0);
    co_await expect_cancelled_while_waiting([&sem]() -> Task<void> { co_await sem.acquire(); }());
    sem.release();
    EXPECT_EQ(sem.available(), 1u);  // the permit was not taken by the cancelled waiter

    aio::Lock lock;
    {
      auto held = co_await lock.lock();
      co_await expect_cancelled_while_waiting(
          [&lock]() -> Task<void> { (void)co_await lock.lock(); }());
    }
    EXPECT_FALSE(lock.locked());

    // A Future of a pool task that waits on a latch.
    auto busy = pool.submit([&] { release.wait(); });
    auto queued = std::make_shared<parx::Future<int>>(pool.submit([] { return 1; }));
    co_await expect_cancelled_while_waiting(
        [&queued]() -> Task<void> { (void)co_await aio::wrap(std::move(*queued)); }());
    release.count_down();
    co_await aio::wrap(std::move(busy));

    // Joining another task (that one keeps running).
    auto sleeper = aio::spawn(after(100ms, 9));
    co_await expect_cancelled_while_waiting(
        [&sleeper]() -> Task<void> { (void)co_await sleeper.join(); }());
    EXPECT_EQ(co_await sleeper.join(), 9);

    // Sockets: accept, and a read with no data.
    auto listener = aio::TcpListener::bind("127.0.0.1", 0);
    co_await expect_cancelled_while_waiting(
        [&listener]() -> Task<void> { (void)co_await listener.accept(); }());
    auto client = co_await aio::TcpStream::connect("127.0.0.1", listener.port());
    auto server = co_await listener.accept();
    co_await expect_cancelled_while_waiting(
        [&server]() -> Task<void> { (void)co_await server.read_line(); }());
  }());
}

// ---- primitives
// -----------------------------------------------------------------------------------

TEST(Aio, BoundedQueueWithJoinAndBackpressure) {
  aio::run([]() -> Task<void> {
    aio::Queue<int> q(4);
    std::vector<int> got;
    int max_size = 0;
    auto consumer =
        aio::spawn([](aio::Queue<int>& q, std::vector<int>& got, int& max_size) -> Task<void> {
          for (;;) {
            const int v = co_await q.get();
            max_size = std::max(max_size, static_cast<int>(q.size()));
            got.push_back(v);
            co_await aio::sleep(100us);
            q.task_done();
          }
        }(q, got, max_size));
    for (int i = 0; i < 200; ++i)
      co_await q.put(i);
    co_await q.join();
    EXPECT_EQ(got.size(), 200u);
    for (int i = 0; i < 200; ++i)
      EXPECT_EQ(got[static_cast<std::size_t>(i)], i);
    EXPECT_LE(max_size, 4);
    EXPECT_THROW(q.task_done(), parx::InvalidState);
    consumer.cancel();
    EXPECT_THROW(co_await consumer.join(), parx::Cancelled);
  }());
}

TEST(Aio, EventSemaphoreAndLockAcrossLoopThreads) {
  std::atomic<int> inside{0}, overlap{0}, peak{0};
  int counter = 0;
  aio::run(
      [&]() -> Task<void> {
        aio::Lock lock;
        aio::Semaphore sem(3);
        aio::Event go;
        aio::TaskGroup g;
        auto worker = [](aio::Lock& lock, aio::Semaphore& sem, aio::Event& go,
                         std::atomic<int>& inside, std::atomic<int>& overlap,
                         std::atomic<int>& peak, int& counter) -> Task<void> {
          co_await go.wait();
          {
            auto guard = co_await lock.lock();
            if (inside.fetch_add(1) != 0) ++overlap;
            const int c = counter;
            co_await aio::sleep(100us);  // suspended while holding the lock
            counter = c + 1;
            inside.fetch_sub(1);
          }
          co_await sem.acquire();
          const int now = static_cast<int>(3 - sem.available());
          peak.store(std::max(peak.load(), now));
          co_await aio::sleep(200us);
          sem.release();
        };
        for (int i = 0; i < 64; ++i)
          g.spawn(worker(lock, sem, go, inside, overlap, peak, counter));
        co_await aio::sleep(5ms);
        go.set();
        co_await g.join();
        EXPECT_EQ(sem.available(), 3u);
      }(),
      {.threads = 4});
  EXPECT_EQ(counter, 64);
  EXPECT_EQ(overlap.load(), 0);
  EXPECT_LE(peak.load(), 3);
  EXPECT_THROW(([] {
                 aio::Semaphore bounded(1, 1);
                 bounded.release();
               }()),
               parx::InvalidState);
}

// ---- TCP
// ------------------------------------------------------------------------------------------

namespace {

Task<void> echo_lines(aio::TcpStream s) {
  while (auto line = co_await s.read_line())
    co_await s.write(*line + "\n");
}

Task<void> echo_server(aio::TcpListener& l) {
  for (;;)
    aio::spawn(echo_lines(co_await l.accept()));
}

}  // namespace

TEST(Aio, ThousandConcurrentLoopbackConnections) {
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < 4096) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 8192);
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  ASSERT_GE(rl.rlim_cur, 2100u) << "needs file descriptors for 2 x 1000 sockets";
  const int n = 1000;
  std::atomic<int> ok{0};
  aio::run([&]() -> Task<void> {
    auto l = aio::TcpListener::bind("127.0.0.1", 0);
    auto server = aio::spawn(echo_server(l));
    std::vector<Task<void>> clients;
    auto client = [](std::uint16_t port, int i, std::atomic<int>& ok) -> Task<void> {
      auto s = co_await aio::TcpStream::connect("localhost", port, 10s);
      for (int k = 0; k < 3; ++k) {
        const std::string msg = "client " + std::to_string(i) + " message " + std::to_string(k);
        co_await s.write(msg + "\n");
        auto back = co_await s.read_line(1 << 20, 10s);
        if (back && *back == msg) ++ok;
      }
    };
    for (int i = 0; i < n; ++i)
      clients.push_back(client(l.port(), i, ok));
    co_await aio::gather(std::move(clients));
    server.cancel();  // it refers to `l`: it must end before this frame does
    EXPECT_THROW(co_await server.join(), parx::Cancelled);
  }());
  EXPECT_EQ(ok.load(), 3 * n);
}

TEST(Aio, FramesLinesEndOfStreamAndBadInput) {
  aio::run([]() -> Task<void> {
    auto l = aio::TcpListener::bind("127.0.0.1", 0);
    auto c = co_await aio::TcpStream::connect("127.0.0.1", l.port());
    auto s = co_await l.accept();

    co_await c.write_frame("hello");
    co_await c.write_frame(std::string(100'000, 'x'));
    co_await c.write_frame("");
    EXPECT_EQ(*co_await s.read_frame(), "hello");
    EXPECT_EQ((co_await s.read_frame())->size(), 100'000u);
    EXPECT_EQ(*co_await s.read_frame(), "");

    // A frame over the limit is refused before anything is allocated for it.
    co_await c.write_frame(std::string(2000, 'y'));
    EXPECT_THROW(co_await s.read_frame(1000), parx::Error);

    // End of stream: clean between messages gives nullopt; inside a message, an error.
    auto c2 = co_await aio::TcpStream::connect("127.0.0.1", l.port());
    auto s2 = co_await l.accept();
    co_await c2.write("one\r\npartial");
    c2.shutdown_write();
    EXPECT_EQ(*co_await s2.read_line(), "one");
    EXPECT_THROW(co_await s2.read_line(), parx::Error);

    auto c3 = co_await aio::TcpStream::connect("127.0.0.1", l.port());
    auto s3 = co_await l.accept();
    co_await c3.write_frame("last");
    c3.close();
    EXPECT_EQ(*co_await s3.read_frame(), "last");
    EXPECT_FALSE((co_await s3.read_frame()).has_value());

    // A line over the limit; a read that times out.
    auto c4 = co_await aio::TcpStream::connect("127.0.0.1", l.port());
    auto s4 = co_await l.accept();
    co_await c4.write(std::string(5000, 'z') + "\n");
    EXPECT_THROW(co_await s4.read_line(1000), parx::Error);
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(co_await s.read_line(1 << 20, 30ms), parx::TimeoutError);
    EXPECT_LT(elapsed_since(t0), 2s);

    // Nobody listening; not an address.
    auto dead = aio::TcpListener::bind("127.0.0.1", 0);
    const auto port = dead.port();
    dead.close();
    EXPECT_THROW(co_await aio::TcpStream::connect("127.0.0.1", port), std::system_error);
    EXPECT_THROW(aio::TcpListener::bind("not-an-ip", 0), parx::InvalidArgument);
  }());
}

TEST(Aio, QueuedWritesGoOutInOrderBeforeAnyWaitingRead) {
  aio::run([]() -> Task<void> {
    auto l = aio::TcpListener::bind("127.0.0.1", 0);
    auto c = co_await aio::TcpStream::connect("localhost", l.port());
    auto s = co_await l.accept();

    // A pipelined request/response loop answering with queue(): the answers leave when the
    // server's read has to wait, all of them in one flush.
    auto serve = [](aio::TcpStream& st, int& lines) -> Task<void> {
      while (auto line = co_await st.read_line()) {
        ++lines;
        st.queue(*line + "!\n");
      }
    };
    int lines = 0;
    auto server = aio::spawn(serve(s, lines));
    std::string batch;
    for (int i = 0; i < 100; ++i)
      batch += "req" + std::to_string(i) + "\n";
    co_await c.write(batch);
    for (int i = 0; i < 100; ++i)
      EXPECT_EQ(*co_await aio::wait_for(c.read_line(), 5s), "req" + std::to_string(i) + "!");
    EXPECT_EQ(lines, 100);

    // Queued bytes precede a later write(), and flush() sends them on its own.
    c.queue("a\n");
    c.queue(std::as_bytes(std::span("b\n", 2)));
    EXPECT_EQ(c.queued(), 4u);
    co_await c.write("c\n");
    EXPECT_EQ(c.queued(), 0u);
    c.queue("d\n");
    co_await c.flush();
    EXPECT_EQ(c.queued(), 0u);
    for (const char* want : {"a!", "b!", "c!", "d!"})
      EXPECT_EQ(*co_await aio::wait_for(c.read_line(), 5s), want);

    c.shutdown_write();
    co_await server.join();

    // A large queued answer (more than the socket buffers hold) still arrives whole.
    const std::string big(8 << 20, 'q');
    s.queue(big);
    s.queue("\n");
    auto reader = [](aio::TcpStream& st) -> Task<std::size_t> {
      co_return (co_await st.read_line(16 << 20))->size();
    };
    auto [n, unit] = co_await aio::gather(reader(c), s.flush(10s));
    (void)unit;
    EXPECT_EQ(n, big.size());
    EXPECT_EQ(s.queued(), 0u);

    // A flush the peer never reads times out, and the stream drops what it could not send.
    s.queue(std::string(64 << 20, 'w'));
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(co_await s.flush(50ms), parx::TimeoutError);
    EXPECT_LT(elapsed_since(t0), 2s);
    EXPECT_EQ(s.queued(), 0u);
  }());
}

// ---- bridges to the pools ----------------------------------------------------------------------

TEST(Aio, AwaitsProcessPoolAndThreadPoolFuturesWithoutBlockingTheLoop) {
  parx::ProcessPool procs(2);
  aio::run([&]() -> Task<void> {
    // A ticker keeps running while the pools work: the loop is never blocked.
    int ticks = 0;
    auto ticker = aio::spawn([](int& t) -> Task<void> {
      for (;;) {
        co_await aio::sleep(1ms);
        ++t;
      }
    }(ticks));
    std::vector<Task<int>> calls;
    for (int i = 0; i < 200; ++i)
      calls.push_back(aio::wrap(procs.submit(square, i)));
    auto ys = co_await aio::gather(std::move(calls));
    long sum = 0;
    for (int y : ys)
      sum += y;
    EXPECT_EQ(sum, 2646700);
    const int blocking = co_await aio::to_thread([] {
      std::this_thread::sleep_for(50ms);
      return 5;
    });
    EXPECT_EQ(blocking, 5);
    EXPECT_EQ(co_await aio::run_in(procs, square, 12), 144);
    EXPECT_GT(ticks, 10);
    ticker.cancel();
    EXPECT_THROW(co_await ticker.join(), parx::Cancelled);
  }());
}

int main(int argc, char** argv) {
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
