// process/transport.hpp — the ProcessPool's transport: the parent side of its worker processes
// (private to src/). It takes jobs from the engine's surface (remote_pool.hpp: a ProcessPool, or
// a ClusterPool rank running its chunks in processes), writes them to workers' request rings,
// reads results back, and supervises the workers.
//
// All scheduling state sits under one mutex. A submitting thread queues its job and, when a worker
// has room, writes it straight into that worker's request ring (no hop through another thread).
// One I/O thread reads every response ring, completes futures (outside the lock), dispatches
// queued jobs to workers that freed up, enforces timeouts and memory ceilings, and handles worker
// exits: it attributes the death to the exact item from the worker's status words, fails or
// retries that item, requeues the others and starts a replacement (supervise.cpp). It sleeps on
// the pool's doorbell futex, which workers, submitters and the fork server's exit reports bump.
//
// Thread-safety: every public member may be called from any thread.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/output_relay.hpp"
#include "engine/wire.hpp"
#include "ipc/fork_server.hpp"
#include "parx/detail/sync.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/process_pool.hpp"
#include "process/channel.hpp"

namespace parx::detail {

namespace proc {

using namespace channel;

struct Holder {
  std::unique_ptr<PoolSink> sink;
  std::size_t remaining = 0;
  std::int64_t elapsed = 0;
  bool started = false;
  bool finished = false;
};

struct ItemRef {
  std::int64_t index;
  std::size_t offset;  // of its header in the payload (a batch: its position there)
  std::size_t slot;    // position in the sink
  int attempts = 0;
};

struct Job {
  std::uint64_t id = 0;
  FunctionId fn = 0;
  std::string fn_name;
  std::shared_ptr<Holder> holder;
  std::shared_ptr<const Bytes> orig;  // payload as built by the caller
  std::vector<ItemRef> items;  // empty for a fresh batch job: item k is {first_index + k, k, k}
  std::size_t count = 0;       // items in the job
  std::int64_t first_index = 0;
  int memfd = -1;                 // payload by reference, kept until the job completes
  int blameless = 0;              // requeues after deaths that did not start it
  bool batch = false;             // packed arguments (kBatch); items[k].offset is the position
  std::uint32_t result_size = 0;  // batch: bytes per packed result
  std::uint64_t task_id = 0;      // observe events (0 when nobody listened at submission)
  ~Job() {
    if (memfd >= 0) close(memfd);
  }
  std::span<const std::byte> payload() const { return *orig; }
  ItemRef item(std::size_t k) const {
    return items.empty() ? ItemRef{first_index + static_cast<std::int64_t>(k), k, k, 0} : items[k];
  }
  // Every item, made explicit (for splits and failure paths).
  std::vector<ItemRef>& all_items() {
    if (items.empty())
      for (std::size_t k = 0; k < count; ++k)
        items.push_back({first_index + static_cast<std::int64_t>(k), k, k, 0});
    return items;
  }
};

struct Slot {
  enum State { Empty, Booting, Ready, Retiring, Stopping };
  std::size_t index = 0;
  RegionLayout* reg = nullptr;
  Ring req{}, resp{};
  pid_t pid = 0;
  int sock = -1;
  State state = Empty;
  std::deque<std::unique_ptr<Job>> assigned;
  std::size_t budget_used = 0;
  enum Kill { None, Timeout, Memory, Corrupt, Stop } kill = None;
  std::string kill_detail;
  std::int64_t respawn_at = 0;
  int init_failures = 0;
  bool initial = true;
  std::uint64_t last_used = 0;
  std::uint64_t tasks_ended = 0;
  std::shared_ptr<RelayStream> out, err;  // the worker's stdout and stderr (relayed output)
};

struct ExitInbox {
  std::mutex mu;
  std::deque<std::pair<pid_t, ExitStatus>> exits;
  bool closed = false;
  PoolHeader* hdr = nullptr;
};

}  // namespace proc

class ProcessTransport final : public observe::detail::PoolSource {
  using Holder = proc::Holder;
  using ItemRef = proc::ItemRef;
  using Job = proc::Job;
  using Slot = proc::Slot;
  using ExitInbox = proc::ExitInbox;
  using PoolHeader = channel::PoolHeader;

 public:
  explicit ProcessTransport(const ProcessPool::Options& o);
  ~ProcessTransport();

  std::size_t workers() const noexcept { return slots_.size(); }
  // Queues a job (remote_pool.hpp); throws ExecutorShutdown after shutdown.
  void enqueue(RemoteJob&& job);
  void shutdown(const ShutdownOptions& how);
  std::vector<pid_t> pids() {
    std::lock_guard lk(mu_);
    std::vector<pid_t> out;
    for (auto& s : slots_)
      if (s.pid > 0 && s.state != Slot::Empty) out.push_back(s.pid);
    return out;
  }
  observe::Counters counters() const {
    std::lock_guard lk(mu_);
    return counters_locked();
  }
  observe::PoolSnapshot snapshot() const override;
  std::uint64_t exec_id() const noexcept { return exec_id_; }
  bool is_shutdown() {
    std::lock_guard lk(mu_);
    return !accepting_;
  }

 private:
  using Done = std::vector<std::shared_ptr<Holder>>;

