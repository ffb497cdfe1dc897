// ProcessPool: the parent's I/O thread, the worker processes' main loop, and the shared-memory
// channel between them (layout in parx/detail/process_channel.hpp).
//
// Parent side. All scheduling state sits under one mutex. A submitting thread queues its job and,
// when a worker has room, writes it straight into that worker's request ring (no hop through
// another thread). One I/O thread reads every response ring, completes futures (outside the
// lock), dispatches queued jobs to workers that freed up, enforces timeouts and memory ceilings,
// and handles worker exits: it attributes the death to the exact item from the worker's status
// words, fails or retries that item, requeues the others and starts a replacement. It sleeps on
// the pool's doorbell futex, which workers, submitters and the fork server's exit reports bump.
//
// Worker side. A worker is a process forked by the fork server running `worker_main`: it maps its
// region, runs the initializer, then loops: wait for a request frame (spin, then futex), run its
// items through the registry's type-checked invokers, post one result frame.
#include "parx/process_pool.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "parx/detail/fork_server.hpp"
#include "parx/detail/output_relay.hpp"
#include "parx/detail/process_channel.hpp"
#include "parx/detail/sync.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/metrics.hpp"

#define XXH_INLINE_ALL  // header-only use of libxxhash: nothing to link
#include <xxhash.h>

