// Future and Promise: values, exceptions, cancellation, timeouts, continuations, co_await.
#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <coroutine>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace std::chrono_literals;

struct Tagged : std::runtime_error {
  explicit Tagged(int t) : std::runtime_error("tagged " + std::to_string(t)), tag(t) {}
  int tag;
};

TEST(Future, PromiseDeliversValueAcrossThreads) {
  parx::Promise<std::string> p;
  auto f = p.get_future();
  EXPECT_TRUE(f.valid());
  EXPECT_FALSE(f.ready());
  std::thread t([&] { p.set_value("hello"); });
  EXPECT_EQ(f.get(), "hello");
  EXPECT_FALSE(f.valid());  // get() consumes
  t.join();
  EXPECT_THROW(f.get(), parx::InvalidState);
}

TEST(Future, MoveOnlyValues) {
  parx::Promise<std::unique_ptr<int>> p;
  auto f = p.get_future();
  p.set_value(std::make_unique<int>(7));
  EXPECT_EQ(*f.get(), 7);
}

TEST(Future, ExceptionIsTheOriginalObject) {
  parx::Promise<int> p;
  auto f = p.get_future();
  auto e = std::make_exception_ptr(Tagged(5));
  p.set_exception(e);
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(f.exception(), e);
  try {
    f.get();
    FAIL();
  } catch (const Tagged& t) {
    EXPECT_EQ(t.tag, 5);
    try {
      std::rethrow_exception(e);
    } catch (const Tagged& again) {
      EXPECT_EQ(&again, &t);  // same object, not a copy or a wrapper
    }
  }
}

TEST(Future, BrokenPromiseDoesNotHang) {
  parx::Future<int> f;
  {
    parx::Promise<int> p;
    f = p.get_future();
  }
  EXPECT_THROW(f.get(), parx::InvalidState);
}

TEST(Future, PromiseMisuseIsReported) {
  parx::Promise<int> p;
  auto f = p.get_future();
  EXPECT_THROW(p.get_future(), parx::InvalidState);
  p.set_value(1);
  EXPECT_THROW(p.set_value(2), parx::InvalidState);
  EXPECT_EQ(f.get(), 1);
  parx::Future<int> empty;
  EXPECT_THROW(empty.wait(), parx::InvalidState);
}

TEST(Future, WaitForAndGetForTimeOut) {
  parx::Promise<int> p;
  auto f = p.get_future();
  EXPECT_FALSE(f.wait_for(20ms));
  EXPECT_FALSE(f.wait_until(std::chrono::steady_clock::now() + 5ms));
  EXPECT_THROW(f.get_for(10ms), parx::TimeoutError);
  EXPECT_TRUE(f.valid());  // a timed-out get keeps the future
  p.set_value(3);
  EXPECT_TRUE(f.wait_for(0ms));
  EXPECT_EQ(f.get_for(1s), 3);
}

TEST(Future, CancelBeforeCompletion) {
  parx::Promise<int> p;
  auto f = p.get_future();
  EXPECT_TRUE(f.cancel());
  EXPECT_TRUE(f.cancelled());
  EXPECT_TRUE(f.ready());
  EXPECT_TRUE(p.is_cancelled());
  EXPECT_FALSE(p.set_value(1));  // the value is dropped
  EXPECT_THROW(f.get(), parx::Cancelled);
}

TEST(Future, CancelAfterCompletionFails) {
  parx::Promise<int> p;
  auto f = p.get_future();
  p.set_value(1);
  EXPECT_FALSE(f.cancel());
  EXPECT_EQ(f.get(), 1);
}

TEST(Future, ManyThreadsWaitOnOneFuture) {
  parx::Promise<void> p;
  auto f = p.get_future();
  std::atomic<int> woke{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      f.wait();
      woke.fetch_add(1);
    });
  std::this_thread::sleep_for(30ms);  // let them sleep on the futex
  EXPECT_EQ(woke.load(), 0);
  p.set_value();
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(woke.load(), 4);
}

TEST(Future, ThenChainsValues) {
  parx::Promise<int> p;
  auto g = p.get_future()
               .then([](int x) { return x * 2; })
               .then([](int x) { return std::to_string(x); })
               .then([](std::string s) { return s + "!"; });
  p.set_value(21);
  EXPECT_EQ(g.get(), "42!");
}

TEST(Future, ThenOnReadyFutureRunsInline) {
  auto f = parx::make_ready_future(5).then([](int x) { return x + 1; });
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(f.get(), 6);
}

TEST(Future, ThenSkipsValueContinuationOnErrorAndCancel) {
  bool ran = false;
  auto f = parx::make_exceptional_future<int>(std::make_exception_ptr(Tagged(1))).then([&](int) {
    ran = true;
    return 0;
  });
  EXPECT_THROW(f.get(), Tagged);
  EXPECT_FALSE(ran);

  parx::Promise<int> p;
  auto src = p.get_future();
  src.cancel();
  auto g = std::move(src).then([&](int) { ran = true; });
  EXPECT_THROW(g.get(), parx::Cancelled);
  EXPECT_FALSE(ran);
}

TEST(Future, ThenTakingFutureSeesErrors) {
  auto f = parx::make_exceptional_future<int>(std::make_exception_ptr(Tagged(9)))
               .then([](parx::Future<int> done) {
                 try {
                   return done.get();
                 } catch (const Tagged& t) {
                   return -t.tag;
                 }
               });
  EXPECT_EQ(f.get(), -9);
}

TEST(Future, ThenUnwrapsReturnedFutures) {
  parx::Promise<int> inner;
  auto innerf = std::make_shared<parx::Future<int>>(inner.get_future());
  auto f = parx::make_ready_future(1).then([innerf](int) { return std::move(*innerf); });
  static_assert(std::is_same_v<decltype(f), parx::Future<int>>);
  EXPECT_FALSE(f.ready());
  inner.set_value(77);
  EXPECT_EQ(f.get(), 77);
}

TEST(Future, ThenContinuationThatThrows) {
  auto f = parx::make_ready_future().then([]() -> int { throw Tagged(3); });
  EXPECT_THROW(f.get(), Tagged);
}

TEST(Future, ThenOnExecutorRunsOnWorker) {
  parx::ThreadPool pool(2);
  auto f = parx::make_ready_future(1).then(
      pool, [&](int x) { return pool.current_worker() >= 0 ? x : -1; });
  EXPECT_EQ(f.get(), 1);
}

TEST(Future, DestroyedBeforeCompletionIsSafe) {
  parx::Promise<std::vector<int>> p;
  { auto f = p.get_future(); }
  EXPECT_TRUE(p.set_value(std::vector<int>(1000, 1)));  // no reader; freed without leak (ASan)
}

// A minimal eager coroutine, enough to co_await a parx::Future.
struct Eager {
  struct promise_type {
    Eager get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }
  };
};

Eager add_one(parx::Future<int> f, parx::Promise<int>& out) {
  int v = co_await f;
  out.set_value(v + 1);
}

TEST(Future, CoAwait) {
  parx::Promise<int> in;
  parx::Promise<int> out;
  auto result = out.get_future();
  add_one(in.get_future(), out);
  EXPECT_FALSE(result.ready());
  std::thread t([&] { in.set_value(41); });
  EXPECT_EQ(result.get(), 42);
  t.join();
}

TEST(Future, VoidFuture) {
  parx::Promise<void> p;
  auto f = p.get_future();
  p.set_value();
  EXPECT_NO_THROW(f.get());
}

}  // namespace
