// Memory, the persistent result cache: hits and misses proven by side-effect counters, keys
// (arguments, conversions, versions, names), wrap, entries damaged in every way (each recomputed
// and counted), LRU eviction by bytes and by entries, clear, exceptions, 8 threads and several
// worker processes sharing one directory, and bad directories.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <parx/parx.hpp>
#include <random>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "test_util.hpp"

namespace fs = std::filesystem;

// ---- functions under test (registered: their names key the cache) -----------------------------

std::atomic<int> g_square_runs{0};
long square_counted(int x) {
  g_square_runs.fetch_add(1);
  return static_cast<long>(x) * x;
}
PARX_REMOTE(square_counted);

std::atomic<int> g_greet_runs{0};
std::string greet_counted(const std::string& who, int times) {
  g_greet_runs.fetch_add(1);
  std::string s;
  for (int i = 0; i < times; ++i)
    s += "hello " + who + ";";
  return s;
}
PARX_REMOTE(greet_counted);

std::atomic<int> g_throw_runs{0};
int throws_on_negative(int x) {
  g_throw_runs.fetch_add(1);
  if (x < 0) throw std::domain_error("negative: " + std::to_string(x));
  return x + 1;
}
PARX_REMOTE(throws_on_negative);

std::atomic<int> g_void_runs{0};
void side_effect_only(int) {
  g_void_runs.fetch_add(1);
}
PARX_REMOTE(side_effect_only);

std::vector<long> big_result(int n) {
  return std::vector<long>(static_cast<std::size_t>(n), 7);
}
PARX_REMOTE(big_result);

// Deliberately not registered.
int unregistered_twice(int x) {
  return 2 * x;
}

// Runs in a ProcessPool worker: its own Memory on the directory it is given.
long square_via_cache(const std::string& dir, int x) {
  parx::Memory cache(dir);
  return cache.call(square_counted, x);
}
PARX_REMOTE(square_via_cache);

// ---- helpers ----------------------------------------------------------------------------------

namespace {

// A fresh directory per test, removed afterwards.
class MemoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "parx_memory_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << "cannot create a directory under " << tmpl;
    root_ = tmpl;
    dir_ = root_ / "cache";
    g_square_runs = 0;
    g_greet_runs = 0;
    g_throw_runs = 0;
    g_void_runs = 0;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  fs::path root_;
  fs::path dir_;
};

std::vector<fs::path> entry_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".bin") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The one entry a test stored.
fs::path only_entry(const fs::path& dir) {
  auto files = entry_files(dir);
  EXPECT_EQ(files.size(), 1u);
  return files.empty() ? fs::path() : files.front();
}

}  // namespace

// ---- hits, misses and keys --------------------------------------------------------------------

TEST_F(MemoryTest, SecondCallIsAHitAndDoesNotRunTheFunction) {
  parx::Memory cache(dir_);
  EXPECT_EQ(cache.call(square_counted, 7), 49);
  EXPECT_EQ(cache.call(square_counted, 7), 49);
  EXPECT_EQ(cache.call(square_counted, 7), 49);
  EXPECT_EQ(g_square_runs, 1);
  const parx::Memory::Stats s = cache.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.bytes, sizeof(parx::detail::MemoryEntryHeader) + sizeof(long));

  // A new Memory on the same directory (a later run of the program) finds it.
  parx::Memory again(dir_);
  EXPECT_EQ(again.call(square_counted, 7), 49);
  EXPECT_EQ(g_square_runs, 1);
  EXPECT_EQ(again.stats().hits, 1u);
}

