// parx::observe::summarize_trace: exact figures for a handcrafted trace
// (tests/data/trace_run.json), both Chrome-trace layouts, spawn chains, and a clear InvalidArgument
// — never a crash — for every kind of bad input.
#include <gtest/gtest.h>

#include <parx/errors.hpp>
#include <parx/observe/trace_summary.hpp>

#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace {

using parx::observe::summarize_trace;
using parx::observe::summarize_trace_file;
using parx::observe::TraceSummary;

const std::string kData = PARX_TRACE_DATA_DIR;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The message of the InvalidArgument that `f` throws ("" when it throws nothing).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const parx::InvalidArgument& e) {
    return e.what();
  }
  return "";
}

const parx::observe::FunctionSummary& function(const TraceSummary& s, const std::string& name) {
  for (const auto& f : s.functions)
    if (f.name == name) return f;
  throw std::runtime_error("no function " + name);
}

TEST(TraceSummary, HandcraftedTraceTotals) {
  const TraceSummary s = summarize_trace_file(kData + "/trace_run.json");
  EXPECT_EQ(s.source, kData + "/trace_run.json");
  EXPECT_EQ(s.producer, "parx");
  EXPECT_EQ(s.producer_version, "0.1.0");
  EXPECT_EQ(s.events, 27u);
  EXPECT_EQ(s.ignored_events, 2u);  // the "gc" slice and the counter
  EXPECT_EQ(s.tasks, 9u);
  EXPECT_EQ(s.items, 23u);
  EXPECT_EQ(s.failures, 2u);
  EXPECT_EQ(s.cancelled, 0u);
  EXPECT_TRUE(s.wall_from_metadata);
  EXPECT_DOUBLE_EQ(s.start_us, 0);
  EXPECT_DOUBLE_EQ(s.end_us, 10000);
  EXPECT_DOUBLE_EQ(s.wall_us, 10000);
  EXPECT_DOUBLE_EQ(s.busy_us, 4000 + 5500 + 4300);
}

TEST(TraceSummary, HandcraftedTraceFunctions) {
  const TraceSummary s = summarize_trace_file(kData + "/trace_run.json");
  ASSERT_EQ(s.functions.size(), 3u);
  EXPECT_EQ(s.functions[0].name, "simulate");  // largest total first
  EXPECT_EQ(s.functions[1].name, "render");
  EXPECT_EQ(s.functions[2].name, "split");

  const auto& sim = function(s, "simulate");  // 100 200 1000 1000 2000 4000
  EXPECT_EQ(sim.tasks, 6u);
  EXPECT_EQ(sim.items, 20u);
  EXPECT_EQ(sim.failures, 2u);
  EXPECT_DOUBLE_EQ(sim.total_us, 8300);
  EXPECT_DOUBLE_EQ(sim.mean_us, 8300.0 / 6);
  EXPECT_DOUBLE_EQ(sim.p50_us, 1000);  // nearest rank: the 3rd of 6
  EXPECT_DOUBLE_EQ(sim.p99_us, 4000);  // the 6th of 6
  EXPECT_DOUBLE_EQ(sim.max_us, 4000);
  EXPECT_EQ(sim.first_error, "std::runtime_error: bad input");
  EXPECT_EQ(sim.first_error_task, 3);

  const auto& render = function(s, "render");  // 1500 3500
  EXPECT_EQ(render.tasks, 2u);
  EXPECT_EQ(render.items, 2u);  // "items" absent: one each
  EXPECT_DOUBLE_EQ(render.p50_us, 1500);
  EXPECT_DOUBLE_EQ(render.p99_us, 3500);
  EXPECT_DOUBLE_EQ(render.mean_us, 2500);
  EXPECT_TRUE(render.first_error.empty());
}

