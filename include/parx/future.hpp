// parx/future.hpp — Future<T> and Promise<T>: the one result type of every parx executor.
//
// A Future is the read end of a single-assignment slot; a Promise (or an executor's task) is the
// write end. Unlike std::future, a parx Future supports continuations (`then`), cancellation of
// work that has not started, timed waits that throw, `co_await`, and *helping*: `get()` called
// on a pool worker runs other queued tasks instead of blocking the thread, so a task that submits
// sub-tasks and waits on them never deadlocks, even on a one-worker pool.
//
// Contract
//   * A Future is move-only and is either empty (`!valid()`, default-constructed or consumed by
//     `get()`/`then()`) or refers to a shared state. The state outlives every party that refers
//     to it: destroying a Future before its task finishes is always safe (the result is dropped).
//   * The state ends in exactly one of: a value, an exception, or cancelled. `ready()` is true
//     in all three. `get()` returns the value (moved out), rethrows the original exception
//     object, or throws `parx::Cancelled`.
//   * `cancel()` succeeds only while the task has not started (concurrent.futures semantics);
//     a cancelled task never runs. Running tasks are not interrupted.
//   * `then(f)` consumes the future and returns a new one. `f` runs on the thread that completes
//     the state (or inline if it is already complete) — keep it short, or give an executor:
//     `then(pool, f)`. If `f` takes `Future<T>` it sees the completed future (value or error);
//     otherwise it takes the value, and errors/cancellation skip `f` and propagate.
//
// Thread-safety: distinct Futures may be used from any threads. One Future object must not be
// used by two threads at once (like any object), except that `ready()`, `wait*()` and `cancel()`
// are safe to call concurrently. A Promise has one producer.
//
// Example
//   parx::ThreadPool pool;
//   parx::Future<int> f = pool.submit([] { return 6 * 7; });
//   parx::Future<std::string> g = std::move(f).then([](int x) { return std::to_string(x); });
//   std::cout << g.get();                                   // "42"
//
//   parx::Promise<double> p;  auto h = p.get_future();
//   std::thread t([&] { p.set_value(3.14); });
//   if (!h.wait_for(std::chrono::seconds(1))) { /* still pending */ }
//   t.join();
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

#include "parx/detail/sync.hpp"
#include "parx/errors.hpp"

namespace parx {

template <class T>
class Future;
template <class T>
class Promise;

namespace detail {

// ---- shared state -----------------------------------------------------------------------------

class StateBase;

// A callback registered on a state; runs once, when the state completes (or at once if it has).
class CallbackNode {
 public:
  virtual void run(StateBase& s) noexcept = 0;
  virtual ~CallbackNode() = default;
  CallbackNode* next = nullptr;
};

// The status word: three bits of status plus a "someone sleeps on me" bit, so that completing a
// state nobody waits on costs no system call.
class StateBase : public Waitable {
 public:
  enum : std::uint32_t {
    kPending = 0,
    kRunning = 1,
    kValue = 2,
    kError = 3,
    kCancelled = 4,
    kStatusMask = 7,
    kWaiters = 8,
  };

  StateBase() = default;
  StateBase(const StateBase&) = delete;
  StateBase& operator=(const StateBase&) = delete;
  virtual ~StateBase() = default;

  std::uint32_t status() const noexcept {
    return word_.load(std::memory_order_acquire) & kStatusMask;
  }
  bool is_done() const noexcept final { return status() >= kValue; }
  bool arm(const std::atomic<std::uint32_t>*& word, std::uint32_t& value) noexcept final;

  // Executor side: Pending -> Running. False if the task was cancelled first (skip it).
  bool try_start() noexcept {
    std::uint32_t w = word_.load(std::memory_order_relaxed);
    while ((w & kStatusMask) == kPending) {
      if (word_.compare_exchange_weak(w, (w & kWaiters) | kRunning, std::memory_order_acq_rel))
        return true;
    }
    return false;
  }
  bool started() const noexcept { return status() != kPending; }

