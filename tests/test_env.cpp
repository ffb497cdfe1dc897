// PARX_* environment variables: a bad value is one clear warning naming the variable, the value
// and what is used instead, and the program runs on (core/env.hpp). Each case runs this binary
// again as a child with the variables set, its stderr captured.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <parx/parx.hpp>
#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;

namespace {

long twice(long x) {
  return 2 * x;
}
PARX_REMOTE(twice);

// The child: every pool that reads the environment, and a map with progress.
int child_main() {
  parx::ThreadPool threads(2);
  parx::ProcessPool procs(1);
  parx::ClusterPool cluster({.workers_per_rank = 1});
  long sum = 0;
  for (long y : threads.map([](long x) { return x; }, parx::range(10L)))
    sum += y;
  for (long y : procs.map(twice, parx::range(10L)))
    sum += y;
  for (long y : cluster.map(twice, parx::range(10L)))
    sum += y;
  parx::log::debug("a debug line");
  std::printf("sum=%ld\n", sum);
  return sum == 45 + 90 + 90 ? 0 : 3;
}

struct ChildRun {
  int status = -1;
  std::string out, err;
};

ChildRun run_child(const std::vector<std::pair<std::string, std::string>>& env) {
  const fs::path dir = fs::temp_directory_path() / ("parx-env-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path out = dir / "out", err = dir / "err";
  const pid_t pid = fork();
  if (pid == 0) {
    for (const auto& [k, v] : env)
      setenv(k.c_str(), v.c_str(), 1);
    if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr))
      _exit(126);
    const std::string exe = fs::read_symlink("/proc/self/exe").string();
    execl(exe.c_str(), exe.c_str(), "--env-child", nullptr);
    _exit(127);
  }
  ChildRun r;
  int st = 0;
  waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  r.out = slurp(out);
  r.err = slurp(err);
  fs::remove_all(dir);
  return r;
}

std::size_t count(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1))
    ++n;
  return n;
}

TEST(Env, GoodValuesAreSilent) {
  const ChildRun r = run_child({{"PARX_SPIN_US", "20"},
                                {"PARX_LOG_LEVEL", "warn"},
                                {"PARX_OUTPUT", "prefixed"},
                                {"PARX_PROGRESS", "off"},
                                {"PARX_PROGRESS_INTERVAL", "2.5"},
                                {"PARX_MPI", "0"}});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("sum=225"), std::string::npos) << r.out;
  EXPECT_EQ(r.err.find("PARX_"), std::string::npos) << r.err;
}

TEST(Env, EachBadValueIsOneWarningAndTheProgramRunsOn) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"PARX_SPIN_US", "abc"},    {"PARX_LOG_LEVEL", "99"},         {"PARX_OUTPUT", "bogus"},
      {"PARX_PROGRESS", "maybe"}, {"PARX_PROGRESS_INTERVAL", "-1"}, {"PARX_MPI", "2"}};
  const ChildRun r = run_child(bad);
  EXPECT_EQ(r.status, 0) << "a bad value must not abort the program:\n" << r.err;
  EXPECT_NE(r.out.find("sum=225"), std::string::npos) << r.out << r.err;
  for (const auto& [k, v] : bad)
    EXPECT_EQ(count(r.err, "parx: " + k + "=" + v + " "), 1u) << k << "\n" << r.err;
  EXPECT_NE(r.err.find("PARX_SPIN_US=abc is not a whole number from 0 to 10000000; using 50"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("PARX_OUTPUT=bogus is not one of lines, prefixed, prefix, inherit; using "
                       "lines"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("PARX_PROGRESS=maybe is not a switch"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("a debug line"), std::string::npos) << "PARX_LOG_LEVEL=99 uses info";
}

TEST(Env, NumbersOutOfRangeOrOverflowingAreRefused) {
  for (const char* v : {"-5", "99999999999999999999", "12x", " 7"}) {
    const ChildRun r = run_child({{"PARX_SPIN_US", v}});
    EXPECT_EQ(r.status, 0) << v << "\n" << r.err;
    EXPECT_EQ(count(r.err, std::string("parx: PARX_SPIN_US=") + v + " is not a whole number"), 1u)
        << v << "\n"
        << r.err;
  }
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "--env-child") return child_main();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
