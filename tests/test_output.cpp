// Output of worker processes and serving ranks relayed to the driver whole-line (parx::Output),
// and parx::log. Real workers print with printf, write(2) and parx::log; this process's fd 1 and
// 2 are captured into memfds while they run. The ClusterPool cases run this program under
// mpiexec with its own child mode.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <parx/log.hpp>
#include <parx/parx.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace fs = std::filesystem;

#ifndef PARX_TEST_MPIEXEC
#define PARX_TEST_MPIEXEC "mpiexec"
#endif
#ifndef PARX_TEST_WITH_MPI
#define PARX_TEST_WITH_MPI 0
#endif

// ---- functions the workers run -------------------------------------------------------------

int say(int i) {
  std::printf("out %d\n", i);
  std::fprintf(stderr, "err %d\n", i);
  return i;
}
PARX_REMOTE(say);

// One line written in three pieces with pauses between: other workers write meanwhile.
int pieces(int i) {
  const std::string a = "piece " + std::to_string(i) + " ";
  const std::string b(40, static_cast<char>('a' + i % 26));
  (void)!::write(STDOUT_FILENO, a.data(), a.size());
  ::usleep(300);
  (void)!::write(STDOUT_FILENO, b.data(), b.size());
  ::usleep(300);
  (void)!::write(STDOUT_FILENO, "\n", 1);
  return i;
}
PARX_REMOTE(pieces);

int numbered(int n) {
  for (int k = 0; k < n; ++k)
    std::printf("seq %d %d\n", static_cast<int>(::getpid()), k);
  return n;
}
PARX_REMOTE(numbered);

int die_mid_line(int) {
  std::printf("last words\n");
  std::printf("unfinished");
  std::fflush(stdout);
  ::raise(SIGKILL);
  return 0;
}
PARX_REMOTE(die_mid_line);

int log_it(int i) {
  parx::log::info("hello ", i);
  parx::log::debug("hidden ", i);
  return i;
}
PARX_REMOTE(log_it);

int rank_say(int i) {
  std::printf("rank-line %d\n", i);
  parx::log::info("rank-log ", i);
  return i;
}
PARX_REMOTE(rank_say);

namespace {

// ---- helpers ---------------------------------------------------------------------------------

std::string read_fd(int fd) {
  std::string s;
  char buf[4096];
  ::lseek(fd, 0, SEEK_SET);
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    s.append(buf, static_cast<std::size_t>(n));
  }
  return s;
}

// This process's stdout and stderr go to memfds until stop().
class Capture {
 public:
  Capture() {
    std::fflush(stdout);
    std::fflush(stderr);
    out_ = ::memfd_create("out", MFD_CLOEXEC);
    err_ = ::memfd_create("err", MFD_CLOEXEC);
    saved_out_ = ::dup(STDOUT_FILENO);
    saved_err_ = ::dup(STDERR_FILENO);
    ::dup2(out_, STDOUT_FILENO);
    ::dup2(err_, STDERR_FILENO);
  }
  ~Capture() {
    stop();
    ::close(out_);
    ::close(err_);
  }
  void stop() {
    if (stopped_) return;
    std::fflush(stdout);
    std::fflush(stderr);
    ::dup2(saved_out_, STDOUT_FILENO);
    ::dup2(saved_err_, STDERR_FILENO);
    ::close(saved_out_);
    ::close(saved_err_);
    stopped_ = true;
  }
  std::string out() {
    stop();
    return read_fd(out_);
  }
  std::string err() {
    stop();
    return read_fd(err_);
  }

 private:
  int out_ = -1, err_ = -1, saved_out_ = -1, saved_err_ = -1;
  bool stopped_ = false;
};

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);)
    v.push_back(l);
  return v;
}

// Lines matching `re`, capture group 1 as an int, counted.
std::map<int, int> count_matches(const std::string& text, const std::string& re) {
  std::map<int, int> m;
  const std::regex r(re);
  for (const std::string& l : lines_of(text)) {
    std::smatch sm;
    if (std::regex_match(l, sm, r)) ++m[std::stoi(sm[1].str())];
  }
  return m;
}