  // Pending -> Cancelled. False once the task runs or has finished.
  bool cancel() noexcept { return complete(kCancelled, /*only_if_pending=*/true); }

  // Stores an exception and completes. False if the state was already complete (cancelled).
  bool set_exception(std::exception_ptr e) noexcept {
    error_ = std::move(e);
    if (complete(kError, false)) return true;
    error_ = nullptr;
    return false;
  }
  const std::exception_ptr& exception() const noexcept { return error_; }
  // Moves the exception out (the consumer's get()): afterwards only the consuming thread holds
  // it, whichever thread frees the state.
  std::exception_ptr take_exception() noexcept { return std::move(error_); }

  // Registers `n` (ownership passes to the state); runs it now if the state is complete.
  void add_callback(CallbackNode* n) noexcept;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Blocks (or helps) until complete or the deadline (now_ns scale, < 0 none). Returns done.
  bool wait_until_ns(std::int64_t deadline_ns) {
    if (is_done()) return true;
    return wait_for_done(*this, deadline_ns);
  }

 protected:
  // Moves the status to `to` (a final status), wakes sleepers and runs callbacks. Fails if the
  // state is already final, or (only_if_pending) if it has started.
  bool complete(std::uint32_t to, bool only_if_pending) noexcept;

 private:
  // Sentinel "no more callbacks: run new ones at once"; never dereferenced.
  static CallbackNode* closed() noexcept {
    return reinterpret_cast<CallbackNode*>(std::uintptr_t{1});  // NOLINT(performance-no-int-to-ptr)
  }
  void run_callbacks() noexcept;

  std::atomic<std::uint32_t> word_{kPending};
  std::atomic<std::uint32_t> refs_{1};
  std::atomic<CallbackNode*> callbacks_{nullptr};
  std::exception_ptr error_;
};

template <class T>
class State : public StateBase {
 public:
  ~State() override {
    if (status() == kValue && !taken_) ptr()->~T();
  }
  // Stores a value and completes. False (value discarded) if the state was cancelled.
  template <class... A>
  bool set_value(A&&... a) noexcept(std::is_nothrow_constructible_v<T, A...>) {
    ::new (static_cast<void*>(&storage_)) T(std::forward<A>(a)...);
    if (complete(kValue, false)) return true;
    ptr()->~T();
    return false;
  }
  T take() {
    taken_ = true;
    T v(std::move(*ptr()));
    ptr()->~T();
    return v;
  }
  T& ref() noexcept { return *ptr(); }

