// ClusterPool: the driver's communication thread, the serving ranks' loop, and the servers that
// run chunks on a rank (threads, or the rank's own ProcessPool).
//
// Every message on the pool's communicator is a body followed by a 64-byte trailer (so a
// received buffer is shortened to its body without a copy):
//   job    (driver -> rank): the body is a ProcessPool job payload — [u64 fn][u64 n] then per
//          item [i64 index][u64 length | pad << 56] and the encoded arguments, or for a batch
//          [u64 fn][u64 n][u64 arg size][u64 result size] then the packed arguments.
//   result (rank -> driver): per item, 8-aligned, [u32 status][u32 pad][u64 slot][u64 length],
//          `pad` zero bytes, then the encoded value (status 0) or error (status 1); a batch
//          result starts with the packed results (n × result size, padded to 8) and carries only
//          error records.
//   stop   (driver -> rank): the pool is shut down; the rank's constructor returns.
//   refusal (rank -> driver): a job message the rank could not read, with the reason.
// Values keep their alignment relative to the message start (the codec's padding is computed
// from it), so a value is decoded where it lies.
#include "parx/cluster_pool.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "parx/detail/map_observe.hpp"
#include "parx/detail/output_relay.hpp"
#include "parx/detail/sync.hpp"
#include "parx/mpi.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/thread_pool.hpp"