void expect_each_once(const std::map<int, int>& m, int n, const std::string& what) {
  EXPECT_EQ(static_cast<int>(m.size()), n) << what;
  for (const auto& [k, c] : m)
    EXPECT_EQ(c, 1) << what << ": line " << k << " printed " << c << " times";
}

class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value, 1);
  }
  ~EnvVar() {
    if (old_.empty())
      ::unsetenv(name_);
    else
      ::setenv(name_, old_.c_str(), 1);
  }

 private:
  const char* name_;
  std::string old_;
};

// ---- ProcessPool -----------------------------------------------------------------------------

TEST(WorkerOutput, LinesArriveBeforeTheMapReturns) {
  parx::ProcessPool pool({.workers = 2, .output = parx::Output::lines});
  Capture cap;
  const std::vector<int> r = pool.map(say, parx::range(50), {.chunksize = 3});
  cap.stop();  // anything relayed later would miss the capture
  ASSERT_EQ(r.size(), 50u);
  const std::string out = cap.out(), err = cap.err();
  expect_each_once(count_matches(out, R"(out (\d+))"), 50, "stdout");
  expect_each_once(count_matches(err, R"(err (\d+))"), 50, "stderr");
  EXPECT_EQ(out.find("err "), std::string::npos) << "stderr lines went to stdout";
}

TEST(WorkerOutput, SubmitOutputArrivesBeforeGet) {
  parx::ProcessPool pool({.workers = 1, .output = parx::Output::lines});
  for (int i = 0; i < 500; ++i) {
    Capture cap;
    EXPECT_EQ(pool.submit(say, i).get(), i);
    cap.stop();
    EXPECT_EQ(cap.out(), "out " + std::to_string(i) + "\n");
  }
}

TEST(WorkerOutput, LinesWrittenInPiecesStayWhole) {
  parx::ProcessPool pool({.workers = 3, .output = parx::Output::lines});
  Capture cap;
  (void)pool.map(pieces, parx::range(90), {.chunksize = 1});
  const std::string out = cap.out();
  const auto m = count_matches(out, R"(piece (\d+) ([a-z])\2{39})");
  expect_each_once(m, 90, "whole lines");
  for (const std::string& l : lines_of(out))
    EXPECT_TRUE(std::regex_match(l, std::regex(R"(piece \d+ [a-z]{40})"))) << "torn: " << l;
}

TEST(WorkerOutput, InOrderPerWorker) {
  parx::ProcessPool pool({.workers = 3, .output = parx::Output::lines});
  Capture cap;
  (void)pool.map(numbered, std::vector<int>{400, 400, 400, 400, 400, 400}, {.chunksize = 1});
  const std::string out = cap.out();
  std::map<int, std::vector<int>> seen;  // pid -> k in arrival order
  const std::regex r(R"(seq (\d+) (\d+))");
  for (const std::string& l : lines_of(out)) {
    std::smatch sm;
    ASSERT_TRUE(std::regex_match(l, sm, r)) << "unexpected line: " << l;
    seen[std::stoi(sm[1].str())].push_back(std::stoi(sm[2].str()));
  }
  std::size_t total = 0;
  for (const auto& [pid, ks] : seen) {
    total += ks.size();
    ASSERT_EQ(ks.size() % 400, 0u);
    for (std::size_t i = 0; i < ks.size(); ++i)
      ASSERT_EQ(ks[i], static_cast<int>(i % 400)) << "worker " << pid << " out of order at " << i;
  }
  EXPECT_EQ(total, 2400u);
}

TEST(WorkerOutput, PrefixedNamesTheWorker) {
  parx::ProcessPool pool({.workers = 2, .output = parx::Output::prefixed});
  const std::vector<pid_t> pids = pool.pids();
  Capture cap;
  (void)pool.map(say, parx::range(30), {.chunksize = 2});
  const std::string out = cap.out(), err = cap.err();
  const std::regex r(R"(\[worker ([01]) · pid (\d+)\] out (\d+))");
  std::set<int> items;
  for (const std::string& l : lines_of(out)) {
    std::smatch sm;
    ASSERT_TRUE(std::regex_match(l, sm, r)) << "unexpected line: " << l;
    const pid_t pid = std::stoi(sm[2].str());
    EXPECT_NE(std::find(pids.begin(), pids.end(), pid), pids.end()) << l;
    EXPECT_EQ(pids[std::stoul(sm[1].str())], pid) << "worker index and pid disagree: " << l;
    items.insert(std::stoi(sm[3].str()));
  }
  EXPECT_EQ(items.size(), 30u);
  expect_each_once(count_matches(err, R"(\[worker [01] · pid \d+\] err (\d+))"), 30, "stderr");
}

