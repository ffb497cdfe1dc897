// ClusterPool: the driver's communication thread and the serving ranks' loop. The message
// envelope is mpi/cluster_wire.hpp; jobs and results are the engine's (engine/wire.hpp); a
// rank's jobs run in mpi/cluster_server.cpp.
#include "parx/cluster_pool.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "core/output_relay.hpp"
#include "parx/detail/sync.hpp"
#include "parx/mpi.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/trace.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/thread_pool.hpp"
#include "core/console.hpp"
#include "engine/wire.hpp"
#include "mpi/cluster_server.hpp"
#include "mpi/cluster_wire.hpp"

namespace parx {
namespace detail {

void set_throw_capture(bool on) noexcept;

using namespace cluster;

// ---- the pool -----------------------------------------------------------------------------------

// Losing a rank: the launcher ends every other rank with SIGTERM. Each rank of a pool then says
// which ranks of its own host are gone before it ends (ranks on other hosts cannot be checked
// from here; the launcher's own message names them). Everything is prepared beforehand: the
// handler only calls kill(pid, 0), write, nanosleep, sigaction and raise.
struct LostRankWatch {
  std::vector<pid_t> pids;        // ranks on this host, except this one
  std::vector<std::string> gone;  // the line printed when pids[i] no longer exists
  std::string none;               // the line printed when every local rank is still there
  struct sigaction previous {};
};
std::atomic<LostRankWatch*> g_watch{nullptr};  // the pool that reports lost ranks

struct ClusterJob {
  std::uint64_t id = 0;
  FunctionId fn = 0;
  Bytes payload;
  std::size_t n = 0;
  std::int64_t first_index = 0;
  bool batch = false;
  std::size_t result_size = 0;
  std::unique_ptr<PoolSink> sink;
  int rank = -1;
  std::uint64_t task_id = 0;
  const char* fn_name = nullptr;  // registered name (static storage), for observe events
};

class ClusterImpl final : public observe::detail::PoolSource {
 public:
  explicit ClusterImpl(const ClusterPool::Options& o);
  ~ClusterImpl() {
    shutdown(true, false);
    if (rank_out_) restore_output();  // a serving rank that never served (its constructor threw)
    if (watch_) {
      LostRankWatch* w = watch_.get();
      if (g_watch.compare_exchange_strong(w, nullptr))
        sigaction(SIGTERM, &watch_->previous, nullptr);
    }
  }

  bool driver() const noexcept { return rank_ == 0; }
  std::size_t workers() const noexcept { return workers_; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }

