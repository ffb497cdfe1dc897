// parx/detail/wsq.hpp — Chase–Lev work-stealing deque (Lê, Pop, Cohen, Zappa Nardelli, "Correct
// and Efficient Work-Stealing for Weak Memory Models", PPoPP'13), growable. Internal.
//
// The owner pushes and pops at the bottom (LIFO); thieves steal from the top (FIFO). Sequentially
// consistent operations stand in for the paper's fences (same cost on x86, and understood by
// ThreadSanitizer). Arrays outgrown are kept until the deque dies, because a thief may still be
// reading one.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace parx::detail {

template <class T>
class WorkStealingDeque {
  static_assert(std::is_pointer_v<T>);

  struct Array {
    explicit Array(std::int64_t c) : cap(c), mask(c - 1), slots(new std::atomic<T>[c]) {}
    std::int64_t cap, mask;
    std::unique_ptr<std::atomic<T>[]> slots;
    void put(std::int64_t i, T x) noexcept { slots[i & mask].store(x, std::memory_order_relaxed); }
    T get(std::int64_t i) const noexcept { return slots[i & mask].load(std::memory_order_relaxed); }
  };

 public:
  explicit WorkStealingDeque(std::int64_t capacity = 256) {
    auto a = std::make_unique<Array>(capacity);
    array_.store(a.get(), std::memory_order_relaxed);
    arrays_.push_back(std::move(a));
  }

  // Owner only.
  void push(T x) {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    Array* a = array_.load(std::memory_order_relaxed);
    // top only grows, so a stale copy can only overstate the size: re-read the thieves' cache
    // line only when the deque looks full.
    if (b - top_cache_ > a->cap - 1) {
      top_cache_ = top_.load(std::memory_order_acquire);
      if (b - top_cache_ > a->cap - 1) a = grow(a, b, top_cache_);
    }
    a->put(b, x);
    bottom_.store(b + 1, std::memory_order_release);
  }

  // Owner only. nullptr when empty.
  T pop() noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    Array* a = array_.load(std::memory_order_relaxed);
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    T x = nullptr;
    if (t <= b) {
      x = a->get(b);
      if (t == b) {  // last item: race the thieves for it
        if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                          std::memory_order_relaxed))
          x = nullptr;
        bottom_.store(b + 1, std::memory_order_relaxed);
      }
    } else {
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return x;
  }

  // Any thread. nullptr when empty or when it lost a race (callers just try elsewhere).
  T steal() noexcept {
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return nullptr;
    Array* a = array_.load(std::memory_order_acquire);
    T x = a->get(t);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed))
      return nullptr;
    return x;
  }

  bool empty() const noexcept {
    return bottom_.load(std::memory_order_relaxed) <= top_.load(std::memory_order_relaxed);
  }
  std::int64_t size_hint() const noexcept {
    return std::max<std::int64_t>(
        0, bottom_.load(std::memory_order_relaxed) - top_.load(std::memory_order_relaxed));
  }

 private:
  Array* grow(Array* a, std::int64_t b, std::int64_t t) {
    auto bigger = std::make_unique<Array>(a->cap * 2);
    for (std::int64_t i = t; i < b; ++i)
      bigger->put(i, a->get(i));
    Array* raw = bigger.get();
    arrays_.push_back(std::move(bigger));
    array_.store(raw, std::memory_order_release);
    return raw;
  }

  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  alignas(64) std::atomic<Array*> array_{nullptr};
  std::vector<std::unique_ptr<Array>> arrays_;  // owner only
  std::int64_t top_cache_ = 0;                  // owner only: a lower bound of top_
};

}  // namespace parx::detail