TEST(TraceSummary, HandcraftedTraceWorkers) {
  const TraceSummary s = summarize_trace_file(kData + "/trace_run.json");
  ASSERT_EQ(s.workers.size(), 3u);  // the queue track (tid 0) ran nothing and is no worker

  const auto& w0 = s.workers[0];
  EXPECT_EQ(w0.pid, 1);
  EXPECT_EQ(w0.tid, 1);
  EXPECT_EQ(w0.name, "worker 0 · host");
  EXPECT_EQ(w0.pool, "ThreadPool 1 · host");
  EXPECT_EQ(w0.tasks, 3u);
  EXPECT_DOUBLE_EQ(w0.busy_us, 4000);
  EXPECT_DOUBLE_EQ(w0.utilisation, 0.4);
  EXPECT_EQ(w0.idle_gaps, 1u);  // 3 ms → 5 ms
  EXPECT_DOUBLE_EQ(w0.longest_gap_us, 2000);
  EXPECT_DOUBLE_EQ(w0.longest_gap_at_us, 3000);

  const auto& w1 = s.workers[1];
  EXPECT_EQ(w1.name, "worker 1 · host");
  EXPECT_DOUBLE_EQ(w1.busy_us, 5500);
  EXPECT_DOUBLE_EQ(w1.utilisation, 0.55);
  EXPECT_EQ(w1.idle_gaps, 0u);  // 100 µs and 400 µs: under the 1 ms threshold
  EXPECT_DOUBLE_EQ(w1.longest_gap_us, 400);
  EXPECT_DOUBLE_EQ(w1.longest_gap_at_us, 2100);

  const auto& w2 = s.workers[2];
  EXPECT_EQ(w2.pid, 2);
  EXPECT_EQ(w2.name, "worker 0 · pid 4711 · host");
  EXPECT_EQ(w2.pool, "ProcessPool 2 · host");
  EXPECT_EQ(w2.tasks, 3u);
  EXPECT_DOUBLE_EQ(w2.busy_us, 4300);
  EXPECT_DOUBLE_EQ(w2.utilisation, 0.43);
  EXPECT_EQ(w2.idle_gaps, 1u);
  EXPECT_DOUBLE_EQ(w2.longest_gap_us, 1700);
  EXPECT_DOUBLE_EQ(w2.longest_gap_at_us, 5300);
}

TEST(TraceSummary, IdleGapThresholdIsAnOption) {
  const TraceSummary s =
      summarize_trace_file(kData + "/trace_run.json", {.idle_gap_threshold_us = 150});
  EXPECT_EQ(s.workers[0].idle_gaps, 1u);
  EXPECT_EQ(s.workers[1].idle_gaps, 1u);  // the 400 µs gap now counts, the 100 µs one not
  EXPECT_EQ(s.workers[2].idle_gaps, 2u);
}

TEST(TraceSummary, HandcraftedTracePools) {
  const TraceSummary s = summarize_trace_file(kData + "/trace_run.json");
  ASSERT_EQ(s.pools.size(), 2u);
  const auto& tp = s.pools[0];
  EXPECT_EQ(tp.pid, 1);
  EXPECT_EQ(tp.name, "ThreadPool 1 · host");
  EXPECT_EQ(tp.workers, 2u);
  EXPECT_EQ(tp.tasks, 6u);
  EXPECT_EQ(tp.crashes, 0u);
  EXPECT_EQ(tp.cancelled, 1u);
  // 10, 30, 20 from the slices' queue_wait_us; 100 and 400 from the b/e pairs of tasks 11, 12.
  EXPECT_EQ(tp.queue_waits, 5u);
  EXPECT_DOUBLE_EQ(tp.mean_queue_wait_us, 112);
  EXPECT_DOUBLE_EQ(tp.max_queue_wait_us, 400);

  const auto& pp = s.pools[1];
  EXPECT_EQ(pp.name, "ProcessPool 2 · host");
  EXPECT_EQ(pp.workers, 1u);
  EXPECT_EQ(pp.tasks, 3u);
  EXPECT_EQ(pp.crashes, 1u);
  EXPECT_EQ(pp.restarts, 1u);
  EXPECT_EQ(pp.retries, 1u);
  EXPECT_EQ(pp.workers_started, 1u);
  EXPECT_EQ(pp.workers_stopped, 1u);
  EXPECT_EQ(pp.queue_waits, 3u);
  EXPECT_DOUBLE_EQ(pp.mean_queue_wait_us, 100);
  EXPECT_DOUBLE_EQ(pp.max_queue_wait_us, 150);
}

