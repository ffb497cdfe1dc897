// parx/process_pool.hpp — ProcessPool: crash-isolated worker processes with the ThreadPool's
// interface (multiprocessing.Pool, ProcessPoolExecutor and joblib's loky in one), for code that
// must survive segfaults, aborts, leaks and runaway tasks, or that is not thread-safe.
//
// Functions cross the process boundary by name: register each with PARX_REMOTE (remote.hpp).
// Arguments and results travel through the codec (codec.hpp) over shared-memory rings; payloads
// above 1 MiB go by reference in a memfd instead of through the ring.
//
// Contract
//   * parx::init(argc, argv) must be the first line of main: workers are forked from the fork
//     server it starts (never from a threaded process). Without it the constructor throws
//     parx::Error saying what to add.
//   * `submit(fn, args...)` -> Future<R>; `map`, `starmap`, lazy `imap`/`imap_unordered` take the
//     same MapOptions as ThreadPool. A lambda or std::function is a compile-time error; an
//     unregistered function pointer throws parx::Error naming it, at the call, before anything
//     reaches a worker.
//   * Batching is automatic (MapOptions::chunksize = 0): chunks adapt to the measured item time
//     (target 50 ms unless MapOptions::target_chunk_us says otherwise) and the tail is split so no
//     worker straggles; MapStats::chunksize reports the size chosen. A chunk of a function of one
//     memcpy-safe argument with a memcpy-safe (or void) result travels packed: one array of
//     arguments, one array of results, nothing encoded per item (same outcomes per item).
//   * A task that throws fails with parx::TaskError (type, message, task index, function, host,
//     pid and the throw site's stack trace); the worker lives on.
//   * max_tasks_per_worker counts items (each item of a chunk is one task).
//   * A worker that dies (signal, abort, exit(), OOM killer, memory ceiling) fails only the item it
//     was running, with parx::WorkerCrashed naming the signal or exit code, the pid and the item;
//     other items it held are run again elsewhere. Options::retries re-runs the crashed item
//     (on a fresh worker) that many times first. The worker is replaced; there is no broken-pool
//     state. A per-task timeout kills and replaces the worker; the item fails with TimeoutError.
//   * Items of a chunk that had finished when their worker died are run again (their results died
//     with the worker): tasks with side effects should be idempotent, as with any retry.
//   * Workers die with the program, however it ends (exit, exception, Ctrl-C, SIGKILL): they are
//     children of the fork server, which kills them when this process dies; the channels are
//     memfds, so nothing is left in /dev/shm.
//   * `shutdown(wait, cancel_pending)`: no new work; with cancel_pending, queued tasks end
//     Cancelled; with wait, returns once running tasks are done and the workers have exited. The
//     destructor is shutdown(true, false).
//
// Thread-safety: every member function may be called from any thread.
//
// Example
//   double simulate(int seed);
//   PARX_REMOTE(simulate);
//   int main(int argc, char** argv) {
//     parx::init(argc, argv);
//     parx::ProcessPool pool({.timeout = std::chrono::seconds(60), .retries = 1});
//     std::vector<double> ys = pool.map(simulate, parx::range(10'000));
//     try { pool.submit(simulate, -1).get(); }
//     catch (const parx::WorkerCrashed& e) { std::cerr << e.what() << '\n'; }  // pool serves on
//   }
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include "parx/codec.hpp"
#include "parx/detail/map_stream.hpp"
#include "parx/errors.hpp"
#include "parx/executor.hpp"
#include "parx/future.hpp"
#include "parx/log.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/observe/trace.hpp"
#include "parx/remote.hpp"

