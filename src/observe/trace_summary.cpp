// The trace summariser: reads Chrome-trace JSON (what PARX_TRACE writes) into a TraceSummary.
//
// Every access to the parsed document checks the type first (find + is_*), so no input reaches
// nlohmann's assertions or type errors; the only exceptions that leave are InvalidArgument.
#include "parx/observe/trace_summary.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "observe/trace_text.hpp"
#include "parx/errors.hpp"

namespace parx::observe {
namespace {

using json = nlohmann::json;
using detail::display;
using detail::width;

[[noreturn]] void fail(const std::string& what) {
  throw InvalidArgument(what);
}

// "an object", "a string", "null": for messages.
std::string a_type(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_object() || v.is_array()) return std::string("an ") + v.type_name();
  return std::string("a ") + v.type_name();
}

std::string describe(const json& e, std::size_t index) {
  std::string d = "event " + std::to_string(index);
  const auto ph = e.find("ph");
  const auto name = e.find("name");
  const bool has_ph = ph != e.end() && ph->is_string();
  const bool has_name = name != e.end() && name->is_string();
  if (has_ph || has_name) {
    d += " (";
    if (has_ph) d += "ph \"" + display(ph->get_ref<const std::string&>(), 8) + "\"";
    if (has_ph && has_name) d += ", ";
    if (has_name) d += "name \"" + display(name->get_ref<const std::string&>(), 40) + "\"";
    d += ")";
  }
  return d;
}

// The number at `key` of event `e`: nullopt when absent; throws, naming the event, when present
// but not a finite number.
std::optional<double> time_field(const json& e, const char* key, std::size_t index,
                                 const std::string& source) {
  const auto it = e.find(key);
  if (it == e.end()) return std::nullopt;
  if (!it->is_number())
    fail(source + ": " + describe(e, index) + ": \"" + key + "\" is " + a_type(*it) +
         ", expected a number of microseconds");
  const double v = it->get<double>();
  if (!std::isfinite(v))
    fail(source + ": " + describe(e, index) + ": \"" + key + "\" is not a finite number");
  return v;
}

// An integer-valued number, or nullopt for anything else (wrong type, fraction, out of range).
std::optional<std::int64_t> as_int(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<std::int64_t>();
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // 2^63 is exactly representable; anything in [-2^63, 2^63) converts without overflow.
    if (std::isfinite(d) && d == std::floor(d) && d >= -9223372036854775808.0 &&
        d < 9223372036854775808.0)
      return static_cast<std::int64_t>(d);
  }
  return std::nullopt;
}

// "pid"/"tid" of an event: 0 when absent; throws when present but not an integer.
std::int64_t id_field(const json& e, const char* key, std::size_t index,
                      const std::string& source) {
  const auto it = e.find(key);
  if (it == e.end()) return 0;
  if (auto v = as_int(*it)) return *v;
  fail(source + ": " + describe(e, index) + ": \"" + key + "\" is " +
       (it->is_number() ? std::string("a fraction or out of range") : a_type(*it)) +
       ", expected an integer");
}

const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

const std::string* string_member(const json& obj, const char* key) {
  const json* v = member(obj, key);
  return v && v->is_string() ? &v->get_ref<const std::string&>() : nullptr;
}

std::optional<double> number_member(const json& obj, const char* key) {
  const json* v = member(obj, key);
  if (!v || !v->is_number()) return std::nullopt;
  const double d = v->get<double>();
  return std::isfinite(d) ? std::optional<double>(d) : std::nullopt;
}

std::optional<std::int64_t> int_member(const json& obj, const char* key) {
  const json* v = member(obj, key);
  return v ? as_int(*v) : std::nullopt;
}

