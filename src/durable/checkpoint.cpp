// The checkpoint journal of a map (see parx/detail/journal.hpp for the file layout).
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "parx/detail/journal.hpp"
#include "parx/detail/sync.hpp"
#include "parx/errors.hpp"
#include "parx/log.hpp"

#define XXH_INLINE_ALL  // header-only use of libxxhash: nothing to link
#include <xxhash.h>

namespace parx::detail {
namespace {

constexpr char kMagic[8] = {'P', 'A', 'R', 'X', 'C', 'K', 'P', '1'};
constexpr std::uint32_t kFormat = 1;
constexpr std::uint32_t kRecordMagic = 0x31525850;  // "PXR1"
constexpr std::size_t kRecordHead = 24;             // magic, len, index, input hash
constexpr std::uint32_t kMaxRecord = 1u << 30;
constexpr std::size_t kMaxFingerprint = 1 << 16;

template <class T>
T read_le(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(std::vector<std::byte>& out, T v) {
  const auto* b = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), b, b + sizeof v);
}

std::string errno_text() {
  return std::strerror(errno);
}

bool write_all(int fd, const std::byte* p, std::size_t n, std::string& why) {
  while (n) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      why = errno_text();
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

std::uint64_t record_sum(const std::byte* head, std::span<const std::byte> result) {
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  XXH3_64bits_update(&st, head, kRecordHead);
  XXH3_64bits_update(&st, result.data(), result.size());
  return XXH3_64bits_digest(&st);
}

}  // namespace

std::uint64_t Journal::hash(std::span<const std::byte> bytes) noexcept {
  return XXH3_64bits(bytes.data(), bytes.size());
}

Journal::Journal(std::string path, std::string fingerprint, std::chrono::milliseconds sync)
    : path_(std::move(path)), fingerprint_(std::move(fingerprint)), sync_(sync) {
  if (path_.empty()) throw InvalidArgument("checkpoint: the journal path is empty");
  if (sync_.count() < 0) throw InvalidArgument("checkpoint_sync must be >= 0");
  // Never through a symlink, never blocking on a FIFO; load() refuses what is not a regular file.
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (fd_ < 0 && errno == ELOOP)
    throw CheckpointError(path_ + ": the checkpoint journal is a symbolic link; parx opens only " +
                          "a regular file there (give the link's target instead)");
  if (fd_ < 0)
    throw CheckpointError(path_ + ": cannot open the checkpoint journal: " + errno_text());
  try {
    // One writer at a time: a second program (or a second map in this one) appending to the same
    // journal would interleave records, and the next run would find it corrupt.
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0)
      throw CheckpointError(
          path_ + (errno == EWOULDBLOCK
                       ? ": another map is writing this checkpoint journal now (in this program "
                         "or another); give each running map its own journal"
                       : ": cannot lock the checkpoint journal: " + errno_text()));
    load();
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  last_sync_ = now_ns();
}

Journal::~Journal() {
  if (fd_ < 0) return;
  ::fsync(fd_);
  ::close(fd_);
}

namespace {

// Reads a journal a window at a time: memory stays proportional to the largest record, whatever
// size the file claims (a sparse 100 GB file costs one window to refuse).
class FileWindow {
 public:
  static constexpr std::size_t kWindow = std::size_t{1} << 20;
  FileWindow(int fd, std::size_t size, const std::string& path)
      : fd_(fd), size_(size), path_(path) {}
  // Bytes [pos, pos + n) of the file (pos + n <= size).
  const std::byte* get(std::size_t pos, std::size_t n) {
    if (pos >= base_ && pos + n <= base_ + buf_.size()) return buf_.data() + (pos - base_);
    const std::size_t want = std::min(size_ - pos, std::max(n, kWindow));
    buf_.resize(want);
    base_ = pos;
    for (std::size_t got = 0; got < want;) {
      const ssize_t r = ::pread(fd_, buf_.data() + got, want - got, static_cast<off_t>(pos + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        throw CheckpointError(path_ + ": cannot read: " +
                              (r == 0 ? std::string("the file shrank while being read")
                                      : std::string(std::strerror(errno))));
      got += static_cast<std::size_t>(r);
    }
    return buf_.data();
  }

 private:
  int fd_;
  std::size_t size_;
  const std::string& path_;
  std::size_t base_ = 0;
  std::vector<std::byte> buf_;
};

}  // namespace

void Journal::load() {
  struct stat st {};
  if (fstat(fd_, &st) != 0) throw CheckpointError(path_ + ": cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw CheckpointError(path_ + ": not a regular file");
  const auto size = static_cast<std::size_t>(st.st_size);
  FileWindow file(fd_, size, path_);
  std::vector<std::byte> h;
  h.insert(h.end(), reinterpret_cast<const std::byte*>(kMagic),
           reinterpret_cast<const std::byte*>(kMagic) + 8);
  store<std::uint32_t>(h, kFormat);
  store<std::uint32_t>(h, static_cast<std::uint32_t>(fingerprint_.size()));
  const auto* fp = reinterpret_cast<const std::byte*>(fingerprint_.data());
  h.insert(h.end(), fp, fp + fingerprint_.size());
  store<std::uint64_t>(h, XXH3_64bits(fingerprint_.data(), fingerprint_.size()));
  if (size < h.size() && (size == 0 || std::memcmp(file.get(0, size), h.data(), size) == 0)) {
    // New, or its header was cut short while first written: (re)start the file.
    std::string why;
    if (ftruncate(fd_, 0) != 0 || lseek(fd_, 0, SEEK_SET) != 0 ||
        !write_all(fd_, h.data(), h.size(), why) || fsync(fd_) != 0)
      throw CheckpointError(
          path_ + ": cannot write the journal header: " + (why.empty() ? errno_text() : why));
    return;
  }
  const std::byte* head = size < 16 ? nullptr : file.get(0, 16);
  if (!head || std::memcmp(head, kMagic, 8) != 0)
    throw CheckpointError(path_ +
                          ": not a parx checkpoint journal (bad magic). Delete it or choose "
                          "another path");
  if (read_le<std::uint32_t>(head + 8) != kFormat)
    throw CheckpointError(path_ + ": journal format " +
                          std::to_string(read_le<std::uint32_t>(head + 8)) +
                          " is not supported by this parx");
  const std::uint32_t fp_len = read_le<std::uint32_t>(head + 12);
  if (fp_len > kMaxFingerprint || size < 16 + std::size_t{fp_len} + 8)
    throw CheckpointError(path_ + ": the journal header is damaged");
  const std::byte* fp_at = file.get(16, std::size_t{fp_len} + 8);
  const std::string recorded(reinterpret_cast<const char*>(fp_at), fp_len);
  if (read_le<std::uint64_t>(fp_at + fp_len) != XXH3_64bits(recorded.data(), fp_len))
    throw CheckpointError(path_ + ": the journal header is damaged (checksum mismatch)");
  if (recorded != fingerprint_)
    throw CheckpointError(path_ +
                          ": this checkpoint was written by a different map.\n  recorded: " +
                          std::string(recorded) + "\n  this map: " + fingerprint_ +
                          "\nUse another checkpoint path, or delete the file to start over");

  std::size_t at = 16 + fp_len + 8;
  std::size_t n = 0;
  while (at < size) {
    const std::size_t left = size - at;
    if (left < kRecordHead + 8) break;  // torn tail
    const std::byte* r = file.get(at, kRecordHead + 8);
    const std::uint32_t magic = read_le<std::uint32_t>(r);
    const std::uint32_t len = read_le<std::uint32_t>(r + 4);
    const bool sane = magic == kRecordMagic && len <= kMaxRecord;
    const std::size_t total = kRecordHead + std::size_t{len} + 8;
    if (sane && left < total) break;  // torn tail: the last record was cut short
    if (sane) r = file.get(at, total);
    bool ok = sane;
    if (ok) {
      const std::span<const std::byte> result(r + kRecordHead, len);
      ok = record_sum(r, result) == read_le<std::uint64_t>(r + kRecordHead + len);
    }
    if (!ok) {
      // A record written last may be garbage if the machine (not just the program) crashed
      // mid-write; anywhere else it is damage.
      if (sane && at + total == size) break;
      if (!sane && left < 4096 &&
          std::all_of(file.get(at, left), file.get(at, left) + left,
                      [](std::byte b) { return b == std::byte{0}; }))
        break;  // zero-filled tail from a crash after the size was extended
      throw CheckpointError(path_ + ": record " + std::to_string(n) + " at byte " +
                            std::to_string(at) +
                            " is corrupt (checksum mismatch). The journal is damaged: parx will "
                            "not mix its results with new ones. Delete the file to start over");
    }
    const std::uint64_t index = read_le<std::uint64_t>(r + 8);
    const std::uint64_t in_hash = read_le<std::uint64_t>(r + 16);
    recorded_.try_emplace(index, in_hash,
                          std::vector<std::byte>(r + kRecordHead, r + kRecordHead + len));
    at += total;
    ++n;
  }
  if (at < size) {
    if (ftruncate(fd_, static_cast<off_t>(at)) != 0)
      throw CheckpointError(path_ + ": cannot cut the torn last record: " + errno_text());
  }
  if (lseek(fd_, static_cast<off_t>(at), SEEK_SET) < 0)
    throw CheckpointError(path_ + ": cannot seek: " + errno_text());
}

const std::vector<std::byte>* Journal::find(std::uint64_t index, std::uint64_t input_hash) {
  auto it = recorded_.find(index);
  if (it == recorded_.end()) return nullptr;
  if (it->second.first != input_hash)
    throw CheckpointError(path_ + ": item " + std::to_string(index) +
                          " differs from the input recorded for it: the inputs changed since "
                          "this checkpoint was written. Use another checkpoint path, or delete "
                          "the file to start over");
  return &it->second.second;
}

void Journal::append(std::span<const Record> records) noexcept {
  if (records.empty()) return;
  std::vector<std::byte> buf;
  std::size_t bytes = 0;
  for (const Record& r : records)
    bytes += kRecordHead + r.result.size() + 8;
  buf.reserve(bytes);
  for (const Record& r : records) {
    const std::size_t head = buf.size();
    store<std::uint32_t>(buf, kRecordMagic);
    store<std::uint32_t>(buf, static_cast<std::uint32_t>(r.result.size()));
    store<std::uint64_t>(buf, r.index);
    store<std::uint64_t>(buf, r.input_hash);
    buf.insert(buf.end(), r.result.begin(), r.result.end());
    const std::uint64_t sum = record_sum(buf.data() + head, r.result);
    store<std::uint64_t>(buf, sum);
  }
  std::string failed;
  {
    std::lock_guard lk(mu_);
    if (!write_error_.empty() || fd_ < 0) return;
    std::string why;
    if (!write_all(fd_, buf.data(), buf.size(), why)) {
      failed = write_error_ = why;
    } else {
      const std::int64_t now = now_ns();
      if (now - last_sync_ >= std::chrono::nanoseconds(sync_).count()) {
        if (fdatasync(fd_) != 0) failed = write_error_ = errno_text();
        last_sync_ = now;
      }
    }
  }
  if (!failed.empty()) warn_failed(failed);
}

// Said once, when it happens: a user watching a long map learns at once that a re-run would no
// longer resume it all, and can free the disk or stop the program.
void Journal::warn_failed(const std::string& why) noexcept {
  try {
    log::warn("checkpoint ", path_, ": writing the journal failed (", why,
              "); the map goes on and returns every result, but items from here on are not "
              "recorded and a re-run would run them again");
  } catch (...) {
  }
}

std::string Journal::close() {
  std::string failed;
  std::string error;
  {
    std::lock_guard lk(mu_);
    if (fd_ >= 0 && write_error_.empty() && fdatasync(fd_) != 0)
      failed = write_error_ = errno_text();
    error = write_error_;
  }
  if (!failed.empty()) warn_failed(failed);
  return error;
}

}  // namespace parx::detail
