// ClusterPool under real ranks: CTest runs this binary under `mpiexec -n 2`, `-n 3` and `-n 4`
// (oversubscribed), and alone (no launcher: the pool is the local machine).
//
// Every rank runs every test in the same order: each test constructs a pool (collective), the
// serving ranks return from the constructor when the driver's pool shuts down, and only the
// driver checks results. Extra modes, run by CTest as separate jobs:
//   --driver-only   serving ranks end inside the constructor (Options::driver_only)
//   --lose-rank     a task kills the rank running it; the job must end, naming the lost rank
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <map>
#include <numeric>
#include <parx/mpi.hpp>
#include <parx/parx.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace mpi = parx::mpi;

// Crash tests want the plain signal, not a sanitizer's report and exit(1).
extern "C" const char* __asan_default_options() {
  return "handle_segv=0:handle_abort=0:allow_user_segv_handler=1";
}

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

std::atomic<int> g_touched{0};
void touch(int) {
  g_touched.fetch_add(1);
}
PARX_REMOTE(touch);

// Uneven cost without using CPU (so oversubscribed ranks do not skew it): every tenth item
// sleeps 20 ms, the others 1 ms.
int nap(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(i % 10 == 0 ? 20 : 1));
  return i;
}
PARX_REMOTE(nap);

int picky(int i) {
  if (i % 7 == 3) throw std::invalid_argument("picky refuses " + std::to_string(i));
  return i;
}
PARX_REMOTE(picky);

int crash_on_five(int i) {
  if (i == 5) {
    // A real segfault. Not null (UBSan would report a null store first): an unmapped page.
    volatile int* p = reinterpret_cast<volatile int*>(std::uintptr_t{64});
    *p = 1;  // NOLINT
  }
  return i;
}
PARX_REMOTE(crash_on_five);

int slow(int i) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return i;
}
PARX_REMOTE(slow);

std::vector<double> scale(const std::vector<double>& v, double k) {
  std::vector<double> out(v);
  for (double& x : out)
    x *= k;
  return out;
}
PARX_REMOTE(scale);

std::string where(int) {
  return parx::mpi::host_name() + "/" + std::to_string(parx::mpi::rank());
}
PARX_REMOTE(where);

int lose_rank(int i) {
  if (parx::mpi::rank() == 1) raise(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  return i;
}
PARX_REMOTE(lose_rank);

int unregistered(int i) {
  return i;
}

}  // namespace

