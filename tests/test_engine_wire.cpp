// The remote-task engine's wire format (src/engine/wire.hpp) and the ClusterPool's envelope
// (src/mpi/cluster_wire.hpp), case by case: what they accept, and each way they refuse bytes
// that do not hold what they claim. (tests/fuzz/ throws random bytes at the same parsers.)
#include <gtest/gtest.h>

#include <parx/codec.hpp>
#include <parx/errors.hpp>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/wire.hpp"
#include "fuzz/sample_jobs.hpp"
#include "mpi/cluster_wire.hpp"

namespace engine = parx::detail::engine;
namespace cluster = parx::detail::cluster;

namespace {

template <class T>
void put_at(parx::Bytes& b, std::size_t at, T v) {
  std::memcpy(b.data() + at, &v, sizeof v);
}

// Runs f, which must throw SerializationError whose message contains `what`.
template <class F>
void expect_refused(F&& f, const std::string& what) {
  try {
    f();
    ADD_FAILURE() << "accepted; expected a refusal containing \"" << what << "\"";
  } catch (const parx::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

parx::Bytes two_values() {
  engine::ResultWriter w;
  w.reset(2, false, 0);
  w.begin_value(0).put(std::string("a"));
  w.end_value();
  w.begin_value(1).put(std::string("b"));
  w.end_value();
  return w.take(5);
}

}  // namespace

TEST(EngineWire, ParsesAJobAndRefusesOneThatClaimsMoreThanItHolds) {
  parx::Bytes job = sample_plain_job();
  const auto items = engine::parse_job(job);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].index, 1);
  EXPECT_EQ(items[1].len, 4u);
  parx::Bytes more = job;
  put_at<std::uint64_t>(more, 8, 1000);
  expect_refused([&] { (void)engine::parse_job(more); }, "more items than it holds");
  parx::Bytes longer = job;
  put_at<std::uint64_t>(longer, 16 + 8, 1 << 20);  // the first item's length
  expect_refused([&] { (void)engine::parse_job(longer); }, "item beyond the job");
  expect_refused([&] { (void)engine::parse_job(std::span(job).first(8)); },
                 "shorter than its header");
}

TEST(EngineWire, RefusesABatchWhoseShapeDoesNotMatchItsSize) {
  parx::Bytes batch = sample_batch_job();
  EXPECT_EQ(engine::parse_batch(batch).n, 3u);
  put_at<std::uint64_t>(batch, 8, 4);
  expect_refused([&] { (void)engine::parse_batch(batch); }, "does not match its item count");
}

TEST(EngineWire, AResultIsCheckedWholeBeforeAnythingIsDelivered) {
  const parx::Bytes ok = two_values();
  const engine::ResultView v = engine::parse_result(ok, 2, false, 0);
  EXPECT_EQ(v.elapsed_ns, 5);
  EXPECT_EQ(v.errors, 0u);
  std::vector<std::string> got;
  v.for_each([&](const engine::Outcome& o) {
    parx::Decoder d(o.bytes, o.at);
    got.push_back(d.make<std::string>());
  });
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b"}));

  expect_refused([&] { (void)engine::parse_result(ok, 3, false, 0); }, "a result of 2 items");
  expect_refused([&] { (void)engine::parse_result(ok, 2, true, 8); }, "wrong form");
  expect_refused(
      [&] { (void)engine::parse_result(std::span(ok).first(ok.size() - 1), 2, false, 0); },
      "bad outcome record");

  engine::ResultWriter twice;
  twice.reset(2, false, 0);
  twice.begin_value(0).put(1);
  twice.end_value();
  twice.begin_value(0).put(2);
  twice.end_value();
  const parx::Bytes dup = twice.take(0);
  expect_refused([&] { (void)engine::parse_result(dup, 2, false, 0); },
                 "two outcomes for one item");

  engine::ResultWriter half;
  half.reset(2, false, 0);
  half.begin_value(1).put(1);
  half.end_value();
  const parx::Bytes missing = half.take(0);
  expect_refused([&] { (void)engine::parse_result(missing, 2, false, 0); }, "answers 1 of 2");
}