namespace parx::detail {

void set_throw_capture(bool on) noexcept;
void clear_throw_trace() noexcept;
std::string last_throw_trace();

// ---- frame checksum ----------------------------------------------------------------------------

namespace channel {

std::uint32_t frame_check(const FrameHeader& h,
                          std::span<const std::byte> inline_payload) noexcept {
  const XXH64_hash_t seed = XXH3_64bits(&h, offsetof(FrameHeader, check));
  return static_cast<std::uint32_t>(
      XXH3_64bits_withSeed(inline_payload.data(), inline_payload.size(), seed));
}

}  // namespace channel

namespace {

using namespace channel;

constexpr std::size_t kPrefetch = 2;  // jobs a worker may hold: one running, one queued
// Jobs that run longer than this (recent average) go only to idle workers: a job queued behind a
// long one could not move to a worker that frees up first, and the tail of a map would straggle.
// Shorter jobs are queued ahead so a worker never waits for a round trip.
constexpr std::int64_t kLongJobNs = 1'000'000;
// A job item's header is [i64 index][u64 word]: the low 56 bits of word are the length of the
// encoded arguments, the top 8 bits the zero padding before them (a resent item keeps its
// arguments at the same offset modulo 64, so alignment inside them still lines up).
constexpr std::uint64_t kItemLenMask = (std::uint64_t{1} << 56) - 1;
// A batch job (kBatch) is [u64 fn][u64 n][u64 argument size][u64 result size] then the n packed
// arguments; its result is [u64 n][i64 elapsed][u64 errors][u64 result size], the n packed
// results (zero bytes where an item threw) padded to 8, then per error [u64 position][u64 length]
// and the encoded TaskErrorInfo.
constexpr std::size_t kBatchHeader = 32;
constexpr std::size_t kMaxBatchElem = 1 << 16;

std::size_t round_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

std::int64_t spin_ns_from(std::chrono::microseconds spin) {
  if (spin.count() >= 0) return spin.count() * 1000;
  if (const char* e = std::getenv("PARX_SPIN_US")) return std::atoll(e) * 1000;
  return 50'000;
}

// CLOCK_MONOTONIC at tick resolution (a few ms): cheap enough to stamp every item, and the same
// clock as now_ns() up to that resolution (timeouts are checked against now_ns()).
std::int64_t coarse_now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
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

// Receives a descriptor; -1 if none is there (non-blocking) or the peer is gone.
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

// A memfd holding `bytes`; -1 and errno on failure.
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

// A read-only mapping of a payload passed by reference.
class Mapped {
 public:
  Mapped() = default;
  // Maps `fd` (closing it), which must hold exactly `size` bytes.
  bool open(int fd, std::size_t size, std::string& why) {
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
  ~Mapped() {
    if (p_) munmap(const_cast<std::byte*>(p_), n_);
  }
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  std::span<const std::byte> bytes() const noexcept { return {p_, n_}; }

 private:
  const std::byte* p_ = nullptr;
  std::size_t n_ = 0;
};

// ---- rings -----------------------------------------------------------------------------------

struct Ring {
  RingControl* ctl;
  std::byte* data;
};

// Producer side: appends a frame with `payload` inline (or, kByRef, just the header: `size` is the
// referenced payload's). Returns false if the ring has no room.
bool ring_put(Ring r, std::uint32_t kind, std::uint64_t job, std::uint32_t flags,
              std::span<const std::byte> payload, std::uint64_t byref_size = 0) {
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

// Wakes the consumer of `r` if it sleeps.
void ring_bell(RingControl* ctl) {
  ctl->bell.fetch_add(1, std::memory_order_seq_cst);
  if (ctl->sleeping.load(std::memory_order_seq_cst)) futex_wake_shared(&ctl->bell, 1);
}

struct Frame {
  FrameHeader h;
  std::span<const std::byte> payload;  // inline payload (empty for kByRef)
  std::uint64_t next;                  // head after this frame
};

enum class Peek { Empty, Frame, Corrupt };

// Consumer side: the next frame, validated (magic, kind, size, position and checksum); skips
// padding frames. Never reads outside the ring whatever the bytes say.
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

template <class T>
T load_at(std::span<const std::byte> b, std::size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

// ---- the worker process ------------------------------------------------------------------------

struct WorkerBoot {
  std::uint64_t region_offset = 0;
  std::uint64_t max_tasks = 0;
  std::uint64_t memory_limit = 0;
  std::int64_t spin_ns = 0;
  bool timed = false;  // a per-task timeout is set: stamp every item's start
  std::uint64_t init_fn = 0;
  std::string init_args;
  bool relay = false;             // stdout and stderr arrive as two pipes after the channel
  std::int32_t index = 0;         // the worker's index in its pool (its origin)
  std::int32_t origin_rank = -1;  // the pool's rank when it runs on a ClusterPool's rank
  std::string origin_host;        // that rank's host when it is not the driver's
};

std::size_t resident_bytes(pid_t pid) {
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

TaskErrorInfo error_info(std::exception_ptr e, std::int64_t index, const std::string& function,
                         const std::string& host) {
  TaskErrorInfo i;
  i.type_name = exception_type_name(e);
  i.message = exception_message(e);
  i.task_index = index;
  i.function = function;
  i.host = host;
  i.pid = getpid();
  i.stack_trace = last_throw_trace();
  return i;
}

class Worker {
 public:
  Worker(const WorkerBoot& b, int sock, PoolHeader* hdr, RegionLayout* reg)
      : boot_(b),
        sock_(sock),
        hdr_(hdr),
        reg_(reg),
        req_{&reg->req, req_data(reg)},
        resp_{&reg->resp, resp_data(reg)},
        host_(host_name()) {}

  int run() {
    reg_->status.pid.store(getpid(), std::memory_order_relaxed);
    set_throw_capture(true);
    if (boot_.init_fn) {
      const RemoteEntry* e = find_remote(boot_.init_fn);
      try {
        clear_throw_trace();
        (void)invoke_remote(boot_.init_fn, std::as_bytes(std::span(boot_.init_args)));
      } catch (...) {
        const Bytes b =
            encode(error_info(std::current_exception(), -1,
                              "initializer " + (e ? e->name : std::string("(unknown)")), host_));
        post(kInitFailed, 0, 0, b);
        return 0;
      }
    }
    post(kReady, 0, 0, {});
    for (;;) {
      wait_request();
      Frame f;
      std::string why;
      const Peek p = ring_peek(req_, f, why);
      if (p == Peek::Empty) continue;
      if (p == Peek::Corrupt) return refuse(why);
      if (f.h.kind == kStop) return 0;
      if (f.h.kind != kRun) return refuse("unexpected frame kind " + std::to_string(f.h.kind));
      Mapped by_ref;
      std::span<const std::byte> payload = f.payload;
      if (f.h.flags & kByRef) {
        const int fd = recv_fd(sock_, true);
        if (fd < 0) return refuse("a payload sent by reference did not arrive");
        if (!by_ref.open(fd, f.h.size, why)) return refuse(why);
        payload = by_ref.bytes();
      }
      const std::uint64_t job = f.h.job;
      const bool batch = f.h.flags & kBatch;
      if (!(batch ? run_batch(job, payload, why) : run_job(job, payload, why))) return refuse(why);
      ring_pop(req_, f);
      std::fflush(stdout);
      std::fflush(stderr);
      done_ += last_items_;  // the task budget counts items, as the parent's dispatch does
      bool retire = boot_.max_tasks && done_ >= boot_.max_tasks;
      if (boot_.memory_limit && resident_bytes(getpid()) > boot_.memory_limit) retire = true;
      // Output still in the pipes is read by the parent before it delivers this result.
      const bool pending = boot_.relay && pending_output();
      post(kResult, job,
           (retire ? std::uint32_t{kRetire} : 0u) | (batch ? std::uint32_t{kBatch} : 0u) |
               (pending ? std::uint32_t{kOutput} : 0u),
           out_.bytes());
      if (retire) return 0;
    }
  }

 private:
  // Runs every item of a job into out_: [u64 n][i64 elapsed] then per item (8-aligned)
  // [u32 status][u32 0][u64 length] and the encoded result or TaskErrorInfo.
  bool run_job(std::uint64_t job, std::span<const std::byte> payload, std::string& why) {
    if (payload.size() < 16) {
      why = "job payload too short";
      return false;
    }
    const auto fn = load_at<std::uint64_t>(payload, 0);
    const auto n = load_at<std::uint64_t>(payload, 8);
    if (n > payload.size() / 16) {
      why = "job item count exceeds the payload";
      return false;
    }
    const RemoteEntry* entry = find_remote(fn);
    last_items_ = n;
    out_.clear();
    const std::uint64_t prefix[2] = {n, 0};
    out_.write(prefix, sizeof prefix);
    const std::int64_t t0 = now_ns();
    std::size_t pos = 16;
    WorkerStatus& st = reg_->status;
    st.job.store(job, std::memory_order_relaxed);
    st.item.store(0, std::memory_order_relaxed);
    st.item_started_ns.store(coarse_now_ns(), std::memory_order_relaxed);
    st.busy.store(1, std::memory_order_release);
    for (std::uint64_t k = 0; k < n; ++k) {
      if (pos + 16 > payload.size()) {
        why = "job item header beyond the payload";
        return false;
      }
      const auto index = load_at<std::int64_t>(payload, pos);
      const auto word = load_at<std::uint64_t>(payload, pos + 8);
      const std::size_t len = word & kItemLenMask, pad = word >> 56;
      if (pad >= 64 || len > payload.size() - pos - 16 - std::min<std::size_t>(pad, 64) ||
          pad > payload.size() - pos - 16) {
        why = "job item length beyond the payload";
        return false;
      }
      const std::size_t args_at = pos + 16 + pad;
      const std::span<const std::byte> args = payload.subspan(args_at, len);
      pos = args_at + len;

      st.item.store(static_cast<std::uint32_t>(k), std::memory_order_relaxed);
      if (boot_.timed) st.item_started_ns.store(coarse_now_ns(), std::memory_order_relaxed);

      const std::size_t hdr_at = out_.size();
      const std::uint64_t item_hdr[2] = {0, 0};
      out_.write(item_hdr, sizeof item_hdr);
      const std::size_t body_at = out_.size();
      std::uint32_t status = 0;
      try {
        clear_throw_trace();
        if (!entry) {
          char hex[32];
          std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fn));
          throw Error(std::string("parx: no function is registered under id ") + hex +
                      " in the worker (refused; was it built from a different program?)");
        }
        Decoder d(args, args_at);
        entry->invoke(entry->fn, d, out_);
      } catch (...) {
        out_.truncate(body_at);
        status = 1;
        out_.put(error_info(std::current_exception(), index, entry ? entry->name : "", host_));
      }
      const std::uint64_t blen = out_.size() - body_at;
      std::memcpy(out_.data() + hdr_at, &status, sizeof status);
      std::memcpy(out_.data() + hdr_at + 8, &blen, sizeof blen);
    }
    st.busy.store(0, std::memory_order_release);
    const std::int64_t elapsed = now_ns() - t0;
    std::memcpy(out_.data() + 8, &elapsed, sizeof elapsed);
    return true;
  }

  // Runs a batch job (layout at kBatchHeader) into out_: the function's batch form loops over the
  // packed arguments; an item that throws gets an error record and the loop resumes after it.
  bool run_batch(std::uint64_t job, std::span<const std::byte> payload, std::string& why) {
    if (payload.size() < kBatchHeader) {
      why = "batch payload too short";
      return false;
    }
    const auto fn = load_at<std::uint64_t>(payload, 0);
    const auto n = load_at<std::uint64_t>(payload, 8);
    const auto arg_size = load_at<std::uint64_t>(payload, 16);
    const auto result_size = load_at<std::uint64_t>(payload, 24);
    if (arg_size == 0 || arg_size > kMaxBatchElem || result_size > kMaxBatchElem ||
        (payload.size() - kBatchHeader) % arg_size != 0 ||
        n != (payload.size() - kBatchHeader) / arg_size) {
      why = "batch payload does not match its item count and sizes";
      return false;
    }
    const RemoteEntry* entry = find_remote(fn);
    std::string refusal;
    if (!entry) {
      char hex[32];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fn));
      refusal = std::string("parx: no function is registered under id ") + hex +
                " in the worker (refused; was it built from a different program?)";
    } else if (!entry->batch.invoke || entry->batch.arg_size != arg_size ||
               entry->batch.result_size != result_size) {
      refusal = "parx: " + entry->name +
                " in the worker does not take a batch of this shape (was it built from a "
                "different program?)";
    }
    last_items_ = n;
    out_.clear();
    const std::uint64_t prefix[4] = {n, 0, 0, result_size};
    out_.write(prefix, sizeof prefix);
    const std::size_t results_at = out_.size();
    out_.extend(round_up(n * result_size, 8));
    const std::byte* in = payload.data() + kBatchHeader;
    WorkerStatus& st = reg_->status;
    st.job.store(job, std::memory_order_relaxed);
    st.item.store(0, std::memory_order_relaxed);
    st.item_started_ns.store(coarse_now_ns(), std::memory_order_relaxed);
    st.busy.store(1, std::memory_order_release);
    const std::int64_t t0 = now_ns();
    std::uint64_t errors = 0;
    std::size_t i = 0;
    while (i < n) {
      try {
        clear_throw_trace();
        if (!refusal.empty()) {
          st.item.store(static_cast<std::uint32_t>(i), std::memory_order_relaxed);
          throw Error(refusal);
        }
        if (boot_.timed) {  // one item per call, each with its start time for the deadline
          st.item_started_ns.store(coarse_now_ns(), std::memory_order_relaxed);
          entry->batch.invoke(entry->fn, in, out_.data() + results_at, i, i + 1, &st.item);
        } else {
          entry->batch.invoke(entry->fn, in, out_.data() + results_at, i, n, &st.item);
        }
      } catch (...) {
        std::memset(out_.data() + results_at + i * result_size, 0, result_size);
        const std::size_t hdr_at = out_.size();
        const std::uint64_t hdr[2] = {i, 0};
        out_.write(hdr, sizeof hdr);
        out_.put(error_info(std::current_exception(), static_cast<std::int64_t>(i),
                            entry ? entry->name : "", host_));
        const std::uint64_t len = out_.size() - hdr_at - sizeof hdr;
        std::memcpy(out_.data() + hdr_at + 8, &len, sizeof len);
        ++errors;
        ++i;
      }
    }
    st.busy.store(0, std::memory_order_release);
    const std::int64_t elapsed = now_ns() - t0;
    std::memcpy(out_.data() + 8, &elapsed, sizeof elapsed);
    std::memcpy(out_.data() + 16, &errors, sizeof errors);
    return true;
  }

  int refuse(const std::string& why) {
    const std::string msg = "worker pid " + std::to_string(getpid()) + " refused a request: " + why;
    post(kRefused, 0, 0, std::as_bytes(std::span(msg.data(), msg.size())));
    return 3;
  }

