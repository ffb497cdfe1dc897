// parx/checkpoint.hpp — checkpointed maps: what MapOptions::checkpoint needs to journal a map's
// inputs and results (the codec), on every pool.
//
// A map with `{.checkpoint = "sweep.ckpt"}` appends each finished item's result to a journal; a
// re-run of the same map over the same inputs takes the recorded results from it and runs only
// the rest (docs/checkpoint.md). The map engine (detail/map_stream.hpp) knows no codec, so that a
// program that only uses a ThreadPool does not compile one: the journal is defined here.
//
// Contract
//   * Include this header before a checkpointed map is called. parx.hpp, process_pool.hpp and
//     cluster_pool.hpp include it already; with thread_pool.hpp alone, a map given a checkpoint
//     throws InvalidArgument saying to include this header, and never runs without its journal.
//   * Inputs and results must be encodable by parx::codec (codec.hpp); a map of types that are not
//     throws InvalidArgument naming them.
//
// Thread-safety: as for the map itself; the journal takes appends from any thread.
//
// Example
//   #include <parx/checkpoint.hpp>
//   #include <parx/thread_pool.hpp>
//   parx::ThreadPool pool;
//   auto ys = pool.map(simulate, parx::range(100'000), {.checkpoint = "sweep.ckpt"});
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "parx/codec.hpp"
#include "parx/detail/journal.hpp"
#include "parx/detail/map_stream.hpp"
#include "parx/errors.hpp"

namespace parx::detail {

template <class In, class R>
class MapJournal final : public MapCheckpoint<In, R> {
 public:
  MapJournal(const MapOptions& opts, const std::string& fingerprint)
      : path_(opts.checkpoint), journal_(opts.checkpoint, fingerprint, opts.checkpoint_sync) {}

  void lookup(const std::vector<In>& items, std::size_t first, std::vector<std::uint64_t>& hashes,
              std::vector<std::optional<R>>& found) override {
    for (std::size_t i = 0; i < items.size(); ++i) {
      hashes[i] = Journal::hash(encode(items[i]));
      const std::vector<std::byte>* b = journal_.find(first + i, hashes[i]);
      if (!b) continue;
      try {
        found[i].emplace(decode<R>(std::span<const std::byte>(*b)));
      } catch (const SerializationError& e) {
        throw CheckpointError(path_ +
                              ": a recorded result does not decode as this map's result type (" +
                              e.what() + "). Delete the file to start over");
      }
    }
  }

  void record(const ChunkResult<R>& cr, std::size_t first,
              const std::vector<std::uint64_t>& hashes) noexcept override {
    try {
      std::vector<Bytes> enc;  // reserved: records point into its elements
      std::vector<Journal::Record> recs;
      enc.reserve(cr.size());
      recs.reserve(cr.size());
      std::size_t e = 0;
      for (std::size_t i = 0; i < cr.size(); ++i) {
        if (e < cr.errors.size() && cr.errors[e].first == i) {
          ++e;  // failed items are not journaled: a re-run tries them again
          continue;
        }
        enc.push_back(encode(cr.peek(i)));
        recs.push_back({first + i, hashes[i], enc.back()});
      }
      journal_.append(recs);
    } catch (...) {
      // Encoding a result failed (out of memory): the item is simply not journaled.
    }
  }

  std::string close() override { return journal_.close(); }

 private:
  std::string path_;
  Journal journal_;
};

// The journal a map gets where this header is included (see journal_for, map_stream.hpp).
struct CodecJournal {
  template <class In, class R>
  static std::unique_ptr<MapCheckpoint<In, R>> open(const MapOptions& opts,
                                                    const std::string& fingerprint) {
    if constexpr (is_encodable_v<In> && is_encodable_v<R>) {
      return std::make_unique<MapJournal<In, R>>(opts, fingerprint);
    } else {
      throw InvalidArgument(
          "checkpoint: the map's inputs and results must be encodable by parx::codec to be "
          "journaled (input " +
          demangle(typeid(In).name()) + ", result " + demangle(typeid(R).name()) + ")");
    }
  }
};
template <class T>
CodecJournal journal_policy(JournalTag<T>);

}  // namespace parx::detail
