// PARX_REMOTE: stable ids, invocation through the registry (the path a worker takes), argument
// conversion, refusal of unknown ids, and errors that name unregistered functions.
#include <gtest/gtest.h>

#include <parx/process_pool.hpp>
#include <parx/remote.hpp>

#include <algorithm>
#include <atomic>
#include <map>
#include <string>
#include <vector>

// Functions are global (exported), so unregistered ones can be named in errors.
double scale(int x, double factor) {
  return x * factor;
}
std::string greet(const std::string& who) {
  return "hello " + who;
}
int overloaded(int x) {
  return x + 1;
}
double overloaded(double x) {
  return x * 2;
}
template <class T>
T twice(T x) {
  return x + x;
}
std::atomic<int> side_effects{0};
void bump(int by) {
  side_effects += by;
}
struct Config {
  std::string name;
  std::vector<int> sizes;
  std::map<std::string, double> weights;
};
double total_weight(const Config& c) {
  double s = 0;
  for (auto& [k, v] : c.weights)
    s += v;
  return s * static_cast<double>(c.sizes.size());
}
int throws_range(int i) {
  if (i > 3) throw std::out_of_range("index " + std::to_string(i));
  return i;
}
int never_registered(int x) {
  return x;
}

PARX_REMOTE(scale);
PARX_REMOTE(greet);
PARX_REMOTE_AS(static_cast<int (*)(int)>(overloaded), "overloaded(int)");
PARX_REMOTE_AS(static_cast<double (*)(double)>(overloaded), "overloaded(double)");
PARX_REMOTE_AS(twice<long>, "twice<long>");
PARX_REMOTE(bump);
PARX_REMOTE(total_weight);
PARX_REMOTE(throws_range);
PARX_REMOTE(scale);  // registered twice (as a header included twice would): harmless

namespace {

template <class R, class F, class... A>
R call_through_registry(F* fn, A&&... args) {
  parx::Encoder e;
  parx::encode_call(e, fn, std::forward<A>(args)...);
  parx::Bytes result = parx::invoke_remote(parx::remote_id(fn), e.bytes());
  if constexpr (std::is_void_v<R>) {
    EXPECT_TRUE(result.empty());
  } else {
    return parx::decode<R>(result);
  }
}

TEST(Remote, IdsComeFromNamesNotRegistrationOrder) {
  EXPECT_NO_THROW(parx::check_remote_registry());
  EXPECT_EQ(parx::remote_id(&scale), parx::function_id("scale"));
  EXPECT_EQ(parx::remote_id(static_cast<int (*)(int)>(overloaded)),
            parx::function_id("overloaded(int)"));
  static_assert(parx::function_id("scale") == parx::function_id("scale"));
  EXPECT_NE(parx::function_id("scale"), parx::function_id("greet"));
  auto names = parx::registered_functions();
  EXPECT_EQ(std::count(names.begin(), names.end(), "scale"), 1);
  // This binary's eight, plus parx's own (the process-pool worker, linked in by this test's
  // ProcessPool check).
  EXPECT_EQ(std::count_if(names.begin(), names.end(),
                          [](const std::string& n) { return n.rfind("parx::", 0) != 0; }),
            8);
  EXPECT_EQ(std::count(names.begin(), names.end(), "parx::process_pool_worker"), 1);
}

TEST(Remote, InvokeThroughRegistry) {
  EXPECT_EQ(call_through_registry<double>(&scale, 3, 2.5), 7.5);
  EXPECT_EQ(call_through_registry<double>(&scale, 3, 2), 6.0);  // int converted to double first
  EXPECT_EQ(call_through_registry<std::string>(&greet, "world"), "hello world");
  EXPECT_EQ(call_through_registry<int>(static_cast<int (*)(int)>(overloaded), 1), 2);
  EXPECT_EQ(call_through_registry<double>(static_cast<double (*)(double)>(overloaded), 1.5), 3.0);
  EXPECT_EQ(call_through_registry<long>(&twice<long>, 21L), 42L);
  call_through_registry<void>(&bump, 5);
  EXPECT_EQ(side_effects.load(), 5);
  Config c{"c", {1, 2}, {{"a", 1.5}, {"b", 2.5}}};
  EXPECT_EQ(call_through_registry<double>(&total_weight, c), 8.0);
}

TEST(Remote, ExceptionsFromTheFunctionPropagate) {
  EXPECT_EQ(call_through_registry<int>(&throws_range, 2), 2);
  EXPECT_THROW(call_through_registry<int>(&throws_range, 9), std::out_of_range);
}

TEST(Remote, UnregisteredFunctionIsNamed) {
  try {
    (void)parx::remote_id(&never_registered);
    FAIL();
  } catch (const parx::Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("never_registered"), std::string::npos) << w;
    EXPECT_NE(w.find("PARX_REMOTE"), std::string::npos) << w;
  }
}

TEST(Remote, UnknownIdIsRefusedNeverCalled) {
  parx::Encoder e;
  e.put(1);
  try {
    (void)parx::invoke_remote(parx::function_id("no-such-function"), e.bytes());
    FAIL();
  } catch (const parx::Error& err) {
    EXPECT_NE(std::string(err.what()).find("no function is registered"), std::string::npos);
  }
  EXPECT_EQ(parx::detail::find_remote(0xdeadbeef), nullptr);
}

TEST(Remote, MalformedArgumentsAreSerializationErrors) {
  parx::Encoder e;
  e.put(3);  // scale takes (int, double): the double is missing
  EXPECT_THROW((void)parx::invoke_remote(parx::function_id("scale"), e.bytes()),
               parx::SerializationError);
  parx::Encoder extra;
  extra.put(3);
  extra.put(2.0);
  extra.put(99);  // one argument too many
  EXPECT_THROW((void)parx::invoke_remote(parx::function_id("scale"), extra.bytes()),
               parx::SerializationError);
}

}  // namespace

#include <parx/init.hpp>
#include <parx/process.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

namespace {

// This binary never calls parx::init.
TEST(InitErrors, ProcessWithoutInitSaysWhatToAdd) {
  EXPECT_FALSE(parx::initialized());
  parx::Process p(scale, 1, 2.0);
  try {
    p.start();
    FAIL();
  } catch (const parx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("parx::init(argc, argv)"), std::string::npos) << e.what();
  }
}

TEST(InitErrors, InitAfterAThreadStartedIsRefused) {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::thread t([&] {
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return release; });
  });
  try {
    parx::init();
    FAIL() << "init must refuse a threaded process";
  } catch (const parx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("before any thread"), std::string::npos) << e.what();
  }
  {
    std::lock_guard lk(mu);
    release = true;
  }
  cv.notify_all();
  t.join();
  EXPECT_FALSE(parx::initialized());
}

}  // namespace

// This binary never calls parx::init: a process pool must say what is missing.
TEST(ProcessPoolWithoutInit, SaysToCallInit) {
  try {
    parx::ProcessPool pool(1);
    FAIL() << "constructed without parx::init";
  } catch (const parx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("parx::init(argc, argv)"), std::string::npos) << e.what();
  }
}