TEST(EngineWire, OutcomesOutOfOrderAreAcceptedOnceEach) {
  engine::ResultWriter w;  // a rank's worker processes finish items in any order
  w.reset(3, false, 0);
  for (std::size_t slot : {2, 0, 1}) {
    w.begin_value(slot).put(static_cast<int>(slot));
    w.end_value();
  }
  const parx::Bytes b = w.take(0);
  std::vector<std::size_t> slots;
  engine::parse_result(b, 3, false, 0).for_each([&](const engine::Outcome& o) {
    slots.push_back(o.slot);
  });
  EXPECT_EQ(slots, (std::vector<std::size_t>{2, 0, 1}));
}

TEST(EngineWire, ErrorsArriveAsTheTypeTheyLeftAs) {
  auto round_trip = [](std::exception_ptr e) {
    parx::Encoder enc(64);
    engine::put_error(enc, e, 7, "f", 2, "host");
    parx::Decoder d(std::span<const std::byte>(enc.data(), enc.size()));
    return engine::get_error(d).exception("on rank 2, host h");
  };
  EXPECT_THROW(
      std::rethrow_exception(round_trip(std::make_exception_ptr(parx::TimeoutError("slow")))),
      parx::TimeoutError);
  EXPECT_THROW(std::rethrow_exception(round_trip(std::make_exception_ptr(parx::Cancelled()))),
               parx::Cancelled);
  try {
    std::rethrow_exception(round_trip(std::make_exception_ptr(parx::WorkerCrashed(9, 11, 0, -1))));
    ADD_FAILURE();
  } catch (const parx::WorkerCrashed& w) {
    EXPECT_EQ(w.signal(), 11);
    EXPECT_EQ(w.task_index(), 7);  // the item it was running
  }
  try {
    std::rethrow_exception(round_trip(std::make_exception_ptr(std::runtime_error("boom"))));
    ADD_FAILURE();
  } catch (const parx::TaskError& t) {
    EXPECT_EQ(t.type_name(), "std::runtime_error");
    EXPECT_EQ(t.message(), "boom");
    EXPECT_EQ(t.rank(), 2);
    EXPECT_EQ(t.task_index(), 7);
  }
  const std::byte unknown[1] = {std::byte{9}};
  parx::Decoder d(unknown);
  expect_refused([&] { (void)engine::get_error(d); }, "unknown kind");
}

TEST(EngineWire, ARebuiltJobKeepsEachItemsAlignment) {
  parx::Bytes job = sample_plain_job();
  const auto items = engine::parse_job(job);
  std::vector<std::size_t> pick{items[1].at};
  const parx::Bytes again = engine::rebuild_job(job, false, pick);
  const auto rebuilt = engine::parse_job(again);
  ASSERT_EQ(rebuilt.size(), 1u);
  EXPECT_EQ(rebuilt[0].index, 1);
  EXPECT_EQ(rebuilt[0].args_at % 64, items[1].args_at % 64);
  EXPECT_EQ(std::memcmp(again.data() + rebuilt[0].args_at, job.data() + items[1].args_at, 4), 0);
}

TEST(ClusterEnvelope, AForgedCompressedSizeIsRefusedBeforeAllocating) {
  parx::Bytes body(1 << 16, std::byte{7});
  cluster::Trailer t{};
  t.kind = cluster::kKindResult;
  t.rank = 1;
  (void)cluster::seal(body, t, true);
  const cluster::Trailer got = cluster::read_trailer(body, cluster::kKindResult, 1);
  ASSERT_TRUE(got.flags & cluster::kFlagZstd);
  EXPECT_EQ(cluster::take_body(parx::Bytes(body), got, 1).size(), std::size_t{1} << 16);

  cluster::Trailer forged = got;
  forged.raw_size = std::uint64_t{1} << 39;  // 512 GiB: never allocated
  expect_refused([&] { (void)cluster::take_body(parx::Bytes(body), forged, 1); },
                 "does not state the size its trailer claims");
}

TEST(ClusterEnvelope, RefusesAMessageThatIsNotOne) {
  parx::Bytes junk(100, std::byte{1});
  expect_refused([&] { (void)cluster::read_trailer(junk, cluster::kKindJob, 3); },
                 "a message from rank 3 has a bad magic number");
  parx::Bytes body(10);
  cluster::Trailer t{};
  t.kind = cluster::kKindJob;
  (void)cluster::seal(body, t, false);
  expect_refused([&] { (void)cluster::read_trailer(body, cluster::kKindResult, 3); }, "has kind");
  body[body.size() - 64 + 4] = std::byte{9};  // the version
  expect_refused([&] { (void)cluster::read_trailer(body, cluster::kKindJob, 3); },
                 "protocol version");
}
