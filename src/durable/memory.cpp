// Memory: the file work behind parx/memory.hpp — keys, entry files, verification, atomic stores,
// LRU eviction.
//
// Every entry is written whole to a temporary file in its function's directory and renamed into
// place, so a reader (any thread, any process) opens either nothing, an older complete entry or
// the new complete entry. Files are never modified in place, except their timestamps: a hit sets
// the entry's mtime to now, which is what eviction sorts by. Timestamps are set explicitly from
// CLOCK_REALTIME (nanoseconds, strictly increasing within a process) rather than left to the
// kernel, whose file times advance only once per tick: two stores a millisecond apart would tie.
#include "parx/memory.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#define XXH_INLINE_ALL  // header-only use of libxxhash: nothing to link
#include <xxhash.h>

namespace parx::detail {

namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'P', 'A', 'R', 'X', 'M', 'E', 'M', '1'};
constexpr std::string_view kTmpPrefix = ".tmp-";
constexpr std::string_view kEntrySuffix = ".bin";
// A temporary file this old belongs to a writer that died: scans remove it.
constexpr std::int64_t kStaleTmpSeconds = 3600;
// With limits set, a store rescans the directory at least this often, to see other processes'
// stores (between scans only this process's own are added to the estimate).
constexpr std::uint64_t kRescanEvery = 64;
// Length of a function directory's name part (the rest is "-" and 16 hex digits).
constexpr std::size_t kMaxNameChars = 48;

std::string errno_text(int e) {
  return std::error_code(e, std::generic_category()).message();
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// "<name>-<16 hex>": a function's directory.
bool is_function_dir_name(std::string_view n) {
  return n.size() >= 18 && n[n.size() - 17] == '-' && is_hex(n.substr(n.size() - 16));
}

// "<32 hex>.bin": an entry.
bool is_entry_name(std::string_view n) {
  return n.size() == 32 + kEntrySuffix.size() && n.substr(32) == kEntrySuffix &&
         is_hex(n.substr(0, 32));
}

bool is_tmp_name(std::string_view n) {
  return n.substr(0, kTmpPrefix.size()) == kTmpPrefix;
}

// A function name as a directory name: letters, digits and _ . + - kept, anything else '_'.
std::string sanitise(std::string_view name) {
  std::string s;
  for (char c : name.substr(0, kMaxNameChars)) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '+' || c == '-';
    s += keep ? c : '_';
  }
  return s;
}

