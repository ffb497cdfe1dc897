// mpi/cluster_server.hpp — runs the jobs a ClusterPool rank receives on that rank's task slots
// (private to src/): in threads, through the engine's runner, or in the rank's own worker
// processes, through the ProcessPool's transport. Either way the result is the engine's result
// format (engine/wire.hpp), handed to `done` with its trailer.
//
// Thread-safety: run() and execute() may be called from any thread; `done` is called from the
// thread that finished the job.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "engine/runner.hpp"
#include "engine/wire.hpp"
#include "mpi/cluster_wire.hpp"
#include "parx/cluster_pool.hpp"
#include "parx/thread_pool.hpp"

namespace parx::detail {

class ProcessTransport;

class ClusterServer {
 public:
  // `done(body, trailer)` receives each finished job's result, from any thread.
  using Done = std::function<void(Bytes, cluster::Trailer)>;
  // `caller_runs`: in thread mode, the caller runs jobs itself through execute() (a serving
  // rank's own threads); otherwise run() hands them to a ThreadPool of `slots` threads.
  ClusterServer(const ClusterPool::Options& o, std::size_t slots, int rank, std::string host,
                Done done, bool caller_runs = false);
  ~ClusterServer();

  // Runs a job in this thread (thread mode) and hands its result to `done`.
  void execute(std::span<const std::byte> payload, const cluster::Trailer& t);
  // Runs the job whose (decompressed) payload is `payload`, in the rank's threads or processes.
  void run(Bytes payload, const cluster::Trailer& t);
  void shutdown();

 private:
  int rank_;
  std::string host_;
  engine::RunContext ctx_;  // read-only: shared by the threads that run jobs
  Done done_;
  std::optional<ThreadPool> threads_;
  std::unique_ptr<ProcessTransport> procs_;
};

}  // namespace parx::detail