// Chrome's "cat" is a comma-separated list of categories.
bool has_category(const json& e, std::string_view want) {
  const std::string* cat = string_member(e, "cat");
  if (!cat) return false;
  std::string_view rest = *cat;
  while (true) {
    const auto comma = rest.find(',');
    std::string_view one = rest.substr(0, comma);
    while (!one.empty() && one.front() == ' ')
      one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ')
      one.remove_suffix(1);
    if (one == want) return true;
    if (comma == std::string_view::npos) return false;
    rest.remove_prefix(comma + 1);
  }
}

enum class Status : std::uint8_t { ok, failed, cancelled };

struct Slice {
  std::string name;
  std::int64_t pid = 0, tid = 0;
  double ts = 0, dur = 0;
  std::optional<std::int64_t> task, parent;
  std::uint64_t items = 1;
  Status status = Status::ok;
  std::string error;
  std::optional<double> queue_wait;
  double end() const { return ts + dur; }
};

struct PoolCounts {
  std::size_t crashes = 0, restarts = 0, retries = 0, cancelled = 0, started = 0, stopped = 0;
};

using Track = std::pair<std::int64_t, std::int64_t>;    // pid, tid
using QueueKey = std::pair<std::int64_t, std::string>;  // pid, id

// The id of a "b"/"e" event or of a task, as the text both share.
std::optional<std::string> id_text(const json* v) {
  if (!v) return std::nullopt;
  if (v->is_string()) return v->get<std::string>();
  if (auto i = as_int(*v)) return std::to_string(*i);
  return std::nullopt;
}

// Nearest rank: the ceil(pct/100·n)-th smallest (1-based), in integers so that p50 of 6 values
// is exactly the 3rd.
double percentile(const std::vector<double>& sorted, std::size_t pct) {
  if (sorted.empty()) return 0;
  const std::size_t rank = std::max<std::size_t>(1, (pct * sorted.size() + 99) / 100);
  return sorted[std::min(rank, sorted.size()) - 1];
}

std::string fallback_name(const char* what, std::int64_t v) {
  return std::string(what) + " " + std::to_string(v);
}

// The events of the document, or a message saying why it is not a trace.
const json& events_of(const json& doc, const std::string& source) {
  if (doc.is_array()) return doc;
  if (!doc.is_object())
    fail(source + " is JSON but not a trace: it is " + a_type(doc) +
         ", expected an object with a \"traceEvents\" array or an array of events");
  const auto it = doc.find("traceEvents");
  if (it == doc.end()) {
    std::string keys;
    std::size_t n = 0;
    for (auto k = doc.begin(); k != doc.end() && n < 5; ++k, ++n)
      keys += (n ? ", " : "") + ("\"" + display(k.key(), 24) + "\"");
    if (doc.size() > 5) keys += ", …";
    fail(source + " is JSON but not a trace: no \"traceEvents\" array (" +
         (keys.empty() ? std::string("the object is empty") : "its keys are " + keys) + ")");
  }
  if (!it->is_array())
    fail(source + " is JSON but not a trace: \"traceEvents\" is " + a_type(*it) +
         ", expected an array of events");
  return *it;
}

// What the event pass collects.
struct Parsed {
  std::vector<Slice> slices;
  std::map<std::int64_t, std::string> pool_names;
  std::map<Track, std::string> thread_names;
  std::map<std::int64_t, PoolCounts> counts;
  std::set<std::int64_t> pids;
  std::map<QueueKey, double> queue_begin, queue_end;
};

