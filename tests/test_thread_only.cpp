// A program that includes parx/thread_pool.hpp alone (no codec, no remote registry, no MPI, no
// journal: tests/header_cost.cmake checks what it sees). It gets the whole ThreadPool; asking a
// map for a checkpoint without the journal's header is a clear error, never a map that runs
// without its checkpoint.
#include <gtest/gtest.h>

#include <parx/thread_pool.hpp>

#include <string>
#include <vector>

namespace {

struct Point {  // a type no other file of this program maps: nothing else instantiates a journal
  int x = 0, y = 0;
};

Point shift(Point p) {
  return {p.x + 1, p.y - 1};
}

}  // namespace

TEST(ThreadPoolAlone, MapsWithoutTheCodec) {
  parx::ThreadPool pool(2);
  std::vector<Point> ps(100);
  for (int i = 0; i < 100; ++i)
    ps[static_cast<std::size_t>(i)] = {i, i};
  const auto out = pool.map(shift, ps);
  ASSERT_EQ(out.size(), 100u);
  EXPECT_EQ(out[42].x, 43);
  EXPECT_EQ(out[42].y, 41);
  int calls = 0;
  for (Point p : pool.imap(shift, ps, {.progress = false}))
    calls += p.x > 0;
  EXPECT_EQ(calls, 100);
}

TEST(ThreadPoolAlone, ACheckpointWithoutTheJournalHeaderIsAClearError) {
  parx::ThreadPool pool(2);
  std::vector<Point> ps(10);
  try {
    (void)pool.map(shift, ps, {.checkpoint = "never-written.ckpt"});
    FAIL() << "the map ran without its checkpoint";
  } catch (const parx::InvalidArgument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("#include <parx/checkpoint.hpp>"), std::string::npos) << what;
    EXPECT_NE(what.find("Point"), std::string::npos) << what;
  }
}
