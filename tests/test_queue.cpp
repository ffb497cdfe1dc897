// Queue and JoinableQueue with real processes: 10^6 messages through several producers and
// consumers with none lost or duplicated, a producer SIGKILLed in the middle of putting,
// bounded queues, timeouts on every blocking call, close().
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <parx/parx.hpp>
#include <parx/shared_value.hpp>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

struct Msg {
  int producer;
  long seq;
  std::string pad;  // variable size
};

void produce(parx::Queue<Msg> q, int producer, long first, long count) {
  for (long i = 0; i < count; ++i)
    q.put(Msg{producer, first + i, std::string(static_cast<std::size_t>(i % 17), 'x')});
}

// Drains until the queue is closed and empty; records count, sum and sum of squares of seq.
void consume(parx::Queue<Msg> q, parx::SharedArray<long> totals, int slot) {
  long n = 0, sum = 0, sq = 0;
  try {
    for (;;) {
      Msg m = q.get();
      ++n;
      sum += m.seq;
      sq += (m.seq % 1000003) * (m.seq % 1000003);
    }
  } catch (const parx::QueueClosed&) {
  }
  totals.store(static_cast<std::size_t>(3 * slot), n);
  totals.store(static_cast<std::size_t>(3 * slot + 1), sum);
  totals.store(static_cast<std::size_t>(3 * slot + 2), sq);
}

void put_forever(parx::Queue<Msg> q, int producer) {
  for (long i = 0;; ++i)
    q.put(Msg{producer, i, std::string(static_cast<std::size_t>(i % 500), 'y')});
}

void work_items(parx::JoinableQueue<int> q, parx::SharedValue<long> total) {
  for (;;) {
    int v = q.get();
    if (v < 0) {
      q.task_done();
      return;
    }
    {
      std::lock_guard g(total.get_lock());
      total.ref() += v;
    }
    q.task_done();
  }
}

void echo(parx::Connection c) {
  try {
    for (;;)
      c.send(c.recv<std::string>() + "!");
  } catch (const parx::QueueClosed&) {
  }
}
void nap_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

PARX_REMOTE(echo);
PARX_REMOTE(nap_ms);
PARX_REMOTE(produce);
PARX_REMOTE(consume);
PARX_REMOTE(put_forever);
PARX_REMOTE(work_items);