TEST_F(MemoryTest, LayoutAndHeaderAreAsDocumented) {
  parx::Memory cache(dir_, {.version = 42});
  cache.call(square_counted, 3);
  const fs::path p = only_entry(dir_);
  char id[17];
  std::snprintf(id, sizeof id, "%016llx",
                static_cast<unsigned long long>(parx::function_id("square_counted")));
  EXPECT_EQ(p.parent_path(), cache.dir() / ("square_counted-" + std::string(id)));
  EXPECT_TRUE(std::regex_match(p.filename().string(), std::regex("[0-9a-f]{32}\\.bin")));
  struct stat st {};
  ASSERT_EQ(::stat(cache.dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  const std::string bytes = read_file(p);
  parx::detail::MemoryEntryHeader h{};
  ASSERT_GE(bytes.size(), sizeof h);
  std::memcpy(&h, bytes.data(), sizeof h);
  EXPECT_EQ(std::string(h.magic, 8), "PARXMEM1");
  EXPECT_EQ(h.format, parx::detail::kMemoryFormat);
  EXPECT_EQ(h.function_id, parx::function_id("square_counted"));
  EXPECT_EQ(h.user_version, 42u);
  EXPECT_EQ(h.payload_size, sizeof(long));
  EXPECT_EQ(h.checksum, XXH3_64bits(bytes.data() + sizeof h, sizeof(long)));
  char key[33];
  std::snprintf(key, sizeof key, "%016llx%016llx", static_cast<unsigned long long>(h.key_hi),
                static_cast<unsigned long long>(h.key_lo));
  EXPECT_EQ(p.filename().string(), std::string(key) + ".bin");
  // No temporary file is left behind.
  for (const auto& e : fs::recursive_directory_iterator(cache.dir()))
    EXPECT_EQ(e.path().filename().string().rfind(".tmp-", 0), std::string::npos) << e.path();
}

TEST_F(MemoryTest, DifferentArgumentsAreDifferentEntries) {
  parx::Memory cache(dir_);
  for (int round = 0; round < 2; ++round)
    for (int x = 1; x <= 3; ++x)
      EXPECT_EQ(cache.call(square_counted, x), x * x);
  EXPECT_EQ(g_square_runs, 3);
  EXPECT_EQ(cache.call(greet_counted, "a", 2), "hello a;hello a;");
  EXPECT_EQ(cache.call(greet_counted, "b", 2), "hello b;hello b;");
  EXPECT_EQ(cache.call(greet_counted, "a", 1), "hello a;");
  EXPECT_EQ(cache.call(greet_counted, "a", 2), "hello a;hello a;");
  EXPECT_EQ(g_greet_runs, 3);
  const auto s = cache.stats();
  EXPECT_EQ(s.entries, 6u);
  EXPECT_EQ(s.hits, 4u);
  EXPECT_EQ(s.misses, 6u);
}

TEST_F(MemoryTest, ArgumentsAreKeyedAsTheFunctionReceivesThem) {
  parx::Memory cache(dir_);
  EXPECT_EQ(cache.call(square_counted, 9), 81);
  EXPECT_EQ(cache.call(square_counted, static_cast<short>(9)), 81);  // converted to int
  EXPECT_EQ(cache.call(square_counted, 9.0), 81);                    // likewise
  EXPECT_EQ(g_square_runs, 1);
  const std::string who = "zoe";
  EXPECT_EQ(cache.call(greet_counted, "zoe", 1), "hello zoe;");
  EXPECT_EQ(cache.call(greet_counted, who, 1), "hello zoe;");
  EXPECT_EQ(cache.call(greet_counted, std::string("zoe"), 1), "hello zoe;");
  EXPECT_EQ(g_greet_runs, 1);
}

TEST_F(MemoryTest, VersionBumpRecomputesAndKeepsOtherVersions) {
  parx::Memory v1(dir_, {.version = 1});
  parx::Memory v2(dir_, {.version = 2});
  EXPECT_EQ(v1.call(square_counted, 4), 16);
  EXPECT_EQ(v2.call(square_counted, 4), 16);
  EXPECT_EQ(g_square_runs, 2);
  EXPECT_EQ(v1.call(square_counted, 4), 16);
  EXPECT_EQ(v2.call(square_counted, 4), 16);
  EXPECT_EQ(g_square_runs, 2);
  EXPECT_EQ(v1.stats().corrupt + v2.stats().corrupt, 0u) << "another version is not corruption";
  EXPECT_EQ(v1.stats().entries, 2u);
}

TEST_F(MemoryTest, NamedCallablesAndLambdas) {
  parx::Memory cache(dir_);
  int runs = 0;
  auto add = [&runs](int a, int b) {
    ++runs;
    return a + b;
  };
  EXPECT_EQ(cache.call("add", add, 2, 3), 5);
  EXPECT_EQ(cache.call("add", add, 2, 3), 5);
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(cache.call("add", add, 3, 2), 5);
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(cache.call("add_v2", add, 2, 3), 5);  // another name: another function
  EXPECT_EQ(runs, 3);

  // Strings of every kind are keyed as std::string.
  int len_runs = 0;
  auto len = [&len_runs](std::string_view s) {
    ++len_runs;
    return s.size();
  };
  EXPECT_EQ(cache.call("len", len, "abcd"), 4u);
  EXPECT_EQ(cache.call("len", len, std::string("abcd")), 4u);
  EXPECT_EQ(cache.call("len", len, std::string_view("abcd")), 4u);
  EXPECT_EQ(len_runs, 1);

  // An unregistered function may be cached under a name.
  EXPECT_EQ(cache.call("unregistered_twice", unregistered_twice, 21), 42);
  EXPECT_EQ(cache.call("unregistered_twice", &unregistered_twice, 21), 42);
  EXPECT_EQ(cache.stats().hits, 4u);

  EXPECT_THROW(cache.call("", add, 1, 1), parx::InvalidArgument);
}

TEST_F(MemoryTest, WrapGivesACachedCallable) {
  auto cached = [&] {
    parx::Memory cache(dir_);
    return cache.wrap(square_counted);  // outlives the Memory it came from
  }();
  EXPECT_EQ(cached(5), 25);
  EXPECT_EQ(cached(5), 25);
  EXPECT_EQ(g_square_runs, 1);
  EXPECT_TRUE(cached.contains(5));
  EXPECT_FALSE(cached.contains(6));
  EXPECT_EQ(g_square_runs, 1) << "contains runs nothing";
  EXPECT_EQ(cached.memory().stats().hits, 1u) << "contains is not a hit";

  parx::Memory cache(dir_);
  EXPECT_TRUE(cache.contains(square_counted, 5));
  int runs = 0;
  const auto cube = cache.wrap("cube", [&runs](int x) {
    ++runs;
    return x * x * x;
  });
  EXPECT_EQ(cube(3), 27);
  EXPECT_EQ(cube(3), 27);
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(cube.contains(3));
  cube.clear();
  EXPECT_FALSE(cube.contains(3));
  EXPECT_TRUE(cached.contains(5)) << "clearing one function leaves the others";
  cached.clear();
  EXPECT_FALSE(cached.contains(5));
}

TEST_F(MemoryTest, VoidFunctionsRunOnce) {
  parx::Memory cache(dir_);
  cache.call(side_effect_only, 1);
  cache.call(side_effect_only, 1);
  cache.call(side_effect_only, 2);
  EXPECT_EQ(g_void_runs, 2);
  EXPECT_TRUE(cache.contains(side_effect_only, 1));
  EXPECT_EQ(cache.stats().hits, 1u);
}

TEST_F(MemoryTest, UnregisteredPointerIsRefusedWithAClearError) {
  parx::Memory cache(dir_);
  const auto e =
      parx_test::expect_throw<parx::InvalidArgument>([&] { cache.call(unregistered_twice, 1); });
  const std::string what = e.what();
  EXPECT_NE(what.find("unregistered_twice"), std::string::npos) << what;
  EXPECT_NE(what.find("PARX_REMOTE"), std::string::npos) << what;
  EXPECT_NE(what.find("cache.call(\"name\""), std::string::npos) << what;
  EXPECT_THROW(cache.wrap(unregistered_twice), parx::InvalidArgument);
  EXPECT_THROW((void)cache.contains(unregistered_twice, 1), parx::InvalidArgument);
  EXPECT_TRUE(entry_files(cache.dir()).empty());
}

TEST_F(MemoryTest, ExceptionsAreNotCached) {
  parx::Memory cache(dir_);
  EXPECT_THROW(cache.call(throws_on_negative, -1), std::domain_error);
  EXPECT_THROW(cache.call(throws_on_negative, -1), std::domain_error);
  EXPECT_EQ(g_throw_runs, 2);
  EXPECT_TRUE(entry_files(cache.dir()).empty());
  EXPECT_EQ(cache.call(throws_on_negative, 1), 2);
  EXPECT_EQ(cache.call(throws_on_negative, 1), 2);
  EXPECT_EQ(g_throw_runs, 3);
  const auto s = cache.stats();
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.hits, 1u);
}

TEST_F(MemoryTest, AFailedStoreStillReturnsTheValue) {
  parx::Memory cache(dir_);
  cache.call(square_counted, 1);
  const fs::path fdir = only_entry(dir_).parent_path();
  fs::remove_all(fdir);
  write_file(fdir, "a file where the function's directory should be");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(cache.call(square_counted, 2), 4);
  EXPECT_EQ(cache.call(square_counted, 2), 4);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("could not store a result of square_counted"), std::string::npos) << err;
  EXPECT_EQ(g_square_runs, 3);
  const auto s = cache.stats();
  EXPECT_EQ(s.store_failures, 2u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.entries, 0u);
}