TEST(WorkerOutput, PrefixFromTheEnvironment) {
  EnvVar env("PARX_OUTPUT", "prefixed");
  parx::ProcessPool pool(1);
  Capture cap;
  (void)pool.submit(say, 4).get();
  EXPECT_TRUE(std::regex_match(cap.out(), std::regex(R"(\[worker 0 · pid \d+\] out 4\n)")))
      << cap.out();
}

// A bad PARX_OUTPUT is one warning and the default (core/env.hpp), not an exception from the
// pool's constructor; a bad Output value in the code is a programming error and throws.
TEST(WorkerOutput, UnknownModeWarnsOnceAndUsesLines) {
  EnvVar env("PARX_OUTPUT", "sideways");
  Capture cap;
  {
    parx::ProcessPool pool(1);
    EXPECT_EQ(pool.submit(say, 4).get(), 4);
    parx::ProcessPool again(1);
  }
  cap.stop();
  EXPECT_EQ(cap.out(), "out 4\n") << "lines mode: relayed whole, unprefixed";
  EXPECT_EQ(cap.err(),
            "parx: PARX_OUTPUT=sideways is not one of lines, prefixed, prefix, inherit; using "
            "lines\nerr 4\n");
  EXPECT_THROW(parx::ProcessPool({.output = static_cast<parx::Output>(42)}), parx::InvalidArgument);
}

TEST(WorkerOutput, CrashedWorkerKeepsItsLastLines) {
  parx::ProcessPool pool({.workers = 1, .output = parx::Output::lines});
  Capture cap;
  EXPECT_THROW(pool.submit(die_mid_line, 0).get(), parx::WorkerCrashed);
  cap.stop();  // the crash was reported after the lines were printed
  EXPECT_EQ(cap.out(), "last words\nunfinished\n");
  // The replacement worker relays too.
  Capture again;
  EXPECT_EQ(pool.submit(say, 9).get(), 9);
  EXPECT_EQ(again.out(), "out 9\n");
}

TEST(WorkerOutput, InheritWritesStraightToTheOriginalDescriptors) {
  parx::ProcessPool pool({.workers = 1, .output = parx::Output::inherit});
  Capture cap;
  (void)pool.submit(say, 1).get();
  // The worker wrote to the descriptors the program had at parx::init, not to the capture.
  EXPECT_EQ(cap.out(), "");
}

// ---- parx::log -------------------------------------------------------------------------------

TEST(Log, WorkerLinesNameTheirOriginOnce) {
  for (parx::Output mode : {parx::Output::lines, parx::Output::prefixed}) {
    parx::ProcessPool pool({.workers = 1, .output = mode});
    const pid_t pid = pool.pids().at(0);
    Capture cap;
    EXPECT_EQ(pool.submit(log_it, 5).get(), 5);
    const std::string err = cap.err();
    const std::regex r(R"(\d\d:\d\d:\d\d\.\d\d\d INFO  \[worker 0 · pid (\d+)\] hello 5\n)");
    std::smatch sm;
    ASSERT_TRUE(std::regex_match(err, sm, r)) << err;
    EXPECT_EQ(std::stoi(sm[1].str()), pid);
  }
}

