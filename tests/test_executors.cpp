// One suite over every executor: DESIGN.md's promise that map, errors, cancellation, shutdown,
// progress and checkpoints are written once and behave alike on threads, processes and MPI.
//
// Every case runs on each executor kind × worker count:
//   thread      ThreadPool
//   process     ProcessPool
//   cluster     ClusterPool, each rank's tasks in threads
//   cluster_procs  ClusterPool, each rank's tasks in its own worker processes
// Run alone, the cluster kinds are the local machine. CTest also runs this binary under
// `mpiexec -n 2` and `-n 3`, where only the cluster kinds run (filter `*cluster*`): every rank
// runs every case in the same order, the serving ranks serve inside the pool's constructor, and
// only the driver checks results.
//
// Where the executors differ, the difference is the contract and is tested here:
//   * an exception thrown by a task reaches a ThreadPool's caller as itself; a process or cluster
//     pool's caller gets parx::TaskError carrying its type name and message (the exception object
//     cannot cross a process boundary).
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <memory>
#include <parx/parx.hpp>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {

long square(long x) {
  return x * x;
}
PARX_REMOTE(square);

std::string label(int i) {
  return "item-" + std::to_string(i);
}
PARX_REMOTE(label);

double weighted(int a, double b) {
  return a * b;
}
PARX_REMOTE(weighted);

void nothing(int) {}
PARX_REMOTE(nothing);

int picky(int i) {
  if (i % 7 == 3) throw std::invalid_argument("picky refuses " + std::to_string(i));
  return i;
}
PARX_REMOTE(picky);

int sleepy(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return i;
}
PARX_REMOTE(sleepy);

enum class Kind { thread, process, cluster, cluster_procs };

struct Param {
  Kind kind;
  std::size_t workers;
};

std::string param_name(const ::testing::TestParamInfo<Param>& i) {
  const char* k = i.param.kind == Kind::thread    ? "thread"
                  : i.param.kind == Kind::process ? "process"
                  : i.param.kind == Kind::cluster ? "cluster"
                                                  : "cluster_procs";
  return std::string(k) + "_w" + std::to_string(i.param.workers);
}

// One executor of any kind behind one interface, so that each case is written once. `run`
// receives the pool (ThreadPool, ProcessPool or ClusterPool) on the driver; on a serving rank
// the pool's constructor returns when the driver's pool shuts down, and `run` is not called.
template <class Body>
void with_executor(const Param& p, Body&& run) {
  switch (p.kind) {
    case Kind::thread: {
      parx::ThreadPool pool(p.workers);
      run(pool);
      break;
    }
    case Kind::process: {
      parx::ProcessPool pool(p.workers);
      run(pool);
      break;
    }
    case Kind::cluster:
    case Kind::cluster_procs: {
      parx::ClusterPool pool(
          {.workers_per_rank = p.workers, .processes = p.kind == Kind::cluster_procs});
      if (pool.is_driver()) run(pool);
      break;
    }
  }
}

class Executors : public ::testing::TestWithParam<Param> {};

// A path of the driver's (only the driver reads and writes journals), one directory per process.
fs::path temp_path(const std::string& name) {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("parx-executors-" + std::to_string(getpid()));
    fs::create_directories(d);
    return d;
  }();
  return dir / name;
}

TEST_P(Executors, MapKeepsInputOrder) {
  with_executor(GetParam(), [](auto& pool) {
    const auto ys = pool.map(square, parx::range(5000L));
    ASSERT_EQ(ys.size(), 5000u);
    for (long i = 0; i < 5000; ++i)
      ASSERT_EQ(ys[static_cast<std::size_t>(i)], i * i);
    const auto labels = pool.map(label, std::vector<int>{3, 1, 2});
    EXPECT_EQ(labels, (std::vector<std::string>{"item-3", "item-1", "item-2"}));
    EXPECT_TRUE(pool.map(square, std::vector<long>{}).empty());
    // A lazy input without a size.
    const auto lazy =
        pool.map(square, parx::range(100L) | std::views::filter([](long x) { return x % 2 == 0; }));
    ASSERT_EQ(lazy.size(), 50u);
    EXPECT_EQ(lazy[49], 98L * 98L);
    pool.map(nothing, parx::range(100));  // void: runs, returns nothing
  });
}

TEST_P(Executors, StarmapSpreadsTuples) {
  with_executor(GetParam(), [](auto& pool) {
    std::vector<std::tuple<int, double>> args;
    for (int i = 0; i < 300; ++i)
      args.emplace_back(i, 0.5);
    const auto ys = pool.starmap(weighted, args);
    ASSERT_EQ(ys.size(), 300u);
    for (int i = 0; i < 300; ++i)
      ASSERT_DOUBLE_EQ(ys[static_cast<std::size_t>(i)], i * 0.5);
  });
}