  void wait_request() {
    RingControl* c = req_.ctl;
    auto ready = [c] {
      return c->tail.load(std::memory_order_acquire) != c->head.load(std::memory_order_relaxed);
    };
    if (ready()) return;
    // Spin, yielding the core between looks: on a machine with more runnable threads than cores
    // (the parent's threads, other workers) a pure spin would delay the very work it waits for.
    const std::int64_t until = now_ns() + boot_.spin_ns;
    while (now_ns() < until) {
      for (int i = 0; i < 32; ++i) {
        if (ready()) return;
        cpu_relax();
      }
      sched_yield();
    }
    for (;;) {
      const std::uint32_t v = c->bell.load(std::memory_order_seq_cst);
      c->sleeping.store(1, std::memory_order_seq_cst);
      if (ready()) {
        c->sleeping.store(0, std::memory_order_relaxed);
        return;
      }
      futex_wait_shared(&c->bell, v, 1'000'000'000);
      c->sleeping.store(0, std::memory_order_relaxed);
      if (ready()) return;
    }
  }

  void post(std::uint32_t kind, std::uint64_t job, std::uint32_t flags,
            std::span<const std::byte> payload) {
    int fd = -1;
    if (payload.size() > kInlineLimit) {
      fd = memfd_with(payload, "parx-result");
      if (fd < 0 || !send_fd(sock_, fd)) {
        std::fprintf(stderr, "parx: worker %d cannot send a result by reference: %s\n",
                     static_cast<int>(getpid()), std::strerror(errno));
        _exit(4);
      }
      close(fd);
      flags |= kByRef;
    }
    while (!ring_put(resp_, kind, job, flags, payload, payload.size()))
      std::this_thread::sleep_for(std::chrono::microseconds(50));  // the parent drains it
    hdr_->bell.fetch_add(1, std::memory_order_seq_cst);
    if (hdr_->io_sleeping.load(std::memory_order_seq_cst)) futex_wake_shared(&hdr_->bell, 1);
  }

  WorkerBoot boot_;
  int sock_;
  PoolHeader* hdr_;
  RegionLayout* reg_;
  Ring req_, resp_;
  std::string host_;
  Encoder out_{64 * 1024};
  std::uint64_t done_ = 0;        // items run
  std::uint64_t last_items_ = 0;  // items of the last job
};

void worker_main(WorkerBoot boot) {
  const int sock = ForkServer::take_channel_fd();
  if (sock < 0) _exit(120);
  const int memfd = recv_fd(sock, true);
  if (memfd < 0) _exit(0);  // the pool went away before this worker booted
  if (boot.relay) {
    const int out = recv_fd(sock, true);
    const int err = recv_fd(sock, true);
    if (out < 0 || err < 0) _exit(0);
    adopt_relay(out, err);
  }
  if (boot.origin_rank >= 0) set_origin_rank(boot.origin_rank, boot.origin_host);
  set_origin_worker(boot.index);
  void* hdr = mmap(nullptr, kHeaderBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  void* reg = mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd,
                   static_cast<off_t>(boot.region_offset));
  close(memfd);
  if (hdr == MAP_FAILED || reg == MAP_FAILED) _exit(121);
  Worker w(boot, sock, static_cast<PoolHeader*>(hdr), static_cast<RegionLayout*>(reg));
  const int code = w.run();
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

}  // namespace
}  // namespace parx::detail

PARX_REMOTE_AS(parx::detail::worker_main, "parx::process_pool_worker");

namespace parx::detail {
namespace {

// ---- the parent: jobs, slots, the I/O thread
// ------------------------------------------------------

struct Holder {
  std::unique_ptr<PoolSink> sink;
  std::size_t remaining = 0;
  std::int64_t elapsed = 0;
  bool started = false;
  bool finished = false;
};

struct ItemRef {
  std::int64_t index;
  std::size_t offset;  // of its header in the original payload
  std::size_t slot;    // position in the sink
  int attempts = 0;
};

struct Job {
  std::uint64_t id = 0;
  FunctionId fn = 0;
  std::string fn_name;
  std::shared_ptr<Holder> holder;
  std::shared_ptr<const Bytes> orig;  // payload as built by the caller
  std::vector<ItemRef> items;  // empty for a fresh batch job: item k is {first_index + k, k, k}
  std::size_t count = 0;       // items in the job
  std::int64_t first_index = 0;
  int memfd = -1;              // payload by reference, kept until the job completes
  int blameless = 0;           // requeues after deaths that did not start it
  bool batch = false;          // packed arguments (kBatch); items[k].offset is the position
  std::uint32_t arg_size = 0;  // batch: bytes per packed argument and result
  std::uint32_t result_size = 0;
  std::uint64_t task_id = 0;  // observe events (0 when nobody listened at submission)
  ~Job() {
    if (memfd >= 0) close(memfd);
  }
  std::span<const std::byte> payload() const { return *orig; }
  ItemRef item(std::size_t k) const {
    return items.empty() ? ItemRef{first_index + static_cast<std::int64_t>(k), k, k, 0} : items[k];
  }
  // Every item, made explicit (for splits and failure paths).
  std::vector<ItemRef>& all_items() {
    if (items.empty())
      for (std::size_t k = 0; k < count; ++k)
        items.push_back({first_index + static_cast<std::int64_t>(k), k, k, 0});
    return items;
  }
};

struct Slot {
  enum State { Empty, Booting, Ready, Retiring, Stopping };
  std::size_t index = 0;
  RegionLayout* reg = nullptr;
  Ring req{}, resp{};
  pid_t pid = 0;
  int sock = -1;
  State state = Empty;
  std::deque<std::unique_ptr<Job>> assigned;
  std::size_t budget_used = 0;
  enum Kill { None, Timeout, Memory, Corrupt, Stop } kill = None;
  std::string kill_detail;
  std::int64_t respawn_at = 0;
  int init_failures = 0;
  bool initial = true;
  std::uint64_t last_used = 0;
  std::uint64_t tasks_ended = 0;
  std::shared_ptr<RelayStream> out, err;  // the worker's stdout and stderr (relayed output)
};

struct ExitInbox {
  std::mutex mu;
  std::deque<std::pair<pid_t, ExitStatus>> exits;
  bool closed = false;
  PoolHeader* hdr = nullptr;
};

}  // namespace

class ProcessPoolImpl final : public observe::detail::PoolSource {
 public:
  explicit ProcessPoolImpl(const ProcessPool::Options& o);
  ~ProcessPoolImpl();

  std::size_t workers() const noexcept { return slots_.size(); }
  void enqueue(FunctionId fn, Bytes payload, std::vector<PoolItem> items,
               std::unique_ptr<PoolSink> sink);
  void enqueue_batch(FunctionId fn, Bytes payload, std::size_t n, std::int64_t first_index,
                     std::unique_ptr<PoolSink> sink);
  void shutdown(bool wait, bool cancel_pending);
  std::vector<pid_t> pids() {
    std::lock_guard lk(mu_);
    std::vector<pid_t> out;
    for (auto& s : slots_)
      if (s.pid > 0 && s.state != Slot::Empty) out.push_back(s.pid);
    return out;
  }
  ProcessPool::Stats stats() {
    std::lock_guard lk(mu_);
    return stats_;
  }
  observe::Counters counters() {
    std::lock_guard lk(mu_);
    return counters_locked();
  }
  observe::PoolSnapshot snapshot() const override {
    auto* self = const_cast<ProcessPoolImpl*>(this);
    std::lock_guard lk(self->mu_);
    observe::PoolSnapshot snap;
    snap.id = exec_id_;
    snap.kind = "process";
    snap.counters = self->counters_locked();
    for (const Slot& sl : slots_) {
      observe::WorkerState w;
      w.index = static_cast<int>(sl.index);
      w.pid = sl.pid;
      w.host = host_;
      w.tasks = sl.tasks_ended;
      w.state = sl.state == Slot::Booting    ? "starting"
                : sl.state == Slot::Empty    ? (stopping_ ? "stopped" : "starting")
                : sl.state == Slot::Stopping ? "stopped"
                : sl.assigned.empty()        ? "idle"
                                             : "busy";
      snap.workers.push_back(std::move(w));
    }
    return snap;
  }
  std::uint64_t exec_id() const noexcept { return exec_id_; }
  bool is_shutdown() {
    std::lock_guard lk(mu_);
    return !accepting_;
  }

 private:
  using Done = std::vector<std::shared_ptr<Holder>>;