TEST(TraceSummary, CriticalPathFollowsTheSpawnChain) {
  const TraceSummary s = summarize_trace_file(kData + "/trace_run.json");
  // split (500) → render (1500) → render (3500) beats the longest single task (4000).
  EXPECT_DOUBLE_EQ(s.critical_path_us, 5500);
  ASSERT_EQ(s.critical_path.size(), 3u);
  EXPECT_EQ(s.critical_path[0].task, 10);
  EXPECT_EQ(s.critical_path[1].task, 11);
  EXPECT_EQ(s.critical_path[2].task, 12);
  EXPECT_EQ(s.critical_path[0].name, "split");
  EXPECT_DOUBLE_EQ(s.critical_path_ratio(), 0.55);
  EXPECT_TRUE(s.latency_bound());
}

TEST(TraceSummary, FormatsAlignedTables) {
  const std::string text =
      parx::observe::format_trace_summary(summarize_trace_file(kData + "/trace_run.json"));
  EXPECT_NE(text.find("9 tasks (23 items, 2 failed) on 3 workers in 2 pools; wall 10.0 ms"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("simulate      6     20       2  8.30 ms  1.38 ms  1.00 ms  4.00 ms"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("split         1      1       0   500 µs   500 µs   500 µs   500 µs"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("40.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("2.00 ms at +3.00 ms"), std::string::npos) << text;
  EXPECT_NE(text.find("critical path  5.50 ms (55.0% of wall): with unlimited workers the run "
                      "could take 5.50 ms; it is latency-bound"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("split #10 → render #11 → render #12"), std::string::npos) << text;
  EXPECT_NE(text.find("simulate: std::runtime_error: bad input (task 3)"), std::string::npos)
      << text;
}

TEST(TraceSummary, JsonOutputCarriesTheFigures) {
  const std::string j =
      parx::observe::trace_summary_json(summarize_trace_file(kData + "/trace_run.json"));
  EXPECT_NE(j.find("\"critical_path_us\": 5500.0"), std::string::npos) << j;
  EXPECT_NE(j.find("\"bound\": \"latency\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"mean_queue_wait_us\": 112.0"), std::string::npos) << j;
  EXPECT_NE(j.find("\"name\": \"worker 0 · pid 4711 · host\""), std::string::npos) << j;
}

TEST(TraceSummary, IndependentTasksAreThroughputBound) {
  // No otherData: the wall runs from the first start (100) to the last end (300).
  const TraceSummary s = summarize_trace(R"({"traceEvents":[
    {"ph":"X","cat":"task","name":"f","pid":1,"tid":1,"ts":100,"dur":60},
    {"ph":"X","cat":"task","name":"f","pid":1,"tid":2,"ts":100,"dur":80},
    {"ph":"X","cat":"task","name":"f","pid":1,"tid":1,"ts":200,"dur":100},
    {"ph":"X","cat":"task","name":"f","pid":1,"tid":2,"ts":200,"dur":90}]})",
                                         "inline");
  EXPECT_FALSE(s.wall_from_metadata);
  EXPECT_DOUBLE_EQ(s.wall_us, 200);
  EXPECT_DOUBLE_EQ(s.critical_path_us, 100);  // the longest single task
  EXPECT_EQ(s.critical_path.size(), 1u);
  EXPECT_DOUBLE_EQ(s.critical_path_ratio(), 0.5);
  EXPECT_FALSE(s.latency_bound());  // exactly half is not more than half
  EXPECT_EQ(s.workers[0].name, "tid 1");
  EXPECT_EQ(s.workers[0].pool, "pid 1");
  EXPECT_DOUBLE_EQ(s.workers[0].utilisation, 0.8);
  EXPECT_NE(parx::observe::format_trace_summary(s).find("it is throughput-bound"),
            std::string::npos);
}

TEST(TraceSummary, PercentilesAreNearestRank) {
  std::string events;
  for (int i = 1; i <= 100; ++i)
    events += std::string(i > 1 ? "," : "") + R"({"ph":"X","cat":"task","name":"f","ts":)" +
              std::to_string(i * 1000) + R"(,"dur":)" + std::to_string(i) + "}";
  const TraceSummary s = summarize_trace("[" + events + "]", "inline");
  EXPECT_DOUBLE_EQ(s.functions[0].p50_us, 50);
  EXPECT_DOUBLE_EQ(s.functions[0].p99_us, 99);
  EXPECT_DOUBLE_EQ(s.functions[0].max_us, 100);
}

TEST(TraceSummary, OverlappingSlicesCountOnceInBusyTime) {
  // A task that waits on a future runs another inline: nested slices on one track.
  const TraceSummary s = summarize_trace(R"([
    {"ph":"X","cat":"task","name":"outer","tid":1,"ts":0,"dur":100},
    {"ph":"X","cat":"task","name":"inner","tid":1,"ts":20,"dur":30},
    {"ph":"X","cat":"task","name":"late","tid":1,"ts":90,"dur":20}])",
                                         "inline");
  EXPECT_DOUBLE_EQ(s.workers[0].busy_us, 110);
  EXPECT_DOUBLE_EQ(s.workers[0].utilisation, 1.0);
  EXPECT_EQ(s.workers[0].tasks, 3u);
}

TEST(TraceSummary, ArrayFormatIsAccepted) {
  const TraceSummary s = summarize_trace_file(kData + "/trace_array.json");
  EXPECT_EQ(s.tasks, 2u);
  EXPECT_EQ(s.items, 4u);
  EXPECT_DOUBLE_EQ(s.start_us, 100);
  EXPECT_DOUBLE_EQ(s.end_us, 220.5);
  EXPECT_DOUBLE_EQ(s.wall_us, 120.5);
  ASSERT_EQ(s.workers.size(), 2u);
  EXPECT_EQ(s.workers[0].name, "worker 0");
  EXPECT_TRUE(s.producer.empty());
}

TEST(TraceSummary, ParentLinksFormTheLongestChain) {
  // Two trees: 1 → 2 → 3 (10 + 20 + 30 = 60) and 4 → 5 (50 + 5 = 55); task 6 names a parent
  // that is not in the trace and counts alone.
  const TraceSummary s = summarize_trace(R"([
    {"ph":"X","cat":"task","name":"a","ts":0,"dur":10,"args":{"task":1}},
    {"ph":"X","cat":"task","name":"b","ts":10,"dur":20,"args":{"task":2,"parent":1}},
    {"ph":"X","cat":"task","name":"c","ts":30,"dur":30,"args":{"task":3,"parent":2}},
    {"ph":"X","cat":"task","name":"d","ts":0,"dur":50,"args":{"task":4}},
    {"ph":"X","cat":"task","name":"e","ts":50,"dur":5,"args":{"task":5,"parent":4}},
    {"ph":"X","cat":"task","name":"f","ts":0,"dur":58,"args":{"task":6,"parent":99}}])",
                                         "inline");
  EXPECT_DOUBLE_EQ(s.critical_path_us, 60);
  ASSERT_EQ(s.critical_path.size(), 3u);
  EXPECT_EQ(s.critical_path[0].name, "a");
  EXPECT_EQ(s.critical_path[2].name, "c");
}