TEST(Log, LevelsFilterAndEveryLineIsTagged) {
  const parx::log::Level before = parx::log::level();
  parx::log::set_level(parx::log::Level::warn);
  EXPECT_FALSE(parx::log::enabled(parx::log::Level::info));
  EXPECT_TRUE(parx::log::enabled(parx::log::Level::error));
  Capture cap;
  parx::log::info("not shown");
  parx::log::warn("two\nlines ", 2);
  parx::log::error("bad ", 3.5);
  const std::string err = cap.err();
  parx::log::set_level(before);
  const std::string pid = std::to_string(::getpid());
  const std::string tag = R"( \[pid )" + pid + R"(\] )";
  EXPECT_TRUE(std::regex_match(err, std::regex(R"(\S+ WARN )" + tag + R"(two\n\S+ WARN )" + tag +
                                               R"(lines 2\n\S+ ERROR)" + tag + R"(bad 3.5\n)")))
      << err;
  EXPECT_EQ(parx::log::origin(), "pid " + pid);
}

TEST(Log, LevelFromTheEnvironment) {
  const parx::log::Level before = parx::log::level();
  {
    EnvVar env("PARX_LOG_LEVEL", "error");
    parx::log::detail::g_level.store(-1);
    EXPECT_EQ(parx::log::level(), parx::log::Level::error);
  }
  {
    EnvVar env("PARX_LOG_LEVEL", "loud");
    parx::log::detail::g_level.store(-1);
    Capture cap;
    EXPECT_EQ(parx::log::level(), parx::log::Level::info);
    EXPECT_EQ(parx::log::level(), parx::log::Level::info);
    EXPECT_EQ(cap.err(),
              "parx: PARX_LOG_LEVEL=loud is not one of debug, info, warn, warning, error, off, "
              "none; using info\n");
  }
  parx::log::set_level(before);
}

// ---- ClusterPool, under mpiexec ---------------------------------------------------------------

// The driver's stdout and stderr go to files; ranks 1 and 2 run every task.
int cluster_child(const std::string& mode, const std::string& out, const std::string& err) {
  parx::ClusterPool pool({.workers_per_rank = 2,
                          .processes = mode == "processes",
                          .driver_runs_tasks = false,
                          .output = parx::Output::prefixed});
  if (!pool.is_driver()) return 0;  // served; the driver printed our lines
  std::fflush(stdout);
  std::fflush(stderr);
  const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (o < 0 || e < 0) return 3;
  ::dup2(o, STDOUT_FILENO);
  ::dup2(e, STDERR_FILENO);
  const std::vector<int> r = pool.map(rank_say, parx::range(40), {.chunksize = 1});
  pool.shutdown();
  std::fflush(stdout);
  return r.size() == 40 ? 0 : 4;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void run_cluster(const std::string& mode) {
  if (!PARX_TEST_WITH_MPI) GTEST_SKIP() << "the tests under mpiexec are off in this build";
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
  const fs::path dir = fs::temp_directory_path() / ("parx-output-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path out = dir / "driver.out", err = dir / "driver.err", job = dir / "mpiexec.out";
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {PARX_TEST_MPIEXEC, "-n", "3",          self,
                                   "--cluster-child", mode, out.string(), err.string()};
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, job.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  int status = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      FAIL() << "the MPI job did not end; its output:\n" << slurp(job);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(job);
  const std::string o = slurp(out), e = slurp(err), j = slurp(job);
  fs::remove_all(dir);
  // Every task line reached the driver's stdout once, named after the rank (and worker) it
  // came from; none went out through the launcher from the serving ranks themselves.
  const std::string who = mode == "processes" ? R"(\[rank [12] · worker [01] · pid \d+\] )"
                                              : R"(\[rank [12] · pid \d+\] )";
  expect_each_once(count_matches(o, who + R"(rank-line (\d+))"), 40, "stdout:\n" + o);
  for (const std::string& l : lines_of(o))
    EXPECT_TRUE(std::regex_match(l, std::regex(who + R"(rank-line \d+)"))) << "stray: " << l;
  expect_each_once(count_matches(e, R"(\S+ INFO  )" + who + R"(rank-log (\d+))"), 40,
                   "stderr:\n" + e);
  EXPECT_EQ(j.find("rank-line"), std::string::npos) << j;
}

TEST(ClusterOutput, RankLinesReachTheDriverThreads) {
  run_cluster("threads");
}

TEST(ClusterOutput, RankLinesReachTheDriverProcesses) {
  run_cluster("processes");
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  if (argc == 5 && std::string(argv[1]) == "--cluster-child")
    return cluster_child(argv[2], argv[3], argv[4]);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
