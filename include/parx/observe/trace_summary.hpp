// parx/observe/trace_summary.hpp — reads a Chrome-trace timeline and says where the time went.
//
// A trace (PARX_TRACE=run.json, docs/trace.md) holds one slice per task; this turns it into the
// few numbers that answer "why was it not faster": per function (count, items, failures,
// duration percentiles), per worker (busy time, utilisation, idle gaps), per pool (crashes,
// restarts, retries, queue waits) and overall (wall time, busy time, critical path). `parx trace
// summary run.json` prints it.
//
// Contract
//   * Input is the Chrome Trace Event format: a JSON object with a "traceEvents" array (Object
//     Format) or a bare array of events (Array Format). Times are microseconds.
//   * Task slices are the events with ph "X" and category "task"; "items" in their args is how
//     many map items the task carried (absent: 1), "status" is "ok", "failed" or "cancelled"
//     (absent: ok), "parent" the id ("task") of the task that spawned it. Instants named
//     "worker crashed", "worker started", "worker stopped", "worker restarted", "task retried"
//     and "task cancelled" are counted per pool ("pid"); queue waits come from a slice's
//     "queue_wait_us" or from a pair of "b"/"e" events of category "queue" with the task's id.
//     Every other event or field is ignored, so traces from other producers still load.
//   * Anything that is not such a trace — a missing or unreadable file, bytes that are not JSON
//     (a trace cut short because its program was killed), JSON that is not a trace, an event that
//     is not an object, a "ts"/"dur" that is not a finite number, a task slice without them —
//     throws parx::InvalidArgument with a message that names the file and, for an event, its
//     index in the event array. Nothing else is thrown for any input (bad_alloc aside): no crash,
//     no hang (cycles in "parent" links are cut).
//   * A trace without task slices gives a summary with tasks == 0, which formats as "no tasks".
//   * Percentiles are nearest-rank: p50 of n sorted durations is the ceil(0.5·n)-th.
//   * Wall time runs from the first task's start to the last task's end, widened to otherData's
//     "start_us"/"end_us" when the producer recorded them. A worker's busy time is the union of
//     its slices (a task run inline inside another while it waits is not counted twice).
//   * The critical path is the longest chain of spawns: path(t) = dur(t) + path(parent(t)), or
//     dur(t) for a task without a (known) parent. With independent tasks it is the longest task.
//     Above half the wall time the run is latency-bound (more workers would not help much);
//     otherwise throughput-bound.
//
// Thread-safety: pure functions of their arguments; call them from any thread.
//
// Example
//   parx::observe::TraceSummary s = parx::observe::summarize_trace_file("run.json");
//   std::cout << parx::observe::format_trace_summary(s);
//   if (s.latency_bound()) std::cout << "the longest chain dominates: split it\n";
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace parx::observe {

struct TraceSummaryOptions {
  // A pause on a worker track between two of its tasks longer than this is an idle gap.
  // Default 1 ms: shorter pauses are ordinary scheduling and wake-up costs.
  double idle_gap_threshold_us = 1000.0;
  // summarize_trace_file refuses a file larger than this (parsing takes about 15 times the
  // file's size in memory). Default 1 GiB; `parx trace summary --max-size-mb` raises it.
  std::uint64_t max_file_bytes = std::uint64_t{1} << 30;
};

// The task slices of one function name.
struct FunctionSummary {
  std::string name;
  std::size_t tasks = 0;
  std::uint64_t items = 0;  // map items those tasks carried
  std::size_t failures = 0;
  std::size_t cancelled = 0;
  double total_us = 0, mean_us = 0, p50_us = 0, p99_us = 0, max_us = 0;
  std::string first_error;             // "error" of the earliest failed slice that has one
  std::int64_t first_error_task = -1;  // its "task" id, -1 when it has none
};

// One worker track ("pid", "tid" with tid != 0, or any track that ran a task).
struct WorkerSummary {
  std::int64_t pid = 0, tid = 0;
  std::string name;  // thread_name metadata, else "tid N"
  std::string pool;  // process_name metadata of its pid, else "pid N"
  std::size_t tasks = 0;
  double busy_us = 0;
  double utilisation = 0;        // busy / wall, 0 when the wall time is 0
  std::size_t idle_gaps = 0;     // gaps between its tasks longer than the threshold
  double longest_gap_us = 0;     // the longest gap between two of its tasks (any length)
  double longest_gap_at_us = 0;  // where it starts, from the trace's start
};

// One pool ("pid").
struct PoolSummary {
  std::int64_t pid = 0;
  std::string name;  // process_name metadata, else "pid N"
  std::size_t workers = 0, tasks = 0;
  std::size_t crashes = 0, restarts = 0, retries = 0, cancelled = 0;
  std::size_t workers_started = 0, workers_stopped = 0;
  std::size_t queue_waits = 0;  // tasks whose queue wait is known
  double mean_queue_wait_us = 0, max_queue_wait_us = 0;
};

// One task on the critical path.
struct PathStep {
  std::string name;
  std::int64_t task = -1;  // its "task" id, -1 when it has none
  double start_us = 0, dur_us = 0;
};

struct TraceSummary {
  std::string source;    // the file name, or what the caller passed
  std::string producer;  // otherData.producer and .version, when present
  std::string producer_version;
  std::size_t events = 0;          // events in the trace
  std::size_t ignored_events = 0;  // of those, the ones this summary does not use
  std::size_t tasks = 0;
  std::uint64_t items = 0;
  std::size_t failures = 0, cancelled = 0;
  double start_us = 0, end_us = 0, wall_us = 0;
  bool wall_from_metadata = false;  // otherData's start_us/end_us widened the span
  double busy_us = 0;               // sum of the workers' busy time
  double critical_path_us = 0;
  std::vector<PathStep> critical_path;  // root first
  double idle_gap_threshold_us = 1000.0;
  std::vector<FunctionSummary> functions;  // by total time, largest first
  std::vector<WorkerSummary> workers;      // by pid, then tid
  std::vector<PoolSummary> pools;          // by pid

  // Critical path / wall time, 0 when the wall time is 0.
  double critical_path_ratio() const noexcept {
    return wall_us > 0 ? critical_path_us / wall_us : 0.0;
  }
  // More than half the wall time is one chain of tasks: more workers would not shorten it much.
  bool latency_bound() const noexcept { return critical_path_ratio() > 0.5; }
};

// Summarises the trace in `json_text`; `source_name` names it in messages and in the summary.
// Throws parx::InvalidArgument when the text is not a trace (see the contract above).
TraceSummary summarize_trace(std::string_view json_text, std::string_view source_name,
                             const TraceSummaryOptions& options = {});

// Reads and summarises the file at `path`; a missing or unreadable file throws
// parx::InvalidArgument naming the path.
TraceSummary summarize_trace_file(const std::filesystem::path& path,
                                  const TraceSummaryOptions& options = {});

// The summary as aligned text tables (what `parx trace summary` prints).
std::string format_trace_summary(const TraceSummary& summary);

// The summary as a JSON document, times in microseconds (`parx trace summary --json`).
std::string trace_summary_json(const TraceSummary& summary);

// A duration in a readable unit with three significant digits: "80.0 µs", "1.25 ms", "12.5 s".
std::string format_duration_us(double us);

}  // namespace parx::observe
