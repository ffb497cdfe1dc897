// Checkpoint and resume of maps: the journal (MapOptions::checkpoint) on every executor, torn and
// corrupt journals, journals of another map, and the driver killed with SIGKILL mid-map (threads,
// processes, and under mpiexec) then run again.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace fs = std::filesystem;

namespace {

// Appends one byte to $PARX_TEST_COUNT_FILE (if set): how many items ran, across processes.
void count_run() {
  static const char* path = std::getenv("PARX_TEST_COUNT_FILE");
  if (!path) return;
  const int fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  (void)!::write(fd, "x", 1);
  ::close(fd);
}

}  // namespace

long slow_square(long i) {
  count_run();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));
  return i * i + 1;
}
PARX_REMOTE(slow_square);

long plain_square(long i) {
  count_run();
  return i * i + 1;
}
PARX_REMOTE(plain_square);

long plain_cube(long i) {
  return i * i * i;
}
PARX_REMOTE(plain_cube);

long fails_on_7(long i) {
  count_run();
  // Fails while the flag file next to the count file exists (workers share no memory with the
  // test, and their environment was fixed when parx::init started the fork server).
  if (i == 7 &&
      std::filesystem::exists(std::string(std::getenv("PARX_TEST_COUNT_FILE")) + ".fail7"))
    throw std::runtime_error("item 7 fails");
  return i * 2;
}
PARX_REMOTE(fails_on_7);

