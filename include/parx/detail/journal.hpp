// parx/detail/journal.hpp — internal: the checkpoint journal of a map, a byte store of results
// by item index (src/durable/checkpoint.cpp). The public face is MapOptions (executor.hpp):
// `checkpoint`, `checkpoint_sync`; map_stream.hpp encodes inputs and results for it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace parx::detail {

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
