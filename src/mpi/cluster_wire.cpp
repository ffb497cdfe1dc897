// The ClusterPool's message envelope (mpi/cluster_wire.hpp).
#include "mpi/cluster_wire.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "parx/errors.hpp"

namespace parx::detail::cluster {

Trailer read_trailer(std::span<const std::byte> msg, std::uint16_t kind, int from) {
  const std::string who = "a message from rank " + std::to_string(from);
  if (msg.size() < sizeof(Trailer))
    throw SerializationError(who + " is " + std::to_string(msg.size()) +
                             " bytes, shorter than its trailer");
  Trailer t;
  std::memcpy(&t, msg.data() + msg.size() - sizeof t, sizeof t);
  if (t.magic != kMagic)
    throw SerializationError(who + " has a bad magic number (not a ClusterPool message)");
  if (t.version != kVersion)
    throw SerializationError(who + " has protocol version " + std::to_string(t.version) +
                             ", expected " + std::to_string(kVersion) +
                             " (ranks built from different parx versions?)");
  if (t.kind != kind) throw SerializationError(who + " has kind " + std::to_string(t.kind));
  if (t.raw_size > kMaxBody || t.n > kMaxBody)
    throw SerializationError(who + " claims an impossible size");
  if (!(t.flags & kFlagZstd) && t.raw_size != msg.size() - sizeof t)
    throw SerializationError(who + " has a body of " + std::to_string(msg.size() - sizeof t) +
                             " bytes, its trailer says " + std::to_string(t.raw_size));
  return t;
}

Bytes take_body(Bytes&& msg, const Trailer& t, int from) {
  msg.resize(msg.size() - sizeof(Trailer));
  if (!(t.flags & kFlagZstd)) return std::move(msg);
  // The frame states its size too: both must agree before anything is allocated.
  const unsigned long long framed = ZSTD_getFrameContentSize(msg.data(), msg.size());
  if (framed != t.raw_size)
    throw SerializationError("a compressed message from rank " + std::to_string(from) +
                             " whose frame does not state the size its trailer claims");
  Bytes raw(t.raw_size);
  const std::size_t got = ZSTD_decompress(raw.data(), raw.size(), msg.data(), msg.size());
  if (ZSTD_isError(got) || got != t.raw_size)
    throw SerializationError(
        "a compressed message from rank " + std::to_string(from) +
        " does not decompress to its stated size" +
        (ZSTD_isError(got) ? std::string(": ") + ZSTD_getErrorName(got) : std::string()));
  return raw;
}

bool compresses(const std::byte* p, std::size_t n) {
  const std::size_t s = std::min<std::size_t>(n, 64 * 1024);
  std::vector<std::byte> out(ZSTD_compressBound(s));
  const std::size_t c = ZSTD_compress(out.data(), out.size(), p + (n - s) / 2, s, 1);
  return !ZSTD_isError(c) && c < s * 9 / 10;
}

std::size_t seal(Bytes& body, Trailer t, bool compress) {
  t.raw_size = body.size();
  std::size_t saved = 0;
  if (compress) {
    Bytes z(ZSTD_compressBound(body.size()) + sizeof t);
    const std::size_t c = ZSTD_compress(z.data(), z.size() - sizeof t, body.data(), body.size(), 1);
    if (!ZSTD_isError(c) && c < body.size()) {
      saved = body.size() - c;
      z.resize(c);
      body = std::move(z);
      t.flags |= kFlagZstd;
    }
  }
  const auto* tb = reinterpret_cast<const std::byte*>(&t);
  body.insert(body.end(), tb, tb + sizeof t);
  return saved;
}

Trailer result_trailer(const Trailer& t, int rank, std::int64_t elapsed_ns) {
  Trailer r{};
  r.kind = kKindResult;
  r.flags = t.flags & kFlagBatch;
  r.rank = rank;
  r.job = t.job;
  r.n = t.n;
  r.number = elapsed_ns;
  r.fn = t.fn;
  r.result_size = t.result_size;
  return r;
}

}  // namespace parx::detail::cluster