json parse_document(std::string_view json_text, const std::string& source) {
  if (json_text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    fail(source + " is empty — a trace is written when the program ends; was it killed?");
  json doc;
  try {
    doc = json::parse(json_text.begin(), json_text.end());
  } catch (const json::parse_error& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 9: <reason>".
    std::string reason = e.what();
    const auto colon = reason.find(": ");
    if (colon != std::string::npos) reason.erase(0, colon + 2);
    reason = display(reason, 200);  // its "last read" quotes the input, control bytes and all
    // At the end of the input the parser counts one byte past it.
    fail(source + ": truncated or not JSON (at byte " +
         std::to_string(std::min<std::size_t>(e.byte, json_text.size())) + " of " +
         std::to_string(json_text.size()) + ": " + reason +
         ") — a trace is written when the program ends; was it killed?");
  } catch (const json::exception& e) {  // e.g. a number too large for a double
    fail(source + ": not a readable JSON trace (" + std::string(e.what()) + ")");
  }

  return doc;
}

// A task slice ("X", category task), checked.
Slice read_slice(const json& e, const json& a, std::size_t i, const std::string& source,
                 std::optional<double> ts, std::optional<double> dur) {
  const std::string* name = string_member(e, "name");
  if (!ts) fail(source + ": " + describe(e, i) + " is a task slice without \"ts\"");
  if (!dur) fail(source + ": " + describe(e, i) + " is a task slice without \"dur\"");
  if (*dur < 0)
    fail(source + ": " + describe(e, i) + ": \"dur\" is negative (" + std::to_string(*dur) + ")");
  Slice t;
  t.name = name ? *name : std::string("(unnamed)");
  t.pid = id_field(e, "pid", i, source);
  t.tid = id_field(e, "tid", i, source);
  t.ts = *ts;
  t.dur = *dur;
  t.task = int_member(a, "task");
  t.parent = int_member(a, "parent");
  if (auto items = int_member(a, "items"); items && *items >= 0)
    t.items = static_cast<std::uint64_t>(*items);
  if (const std::string* st = string_member(a, "status")) {
    if (*st == "failed") t.status = Status::failed;
    if (*st == "cancelled") t.status = Status::cancelled;
  }
  if (const std::string* err = string_member(a, "error")) t.error = *err;
  if (auto w = number_member(a, "queue_wait_us"); w && *w >= 0) t.queue_wait = w;
  return t;
}

// One pass over the events: task slices, names, markers and queue waits.
Parsed read_events(const json& events, const std::string& source, TraceSummary& s) {
  Parsed p;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const json& e = events[i];
    if (!e.is_object())
      fail(source + ": event " + std::to_string(i) + " is " + a_type(e) + ", expected an object");
    const std::optional<double> ts = time_field(e, "ts", i, source);
    const std::optional<double> dur = time_field(e, "dur", i, source);
    const std::string* ph = string_member(e, "ph");
    const std::string* name = string_member(e, "name");
    const json* args = member(e, "args");
    static const json no_args = json::object();
    const json& a = args && args->is_object() ? *args : no_args;

    if (ph && *ph == "X" && has_category(e, "task")) {
      Slice t = read_slice(e, a, i, source, ts, dur);
      p.pids.insert(t.pid);
      p.slices.push_back(std::move(t));
    } else if (ph && *ph == "M" && name && (*name == "process_name" || *name == "thread_name")) {
      const std::string* label = string_member(a, "name");
      const std::int64_t pid = id_field(e, "pid", i, source);
      p.pids.insert(pid);
      if (!label) continue;
      if (*name == "process_name")
        p.pool_names[pid] = *label;
      else
        p.thread_names[{pid, id_field(e, "tid", i, source)}] = *label;
    } else if (ph && (*ph == "i" || *ph == "I") && name) {
      std::size_t PoolCounts::*counter = nullptr;
      if (*name == "worker crashed") counter = &PoolCounts::crashes;
      if (*name == "worker restarted") counter = &PoolCounts::restarts;
      if (*name == "task retried") counter = &PoolCounts::retries;
      if (*name == "task cancelled") counter = &PoolCounts::cancelled;
      if (*name == "worker started") counter = &PoolCounts::started;
      if (*name == "worker stopped") counter = &PoolCounts::stopped;
      if (!counter) {
        ++s.ignored_events;
        continue;
      }
      const std::int64_t pid = id_field(e, "pid", i, source);
      ++(p.counts[pid].*counter);
      p.pids.insert(pid);
    } else if (ph && (*ph == "b" || *ph == "e") && ts && has_category(e, "queue")) {
      const std::optional<std::string> id = id_text(member(e, "id"));
      if (!id) {
        ++s.ignored_events;
        continue;
      }
      const std::int64_t pid = id_field(e, "pid", i, source);
      p.pids.insert(pid);
      auto& m = *ph == "b" ? p.queue_begin : p.queue_end;
      m.emplace(QueueKey{pid, *id}, *ts);  // the first of duplicates wins
    } else {
      ++s.ignored_events;
    }
  }

  return p;
}

