// parx/detail/remote_pool.hpp — the public surface of every pool that runs registered functions
// somewhere else (ProcessPool, ClusterPool), written once over a transport.
//
// A pool derives from RemotePool<Pool> and supplies only its transport:
//   * `void enqueue(detail::RemoteJob&& job)`: queue one job (one submit, or one chunk of a map)
//     and complete job.sink with each item's outcome; throws ExecutorShutdown after shutdown;
//   * `void require_driver(const char* what) const`: throws where this process cannot submit
//     (a ClusterPool's serving rank); a no-op elsewhere;
//   * `observe::Counters read_counters() const` and `bool transport_shut_down() const noexcept`;
//   * `static constexpr MapTuning kMapTuning`: its map engine's defaults (executor.hpp);
//   * `friend class detail::RemotePool<Pool>;` (the members above stay private);
//   * its constructor sets `workers_` and `id_` (protected here).
// RemotePool then provides submit (and its compile-time refusal of lambdas), map, starmap, imap,
// imap_unordered and, for the lazy map engine, submit_chunk, and the accessors every pool has
// (workers, id, counters, is_shutdown): the same code, the same errors, the same batching on
// every transport. The job, result and error formats on the wire are the
// engine's (src/engine/wire.hpp); what reaches a transport here is a job payload, its item table
// and the sink that turns outcomes into a future.
//
// Thread-safety: every member may be called from any thread (the transports lock what they
// share).
#pragma once

#include <algorithm>
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

#include "parx/checkpoint.hpp"
#include "parx/codec.hpp"
#include "parx/detail/map_stream.hpp"
#include "parx/errors.hpp"
#include "parx/executor.hpp"
#include "parx/future.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/range.hpp"
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

// One job for a transport: a submit (one item) or a chunk of a map.
struct RemoteJob {
  FunctionId fn = 0;
  Bytes payload;                 // the job payload; its prefix is filled in by engine::seal_job
  std::vector<PoolItem> items;   // plain job: where each item lies (empty for a batch)
  std::size_t n = 0;             // items
  std::int64_t first_index = 0;  // batch: task index of item 0
  bool batch = false;            // packed arguments (batch_traits)
  std::unique_ptr<PoolSink> sink;
};

template <class Pool>
class RemotePool {
 public:
  // Task slots: the worker processes of a ProcessPool; over every rank that runs tasks, for a
  // ClusterPool.
  std::size_t workers() const noexcept { return workers_; }
  // The id this pool's observe events carry (observe::Event::executor_id): what a recorder
  // records alone with TraceRecorder::only(pool.id()).
  std::uint64_t id() const noexcept { return id_; }
  // Counters since construction (observe/metrics.hpp), a task being one item. A ClusterPool's
  // serving rank has none to give (InvalidState).
  observe::Counters counters() const {
    self().require_driver("counters");
    return self().read_counters();
  }
  // True once shutdown has been called (no new work is accepted).
  bool is_shutdown() const noexcept { return self().transport_shut_down(); }

  // Runs registered `fn(args...)` in a worker (a worker process, a rank).
  template <class R, class... P, class... A>
  Future<R> submit(R (*fn)(P...), A&&... args) {
    self().require_driver("submit");
    const FunctionId id = remote_id(fn);  // throws, naming fn, if it is not registered
    PoolJobBuilder b(1);
    encode_call(b.begin_item(-1), fn, std::forward<A>(args)...);
    b.end_item();
    return submit_built<R>(id, b);
  }
  template <class F, class... A>
  requires(!is_function_pointer_v<std::decay_t<F>>) Future<int> submit(F&&, A&&...) {
    static_assert(always_false_v<F>,
                  "parx's process and cluster pools run functions registered with PARX_REMOTE: a "
                  "lambda, functor or std::function cannot cross a process boundary. Write a "
                  "function, add PARX_REMOTE(name) after it, and pass the function");
    return {};
  }

