// TraceRecorder (parx/observe/trace.hpp): records observe events, writes Chrome-trace JSON.
#include "parx/observe/trace.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <vector>

#include "parx/detail/sync.hpp"
#include "parx/observe/dashboard.hpp"
#include "parx/observe/events.hpp"
#include "parx/version.hpp"

namespace parx::observe {

using EK = EventKind;

struct TraceRecorder::Impl {
  struct Rec {
    EK kind;
    std::int32_t worker;
    std::int32_t rank;
    std::uint32_t items;
    std::uint64_t exec;
    std::uint64_t task;
    std::int64_t t;
    std::int64_t pid;
    std::int64_t dur;
    std::uint32_t name = 0, host = 0, detail = 0, ekind = 0;
  };

  std::string path;
  std::uint64_t only;
  bool discarded = false;
  std::int64_t t0 = parx::detail::now_ns();
  mutable std::mutex mu;
  std::vector<Rec> recs;
  std::vector<std::string> strings{""};
  std::unordered_map<std::string, std::uint32_t> ids;
  Subscription sub;

  std::uint32_t intern(const char* s) {
    if (!s || !*s) return 0;
    auto [it, fresh] = ids.try_emplace(s, static_cast<std::uint32_t>(strings.size()));
    if (fresh) strings.emplace_back(s);
    return it->second;
  }

  void on(const Event& e) {
    std::lock_guard lk(mu);
    if (only && e.executor_id != only) return;
    Rec r{e.kind,    e.worker,  e.rank, e.items,      e.executor_id,
          e.task_id, e.time_ns, e.pid,  e.duration_ns};
    r.name = intern(e.name);
    r.host = intern(e.host);
    r.detail = intern(e.detail);
    r.ekind = intern(e.executor_kind);
    recs.push_back(r);
  }

  double us(std::int64_t t) const { return static_cast<double>(t - t0) / 1000.0; }