TEST(TraceSummary, ParentCyclesAndDeepChainsEnd) {
  const TraceSummary cyc = summarize_trace(R"([
    {"ph":"X","cat":"task","name":"a","ts":0,"dur":10,"args":{"task":1,"parent":2}},
    {"ph":"X","cat":"task","name":"b","ts":0,"dur":20,"args":{"task":2,"parent":1}},
    {"ph":"X","cat":"task","name":"c","ts":0,"dur":5,"args":{"task":3,"parent":3}}])",
                                           "inline");
  EXPECT_DOUBLE_EQ(cyc.critical_path_us, 30);  // the cycle is cut once

  // A chain 20000 deep: no recursion, so no stack overflow.
  std::string events;
  for (int i = 0; i < 20000; ++i)
    events += std::string(i ? "," : "") + R"({"ph":"X","cat":"task","name":"n","ts":)" +
              std::to_string(i) + R"(,"dur":1,"args":{"task":)" + std::to_string(i) +
              (i ? R"(,"parent":)" + std::to_string(i - 1) : "") + "}}";
  const TraceSummary deep = summarize_trace("[" + events + "]", "inline");
  EXPECT_DOUBLE_EQ(deep.critical_path_us, 20000);
  EXPECT_EQ(deep.critical_path.size(), 20000u);
  EXPECT_NE(parx::observe::format_trace_summary(deep).find("(19995 more)"), std::string::npos);
}

