// The ThreadPool scheduler: per-worker Chase–Lev deques, a shared injection queue for outside
// submitters, random-victim stealing, bounded spinning, and an event count for sleeping without
// lost wake-ups.
#include "parx/thread_pool.hpp"

#include "core/env.hpp"
#include "parx/observe/trace.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

#include "parx/observe/metrics.hpp"
#include "thread/counters.hpp"
#include "thread/wsq.hpp"

namespace parx::detail {
namespace {

// Producer/consumer handshake for sleeping workers (Dekker style): a worker announces itself
// (waiters++), re-checks every queue, then sleeps on the epoch; a producer publishes work, then,
// if anybody announced, bumps the epoch and wakes. Either the worker sees the work or the
// producer sees the worker: no lost wake-ups.
class EventCount {
 public:
  std::uint32_t prepare_wait() noexcept {
    waiters_.fetch_add(1, std::memory_order_seq_cst);
    full_fence();
    return epoch_.load(std::memory_order_seq_cst);
  }
  void cancel_wait() noexcept { waiters_.fetch_sub(1, std::memory_order_seq_cst); }
  void commit_wait(std::uint32_t epoch) noexcept {
    futex_wait(&epoch_, epoch);
    waiters_.fetch_sub(1, std::memory_order_seq_cst);
  }
  void notify(bool all) noexcept {
    full_fence();
    if (waiters_.load(std::memory_order_seq_cst) == 0) return;
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&epoch_, all ? INT_MAX : 1);
  }

 private:
  void full_fence() noexcept {
#if defined(__SANITIZE_THREAD__)
    fence_word_.fetch_add(0, std::memory_order_seq_cst);  // TSan does not model fences
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }
  alignas(64) std::atomic<std::uint32_t> epoch_{0};
  alignas(64) std::atomic<std::int32_t> waiters_{0};
#if defined(__SANITIZE_THREAD__)
  std::atomic<std::uint32_t> fence_word_{0};
#endif
};

std::int64_t spin_from_env() {
  return parx::detail::env_spin_us(50) * 1000;  // read per pool
}

}  // namespace

struct Worker;

class PoolCore final : public observe::detail::PoolSource {
 public:
  PoolCore(const ThreadPool::Options& o, std::uint64_t id);
  ~PoolCore();

  void start();
  void schedule(TaskNode* t);
  void schedule_external(TaskNode* const* ts, std::size_t n);
  void shutdown(const ShutdownOptions& how);
  bool help_one(Worker& w) noexcept;
  int current_worker() const noexcept;
  Worker* current() const noexcept;
  // Counts `items` accepted, on the calling thread's counters.
  void count_submitted(std::size_t items) noexcept;
  // The calling thread's counters: its worker's, or the outside ones.
  TaskObserver* observer() noexcept;
  observe::Counters counters() const noexcept;
  observe::PoolSnapshot snapshot() const override;

  std::vector<std::unique_ptr<Worker>> workers_;
  const std::uint64_t id_;
  std::atomic<bool> accepting_{true};

  // Deques lent to outside threads (a TaskGroup driven from a non-worker thread): the owner
  // pushes and pops without locks, workers steal, exactly like a worker's own deque. A slot
  // changes owner only through acquire/release, which orders the owners' operations.
  struct Slot {
    WorkStealingDeque<TaskNode*> deque;
    std::atomic<bool> in_use{false};
  };
  static constexpr int kSlots = 8;
  Slot slots_[kSlots];
  std::atomic<std::uint32_t> slot_mask_{0};  // bit i set while slot i is lent
  int acquire_slot() noexcept;
  void release_slot(int i) noexcept;
  void push_slot(int i, TaskNode* t);
  bool run_slot(int i) noexcept;
  TaskNode* pop_slot(int i) noexcept;

 private:
  friend struct Worker;
  void worker_main(Worker& w);
  TaskNode* steal_once(Worker& w) noexcept;
  TaskNode* find_work(Worker& w) noexcept;
  bool has_work() const noexcept;
  void execute(Worker& w, TaskNode* t) noexcept;

