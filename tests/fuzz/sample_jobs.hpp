// Valid engine jobs (engine/wire.hpp) for the fuzz targets' seeds: a plain job of two encoded
// items and a batch job of three packed 8-byte arguments, both of function id 0x1234.
#pragma once

#include <cstdint>
#include <cstring>

#include "engine/wire.hpp"

inline parx::Bytes sample_plain_job() {
  parx::Encoder job(64);
  const std::uint64_t jh[2] = {0x1234, 2};
  job.write(jh, sizeof jh);
  for (int i = 0; i < 2; ++i) {
    const std::uint64_t ih[2] = {static_cast<std::uint64_t>(i), 4};
    job.write(ih, sizeof ih);
    job.put(static_cast<std::int32_t>(i * 10));
  }
  return job.take();
}

inline parx::Bytes sample_batch_job() {
  parx::Bytes batch(parx::detail::engine::kBatchHeader + 3 * 8);
  const std::uint64_t bh[4] = {0x1234, 3, 8, 8};
  std::memcpy(batch.data(), bh, sizeof bh);
  return batch;
}