TEST(TraceSummary, EmptyTraceSaysNoTasks) {
  for (const char* text : {R"({"traceEvents":[]})", "[]",
                           R"({"traceEvents":[{"ph":"M","name":"process_name","pid":1,
                                               "args":{"name":"ThreadPool 1"}}]})"}) {
    const TraceSummary s = summarize_trace(text, "empty.json");
    EXPECT_EQ(s.tasks, 0u);
    EXPECT_DOUBLE_EQ(s.wall_us, 0);
    EXPECT_DOUBLE_EQ(s.critical_path_us, 0);
    EXPECT_FALSE(s.latency_bound());
    const std::string out = parx::observe::format_trace_summary(s);
    EXPECT_NE(out.find("no tasks"), std::string::npos) << out;
    EXPECT_NE(parx::observe::trace_summary_json(s).find("\"bound\": \"none\""), std::string::npos);
  }
}

TEST(TraceSummary, UnknownEventsAndFieldsAreIgnored) {
  const TraceSummary s = summarize_trace(R"({"traceEvents":[
    {"ph":"X","cat":"task,io","name":"f","ts":1,"dur":2,"pid":1,"tid":1,"extra":{"x":[1,2]},
     "args":"not an object"},
    {"name":"no phase"},
    {"ph":"i","name":"something else","ts":3},
    {"ph":"X","cat":"task","name":"g","ts":1,"dur":1,
     "args":{"items":"many","status":42,"task":1.5,"queue_wait_us":"soon"}}
  ],"metadata":{"whatever":true}})",
                                         "inline");
  EXPECT_EQ(s.tasks, 2u);
  EXPECT_EQ(s.items, 2u);  // bad "items" counts as one
  EXPECT_EQ(s.failures, 0u);
  EXPECT_EQ(s.ignored_events, 2u);
  EXPECT_EQ(s.pools.size(), 2u);  // pid 1 and the default pid 0
}

// ---- errors ----------------------------------------------------------------------------------

TEST(TraceSummary, MissingFileNamesThePath) {
  const std::string msg = error_of([] { summarize_trace_file("/nonexistent/dir/run.json"); });
  EXPECT_NE(msg.find("cannot read /nonexistent/dir/run.json: No such file or directory"),
            std::string::npos)
      << msg;
  const std::string dir = error_of([] { summarize_trace_file(kData); });
  EXPECT_NE(dir.find("is a directory"), std::string::npos) << dir;
}

