// Shared helpers for parx tests: worker-count parameterisation, a gate, polling, and checking
// an expected exception.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace parx_test {

// Tests parameterised by worker count run with 1, 2, 4 and 8 workers: more threads than cores
// must work too.
class Workers : public ::testing::TestWithParam<std::size_t> {};

inline std::string worker_name(const ::testing::TestParamInfo<std::size_t>& i) {
  return "w" + std::to_string(i.param);
}

#define PARX_WORKER_PARAMS(suite) \
  INSTANTIATE_TEST_SUITE_P(Workers, suite, ::testing::Values(1, 2, 4, 8), parx_test::worker_name)

// A one-shot gate: tasks block in wait() until open() is called.
class Gate {
 public:
  void open() {
    open_.store(true, std::memory_order_release);
    open_.notify_all();
  }
  void wait() const { open_.wait(false, std::memory_order_acquire); }

 private:
  std::atomic<bool> open_{false};
};

// Spins (with sleeps) until pred() holds or ~10 s pass; returns pred().
template <class P>
bool eventually(P pred) {
  for (int i = 0; i < 10000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// A pool's counters once its work has settled: nothing running or queued, and every submitted
// item ended (a ThreadPool's worker counts a task's end just after its future is ready). A test
// failure, with the counters, if they never settle.
template <class Pool>
auto settled_counters(const Pool& pool) {
  auto c = pool.counters();
  EXPECT_TRUE(eventually([&] {
    c = pool.counters();
    return c.running == 0 && c.queue_depth == 0 && c.submitted == c.done + c.failed + c.cancelled;
  })) << "submitted "
      << c.submitted << " done " << c.done << " failed " << c.failed << " cancelled " << c.cancelled
      << " running " << c.running << " queued " << c.queue_depth;
  return c;
}

// Runs f, which must throw E; returns the exception so the test can inspect it. Any other
// outcome is a test failure.
template <class E, class F>
E expect_throw(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong exception: " << e.what();
    throw;
  }
  ADD_FAILURE() << "did not throw";
  throw std::logic_error("no exception");
}

}  // namespace parx_test
