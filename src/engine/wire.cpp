// The remote-task engine's wire format (layout in engine/wire.hpp).
#include "engine/wire.hpp"

#include <unistd.h>

#include <algorithm>

namespace parx::detail {
std::string last_throw_trace();
}

namespace parx::detail::engine {

// ---- jobs ---------------------------------------------------------------------------------------

std::vector<JobItem> parse_job(std::span<const std::byte> payload) {
  std::vector<JobItem> items;
  if (payload.size() < kJobHeader) throw SerializationError("a job shorter than its header");
  const auto n = load_at<std::uint64_t>(payload, 8);
  if (n > payload.size() / 16) throw SerializationError("a job claims more items than it holds");
  items.reserve(n);
  std::size_t pos = kJobHeader;
  for (std::uint64_t k = 0; k < n; ++k) {
    if (payload.size() - pos < 16) throw SerializationError("a job item header beyond the job");
    const auto word = load_at<std::uint64_t>(payload, pos + 8);
    const std::size_t len = word & kItemLenMask, pad = word >> 56;
    const std::size_t room = payload.size() - pos - 16;
    if (pad >= 64 || pad > room || len > room - pad)
      throw SerializationError("a job item beyond the job");
    items.push_back({load_at<std::int64_t>(payload, pos), pos, pos + 16 + pad, len});
    pos += 16 + pad + len;
  }
  return items;
}

BatchShape parse_batch(std::span<const std::byte> payload) {
  if (payload.size() < kBatchHeader)
    throw SerializationError("a batch job shorter than its header");
  BatchShape s;
  s.fn = load_at<std::uint64_t>(payload, 0);
  const auto n = load_at<std::uint64_t>(payload, 8);
  const auto as = load_at<std::uint64_t>(payload, 16);
  const auto rs = load_at<std::uint64_t>(payload, 24);
  const std::size_t body = payload.size() - kBatchHeader;
  if (as == 0 || as > kMaxBatchElem || rs > kMaxBatchElem || body % as != 0 || n != body / as)
    throw SerializationError("a batch job does not match its item count and sizes");
  s.n = n;
  s.arg_size = as;
  s.result_size = rs;
  return s;
}

void seal_job(FunctionId fn, std::span<std::byte> payload, std::size_t n, bool batch,
              const char* pool) {
  if (!batch) {
    const std::uint64_t prefix[2] = {fn, n};
    std::memcpy(payload.data(), prefix, sizeof prefix);
    return;
  }
  const RemoteEntry* e = find_remote(fn);
  if (!e || !e->batch.invoke)
    throw Error(std::string(pool) + ": function " + (e ? e->name : std::string("(unknown)")) +
                " has no batch form");
  if (payload.size() != kBatchHeader + n * e->batch.arg_size)
    throw InvalidArgument(std::string(pool) + ": batch payload of the wrong size");
  const std::uint64_t prefix[4] = {fn, n, e->batch.arg_size, e->batch.result_size};
  std::memcpy(payload.data(), prefix, sizeof prefix);
}

Bytes rebuild_job(std::span<const std::byte> payload, bool batch, std::vector<std::size_t>& items) {
  const auto fn = load_at<std::uint64_t>(payload, 0);
  if (batch) {  // the chosen items' packed arguments, in order
    const auto as = load_at<std::uint64_t>(payload, 16);
    const auto rs = load_at<std::uint64_t>(payload, 24);
    Bytes b(kBatchHeader + items.size() * as);
    const std::uint64_t prefix[4] = {fn, items.size(), as, rs};
    std::memcpy(b.data(), prefix, sizeof prefix);
    for (std::size_t k = 0; k < items.size(); ++k) {
      std::memcpy(b.data() + kBatchHeader + k * as, payload.data() + kBatchHeader + items[k] * as,
                  as);
      items[k] = k;
    }
    return b;
  }
  // Each item keeps its arguments' offset modulo 64, so alignment padding inside them lines up.
  Encoder e(64);
  const std::uint64_t prefix[2] = {fn, items.size()};
  e.write(prefix, sizeof prefix);
  for (auto& offset : items) {
    const auto index = load_at<std::int64_t>(payload, offset);
    const auto word = load_at<std::uint64_t>(payload, offset + 8);
    const std::size_t len = word & kItemLenMask, old_pad = word >> 56;
    const std::size_t args_at = offset + 16 + old_pad;
    const std::size_t at = e.size();
    const std::size_t pad = (args_at % 64 + 128 - (at + 16) % 64) % 64;
    const std::uint64_t hdr[2] = {static_cast<std::uint64_t>(index),
                                  len | (std::uint64_t{pad} << 56)};
    e.write(hdr, sizeof hdr);
    e.write(kZeros, pad);
    e.write(payload.data() + args_at, len);
    offset = at;
  }
  return e.take();
}

// ---- errors ------------------------------------------------------------------------------------

void put_error(Encoder& out, const std::exception_ptr& e, std::int64_t index,
               const std::string& function, int rank, const std::string& host) {
  try {
    std::rethrow_exception(e);
  } catch (const TaskError& t) {
    TaskErrorInfo i = t.info();
    if (rank >= 0) i.rank = rank;
    if (i.host.empty()) i.host = host;
    out.put(static_cast<std::uint8_t>(ErrKind::task));
    out.put(i);
  } catch (const WorkerCrashed& w) {
    out.put(static_cast<std::uint8_t>(ErrKind::crashed));
    out.put(w.pid());
    out.put(static_cast<std::int64_t>(w.signal()));
    out.put(static_cast<std::int64_t>(w.exit_code()));
    out.put(w.task_index() >= 0 ? w.task_index() : index);
  } catch (const TimeoutError& t) {
    out.put(static_cast<std::uint8_t>(ErrKind::timeout));
    out.put(index);
    out.put(std::string(t.what()));
  } catch (const Cancelled& c) {
    out.put(static_cast<std::uint8_t>(ErrKind::cancelled));
    out.put(index);
    out.put(std::string(c.what()));
  } catch (...) {
    TaskErrorInfo i;
    i.type_name = exception_type_name(e);
    i.message = exception_message(e);
    i.task_index = index;
    i.function = function;
    i.host = host;
    i.rank = rank;
    i.pid = getpid();
    i.stack_trace = last_throw_trace();
    out.put(static_cast<std::uint8_t>(ErrKind::task));
    out.put(i);
  }
}

WireError get_error(Decoder& d) {
  WireError w;
  const auto kind = d.make<std::uint8_t>();
  switch (static_cast<ErrKind>(kind)) {
    case ErrKind::task:
      w.kind = ErrKind::task;
      w.info = d.make<TaskErrorInfo>();
      return w;
    case ErrKind::crashed:
      w.kind = ErrKind::crashed;
      w.pid = d.make<std::int64_t>();
      w.signal = static_cast<int>(d.make<std::int64_t>());
      w.exit_code = static_cast<int>(d.make<std::int64_t>());
      w.info.task_index = d.make<std::int64_t>();
      return w;
    case ErrKind::timeout:
    case ErrKind::cancelled:
      w.kind = static_cast<ErrKind>(kind);
      w.info.task_index = d.make<std::int64_t>();
      w.text = d.make<std::string>();
      return w;
  }
  throw SerializationError("an error record of unknown kind " + std::to_string(kind));
}

std::exception_ptr WireError::exception(const std::string& where) const {
  const std::string suffix = where.empty() ? std::string() : " (" + where + ")";
  switch (kind) {
    case ErrKind::task:
      return std::make_exception_ptr(TaskError(info));
    case ErrKind::crashed:
      return std::make_exception_ptr(WorkerCrashed(pid, signal, exit_code, info.task_index, where));
    case ErrKind::timeout:
      return std::make_exception_ptr(TimeoutError(text + suffix));
    case ErrKind::cancelled:
      return std::make_exception_ptr(Cancelled(text + suffix));
  }
  return std::make_exception_ptr(Error("parx: an error of unknown kind"));
}

std::string WireError::summary() const {
  switch (kind) {
    case ErrKind::task:
      return info.type_name + ": " + info.message + "\n" + info.stack_trace;
    case ErrKind::crashed:
      return "parx::WorkerCrashed: pid " + std::to_string(pid) +
             (signal ? ", signal " + std::to_string(signal)
                     : ", exit code " + std::to_string(exit_code));
    case ErrKind::timeout:
    case ErrKind::cancelled:
      return text;
  }
  return {};
}

// ---- results -----------------------------------------------------------------------------------

void ResultWriter::reset(std::size_t n, bool batch, std::size_t result_size, bool zero) {
  out_.clear();
  const std::uint64_t hdr[4] = {n, 0, batch ? std::uint64_t{kResultBatch} : 0, result_size};
  out_.write(hdr, sizeof hdr);
  if (batch) {
    const std::size_t packed = round_up(n * result_size, 8);
    std::byte* p = out_.extend(packed);
    if (zero) {
      std::memset(p, 0, packed);
    } else if (packed > n * result_size) {  // the padding after the last result
      std::memset(p + n * result_size, 0, packed - n * result_size);
    }
  }
}

void ResultWriter::abandon_value(std::size_t slot, const std::exception_ptr& e, std::int64_t index,
                                 const std::string& function, int rank, const std::string& host) {
  out_.truncate(record_at_);
  error(slot, e, index, function, rank, host);
}

void ResultWriter::value(std::size_t slot, std::span<const std::byte> bytes, std::size_t base) {
  const std::size_t at = out_.size() + kRecordHeader;
  open_record(0, slot, (base % 64 + 64 - at % 64) % 64);
  out_.write(bytes.data(), bytes.size());
  close_record();
}

void ResultWriter::error(std::size_t slot, const std::exception_ptr& e, std::int64_t index,
                         const std::string& function, int rank, const std::string& host) {
  open_record(1, slot, 0);
  put_error(out_, e, index, function, rank, host);
  close_record();
}

std::span<const std::byte> ResultWriter::finish(std::int64_t elapsed_ns) {
  std::memcpy(out_.data() + 8, &elapsed_ns, sizeof elapsed_ns);
  return {out_.data(), out_.size()};
}

Bytes ResultWriter::take(std::int64_t elapsed_ns) {
  (void)finish(elapsed_ns);
  return out_.take();
}

ResultView parse_result(std::span<const std::byte> body, std::size_t n, bool batch,
                        std::size_t result_size) {
  if (body.size() < kResultHeader) throw SerializationError("a result shorter than its header");
  ResultView v;
  v.n = load_at<std::uint64_t>(body, 0);
  v.elapsed_ns = load_at<std::int64_t>(body, 8);
  const auto flags = load_at<std::uint32_t>(body, 16);
  const auto rs = load_at<std::uint64_t>(body, 24);
  if (v.n != n)
    throw SerializationError("a result of " + std::to_string(v.n) + " items for a job of " +
                             std::to_string(n));
  if (bool(flags & kResultBatch) != batch || (batch && rs != result_size))
    throw SerializationError("a result of the wrong form for its job");
  std::size_t pos = kResultHeader;
  if (batch) {
    const std::size_t packed = round_up(n * result_size, 8);
    if (body.size() - pos < packed)
      throw SerializationError("a batch result shorter than its values");
    v.packed = body.data() + pos;
    pos += packed;
  }
  v.body = body;
  v.records_at = pos;
  // Records come in slot order from a worker's runner; out of order (a rank's worker processes
  // finish items in any order) each slot is checked against the ones seen.
  std::vector<bool> seen;
  std::size_t answered = 0;
  while (pos < body.size()) {
    if (body.size() - pos < kRecordHeader) throw SerializationError("a truncated outcome record");
    const auto w0 = load_at<std::uint64_t>(body, pos);
    const auto slot = load_at<std::uint64_t>(body, pos + 8);
    const std::size_t len = w0 & kRecordLenMask, pad = (w0 >> 57) & 63;
    const bool error = (w0 >> 63) != 0;
    const std::size_t at = pos + kRecordHeader + pad;
    if (slot >= n || at > body.size() || len > body.size() - at || (batch && !error))
      throw SerializationError("a bad outcome record");
    if (slot != answered || !seen.empty()) {
      if (seen.empty()) {
        seen.assign(n, false);
        for (std::size_t k = 0; k < answered; ++k)
          seen[k] = true;  // the in-order prefix
      }
      if (seen[slot]) throw SerializationError("two outcomes for one item");
      seen[slot] = true;
    }
    ++answered;
    v.errors += error;
    pos = at + len;
  }
  if (!batch && answered != n)
    throw SerializationError("a result answers " + std::to_string(answered) + " of " +
                             std::to_string(n) + " items");
  return v;
}

}  // namespace parx::detail::engine