TEST_F(MemoryTest, VerboseSaysWhatRan) {
  parx::Memory cache(dir_, {.verbose = true});
  ::testing::internal::CaptureStderr();
  cache.call(square_counted, 2);
  cache.call(square_counted, 2);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("square_counted: miss, ran in"), std::string::npos) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

// ---- damaged entries: each is detected, removed, recomputed and counted -----------------------

namespace {

// Stores square_counted(6), damages its entry with `damage`, and checks the next call recomputes
// the right value and counts one corrupt entry, and the one after is a hit again.
template <class Damage>
void expect_recovers(const fs::path& dir, Damage damage) {
  parx::Memory cache(dir);
  ASSERT_EQ(cache.call(square_counted, 6), 36);
  const int runs = g_square_runs;
  damage(only_entry(dir));
  ::testing::internal::CaptureStderr();
  EXPECT_FALSE(cache.contains(square_counted, 6));
  EXPECT_EQ(cache.call(square_counted, 6), 36);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("corrupt cache entry"), std::string::npos) << err;
  EXPECT_EQ(g_square_runs, runs + 1);
  EXPECT_EQ(cache.stats().corrupt, 1u);
  EXPECT_EQ(cache.call(square_counted, 6), 36);
  EXPECT_EQ(g_square_runs, runs + 1);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().entries, 1u);
}

