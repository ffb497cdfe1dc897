// mpi/cluster_impl.hpp — the ClusterPool's implementation (private to src/): one object on every
// rank. On rank 0 (the driver) a communication thread hands chunks to ranks and receives their
// results (cluster_driver.cpp); on the other ranks the task threads take turns polling MPI and run
// what they receive (cluster_serve.cpp); construction, lost ranks and shutdown are in
// cluster_pool.cpp. The message envelope is cluster_wire.hpp; jobs and results are the engine's.
#pragma once

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

#include "core/console.hpp"
#include "core/output_relay.hpp"
#include "engine/wire.hpp"
#include "mpi/cluster_server.hpp"
#include "mpi/cluster_wire.hpp"
#include "parx/detail/sync.hpp"
#include "parx/mpi.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/observe/trace.hpp"
#include "parx/thread_pool.hpp"

namespace parx::detail {

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
  ~ClusterImpl();

  bool driver() const noexcept { return rank_ == 0; }
  std::size_t workers() const noexcept { return workers_; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }

  void enqueue(std::unique_ptr<ClusterJob> j);
  void shutdown(const ShutdownOptions& how);
  void serve();
  std::vector<ClusterPool::Rank> ranks() {
    std::lock_guard lk(mu_);
    return ranks_;
  }
  observe::Counters counters() const {
    std::lock_guard lk(mu_);
    return counters_locked();
  }
  std::uint64_t exec_id() const noexcept { return exec_id_; }
  observe::PoolSnapshot snapshot() const override;
  observe::Counters counters_locked() const {
    observe::Counters c = counters_;
    const std::uint64_t left = started_ + c.cancelled;
    c.queue_depth = c.submitted > left ? c.submitted - left : 0;
    c.running = started_ - std::min(started_, c.done + c.failed);
    c.bytes_moved = c.bytes_sent + c.bytes_received;
    return c;
  }
  void emit_task(observe::EventKind k, const ClusterJob& j, int rank = -1,
                 std::int64_t duration_ns = 0, const char* detail = nullptr) const {
    if (!j.task_id || !observe::active()) return;
    const bool known = rank >= 0 && static_cast<std::size_t>(rank) < hosts_.size();
    observe::emit({.kind = k,
                   .executor_id = exec_id_,
                   .executor_kind = "cluster",
                   .task_id = j.task_id,
                   .worker = rank,
                   .name = j.fn_name,
                   .detail = detail,
                   .rank = rank,
                   .host = known ? hosts_[rank].c_str() : nullptr,
                   .items = static_cast<std::uint32_t>(j.n),
                   .duration_ns = duration_ns});
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
  void fail_sent(ClusterJob& j, int rank, const std::exception_ptr& e);
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

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  bool accepting_ = true;
  bool stopping_ = false;
  bool cancel_ = false;
  std::deque<std::unique_ptr<ClusterJob>> queue_;
  std::deque<Local> inbox_;
  std::vector<ClusterPool::Rank> ranks_;
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

}  // namespace parx::detail
