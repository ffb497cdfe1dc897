// parx/observe/trace.hpp — timelines: a Chrome-trace / Perfetto JSON file of what the pools did.
//
// A TraceRecorder listens to the observe events of every pool (or of one) and, when it is
// destroyed or write() is called, writes a trace that opens in https://ui.perfetto.dev and
// chrome://tracing: one track per worker (thread, process with its pid, or rank with its host),
// one slice per task named after its function (a map chunk is one task; `items` says how many
// items it carried), failures with their error, retries, worker crashes and restarts as
// markers, and each task's wait in the queue as an async slice on the pool's queue track
// (args.queue_wait_us on the task too). `parx trace summary run.json` summarises it.
//
// Two ways to record; pools only emit events, recorders subscribe to them:
//   PARX_TRACE=run.json ./prog          every pool of the program; written when it exits normally
//                                         (under mpiexec, ranks other than 0 write
//                                         run.json.rank<N>)
//   observe::TraceRecorder rec("b.json"); a region of a program, every pool or
//   (rec.only(pool.id()))
//                                         one; written when `rec` ends
//
// Contract
//   * Recording appends a small record per event to a buffer of the emitting thread, with no
//     lock shared between threads (a thread takes the recorder's lock once, to register its
//     buffer): at most about 0.1 µs per event, delivery and time stamp included, and three
//     events per task. Nothing is recorded, and nothing paid, while no recorder is alive (emit
//     sites test observe::active() first). Memory grows with the number of tasks (about 64 bytes
//     per event, 40 more for one that carries a worker's pid, run time or error) and is held
//     until the recorder is destroyed: trace runs, not endless services.
//   * Times are the steady clock of the recording process. Task slices of process and cluster
//     pools end when the driver learns the result, and span the run time the worker measured.
//   * write() never throws for an unwritable path: it returns false and tells stderr.
//
// Thread-safety: a recorder may be created and destroyed on any thread, also while pools run;
// events arrive from any thread, and several recorders may record at once. write(), events(),
// only() and discard() may be called from any thread while events are being recorded; write()
// and events() include every event whose delivery happened before the call.
//
// Example
//   {
//     parx::observe::TraceRecorder rec("sweep.json");
//     pool.map(simulate, parx::range(10'000));
//   }  // sweep.json written here; open it in ui.perfetto.dev or run `parx trace summary
//   sweep.json`
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace parx::observe {

class TraceRecorder {
 public:
  // Starts recording the events of every pool, or only of the pool with executor id `only`.
  explicit TraceRecorder(std::string path, std::uint64_t only = 0);
  ~TraceRecorder();  // writes the file
  TraceRecorder(const TraceRecorder&) = delete;
  TraceRecorder& operator=(const TraceRecorder&) = delete;

  // Writes what was recorded so far (recording goes on). False (and a line on stderr) if the
  // file cannot be written.
  bool write();
  const std::string& path() const noexcept;
  // Events recorded so far.
  std::size_t events() const;
  // From now on records only the pool with this executor id (and drops what others left).
  void only(std::uint64_t executor_id);
  // Stops recording; nothing will be written (a ClusterPool's serving ranks).
  void discard();

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

namespace detail {
// Reads PARX_TRACE and PARX_DASHBOARD once per process and starts what they ask for: a recorder
// of every pool, written at exit, and the dashboard. Every pool's constructor calls it before it
// emits its first event (the recorders are the observe layer's, never the pool's); cheap after
// the first call.
void start_from_env() noexcept;
}  // namespace detail

}  // namespace parx::observe
