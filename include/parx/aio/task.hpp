// parx/aio/task.hpp — asyncio for C++20 on Asio: coroutine tasks, the event loop, spawn,
// structured concurrency (TaskGroup, gather), time limits (wait_for, sleep), cancellation, and
// bridges to parx's pools (wrap a Future, to_thread).
//
// A Task<T> is Asio's awaitable<T>: every Asio operation awaits with asio::use_awaitable, and
// every parx::aio function returns a Task. aio::run(main()) runs an event loop until main
// returns, then cancels whatever main left running and waits for it: no work outlives run().
//
// Contract
//   * run(task, {.threads = N}) drives the loop from N threads (default 1). With one thread,
//     tasks interleave only at co_await, as in asyncio. With N > 1, each spawned task runs on its
//     own strand: a task never runs on two threads at once, but different tasks may run at the
//     same time, so data shared between tasks needs the aio primitives (sync.hpp, all
//     thread-safe) or a mutex. run() inside a running loop throws parx::InvalidState.
//   * spawn(task) starts a task on the current loop and returns its handle. The loop owns the
//     task: dropping the handle neither cancels nor loses it (unlike asyncio's weakly held
//     tasks). `co_await h.join()` returns its result or rethrows its exception.
//   * Cancellation (handle.cancel(), TaskGroup failure, wait_for's deadline, the end of run())
//     reaches the task at its current co_await, or at its next one. Every aio wait, timer, socket
//     operation and Future bridge is cancellable. A cancelled task ends with parx::Cancelled.
//   * TaskGroup: the first failure cancels the other tasks; join() waits for all and throws one
//     aio::ExceptionGroup holding every failure. gather() returns all results, or rethrows the
//     first failure after cancelling the rest.
//   * wait_for(task, d) returns the task's result, or cancels it and throws parx::TimeoutError.
//     Timeout scopes: timeout(d, block) puts a whole block of awaits under one limit, and a
//     Deadline shares one deadline among separate awaits (`co_await dl(task)`).
//   * wrap(future) awaits a parx::Future (ThreadPool, ProcessPool…) without blocking the loop;
//     cancelling the wait cancels the future's task if it has not started.
//
//   * A lambda coroutine keeps its captures in the closure object, not in the coroutine frame: a
//     task made from a capturing lambda must not outlive the statement that made it. For spawn,
//     TaskGroup and gather, write `[](Args... a) -> Task<T> {...}(args...)`: parameters live in
//     the frame.
//
// Thread-safety: TaskHandle::cancel and TaskGroup::cancel may be called from any thread; the
// rest is called from tasks of the loop.
//
// Example
//   parx::aio::Task<int> fetch(int i) {
//     co_await parx::aio::sleep(std::chrono::milliseconds(10));
//     co_return i * i;
//   }
//   parx::aio::Task<int> amain() {
//     auto [a, b] = co_await parx::aio::gather(fetch(2), fetch(3));
//     parx::ProcessPool& pool = ...;
//     double y = co_await parx::aio::wrap(pool.submit(simulate, 7));   // loop keeps serving
//     co_return a + b;
//   }
//   int main() { return parx::aio::run(amain()) == 13 ? 0 : 1; }
#pragma once

#include <algorithm>
#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "parx/errors.hpp"
#include "parx/future.hpp"
#include "parx/thread_pool.hpp"

namespace parx::aio {

template <class T = void>
using Task = asio::awaitable<T>;

// Several tasks of a TaskGroup failed (or one did): all their exceptions, in the order they
// failed.
class ExceptionGroup : public Error {
 public:
  explicit ExceptionGroup(std::vector<std::exception_ptr> errors);
  const std::vector<std::exception_ptr>& errors() const noexcept { return errors_; }

 private:
  std::vector<std::exception_ptr> errors_;
};

struct RunOptions {
  // Threads that drive the loop (this one included). 1: asyncio's model.
  std::size_t threads = 1;
};

namespace detail {

template <class T>
using unit_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// A pending wait that completes once: notified from any thread, or cancelled through the slot of
// the waiting coroutine. The completion runs on the waiter's own executor.
class Waiter {
 public:
  virtual ~Waiter() = default;
  // Completes the wait with `ec` unless it already completed; true if this call completed it.
  bool fire(std::error_code ec) {
    {
      std::lock_guard lk(mu_);
      if (done_) return false;
      done_ = true;
    }
    complete(ec);
    return true;
  }

 protected:
  virtual void complete(std::error_code ec) = 0;

