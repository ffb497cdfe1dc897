// Fuzz target for what a ProcessPool's parent and workers read from each other: the frames of a
// shared-memory ring (process/channel.hpp: ring positions, frame headers, checksums, padding
// frames), and in each frame the engine's job, result or error (engine/wire.hpp), parsed as the
// worker and the parent parse them. Any bytes must give a frame, "empty" or "corrupt", and a
// payload must parse or throw SerializationError: no read outside the ring or the payload (ASan),
// no undefined behaviour (UBSan), no allocation beyond what the input could justify.
//
// Input: [u8 flags][u64 head][u64 tail][u32 split], then the bytes; see LLVMFuzzerTestOneInput.
//
// Built as a libFuzzer target (preset `fuzz`) and as a deterministic replay in the suite.
#include <cstring>
#include <memory>
#include <string>

#include "engine/wire.hpp"
#include "process/channel.hpp"
#include "replay.hpp"
#include "sample_jobs.hpp"

namespace {

using namespace parx::detail;
using namespace parx::detail::channel;

struct TestRing {
  RingControl ctl{};
  std::unique_ptr<std::byte[]> data{new std::byte[kRingBytes]()};
  Ring ring() { return {&ctl, data.get()}; }
};

TestRing& scratch() {
  static TestRing* r = new TestRing();
  return *r;
}

// What the parent and a worker do with a frame's payload.
void parse_payload(const Frame& f) {
  const std::span<const std::byte> p = f.payload;
  try {
    if (f.h.kind == kRun) {
      if (f.h.flags & kBatch)
        (void)engine::parse_batch(p);
      else
        (void)engine::parse_job(p);
    } else if (f.h.kind == kResult && p.size() >= engine::kResultHeader) {
      const auto n = engine::load_at<std::uint64_t>(p, 0);
      const auto rs = engine::load_at<std::uint64_t>(p, 24);
      // The parent checks a result against the job it sent (whose size it knows): a job of at
      // most as many items as the payload has bytes.
      if (n > p.size() || rs > engine::kMaxBatchElem) return;
      const engine::ResultView v = engine::parse_result(p, n, f.h.flags & kBatch, rs);
      v.for_each([](const engine::Outcome& o) {
        if (!o.ok) {
          parx::Decoder d(o.bytes, o.at);
          (void)engine::get_error(d).exception("fuzz");
        }
      });
    } else if (f.h.kind == kInitFailed) {
      parx::Decoder d(p);
      (void)engine::get_error(d);
    }
  } catch (const parx::SerializationError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 21) return 0;
  TestRing& r = scratch();
  std::uint64_t head, tail;
  std::uint32_t split;
  std::memcpy(&head, data + 1, 8);
  std::memcpy(&tail, data + 9, 8);
  std::memcpy(&split, data + 17, 4);
  const bool raw_head = data[0] & 1;  // else the head is where the bytes start
  data += 21;
  size = std::min<std::size_t>(size - 21, kRingBytes);
  // The first `split` bytes end at the ring's end (a padding frame, a frame before the wrap),
  // the rest start at its beginning.
  const std::size_t at_end = std::min<std::size_t>(split, size);
  std::memcpy(r.data.get() + (kRingBytes - at_end), data, at_end);
  std::memcpy(r.data.get(), data + at_end, size - at_end);
  // Positions as a peer wrote them (it may write anything); by default, where the bytes are.
  if (!raw_head) head = (head / kRingBytes) * kRingBytes + (kRingBytes - at_end) % kRingBytes;
  r.ctl.head.store(head, std::memory_order_relaxed);
  r.ctl.tail.store(tail, std::memory_order_relaxed);
  for (int k = 0; k < 8; ++k) {
    Frame f;
    std::string why;
    if (ring_peek(r.ring(), f, why) != Peek::Frame) break;
    parse_payload(f);
    ring_pop(r.ring(), f);
  }
  std::memset(r.data.get() + (kRingBytes - at_end), 0, at_end);
  std::memset(r.data.get(), 0, size - at_end);
  return 0;
}

// Valid rings: a job, a batch job, a result with a value and an error, an init failure, and a
// frame that wraps (a padding frame first).
std::vector<std::vector<std::uint8_t>> fuzz_seeds() {
  std::vector<std::vector<std::uint8_t>> seeds;
  auto seed = [&](std::uint32_t kind, std::uint32_t flags, std::span<const std::byte> payload,
                  bool at_end) {
    TestRing r;
    std::uint64_t start = 0;
    if (at_end) {  // leave 64 bytes before the end: the frame goes after a padding frame
      start = kRingBytes - 64;
      r.ctl.head.store(start);
      r.ctl.tail.store(start);
    }
    if (!ring_put(r.ring(), kind, 7, flags, payload)) return;
    const std::uint64_t tail = r.ctl.tail.load();
    const std::size_t from = start % kRingBytes;
    const std::uint32_t split = at_end ? static_cast<std::uint32_t>(kRingBytes - from) : 0;
    std::vector<std::uint8_t> in(21);
    in[0] = 0;
    std::memcpy(in.data() + 1, &start, 8);
    std::memcpy(in.data() + 9, &tail, 8);
    std::memcpy(in.data() + 17, &split, 4);
    const auto* b = reinterpret_cast<const std::uint8_t*>(r.data.get());
    in.insert(in.end(), b + from, b + from + split);
    in.insert(in.end(), b, b + (tail - start - split));
    seeds.push_back(std::move(in));
  };
  const parx::Bytes job = sample_plain_job();
  seed(kRun, 0, job, false);
  seed(kRun, 0, job, true);
  const parx::Bytes batch = sample_batch_job();
  seed(kRun, kBatch, batch, false);
  engine::ResultWriter w;
  w.reset(2, false, 0);
  w.begin_value(0).put(std::string("value"));
  w.end_value();
  w.error(1, std::make_exception_ptr(parx::TimeoutError("too slow")), 1, "f", -1, "host");
  const parx::Bytes res = w.take(1000);
  seed(kResult, 0, res, false);
  engine::ResultWriter wb;
  wb.reset(3, true, 8);
  wb.error(2, std::make_exception_ptr(std::runtime_error("boom")), 2, "g", -1, "host");
  const parx::Bytes bres = wb.take(10);
  seed(kResult, kBatch, bres, false);
  parx::Encoder err(64);
  engine::put_error(err, std::make_exception_ptr(parx::WorkerCrashed(9, 11, 0, 3)), 3, "h", 2,
                    "host");
  seed(kInitFailed, 0, {err.data(), err.size()}, false);
  return seeds;
}