namespace parx {

// A registered function with its encoded arguments, to run later in a worker (the initializer).
struct RemoteCall {
  FunctionId fn = 0;
  Bytes args;
  explicit operator bool() const noexcept { return fn != 0; }
};

// Captures a call of registered `fn` with `args` (checked and encoded now).
template <class R, class... P, class... A>
RemoteCall remote_call(R (*fn)(P...), A&&... args) {
  RemoteCall c;
  c.fn = remote_id(fn);
  Encoder e;
  encode_call(e, fn, std::forward<A>(args)...);
  c.args = e.take();
  return c;
}

namespace detail {

class ProcessPoolImpl;
class ClusterServer;

template <class T>
inline constexpr bool always_false_v = false;

// One item of a job: where its encoded arguments sit in the job's payload.
struct PoolItem {
  std::int64_t index;  // task index reported in errors (-1 for submit)
  std::size_t offset;  // of the item's 16-byte header in the payload
};

// Builds a job payload: per item, [i64 index][u64 length] then the encoded arguments (unaligned).
// The payload starts with [u64 function id][u64 item count], filled in by the pool.
class PoolJobBuilder {
 public:
  explicit PoolJobBuilder(std::size_t items) : enc_(16 + items * 32) {
    items_.reserve(items);
    const std::uint64_t prefix[2] = {0, 0};
    enc_.write(prefix, sizeof prefix);
  }
  Encoder& begin_item(std::int64_t index) {
    at_ = enc_.size();
    items_.push_back({index, at_});
    const std::uint64_t hdr[2] = {static_cast<std::uint64_t>(index), 0};
    enc_.write(hdr, sizeof hdr);
    return enc_;
  }
  // As begin_item, for arguments encoded on their own: they start 64-byte aligned, so alignment
  // padding inside them lines up with the message offset the worker decodes them at.
  Encoder& begin_item_aligned(std::int64_t index) {
    static constexpr std::byte zeros[64] = {};
    enc_.write(zeros, (64 - (enc_.size() + 16) % 64) % 64);
    return begin_item(index);
  }
  void end_item() noexcept {
    const std::uint64_t len = enc_.size() - at_ - 16;
    std::memcpy(enc_.data() + at_ + 8, &len, sizeof len);
  }
  Bytes take_payload() noexcept { return enc_.take(); }
  std::vector<PoolItem> take_items() noexcept { return std::move(items_); }

 private:
  Encoder enc_;
  std::vector<PoolItem> items_;
  std::size_t at_ = 0;
};

// Where a job's outcomes go: filled by the pool's I/O thread, completed once every item has one.
class PoolSink {
 public:
  virtual ~PoolSink() = default;
  // Pending -> running, once; false if the caller cancelled the future (the job is dropped).
  virtual bool start() noexcept = 0;
  // Cancels a job not yet started (shutdown with cancel_pending).
  virtual void cancel() noexcept = 0;
  // Item `slot` returned: decode its result from `bytes`, encoded at `base` of its message.
  // Throws SerializationError for bytes that do not decode as the result type.
  virtual void value(std::size_t slot, std::span<const std::byte> bytes, std::size_t base) = 0;
  // The packed results of `n` items of a batch job (memcpy-safe result type), item k into slot
  // slots[k] (slot k when slots is null).
  virtual void values_raw(const std::byte*, std::size_t, const std::size_t*) {
    throw SerializationError("a batch result for a job that was not sent as a batch");
  }
  virtual void error(std::size_t slot, std::exception_ptr e) noexcept = 0;
  // Every item has an outcome: complete the future. Called without the pool's lock held.
  virtual void finish(std::int64_t elapsed_ns) noexcept = 0;
};

template <class R>
void decode_result_into(std::optional<unit_if_void<R>>& out, std::span<const std::byte> bytes,
                        std::size_t base) {
  Decoder d(bytes, base);
  if constexpr (std::is_void_v<R> || std::is_same_v<R, std::monostate>) {
    out.emplace();
  } else {
    out.emplace(d.template make<R>());
  }
  if (d.remaining() != 0)
    throw SerializationError(
        std::to_string(d.remaining()) +
        " trailing bytes after a task result (corrupt, or a different binary)");
}

template <class R>
class SubmitSink final : public PoolSink {
 public:
  explicit SubmitSink(Ref<State<R>> st) : st_(std::move(st)) {}
  bool start() noexcept override { return st_->try_start(); }
  void cancel() noexcept override { st_->cancel(); }
  void value(std::size_t, std::span<const std::byte> bytes, std::size_t base) override {
    decode_result_into<R>(v_, bytes, base);
  }
  void error(std::size_t, std::exception_ptr e) noexcept override { e_ = std::move(e); }
  void finish(std::int64_t) noexcept override {
    if (e_) {
      st_->set_exception(std::move(e_));
    } else if constexpr (std::is_void_v<R>) {
      st_->set_value();
    } else {
      st_->set_value(std::move(*v_));
    }
  }