namespace parx {
namespace detail {

void set_throw_capture(bool on) noexcept;
void clear_throw_trace() noexcept;
std::string last_throw_trace();

namespace {

constexpr std::uint32_t kMagic = 0x4c435850;  // "PXCL"
constexpr std::uint16_t kVersion = 1;
constexpr int kTagJob = 7101, kTagResult = 7102, kTagStop = 7103, kTagRefused = 7104;
// output (rank -> driver): [u8 fd (1 or 2)] then whole lines a serving rank's relay read;
// output end (rank -> driver, empty): after the stop, the rank's last output has been sent.
constexpr int kTagOutput = 7105, kTagOutputEnd = 7106;
constexpr std::uint16_t kKindJob = 1, kKindResult = 2;
constexpr std::uint32_t kFlagBatch = 1, kFlagZstd = 2;
constexpr std::uint64_t kItemLenMask = (std::uint64_t{1} << 56) - 1;
constexpr std::size_t kBatchHeader = 32;
constexpr std::uint64_t kMaxBody = std::uint64_t{1} << 40;

struct Trailer {
  std::uint32_t magic = kMagic;
  std::uint16_t version = kVersion;
  std::uint16_t kind = 0;
  std::uint32_t flags = 0;
  std::int32_t rank = 0;          // sender
  std::uint64_t job = 0;          // job id, echoed in the result
  std::uint64_t raw_size = 0;     // body bytes before compression
  std::uint64_t n = 0;            // items
  std::int64_t number = 0;        // job: index of the first item; result: elapsed ns
  std::uint64_t fn = 0;           // function id
  std::uint64_t result_size = 0;  // batch: bytes per packed result
};
static_assert(sizeof(Trailer) == 64 && std::is_trivially_copyable_v<Trailer>);

template <class T>
T load_at(std::span<const std::byte> b, std::size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

constexpr std::size_t round_up(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

// Reads and checks the trailer of `msg`; throws SerializationError saying what is wrong.
Trailer read_trailer(std::span<const std::byte> msg, std::uint16_t kind, int from) {
  const std::string who = "a message from rank " + std::to_string(from);
  if (msg.size() < sizeof(Trailer))
    throw SerializationError(who + " is " + std::to_string(msg.size()) +
                             " bytes, shorter than its trailer");
  Trailer t;
  std::memcpy(&t, msg.data() + msg.size() - sizeof t, sizeof t);
  if (t.magic != kMagic)
    throw SerializationError(who + " has a bad magic number (not a ClusterPool message)");
  if (t.version != kVersion)
    throw SerializationError(who + " has protocol version " + std::to_string(t.version) +
                             ", expected " + std::to_string(kVersion) +
                             " (ranks built from different parx versions?)");
  if (t.kind != kind) throw SerializationError(who + " has kind " + std::to_string(t.kind));
  if (t.raw_size > kMaxBody || t.n > kMaxBody)
    throw SerializationError(who + " claims an impossible size");
  if (!(t.flags & kFlagZstd) && t.raw_size != msg.size() - sizeof t)
    throw SerializationError(who + " has a body of " + std::to_string(msg.size() - sizeof t) +
                             " bytes, its trailer says " + std::to_string(t.raw_size));
  return t;
}

// The body of `msg` (trailer checked), decompressed if it was sent compressed. `msg` becomes the
// body in place when it was not.
Bytes take_body(Bytes&& msg, const Trailer& t, int from) {
  msg.resize(msg.size() - sizeof(Trailer));
  if (!(t.flags & kFlagZstd)) return std::move(msg);
  Bytes raw(t.raw_size);
  const std::size_t got = ZSTD_decompress(raw.data(), raw.size(), msg.data(), msg.size());
  if (ZSTD_isError(got) || got != t.raw_size)
    throw SerializationError(
        "a compressed message from rank " + std::to_string(from) +
        " does not decompress to its stated size" +
        (ZSTD_isError(got) ? std::string(": ") + ZSTD_getErrorName(got) : std::string()));
  return raw;
}

// Whether a body of `n` bytes at `p` is worth compressing: zstd's fastest level on a 64 KiB
// sample must save at least 10 %.
bool compresses(const std::byte* p, std::size_t n) {
  const std::size_t s = std::min<std::size_t>(n, 64 * 1024);
  std::vector<std::byte> out(ZSTD_compressBound(s));
  const std::size_t c = ZSTD_compress(out.data(), out.size(), p + (n - s) / 2, s, 1);
  return !ZSTD_isError(c) && c < s * 9 / 10;
}

// Appends the trailer to `body`, compressing it first when `compress`. Returns the bytes saved.
std::size_t seal(Bytes& body, Trailer t, bool compress) {
  t.raw_size = body.size();
  std::size_t saved = 0;
  if (compress) {
    Bytes z(ZSTD_compressBound(body.size()) + sizeof t);
    const std::size_t c = ZSTD_compress(z.data(), z.size() - sizeof t, body.data(), body.size(), 1);
    if (!ZSTD_isError(c) && c < body.size()) {
      saved = body.size() - c;
      z.resize(c);
      body = std::move(z);
      t.flags |= kFlagZstd;
    }
  }
  const auto* tb = reinterpret_cast<const std::byte*>(&t);
  body.insert(body.end(), tb, tb + sizeof t);
  return saved;
}

// The trailer of the result of job `t`, sent by `rank`.
Trailer result_trailer(const Trailer& t, int rank, std::int64_t elapsed_ns) {
  Trailer r{};
  r.kind = kKindResult;
  r.flags = t.flags & kFlagBatch;
  r.rank = rank;
  r.job = t.job;
  r.n = t.n;
  r.number = elapsed_ns;
  r.fn = t.fn;
  r.result_size = t.result_size;
  return r;
}

// ---- errors on the wire -----------------------------------------------------------------------

enum class ErrKind : std::uint8_t { task, crashed, timeout, cancelled, other };

TaskErrorInfo info_of(const std::exception_ptr& e, std::int64_t index, const std::string& fn,
                      int rank, const std::string& host) {
  TaskErrorInfo i;
  i.type_name = exception_type_name(e);
  i.message = exception_message(e);
  i.task_index = index;
  i.function = fn;
  i.host = host;
  i.rank = rank;
  i.pid = getpid();
  i.stack_trace = last_throw_trace();
  return i;
}

void put_error(Encoder& out, const std::exception_ptr& e, std::int64_t index, const std::string& fn,
               int rank, const std::string& host) {
  try {
    std::rethrow_exception(e);
  } catch (const TaskError& t) {
    TaskErrorInfo i = t.info();
    i.rank = rank;
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
    out.put(std::string(t.what()));
  } catch (const Cancelled& c) {
    out.put(static_cast<std::uint8_t>(ErrKind::cancelled));
    out.put(std::string(c.what()));
  } catch (...) {
    out.put(static_cast<std::uint8_t>(ErrKind::task));
    out.put(info_of(e, index, fn, rank, host));
  }
}

std::exception_ptr get_error(Decoder& d, int rank, const std::string& host) {
  const std::string where = "on rank " + std::to_string(rank) + ", host " + host;
  switch (static_cast<ErrKind>(d.make<std::uint8_t>())) {
    case ErrKind::task:
      return std::make_exception_ptr(TaskError(d.make<TaskErrorInfo>()));
    case ErrKind::crashed: {
      const auto pid = d.make<std::int64_t>();
      const auto sig = d.make<std::int64_t>();
      const auto code = d.make<std::int64_t>();
      const auto index = d.make<std::int64_t>();
      return std::make_exception_ptr(
          WorkerCrashed(pid, static_cast<int>(sig), static_cast<int>(code), index, where));
    }
    case ErrKind::timeout:
      return std::make_exception_ptr(TimeoutError(d.make<std::string>() + " (" + where + ")"));
    case ErrKind::cancelled:
      return std::make_exception_ptr(Cancelled(d.make<std::string>() + " (" + where + ")"));
    default:
      throw SerializationError("unknown error kind in a result from rank " + std::to_string(rank));
  }
}

// Appends an outcome record; `value` (status 0) keeps its alignment relative to `base`.
void put_record(Encoder& out, std::uint32_t status, std::size_t slot,
                std::span<const std::byte> bytes, std::size_t base) {
  static constexpr std::byte zeros[64] = {};
  out.write(zeros, (8 - out.size() % 8) % 8);
  const std::size_t at = out.size() + 24;
  const auto pad = static_cast<std::uint32_t>((base % 64 + 64 - at % 64) % 64);
  const std::uint64_t hdr[3] = {status | (std::uint64_t{pad} << 32), slot, bytes.size()};
  out.write(hdr, sizeof hdr);
  out.write(zeros, pad);
  out.write(bytes.data(), bytes.size());
}

// ---- running a job on a rank --------------------------------------------------------------------

// Where an item of a job payload lies.
struct JobItem {
  std::int64_t index;   // task index, for errors
  std::size_t at;       // of its 16-byte header
  std::size_t args_at;  // of its encoded arguments
  std::size_t len;      // of its encoded arguments
};

// The `n` items of a (non-batch) job payload, each checked to lie within it.
std::vector<JobItem> job_items(std::span<const std::byte> payload, std::uint64_t n) {
  if (payload.size() < 16 || load_at<std::uint64_t>(payload, 8) != n || n > payload.size() / 16)
    throw SerializationError("a job does not match its item count");
  std::vector<JobItem> items;
  items.reserve(n);
  std::size_t pos = 16;
  for (std::uint64_t k = 0; k < n; ++k) {
    if (pos + 16 > payload.size()) throw SerializationError("a job item header beyond the job");
    const auto word = load_at<std::uint64_t>(payload, pos + 8);
    const std::size_t len = word & kItemLenMask, pad = word >> 56;
    if (pad >= 64 || pad > payload.size() - pos - 16 || len > payload.size() - pos - 16 - pad)
      throw SerializationError("a job item beyond the job");
    items.push_back({load_at<std::int64_t>(payload, pos), pos, pos + 16 + pad, len});
    pos += 16 + pad + len;
  }
  return items;
}

// Runs a job's items in this thread into a result body (thread mode).
Bytes run_items(std::span<const std::byte> payload, const Trailer& t, int rank,
                const std::string& host, std::int64_t& elapsed) {
  Encoder out(256);
  const std::int64_t t0 = now_ns();
  const RemoteEntry* entry = find_remote(t.fn);
  const std::string name = entry ? entry->name : std::string();
  auto refusal = [&]() -> std::string {
    char hex[32];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(t.fn));
    return std::string("parx: no function is registered under id ") + hex + " on rank " +
           std::to_string(rank) + " (refused; was it built from a different program?)";
  };
  if (t.flags & kFlagBatch) {
    const std::size_t n = t.n, rs = t.result_size;
    const std::size_t as = payload.size() >= kBatchHeader ? load_at<std::uint64_t>(payload, 16) : 0;
    if (payload.size() < kBatchHeader || as == 0 || (payload.size() - kBatchHeader) / as != n ||
        (payload.size() - kBatchHeader) % as != 0)
      throw SerializationError("a batch job does not match its item count");
    out.extend(round_up(n * rs, 8));
    std::memset(out.data(), 0, out.size());
    std::string refused;
    if (!entry)
      refused = refusal();
    else if (!entry->batch.invoke || entry->batch.arg_size != as || entry->batch.result_size != rs)
      refused = "parx: " + name + " on rank " + std::to_string(rank) +
                " does not take a batch of this shape (a different program?)";
    std::atomic<std::uint32_t> at{0};
    std::size_t i = 0;
    Encoder err(64);
    while (i < n) {
      try {
        clear_throw_trace();
        if (!refused.empty()) throw Error(refused);
        entry->batch.invoke(entry->fn, payload.data() + kBatchHeader, out.data(), i, n, &at);
      } catch (...) {
        err.clear();
        put_error(err, std::current_exception(), t.number + static_cast<std::int64_t>(i), name,
                  rank, host);
        put_record(out, 1, i, std::span<const std::byte>(err.data(), err.size()), 0);
        ++i;
      }
    }
    elapsed = now_ns() - t0;
    return out.take();
  }
  const std::vector<JobItem> items = job_items(payload, t.n);
  for (std::size_t k = 0; k < t.n; ++k) {
    const std::int64_t index = items[k].index;
    const std::size_t args_at = items[k].args_at, len = items[k].len;
    // The record header, then the value encoded in place (pad 0: its base is where it starts).
    static constexpr std::byte zeros[8] = {};
    out.write(zeros, (8 - out.size() % 8) % 8);
    const std::size_t hdr_at = out.size();
    const std::uint64_t hdr[3] = {0, k, 0};
    out.write(hdr, sizeof hdr);
    const std::size_t body_at = out.size();
    std::uint64_t status = 0;
    try {
      clear_throw_trace();
      if (!entry) throw Error(refusal());
      Decoder d(payload.subspan(args_at, len), args_at);
      entry->invoke(entry->fn, d, out);
    } catch (...) {
      out.truncate(body_at);
      status = 1;
      put_error(out, std::current_exception(), index, name, rank, host);
    }
    const std::uint64_t blen = out.size() - body_at;
    std::memcpy(out.data() + hdr_at, &status, sizeof status);
    std::memcpy(out.data() + hdr_at + 16, &blen, sizeof blen);
  }
  elapsed = now_ns() - t0;
  return out.take();
}

}  // namespace

// Collects a job's outcomes from the rank's ProcessPool into a result body.
class ResultSink final : public PoolSink {
 public:
  ResultSink(Trailer t, int rank, std::string host, std::function<void(Bytes, Trailer)> done)
      : t_(t), rank_(rank), host_(std::move(host)), done_(std::move(done)), out_(256) {
    if (t_.flags & kFlagBatch) {
      out_.extend(round_up(t_.n * t_.result_size, 8));
      std::memset(out_.data(), 0, out_.size());
    }
  }
  bool start() noexcept override { return true; }
  void cancel() noexcept override {}
  void value(std::size_t slot, std::span<const std::byte> bytes, std::size_t base) override {
    put_record(out_, 0, slot, bytes, base);
  }
  void values_raw(const std::byte* raw, std::size_t n, const std::size_t* slots) override {
    const std::size_t rs = t_.result_size;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t s = slots ? slots[k] : k;
      if (s < t_.n) std::memcpy(out_.data() + s * rs, raw + k * rs, rs);
    }
  }
  void error(std::size_t slot, std::exception_ptr e) noexcept override {
    try {
      err_.clear();
      put_error(err_, e, t_.number + static_cast<std::int64_t>(slot), "", rank_, host_);
      put_record(out_, 1, slot, std::span<const std::byte>(err_.data(), err_.size()), 0);
    } catch (...) {  // out of memory encoding an error: the driver reports the missing outcome
    }
  }
  void finish(std::int64_t elapsed_ns) noexcept override {
    done_(out_.take(), result_trailer(t_, rank_, elapsed_ns));
  }

