// Two different functions registered under one name: check_remote_registry() must report both.
#include <gtest/gtest.h>

#include <parx/remote.hpp>

int first_impl(int x) {
  return x;
}
int second_impl(int x) {
  return -x;
}
PARX_REMOTE_AS(first_impl, "solver");
PARX_REMOTE_AS(second_impl, "solver");

TEST(RemoteConflict, DuplicateNamesAreReportedAtStartup) {
  try {
    parx::check_remote_registry();
    FAIL() << "expected a conflict";
  } catch (const parx::Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("'solver'"), std::string::npos) << w;
    EXPECT_NE(w.find("first_impl"), std::string::npos) << w;
    EXPECT_NE(w.find("second_impl"), std::string::npos) << w;
  }
  // The first registration stays usable; the conflicting one was not installed.
  EXPECT_EQ(parx::remote_id(&first_impl), parx::function_id("solver"));
  EXPECT_THROW((void)parx::remote_id(&second_impl), parx::Error);
}