namespace {

std::string self_exe() {
  return fs::read_symlink("/proc/self/exe").string();
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "parx-ckpt-XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::size_t bytes_in(const fs::path& p) {
  std::error_code ec;
  const auto n = fs::file_size(p, ec);
  return ec ? 0 : static_cast<std::size_t>(n);
}

std::vector<long> expected(long n) {
  std::vector<long> v;
  for (long i = 0; i < n; ++i)
    v.push_back(i * i + 1);
  return v;
}

std::vector<long> inputs(long n) {
  std::vector<long> v(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i)
    v[static_cast<std::size_t>(i)] = i;
  return v;
}

// The count file of this test process (main sets it before parx::init, so worker processes
// see it too), emptied.
fs::path fresh_count() {
  const fs::path p = std::getenv("PARX_TEST_COUNT_FILE");
  std::error_code ec;
  fs::remove(p, ec);
  return p;
}

// ---- the journal on each executor ------------------------------------------------------------

TEST(Checkpoint, ThreadPoolResumesAndRunsNothingTwice) {
  TempDir d;
  const fs::path ck = d.path / "sweep.ckpt";
  parx::ThreadPool pool(2);
  std::atomic<int> runs{0};
  auto f = [&runs](long i) {
    runs.fetch_add(1);
    return i * i + 1;
  };
  parx::MapStats st;
  const auto a = pool.map(f, inputs(500), {.stats = &st, .checkpoint = ck.string()});
  EXPECT_EQ(a, expected(500));
  EXPECT_EQ(runs.load(), 500);
  EXPECT_EQ(st.resumed, 0u);
  EXPECT_GT(bytes_in(ck), 500u * 32);

  runs = 0;
  const auto b = pool.map(f, inputs(500), {.stats = &st, .checkpoint = ck.string()});
  EXPECT_EQ(b, a);
  EXPECT_EQ(runs.load(), 0);
  EXPECT_EQ(st.resumed, 500u);
}

TEST(Checkpoint, LazyInputAndImap) {
  TempDir d;
  const fs::path ck = d.path / "lazy.ckpt";
  parx::ThreadPool pool(2);
  std::atomic<int> runs{0};
  auto f = [&runs](long i) {
    runs.fetch_add(1);
    return i * i + 1;
  };
  auto lazy = std::views::iota(0L, 300L) | std::views::filter([](long) { return true; });
  std::vector<long> a;
  for (long v : pool.imap(f, lazy, {.checkpoint = ck.string()}))
    a.push_back(v);
  EXPECT_EQ(a, expected(300));
  runs = 0;
  const auto b = pool.imap(f, lazy, {.checkpoint = ck.string()}).to_vector();
  EXPECT_EQ(b, a);
  EXPECT_EQ(runs.load(), 0);
}

TEST(Checkpoint, ProcessPoolResumes) {
  TempDir d;
  const fs::path ck = d.path / "proc.ckpt";
  const fs::path count = fresh_count();
  parx::ProcessPool pool(2);
  EXPECT_EQ(pool.map(plain_square, inputs(400), {.checkpoint = ck.string()}), expected(400));
  EXPECT_EQ(bytes_in(count), 400u);
  fs::remove(count);
  parx::MapStats st;
  EXPECT_EQ(pool.map(plain_square, inputs(400), {.stats = &st, .checkpoint = ck.string()}),
            expected(400));
  EXPECT_EQ(bytes_in(count), 0u);
  EXPECT_EQ(st.resumed, 400u);
}

TEST(Checkpoint, ClusterPoolAloneResumes) {
  TempDir d;
  const fs::path ck = d.path / "cluster.ckpt";
  const fs::path count = fresh_count();
  parx::ClusterPool pool;
  EXPECT_EQ(pool.map(plain_square, inputs(300), {.checkpoint = ck.string()}), expected(300));
  fs::remove(count);
  EXPECT_EQ(pool.map(plain_square, inputs(300), {.checkpoint = ck.string()}), expected(300));
  EXPECT_EQ(bytes_in(count), 0u);
}

TEST(Checkpoint, FailedItemsAreNotJournaledAndRunAgain) {
  TempDir d;
  const fs::path ck = d.path / "fail.ckpt";
  const fs::path count = fresh_count();
  parx::ProcessPool pool(2);
  const fs::path flag = count.string() + ".fail7";
  std::ofstream(flag) << "fail\n";
  std::vector<long> got;
  std::size_t failures = 0;
  {
    auto r = pool.imap(fails_on_7, inputs(50), {.chunksize = 5, .checkpoint = ck.string()});
    for (;;) {
      try {
        auto v = r.next();
        if (!v) break;
        got.push_back(*v);
      } catch (const parx::TaskError&) {
        ++failures;
      }
    }
  }
  fs::remove(flag);
  EXPECT_EQ(failures, 1u);
  EXPECT_EQ(got.size(), 49u);
  fs::remove(count);
  parx::MapStats st;
  const auto all = pool.map(fails_on_7, inputs(50), {.stats = &st, .checkpoint = ck.string()});
  EXPECT_EQ(all.size(), 50u);
  EXPECT_EQ(all[7], 14);
  EXPECT_EQ(bytes_in(count), 1u);  // only item 7 ran again
  EXPECT_EQ(st.resumed, 49u);
}

// ---- damaged and foreign journals ------------------------------------------------------------

TEST(Checkpoint, TornLastRecordIsTolerated) {
  TempDir d;
  const fs::path ck = d.path / "torn.ckpt";
  parx::ThreadPool pool(2);
  std::atomic<int> runs{0};
  auto f = [&runs](long i) {
    runs.fetch_add(1);
    return i * i + 1;
  };
  (void)pool.map(f, inputs(100), {.checkpoint = ck.string()});
  // The program died while writing the last record: cut it short.
  fs::resize_file(ck, bytes_in(ck) - 5);
  runs = 0;
  parx::MapStats st;
  EXPECT_EQ(pool.map(f, inputs(100), {.stats = &st, .checkpoint = ck.string()}), expected(100));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(st.resumed, 99u);
  // A half-written record header at the end is a torn tail too.
  {
    std::ofstream out(ck, std::ios::binary | std::ios::app);
    out.write("PXR1\x08\x00", 6);
  }
  runs = 0;
  EXPECT_EQ(pool.map(f, inputs(100), {.checkpoint = ck.string()}), expected(100));
  EXPECT_EQ(runs.load(), 0);
}

TEST(Checkpoint, CorruptionInsideIsAClearError) {
  TempDir d;
  const fs::path ck = d.path / "bad.ckpt";
  parx::ThreadPool pool(2);
  auto f = [](long i) { return i * i + 1; };
  (void)pool.map(f, inputs(100), {.checkpoint = ck.string()});
  // Flip a byte in the first record's result (well before the end).
  {
    std::fstream io(ck, std::ios::binary | std::ios::in | std::ios::out);
    io.seekg(0);
    std::string head(16, '\0');
    io.read(head.data(), 16);
    std::uint32_t fp = 0;
    std::memcpy(&fp, head.data() + 12, 4);
    const std::streamoff at = 16 + fp + 8 + 24;  // header, then the first record's result
    io.seekg(at);
    char c = 0;
    io.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    io.seekp(at);
    io.write(&c, 1);
  }
  try {
    (void)pool.map(f, inputs(100), {.checkpoint = ck.string()});
    FAIL() << "a corrupt journal was accepted";
  } catch (const parx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(ck.string()), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, AnotherFunctionOrOtherInputsAreRefused) {
  TempDir d;
  const fs::path ck = d.path / "fp.ckpt";
  parx::ProcessPool pool(2);
  (void)pool.map(plain_square, inputs(100), {.checkpoint = ck.string()});
  // Another function.
  try {
    (void)pool.map(plain_cube, inputs(100), {.checkpoint = ck.string()});
    FAIL() << "a journal of another function was used";
  } catch (const parx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("different map"), std::string::npos) << e.what();
  }
  // Another number of inputs.
  EXPECT_THROW((void)pool.map(plain_square, inputs(101), {.checkpoint = ck.string()}),
               parx::CheckpointError);
  // Same size, one input changed.
  auto changed = inputs(100);
  changed[42] = 4242;
  try {
    (void)pool.map(plain_square, changed, {.checkpoint = ck.string()});
    FAIL() << "a journal of other inputs was used";
  } catch (const parx::CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("item 42"), std::string::npos) << e.what();
  }
  // The journal is untouched by the refusals: the right map still resumes all of it.
  parx::MapStats st;
  EXPECT_EQ(pool.map(plain_square, inputs(100), {.stats = &st, .checkpoint = ck.string()}),
            expected(100));
  EXPECT_EQ(st.resumed, 100u);
}