 private:
  Ref<State<R>> st_;
  std::optional<unit_if_void<R>> v_;
  std::exception_ptr e_;
};

template <class R>
class ChunkSink final : public PoolSink {
 public:
  // Dense: results arrive packed (batch jobs) and go to ChunkResult::dense.
  ChunkSink(Ref<State<ChunkResult<R>>> st, std::size_t n, bool dense = false)
      : st_(std::move(st)), dense_(dense) {
    if (dense)
      out_.dense.resize(n);
    else
      out_.values.resize(n);
  }
  bool start() noexcept override { return st_->try_start(); }
  void cancel() noexcept override { st_->cancel(); }
  void value(std::size_t slot, std::span<const std::byte> bytes, std::size_t base) override {
    decode_result_into<R>(out_.values[slot], bytes, base);
  }
  void values_raw(const std::byte* raw, std::size_t n, const std::size_t* slots) override {
    if (!dense_ || (slots == nullptr && n != out_.dense.size())) {
      PoolSink::values_raw(raw, n, slots);  // not sent as a batch: refuse
    } else if constexpr (std::is_same_v<R, std::monostate>) {
      // nothing to store
    } else if constexpr (std::is_trivially_copyable_v<R>) {
      if (!slots) {
        std::memcpy(out_.dense.data(), raw, n * sizeof(R));
      } else {
        for (std::size_t k = 0; k < n; ++k)
          std::memcpy(&out_.dense[slots[k]], raw + k * sizeof(R), sizeof(R));
      }
    } else {
      PoolSink::values_raw(raw, n, slots);  // never sent as a batch: refuse
    }
  }
  void error(std::size_t slot, std::exception_ptr e) noexcept override {
    if (!dense_) out_.values[slot].reset();
    out_.errors.emplace_back(slot, std::move(e));
  }
  void finish(std::int64_t elapsed_ns) noexcept override {
    std::sort(out_.errors.begin(), out_.errors.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    out_.elapsed_ns = elapsed_ns;
    st_->set_value(std::move(out_));
  }

 private:
  Ref<State<ChunkResult<R>>> st_;
  bool dense_;
  ChunkResult<R> out_;
};

// starmap's function: f applied to the elements of a tuple.
template <class Fn>
struct StarCall {
  Fn fn;
  template <class Tuple>
  auto operator()(const Tuple& t) const {
    return std::apply(fn, t);
  }
};

template <class F>
struct is_star_call : std::false_type {};
template <class Fn>
struct is_star_call<StarCall<Fn>> : std::true_type {};

template <class F>
inline constexpr bool is_function_pointer_v =
    std::is_pointer_v<F>&& std::is_function_v<std::remove_pointer_t<F>>;

// Whether a chunk of f over inputs of type In travels as packed arrays (see remote.hpp's
// batchable): f takes one memcpy-safe argument that In converts to, and returns a memcpy-safe
// value or nothing.
template <class F, class In>
struct batch_traits : std::false_type {};
template <class R, class P, class In>
struct batch_traits<R (*)(P), In> {
  using Arg = std::decay_t<P>;
  static constexpr bool value = batchable<R, P>() && std::is_constructible_v<Arg, const In&>;
};

// A chunk of `f` over `items` as a pool job: when f has a batch form, the payload is 32 bytes for
// the pool then the packed arguments; otherwise one encoded item per input (`items` says where).
// The sink decodes the outcomes into the future.
template <class R>
struct ChunkJob {
  Bytes payload;
  std::vector<PoolItem> items;
  bool batch = false;
  std::unique_ptr<PoolSink> sink;
  Future<ChunkResult<R>> future;
};

template <class R, class F, class In>
ChunkJob<R> make_chunk_job(const F& f, std::vector<In>& items, std::size_t first_index) {
  using CR = ChunkResult<R>;
  ChunkJob<R> job;
  Ref<State<CR>> st(new State<CR>());
  job.future = make_future<CR>(Ref<State<CR>>(st.get(), false));
  job.batch = batch_traits<F, In>::value;
  job.sink = std::make_unique<ChunkSink<R>>(std::move(st), items.size(), job.batch);
  if constexpr (batch_traits<F, In>::value) {
    // Packed: one memcpy of the arguments, one loop in the worker, one copy of the results.
    using Arg = typename batch_traits<F, In>::Arg;
    job.payload = Bytes(32 + items.size() * sizeof(Arg));
    std::byte* out = job.payload.data() + 32;
    if constexpr (std::is_same_v<In, Arg>) {
      std::memcpy(out, items.data(), items.size() * sizeof(Arg));
    } else {
      for (std::size_t i = 0; i < items.size(); ++i) {
        const Arg a(items[i]);
        std::memcpy(out + i * sizeof(Arg), &a, sizeof(Arg));
      }
    }
  } else {
    PoolJobBuilder b(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) {
      Encoder& e = b.begin_item(static_cast<std::int64_t>(first_index + i));
      if constexpr (is_star_call<F>::value) {
        std::apply([&](auto&... xs) { encode_call(e, f.fn, xs...); }, items[i]);
      } else {
        encode_call(e, f, items[i]);
      }
      b.end_item();
    }
    job.payload = b.take_payload();
    job.items = b.take_items();
  }
  return job;
}

// The id of a pool task's function (or of a starmap's): a lambda is a compile-time error, an
// unregistered function a parx::Error naming it.
template <class F>
FunctionId pool_function_id(const F& f) {
  if constexpr (is_star_call<F>::value) {
    return remote_id(f.fn);
  } else {
    static_assert(is_function_pointer_v<std::decay_t<F>>,
                  "parx's process and cluster pools run functions registered with PARX_REMOTE: a "
                  "lambda, functor or std::function cannot cross a process boundary. Write a "
                  "function, add PARX_REMOTE(name) after it, and pass the function");
    return remote_id(f);
  }
}

// map as a drained ordered imap: the results in input order (nothing for a void function).
template <class Pool, class F, std::ranges::input_range Rg>
auto map_through_imap(Pool& pool, F&& f, Rg&& inputs, const MapOptions& opts) {
  using In = std::ranges::range_reference_t<Rg>;
  using R = std::invoke_result_t<std::decay_t<F>&, In>;
  MapOptions o = opts;
  o.ordered = true;
  std::size_t n = 0;
  if constexpr (std::ranges::sized_range<Rg>)
    n = static_cast<std::size_t>(std::ranges::size(inputs));
  auto stream = pool.imap(std::forward<F>(f), std::forward<Rg>(inputs), o);
  if constexpr (std::is_void_v<R>) {
    while (stream.next()) {
    }
  } else {
    std::vector<R> out;
    out.reserve(n);
    stream.append_to(out);
    return out;
  }
}

}  // namespace detail

class ProcessPool {
 public:
  struct Options {
    // Worker processes; 0 (default): one per core.
    std::size_t workers = 0;
    // Runs in every worker (including replacements) before its first task:
    // parx::remote_call(setup, args...). If it throws in the first workers, the constructor
    // throws the TaskError.
    RemoteCall initializer;
    // A worker that has run this many tasks is replaced between tasks. 0: never.
    std::size_t max_tasks_per_worker = 0;
    // Resident-memory ceiling per worker, bytes. A worker above it after a task is replaced; one
    // that crosses it while running a task is killed (the item fails with WorkerCrashed, or is
    // retried). 0: none.
    std::size_t memory_limit = 0;
    // Per-task time limit; the worker running an item longer is killed and replaced, and the item
    // fails with TimeoutError. 0: none.
    std::chrono::milliseconds timeout{0};
    // Times an item whose worker crashed is run again (on a fresh worker) before it fails with
    // WorkerCrashed.
    int retries = 0;
    // Also retry items that threw (up to `retries` times), for flaky tasks.
    bool retry_exceptions = false;
    // How long an idle worker (and the pool's I/O thread) spins before sleeping. Negative
    // (default): PARX_SPIN_US, else 50 µs.
    std::chrono::microseconds spin{-1};
    // Write a Chrome-trace timeline of this pool to this path when it is destroyed
    // (observe/trace.hpp; PARX_TRACE=path does it for every pool). Empty: none.
    std::string trace;
    // How the workers' stdout and stderr reach this process (log.hpp): relayed whole-line
    // (`lines`), relayed with an origin prefix (`prefixed`), or written straight to the
    // descriptors the program had at parx::init (`inherit`). `automatic`: PARX_OUTPUT, else lines.
    Output output = Output::automatic;
  };

