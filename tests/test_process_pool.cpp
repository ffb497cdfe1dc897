// ProcessPool with real worker processes: results, exceptions, crashes (SIGKILL, SIGSEGV, abort,
// exit), timeouts, memory ceilings, corrupt channel bytes, 200 MB payloads, shutdown, and what is
// left after the parent is killed or interrupted. Each test asserts the exact outcome.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <parx/parx.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include "ipc/fork_server.hpp"
#include "process/channel.hpp"

#include "helper_parent.hpp"
#include "test_util.hpp"

using namespace std::chrono_literals;

// Crash tests want the plain signal, not a sanitizer's report and exit(1).
extern "C" const char* __asan_default_options() {
  return "handle_segv=0:handle_abort=0:allow_user_segv_handler=1";
}
extern "C" const char* __tsan_default_options() {
  return "handle_segv=0:handle_abort=0";
}

// ---- functions the workers run
// -------------------------------------------------------------------

int square(int x) {
  return x * x;
}
PARX_REMOTE(square);

std::string greet(const std::string& who, int times) {
  std::string s;
  for (int i = 0; i < times; ++i)
    s += "hello " + who + ";";
  return s;
}
PARX_REMOTE(greet);

long worker_pid(int) {
  return static_cast<long>(getpid());
}
PARX_REMOTE(worker_pid);

void touch_nothing(int) {}
PARX_REMOTE(touch_nothing);

int sleeps_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
PARX_REMOTE(sleeps_ms);

struct CustomError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[gnu::noinline]] int throws_custom_deep(int x) {
  throw CustomError("custom failure " + std::to_string(x));
}
int throws_kind(int kind) {
  switch (kind) {
    case 0:
      throw std::runtime_error("plain runtime error");
    case 1: {
      std::vector<int> v;
      return v.at(5);  // thrown inside libstdc++
    }
    case 2:
      return throws_custom_deep(kind);
    case 3:
      throw 42;  // not a std::exception
    default:
      return kind;
  }
}
PARX_REMOTE(throws_kind);

int fails_on(int x) {
  if (x % 10 == 7) throw std::invalid_argument("bad item " + std::to_string(x));
  return x + 1;
}
PARX_REMOTE(fails_on);

int crashes_on(int x) {
  if (x == 37) abort();
  return 2 * x;
}
PARX_REMOTE(crashes_on);

int segfaults(int) {
  // Not null (UBSan would report a null store before the fault): an unmapped page.
  volatile int* p = reinterpret_cast<volatile int*>(std::uintptr_t{64});
  *p = 1;  // NOLINT
  return 0;
}
PARX_REMOTE(segfaults);

int aborts(int) {
  std::abort();
}
PARX_REMOTE(aborts);

int exits_with(int code) {
  std::exit(code);
}
PARX_REMOTE(exits_with);

int spins_forever(int) {
  volatile unsigned long n = 0;
  for (;;)
    n = n + 1;
}
PARX_REMOTE(spins_forever);

// Allocates and touches memory without bound.
int allocation_bomb(int mb_per_step) {
  std::vector<char*> keep;
  for (;;) {
    auto* p = static_cast<char*>(std::malloc(static_cast<std::size_t>(mb_per_step) << 20));
    if (!p) return -1;
    std::memset(p, 1, static_cast<std::size_t>(mb_per_step) << 20);
    keep.push_back(p);
  }
}
PARX_REMOTE(allocation_bomb);

// Crashes the first time (marker file absent), succeeds after.
int crashes_once(const std::string& marker) {
  if (!std::filesystem::exists(marker)) {
    std::ofstream(marker) << "x";
    std::abort();
  }
  return 7;
}
PARX_REMOTE(crashes_once);

int throws_once(const std::string& marker) {
  if (!std::filesystem::exists(marker)) {
    std::ofstream(marker) << "x";
    throw std::runtime_error("flaky");
  }
  return 8;
}
PARX_REMOTE(throws_once);

int g_base = 0;
void set_base(int b) {
  g_base = b;
}
PARX_REMOTE(set_base);
int plus_base(int x) {
  return x + g_base;
}
PARX_REMOTE(plus_base);
void initializer_throws(int) {
  throw std::logic_error("cannot set up");
}
PARX_REMOTE(initializer_throws);

std::vector<double> scaled(const std::vector<double>& v, double k) {
  std::vector<double> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i)
    out[i] = v[i] * k;
  return out;
}
PARX_REMOTE(scaled);

int add3(int a, int b, int c) {
  return a + 10 * b + 100 * c;
}
PARX_REMOTE(add3);

int not_registered(int x) {
  return x;
}

// The same behaviour through encoded chunks: two arguments have no packed batch form.
int crashes_on_pair(int x, int) {
  return crashes_on(x);
}
PARX_REMOTE(crashes_on_pair);
int fails_on_pair(int x, int) {
  return fails_on(x);
}
PARX_REMOTE(fails_on_pair);