TEST(Checkpoint, NotAJournalAndBadOptions) {
  TempDir d;
  const fs::path junk = d.path / "junk";
  { std::ofstream(junk) << "this is not a parx journal, and it is long enough to have a header"; }
  parx::ThreadPool pool(1);
  auto f = [](long i) { return i; };
  EXPECT_THROW((void)pool.map(f, inputs(10), {.checkpoint = junk.string()}), parx::CheckpointError);
  EXPECT_THROW((void)pool.map(f, inputs(10), {.checkpoint = d.path.string()}),
               parx::CheckpointError);  // a directory
  EXPECT_THROW((void)pool.map(f, inputs(10), {.checkpoint = (d.path / "no/such/dir/x").string()}),
               parx::CheckpointError);
  struct Opaque {
    int* p;
  };
  auto g = [](long) { return Opaque{nullptr}; };
  EXPECT_THROW((void)pool.map(g, inputs(10), {.checkpoint = (d.path / "x").string()}),
               parx::InvalidArgument);
}

template <class F>
std::string checkpoint_refusal(F&& f) {
  try {
    f();
  } catch (const parx::CheckpointError& e) {
    return e.what();
  }
  return "no CheckpointError";
}

// A journal is opened only as a regular file: not through a symlink (its target stays as it
// was), not a FIFO (nothing blocks).
TEST(Checkpoint, AJournalIsNeverALinkOrAFifo) {
  TempDir d;
  parx::ThreadPool pool(1);
  auto f = [](long i) { return i; };
  const fs::path victim = d.path / "victim";
  { std::ofstream(victim) << "precious"; }
  const fs::path link = d.path / "link.ckpt";
  fs::create_symlink(victim, link);
  std::string why =
      checkpoint_refusal([&] { (void)pool.map(f, inputs(10), {.checkpoint = link.string()}); });
  EXPECT_NE(why.find("symbolic link"), std::string::npos) << why;
  EXPECT_NE(why.find(link.string()), std::string::npos) << why;
  std::ifstream in(victim);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "precious");
  const fs::path fifo = d.path / "fifo.ckpt";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  why = checkpoint_refusal([&] { (void)pool.map(f, inputs(10), {.checkpoint = fifo.string()}); });
  EXPECT_NE(why.find("not a regular file"), std::string::npos) << why;
}