// Rewrites an entry with a new payload and a matching size and checksum: a well-formed entry
// whose payload belongs to another type.
void replace_payload(const fs::path& p, const parx::Bytes& payload) {
  std::string bytes = read_file(p);
  parx::detail::MemoryEntryHeader h{};
  std::memcpy(&h, bytes.data(), sizeof h);
  h.payload_size = payload.size();
  h.checksum = XXH3_64bits(payload.data(), payload.size());
  std::string out(reinterpret_cast<const char*>(&h), sizeof h);
  out.append(reinterpret_cast<const char*>(payload.data()), payload.size());
  write_file(p, out);
}

}  // namespace

TEST_F(MemoryTest, FlippedPayloadByteIsCorrupt) {
  expect_recovers(dir_, [](const fs::path& p) {
    std::string b = read_file(p);
    b.back() = static_cast<char>(b.back() ^ 0x01);
    write_file(p, b);
  });
}

TEST_F(MemoryTest, FlippedHeaderByteIsCorrupt) {
  expect_recovers(dir_, [](const fs::path& p) {
    std::string b = read_file(p);
    b[20] = static_cast<char>(b[20] ^ 0x80);  // inside the function id
    write_file(p, b);
  });
}

TEST_F(MemoryTest, TruncatedFileIsCorrupt) {
  expect_recovers(dir_, [](const fs::path& p) { fs::resize_file(p, 30); });
}

TEST_F(MemoryTest, TruncatedPayloadIsCorrupt) {
  expect_recovers(dir_, [](const fs::path& p) { fs::resize_file(p, fs::file_size(p) - 3); });
}

TEST_F(MemoryTest, EmptyFileIsCorrupt) {
  expect_recovers(dir_, [](const fs::path& p) { write_file(p, ""); });
}

TEST_F(MemoryTest, GarbageFileIsCorrupt) {
  expect_recovers(dir_, [](const fs::path& p) {
    std::mt19937 rng(7);
    std::string g(200, '\0');
    for (char& c : g)
      c = static_cast<char>(rng());
    write_file(p, g);
  });
}

TEST_F(MemoryTest, PayloadOfAnotherTypeIsCorrupt) {
  // Well formed (size and checksum match), but a std::string's encoding where a long is expected.
  expect_recovers(dir_,
                  [](const fs::path& p) { replace_payload(p, parx::encode(std::string("x"))); });
}

TEST_F(MemoryTest, EntryOfAnotherKeyIsCorrupt) {
  parx::Memory cache(dir_);
  cache.call(square_counted, 1);
  const fs::path one = only_entry(dir_);
  const std::string bytes_of_one = read_file(one);
  fs::remove(one);
  expect_recovers(dir_, [&](const fs::path& p) { write_file(p, bytes_of_one); });
}

TEST_F(MemoryTest, FifoOrDirectoryAtTheEntryPathNeitherHangsNorCrashes) {
  expect_recovers(dir_, [](const fs::path& p) {
    fs::remove(p);
    ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  });
  g_square_runs = 0;
  fs::remove_all(dir_);
  expect_recovers(dir_, [](const fs::path& p) {
    fs::remove(p);
    fs::create_directory(p);
  });
}