  void enqueue(std::unique_ptr<ClusterJob> j);
  void shutdown(bool wait, bool cancel_pending);
  void serve();
  std::vector<ClusterPool::Rank> ranks() {
    std::lock_guard lk(mu_);
    return ranks_;
  }
  ClusterPool::Stats stats() {
    std::lock_guard lk(mu_);
    return stats_;
  }
  observe::Counters counters() {
    std::lock_guard lk(mu_);
    return counters_locked();
  }
  std::uint64_t exec_id() const noexcept { return exec_id_; }
  observe::PoolSnapshot snapshot() const override {
    auto* self = const_cast<ClusterImpl*>(this);
    std::lock_guard lk(self->mu_);
    observe::PoolSnapshot snap;
    snap.id = exec_id_;
    snap.kind = "cluster";
    snap.counters = self->counters_locked();
    for (const auto& r : ranks_) {
      observe::WorkerState w;
      w.index = r.rank;
      w.rank = r.rank;
      w.pid = static_cast<pid_t>(r.pid);
      w.host = r.host;
      w.tasks = r.chunks;
      const std::size_t i = static_cast<std::size_t>(r.rank);
      w.state = !accepting_ && stopping_                               ? "stopped"
                : i < running_per_rank_.size() && running_per_rank_[i] ? "busy"
                                                                       : "idle";
      snap.workers.push_back(std::move(w));
    }
    return snap;
  }
  observe::Counters counters_locked() const {
    observe::Counters c = counters_;
    const std::uint64_t left = started_ + c.cancelled;
    c.queue_depth = c.submitted > left ? c.submitted - left : 0;
    c.running = started_ - std::min(started_, c.done + c.failed);
    c.bytes_moved = stats_.bytes_sent + stats_.bytes_received;
    return c;
  }
  void emit_task(observe::EventKind k, const ClusterJob& j, int rank = -1,
                 std::int64_t duration_ns = 0, const char* detail = nullptr) const {
    if (!j.task_id || !observe::active()) return;
    observe::Event e{};
    e.kind = k;
    e.executor_id = exec_id_;
    e.executor_kind = "cluster";
    e.task_id = j.task_id;
    e.worker = rank;
    e.rank = rank;
    e.name = j.fn_name;
    e.items = static_cast<std::uint32_t>(j.n);
    e.duration_ns = duration_ns;
    e.detail = detail;
    if (rank >= 0 && static_cast<std::size_t>(rank) < hosts_.size()) e.host = hosts_[rank].c_str();
    observe::emit(e);
  }
  void emit_rank(observe::EventKind k, int r) const {
    if (!observe::active()) return;
    observe::Event e{};
    e.kind = k;
    e.executor_id = exec_id_;
    e.executor_kind = "cluster";
    e.worker = r;
    e.rank = r;
    if (static_cast<std::size_t>(r) < hosts_.size()) e.host = hosts_[r].c_str();
    if (static_cast<std::size_t>(r) < ranks_.size()) e.pid = ranks_[r].pid;
    observe::emit(e);
  }
  bool is_shutdown() {
    std::lock_guard lk(mu_);
    return !accepting_;
  }

 private:
  struct Local {  // results of the driver's own server
    Bytes body;
    Trailer t;
  };
  struct Sending {
    mpi::Request req;
    std::shared_ptr<Bytes> buf;
  };

  void comm_loop();
  bool take_queued(std::deque<Local>& local, bool& stop, bool& cancel);
  void cancel_pending();
  int least_loaded() const;
  bool dispatch();
  bool receive();
  void release_ranks();
  template <class Hello>
  void watch_lost_ranks(const std::vector<Hello>& hello);
  // Waits after an idle round: spins (yielding) for spin_ns_, then sleeps a growing interval
  // (MPI cannot wake a sleeping thread; local events do).
  void idle(bool progressed);
  bool compress_for(int dest, const Bytes& body) const;
  void send_job(ClusterJob& j);
  void handle_result(Bytes msg, Trailer t, bool local);
  // Serving rank.
  void serve_loop(bool caller_runs);
  void send_result(Bytes body, const Trailer& t);
  // A serving rank's stdout and stderr become pipes read by the relay, which sends their lines
  // to the driver; finish_output sends the last ones and the end marker; restore_output puts
  // the rank's descriptors back.
  void start_output();
  void relay_lines(int fd, std::string_view lines);
  void finish_output();
  void restore_output() noexcept;
  // Driver: prints a serving rank's relayed lines.
  void print_output(const Bytes& msg, int source);
  // Drops the sends that completed (all: waits for every one); any thread, either role.
  void reap_sends(bool all);
  void fail_rank_jobs(int rank, const std::string& why);

  ClusterPool::Options opts_;
  std::optional<mpi::Comm> comm_;
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  std::vector<std::string> hosts_;
  std::vector<std::size_t> slots_;     // per rank: task slots (0: runs none)
  std::vector<std::size_t> capacity_;  // per rank: chunks it may hold
  std::vector<std::size_t> held_;      // per rank: chunks it holds (comm thread only)
  std::vector<bool> refused_;          // per rank: sent a refusal; no more work
  std::size_t workers_ = 0;
  std::int64_t spin_ns_ = 200'000;
  std::uint64_t exec_id_ = observe::next_executor_id();