TEST_P(Executors, ImapInOrderAndImapUnorderedInCompletionOrder) {
  with_executor(GetParam(), [](auto& pool) {
    long i = 0;
    for (long y : pool.imap(square, parx::range(2000L), {.max_in_flight = 64})) {
      ASSERT_EQ(y, i * i);
      ++i;
    }
    EXPECT_EQ(i, 2000);
    std::vector<long> got;
    for (long y : pool.imap_unordered(square, parx::range(2000L)))
      got.push_back(y);
    std::sort(got.begin(), got.end());
    ASSERT_EQ(got.size(), 2000u);
    for (long k = 0; k < 2000; ++k)
      ASSERT_EQ(got[static_cast<std::size_t>(k)], k * k);
  });
}

TEST_P(Executors, SubmitReturnsAFuture) {
  with_executor(GetParam(), [](auto& pool) {
    EXPECT_EQ(pool.submit(square, 12L).get(), 144L);
    EXPECT_EQ(pool.submit(label, 5).get(), "item-5");
    pool.submit(nothing, 1).get();
    std::vector<parx::Future<long>> fs;
    for (long k = 0; k < 50; ++k)
      fs.push_back(pool.submit(square, k));
    for (long k = 0; k < 50; ++k)
      EXPECT_EQ(fs[static_cast<std::size_t>(k)].get(), k * k);
  });
}

// The documented difference: the original exception on threads, TaskError across processes.
template <class Pool>
void expect_task_failure(Pool& pool, const std::function<void()>& f, const std::string& msg) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const parx::TaskError& e) {
    EXPECT_FALSE((std::is_same_v<Pool, parx::ThreadPool>)) << "a ThreadPool rethrows the original";
    EXPECT_EQ(e.type_name(), "std::invalid_argument");
    EXPECT_EQ(e.message(), msg);
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE((std::is_same_v<Pool, parx::ThreadPool>)) << "a remote pool throws TaskError";
    EXPECT_EQ(std::string(e.what()), msg);
  }
}

TEST_P(Executors, ExceptionsReachTheCallerAndTheOthersFinish) {
  with_executor(GetParam(), [](auto& pool) {
    expect_task_failure(
        pool, [&] { (void)pool.submit(picky, 3).get(); }, "picky refuses 3");
    // map: the first failing item's error, in input order.
    expect_task_failure(
        pool, [&] { (void)pool.map(picky, parx::range(100)); }, "picky refuses 3");
    // imap: each item's outcome at its position; the others are delivered.
    int delivered = 0, failed = 0;
    auto stream = pool.imap(picky, parx::range(70));
    for (int k = 0; k < 70; ++k) {
      try {
        const auto v = stream.next();
        ASSERT_TRUE(v.has_value());
        EXPECT_EQ(*v, k);
        ++delivered;
      } catch (const std::exception&) {
        EXPECT_EQ(k % 7, 3);
        ++failed;
      }
    }
    EXPECT_EQ(delivered, 60);
    EXPECT_EQ(failed, 10);
    EXPECT_EQ(pool.submit(square, 4L).get(), 16L) << "the pool serves on";
  });
}

TEST_P(Executors, CancellingAQueuedFutureAndShuttingDownWithCancelResolveEveryFuture) {
  with_executor(GetParam(), [](auto& pool) {
    std::vector<parx::Future<int>> fs;
    for (int k = 0; k < 40; ++k)
      fs.push_back(pool.submit(sleepy, k));
    // The last one is queued behind at least 39 tasks of 20 ms on a few workers.
    const bool cancelled = fs.back().cancel();
    fs.front().wait();  // at least one has run: the others end done or Cancelled
    pool.shutdown({.cancel_pending = true});
    int done = 0, dropped = 0;
    for (std::size_t k = 0; k < fs.size(); ++k) {
      try {
        EXPECT_EQ(fs[k].get(), static_cast<int>(k));
        ++done;
      } catch (const parx::Cancelled&) {
        ++dropped;
      }
    }
    EXPECT_EQ(done + dropped, 40) << "every future resolved";
    EXPECT_GE(done, 1);
    if (cancelled) EXPECT_GE(dropped, 1);
    EXPECT_TRUE(pool.is_shutdown());
    EXPECT_THROW((void)pool.submit(square, 1L), parx::ExecutorShutdown);
  });
}