 private:
  T* ptr() noexcept { return std::launder(reinterpret_cast<T*>(&storage_)); }
  alignas(T) unsigned char storage_[sizeof(T)];
  bool taken_ = false;
};

template <>
class State<void> : public StateBase {
 public:
  bool set_value() noexcept { return complete(kValue, false); }
  void take() noexcept {}
};

// Intrusive reference to a state.
template <class S>
class Ref {
 public:
  Ref() = default;
  explicit Ref(S* s, bool adopt = true) noexcept : s_(s) {
    if (s_ && !adopt) s_->add_ref();
  }
  Ref(const Ref& o) noexcept : s_(o.s_) {
    if (s_) s_->add_ref();
  }
  Ref(Ref&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Ref& operator=(Ref o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Ref() {
    if (s_) s_->release();
  }
  S* get() const noexcept { return s_; }
  S* operator->() const noexcept { return s_; }
  S& operator*() const noexcept { return *s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }
  S* detach() noexcept { return std::exchange(s_, nullptr); }

 private:
  S* s_ = nullptr;
};

template <class F>
class FnCallback final : public CallbackNode {
 public:
  explicit FnCallback(F f) : f_(std::move(f)) {}
  void run(StateBase& s) noexcept override { f_(s); }

 private:
  F f_;
};

// Registers `f(StateBase&)` to run when `s` completes.
template <class F>
void on_complete(StateBase& s, F&& f) {
  s.add_callback(new FnCallback<std::decay_t<F>>(std::forward<F>(f)));
}

template <class T>
struct is_future : std::false_type {};
template <class T>
struct is_future<Future<T>> : std::true_type {};

template <class T>
Future<T> make_future(Ref<State<T>> s) noexcept;
template <class T>
State<T>* state_of(const Future<T>& f) noexcept;

[[noreturn]] void throw_timeout(const char* what);
[[noreturn]] void throw_invalid(const char* what);

template <class Rep, class Period>
std::int64_t deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  if (ns < 0) ns = 0;
  return now_ns() + ns;
}

// Runs `f(args...)` and stores its result (or exception) into `s`.
template <class R, class F, class... A>
void fulfil(State<R>& s, F&& f, A&&... args) noexcept {
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(std::forward<F>(f), std::forward<A>(args)...);
      s.set_value();
    } else {
      s.set_value(std::invoke(std::forward<F>(f), std::forward<A>(args)...));
    }
  } catch (...) {
    s.set_exception(std::current_exception());
  }
}

// Result type of a continuation, with Future<Future<U>> flattened to Future<U>.
template <class T, class F>
struct ThenTraits {
  static constexpr bool kTakesFuture = std::is_invocable_v<F, Future<T>>;
  using raw = typename std::conditional_t<
      kTakesFuture, std::invoke_result<F, Future<T>>,
      std::conditional_t<std::is_void_v<T>, std::invoke_result<F>,
                         std::invoke_result<F, std::add_rvalue_reference_t<T>>>>::type;
  static constexpr bool kUnwrap = is_future<raw>::value;
  template <class X>
  struct inner {
    using type = X;
  };
  template <class X>
  struct inner<Future<X>> {
    using type = X;
  };
  using result = typename inner<raw>::type;
};

// Runs continuation `f` on completed state `src`, fulfilling `out`.
template <class T, class F>
void run_then(Ref<State<T>> src, F& f, Ref<State<typename ThenTraits<T, F>::result>> out) noexcept {
  using Tr = ThenTraits<T, F>;
  using R = typename Tr::result;
  try {
    auto call = [&]() -> decltype(auto) {
      if constexpr (Tr::kTakesFuture) {
        return std::invoke(f, make_future<T>(std::move(src)));
      } else {
        const auto st = src->status();
        if (st == StateBase::kCancelled) throw Cancelled();
        if (st == StateBase::kError) std::rethrow_exception(src->exception());
        if constexpr (std::is_void_v<T>) {
          return std::invoke(f);
        } else {
          return std::invoke(f, src->take());
        }
      }
    };
    if constexpr (Tr::kUnwrap) {
      auto inner = call();
      State<R>* ip = state_of(inner);
      if (!ip) throw InvalidState("continuation returned an empty parx::Future");
      Ref<State<R>> keep(ip, false);
      on_complete(*ip, [keep, out](StateBase&) mutable noexcept {
        if (keep->status() == StateBase::kValue) {
          if constexpr (std::is_void_v<R>) {
            out->set_value();
          } else {
            try {
              out->set_value(keep->take());
            } catch (...) {
              out->set_exception(std::current_exception());
            }
          }
        } else if (keep->status() == StateBase::kError) {
          out->set_exception(keep->exception());
        } else {
          out->set_exception(std::make_exception_ptr(Cancelled()));
        }
      });
    } else if constexpr (std::is_void_v<R>) {
      call();
      out->set_value();
    } else {
      out->set_value(call());
    }
  } catch (...) {
    out->set_exception(std::current_exception());
  }
}

}  // namespace detail

// ---- Future -----------------------------------------------------------------------------------

template <class T>
class Future {
  static_assert(!std::is_reference_v<T>, "parx::Future<T&> is not supported; use a pointer");

 public:
  using value_type = T;

  Future() noexcept = default;
  Future(Future&&) noexcept = default;
  Future& operator=(Future&&) noexcept = default;
  Future(const Future&) = delete;
  Future& operator=(const Future&) = delete;