  std::unique_ptr<ClusterServer> server_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  bool accepting_ = true;
  bool stopping_ = false;
  bool cancel_ = false;
  std::deque<std::unique_ptr<ClusterJob>> queue_;
  std::deque<Local> inbox_;
  std::vector<ClusterPool::Rank> ranks_;
  ClusterPool::Stats stats_;
  observe::Counters counters_;  // submitted, done, failed, cancelled (under mu_)
  std::uint64_t started_ = 0;
  std::vector<std::uint32_t> running_per_rank_;

  // Comm thread only.
  std::deque<std::unique_ptr<ClusterJob>> pending_;
  std::unordered_map<std::uint64_t, std::unique_ptr<ClusterJob>> sent_;
  std::size_t next_rank_ = 0;
  std::int64_t last_active_ = 0;
  std::int64_t backoff_ns_ = 0;
  std::uint64_t next_job_ = 1;

  std::thread thread_;
  std::unique_ptr<LostRankWatch> watch_;
  observe::detail::PoolRegistration registration_;

  // Serving rank: who polls, and the results on their way.
  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  bool polling_ = false;
  bool served_ = false;
  // Both roles: messages on their way (the driver's jobs, a serving rank's results).
  std::mutex send_mu_;
  std::vector<Sending> sending_;
  Output output_ = Output::lines;
  std::shared_ptr<RelayStream> rank_out_, rank_err_;  // serving rank, relayed output
  int saved_out_ = -1, saved_err_ = -1;
  bool to_driver_ = false;  // under send_mu_
};

namespace {

std::uint64_t registry_fingerprint() {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const std::string& n : registered_functions()) {
    for (char c : n) {
      h ^= static_cast<std::uint8_t>(c);
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;
    h *= 0x100000001b3ull;
  }
  return h;
}

void on_terminate(int sig) {
  const int saved = errno;
  LostRankWatch* w = g_watch.exchange(nullptr);
  if (w) {
    bool found = false;
    for (std::size_t i = 0; i < w->pids.size(); ++i)
      if (kill(w->pids[i], 0) != 0 && errno == ESRCH) {
        found = true;
        (void)!write(STDERR_FILENO, w->gone[i].data(), w->gone[i].size());
      }
    if (!found) (void)!write(STDERR_FILENO, w->none.data(), w->none.size());
    // Stay alive a moment, so the other survivors checking now do not take this rank for lost.
    timespec ts{0, 200'000'000};
    nanosleep(&ts, nullptr);
    sigaction(SIGTERM, &w->previous, nullptr);
  } else {
    signal(SIGTERM, SIG_DFL);
  }
  errno = saved;
  raise(sig);
}

std::int64_t spin_from_env(std::chrono::microseconds opt, std::int64_t dflt_ns) {
  if (opt.count() >= 0) return opt.count() * 1000;
  if (const char* s = std::getenv("PARX_SPIN_US")) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && v >= 0) return static_cast<std::int64_t>(v) * 1000;
  }
  return dflt_ns;
}

}  // namespace