 private:
  Trailer t_;
  int rank_;
  std::string host_;
  std::function<void(Bytes, Trailer)> done_;
  Encoder out_;
  Encoder err_{64};
};

// Runs the jobs sent to one rank on its slots: threads, or its own ProcessPool.
class ClusterServer {
 public:
  // `done(body, trailer)` receives each finished job's result, from any thread.
  using Done = std::function<void(Bytes, Trailer)>;
  // `caller_runs`: in thread mode, the caller runs jobs itself through execute() (a serving
  // rank's own threads); otherwise run() hands them to a ThreadPool of `slots` threads.
  ClusterServer(const ClusterPool::Options& o, std::size_t slots, int rank, std::string host,
                Done done, bool caller_runs = false)
      : rank_(rank), host_(std::move(host)), done_(std::move(done)) {
    if (o.processes) {
      ProcessPool::Options po = o.process;
      po.workers = slots;
      if (po.output == Output::automatic) po.output = o.output;
      procs_.emplace(po);
    } else if (!caller_runs) {
      threads_.emplace(slots);
    }
  }

  // Runs a job in this thread (thread mode) and hands its result to `done`.
  void execute(std::span<const std::byte> p, const Trailer& t) {
    Trailer r = result_trailer(t, rank_, 0);
    Bytes body;
    std::int64_t elapsed = 0;
    try {
      body = run_items(p, t, rank_, host_, elapsed);
    } catch (...) {  // an unreadable job: every item fails with the reason
      Encoder out(256), err(64);
      for (std::size_t k = 0; k < t.n; ++k) {
        err.clear();
        put_error(err, std::current_exception(), t.number + static_cast<std::int64_t>(k), "", rank_,
                  host_);
        put_record(out, 1, k, std::span<const std::byte>(err.data(), err.size()), 0);
      }
      if (t.flags & kFlagBatch) r.flags = 0;
      body = out.take();
    }
    r.number = elapsed;
    done_(std::move(body), r);
  }

  // Runs the job whose (decompressed) payload is `payload`, in the pool's threads or processes.
  void run(Bytes payload, const Trailer& t) {
    if (threads_) {
      (void)threads_->submit([this, p = std::move(payload), t]() mutable {
        execute(std::span<const std::byte>(p), t);
      });
      return;
    }
    auto sink = std::make_unique<ResultSink>(t, rank_, host_, done_);
    if (t.flags & kFlagBatch) {
      procs_->enqueue_batch(t.fn, std::move(payload), t.n, t.number, std::move(sink));
      return;
    }
    // The item table the pool keeps beside the payload.
    std::vector<PoolItem> items;
    items.reserve(t.n);
    for (const JobItem& it : job_items(payload, t.n))
      items.push_back({it.index, it.at});
    procs_->enqueue(t.fn, std::move(payload), std::move(items), std::move(sink));
  }

  void shutdown() {
    if (threads_) threads_->shutdown(true, false);
    if (procs_) procs_->shutdown(true, false);
  }

 private:
  int rank_;
  std::string host_;
  Done done_;
  std::optional<ThreadPool> threads_;
  std::optional<ProcessPool> procs_;
};

// ---- the pool -----------------------------------------------------------------------------------

// Losing a rank: the launcher ends every other rank with SIGTERM. Each rank of a pool then says
// which ranks of its own host are gone before it ends (ranks on other hosts cannot be checked
// from here; the launcher's own message names them). Everything is prepared beforehand: the
// handler only calls kill(pid, 0), write, nanosleep, sigaction and raise.
struct LostRankWatch {
  std::vector<pid_t> pids;        // ranks on this host, except this one
  std::vector<std::string> gone;  // the line printed when pids[i] no longer exists
  std::string none;               // the line printed when every local rank is still there
  struct sigaction previous {};
};
std::atomic<LostRankWatch*> g_watch{nullptr};  // the pool that reports lost ranks

struct ClusterJob {
  std::uint64_t id = 0;
  FunctionId fn = 0;
  Bytes payload;
  std::size_t n = 0;
  std::int64_t first_index = 0;
  bool batch = false;
  std::size_t result_size = 0;
  std::unique_ptr<PoolSink> sink;
  int rank = -1;
  std::uint64_t task_id = 0;
  const char* fn_name = nullptr;  // registered name (static storage), for observe events
};

class ClusterImpl final : public observe::detail::PoolSource {
 public:
  explicit ClusterImpl(const ClusterPool::Options& o);
  ~ClusterImpl() {
    shutdown(true, false);
    if (rank_out_) restore_output();  // a serving rank that never served (its constructor threw)
    if (watch_) {
      LostRankWatch* w = watch_.get();
      if (g_watch.compare_exchange_strong(w, nullptr))
        sigaction(SIGTERM, &watch_->previous, nullptr);
    }
  }

  bool driver() const noexcept { return rank_ == 0; }
  std::size_t workers() const noexcept { return workers_; }
  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }

