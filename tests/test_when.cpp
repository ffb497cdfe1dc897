// when_all, when_any, as_completed and wait over sets of futures.
#include <gtest/gtest.h>

#include <parx/parx.hpp>

#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

std::vector<parx::Promise<int>> promises(int n, std::vector<parx::Future<int>>& fs) {
  std::vector<parx::Promise<int>> ps(static_cast<std::size_t>(n));
  for (auto& p : ps)
    fs.push_back(p.get_future());
  return ps;
}

TEST(WhenAll, ValuesInInputOrder) {
  std::vector<parx::Future<int>> fs;
  auto ps = promises(4, fs);
  auto all = parx::when_all(std::move(fs));
  ps[2].set_value(2);
  ps[0].set_value(0);
  EXPECT_FALSE(all.ready());
  ps[3].set_value(3);
  ps[1].set_value(1);
  EXPECT_EQ(all.get(), (std::vector<int>{0, 1, 2, 3}));
}

TEST(WhenAll, LowestIndexFailureWinsAndWaitsForAll) {
  std::vector<parx::Future<int>> fs;
  auto ps = promises(3, fs);
  auto all = parx::when_all(std::move(fs));
  ps[2].set_exception(std::make_exception_ptr(std::logic_error("two")));
  ps[1].set_exception(std::make_exception_ptr(std::runtime_error("one")));
  EXPECT_FALSE(all.ready());  // nothing left unobserved
  ps[0].set_value(0);
  EXPECT_THROW(all.get(), std::runtime_error);
}

TEST(WhenAll, CancelledInputFailsWithCancelled) {
  std::vector<parx::Future<int>> fs;
  auto ps = promises(2, fs);
  fs[1].cancel();
  auto all = parx::when_all(std::move(fs));
  ps[0].set_value(1);
  EXPECT_THROW(all.get(), parx::Cancelled);
}

TEST(WhenAll, EmptyAndVoid) {
  EXPECT_TRUE(parx::when_all(std::vector<parx::Future<int>>{}).get().empty());
  std::vector<parx::Future<void>> vs;
  vs.push_back(parx::make_ready_future());
  vs.push_back(parx::make_ready_future());
  EXPECT_NO_THROW(parx::when_all(std::move(vs)).get());
}

TEST(WhenAll, Heterogeneous) {
  parx::Promise<std::string> ps;
  auto t = parx::when_all(parx::make_ready_future(1), ps.get_future(), parx::make_ready_future());
  ps.set_value("x");
  auto [a, b, c] = t.get();
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, "x");
  (void)c;
}

TEST(WhenAny, IndexOfFirstToComplete) {
  std::vector<parx::Future<int>> fs;
  auto ps = promises(3, fs);
  auto any = parx::when_any(fs);
  EXPECT_FALSE(any.ready());
  ps[1].set_exception(std::make_exception_ptr(std::runtime_error("x")));  // failures count
  ps[2].set_value(2);
  EXPECT_EQ(any.get(), 1u);
  ps[0].set_value(0);
  EXPECT_EQ(fs[2].get(), 2);  // the futures stay with the caller
}

TEST(WhenAny, Variadic) {
  parx::Promise<int> a;
  parx::Promise<std::string> b;
  auto fa = a.get_future();
  auto fb = b.get_future();
  auto any = parx::when_any(fa, fb);
  b.set_value("b");
  EXPECT_EQ(any.get(), 1u);
  std::vector<parx::Future<int>> none;
  EXPECT_THROW(parx::when_any(none).get(), parx::InvalidArgument);
}

TEST(AsCompleted, YieldsInCompletionOrderDoneFirst) {
  std::vector<parx::Future<int>> fs;
  auto ps = promises(4, fs);
  ps[3].set_value(3);  // already done: comes first
  std::thread t([&] {
    std::this_thread::sleep_for(10ms);
    ps[1].set_value(1);
    std::this_thread::sleep_for(10ms);
    ps[0].set_value(0);
    std::this_thread::sleep_for(10ms);
    ps[2].set_value(2);
  });
  std::vector<int> order;
  for (parx::Future<int>& f : parx::as_completed(fs))
    order.push_back(f.get());
  t.join();
  EXPECT_EQ(order, (std::vector<int>{3, 1, 0, 2}));
}

TEST(AsCompleted, TimeoutThrows) {
  std::vector<parx::Future<int>> fs;
  auto ps = promises(2, fs);
  ps[0].set_value(0);
  auto ac = parx::as_completed(fs, 30ms);
  auto it = ac.begin();
  EXPECT_EQ((*it).get(), 0);
  EXPECT_THROW(++it, parx::TimeoutError);
}

TEST(AsCompleted, WorksWithPoolFutures) {
  parx::ThreadPool pool(2);
  std::vector<parx::Future<int>> fs;
  for (int i = 0; i < 50; ++i)
    fs.push_back(pool.submit([i] { return i; }));
  long sum = 0;
  int n = 0;
  for (auto& f : parx::as_completed(fs)) {
    sum += f.get();
    ++n;
  }
  EXPECT_EQ(n, 50);
  EXPECT_EQ(sum, 49 * 50 / 2);
}

TEST(Wait, ReturnWhenModes) {
  std::vector<parx::Future<int>> fs;
  auto ps = promises(3, fs);
  auto r = parx::wait(fs, parx::ReturnWhen::FirstCompleted, 20ms);
  EXPECT_TRUE(r.done.empty());
  EXPECT_EQ(r.not_done.size(), 3u);

  ps[1].set_value(1);
  r = parx::wait(fs, parx::ReturnWhen::FirstCompleted);
  EXPECT_EQ(r.done, (std::vector<std::size_t>{1}));

  r = parx::wait(fs, parx::ReturnWhen::FirstException, 20ms);  // no failure yet: times out
  EXPECT_EQ(r.not_done.size(), 2u);
  ps[2].set_exception(std::make_exception_ptr(std::runtime_error("x")));
  r = parx::wait(fs, parx::ReturnWhen::FirstException);
  EXPECT_EQ(r.done, (std::vector<std::size_t>{1, 2}));
  EXPECT_EQ(r.not_done, (std::vector<std::size_t>{0}));

  std::thread t([&] {
    std::this_thread::sleep_for(10ms);
    ps[0].set_value(0);
  });
  r = parx::wait(fs);
  t.join();
  EXPECT_EQ(r.done.size(), 3u);
  EXPECT_TRUE(r.not_done.empty());
}

}  // namespace