TEST_F(MemoryTest, WrongResultTypeForTheSameNameIsAMissNotAWrongValue) {
  // The same name used with another result type: the types are part of the key.
  parx::Memory cache(dir_);
  EXPECT_EQ(cache.call(
                "f", [](int x) { return x * 2; }, 3),
            6);
  EXPECT_EQ(cache.call(
                "f", [](int x) { return static_cast<float>(x) / 2; }, 3),
            1.5f);
  EXPECT_EQ(cache.stats().hits, 0u);
  EXPECT_EQ(cache.stats().corrupt, 0u);
}

// ---- limits -----------------------------------------------------------------------------------

TEST_F(MemoryTest, MaxEntriesEvictsTheLeastRecentlyUsed) {
  parx::Memory cache(dir_, {.max_entries = 2});
  cache.call(square_counted, 1);
  cache.call(square_counted, 2);
  cache.call(square_counted, 1);  // a hit: 1 is now more recent than 2
  cache.call(square_counted, 3);  // over the limit: 2 goes
  EXPECT_TRUE(cache.contains(square_counted, 1));
  EXPECT_FALSE(cache.contains(square_counted, 2));
  EXPECT_TRUE(cache.contains(square_counted, 3));
  const auto s = cache.stats();
  EXPECT_EQ(s.entries, 2u);
  EXPECT_EQ(s.evictions, 1u);
  for (int i = 10; i < 40; ++i)
    cache.call(square_counted, i);
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_TRUE(cache.contains(square_counted, 38));
  EXPECT_TRUE(cache.contains(square_counted, 39));
}

TEST_F(MemoryTest, MaxBytesEvictsTheLeastRecentlyUsed) {
  constexpr std::uint64_t kEntry = sizeof(parx::detail::MemoryEntryHeader) + sizeof(long);
  parx::Memory cache(dir_, {.max_bytes = 3 * kEntry});
  for (int x = 1; x <= 3; ++x)
    cache.call(square_counted, x);
  cache.call(square_counted, 1);
  cache.call(square_counted, 4);  // 4 entries' bytes: the least recently used, 2, goes
  EXPECT_TRUE(cache.contains(square_counted, 1));
  EXPECT_FALSE(cache.contains(square_counted, 2));
  EXPECT_TRUE(cache.contains(square_counted, 3));
  EXPECT_TRUE(cache.contains(square_counted, 4));
  EXPECT_EQ(cache.stats().bytes, 3 * kEntry);

  // A result bigger than the limit on its own is returned but not kept.
  const std::vector<long> big = cache.call(big_result, 1000);
  EXPECT_EQ(big.size(), 1000u);
  EXPECT_FALSE(cache.contains(big_result, 1000));
  EXPECT_LE(cache.stats().bytes, 3 * kEntry);
}

TEST_F(MemoryTest, ReduceSizeKeepsTheMostRecentlyUsed) {
  parx::Memory cache(dir_);
  for (int x = 0; x < 6; ++x)
    cache.call(square_counted, x);
  cache.call(square_counted, 0);
  cache.call(square_counted, 1);
  cache.reduce_size(0, 3);  // 0 and 1 (just used) and 5 (the newest store) stay
  EXPECT_EQ(cache.stats().entries, 3u);
  for (int x : {0, 1, 5})
    EXPECT_TRUE(cache.contains(square_counted, x)) << x;
  for (int x : {2, 3, 4})
    EXPECT_FALSE(cache.contains(square_counted, x)) << x;
  cache.reduce_size(1, 0);
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(cache.stats().evictions, 6u);
}

// ---- clear ------------------------------------------------------------------------------------

TEST_F(MemoryTest, ClearOneFunctionOrEverything) {
  parx::Memory cache(dir_);
  cache.call(square_counted, 1);
  cache.call(square_counted, 2);
  cache.call(greet_counted, "x", 1);
  cache.call(
      "add", [](int a, int b) { return a + b; }, 1, 2);
  // Files parx did not write are left alone.
  write_file(cache.dir() / "notes.txt", "mine");

  cache.clear(square_counted);
  EXPECT_FALSE(cache.contains(square_counted, 1));
  EXPECT_FALSE(cache.contains(square_counted, 2));
  EXPECT_TRUE(cache.contains(greet_counted, "x", 1));
  EXPECT_EQ(cache.stats().entries, 2u);
  cache.clear("add");
  EXPECT_EQ(cache.stats().entries, 1u);

  cache.call(square_counted, 1);
  cache.clear();
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_TRUE(fs::exists(cache.dir() / "notes.txt"));
  EXPECT_EQ(cache.call(square_counted, 1), 1);  // works after a clear
  EXPECT_EQ(g_square_runs, 4);
}