ClusterImpl::ClusterImpl(const ClusterPool::Options& o) : opts_(o) {
  if (o.compress_min_bytes == 0)
    throw InvalidArgument("parx::ClusterPool: compress_min_bytes must be at least 1");
  check_remote_registry();
  output_ = resolve_output(o.output);
  opts_.output = output_;
  spin_ns_ = spin_from_env(o.spin, 200'000);
  host_ = mpi::host_name();
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  // What every rank tells the others: host, pid, cores, the functions it has.
  using Hello = std::tuple<std::string, std::int64_t, std::uint64_t, std::uint64_t>;
  std::vector<Hello> hello;
  const Hello mine{host_, static_cast<std::int64_t>(getpid()), cores, registry_fingerprint()};
  if (mpi::launched()) {
    if (mpi::thread_level() < MPI_THREAD_MULTIPLE)
      throw Error(
          "parx::ClusterPool needs MPI_THREAD_MULTIPLE, and this MPI library granted "
          "only level " +
          std::to_string(mpi::thread_level()) + " (build the MPI library with thread support)");
    comm_.emplace(mpi::world().dup());
    rank_ = comm_->rank();
    size_ = comm_->size();
    hello = comm_->allgather(mine);
  } else {
    hello = {mine};
  }
  hosts_.resize(size_);
  slots_.resize(size_);
  capacity_.resize(size_);
  held_.assign(size_, 0);
  refused_.assign(size_, false);
  ranks_.resize(size_);
  for (int r = 0; r < size_; ++r) {
    const auto& [host, pid, c, fp] = hello[r];
    if (fp != std::get<3>(hello[0]))
      throw Error("parx::ClusterPool: rank " + std::to_string(r) + " on " + host +
                  " has different registered functions than rank 0 (" +
                  std::string(std::get<0>(hello[0])) +
                  "): every rank must run the same program, built the same way");
    hosts_[r] = host;
    std::size_t same = 0;
    for (const auto& h : hello)
      same += std::get<0>(h) == host;
    std::size_t s = o.workers_per_rank
                        ? o.workers_per_rank
                        : std::max<std::size_t>(1, static_cast<std::size_t>(c) / same);
    if (r == 0 && size_ > 1 && !o.driver_runs_tasks) s = 0;
    slots_[r] = s;
    capacity_[r] = 2 * s;
    workers_ += s;
    ranks_[r].rank = r;
    ranks_[r].host = host;
    ranks_[r].pid = pid;
    ranks_[r].workers = s;
  }
  if (comm_ && size_ > 1) watch_lost_ranks(hello);
  if (size_ > 1) set_origin_rank(rank_, host_ != hosts_[0] ? host_ : std::string());
  if (!driver() && output_ != Output::inherit) start_output();
  if (slots_[rank_] > 0) {
    if (driver()) {
      server_ = std::make_unique<ClusterServer>(opts_, slots_[rank_], rank_, host_,
                                                [this](Bytes body, Trailer t) {
                                                  {
                                                    std::lock_guard lk(mu_);
                                                    inbox_.push_back({std::move(body), t});
                                                    wake_ = true;
                                                  }
                                                  cv_.notify_one();
                                                });
    } else {
      try {
        server_ = std::make_unique<ClusterServer>(
            opts_, slots_[rank_], rank_, host_,
            [this](Bytes body, Trailer t) { send_result(std::move(body), t); }, true);
      } catch (...) {
        restore_output();
        throw;
      }
    }
  }
  if (driver()) {
    running_per_rank_.assign(static_cast<std::size_t>(size_), 0);
    for (int r = 0; r < size_; ++r)
      emit_rank(observe::EventKind::WorkerStarted, r);
    thread_ = std::thread([this] { comm_loop(); });
    registration_.attach(this);
  }
}

template <class Hello>
void ClusterImpl::watch_lost_ranks(const std::vector<Hello>& hello) {
  auto w = std::make_unique<LostRankWatch>();
  const std::string me = "parx: rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                         " on " + host_ + ": the launcher is ending the MPI job";
  for (int r = 0; r < size_; ++r) {
    if (r == rank_ || std::get<0>(hello[r]) != host_) continue;
    const auto pid = static_cast<pid_t>(std::get<1>(hello[r]));
    w->pids.push_back(pid);
    w->gone.push_back(me + ": rank " + std::to_string(r) + " (pid " + std::to_string(pid) +
                      ") on this host was lost (a lost rank aborts the job)\n");
  }
  w->none = me + " (no rank on this host was lost: a rank on another host, or a cancelled job)\n";
  LostRankWatch* expected = nullptr;
  if (!g_watch.compare_exchange_strong(expected, w.get())) return;  // an older pool watches
  struct sigaction sa {};
  sa.sa_handler = on_terminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &w->previous);
  watch_ = std::move(w);
}