TEST(Cluster, MapsInOrderAndInCompletionOrder) {
  parx::ClusterPool pool;
  EXPECT_EQ(pool.rank(), mpi::rank());
  EXPECT_EQ(pool.size(), mpi::size());
  if (!pool.is_driver()) {
    EXPECT_THROW(pool.submit(square, 3L), parx::InvalidState);
    return;
  }
  // Packed (memcpy-safe) and encoded functions, sized and lazy inputs.
  const auto ys = pool.map(square, parx::range(20'000L));
  ASSERT_EQ(ys.size(), 20'000u);
  for (long i = 0; i < 20'000; ++i)
    ASSERT_EQ(ys[static_cast<std::size_t>(i)], i * i);
  const auto labels = pool.map(label, parx::range(1000));
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(labels[static_cast<std::size_t>(i)], "item-" + std::to_string(i));
  std::vector<long> got;
  for (long y : pool.imap_unordered(square, parx::range(3000L)))
    got.push_back(y);
  std::sort(got.begin(), got.end());
  for (long i = 0; i < 3000; ++i)
    ASSERT_EQ(got[static_cast<std::size_t>(i)], i * i);
  long i = 0;
  for (long y : pool.imap(square, parx::range(3000L), {.max_in_flight = 64})) {
    ASSERT_EQ(y, i * i);
    ++i;
  }
  EXPECT_EQ(i, 3000);
  EXPECT_EQ(pool.submit(square, 12L).get(), 144);
  EXPECT_DOUBLE_EQ(pool.submit(weighted, 3, 1.5).get(), 4.5);
  const std::vector<std::tuple<int, double>> args{{1, 2.0}, {3, 4.0}};
  EXPECT_EQ(pool.starmap(weighted, args), (std::vector<double>{2.0, 12.0}));
  EXPECT_TRUE(pool.map(square, std::vector<long>{}).empty());
  pool.map(touch, parx::range(100));
  parx::MapStats st;
  (void)pool.map(square, parx::range(5000L), {.chunksize = 100, .stats = &st});
  EXPECT_EQ(st.items, 5000u);
  EXPECT_EQ(st.chunks, 50u);
  // Futures from the pool work with as_completed.
  std::vector<parx::Future<long>> fs;
  for (long k = 0; k < 20; ++k)
    fs.push_back(pool.submit(square, k));
  long sum = 0;
  for (auto& f : parx::as_completed(fs))
    sum += f.get();
  EXPECT_EQ(sum, 2470);
  const auto s = pool.counters();
  EXPECT_GT(s.done, 20'000u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.submitted, s.done) << "every item counted once";
  EXPECT_EQ(s.running + s.queue_depth, 0u);
}

TEST(Cluster, RanksAndWorkersAreReported) {
  parx::ClusterPool pool({.workers_per_rank = 2});
  if (!pool.is_driver()) return;
  const auto ranks = pool.ranks();
  ASSERT_EQ(ranks.size(), static_cast<std::size_t>(mpi::size()));
  EXPECT_EQ(pool.workers(), 2u * ranks.size());
  for (std::size_t r = 0; r < ranks.size(); ++r) {
    EXPECT_EQ(ranks[r].rank, static_cast<int>(r));
    EXPECT_FALSE(ranks[r].host.empty());
    EXPECT_GT(ranks[r].pid, 0);
    EXPECT_EQ(ranks[r].workers, 2u);
  }
  EXPECT_EQ(ranks[0].pid, getpid());
  // Every rank really runs tasks: each reports its own host and rank.
  std::set<std::string> seen;
  for (const std::string& w : pool.map(where, parx::range(2000), {.chunksize = 1}))
    seen.insert(w);
  EXPECT_EQ(seen.size(), ranks.size());
}

TEST(Cluster, UnevenTasksSpreadOverEveryRank) {
  parx::ClusterPool pool({.workers_per_rank = 1});
  if (!pool.is_driver()) return;
  const auto out = pool.map(nap, parx::range(400));
  for (int i = 0; i < 400; ++i)
    ASSERT_EQ(out[static_cast<std::size_t>(i)], i);
  const auto ranks = pool.ranks();
  double lo = 1e9, hi = 0, total = 0;
  std::uint64_t tasks = 0;
  for (const auto& r : ranks) {
    EXPECT_GT(r.tasks, 0u) << "rank " << r.rank << " ran nothing";
    lo = std::min(lo, r.busy_seconds);
    hi = std::max(hi, r.busy_seconds);
    total += r.busy_seconds;
    tasks += r.tasks;
    std::cerr << "rank " << r.rank << ": " << r.tasks << " tasks, " << r.chunks << " chunks, "
              << r.busy_seconds << " s busy\n";
  }
  EXPECT_EQ(tasks, 400u);
  // 400 items of 2.9 ms on average: each rank's busy time within half of the mean either way.
  const double mean = total / static_cast<double>(ranks.size());
  EXPECT_GT(lo, 0.5 * mean);
  EXPECT_LT(hi, 1.5 * mean);
}

TEST(Cluster, ExceptionsNameTheRankAndHost) {
  parx::ClusterPool pool;
  if (!pool.is_driver()) return;
  // In a map the first failing item rethrows at its position.
  try {
    (void)pool.map(picky, parx::range(100), {.chunksize = 4});
    ADD_FAILURE() << "map did not throw";
  } catch (const parx::TaskError& e) {
    EXPECT_EQ(e.task_index(), 3);
    EXPECT_EQ(e.type_name(), "std::invalid_argument");
    EXPECT_EQ(e.message(), "picky refuses 3");
    EXPECT_EQ(e.info().function, "picky");
    EXPECT_GE(e.rank(), 0);
    EXPECT_LT(e.rank(), mpi::size());
    EXPECT_FALSE(e.host().empty());
    EXPECT_GT(e.pid(), 0);
    EXPECT_NE(std::string(e.what()).find("rank"), std::string::npos) << e.what();
  }
  // imap goes on after a failure; every item has its own outcome.
  int ok = 0, failed = 0;
  auto results = pool.imap(picky, parx::range(70));
  for (int k = 0; k < 70; ++k) {
    try {
      EXPECT_EQ(results.next(), k);
      ++ok;
    } catch (const parx::TaskError& e) {
      EXPECT_EQ(e.task_index(), k);
      ++failed;
    }
  }
  EXPECT_FALSE(results.next().has_value());
  EXPECT_EQ(failed, 10);
  EXPECT_EQ(ok, 60);
  auto f = pool.submit(picky, 10);
  const auto e = parx_test::expect_throw<parx::TaskError>([&] { (void)f.get(); });
  EXPECT_EQ(e.task_index(), -1);
  // The pool serves on.
  EXPECT_EQ(pool.submit(picky, 4).get(), 4);
}

TEST(Cluster, UnregisteredFunctionIsRefusedAtTheCall) {
  parx::ClusterPool pool;
  if (!pool.is_driver()) return;
  const auto e = parx_test::expect_throw<parx::Error>([&] { (void)pool.submit(unregistered, 1); });
  EXPECT_NE(std::string(e.what()).find("not registered"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("PARX_REMOTE"), std::string::npos) << e.what();
  EXPECT_THROW((void)pool.map(unregistered, parx::range(4)), parx::Error);
  EXPECT_EQ(pool.submit(square, 2L).get(), 4);
}

TEST(Cluster, SegfaultingTaskKillsAWorkerNotTheRank) {
  parx::ClusterPool pool({.workers_per_rank = 1, .processes = true});
  if (!pool.is_driver()) return;
  auto results = pool.imap(crash_on_five, parx::range(12), {.chunksize = 1});
  std::vector<int> ok;
  int crashed = 0;
  for (int k = 0; k < 12; ++k) {
    try {
      ok.push_back(results.next().value());
    } catch (const parx::WorkerCrashed& e) {
      ++crashed;
      EXPECT_EQ(e.signal(), SIGSEGV);
      EXPECT_EQ(e.task_index(), 5);
      EXPECT_NE(std::string(e.what()).find("rank"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(crashed, 1);
  EXPECT_EQ(ok.size(), 11u);
  // Exceptions in worker processes still name rank and host.
  const auto e =
      parx_test::expect_throw<parx::TaskError>([&] { (void)pool.submit(picky, 3).get(); });
  EXPECT_GE(e.rank(), 0);
  EXPECT_FALSE(e.host().empty());
  EXPECT_EQ(pool.map(square, parx::range(1000L)).back(), 999L * 999L);
}

TEST(Cluster, ProcessIsolationRetriesACrashedItem) {
  parx::ClusterPool::Options o;
  o.workers_per_rank = 1;
  o.processes = true;
  o.process.retries = 1;
  parx::ClusterPool pool(o);
  if (!pool.is_driver()) return;
  // Item 5 crashes every time: after one retry it fails; the others succeed.
  auto f = pool.submit(crash_on_five, 5);
  EXPECT_THROW((void)f.get(), parx::WorkerCrashed);
  EXPECT_EQ(pool.submit(crash_on_five, 6).get(), 6);
}

TEST(Cluster, ShutdownWhileTasksRun) {
  parx::ClusterPool pool({.workers_per_rank = 1});
  if (!pool.is_driver()) return;
  std::vector<parx::Future<int>> fs;
  for (int i = 0; i < 200; ++i)
    fs.push_back(pool.submit(slow, i));
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  pool.shutdown({.cancel_pending = true});
  int done = 0, cancelled = 0;
  for (int i = 0; i < 200; ++i) {
    try {
      EXPECT_EQ(fs[static_cast<std::size_t>(i)].get(), i);
      ++done;
    } catch (const parx::Cancelled&) {
      ++cancelled;
    }
  }
  EXPECT_EQ(done + cancelled, 200);
  EXPECT_GT(done, 0);
  EXPECT_GT(cancelled, 0);
  EXPECT_TRUE(pool.is_shutdown());
  EXPECT_THROW((void)pool.submit(slow, 1), parx::ExecutorShutdown);
}

TEST(Cluster, LargeArgumentsAndCompression) {
  parx::ClusterPool pool({.compression = parx::ClusterPool::Compression::always});
  if (!pool.is_driver()) return;
  std::vector<double> v(1 << 20);  // 8 MiB, compressible
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>(i % 1000);
  std::vector<parx::Future<std::vector<double>>> fs;
  for (int k = 0; k < 4; ++k)
    fs.push_back(pool.submit(scale, v, 2.0));
  for (auto& f : fs) {
    const auto out = f.get();
    ASSERT_EQ(out.size(), v.size());
    EXPECT_EQ(out[12345], 2.0 * v[12345]);
  }
  if (mpi::size() > 1) {
    const auto s = pool.counters();
    EXPECT_GT(s.compressed, 0u);
    EXPECT_GT(s.bytes_saved, 0u);
  }
  // Incompressible data goes through too.
  std::vector<double> noise(300'000);
  std::uint64_t x = 88172645463325252ull;
  for (double& d : noise) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    d = static_cast<double>(x);
  }
  EXPECT_EQ(pool.submit(scale, noise, 1.0).get(), noise);
}

TEST(Cluster, EmitsTaskEventsAndBoundsLazyInput) {
  parx::ClusterPool pool;
  if (!pool.is_driver()) return;
  std::atomic<int> queued{0}, started{0}, finished{0}, failed{0};
  {
    auto sub = parx::observe::subscribe([&](const parx::observe::Event& e) {
      if (std::string(e.executor_kind) != "cluster") return;
      switch (e.kind) {
        case parx::observe::EventKind::TaskQueued:
          ++queued;
          break;
        case parx::observe::EventKind::TaskStarted:
          EXPECT_GE(e.worker, 0);  // the rank the chunk went to
          EXPECT_LT(e.worker, mpi::size());
          ++started;
          break;
        case parx::observe::EventKind::TaskFinished:
          ++finished;
          break;
        case parx::observe::EventKind::TaskFailed:
          ++failed;
          break;
        default:
          break;
      }
    });
    (void)pool.map(square, parx::range(1000L), {.chunksize = 100});
    EXPECT_THROW((void)pool.submit(picky, 3).get(), parx::TaskError);
  }
  EXPECT_EQ(queued.load(), 11);
  EXPECT_EQ(started.load(), 11);
  EXPECT_EQ(finished.load(), 10);
  EXPECT_EQ(failed.load(), 1);
  // An endless lazy input is read only max_in_flight items ahead of the consumer.
  long pulled = 0;
  auto gen = parx::generate([&]() -> std::optional<long> { return pulled++; });
  auto results = pool.imap(square, gen, {.chunksize = 10, .max_in_flight = 50});
  long k = 0;
  for (long y : results) {
    EXPECT_EQ(y, k * k);
    ++k;
    EXPECT_LE(pulled - k, 50);
    if (k == 500) break;
  }
  EXPECT_EQ(k, 500);
}

TEST(Cluster, BadOptionsAreRefused) {
  // Every rank refuses the same options before anything collective happens.
  EXPECT_THROW(parx::ClusterPool({.compress_min_bytes = 0}), parx::InvalidArgument);
}

TEST(ClusterAlone, RunsOnTheLocalMachineWithoutALauncher) {
  ASSERT_FALSE(mpi::launched());
  parx::ClusterPool pool;
  EXPECT_TRUE(pool.is_driver());
  EXPECT_EQ(pool.size(), 1);
  EXPECT_GE(pool.workers(), 1u);
  const auto ys = pool.map(square, parx::range(10'000L));
  EXPECT_EQ(ys[9999], 9999L * 9999L);
  EXPECT_THROW((void)pool.submit(picky, 3).get(), parx::TaskError);
  parx::ClusterPool procs({.processes = true});
  EXPECT_EQ(procs.map(label, parx::range(10))[7], "item-7");
}

int main(int argc, char** argv) {
  parx::init(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "--driver-only") {
    parx::ClusterPool pool({.driver_only = true});
    // Only the driver gets here.
    const auto ys = pool.map(square, parx::range(1000L));
    std::cout << "driver-only: rank " << mpi::rank() << " of " << mpi::size() << " summed "
              << std::accumulate(ys.begin(), ys.end(), 0L) << std::endl;
    return mpi::rank() == 0 ? 0 : 1;
  }
  if (argc > 1 && std::string(argv[1]) == "--lose-rank") {
    parx::ClusterPool pool({.workers_per_rank = 1});
    if (pool.is_driver()) (void)pool.map(lose_rank, parx::range(100), {.chunksize = 1});
    std::cout << "the job went on after losing a rank" << std::endl;
    return 0;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (::testing::GTEST_FLAG(filter) == "*")
    ::testing::GTEST_FLAG(filter) = mpi::launched() ? "Cluster.*" : "ClusterAlone.*";
  return RUN_ALL_TESTS();
}
