// process/worker.hpp — what a ProcessPool worker process is told when it starts (sent by the
// parent through the fork server, encoded by the codec), and the name it is started under.
#pragma once

#include <cstdint>
#include <string>

#include "parx/remote.hpp"

namespace parx::detail {

struct WorkerBoot {
  std::uint64_t region_offset = 0;
  std::uint64_t max_tasks = 0;
  std::uint64_t memory_limit = 0;
  std::int64_t spin_ns = 0;
  bool timed = false;  // a per-task timeout is set: stamp every item's start
  std::uint64_t init_fn = 0;
  std::string init_args;
  bool relay = false;             // stdout and stderr arrive as two pipes after the channel
  std::int32_t index = 0;         // the worker's index in its pool (its origin)
  std::int32_t origin_rank = -1;  // the pool's rank when it runs on a ClusterPool's rank
  std::string origin_host;        // that rank's host when it is not the driver's
};

// The registered id of the worker's entry point, for ForkServer::spawn. Defined beside the
// entry point, so that a program linking the pool also links (and registers) the worker.
FunctionId worker_entry_id();

}  // namespace parx::detail
