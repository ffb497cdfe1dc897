// The ProcessPool's transport: the parent side of its worker processes (process/transport.hpp).
#include "process/transport.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

#include "core/env.hpp"
#include "process/worker.hpp"

namespace parx::detail {

using namespace channel;
using proc::Holder;
using proc::ItemRef;
using proc::Job;
using proc::Slot;

namespace {

constexpr std::size_t kPrefetch = 2;  // jobs a worker may hold: one running, one queued
// Jobs that run longer than this (recent average) go only to idle workers: a job queued behind a
// long one could not move to a worker that frees up first, and the tail of a map would straggle.
// Shorter jobs are queued ahead so a worker never waits for a round trip.
constexpr std::int64_t kLongJobNs = 1'000'000;

std::int64_t spin_ns_from(std::chrono::microseconds spin) {
  if (spin.count() >= 0) return spin.count() * 1000;
  return parx::detail::env_spin_us(50) * 1000;
}

}  // namespace

ProcessTransport::ProcessTransport(const ProcessPool::Options& o)
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
      shutdown({.wait = true, .cancel_pending = true});
      std::rethrow_exception(e);
    }
    for (auto& s : slots_)
      s.initial = false;
    lk.unlock();
    registration_.attach(this);  // not under mu_: pools() takes the registry's lock, then mu_
  } catch (...) {
    if (io_.joinable()) {
      shutdown({.wait = true, .cancel_pending = true});
    } else {
      for (auto& s : slots_)
        if (s.pid > 0) fs_.signal(s.pid, SIGKILL);
    }
    release();
    throw;
  }
}

ProcessTransport::~ProcessTransport() {
  shutdown({});
  release();
}

