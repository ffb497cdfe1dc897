// parx/thread_pool.hpp — ThreadPool: a work-stealing pool of threads (ThreadPoolExecutor,
// multiprocessing.pool.ThreadPool and TBB's task arena in one).
//
// Scheduling: each worker owns a Chase–Lev deque; it runs its own newest task first (cache-warm,
// depth-first) and, when empty, steals the oldest task of a random victim or takes from the
// shared queue that outside threads submit to. Idle workers spin briefly (PARX_SPIN_US, default
// 50 µs), then sleep on an event count, so a submit after that costs one futex wake; there are
// no lost wake-ups (a worker re-checks every queue after announcing it will sleep).
//
// Contract
//   * `submit(f, args...)` copies f and args into the task and returns Future<R>; any callable.
//   * `map` returns results in input order; `imap` yields lazily in input order, `imap_unordered`
//     in completion order; both pull input only as work drains (MapOptions::max_in_flight).
//   * `parallel_for(first, last, f[, grain])` calls f(i) (or f(b, e) for a block-taking f) for
//     every index; `parallel_reduce` combines chunk results in index order, so for a given input
//     and grain the result does not depend on the number of workers or on timing.
//   * map/starmap/imap tasks run on the pool's workers only (as in Python's pools, so state set
//     up by the per-worker initializer is always there); an outside caller waits. In
//     parallel_for/parallel_reduce the calling thread takes part (TBB/OpenMP semantics: with W
//     workers, W-1 helpers join the caller), running chunks of that loop only.
//   * A Future::get()/wait() on a worker runs other tasks while it waits, so nested parallelism
//     never deadlocks, even with one worker.
//   * An exception in a task reaches its future intact; other tasks are unaffected. For map and
//     parallel_for, the failing chunk with the lowest index wins, and no new chunk starts after a
//     failure.
//   * `shutdown({.wait, .cancel_pending})` (ShutdownOptions, executor.hpp): no new submissions
//     from outside the pool (tasks running on its workers may still submit, so nested work
//     finishes); with cancel_pending, queued tasks end Cancelled instead of running; with wait,
//     returns after the workers exit. The destructor is shutdown().
//
// Thread-safety: every member function may be called from any thread, including from tasks
// running on the pool, except that the destructor must not run on one of the pool's own workers.
//
// Example
//   parx::ThreadPool pool;                                 // one worker per core
//   auto f = pool.submit([](int a, int b) { return a + b; }, 2, 3);
//   std::vector<double> ys = pool.map(simulate, parx::range(1000));
//   pool.parallel_for(0, n, [&](long i) { y[i] = a * x[i] + y[i]; });
//   double s = pool.parallel_reduce(0L, n, 0.0, [&](long i) { return x[i]; }, std::plus<>{});
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "parx/detail/map_stream.hpp"
#include "parx/detail/task.hpp"
#include "parx/executor.hpp"
#include "parx/future.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/range.hpp"

namespace parx {

namespace detail {
class PoolCore;
struct PoolCoreDeleter {
  void operator()(PoolCore* p) const noexcept;
};
}  // namespace detail

class TaskGroup;

class ThreadPool {
 public:
  struct Options {
    // Number of worker threads; 0 (default): std::thread::hardware_concurrency().
    std::size_t workers = 0;
    // Runs first in every worker thread, with its index, before it takes any task. If it throws,
    // the constructor throws that exception (after stopping the workers).
    std::function<void(std::size_t)> initializer;
    // Thread names are "<name>-<index>" (truncated to 15 characters, as Linux requires).
    std::string name = "parx";
    // How long an idle worker spins looking for work before it sleeps. Negative (default):
    // PARX_SPIN_US from the environment, else 50 µs.
    std::chrono::microseconds spin{-1};
  };

  // A pool of `workers` threads (0: one per core).
  explicit ThreadPool(std::size_t workers = 0);
  explicit ThreadPool(const Options& opts);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  std::size_t workers() const noexcept;
  // The id this pool's observe events carry (observe::Event::executor_id): what a recorder
  // records alone with TraceRecorder::only(pool.id()).
  std::uint64_t id() const noexcept { return id_; }
  // Index of the calling thread among this pool's workers, or -1.
  int current_worker() const noexcept;
  bool is_shutdown() const noexcept;
  // Counters since construction (observe/metrics.hpp), a task being one item: a submit, an input
  // of a map, an index of parallel_for or parallel_reduce.
  observe::Counters counters() const noexcept;

  // Runs f(args...) on a worker.
  template <class F, class... A>
  auto submit(F&& f, A&&... args)
      -> Future<std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>>;