namespace {

TEST(Queue, FifoTypesAndTryVariants) {
  parx::Queue<std::string> q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.try_get(), std::nullopt);
  q.put("a");
  q.put(std::string(100'000, 'b'));  // variable size, wraps around the ring eventually
  q.put("");
  EXPECT_EQ(q.qsize(), 3u);
  EXPECT_EQ(q.get(), "a");
  EXPECT_EQ(q.get().size(), 100'000u);
  EXPECT_EQ(q.get(1s), "");
  EXPECT_THROW(q.get(30ms), parx::TimeoutError);
  // Wrap-around: many messages through a small ring.
  parx::Queue<std::vector<int>> small(0, 4096);
  for (int i = 0; i < 2000; ++i) {
    small.put(std::vector<int>(static_cast<std::size_t>(i % 50), i));
    auto v = small.get();
    ASSERT_EQ(v.size(), static_cast<std::size_t>(i % 50));
    if (!v.empty()) ASSERT_EQ(v[0], i);
  }
  EXPECT_THROW(small.put(std::vector<int>(5000)), parx::InvalidArgument);  // larger than the ring
}

TEST(Queue, BoundedPutBlocksAndTimesOut) {
  parx::Queue<int> q(2);
  EXPECT_EQ(q.maxsize(), 2u);
  EXPECT_TRUE(q.try_put(1));
  EXPECT_TRUE(q.try_put(2));
  EXPECT_FALSE(q.try_put(3));
  EXPECT_THROW(q.put(3, 30ms), parx::TimeoutError);
  std::thread consumer([&] {
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(q.get(), 1);
  });
  q.put(3);  // blocks until the consumer makes room
  consumer.join();
  EXPECT_EQ(q.get(), 2);
  EXPECT_EQ(q.get(), 3);
}

TEST(Queue, CloseEndsConsumersWithoutSentinels) {
  parx::Queue<int> q;
  q.put(1);
  q.close();
  EXPECT_THROW(q.put(2), parx::QueueClosed);
  EXPECT_EQ(q.get(), 1);  // what was queued still comes out
  EXPECT_THROW(q.get(), parx::QueueClosed);
  parx::Queue<int> waiting;
  std::thread t([&] { EXPECT_THROW(waiting.get(), parx::QueueClosed); });
  std::this_thread::sleep_for(20ms);
  waiting.close();  // wakes the blocked consumer
  t.join();
}

TEST(Queue, MillionMessagesManyProducersAndConsumers) {
  constexpr int kProducers = 4, kConsumers = 3;
  constexpr long kPer = 250'000;  // 10^6 messages in all
  parx::Queue<Msg> q(0, 1 << 20);
  parx::SharedArray<long> totals(3 * kConsumers, 0);
  std::vector<parx::Process> producers, consumers;
  for (int c = 0; c < kConsumers; ++c)
    consumers.emplace_back(consume, q, totals, c);
  for (int p = 0; p < kProducers; ++p)
    producers.emplace_back(produce, q, p, p * kPer, kPer);
  for (auto& c : consumers)
    c.start();
  for (auto& p : producers)
    p.start();
  for (auto& p : producers) {
    p.join();
    ASSERT_EQ(p.exitcode(), 0);
  }
  q.close();
  for (auto& c : consumers) {
    c.join();
    ASSERT_EQ(c.exitcode(), 0);
  }
  long n = 0, sum = 0, sq = 0;
  for (int c = 0; c < kConsumers; ++c) {
    n += totals[static_cast<std::size_t>(3 * c)];
    sum += totals[static_cast<std::size_t>(3 * c + 1)];
    sq += totals[static_cast<std::size_t>(3 * c + 2)];
  }
  const long total = kProducers * kPer;
  long expect_sq = 0;
  for (long s = 0; s < total; ++s)
    expect_sq += (s % 1000003) * (s % 1000003);
  EXPECT_EQ(n, total);                      // none lost
  EXPECT_EQ(sum, total * (total - 1) / 2);  // and none duplicated (with the sum of squares)
  EXPECT_EQ(sq, expect_sq);
}

TEST(Queue, ProducerKilledMidPutCorruptsNothing) {
  parx::Queue<Msg> q(0, 1 << 16);  // small: the producer blocks and wakes constantly
  for (int round = 0; round < 5; ++round) {
    parx::Process p(put_forever, q, round);
    p.start();
    // Consume a while, then kill the producer at an arbitrary point of a put.
    long expect = 0;
    for (int i = 0; i < 2000; ++i) {
      Msg m = q.get(5s);
      ASSERT_EQ(m.producer, round);
      ASSERT_EQ(m.seq, expect++);  // in order, nothing torn
    }
    p.kill();
    p.join();
    // Whatever it completed is intact and in order; then the queue is empty and still usable.
    while (auto m = q.try_get()) {
      ASSERT_EQ(m->producer, round);
      ASSERT_EQ(m->seq, expect++);
      ASSERT_EQ(m->pad.size(), static_cast<std::size_t>(m->seq % 500));
    }
  }
  q.put(Msg{99, 1, "ok"});
  EXPECT_EQ(q.get(1s).pad, "ok");
}

TEST(JoinableQueue, JoinWaitsForTaskDone) {
  parx::JoinableQueue<int> q;
  q.put(0);
  EXPECT_FALSE(q.join(30ms));  // an item not yet marked done: join times out
  EXPECT_EQ(q.get(), 0);
  q.task_done();
  EXPECT_TRUE(q.join(1s));
  parx::SharedValue<long> total(0);
  std::vector<parx::Process> workers;
  for (int w = 0; w < 3; ++w)
    workers.emplace_back(work_items, q, total);
  for (auto& w : workers)
    w.start();
  for (int i = 1; i <= 1000; ++i)
    q.put(i);
  q.join();  // every item processed
  EXPECT_EQ(total.get(), 1000 * 1001 / 2);
  for (int w = 0; w < 3; ++w)
    q.put(-1);
  for (auto& w : workers)
    w.join();
  EXPECT_TRUE(q.join(1s));
  EXPECT_THROW(q.task_done(), parx::InvalidState);
}

TEST(Pipe, DuplexRequestReplyAcrossProcesses) {
  auto [mine, theirs] = parx::make_pipe();
  parx::Process server(echo, theirs);
  server.start();
  for (int i = 0; i < 1000; ++i) {
    mine.send(std::to_string(i));
    ASSERT_EQ(mine.recv<std::string>(5s), std::to_string(i) + "!");
  }
  mine.close();  // the server's recv sees QueueClosed and it returns
  EXPECT_TRUE(server.join(10s));
  EXPECT_EQ(server.exitcode(), 0);
}

TEST(Pipe, SimplexBytesPollAndTimeouts) {
  auto [r, w] = parx::make_pipe(/*duplex=*/false);
  EXPECT_TRUE(r.readable());
  EXPECT_FALSE(r.writable());
  EXPECT_THROW(r.send(1), parx::InvalidState);
  EXPECT_THROW(w.recv<int>(), parx::InvalidState);
  EXPECT_FALSE(r.poll());
  EXPECT_FALSE(r.poll(30ms));
  EXPECT_THROW(r.recv<int>(30ms), parx::TimeoutError);
  const std::byte raw[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  w.send_bytes(raw);
  EXPECT_TRUE(r.poll(1s));
  auto got = r.recv_bytes();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2], std::byte{3});
}

TEST(Pipe, RawBytesSurviveTheRingWrappingAround) {
  auto [r, w] = parx::make_pipe(false, 4096);  // small ring: messages straddle its end
  for (int i = 0; i < 500; ++i) {
    std::vector<std::byte> msg(static_cast<std::size_t>(100 + i % 700));
    for (std::size_t k = 0; k < msg.size(); ++k)
      msg[k] = static_cast<std::byte>((i + k) & 0xff);
    w.send_bytes(msg);
    const auto got = r.recv_bytes();
    ASSERT_EQ(got.size(), msg.size());
    ASSERT_TRUE(std::equal(got.begin(), got.end(), msg.begin())) << "message " << i;
  }
}

TEST(WaitReady, PipesQueuesAndProcesses) {
  auto [r, w] = parx::make_pipe(false);
  parx::Queue<int> q;
  parx::Process p(nap_ms, 50);
  p.start();
  EXPECT_TRUE(parx::wait_ready({r, q, p}, 10ms).empty());  // nothing yet
  auto ready = parx::wait_ready({r, q, p}, 10s);           // the process exits first
  EXPECT_EQ(ready, (std::vector<std::size_t>{2}));
  q.put(1);
  w.send(2);
  ready = parx::wait_ready({r, q}, 1s);
  EXPECT_EQ(ready, (std::vector<std::size_t>{0, 1}));
  p.join();
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
