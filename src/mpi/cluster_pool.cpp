// ClusterPool: construction (the ranks' hello, slots, lost-rank reports), queueing, shutdown, and
// the public class. The rest of the implementation: mpi/cluster_impl.hpp.
#include "parx/cluster_pool.hpp"

#include "core/env.hpp"
#include "mpi/cluster_impl.hpp"

namespace parx {
namespace detail {

void set_throw_capture(bool on) noexcept;

using namespace cluster;

std::atomic<LostRankWatch*> g_watch{nullptr};  // the pool that reports lost ranks

ClusterImpl::~ClusterImpl() {
  shutdown({});
  if (rank_out_) restore_output();  // a serving rank that never served (its constructor threw)
  if (watch_) {
    LostRankWatch* w = watch_.get();
    if (g_watch.compare_exchange_strong(w, nullptr)) sigaction(SIGTERM, &watch_->previous, nullptr);
  }
}

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
  return parx::detail::env_spin_us(dflt_ns / 1000) * 1000;
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

// The dashboard's view (observe/metrics.hpp): the counters and each rank's state.
observe::PoolSnapshot ClusterImpl::snapshot() const {
  std::lock_guard lk(mu_);
  observe::PoolSnapshot snap{exec_id_, "cluster", counters_locked(), {}};
  for (const auto& r : ranks_) {
    const auto i = static_cast<std::size_t>(r.rank);
    const char* state = !accepting_ && stopping_                               ? "stopped"
                        : i < running_per_rank_.size() && running_per_rank_[i] ? "busy"
                                                                               : "idle";
    snap.workers.push_back({r.rank, static_cast<pid_t>(r.pid), r.rank, r.host, state, r.tasks});
  }
  return snap;
}

void ClusterImpl::enqueue(std::unique_ptr<ClusterJob> j) {
  {
    std::lock_guard lk(mu_);
    if (!accepting_) throw ExecutorShutdown("parx::ClusterPool: submit after shutdown");
    counters_.submitted += j->n;
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

void ClusterImpl::shutdown(const ShutdownOptions& how) {
  {
    std::lock_guard lk(mu_);
    accepting_ = false;
    stopping_ = true;
    if (how.cancel_pending) cancel_ = true;
    wake_ = true;
  }
  cv_.notify_one();
  if (how.wait && thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) {
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

observe::Counters ClusterPool::read_counters() const {
  return impl_->counters();
}

bool ClusterPool::transport_shut_down() const noexcept {
  return !impl_ || impl_->is_shutdown();
}

void ClusterPool::shutdown(const ShutdownOptions& how) {
  if (impl_) impl_->shutdown(how);
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
