// engine/wire.hpp — the remote-task engine's wire format: one job format, one result format and
// one error format, shared by every transport that runs a registered function somewhere else
// (the ProcessPool's shared-memory rings, the ClusterPool's MPI messages).
//
// Job (built by the caller through detail::PoolJobBuilder / make_chunk_job, remote_pool.hpp):
//   plain  [u64 fn][u64 n], then per item [i64 index][u64 length | pad << 56], `pad` zero bytes
//          and the encoded arguments (pad keeps them at the alignment they were encoded for).
//   batch  [u64 fn][u64 n][u64 argument size][u64 result size], then the n packed arguments.
// Result (built by ResultWriter, read by parse_result):
//   [u64 n][i64 elapsed ns][u32 flags][u32 0][u64 result size] (kResultHeader bytes); for a
//   batch, the n packed results (zero where an item threw), padded to 8; then outcome records:
//   [u64 length | pad << 57 | error << 63][u64 slot], `pad` zero bytes, the encoded value or
//   error. A batch carries only error records. Fields are read with memcpy: a record needs no
//   alignment; `pad` keeps a copied value at its offset modulo 64.
// Error: [u8 kind] then a TaskErrorInfo (task) or the fields of WorkerCrashed, TimeoutError or
//   Cancelled, so each arrives as the type it left as.
//
// Every parser here checks every length against the bytes it was given and throws
// SerializationError saying what is wrong: a corrupt or forged message never reads out of bounds
// and never allocates more than its own size.
//
// Thread-safety: free functions and value types; a ResultWriter belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "parx/codec.hpp"
#include "parx/errors.hpp"
#include "parx/remote.hpp"