  void bump() {
    hdr_->bell.fetch_add(1, std::memory_order_seq_cst);
    if (hdr_->io_sleeping.load(std::memory_order_seq_cst)) futex_wake_shared(&hdr_->bell, 1);
  }
  observe::Counters counters_locked() const {
    observe::Counters c = counters_;
    for (const Slot& sl : slots_)
      c.running += sl.assigned.size();
    c.queue_depth = pending_.size();
    c.retried = stats_.retries;
    c.worker_restarts = stats_.respawns;
    return c;
  }
  // Observe events about a job (only when someone listens).
  void emit_job(observe::EventKind k, const Job& j, int worker = -1, pid_t pid = 0,
                std::int64_t duration_ns = 0, const char* detail = nullptr) const {
    if (!observe::active()) return;
    observe::Event e{};
    e.kind = k;
    e.executor_id = exec_id_;
    e.executor_kind = "process";
    e.task_id = j.task_id;
    e.worker = worker;
    e.name = j.fn_name.empty() ? nullptr : j.fn_name.c_str();
    e.pid = pid;
    e.items = static_cast<std::uint32_t>(j.count);
    e.duration_ns = duration_ns;
    e.detail = detail;
    e.host = host_.c_str();
    observe::emit(e);
  }
  void emit_worker(observe::EventKind k, const Slot& sl, const char* detail = nullptr) const {
    if (!observe::active()) return;
    observe::Event e{};
    e.kind = k;
    e.executor_id = exec_id_;
    e.executor_kind = "process";
    e.worker = static_cast<std::int32_t>(sl.index);
    e.pid = sl.pid;
    e.host = host_.c_str();
    e.detail = detail;
    observe::emit(e);
  }
  // A job left its worker: counted, and reported as finished or failed.
  void job_ended(const Slot& s, Job& j, std::size_t failures, std::int64_t elapsed,
                 std::string detail) {
    ++(failures ? counters_.failed : counters_.done);
    if (j.task_id)
      emit_job(failures ? observe::EventKind::TaskFailed : observe::EventKind::TaskFinished, j,
               static_cast<int>(s.index), s.pid, elapsed,
               detail.empty() ? nullptr : detail.c_str());
  }
  void release() noexcept;
  void spawn(Slot& s);
  void dispatch();
  bool send_job(Slot& s, Job& j);
  bool drain(Slot& s, Done& done);
  void handle_result(Slot& s, std::span<const std::byte> payload, Done& done);
  void handle_batch_result(Slot& s, std::span<const std::byte> payload, Done& done);
  void error_outcome(Job& j, const ItemRef& it, TaskErrorInfo info, std::vector<ItemRef>& retry,
                     Done& done);
  void submit_job(std::unique_ptr<Job> job);
  void handle_exit(Slot& s, const ExitStatus& es, Done& done);
  void kill_slot(Slot& s, Slot::Kill why, std::string detail);
  void requeue_front(std::vector<std::unique_ptr<Job>>& jobs);
  std::unique_ptr<Job> sub_job(const Job& j, std::vector<ItemRef> items);
  void queued_again(Job& n) {
    if (!observe::active()) return;
    n.task_id = observe::next_task_id();
    emit_job(observe::EventKind::TaskQueued, n);
  }
  void fail_item(Job& j, const ItemRef& it, std::exception_ptr e, Done& done);
  void item_done(Job& j, Done& done, std::size_t count = 1);
  bool step(Done& done, std::int64_t& wait_ns);
  void io_loop();
  // Running average of job durations (as workers report them), steering prefetch.
  void note_job_time(std::int64_t ns) {
    ns = std::clamp<std::int64_t>(ns, 0, std::int64_t{1} << 40);
    job_ns_ = job_ns_ < 0 ? ns : (3 * job_ns_ + ns) / 4;
  }
  void finish(Done& done) {
    for (auto& h : done)
      h->sink->finish(h->elapsed);
    done.clear();
  }

  ProcessPool::Options opts_;
  Output output_;
  std::int64_t spin_ns_;
  ForkServer& fs_;
  int memfd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t map_bytes_ = 0;
  PoolHeader* hdr_ = nullptr;
  std::shared_ptr<ExitInbox> inbox_;
  std::uint64_t listener_ = 0;
  std::thread io_;