TEST_P(Executors, ShutdownWaitsForRunningWorkAndRefusesMore) {
  with_executor(GetParam(), [](auto& pool) {
    auto f = pool.submit(sleepy, 9);
    pool.shutdown();
    EXPECT_EQ(f.get(), 9);
    EXPECT_TRUE(pool.is_shutdown());
    EXPECT_THROW((void)pool.submit(square, 1L), parx::ExecutorShutdown);
    EXPECT_THROW((void)pool.map(square, parx::range(10L)), parx::ExecutorShutdown);
  });
}

TEST_P(Executors, ProgressReportsEveryItem) {
  with_executor(GetParam(), [](auto& pool) {
    std::atomic<std::size_t> last_done{0}, finished{0};
    std::atomic<std::size_t> total{0};
    const auto ys =
        pool.map(square, parx::range(3000L), {.on_progress = [&](const parx::Progress& p) {
                   last_done = p.done;
                   total = p.total;
                   if (p.finished) ++finished;
                 }});
    EXPECT_EQ(ys.size(), 3000u);
    EXPECT_EQ(finished.load(), 1u);
    EXPECT_EQ(last_done.load(), 3000u);
    EXPECT_EQ(total.load(), 3000u);
  });
}

TEST_P(Executors, CheckpointResumesWithoutRunningAgain) {
  const fs::path ckpt = temp_path(param_name({GetParam(), 0}) + ".ckpt");
  fs::remove(ckpt);
  with_executor(GetParam(), [&](auto& pool) {
    parx::MapStats first, second;
    const auto a =
        pool.map(square, parx::range(500L), {.stats = &first, .checkpoint = ckpt.string()});
    const auto b =
        pool.map(square, parx::range(500L), {.stats = &second, .checkpoint = ckpt.string()});
    EXPECT_EQ(a, b);
    EXPECT_EQ(first.resumed, 0u);
    EXPECT_EQ(second.resumed, 500u) << "every result came from the journal";
    EXPECT_EQ(b[499], 499L * 499L);
  });
  fs::remove(ckpt);
}

// observe::Counters mean the same in every pool: a task is one item, however the pool chunks it.
using parx_test::settled_counters;

TEST_P(Executors, CountersCountItemsAlike) {
  with_executor(GetParam(), [](auto& pool) {
    const auto c0 = settled_counters(pool);
    (void)pool.map(square, parx::range(5000L));
    const auto c1 = settled_counters(pool);
    EXPECT_EQ(c1.submitted - c0.submitted, 5000u);
    EXPECT_EQ(c1.done - c0.done, 5000u);
    EXPECT_EQ(c1.failed, c0.failed);
    EXPECT_GE(c1.chunks - c0.chunks, 1u);
    EXPECT_LT(c1.chunks - c0.chunks, 5000u) << "chunks are not items";

    // The chunked engine (a progress callback makes a ThreadPool's map use it too).
    (void)pool.map(square, parx::range(3000L), {.on_progress = [](const parx::Progress&) {}});
    const auto c2 = settled_counters(pool);
    EXPECT_EQ(c2.submitted - c1.submitted, 3000u);
    EXPECT_EQ(c2.done - c1.done, 3000u);

    // Items that throw inside a chunk count failed, one by one.
    auto stream = pool.imap(picky, parx::range(70));
    for (int k = 0; k < 70; ++k) {
      try {
        (void)stream.next();
      } catch (const std::exception&) {
      }
    }
    const auto c3 = settled_counters(pool);
    EXPECT_EQ(c3.submitted - c2.submitted, 70u);
    EXPECT_EQ(c3.done - c2.done, 60u);
    EXPECT_EQ(c3.failed - c2.failed, 10u);

    EXPECT_EQ(pool.submit(square, 3L).get(), 9L);
    const auto c4 = settled_counters(pool);
    EXPECT_EQ(c4.submitted - c3.submitted, 1u);
    EXPECT_EQ(c4.done - c3.done, 1u);
    EXPECT_EQ(c4.chunks - c3.chunks, 1u);
  });
}

std::vector<Param> params() {
  std::vector<Param> ps;
  for (std::size_t w : {1, 2, 3})
    for (Kind k : {Kind::thread, Kind::process, Kind::cluster, Kind::cluster_procs})
      ps.push_back({k, w});
  return ps;
}

INSTANTIATE_TEST_SUITE_P(All, Executors, ::testing::ValuesIn(params()), param_name);

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  // Under a launcher the local pools would only run once per rank: the cluster kinds are the
  // point there.
  if (parx::mpi::launched() && ::testing::GTEST_FLAG(filter) == "*")
    ::testing::GTEST_FLAG(filter) = "*cluster*";
  return RUN_ALL_TESTS();
}