std::string pool_name(const Parsed& p, std::int64_t pid) {
  const auto it = p.pool_names.find(pid);
  return it != p.pool_names.end() ? it->second : fallback_name("pid", pid);
}

void summarize_span(const json& doc, const std::vector<Slice>& slices, TraceSummary& s) {
  s.tasks = slices.size();
  if (!slices.empty()) {
    s.start_us = slices.front().ts;
    s.end_us = slices.front().end();
    for (const Slice& t : slices) {
      s.start_us = std::min(s.start_us, t.ts);
      s.end_us = std::max(s.end_us, t.end());
      s.items += t.items;
      s.failures += t.status == Status::failed;
      s.cancelled += t.status == Status::cancelled;
    }
  }
  if (const json* other = member(doc, "otherData")) {
    const auto a = number_member(*other, "start_us");
    const auto b = number_member(*other, "end_us");
    if (a && b && *b >= *a) {
      s.start_us = slices.empty() ? *a : std::min(s.start_us, *a);
      s.end_us = slices.empty() ? *b : std::max(s.end_us, *b);
      s.wall_from_metadata = true;
    }
  }
  s.wall_us = s.end_us - s.start_us;
}

void summarize_functions(const std::vector<Slice>& slices, TraceSummary& s) {
  std::map<std::string, std::vector<const Slice*>> by_name;
  for (const Slice& t : slices)
    by_name[t.name].push_back(&t);
  for (auto& [fn, list] : by_name) {
    FunctionSummary f;
    f.name = fn;
    f.tasks = list.size();
    std::vector<double> durs;
    durs.reserve(list.size());
    const Slice* first_failed = nullptr;
    for (const Slice* t : list) {
      f.items += t->items;
      f.failures += t->status == Status::failed;
      f.cancelled += t->status == Status::cancelled;
      f.total_us += t->dur;
      durs.push_back(t->dur);
      if (t->status == Status::failed && !t->error.empty() &&
          (!first_failed || t->ts < first_failed->ts))
        first_failed = t;
    }
    std::sort(durs.begin(), durs.end());
    f.mean_us = f.total_us / static_cast<double>(f.tasks);
    f.p50_us = percentile(durs, 50);
    f.p99_us = percentile(durs, 99);
    f.max_us = durs.back();
    if (first_failed) {
      f.first_error = first_failed->error;
      f.first_error_task = first_failed->task.value_or(-1);
    }
    s.functions.push_back(std::move(f));
  }
  std::sort(s.functions.begin(), s.functions.end(), [](const auto& x, const auto& y) {
    return x.total_us != y.total_us ? x.total_us > y.total_us : x.name < y.name;
  });
}