long peak_rss_kb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// A journal that claims a huge size (a sparse file) is refused with CheckpointError and the
// path, in memory proportional to a read window, not to the size it claims.
TEST(Checkpoint, AHugeSparseJournalIsRefusedInBoundedMemory) {
  TempDir d;
  parx::ThreadPool pool(1);
  auto f = [](long i) { return i + 1; };
  constexpr off_t kHuge = off_t{100} << 30;  // 100 GB
  // Garbage from the first byte.
  const fs::path junk = d.path / "junk.ckpt";
  {
    const int fd = ::open(junk.c_str(), O_RDWR | O_CREAT, 0600);
    ASSERT_GE(fd, 0);
    if (::ftruncate(fd, kHuge) != 0) {
      ::close(fd);
      GTEST_SKIP() << "this filesystem has no 100 GB sparse files";
    }
    ::close(fd);
  }
  const long before = peak_rss_kb();
  std::string why =
      checkpoint_refusal([&] { (void)pool.map(f, inputs(10), {.checkpoint = junk.string()}); });
  EXPECT_NE(why.find("not a parx checkpoint journal"), std::string::npos) << why;
  // A real journal, then extended by 100 GB of zeros.
  const fs::path grown = d.path / "grown.ckpt";
  (void)pool.map(f, inputs(10), {.checkpoint = grown.string()});
  {
    const int fd = ::open(grown.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, kHuge), 0);
    ::close(fd);
  }
  why = checkpoint_refusal([&] { (void)pool.map(f, inputs(10), {.checkpoint = grown.string()}); });
  EXPECT_NE(why.find("is corrupt"), std::string::npos) << why;
  EXPECT_NE(why.find(grown.string()), std::string::npos) << why;
  EXPECT_LT(peak_rss_kb() - before, 64 * 1024) << "KiB of peak memory to refuse the journals";
}

// Two maps writing one journal at once would interleave their records: the second is refused,
// with the path, while the first runs on; once the first is done the journal is free again.
TEST(Checkpoint, ASecondWriterOfOneJournalIsRefused) {
  TempDir d;
  const std::string ckpt = (d.path / "one.ckpt").string();
  parx::ThreadPool pool(2);
  auto f = [](long i) { return i * 2; };
  {
    auto first = pool.imap(f, inputs(100), {.checkpoint = ckpt});
    ASSERT_TRUE(first.next().has_value());
    const std::string why =
        checkpoint_refusal([&] { (void)pool.map(f, inputs(100), {.checkpoint = ckpt}); });
    EXPECT_NE(why.find("another map is writing this checkpoint journal"), std::string::npos) << why;
    EXPECT_NE(why.find(ckpt), std::string::npos) << why;
    long n = 1;
    while (first.next())
      ++n;
    EXPECT_EQ(n, 100);
  }
  parx::MapStats st;
  const auto again = pool.map(f, inputs(100), {.stats = &st, .checkpoint = ckpt});
  EXPECT_EQ(st.resumed, 100u) << "the first map's journal is whole";
  EXPECT_EQ(again[99], 198);
}

