// parx/range.hpp — input ranges for maps: integer ranges and lazy generators.
//
// `parx::range(n)` / `range(a, b)` / `range(a, b, step)` are Python's range as a sized,
// random-access view (no storage). Any std::ranges::input_range works as map input, including
// lazy single-pass ones; `parx::generate(f)` turns a callable returning std::optional<T> into
// such a range (std::nullopt ends it) — the C++ spelling of a Python generator. Executors pull
// items from lazy inputs only as work drains, so a map over 10⁹ generated items runs in bounded
// memory.
//
// Contract: range(a, b) with b <= a is empty; step must be non-zero (InvalidArgument otherwise).
// A generate() range is single-pass; `f` is called on the thread that iterates it (for maps, the
// thread that calls map/imap), never concurrently.
//
// Thread-safety: views are values; iterate one view from one thread at a time.
//
// Example
//   auto squares = pool.map([](long i) { return i * i; }, parx::range(1000));
//   long k = 0;
//   auto gen = parx::generate([&]() -> std::optional<long> {
//     return k < 1'000'000'000 ? std::optional(k++) : std::nullopt;
//   });
//   for (long v : pool.imap(work, gen)) consume(v);
#pragma once

#include <concepts>
#include <cstddef>
#include <iterator>
#include <optional>
#include <ranges>
#include <type_traits>
#include <utility>

#include "parx/errors.hpp"

namespace parx {

template <std::integral I>
auto range(I n) {
  return std::views::iota(I{0}, n < I{0} ? I{0} : n);
}

template <std::integral A, std::integral B>
auto range(A a, B b) {
  using I = std::common_type_t<A, B>;
  const I lo = static_cast<I>(a);
  const I hi = static_cast<I>(b);
  return std::views::iota(lo, hi < lo ? lo : hi);
}

template <std::integral A, std::integral B, std::integral S>
auto range(A a, B b, S step) {
  using I = std::common_type_t<A, B, S>;
  const I lo = static_cast<I>(a), hi = static_cast<I>(b), st = static_cast<I>(step);
  if (st == I{0}) throw InvalidArgument("parx::range: step must not be zero");
  I count = 0;
  if (st > 0 && hi > lo) count = static_cast<I>((hi - lo + st - 1) / st);
  if (st < 0 && hi < lo) count = static_cast<I>((lo - hi - st - 1) / -st);
  return std::views::iota(I{0}, count) |
         std::views::transform([lo, st](I k) { return static_cast<I>(lo + k * st); });
}

// A single-pass input range over the values `f()` yields until it returns std::nullopt.
template <class F>
class Generate : public std::ranges::view_interface<Generate<F>> {
  using Opt = std::invoke_result_t<F&>;
  static_assert(std::is_same_v<Opt, std::optional<typename Opt::value_type>>,
                "parx::generate(f): f must return std::optional<T>");

 public:
  using value_type = typename Opt::value_type;

  class iterator {
   public:
    using value_type = Generate::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Generate* g) : g_(g) {}
    iterator(iterator&&) = default;
    iterator& operator=(iterator&&) = default;
    value_type& operator*() const { return *g_->current_; }
    iterator& operator++() {
      g_->pull();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool at_end() const { return !g_->current_.has_value(); }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.at_end(); }

   private:
    Generate* g_ = nullptr;
  };

  Generate() = default;
  explicit Generate(F f) : f_(std::move(f)) {}
  Generate(Generate&&) = default;
  Generate& operator=(Generate&&) = default;

  iterator begin() {
    if (!started_) {
      started_ = true;
      pull();
    }
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void pull() { current_ = (*f_)(); }
  std::optional<F> f_;
  std::optional<value_type> current_;
  bool started_ = false;
};

template <class F>
Generate<std::decay_t<F>> generate(F&& f) {
  return Generate<std::decay_t<F>>(std::forward<F>(f));
}

}  // namespace parx
