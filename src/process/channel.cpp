// The ProcessPool's shared-memory channel: frames on rings, descriptors over the worker's socket,
// payloads by reference (layout in process/channel.hpp).
#include "process/channel.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/wire.hpp"
#include "parx/detail/sync.hpp"

#define XXH_INLINE_ALL  // header-only use of libxxhash: nothing to link
#include <xxhash.h>

namespace parx::detail::channel {

using engine::round_up;

std::uint32_t frame_check(const FrameHeader& h,
                          std::span<const std::byte> inline_payload) noexcept {
  const XXH64_hash_t seed = XXH3_64bits(&h, offsetof(FrameHeader, check));
  return static_cast<std::uint32_t>(
      XXH3_64bits_withSeed(inline_payload.data(), inline_payload.size(), seed));
}

// ---- descriptors over the worker's socket ------------------------------------------------------

bool send_fd(int sock, int fd) {
  char byte = 'F';
  iovec iov{&byte, 1};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  for (;;) {
    if (sendmsg(sock, &m, MSG_NOSIGNAL) == 1) return true;
    if (errno != EINTR) return false;
  }
}

int recv_fd(int sock, bool block) {
  char byte = 0;
  iovec iov{&byte, 1};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t r;
  do {
    r = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | (block ? 0 : MSG_DONTWAIT));
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return -1;
  int fd = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

int memfd_with(std::span<const std::byte> bytes, const char* name) {
  const int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t put = 0;
  while (put < bytes.size()) {
    const ssize_t w = write(fd, bytes.data() + put, bytes.size() - put);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int e = errno;
      close(fd);
      errno = e ? e : EIO;
      return -1;
    }
    put += static_cast<std::size_t>(w);
  }
  return fd;
}

bool Mapped::open(int fd, std::size_t size, std::string& why) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<std::size_t>(st.st_size) != size) {
    why = "payload descriptor holds " + std::to_string(st.st_size) + " bytes, frame says " +
          std::to_string(size);
    close(fd);
    return false;
  }
  if (size) {
    void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      why = std::string("mmap of a payload failed: ") + std::strerror(errno);
      close(fd);
      return false;
    }
    p_ = static_cast<const std::byte*>(p);
  }
  n_ = size;
  close(fd);
  return true;
}

Mapped::~Mapped() {
  if (p_) munmap(const_cast<std::byte*>(p_), n_);
}

// ---- rings -----------------------------------------------------------------------------------

bool ring_put(Ring r, std::uint32_t kind, std::uint64_t job, std::uint32_t flags,
              std::span<const std::byte> payload, std::uint64_t byref_size) {
  const bool byref = flags & kByRef;
  const std::size_t inline_bytes = byref ? 0 : payload.size();
  const std::size_t need = sizeof(FrameHeader) + round_up(inline_bytes, kFrameAlign);
  std::uint64_t tail = r.ctl->tail.load(std::memory_order_relaxed);
  const std::uint64_t head = r.ctl->head.load(std::memory_order_acquire);
  const std::size_t off = tail % kRingBytes;
  const std::size_t skip = off + need > kRingBytes ? kRingBytes - off : 0;
  if (tail + skip + need - head > kRingBytes) return false;
  if (skip) {
    FrameHeader s{kMagic, kSkip, 0, skip - sizeof(FrameHeader), 0, 0};
    s.check = frame_check(s, {});
    std::memcpy(r.data + off, &s, sizeof s);
    tail += skip;
  }
  FrameHeader h{kMagic, kind, job, byref ? byref_size : payload.size(), flags, 0};
  h.check = frame_check(h, payload.first(inline_bytes));
  std::byte* at = r.data + tail % kRingBytes;
  std::memcpy(at, &h, sizeof h);
  if (inline_bytes) std::memcpy(at + sizeof h, payload.data(), inline_bytes);
  r.ctl->tail.store(tail + need, std::memory_order_release);
  return true;
}

void ring_bell(RingControl* ctl) {
  ctl->bell.fetch_add(1, std::memory_order_seq_cst);
  if (ctl->sleeping.load(std::memory_order_seq_cst)) futex_wake_shared(&ctl->bell, 1);
}

Peek ring_peek(Ring r, Frame& f, std::string& why) {
  for (;;) {
    const std::uint64_t head = r.ctl->head.load(std::memory_order_relaxed);
    const std::uint64_t tail = r.ctl->tail.load(std::memory_order_acquire);
    if (head == tail) return Peek::Empty;
    if (tail - head > kRingBytes || (tail - head) % kFrameAlign || head % kFrameAlign) {
      why = "ring positions out of range (head " + std::to_string(head) + ", tail " +
            std::to_string(tail) + ")";
      return Peek::Corrupt;
    }
    const std::size_t off = head % kRingBytes;
    std::memcpy(&f.h, r.data + off, sizeof f.h);
    if (f.h.magic != kMagic) {
      why = "bad frame magic";
      return Peek::Corrupt;
    }
    const bool byref = f.h.flags & kByRef;
    const std::size_t inline_bytes = (f.h.kind == kSkip || byref) ? 0 : f.h.size;
    if (f.h.kind == kSkip) {
      if (f.h.size != kRingBytes - off - sizeof(FrameHeader) || f.h.check != frame_check(f.h, {}) ||
          tail - head < kRingBytes - off) {
        why = "bad padding frame";
        return Peek::Corrupt;
      }
      r.ctl->head.store(head + (kRingBytes - off), std::memory_order_release);
      continue;
    }
    if (inline_bytes > kInlineLimit) {
      why = "frame size " + std::to_string(f.h.size) + " exceeds the inline limit";
      return Peek::Corrupt;
    }
    const std::size_t need = sizeof(FrameHeader) + round_up(inline_bytes, kFrameAlign);
    if (off + need > kRingBytes || need > tail - head) {
      why = "frame overruns the ring";
      return Peek::Corrupt;
    }
    f.payload = {r.data + off + sizeof(FrameHeader), inline_bytes};
    if (f.h.check != frame_check(f.h, f.payload)) {
      why = "checksum mismatch";
      return Peek::Corrupt;
    }
    f.next = head + need;
    return Peek::Frame;
  }
}

void ring_pop(Ring r, const Frame& f) {
  r.ctl->head.store(f.next, std::memory_order_release);
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

std::size_t resident_bytes(int pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (!f) return 0;
  unsigned long long size = 0, rss = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &rss);
  std::fclose(f);
  return n == 2 ? static_cast<std::size_t>(rss) * static_cast<std::size_t>(sysconf(_SC_PAGESIZE))
                : 0;
}

}  // namespace parx::detail::channel