 private:
  std::mutex mu_;
  bool done_ = false;
};

template <class Handler>
class WaiterImpl final : public Waiter, public std::enable_shared_from_this<WaiterImpl<Handler>> {
 public:
  explicit WaiterImpl(Handler h)
      : handler_(std::move(h)), slot_(asio::get_associated_cancellation_slot(handler_)) {}
  void connect() {
    if (!slot_.is_connected()) return;
    slot_.assign([weak = this->weak_from_this()](asio::cancellation_type) {
      if (auto self = weak.lock()) self->fire(asio::error::operation_aborted);
    });
  }

 private:
  void complete(std::error_code ec) override {
    auto ex = asio::get_associated_executor(handler_);
    asio::post(ex, [self = this->shared_from_this(), ec]() mutable {
      self->slot_.clear();
      std::move(self->handler_)(ec);
    });
  }
  Handler handler_;
  asio::cancellation_slot slot_;
};

// Waits until `enlist(waiter)` has arranged for waiter->fire() to be called. Throws
// parx::Cancelled if the waiting task is cancelled first.
//
// `enlist` is taken by reference and must be a named object of the caller: g++ 12 destroys a
// non-trivial temporary argument of a coroutine call inside co_await twice.
template <class Enlist>
Task<void> wait_on(const Enlist& enlist) {
  auto [ec] =
      co_await asio::async_initiate<const asio::experimental::as_tuple_t<asio::use_awaitable_t<>>,
                                    void(std::error_code)>(
          [&enlist](auto handler) {
            auto w = std::make_shared<WaiterImpl<decltype(handler)>>(std::move(handler));
            w->connect();
            enlist(std::shared_ptr<Waiter>(w));
          },
          asio::experimental::as_tuple(asio::use_awaitable));
  if (ec) throw Cancelled("parx::Cancelled: the task was cancelled while waiting");
}

// Waiters queued on a condition; notify_one skips waiters that were cancelled meanwhile.
class WaitList {
 public:
  void add(std::shared_ptr<Waiter> w) { q_.push_back(std::move(w)); }
  bool notify_one() {
    while (!q_.empty()) {
      auto w = std::move(q_.front());
      q_.pop_front();
      if (w->fire({})) return true;
    }
    return false;
  }
  void notify_all() {
    auto q = std::move(q_);
    q_.clear();
    for (auto& w : q)
      w->fire({});
  }
  bool empty() const noexcept { return q_.empty(); }

 private:
  std::deque<std::shared_ptr<Waiter>> q_;
};

class TaskStateBase;

// The event loop: an io_context, the tasks it owns, and a thread pool for to_thread.
class Loop {
 public:
  explicit Loop(std::size_t threads);
  ~Loop();
  asio::io_context& context() noexcept { return ctx_; }
  std::size_t threads() const noexcept { return threads_; }
  // An executor for a new task: the context's, or a fresh strand when threads > 1.
  asio::any_io_executor task_executor();
  void add(const std::shared_ptr<TaskStateBase>& t);
  void remove(const std::shared_ptr<TaskStateBase>& t);
  // Cancels every live task (the end of run()).
  void cancel_all();
  ThreadPool& blocking_pool();
  // Runs the context on `threads` threads until it has no work.
  void run();

 private:
  asio::io_context ctx_;
  std::size_t threads_;
  std::mutex mu_;
  std::unordered_set<std::shared_ptr<TaskStateBase>> live_;
  // Held while any task lives: a task waiting on a Future or an aio primitive has no Asio
  // operation pending, and the context must not run out of work under it.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::unique_ptr<ThreadPool> pool_;
};

// The loop running on this thread (nullptr outside run()).
Loop* current_loop() noexcept;
Loop& require_loop(const char* what);

class TaskStateBase : public std::enable_shared_from_this<TaskStateBase> {
 public:
  virtual ~TaskStateBase() = default;
  void cancel();
  bool done() const {
    std::lock_guard lk(mu_);
    return done_;
  }
  bool cancelled() const {
    std::lock_guard lk(mu_);
    return done_ && cancelled_;
  }
  // Called once, on the task's executor, when its coroutine ends.
  void finish(std::exception_ptr e);
  Task<void> wait();
  std::exception_ptr error() const {
    std::lock_guard lk(mu_);
    return error_;
  }
  // Runs when the task ends (TaskGroup bookkeeping); called with no lock held.
  std::function<void(TaskStateBase&)> on_finish;
  asio::any_io_executor executor;
  asio::cancellation_signal signal;

