// parx::init and parx::Process with real processes: exit codes, signals, timeouts, arguments
// (inline and through a memfd), and no orphans after the parent is SIGKILLed or gets Ctrl-C.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <parx/parx.hpp>
#include "ipc/fork_server.hpp"

#include "helper_parent.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

// ---- targets (global, registered) --------------------------------------------------------------

void write_file(std::string path, std::string text) {
  std::ofstream(path) << text;
}
void sum_to_file(std::string path, std::vector<double> xs) {
  std::ofstream(path) << std::accumulate(xs.begin(), xs.end(), 0.0);
}
int returns_value(int x) {
  return x * 2;
}
void throws_error(int) {
  throw std::runtime_error("target failed on purpose");
}
void exits_with(int code) {
  std::exit(code);
}
void sleeps_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
int not_registered(int x) {
  return x;
}

PARX_REMOTE(write_file);
PARX_REMOTE(sum_to_file);
PARX_REMOTE(returns_value);
PARX_REMOTE(throws_error);
PARX_REMOTE(exits_with);
PARX_REMOTE(sleeps_ms);

namespace {

using namespace std::chrono_literals;

std::string temp_path(const char* tag) {
  return "/tmp/parx-test-" + std::string(tag) + "-" + std::to_string(getpid());
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return s;
}

bool gone(pid_t pid) {
  return kill(pid, 0) != 0 && errno == ESRCH;
}

TEST(Process, ExitCodesFollowPython) {
  parx::Process ok(returns_value, 21);
  ok.start();
  EXPECT_TRUE(ok.join());
  EXPECT_EQ(ok.exitcode(), 0);

  parx::Process thrower(throws_error, 1);
  thrower.start();
  thrower.join();
  EXPECT_EQ(thrower.exitcode(), 1);

  parx::Process exiter(exits_with, 7);
  exiter.start();
  exiter.join();
  EXPECT_EQ(exiter.exitcode(), 7);
}

TEST(Process, KillTerminateAndIsAlive) {
  parx::Process p(sleeps_ms, 60'000);
  EXPECT_FALSE(p.started());
  p.start();
  EXPECT_GT(p.pid(), 0);
  EXPECT_TRUE(p.is_alive());
  EXPECT_EQ(p.exitcode(), std::nullopt);
  p.kill();
  EXPECT_TRUE(p.join(10s));
  EXPECT_FALSE(p.is_alive());
  EXPECT_EQ(p.exitcode(), -SIGKILL);
  EXPECT_NO_THROW(p.kill());  // after exit: harmless, never hits a recycled pid

  parx::Process q(sleeps_ms, 60'000);
  q.start();
  q.terminate();
  q.join();
  EXPECT_EQ(q.exitcode(), -SIGTERM);
}

TEST(Process, JoinTimesOut) {
  parx::Process p(sleeps_ms, 60'000);
  p.start();
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(p.join(100ms));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 90ms);
  EXPECT_TRUE(p.is_alive());
  p.kill();
  EXPECT_TRUE(p.join());
}

TEST(Process, ArgumentsArrive) {
  const std::string path = temp_path("args");
  parx::Process p(write_file, path, std::string("hello from a child"));
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(slurp(path), "hello from a child");
  std::remove(path.c_str());
}

TEST(Process, LargeArgumentsTravelInAMemfd) {
  const std::string path = temp_path("large");
  std::vector<double> xs(2'000'000, 0.5);  // 16 MB: far above what the socket carries
  parx::Process p(sum_to_file, path, xs);
  p.start();
  p.join();
  EXPECT_EQ(p.exitcode(), 0);
  EXPECT_EQ(std::stod(slurp(path)), 1'000'000.0);
  std::remove(path.c_str());
}

TEST(Process, UnregisteredTargetIsNamedAtConstruction) {
  try {
    parx::Process p(not_registered, 1);
    FAIL();
  } catch (const parx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not_registered"), std::string::npos) << e.what();
  }
}

TEST(Process, MisuseIsReported) {
  parx::Process p(returns_value, 1);
  EXPECT_THROW(p.join(), parx::InvalidState);
  p.start();
  EXPECT_THROW(p.start(), parx::InvalidState);
  p.join();
}

TEST(Process, DestroyingARunningProcessKillsIt) {
  pid_t pid = 0;
  {
    parx::Process p(sleeps_ms, 60'000);
    p.start();
    pid = p.pid();
  }
  EXPECT_TRUE(gone(pid));
}

TEST(Process, ManyAtOnce) {
  std::vector<parx::Process> ps;
  for (int i = 0; i < 20; ++i)
    ps.emplace_back(exits_with, i);
  for (auto& p : ps)
    p.start();
  for (int i = 0; i < 20; ++i) {
    ps[static_cast<std::size_t>(i)].join();
    EXPECT_EQ(ps[static_cast<std::size_t>(i)].exitcode(), i);
  }
}

// Runs this binary as a parent that starts a long-running child, reports the pids of its fork
// server and child, then gets `sig`. Afterwards nothing of it may be left.
void parent_dies_with(int sig) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);  // orphans come to us, so their death can be observed
  const auto helper = parx_test::spawn_helper_parent("PARX_TEST_PARENT_MODE=1");
  ASSERT_NE(helper.out, nullptr);
  const pid_t parent = helper.pid;
  long server = 0, child = 0;
  ASSERT_EQ(std::fscanf(helper.out, "%ld %ld", &server, &child), 2);
  fclose(helper.out);
  ASSERT_FALSE(gone(static_cast<pid_t>(server)));
  ASSERT_FALSE(gone(static_cast<pid_t>(child)));
  kill(parent, sig);
  int st = 0;
  ASSERT_EQ(waitpid(parent, &st, 0), parent);
  ASSERT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), sig);
  // The fork server and the child are reparented to us as they die: reap them.
  for (long p : {server, child}) {
    bool reaped = false;
    for (int i = 0; i < 500 && !reaped; ++i) {
      reaped = waitpid(static_cast<pid_t>(p), nullptr, WNOHANG) == p || gone(static_cast<pid_t>(p));
      if (!reaped) std::this_thread::sleep_for(10ms);
    }
    std::ifstream stat("/proc/" + std::to_string(p) + "/stat");
    std::string line;
    std::getline(stat, line);
    EXPECT_TRUE(reaped) << (p == server ? "fork server " : "child ") << p
                        << " survived its parent: " << line;
  }
}