void ClusterImpl::enqueue(std::unique_ptr<ClusterJob> j) {
  {
    std::lock_guard lk(mu_);
    if (!accepting_) throw ExecutorShutdown("parx::ClusterPool: submit after shutdown");
    ++counters_.submitted;
    if (observe::active()) {
      j->task_id = observe::next_task_id();
      if (const RemoteEntry* e = find_remote(j->fn)) j->fn_name = e->name.c_str();
      emit_task(observe::EventKind::TaskQueued, *j);
    }
    queue_.push_back(std::move(j));
    wake_ = true;
  }
  cv_.notify_one();
}

void ClusterImpl::shutdown(bool wait, bool cancel_pending) {
  {
    std::lock_guard lk(mu_);
    accepting_ = false;
    stopping_ = true;
    if (cancel_pending) cancel_ = true;
    wake_ = true;
  }
  cv_.notify_one();
  if (wait && thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) {
    thread_.join();
    if (server_) server_->shutdown();
  }
}

void ClusterImpl::idle(bool progressed) {
  const std::int64_t now = now_ns();
  if (progressed) {
    last_active_ = now;
    backoff_ns_ = 0;
    return;
  }
  if (now - last_active_ < spin_ns_) {
    sched_yield();
    return;
  }
  backoff_ns_ = std::clamp<std::int64_t>(backoff_ns_ * 2, 20'000, 1'000'000);
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, std::chrono::nanoseconds(backoff_ns_), [this] { return wake_; });
  if (wake_) {
    wake_ = false;
    last_active_ = now_ns();
    backoff_ns_ = 0;
  }
}

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
    stats_.bytes_sent += buf->size();
    if (t.flags & kFlagZstd || saved) {
      ++stats_.compressed;
      stats_.bytes_saved += saved;
    }
  }
  mpi::Request req = comm_->isend(std::span<const std::byte>(*buf), j.rank, kTagJob);
  std::lock_guard lk(send_mu_);
  sending_.push_back({std::move(req), std::move(buf)});
}