TEST(TraceSummary, TruncatedFileSaysSoWithTheByteOffset) {
  const std::string msg = error_of([] { summarize_trace_file(kData + "/trace_truncated.json"); });
  EXPECT_NE(msg.find("trace_truncated.json: truncated or not JSON (at byte 1500 of 1500"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("a trace is written when the program ends; was it killed?"), std::string::npos)
      << msg;
}

TEST(TraceSummary, GarbageIsNotJson) {
  const std::string msg = error_of([] { summarize_trace_file(kData + "/trace_garbage.json"); });
  EXPECT_NE(msg.find("trace_garbage.json: truncated or not JSON (at byte 1 of 33"),
            std::string::npos)
      << msg;
  EXPECT_NE(error_of([] {
              summarize_trace("", "zero.json");
            }).find("zero.json is empty — a trace is written when the program ends"),
            std::string::npos);
  EXPECT_NE(error_of([] { summarize_trace("[1e999]", "big.json"); }).find("big.json"),
            std::string::npos);
}

TEST(TraceSummary, JsonThatIsNotATrace) {
  const std::string msg = error_of([] { summarize_trace_file(kData + "/trace_not_a_trace.json"); });
  EXPECT_NE(msg.find("trace_not_a_trace.json is JSON but not a trace: no \"traceEvents\" array "
                     "(its keys are \"hello\", \"numbers\")"),
            std::string::npos)
      << msg;
  EXPECT_NE(error_of([] {
              summarize_trace(R"({"traceEvents":{}})", "t.json");
            }).find("\"traceEvents\" is an object, expected an array"),
            std::string::npos);
  EXPECT_NE(error_of([] { summarize_trace("42", "t.json"); }).find("it is a number"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              summarize_trace("[1]", "t.json");
            }).find("event 0 is a number, expected an object"),
            std::string::npos);
}

TEST(TraceSummary, WrongTypesNameTheEvent) {
  EXPECT_NE(error_of([] {
              summarize_trace(R"({"traceEvents":[{"ph":"M","name":"x"},
                {"ph":"X","cat":"task","name":"simulate","ts":"12","dur":1}]})",
                              "t.json");
            })
                .find("t.json: event 1 (ph \"X\", name \"simulate\"): \"ts\" is a string, expected "
                      "a number of microseconds"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              summarize_trace(R"([{"ph":"i","name":"worker crashed","ts":1,"dur":null}])", "t");
            }).find("event 0 (ph \"i\", name \"worker crashed\"): \"dur\" is null"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              summarize_trace(R"([{"ph":"X","cat":"task","name":"f","ts":1}])", "t");
            }).find("event 0 (ph \"X\", name \"f\") is a task slice without \"dur\""),
            std::string::npos);
  EXPECT_NE(error_of([] {
              summarize_trace(R"([{"ph":"X","cat":"task","name":"f","ts":1,"dur":-4}])", "t");
            }).find("\"dur\" is negative"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              summarize_trace(R"([{"ph":"X","cat":"task","name":"f","ts":1,"dur":1,"pid":"a"}])",
                              "t");
            }).find("\"pid\" is a string, expected an integer"),
            std::string::npos);
}

// Every prefix and thousands of byte-level mutations of a real trace either summarise or throw
// InvalidArgument: nothing else escapes, nothing crashes.
TEST(TraceSummary, NoInputCrashes) {
  const std::string good = slurp(kData + "/trace_run.json");
  ASSERT_FALSE(good.empty());
  long summarised = 0, refused = 0;
  auto attempt = [&](const std::string& text) {
    try {
      const TraceSummary s = summarize_trace(text, "fuzz");
      (void)parx::observe::format_trace_summary(s);
      (void)parx::observe::trace_summary_json(s);
      ++summarised;
    } catch (const parx::InvalidArgument&) {
      ++refused;
    }
  };
  for (std::size_t n = 0; n <= good.size(); ++n)
    attempt(good.substr(0, n));
  std::mt19937_64 rng(2026);
  const std::string alphabet = "{}[]\":,-.0123456789eE \ntruefalsnl\\u\xff\x80";
  for (int i = 0; i < 3000; ++i) {
    std::string m = good;
    for (int k = 0, edits = 1 + static_cast<int>(rng() % 4); k < edits; ++k) {
      const std::size_t at = rng() % m.size();
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          m[at] = c;
          break;
        case 1:
          m.insert(m.begin() + static_cast<long>(at), c);
          break;
        default:
          m.erase(at, 1 + rng() % 8);
          break;
      }
      if (m.empty()) m = "x";
    }
    attempt(m);
  }
  EXPECT_GT(summarised, 0);
  EXPECT_GT(refused, 0);
}

}  // namespace