  void enqueue(std::unique_ptr<ClusterJob> j);
  void shutdown(bool wait, bool cancel_pending);
  void serve();
  std::vector<ClusterPool::Rank> ranks() {
    std::lock_guard lk(mu_);
    return ranks_;
  }
  ClusterPool::Stats stats() {
    std::lock_guard lk(mu_);
    return stats_;
  }
  observe::Counters counters() {
    std::lock_guard lk(mu_);
    return counters_locked();
  }
  std::uint64_t exec_id() const noexcept { return exec_id_; }
  observe::PoolSnapshot snapshot() const override {
    auto* self = const_cast<ClusterImpl*>(this);
    std::lock_guard lk(self->mu_);
    observe::PoolSnapshot snap;
    snap.id = exec_id_;
    snap.kind = "cluster";
    snap.counters = self->counters_locked();
    for (const auto& r : ranks_) {
      observe::WorkerState w;
      w.index = r.rank;
      w.rank = r.rank;
      w.pid = static_cast<pid_t>(r.pid);
      w.host = r.host;
      w.tasks = r.chunks;
      const std::size_t i = static_cast<std::size_t>(r.rank);
      w.state = !accepting_ && stopping_                               ? "stopped"
                : i < running_per_rank_.size() && running_per_rank_[i] ? "busy"
                                                                       : "idle";
      snap.workers.push_back(std::move(w));
    }
    return snap;
  }
  observe::Counters counters_locked() const {
    observe::Counters c = counters_;
    const std::uint64_t left = started_ + c.cancelled;
    c.queue_depth = c.submitted > left ? c.submitted - left : 0;
    c.running = started_ - std::min(started_, c.done + c.failed);
    c.bytes_moved = stats_.bytes_sent + stats_.bytes_received;
    return c;
  }
  void emit_task(observe::EventKind k, const ClusterJob& j, int rank = -1,
                 std::int64_t duration_ns = 0, const char* detail = nullptr) const {
    if (!j.task_id || !observe::active()) return;
    observe::Event e{};
    e.kind = k;
    e.executor_id = exec_id_;
    e.executor_kind = "cluster";
    e.task_id = j.task_id;
    e.worker = rank;
    e.rank = rank;
    e.name = j.fn_name;
    e.items = static_cast<std::uint32_t>(j.n);
    e.duration_ns = duration_ns;
    e.detail = detail;
    if (rank >= 0 && static_cast<std::size_t>(rank) < hosts_.size()) e.host = hosts_[rank].c_str();
    observe::emit(e);
  }
  void emit_rank(observe::EventKind k, int r) const {
    if (!observe::active()) return;
    observe::Event e{};
    e.kind = k;
    e.executor_id = exec_id_;
    e.executor_kind = "cluster";
    e.worker = r;
    e.rank = r;
    if (static_cast<std::size_t>(r) < hosts_.size()) e.host = hosts_[r].c_str();
    if (static_cast<std::size_t>(r) < ranks_.size()) e.pid = ranks_[r].pid;
    observe::emit(e);
  }
  bool is_shutdown() {
    std::lock_guard lk(mu_);
    return !accepting_;
  }

 private:
  struct Local {  // results of the driver's own server
    Bytes body;
    Trailer t;
  };
  struct Sending {
    mpi::Request req;
    std::shared_ptr<Bytes> buf;
  };

  void comm_loop();
  template <class Hello>
  void watch_lost_ranks(const std::vector<Hello>& hello);
  // Waits after an idle round: spins (yielding) for spin_ns_, then sleeps a growing interval
  // (MPI cannot wake a sleeping thread; local events do).
  void idle(bool progressed);
  bool compress_for(int dest, const Bytes& body) const;
  void send_job(ClusterJob& j);
  void handle_result(Bytes msg, Trailer t, bool local);
  // Serving rank.
  void serve_loop(bool caller_runs);
  void send_result(Bytes body, const Trailer& t);
  // A serving rank's stdout and stderr become pipes read by the relay, which sends their lines
  // to the driver; finish_output sends the last ones and the end marker; restore_output puts
  // the rank's descriptors back.
  void start_output();
  void relay_lines(int fd, std::string_view lines);
  void finish_output();
  void restore_output() noexcept;
  // Driver: prints a serving rank's relayed lines.
  void print_output(const Bytes& msg, int source);
  // Drops the sends that completed (all: waits for every one); any thread, either role.
  void reap_sends(bool all);
  void fail_rank_jobs(int rank, const std::string& why);

  ClusterPool::Options opts_;
  std::optional<mpi::Comm> comm_;
  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  std::vector<std::string> hosts_;
  std::vector<std::size_t> slots_;     // per rank: task slots (0: runs none)
  std::vector<std::size_t> capacity_;  // per rank: chunks it may hold
  std::vector<std::size_t> held_;      // per rank: chunks it holds (comm thread only)
  std::vector<bool> refused_;          // per rank: sent a refusal; no more work
  std::size_t workers_ = 0;
  std::int64_t spin_ns_ = 200'000;
  std::uint64_t exec_id_ = observe::next_executor_id();

  std::unique_ptr<ClusterServer> server_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  bool accepting_ = true;
  bool stopping_ = false;
  bool cancel_ = false;
  std::deque<std::unique_ptr<ClusterJob>> queue_;
  std::deque<Local> inbox_;
  std::vector<ClusterPool::Rank> ranks_;
  ClusterPool::Stats stats_;
  observe::Counters counters_;  // submitted, done, failed, cancelled (under mu_)
  std::uint64_t started_ = 0;
  std::vector<std::uint32_t> running_per_rank_;

  // Comm thread only.
  std::deque<std::unique_ptr<ClusterJob>> pending_;
  std::unordered_map<std::uint64_t, std::unique_ptr<ClusterJob>> sent_;
  std::size_t next_rank_ = 0;
  std::int64_t last_active_ = 0;
  std::int64_t backoff_ns_ = 0;
  std::uint64_t next_job_ = 1;

  std::thread thread_;
  std::unique_ptr<LostRankWatch> watch_;
  observe::detail::PoolRegistration registration_;

  // Serving rank: who polls, and the results on their way.
  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  bool polling_ = false;
  bool served_ = false;
  // Both roles: messages on their way (the driver's jobs, a serving rank's results).
  std::mutex send_mu_;
  std::vector<Sending> sending_;
  Output output_ = Output::lines;
  std::shared_ptr<RelayStream> rank_out_, rank_err_;  // serving rank, relayed output
  int saved_out_ = -1, saved_err_ = -1;
  bool to_driver_ = false;  // under send_mu_
};

namespace {

std::uint64_t registry_fingerprint() {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const std::string& n : registered_functions()) {
    for (char c : n) {
      h ^= static_cast<std::uint8_t>(c);
      h *= 0x100000001b3ull;
    }
    h ^= 0xff;
    h *= 0x100000001b3ull;
  }
  return h;
}

void on_terminate(int sig) {
  const int saved = errno;
  LostRankWatch* w = g_watch.exchange(nullptr);
  if (w) {
    bool found = false;
    for (std::size_t i = 0; i < w->pids.size(); ++i)
      if (kill(w->pids[i], 0) != 0 && errno == ESRCH) {
        found = true;
        (void)!write(STDERR_FILENO, w->gone[i].data(), w->gone[i].size());
      }
    if (!found) (void)!write(STDERR_FILENO, w->none.data(), w->none.size());
    // Stay alive a moment, so the other survivors checking now do not take this rank for lost.
    timespec ts{0, 200'000'000};
    nanosleep(&ts, nullptr);
    sigaction(SIGTERM, &w->previous, nullptr);
  } else {
    signal(SIGTERM, SIG_DFL);
  }
  errno = saved;
  raise(sig);
}

std::int64_t spin_from_env(std::chrono::microseconds opt, std::int64_t dflt_ns) {
  if (opt.count() >= 0) return opt.count() * 1000;
  if (const char* s = std::getenv("PARX_SPIN_US")) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && v >= 0) return static_cast<std::int64_t>(v) * 1000;
  }
  return dflt_ns;
}

}  // namespace

