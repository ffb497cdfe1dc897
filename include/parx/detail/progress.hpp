// parx/detail/progress.hpp — internal: how the map engine (map_stream.hpp) reports a map's
// progress. The public face is MapOptions (executor.hpp): `progress`, `on_progress`, `label`;
// the bars themselves are drawn by the progress thread (src/observe/progress.cpp) on parx's
// console, above which worker output and log lines are written.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "parx/executor.hpp"

namespace parx::detail {

// PARX_PROGRESS: 1 (on for every map), 0 (off for every map), -1 (unset: per map).
int progress_env() noexcept;

// True if a map with these options is observed (progress or checkpoint): such maps run through
// the chunked engine on every executor.
bool map_observed(const MapOptions& o) noexcept;

// The progress of one map. Counts arrive from chunk completions on any thread (two relaxed
// atomic adds); parx's progress thread reads them, draws the bar and calls on_progress.
class MapMonitor {
 public:
  // nullptr when the options ask for neither a bar nor a callback.
  static std::shared_ptr<MapMonitor> start(const MapOptions& o, std::size_t total,
                                           std::string label);
  MapMonitor(const MapOptions& o, std::size_t total, std::string label, bool bar);
  ~MapMonitor();

  void ended(std::size_t n, std::size_t failed) noexcept {
    done_.fetch_add(n, std::memory_order_relaxed);
    if (failed) failed_.fetch_add(failed, std::memory_order_relaxed);
  }
  void resumed(std::size_t n) noexcept {
    resumed_.fetch_add(n, std::memory_order_relaxed);
    done_.fetch_add(n, std::memory_order_relaxed);
  }
  // The last report (bar's final line, on_progress with finished = true). Idempotent.
  void finish() noexcept;

  // Internal (the progress thread).
  Progress snapshot(std::int64_t now) noexcept;
  bool bar() const noexcept { return bar_; }
  void report(const Progress& p) noexcept;
  bool finished() const noexcept { return finished_.load(std::memory_order_acquire); }
  std::uint64_t id() const noexcept { return id_; }

 private:
  std::atomic<std::size_t> done_{0}, failed_{0}, resumed_{0};
  std::atomic<bool> finished_{false};
  const std::size_t total_;
  const std::string label_;
  const bool bar_;
  std::function<void(const Progress&)> cb_;
  const std::int64_t t0_;
  std::mutex mu_;  // rate window and the callback (the progress thread and finish())
  std::int64_t win_t_;
  std::size_t win_done_ = 0;
  double rate_ = 0;
  std::uint64_t id_ = 0;
};

}  // namespace parx::detail