// A journal that cannot be written (here: the file size limit, as a full disk would) stops
// recording and says so at once; the map still returns every result, reports why in MapStats,
// and a re-run resumes what was recorded before the failure.
TEST(Checkpoint, WriteFailureWarnsAndLosesNoResult) {
  TempDir d;
  const fs::path ck = d.path / "sweep.ckpt";
  parx::ThreadPool pool(2);
  auto f = [](long i) { return i * i + 1; };
  constexpr long n = 3000;

  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG
  rlimit small = old;
  small.rlim_cur = 2000;  // the header and a few dozen records
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  parx::MapStats st;
  std::vector<long> got;
  testing::internal::CaptureStderr();
  try {
    got = pool.map(f, inputs(n), {.chunksize = 20, .stats = &st, .checkpoint = ck.string()});
  } catch (...) {
    (void)testing::internal::GetCapturedStderr();
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::signal(SIGXFSZ, old_handler);
    throw;
  }
  const std::string err = testing::internal::GetCapturedStderr();
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
  ::signal(SIGXFSZ, old_handler);

  EXPECT_EQ(got, expected(n));
  EXPECT_NE(st.checkpoint_error.find(std::strerror(EFBIG)), std::string::npos)
      << st.checkpoint_error;
  EXPECT_NE(err.find("writing the journal failed"), std::string::npos) << err;
  EXPECT_NE(err.find(ck.string()), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << "warned once: " << err;
  EXPECT_LE(bytes_in(ck), 2000u);

  // The re-run resumes the records written whole before the failure (the torn one is cut off)
  // and runs the rest.
  parx::MapStats again;
  EXPECT_EQ(pool.map(f, inputs(n), {.stats = &again, .checkpoint = ck.string()}), expected(n));
  EXPECT_GT(again.resumed, 0u);
  EXPECT_LT(again.resumed, static_cast<std::size_t>(n));
  EXPECT_TRUE(again.checkpoint_error.empty()) << again.checkpoint_error;
  parx::MapStats third;
  EXPECT_EQ(pool.map(f, inputs(n), {.stats = &third, .checkpoint = ck.string()}), expected(n));
  EXPECT_EQ(third.resumed, static_cast<std::size_t>(n));
}

// ---- SIGKILL of the driver mid-map, then a re-run -------------------------------------------

// The child: runs the sweep with a checkpoint and writes "resumed <k>" and the results.
int checkpoint_child(const std::string& backend, const std::string& journal,
                     const std::string& result_path, long n) {
  parx::MapStats st;
  std::vector<long> got;
  const parx::MapOptions o{.stats = &st, .checkpoint = journal};
  bool driver = true;
  if (backend == "threads") {
    parx::ThreadPool pool(2);
    got = pool.map([](long i) { return slow_square(i); }, inputs(n), o);
  } else if (backend == "processes") {
    parx::ProcessPool pool(2);
    got = pool.map(slow_square, inputs(n), o);
  } else {
    parx::ClusterPool pool({.workers_per_rank = 1});
    driver = pool.is_driver();
    if (driver) {
      std::ofstream(journal + ".pid") << getpid() << "\n";
      got = pool.map(slow_square, inputs(n), o);
    }
  }
  if (!driver) return 0;
  std::ofstream out(result_path);
  out << "resumed " << st.resumed << "\n";
  for (long v : got)
    out << v << "\n";
  return 0;
}

struct Child {
  pid_t pid = -1;
  int status = 0;
  bool wait_for(std::chrono::seconds limit) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      const pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return false;
  }
};

Child spawn(const std::vector<std::string>& args, const fs::path& count) {
  std::vector<char*> argv;
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "PARX_TEST_COUNT_FILE=", 21) != 0) env_s.emplace_back(*e);
  env_s.push_back("PARX_TEST_COUNT_FILE=" + count.string());
  std::vector<char*> envp;
  for (auto& e : env_s)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  Child c;
  if (posix_spawnp(&c.pid, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) c.pid = -1;
  return c;
}