void ClusterImpl::fail_rank_jobs(int rank, const std::string& why) {
  refused_[rank] = true;
  capacity_[rank] = 0;
  for (auto it = sent_.begin(); it != sent_.end();) {
    ClusterJob& j = *it->second;
    if (j.rank != rank) {
      ++it;
      continue;
    }
    for (std::size_t k = 0; k < j.n; ++k)
      j.sink->error(k, std::make_exception_ptr(SerializationError(why)));
    j.sink->finish(0);
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
      stats_.bytes_received += msg.size();
      if (t.flags & kFlagZstd) {
        ++stats_.compressed;
        stats_.bytes_saved += t.raw_size > msg.size() ? t.raw_size - msg.size() : 0;
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
  const std::string where = "on rank " + std::to_string(from) + ", host " + host;
  std::size_t failed = 0;
  try {
    if (t.n != j->n) throw SerializationError("a result with the wrong item count");
    const engine::ResultView v = engine::parse_result(body, j->n, j->batch, j->result_size);
    std::vector<std::exception_ptr> errors;  // decoded before anything is delivered
    for (const engine::Outcome& o : v.outcomes) {
      if (o.ok) continue;
      Decoder d(o.bytes, o.at);
      errors.push_back(engine::get_error(d).exception(where));
      if (d.remaining()) throw SerializationError("trailing bytes after a task error");
    }
    if (j->batch) j->sink->values_raw(v.packed, j->n, nullptr);
    std::size_t e = 0;
    for (const engine::Outcome& o : v.outcomes) {
      if (!o.ok) {
        j->sink->error(o.slot, std::move(errors[e++]));
        ++failed;
        continue;
      }
      try {
        j->sink->value(o.slot, o.bytes, o.at);
      } catch (...) {
        j->sink->error(o.slot, std::current_exception());
        ++failed;
      }
    }
  } catch (const std::exception& e) {
    // Unreadable (checked whole before any delivery): every item fails with the reason.
    const std::string why = std::string(e.what()) + " (from rank " + std::to_string(from) +
                            ", host " + host + ")";
    for (std::size_t k = 0; k < j->n; ++k)
      j->sink->error(k, std::make_exception_ptr(SerializationError(why)));
    failed = j->n;
  }
  {
    std::lock_guard lk(mu_);
    stats_.tasks += j->n;
    stats_.failed += failed;
    ++(failed ? counters_.failed : counters_.done);
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
  for (auto& j : pending_) {
    j->sink->cancel();
    emit_task(observe::EventKind::TaskCancelled, *j);
  }
  {
    std::lock_guard lk(mu_);
    counters_.cancelled += pending_.size();
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
        ++counters_.cancelled;
      }
      emit_task(observe::EventKind::TaskCancelled, *j);
      continue;
    }
    j->rank = best;
    j->id = next_job_++;
    ++held_[best];
    {
      std::lock_guard lk(mu_);
      ++stats_.chunks;
      ++started_;
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
      for (std::size_t k = 0; k < node.mapped()->n; ++k)
        node.mapped()->sink->error(k, std::current_exception());
      node.mapped()->sink->finish(0);
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
      fail_rank_jobs(st->source,
                     "rank " + std::to_string(st->source) + " refused a ClusterPool message: " + why);
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

void ClusterImpl::print_output(const Bytes& msg, int source) {
  const int fd = msg.empty() ? 0 : static_cast<int>(msg[0]);
  if (fd != STDOUT_FILENO && fd != STDERR_FILENO) {
    console_write(STDERR_FILENO, "parx: rank " + std::to_string(source) +
                                     " sent an output message for descriptor " +
                                     std::to_string(fd) + " (refused)\n");
    return;
  }
  std::string_view text(reinterpret_cast<const char*>(msg.data()) + 1, msg.size() - 1);
  if (text.empty()) return;
  if (text.back() == '\n') {
    console_write(fd, text);
  } else {  // lines always end in a newline; a damaged message still prints as lines
    std::string t(text);
    t += '\n';
    console_write(fd, t);
  }
}

void ClusterImpl::start_output() {
  std::optional<RelayPipes> pipes;
  try {
    pipes.emplace();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parx: rank %d keeps its own output (%s)\n", rank_, e.what());
    return;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  saved_out_ = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  saved_err_ = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (saved_out_ < 0 || saved_err_ < 0 || dup2(pipes->write_out, STDOUT_FILENO) < 0 ||
      dup2(pipes->write_err, STDERR_FILENO) < 0) {
    restore_output();
    return;
  }
  pipes->close_write_ends();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  {
    std::lock_guard lk(send_mu_);
    to_driver_ = true;
  }
  set_output_relayed(true);
  const std::string prefix = output_ == Output::prefixed ? "[" + log::origin() + "] " : "";
  std::tie(rank_out_, rank_err_) =
      pipes->start(prefix, [this](int fd, std::string_view lines) { relay_lines(fd, lines); });
}

void ClusterImpl::relay_lines(int fd, std::string_view lines) {
  {
    std::lock_guard lk(send_mu_);
    if (to_driver_) {
      auto buf = std::make_shared<Bytes>(lines.size() + 1);
      (*buf)[0] = static_cast<std::byte>(fd);
      std::memcpy(buf->data() + 1, lines.data(), lines.size());
      sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagOutput), buf});
      return;
    }
  }
  // After the end marker: the rank's own descriptors again (its launcher forwards them).
  const int to = fd == STDOUT_FILENO ? (saved_out_ >= 0 ? saved_out_ : fd)
                                     : (saved_err_ >= 0 ? saved_err_ : fd);
  std::size_t at = 0;
  while (at < lines.size()) {
    const ssize_t w = ::write(to, lines.data() + at, lines.size() - at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    at += static_cast<std::size_t>(w);
  }
}

void ClusterImpl::finish_output() {
  if (rank_out_) {
    std::fflush(stdout);
    std::fflush(stderr);
    rank_out_->pump();
    rank_err_->pump();
  }
  std::lock_guard lk(send_mu_);
  to_driver_ = false;
  static const std::byte none[1] = {};
  sending_.push_back({comm_->isend(std::span<const std::byte>(none, 0), 0, kTagOutputEnd), {}});
}

void ClusterImpl::restore_output() noexcept {
  std::fflush(stdout);
  std::fflush(stderr);
  if (saved_out_ >= 0) dup2(saved_out_, STDOUT_FILENO);
  if (saved_err_ >= 0) dup2(saved_err_, STDERR_FILENO);
  set_output_relayed(false);
  // The pipes' last writers are gone: what is left is read and written to the rank's own
  // descriptors.
  OutputRelay::get().unwatch(rank_out_);
  OutputRelay::get().unwatch(rank_err_);
  rank_out_.reset();
  rank_err_.reset();
  if (saved_out_ >= 0) ::close(saved_out_);
  if (saved_err_ >= 0) ::close(saved_err_);
  saved_out_ = saved_err_ = -1;
}

void ClusterImpl::send_result(Bytes body, const Trailer& t) {
  if (rank_out_) {  // the lines the task wrote go first
    rank_out_->pump();
    rank_err_->pump();
  }
  auto buf = std::make_shared<Bytes>(std::move(body));
  seal(*buf, t, compress_for(0, *buf));
  std::lock_guard lk(send_mu_);
  sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagResult), buf});
}