  nlohmann::json build() const;
  bool write() const;
};

namespace {

std::string pool_title(const std::string& kind, std::uint64_t id) {
  std::string k = kind == "process"   ? "ProcessPool"
                  : kind == "cluster" ? "ClusterPool"
                                      : "ThreadPool";
  return k + " " + std::to_string(id);
}

}  // namespace

nlohmann::json TraceRecorder::Impl::build() const {
  using nlohmann::json;
  std::vector<Rec> rs;
  std::vector<std::string> strs;
  {
    std::lock_guard lk(mu);
    for (const Rec& r : recs)
      if (!only || r.exec == only) rs.push_back(r);
    strs = strings;
  }
  json events = json::array();
  struct Task {
    const Rec* queued = nullptr;
    const Rec* started = nullptr;
    const Rec* ended = nullptr;
  };
  std::map<std::pair<std::uint64_t, std::uint64_t>, Task> tasks;  // (exec, task)
  std::map<std::uint64_t, std::string> pool_kind;
  struct WorkerInfo {
    std::int64_t pid = 0;
    std::int32_t rank = -1;
    std::uint32_t host = 0;
    int starts = 0;
  };
  std::map<std::pair<std::uint64_t, std::int32_t>, WorkerInfo> workers;
  std::int64_t first = -1, last = -1;
  const pid_t self = getpid();

  for (const Rec& r : rs) {
    pool_kind.emplace(r.exec, strs[r.ekind]);
    if (first < 0 || r.t < first) first = r.t;
    last = std::max(last, r.t);
    if (r.worker >= 0) {
      WorkerInfo& w = workers[{r.exec, r.worker}];
      if (r.pid) w.pid = r.pid;
      if (r.rank >= 0) w.rank = r.rank;
      if (r.host) w.host = r.host;
    }
    auto instant = [&](const char* name, const char* cat, json args) {
      events.push_back({{"ph", "i"},
                        {"s", "t"},
                        {"cat", cat},
                        {"name", name},
                        {"pid", r.exec},
                        {"tid", r.worker >= 0 ? r.worker + 1 : 0},
                        {"ts", us(r.t)},
                        {"args", std::move(args)}});
    };
    switch (r.kind) {
      case EK::TaskQueued:
        tasks[{r.exec, r.task}].queued = &r;
        break;
      case EK::TaskStarted:
        tasks[{r.exec, r.task}].started = &r;
        break;
      case EK::TaskFinished:
      case EK::TaskFailed:
        tasks[{r.exec, r.task}].ended = &r;
        break;
      case EK::TaskCancelled:
        instant("task cancelled", "task", {{"task", r.task}});
        break;
      case EK::TaskRetried:
        instant("task retried", "task", {{"task", r.task}});
        break;
      case EK::WorkerStarted: {
        WorkerInfo& w = workers[{r.exec, r.worker}];
        instant(w.starts++ ? "worker restarted" : "worker started", "worker", {{"pid", r.pid}});
        break;
      }
      case EK::WorkerStopped:
        instant("worker stopped", "worker", {{"pid", r.pid}});
        break;
      case EK::WorkerCrashed:
        instant("worker crashed", "worker", {{"pid", r.pid}, {"how", strs[r.detail]}});
        break;
    }
  }

  // Task slices, laid out in lanes per worker so overlapping ones (a rank with several slots)
  // never share a track.
  struct Slice {
    double ts, dur;
    json ev;
  };
  std::map<std::pair<std::uint64_t, std::int32_t>, std::vector<Slice>> per_worker;
  for (auto& [key, tk] : tasks) {
    if (!tk.ended) continue;
    const Rec& e = *tk.ended;
    std::int64_t start = tk.started ? tk.started->t : e.t;
    if (e.dur > 0 && e.t - e.dur > start) start = e.t - e.dur;  // the worker's own measure
    const std::int32_t worker = e.worker >= 0 ? e.worker : (tk.started ? tk.started->worker : -1);
    json args = {{"task", e.task}, {"status", e.kind == EK::TaskFailed ? "failed" : "ok"}};
    if (e.items) args["items"] = e.items;
    if (e.detail) args["error"] = strs[e.detail];
    if (tk.queued) {
      const double wait = static_cast<double>(std::max<std::int64_t>(
                              (tk.started ? tk.started->t : start) - tk.queued->t, 0)) /
                          1000.0;
      args["queue_wait_us"] = wait;
      json b = {{"ph", "b"},     {"cat", "queue"}, {"name", "queued"},      {"id", e.task},
                {"pid", e.exec}, {"tid", 0},       {"ts", us(tk.queued->t)}};
      json en = b;
      en["ph"] = "e";
      en["ts"] = us(tk.started ? tk.started->t : start);
      events.push_back(std::move(b));
      events.push_back(std::move(en));
    }
    const std::uint32_t name = e.name ? e.name : (tk.queued ? tk.queued->name : 0);
    per_worker[{e.exec, worker}].push_back({us(start), static_cast<double>(e.t - start) / 1000.0,
                                            json{{"ph", "X"},
                                                 {"cat", "task"},
                                                 {"name", name ? strs[name] : std::string("task")},
                                                 {"pid", e.exec},
                                                 {"args", std::move(args)}}});
  }
  std::map<std::pair<std::uint64_t, std::int32_t>, int> lanes_used;
  for (auto& [key, slices] : per_worker) {
    std::sort(slices.begin(), slices.end(),
              [](const Slice& a, const Slice& b) { return a.ts < b.ts; });
    std::vector<double> lane_end;
    for (Slice& s : slices) {
      std::size_t lane = 0;
      while (lane < lane_end.size() && lane_end[lane] > s.ts + 1e-3)
        ++lane;
      if (lane == lane_end.size()) lane_end.push_back(0);
      lane_end[lane] = s.ts + s.dur;
      const int tid = key.second < 0 ? 0 : (key.second + 1) + static_cast<int>(lane) * 100000;
      s.ev["tid"] = tid;
      s.ev["ts"] = s.ts;
      s.ev["dur"] = s.dur;
      events.push_back(std::move(s.ev));
    }
    lanes_used[key] = static_cast<int>(lane_end.size());
  }

  // Track names.
  for (auto& [exec, kind] : pool_kind) {
    events.push_back({{"ph", "M"},
                      {"name", "process_name"},
                      {"pid", exec},
                      {"args", {{"name", pool_title(kind, exec)}}}});
    events.push_back({{"ph", "M"},
                      {"name", "thread_name"},
                      {"pid", exec},
                      {"tid", 0},
                      {"args", {{"name", "queue"}}}});
  }
  for (auto& [key, w] : workers) {
    const std::string& kind = pool_kind[key.first];
    std::string label;
    if (kind == "cluster") {
      label = "rank " + std::to_string(w.rank >= 0 ? w.rank : key.second);
      if (w.host) label += " · " + strs[w.host];
      if (w.pid) label += " · pid " + std::to_string(w.pid);
    } else {
      label = "worker " + std::to_string(key.second) + " · pid " +
              std::to_string(w.pid ? w.pid : static_cast<std::int64_t>(self));
      if (w.host) label += " · " + strs[w.host];
    }
    const int lanes = std::max(lanes_used[key], 1);
    for (int lane = 0; lane < lanes; ++lane)
      events.push_back(
          {{"ph", "M"},
           {"name", "thread_name"},
           {"pid", key.first},
           {"tid", (key.second + 1) + lane * 100000},
           {"args", {{"name", lanes > 1 ? label + " · slot " + std::to_string(lane) : label}}}});
  }

  json out;
  out["traceEvents"] = std::move(events);
  out["displayTimeUnit"] = "ms";
  out["otherData"] = {{"producer", "parx"},
                      {"version", PARX_VERSION_STRING},
                      {"start_us", first < 0 ? 0.0 : us(first)},
                      {"end_us", last < 0 ? 0.0 : us(last)}};
  return out;
}

bool TraceRecorder::Impl::write() const {
  std::string text;
  try {
    text = build().dump();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parx: the trace %s could not be built: %s\n", path.c_str(), e.what());
    return false;
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f.good()) {
      std::fprintf(stderr, "parx: cannot write the trace %s\n", path.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::fprintf(stderr, "parx: cannot write the trace %s\n", path.c_str());
    return false;
  }
  return true;
}

TraceRecorder::TraceRecorder(std::string path, std::uint64_t only)
    : impl_(std::make_shared<Impl>()) {
  impl_->path = std::move(path);
  impl_->only = only;
  impl_->recs.reserve(4096);
  Impl* raw = impl_.get();
  impl_->sub = subscribe([raw](const Event& e) { raw->on(e); });
}

TraceRecorder::~TraceRecorder() {
  impl_->sub.reset();  // waits out deliveries in progress
  if (!impl_->discarded) impl_->write();
}

bool TraceRecorder::write() {
  return impl_->write();
}

const std::string& TraceRecorder::path() const noexcept {
  return impl_->path;
}

void TraceRecorder::discard() {
  impl_->sub.reset();
  std::lock_guard lk(impl_->mu);
  impl_->discarded = true;
}

void TraceRecorder::only(std::uint64_t executor_id) {
  std::lock_guard lk(impl_->mu);
  impl_->only = executor_id;
}

std::size_t TraceRecorder::events() const {
  std::lock_guard lk(impl_->mu);
  return impl_->recs.size();
}

namespace detail {
namespace {
TraceRecorder* g_env_trace = nullptr;
void write_env_trace() {
  if (g_env_trace) g_env_trace->write();
}
}  // namespace

void autostart() noexcept {
  static std::once_flag once;
  std::call_once(once, [] {
    if (const char* p = std::getenv("PARX_TRACE"); p && *p) {  // NOLINT(concurrency-mt-unsafe)
      std::string path = p;
      // Under a launcher every rank reads the same variable: ranks other than 0 get their own file.
      for (const char* v : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"})
        if (const char* r = std::getenv(v); r && *r && std::string_view(r) != "0") {  // NOLINT
          path += std::string(".rank") + r;
          break;
        }
      try {
        g_env_trace = new TraceRecorder(path);  // lives until exit; written by the atexit handler
        std::atexit(write_env_trace);
      } catch (...) {
        std::fprintf(stderr, "parx: PARX_TRACE=%s: cannot start the trace\n", p);
      }
    }
    start_dashboard_from_env();
  });
}

std::unique_ptr<TraceRecorder> pool_trace(const std::string& path) {
  autostart();
  if (path.empty()) return nullptr;
  return std::make_unique<TraceRecorder>(path);
}
}  // namespace detail

}  // namespace parx::observe