std::vector<std::string> child_args(const std::string& backend, const fs::path& journal,
                                    const fs::path& result, long n) {
  std::vector<std::string> a;
  if (backend == "cluster") {
    a = {PARX_TEST_MPIEXEC, "-n", "3", "-x", "PARX_TEST_COUNT_FILE"};
  }
  a.insert(a.end(), {self_exe(), "--checkpoint-child", backend, journal.string(), result.string(),
                     std::to_string(n)});
  return a;
}

void kill_and_resume(const std::string& backend) {
  if (backend == "cluster") {
    if (!PARX_TEST_WITH_MPI) GTEST_SKIP() << "the tests under mpiexec are off in this build";
    // Open MPI refuses root without these, and needs leave to put more ranks than cores.
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
  }
  TempDir d;
  const fs::path journal = d.path / "sweep.ckpt";
  const fs::path result = d.path / "result";
  const fs::path count1 = d.path / "count1";
  const fs::path count2 = d.path / "count2";
  const long n = 300;

  Child c = spawn(child_args(backend, journal, result, n), count1);
  ASSERT_GT(c.pid, 0);
  // Wait until about a third of the items ran, then kill the driver outright.
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (bytes_in(count1) < static_cast<std::size_t>(n / 3) &&
         std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_GE(bytes_in(count1), static_cast<std::size_t>(n / 3)) << "the sweep did not start";
  if (backend == "cluster") {
    pid_t driver = 0;
    std::ifstream(journal.string() + ".pid") >> driver;
    ASSERT_GT(driver, 0);
    ::kill(driver, SIGKILL);
  } else {
    ::kill(c.pid, SIGKILL);
  }
  ASSERT_TRUE(c.wait_for(std::chrono::seconds(60))) << "the killed job did not end";
  EXPECT_FALSE(fs::exists(result)) << "the first run finished before it was killed";
  const std::size_t ran_first = bytes_in(count1);
  ASSERT_LT(ran_first, static_cast<std::size_t>(n)) << "killed too late to test a resume";

  Child again = spawn(child_args(backend, journal, result, n), count2);
  ASSERT_GT(again.pid, 0);
  ASSERT_TRUE(again.wait_for(std::chrono::seconds(120)));
  ASSERT_TRUE(WIFEXITED(again.status) && WEXITSTATUS(again.status) == 0) << again.status;
  std::ifstream in(result);
  std::string word;
  std::size_t resumed = 0;
  in >> word >> resumed;
  ASSERT_EQ(word, "resumed");
  std::vector<long> got;
  for (long v; in >> v;)
    got.push_back(v);
  EXPECT_EQ(got, expected(n));  // exactly the uninterrupted results
  EXPECT_GT(resumed, 0u);
  EXPECT_LE(resumed, ran_first);
  // The second run ran exactly the items the journal did not have.
  EXPECT_EQ(bytes_in(count2), static_cast<std::size_t>(n) - resumed);
}

TEST(CheckpointKill, ThreadsDriverKilledThenResumed) {
  kill_and_resume("threads");
}
TEST(CheckpointKill, ProcessesDriverKilledThenResumed) {
  kill_and_resume("processes");
}
TEST(CheckpointKill, MpiDriverKilledThenResumed) {
  kill_and_resume("cluster");
}

}  // namespace

int main(int argc, char** argv) {
  if (!std::getenv("PARX_TEST_COUNT_FILE")) {
    const std::string p =
        (fs::temp_directory_path() / ("parx-test-count-" + std::to_string(getpid()))).string();
    ::setenv("PARX_TEST_COUNT_FILE", p.c_str(), 1);
  }
  parx::init(argc, argv);
  if (argc == 6 && std::string(argv[1]) == "--checkpoint-child")
    return checkpoint_child(argv[2], argv[3], argv[4], std::atol(argv[5]));
  ::testing::InitGoogleTest(&argc, argv);
  const int code = RUN_ALL_TESTS();
  fresh_count();
  return code;
}
