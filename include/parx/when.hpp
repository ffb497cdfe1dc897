// parx/when.hpp — waiting on many futures: when_all, when_any, as_completed, wait.
//
// These mirror concurrent.futures (`wait(fs, return_when)`, `as_completed(fs, timeout)`) and the
// usual future combinators, and work on futures from any parx executor (threads, processes,
// MPI) mixed freely.
//
// Contract
//   * `when_all(futures)` consumes the futures and returns one future that completes when *all*
//     have completed: with every value in input order, or — if any failed — with the exception of
//     the failing future of lowest index (a cancelled input counts as failing with Cancelled).
//     Nothing is left running unobserved.
//   * `when_any(futures)` leaves the futures with the caller and returns a Future<std::size_t>
//     holding the index of the first to complete (value, exception or cancelled).
//   * `as_completed(futures[, timeout])` is a lazy range that yields references to the futures in
//     the order they complete; already-complete futures come first in index order. With a timeout
//     (measured from the call) advancing past the deadline throws parx::TimeoutError.
//   * `wait(futures, ReturnWhen, [timeout])` blocks until the condition holds (or the timeout
//     passes) and returns the indices of the done and not-done futures.
//   * All waits help run pool tasks when called from a pool worker (no nested deadlock).
//   * The futures passed by reference must outlive the returned range/future's use.
//
// Thread-safety: each call is independent; do not consume (get) the futures passed by reference
// from another thread while a `wait`/`as_completed` over them is in progress.
//
// Example
//   std::vector<parx::Future<double>> fs;
//   for (int i = 0; i < 8; ++i) fs.push_back(pool.submit(simulate, i));
//   for (parx::Future<double>& f : parx::as_completed(fs)) std::cout << f.get() << '\n';
//   auto [done, pending] = parx::wait(fs, parx::ReturnWhen::FirstException);
#pragma once

#include <atomic>
#include <climits>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <tuple>
#include <variant>
#include <vector>

#include "parx/future.hpp"

namespace parx {

enum class ReturnWhen {
  FirstCompleted,  // any future is done
  FirstException,  // any future failed (exception or cancelled), or all are done
  AllCompleted,    // every future is done
};

struct WaitResult {
  std::vector<std::size_t> done;      // indices of completed futures
  std::vector<std::size_t> not_done;  // indices of the others
};

namespace detail {

template <class R>
concept FutureRange = std::ranges::forward_range<R> &&
    is_future<std::remove_cvref_t<std::ranges::range_value_t<R>>>::value;

// Counts completions of a set of states; what the waiter sleeps on.
class CompletionCounter final : public Waitable {
 public:
  CompletionCounter(std::uint32_t total, ReturnWhen when) : total_(total), when_(when) {}
  void on_done(const StateBase& s) noexcept {
    if (s.status() != StateBase::kValue) failures_.fetch_add(1, std::memory_order_relaxed);
    completed_.fetch_add(1, std::memory_order_acq_rel);
    futex_wake(&completed_, INT_MAX);
  }
  bool is_done() const noexcept override {
    const std::uint32_t c = completed_.load(std::memory_order_acquire);
    switch (when_) {
      case ReturnWhen::FirstCompleted:
        return c >= 1 || total_ == 0;
      case ReturnWhen::FirstException:
        return c >= total_ || failures_.load(std::memory_order_relaxed) > 0;
      case ReturnWhen::AllCompleted:
        break;
    }
    return c >= total_;
  }
  bool arm(const std::atomic<std::uint32_t>*& word, std::uint32_t& value) noexcept override {
    value = completed_.load(std::memory_order_acquire);
    if (is_done()) return false;
    word = &completed_;
    return true;
  }

 private:
  std::atomic<std::uint32_t> completed_{0};
  std::atomic<std::uint32_t> failures_{0};
  std::uint32_t total_;
  ReturnWhen when_;
};

// Records the order in which states complete (for as_completed).
class CompletionOrder final : public Waitable {
 public:
  explicit CompletionOrder(std::size_t n) { order_.reserve(n); }
  void push(std::size_t i) noexcept {
    {
      std::lock_guard lk(mu_);
      order_.push_back(i);
    }
    count_.fetch_add(1, std::memory_order_release);
    futex_wake(&count_, INT_MAX);
  }
  // Blocks until more than `seen` completions were recorded or the deadline passes.
  bool wait_beyond(std::uint32_t seen, std::int64_t deadline_ns) {
    seen_ = seen;
    return wait_for_done(*this, deadline_ns);
  }
  std::size_t at(std::size_t k) {
    std::lock_guard lk(mu_);
    return order_[k];
  }
  bool is_done() const noexcept override { return count_.load(std::memory_order_acquire) > seen_; }
  bool arm(const std::atomic<std::uint32_t>*& word, std::uint32_t& value) noexcept override {
    value = count_.load(std::memory_order_acquire);
    if (value > seen_) return false;
    word = &count_;
    return true;
  }

