// The trace summary as text and as JSON (what `parx trace summary` prints).
#include "parx/observe/trace_summary.hpp"

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

using detail::display;
using detail::width;

// ---- formatting ---------------------------------------------------------------------------

std::string format_duration_us(double us) {
  if (!std::isfinite(us)) return "?";
  const char* unit = "µs";
  double v = us;
  const double a = std::fabs(us);
  if (a >= 999.5e3) {
    v = us / 1e6;
    unit = "s";
  } else if (a >= 999.5) {
    v = us / 1e3;
    unit = "ms";
  }
  const double av = std::fabs(v);
  const int decimals = av == 0 ? 0 : av < 9.995 ? 2 : av < 99.95 ? 1 : 0;
  char out[48];
  std::snprintf(out, sizeof out, "%.*f %s", decimals, v, unit);
  return out;
}

namespace {

std::string percent(double ratio) {
  char out[32];
  std::snprintf(out, sizeof out, "%.1f%%", ratio * 100.0);
  return out;
}

// Aligned columns: the first `left` columns are left-aligned, the rest right-aligned.
struct Table {
  std::vector<std::vector<std::string>> rows;
  std::size_t left = 1;

  std::string render(std::string_view indent = "") const {
    std::vector<std::size_t> w;
    for (const auto& r : rows)
      for (std::size_t c = 0; c < r.size(); ++c) {
        if (w.size() <= c) w.push_back(0);
        w[c] = std::max(w[c], width(r[c]));
      }
    std::string out;
    for (const auto& r : rows) {
      std::string line(indent);
      for (std::size_t c = 0; c < r.size(); ++c) {
        const std::string pad(w[c] - width(r[c]), ' ');
        if (c) line += "  ";
        line += c < left ? r[c] + pad : pad + r[c];
      }
      while (!line.empty() && line.back() == ' ')
        line.pop_back();
      out += line + '\n';
    }
    return out;
  }
};

std::string count(std::uint64_t n) {
  return std::to_string(n);
}

}  // namespace

std::string format_trace_summary(const TraceSummary& s) {
  std::string out = "trace " + display(s.source, 200);
  if (!s.producer.empty())
    out += " (" + display(s.producer, 32) +
           (s.producer_version.empty() ? "" : " " + display(s.producer_version, 32)) + ")";
  out += ": " + count(s.events) + (s.events == 1 ? " event" : " events");
  if (s.ignored_events) out += ", " + count(s.ignored_events) + " not used here";
  out += '\n';
  if (s.tasks == 0) {
    out += "no tasks: the trace holds no task slices (ph \"X\", cat \"task\")";
    if (!s.pools.empty())
      out +=
          "; " + count(s.pools.size()) + (s.pools.size() == 1 ? " pool" : " pools") + " recorded";
    out += '\n';
    return out;
  }
  out += count(s.tasks) + (s.tasks == 1 ? " task" : " tasks") + " (" + count(s.items) +
         (s.items == 1 ? " item" : " items") + ", " + count(s.failures) + " failed";
  if (s.cancelled) out += ", " + count(s.cancelled) + " cancelled";
  out += ") on " + count(s.workers.size()) + (s.workers.size() == 1 ? " worker" : " workers") +
         " in " + count(s.pools.size()) + (s.pools.size() == 1 ? " pool" : " pools") + "; wall " +
         format_duration_us(s.wall_us) + "\n\n";

  Table fns;
  fns.rows.push_back({"function", "tasks", "items", "failed", "total", "mean", "p50", "p99"});
  for (const FunctionSummary& f : s.functions)
    fns.rows.push_back({display(f.name), count(f.tasks), count(f.items), count(f.failures),
                        format_duration_us(f.total_us), format_duration_us(f.mean_us),
                        format_duration_us(f.p50_us), format_duration_us(f.p99_us)});
  out += fns.render() + '\n';

  Table ws;
  ws.left = 2;
  const std::string gap_head = "gaps > " + format_duration_us(s.idle_gap_threshold_us);
  ws.rows.push_back({"worker", "pool", "tasks", "busy", "util", gap_head, "longest gap"});
  for (const WorkerSummary& w : s.workers)
    ws.rows.push_back({display(w.name), display(w.pool, 32), count(w.tasks),
                       format_duration_us(w.busy_us), percent(w.utilisation), count(w.idle_gaps),
                       w.longest_gap_us > 0 ? format_duration_us(w.longest_gap_us) + " at +" +
                                                  format_duration_us(w.longest_gap_at_us)
                                            : "-"});
  out += ws.render() + '\n';

  Table ps;
  ps.rows.push_back({"pool", "workers", "tasks", "crashes", "restarts", "retries", "cancelled",
                     "mean wait", "max wait"});
  for (const PoolSummary& p : s.pools)
    ps.rows.push_back({display(p.name), count(p.workers), count(p.tasks), count(p.crashes),
                       count(p.restarts), count(p.retries), count(p.cancelled),
                       p.queue_waits ? format_duration_us(p.mean_queue_wait_us) : "-",
                       p.queue_waits ? format_duration_us(p.max_queue_wait_us) : "-"});
  out += ps.render() + '\n';

  Table all;
  all.left = 2;
  all.rows.push_back({"wall time", format_duration_us(s.wall_us) +
                                       (s.wall_from_metadata ? " (as recorded by the producer)"
                                                             : " (first task start to last end)")});
  char avg[64];
  std::snprintf(avg, sizeof avg, "%.2f", s.wall_us > 0 ? s.busy_us / s.wall_us : 0.0);
  all.rows.push_back(
      {"busy", format_duration_us(s.busy_us) + " (" + avg + " workers busy on average)"});
  const std::string cp = format_duration_us(s.critical_path_us);
  all.rows.push_back({"critical path",
                      cp + " (" + percent(s.critical_path_ratio()) +
                          " of wall): with unlimited workers the run could take " + cp +
                          "; it is " + (s.latency_bound() ? "latency-bound" : "throughput-bound")});
  if (s.critical_path.size() > 1) {
    std::string chain;
    const std::size_t n = s.critical_path.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (n > 6 && i == 3) {
        chain += " → … (" + count(n - 5) + " more)";
        i = n - 3;
        continue;
      }
      const PathStep& st = s.critical_path[i];
      chain += (i ? " → " : "") + display(st.name, 32) +
               (st.task >= 0 ? " #" + std::to_string(st.task) : "");
    }
    all.rows.push_back({"", chain});
  }
  out += all.render();

  bool any_error = false;
  for (const FunctionSummary& f : s.functions)
    if (!f.first_error.empty()) {
      if (!any_error) out += "\nfirst error per function\n";
      any_error = true;
      out += "  " + display(f.name) + ": " + display(f.first_error, 160) +
             (f.first_error_task >= 0 ? " (task " + std::to_string(f.first_error_task) + ")" : "") +
             '\n';
    }
  return out;
}

