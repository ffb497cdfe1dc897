// Fuzz target for what ClusterPool ranks read from each other: a message's trailer (magic,
// version, kind, sizes), its zstd-compressed body, and in it the engine's job (read by a serving
// rank) or result and errors (read by the driver). Any bytes must be read or refused with
// SerializationError: no crash, no read outside the message (ASan), no undefined behaviour
// (UBSan), no allocation beyond what the message states and its zstd frame agrees with.
//
// Input: [u8 direction (even: a job to a rank, odd: a result to the driver)] then the message.
//
// Built as a libFuzzer target (preset `fuzz`) and as a deterministic replay in the suite.
#include <zstd.h>

#include <cstring>

#include "engine/wire.hpp"
#include "mpi/cluster_wire.hpp"
#include "replay.hpp"
#include "sample_jobs.hpp"

namespace {

using namespace parx::detail;
using cluster::Trailer;

// The most a fuzz input may make a rank allocate for a decompressed body (a real job's messages
// are as large as its arguments; here the input is a few KB).
constexpr std::uint64_t kMaxFuzzBody = 1 << 24;

void read_job(const parx::Bytes& body, const Trailer& t) {
  if (t.flags & cluster::kFlagBatch) {
    (void)engine::parse_batch(body);
  } else {
    (void)engine::parse_job(body);
  }
}

void read_result(const parx::Bytes& body, const Trailer& t) {
  // The driver checks a result against the job it sent, whose item count it knows.
  if (t.n > body.size() || t.result_size > engine::kMaxBatchElem) return;
  const engine::ResultView v =
      engine::parse_result(body, t.n, t.flags & cluster::kFlagBatch, t.result_size);
  v.for_each([](const engine::Outcome& o) {
    if (!o.ok) {
      parx::Decoder d(o.bytes, o.at);
      (void)engine::get_error(d).exception("on rank 1, host fuzz");
    }
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const bool result = data[0] & 1;
  const auto* b = reinterpret_cast<const std::byte*>(data + 1);
  parx::Bytes msg(b, b + (size - 1));
  try {
    const Trailer t =
        cluster::read_trailer(msg, result ? cluster::kKindResult : cluster::kKindJob, 1);
    if ((t.flags & cluster::kFlagZstd) && t.raw_size > kMaxFuzzBody) return 0;
    const parx::Bytes body = cluster::take_body(std::move(msg), t, 1);
    if (result)
      read_result(body, t);
    else
      read_job(body, t);
  } catch (const parx::SerializationError&) {
  }
  return 0;
}

// Valid messages: a job and a batch job to a rank, a result with a value and errors, and a
// compressed result.
std::vector<std::vector<std::uint8_t>> fuzz_seeds() {
  std::vector<std::vector<std::uint8_t>> seeds;
  auto seed = [&](bool result, parx::Bytes body, Trailer t, bool compress) {
    (void)cluster::seal(body, t, compress);
    std::vector<std::uint8_t> in{static_cast<std::uint8_t>(result ? 1 : 0)};
    for (std::byte x : body)
      in.push_back(static_cast<std::uint8_t>(x));
    seeds.push_back(std::move(in));
  };
  Trailer tj{};
  tj.kind = cluster::kKindJob;
  tj.n = 2;
  tj.fn = 0x1234;
  seed(false, sample_plain_job(), tj, false);
  Trailer tb = tj;
  tb.flags = cluster::kFlagBatch;
  tb.n = 3;
  tb.result_size = 8;
  seed(false, sample_batch_job(), tb, false);
  engine::ResultWriter w;
  w.reset(3, false, 0);
  w.begin_value(0).put(std::string(300, 'x'));
  w.end_value();
  w.error(1, std::make_exception_ptr(parx::Cancelled()), 1, "f", 1, "host");
  w.error(2, std::make_exception_ptr(std::runtime_error("boom")), 2, "f", 1, "host");
  const parx::Bytes res = w.take(1000);
  Trailer tr{};
  tr.kind = cluster::kKindResult;
  tr.rank = 1;
  tr.n = 3;
  seed(true, res, tr, false);
  seed(true, res, tr, true);
  return seeds;
}
