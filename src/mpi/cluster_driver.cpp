// The ClusterPool driver's communication thread: dispatch, results, release of the ranks
// (mpi/cluster_impl.hpp).
#include "mpi/cluster_impl.hpp"

namespace parx::detail {

bool ClusterImpl::compress_for(int dest, const Bytes& body) const {
  if (body.size() < opts_.compress_min_bytes) return false;
  switch (opts_.compression) {
    case ClusterPool::Compression::never:
      return false;
    case ClusterPool::Compression::always:
      return true;
    case ClusterPool::Compression::automatic:
      return hosts_[dest] != host_ && compresses(body.data(), body.size());
  }
  return false;
}

void ClusterImpl::send_job(ClusterJob& j) {
  Trailer t{};
  t.kind = kKindJob;
  t.flags = j.batch ? kFlagBatch : 0;
  t.rank = rank_;
  t.job = j.id;
  t.n = j.n;
  t.number = j.first_index;
  t.fn = j.fn;
  t.result_size = j.result_size;
  if (j.rank == rank_) {  // the driver's own slots
    t.raw_size = j.payload.size();
    server_->run(std::move(j.payload), t);
    return;
  }
  auto buf = std::make_shared<Bytes>(std::move(j.payload));
  const bool z = compress_for(j.rank, *buf);
  const std::size_t saved = seal(*buf, t, z);
  {
    std::lock_guard lk(mu_);
    counters_.bytes_sent += buf->size();
    if (t.flags & kFlagZstd || saved) {
      ++counters_.compressed;
      counters_.bytes_saved += saved;
    }
  }
  mpi::Request req = comm_->isend(std::span<const std::byte>(*buf), j.rank, kTagJob);
  std::lock_guard lk(send_mu_);
  sending_.push_back({std::move(req), std::move(buf)});
}

// Every item of a job that was handed to `rank` fails with `e`; counted, and the rank's job
// count goes down.
void ClusterImpl::fail_sent(ClusterJob& j, int rank, const std::exception_ptr& e) {
  for (std::size_t k = 0; k < j.n; ++k)
    j.sink->error(k, e);
  j.sink->finish(0);
  std::lock_guard lk(mu_);
  counters_.failed += j.n;
  if (static_cast<std::size_t>(rank) < running_per_rank_.size() && running_per_rank_[rank])
    --running_per_rank_[rank];
}

void ClusterImpl::fail_rank_jobs(int rank, const std::string& why) {
  refused_[rank] = true;
  capacity_[rank] = 0;
  const auto err = std::make_exception_ptr(SerializationError(why));
  for (auto it = sent_.begin(); it != sent_.end();) {
    if (it->second->rank != rank) {
      ++it;
      continue;
    }
    fail_sent(*it->second, rank, err);
    it = sent_.erase(it);
  }
  held_[rank] = 0;
}

void ClusterImpl::handle_result(Bytes msg, Trailer t, bool local) {
  const int from = t.rank;
  Bytes body;
  if (local) {
    body = std::move(msg);
  } else {
    {
      std::lock_guard lk(mu_);
      counters_.bytes_received += msg.size();
      if (t.flags & kFlagZstd) {
        ++counters_.compressed;
        counters_.bytes_saved += t.raw_size > msg.size() ? t.raw_size - msg.size() : 0;
      }
    }
    body = take_body(std::move(msg), t, from);
  }
  auto it = sent_.find(t.job);
  if (it == sent_.end() || it->second->rank != from)
    throw SerializationError("rank " + std::to_string(from) + " answered job " +
                             std::to_string(t.job) + ", which it was not sent");
  std::unique_ptr<ClusterJob> j = std::move(it->second);
  sent_.erase(it);
  --held_[from];
  const std::string& host = hosts_[from];
  std::size_t failed = 0;
  try {
    if (t.n != j->n) throw SerializationError("a result with the wrong item count");
    const engine::ResultView v = engine::parse_result(body, j->n, j->batch, j->result_size);
    std::vector<std::exception_ptr> errors;  // decoded before anything is delivered
    if (v.errors) {
      const std::string where = "on rank " + std::to_string(from) + ", host " + host;
      errors.reserve(v.errors);
      v.for_each([&](const engine::Outcome& o) {
        if (o.ok) return;
        Decoder d(o.bytes, o.at);
        errors.push_back(engine::get_error(d).exception(where));
        if (d.remaining()) throw SerializationError("trailing bytes after a task error");
      });
    }
    if (j->batch) j->sink->values_raw(v.packed, j->n, nullptr);
    std::size_t e = 0;
    v.for_each([&](const engine::Outcome& o) {
      if (!o.ok) {
        j->sink->error(o.slot, std::move(errors[e++]));
        ++failed;
        return;
      }
      try {
        j->sink->value(o.slot, o.bytes, o.at);
      } catch (...) {
        j->sink->error(o.slot, std::current_exception());
        ++failed;
      }
    });
  } catch (const std::exception& e) {
    // Unreadable (checked whole before any delivery): every item fails with the reason.
    const std::string why =
        std::string(e.what()) + " (from rank " + std::to_string(from) + ", host " + host + ")";
    for (std::size_t k = 0; k < j->n; ++k)
      j->sink->error(k, std::make_exception_ptr(SerializationError(why)));
    failed = j->n;
  }
  {
    std::lock_guard lk(mu_);
    counters_.done += j->n - failed;
    counters_.failed += failed;
    if (static_cast<std::size_t>(from) < running_per_rank_.size() && running_per_rank_[from])
      --running_per_rank_[from];
    ClusterPool::Rank& r = ranks_[from];
    r.tasks += j->n;
    r.chunks += 1;
    r.busy_seconds += static_cast<double>(t.number) * 1e-9;
  }
  emit_task(failed ? observe::EventKind::TaskFailed : observe::EventKind::TaskFinished, *j, from,
            static_cast<std::int64_t>(t.number),
            failed ? "one or more items of the chunk failed (their TaskError reaches the caller)"
                   : nullptr);
  j->sink->finish(t.number);
}

// The driver's communication thread: takes queued jobs, hands them to ranks with free slots,
// receives results, and at shutdown releases the serving ranks.
void ClusterImpl::comm_loop() {
  last_active_ = now_ns();
  for (;;) {
    bool stop = false, cancel = false;
    std::deque<Local> local;
    bool progressed = take_queued(local, stop, cancel);
    if (cancel) cancel_pending();
    progressed |= dispatch();
    for (Local& l : local) {
      handle_result(std::move(l.body), l.t, true);
      progressed = true;
    }
    if (comm_) {
      progressed |= receive();
      reap_sends(false);
    }
    if (stop && pending_.empty() && sent_.empty()) {
      std::lock_guard lk(mu_);
      if (queue_.empty() && inbox_.empty()) break;
    }
    idle(progressed);
  }
  if (comm_) release_ranks();
  for (int r = 0; r < size_; ++r)
    emit_rank(observe::EventKind::WorkerStopped, r);
}

// Moves what submitters queued (and the driver's own results) to the communication thread.
bool ClusterImpl::take_queued(std::deque<Local>& local, bool& stop, bool& cancel) {
  bool any = false;
  std::lock_guard lk(mu_);
  while (!queue_.empty()) {
    pending_.push_back(std::move(queue_.front()));
    queue_.pop_front();
    any = true;
  }
  local.swap(inbox_);
  stop = stopping_;
  cancel = cancel_;
  wake_ = false;
  return any;
}

// shutdown(cancel_pending): the chunks not yet sent end Cancelled.
void ClusterImpl::cancel_pending() {
  std::uint64_t items = 0;
  for (auto& j : pending_) {
    j->sink->cancel();
    items += j->n;
    emit_task(observe::EventKind::TaskCancelled, *j);
  }
  {
    std::lock_guard lk(mu_);
    counters_.cancelled += items;
  }
  pending_.clear();
}

// The rank with the most room (the pull: a rank gets work as its slots free), rotating among
// equals; -1 when every rank is full.
int ClusterImpl::least_loaded() const {
  int best = -1;
  double load = 2.0;
  for (int k = 0; k < size_; ++k) {
    const int r = static_cast<int>((next_rank_ + static_cast<std::size_t>(k)) % size_);
    if (held_[r] >= capacity_[r]) continue;
    const double l = static_cast<double>(held_[r]) / static_cast<double>(capacity_[r]);
    if (l < load) {
      load = l;
      best = r;
    }
  }
  return best;
}

// Hands pending chunks to ranks with room. True if any was handed out or dropped.
bool ClusterImpl::dispatch() {
  bool any = false;
  while (!pending_.empty()) {
    const int best = least_loaded();
    if (best < 0) break;
    next_rank_ = (static_cast<std::size_t>(best) + 1) % size_;
    std::unique_ptr<ClusterJob> j = std::move(pending_.front());
    pending_.pop_front();
    any = true;
    if (!j->sink->start()) {  // cancelled by its caller while queued
      {
        std::lock_guard lk(mu_);
        counters_.cancelled += j->n;
      }
      emit_task(observe::EventKind::TaskCancelled, *j);
      continue;
    }
    j->rank = best;
    j->id = next_job_++;
    ++held_[best];
    {
      std::lock_guard lk(mu_);
      ++counters_.chunks;
      started_ += j->n;
      if (static_cast<std::size_t>(best) < running_per_rank_.size()) ++running_per_rank_[best];
    }
    emit_task(observe::EventKind::TaskStarted, *j, best);
    ClusterJob& ref = *j;
    sent_.emplace(ref.id, std::move(j));
    try {
      send_job(ref);
    } catch (...) {
      auto node = sent_.extract(ref.id);
      --held_[best];
      fail_sent(*node.mapped(), best, std::current_exception());
    }
  }
  return any;
}

// Receives every message the ranks have sent: results, relayed output, refusals.
bool ClusterImpl::receive() {
  bool any = false;
  while (auto st = comm_->iprobe()) {
    Bytes msg(st->bytes);
    comm_->recv(std::span<std::byte>(msg), st->source, st->tag);
    any = true;
    if (st->tag == kTagOutput) {
      print_output(msg, st->source);
      continue;
    }
    if (st->tag == kTagRefused) {
      const std::string why(reinterpret_cast<const char*>(msg.data()), msg.size());
      std::fprintf(stderr, "parx: rank %d refused a ClusterPool message: %s\n", st->source,
                   why.c_str());
      fail_rank_jobs(st->source, "rank " + std::to_string(st->source) +
                                     " refused a ClusterPool message: " + why);
      continue;
    }
    try {
      const Trailer t = read_trailer(msg, kKindResult, st->source);
      if (t.rank != st->source) throw SerializationError("a result with a wrong sender");
      handle_result(std::move(msg), t, false);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "parx: ClusterPool refused a result: %s\n", e.what());
      fail_rank_jobs(st->source, e.what());
    }
  }
  return any;
}

// Shutdown: tells every serving rank to stop, then prints what they still had to print until
// each has sent its end marker.
void ClusterImpl::release_ranks() {
  reap_sends(true);
  std::vector<mpi::Request> stops;
  static const std::byte none[1] = {};
  for (int r = 1; r < size_; ++r)
    stops.push_back(comm_->isend(std::span<const std::byte>(none, 0), r, kTagStop));
  for (auto& s : stops)
    s.wait();
  int ends = 0;
  std::int64_t pause = 0;
  while (ends < size_ - 1) {
    auto st = comm_->iprobe();
    if (!st) {
      pause = std::clamp<std::int64_t>(pause * 2, 5'000, 1'000'000);
      std::this_thread::sleep_for(std::chrono::nanoseconds(pause));
      continue;
    }
    pause = 0;
    Bytes msg(st->bytes);
    comm_->recv(std::span<std::byte>(msg), st->source, st->tag);
    if (st->tag == kTagOutput) print_output(msg, st->source);
    if (st->tag == kTagOutputEnd) ++ends;
  }
}

}  // namespace parx::detail
