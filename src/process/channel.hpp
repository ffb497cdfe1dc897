// process/channel.hpp — the shared-memory channel between a ProcessPool and its worker
// processes (private to src/; described here because its layout is a protocol), and the
// primitives both ends use on it: rings of checksummed frames, descriptors over the worker's
// socket, payloads by reference in a memfd.
//
// One memfd per pool (nothing is named in /dev/shm, so nothing can leak): page 0 holds the pool's
// doorbell, then one region per worker slot. A worker maps page 0 and its own region only.
//
// Each region holds two single-producer single-consumer byte rings (requests: parent -> worker,
// responses: worker -> parent) and the worker's "what am I running" words, which the parent reads
// to attribute a crash or a timeout to the exact item. A ring carries frames: a 32-byte header
// (magic, kind, job, size, flags, XXH3 checksum of header and inline payload) and the payload
// padded to 32 bytes. A frame never wraps; a Skip frame fills the end of the ring instead. Payloads
// larger than kInlineLimit travel by reference: the sender writes them to a fresh memfd, passes its
// fd over the worker's socket (SCM_RIGHTS) and sends a frame with kByRef.
//
// Wake-ups: the consumer spins briefly, then sets `sleeping` and waits on `bell` (a shared futex);
// the producer bumps `bell` after publishing `tail` and wakes it only if `sleeping` is set.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace parx::detail::channel {

constexpr std::uint32_t kMagic = 0x31465850;  // "PXF1"
constexpr std::size_t kFrameAlign = 32;
constexpr std::size_t kRingBytes = std::size_t{4} << 20;  // per direction, per worker
constexpr std::size_t kInlineLimit = kRingBytes / 4;      // larger payloads go by reference

enum Kind : std::uint32_t {
  kSkip = 1,         // padding to the end of the ring
  kRun = 2,          // parent -> worker: run the items of a job
  kStop = 3,         // parent -> worker: exit cleanly
  kResult = 16,      // worker -> parent: outcomes of a job's items
  kReady = 17,       // worker -> parent: booted, initializer done
  kInitFailed = 18,  // worker -> parent: the initializer threw (payload: TaskErrorInfo)
  kRefused = 19,     // worker -> parent: a request frame was corrupt; the worker exits
};
enum Flags : std::uint32_t {
  kByRef = 1,   // payload is in a memfd passed over the socket just before this frame
  kRetire = 2,  // the worker exits after this frame (task budget or memory ceiling reached)
  kBatch = 4,   // a batch job (packed arguments) or its result (packed results)
  kOutput = 8,  // result: the worker's relayed stdout/stderr held unread bytes when it was posted
};

struct FrameHeader {
  std::uint32_t magic;
  std::uint32_t kind;
  std::uint64_t job;
  std::uint64_t size;  // payload bytes (inline or by reference)
  std::uint32_t flags;
  std::uint32_t check;  // XXH3 of the first 28 bytes and the inline payload (low 32 bits)
};
static_assert(sizeof(FrameHeader) == kFrameAlign);

struct alignas(64) RingControl {
  alignas(64) std::atomic<std::uint64_t> tail;  // written by the producer
  std::atomic<std::uint32_t> bell;              // futex word: bumped by the producer
  std::atomic<std::uint32_t> sleeping;          // consumer is (about to be) asleep on bell
  alignas(64) std::atomic<std::uint64_t> head;  // written by the consumer
};

// What the worker is doing, read by the parent when the worker dies or overruns.
struct alignas(64) WorkerStatus {
  std::atomic<std::uint64_t> job;             // job id of the item in progress
  std::atomic<std::uint32_t> item;            // its position in the job
  std::atomic<std::uint32_t> busy;            // 1 while an item runs
  std::atomic<std::int64_t> item_started_ns;  // CLOCK_MONOTONIC
  std::atomic<std::int32_t> pid;
};

struct PoolHeader {
  std::atomic<std::uint32_t> bell;         // bumped by every worker that posts a response
  std::atomic<std::uint32_t> io_sleeping;  // the pool's I/O thread sleeps on bell
  std::uint64_t magic;
};

struct RegionLayout {
  RingControl req;
  RingControl resp;
  WorkerStatus status;
};

constexpr std::size_t kHeaderBytes = 4096;
constexpr std::size_t kRegionBytes = 4096 + 2 * kRingBytes;  // control page + two rings
inline std::size_t region_offset(std::size_t slot) {
  return kHeaderBytes + slot * kRegionBytes;
}
inline std::byte* req_data(RegionLayout* r) {
  return reinterpret_cast<std::byte*>(r) + 4096;
}
inline std::byte* resp_data(RegionLayout* r) {
  return reinterpret_cast<std::byte*>(r) + 4096 + kRingBytes;
}

// The checksum of a frame: XXH3 (libxxhash) of the header's first 28 bytes, then of the inline
// payload seeded with that.
std::uint32_t frame_check(const FrameHeader& h, std::span<const std::byte> inline_payload) noexcept;

// ---- descriptors and payloads by reference -------------------------------------------------

// Sends `fd` over the Unix socket `sock` (SCM_RIGHTS). False if the peer is gone.
bool send_fd(int sock, int fd);
// Receives a descriptor; -1 if none is there (non-blocking) or the peer is gone.
int recv_fd(int sock, bool block);
// A memfd holding `bytes`; -1 and errno on failure.
int memfd_with(std::span<const std::byte> bytes, const char* name);

// A read-only mapping of a payload passed by reference.
class Mapped {
 public:
  Mapped() = default;
  // Maps `fd` (closing it), which must hold exactly `size` bytes.
  bool open(int fd, std::size_t size, std::string& why);
  ~Mapped();
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
              std::span<const std::byte> payload, std::uint64_t byref_size = 0);
// Wakes the consumer of the ring if it sleeps.
void ring_bell(RingControl* ctl);

struct Frame {
  FrameHeader h;
  std::span<const std::byte> payload;  // inline payload (empty for kByRef)
  std::uint64_t next;                  // head after this frame
};

enum class Peek { Empty, Frame, Corrupt };

// Consumer side: the next frame, validated (magic, kind, size, position and checksum); skips
// padding frames. Never reads outside the ring whatever the bytes say.
Peek ring_peek(Ring r, Frame& f, std::string& why);
void ring_pop(Ring r, const Frame& f);

// This host's name ("localhost" if it has none): the workers' and the pool's origin.
std::string host_name();

// The resident set of process `pid`, bytes (0 if unknown).
std::size_t resident_bytes(int pid);

}  // namespace parx::detail::channel