  // Counters since construction.
  struct Stats {
    std::uint64_t tasks = 0;             // items completed (value or exception)
    std::uint64_t crashes = 0;           // workers that died while holding work
    std::uint64_t timeouts = 0;          // workers killed for exceeding the timeout
    std::uint64_t retries = 0;           // items run again after a crash or exception
    std::uint64_t respawns = 0;          // replacement workers started
    std::uint64_t corrupt_messages = 0;  // channel frames refused (bad magic, size or checksum)
  };

  explicit ProcessPool(std::size_t workers = 0);
  explicit ProcessPool(Options opts);
  ~ProcessPool();
  ProcessPool(const ProcessPool&) = delete;
  ProcessPool& operator=(const ProcessPool&) = delete;

  std::size_t workers() const noexcept { return workers_; }
  // Pids of the live workers (for diagnostics and tests).
  std::vector<pid_t> pids() const;
  Stats stats() const;
  // Task counters since construction (observe/metrics.hpp): a task is one submit or one map chunk;
  // `retried` counts items run again, `bytes_moved` the encoded arguments and results.
  observe::Counters counters() const;
  bool is_shutdown() const noexcept;

  // Runs registered `fn(args...)` in a worker.
  template <class R, class... P, class... A>
  Future<R> submit(R (*fn)(P...), A&&... args);
  template <class F, class... A>
  requires(!detail::is_function_pointer_v<std::decay_t<F>>) Future<int> submit(F&&, A&&...) {
    static_assert(detail::always_false_v<F>,
                  "parx::ProcessPool runs functions registered with PARX_REMOTE: a lambda, functor "
                  "or std::function cannot cross a process boundary. Write a function, add "
                  "PARX_REMOTE(name) after it, and pass the function");
    return {};
  }