namespace parx::detail::engine {

// A job item's header word: the low 56 bits are the length of the encoded arguments, the top 8
// the zero padding before them.
inline constexpr std::uint64_t kItemLenMask = (std::uint64_t{1} << 56) - 1;
inline constexpr std::size_t kJobHeader = 16;    // [u64 fn][u64 n]
inline constexpr std::size_t kBatchHeader = 32;  // [u64 fn][u64 n][u64 arg size][u64 result size]
inline constexpr std::size_t kResultHeader = 32;
inline constexpr std::size_t kMaxBatchElem = 1 << 16;  // bytes per packed argument or result
inline constexpr std::uint32_t kResultBatch = 1;       // result flag: packed results first
inline constexpr std::size_t kRecordHeader = 16;       // an outcome record's header
inline constexpr std::uint64_t kRecordLenMask = (std::uint64_t{1} << 57) - 1;

inline constexpr std::byte kZeros[64] = {};  // padding

constexpr std::size_t round_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

template <class T>
T load_at(std::span<const std::byte> b, std::size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

// ---- jobs ---------------------------------------------------------------------------------------

// Where an item of a plain job lies.
struct JobItem {
  std::int64_t index;   // task index, for errors
  std::size_t at;       // of its 16-byte header
  std::size_t args_at;  // of its encoded arguments
  std::size_t len;      // of its encoded arguments
};

// The items of a plain job payload, each checked to lie within it (a rank's worker processes keep
// this table beside the payload; the runner reads items as they run instead).
std::vector<JobItem> parse_job(std::span<const std::byte> payload);

struct BatchShape {
  FunctionId fn = 0;
  std::size_t n = 0;
  std::size_t arg_size = 0;
  std::size_t result_size = 0;
};

// The header of a batch job payload, checked against its size.
BatchShape parse_batch(std::span<const std::byte> payload);

// Fills in the prefix of a job payload built by PoolJobBuilder or make_chunk_job: [fn][n] for a
// plain job, [fn][n][arg size][result size] for a batch (InvalidArgument if the payload does not
// have the function's batch shape, Error if the function has none).
void seal_job(FunctionId fn, std::span<std::byte> payload, std::size_t n, bool batch,
              const char* pool);

// A copy of some of a job's items (a retry, the rest of a job whose worker died): plain items
// keep their arguments' offset modulo 64; batch items are given by position. `items` gets each
// item's new position (offset of its header, or its position in the batch).
Bytes rebuild_job(std::span<const std::byte> payload, bool batch, std::vector<std::size_t>& items);

// ---- errors ------------------------------------------------------------------------------------

enum class ErrKind : std::uint8_t { task, crashed, timeout, cancelled };

// Encodes the exception `e` of task `index`: a TaskError, WorkerCrashed, TimeoutError or
// Cancelled as itself; anything else as a TaskError describing it (function name, host, rank when
// >= 0, this pid, the throw site's stack trace).
void put_error(Encoder& out, const std::exception_ptr& e, std::int64_t index,
               const std::string& function, int rank, const std::string& host);

// A decoded error, before it becomes an exception (a receiver may correct the task index).
struct WireError {
  ErrKind kind = ErrKind::task;
  TaskErrorInfo info;    // task
  std::int64_t pid = 0;  // crashed
  int signal = 0;        // crashed
  int exit_code = 0;     // crashed
  std::string text;      // timeout, cancelled: the message
  std::int64_t index() const noexcept { return info.task_index; }
  void set_index(std::int64_t i) noexcept { info.task_index = i; }
  // The exception as thrown to the caller; `where` ("on rank 2, host n1") is added to crashes,
  // timeouts and cancellations that came from elsewhere. A task error names its origin itself.
  std::exception_ptr exception(const std::string& where) const;
  // One line for observe events: "type: message\nstack".
  std::string summary() const;
};

WireError get_error(Decoder& d);

// ---- results -----------------------------------------------------------------------------------

// Builds a result body. Values are either encoded in place (begin_value/end_value: their
// alignment is relative to the body's start, which is where the receiver decodes them) or copied
// from elsewhere with their base (value()).
class ResultWriter {
 public:
  // `reserve`: bytes of buffer to start with (a worker sizes it for a chunk once and reuses it).
  explicit ResultWriter(std::size_t reserve = 256) : out_(reserve) {}
  // Starts a result of `n` items (a batch: `result_size` bytes per packed result, zeroed unless
  // `zero` is false: the runner writes every packed result, or zeroes a failed item's).
  void reset(std::size_t n, bool batch, std::size_t result_size, bool zero = true);
  // Encoding a value in place: the encoder to write it to, then the record is closed. Inline:
  // they run once per item of a job.
  Encoder& begin_value(std::size_t slot) {
    open_record(0, slot, 0);
    return out_;
  }
  void end_value() { close_record(); }
  // Drops a value being encoded (it threw) and records an error instead.
  void abandon_value(std::size_t slot, const std::exception_ptr& e, std::int64_t index,
                     const std::string& function, int rank, const std::string& host);
  // A value encoded elsewhere at offset `base` of its message.
  void value(std::size_t slot, std::span<const std::byte> bytes, std::size_t base);
  void error(std::size_t slot, const std::exception_ptr& e, std::int64_t index,
             const std::string& function, int rank, const std::string& host);
  // Batch: the packed results area (n × result size).
  std::byte* packed() noexcept { return out_.data() + kResultHeader; }
  std::size_t size() const noexcept { return out_.size(); }
  // The body as it stands (after finish(): the whole result).
  std::span<const std::byte> bytes() noexcept { return {out_.data(), out_.size()}; }
  // Stamps the elapsed time and returns the body (the writer can be reset and reused).
  std::span<const std::byte> finish(std::int64_t elapsed_ns);
  Bytes take(std::int64_t elapsed_ns);

 private:
  void open_record(std::uint32_t status, std::size_t slot, std::size_t pad) {
    record_at_ = out_.size();
    const std::uint64_t hdr[2] = {(std::uint64_t{pad} << 57) | (std::uint64_t{status} << 63), slot};
    out_.write(hdr, sizeof hdr);
    if (pad) out_.write(kZeros, pad);
    body_at_ = out_.size();
  }
  void close_record() {
    std::uint64_t w0;
    std::memcpy(&w0, out_.data() + record_at_, sizeof w0);
    const std::uint64_t len = out_.size() - body_at_;
    if (len > kRecordLenMask) throw SerializationError("a task result too large to record");
    w0 |= len;
    std::memcpy(out_.data() + record_at_, &w0, sizeof w0);
  }
  Encoder out_;
  std::size_t record_at_ = 0;
  std::size_t body_at_ = 0;
};

// One outcome of a parsed result.
struct Outcome {
  std::size_t slot;                  // position of the item in its job
  bool ok;                           // value (true) or error
  std::span<const std::byte> bytes;  // the encoded value or error
  std::size_t at;                    // offset of `bytes` in the result (the decoding base)
};

class ResultView {
 public:
  std::size_t n = 0;
  std::int64_t elapsed_ns = 0;
  const std::byte* packed = nullptr;  // batch: the n packed results
  std::size_t errors = 0;             // outcomes that are errors
  // Calls f(const Outcome&) for each outcome, in the order the result holds them (slot order
  // from a runner; a batch: its errors only). The records were checked by parse_result.
  template <class F>
  void for_each(F&& f) const {
    std::size_t pos = records_at;
    while (pos < body.size()) {
      const auto w0 = load_at<std::uint64_t>(body, pos);
      const auto slot = load_at<std::uint64_t>(body, pos + 8);
      const std::size_t len = w0 & kRecordLenMask, pad = (w0 >> 57) & 63;
      const std::size_t at = pos + kRecordHeader + pad;
      f(Outcome{static_cast<std::size_t>(slot), (w0 >> 63) == 0, body.subspan(at, len), at});
      pos = at + len;
    }
  }

  std::span<const std::byte> body;
  std::size_t records_at = 0;
};

// Parses and checks a whole result of a job of `n` items before anything is delivered: slots
// inside the job, each plain item answered exactly once, a batch's shape as sent.
ResultView parse_result(std::span<const std::byte> body, std::size_t n, bool batch,
                        std::size_t result_size);

}  // namespace parx::detail::engine