 protected:
  mutable std::mutex mu_;
  bool done_ = false;
  bool cancel_requested_ = false;
  bool cancelled_ = false;
  std::exception_ptr error_;
  WaitList joiners_;
};

template <class T>
class TaskState final : public TaskStateBase {
 public:
  std::optional<unit_t<T>> value;
};

template <class T>
Task<void> task_body(std::shared_ptr<TaskState<T>> st, Task<T> t) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(t);
    st->value.emplace();
  } else {
    st->value.emplace(co_await std::move(t));
  }
}

template <class T>
std::shared_ptr<TaskState<T>> start(Loop& loop, Task<T> t,
                                    std::function<void(TaskStateBase&)> on_finish = {}) {
  auto st = std::make_shared<TaskState<T>>();
  st->executor = loop.task_executor();
  st->on_finish = std::move(on_finish);
  loop.add(st);
  asio::co_spawn(st->executor, task_body<T>(st, std::move(t)),
                 asio::bind_cancellation_slot(st->signal.slot(), [st, &loop](std::exception_ptr e) {
                   st->finish(std::move(e));
                   loop.remove(st);
                 }));
  return st;
}

template <class T>
T take_result(TaskState<T>& st) {
  if (auto e = st.error()) std::rethrow_exception(e);
  if constexpr (!std::is_void_v<T>) return std::move(*st.value);
}

}  // namespace detail

// A spawned task. Copyable (all copies refer to the same task).
template <class T>
class TaskHandle {
 public:
  TaskHandle() = default;
  explicit TaskHandle(std::shared_ptr<detail::TaskState<T>> st) : st_(std::move(st)) {}

  // Waits for the task; returns its result or rethrows its exception (parx::Cancelled if it was
  // cancelled). Cancelling the waiting task does not cancel this one.
  Task<T> join() const {
    check();
    return join_state(st_);
  }
  // Requests cancellation: the task sees it at its current or next co_await. Any thread.
  void cancel() const {
    if (st_) st_->cancel();
  }
  bool done() const { return st_ && st_->done(); }
  bool cancelled() const { return st_ && st_->cancelled(); }
  // The result of a finished task (rethrows its exception); parx::InvalidState if not done.
  T result() const {
    check();
    if (!st_->done())
      throw InvalidState("parx::aio::TaskHandle::result: the task has not finished");
    return detail::take_result(*st_);
  }

 private:
  void check() const {
    if (!st_) throw InvalidState("parx::aio::TaskHandle: empty handle");
  }
  // A free coroutine owning the state: the handle may go away while the join is pending.
  static Task<T> join_state(std::shared_ptr<detail::TaskState<T>> st) {
    co_await st->wait();
    co_return detail::take_result(*st);
  }
  std::shared_ptr<detail::TaskState<T>> st_;
};

// Runs `main` on a new event loop until it finishes, then cancels and awaits every task it left
// running; returns main's result or rethrows its exception.
template <class T>
T run(Task<T> main, RunOptions opts = {}) {
  if (detail::current_loop())
    throw InvalidState("parx::aio::run: called from inside a running loop; co_await the task");
  detail::Loop loop(opts.threads);
  auto st = detail::start<T>(loop, std::move(main),
                             [&loop](detail::TaskStateBase&) { loop.cancel_all(); });
  loop.run();
  if (!st->done()) throw InvalidState("parx::aio::run: the loop stopped before main finished");
  return detail::take_result(*st);
}

// Starts `t` on the current loop. The loop owns it until it ends.
template <class T>
TaskHandle<T> spawn(Task<T> t) {
  return TaskHandle<T>(detail::start<T>(detail::require_loop("spawn"), std::move(t)));
}

// Structured concurrency (asyncio.TaskGroup): tasks spawned in the group; the first failure
// cancels the others; join() waits for all of them and throws ExceptionGroup if any failed.
// Destroying a group that was not joined cancels its tasks (they end on the loop).
class TaskGroup {
 public:
  TaskGroup();
  ~TaskGroup();
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  struct State {
    std::mutex mu;
    std::vector<std::weak_ptr<detail::TaskStateBase>> tasks;
    std::size_t running = 0;
    bool failed = false;
    bool cancelled = false;
    std::vector<std::exception_ptr> errors;
    detail::WaitList idle;
    void ended(detail::TaskStateBase& s);
    void cancel_all();
  };