  // True if this refers to a state (not default-constructed, not consumed).
  bool valid() const noexcept { return static_cast<bool>(s_); }
  // True once the state holds a value, an exception, or is cancelled. Never blocks.
  bool ready() const noexcept { return s_ && s_->is_done(); }
  // True if the state ended cancelled.
  bool cancelled() const noexcept { return s_ && s_->status() == detail::StateBase::kCancelled; }
  // True once the task began running (or finished); a started task can no longer be cancelled.
  bool started() const noexcept { return s_ && s_->started(); }

  // Blocks until ready (a pool worker helps run other tasks meanwhile).
  void wait() const {
    check();
    s_->wait_until_ns(-1);
  }
  // Waits at most `d`; returns ready().
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> d) const {
    check();
    return s_->wait_until_ns(detail::deadline_after(d));
  }
  template <class Clock, class Dur>
  bool wait_until(std::chrono::time_point<Clock, Dur> t) const {
    return wait_for(t - Clock::now());
  }

  // Waits, then returns the value (moved out; the future becomes empty), rethrows the task's
  // exception, or throws parx::Cancelled.
  T get() {
    wait();
    return consume();
  }
  // Like get(), but throws parx::TimeoutError (and keeps the future valid) if `d` passes first.
  template <class Rep, class Period>
  T get_for(std::chrono::duration<Rep, Period> d) {
    if (!wait_for(d))
      detail::throw_timeout("parx::TimeoutError: Future::get_for deadline exceeded");
    return consume();
  }

  // Waits; returns the stored exception, or nullptr if the state holds a value. Throws
  // parx::Cancelled if cancelled. The future stays valid.
  std::exception_ptr exception() const {
    wait();
    if (s_->status() == detail::StateBase::kCancelled) throw Cancelled();
    return s_->exception();
  }

  // Cancels the task if it has not started. Returns true if the future is (now) cancelled.
  bool cancel() noexcept { return s_ && (s_->cancel() || cancelled()); }

  // Continuation: see the header comment. Consumes *this.
  template <class F>
  auto then(F&& f);
  // Continuation run as a task on `ex` (anything with submit(callable)). Consumes *this.
  template <class Ex, class F>
  requires requires(Ex& e) {
    e.submit([] {});
  }
  auto then(Ex& ex, F&& f) {
    check();
    using R = typename detail::ThenTraits<T, std::decay_t<F>>::result;
    detail::Ref<detail::State<R>> out(new detail::State<R>());
    detail::Ref<detail::State<T>> src = std::move(s_);
    detail::State<T>* raw = src.get();
    detail::on_complete(*raw, [&ex, src = std::move(src), fn = std::decay_t<F>(std::forward<F>(f)),
                               out](detail::StateBase&) mutable noexcept {
      try {
        (void)ex.submit([src = std::move(src), fn = std::move(fn), out]() mutable {
          detail::run_then<T>(std::move(src), fn, out);
        });
      } catch (...) {
        out->set_exception(std::current_exception());
      }
    });
    return detail::make_future<R>(std::move(out));
  }

  // co_await support: resumes the coroutine on the thread that completes the state.
  bool await_ready() const noexcept { return ready(); }
  void await_suspend(std::coroutine_handle<> h) {
    detail::on_complete(*s_, [h](detail::StateBase&) noexcept { h.resume(); });
  }
  T await_resume() { return consume(); }

 private:
  friend Future detail::make_future<T>(detail::Ref<detail::State<T>>) noexcept;
  friend detail::State<T>* detail::state_of<T>(const Future&) noexcept;
  explicit Future(detail::Ref<detail::State<T>> s) noexcept : s_(std::move(s)) {}

  void check() const {
    if (!s_)
      detail::throw_invalid(
          "operation on an empty parx::Future (default-constructed or already consumed by "
          "get/then)");
  }
  T consume() {
    check();
    detail::Ref<detail::State<T>> s = std::move(s_);
    switch (s->status()) {
      case detail::StateBase::kValue:
        return s->take();
      case detail::StateBase::kError:
        std::rethrow_exception(s->take_exception());
      case detail::StateBase::kCancelled:
        throw Cancelled();
      default:
        s_ = std::move(s);
        detail::throw_invalid("Future consumed before it was ready");
    }
  }

  detail::Ref<detail::State<T>> s_;
};