void ClusterImpl::reap_sends(bool all) {
  std::unique_lock lk(send_mu_, std::defer_lock);
  if (all) {
    lk.lock();
  } else if (!lk.try_lock()) {
    return;
  }
  for (std::size_t i = 0; i < sending_.size();) {
    if (all) sending_[i].req.wait();
    if (sending_[i].req.done() || sending_[i].req.test()) {
      sending_[i] = std::move(sending_.back());
      sending_.pop_back();
    } else {
      ++i;
    }
  }
}

// A serving rank: its task threads take turns at polling MPI (leader/followers). The poller
// receives a job and, in thread mode, runs it itself while another idle thread takes over the
// polling; results go straight from the thread that made them. No job changes threads on its
// way, so a round trip costs two MPI messages and no hand-offs.
void ClusterImpl::serve() {
  const bool caller_runs = server_ && !opts_.processes;
  const std::size_t threads = caller_runs ? slots_[rank_] : 1;
  std::vector<std::thread> helpers;
  for (std::size_t i = 1; i < threads; ++i)
    helpers.emplace_back([this, caller_runs] { serve_loop(caller_runs); });
  serve_loop(caller_runs);
  for (auto& h : helpers)
    h.join();
  if (server_) server_->shutdown();
  if (comm_) finish_output();
  reap_sends(true);
  if (rank_out_) restore_output();
  // Results produced after the stop would have no reader: the driver only stops once every
  // chunk it sent has come back, so there are none.
}