struct Point {
  double x, y;
};
double norm2(Point p) {
  return p.x * p.x + p.y * p.y;
}
PARX_REMOTE(norm2);

// Crashes on item 13 the first time (the marker, set by the initializer, does not exist yet).
std::string g_marker;
void set_marker(const std::string& m) {
  g_marker = m;
}
PARX_REMOTE(set_marker);
int crashes_once_on_13(int x) {
  if (x == 13 && !std::filesystem::exists(g_marker)) {
    std::ofstream(g_marker) << "x";
    std::abort();
  }
  return x * 3;
}
PARX_REMOTE(crashes_once_on_13);
int throws_once_on_13(int x) {
  if (x == 13 && !std::filesystem::exists(g_marker)) {
    std::ofstream(g_marker) << "x";
    throw std::runtime_error("flaky 13");
  }
  return x * 3;
}
PARX_REMOTE(throws_once_on_13);

static_assert(parx::detail::batchable<int, int>());
static_assert(parx::detail::batchable<double, Point>());
static_assert(parx::detail::batchable<void, int>());
static_assert(!parx::detail::batchable<int, int, int>());
static_assert(!parx::detail::batchable<int, const std::string&>());
static_assert(!parx::detail::batchable<bool, int>());  // not every byte is a valid bool

// Finds this worker's channel region (the mapping of the pool's memfd that is not page 0).
parx::detail::channel::RegionLayout* own_region() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("parx-pool") == std::string::npos) continue;
    unsigned long lo = 0, hi = 0, off = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %*s %lx", &lo, &hi, &off) != 3) continue;
    if (hi - lo == parx::detail::channel::kRegionBytes)
      return reinterpret_cast<parx::detail::channel::RegionLayout*>(lo);
  }
  return nullptr;
}

// Writes a frame with a wrong checksum into this worker's response ring, then keeps running.
int corrupts_response(int) {
  namespace ch = parx::detail::channel;
  ch::RegionLayout* r = own_region();
  if (!r) return -1;
  const std::uint64_t tail = r->resp.tail.load();
  ch::FrameHeader h{ch::kMagic, ch::kResult, 12345, 0, 0, 0xdeadbeef};
  std::memcpy(ch::resp_data(r) + tail % ch::kRingBytes, &h, sizeof h);
  r->resp.tail.store(tail + sizeof h);
  std::this_thread::sleep_for(3s);  // still running when the parent sees the bytes
  return 1;
}
PARX_REMOTE(corrupts_response);

// Writes garbage where the parent's next request will be read, as if a request frame had been
// damaged in transit; the task itself completes.
int corrupts_request(int) {
  namespace ch = parx::detail::channel;
  ch::RegionLayout* r = own_region();
  if (!r) return -1;
  const std::uint64_t tail = r->req.tail.load();
  std::memset(ch::req_data(r) + tail % ch::kRingBytes, 0xab, 64);
  r->req.tail.store(tail + 64);
  return 2;
}
PARX_REMOTE(corrupts_request);