  ThreadPool::Options opts_;
  std::int64_t spin_ns_;
  EventCount ec_;
  std::mutex inject_mu_;
  std::deque<TaskNode*> inject_;
  alignas(64) std::atomic<std::size_t> inject_size_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> cancel_{false};
  std::mutex join_mu_;
  bool joined_ = false;
  std::atomic<bool> joined_flag_{false};
  // Start-up: workers report their initializer's outcome.
  std::mutex init_mu_;
  std::condition_variable init_cv_;
  std::size_t init_done_ = 0;
  std::exception_ptr init_error_;
  alignas(64) std::unique_ptr<OutsideObserver> outside_;  // counts of non-worker threads

 public:
  std::exception_ptr wait_started();
  observe::detail::PoolRegistration registration_;  // last: unregistered first
};

struct Worker final : Helper, TaskObserver {
  Worker(PoolCore& p, int i) : pool(p), index(i), rng(0x9E3779B97F4A7C15ull * (i + 1)) {}
  bool help_one() override { return pool.help_one(*this); }
  void count(observe::EventKind kind, std::uint64_t n) noexcept override {
    counters.count(kind, n);
  }
  void on(observe::EventKind kind, std::uint64_t task_id, const std::exception_ptr* error,
          std::uint64_t n) noexcept override {
    counters.count_task(kind, n);
    emit_task_event(pool.id_, index, kind, task_id, error);
  }
  bool per_chunk() const noexcept override { return true; }
  void claimed(std::uint64_t n) noexcept override {
    counters.add(counters.submitted, n);
    counters.add(counters.started, n);
  }
  void skipped(std::uint64_t n) noexcept override {
    counters.add(counters.submitted, n);
    counters.add(counters.cancelled, n);
  }
  void count_loop(std::uint64_t chunks, std::uint64_t, std::uint64_t,
                  std::uint64_t) noexcept override {
    counters.add(counters.chunks, chunks);
  }
  std::uint64_t next_random() noexcept {  // xorshift64
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }

  PoolCore& pool;
  const int index;
  std::uint64_t rng;
  alignas(64) ItemCounters<false> counters;
  WorkStealingDeque<TaskNode*> deque;
  std::thread thread;
};

namespace {
thread_local Worker* tls_worker = nullptr;
}

PoolCore::PoolCore(const ThreadPool::Options& o, std::uint64_t id)
    : id_(id), opts_(o), spin_ns_(o.spin.count() >= 0 ? o.spin.count() * 1000 : spin_from_env()) {
  std::size_t n = o.workers ? o.workers : std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  for (std::size_t i = 0; i < n; ++i)
    workers_.push_back(std::make_unique<Worker>(*this, static_cast<int>(i)));
  outside_ = std::make_unique<OutsideObserver>(id);
  registration_.attach(this);
}

PoolCore::~PoolCore() {
  shutdown({});
}

void PoolCore::count_submitted(std::size_t items) noexcept {
  if (Worker* w = current())
    w->counters.add(w->counters.submitted, items);
  else
    outside_->count_submitted(items);
}

TaskObserver* PoolCore::observer() noexcept {
  if (Worker* w = current()) return w;
  return outside_.get();
}

namespace {
template <class C>
void add_counts(observe::Counters& c, std::uint64_t& started, const C& k) {
  const auto get = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  const std::uint64_t ld = get(k.loop_done), lf = get(k.loop_failed), lc = get(k.loop_cancelled);
  c.submitted += get(k.submitted) + ld + lf + lc;
  c.chunks += get(k.chunks);
  started += get(k.started);
  c.done += get(k.done) + ld;
  c.failed += get(k.failed) + lf;
  c.cancelled += get(k.cancelled) + lc;
}
}  // namespace

observe::Counters PoolCore::counters() const noexcept {
  observe::Counters c;
  std::uint64_t started = 0;
  outside_->add_to([&](const auto& k) { add_counts(c, started, k); });
  started = c.done + c.failed;  // the outside threads' items count when they end
  for (const auto& w : workers_)
    add_counts(c, started, w->counters);
  const std::uint64_t ended = c.done + c.failed;
  c.running = started > ended ? started - ended : 0;
  const std::uint64_t left = started + c.cancelled;
  c.queue_depth = c.submitted > left ? c.submitted - left : 0;
  if (c.submitted < left) c.submitted = left;  // read between a start and its queuing count
  return c;
}

