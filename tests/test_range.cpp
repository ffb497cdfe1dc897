// parx::range and parx::generate.
#include <gtest/gtest.h>

#include <parx/range.hpp>

#include <vector>

namespace {

template <class R>
std::vector<long> collect(R&& r) {
  std::vector<long> v;
  for (auto x : r)
    v.push_back(static_cast<long>(x));
  return v;
}

TEST(Range, LikePython) {
  EXPECT_EQ(collect(parx::range(4)), (std::vector<long>{0, 1, 2, 3}));
  EXPECT_EQ(collect(parx::range(2, 5)), (std::vector<long>{2, 3, 4}));
  EXPECT_TRUE(collect(parx::range(5, 2)).empty());
  EXPECT_TRUE(collect(parx::range(-3)).empty());
  EXPECT_EQ(collect(parx::range(0, 10, 3)), (std::vector<long>{0, 3, 6, 9}));
  EXPECT_EQ(collect(parx::range(10, 0, -4)), (std::vector<long>{10, 6, 2}));
  EXPECT_TRUE(collect(parx::range(0, 10, -1)).empty());
  EXPECT_THROW(parx::range(0, 10, 0), parx::InvalidArgument);
  static_assert(std::ranges::random_access_range<decltype(parx::range(3))>);
  static_assert(std::ranges::sized_range<decltype(parx::range(0, 9, 2))>);
  EXPECT_EQ(std::ranges::size(parx::range(0, 9, 2)), 5u);
}

TEST(Range, GenerateIsLazyAndSinglePass) {
  int calls = 0;
  auto g = parx::generate([&]() -> std::optional<int> {
    ++calls;
    return calls <= 3 ? std::optional(calls * 10) : std::nullopt;
  });
  static_assert(std::ranges::input_range<decltype(g)>);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(collect(g), (std::vector<long>{10, 20, 30}));
  EXPECT_EQ(calls, 4);
}

}  // namespace