TEST(Process, NoOrphansAfterParentSigkill) {
  parent_dies_with(SIGKILL);
}

// A detached process is the exception: it outlives its parent.
TEST(Process, DetachedOutlivesItsParent) {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  const auto helper = parx_test::spawn_helper_parent("PARX_TEST_PARENT_MODE=detached");
  ASSERT_NE(helper.out, nullptr);
  const pid_t parent = helper.pid;
  long server = 0, child = 0;
  ASSERT_EQ(std::fscanf(helper.out, "%ld %ld", &server, &child), 2);
  fclose(helper.out);
  kill(parent, SIGKILL);
  waitpid(parent, nullptr, 0);
  // The fork server goes; the detached child stays (reparented to us, the subreaper).
  bool server_reaped = false;
  for (int i = 0; i < 500 && !server_reaped; ++i) {
    server_reaped = waitpid(static_cast<pid_t>(server), nullptr, WNOHANG) == server ||
                    gone(static_cast<pid_t>(server));
    if (!server_reaped) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(server_reaped);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(waitpid(static_cast<pid_t>(child), nullptr, WNOHANG), 0) << "the detached child died";
  kill(static_cast<pid_t>(child), SIGKILL);
  EXPECT_EQ(waitpid(static_cast<pid_t>(child), nullptr, 0), child);
}
TEST(Process, NoOrphansAfterParentCtrlC) {
  parent_dies_with(SIGINT);
}

}  // namespace

int main(int argc, char** argv) {
  if (std::getenv("PARX_TEST_PARENT_MODE")) {
    // As at a terminal: SIGINT kills (a background job or CI runner may have inherited SIG_IGN).
    signal(SIGINT, SIG_DFL);
    parx::init(argc, argv);
    const bool detached = std::string(std::getenv("PARX_TEST_PARENT_MODE")) == "detached";
    parx::Process p(parx::Process::Options{.detached = detached}, sleeps_ms, 600'000);
    p.start();
    std::printf("%ld %ld\n", static_cast<long>(parx::detail::ForkServer::get().server_pid()),
                static_cast<long>(p.pid()));
    std::fflush(stdout);
    pause();  // until the test kills us
    return 0;
  }
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