void summarize_workers(const Parsed& p, const TraceSummaryOptions& options, TraceSummary& s) {
  const auto& slices = p.slices;
  const auto& thread_names = p.thread_names;
  std::map<Track, std::vector<std::pair<double, double>>> by_track;  // (start, end)
  for (const auto& [track, label] : thread_names)
    if (track.second != 0) by_track[track];  // a named worker that never ran a task: idle
  for (const Slice& t : slices)
    by_track[{t.pid, t.tid}].emplace_back(t.ts, t.end());
  for (auto& [track, spans] : by_track) {
    WorkerSummary w;
    w.pid = track.first;
    w.tid = track.second;
    const auto named = thread_names.find(track);
    w.name = named != thread_names.end() ? named->second : fallback_name("tid", track.second);
    w.pool = pool_name(p, track.first);
    w.tasks = spans.size();
    std::sort(spans.begin(), spans.end());
    // Merge overlapping slices (a task run inline while another waits) into busy intervals.
    double cur_start = 0, cur_end = 0;
    bool open = false;
    for (const auto& [a, b] : spans) {
      if (open && a <= cur_end) {
        cur_end = std::max(cur_end, b);
        continue;
      }
      if (open) {
        w.busy_us += cur_end - cur_start;
        const double gap = a - cur_end;
        if (gap > options.idle_gap_threshold_us) ++w.idle_gaps;
        if (gap > w.longest_gap_us) {
          w.longest_gap_us = gap;
          w.longest_gap_at_us = cur_end - s.start_us;
        }
      }
      cur_start = a;
      cur_end = b;
      open = true;
    }
    if (open) w.busy_us += cur_end - cur_start;
    w.utilisation = s.wall_us > 0 ? w.busy_us / s.wall_us : 0.0;
    s.busy_us += w.busy_us;
    s.workers.push_back(std::move(w));
  }
}

void summarize_pools(const Parsed& p, TraceSummary& s) {
  std::map<std::int64_t, std::vector<double>> waits;
  std::set<QueueKey> waited;  // tasks whose wait came from their slice's args
  for (const Slice& t : p.slices)
    if (t.queue_wait) {
      waits[t.pid].push_back(*t.queue_wait);
      if (t.task) waited.insert({t.pid, std::to_string(*t.task)});
    }
  for (const auto& [key, begin] : p.queue_begin) {
    const auto end = p.queue_end.find(key);
    if (end == p.queue_end.end() || end->second < begin || waited.count(key)) continue;
    waits[key.first].push_back(end->second - begin);
  }
  for (std::int64_t pid : p.pids) {
    PoolSummary ps;
    ps.pid = pid;
    ps.name = pool_name(p, pid);
    for (const WorkerSummary& w : s.workers)
      if (w.pid == pid) {
        ++ps.workers;
        ps.tasks += w.tasks;
      }
    if (const auto c = p.counts.find(pid); c != p.counts.end()) {
      ps.crashes = c->second.crashes;
      ps.restarts = c->second.restarts;
      ps.retries = c->second.retries;
      ps.cancelled = c->second.cancelled;
      ps.workers_started = c->second.started;
      ps.workers_stopped = c->second.stopped;
    }
    if (const auto w = waits.find(pid); w != waits.end() && !w->second.empty()) {
      double sum = 0;
      for (double x : w->second) {
        sum += x;
        ps.max_queue_wait_us = std::max(ps.max_queue_wait_us, x);
      }
      ps.queue_waits = w->second.size();
      ps.mean_queue_wait_us = sum / static_cast<double>(w->second.size());
    }
    s.pools.push_back(std::move(ps));
  }
}