 private:
  std::mutex mu_;
  std::vector<std::size_t> order_;
  std::atomic<std::uint32_t> count_{0};
  std::uint32_t seen_ = 0;  // only the (single) iterating thread writes it
};

template <class R>
std::vector<StateBase*> states_of(R& futures) {
  std::vector<StateBase*> out;
  for (auto& f : futures) {
    StateBase* s = state_of(f);
    if (!s) throw_invalid("an empty parx::Future was passed to wait/when_any/as_completed");
    out.push_back(s);
  }
  return out;
}

WaitResult wait_states(const std::vector<StateBase*>& states, ReturnWhen when,
                       std::int64_t deadline_ns);
Future<std::size_t> when_any_states(const std::vector<StateBase*>& states);

template <class T>
using value_or_monostate = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

}  // namespace detail

// ---- wait -------------------------------------------------------------------------------------

template <detail::FutureRange R>
WaitResult wait(R& futures, ReturnWhen when = ReturnWhen::AllCompleted) {
  return detail::wait_states(detail::states_of(futures), when, -1);
}
template <detail::FutureRange R, class Rep, class Period>
WaitResult wait(R& futures, ReturnWhen when, std::chrono::duration<Rep, Period> timeout) {
  return detail::wait_states(detail::states_of(futures), when, detail::deadline_after(timeout));
}

// ---- when_any ---------------------------------------------------------------------------------

template <detail::FutureRange R>
Future<std::size_t> when_any(R& futures) {
  return detail::when_any_states(detail::states_of(futures));
}
template <class... T>
requires(sizeof...(T) > 0) Future<std::size_t> when_any(Future<T>&... fs) {
  std::vector<detail::StateBase*> v{detail::state_of(fs)...};
  for (auto* s : v)
    if (!s) detail::throw_invalid("an empty parx::Future was passed to when_any");
  return detail::when_any_states(v);
}

// ---- when_all ---------------------------------------------------------------------------------

template <class T>
Future<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> when_all(
    std::vector<Future<T>> futures) {
  using Out = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;
  struct Ctl {
    std::vector<Future<T>> fs;
    std::atomic<std::size_t> remaining;
    detail::Ref<detail::State<Out>> out{new detail::State<Out>()};
  };
  for (auto& f : futures)
    if (!f.valid()) detail::throw_invalid("an empty parx::Future was passed to when_all");
  auto ctl = std::make_shared<Ctl>();
  ctl->remaining.store(futures.size() + 1, std::memory_order_relaxed);
  ctl->fs = std::move(futures);
  auto finish = [](Ctl& c) noexcept {
    try {
      for (auto& f : c.fs) {  // lowest-index failure wins
        if (f.cancelled()) throw Cancelled();
        if (auto e = detail::state_of(f)->exception()) std::rethrow_exception(e);
      }
      if constexpr (std::is_void_v<T>) {
        c.out->set_value();
      } else {
        std::vector<T> values;
        values.reserve(c.fs.size());
        for (auto& f : c.fs)
          values.push_back(f.get());
        c.out->set_value(std::move(values));
      }
    } catch (...) {
      c.out->set_exception(std::current_exception());
    }
  };
  auto result = detail::make_future<Out>(ctl->out);
  for (auto& f : ctl->fs)
    detail::on_complete(*detail::state_of(f), [ctl, finish](detail::StateBase&) noexcept {
      if (ctl->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) finish(*ctl);
    });
  if (ctl->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) finish(*ctl);
  return result;
}

// Heterogeneous when_all: a future of a tuple (void inputs give std::monostate).
template <class... T>
requires(sizeof...(T) >
         0) Future<std::tuple<detail::value_or_monostate<T>...>> when_all(Future<T>&&... fs) {
  using Out = std::tuple<detail::value_or_monostate<T>...>;
  struct Ctl {
    std::tuple<Future<T>...> fs;
    std::atomic<std::size_t> remaining{sizeof...(T) + 1};
    detail::Ref<detail::State<Out>> out{new detail::State<Out>()};
  };
  ((fs.valid() ? void() : detail::throw_invalid("an empty parx::Future was passed to when_all")),
   ...);
  auto ctl = std::make_shared<Ctl>();
  ctl->fs = std::tuple<Future<T>...>(std::move(fs)...);
  auto finish = [](Ctl& c) noexcept {
    try {
      std::apply(
          [](auto&... f) {
            auto check = [](auto& g) {
              if (g.cancelled()) throw Cancelled();
              if (auto e = detail::state_of(g)->exception()) std::rethrow_exception(e);
            };
            (check(f), ...);
          },
          c.fs);
      auto take = [](auto& g) {
        using V = typename std::remove_cvref_t<decltype(g)>::value_type;
        if constexpr (std::is_void_v<V>) {
          g.get();
          return std::monostate{};
        } else {
          return g.get();
        }
      };
      c.out->set_value(std::apply([&](auto&... f) { return Out{take(f)...}; }, c.fs));
    } catch (...) {
      c.out->set_exception(std::current_exception());
    }
  };
  auto result = detail::make_future<Out>(ctl->out);
  std::apply(
      [&](auto&... f) {
        (detail::on_complete(*detail::state_of(f),
                             [ctl, finish](detail::StateBase&) noexcept {
                               if (ctl->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1)
                                 finish(*ctl);
                             }),
         ...);
      },
      ctl->fs);
  if (ctl->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) finish(*ctl);
  return result;
}

// ---- as_completed -----------------------------------------------------------------------------

template <class F>
class AsCompleted {
 public:
  class iterator {
   public:
    using value_type = F;
    using difference_type = std::ptrdiff_t;
    using reference = F&;
    iterator() = default;
    reference operator*() const { return *owner_->futures_[owner_->current_]; }
    iterator& operator++() {
      owner_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool at_end() const { return owner_->current_ == kNone; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    friend class AsCompleted;
    explicit iterator(AsCompleted* o) : owner_(o) {}
    AsCompleted* owner_ = nullptr;
  };

  AsCompleted(std::vector<F*> futures, std::int64_t deadline_ns)
      : futures_(std::move(futures)),
        order_(std::make_shared<detail::CompletionOrder>(futures_.size())),
        deadline_ns_(deadline_ns) {
    for (std::size_t i = 0; i < futures_.size(); ++i) {
      detail::StateBase* s = detail::state_of(*futures_[i]);
      if (!s) detail::throw_invalid("an empty parx::Future was passed to as_completed");
      detail::on_complete(*s, [o = order_, i](detail::StateBase&) noexcept { o->push(i); });
    }
  }
  AsCompleted(AsCompleted&&) noexcept = default;
  AsCompleted& operator=(AsCompleted&&) noexcept = default;

  // Single pass: begin() waits for the first completion.
  iterator begin() {
    if (!started_) {
      started_ = true;
      advance();
    }
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }
  std::size_t size() const noexcept { return futures_.size(); }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  void advance() {
    if (consumed_ >= futures_.size()) {
      current_ = kNone;
      return;
    }
    if (!order_->wait_beyond(static_cast<std::uint32_t>(consumed_), deadline_ns_))
      throw TimeoutError(
          "parx::TimeoutError: as_completed: " + std::to_string(futures_.size() - consumed_) +
          " future(s) unfinished at the deadline");
    current_ = order_->at(consumed_++);
  }

  std::vector<F*> futures_;
  std::shared_ptr<detail::CompletionOrder> order_;
  std::int64_t deadline_ns_;
  std::size_t consumed_ = 0;
  std::size_t current_ = kNone;
  bool started_ = false;
};

template <detail::FutureRange R>
auto as_completed(R& futures) {
  using F = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  std::vector<F*> ptrs;
  for (auto& f : futures)
    ptrs.push_back(&f);
  return AsCompleted<F>(std::move(ptrs), -1);
}
template <detail::FutureRange R, class Rep, class Period>
auto as_completed(R& futures, std::chrono::duration<Rep, Period> timeout) {
  using F = std::remove_cvref_t<std::ranges::range_value_t<R>>;
  std::vector<F*> ptrs;
  for (auto& f : futures)
    ptrs.push_back(&f);
  return AsCompleted<F>(std::move(ptrs), detail::deadline_after(timeout));
}

}  // namespace parx