namespace {

bool gone(pid_t p) {
  if (kill(p, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(p) + "/stat");
  std::string s;
  std::getline(stat, s);
  const auto rp = s.rfind(')');
  return rp != std::string::npos && rp + 2 < s.size() && s[rp + 2] == 'Z';
}

using parx_test::expect_throw;

std::string temp_marker(const char* name) {
  std::string p = "/tmp/parx-test-" + std::to_string(getpid()) + "-" + name;
  std::filesystem::remove(p);
  return p;
}

// ---- results
// --------------------------------------------------------------------------------------

TEST(ProcessPool, SubmitMapStarmapImap) {
  parx::ProcessPool pool(2);
  EXPECT_EQ(pool.workers(), 2u);
  EXPECT_EQ(pool.submit(square, 7).get(), 49);
  EXPECT_EQ(pool.submit(greet, std::string("ana"), 2).get(), "hello ana;hello ana;");
  pool.submit(touch_nothing, 1).get();

  parx::MapStats st;
  auto ys = pool.map(square, parx::range(20'000), {.stats = &st});
  ASSERT_EQ(ys.size(), 20'000u);
  for (int i = 0; i < 20'000; ++i)
    ASSERT_EQ(ys[static_cast<std::size_t>(i)], i * i);
  EXPECT_EQ(st.items, 20'000u);
  EXPECT_GT(st.chunksize, 1u) << "tiny tasks must be batched";
  EXPECT_LT(st.chunks, 20'000u);

  std::vector<std::tuple<int, int, int>> args{{1, 2, 3}, {4, 5, 6}};
  EXPECT_EQ(pool.starmap(add3, args), (std::vector<int>{321, 654}));

  std::vector<int> in(500);
  std::iota(in.begin(), in.end(), 0);
  int expect = 0;
  for (int y : pool.imap(square, in, {.chunksize = 7})) {
    EXPECT_EQ(y, expect * expect);
    ++expect;
  }
  EXPECT_EQ(expect, 500);
  std::multiset<int> got;
  for (int y : pool.imap_unordered(square, in))
    got.insert(y);
  std::multiset<int> want;
  for (int x : in)
    want.insert(x * x);
  EXPECT_EQ(got, want);
  pool.map(touch_nothing, in);  // void results
}

TEST(ProcessPool, WorkersAreOtherProcesses) {
  parx::ProcessPool pool(2);
  const auto pids = pool.pids();
  ASSERT_EQ(pids.size(), 2u);
  const long p = pool.submit(worker_pid, 0).get();
  EXPECT_NE(p, static_cast<long>(getpid()));
  EXPECT_TRUE(p == pids[0] || p == pids[1]);
}

TEST(ProcessPool, LazyInputOfUnknownLength) {
  parx::ProcessPool pool(2);
  long sum = 0;
  auto gen = parx::generate([i = 0]() mutable -> std::optional<int> {
    if (i == 3000) return std::nullopt;
    return i++;
  });
  auto squares = pool.imap(square, gen, {.max_in_flight = 256});
  for (int y : squares)
    sum += y;
  long want = 0;
  for (long i = 0; i < 3000; ++i)
    want += i * i;
  EXPECT_EQ(sum, want);
}

// ---- exceptions
// -----------------------------------------------------------------------------------

TEST(ProcessPool, ExceptionsArriveAsTaskErrorWithTypeMessagePidHostAndTrace) {
  parx::ProcessPool pool(1);
  const long wpid = pool.pids().at(0);
  char host[256] = {};
  gethostname(host, sizeof host - 1);

  auto e0 = expect_throw<parx::TaskError>([&] { pool.submit(throws_kind, 0).get(); });
  EXPECT_EQ(e0.type_name(), "std::runtime_error");
  EXPECT_EQ(e0.message(), "plain runtime error");
  EXPECT_EQ(e0.task_index(), -1);
  EXPECT_EQ(e0.info().function, "throws_kind");
  EXPECT_EQ(e0.pid(), wpid);
  EXPECT_EQ(e0.host(), host);
  EXPECT_NE(e0.stack_trace().find("throws_kind"), std::string::npos) << e0.stack_trace();

  auto e1 = expect_throw<parx::TaskError>([&] { pool.submit(throws_kind, 1).get(); });
  EXPECT_EQ(e1.type_name(), "std::out_of_range");
  EXPECT_NE(e1.stack_trace().find("throws_kind"), std::string::npos) << e1.stack_trace();

  auto e2 = expect_throw<parx::TaskError>([&] { pool.submit(throws_kind, 2).get(); });
  EXPECT_EQ(e2.type_name(), "CustomError");
  EXPECT_EQ(e2.message(), "custom failure 2");
  EXPECT_NE(e2.stack_trace().find("throws_custom_deep"), std::string::npos) << e2.stack_trace();
  EXPECT_NE(std::string(e2.what()).find("CustomError: custom failure 2 in throws_kind"),
            std::string::npos)
      << e2.what();

  auto e3 = expect_throw<parx::TaskError>([&] { pool.submit(throws_kind, 3).get(); });
  EXPECT_EQ(e3.type_name(), "int");

  EXPECT_EQ(pool.submit(throws_kind, 9).get(), 9);  // the worker lives on
  EXPECT_EQ(pool.pids().at(0), wpid);
  EXPECT_EQ(pool.counters().crashes, 0u);
}

TEST(ProcessPool, MapFailsAtTheFirstFailingItemAndImapKeepsTheOthers) {
  parx::ProcessPool pool(2);
  auto e = expect_throw<parx::TaskError>([&] { pool.map(fails_on, parx::range(100)); });
  EXPECT_EQ(e.task_index(), 7);
  EXPECT_EQ(e.type_name(), "std::invalid_argument");
  EXPECT_EQ(e.message(), "bad item 7");

  auto it = pool.imap(fails_on, parx::range(100), {.chunksize = 8});
  int ok = 0, failed = 0;
  for (int i = 0; i < 100; ++i) {
    try {
      auto v = it.next();
      ASSERT_TRUE(v.has_value());
      EXPECT_EQ(*v, i + 1);
      ++ok;
    } catch (const parx::TaskError& te) {
      EXPECT_EQ(te.task_index(), i);
      ++failed;
    }
  }
  EXPECT_FALSE(it.next().has_value());
  EXPECT_EQ(failed, 10);
  EXPECT_EQ(ok, 90);
}

TEST(ProcessPool, RetryOnExceptionIsOptIn) {
  {
    parx::ProcessPool pool(1);
    const auto marker = temp_marker("throws-once-a");
    EXPECT_THROW(pool.submit(throws_once, marker).get(), parx::TaskError);
    std::filesystem::remove(marker);
  }
  parx::ProcessPool pool({.workers = 1, .retries = 1, .retry_exceptions = true});
  const auto marker = temp_marker("throws-once-b");
  EXPECT_EQ(pool.submit(throws_once, marker).get(), 8);
  EXPECT_EQ(pool.counters().retried, 1u);
  std::filesystem::remove(marker);
}

// ---- functions that cannot run
// --------------------------------------------------------------------

TEST(ProcessPool, UnregisteredFunctionIsRefusedAtSubmitNamingIt) {
  parx::ProcessPool pool(1);
  auto e = expect_throw<parx::Error>([&] { pool.submit(not_registered, 1); });
  EXPECT_NE(std::string(e.what()).find("not_registered"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("PARX_REMOTE"), std::string::npos) << e.what();
  auto e2 = expect_throw<parx::Error>([&] { pool.map(not_registered, parx::range(10)); });
  EXPECT_NE(std::string(e2.what()).find("not_registered"), std::string::npos) << e2.what();
  EXPECT_EQ(pool.counters().done, 0u);  // nothing reached a worker
}

TEST(ProcessPool, WorkerRefusesAnUnknownFunctionId) {
  parx::ProcessPool pool(1);
  parx::Encoder e;
  e.put(5);
  auto f = pool.submit_encoded<int>(0x1234'5678'9abc'def0ull, e.bytes());
  auto err = expect_throw<parx::TaskError>([&] { f.get(); });
  EXPECT_EQ(err.type_name(), "parx::Error");
  EXPECT_NE(err.message().find("no function is registered under id 123456789abcdef0"),
            std::string::npos)
      << err.message();
  EXPECT_EQ(pool.submit(square, 3).get(), 9);
}

TEST(ProcessPool, ArgumentsThatDoNotDecodeFailTheTaskOnly) {
  parx::ProcessPool pool(1);
  parx::Encoder e;
  e.put(std::string("not an int and too long"));
  auto f = pool.submit_encoded<int>(parx::remote_id(square), e.bytes());
  auto err = expect_throw<parx::TaskError>([&] { f.get(); });
  EXPECT_EQ(err.type_name(), "parx::SerializationError");
  EXPECT_EQ(pool.submit(square, 4).get(), 16);
}

// ---- crashes
// --------------------------------------------------------------------------------------

void expect_crash(parx::ProcessPool& pool, int (*fn)(int), int arg, int sig, int code) {
  const auto before = pool.pids();
  auto e = expect_throw<parx::WorkerCrashed>([&] { pool.submit(fn, arg).get(); });
  EXPECT_EQ(e.signal(), sig) << e.what();
  EXPECT_EQ(e.exit_code(), code) << e.what();
  EXPECT_EQ(e.task_index(), -1);
  EXPECT_TRUE(std::find(before.begin(), before.end(), e.pid()) != before.end()) << e.what();
  // Replaced, and serving.
  EXPECT_EQ(pool.submit(square, 5).get(), 25);
  EXPECT_TRUE(parx_test::eventually([&] { return pool.pids().size() == before.size(); }));
  const auto after = pool.pids();
  EXPECT_TRUE(std::find(after.begin(), after.end(), e.pid()) == after.end());
}

TEST(ProcessPool, SegfaultAbortAndExitFailOnlyTheirTask) {
  parx::ProcessPool pool(2);
  expect_crash(pool, segfaults, 0, SIGSEGV, 0);
  expect_crash(pool, aborts, 0, SIGABRT, 0);
  expect_crash(pool, exits_with, 3, 0, 3);
  expect_crash(pool, exits_with, 0, 0, 0);  // exit(0) inside a task is still a crash
  EXPECT_EQ(pool.counters().crashes, 4u);
  EXPECT_EQ(pool.counters().worker_restarts, 4u);
}

TEST(ProcessPool, WorkerKilledMidTask) {
  parx::ProcessPool pool(1);
  const pid_t victim = pool.pids().at(0);
  auto f = pool.submit(sleeps_ms, 20'000);
  auto g = pool.submit(square, 6);  // queued behind it: must not be lost
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  auto e = expect_throw<parx::WorkerCrashed>([&] { f.get(); });
  EXPECT_EQ(e.signal(), SIGKILL);
  EXPECT_EQ(e.pid(), victim);
  EXPECT_NE(std::string(e.what()).find("sleeps_ms"), std::string::npos) << e.what();
  EXPECT_EQ(g.get(), 36);
  EXPECT_NE(pool.pids().at(0), victim);
}

TEST(ProcessPool, CrashInAChunkFailsOnlyThatItem) {
  parx::ProcessPool pool(2);
  auto it = pool.imap(crashes_on, parx::range(100), {.chunksize = 10});
  for (int i = 0; i < 100; ++i) {
    if (i == 37) {
      auto e = expect_throw<parx::WorkerCrashed>([&] { (void)it.next(); });
      EXPECT_EQ(e.task_index(), 37);
      EXPECT_EQ(e.signal(), SIGABRT);
    } else {
      auto v = it.next();
      ASSERT_TRUE(v.has_value());
      EXPECT_EQ(*v, 2 * i);
    }
  }
  EXPECT_FALSE(it.next().has_value());
  EXPECT_EQ(pool.counters().crashes, 1u);
}

TEST(ProcessPool, RetriesRunACrashedTaskAgain) {
  parx::ProcessPool pool({.workers = 1, .retries = 1});
  const auto marker = temp_marker("crashes-once");
  EXPECT_EQ(pool.submit(crashes_once, marker).get(), 7);
  EXPECT_EQ(pool.counters().retried, 1u);
  EXPECT_EQ(pool.counters().crashes, 1u);
  std::filesystem::remove(marker);
  // Retries are bounded: a task that always crashes fails after 1 + retries attempts.
  auto e = expect_throw<parx::WorkerCrashed>([&] { pool.submit(aborts, 0).get(); });
  EXPECT_NE(std::string(e.what()).find("failed 2 times"), std::string::npos) << e.what();
}

TEST(ProcessPool, EndlessLoopUnderTimeout) {
  parx::ProcessPool pool({.workers = 1, .timeout = 300ms});
  const pid_t before = pool.pids().at(0);
  const auto t0 = std::chrono::steady_clock::now();
  auto e = expect_throw<parx::TimeoutError>([&] { pool.submit(spins_forever, 0).get(); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_NE(std::string(e.what()).find("300 ms"), std::string::npos) << e.what();
  EXPECT_EQ(pool.counters().timeouts, 1u);
  EXPECT_EQ(pool.submit(sleeps_ms, 100).get(), 100);  // under the limit: fine
  EXPECT_NE(pool.pids().at(0), before);
}

TEST(ProcessPool, AllocationBombUnderMemoryCeiling) {
  parx::ProcessPool pool({.workers = 1, .memory_limit = std::size_t{300} << 20});
  auto e = expect_throw<parx::WorkerCrashed>([&] { pool.submit(allocation_bomb, 16).get(); });
  EXPECT_EQ(e.signal(), SIGKILL);
  EXPECT_NE(std::string(e.what()).find("memory ceiling"), std::string::npos) << e.what();
  EXPECT_EQ(pool.submit(square, 9).get(), 81);
}

// Functions of one plain argument travel as packed arrays; the others as encoded items. Both forms
// must give the same outcomes, item by item.
TEST(ProcessPool, PackedAndEncodedChunksFailTheSameItems) {
  parx::ProcessPool pool(2);
  std::vector<std::tuple<int, int>> pairs;
  for (int i = 0; i < 100; ++i)
    pairs.emplace_back(i, 0);
  for (bool packed : {true, false}) {
    SCOPED_TRACE(packed ? "packed" : "encoded");
    const auto crashes_before = pool.counters().crashes;
    std::vector<int> ok;
    int crashed = -1;
    auto collect = [&](auto&& it) {
      for (int i = 0; i < 100; ++i) {
        try {
          ok.push_back(*it.next());
        } catch (const parx::WorkerCrashed& e) {
          crashed = static_cast<int>(e.task_index());
          EXPECT_EQ(e.signal(), SIGABRT);
        }
      }
      EXPECT_FALSE(it.next().has_value());
    };
    if (packed)
      collect(pool.imap(crashes_on, parx::range(100), {.chunksize = 10}));
    else
      collect(pool.imap(parx::detail::StarCall<decltype(&crashes_on_pair)>{crashes_on_pair}, pairs,
                        {.chunksize = 10}));
    EXPECT_EQ(crashed, 37);
    ASSERT_EQ(ok.size(), 99u);
    for (int i = 0; i < 99; ++i)
      EXPECT_EQ(ok[static_cast<std::size_t>(i)], 2 * (i < 37 ? i : i + 1));
    EXPECT_EQ(pool.counters().crashes, crashes_before + 1);

    auto e = expect_throw<parx::TaskError>([&] {
      if (packed)
        pool.map(fails_on, parx::range(100), {.chunksize = 16});
      else
        pool.starmap(fails_on_pair, pairs, {.chunksize = 16});
    });
    EXPECT_EQ(e.task_index(), 7);
    EXPECT_EQ(e.type_name(), "std::invalid_argument");
    EXPECT_EQ(e.message(), "bad item 7");
    EXPECT_EQ(e.info().function, packed ? "fails_on" : "fails_on_pair");
    EXPECT_NE(e.stack_trace().find("fails_on"), std::string::npos) << e.stack_trace();
  }
}

TEST(ProcessPool, PackedBatchesConvertArgumentsAndCarryAggregates) {
  parx::ProcessPool pool(2);
  // long inputs for an int parameter: converted as encode_call would.
  auto ys = pool.map(square, parx::range(0L, 5000L));
  ASSERT_EQ(ys.size(), 5000u);
  for (int i = 0; i < 5000; ++i)
    ASSERT_EQ(ys[static_cast<std::size_t>(i)], i * i);
  std::vector<Point> pts;
  for (int i = 0; i < 3000; ++i)
    pts.push_back({i * 0.5, -i * 0.25});
  auto ns = pool.map(norm2, pts, {.chunksize = 64});
  ASSERT_EQ(ns.size(), pts.size());
  for (std::size_t i = 0; i < pts.size(); ++i)
    ASSERT_DOUBLE_EQ(ns[i], norm2(pts[i]));
  // Lazy, unordered, and with a result range collected at once.
  std::multiset<double> got;
  for (double v : pool.imap_unordered(norm2, pts))
    got.insert(v);
  EXPECT_EQ(got.size(), pts.size());
  EXPECT_EQ(pool.imap(norm2, pts).to_vector(), ns);
}

TEST(ProcessPool, PackedBatchRetriesTheCrashedItemOnly) {
  const auto marker = temp_marker("crash-13");
  parx::ProcessPool pool(
      {.workers = 2, .initializer = parx::remote_call(set_marker, marker), .retries = 1});
  auto ys = pool.map(crashes_once_on_13, parx::range(40), {.chunksize = 10});
  ASSERT_EQ(ys.size(), 40u);
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(ys[static_cast<std::size_t>(i)], 3 * i);
  EXPECT_EQ(pool.counters().crashes, 1u);
  EXPECT_EQ(pool.counters().retried, 1u);
  std::filesystem::remove(marker);

  const auto marker2 = temp_marker("throw-13");
  parx::ProcessPool flaky({.workers = 1,
                           .initializer = parx::remote_call(set_marker, marker2),
                           .retries = 1,
                           .retry_exceptions = true});
  auto zs = flaky.map(throws_once_on_13, parx::range(40), {.chunksize = 10});
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(zs[static_cast<std::size_t>(i)], 3 * i);
  EXPECT_EQ(flaky.counters().retried, 1u);
  EXPECT_EQ(flaky.counters().crashes, 0u);
  std::filesystem::remove(marker2);
}

TEST(ProcessPool, TimeoutInsideAPackedBatchFailsThatItemOnly) {
  parx::ProcessPool pool({.workers = 1, .timeout = 300ms});
  std::vector<int> ms(12, 1);
  ms[5] = 60'000;
  auto it = pool.imap(sleeps_ms, ms, {.chunksize = 12});
  for (int i = 0; i < 12; ++i) {
    if (i == 5) {
      auto e = expect_throw<parx::TimeoutError>([&] { (void)it.next(); });
      EXPECT_NE(std::string(e.what()).find("task 5 "), std::string::npos) << e.what();
    } else {
      EXPECT_EQ(it.next().value(), 1);
    }
  }
  EXPECT_EQ(pool.counters().timeouts, 1u);
}

TEST(ProcessPool, MaxTasksPerWorkerCountsItemsOfChunks) {
  parx::ProcessPool pool({.workers = 1, .max_tasks_per_worker = 25});
  const pid_t first = pool.pids().at(0);
  auto ys = pool.map(square, parx::range(100), {.chunksize = 10});
  ASSERT_EQ(ys.size(), 100u);
  EXPECT_EQ(ys[99], 99 * 99);
  EXPECT_EQ(pool.counters().crashes, 0u);
  EXPECT_GE(pool.counters().worker_restarts, 3u);
  EXPECT_TRUE(parx_test::eventually([&] { return pool.pids().size() == 1; }));
  EXPECT_NE(pool.pids().at(0), first);
}

TEST(ProcessPool, MaxTasksPerWorkerReplacesWorkers) {
  parx::ProcessPool pool({.workers = 1, .max_tasks_per_worker = 2});
  std::vector<long> pids;
  for (int i = 0; i < 6; ++i)
    pids.push_back(pool.submit(worker_pid, i).get());
  EXPECT_EQ(pids[0], pids[1]);
  EXPECT_NE(pids[1], pids[2]);
  EXPECT_EQ(pids[2], pids[3]);
  EXPECT_NE(pids[3], pids[4]);
  EXPECT_EQ(pids[4], pids[5]);
  EXPECT_EQ(pool.counters().crashes, 0u);
}

// ---- corrupt channel bytes
// --------------------------------------------------------------------------

TEST(ProcessPool, CorruptResponseBytesAreDetected) {
  parx::ProcessPool pool(1);
  const pid_t victim = pool.pids().at(0);
  auto e = expect_throw<parx::SerializationError>([&] { pool.submit(corrupts_response, 0).get(); });
  EXPECT_NE(std::string(e.what()).find("corrupt message from worker pid " + std::to_string(victim)),
            std::string::npos)
      << e.what();
  EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  EXPECT_EQ(pool.counters().corrupt_messages, 1u);
  EXPECT_EQ(pool.submit(square, 11).get(), 121);
  EXPECT_NE(pool.pids().at(0), victim);
}

TEST(ProcessPool, CorruptRequestBytesAreRefusedWithoutLosingWork) {
  parx::ProcessPool pool(1);
  const pid_t victim = pool.pids().at(0);
  EXPECT_EQ(pool.submit(corrupts_request, 0).get(), 2);
  // The worker refuses the damaged frame and exits; the next task runs on its replacement.
  EXPECT_EQ(pool.submit(square, 12).get(), 144);
  EXPECT_TRUE(parx_test::eventually([&] { return pool.counters().corrupt_messages == 1; }));
  EXPECT_TRUE(parx_test::eventually([&] {
    auto p = pool.pids();
    return p.size() == 1 && p[0] != victim;
  }));
}

// ---- large payloads
// -------------------------------------------------------------------------------

TEST(ProcessPool, TwoHundredMegabyteArgumentAndResult) {
  parx::ProcessPool pool(1);
  std::vector<double> v(25'000'000);  // 200 MB
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>(i);
  const std::vector<double> out = pool.submit(scaled, v, 0.5).get();
  ASSERT_EQ(out.size(), v.size());
  for (std::size_t i = 0; i < out.size(); i += 999'983)
    ASSERT_EQ(out[i], 0.5 * static_cast<double>(i));
  EXPECT_EQ(out.back(), 0.5 * static_cast<double>(v.size() - 1));
}

// ---- initializer
// -------------------------------------------------------------------------------------

TEST(ProcessPool, InitializerRunsInEveryWorker) {
  parx::ProcessPool pool({.workers = 2, .initializer = parx::remote_call(set_base, 1000)});
  auto ys = pool.map(plus_base, parx::range(100), {.chunksize = 1});
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(ys[static_cast<std::size_t>(i)], 1000 + i);
  // A replacement worker runs it too.
  EXPECT_THROW(pool.submit(aborts, 0).get(), parx::WorkerCrashed);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(pool.submit(plus_base, 1).get(), 1001);
}

TEST(ProcessPool, FailingInitializerFailsTheConstructor) {
  auto e = expect_throw<parx::TaskError>([] {
    parx::ProcessPool pool({.workers = 2, .initializer = parx::remote_call(initializer_throws, 0)});
  });
  EXPECT_EQ(e.type_name(), "std::logic_error");
  EXPECT_EQ(e.message(), "cannot set up");
  EXPECT_NE(e.info().function.find("initializer_throws"), std::string::npos);
}

// ---- shutdown
// ------------------------------------------------------------------------------------------

TEST(ProcessPool, ShutdownCancelsPendingAndRefusesNewWork) {
  parx::ProcessPool pool(1);
  auto running = pool.submit(sleeps_ms, 500);
  std::this_thread::sleep_for(100ms);
  std::vector<parx::Future<int>> queued;
  for (int i = 0; i < 5; ++i)
    queued.push_back(pool.submit(sleeps_ms, 1));
  auto cancelled = pool.submit(sleeps_ms, 1);
  EXPECT_TRUE(cancelled.cancel());
  pool.shutdown({.cancel_pending = true});
  EXPECT_EQ(running.get(), 500);
  int n_cancelled = 0;
  for (auto& f : queued) {
    try {
      f.get();
    } catch (const parx::Cancelled&) {
      ++n_cancelled;
    }
  }
  EXPECT_GE(n_cancelled, 4);  // one may already sit in the worker's ring
  EXPECT_THROW(cancelled.get(), parx::Cancelled);
  EXPECT_THROW(pool.submit(square, 1), parx::ExecutorShutdown);
  EXPECT_TRUE(pool.is_shutdown());
  EXPECT_TRUE(pool.pids().empty());
}

TEST(ProcessPool, DestructorWaitsForRunningWork) {
  parx::Future<int> f;
  std::vector<long> pids;
  {
    parx::ProcessPool pool(2);
    f = pool.submit(sleeps_ms, 200);
    for (auto p : pool.pids())
      pids.push_back(p);
  }
  EXPECT_EQ(f.get(), 200);
  for (long p : pids)
    EXPECT_TRUE(parx_test::eventually([&] { return gone(static_cast<pid_t>(p)); }));
}

// ---- the parent dies
// --------------------------------------------------------------------------------

std::set<std::string> dev_shm() {
  std::set<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator("/dev/shm"))
    names.insert(e.path().filename().string());
  return names;
}

// Runs this binary as a parent with a busy pool, reads the pids of its fork server and workers,
// then sends it `sig`: it must end by that signal, promptly, leaving no process and no segment.
void parent_dies_with(int sig) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);  // orphans come to us, so their death can be observed
  const auto shm_before = dev_shm();
  const auto helper = parx_test::spawn_helper_parent("PARX_TEST_POOL_PARENT=1");
  ASSERT_NE(helper.out, nullptr);
  long server = 0, n = 0;
  ASSERT_EQ(std::fscanf(helper.out, "%ld %ld", &server, &n), 2);
  std::vector<long> procs{server};
  for (long i = 0; i < n; ++i) {
    long p = 0;
    ASSERT_EQ(std::fscanf(helper.out, "%ld", &p), 1);
    procs.push_back(p);
  }
  fclose(helper.out);
  for (long p : procs)
    ASSERT_FALSE(gone(static_cast<pid_t>(p)));
  const auto t0 = std::chrono::steady_clock::now();
  kill(helper.pid, sig);
  int st = 0;
  ASSERT_EQ(waitpid(helper.pid, &st, 0), helper.pid);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), sig);
  for (long p : procs) {
    bool reaped = false;
    for (int i = 0; i < 500 && !reaped; ++i) {
      reaped = waitpid(static_cast<pid_t>(p), nullptr, WNOHANG) == p || gone(static_cast<pid_t>(p));
      if (!reaped) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(reaped) << (p == server ? "fork server " : "worker ") << p << " survived";
  }
  // Other tests may run beside this one: look for names any process of the helper created
  // (parx names segments "parx-<creator pid>-...").
  procs.push_back(helper.pid);
  for (const auto& name : dev_shm()) {
    if (shm_before.count(name)) continue;
    for (long p : procs)
      EXPECT_NE(name.rfind("parx-" + std::to_string(p) + "-", 0), 0u)
          << "left in /dev/shm: " << name;
  }
}

// Pools inside a pool's task: a ThreadPool works; a process-based pool is refused with a message
// that says what is not supported and what to do instead (not "call parx::init").
long threads_inside(int n) {
  parx::ThreadPool inner(2);
  const auto ys = inner.map([](long x) { return x * x; }, parx::range(static_cast<long>(n)));
  long sum = 0;
  for (long y : ys)
    sum += y;
  return sum;
}
PARX_REMOTE(threads_inside);

int processes_inside(int n) {
  parx::ProcessPool inner(static_cast<std::size_t>(n));
  return static_cast<int>(inner.workers());
}
PARX_REMOTE(processes_inside);

TEST(ProcessPool, APoolInsideATaskIsAThreadPoolOrAClearRefusal) {
  parx::ProcessPool pool(1);
  EXPECT_EQ(pool.submit(threads_inside, 100).get(), 328'350L);
  try {
    (void)pool.submit(processes_inside, 1).get();
    ADD_FAILURE() << "a ProcessPool started inside a task";
  } catch (const parx::TaskError& e) {
    EXPECT_EQ(e.type_name(), "parx::InvalidState");
    EXPECT_NE(e.message().find("cannot be started inside a process that parx started"),
              std::string::npos)
        << e.message();
    EXPECT_NE(e.message().find("parx::ThreadPool"), std::string::npos) << e.message();
    EXPECT_EQ(e.message().find("first line of main"), std::string::npos) << e.message();
  }
  EXPECT_EQ(pool.submit(square, 3).get(), 9) << "the pool serves on";
}

TEST(ProcessPool, ParentSigkillLeavesNoProcessAndNoSharedMemory) {
  parent_dies_with(SIGKILL);
}

TEST(ProcessPool, CtrlCStopsEverythingPromptly) {
  parent_dies_with(SIGINT);
}

}  // namespace

int main(int argc, char** argv) {
  if (std::getenv("PARX_TEST_POOL_PARENT")) {
    signal(SIGINT, SIG_DFL);  // as at a terminal (a CI runner may have inherited SIG_IGN)
    parx::init(argc, argv);
    parx::ProcessPool pool(3);
    std::vector<parx::Future<int>> fs;
    for (int i = 0; i < 6; ++i)
      fs.push_back(pool.submit(sleeps_ms, 600'000));
    std::printf("%ld %zu", static_cast<long>(parx::detail::ForkServer::get().server_pid()),
                pool.pids().size());
    for (pid_t p : pool.pids())
      std::printf(" %ld", static_cast<long>(p));
    std::printf("\n");
    std::fflush(stdout);
    for (auto& f : fs)
      f.wait();
    return 0;
  }
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
