// parx/observe/metrics.hpp — live counters of every pool, readable from the API.
//
// Every pool (ThreadPool, ProcessPool, ClusterPool) keeps the counters below from the moment it
// is built, whether or not anyone listens to events, at the cost of a few relaxed stores per task
// (each worker writes only its own cache line). `pool.counters()` reads one pool;
// `observe::pools()` snapshots every live pool of the process (the dashboard's source).
//
// Contract
//   * A "task" is one item, in every pool: one `submit` is one task, and so is each input of a map
//     (a map of 10⁶ items is 10⁶ tasks, however it is chunked). On a ThreadPool's parallel loops
//     (parallel_for, parallel_reduce, and a map nobody observes) an item is one index; a chunk
//     that throws counts all its indices failed, and the indices nobody had claimed when the loop
//     stopped count cancelled. `chunks` counts the units the pool scheduled (a submit, a map
//     chunk, a batch sent to a rank, a loop's chunk that a worker ran; the chunks a thread outside
//     a ThreadPool runs itself count as items only).
//   * submitted = done + failed + cancelled + running + queue_depth. Every counter only grows,
//     except `running` and `queue_depth`, which are levels. A snapshot is not atomic across
//     fields: read while tasks run, the sum may be off by the tasks that moved in between. A retry
//     does not count as a new submission: the item counts once, in `retried` as often as it ran
//     again.
//   * The byte counters count encoded bytes sent to and received from worker processes or ranks
//     (arguments and results); they stay 0 on a ThreadPool, where nothing is copied.
//   * Fields a pool cannot have stay 0: `crashes`, `timeouts` and `corrupt_messages` belong to the
//     ProcessPool (a ClusterPool's ranks keep theirs), compression to the ClusterPool.
//
// Thread-safety: counters(), pools() and snapshot() may be called from any thread, at any time.
//
// Example
//   parx::ThreadPool pool(4);
//   pool.map(f, inputs);
//   parx::observe::Counters c = pool.counters();
//   std::printf("%llu tasks, %llu failed\n", (unsigned long long)c.done, (unsigned long
//   long)c.failed);
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace parx::observe {

struct Counters {
  std::uint64_t submitted = 0;         // items accepted
  std::uint64_t running = 0;           // started and not yet ended
  std::uint64_t done = 0;              // ended with a value
  std::uint64_t failed = 0;            // ended with an exception, a crash or a timeout
  std::uint64_t cancelled = 0;         // dropped before they started
  std::uint64_t retried = 0;           // runs repeated after a crash or an exception
  std::uint64_t queue_depth = 0;       // accepted and not yet started
  std::uint64_t chunks = 0;            // units scheduled: submits, map chunks, batches sent
  std::uint64_t worker_restarts = 0;   // replacement workers started (crash, recycling, limits)
  std::uint64_t crashes = 0;           // workers that died while holding work
  std::uint64_t timeouts = 0;          // workers killed for running an item past the timeout
  std::uint64_t corrupt_messages = 0;  // frames refused (bad magic, size or checksum)
  std::uint64_t bytes_moved = 0;       // bytes_sent + bytes_received
  std::uint64_t bytes_sent = 0;        // encoded jobs sent to workers or ranks
  std::uint64_t bytes_received = 0;    // encoded results received from them
  std::uint64_t compressed = 0;        // messages sent or received compressed (ClusterPool)
  std::uint64_t bytes_saved = 0;       // bytes compression kept off the network (ClusterPool)
};

// One worker of a pool as the dashboard shows it.
struct WorkerState {
  int index = 0;            // worker index in the pool (a rank for a ClusterPool)
  pid_t pid = 0;            // its process (the pool's own pid for threads)
  int rank = -1;            // MPI rank, -1 outside a cluster
  std::string host;         // host name
  std::string state;        // "idle", "busy", "starting" or "stopped"
  std::uint64_t tasks = 0;  // tasks it ended (done or failed)
};

struct PoolSnapshot {
  std::uint64_t id = 0;  // the pool's executor id (observe::Event::executor_id)
  std::string kind;      // "thread", "process", "cluster"
  Counters counters;
  std::vector<WorkerState> workers;
};

// Every live pool of this process, in creation order.
std::vector<PoolSnapshot> pools();

namespace detail {

// What a pool registers so pools() can read it. snapshot() is called under the registry's lock;
// a pool unregisters (PoolRegistration's destructor) before it tears down what snapshot() reads.
class PoolSource {
 public:
  virtual ~PoolSource() = default;
  virtual PoolSnapshot snapshot() const = 0;
};

// RAII registration of a PoolSource.
class PoolRegistration {
 public:
  PoolRegistration() = default;
  PoolRegistration(const PoolRegistration&) = delete;
  PoolRegistration& operator=(const PoolRegistration&) = delete;
  ~PoolRegistration();
  // Makes `src` visible to pools() (once; call when it is fully built).
  void attach(const PoolSource* src);

 private:
  const PoolSource* src_ = nullptr;
};

}  // namespace detail
}  // namespace parx::observe