// ---- Promise ----------------------------------------------------------------------------------

// The write end. If destroyed without a value or exception, its future fails with InvalidState
// ("broken promise"), so a waiting consumer never hangs.
template <class T>
class Promise {
 public:
  Promise() : s_(new detail::State<T>()) {}
  Promise(Promise&&) noexcept = default;
  Promise& operator=(Promise&& o) noexcept {
    abandon();
    s_ = std::move(o.s_);
    future_taken_ = o.future_taken_;
    return *this;
  }
  ~Promise() { abandon(); }

  // The future; may be taken once.
  Future<T> get_future() {
    if (!s_ || future_taken_) detail::throw_invalid("Promise::get_future called twice");
    future_taken_ = true;
    return detail::make_future<T>(detail::Ref<detail::State<T>>(s_.get(), false));
  }

  // Completes the future with a value. Returns false if the consumer cancelled it first (the
  // value is dropped). Throws InvalidState if already satisfied.
  template <class... A>
  bool set_value(A&&... a) {
    auto* s = live();
    bool ok;
    if constexpr (std::is_void_v<T>) {
      static_assert(sizeof...(A) == 0);
      ok = s->set_value();
    } else {
      ok = s->set_value(std::forward<A>(a)...);
    }
    s_ = {};
    return ok;
  }
  bool set_exception(std::exception_ptr e) {
    bool ok = live()->set_exception(std::move(e));
    s_ = {};
    return ok;
  }
  // Runs f(args...) and stores its result or exception.
  template <class F, class... A>
  void set_from(F&& f, A&&... args) {
    detail::fulfil<T>(*live(), std::forward<F>(f), std::forward<A>(args)...);
    s_ = {};
  }
  // True if the consumer cancelled the future; the producer may skip the work.
  bool is_cancelled() const noexcept { return s_ && s_->status() == detail::StateBase::kCancelled; }

 private:
  detail::State<T>* live() {
    if (!s_) detail::throw_invalid("Promise already satisfied (or moved from)");
    return s_.get();
  }
  void abandon() noexcept {
    if (s_ && !s_->is_done())
      s_->set_exception(std::make_exception_ptr(
          InvalidState("broken promise: the parx::Promise was destroyed before it was satisfied")));
    s_ = {};
  }
  detail::Ref<detail::State<T>> s_;
  bool future_taken_ = false;
};

// A future that is already ready.
template <class T>
Future<std::decay_t<T>> make_ready_future(T&& v) {
  Promise<std::decay_t<T>> p;
  auto f = p.get_future();
  p.set_value(std::forward<T>(v));
  return f;
}
inline Future<void> make_ready_future() {
  Promise<void> p;
  auto f = p.get_future();
  p.set_value();
  return f;
}
template <class T>
Future<T> make_exceptional_future(std::exception_ptr e) {
  Promise<T> p;
  auto f = p.get_future();
  p.set_exception(std::move(e));
  return f;
}

// ---- implementation ---------------------------------------------------------------------------

namespace detail {

template <class T>
Future<T> make_future(Ref<State<T>> s) noexcept {
  return Future<T>(std::move(s));
}
template <class T>
State<T>* state_of(const Future<T>& f) noexcept {
  return f.s_.get();
}

}  // namespace detail

template <class T>
template <class F>
auto Future<T>::then(F&& f) {
  check();
  using R = typename detail::ThenTraits<T, std::decay_t<F>>::result;
  detail::Ref<detail::State<R>> out(new detail::State<R>());
  detail::Ref<detail::State<T>> src = std::move(s_);
  detail::State<T>* raw = src.get();
  detail::on_complete(*raw, [src = std::move(src), fn = std::decay_t<F>(std::forward<F>(f)),
                             out](detail::StateBase&) mutable noexcept {
    detail::run_then<T>(std::move(src), fn, out);
  });
  return detail::make_future<R>(std::move(out));
}

}  // namespace parx
