// parx/executor.hpp — what every parx executor is: the Executor concept and the map options.
//
// ThreadPool satisfies Executor; ProcessPool and ClusterPool do too, so code written against the
// concept (and the options below) runs unchanged on threads, processes or MPI ranks.
//
// The concept requires:
//   * `submit(f, args...) -> Future<R>`
//   * `map(f, inputs, MapOptions) -> std::vector<R>` in input order
//   * `imap(f, inputs, MapOptions)` — lazy, ordered; `imap_unordered` — lazy, completion order
//   * `shutdown(wait, cancel_pending)` and `workers()`
//
// MapOptions is one aggregate, so call sites read like Python keyword arguments and later
// modules extend it (progress, checkpoint, timeout, retries) without breaking them:
//   pool.map(f, inputs, {.chunksize = 64, .max_in_flight = 10'000});
//
// Thread-safety: MapOptions/MapStats are plain values.
#pragma once

#include <concepts>
#include <cstddef>
#include <vector>

#include "parx/future.hpp"

namespace parx {

// Filled in by a map when MapOptions::stats points to one.
struct MapStats {
  std::size_t items = 0;      // inputs processed
  std::size_t chunks = 0;     // tasks the items were batched into
  std::size_t chunksize = 0;  // effective chunk size (the last one chosen when adaptive)
  double seconds = 0;         // wall time of the map
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
  // (ThreadPool: 100 µs).
  std::size_t target_chunk_us = 0;
  // When non-null, receives statistics once the map (or the imap iteration) ends.
  MapStats* stats = nullptr;
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
  e.shutdown(true, true);
};

}  // namespace parx