  // fn over every input, results in input order (Pool.map).
  template <class F, std::ranges::input_range R>
  auto map(F&& f, R&& inputs, const MapOptions& opts = {});
  // fn(args...) for each tuple of args (Pool.starmap).
  template <class F, std::ranges::input_range R>
  auto starmap(F&& f, R&& inputs, const MapOptions& opts = {});
  // Lazy ordered map (opts.ordered = false: completion order). An lvalue input is referenced:
  // keep it alive while iterating.
  template <class F, std::ranges::input_range R>
  auto imap(F&& f, R&& inputs, const MapOptions& opts = {});
  template <class F, std::ranges::input_range R>
  auto imap_unordered(F&& f, R&& inputs, const MapOptions& opts = {}) {
    MapOptions o = opts;
    o.ordered = false;
    return imap(std::forward<F>(f), std::forward<R>(inputs), o);
  }

  void shutdown(bool wait = true, bool cancel_pending = false);

  // Internal (the lazy map engine): runs a chunk of items, one outcome per item.
  template <class R, class F, class In>
  Future<detail::ChunkResult<R>> submit_chunk(const F& f, std::vector<In>&& items,
                                              std::size_t first_index);

  // Internal (executors layered on this pool, tests): runs the function registered under `id` with
  // arguments encoded by encode_call. A worker refuses an id it does not know (TaskError).
  template <class R>
  Future<R> submit_encoded(FunctionId id, std::span<const std::byte> args) {
    detail::PoolJobBuilder b(1);
    b.begin_item_aligned(-1).write(args.data(), args.size());
    b.end_item();
    return enqueue_one<R>(id, b);
  }

