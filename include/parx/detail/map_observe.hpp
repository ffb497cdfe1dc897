// parx/detail/map_observe.hpp — internal: what the map engine (map_stream.hpp) uses to report
// progress and to journal results. The public face is MapOptions (executor.hpp):
// `progress`, `on_progress`, `label`, `checkpoint`, `checkpoint_sync`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "parx/executor.hpp"

namespace parx::detail {

// Writes whole lines to fd 1 or 2 without tearing a progress bar: the bar (on a terminal) is
// cleared first and drawn again after. `text` should end with '\n'. Safe from any thread.
void console_write(int fd, std::string_view text) noexcept;

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

// The checkpoint journal of one map. File layout (little-endian):
//   header: "PARXCKP1" | u32 format (1) | u32 n | n bytes of fingerprint text | u64 XXH3(text)
//   record: u32 "PXR1" | u32 len | u64 index | u64 input hash | len bytes result | u64 XXH3 of
//           the 24 bytes before the result and the result
// Records are appended with one write() per batch (a chunk), so a killed program loses nothing
// it wrote; fsync runs at least every `sync` (and at close), bounding what a machine crash loses.
// Opening reads every record: a torn tail (the last record cut short, or its checksum wrong at
// the very end of the file) is cut off; any other damage, or a header made by another map, is a
// CheckpointError.
class Journal {
 public:
  Journal(std::string path, std::string fingerprint, std::chrono::milliseconds sync);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // The recorded result of item `index`, verifying its input; nullptr if not recorded. Throws
  // CheckpointError if the item was recorded with a different input. Consumer thread only.
  const std::vector<std::byte>* find(std::uint64_t index, std::uint64_t input_hash);

  // Appends records (thread-safe; called from chunk completions).
  struct Record {
    std::uint64_t index;
    std::uint64_t input_hash;
    std::span<const std::byte> result;
  };
  // The first write or fsync that fails stops the recording (a record after a torn one would
  // read as damage) and logs a warning; the map itself goes on.
  void append(std::span<const Record> records) noexcept;
  // fsync now (end of the map). Returns why the journal stopped recording, empty if it did not.
  std::string close();

  static std::uint64_t hash(std::span<const std::byte> bytes) noexcept;

 private:
  void load();
  void warn_failed(const std::string& why) noexcept;
  std::string path_;
  std::string fingerprint_;
  std::chrono::milliseconds sync_;
  int fd_ = -1;
  std::unordered_map<std::uint64_t, std::pair<std::uint64_t, std::vector<std::byte>>> recorded_;
  std::mutex mu_;
  std::int64_t last_sync_ = 0;
  std::string write_error_;
};

}  // namespace parx::detail