  // f over every input, results in input order. Returns void if f returns void.
  // (J: the checkpoint journal, chosen at the call: see parx/checkpoint.hpp.)
  template <class F, std::ranges::input_range R, class J = detail::journal_for<F>>
  auto map(F&& f, R&& inputs, const MapOptions& opts = {});
  // f(args...) for each tuple of args (Pool.starmap).
  template <class F, std::ranges::input_range R, class J = detail::journal_for<F>>
  auto starmap(F&& f, R&& inputs, const MapOptions& opts = {});
  // Lazy ordered map (opts.ordered = false gives completion order). An lvalue input is
  // referenced, not copied: keep it alive while iterating.
  template <class F, std::ranges::input_range R, class J = detail::journal_for<F>>
  auto imap(F&& f, R&& inputs, const MapOptions& opts = {});
  template <class F, std::ranges::input_range R, class J = detail::journal_for<F>>
  auto imap_unordered(F&& f, R&& inputs, const MapOptions& opts = {}) {
    MapOptions o = opts;
    o.ordered = false;
    return imap<F, R, J>(std::forward<F>(f), std::forward<R>(inputs), o);
  }

  // f(i) for i in [first, last), or f(b, e) per block if f takes two indices. `grain`: items per
  // chunk; 0 (default) = guided automatic chunking.
  template <std::integral I, class F>
  void parallel_for(I first, I last, F&& f, std::size_t grain = 0);

 private:
  // map through the chunked engine (lazy inputs, progress, checkpoint).
  template <class R, class J, class F, std::ranges::input_range Rg>
  auto map_chunked(F&& f, Rg&& inputs, const MapOptions& opts);

 public:
  // reduce over map(i) for i in [first, last), starting from `identity`; chunks are combined in
  // index order. `grain` 0 (default) = n/1024 rounded up (so the result does not depend on the
  // worker count).
  template <std::integral I, class T, class Map, class Reduce>
  T parallel_reduce(I first, I last, T identity, Map&& map, Reduce&& reduce, std::size_t grain = 0);

  // Stops accepting work from outside the pool; see the header comment.
  void shutdown(const ShutdownOptions& how = {});

 private:
  friend class TaskGroup;
  template <class Ex, class View, class F, class J>
  friend class detail::MapStream;

  template <class R, class Fn, class Args>
  class SubmitTask;

  // The map engine: submit(f) of a chunk of `items` inputs, with a name for observe events (read
  // while queuing).
  template <class F>
  auto submit_named(const char* name, std::size_t items, F&& f)
      -> Future<std::invoke_result_t<std::decay_t<F>>> {
    using R = std::invoke_result_t<std::decay_t<F>>;
    auto* t = new SubmitTask<R, std::decay_t<F>, std::tuple<>>(std::forward<F>(f), std::tuple<>());
    auto fut = detail::make_future<R>(detail::Ref<detail::State<R>>(t));
    t->name = name;
    t->items = static_cast<std::uint32_t>(items);
    schedule(t);
    return fut;
  }

  // Queues a task node (TaskGroup).
  void schedule(detail::TaskNode* t);
  // For TaskGroup: a lock-free deque lent to an outside thread (its owner), stealable
  // by the workers. acquire returns -1 when none is free or the caller is a worker.
  int acquire_external_slot() noexcept;
  void release_external_slot(int slot) noexcept;
  void schedule_to_slot(int slot, detail::TaskNode* t);
  // Pops and runs one task from the slot on the calling (owner) thread; false when empty.
  bool run_external_slot(int slot) noexcept;

  // Stamps `t` with a task id and reports TaskQueued, when anyone listens.
  void emit_queued(detail::TaskNode* t);

  // Runs body over [0, n) on the workers (and the caller, if it participates). Each index is
  // `scale` counted items, `items` in all (-1: n * scale).
  void run_loop(std::int64_t n, std::int64_t fixed_chunk, detail::LoopCtl::Body body, void* ctx,
                detail::LoopStats* stats, bool caller_participates, std::int64_t scale = 1,
                std::int64_t items = -1);