TEST_F(MemoryTest, ClearRemovesStaleTemporaryFilesOnly) {
  parx::Memory cache(dir_);
  cache.call(square_counted, 1);
  const fs::path fdir = only_entry(dir_).parent_path();
  const fs::path stale = fdir / ".tmp-dead-writer";
  const fs::path live = fdir / ".tmp-live-writer";
  write_file(stale, "half");
  write_file(live, "half");
  const timespec old[2] = {{::time(nullptr) - 7200, 0}, {::time(nullptr) - 7200, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, stale.c_str(), old, 0), 0);
  cache.clear();
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_EQ(cache.stats().entries, 0u);
}

// ---- concurrency ------------------------------------------------------------------------------

TEST_F(MemoryTest, EightThreadsOnTheSameKeys) {
  parx::Memory cache(dir_);
  constexpr int kKeys = 40, kRounds = 3, kThreads = 8;
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r)
        for (int i = 0; i < kKeys; ++i) {
          const int x = (i * 7 + t * 3 + r) % kKeys;  // each thread in its own order
          if (cache.call(square_counted, x) != static_cast<long>(x) * x) ++wrong;
          std::string greeting;
          for (int k = 0; k < x % 3; ++k)
            greeting += "hello t;";
          if (cache.call(greet_counted, "t", x % 3) != greeting) ++wrong;
        }
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_GE(g_square_runs, kKeys);
  EXPECT_LE(g_square_runs, kKeys * kThreads);
  const auto s = cache.stats();
  EXPECT_EQ(s.hits + s.misses, 2u * kThreads * kRounds * kKeys);
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_EQ(s.store_failures, 0u);
  EXPECT_EQ(s.entries, kKeys + 3u);
}

TEST_F(MemoryTest, EightThreadsWithEvictionAndClearsStayCorrect) {
  parx::Memory cache(dir_, {.max_entries = 5});
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const int x = (i * 13 + t) % 17;
        if (cache.call(square_counted, x) != static_cast<long>(x) * x) ++wrong;
        if (t == 0 && i % 50 == 49) cache.clear();
      }
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(wrong, 0);
  const auto s = cache.stats();
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_EQ(s.store_failures, 0u);
  cache.reduce_size(0, 5);
  EXPECT_LE(cache.stats().entries, 5u);
}

TEST_F(MemoryTest, SeveralProcessesShareOneDirectory) {
  parx::ProcessPool pool(4);
  std::vector<std::tuple<std::string, int>> args;
  for (int i = 0; i < 120; ++i)
    args.emplace_back(dir_.string(), i % 20);
  const std::vector<long> ys = pool.starmap(square_via_cache, args, {.chunksize = 3});
  ASSERT_EQ(ys.size(), args.size());
  for (std::size_t i = 0; i < ys.size(); ++i)
    EXPECT_EQ(ys[i], static_cast<long>(i % 20) * static_cast<long>(i % 20)) << i;

  // Everything the workers stored is sound and found here: nothing runs in this process.
  parx::Memory cache(dir_);
  for (int x = 0; x < 20; ++x)
    EXPECT_EQ(cache.call(square_counted, x), static_cast<long>(x) * x);
  EXPECT_EQ(g_square_runs, 0);
  const auto s = cache.stats();
  EXPECT_EQ(s.hits, 20u);
  EXPECT_EQ(s.corrupt, 0u);
  EXPECT_EQ(s.entries, 20u);
}

// ---- bad directories --------------------------------------------------------------------------

TEST_F(MemoryTest, BadDirectoryIsAClearError) {
  const fs::path file = root_ / "a_file";
  write_file(file, "x");
  const auto e = parx_test::expect_throw<parx::InvalidArgument>([&] { parx::Memory m(file); });
  EXPECT_NE(std::string(e.what()).find("not a directory"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find(file.string()), std::string::npos) << e.what();

  const auto under = parx_test::expect_throw<parx::Error>([&] { parx::Memory m(file / "sub"); });
  EXPECT_NE(std::string(under.what()).find("cannot create"), std::string::npos) << under.what();

  EXPECT_THROW(parx::Memory(fs::path()), parx::InvalidArgument);

  // Missing parents are created, each 0700.
  parx::Memory deep(root_ / "x" / "y" / "z");
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "x").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(deep.call(square_counted, 2), 4);
}

int main(int argc, char** argv) {
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