ClusterImpl::ClusterImpl(const ClusterPool::Options& o) : opts_(o) {
  if (o.compress_min_bytes == 0)
    throw InvalidArgument("parx::ClusterPool: compress_min_bytes must be at least 1");
  check_remote_registry();
  output_ = resolve_output(o.output);
  opts_.output = output_;
  spin_ns_ = spin_from_env(o.spin, 200'000);
  host_ = mpi::host_name();
  const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
  // What every rank tells the others: host, pid, cores, the functions it has.
  using Hello = std::tuple<std::string, std::int64_t, std::uint64_t, std::uint64_t>;
  std::vector<Hello> hello;
  const Hello mine{host_, static_cast<std::int64_t>(getpid()), cores, registry_fingerprint()};
  if (mpi::launched()) {
    if (mpi::thread_level() < MPI_THREAD_MULTIPLE)
      throw Error(
          "parx::ClusterPool needs MPI_THREAD_MULTIPLE, and this MPI library granted "
          "only level " +
          std::to_string(mpi::thread_level()) + " (build the MPI library with thread support)");
    comm_.emplace(mpi::world().dup());
    rank_ = comm_->rank();
    size_ = comm_->size();
    hello = comm_->allgather(mine);
  } else {
    hello = {mine};
  }
  hosts_.resize(size_);
  slots_.resize(size_);
  capacity_.resize(size_);
  held_.assign(size_, 0);
  refused_.assign(size_, false);
  ranks_.resize(size_);
  for (int r = 0; r < size_; ++r) {
    const auto& [host, pid, c, fp] = hello[r];
    if (fp != std::get<3>(hello[0]))
      throw Error("parx::ClusterPool: rank " + std::to_string(r) + " on " + host +
                  " has different registered functions than rank 0 (" +
                  std::string(std::get<0>(hello[0])) +
                  "): every rank must run the same program, built the same way");
    hosts_[r] = host;
    std::size_t same = 0;
    for (const auto& h : hello)
      same += std::get<0>(h) == host;
    std::size_t s = o.workers_per_rank
                        ? o.workers_per_rank
                        : std::max<std::size_t>(1, static_cast<std::size_t>(c) / same);
    if (r == 0 && size_ > 1 && !o.driver_runs_tasks) s = 0;
    slots_[r] = s;
    capacity_[r] = 2 * s;
    workers_ += s;
    ranks_[r].rank = r;
    ranks_[r].host = host;
    ranks_[r].pid = pid;
    ranks_[r].workers = s;
  }
  if (comm_ && size_ > 1) watch_lost_ranks(hello);
  if (size_ > 1) set_origin_rank(rank_, host_ != hosts_[0] ? host_ : std::string());
  if (!driver() && output_ != Output::inherit) start_output();
  if (slots_[rank_] > 0) {
    if (driver()) {
      server_ = std::make_unique<ClusterServer>(opts_, slots_[rank_], rank_, host_,
                                                [this](Bytes body, Trailer t) {
                                                  {
                                                    std::lock_guard lk(mu_);
                                                    inbox_.push_back({std::move(body), t});
                                                    wake_ = true;
                                                  }
                                                  cv_.notify_one();
                                                });
    } else {
      try {
        server_ = std::make_unique<ClusterServer>(
            opts_, slots_[rank_], rank_, host_,
            [this](Bytes body, Trailer t) { send_result(std::move(body), t); }, true);
      } catch (...) {
        restore_output();
        throw;
      }
    }
  }
  if (driver()) {
    running_per_rank_.assign(static_cast<std::size_t>(size_), 0);
    for (int r = 0; r < size_; ++r)
      emit_rank(observe::EventKind::WorkerStarted, r);
    thread_ = std::thread([this] { comm_loop(); });
    registration_.attach(this);
  }
}

template <class Hello>
void ClusterImpl::watch_lost_ranks(const std::vector<Hello>& hello) {
  auto w = std::make_unique<LostRankWatch>();
  const std::string me = "parx: rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
                         " on " + host_ + ": the launcher is ending the MPI job";
  for (int r = 0; r < size_; ++r) {
    if (r == rank_ || std::get<0>(hello[r]) != host_) continue;
    const auto pid = static_cast<pid_t>(std::get<1>(hello[r]));
    w->pids.push_back(pid);
    w->gone.push_back(me + ": rank " + std::to_string(r) + " (pid " + std::to_string(pid) +
                      ") on this host was lost (a lost rank aborts the job)\n");
  }
  w->none = me + " (no rank on this host was lost: a rank on another host, or a cancelled job)\n";
  LostRankWatch* expected = nullptr;
  if (!g_watch.compare_exchange_strong(expected, w.get())) return;  // an older pool watches
  struct sigaction sa {};
  sa.sa_handler = on_terminate;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, &w->previous);
  watch_ = std::move(w);
}

void ClusterImpl::enqueue(std::unique_ptr<ClusterJob> j) {
  {
    std::lock_guard lk(mu_);
    if (!accepting_) throw ExecutorShutdown("parx::ClusterPool: submit after shutdown");
    ++counters_.submitted;
    if (observe::active()) {
      j->task_id = observe::next_task_id();
      if (const RemoteEntry* e = find_remote(j->fn)) j->fn_name = e->name.c_str();
      emit_task(observe::EventKind::TaskQueued, *j);
    }
    queue_.push_back(std::move(j));
    wake_ = true;
  }
  cv_.notify_one();
}

void ClusterImpl::shutdown(bool wait, bool cancel_pending) {
  {
    std::lock_guard lk(mu_);
    accepting_ = false;
    stopping_ = true;
    if (cancel_pending) cancel_ = true;
    wake_ = true;
  }
  cv_.notify_one();
  if (wait && thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) {
    thread_.join();
    if (server_) server_->shutdown();
  }
}