// After the I/O thread has stopped: no more exit reports, sockets and the channel freed.
void ProcessTransport::release() noexcept {
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

void ProcessTransport::spawn(Slot& s) {
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
    pid = fs_.spawn(worker_entry_id(), encode(b), false, sv[1]);
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

void ProcessTransport::enqueue(RemoteJob&& rj) {
  engine::seal_job(rj.fn, rj.payload, rj.n, rj.batch, "parx::ProcessPool");
  auto job = std::make_unique<Job>();
  job->fn = rj.fn;
  const RemoteEntry* e = find_remote(rj.fn);
  if (e) job->fn_name = e->name;
  job->holder = std::make_shared<Holder>();
  job->holder->sink = std::move(rj.sink);
  job->holder->remaining = rj.n;
  job->count = rj.n;
  job->batch = rj.batch;
  if (rj.batch) {
    job->result_size = e->batch.result_size;  // seal_job checked that e has a batch form
    job->first_index = rj.first_index;
  } else {
    job->items.reserve(rj.items.size());
    for (std::size_t i = 0; i < rj.items.size(); ++i)
      job->items.push_back({rj.items[i].index, rj.items[i].offset, i, 0});
  }
  job->orig = std::make_shared<const Bytes>(std::move(rj.payload));
  submit_job(std::move(job));
}

void ProcessTransport::submit_job(std::unique_ptr<Job> job) {
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
    counters_.submitted += job->count;
    ++counters_.chunks;
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

// The dashboard's view (observe/metrics.hpp): the counters and each worker slot's state.
observe::PoolSnapshot ProcessTransport::snapshot() const {
  std::lock_guard lk(mu_);
  observe::PoolSnapshot snap{exec_id_, "process", counters_locked(), {}};
  for (const Slot& sl : slots_) {
    const char* state = sl.state == Slot::Booting    ? "starting"
                        : sl.state == Slot::Empty    ? (stopping_ ? "stopped" : "starting")
                        : sl.state == Slot::Stopping ? "stopped"
                        : sl.assigned.empty()        ? "idle"
                                                     : "busy";
    snap.workers.push_back({static_cast<int>(sl.index), sl.pid, -1, host_, state, sl.tasks_ended});
  }
  return snap;
}

void ProcessTransport::dispatch() {
  while (!pending_.empty()) {
    Job& j = *pending_.front();
    if (!j.holder->started) {
      if (!j.holder->sink->start()) {  // cancelled by its caller: drop it
        counters_.cancelled += j.count;
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
    counters_.bytes_sent += j.orig->size();
    if (j.task_id)
      emit_job(observe::EventKind::TaskStarted, j, static_cast<int>(best->index), best->pid);
    best->budget_used += j.count;
    best->assigned.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
}

bool ProcessTransport::send_job(Slot& s, Job& j) {
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

std::unique_ptr<Job> ProcessTransport::sub_job(const Job& j, std::vector<ItemRef> items) {
  auto n = std::make_unique<Job>();
  n->id = next_job_++;
  ++counters_.chunks;  // its items were counted when first submitted
  n->fn = j.fn;
  n->holder = j.holder;
  n->blameless = j.blameless;
  n->fn_name = j.fn_name;
  n->count = items.size();
  n->batch = j.batch;
  n->result_size = j.result_size;
  std::vector<std::size_t> offsets(items.size());
  for (std::size_t k = 0; k < items.size(); ++k)
    offsets[k] = items[k].offset;
  // Further rebuilds start from the new payload.
  n->orig = std::make_shared<const Bytes>(engine::rebuild_job(*j.orig, j.batch, offsets));
  for (std::size_t k = 0; k < items.size(); ++k)
    items[k].offset = offsets[k];
  n->items = std::move(items);
  queued_again(*n);
  return n;
}

void ProcessTransport::requeue_front(std::vector<std::unique_ptr<Job>>& jobs) {
  for (auto it = jobs.rbegin(); it != jobs.rend(); ++it)
    pending_.push_front(std::move(*it));
  jobs.clear();
}

void ProcessTransport::item_done(Job& j, Done& done, std::size_t count) {
  counters_.done += count;
  settle(j, done, count);
}

void ProcessTransport::settle(Job& j, Done& done, std::size_t count) {
  j.holder->remaining -= count;
  if (j.holder->remaining == 0 && !j.holder->finished) {
    j.holder->finished = true;
    done.push_back(j.holder);
  }
}

void ProcessTransport::fail_item(Job& j, const ItemRef& it, std::exception_ptr e, Done& done,
                                 bool cancelled) {
  j.holder->sink->error(it.slot, std::move(e));
  ++(cancelled ? counters_.cancelled : counters_.failed);
  settle(j, done, 1);
}

void ProcessTransport::kill_slot(Slot& s, Slot::Kill why, std::string detail) {
  if (s.kill != Slot::None || s.pid <= 0) return;
  s.kill = why;
  s.kill_detail = std::move(detail);
  fs_.signal(s.pid, SIGKILL);
}

// Reads every complete frame from the slot's response ring. False if the channel is corrupt (the
// worker is then being killed).
bool ProcessTransport::drain(Slot& s, Done& done) {
  if (s.kill == Slot::Corrupt) return false;
  bool any = false;
  for (;;) {
    Frame f;
    std::string why;
    const Peek p = ring_peek(s.resp, f, why);
    if (p == Peek::Empty) return any;
    auto corrupt = [&](const std::string& w) {
      ++counters_.corrupt_messages;
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
          Decoder d(payload);
          init_error_ = engine::get_error(d).exception("");
          if (d.remaining()) throw SerializationError("trailing bytes after an initializer error");
        } catch (const SerializationError& e) {
          return corrupt(e.what());
        }
        ++s.init_failures;
        boot_cv_.notify_all();
        break;
      }
      case kRefused: {
        ++counters_.corrupt_messages;
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

// A job's result (engine/wire.hpp), checked whole before any outcome is delivered.
void ProcessTransport::handle_result(Slot& s, std::span<const std::byte> payload, Done& done) {
  Job& j = *s.assigned.front();
  const engine::ResultView v = engine::parse_result(payload, j.count, j.batch, j.result_size);
  std::vector<engine::WireError> errors;  // decoded before anything is delivered
  if (v.errors) {
    errors.reserve(v.errors);
    v.for_each([&](const engine::Outcome& o) {
      if (o.ok) return;
      Decoder d(o.bytes, o.at);
      errors.push_back(engine::get_error(d));
      if (d.remaining()) throw SerializationError("trailing bytes after a task error");
    });
  }
  note_job_time(v.elapsed_ns);
  j.holder->elapsed += v.elapsed_ns;
  counters_.bytes_received += payload.size();
  std::string first_error;
  if (!errors.empty() && j.task_id) first_error = errors.front().summary();
  if (j.batch) {
    if (j.items.empty()) {
      j.holder->sink->values_raw(v.packed, v.n, nullptr);
    } else {
      std::vector<std::size_t> slots(v.n);
      for (std::size_t k = 0; k < v.n; ++k)
        slots[k] = j.items[k].slot;
      j.holder->sink->values_raw(v.packed, v.n, slots.data());
    }
    item_done(j, done, v.n - errors.size());
  }
  std::vector<ItemRef> retry;
  std::size_t e = 0;
  v.for_each([&](const engine::Outcome& o) {
    if (!o.ok) {
      const ItemRef it = j.item(o.slot);
      engine::WireError& err = errors[e++];
      err.set_index(it.index);  // a batch's worker numbers its items from 0
      if (err.info.function.empty()) err.info.function = j.fn_name;
      error_outcome(j, it, std::move(err), retry, done);
      return;
    }
    const std::size_t slot = j.items[o.slot].slot;  // a value: a plain job, whose items are listed
    try {
      j.holder->sink->value(slot, o.bytes, o.at);
    } catch (...) {
      j.holder->sink->error(slot, std::current_exception());
    }
    item_done(j, done);
  });
  s.tasks_ended += v.n;
  job_ended(s, j, errors.size(), v.elapsed_ns, std::move(first_error));
  std::unique_ptr<Job> finished = std::move(s.assigned.front());
  s.assigned.pop_front();
  if (!retry.empty()) pending_.push_back(sub_job(*finished, std::move(retry)));
}

// An item threw: retried (retry_exceptions) or failed with its error.
void ProcessTransport::error_outcome(Job& j, const ItemRef& it, engine::WireError err,
                                     std::vector<ItemRef>& retry, Done& done) {
  if (opts_.retry_exceptions && it.attempts < opts_.retries && accepting_) {
    ItemRef r = it;
    ++r.attempts;
    ++counters_.retried;
    if (j.task_id) emit_job(observe::EventKind::TaskRetried, j);
    retry.push_back(r);
  } else {
    fail_item(j, it, err.exception(""), done);
  }
}

void ProcessTransport::shutdown(const ShutdownOptions& how) {
  Done done;
  {
    std::lock_guard lk(mu_);
    accepting_ = false;
    if (how.cancel_pending) {
      for (auto& jp : pending_) {
        if (jp->task_id) emit_job(observe::EventKind::TaskCancelled, *jp);
        if (!jp->holder->started) {
          counters_.cancelled += jp->count;
          jp->holder->finished = true;
          jp->holder->sink->cancel();
        } else {
          for (auto& it : jp->all_items())
            fail_item(*jp, it, std::make_exception_ptr(Cancelled()), done, true);
        }
      }
      pending_.clear();
    }
    stopping_ = true;
  }
  finish(done);
  bump();
  if (how.wait && io_.joinable() && io_.get_id() != std::this_thread::get_id()) io_.join();
}

}  // namespace parx::detail