  // Runs the function registered under `id` with arguments encoded by encode_call (for layers
  // built on a pool). A worker refuses an id it does not know: the future fails with TaskError.
  template <class R>
  Future<R> submit_encoded(FunctionId id, std::span<const std::byte> args) {
    self().require_driver("submit");
    PoolJobBuilder b(1);
    b.begin_item_aligned(-1).write(args.data(), args.size());
    b.end_item();
    return submit_built<R>(id, b);
  }

  // fn over every input, results in input order (Pool.map).
  template <class F, std::ranges::input_range Rg>
  auto map(F&& f, Rg&& inputs, const MapOptions& opts = {}) {
    return map_through_imap(self(), std::forward<F>(f), std::forward<Rg>(inputs), opts);
  }
  // fn(args...) for each tuple of args (Pool.starmap).
  template <class F, std::ranges::input_range Rg>
  auto starmap(F&& f, Rg&& inputs, const MapOptions& opts = {}) {
    static_assert(is_function_pointer_v<std::decay_t<F>>,
                  "starmap on a process or cluster pool needs a function registered with "
                  "PARX_REMOTE");
    return map(StarCall<std::decay_t<F>>{f}, std::forward<Rg>(inputs), opts);
  }
  // Lazy ordered map (opts.ordered = false: completion order). An lvalue input is referenced:
  // keep it alive while iterating.
  template <class F, std::ranges::input_range Rg>
  auto imap(F&& f, Rg&& inputs, const MapOptions& opts = {}) {
    self().require_driver("imap");
    using View = std::views::all_t<Rg>;
    using Fn = std::decay_t<F>;
    (void)pool_function_id(f);  // an unregistered function fails here, not in a worker
    using Stream = MapStream<Pool, View, Fn, CodecJournal>;
    auto fn = std::make_shared<Fn>(std::forward<F>(f));
    return MapRange<Stream>(std::make_unique<Stream>(
        self(), std::views::all(std::forward<Rg>(inputs)), std::move(fn), opts,
        Pool::kMapTuning.target_chunk_us, Pool::kMapTuning.max_chunk));
  }
  template <class F, std::ranges::input_range Rg>
  auto imap_unordered(F&& f, Rg&& inputs, const MapOptions& opts = {}) {
    MapOptions o = opts;
    o.ordered = false;
    return imap(std::forward<F>(f), std::forward<Rg>(inputs), o);
  }

 protected:
  RemotePool() = default;
  ~RemotePool() = default;
  std::size_t workers_ = 0;
  std::uint64_t id_ = 0;

 private:
  template <class Ex, class View, class F, class J>
  friend class MapStream;

  Pool& self() noexcept { return static_cast<Pool&>(*this); }
  const Pool& self() const noexcept { return static_cast<const Pool&>(*this); }

  // The lazy map engine's entry: a chunk of items, one outcome per item.
  template <class R, class F, class In>
  Future<ChunkResult<R>> submit_chunk(const F& f, std::vector<In>&& items,
                                      std::size_t first_index) {
    const FunctionId id = pool_function_id(f);
    ChunkJob<R> cj = make_chunk_job<R>(f, items, first_index);
    RemoteJob job;
    job.fn = id;
    job.payload = std::move(cj.payload);
    job.items = std::move(cj.items);
    job.n = items.size();
    job.first_index = static_cast<std::int64_t>(first_index);
    job.batch = cj.batch;
    job.sink = std::move(cj.sink);
    self().enqueue(std::move(job));
    return std::move(cj.future);
  }

  // Queues the one-item job built in `b`; its future completes with the item's outcome.
  template <class R>
  Future<R> submit_built(FunctionId id, PoolJobBuilder& b) {
    Ref<State<R>> st(new State<R>());
    auto fut = make_future<R>(Ref<State<R>>(st.get(), false));
    RemoteJob job;
    job.fn = id;
    job.payload = b.take_payload();
    job.items = b.take_items();
    job.n = 1;
    job.first_index = -1;
    job.sink = std::make_unique<SubmitSink<R>>(std::move(st));
    self().enqueue(std::move(job));
    return fut;
  }
};

}  // namespace detail
}  // namespace parx
