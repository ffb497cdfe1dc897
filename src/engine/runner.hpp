// engine/runner.hpp — runs a job (wire.hpp) in this thread: every item through the registry's
// type-checked invokers, each outcome into the result. The one item runner of parx: the
// ProcessPool's worker processes and the ClusterPool's serving ranks both call it.
//
// Contract
//   * A function id this process does not know fails every item with an Error saying so (an id
//     is never jumped to); a batch whose shape differs from the function's batch form likewise.
//   * An item that throws gets an error record (wire.hpp's put_error) and the next item runs.
//   * A job whose framing is wrong (lengths beyond the payload, a bad batch header) throws
//     SerializationError: a batch before any item runs, a plain job when the bad item is reached
//     (items are read as they run). The transport decides whether that fails the job's items or
//     ends the worker; no partial result is delivered either way.
//
// Thread-safety: run_job may run in many threads at once, each with its own ResultWriter.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>

#include "engine/wire.hpp"

namespace parx::detail::engine {

// Where a running job reports its progress (crash and timeout attribution) and who it is.
struct RunContext {
  std::string host;   // for errors
  int rank = -1;      // for errors; -1 outside a ClusterPool rank
  std::string where;  // "in the worker", "on rank 2": completes the unknown-function message
  // The position of the item running (a worker's status word, read by its parent when it dies).
  std::atomic<std::uint32_t>* item = nullptr;
  // Stamped with CLOCK_MONOTONIC_COARSE at each item's start when `timed` (per-task timeouts).
  std::atomic<std::int64_t>* item_started_ns = nullptr;
  bool timed = false;
};

// Runs the job in `payload` (a batch when `batch`; its items' task indices start at
// `first_index` in errors) into `out`, and returns the elapsed time in ns; out.finish() has been
// called. Throws SerializationError for a malformed job.
std::int64_t run_job(std::span<const std::byte> payload, bool batch, std::int64_t first_index,
                     const RunContext& ctx, ResultWriter& out);

// CLOCK_MONOTONIC at tick resolution: cheap enough to stamp every item.
std::int64_t coarse_now_ns() noexcept;

}  // namespace parx::detail::engine