  // Throws parx::InvalidState once a task of the group has failed or the group was cancelled.
  template <class T>
  TaskHandle<T> spawn(Task<T> t) {
    auto& loop = detail::require_loop("TaskGroup::spawn");
    enter();
    auto st =
        detail::start<T>(loop, std::move(t), [g = g_](detail::TaskStateBase& s) { g->ended(s); });
    track(st);
    return TaskHandle<T>(std::move(st));
  }
  // Waits until every task ended. If the waiting task is cancelled, the group's tasks are
  // cancelled and awaited before parx::Cancelled propagates.
  Task<void> join();
  void cancel();
  std::size_t size() const;

 private:
  void enter();
  void track(const std::shared_ptr<detail::TaskStateBase>& t);
  std::shared_ptr<State> g_;
};

// Runs the tasks concurrently; returns their results in order, or rethrows the first failure
// after cancelling (and awaiting) the others. void tasks give std::monostate.
template <class... T>
Task<std::tuple<detail::unit_t<T>...>> gather(Task<T>... tasks) {
  TaskGroup g;
  std::tuple<TaskHandle<T>...> hs{g.spawn(std::move(tasks))...};  // braces: started in order
  try {
    co_await g.join();
  } catch (const ExceptionGroup& eg) {
    std::rethrow_exception(eg.errors().front());
  }
  co_return std::apply(
      [](auto&... h) {
        return std::tuple<detail::unit_t<T>...>{[&h]() -> detail::unit_t<T> {
          if constexpr (std::is_void_v<T>) {
            h.result();
            return {};
          } else {
            return h.result();
          }
        }()...};
      },
      hs);
}

template <class T>
Task<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> gather(
    std::vector<Task<T>> tasks) {
  TaskGroup g;
  std::vector<TaskHandle<T>> hs;
  hs.reserve(tasks.size());
  for (auto& t : tasks)
    hs.push_back(g.spawn(std::move(t)));
  try {
    co_await g.join();
  } catch (const ExceptionGroup& eg) {
    std::rethrow_exception(eg.errors().front());
  }
  if constexpr (!std::is_void_v<T>) {
    std::vector<T> out;
    out.reserve(hs.size());
    for (auto& h : hs)
      out.push_back(h.result());
    co_return out;
  }
}

// Sleeps for `d` (cancellable).
Task<void> sleep(std::chrono::steady_clock::duration d);

namespace detail {

template <class A>
struct task_value;
template <class T, class E>
struct task_value<asio::awaitable<T, E>> {
  using type = T;
};

// `t`'s result, or parx::TimeoutError naming `who` and `limit` once `d` has passed.
template <class T>
Task<T> wait_timed(Task<T> t, std::chrono::steady_clock::duration d, const char* who,
                   std::chrono::steady_clock::duration limit) {
  auto ex = co_await asio::this_coro::executor;
  std::optional<detail::unit_t<T>> out;
  auto body = [](Task<T> task, std::optional<detail::unit_t<T>>& slot) -> Task<void> {
    if constexpr (std::is_void_v<T>) {
      co_await std::move(task);
      slot.emplace();
    } else {
      slot.emplace(co_await std::move(task));
    }
  };
  asio::steady_timer timer(ex, d);
  auto [order, e, ec] =
      co_await asio::experimental::make_parallel_group(
          asio::co_spawn(ex, body(std::move(t), out), asio::experimental::deferred),
          timer.async_wait(asio::experimental::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  (void)ec;
  if (order[0] == 1) {
    throw TimeoutError(
        std::string("parx::TimeoutError: parx::aio::") + who + ": not finished within " +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()) +
        " ms");
  }
  if (e) std::rethrow_exception(e);
  if constexpr (!std::is_void_v<T>) co_return std::move(*out);
}

}  // namespace detail

// `t`'s result, or parx::TimeoutError once `d` has passed (t is then cancelled and awaited).
template <class T, class Rep, class Period>
Task<T> wait_for(Task<T> t, std::chrono::duration<Rep, Period> d) {
  const auto dd = std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
  return detail::wait_timed(std::move(t), dd, "wait_for", dd);
}

// As wait_for, with a deadline.
template <class T>
Task<T> wait_until(Task<T> t, std::chrono::steady_clock::time_point deadline) {
  const auto d = std::max(std::chrono::steady_clock::duration::zero(),
                          deadline - std::chrono::steady_clock::now());
  return detail::wait_timed(std::move(t), d, "wait_until", d);
}

// A timeout scope: one deadline shared by several awaits (asyncio.timeout, Trio's fail_at).
// Each `co_await dl(task)` gets only the time left; once the deadline has passed, the awaited
// task is cancelled and parx::TimeoutError is thrown. A Deadline is a value: copy it into the
// tasks a block spawns, nest a shorter one inside, ask what is left.
//   parx::aio::Deadline dl(std::chrono::seconds(2));
//   auto hello = co_await dl(stream.read_line());
//   auto body  = co_await dl(stream.read_frame());     // both together within 2 s
class Deadline {
 public:
  using clock = std::chrono::steady_clock;
  template <class Rep, class Period>
  explicit Deadline(std::chrono::duration<Rep, Period> d)
      : limit_(std::chrono::duration_cast<clock::duration>(d)), when_(clock::now() + limit_) {}
  static Deadline at(clock::time_point when) { return Deadline(when, when - clock::now()); }
  clock::time_point when() const noexcept { return when_; }
  // Time left (zero once passed).
  clock::duration remaining() const {
    return std::max(clock::duration::zero(), when_ - clock::now());
  }
  bool expired() const { return clock::now() >= when_; }
  // The earlier of this deadline and `d` from now (an inner, tighter scope).
  template <class Rep, class Period>
  Deadline within(std::chrono::duration<Rep, Period> d) const {
    const auto other = clock::now() + std::chrono::duration_cast<clock::duration>(d);
    return other < when_ ? Deadline(other, std::chrono::duration_cast<clock::duration>(d)) : *this;
  }
  // `t` under this deadline.
  template <class T>
  Task<T> operator()(Task<T> t) const {
    return detail::wait_timed(std::move(t), when_ - clock::now(), "Deadline", limit_);
  }

