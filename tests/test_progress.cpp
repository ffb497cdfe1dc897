// Progress of maps: on_progress on every executor (counts, failures, off the workers, rate
// limit) and the bar itself, drawn by a child process into a pipe (plain lines) and into a
// pseudo-terminal (a redrawn bar), with output lines written meanwhile kept whole.
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <parx/parx.hpp>
#include "core/console.hpp"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

long sleepy_double(long i) {
  std::this_thread::sleep_for(std::chrono::microseconds(500));
  return 2 * i;
}
PARX_REMOTE(sleepy_double);

// Prints a line now and then, in two pieces, while a progress bar is drawn.
long chatty_double(long i) {
  if (i % 100 == 0) {
    std::printf("item %ld ", i);
    std::fflush(stdout);
    std::printf("done by a worker, whole\n");
  }
  return sleepy_double(i);
}
PARX_REMOTE(chatty_double);

namespace {

struct Seen {
  std::mutex mu;
  std::vector<parx::Progress> reports;
  std::vector<std::string> labels;
  std::atomic<int> on_worker{0};
};

template <class Pool>
auto recorder(Seen& s, Pool* pool) {
  return [&s, pool](const parx::Progress& p) {
    if constexpr (std::is_same_v<Pool, parx::ThreadPool>)
      if (pool->current_worker() >= 0) s.on_worker.fetch_add(1);
    std::lock_guard lk(s.mu);
    s.reports.push_back(p);
    s.labels.emplace_back(p.label);
  };
}

std::vector<long> inputs(long n) {
  std::vector<long> v(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] = i;
  return v;
}

void check_final(Seen& s, std::size_t total, std::size_t failed) {
  std::lock_guard lk(s.mu);
  ASSERT_FALSE(s.reports.empty());
  const parx::Progress& last = s.reports.back();
  EXPECT_TRUE(last.finished);
  EXPECT_EQ(last.done, total);
  EXPECT_EQ(last.total, total);
  EXPECT_EQ(last.failed, failed);
  int finished = 0;
  std::size_t prev = 0;
  for (const auto& p : s.reports) {
    finished += p.finished;
    EXPECT_GE(p.done, prev);  // monotonic
    prev = p.done;
  }
  EXPECT_EQ(finished, 1);
}

TEST(Progress, ThreadPoolCallbackOffTheWorkers) {
  parx::ThreadPool pool(2);
  Seen s;
  const auto ys = pool.map([](long i) { return sleepy_double(i); }, inputs(2000),
                           {.on_progress = recorder(s, &pool), .label = "doubling"});
  EXPECT_EQ(ys[1999], 3998);
  check_final(s, 2000, 0);
  EXPECT_EQ(s.on_worker.load(), 0);
  std::lock_guard lk(s.mu);
  EXPECT_EQ(s.labels.back(), "doubling");
  // ~0.5 s of work: a handful of reports, never one per item.
  EXPECT_LT(s.reports.size(), 40u);
}

TEST(Progress, CountsFailures) {
  parx::ThreadPool pool(2);
  Seen s;
  {
    auto r = pool.imap(
        [](long i) {
          if (i % 100 == 0) throw std::runtime_error("bad");
          return i;
        },
        inputs(1000), {.on_progress = recorder(s, &pool)});
    std::size_t errors = 0;
    for (;;) {
      try {
        if (!r.next()) break;
      } catch (const std::runtime_error&) {
        ++errors;
      }
    }
    EXPECT_EQ(errors, 10u);
  }
  check_final(s, 1000, 10);
}

TEST(Progress, ProcessPoolUsesTheRegisteredName) {
  parx::ProcessPool pool(2);
  Seen s;
  const auto ys = pool.map(sleepy_double, inputs(1000),
                           {.on_progress = recorder<parx::ProcessPool>(s, nullptr)});
  EXPECT_EQ(ys.size(), 1000u);
  check_final(s, 1000, 0);
  std::lock_guard lk(s.mu);
  EXPECT_EQ(s.labels.back(), "sleepy_double");
}

TEST(Progress, ClusterPoolAlone) {
  parx::ClusterPool pool;
  Seen s;
  const auto ys = pool.map(sleepy_double, inputs(500),
                           {.on_progress = recorder<parx::ClusterPool>(s, nullptr)});
  EXPECT_EQ(ys.size(), 500u);
  check_final(s, 500, 0);
}

TEST(Progress, UnknownTotalAndAThrowingCallback) {
  parx::ThreadPool pool(2);
  std::atomic<int> calls{0};
  auto lazy = std::views::iota(0L, 300L) | std::views::filter([](long) { return true; });
  const auto ys =
      pool.map([](long i) { return i; }, lazy, {.on_progress = [&](const parx::Progress& p) {
                 calls.fetch_add(1);
                 EXPECT_EQ(p.total, 0u);
                 EXPECT_LT(p.eta, 0);
                 throw std::runtime_error("a callback that throws is ignored");
               }});
  EXPECT_EQ(ys.size(), 300u);
  EXPECT_GE(calls.load(), 1);
}

// ---- the bar, drawn by a child -------------------------------------------------------------

int progress_child() {
  parx::ThreadPool pool(2);
  std::thread talker([] {
    for (int i = 0; i < 20; ++i) {
      parx::detail::console_write(2, "line " + std::to_string(i) + " from a task, whole\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(60));
    }
  });
  const auto ys = pool.map([](long i) { return sleepy_double(i); }, inputs(3000),
                           {.progress = true, .label = "sweep"});
  talker.join();
  return ys[2999] == 5998 ? 0 : 3;
}

std::string read_all(int fd, pid_t child) {
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 30000) <= 0) break;
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  int st = 0;
  ::waitpid(child, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  return out;
}

std::string self_exe() {
  return std::filesystem::read_symlink("/proc/self/exe").string();
}

// Worker processes print while the bar is drawn; their lines are relayed through the console.
int progress_process_child() {
  parx::ProcessPool pool({.workers = 2, .output = parx::Output::prefixed});
  const auto ys = pool.map(chatty_double, inputs(3000), {.progress = true, .label = "sweep"});
  return ys[2999] == 5998 ? 0 : 3;
}

TEST(ProgressBar, PlainLinesWhenNotATerminal) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::setenv("PARX_PROGRESS_INTERVAL", "0.5", 1);
    const std::string exe = self_exe();
    ::execl(exe.c_str(), exe.c_str(), "--progress-child", nullptr);
    _exit(127);
  }
  ::close(fds[1]);
  const std::string out = read_all(fds[0], pid);
  ::close(fds[0]);
  EXPECT_EQ(out.find('\r'), std::string::npos) << "no terminal controls into a pipe";
  EXPECT_EQ(out.find("\033["), std::string::npos);
  EXPECT_NE(out.find("parx: sweep 3000/3000 (100%)"), std::string::npos) << out;
  EXPECT_NE(out.find("done in"), std::string::npos) << out;
  // Every output line arrived whole.
  for (int i = 0; i < 20; ++i)
    EXPECT_NE(out.find("line " + std::to_string(i) + " from a task, whole\n"), std::string::npos);
}

