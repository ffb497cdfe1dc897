// The item runner of the remote-task engine (contract in engine/runner.hpp).
#include "engine/runner.hpp"

#include <time.h>

#include <cstdio>

#include "parx/future.hpp"

namespace parx::detail {
void clear_throw_trace() noexcept;
}

namespace parx::detail::engine {

std::int64_t coarse_now_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {

std::string unknown_function(FunctionId fn, const RunContext& ctx) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fn));
  return std::string("parx: no function is registered under id ") + hex + " " + ctx.where +
         " (refused; was it built from a different program?)";
}

// Items are read as they run (no table of them): an item whose framing is wrong throws
// SerializationError when it is reached, and the caller drops the whole result.
void run_plain(std::span<const std::byte> payload, const RunContext& ctx, ResultWriter& out) {
  if (payload.size() < kJobHeader) throw SerializationError("a job shorter than its header");
  const auto fn = load_at<std::uint64_t>(payload, 0);
  const auto n = load_at<std::uint64_t>(payload, 8);
  if (n > payload.size() / 16) throw SerializationError("a job claims more items than it holds");
  const RemoteEntry* entry = find_remote(fn);
  const std::string& name = entry ? entry->name : std::string();
  out.reset(n, false, 0);
  std::size_t pos = kJobHeader;
  for (std::size_t k = 0; k < n; ++k) {
    if (payload.size() - pos < 16) throw SerializationError("a job item header beyond the job");
    const auto index = load_at<std::int64_t>(payload, pos);
    const auto word = load_at<std::uint64_t>(payload, pos + 8);
    const std::size_t len = word & kItemLenMask, pad = word >> 56;
    const std::size_t room = payload.size() - pos - 16;
    if (pad >= 64 || pad > room || len > room - pad)
      throw SerializationError("a job item beyond the job");
    const std::size_t args_at = pos + 16 + pad;
    pos = args_at + len;
    if (ctx.item) ctx.item->store(static_cast<std::uint32_t>(k), std::memory_order_relaxed);
    if (ctx.timed && ctx.item_started_ns)
      ctx.item_started_ns->store(coarse_now_ns(), std::memory_order_relaxed);
    Encoder& enc = out.begin_value(k);
    try {
      clear_throw_trace();
      if (!entry) throw Error(unknown_function(fn, ctx));
      Decoder d(payload.subspan(args_at, len), args_at);
      entry->invoke(entry->fn, d, enc);
      out.end_value();
    } catch (...) {
      out.abandon_value(k, std::current_exception(), index, name, ctx.rank, ctx.host);
    }
  }
}

// The function's batch form loops over the packed arguments; an item that throws gets an error
// record and the loop resumes after it.
void run_batch(std::span<const std::byte> payload, std::int64_t first_index, const RunContext& ctx,
               ResultWriter& out) {
  const BatchShape s = parse_batch(payload);
  const RemoteEntry* entry = find_remote(s.fn);
  const std::string& name = entry ? entry->name : std::string();
  std::string refusal;
  if (!entry)
    refusal = unknown_function(s.fn, ctx);
  else if (!entry->batch.invoke || entry->batch.arg_size != s.arg_size ||
           entry->batch.result_size != s.result_size)
    refusal = "parx: " + name + " " + ctx.where +
              " does not take a batch of this shape (was it built from a different program?)";
  out.reset(s.n, true, s.result_size, false);  // every item writes its result or is zeroed
  std::atomic<std::uint32_t> local{0};
  std::atomic<std::uint32_t>* at = ctx.item ? ctx.item : &local;
  const std::byte* in = payload.data() + kBatchHeader;
  std::size_t i = 0;
  while (i < s.n) {
    try {
      clear_throw_trace();
      if (!refusal.empty()) {
        at->store(static_cast<std::uint32_t>(i), std::memory_order_relaxed);
        throw Error(refusal);
      }
      if (ctx.timed && ctx.item_started_ns) {  // one item per call, each with its start time
        ctx.item_started_ns->store(coarse_now_ns(), std::memory_order_relaxed);
        entry->batch.invoke(entry->fn, in, out.packed(), i, i + 1, at);
      } else {
        entry->batch.invoke(entry->fn, in, out.packed(), i, s.n, at);
      }
    } catch (...) {
      std::memset(out.packed() + i * s.result_size, 0, s.result_size);
      out.error(i, std::current_exception(), first_index + static_cast<std::int64_t>(i), name,
                ctx.rank, ctx.host);
      ++i;
    }
  }
}

}  // namespace

std::int64_t run_job(std::span<const std::byte> payload, bool batch, std::int64_t first_index,
                     const RunContext& ctx, ResultWriter& out) {
  const std::int64_t t0 = now_ns();
  if (ctx.item_started_ns) ctx.item_started_ns->store(coarse_now_ns(), std::memory_order_relaxed);
  if (batch)
    run_batch(payload, first_index, ctx, out);
  else
    run_plain(payload, ctx, out);
  const std::int64_t elapsed = now_ns() - t0;
  (void)out.finish(elapsed);
  return elapsed;
}

}  // namespace parx::detail::engine