void ClusterImpl::serve_loop(bool caller_runs) {
  for (;;) {
    {
      std::unique_lock lk(poll_mu_);
      poll_cv_.wait(lk, [this] { return !polling_ || served_; });
      if (served_) return;
      polling_ = true;
    }
    std::optional<std::pair<Bytes, Trailer>> job;
    bool stop = false;
    std::int64_t last = now_ns(), backoff = 0;
    while (!job && !stop) {
      auto st = comm_->iprobe(0);
      if (!st) {
        reap_sends(false);
        const std::int64_t now = now_ns();
        if (now - last < spin_ns_) {
          sched_yield();
        } else {
          backoff = std::clamp<std::int64_t>(backoff * 2, 20'000, 1'000'000);
          std::this_thread::sleep_for(std::chrono::nanoseconds(backoff));
        }
        continue;
      }
      Bytes msg(st->bytes);
      comm_->recv(std::span<std::byte>(msg), 0, st->tag);
      last = now_ns();
      backoff = 0;
      if (st->tag == kTagStop) {
        stop = true;
        break;
      }
      try {
        if (st->tag != kTagJob)
          throw SerializationError("unexpected tag " + std::to_string(st->tag));
        const Trailer t = read_trailer(msg, kKindJob, 0);
        if (!server_) throw SerializationError("a job for a rank that runs no tasks");
        Bytes body = take_body(std::move(msg), t, 0);
        if (caller_runs)
          job.emplace(std::move(body), t);
        else
          server_->run(std::move(body), t);  // the rank's ProcessPool; keep polling
      } catch (const std::exception& e) {
        const std::string why = e.what();
        auto buf =
            std::make_shared<Bytes>(reinterpret_cast<const std::byte*>(why.data()),
                                    reinterpret_cast<const std::byte*>(why.data()) + why.size());
        std::lock_guard lk(send_mu_);
        sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagRefused), buf});
      }
    }
    {
      std::lock_guard lk(poll_mu_);
      polling_ = false;
      if (stop) served_ = true;
    }
    if (stop) {
      poll_cv_.notify_all();
      return;
    }
    poll_cv_.notify_one();  // an idle thread takes over the polling
    server_->execute(std::span<const std::byte>(job->first), job->second);
  }
}

}  // namespace detail

// ---- ClusterPool --------------------------------------------------------------------------------

ClusterPool::ClusterPool() : ClusterPool(Options{}) {}

ClusterPool::ClusterPool(const Options& opts)
    : impl_((observe::detail::start_from_env(), std::make_unique<detail::ClusterImpl>(opts))) {
  id_ = impl_->exec_id();
  rank_ = impl_->rank();
  size_ = impl_->size();
  driver_ = impl_->driver();
  workers_ = impl_->workers();
  if (!driver_) {
    impl_->serve();
    impl_.reset();
    if (opts.driver_only) std::exit(0);
  }
}

ClusterPool::~ClusterPool() = default;

void ClusterPool::require_driver(const char* what) const {
  if (!driver_)
    throw InvalidState(std::string("parx::ClusterPool::") + what + " on rank " +
                       std::to_string(rank_) +
                       ", which served the pool: only the driver (rank 0, is_driver()) submits");
}

std::vector<ClusterPool::Rank> ClusterPool::ranks() const {
  require_driver("ranks");
  return impl_->ranks();
}

observe::Counters ClusterPool::counters() const {
  require_driver("counters");
  return impl_->counters();
}

ClusterPool::Stats ClusterPool::stats() const {
  require_driver("stats");
  return impl_->stats();
}

bool ClusterPool::is_shutdown() const noexcept {
  return !impl_ || impl_->is_shutdown();
}

void ClusterPool::shutdown(const ShutdownOptions& how) {
  if (impl_) impl_->shutdown(how.wait, how.cancel_pending);
}

void ClusterPool::enqueue(detail::RemoteJob&& job) {
  require_driver("submit");
  detail::engine::seal_job(job.fn, job.payload, job.n, job.batch, "parx::ClusterPool");
  auto j = std::make_unique<detail::ClusterJob>();
  j->fn = job.fn;
  j->n = job.n;
  j->first_index = job.first_index;
  j->batch = job.batch;
  if (job.batch) j->result_size = detail::engine::load_at<std::uint64_t>(job.payload, 24);
  j->payload = std::move(job.payload);
  j->sink = std::move(job.sink);
  impl_->enqueue(std::move(j));
}

}  // namespace parx
