// Fuzz target for `parx trace summary`'s reader (parx/observe/trace_summary.hpp): any text must be
// summarised or refused with a parx::Error that says why. No crash, no read outside the input
// (ASan), no undefined behaviour (UBSan).
//
// Input: the trace file's text.
//
// Built as a libFuzzer target (preset `fuzz`) and as a deterministic replay in the suite (seeded
// with tests/data/trace_run.json and small traces of every event kind).
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include "parx/errors.hpp"
#include "parx/observe/trace_summary.hpp"
#include "replay.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)parx::observe::summarize_trace(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
  } catch (const parx::Error&) {
  }
  return 0;
}

std::vector<std::vector<std::uint8_t>> fuzz_seeds() {
  std::vector<std::string> texts = {
      R"({"traceEvents":[{"ph":"X","cat":"task","name":"f","pid":1,"tid":2,"ts":10,"dur":5,)"
      R"("args":{"task":3,"parent":1,"items":4,"status":"failed","error":"boom","queue_wait_us":2}},)"
      R"({"ph":"M","name":"thread_name","pid":1,"tid":2,"args":{"name":"worker 1"}},)"
      R"({"ph":"M","name":"process_name","pid":1,"args":{"name":"process pool 1"}},)"
      R"({"ph":"i","name":"worker crashed","pid":1,"tid":2,"ts":12},)"
      R"({"ph":"b","cat":"queue","name":"queued","id":3,"pid":1,"ts":8},)"
      R"({"ph":"e","cat":"queue","name":"queued","id":3,"pid":1,"ts":10}],)"
      R"("otherData":{"producer":"parx","version":"0.1.0","start_us":0,"end_us":20}})",
      R"([{"ph":"X","cat":"task","name":"g","pid":1,"tid":1,"ts":0,"dur":1,"args":{"task":1}},)"
      R"({"ph":"X","cat":"task","name":"g","pid":1,"tid":1,"ts":1,"dur":1,"args":{"task":2,"parent":1}}])",
  };
#ifdef PARX_FUZZ_SEED_TRACE
  std::ifstream in(PARX_FUZZ_SEED_TRACE);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!ss.str().empty()) texts.push_back(ss.str());
#endif
  std::vector<std::vector<std::uint8_t>> seeds;
  for (const std::string& t : texts)
    seeds.emplace_back(t.begin(), t.end());
  return seeds;
}