  std::unique_ptr<detail::PoolCore, detail::PoolCoreDeleter> core_;
  std::uint64_t id_;
};

// ---- implementation ---------------------------------------------------------------------------

template <class R, class Fn, class Args>
class ThreadPool::SubmitTask final : public detail::State<R>, public detail::TaskNode {
 public:
  SubmitTask(Fn f, Args args) : fn_(std::move(f)), args_(std::move(args)) {
    this->add_ref();  // one reference for the queue, one for the future
  }
  void run(detail::TaskObserver* obs) noexcept override {
    if (this->try_start()) {
      if (obs) obs->on(observe::EventKind::TaskStarted, task_id, nullptr, items);
      // The failure is kept in a copy taken before the state completes: once it completes, the
      // consumer may move the state's exception out. A map chunk's items that threw are counted
      // failed (the chunk itself ends with a value).
      std::exception_ptr seen;
      std::size_t failed_items = 0;
      auto call = [this, &seen, &failed_items](auto&&... a) -> decltype(auto) {
        try {
          if constexpr (detail::is_chunk_result_v<R>) {
            R r = std::invoke(fn_, std::forward<decltype(a)>(a)...);
            failed_items = r.errors.size();
            return r;
          } else {
            return std::invoke(fn_, std::forward<decltype(a)>(a)...);
          }
        } catch (...) {
          seen = std::current_exception();
          throw;
        }
      };
      std::apply([this, &call](auto&... a) { detail::fulfil<R>(*this, call, std::move(a)...); },
                 args_);
      if (obs) {
        if (this->status() == detail::StateBase::kValue) {  // an atomic read: safe after completion
          if (failed_items) obs->count(observe::EventKind::TaskFailed, failed_items);
          obs->on(observe::EventKind::TaskFinished, task_id, nullptr, items - failed_items);
        } else {
          obs->on(observe::EventKind::TaskFailed, task_id, &seen, items);
        }
      }
    } else if (obs) {
      obs->on(observe::EventKind::TaskCancelled, task_id, nullptr, items);
    }
    this->release();
  }
  void drop(detail::TaskObserver* obs) noexcept override {
    this->cancel();
    if (obs) obs->on(observe::EventKind::TaskCancelled, task_id, nullptr, items);
    this->release();
  }