TEST(ProgressBar, RedrawnOnATerminal) {
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string exe = self_exe();
    ::execl(exe.c_str(), exe.c_str(), "--progress-child", nullptr);
    _exit(127);
  }
  const std::string out = read_all(master, pid);
  ::close(master);
  EXPECT_NE(out.find("\r\033[2K"), std::string::npos) << "the bar is redrawn in place";
  EXPECT_NE(out.find("█"), std::string::npos);
  EXPECT_NE(out.find("100%"), std::string::npos);
  EXPECT_NE(out.find("3000/3000"), std::string::npos) << out.substr(0, 400);
  // Strip the bar's redraws: each output line is intact, starting at a line start.
  const std::string clean =
      std::regex_replace(out, std::regex("\r\033\\[2K|\033\\[1A|\r"), std::string());
  for (int i = 0; i < 20; ++i) {
    const std::string line = "line " + std::to_string(i) + " from a task, whole\n";
    const auto at = clean.find(line);
    ASSERT_NE(at, std::string::npos) << i;
  }
  // At most ~5 redraws a second: the map takes ~1 s; count the in-place redraws.
  std::size_t redraws = 0;
  for (std::size_t at = 0; (at = out.find("\r\033[2K", at)) != std::string::npos; ++at)
    ++redraws;
  EXPECT_LT(redraws, 200u);  // bar redraws plus one erase per output line
}

TEST(ProgressBar, WorkerLinesOnATerminalStayWhole) {
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string exe = self_exe();
    ::execl(exe.c_str(), exe.c_str(), "--progress-process-child", nullptr);
    _exit(127);
  }
  const std::string out = read_all(master, pid);
  ::close(master);
  EXPECT_NE(out.find("3000/3000"), std::string::npos) << out.substr(0, 400);
  // Replayed as a terminal shows it (erase line, cursor up, carriage return, newline), each
  // worker line stands on a line of its own, whole, with its origin.
  std::vector<std::string> screen;
  std::string cur;
  for (std::size_t i = 0; i < out.size();) {
    if (out.compare(i, 5, "\r\033[2K") == 0) {
      cur.clear();
      i += 5;
    } else if (out.compare(i, 4, "\033[1A") == 0) {
      cur = screen.empty() ? std::string() : screen.back();
      if (!screen.empty()) screen.pop_back();
      i += 4;
    } else if (out.compare(i, 2, "\r\n") == 0 || out[i] == '\n') {
      screen.push_back(cur);
      cur.clear();
      i += out[i] == '\n' ? 1 : 2;
    } else if (out[i] == '\r') {
      cur.clear();
      ++i;
    } else {
      cur += out[i++];
    }
  }
  screen.push_back(cur);
  const std::regex line(R"(\[worker [01] · pid \d+\] item (\d+) done by a worker, whole)");
  std::set<long> seen;
  for (const std::string& l : screen) {
    if (l.find("done by a worker") == std::string::npos) continue;
    std::smatch m;
    EXPECT_TRUE(std::regex_match(l, m, line)) << "torn: " << l;
    if (!m.empty()) seen.insert(std::stol(m[1].str()));
  }
  EXPECT_EQ(seen.size(), 30u);
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  if (argc == 2 && std::string(argv[1]) == "--progress-child") return progress_child();
  if (argc == 2 && std::string(argv[1]) == "--progress-process-child")
    return progress_process_child();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