observe::PoolSnapshot PoolCore::snapshot() const {
  observe::PoolSnapshot s;
  s.id = id_;
  s.kind = "thread";
  s.counters = counters();
  static const std::string host = [] {
    char buf[256] = {};
    gethostname(buf, sizeof buf - 1);
    return std::string(buf);
  }();
  for (const auto& w : workers_) {
    observe::WorkerState ws;
    ws.index = w->index;
    ws.pid = getpid();
    ws.host = host;
    const std::uint64_t started = w->counters.started.load(std::memory_order_relaxed);
    const std::uint64_t ended = w->counters.done.load(std::memory_order_relaxed) +
                                w->counters.failed.load(std::memory_order_relaxed);
    ws.tasks = ended;
    ws.state = joined_flag_.load(std::memory_order_relaxed) ? "stopped"
               : started > ended                            ? "busy"
                                                            : "idle";
    s.workers.push_back(std::move(ws));
  }
  return s;
}

void PoolCore::start() {
  for (auto& w : workers_) {
    Worker* wp = w.get();
    w->thread = std::thread([this, wp] { worker_main(*wp); });
  }
}

std::exception_ptr PoolCore::wait_started() {
  std::unique_lock lk(init_mu_);
  init_cv_.wait(lk, [&] { return init_done_ == workers_.size(); });
  return init_error_;
}

int PoolCore::current_worker() const noexcept {
  Worker* w = tls_worker;
  return (w && &w->pool == this) ? w->index : -1;
}
Worker* PoolCore::current() const noexcept {
  Worker* w = tls_worker;
  return (w && &w->pool == this) ? w : nullptr;
}

void PoolCore::schedule(TaskNode* t) {
  if (Worker* w = current()) {
    w->deque.push(t);
    ec_.notify(false);
    return;
  }
  schedule_external(&t, 1);
}

void PoolCore::schedule_external(TaskNode* const* ts, std::size_t n) {
  {
    std::lock_guard lk(inject_mu_);
    if (accepting_.load(std::memory_order_relaxed)) {
      for (std::size_t i = 0; i < n; ++i)
        inject_.push_back(ts[i]);
      inject_size_.fetch_add(n, std::memory_order_release);
      n = 0;
    }
  }
  if (n == 0) {
    ec_.notify(false);
    return;
  }
  for (std::size_t i = 0; i < n; ++i)
    ts[i]->drop(observer());
  throw ExecutorShutdown(
      "parx::ExecutorShutdown: the ThreadPool is shut down; no new work accepted");
}

void PoolCore::execute(Worker& w, TaskNode* t) noexcept {
  TaskObserver* obs = &w;  // counts always; emits events only when someone listens
  if (cancel_.load(std::memory_order_relaxed)) {
    t->drop(obs);
  } else {
    t->run(obs);
  }
}

TaskNode* PoolCore::steal_once(Worker& w) noexcept {
  if (inject_size_.load(std::memory_order_acquire) > 0) {
    // Take a share of the backlog at once: one lock per batch instead of per task. The extra
    // tasks go to this worker's deque (in order), where idle workers can steal them.
    TaskNode* batch[64];
    std::size_t share = 0;
    {
      std::unique_lock lk(inject_mu_, std::try_to_lock);
      if (lk.owns_lock() && !inject_.empty()) {
        share = std::clamp<std::size_t>(inject_.size() / (workers_.size() + 1), 1, 64);
        for (std::size_t i = 0; i < share; ++i) {
          batch[i] = inject_.front();
          inject_.pop_front();
        }
        inject_size_.fetch_sub(share, std::memory_order_release);
      }
    }
    if (share > 0) {
      for (std::size_t i = share - 1; i >= 1; --i)
        w.deque.push(batch[i]);
      if (share > 1) ec_.notify(false);
      return batch[0];
    }
  }
  for (std::uint32_t m = slot_mask_.load(std::memory_order_acquire); m != 0; m &= m - 1)
    if (TaskNode* t = slots_[__builtin_ctz(m)].deque.steal()) return t;
  const std::size_t n = workers_.size();
  if (n > 1) {
    const std::size_t start = static_cast<std::size_t>(w.next_random() % n);
    for (std::size_t k = 0; k < n; ++k) {
      Worker& v = *workers_[(start + k) % n];
      if (&v == &w) continue;
      if (TaskNode* t = v.deque.steal()) return t;
    }
  }
  return nullptr;
}

