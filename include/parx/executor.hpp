// parx/executor.hpp — what every parx executor is: the Executor concept and the map options.
//
// ThreadPool satisfies Executor; ProcessPool and ClusterPool do too, so code written against the
// concept (and the options below) runs unchanged on threads, processes or MPI ranks.
//
// The concept requires:
//   * `submit(f, args...) -> Future<R>`
//   * `map(f, inputs, MapOptions) -> std::vector<R>` in input order
//   * `imap(f, inputs, MapOptions)` — lazy, ordered; `imap_unordered` — lazy, completion order
//   * `shutdown(ShutdownOptions)` and `workers()`
//
// MapOptions is one aggregate, so call sites read like Python keyword arguments:
//   pool.map(f, inputs, {.chunksize = 64, .max_in_flight = 10'000});
//   pool.map(f, inputs, {.progress = true, .checkpoint = "sweep.ckpt"});
//
// Thread-safety: MapOptions/MapStats are plain values.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "parx/future.hpp"

namespace parx {

// Filled in by a map when MapOptions::stats points to one.
// How a pool shuts down (concurrent.futures' shutdown(wait, cancel_futures)): named, so a call
// reads `pool.shutdown({.cancel_pending = true})`. Every pool: no new work is accepted after it.
struct ShutdownOptions {
  // Return only once running work is done and the workers have exited (else at once).
  bool wait = true;
  // Work queued and not started ends Cancelled instead of running.
  bool cancel_pending = false;
};

// The map engine's tunables that MapOptions leaves to the executor: the chunk duration adaptive
// batching aims at when `target_chunk_us` is 0, and the largest chunk it builds. Each is a
// trade-off between the per-chunk cost of the executor's transport (a hand-off between threads,
// a round trip through a worker process, an MPI message) and how evenly the tail of a map ends.
struct MapTuning {
  std::size_t target_chunk_us;  // µs
  std::size_t max_chunk;        // items
};

namespace map_tuning {
// ThreadPool imap: a first result within ~100 µs.
inline constexpr MapTuning thread_imap{100, 65536};
// ThreadPool map over a lazy input, or observed (a progress bar, a checkpoint, a trace): 1 ms
// chunks, so that the thread collecting them takes almost no core from the workers.
inline constexpr MapTuning thread_map{1000, 65536};
// ProcessPool: 50 ms, so that a round trip (~8 µs) is noise beside a chunk.
inline constexpr MapTuning process{50'000, 32768};
// ClusterPool: 20 ms, so that an MPI message is noise and ranks still get work often.
inline constexpr MapTuning cluster{20'000, std::size_t{1} << 17};
}  // namespace map_tuning

struct MapStats {
  std::size_t items = 0;      // inputs processed
  std::size_t chunks = 0;     // tasks the items were batched into
  std::size_t chunksize = 0;  // effective chunk size (the last one chosen when adaptive)
  double seconds = 0;         // wall time of the map
  std::size_t resumed = 0;    // items whose results came from the checkpoint, not from a run
  // Empty when the checkpoint journal recorded every result (or there was none). Otherwise why
  // it stopped recording (a full disk, a file size limit): the map still returned every result,
  // but a re-run would run the items not recorded again.
  std::string checkpoint_error;
};

// What a map's progress reports (MapOptions::on_progress, and the bar).
struct Progress {
  std::size_t done = 0;     // items ended (with a value or an exception), resumed ones included
  std::size_t failed = 0;   // of which ended with an exception
  std::size_t resumed = 0;  // of which restored from the checkpoint
  std::size_t total = 0;    // items in the input; 0 when its size is not known
  double elapsed = 0;       // seconds since the map started
  double rate = 0;          // items per second, recent (resumed items excluded)
  double eta = -1;          // seconds left; < 0 when unknown
  bool finished = false;    // the last report of this map
  std::string_view label;   // the map's name (MapOptions::label, else the function's)
};

struct MapOptions {
  // Items per task. 0 (default): automatic — random-access inputs are split guided-style
  // (large chunks first, small ones at the tail, so no worker straggles); lazy inputs start at 1
  // and adapt to the measured per-item time so each chunk takes about `target_chunk_us`.
  std::size_t chunksize = 0;
  // imap only: true (default) yields results in input order; false in completion order.
  bool ordered = true;
  // Upper bound on items pulled from the input but not yet handed back to the caller.
  // 0 (default): 4 chunks per worker. Bounds memory for huge or infinite lazy inputs.
  std::size_t max_in_flight = 0;
  // Target duration of one chunk for adaptive batching, microseconds. 0: the executor's default
  // (map_tuning below).
  std::size_t target_chunk_us = 0;
  // When non-null, receives statistics once the map (or the imap iteration) ends.
  MapStats* stats = nullptr;

  // -- observation (observe module) --
  // Draw a progress bar on stderr (done/total, failures, rate, ETA, elapsed), redrawn at most
  // 5 times a second; periodic plain lines when stderr is not a terminal. PARX_PROGRESS=1 turns
  // it on for every map, PARX_PROGRESS=0 off for every map.
  bool progress = false;
  // Called with the map's progress from parx's progress thread (never from a worker), at most
  // 5 times a second and once more at the end with `finished` set. Must not throw.
  std::function<void(const Progress&)> on_progress;
  // Name shown by the bar and the callback; default: the function's registered name, or "map".
  std::string label;

  // -- durability (durable module) --
  // Journal file: each finished item's result is appended (with a checksum) as it arrives; a
  // re-run of the same map with the same file runs only the items not in it and returns the
  // results an uninterrupted run would. Results and inputs must be encodable (parx::codec).
  std::string checkpoint;
  // Bound on what a machine crash can lose: the journal is fsync'ed at least this often (and at
  // the end). A crash of the program itself loses nothing that was written.
  std::chrono::milliseconds checkpoint_sync{1000};
};

namespace detail {
inline int executor_probe(int x) {
  return x;
}
}  // namespace detail

template <class E>
concept Executor = requires(E& e, const E& ce, std::vector<int> v) {
  { ce.workers() } -> std::convertible_to<std::size_t>;
  { e.submit(&detail::executor_probe, 1) } -> std::same_as<Future<int>>;
  { e.map(&detail::executor_probe, v) } -> std::same_as<std::vector<int>>;
  { e.map(&detail::executor_probe, v, MapOptions{}) } -> std::same_as<std::vector<int>>;
  e.imap(&detail::executor_probe, v);
  e.imap_unordered(&detail::executor_probe, v);
  e.shutdown();
  e.shutdown(ShutdownOptions{.wait = true, .cancel_pending = true});
};

}  // namespace parx