void ClusterImpl::idle(bool progressed) {
  const std::int64_t now = now_ns();
  if (progressed) {
    last_active_ = now;
    backoff_ns_ = 0;
    return;
  }
  if (now - last_active_ < spin_ns_) {
    sched_yield();
    return;
  }
  backoff_ns_ = std::clamp<std::int64_t>(backoff_ns_ * 2, 20'000, 1'000'000);
  std::unique_lock lk(mu_);
  cv_.wait_for(lk, std::chrono::nanoseconds(backoff_ns_), [this] { return wake_; });
  if (wake_) {
    wake_ = false;
    last_active_ = now_ns();
    backoff_ns_ = 0;
  }
}

bool ClusterImpl::compress_for(int dest, const Bytes& body) const {
  if (body.size() < opts_.compress_min_bytes) return false;
  switch (opts_.compression) {
    case ClusterPool::Compression::never:
      return false;
    case ClusterPool::Compression::always:
      return true;
    case ClusterPool::Compression::automatic:
      return hosts_[dest] != host_ && compresses(body.data(), body.size());
  }
  return false;
}

void ClusterImpl::send_job(ClusterJob& j) {
  Trailer t{};
  t.kind = kKindJob;
  t.flags = j.batch ? kFlagBatch : 0;
  t.rank = rank_;
  t.job = j.id;
  t.n = j.n;
  t.number = j.first_index;
  t.fn = j.fn;
  t.result_size = j.result_size;
  if (j.rank == rank_) {  // the driver's own slots
    t.raw_size = j.payload.size();
    server_->run(std::move(j.payload), t);
    return;
  }
  auto buf = std::make_shared<Bytes>(std::move(j.payload));
  const bool z = compress_for(j.rank, *buf);
  const std::size_t saved = seal(*buf, t, z);
  {
    std::lock_guard lk(mu_);
    stats_.bytes_sent += buf->size();
    if (t.flags & kFlagZstd || saved) {
      ++stats_.compressed;
      stats_.bytes_saved += saved;
    }
  }
  mpi::Request req = comm_->isend(std::span<const std::byte>(*buf), j.rank, kTagJob);
  std::lock_guard lk(send_mu_);
  sending_.push_back({std::move(req), std::move(buf)});
}

void ClusterImpl::fail_rank_jobs(int rank, const std::string& why) {
  refused_[rank] = true;
  capacity_[rank] = 0;
  for (auto it = sent_.begin(); it != sent_.end();) {
    ClusterJob& j = *it->second;
    if (j.rank != rank) {
      ++it;
      continue;
    }
    for (std::size_t k = 0; k < j.n; ++k)
      j.sink->error(k, std::make_exception_ptr(SerializationError(why)));
    j.sink->finish(0);
    it = sent_.erase(it);
  }
  held_[rank] = 0;
}

void ClusterImpl::handle_result(Bytes msg, Trailer t, bool local) {
  const int from = t.rank;
  Bytes body;
  if (local) {
    body = std::move(msg);
  } else {
    {
      std::lock_guard lk(mu_);
      stats_.bytes_received += msg.size();
      if (t.flags & kFlagZstd) {
        ++stats_.compressed;
        stats_.bytes_saved += t.raw_size > msg.size() ? t.raw_size - msg.size() : 0;
      }
    }
    body = take_body(std::move(msg), t, from);
  }
  auto it = sent_.find(t.job);
  if (it == sent_.end() || it->second->rank != from)
    throw SerializationError("rank " + std::to_string(from) + " answered job " +
                             std::to_string(t.job) + ", which it was not sent");
  std::unique_ptr<ClusterJob> j = std::move(it->second);
  sent_.erase(it);
  --held_[from];
  const std::string& host = hosts_[from];
  std::vector<bool> done(j->n, false);
  std::size_t failed = 0;
  const std::span<const std::byte> b(body);
  std::size_t pos = 0;
  try {
    if (t.n != j->n) throw SerializationError("a result with the wrong item count");
    if (t.flags & kFlagBatch) {
      if (!j->batch || t.result_size != j->result_size)
        throw SerializationError("a batch result for a job that was not a batch");
      const std::size_t packed = round_up(j->n * j->result_size, 8);
      if (b.size() < packed) throw SerializationError("a batch result shorter than its values");
      j->sink->values_raw(b.data(), j->n, nullptr);
      std::fill(done.begin(), done.end(), true);
      pos = packed;
    }
    while (pos < b.size()) {
      pos = round_up(pos, 8);
      if (pos + 24 > b.size()) throw SerializationError("a truncated outcome record");
      const auto word = load_at<std::uint64_t>(b, pos);
      const auto slot = load_at<std::uint64_t>(b, pos + 8);
      const auto len = load_at<std::uint64_t>(b, pos + 16);
      const auto status = static_cast<std::uint32_t>(word);
      const auto pad = static_cast<std::uint32_t>(word >> 32);
      const std::size_t at = pos + 24 + pad;
      if (pad >= 64 || status > 1 || slot >= j->n || at > b.size() || len > b.size() - at)
        throw SerializationError("a bad outcome record");
      if (done[slot] && !((t.flags & kFlagBatch) && status == 1))
        throw SerializationError("two outcomes for one item");
      done[slot] = true;
      const auto bytes = b.subspan(at, len);
      if (status == 0) {
        try {
          j->sink->value(slot, bytes, at);
        } catch (...) {
          j->sink->error(slot, std::current_exception());
          ++failed;
        }
      } else {
        Decoder d(bytes, at);
        std::exception_ptr e;
        try {
          e = get_error(d, from, host);
        } catch (...) {
          e = std::current_exception();
        }
        j->sink->error(slot, e);
        ++failed;
      }
      pos = at + len;
    }
  } catch (const std::exception& e) {
    // Unreadable: every item without an outcome fails with the reason (nothing hangs).
    const std::string why =
        std::string(e.what()) + " (from rank " + std::to_string(from) + ", host " + host + ")";
    for (std::size_t k = 0; k < j->n; ++k)
      if (!done[k]) {
        done[k] = true;
        j->sink->error(k, std::make_exception_ptr(SerializationError(why)));
        ++failed;
      }
  }
  for (std::size_t k = 0; k < j->n; ++k)
    if (!done[k]) {
      j->sink->error(k, std::make_exception_ptr(SerializationError(
                            "rank " + std::to_string(from) + " sent no outcome for item " +
                            std::to_string(k) + " of a chunk")));
      ++failed;
    }
  {
    std::lock_guard lk(mu_);
    stats_.tasks += j->n;
    stats_.failed += failed;
    ++(failed ? counters_.failed : counters_.done);
    if (static_cast<std::size_t>(from) < running_per_rank_.size() && running_per_rank_[from])
      --running_per_rank_[from];
    ClusterPool::Rank& r = ranks_[from];
    r.tasks += j->n;
    r.chunks += 1;
    r.busy_seconds += static_cast<double>(t.number) * 1e-9;
  }
  emit_task(failed ? observe::EventKind::TaskFailed : observe::EventKind::TaskFinished, *j, from,
            static_cast<std::int64_t>(t.number),
            failed ? "one or more items of the chunk failed (their TaskError reaches the caller)"
                   : nullptr);
  j->sink->finish(t.number);
}

void ClusterImpl::comm_loop() {
  last_active_ = now_ns();
  for (;;) {
    bool progressed = false;
    bool stop = false, cancel = false;
    std::deque<Local> local;
    {
      std::lock_guard lk(mu_);
      while (!queue_.empty()) {
        pending_.push_back(std::move(queue_.front()));
        queue_.pop_front();
        progressed = true;
      }
      local.swap(inbox_);
      stop = stopping_;
      cancel = cancel_;
      wake_ = false;
    }
    if (cancel) {
      for (auto& j : pending_) {
        j->sink->cancel();
        emit_task(observe::EventKind::TaskCancelled, *j);
      }
      {
        std::lock_guard lk(mu_);
        counters_.cancelled += pending_.size();
      }
      pending_.clear();
    }
    // Hand chunks to the least loaded ranks with room (the pull: a rank gets work as its slots
    // free), rotating among equals.
    while (!pending_.empty()) {
      int best = -1;
      double load = 2.0;
      for (int k = 0; k < size_; ++k) {
        const int r = static_cast<int>((next_rank_ + static_cast<std::size_t>(k)) % size_);
        if (held_[r] >= capacity_[r]) continue;
        const double l = static_cast<double>(held_[r]) / static_cast<double>(capacity_[r]);
        if (l < load) {
          load = l;
          best = r;
        }
      }
      if (best < 0) break;
      next_rank_ = (static_cast<std::size_t>(best) + 1) % size_;
      std::unique_ptr<ClusterJob> j = std::move(pending_.front());
      pending_.pop_front();
      if (!j->sink->start()) {  // cancelled by its caller while queued
        {
          std::lock_guard lk(mu_);
          ++counters_.cancelled;
        }
        emit_task(observe::EventKind::TaskCancelled, *j);
        continue;
      }
      j->rank = best;
      j->id = next_job_++;
      ++held_[best];
      {
        std::lock_guard lk(mu_);
        ++stats_.chunks;
        ++started_;
        if (static_cast<std::size_t>(best) < running_per_rank_.size()) ++running_per_rank_[best];
      }
      emit_task(observe::EventKind::TaskStarted, *j, best);
      ClusterJob& ref = *j;
      sent_.emplace(ref.id, std::move(j));
      try {
        send_job(ref);
      } catch (...) {
        auto node = sent_.extract(ref.id);
        --held_[best];
        for (std::size_t k = 0; k < node.mapped()->n; ++k)
          node.mapped()->sink->error(k, std::current_exception());
        node.mapped()->sink->finish(0);
      }
      progressed = true;
    }
    for (Local& l : local) {
      handle_result(std::move(l.body), l.t, true);
      progressed = true;
    }
    if (comm_) {
      while (auto st = comm_->iprobe()) {
        Bytes msg(st->bytes);
        comm_->recv(std::span<std::byte>(msg), st->source, st->tag);
        progressed = true;
        if (st->tag == kTagOutput) {
          print_output(msg, st->source);
          continue;
        }
        if (st->tag == kTagRefused) {
          const std::string why(reinterpret_cast<const char*>(msg.data()), msg.size());
          std::fprintf(stderr, "parx: rank %d refused a ClusterPool message: %s\n", st->source,
                       why.c_str());
          fail_rank_jobs(st->source, "rank " + std::to_string(st->source) +
                                         " refused a ClusterPool message: " + why);
          continue;
        }
        try {
          const Trailer t = read_trailer(msg, kKindResult, st->source);
          if (t.rank != st->source) throw SerializationError("a result with a wrong sender");
          handle_result(std::move(msg), t, false);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "parx: ClusterPool refused a result: %s\n", e.what());
          fail_rank_jobs(st->source, e.what());
        }
      }
      reap_sends(false);
    }
    if (stop && pending_.empty() && sent_.empty()) {
      bool more;
      {
        std::lock_guard lk(mu_);
        more = !queue_.empty() || !inbox_.empty();
      }
      if (!more) break;
    }
    idle(progressed);
  }
  // Release the serving ranks.
  if (comm_) {
    reap_sends(true);
    std::vector<mpi::Request> stops;
    static const std::byte none[1] = {};
    for (int r = 1; r < size_; ++r)
      stops.push_back(comm_->isend(std::span<const std::byte>(none, 0), r, kTagStop));
    for (auto& s : stops)
      s.wait();
    // Each serving rank sends what it has left to print, then an end marker.
    int ends = 0;
    std::int64_t pause = 0;
    while (ends < size_ - 1) {
      auto st = comm_->iprobe();
      if (!st) {
        pause = std::clamp<std::int64_t>(pause * 2, 5'000, 1'000'000);
        std::this_thread::sleep_for(std::chrono::nanoseconds(pause));
        continue;
      }
      pause = 0;
      Bytes msg(st->bytes);
      comm_->recv(std::span<std::byte>(msg), st->source, st->tag);
      if (st->tag == kTagOutput) print_output(msg, st->source);
      if (st->tag == kTagOutputEnd) ++ends;
    }
  }
  for (int r = 0; r < size_; ++r)
    emit_rank(observe::EventKind::WorkerStopped, r);
}

void ClusterImpl::print_output(const Bytes& msg, int source) {
  const int fd = msg.empty() ? 0 : static_cast<int>(msg[0]);
  if (fd != STDOUT_FILENO && fd != STDERR_FILENO) {
    console_write(STDERR_FILENO, "parx: rank " + std::to_string(source) +
                                     " sent an output message for descriptor " +
                                     std::to_string(fd) + " (refused)\n");
    return;
  }
  std::string_view text(reinterpret_cast<const char*>(msg.data()) + 1, msg.size() - 1);
  if (text.empty()) return;
  if (text.back() == '\n') {
    console_write(fd, text);
  } else {  // lines always end in a newline; a damaged message still prints as lines
    std::string t(text);
    t += '\n';
    console_write(fd, t);
  }
}

void ClusterImpl::start_output() {
  std::optional<RelayPipes> pipes;
  try {
    pipes.emplace();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parx: rank %d keeps its own output (%s)\n", rank_, e.what());
    return;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  saved_out_ = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  saved_err_ = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (saved_out_ < 0 || saved_err_ < 0 || dup2(pipes->write_out, STDOUT_FILENO) < 0 ||
      dup2(pipes->write_err, STDERR_FILENO) < 0) {
    restore_output();
    return;
  }
  pipes->close_write_ends();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  {
    std::lock_guard lk(send_mu_);
    to_driver_ = true;
  }
  set_output_relayed(true);
  const std::string prefix = output_ == Output::prefixed ? "[" + log::origin() + "] " : "";
  std::tie(rank_out_, rank_err_) =
      pipes->start(prefix, [this](int fd, std::string_view lines) { relay_lines(fd, lines); });
}

void ClusterImpl::relay_lines(int fd, std::string_view lines) {
  {
    std::lock_guard lk(send_mu_);
    if (to_driver_) {
      auto buf = std::make_shared<Bytes>(lines.size() + 1);
      (*buf)[0] = static_cast<std::byte>(fd);
      std::memcpy(buf->data() + 1, lines.data(), lines.size());
      sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagOutput), buf});
      return;
    }
  }
  // After the end marker: the rank's own descriptors again (its launcher forwards them).
  const int to = fd == STDOUT_FILENO ? (saved_out_ >= 0 ? saved_out_ : fd)
                                     : (saved_err_ >= 0 ? saved_err_ : fd);
  std::size_t at = 0;
  while (at < lines.size()) {
    const ssize_t w = ::write(to, lines.data() + at, lines.size() - at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    at += static_cast<std::size_t>(w);
  }
}