bool PoolCore::has_work() const noexcept {
  if (inject_size_.load(std::memory_order_seq_cst) > 0) return true;
  for (auto& w : workers_)
    if (!w->deque.empty()) return true;
  // Released slots are checked too: a task pushed just before the release must not be missed.
  for (const Slot& sl : slots_)
    if (!sl.deque.empty()) return true;
  return false;
}

int PoolCore::acquire_slot() noexcept {
  for (int i = 0; i < kSlots; ++i) {
    bool expected = false;
    if (!slots_[i].in_use.load(std::memory_order_relaxed) &&
        slots_[i].in_use.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      slot_mask_.fetch_or(1u << i, std::memory_order_release);
      return i;
    }
  }
  return -1;
}

void PoolCore::release_slot(int i) noexcept {
  // The owner drained it (TaskGroup::wait) before releasing; stealers may still probe it.
  slot_mask_.fetch_and(~(1u << i), std::memory_order_release);
  slots_[i].in_use.store(false, std::memory_order_release);
}

void PoolCore::push_slot(int i, TaskNode* t) {
  slots_[i].deque.push(t);
  ec_.notify(false);
}

TaskNode* PoolCore::pop_slot(int i) noexcept {
  return slots_[i].deque.pop();
}

bool PoolCore::run_slot(int i) noexcept {
  TaskNode* t = slots_[i].deque.pop();
  if (!t) return false;
  if (cancel_.load(std::memory_order_relaxed)) {
    t->drop(outside_.get());
  } else {
    t->run(outside_.get());
  }
  return true;
}