// The longest chain through the spawn tree.
void summarize_critical_path(const std::vector<Slice>& slices, TraceSummary& s) {
  // A parent is looked up in its child's pool first, then anywhere if its id is unique there.
  // Of several slices with one id (a retried task), the one that ended last is the task.
  const std::size_t n = slices.size();
  std::map<std::pair<std::int64_t, std::int64_t>, std::size_t> by_pool_id;
  std::map<std::int64_t, std::optional<std::size_t>> by_id;  // nullopt: ambiguous
  for (std::size_t i = 0; i < n; ++i) {
    if (!slices[i].task) continue;
    const std::int64_t id = *slices[i].task;
    auto [it, fresh] = by_pool_id.try_emplace({slices[i].pid, id}, i);
    if (!fresh && slices[i].end() > slices[it->second].end()) it->second = i;
    auto [g, gfresh] = by_id.try_emplace(id, i);
    if (!gfresh && g->second && slices[*g->second].pid != slices[i].pid) g->second.reset();
  }
  std::vector<std::optional<std::size_t>> parent(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (!slices[i].parent) continue;
    if (const auto it = by_pool_id.find({slices[i].pid, *slices[i].parent}); it != by_pool_id.end())
      parent[i] = it->second;
    else if (const auto g = by_id.find(*slices[i].parent); g != by_id.end() && g->second)
      parent[i] = by_pool_id.at({slices[*g->second].pid, *slices[i].parent});
  }
  // Iterative memoised walk up the parent links (chains can be deep; cycles are cut where the
  // walk meets a slice it is still resolving).
  std::vector<double> path(n, 0.0);
  std::vector<std::optional<std::size_t>> via(n);
  std::vector<std::uint8_t> state(n, 0);  // 0 unseen, 1 on the current walk, 2 done
  std::vector<std::size_t> walk;
  for (std::size_t i = 0; i < n; ++i) {
    for (std::optional<std::size_t> cur = i; cur && state[*cur] == 0; cur = parent[*cur]) {
      state[*cur] = 1;
      walk.push_back(*cur);
    }
    while (!walk.empty()) {
      const std::size_t k = walk.back();
      walk.pop_back();
      const std::optional<std::size_t> p = parent[k];
      const bool linked = p && state[*p] == 2;
      path[k] = slices[k].dur + (linked ? path[*p] : 0.0);
      if (linked) via[k] = p;
      state[k] = 2;
    }
  }
  if (n > 0) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < n; ++i)
      if (path[i] > path[best]) best = i;
    s.critical_path_us = path[best];
    for (std::optional<std::size_t> k = best; k; k = via[*k])
      s.critical_path.push_back(
          {slices[*k].name, slices[*k].task.value_or(-1), slices[*k].ts, slices[*k].dur});
    std::reverse(s.critical_path.begin(), s.critical_path.end());
  }
}

}  // namespace

TraceSummary summarize_trace(std::string_view json_text, std::string_view source_name,
                             const TraceSummaryOptions& options) {
  const std::string source(source_name);
  const json doc = parse_document(json_text, source);
  const json& events = events_of(doc, source);
  TraceSummary s;
  s.source = source;
  s.idle_gap_threshold_us = options.idle_gap_threshold_us;
  s.events = events.size();
  if (const json* other = member(doc, "otherData")) {
    if (const std::string* pr = string_member(*other, "producer")) s.producer = *pr;
    if (const std::string* v = string_member(*other, "version")) s.producer_version = *v;
  }
  const Parsed p = read_events(events, source, s);
  summarize_span(doc, p.slices, s);
  summarize_functions(p.slices, s);
  summarize_workers(p, options, s);
  summarize_pools(p, s);
  summarize_critical_path(p.slices, s);
  return s;
}

TraceSummary summarize_trace_file(const std::filesystem::path& path,
                                  const TraceSummaryOptions& options) {
  const std::string shown = path.string();
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail("cannot read " + shown + ": it is a directory, not a trace file");
  // Only a regular file of a bounded size: a FIFO or a device (/dev/zero) would be read without
  // end. The size is checked on the open file, and reading stops at the bound in any case.
  std::FILE* f = std::fopen(path.c_str(), "rb");
  // generic_category().message is strerror without its shared buffer (thread-safe).
  if (!f) fail("cannot read " + shown + ": " + std::generic_category().message(errno));
  struct stat st {};
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    std::fclose(f);
    fail("cannot read " + shown + ": not a regular file (a trace is a file parx wrote)");
  }
  const std::uint64_t limit = options.max_file_bytes;
  auto too_big = [&] {
    std::fclose(f);
    fail("cannot read " + shown + ": larger than " + std::to_string(limit >> 20) +
         " MiB (parsing it would take about 15 times that in memory; raise the limit with "
         "--max-size-mb)");
  };
  if (static_cast<std::uint64_t>(st.st_size) > limit) too_big();
  std::string text;
  text.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  std::size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, got);
    if (text.size() > limit) too_big();  // it grew while being read
  }
  const bool bad = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (bad) fail("cannot read " + shown + ": " + std::generic_category().message(err));
  return summarize_trace(text, shown, options);
}

}  // namespace parx::observe