 private:
  Fn fn_;
  Args args_;
};

template <class F, class... A>
auto ThreadPool::submit(F&& f, A&&... args)
    -> Future<std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>> {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<A>...>;
  using Task = SubmitTask<R, std::decay_t<F>, std::tuple<std::decay_t<A>...>>;
  auto* t = new Task(std::forward<F>(f), std::tuple<std::decay_t<A>...>(std::forward<A>(args)...));
  auto fut = detail::make_future<R>(detail::Ref<detail::State<R>>(t));  // adopts the future's ref
  if constexpr (std::is_pointer_v<std::decay_t<F>>)
    if (observe::active()) t->name = detail::registered_name(reinterpret_cast<const void*>(f));
  schedule(t);  // on failure schedule() cancels and releases the queue's reference
  return fut;
}

template <std::integral I, class F>
void ThreadPool::parallel_for(I first, I last, F&& f, std::size_t grain) {
  if (!(first < last)) return;
  const std::int64_t n = static_cast<std::int64_t>(last - first);
  struct Ctx {
    F& f;
    I first;
  } ctx{f, first};
  auto body = [](void* c, std::int64_t b, std::int64_t e) {
    auto& x = *static_cast<Ctx*>(c);
    if constexpr (std::is_invocable_v<F&, I, I>) {
      x.f(static_cast<I>(x.first + b), static_cast<I>(x.first + e));
    } else {
      for (std::int64_t i = b; i < e; ++i)
        x.f(static_cast<I>(x.first + i));
    }
  };
  run_loop(n, static_cast<std::int64_t>(grain), body, &ctx, nullptr, true);
}

template <std::integral I, class T, class Map, class Reduce>
T ThreadPool::parallel_reduce(I first, I last, T identity, Map&& map, Reduce&& reduce,
                              std::size_t grain) {
  if (!(first < last)) return identity;
  const std::int64_t n = static_cast<std::int64_t>(last - first);
  const std::int64_t g =
      grain ? static_cast<std::int64_t>(grain) : std::max<std::int64_t>(1, (n + 1023) / 1024);
  const std::int64_t nchunks = (n + g - 1) / g;
  std::vector<std::optional<T>> partial(static_cast<std::size_t>(nchunks));
  struct Ctx {
    Map& map;
    Reduce& reduce;
    const T& identity;
    I first;
    std::int64_t n, g;
    std::vector<std::optional<T>>& partial;
  } ctx{map, reduce, identity, first, n, g, partial};
  auto body = [](void* c, std::int64_t cb, std::int64_t ce) {
    auto& x = *static_cast<Ctx*>(c);
    for (std::int64_t k = cb; k < ce; ++k) {
      const std::int64_t b = k * x.g, e = std::min(x.n, b + x.g);
      T acc = x.identity;
      for (std::int64_t i = b; i < e; ++i)
        acc = x.reduce(std::move(acc), x.map(static_cast<I>(x.first + i)));
      x.partial[static_cast<std::size_t>(k)].emplace(std::move(acc));
    }
  };
  run_loop(nchunks, 1, body, &ctx, nullptr, true, g, n);
  T acc = std::move(identity);
  for (auto& p : partial)
    acc = reduce(std::move(acc), std::move(*p));
  return acc;
}

namespace detail {
// Result slots a parallel map writes into concurrently (std::vector<bool> would race).
template <class R>
struct Slot {
  R value;
};
}  // namespace detail

template <class F, std::ranges::input_range Rg, class J>
auto ThreadPool::map(F&& f, Rg&& inputs, const MapOptions& opts) {
  using In = std::ranges::range_reference_t<Rg>;
  using R = std::invoke_result_t<F&, In>;
  const std::int64_t t0 = detail::now_ns();
  auto write_stats = [&](std::size_t items, std::size_t chunks, std::size_t chunksize) {
    if (opts.stats)
      *opts.stats = {items, chunks, chunksize, static_cast<double>(detail::now_ns() - t0) * 1e-9,
                     0,     {}};
  };
  if constexpr (std::ranges::random_access_range<Rg> && std::ranges::sized_range<Rg>) {
    // Observed maps (progress, checkpoint, or anyone listening to events: a trace, the
    // dashboard) run as chunk tasks, so they show up task by task.
    if (detail::map_observed(opts) || observe::active())
      return map_chunked<R, J>(std::forward<F>(f), std::forward<Rg>(inputs), opts);
    const std::int64_t n = static_cast<std::int64_t>(std::ranges::size(inputs));
    auto first = std::ranges::begin(inputs);
    if constexpr (std::is_void_v<R>) {
      struct Ctx {
        F& f;
        decltype(first) in;
      } ctx{f, first};
      auto body = [](void* c, std::int64_t b, std::int64_t e) {
        auto& x = *static_cast<Ctx*>(c);
        for (std::int64_t i = b; i < e; ++i)
          std::invoke(x.f, x.in[i]);
      };
      detail::LoopStats st;
      if (n > 0) run_loop(n, static_cast<std::int64_t>(opts.chunksize), body, &ctx, &st, false);
      write_stats(static_cast<std::size_t>(n), st.chunks, st.chunksize);
      return;
    } else {
      std::vector<std::optional<R>> slots(static_cast<std::size_t>(n));
      struct Ctx {
        F& f;
        decltype(first) in;
        std::vector<std::optional<R>>& out;
      } ctx{f, first, slots};
      auto body = [](void* c, std::int64_t b, std::int64_t e) {
        auto& x = *static_cast<Ctx*>(c);
        for (std::int64_t i = b; i < e; ++i)
          x.out[static_cast<std::size_t>(i)].emplace(std::invoke(x.f, x.in[i]));
      };
      detail::LoopStats st;
      if (n > 0) run_loop(n, static_cast<std::int64_t>(opts.chunksize), body, &ctx, &st, false);
      std::vector<R> out;
      out.reserve(slots.size());
      for (auto& s : slots)
        out.push_back(std::move(*s));
      write_stats(static_cast<std::size_t>(n), st.chunks, st.chunksize);
      return out;
    }
  } else {
    return map_chunked<R, J>(std::forward<F>(f), std::forward<Rg>(inputs), opts);
  }
}

template <class R, class J, class F, std::ranges::input_range Rg>
auto ThreadPool::map_chunked(F&& f, Rg&& inputs, const MapOptions& opts) {
  MapOptions o = opts;
  o.ordered = true;
  // Chunks of ~1 ms (imap's default is 100 µs, for a quick first result): the calling thread,
  // which collects the chunks, then takes almost no core from the workers, and a progress bar or
  // a trace still sees a thousand chunks a second.
  if (!o.target_chunk_us) o.target_chunk_us = map_tuning::thread_map.target_chunk_us;
  auto stream = imap<F, Rg, J>(std::forward<F>(f), std::forward<Rg>(inputs), o);
  if constexpr (std::is_void_v<R>) {
    while (stream.next()) {
    }
    return;
  } else {
    return stream.to_vector();
  }
}

template <class F, std::ranges::input_range Rg, class J>
auto ThreadPool::starmap(F&& f, Rg&& inputs, const MapOptions& opts) {
  auto g = [g = std::forward<F>(f)](auto&& tup) mutable { return std::apply(g, tup); };
  return map<decltype(g), Rg, J>(std::move(g), std::forward<Rg>(inputs), opts);
}

template <class F, std::ranges::input_range Rg, class J>
auto ThreadPool::imap(F&& f, Rg&& inputs, const MapOptions& opts) {
  using View = std::views::all_t<Rg>;
  using Fn = std::decay_t<F>;
  using Stream = detail::MapStream<ThreadPool, View, Fn, J>;
  auto fn = std::make_shared<Fn>(std::forward<F>(f));
  return MapRange<Stream>(std::make_unique<Stream>(
      *this, std::views::all(std::forward<Rg>(inputs)), std::move(fn), opts,
      map_tuning::thread_imap.target_chunk_us, map_tuning::thread_imap.max_chunk));
}

static_assert(Executor<ThreadPool>);

}  // namespace parx