void ClusterImpl::finish_output() {
  if (rank_out_) {
    std::fflush(stdout);
    std::fflush(stderr);
    rank_out_->pump();
    rank_err_->pump();
  }
  std::lock_guard lk(send_mu_);
  to_driver_ = false;
  static const std::byte none[1] = {};
  sending_.push_back({comm_->isend(std::span<const std::byte>(none, 0), 0, kTagOutputEnd), {}});
}

void ClusterImpl::restore_output() noexcept {
  std::fflush(stdout);
  std::fflush(stderr);
  if (saved_out_ >= 0) dup2(saved_out_, STDOUT_FILENO);
  if (saved_err_ >= 0) dup2(saved_err_, STDERR_FILENO);
  set_output_relayed(false);
  // The pipes' last writers are gone: what is left is read and written to the rank's own
  // descriptors.
  OutputRelay::get().unwatch(rank_out_);
  OutputRelay::get().unwatch(rank_err_);
  rank_out_.reset();
  rank_err_.reset();
  if (saved_out_ >= 0) ::close(saved_out_);
  if (saved_err_ >= 0) ::close(saved_err_);
  saved_out_ = saved_err_ = -1;
}

void ClusterImpl::send_result(Bytes body, const Trailer& t) {
  if (rank_out_) {  // the lines the task wrote go first
    rank_out_->pump();
    rank_err_->pump();
  }
  auto buf = std::make_shared<Bytes>(std::move(body));
  seal(*buf, t, compress_for(0, *buf));
  std::lock_guard lk(send_mu_);
  sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagResult), buf});
}