  void bump() {
    hdr_->bell.fetch_add(1, std::memory_order_seq_cst);
    if (hdr_->io_sleeping.load(std::memory_order_seq_cst)) futex_wake_shared(&hdr_->bell, 1);
  }
  observe::Counters counters_locked() const {
    observe::Counters c = counters_;
    for (const Slot& sl : slots_)
      for (const auto& j : sl.assigned)
        c.running += j->count;
    for (const auto& j : pending_)
      c.queue_depth += j->count;
    c.bytes_moved = c.bytes_sent + c.bytes_received;
    return c;
  }
  // Observe events about a job (only when someone listens).
  void emit_job(observe::EventKind k, const Job& j, int worker = -1, pid_t pid = 0,
                std::int64_t duration_ns = 0, const char* detail = nullptr) const {
    if (!observe::active()) return;
    observe::emit({.kind = k,
                   .executor_id = exec_id_,
                   .executor_kind = "process",
                   .task_id = j.task_id,
                   .worker = worker,
                   .name = j.fn_name.empty() ? nullptr : j.fn_name.c_str(),
                   .detail = detail,
                   .pid = pid,
                   .host = host_.c_str(),
                   .items = static_cast<std::uint32_t>(j.count),
                   .duration_ns = duration_ns});
  }
  void emit_worker(observe::EventKind k, const Slot& sl, const char* detail = nullptr) const {
    if (!observe::active()) return;
    observe::Event e{};
    e.kind = k;
    e.executor_id = exec_id_;
    e.executor_kind = "process";
    e.worker = static_cast<std::int32_t>(sl.index);
    e.pid = sl.pid;
    e.host = host_.c_str();
    e.detail = detail;
    observe::emit(e);
  }
  // A job left its worker: reported as finished or failed (its items were counted one by one).
  void job_ended(const Slot& s, Job& j, std::size_t failures, std::int64_t elapsed,
                 std::string detail) {
    if (j.task_id)
      emit_job(failures ? observe::EventKind::TaskFailed : observe::EventKind::TaskFinished, j,
               static_cast<int>(s.index), s.pid, elapsed,
               detail.empty() ? nullptr : detail.c_str());
  }
  void release() noexcept;
  void spawn(Slot& s);
  void dispatch();
  bool send_job(Slot& s, Job& j);
  bool drain(Slot& s, Done& done);
  void handle_result(Slot& s, std::span<const std::byte> payload, Done& done);
  void error_outcome(Job& j, const ItemRef& it, engine::WireError err, std::vector<ItemRef>& retry,
                     Done& done);
  void submit_job(std::unique_ptr<Job> job);
  void handle_exit(Slot& s, const ExitStatus& es, Done& done);
  void split_at_culprit(Slot& s, Job& j, std::size_t cur, const ExitStatus& es,
                        std::vector<std::unique_ptr<Job>>& again, Done& done);
  void kill_slot(Slot& s, Slot::Kill why, std::string detail);
  void requeue_front(std::vector<std::unique_ptr<Job>>& jobs);
  std::unique_ptr<Job> sub_job(const Job& j, std::vector<ItemRef> items);
  void queued_again(Job& n) {
    if (!observe::active()) return;
    n.task_id = observe::next_task_id();
    emit_job(observe::EventKind::TaskQueued, n);
  }
  // An item's last outcome: failed with `e` (cancelled when `e` is Cancelled), or `count` items
  // done. Each counts the items and finishes the job's holder with its last item.
  void fail_item(Job& j, const ItemRef& it, std::exception_ptr e, Done& done,
                 bool cancelled = false);
  void item_done(Job& j, Done& done, std::size_t count = 1);
  void settle(Job& j, Done& done, std::size_t count);
  bool step(Done& done, std::int64_t& wait_ns);
  bool replace_workers(std::int64_t now, Done& done,
                       const std::function<void(std::int64_t)>& wake_in);
  void watch_running(std::int64_t now, const std::function<void(std::int64_t)>& wake_in);
  bool stop_workers(std::int64_t now, const std::function<void(std::int64_t)>& wake_in);
  void io_loop();
  // Running average of job durations (as workers report them), steering prefetch.
  void note_job_time(std::int64_t ns) {
    ns = std::clamp<std::int64_t>(ns, 0, std::int64_t{1} << 40);
    job_ns_ = job_ns_ < 0 ? ns : (3 * job_ns_ + ns) / 4;
  }
  void finish(Done& done) {
    for (auto& h : done)
      h->sink->finish(h->elapsed);
    done.clear();
  }

  ProcessPool::Options opts_;
  Output output_;
  std::int64_t spin_ns_;
  ForkServer& fs_;
  int memfd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t map_bytes_ = 0;
  PoolHeader* hdr_ = nullptr;
  std::shared_ptr<ExitInbox> inbox_;
  std::uint64_t listener_ = 0;
  std::thread io_;

  mutable std::mutex mu_;
  std::condition_variable boot_cv_;
  std::deque<Slot> slots_;  // never relocated: slots are referenced while in use
  std::map<pid_t, std::size_t> by_pid_;
  std::deque<std::unique_ptr<Job>> pending_;
  std::uint64_t next_job_ = 1;
  bool accepting_ = true;
  bool stopping_ = false;
  bool finished_ = false;
  std::int64_t stop_deadline_ = 0;
  std::exception_ptr init_error_;
  std::uint64_t use_clock_ = 0;
  std::int64_t next_mem_check_ = 0;
  std::int64_t job_ns_ = -1;
  const std::uint64_t exec_id_ = observe::next_executor_id();
  const std::string host_ = channel::host_name();
  observe::Counters counters_;                      // items: everything but the levels (under mu_)
  observe::detail::PoolRegistration registration_;  // last: unregistered first
};

}  // namespace parx::detail
