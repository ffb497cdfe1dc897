// parx/process_pool.hpp — ProcessPool: crash-isolated worker processes with the ThreadPool's
// interface (multiprocessing.Pool, ProcessPoolExecutor and joblib's loky in one), for code that
// must survive segfaults, aborts, leaks and runaway tasks, or that is not thread-safe.
//
// Functions cross the process boundary by name: register each with PARX_REMOTE (remote.hpp).
// Arguments and results travel through the codec (codec.hpp) over shared-memory rings; payloads
// above 1 MiB go by reference in a memfd instead of through the ring.
//
// Contract
//   * parx::init(argc, argv) must be the first line of main: workers are forked from the fork
//     server it starts (never from a threaded process). Without it the constructor throws
//     parx::Error saying what to add.
//   * `submit(fn, args...)` -> Future<R>; `map`, `starmap`, lazy `imap`/`imap_unordered` take the
//     same MapOptions as ThreadPool. A lambda or std::function is a compile-time error; an
//     unregistered function pointer throws parx::Error naming it, at the call, before anything
//     reaches a worker.
//   * Batching is automatic (MapOptions::chunksize = 0): chunks adapt to the measured item time
//     (target 50 ms unless MapOptions::target_chunk_us says otherwise) and the tail is split so no
//     worker straggles; MapStats::chunksize reports the size chosen. A chunk of a function of one
//     memcpy-safe argument with a memcpy-safe (or void) result travels packed: one array of
//     arguments, one array of results, nothing encoded per item (same outcomes per item).
//   * A task that throws fails with parx::TaskError (type, message, task index, function, host,
//     pid and the throw site's stack trace); the worker lives on.
//   * max_tasks_per_worker counts items (each item of a chunk is one task).
//   * A worker that dies (signal, abort, exit(), OOM killer, memory ceiling) fails only the item it
//     was running, with parx::WorkerCrashed naming the signal or exit code, the pid and the item;
//     other items it held are run again elsewhere. Options::retries re-runs the crashed item
//     (on a fresh worker) that many times first. The worker is replaced; there is no broken-pool
//     state. A per-task timeout kills and replaces the worker; the item fails with TimeoutError.
//   * Items of a chunk that had finished when their worker died are run again (their results died
//     with the worker): tasks with side effects should be idempotent, as with any retry.
//   * Workers die with the program, however it ends (exit, exception, Ctrl-C, SIGKILL): they are
//     children of the fork server, which kills them when this process dies; the channels are
//     memfds, so nothing is left in /dev/shm.
//   * `shutdown({.wait, .cancel_pending})`: no new work; with cancel_pending, queued tasks end
//     Cancelled; with wait, returns once running tasks are done and the workers have exited. The
//     destructor is shutdown().
//
// Thread-safety: every member function may be called from any thread.
//
// Example
//   double simulate(int seed);
//   PARX_REMOTE(simulate);
//   int main(int argc, char** argv) {
//     parx::init(argc, argv);
//     parx::ProcessPool pool({.timeout = std::chrono::seconds(60), .retries = 1});
//     std::vector<double> ys = pool.map(simulate, parx::range(10'000));
//     try { pool.submit(simulate, -1).get(); }
//     catch (const parx::WorkerCrashed& e) { std::cerr << e.what() << '\n'; }  // pool serves on
//   }
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include "parx/codec.hpp"
#include "parx/detail/remote_pool.hpp"
#include "parx/errors.hpp"
#include "parx/executor.hpp"
#include "parx/future.hpp"
#include "parx/log.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/remote.hpp"

namespace parx {

namespace detail {
class ProcessTransport;
}

class ProcessPool : public detail::RemotePool<ProcessPool> {
 public:
  struct Options {
    // Worker processes; 0 (default): one per core.
    std::size_t workers = 0;
    // Runs in every worker (including replacements) before its first task:
    // parx::remote_call(setup, args...). If it throws in the first workers, the constructor
    // throws the TaskError.
    RemoteCall initializer;
    // A worker that has run this many tasks is replaced between tasks. 0: never.
    std::size_t max_tasks_per_worker = 0;
    // Resident-memory ceiling per worker, bytes. A worker above it after a task is replaced; one
    // that crosses it while running a task is killed (the item fails with WorkerCrashed, or is
    // retried). 0: none.
    std::size_t memory_limit = 0;
    // Per-task time limit; the worker running an item longer is killed and replaced, and the item
    // fails with TimeoutError. 0: none.
    std::chrono::milliseconds timeout{0};
    // Times an item whose worker crashed is run again (on a fresh worker) before it fails with
    // WorkerCrashed.
    int retries = 0;
    // Also retry items that threw (up to `retries` times), for flaky tasks.
    bool retry_exceptions = false;
    // How long an idle worker (and the pool's I/O thread) spins before sleeping. Negative
    // (default): PARX_SPIN_US, else 50 µs.
    std::chrono::microseconds spin{-1};
    // How the workers' stdout and stderr reach this process (log.hpp): relayed whole-line
    // (`lines`), relayed with an origin prefix (`prefixed`), or written straight to the
    // descriptors the program had at parx::init (`inherit`). `automatic`: PARX_OUTPUT, else lines.
    Output output = Output::automatic;
  };

  explicit ProcessPool(std::size_t workers = 0);
  explicit ProcessPool(const Options& opts);
  ~ProcessPool();
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  // Pids of the live workers (for diagnostics and tests).
  std::vector<pid_t> pids() const;

  // workers, id, counters (crashes, timeouts, retries, replacement workers and refused frames
  // among them), is_shutdown, submit, map, starmap, imap, imap_unordered, submit_encoded:
  // detail/remote_pool.hpp.

  void shutdown(const ShutdownOptions& how = {});

 private:
  friend class detail::RemotePool<ProcessPool>;
  static constexpr MapTuning kMapTuning = map_tuning::process;
  void require_driver(const char*) const noexcept {}
  void enqueue(detail::RemoteJob&& job);
  observe::Counters read_counters() const;
  bool transport_shut_down() const noexcept;

  std::unique_ptr<detail::ProcessTransport> impl_;
};

static_assert(Executor<ProcessPool>);

}  // namespace parx