void ClusterImpl::reap_sends(bool all) {
  std::unique_lock lk(send_mu_, std::defer_lock);
  if (all) {
    lk.lock();
  } else if (!lk.try_lock()) {
    return;
  }
  for (std::size_t i = 0; i < sending_.size();) {
    if (all) sending_[i].req.wait();
    if (sending_[i].req.done() || sending_[i].req.test()) {
      sending_[i] = std::move(sending_.back());
      sending_.pop_back();
    } else {
      ++i;
    }
  }
}

// A serving rank: its task threads take turns at polling MPI (leader/followers). The poller
// receives a job and, in thread mode, runs it itself while another idle thread takes over the
// polling; results go straight from the thread that made them. No job changes threads on its
// way, so a round trip costs two MPI messages and no hand-offs.
void ClusterImpl::serve() {
  const bool caller_runs = server_ && !opts_.processes;
  const std::size_t threads = caller_runs ? slots_[rank_] : 1;
  std::vector<std::thread> helpers;
  for (std::size_t i = 1; i < threads; ++i)
    helpers.emplace_back([this, caller_runs] { serve_loop(caller_runs); });
  serve_loop(caller_runs);
  for (auto& h : helpers)
    h.join();
  if (server_) server_->shutdown();
  if (comm_) finish_output();
  reap_sends(true);
  if (rank_out_) restore_output();
  // Results produced after the stop would have no reader: the driver only stops once every
  // chunk it sent has come back, so there are none.
}

void ClusterImpl::serve_loop(bool caller_runs) {
  for (;;) {
    {
      std::unique_lock lk(poll_mu_);
      poll_cv_.wait(lk, [this] { return !polling_ || served_; });
      if (served_) return;
      polling_ = true;
    }
    std::optional<std::pair<Bytes, Trailer>> job;
    bool stop = false;
    std::int64_t last = now_ns(), backoff = 0;
    while (!job && !stop) {
      auto st = comm_->iprobe(0);
      if (!st) {
        reap_sends(false);
        const std::int64_t now = now_ns();
        if (now - last < spin_ns_) {
          sched_yield();
        } else {
          backoff = std::clamp<std::int64_t>(backoff * 2, 20'000, 1'000'000);
          std::this_thread::sleep_for(std::chrono::nanoseconds(backoff));
        }
        continue;
      }
      Bytes msg(st->bytes);
      comm_->recv(std::span<std::byte>(msg), 0, st->tag);
      last = now_ns();
      backoff = 0;
      if (st->tag == kTagStop) {
        stop = true;
        break;
      }
      try {
        if (st->tag != kTagJob)
          throw SerializationError("unexpected tag " + std::to_string(st->tag));
        const Trailer t = read_trailer(msg, kKindJob, 0);
        if (!server_) throw SerializationError("a job for a rank that runs no tasks");
        Bytes body = take_body(std::move(msg), t, 0);
        if (caller_runs)
          job.emplace(std::move(body), t);
        else
          server_->run(std::move(body), t);  // the rank's ProcessPool; keep polling
      } catch (const std::exception& e) {
        const std::string why = e.what();
        auto buf =
            std::make_shared<Bytes>(reinterpret_cast<const std::byte*>(why.data()),
                                    reinterpret_cast<const std::byte*>(why.data()) + why.size());
        std::lock_guard lk(send_mu_);
        sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagRefused), buf});
      }
    }
    {
      std::lock_guard lk(poll_mu_);
      polling_ = false;
      if (stop) served_ = true;
    }
    if (stop) {
      poll_cv_.notify_all();
      return;
    }
    poll_cv_.notify_one();  // an idle thread takes over the polling
    server_->execute(std::span<const std::byte>(job->first), job->second);
  }
}

}  // namespace detail

// ---- ClusterPool --------------------------------------------------------------------------------

ClusterPool::ClusterPool() : ClusterPool(Options{}) {}

ClusterPool::ClusterPool(Options opts)
    : trace_(observe::detail::pool_trace(opts.trace)),
      impl_(std::make_unique<detail::ClusterImpl>(opts)) {
  if (trace_) trace_->only(impl_->exec_id());
  rank_ = impl_->rank();
  size_ = impl_->size();
  driver_ = impl_->driver();
  workers_ = impl_->workers();
  if (!driver_) {
    if (trace_) trace_->discard();  // the driver's trace holds every rank's tasks
    impl_->serve();
    impl_.reset();
    if (opts.driver_only) std::exit(0);
  }
}

ClusterPool::~ClusterPool() = default;

void ClusterPool::require_driver(const char* what) const {
  if (!driver_)
    throw InvalidState(std::string("parx::ClusterPool::") + what + " on rank " +
                       std::to_string(rank_) +
                       ", which served the pool: only the driver (rank 0, is_driver()) submits");
}

std::vector<ClusterPool::Rank> ClusterPool::ranks() const {
  require_driver("ranks");
  return impl_->ranks();
}

observe::Counters ClusterPool::counters() const {
  require_driver("counters");
  return impl_->counters();
}

ClusterPool::Stats ClusterPool::stats() const {
  require_driver("stats");
  return impl_->stats();
}

bool ClusterPool::is_shutdown() const noexcept {
  return !impl_ || impl_->is_shutdown();
}

void ClusterPool::shutdown(bool wait, bool cancel_pending) {
  if (impl_) impl_->shutdown(wait, cancel_pending);
}

void ClusterPool::enqueue(FunctionId fn, Bytes payload, std::size_t n, std::int64_t first_index,
                          bool batch, std::unique_ptr<detail::PoolSink> sink) {
  require_driver("submit");
  const detail::RemoteEntry* e = detail::find_remote(fn);
  auto j = std::make_unique<detail::ClusterJob>();
  j->fn = fn;
  j->n = n;
  j->first_index = first_index;
  j->batch = batch;
  if (batch) {
    if (!e || !e->batch.invoke)
      throw Error("parx::ClusterPool: function " + (e ? e->name : std::string("(unknown)")) +
                  " has no batch form");
    const std::uint64_t prefix[4] = {fn, n, e->batch.arg_size, e->batch.result_size};
    std::memcpy(payload.data(), prefix, sizeof prefix);
    j->result_size = e->batch.result_size;
  } else {
    const std::uint64_t prefix[2] = {fn, n};
    std::memcpy(payload.data(), prefix, sizeof prefix);
  }
  j->payload = std::move(payload);
  j->sink = std::move(sink);
  impl_->enqueue(std::move(j));
}

}  // namespace parx
