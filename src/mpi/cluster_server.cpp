// Running a ClusterPool rank's jobs (mpi/cluster_server.hpp).
#include "mpi/cluster_server.hpp"

#include "engine/runner.hpp"
#include "process/transport.hpp"

namespace parx::detail {

namespace {

using cluster::Trailer;

// Collects a job's outcomes from the rank's worker processes into an engine result.
class ResultSink final : public PoolSink {
 public:
  ResultSink(Trailer t, int rank, std::string host, ClusterServer::Done done)
      : t_(t), rank_(rank), host_(std::move(host)), done_(std::move(done)) {
    out_.reset(t_.n, t_.flags & cluster::kFlagBatch, t_.result_size);
  }
  bool start() noexcept override { return true; }
  void cancel() noexcept override {}
  void value(std::size_t slot, std::span<const std::byte> bytes, std::size_t base) override {
    out_.value(slot, bytes, base);
  }
  void values_raw(const std::byte* raw, std::size_t n, const std::size_t* slots) override {
    const std::size_t rs = t_.result_size;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t s = slots ? slots[k] : k;
      if (s < t_.n) std::memcpy(out_.packed() + s * rs, raw + k * rs, rs);
    }
  }
  void error(std::size_t slot, std::exception_ptr e) noexcept override {
    try {
      out_.error(slot, e, t_.number + static_cast<std::int64_t>(slot), "", rank_, host_);
    } catch (...) {  // out of memory encoding an error: the driver reports the missing outcome
    }
  }
  void finish(std::int64_t elapsed_ns) noexcept override {
    done_(out_.take(elapsed_ns), cluster::result_trailer(t_, rank_, elapsed_ns));
  }

 private:
  Trailer t_;
  int rank_;
  std::string host_;
  ClusterServer::Done done_;
  engine::ResultWriter out_;
};

}  // namespace

ClusterServer::ClusterServer(const ClusterPool::Options& o, std::size_t slots, int rank,
                             std::string host, Done done, bool caller_runs)
    : rank_(rank), host_(std::move(host)), done_(std::move(done)) {
  ctx_.host = host_;
  ctx_.rank = rank_;
  ctx_.where = "on rank " + std::to_string(rank_);
  if (o.processes) {
    ProcessPool::Options po = o.process;
    po.workers = slots;
    if (po.output == Output::automatic) po.output = o.output;
    procs_ = std::make_unique<ProcessTransport>(po);
  } else if (!caller_runs) {
    threads_.emplace(slots);
  }
}

ClusterServer::~ClusterServer() = default;

void ClusterServer::execute(std::span<const std::byte> p, const Trailer& t) {
  engine::ResultWriter out;
  const bool batch = t.flags & cluster::kFlagBatch;
  std::int64_t elapsed = 0;
  try {
    if (p.size() < engine::kJobHeader || engine::load_at<std::uint64_t>(p, 8) != t.n)
      throw SerializationError("a job does not match its item count");
    elapsed = engine::run_job(p, batch, t.number, ctx_, out);
  } catch (...) {  // an unreadable job: every item fails with the reason
    out.reset(t.n, batch, t.result_size);
    for (std::size_t k = 0; k < t.n; ++k)
      out.error(k, std::current_exception(), t.number + static_cast<std::int64_t>(k), "", rank_,
                host_);
    elapsed = 0;
  }
  done_(out.take(elapsed), cluster::result_trailer(t, rank_, elapsed));
}

void ClusterServer::run(Bytes payload, const Trailer& t) {
  if (threads_) {
    (void)threads_->submit(
        [this, p = std::move(payload), t]() mutable { execute(std::span<const std::byte>(p), t); });
    return;
  }
  RemoteJob job;
  job.fn = t.fn;
  job.n = t.n;
  job.first_index = t.number;
  job.batch = t.flags & cluster::kFlagBatch;
  job.sink = std::make_unique<ResultSink>(t, rank_, host_, done_);
  try {
    if (job.batch) {
      if (engine::parse_batch(payload).n != t.n)
        throw SerializationError("a batch job does not match its item count");
    } else {
      const std::vector<engine::JobItem> items = engine::parse_job(payload);
      if (items.size() != t.n) throw SerializationError("a job does not match its item count");
      job.items.reserve(items.size());
      for (const engine::JobItem& it : items)
        job.items.push_back({it.index, it.at});
    }
    job.payload = std::move(payload);
    procs_->enqueue(std::move(job));
  } catch (...) {
    if (job.sink) {  // unreadable, or not taken: every item fails with the reason
      for (std::size_t k = 0; k < t.n; ++k)
        job.sink->error(k, std::current_exception());
      job.sink->finish(0);
    }
  }
}

void ClusterServer::shutdown() {
  if (threads_) threads_->shutdown();
  if (procs_) procs_->shutdown({});
}

}  // namespace parx::detail