  std::mutex mu_;
  std::condition_variable boot_cv_;
  std::deque<Slot> slots_;  // never relocated: slots are referenced while in use
  std::map<pid_t, std::size_t> by_pid_;
  std::deque<std::unique_ptr<Job>> pending_;
  std::uint64_t next_job_ = 1;
  bool accepting_ = true;
  bool stopping_ = false;
  bool finished_ = false;
  std::int64_t stop_deadline_ = 0;
  std::exception_ptr init_error_;
  ProcessPool::Stats stats_;
  std::uint64_t use_clock_ = 0;
  std::int64_t next_mem_check_ = 0;
  std::int64_t job_ns_ = -1;
  const std::uint64_t exec_id_ = observe::next_executor_id();
  const std::string host_ = host_name();
  observe::Counters counters_;  // submitted, done, failed, cancelled, bytes_moved (under mu_)
  observe::detail::PoolRegistration registration_;  // last: unregistered first
};

ProcessPoolImpl::ProcessPoolImpl(const ProcessPool::Options& o)
    : opts_(o),
      output_(resolve_output(o.output)),
      spin_ns_(spin_ns_from(o.spin)),
      fs_(ForkServer::get()) {
  check_remote_registry();
  if (opts_.retries < 0) throw InvalidArgument("ProcessPool: retries must be >= 0");
  if (opts_.timeout.count() < 0) throw InvalidArgument("ProcessPool: timeout must be >= 0");
  std::size_t n = opts_.workers ? opts_.workers : std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  if (n > 4096) throw InvalidArgument("ProcessPool: at most 4096 workers");
  memfd_ = memfd_create("parx-pool", MFD_CLOEXEC);
  if (memfd_ < 0)
    throw Error(std::string("ProcessPool: memfd_create failed: ") + std::strerror(errno));
  map_bytes_ = region_offset(n);
  if (ftruncate(memfd_, static_cast<off_t>(map_bytes_)) != 0) {
    close(memfd_);
    throw Error(std::string("ProcessPool: ftruncate failed: ") + std::strerror(errno));
  }
  void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
  if (p == MAP_FAILED) {
    close(memfd_);
    throw Error(std::string("ProcessPool: mmap failed: ") + std::strerror(errno));
  }
  base_ = static_cast<std::byte*>(p);
  hdr_ = new (base_) PoolHeader{};
  hdr_->magic = kMagic;
  for (std::size_t i = 0; i < n; ++i) {
    Slot& s = slots_.emplace_back();
    s.index = i;
    s.reg = reinterpret_cast<RegionLayout*>(base_ + region_offset(i));
    s.req = {&s.reg->req, req_data(s.reg)};
    s.resp = {&s.reg->resp, resp_data(s.reg)};
  }
  inbox_ = std::make_shared<ExitInbox>();
  inbox_->hdr = hdr_;
  listener_ = fs_.add_exit_listener([in = inbox_](pid_t pid, const ExitStatus& es) {
    std::lock_guard lk(in->mu);
    if (in->closed) return;
    in->exits.emplace_back(pid, es);
    in->hdr->bell.fetch_add(1, std::memory_order_seq_cst);
    if (in->hdr->io_sleeping.load(std::memory_order_seq_cst)) futex_wake_shared(&in->hdr->bell, 1);
  });
  try {
    std::unique_lock lk(mu_);
    for (auto& s : slots_)
      spawn(s);
    io_ = std::thread([this] { io_loop(); });
    boot_cv_.wait(lk, [&] {
      if (init_error_) return true;
      for (auto& s : slots_)
        if (s.state != Slot::Ready) return false;
      return true;
    });
    if (init_error_) {
      std::exception_ptr e = init_error_;
      lk.unlock();
      shutdown(true, true);
      std::rethrow_exception(e);
    }
    for (auto& s : slots_)
      s.initial = false;
    lk.unlock();
    registration_.attach(this);  // not under mu_: pools() takes the registry's lock, then mu_
  } catch (...) {
    if (io_.joinable()) {
      shutdown(true, true);
    } else {
      for (auto& s : slots_)
        if (s.pid > 0) fs_.signal(s.pid, SIGKILL);
    }
    release();
    throw;
  }
}

ProcessPoolImpl::~ProcessPoolImpl() {
  shutdown(true, false);
  release();
}

// After the I/O thread has stopped: no more exit reports, sockets and the channel freed.
void ProcessPoolImpl::release() noexcept {
  {
    std::lock_guard lk(inbox_->mu);
    inbox_->closed = true;
  }
  fs_.remove_exit_listener(listener_);
  for (auto& s : slots_) {
    if (s.sock >= 0) close(s.sock);
    OutputRelay::get().unwatch(s.out);
    OutputRelay::get().unwatch(s.err);
  }
  munmap(base_, map_bytes_);
  close(memfd_);
}

void ProcessPoolImpl::spawn(Slot& s) {
  // The region is reset only here, after its previous worker was reaped.
  std::memset(static_cast<void*>(s.reg), 0, 4096);
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw Error(std::string("ProcessPool: socketpair failed: ") + std::strerror(errno));
  WorkerBoot b;
  b.region_offset = region_offset(s.index);
  b.max_tasks = opts_.max_tasks_per_worker;
  b.memory_limit = opts_.memory_limit;
  b.spin_ns = spin_ns_;
  b.timed = opts_.timeout.count() > 0;
  b.init_fn = opts_.initializer.fn;
  b.init_args.assign(reinterpret_cast<const char*>(opts_.initializer.args.data()),
                     opts_.initializer.args.size());
  b.relay = output_ != Output::inherit;
  b.index = static_cast<std::int32_t>(s.index);
  std::tie(b.origin_rank, b.origin_host) = origin_rank();
  std::optional<RelayPipes> pipes;
  if (b.relay) pipes.emplace();
  pid_t pid = 0;
  try {
    static const FunctionId worker_id = function_id("parx::process_pool_worker");
    pid = fs_.spawn(worker_id, encode(b), false, sv[1]);
  } catch (...) {
    close(sv[0]);
    close(sv[1]);
    throw;
  }
  close(sv[1]);
  if (!send_fd(sv[0], memfd_) ||
      (pipes && (!send_fd(sv[0], pipes->write_out) || !send_fd(sv[0], pipes->write_err)))) {
    close(sv[0]);
    fs_.signal(pid, SIGKILL);
    throw Error(std::string("ProcessPool: cannot hand the channel to a worker: ") +
                std::strerror(errno));
  }
  OutputRelay::get().unwatch(s.out);  // a previous worker's (already read to its end)
  OutputRelay::get().unwatch(s.err);
  s.out.reset();
  s.err.reset();
  if (pipes) {
    pipes->close_write_ends();
    const std::string prefix = output_ == Output::prefixed
                                   ? "[" + worker_origin(static_cast<int>(s.index), pid) + "] "
                                   : std::string();
    std::tie(s.out, s.err) = pipes->start(prefix);
  }
  if (s.sock >= 0) close(s.sock);
  s.sock = sv[0];
  s.pid = pid;
  s.state = Slot::Booting;
  s.budget_used = 0;
  s.kill = Slot::None;
  s.kill_detail.clear();
  by_pid_[pid] = s.index;
}

void ProcessPoolImpl::enqueue(FunctionId fn, Bytes payload, std::vector<PoolItem> items,
                              std::unique_ptr<PoolSink> sink) {
  const std::uint64_t prefix[2] = {fn, items.size()};
  std::memcpy(payload.data(), prefix, sizeof prefix);
  auto job = std::make_unique<Job>();
  job->fn = fn;
  if (const RemoteEntry* e = find_remote(fn)) job->fn_name = e->name;
  job->holder = std::make_shared<Holder>();
  job->holder->sink = std::move(sink);
  job->holder->remaining = items.size();
  job->items.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i)
    job->items.push_back({items[i].index, items[i].offset, i, 0});
  job->count = items.size();
  job->orig = std::make_shared<const Bytes>(std::move(payload));
  submit_job(std::move(job));
}

void ProcessPoolImpl::enqueue_batch(FunctionId fn, Bytes payload, std::size_t n,
                                    std::int64_t first_index, std::unique_ptr<PoolSink> sink) {
  const RemoteEntry* e = find_remote(fn);
  if (!e || !e->batch.invoke)
    throw Error("parx::ProcessPool: function id " + std::to_string(fn) + " has no batch form");
  if (payload.size() != kBatchHeader + n * e->batch.arg_size)
    throw InvalidArgument("parx::ProcessPool: batch payload of the wrong size");
  const std::uint64_t prefix[4] = {fn, n, e->batch.arg_size, e->batch.result_size};
  std::memcpy(payload.data(), prefix, sizeof prefix);
  auto job = std::make_unique<Job>();
  job->fn = fn;
  job->fn_name = e->name;
  job->batch = true;
  job->arg_size = e->batch.arg_size;
  job->result_size = e->batch.result_size;
  job->holder = std::make_shared<Holder>();
  job->holder->sink = std::move(sink);
  job->holder->remaining = n;
  job->count = n;
  job->first_index = first_index;
  job->orig = std::make_shared<const Bytes>(std::move(payload));
  submit_job(std::move(job));
}

void ProcessPoolImpl::submit_job(std::unique_ptr<Job> job) {
  if (job->orig->size() > kInlineLimit) {  // prepared outside the lock
    job->memfd = memfd_with(*job->orig, "parx-args");
    if (job->memfd < 0)
      throw Error(std::string("ProcessPool: cannot stage a large argument: ") +
                  std::strerror(errno));
  }
  Done done;
  {
    std::lock_guard lk(mu_);
    if (!accepting_)
      throw ExecutorShutdown("parx::ProcessPool: submit after shutdown (the pool accepts no work)");
    job->id = next_job_++;
    ++counters_.submitted;
    if (observe::active()) {
      job->task_id = observe::next_task_id();
      emit_job(observe::EventKind::TaskQueued, *job);
    }
    if (job->count == 0) {
      job->holder->finished = true;
      done.push_back(job->holder);
    } else {
      pending_.push_back(std::move(job));
      dispatch();
    }
  }
  finish(done);
  bump();  // the I/O thread starts spinning for the response
}

void ProcessPoolImpl::dispatch() {
  while (!pending_.empty()) {
    Job& j = *pending_.front();
    if (!j.holder->started) {
      if (!j.holder->sink->start()) {  // cancelled by its caller: drop it
        ++counters_.cancelled;
        if (j.task_id) emit_job(observe::EventKind::TaskCancelled, j);
        j.holder->finished = true;
        pending_.pop_front();
        continue;
      }
      j.holder->started = true;
    }
    const std::size_t prefetch = job_ns_ > kLongJobNs ? 1 : kPrefetch;
    // The least loaded worker; among equals the one used last, which is still spinning (warm),
    // while the others go to sleep instead of competing for the cores.
    Slot* best = nullptr;
    for (auto& s : slots_) {
      if (s.state != Slot::Ready || s.assigned.size() >= prefetch) continue;
      if (opts_.max_tasks_per_worker && s.budget_used >= opts_.max_tasks_per_worker) continue;
      if (!best || s.assigned.size() < best->assigned.size() ||
          (s.assigned.size() == best->assigned.size() && s.last_used > best->last_used))
        best = &s;
    }
    if (!best) return;
    best->last_used = ++use_clock_;
    if (!send_job(*best, j)) return;
    counters_.bytes_moved += j.orig->size();
    if (j.task_id)
      emit_job(observe::EventKind::TaskStarted, j, static_cast<int>(best->index), best->pid);
    best->budget_used += j.count;
    best->assigned.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
}

bool ProcessPoolImpl::send_job(Slot& s, Job& j) {
  const std::span<const std::byte> p = j.payload();
  const std::uint32_t flags = j.batch ? std::uint32_t{kBatch} : 0u;
  if (p.size() > kInlineLimit) {
    if (j.memfd < 0) j.memfd = memfd_with(p, "parx-args");
    if (j.memfd < 0 || !send_fd(s.sock, j.memfd)) return false;
    if (!ring_put(s.req, kRun, j.id, flags | kByRef, {}, p.size())) return false;
  } else if (!ring_put(s.req, kRun, j.id, flags, p)) {
    return false;
  }
  ring_bell(s.req.ctl);
  return true;
}

std::unique_ptr<Job> ProcessPoolImpl::sub_job(const Job& j, std::vector<ItemRef> items) {
  auto n = std::make_unique<Job>();
  n->id = next_job_++;
  ++counters_.submitted;
  n->fn = j.fn;
  n->holder = j.holder;
  n->blameless = j.blameless;
  n->fn_name = j.fn_name;
  n->count = items.size();
  if (j.batch) {  // the chosen items' packed arguments, in order
    n->batch = true;
    n->arg_size = j.arg_size;
    n->result_size = j.result_size;
    Bytes b(kBatchHeader + items.size() * j.arg_size);
    const std::uint64_t prefix[4] = {j.fn, items.size(), j.arg_size, j.result_size};
    std::memcpy(b.data(), prefix, sizeof prefix);
    for (std::size_t k = 0; k < items.size(); ++k) {
      std::memcpy(b.data() + kBatchHeader + k * j.arg_size,
                  j.orig->data() + kBatchHeader + items[k].offset * j.arg_size, j.arg_size);
      items[k].offset = k;
    }
    n->orig = std::make_shared<const Bytes>(std::move(b));
    n->items = std::move(items);
    queued_again(*n);
    return n;
  }
  // Rebuild the payload keeping each item's offset modulo 64, so alignment padding inside the
  // encoded arguments still lines up.
  Encoder e(64);
  const std::uint64_t prefix[2] = {j.fn, items.size()};
  e.write(prefix, sizeof prefix);
  static constexpr std::byte zeros[64] = {};
  for (auto& it : items) {
    const auto word = load_at<std::uint64_t>(*j.orig, it.offset + 8);
    const std::size_t len = word & kItemLenMask, old_pad = word >> 56;
    const std::size_t args_at = it.offset + 16 + old_pad;
    const std::size_t at = e.size();
    const std::size_t pad = (args_at % 64 + 128 - (at + 16) % 64) % 64;
    const std::uint64_t hdr[2] = {static_cast<std::uint64_t>(it.index),
                                  len | (std::uint64_t{pad} << 56)};
    e.write(hdr, sizeof hdr);
    e.write(zeros, pad);
    e.write(j.orig->data() + args_at, len);
    it.offset = at;  // of the item's header in the new payload
  }
  n->orig = std::make_shared<const Bytes>(e.take());  // further rebuilds start from here
  n->items = std::move(items);
  queued_again(*n);
  return n;
}

void ProcessPoolImpl::requeue_front(std::vector<std::unique_ptr<Job>>& jobs) {
  for (auto it = jobs.rbegin(); it != jobs.rend(); ++it)
    pending_.push_front(std::move(*it));
  jobs.clear();
}

void ProcessPoolImpl::item_done(Job& j, Done& done, std::size_t count) {
  stats_.tasks += count;
  j.holder->remaining -= count;
  if (j.holder->remaining == 0 && !j.holder->finished) {
    j.holder->finished = true;
    done.push_back(j.holder);
  }
}

void ProcessPoolImpl::fail_item(Job& j, const ItemRef& it, std::exception_ptr e, Done& done) {
  j.holder->sink->error(it.slot, std::move(e));
  item_done(j, done);
}

void ProcessPoolImpl::kill_slot(Slot& s, Slot::Kill why, std::string detail) {
  if (s.kill != Slot::None || s.pid <= 0) return;
  s.kill = why;
  s.kill_detail = std::move(detail);
  fs_.signal(s.pid, SIGKILL);
}

// Reads every complete frame from the slot's response ring. False if the channel is corrupt (the
// worker is then being killed).
bool ProcessPoolImpl::drain(Slot& s, Done& done) {
  if (s.kill == Slot::Corrupt) return false;
  bool any = false;
  for (;;) {
    Frame f;
    std::string why;
    const Peek p = ring_peek(s.resp, f, why);
    if (p == Peek::Empty) return any;
    auto corrupt = [&](const std::string& w) {
      ++stats_.corrupt_messages;
      kill_slot(s, Slot::Corrupt,
                "corrupt message from worker pid " + std::to_string(s.pid) + ": " + w);
      return true;
    };
    if (p == Peek::Corrupt) return corrupt(why);
    any = true;
    Mapped by_ref;
    std::span<const std::byte> payload = f.payload;
    if (f.h.flags & kByRef) {
      const int fd = recv_fd(s.sock, false);
      if (fd < 0) return corrupt("a result sent by reference did not arrive");
      if (!by_ref.open(fd, f.h.size, why)) return corrupt(why);
      payload = by_ref.bytes();
    }
    switch (f.h.kind) {
      case kReady:
        if (s.state == Slot::Booting) s.state = Slot::Ready;
        emit_worker(observe::EventKind::WorkerStarted, s);
        s.init_failures = 0;
        boot_cv_.notify_all();
        break;
      case kInitFailed: {
        try {
          init_error_ = std::make_exception_ptr(TaskError(decode<TaskErrorInfo>(payload)));
        } catch (const SerializationError& e) {
          return corrupt(e.what());
        }
        ++s.init_failures;
        boot_cv_.notify_all();
        break;
      }
      case kRefused: {
        ++stats_.corrupt_messages;
        s.kill_detail.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
        break;
      }
      case kResult:
        if (s.assigned.empty() || s.assigned.front()->id != f.h.job)
          return corrupt("result for job " + std::to_string(f.h.job) + ", which it does not hold");
        if (bool(f.h.flags & kBatch) != s.assigned.front()->batch)
          return corrupt("result for job " + std::to_string(f.h.job) + " of the wrong form");
        if (s.out) {  // the output the task wrote comes first
          if (f.h.flags & kOutput) {
            s.out->pump();
            s.err->pump();
          } else {  // the relay thread may be passing on the last lines
            s.out->sync();
            s.err->sync();
          }
        }
        try {
          if (s.assigned.front()->batch)
            handle_batch_result(s, payload, done);
          else
            handle_result(s, payload, done);
        } catch (const SerializationError& e) {
          return corrupt(e.what());
        }
        if (f.h.flags & kRetire) s.state = Slot::Retiring;
        break;
      default:
        return corrupt("unexpected frame kind " + std::to_string(f.h.kind));
    }
    ring_pop(s.resp, f);
  }
}

void ProcessPoolImpl::handle_result(Slot& s, std::span<const std::byte> payload, Done& done) {
  Job& j = *s.assigned.front();
  if (payload.size() < 16) throw SerializationError("result payload too short");
  const auto n = load_at<std::uint64_t>(payload, 0);
  if (n != j.items.size())
    throw SerializationError("result holds " + std::to_string(n) + " items, the job " +
                             std::to_string(j.items.size()));
  // Validate the framing of every item before touching any sink.
  std::vector<std::pair<std::size_t, std::uint64_t>> at(n);  // (body offset, length)
  std::vector<std::uint32_t> status(n);
  std::size_t pos = 16;
  for (std::size_t k = 0; k < n; ++k) {
    if (pos + 16 > payload.size()) throw SerializationError("result item beyond the payload");
    status[k] = load_at<std::uint32_t>(payload, pos);
    const auto len = load_at<std::uint64_t>(payload, pos + 8);
    if (status[k] > 1 || len > payload.size() - pos - 16)
      throw SerializationError("bad result item header");
    at[k] = {pos + 16, len};
    pos += 16 + len;
  }
  const std::int64_t elapsed = load_at<std::int64_t>(payload, 8);
  note_job_time(elapsed);
  j.holder->elapsed += elapsed;
  counters_.bytes_moved += payload.size();
  std::size_t failures = 0;
  std::string first_error;
  std::vector<ItemRef> retry;
  for (std::size_t k = 0; k < n; ++k) {
    const ItemRef& it = j.items[k];
    const auto body = payload.subspan(at[k].first, at[k].second);
    if (status[k] == 0) {
      try {
        j.holder->sink->value(it.slot, body, at[k].first);
      } catch (...) {
        j.holder->sink->error(it.slot, std::current_exception());
      }
      item_done(j, done);
    } else {
      Decoder d(body, at[k].first);
      TaskErrorInfo info = d.make<TaskErrorInfo>();  // corrupt: SerializationError
      if (d.remaining()) throw SerializationError("trailing bytes after a task error");
      if (!failures++ && j.task_id)
        first_error = info.type_name + ": " + info.message + "\n" + info.stack_trace;
      error_outcome(j, it, std::move(info), retry, done);
    }
  }
  ++s.tasks_ended;
  job_ended(s, j, failures, elapsed, std::move(first_error));
  std::unique_ptr<Job> finished = std::move(s.assigned.front());
  s.assigned.pop_front();
  if (!retry.empty()) pending_.push_back(sub_job(*finished, std::move(retry)));
}

// An item threw: retried (retry_exceptions) or failed with its TaskError.
void ProcessPoolImpl::error_outcome(Job& j, const ItemRef& it, TaskErrorInfo info,
                                    std::vector<ItemRef>& retry, Done& done) {
  if (info.function.empty()) info.function = j.fn_name;
  if (opts_.retry_exceptions && it.attempts < opts_.retries && accepting_) {
    ItemRef r = it;
    ++r.attempts;
    ++stats_.retries;
    if (j.task_id) emit_job(observe::EventKind::TaskRetried, j);
    retry.push_back(r);
  } else {
    fail_item(j, it, std::make_exception_ptr(TaskError(std::move(info))), done);
  }
}

void ProcessPoolImpl::handle_batch_result(Slot& s, std::span<const std::byte> payload, Done& done) {
  Job& j = *s.assigned.front();
  if (payload.size() < kBatchHeader) throw SerializationError("batch result too short");
  const auto n = load_at<std::uint64_t>(payload, 0);
  const auto errors = load_at<std::uint64_t>(payload, 16);
  const auto result_size = load_at<std::uint64_t>(payload, 24);
  if (n != j.count || result_size != j.result_size || errors > n)
    throw SerializationError("batch result does not match its job");
  const std::size_t results_at = kBatchHeader;
  const std::size_t errors_at = results_at + round_up(n * result_size, 8);
  if (errors_at > payload.size()) throw SerializationError("batch results beyond the payload");
  // Validate the error records before touching any sink: ascending positions, inside the payload.
  std::vector<std::pair<std::size_t, std::span<const std::byte>>> errs;
  errs.reserve(errors);
  std::size_t pos = errors_at;
  for (std::uint64_t e = 0; e < errors; ++e) {
    if (pos + 16 > payload.size()) throw SerializationError("batch error beyond the payload");
    const auto k = load_at<std::uint64_t>(payload, pos);
    const auto len = load_at<std::uint64_t>(payload, pos + 8);
    if (k >= n || (!errs.empty() && k <= errs.back().first) || len > payload.size() - pos - 16)
      throw SerializationError("bad batch error record");
    errs.emplace_back(k, payload.subspan(pos + 16, len));
    pos += 16 + len;
  }
  if (pos != payload.size()) throw SerializationError("trailing bytes after a batch result");
  std::vector<TaskErrorInfo> infos;
  infos.reserve(errs.size());
  for (auto& [k, body] : errs) {
    Decoder d(body, static_cast<std::size_t>(body.data() - payload.data()));
    infos.push_back(d.make<TaskErrorInfo>());
    if (d.remaining()) throw SerializationError("trailing bytes after a task error");
  }
  const std::int64_t elapsed = load_at<std::int64_t>(payload, 8);
  note_job_time(elapsed);
  j.holder->elapsed += elapsed;
  counters_.bytes_moved += payload.size();
  std::string first_error;
  if (!infos.empty() && j.task_id)
    first_error = infos[0].type_name + ": " + infos[0].message + "\n" + infos[0].stack_trace;
  const std::byte* raw = payload.data() + results_at;
  if (j.items.empty()) {
    j.holder->sink->values_raw(raw, n, nullptr);
  } else {
    std::vector<std::size_t> slots(n);
    for (std::size_t k = 0; k < n; ++k)
      slots[k] = j.items[k].slot;
    j.holder->sink->values_raw(raw, n, slots.data());
  }
  std::vector<ItemRef> retry;
  for (std::size_t e = 0; e < errs.size(); ++e) {
    const ItemRef it = j.item(errs[e].first);
    infos[e].task_index = it.index;
    error_outcome(j, it, std::move(infos[e]), retry, done);
  }
  item_done(j, done, n - errs.size());
  ++s.tasks_ended;
  job_ended(s, j, errs.size(), elapsed, std::move(first_error));
  std::unique_ptr<Job> finished = std::move(s.assigned.front());
  s.assigned.pop_front();
  if (!retry.empty()) pending_.push_back(sub_job(*finished, std::move(retry)));
}

std::string exit_text(const ExitStatus& es) {
  if (es.signal) {
    const char* name = sigabbrev_np(es.signal);
    return "killed by signal " + std::to_string(es.signal) +
           (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "exited with code " + std::to_string(es.exit_code);
}

void ProcessPoolImpl::handle_exit(Slot& s, const ExitStatus& es, Done& done) {
  // What the worker wrote is printed before the outcome of its work: its pipes are read to the end
  // (an unfinished last line included).
  OutputRelay::get().unwatch(s.out);
  OutputRelay::get().unwatch(s.err);
  s.out.reset();
  s.err.reset();
  drain(s, done);  // results it posted before dying are good
  const WorkerStatus& st = s.reg->status;
  const bool busy = st.busy.load(std::memory_order_acquire) != 0;
  const std::uint64_t cur_job = st.job.load(std::memory_order_relaxed);
  const std::uint32_t cur_item = st.item.load(std::memory_order_relaxed);
  const bool clean_retire = s.state == Slot::Retiring && es.signal == 0 && es.exit_code == 0;
  std::vector<std::unique_ptr<Job>> again;
  bool held = false;
  for (auto& jp : s.assigned) {
    held = true;
    Job& j = *jp;
    j.all_items();
    if (busy && cur_job == j.id && cur_item < j.items.size()) {
      std::vector<ItemRef> before(j.items.begin(), j.items.begin() + cur_item);
      std::vector<ItemRef> after(j.items.begin() + cur_item + 1, j.items.end());
      ItemRef culprit = j.items[cur_item];
      if (!before.empty()) again.push_back(sub_job(j, std::move(before)));
      std::exception_ptr err;
      if (s.kill == Slot::Timeout) {
        ++stats_.timeouts;
        err = std::make_exception_ptr(
            TimeoutError("parx::TimeoutError: task " + std::to_string(culprit.index) +
                         " ran longer than " + std::to_string(opts_.timeout.count()) +
                         " ms; worker pid " + std::to_string(s.pid) + " was killed and replaced"));
      } else if (s.kill == Slot::Corrupt) {
        err = std::make_exception_ptr(SerializationError(s.kill_detail + "; worker replaced"));
      } else if (culprit.attempts < opts_.retries && accepting_) {
        ++culprit.attempts;
        ++stats_.retries;
        if (j.task_id) emit_job(observe::EventKind::TaskRetried, j);
        again.push_back(sub_job(j, {culprit}));
      } else {
        std::string detail =
            (j.fn_name.empty() ? std::string() : "in " + j.fn_name + "; ") +
            (s.kill == Slot::Memory ? s.kill_detail : std::string("the worker was replaced"));
        if (culprit.attempts > 0)
          detail += "; failed " + std::to_string(culprit.attempts + 1) + " times";
        err = std::make_exception_ptr(
            WorkerCrashed(s.pid, es.signal, es.exit_code, culprit.index, detail));
      }
      if (err) fail_item(j, culprit, err, done);
      // The job as scheduled ends here (its other items run again as new tasks).
      ++counters_.failed;
      if (j.task_id)
        emit_job(observe::EventKind::TaskFailed, j, static_cast<int>(s.index), s.pid, 0,
                 exit_text(es).c_str());
      if (!after.empty()) again.push_back(sub_job(j, std::move(after)));
    } else if (s.kill == Slot::Corrupt && jp == s.assigned.front()) {
      // Its result was behind the corrupt bytes: the job fails, it is not run again.
      for (auto& it : j.items)
        fail_item(j, it,
                  std::make_exception_ptr(SerializationError(s.kill_detail + "; worker replaced")),
                  done);
    } else if (clean_retire) {
      again.push_back(std::move(jp));  // queued behind the last task of a retiring worker
    } else if (++j.blameless > 3) {
      for (auto& it : j.items)
        fail_item(j, it,
                  std::make_exception_ptr(WorkerCrashed(
                      s.pid, es.signal, es.exit_code, it.index,
                      "workers kept dying before starting this task" +
                          (s.kill_detail.empty() ? std::string() : ": " + s.kill_detail))),
                  done);
    } else {
      again.push_back(std::move(jp));
    }
  }
  s.assigned.clear();
  if (held && !clean_retire) ++stats_.crashes;
  if (observe::active()) {
    const bool asked = clean_retire || s.state == Slot::Stopping || s.kill == Slot::Stop;
    const std::string how = exit_text(es);
    emit_worker(asked ? observe::EventKind::WorkerStopped : observe::EventKind::WorkerCrashed, s,
                how.c_str());
  }
  requeue_front(again);
  by_pid_.erase(s.pid);
  fs_.forget(s.pid);
  if (s.state == Slot::Booting && !init_error_) {
    ++s.init_failures;
    if (s.initial)
      init_error_ = std::make_exception_ptr(WorkerCrashed(s.pid, es.signal, es.exit_code, -1,
                                                          "while starting (in the initializer?)"));
    boot_cv_.notify_all();
  }
  s.pid = 0;
  s.state = Slot::Empty;
  if (s.sock >= 0) {
    close(s.sock);
    s.sock = -1;
  }
  const int backoff = std::min(s.init_failures, 6);
  s.respawn_at = s.init_failures ? now_ns() + (std::int64_t{50'000'000} << backoff) : 0;
}

// One pass of the I/O thread, under the lock. True if anything happened.
bool ProcessPoolImpl::step(Done& done, std::int64_t& wait_ns) {
  bool progress = false;
  std::deque<std::pair<pid_t, ExitStatus>> exits;
  {
    std::lock_guard lk(inbox_->mu);
    exits.swap(inbox_->exits);
  }
  for (auto& [pid, es] : exits) {
    auto it = by_pid_.find(pid);
    if (it == by_pid_.end()) continue;
    handle_exit(slots_[it->second], es, done);
    progress = true;
  }
  for (auto& s : slots_)
    if (s.state != Slot::Empty && drain(s, done)) progress = true;

  const std::int64_t now = now_ns();
  wait_ns = -1;
  auto wake_in = [&](std::int64_t ns) { wait_ns = wait_ns < 0 ? ns : std::min(wait_ns, ns); };

  // Replace workers that are gone (not while stopping).
  if (!stopping_) {
    for (auto& s : slots_) {
      if (s.state != Slot::Empty || s.initial) continue;
      if (s.respawn_at > now) {
        wake_in(s.respawn_at - now);
        continue;
      }
      try {
        spawn(s);
        ++stats_.respawns;
        progress = true;
      } catch (const Error&) {
        s.respawn_at = now + 200'000'000;  // fork failed (out of processes?): try again soon
        wake_in(200'000'000);
      }
    }
    // Initializers that keep failing with nobody able to run: fail what waits.
    if (init_error_ && !pending_.empty()) {
      bool any_ready = false;
      for (auto& s : slots_)
        any_ready |= s.state == Slot::Ready;
      if (!any_ready) {
        for (auto& jp : pending_)
          for (auto& it : jp->all_items())
            fail_item(*jp, it, init_error_, done);
        pending_.clear();
      }
    }
  }
  dispatch();

  // Timeouts and memory ceilings of running items.
  const bool mem_check = opts_.memory_limit && now >= next_mem_check_;
  if (mem_check) next_mem_check_ = now + 10'000'000;
  bool outstanding = !pending_.empty();
  for (auto& s : slots_) {
    if (s.assigned.empty()) continue;
    outstanding = true;
    if (s.kill != Slot::None || s.pid <= 0) continue;
    const WorkerStatus& st = s.reg->status;
    if (!st.busy.load(std::memory_order_acquire)) {
      // Dispatched but not started yet: look again soon, or a task that then runs for ever
      // would never be seen overrunning.
      if (opts_.timeout.count() > 0) wake_in(5'000'000);
      continue;
    }
    if (opts_.timeout.count() > 0) {
      const std::int64_t limit =
          std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.timeout).count();
      const std::int64_t ran = now - st.item_started_ns.load(std::memory_order_relaxed);
      if (ran > limit) {
        kill_slot(s, Slot::Timeout, "timeout");
      } else {
        wake_in(limit - ran + 1'000'000);
      }
    }
    if (mem_check) {
      const std::size_t rss = resident_bytes(s.pid);
      if (rss > opts_.memory_limit)
        kill_slot(s, Slot::Memory,
                  "memory ceiling: resident " + std::to_string(rss >> 20) + " MiB > limit " +
                      std::to_string(opts_.memory_limit >> 20) + " MiB; killed");
    }
  }
  if (opts_.memory_limit && outstanding) wake_in(10'000'000);

  // Shutting down: once all work is done, stop the workers and wait for them.
  if (stopping_ && pending_.empty()) {
    bool all_idle = true;
    for (auto& s : slots_)
      all_idle &= s.assigned.empty();
    if (all_idle) {
      bool any_alive = false;
      for (auto& s : slots_) {
        if (s.state == Slot::Empty) continue;
        any_alive = true;
        if (s.state != Slot::Stopping) {
          s.state = Slot::Stopping;
          if (!ring_put(s.req, kStop, 0, 0, {})) kill_slot(s, Slot::Stop, "stop");
          ring_bell(s.req.ctl);
        }
      }
      if (!any_alive) {
        finished_ = true;
        return true;
      }
      if (stop_deadline_ == 0) stop_deadline_ = now + 2'000'000'000;
      if (now > stop_deadline_) {
        for (auto& s : slots_)
          if (s.state != Slot::Empty) kill_slot(s, Slot::Stop, "did not stop in time");
      }
      wake_in(50'000'000);
    }
  }
  return progress;
}

void ProcessPoolImpl::io_loop() {
  Done done;
  std::int64_t spin_until = 0;
  for (;;) {
    const std::uint32_t v = hdr_->bell.load(std::memory_order_acquire);
    bool progress = false;
    std::int64_t wait_ns = -1;
    bool fin = false;
    {
      std::lock_guard lk(mu_);
      progress = step(done, wait_ns);
      fin = finished_;
    }
    finish(done);
    if (fin) return;
    const std::int64_t now = now_ns();
    if (progress) spin_until = now + spin_ns_;
    if (now < spin_until) {  // warm for the next submit too, as a worker is
      // Spin on the doorbell only: every event bumps it.
      while (hdr_->bell.load(std::memory_order_acquire) == v && now_ns() < spin_until) {
        for (int i = 0; i < 32 && hdr_->bell.load(std::memory_order_relaxed) == v; ++i)
          cpu_relax();
        sched_yield();
      }
      if (hdr_->bell.load(std::memory_order_acquire) != v) continue;
    }
    hdr_->io_sleeping.store(1, std::memory_order_seq_cst);
    if (hdr_->bell.load(std::memory_order_seq_cst) == v) futex_wait_shared(&hdr_->bell, v, wait_ns);
    hdr_->io_sleeping.store(0, std::memory_order_relaxed);
  }
}

void ProcessPoolImpl::shutdown(bool wait, bool cancel_pending) {
  Done done;
  {
    std::lock_guard lk(mu_);
    accepting_ = false;
    if (cancel_pending) {
      for (auto& jp : pending_) {
        ++counters_.cancelled;
        if (jp->task_id) emit_job(observe::EventKind::TaskCancelled, *jp);
        if (!jp->holder->started) {
          jp->holder->finished = true;
          jp->holder->sink->cancel();
        } else {
          for (auto& it : jp->all_items())
            fail_item(*jp, it, std::make_exception_ptr(Cancelled()), done);
        }
      }
      pending_.clear();
    }
    stopping_ = true;
  }
  finish(done);
  bump();
  if (wait && io_.joinable() && io_.get_id() != std::this_thread::get_id()) io_.join();
}

}  // namespace parx::detail

namespace parx {

namespace {
ProcessPool::Options with_workers(std::size_t n) {
  ProcessPool::Options o;
  o.workers = n;
  return o;
}
}  // namespace

ProcessPool::ProcessPool(std::size_t workers) : ProcessPool(with_workers(workers)) {}

ProcessPool::ProcessPool(Options opts)
    : trace_(observe::detail::pool_trace(opts.trace)),
      impl_(std::make_unique<detail::ProcessPoolImpl>(opts)),
      workers_(impl_->workers()) {
  if (trace_) trace_->only(impl_->exec_id());
}

ProcessPool::~ProcessPool() = default;

std::vector<pid_t> ProcessPool::pids() const {
  return impl_->pids();
}

observe::Counters ProcessPool::counters() const {
  return impl_->counters();
}

ProcessPool::Stats ProcessPool::stats() const {
  return impl_->stats();
}

bool ProcessPool::is_shutdown() const noexcept {
  return impl_->is_shutdown();
}

void ProcessPool::shutdown(bool wait, bool cancel_pending) {
  impl_->shutdown(wait, cancel_pending);
}

void ProcessPool::enqueue(FunctionId fn, Bytes payload, std::vector<detail::PoolItem> items,
                          std::unique_ptr<detail::PoolSink> sink) {
  impl_->enqueue(fn, std::move(payload), std::move(items), std::move(sink));
}

void ProcessPool::enqueue_batch(FunctionId fn, Bytes payload, std::size_t n,
                                std::int64_t first_index, std::unique_ptr<detail::PoolSink> sink) {
  impl_->enqueue_batch(fn, std::move(payload), n, first_index, std::move(sink));
}

}  // namespace parx