std::string trace_summary_json(const TraceSummary& s) {
  using ojson = nlohmann::ordered_json;
  const char* bound = s.tasks == 0 ? "none" : s.latency_bound() ? "latency" : "throughput";
  ojson j = {{"source", s.source},
             {"producer", s.producer},
             {"producer_version", s.producer_version},
             {"events", s.events},
             {"ignored_events", s.ignored_events},
             {"tasks", s.tasks},
             {"items", s.items},
             {"failures", s.failures},
             {"cancelled", s.cancelled},
             {"start_us", s.start_us},
             {"end_us", s.end_us},
             {"wall_us", s.wall_us},
             {"wall_from_metadata", s.wall_from_metadata},
             {"busy_us", s.busy_us},
             {"critical_path_us", s.critical_path_us},
             {"critical_path_ratio", s.critical_path_ratio()},
             {"bound", bound},
             {"idle_gap_threshold_us", s.idle_gap_threshold_us}};
  ojson& path = j["critical_path"] = ojson::array();
  for (const PathStep& st : s.critical_path)
    path.push_back(
        {{"name", st.name}, {"task", st.task}, {"start_us", st.start_us}, {"dur_us", st.dur_us}});
  ojson& fns = j["functions"] = ojson::array();
  for (const FunctionSummary& f : s.functions)
    fns.push_back({{"name", f.name},
                   {"tasks", f.tasks},
                   {"items", f.items},
                   {"failures", f.failures},
                   {"cancelled", f.cancelled},
                   {"total_us", f.total_us},
                   {"mean_us", f.mean_us},
                   {"p50_us", f.p50_us},
                   {"p99_us", f.p99_us},
                   {"max_us", f.max_us},
                   {"first_error", f.first_error},
                   {"first_error_task", f.first_error_task}});
  ojson& workers = j["workers"] = ojson::array();
  for (const WorkerSummary& w : s.workers)
    workers.push_back({{"pid", w.pid},
                       {"tid", w.tid},
                       {"name", w.name},
                       {"pool", w.pool},
                       {"tasks", w.tasks},
                       {"busy_us", w.busy_us},
                       {"utilisation", w.utilisation},
                       {"idle_gaps", w.idle_gaps},
                       {"longest_gap_us", w.longest_gap_us},
                       {"longest_gap_at_us", w.longest_gap_at_us}});
  ojson& pools = j["pools"] = ojson::array();
  for (const PoolSummary& p : s.pools)
    pools.push_back({{"pid", p.pid},
                     {"name", p.name},
                     {"workers", p.workers},
                     {"tasks", p.tasks},
                     {"crashes", p.crashes},
                     {"restarts", p.restarts},
                     {"retries", p.retries},
                     {"cancelled", p.cancelled},
                     {"workers_started", p.workers_started},
                     {"workers_stopped", p.workers_stopped},
                     {"queue_waits", p.queue_waits},
                     {"mean_queue_wait_us", p.mean_queue_wait_us},
                     {"max_queue_wait_us", p.max_queue_wait_us}});
  // Names come from the trace (valid UTF-8: the parser checked) or from a path (maybe not).
  return j.dump(2, ' ', false, ojson::error_handler_t::replace) + '\n';
}

}  // namespace parx::observe