 private:
  friend class detail::ClusterServer;  // runs jobs a ClusterPool rank receives
  void enqueue(FunctionId fn, Bytes payload, std::vector<detail::PoolItem> items,
               std::unique_ptr<detail::PoolSink> sink);
  // Queues a batch job: `payload` holds 32 bytes for the pool, then n packed arguments.
  void enqueue_batch(FunctionId fn, Bytes payload, std::size_t n, std::int64_t first_index,
                     std::unique_ptr<detail::PoolSink> sink);
  // Queues a one-item job built in `b`; its future completes with the item's outcome.
  template <class R>
  Future<R> enqueue_one(FunctionId id, detail::PoolJobBuilder& b) {
    detail::Ref<detail::State<R>> st(new detail::State<R>());
    auto fut = detail::make_future<R>(detail::Ref<detail::State<R>>(st.get(), false));
    enqueue(id, b.take_payload(), b.take_items(),
            std::make_unique<detail::SubmitSink<R>>(std::move(st)));
    return fut;
  }

  std::unique_ptr<observe::TraceRecorder> trace_;  // destroyed after impl_
  std::unique_ptr<detail::ProcessPoolImpl> impl_;
  std::size_t workers_ = 0;
};

// ---- implementation ---------------------------------------------------------------------------

template <class R, class... P, class... A>
Future<R> ProcessPool::submit(R (*fn)(P...), A&&... args) {
  const FunctionId id = remote_id(fn);  // throws, naming fn, if it is not registered
  detail::PoolJobBuilder b(1);
  encode_call(b.begin_item(-1), fn, std::forward<A>(args)...);
  b.end_item();
  return enqueue_one<R>(id, b);
}

template <class R, class F, class In>
Future<detail::ChunkResult<R>> ProcessPool::submit_chunk(const F& f, std::vector<In>&& items,
                                                         std::size_t first_index) {
  const FunctionId id = detail::pool_function_id(f);
  detail::ChunkJob<R> job = detail::make_chunk_job<R>(f, items, first_index);
  if (job.batch)
    enqueue_batch(id, std::move(job.payload), items.size(), static_cast<std::int64_t>(first_index),
                  std::move(job.sink));
  else
    enqueue(id, std::move(job.payload), std::move(job.items), std::move(job.sink));
  return std::move(job.future);
}

template <class F, std::ranges::input_range Rg>
auto ProcessPool::imap(F&& f, Rg&& inputs, const MapOptions& opts) {
  using View = std::views::all_t<Rg>;
  using Fn = std::decay_t<F>;
  (void)detail::pool_function_id(f);  // an unregistered function fails here, not in a worker
  using Stream = detail::MapStream<ProcessPool, View, Fn>;
  auto fn = std::make_shared<Fn>(std::forward<F>(f));
  return MapRange<Stream>(std::make_unique<Stream>(*this, std::views::all(std::forward<Rg>(inputs)),
                                                   std::move(fn), opts, 50'000, 32768));
}

template <class F, std::ranges::input_range Rg>
auto ProcessPool::map(F&& f, Rg&& inputs, const MapOptions& opts) {
  return detail::map_through_imap(*this, std::forward<F>(f), std::forward<Rg>(inputs), opts);
}

template <class F, std::ranges::input_range Rg>
auto ProcessPool::starmap(F&& f, Rg&& inputs, const MapOptions& opts) {
  static_assert(detail::is_function_pointer_v<std::decay_t<F>>,
                "parx::ProcessPool::starmap needs a function registered with PARX_REMOTE");
  return map(detail::StarCall<std::decay_t<F>>{f}, std::forward<Rg>(inputs), opts);
}

static_assert(Executor<ProcessPool>);

}  // namespace parx