TaskNode* PoolCore::find_work(Worker& w) noexcept {
  std::int64_t deadline = 0;
  for (int round = 0;; ++round) {
    if (TaskNode* t = steal_once(w)) return t;
    if (stop_.load(std::memory_order_relaxed) && !has_work()) return nullptr;
    if (round == 0) {
      deadline = now_ns() + spin_ns_;
    } else if (now_ns() >= deadline) {
      return nullptr;
    }
    // A few rounds of pause, then yield: on an oversubscribed core a pausing spinner would
    // starve the very thread that is producing its work.
    if (round < 8) {
      for (int i = 0; i < 16; ++i)
        cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

bool PoolCore::help_one(Worker& w) noexcept {
  TaskNode* t = w.deque.pop();
  if (!t) t = steal_once(w);
  if (!t) return false;
  execute(w, t);
  return true;
}

void PoolCore::worker_main(Worker& w) {
  tls_worker = &w;
  Helper* prev_helper = set_current_helper(&w);
  {
    std::string name = opts_.name + "-" + std::to_string(w.index);
    if (name.size() > 15) name.resize(15);
    pthread_setname_np(pthread_self(), name.c_str());
  }
  std::exception_ptr init_error;
  if (opts_.initializer) {
    try {
      opts_.initializer(static_cast<std::size_t>(w.index));
    } catch (...) {
      init_error = std::current_exception();
    }
  }
  {
    std::lock_guard lk(init_mu_);
    if (init_error && !init_error_) init_error_ = init_error;
    ++init_done_;
  }
  init_cv_.notify_all();
  observe::emit({observe::EventKind::WorkerStarted, id_, "thread", 0, w.index});

  for (;;) {
    TaskNode* t = w.deque.pop();
    if (!t) t = find_work(w);
    if (t) {
      execute(w, t);
      continue;
    }
    const std::uint32_t epoch = ec_.prepare_wait();
    if (has_work()) {
      ec_.cancel_wait();
      continue;
    }
    if (stop_.load(std::memory_order_seq_cst)) {
      ec_.cancel_wait();
      break;
    }
    ec_.commit_wait(epoch);
  }

  observe::emit({observe::EventKind::WorkerStopped, id_, "thread", 0, w.index});
  set_current_helper(prev_helper);
  tls_worker = nullptr;
}

void PoolCore::shutdown(const ShutdownOptions& how) {
  {
    std::lock_guard lk(inject_mu_);
    accepting_.store(false, std::memory_order_relaxed);
  }
  if (how.cancel_pending) cancel_.store(true, std::memory_order_seq_cst);
  stop_.store(true, std::memory_order_seq_cst);
  ec_.notify(true);
  if (!how.wait || current()) return;  // a worker cannot join itself
  std::lock_guard lk(join_mu_);
  if (joined_) return;
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
  joined_ = true;
  joined_flag_.store(true, std::memory_order_relaxed);
}

void PoolCoreDeleter::operator()(PoolCore* p) const noexcept {
  delete p;
}

namespace {
// Runs a share of a data-parallel loop on a worker.
class LoopHelper final : public TaskNode {
 public:
  explicit LoopHelper(LoopCtl* c) : ctl_(c) { ctl_->add_ref(); }
  // A helper is no counted task: the items of the chunks it runs are.
  void run(TaskObserver* obs) noexcept override {
    ctl_->work(obs);
    ctl_->release();
    delete this;
  }
  void drop(TaskObserver*) noexcept override {
    ctl_->release();
    delete this;
  }

 private:
  LoopCtl* ctl_;
};
}  // namespace

}  // namespace parx::detail

namespace parx {

ThreadPool::ThreadPool(std::size_t workers)
    : ThreadPool([workers] {
        Options o;
        o.workers = workers;
        return o;
      }()) {}

ThreadPool::ThreadPool(const Options& opts)
    : core_((observe::detail::start_from_env(),
             new detail::PoolCore(opts, observe::next_executor_id()))),
      id_(core_->id_) {
  core_->start();
  if (std::exception_ptr e = core_->wait_started()) {
    core_->shutdown({.wait = true, .cancel_pending = true});
    std::rethrow_exception(e);
  }
}

ThreadPool::~ThreadPool() {
  if (core_ && core_->current())
    std::terminate();  // destroying a pool from its own worker would join that thread
}

std::size_t ThreadPool::workers() const noexcept {
  return core_->workers_.size();
}
int ThreadPool::current_worker() const noexcept {
  return core_->current_worker();
}
bool ThreadPool::is_shutdown() const noexcept {
  return !core_->accepting_.load(std::memory_order_relaxed);
}

observe::Counters ThreadPool::counters() const noexcept {
  return core_->counters();
}

void ThreadPool::shutdown(const ShutdownOptions& how) {
  core_->shutdown(how);
}

void ThreadPool::emit_queued(detail::TaskNode* t) {
  core_->count_submitted(t->items);
  if (!observe::active()) return;
  t->task_id = observe::next_task_id();
  observe::Event e{};
  e.kind = observe::EventKind::TaskQueued;
  e.executor_id = id_;
  e.executor_kind = "thread";
  e.task_id = t->task_id;
  e.name = t->name;
  e.worker = core_->current_worker();
  observe::emit(e);
}

int ThreadPool::acquire_external_slot() noexcept {
  if (core_->current() || !core_->accepting_.load(std::memory_order_relaxed)) return -1;
  return core_->acquire_slot();
}
void ThreadPool::release_external_slot(int slot) noexcept {
  core_->release_slot(slot);
}
void ThreadPool::schedule_to_slot(int slot, detail::TaskNode* t) {
  if (!core_->accepting_.load(std::memory_order_relaxed)) {
    t->drop(nullptr);  // refused before it was counted
    throw ExecutorShutdown(
        "parx::ExecutorShutdown: the ThreadPool is shut down; no new work accepted");
  }
  emit_queued(t);
  core_->push_slot(slot, t);
}
bool ThreadPool::run_external_slot(int slot) noexcept {
  return core_->run_slot(slot);
}

void ThreadPool::schedule(detail::TaskNode* t) {
  emit_queued(t);
  core_->schedule(t);
}

void ThreadPool::run_loop(std::int64_t n, std::int64_t fixed_chunk, detail::LoopCtl::Body body,
                          void* ctx, detail::LoopStats* stats, bool caller_participates,
                          std::int64_t scale, std::int64_t items) {
  const bool on_worker = core_->current() != nullptr;
  if (!on_worker && !core_->accepting_.load(std::memory_order_relaxed))
    throw ExecutorShutdown(
        "parx::ExecutorShutdown: the ThreadPool is shut down; no new work accepted");
  // A worker always takes part (it is one of the pool's threads). An outside caller takes part in
  // parallel_for/parallel_reduce (TBB/OpenMP semantics: W threads in all), but not in map, whose
  // tasks run on pool workers only (Python semantics: per-worker initializer state holds).
  const bool participate = on_worker || caller_participates;
  const std::int64_t max_chunks = fixed_chunk > 0 ? (n + fixed_chunk - 1) / fixed_chunk : n;
  std::int64_t helpers = static_cast<std::int64_t>(workers()) - (participate ? 1 : 0);
  helpers = std::min(helpers, max_chunks - (participate ? 1 : 0));
  if (!participate) helpers = std::max<std::int64_t>(helpers, 1);
  helpers = std::max<std::int64_t>(helpers, 0);

  if (helpers == 0) {  // one chunk, or a one-thread pool called from its worker: run inline
    const std::int64_t step = fixed_chunk > 0 ? fixed_chunk : n;
    detail::LoopCtl ctl(0, n, step, 1, 1, body, ctx, scale, items);
    ctl.work(core_->observer());
    if (stats) {
      stats->chunks = static_cast<std::size_t>(ctl.chunks());
      stats->chunksize = static_cast<std::size_t>(n) / std::max<std::size_t>(stats->chunks, 1);
    }
    if (std::exception_ptr err = ctl.take_error()) std::rethrow_exception(err);
    return;
  }

  auto* ctl =
      new detail::LoopCtl(0, n, fixed_chunk, 1, static_cast<int>(helpers + (participate ? 1 : 0)),
                          body, ctx, scale, items);
  int slot = -1;
  bool must_work = false;
  {
    // Helpers are queued in batches from a stack array (no allocation besides the nodes).
    constexpr std::int64_t kBatch = 16;
    detail::TaskNode* hs[kBatch];
    for (std::int64_t done = 0; done < helpers;) {
      const std::int64_t k = std::min(kBatch, helpers - done);
      for (std::int64_t i = 0; i < k; ++i)
        hs[i] = new detail::LoopHelper(ctl);
      done += k;
      if (on_worker) {
        for (std::int64_t i = 0; i < k; ++i)
          core_->schedule(hs[i]);  // own deque, no lock
      } else if (slot >= 0 || (slot = core_->acquire_slot()) >= 0) {
        for (std::int64_t i = 0; i < k; ++i)
          core_->push_slot(slot, hs[i]);  // lent deque
      } else {
        try {
          core_->schedule_external(hs, static_cast<std::size_t>(k));
        } catch (const ExecutorShutdown&) {
          // Shut down meanwhile: these helpers were dropped, earlier ones may be queued. The
          // caller finishes the loop itself (never return while a helper may still run it).
          must_work = true;
          break;
        }
      }
    }
  }
  if (participate || must_work) ctl->work(core_->observer());
  detail::wait_for_done(*ctl, -1);
  if (slot >= 0) {
    // Helpers nobody stole (the caller was faster) come back here and are dropped.
    while (detail::TaskNode* t = core_->pop_slot(slot))
      t->drop(nullptr);
    core_->release_slot(slot);
  }
  if (stats) {
    stats->chunks = static_cast<std::size_t>(ctl->chunks());
    stats->chunksize = static_cast<std::size_t>(n) / std::max<std::size_t>(stats->chunks, 1);
  }
  std::exception_ptr err = ctl->take_error();
  ctl->release();
  if (err) std::rethrow_exception(err);
}

}  // namespace parx