// Now, in nanoseconds since the epoch, strictly increasing within this process: the order of
// stores and hits is the order of their timestamps even when the clock has not moved.
timespec now_stamp() noexcept {
  static std::atomic<std::int64_t> last{0};
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  std::int64_t ns = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  std::int64_t prev = last.load(std::memory_order_relaxed);
  for (;;) {
    const std::int64_t next = std::max(ns, prev + 1);
    if (last.compare_exchange_weak(prev, next, std::memory_order_relaxed)) {
      ns = next;
      break;
    }
  }
  return {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

void set_times(int fd) noexcept {
  const timespec t = now_stamp();
  const timespec ts[2] = {t, t};
  (void)::futimens(fd, ts);  // best effort: an entry that keeps its age is only evicted sooner
}

bool older(const timespec& a, const timespec& b) noexcept {
  return a.tv_sec != b.tv_sec ? a.tv_sec < b.tv_sec : a.tv_nsec < b.tv_nsec;
}

class Fd {
 public:
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  // Closes now, reporting the error close() gives (a delayed write error, on some filesystems).
  int close() noexcept {
    const int r = ::close(fd_);
    fd_ = -1;
    return r == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// Reads exactly n bytes at `off`; returns 0, -1 at an early end of file, or an errno.
int pread_all(int fd, void* buf, std::size_t n, off_t off) noexcept {
  auto* p = static_cast<char*>(buf);
  while (n) {
    const ssize_t r = ::pread(fd, p, n, off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return -1;
    p += r;
    n -= static_cast<std::size_t>(r);
    off += r;
  }
  return 0;
}

// Writes all of `iov`; returns 0 or an errno.
int writev_all(int fd, iovec* iov, int n) noexcept {
  while (n > 0) {
    const ssize_t r = ::writev(fd, iov, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    auto left = static_cast<std::size_t>(r);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

// mkdir -p with mode 0700 for whatever is missing; returns 0 or an errno.
int make_dirs(const fs::path& p) {
  std::vector<fs::path> missing;
  for (fs::path q = p; !q.empty(); q = q.parent_path()) {
    struct stat st {};
    if (::stat(q.c_str(), &st) == 0) break;
    if (errno != ENOENT) return errno;
    missing.push_back(q);
    if (q == q.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it)
    if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST) return errno;
  return 0;
}

struct EntryFile {
  fs::path path;
  timespec mtime;
  std::uint64_t size;
};

// Every entry under `root` (function directories only; anything else is left alone). With
// `tidy`, removes stale temporary files on the way. Entries that vanish meanwhile are skipped.
std::vector<EntryFile> scan(const fs::path& root, bool tidy) {
  std::vector<EntryFile> out;
  std::error_code ec;
  const std::int64_t now = static_cast<std::int64_t>(::time(nullptr));
  for (fs::directory_iterator d(root, ec), end; !ec && d != end; d.increment(ec)) {
    if (!is_function_dir_name(d->path().filename().native())) continue;
    std::error_code ec2;
    for (fs::directory_iterator f(d->path(), ec2); !ec2 && f != end; f.increment(ec2)) {
      const std::string name = f->path().filename().native();
      const bool entry = is_entry_name(name);
      if (!entry && !is_tmp_name(name)) continue;
      struct stat st {};
      if (::lstat(f->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (entry) {
        out.push_back({f->path(), st.st_mtim, static_cast<std::uint64_t>(st.st_size)});
      } else if (tidy && now - static_cast<std::int64_t>(st.st_mtim.tv_sec) > kStaleTmpSeconds) {
        ::unlink(f->path().c_str());
      }
    }
  }
  return out;
}

void say(const std::string& line) noexcept {
  std::fprintf(stderr, "%s\n", line.c_str());  // one write per line: lines do not interleave
}

std::string human_bytes(std::uint64_t n) {
  char buf[32];
  if (n < 10'000) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  } else if (n < 10'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(n) / 1024);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(n) / (1024 * 1024));
  }
  return buf;
}

}  // namespace

// ---- function identities ----------------------------------------------------------------------

MemoryFn memory_registered_fn(const void* fn) {
  const RemoteEntry* e = find_remote_by_pointer(fn);
  if (!e)
    throw InvalidArgument(
        "parx::Memory: function " + describe_function(fn) +
        " is not registered, so it has no name that stays the same from run to run to key its "
        "results by (an address would not). Add PARX_REMOTE(name) after it at namespace scope, "
        "or give it a name: cache.call(\"name\", fn, args...)");
  return {e->id, e->name};
}

MemoryFn memory_named_fn(std::string_view name) {
  if (name.empty())
    throw InvalidArgument("parx::Memory: a cached callable's name must not be empty");
  return {function_id(name), std::string(name)};
}

// ---- MemoryCore -------------------------------------------------------------------------------

MemoryCore::MemoryCore(const std::filesystem::path& dir, MemoryOptions opts) : opts_(opts) {
  if (dir.empty()) throw InvalidArgument("parx::Memory: the cache directory path is empty");
  std::error_code ec;
  dir_ = fs::absolute(dir, ec).lexically_normal();
  if (ec)
    throw Error("parx::Memory: cannot resolve the cache directory " + dir.string() + ": " +
                ec.message());
  if (dir_.has_filename() == false && dir_.has_parent_path()) dir_ = dir_.parent_path();
  struct stat st {};
  if (::stat(dir_.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    throw InvalidArgument("parx::Memory: the cache directory " + dir_.string() +
                          " exists and is not a directory");
  if (const int e = make_dirs(dir_))
    throw Error("parx::Memory: cannot create the cache directory " + dir_.string() + ": " +
                errno_text(e));
  if (::stat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw InvalidArgument("parx::Memory: the cache directory " + dir_.string() +
                          " is not a directory");
  if (::access(dir_.c_str(), R_OK | W_OK | X_OK) != 0)
    throw Error("parx::Memory: the cache directory " + dir_.string() +
                " is not readable and writable: " + errno_text(errno));
  std::random_device rd;
  nonce_ = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

MemoryKey MemoryCore::key(const MemoryFn& f, std::string_view signature,
                          std::span<const std::byte> args) const {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  XXH3_128bits_reset(&st);
  // The platform is salted in: the codec's bytes are the host's sizes and byte order.
  const std::uint64_t head[4] = {f.id, opts_.version,
                                 (sizeof(void*) << 8) | (sizeof(long) << 16) |
                                     (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 1u : 2u),
                                 signature.size()};
  XXH3_128bits_update(&st, head, sizeof head);
  XXH3_128bits_update(&st, signature.data(), signature.size());
  XXH3_128bits_update(&st, args.data(), args.size());
  const XXH128_hash_t h = XXH3_128bits_digest(&st);
  return {h.low64, h.high64};
}

std::filesystem::path MemoryCore::function_dir(const MemoryFn& f) const {
  return dir_ / (sanitise(f.name) + "-" + hex64(f.id));
}

std::filesystem::path MemoryCore::entry_path(const MemoryFn& f, const MemoryKey& k) const {
  return function_dir(f) / (hex64(k.hi) + hex64(k.lo) + std::string(kEntrySuffix));
}

std::optional<Bytes> MemoryCore::load(const MemoryFn& f, const MemoryKey& k, bool peek) {
  const fs::path p = entry_path(f, k);
  // O_NONBLOCK: a FIFO planted at the path must not block the open.
  const int raw = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (raw < 0) {
    const int e = errno;
    if (e == ENOENT || e == ENOTDIR) return std::nullopt;  // ENOTDIR: no directory, no entry
    if (e == ELOOP) {
      if (!peek) reject(f, k, "a symbolic link, not an entry");
      return std::nullopt;
    }
    throw Error("parx::Memory: cannot read the cache entry " + p.string() + ": " + errno_text(e));
  }
  Fd fd(raw);
  auto bad = [&](const std::string& why) -> std::optional<Bytes> {
    if (!peek) reject(f, k, why);
    return std::nullopt;
  };
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return bad("cannot stat it: " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) return bad("not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < sizeof(MemoryEntryHeader))
    return bad("truncated: " + std::to_string(size) + " bytes, shorter than the " +
               std::to_string(sizeof(MemoryEntryHeader)) + "-byte header");
  MemoryEntryHeader h{};
  if (const int r = pread_all(fd.get(), &h, sizeof h, 0))
    return bad(r < 0 ? "truncated while reading" : "cannot read it: " + errno_text(r));
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0) return bad("bad magic (not an entry)");
  if (h.format != kMemoryFormat || h.header_size != sizeof(MemoryEntryHeader))
    return bad("entry format " + std::to_string(h.format) + ", this build reads " +
               std::to_string(kMemoryFormat));
  if (h.function_id != f.id) return bad("the header names another function");
  if (h.user_version != opts_.version) return bad("the header names another version");
  if (h.key_lo != k.lo || h.key_hi != k.hi) return bad("the header names another key");
  if (h.payload_size != size - sizeof h)
    return bad("truncated or padded: the header promises " + std::to_string(h.payload_size) +
               " payload bytes, the file holds " + std::to_string(size - sizeof h));
  Bytes payload(static_cast<std::size_t>(h.payload_size));
  if (const int r = pread_all(fd.get(), payload.data(), payload.size(), sizeof h))
    return bad(r < 0 ? "truncated while reading" : "cannot read it: " + errno_text(r));
  if (XXH3_64bits(payload.data(), payload.size()) != h.checksum)
    return bad("the payload's checksum does not match");
  if (!peek) set_times(fd.get());
  return payload;
}

void MemoryCore::reject(const MemoryFn& f, const MemoryKey& k, std::string_view why) {
  corrupt_.fetch_add(1, std::memory_order_relaxed);
  const fs::path p = entry_path(f, k);
  // A FIFO or a directory planted at the path: unlink fails for a directory, rmdir is tried.
  if (::unlink(p.c_str()) != 0 && errno == EISDIR) ::rmdir(p.c_str());
  say("parx::Memory: corrupt cache entry " + p.string() + " (" + std::string(why) +
      "): removed, recomputing " + f.name);
}

void MemoryCore::store_failed(const MemoryFn& f, std::string_view why) noexcept {
  store_failures_.fetch_add(1, std::memory_order_relaxed);
  try {
    say("parx::Memory: could not store a result of " + f.name + " in " + dir_.string() + ": " +
        std::string(why) + " (the value is returned, uncached)");
  } catch (...) {  // out of memory building the message: the count remains
  }
}

void MemoryCore::store(const MemoryFn& f, const MemoryKey& k, std::span<const std::byte> payload,
                       double seconds) noexcept {
  try {
    MemoryEntryHeader h{};
    std::memcpy(h.magic, kMagic, sizeof kMagic);
    h.format = kMemoryFormat;
    h.header_size = sizeof h;
    h.function_id = f.id;
    h.user_version = opts_.version;
    h.key_lo = k.lo;
    h.key_hi = k.hi;
    h.payload_size = payload.size();
    h.checksum = XXH3_64bits(payload.data(), payload.size());

    const fs::path fdir = function_dir(f);
    const fs::path final_path = entry_path(f, k);
    std::string why;
    bool stored = false;
    // Up to three attempts: clear() may remove the function's directory between our mkdir and
    // the temporary file's creation.
    for (int attempt = 0; attempt < 3 && !stored; ++attempt) {
      if (::mkdir(fdir.c_str(), 0700) != 0 && errno != EEXIST) {
        const int e = errno;
        if (e == ENOENT && make_dirs(fdir) == 0) continue;  // the cache root itself was removed
        why = "cannot create " + fdir.string() + ": " + errno_text(e);
        break;
      }
      const fs::path tmp =
          fdir / (std::string(kTmpPrefix) + hex64(k.hi) + hex64(k.lo) + "-" +
                  std::to_string(::getpid()) + "-" + hex64(nonce_) + "-" +
                  std::to_string(tmp_counter_.fetch_add(1, std::memory_order_relaxed)));
      const int raw = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (raw < 0) {
        const int e = errno;
        if (e == ENOENT) continue;
        why = "cannot create " + tmp.string() + ": " + errno_text(e);
        break;
      }
      Fd fd(raw);
      iovec iov[2] = {{&h, sizeof h}, {const_cast<std::byte*>(payload.data()), payload.size()}};
      int e = writev_all(fd.get(), iov, payload.empty() ? 1 : 2);
      if (!e) set_times(fd.get());
      if (!e && opts_.fsync && ::fsync(fd.get()) != 0) e = errno;
      if (const int c = fd.close(); !e) e = c;
      if (!e && ::rename(tmp.c_str(), final_path.c_str()) != 0) e = errno;
      if (e) {
        ::unlink(tmp.c_str());
        if (e == ENOENT) continue;
        why = "cannot write " + final_path.string() + ": " + errno_text(e);
        break;
      }
      if (opts_.fsync) {
        Fd d(::open(fdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (d.get() >= 0) (void)::fsync(d.get());
      }
      stored = true;
    }
    if (!stored) {
      store_failed(f, why.empty() ? "its directory kept disappearing" : why);
      return;
    }
    const std::uint64_t bytes = sizeof h + payload.size();
    if (opts_.verbose) {
      char took[32];
      if (seconds < 1e-3) {
        std::snprintf(took, sizeof took, "%.1f us", seconds * 1e6);
      } else if (seconds < 1) {
        std::snprintf(took, sizeof took, "%.1f ms", seconds * 1e3);
      } else {
        std::snprintf(took, sizeof took, "%.2f s", seconds);
      }
      say("parx::Memory: " + f.name + ": miss, ran in " + took + ", stored " + human_bytes(bytes) +
          " as " + final_path.string());
    }
    keep_limits(bytes);
  } catch (const std::exception& e) {  // allocation failure building paths or messages
    store_failed(f, e.what());
  }
}

void MemoryCore::keep_limits(std::uint64_t stored_bytes) {
  if (!opts_.max_bytes && !opts_.max_entries) return;
  std::lock_guard lk(evict_mu_);
  if (estimate_valid_ && ++stores_since_scan_ < kRescanEvery) {
    est_bytes_ += stored_bytes;
    est_entries_ += 1;
    const bool over = (opts_.max_bytes && est_bytes_ > opts_.max_bytes) ||
                      (opts_.max_entries && est_entries_ > opts_.max_entries);
    if (!over) return;
  }
  evict_locked(opts_.max_bytes, opts_.max_entries);
}

void MemoryCore::evict_locked(std::uint64_t max_bytes, std::uint64_t max_entries) {
  std::vector<EntryFile> files = scan(dir_, /*tidy=*/true);
  std::uint64_t bytes = 0;
  for (const EntryFile& e : files)
    bytes += e.size;
  std::uint64_t entries = files.size();
  auto over = [&] {
    return (max_bytes && bytes > max_bytes) || (max_entries && entries > max_entries);
  };
  if (over()) {
    // Least recently used first; the name breaks ties so every process picks the same order.
    std::sort(files.begin(), files.end(), [](const EntryFile& a, const EntryFile& b) {
      if (older(a.mtime, b.mtime)) return true;
      if (older(b.mtime, a.mtime)) return false;
      return a.path < b.path;
    });
    for (const EntryFile& e : files) {
      if (!over()) break;
      const int r = ::unlink(e.path.c_str());
      if (r == 0) evictions_.fetch_add(1, std::memory_order_relaxed);
      // Gone already (another process evicted it): it no longer counts either way.
      if (r == 0 || errno == ENOENT) {
        bytes -= e.size;
        --entries;
      }
    }
  }
  estimate_valid_ = true;
  est_bytes_ = bytes;
  est_entries_ = entries;
  stores_since_scan_ = 0;
}

void MemoryCore::reduce_size(std::uint64_t max_bytes, std::uint64_t max_entries) {
  std::lock_guard lk(evict_mu_);
  evict_locked(max_bytes, max_entries);
}

void MemoryCore::clear(const MemoryFn* f) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  if (f) {
    dirs.push_back(function_dir(*f));
  } else {
    for (fs::directory_iterator d(dir_, ec), end; !ec && d != end; d.increment(ec))
      if (is_function_dir_name(d->path().filename().native())) dirs.push_back(d->path());
  }
  const std::int64_t now = static_cast<std::int64_t>(::time(nullptr));
  for (const fs::path& d : dirs) {
    std::error_code ec2;
    for (fs::directory_iterator it(d, ec2), end; !ec2 && it != end; it.increment(ec2)) {
      const std::string name = it->path().filename().native();
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0) continue;
      // Temporary files of writers still at work stay (their rename would fail); stale ones go.
      const bool stale_tmp = is_tmp_name(name) &&
                             now - static_cast<std::int64_t>(st.st_mtim.tv_sec) > kStaleTmpSeconds;
      if ((is_entry_name(name) && !S_ISDIR(st.st_mode)) || stale_tmp) ::unlink(it->path().c_str());
    }
    ::rmdir(d.c_str());  // fails, harmlessly, while anything else is in it
  }
  std::lock_guard lk(evict_mu_);
  estimate_valid_ = false;
}

MemoryStats MemoryCore::stats() const {
  MemoryStats s;
  s.hits = hits_.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.corrupt = corrupt_.load(std::memory_order_relaxed);
  s.evictions = evictions_.load(std::memory_order_relaxed);
  s.store_failures = store_failures_.load(std::memory_order_relaxed);
  for (const EntryFile& e : scan(dir_, /*tidy=*/false)) {
    ++s.entries;
    s.bytes += e.size;
  }
  return s;
}

}  // namespace parx::detail

namespace parx {

Memory::Memory(const std::filesystem::path& dir, Options opts)
    : core_(std::make_shared<detail::MemoryCore>(dir, opts)) {}

void Memory::clear() const {
  core_->clear(nullptr);
}

void Memory::clear(std::string_view name) const {
  const detail::MemoryFn f = detail::memory_named_fn(name);
  core_->clear(&f);
}

Memory::Stats Memory::stats() const {
  return core_->stats();
}

void Memory::reduce_size(std::uint64_t max_bytes, std::size_t max_entries) const {
  core_->reduce_size(max_bytes, max_entries);
}

}  // namespace parx