 private:
  Deadline(clock::time_point when, clock::duration limit) : limit_(limit), when_(when) {}
  clock::duration limit_;
  clock::time_point when_;
};

// A block of awaits under one time limit: runs `block()` (a callable returning a Task, such as a
// lambda coroutine) and returns its result, or cancels it and throws parx::TimeoutError once `d`
// has passed. The callable is kept alive until the block ends, so the lambda may capture. (With
// g++ 12, a lambda capturing by value something with a destructor must be named before the
// co_await, not written inside it: see docs/aio.md.)
//   auto reply = co_await parx::aio::timeout(std::chrono::seconds(1), [&]() -> Task<std::string> {
//     co_await s.write("ping\n");
//     co_return *co_await s.read_line();
//   });
template <class Rep, class Period, class F>
requires std::invocable<F&>
auto timeout(std::chrono::duration<Rep, Period> d, F block)
    -> Task<typename detail::task_value<std::invoke_result_t<F&>>::type> {
  const auto dd = std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
  co_return co_await detail::wait_timed(block(), dd, "timeout", dd);
}

// Awaits a parx::Future without blocking the loop: its value, its exception, or parx::Cancelled.
// If the waiting task is cancelled, the future is cancelled too (which stops its task if it has
// not started) and the wait ends with parx::Cancelled.
template <class T>
Task<T> wrap(Future<T> f) {
  if (!f.valid()) throw InvalidState("parx::aio::wrap: an empty Future");
  if (!f.ready()) {
    auto* st = parx::detail::state_of(f);
    try {
      const auto enlist = [st](std::shared_ptr<detail::Waiter> w) {
        parx::detail::on_complete(*st, [w](parx::detail::StateBase&) noexcept { w->fire({}); });
      };
      co_await detail::wait_on(enlist);
    } catch (const Cancelled&) {
      f.cancel();
      throw;
    }
  }
  co_return f.get();
}

// Runs blocking `fn(args...)` on the loop's thread pool (one thread per core, created on first
// use) and awaits it without blocking the loop.
template <class F, class... A>
auto to_thread(F&& fn, A&&... args) {
  auto& pool = detail::require_loop("to_thread").blocking_pool();
  return wrap(pool.submit(std::forward<F>(fn), std::forward<A>(args)...));
}

// As to_thread, on a given executor (ThreadPool, ProcessPool: anything with submit).
template <class Ex, class F, class... A>
requires requires(Ex& e, F&& f, A&&... a) {
  e.submit(std::forward<F>(f), std::forward<A>(a)...);
}
auto run_in(Ex& ex, F&& fn, A&&... args) {
  return wrap(ex.submit(std::forward<F>(fn), std::forward<A>(args)...));
}

}  // namespace parx::aio
