// mpi/cluster_wire.hpp — the ClusterPool's message envelope (private to src/).
//
// Every message on the pool's communicator is a body followed by a 64-byte trailer (so a
// received buffer is shortened to its body without a copy):
//   job    (driver -> rank): the body is an engine job (engine/wire.hpp), plain or batch.
//   result (rank -> driver): the body is the engine's result of that job.
//   stop   (driver -> rank): the pool is shut down; the rank's constructor returns.
//   refusal (rank -> driver): a job message the rank could not read, with the reason.
//   output (rank -> driver): [u8 fd (1 or 2)] then whole lines a serving rank's relay read;
//   output end (rank -> driver, empty): after the stop, the rank's last output has been sent.
// Bodies of at least Options::compress_min_bytes may travel zstd-compressed (kFlagZstd).
// Values keep their alignment relative to the body's start (the codec's padding is computed
// from it), so a value is decoded where it lies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "parx/codec.hpp"

namespace parx::detail::cluster {

inline constexpr std::uint32_t kMagic = 0x4c435850;  // "PXCL"
inline constexpr std::uint16_t kVersion = 2;  // 2: engine results (one format with the ProcessPool)
inline constexpr int kTagJob = 7101, kTagResult = 7102, kTagStop = 7103, kTagRefused = 7104;
// output (rank -> driver): [u8 fd (1 or 2)] then whole lines a serving rank's relay read;
// output end (rank -> driver, empty): after the stop, the rank's last output has been sent.
inline constexpr int kTagOutput = 7105, kTagOutputEnd = 7106;
inline constexpr std::uint16_t kKindJob = 1, kKindResult = 2;
inline constexpr std::uint32_t kFlagBatch = 1, kFlagZstd = 2;
inline constexpr std::uint64_t kMaxBody = std::uint64_t{1} << 40;

struct Trailer {
  std::uint32_t magic = kMagic;
  std::uint16_t version = kVersion;
  std::uint16_t kind = 0;
  std::uint32_t flags = 0;
  std::int32_t rank = 0;          // sender
  std::uint64_t job = 0;          // job id, echoed in the result
  std::uint64_t raw_size = 0;     // body bytes before compression
  std::uint64_t n = 0;            // items
  std::int64_t number = 0;        // job: index of the first item; result: elapsed ns
  std::uint64_t fn = 0;           // function id
  std::uint64_t result_size = 0;  // batch: bytes per packed result
};
static_assert(sizeof(Trailer) == 64 && std::is_trivially_copyable_v<Trailer>);

// Reads and checks the trailer of `msg` (a message of `kind` from rank `from`); throws
// SerializationError saying what is wrong.
Trailer read_trailer(std::span<const std::byte> msg, std::uint16_t kind, int from);
// The body of `msg` (trailer checked), decompressed if it was sent compressed. `msg` becomes the
// body in place when it was not.
Bytes take_body(Bytes&& msg, const Trailer& t, int from);
// Whether a body of `n` bytes at `p` is worth compressing: zstd's fastest level on a 64 KiB
// sample must save at least 10 %.
bool compresses(const std::byte* p, std::size_t n);
// Appends the trailer to `body`, compressing it first when `compress`. Returns the bytes saved.
std::size_t seal(Bytes& body, Trailer t, bool compress);
// The trailer of the result of job `t`, sent by `rank`.
Trailer result_trailer(const Trailer& t, int rank, std::int64_t elapsed_ns);

}  // namespace parx::detail::cluster
