// The error hierarchy: every parx error is a parx::Error, and messages name what went wrong.
#include <gtest/gtest.h>

#include <parx/errors.hpp>

#include <csignal>
#include <stdexcept>

namespace {

struct CustomFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST(Errors, HierarchyIsCatchableAsParxError) {
  EXPECT_THROW(throw parx::Cancelled(), parx::Error);
  EXPECT_THROW(throw parx::TimeoutError(), parx::Error);
  EXPECT_THROW(throw parx::SerializationError("x"), parx::Error);
  EXPECT_THROW(throw parx::ExecutorShutdown("x"), parx::Error);
  EXPECT_THROW(throw parx::WorkerCrashed(1, 9, 0, 3), parx::Error);
  EXPECT_THROW(throw parx::TaskError({}), parx::Error);
  EXPECT_THROW(throw parx::Error("x"), std::runtime_error);
}

TEST(Errors, TaskErrorSummarisesWhereAndWhat) {
  parx::TaskErrorInfo info;
  info.type_name = "std::out_of_range";
  info.message = "index 7";
  info.task_index = 42;
  info.function = "simulate";
  info.host = "node3";
  info.rank = 2;
  info.pid = 4711;
  info.stack_trace = "#0 simulate\n";
  parx::TaskError e(info);
  const std::string w = e.what();
  for (const char* part :
       {"std::out_of_range", "index 7", "simulate", "task 42", "node3", "rank 2", "pid 4711"})
    EXPECT_NE(w.find(part), std::string::npos) << part << " missing from: " << w;
  EXPECT_EQ(e.task_index(), 42);
  EXPECT_EQ(e.rank(), 2);
  EXPECT_EQ(e.pid(), 4711);
  EXPECT_EQ(e.stack_trace(), "#0 simulate\n");
}

TEST(Errors, WorkerCrashedNamesSignalPidAndTask) {
  parx::WorkerCrashed e(123, SIGKILL, 0, 5);
  const std::string w = e.what();
  EXPECT_NE(w.find("pid 123"), std::string::npos);
  EXPECT_NE(w.find("signal 9"), std::string::npos);
  EXPECT_NE(w.find("task 5"), std::string::npos);
  parx::WorkerCrashed x(7, 0, 3, -1);
  EXPECT_NE(std::string(x.what()).find("exited with code 3"), std::string::npos);
}

TEST(Errors, ExceptionIntrospection) {
  auto e = std::make_exception_ptr(CustomFailure("boom"));
  EXPECT_NE(parx::exception_type_name(e).find("CustomFailure"), std::string::npos);
  EXPECT_EQ(parx::exception_message(e), "boom");
  auto i = std::make_exception_ptr(17);
  EXPECT_EQ(parx::exception_type_name(i), "int");
  EXPECT_EQ(parx::exception_type_name(nullptr), "none");
}

}  // namespace
