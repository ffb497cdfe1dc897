// Timelines: TraceRecorder over real pools (threads, processes with a crash and a retry, a
// ClusterPool alone), the pool option, and PARX_TRACE in a child program written at exit; each
// trace is read back as JSON and through the summariser. Also the recorder's per-thread buffers:
// threads and recorders that come and go while events are recorded and written.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <parx/observe/trace_summary.hpp>
#include <parx/parx.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

int traced_square(int x) {
  std::this_thread::sleep_for(std::chrono::microseconds(200));
  if (x == 13) throw std::invalid_argument("13 is unlucky");
  return x * x;
}
PARX_REMOTE(traced_square);

int crash_once(int x) {
  // The first attempt at item 5 dies with SIGKILL; the retry (a fresh worker) succeeds.
  // The flag's path comes from the test program (set before parx::init, so the workers' fork
  // server inherited it).
  const std::string flag = std::getenv("PARX_TEST_TRACE_FLAG");
  if (x == 5 && !fs::exists(flag)) {
    std::ofstream(flag) << "x";
    ::kill(getpid(), SIGKILL);
  }
  return x;
}
PARX_REMOTE(crash_once);

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "parx-trace-XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

json load(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

std::vector<json> of(const json& t, const std::string& ph, const std::string& name = "") {
  std::vector<json> out;
  for (const auto& e : t["traceEvents"])
    if (e.value("ph", "") == ph && (name.empty() || e.value("name", "") == name)) out.push_back(e);
  return out;
}

TEST(Trace, ThreadPoolTasksAndFailures) {
  TempDir d;
  const fs::path p = d.path / "threads.json";
  parx::ThreadPool pool(2);
  {
    parx::observe::TraceRecorder rec(p.string());
    std::vector<parx::Future<int>> fs;
    for (int i = 0; i < 40; ++i)
      fs.push_back(pool.submit(traced_square, i));
    int failed = 0;
    for (auto& f : fs) {
      try {
        (void)f.get();
      } catch (const std::invalid_argument&) {
        ++failed;
      }
    }
    EXPECT_EQ(failed, 1);
    // A task's end is reported just after its future becomes ready: a shut-down pool has
    // reported everything.
    pool.shutdown();
    EXPECT_GE(rec.events(), 122u);  // queued, started, ended; the workers stopped
  }
  const json t = load(p);
  const auto slices = of(t, "X");
  ASSERT_EQ(slices.size(), 40u);
  std::set<int> tids;
  int failed = 0;
  for (const auto& s : slices) {
    EXPECT_EQ(s["cat"], "task");
    EXPECT_GE(s["dur"].get<double>(), 150.0);  // ~200 µs each
    EXPECT_TRUE(s["args"].contains("queue_wait_us"));
    tids.insert(s["tid"].get<int>());
    failed += s["args"]["status"] == "failed";
  }
  EXPECT_EQ(failed, 1);
  EXPECT_LE(tids.size(), 2u);
  EXPECT_EQ(of(t, "b").size(), 40u);  // queue waits
  EXPECT_EQ(of(t, "e").size(), 40u);
  bool named = false;
  for (const auto& m : of(t, "M", "thread_name"))
    named |= m["args"]["name"].get<std::string>().rfind("worker 0 · pid ", 0) == 0;
  EXPECT_TRUE(named);
  // The summariser reads it back.
  const auto sum = parx::observe::summarize_trace_file(p);
  EXPECT_EQ(sum.tasks, 40u);
  EXPECT_EQ(sum.failures, 1u);
}

TEST(Trace, ProcessPoolCrashRetryAndFunctionNames) {
  TempDir d;
  const fs::path p = d.path / "procs.json";
  std::error_code ec;
  fs::remove(std::getenv("PARX_TEST_TRACE_FLAG"), ec);
  {
    parx::observe::TraceRecorder rec(p.string());  // outlives the pool: its last events are in
    parx::ProcessPool pool({.workers = 2, .retries = 1});
    rec.only(pool.id());
    const auto ys =
        pool.map(crash_once, std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {.chunksize = 1});
    EXPECT_EQ(ys[5], 5);
    const auto c = pool.counters();
    EXPECT_EQ(c.retried, 1u);
    EXPECT_GE(c.worker_restarts, 1u);
    EXPECT_GT(c.bytes_moved, 0u);
  }
  fs::remove(std::getenv("PARX_TEST_TRACE_FLAG"), ec);
  const json t = load(p);
  const auto slices = of(t, "X");
  ASSERT_GE(slices.size(), 10u);
  for (const auto& s : slices)
    EXPECT_EQ(s["name"], "crash_once");
  EXPECT_EQ(of(t, "i", "worker crashed").size(), 1u);
  EXPECT_EQ(of(t, "i", "task retried").size(), 1u);
  EXPECT_GE(of(t, "i", "worker restarted").size(), 1u);
  const auto crashed = of(t, "i", "worker crashed")[0];
  EXPECT_NE(crashed["args"]["how"].get<std::string>().find("SIGKILL"), std::string::npos);
  std::set<std::string> pools;
  for (const auto& m : of(t, "M", "process_name"))
    pools.insert(m["args"]["name"]);
  ASSERT_EQ(pools.size(), 1u);  // only this pool: the option records its own pool
  EXPECT_EQ(pools.begin()->rfind("ProcessPool ", 0), 0u);
  const auto sum = parx::observe::summarize_trace_file(p);
  ASSERT_EQ(sum.pools.size(), 1u);
  EXPECT_EQ(sum.pools[0].crashes, 1u);
  EXPECT_EQ(sum.pools[0].retries, 1u);
}

TEST(Trace, ClusterPoolAloneMapChunks) {
  TempDir d;
  const fs::path p = d.path / "cluster.json";
  {
    parx::observe::TraceRecorder rec(p.string());
    parx::ClusterPool pool;
    rec.only(pool.id());
    std::vector<int> xs(200);
    for (int i = 0; i < 200; ++i)
      xs[static_cast<std::size_t>(i)] = i + 100;
    (void)pool.map(traced_square, xs);
  }
  const json t = load(p);
  std::uint64_t items = 0;
  for (const auto& s : of(t, "X")) {
    EXPECT_EQ(s["name"], "traced_square");
    items += s["args"].value("items", 1u);
  }
  EXPECT_EQ(items, 200u);
  bool rank_named = false;
  for (const auto& m : of(t, "M", "thread_name"))
    rank_named |= m["args"]["name"].get<std::string>().rfind("rank 0", 0) == 0;
  EXPECT_TRUE(rank_named);
}

TEST(Trace, EnvironmentVariableWritesAtExit) {
  TempDir d;
  const fs::path p = d.path / "env.json";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("PARX_TRACE", p.c_str(), 1);
    const std::string exe = fs::read_symlink("/proc/self/exe").string();
    ::execl(exe.c_str(), exe.c_str(), "--trace-child", nullptr);
    _exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  const json t = load(p);
  EXPECT_EQ(of(t, "X").size(), 20u);
  EXPECT_EQ(t["otherData"]["producer"], "parx");
}

// ---- writing the file safely -----------------------------------------------------------------
// A trace replaces only a regular file: a FIFO, a symlink (to a victim, or to a device) or a
// directory at the path is refused and left as it was; a planted "<path>.tmp" link is never
// followed; the file is private (0600).

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

bool write_trace_to(const fs::path& p) {
  parx::observe::TraceRecorder rec(p.string());
  parx::ThreadPool pool(1);
  pool.submit([] { return 1; }).get();
  const bool ok = rec.write();
  rec.discard();
  return ok;
}

TEST(Trace, WritesOnlyRegularFilesAndNeverFollowsALink) {
  TempDir d;
  const fs::path victim = d.path / "victim.txt";
  std::ofstream(victim) << "precious";
  // A symlink at the path: refused, the link and its target untouched.
  const fs::path link = d.path / "link.json";
  fs::create_symlink(victim, link);
  EXPECT_FALSE(write_trace_to(link));
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(read_all(victim), "precious");
  // A link to a device (as /dev/full would be): refused.
  const fs::path dev = d.path / "null.json";
  fs::create_symlink("/dev/null", dev);
  EXPECT_FALSE(write_trace_to(dev));
  EXPECT_TRUE(fs::is_symlink(dev));
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  // A FIFO: refused (and not opened: nothing blocks).
  const fs::path fifo = d.path / "fifo.json";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_FALSE(write_trace_to(fifo));
  EXPECT_TRUE(fs::is_fifo(fifo));
  // A directory: refused.
  EXPECT_FALSE(write_trace_to(d.path));
  // The old temporary name planted as a link to the victim: not followed.
  const fs::path run = d.path / "run.json";
  fs::create_symlink(victim, d.path / "run.json.tmp");
  EXPECT_TRUE(write_trace_to(run));
  EXPECT_EQ(read_all(victim), "precious");
  EXPECT_TRUE(fs::is_regular_file(run));
  EXPECT_EQ(fs::status(run).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write)
      << "a trace holds error text: mode 0600";
  EXPECT_NO_THROW((void)load(run));
  // Written again over the regular file it made: fine, and no temporary is left behind.
  EXPECT_TRUE(write_trace_to(run));
  for (const auto& e : fs::directory_iterator(d.path))
    EXPECT_EQ(e.path().filename().string().find(".parx-"), std::string::npos) << e.path();
}

TEST(Trace, EnvironmentVariableRefusesADeviceAndSaysSo) {
  TempDir d;
  const fs::path dev = d.path / "full.json";
  fs::create_symlink("/dev/null", dev);
  const fs::path err = d.path / "stderr.txt";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("PARX_TRACE", dev.c_str(), 1);
    std::freopen(err.c_str(), "w", stderr);
    const std::string exe = fs::read_symlink("/proc/self/exe").string();
    ::execl(exe.c_str(), exe.c_str(), "--trace-child", nullptr);
    _exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the program runs on, untraced";
  EXPECT_TRUE(fs::is_symlink(dev));
  const std::string said = read_all(err);
  EXPECT_NE(said.find("PARX_TRACE="), std::string::npos) << said;
  EXPECT_NE(said.find("symbolic link"), std::string::npos) << said;
  EXPECT_NE(said.find("no trace is recorded"), std::string::npos) << said;
}

// Emits the three events of task `task` of executor `exec` on worker `worker`, named by a
// buffer whose content changes from task to task (the recorder must not key names by pointer).
void emit_task(std::uint64_t exec, std::uint64_t task, int worker, char* name) {
  std::snprintf(name, 16, "fn%d", static_cast<int>(task % 5));
  for (auto k : {parx::observe::EventKind::TaskQueued, parx::observe::EventKind::TaskStarted,
                 parx::observe::EventKind::TaskFinished}) {
    parx::observe::Event e{k};
    e.executor_id = exec;
    e.executor_kind = "thread";
    e.task_id = task;
    e.worker = worker;
    e.name = k == parx::observe::EventKind::TaskQueued ? name : nullptr;
    parx::observe::emit(e);
  }
}

TEST(Trace, ThreadsAndRecordersComeAndGoWhileRecording) {
  // Several recorders at once, one created and destroyed over and over and another written while
  // threads append; threads that exit before the write. Every event is in the file, with the
  // right names.
  TempDir d;
  const std::uint64_t exec = parx::observe::next_executor_id();
  constexpr int kThreads = 4, kTasks = 1000;
  parx::observe::TraceRecorder all((d.path / "all.json").string());
  parx::observe::TraceRecorder mine((d.path / "mine.json").string(), exec);
  std::atomic<int> running{kThreads};
  std::vector<std::thread> ts;
  for (int w = 0; w < kThreads; ++w)
    ts.emplace_back([&, w] {
      char name[16];
      for (int i = 0; i < kTasks; ++i)
        emit_task(exec, 1 + static_cast<std::uint64_t>(w) * kTasks + i, w, name);
      running.fetch_sub(1);
    });
  int churned = 0;
  while (running.load() > 0 || churned < 3) {
    parx::observe::TraceRecorder passing((d.path / "passing.json").string(), exec);
    EXPECT_TRUE(all.write());
    (void)mine.events();
    ++churned;
  }
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(mine.events(), 3u * kThreads * kTasks);
  EXPECT_GE(all.events(), 3u * kThreads * kTasks);
  ASSERT_TRUE(mine.write());
  const json t = load(d.path / "mine.json");
  const auto slices = of(t, "X");
  ASSERT_EQ(slices.size(), static_cast<std::size_t>(kThreads * kTasks));
  std::set<std::uint64_t> ids;
  for (const auto& s : slices) {
    const auto task = s["args"]["task"].get<std::uint64_t>();
    ids.insert(task);
    EXPECT_EQ(s["name"], "fn" + std::to_string(task % 5));
  }
  EXPECT_EQ(ids.size(), slices.size());
  const json p = load(d.path / "passing.json");  // the last one, written by its destructor
  EXPECT_EQ(p["otherData"]["producer"], "parx");
}

TEST(Trace, AThreadOutlivesItsRecorderAndFeedsTheNext) {
  // One thread records into more recorders than its thread-local cache holds, then into a new
  // recorder created after the first ones are gone (perhaps at the same address).
  TempDir d;
  const std::uint64_t exec = parx::observe::next_executor_id();
  std::mutex mu;
  std::condition_variable cv;
  int step = 0, done = -1;
  std::thread t([&] {
    char name[16];
    for (int s = 0; s < 2; ++s) {
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return step > s; });
      for (int i = 0; i < 10; ++i)
        emit_task(exec, 100 * static_cast<std::uint64_t>(s) + i + 1, 0, name);
      done = s;
      cv.notify_all();
    }
  });
  auto run_step = [&](int s) {
    std::unique_lock lk(mu);
    step = s + 1;
    cv.notify_all();
    cv.wait(lk, [&] { return done == s; });
  };
  {
    std::vector<std::unique_ptr<parx::observe::TraceRecorder>> recs;
    for (int i = 0; i < 6; ++i)
      recs.push_back(std::make_unique<parx::observe::TraceRecorder>(
          (d.path / ("r" + std::to_string(i) + ".json")).string(), exec));
    run_step(0);
    for (const auto& r : recs)
      EXPECT_EQ(r->events(), 30u);
    for (auto& r : recs)
      r->discard();
  }
  parx::observe::TraceRecorder next((d.path / "next.json").string(), exec);
  run_step(1);
  t.join();
  EXPECT_EQ(next.events(), 30u);
  ASSERT_TRUE(next.write());
  const auto slices = of(load(d.path / "next.json"), "X");
  ASSERT_EQ(slices.size(), 10u);
  for (const auto& s : slices)
    EXPECT_GT(s["args"]["task"].get<std::uint64_t>(), 100u);
}

TEST(Trace, UnwritablePathIsReportedNotThrown) {
  parx::observe::TraceRecorder rec("/nonexistent-dir/x/trace.json");
  EXPECT_FALSE(rec.write());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string flag =
      (fs::temp_directory_path() / ("parx-trace-crash-" + std::to_string(getpid()))).string();
  ::setenv("PARX_TEST_TRACE_FLAG", flag.c_str(), 0);
  parx::init(argc, argv);
  if (argc == 2 && std::string(argv[1]) == "--trace-child") {
    parx::ThreadPool pool(2);
    for (int i = 0; i < 20; ++i)
      (void)pool.submit(traced_square, i + 20).get();
    return 0;
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
