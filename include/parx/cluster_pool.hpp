// parx/cluster_pool.hpp — ClusterPool: the pool of every core of every rank of an MPI job
// (mpi4py.futures' MPICommExecutor and Ray's task pool, in C++), with the ThreadPool's interface.
//
// Start the program under a launcher (`parx run -n 8 ./sweep`, or mpiexec); every rank constructs
// the pool at the same point of the program. Rank 0 is the driver: its constructor returns at
// once and it submits and maps. Every other rank serves inside its constructor, running the tasks
// rank 0 sends it, and the constructor returns when the driver shuts the pool down (or, with
// Options::driver_only, ends the program there, so code after the constructor runs on rank 0
// only). Without a launcher the pool is the local machine alone: the same program runs unchanged.
//
// Contract
//   * parx::init(argc, argv) must be the first line of main (it joins the MPI job).
//   * Construction is collective over MPI_COMM_WORLD: every rank constructs, in the same order
//     relative to other collective calls. The pool talks on its own duplicate of the world
//     communicator, so the program's own messages never mix with it.
//   * Functions cross ranks by name: register each with PARX_REMOTE (remote.hpp), as for the
//     ProcessPool. A lambda is a compile-time error; an unregistered function throws parx::Error
//     naming it, at the call. At construction every rank checks that it has the same registered
//     functions as the driver (the same program); a rank that differs is a parx::Error.
//   * `submit`, `map`, `starmap`, lazy `imap`/`imap_unordered` take the same MapOptions as the
//     local pools. Ranks pull work: the driver sends a rank a chunk when one of its slots frees,
//     chunk sizes adapt to the measured task time (MapOptions::target_chunk_us, default 20 ms),
//     the tail of a sized input is split so no rank straggles, and lazy inputs are read only as
//     far as MapOptions::max_in_flight allows.
//   * Each serving rank runs tasks on its share of its host's cores (Options::workers_per_rank),
//     in threads, or with Options::processes in its own ProcessPool: a task that crashes kills a
//     worker process, not the rank, and fails with WorkerCrashed (or is retried per
//     Options::process). The driver serves too unless Options::driver_runs_tasks is false.
//   * A task that throws fails with parx::TaskError naming the function, the task index, the host,
//     the rank, the pid and the throw site's stack trace.
//   * Arguments and results of 1 MiB or more crossing hosts are compressed with zstd when that
//     pays (Options::compression).
//   * Losing a whole rank aborts the MPI job (MPI's model): the launcher ends every rank, and each
//     rank on the lost rank's host prints which rank it lost.
//   * `shutdown({.wait, .cancel_pending})`: no new work; with cancel_pending, chunks not yet sent
//   end
//     Cancelled; with wait, returns once every sent chunk has come back and the serving ranks are
//     released. The destructor is shutdown(). On a serving rank, the executor calls
//     throw parx::InvalidState.
//
// Thread-safety: every member function may be called from any thread of the driver.
//
// Example
//   double simulate(int seed);
//   PARX_REMOTE(simulate);
//   int main(int argc, char** argv) {
//     parx::init(argc, argv);
//     parx::ClusterPool pool;                // rank 0 drives; the other ranks serve in here
//     if (pool.is_driver()) {
//       std::vector<double> ys = pool.map(simulate, parx::range(100'000));
//       std::cout << pool.workers() << " workers on " << pool.ranks().size() << " ranks\n";
//     }
//   }
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "parx/observe/metrics.hpp"
#include "parx/process_pool.hpp"

namespace parx {

namespace detail {
class ClusterImpl;
}

class ClusterPool : public detail::RemotePool<ClusterPool> {
 public:
  // When arguments and results of at least Options::compress_min_bytes are compressed (zstd).
  enum class Compression {
    automatic,  // crossing hosts, when a sample of the data compresses to under 90 %
    always,     // every large message, also between ranks of one host
    never,
  };

  struct Options {
    // Task slots per serving rank. 0 (default): the host's cores divided among the job's ranks
    // on that host (at least 1), so a job of one rank per core, or one rank per host, both use
    // every core once.
    std::size_t workers_per_rank = 0;
    // Run each rank's tasks in its own ProcessPool (crash isolation, per-task timeouts, retries,
    // memory ceilings) instead of threads.
    bool processes = false;
    // Options of those process pools (`workers` is ignored: workers_per_rank decides).
    ProcessPool::Options process;
    // The driver (rank 0) also runs tasks on its slots. Always true when the job has one rank.
    bool driver_runs_tasks = true;
    // Serving ranks end the program (exit status 0) once the driver shuts the pool down, instead
    // of returning from the constructor: the rest of main runs on the driver only.
    bool driver_only = false;
    Compression compression = Compression::automatic;
    std::size_t compress_min_bytes = std::size_t{1} << 20;
    // How long an idle communication thread keeps polling before it starts to sleep between
    // polls. Negative (default): PARX_SPIN_US, else 200 µs.
    std::chrono::microseconds spin{-1};
    // How serving ranks' stdout and stderr (and their process workers') reach the driver
    // (log.hpp): relayed to rank 0 whole-line (`lines`), with an origin prefix such as
    // "[rank 2 · pid 4711] " (`prefixed`), or left to the launcher (`inherit`). `automatic`:
    // PARX_OUTPUT, else lines. Also the default of `process.output`.
    Output output = Output::automatic;
  };

  // One rank of the pool, as the driver sees it.
  struct Rank {
    int rank = 0;
    std::string host;
    std::int64_t pid = 0;
    std::size_t workers = 0;   // task slots (0: the driver when it does not run tasks)
    std::uint64_t tasks = 0;   // items it completed (value or exception)
    std::uint64_t chunks = 0;  // chunks it ran
    double busy_seconds = 0;   // summed run time of its chunks, as it measured them
  };

  ClusterPool();
  explicit ClusterPool(const Options& opts);
  ~ClusterPool();
  ClusterPool(const ClusterPool&) = delete;
  ClusterPool& operator=(const ClusterPool&) = delete;

  // True on rank 0 (and when the program runs without a launcher).
  bool is_driver() const noexcept { return driver_; }
  // This process's rank and the job's size (0 and 1 without a launcher).
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  // Every rank of the pool with its counters (driver only; counters as of the call).
  std::vector<Rank> ranks() const;

  // workers, id, counters, is_shutdown, submit, map, starmap, imap, imap_unordered,
  // submit_encoded: detail/remote_pool.hpp (on the driver; a serving rank that calls them gets
  // InvalidState, except workers, id and is_shutdown). In counters, `chunks` are the jobs sent
  // to ranks, the byte counters the job and result messages as sent (after compression),
  // `compressed` and `bytes_saved` what compression did.

  void shutdown(const ShutdownOptions& how = {});

 private:
  friend class detail::RemotePool<ClusterPool>;
  static constexpr MapTuning kMapTuning = map_tuning::cluster;
  void require_driver(const char* what) const;
  void enqueue(detail::RemoteJob&& job);
  observe::Counters read_counters() const;
  bool transport_shut_down() const noexcept;

  std::unique_ptr<detail::ClusterImpl> impl_;
  bool driver_ = true;
  int rank_ = 0;
  int size_ = 1;
};

static_assert(Executor<ClusterPool>);

}  // namespace parx
