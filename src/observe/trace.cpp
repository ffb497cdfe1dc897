// TraceRecorder (parx/observe/trace.hpp): records observe events, writes Chrome-trace JSON.
//
// Recording is per thread: each thread that delivers an event appends it to its own Buffer in
// the recorder, found through a small thread-local cache keyed by the recorder's generation (a
// process-unique number, so an entry left by a recorder that is gone never matches a new one).
// A Buffer is a list of chunks that never move; the owner writes a record, then publishes the new
// count with a release store, so build() can read every published record at any time without
// stopping the writers. Strings (function names, errors, hosts) are interned per buffer: a small
// cache keyed by the pointer and checked with strcmp (names may point at temporary strings, so
// the pointer alone proves nothing), then a table keyed by the text. The recorder's lock is taken
// by build()/events() and when a thread meets the recorder for the first time (or again after it
// delivered to more recorders than its cache holds), to find or register its buffer.
#include "parx/observe/trace.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/files.hpp"
#include "parx/detail/sync.hpp"
#include "parx/observe/dashboard.hpp"
#include "parx/observe/events.hpp"
#include "parx/version.hpp"

namespace parx::observe {

using EK = EventKind;

namespace {

// A recorded event. Its strings are interned in the recording thread's buffer (alive as long as
// the recorder), nullptr for none; the fields most events leave at their defaults (set by process
// and cluster pools, and by failures) live apart, in an Extra.
struct Extra {
  std::int64_t pid;
  std::int64_t dur;
  const std::string* host;
  const std::string* detail;
  std::int32_t rank;
};

struct Rec {
  std::int64_t t;
  std::uint64_t exec;
  std::uint64_t task;
  const std::string* name;
  const std::string* ekind;
  const Extra* extra;  // nullptr: pid 0, dur 0, rank -1, no host, no detail
  std::int32_t worker;
  std::uint32_t items;
  EK kind;

  std::int64_t pid() const { return extra ? extra->pid : 0; }
  std::int64_t dur() const { return extra ? extra->dur : 0; }
  std::int32_t rank() const { return extra ? extra->rank : -1; }
  const std::string* host() const { return extra ? extra->host : nullptr; }
  const std::string* detail() const { return extra ? extra->detail : nullptr; }
};
static_assert(sizeof(Rec) <= 64, "a record per event: keep it small");

const std::string& str(const std::string* s) {
  static const std::string empty;
  return s ? *s : empty;
}

// The events one thread recorded: appended by that thread only, read by build() at any time.
class Buffer {
 public:
  Buffer() : head_(new Chunk(kFirstChunk)), tail_(head_) {}
  ~Buffer() {
    for (Chunk* c = head_; c;)
      delete std::exchange(c, c->next.load(std::memory_order_relaxed));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // ---- the owning thread ----
  // Keeps `x` for the record about to be appended.
  const Extra* extra(const Extra& x) { return &extras_.emplace_back(x); }

  void append(const Rec& r) {
    if (in_tail_ == tail_->cap) {
      auto* c = new Chunk(std::min(tail_->cap * 2, kMaxChunk));
      tail_->next.store(c, std::memory_order_release);
      tail_ = c;
      in_tail_ = 0;
    }
    tail_->recs[in_tail_++] = r;
    published_.store(++count_, std::memory_order_release);
  }

  const std::string* intern(const char* p) {
    if (!p || !*p) return nullptr;
    const auto key = reinterpret_cast<std::uintptr_t>(p);
    CacheEntry& c = cache_[(key ^ (key >> 4) ^ (key >> 12)) % cache_.size()];
    if (c.key == p && std::strcmp(p, c.text->c_str()) == 0) return c.text;
    const std::string_view text(p);
    const std::string* s = nullptr;
    if (auto it = by_text_.find(text); it != by_text_.end()) {
      s = it->second;
    } else {
      s = &strings_.emplace_back(text);
      by_text_.emplace(*s, s);
    }
    c = {p, s};
    return s;
  }

  // ---- any thread ----
  std::size_t size() const noexcept { return published_.load(std::memory_order_acquire); }

  void copy_to(std::vector<Rec>& out) const {
    std::size_t n = size();
    for (const Chunk* c = head_; n > 0;) {
      const std::size_t k = std::min(n, c->cap);
      out.insert(out.end(), c->recs.get(), c->recs.get() + k);
      n -= k;
      // Linked before the first record past `c` was published, so there when n > 0.
      if (n > 0) c = c->next.load(std::memory_order_acquire);
    }
  }

 private:
  static constexpr std::size_t kFirstChunk = 256;
  static constexpr std::size_t kMaxChunk = 16384;
  struct Chunk {
    explicit Chunk(std::size_t n) : recs(std::make_unique_for_overwrite<Rec[]>(n)), cap(n) {}
    std::unique_ptr<Rec[]> recs;
    std::size_t cap;
    std::atomic<Chunk*> next{nullptr};
  };
  struct CacheEntry {
    const char* key = nullptr;
    const std::string* text = nullptr;
  };

  std::atomic<std::size_t> published_{0};
  Chunk* const head_;
  // Owner only:
  Chunk* tail_;
  std::size_t in_tail_ = 0;
  std::size_t count_ = 0;
  std::array<CacheEntry, 16> cache_{};
  std::deque<std::string> strings_;  // deques: elements never move
  std::deque<Extra> extras_;
  std::unordered_map<std::string_view, const std::string*> by_text_;
};

// Which buffer this thread writes to, for the last few recorders it delivered to.
struct ThreadBuffer {
  std::uint64_t generation = 0;
  Buffer* buffer = nullptr;
};
thread_local std::array<ThreadBuffer, 4> t_buffers{};
thread_local unsigned t_buffers_next = 0;
thread_local std::uint64_t t_thread = 0;  // process-unique thread number, 0 until first needed

std::atomic<std::uint64_t> g_next_generation{1};
std::atomic<std::uint64_t> g_next_thread{1};

}  // namespace

struct TraceRecorder::Impl {
  std::string path;
  std::atomic<std::uint64_t> only{0};
  std::atomic<bool> discarded{false};
  const std::uint64_t generation = g_next_generation.fetch_add(1, std::memory_order_relaxed);
  std::int64_t t0 = parx::detail::now_ns();
  mutable std::mutex mu;  // guards buffers and by_thread
  std::vector<std::unique_ptr<Buffer>> buffers;
  std::unordered_map<std::uint64_t, Buffer*> by_thread;
  Subscription sub;

  Buffer& buffer() {
    for (const ThreadBuffer& tb : t_buffers)
      if (tb.generation == generation) return *tb.buffer;
    if (t_thread == 0) t_thread = g_next_thread.fetch_add(1, std::memory_order_relaxed);
    Buffer* b = nullptr;
    {
      std::lock_guard lk(mu);
      auto [it, fresh] = by_thread.try_emplace(t_thread, nullptr);
      if (fresh) {
        buffers.push_back(std::make_unique<Buffer>());
        it->second = buffers.back().get();
      }
      b = it->second;
    }
    t_buffers[t_buffers_next++ % t_buffers.size()] = {generation, b};
    return *b;
  }

  void on(const Event& e) {
    if (const std::uint64_t o = only.load(std::memory_order_relaxed); o && e.executor_id != o)
      return;
    Buffer& b = buffer();
    Rec r;
    r.t = e.time_ns;
    r.exec = e.executor_id;
    r.task = e.task_id;
    r.name = b.intern(e.name);
    r.ekind = b.intern(e.executor_kind);
    r.extra = nullptr;
    if (e.pid || e.duration_ns || e.rank >= 0 || (e.host && *e.host) || (e.detail && *e.detail))
      r.extra = b.extra({e.pid, e.duration_ns, b.intern(e.host), b.intern(e.detail), e.rank});
    r.worker = e.worker;
    r.items = e.items;
    r.kind = e.kind;
    b.append(r);
  }

  // What was recorded so far, of the pool `only` if set, in time order.
  std::vector<Rec> records() const {
    std::vector<Rec> rs;
    {
      std::lock_guard lk(mu);
      std::size_t n = 0;
      for (const auto& b : buffers)
        n += b->size();
      rs.reserve(n);
      for (const auto& b : buffers)
        b->copy_to(rs);
    }
    if (const std::uint64_t o = only.load(std::memory_order_relaxed))
      std::erase_if(rs, [o](const Rec& r) { return r.exec != o; });
    std::stable_sort(rs.begin(), rs.end(), [](const Rec& a, const Rec& b) { return a.t < b.t; });
    return rs;
  }

  double us(std::int64_t t) const { return static_cast<double>(t - t0) / 1000.0; }

  nlohmann::json build() const;
  bool write() const;
};

namespace {

// Delivers to the recorder without the std::function of subscribe(fn).
class Sink final : public Listener {
 public:
  explicit Sink(TraceRecorder::Impl* impl) : impl_(impl) {}
  void on_event(const Event& e) noexcept override { impl_->on(e); }

 private:
  TraceRecorder::Impl* impl_;
};

}  // namespace

namespace {

std::string pool_title(const std::string& kind, std::uint64_t id) {
  std::string k = kind == "process"   ? "ProcessPool"
                  : kind == "cluster" ? "ClusterPool"
                                      : "ThreadPool";
  return k + " " + std::to_string(id);
}

// Turns the recorded events into Chrome-trace JSON: one pass over the records, then the task
// slices (laid out in lanes per worker), then the track names. Times are µs from `t0`.
class TraceBuilder {
 public:
  using json = nlohmann::json;

  explicit TraceBuilder(std::int64_t t0) : t0_(t0) {}

  json build(const std::vector<Rec>& rs) {
    for (const Rec& r : rs)
      scan(r);
    lay_out_slices();
    name_tracks();
    json out;
    out["traceEvents"] = std::move(events_);
    out["displayTimeUnit"] = "ms";
    out["otherData"] = {{"producer", "parx"},
                        {"version", PARX_VERSION_STRING},
                        {"start_us", first_ < 0 ? 0.0 : us(first_)},
                        {"end_us", last_ < 0 ? 0.0 : us(last_)}};
    return out;
  }

 private:
  struct Task {
    const Rec* queued = nullptr;
    const Rec* started = nullptr;
    const Rec* ended = nullptr;
  };
  struct WorkerInfo {
    std::int64_t pid = 0;
    std::int32_t rank = -1;
    const std::string* host = nullptr;
    int starts = 0;
  };
  struct Slice {
    double ts, dur;
    json ev;
  };
  using WorkerKey = std::pair<std::uint64_t, std::int32_t>;  // (exec, worker)

  double us(std::int64_t t) const { return static_cast<double>(t - t0_) / 1000.0; }

  void instant(const Rec& r, const char* name, const char* cat, json args) {
    events_.push_back({{"ph", "i"},
                       {"s", "t"},
                       {"cat", cat},
                       {"name", name},
                       {"pid", r.exec},
                       {"tid", r.worker >= 0 ? r.worker + 1 : 0},
                       {"ts", us(r.t)},
                       {"args", std::move(args)}});
  }

  // One record: tasks are gathered by id, markers become instant events.
  void scan(const Rec& r) {
    pool_kind_.emplace(r.exec, str(r.ekind));
    if (first_ < 0 || r.t < first_) first_ = r.t;
    last_ = std::max(last_, r.t);
    if (r.worker >= 0) {
      WorkerInfo& w = workers_[{r.exec, r.worker}];
      if (r.pid()) w.pid = r.pid();
      if (r.rank() >= 0) w.rank = r.rank();
      if (r.host()) w.host = r.host();
    }
    switch (r.kind) {
      case EK::TaskQueued:
        tasks_[{r.exec, r.task}].queued = &r;
        break;
      case EK::TaskStarted:
        tasks_[{r.exec, r.task}].started = &r;
        break;
      case EK::TaskFinished:
      case EK::TaskFailed:
        tasks_[{r.exec, r.task}].ended = &r;
        break;
      case EK::TaskCancelled:
        instant(r, "task cancelled", "task", {{"task", r.task}});
        break;
      case EK::TaskRetried:
        instant(r, "task retried", "task", {{"task", r.task}});
        break;
      case EK::WorkerStarted: {
        WorkerInfo& w = workers_[{r.exec, r.worker}];
        instant(r, w.starts++ ? "worker restarted" : "worker started", "worker",
                {{"pid", r.pid()}});
        break;
      }
      case EK::WorkerStopped:
        instant(r, "worker stopped", "worker", {{"pid", r.pid()}});
        break;
      case EK::WorkerCrashed:
        instant(r, "worker crashed", "worker", {{"pid", r.pid()}, {"how", str(r.detail())}});
        break;
    }
  }

  // The slice of an ended task, and its wait in the queue as an async slice.
  void task_slice(const Task& tk, std::map<WorkerKey, std::vector<Slice>>& per_worker) {
    const Rec& e = *tk.ended;
    std::int64_t start = tk.started ? tk.started->t : e.t;
    if (e.dur() > 0 && e.t - e.dur() > start) start = e.t - e.dur();  // the worker's own measure
    const std::int32_t worker = e.worker >= 0 ? e.worker : (tk.started ? tk.started->worker : -1);
    json args = {{"task", e.task}, {"status", e.kind == EK::TaskFailed ? "failed" : "ok"}};
    if (e.items) args["items"] = e.items;
    if (e.detail()) args["error"] = *e.detail();
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
      events_.push_back(std::move(b));
      events_.push_back(std::move(en));
    }
    const std::string* name = e.name ? e.name : (tk.queued ? tk.queued->name : nullptr);
    per_worker[{e.exec, worker}].push_back({us(start), static_cast<double>(e.t - start) / 1000.0,
                                            json{{"ph", "X"},
                                                 {"cat", "task"},
                                                 {"name", name ? *name : std::string("task")},
                                                 {"pid", e.exec},
                                                 {"args", std::move(args)}}});
  }

  // Task slices in lanes per worker, so overlapping ones (a rank with several slots) never
  // share a track.
  void lay_out_slices() {
    std::map<WorkerKey, std::vector<Slice>> per_worker;
    for (auto& [key, tk] : tasks_)
      if (tk.ended) task_slice(tk, per_worker);
    for (auto& [key, slices] : per_worker) {
      std::sort(slices.begin(), slices.end(),
                [](const Slice& a, const Slice& b) { return a.ts < b.ts; });
      std::vector<double> lane_end;
      for (Slice& sl : slices) {
        std::size_t lane = 0;
        while (lane < lane_end.size() && lane_end[lane] > sl.ts + 1e-3)
          ++lane;
        if (lane == lane_end.size()) lane_end.push_back(0);
        lane_end[lane] = sl.ts + sl.dur;
        const int tid = key.second < 0 ? 0 : (key.second + 1) + static_cast<int>(lane) * 100000;
        sl.ev["tid"] = tid;
        sl.ev["ts"] = sl.ts;
        sl.ev["dur"] = sl.dur;
        events_.push_back(std::move(sl.ev));
      }
      lanes_used_[key] = static_cast<int>(lane_end.size());
    }
  }

  void name_tracks() {
    const pid_t self = getpid();
    for (auto& [exec, kind] : pool_kind_) {
      events_.push_back({{"ph", "M"},
                         {"name", "process_name"},
                         {"pid", exec},
                         {"args", {{"name", pool_title(kind, exec)}}}});
      events_.push_back({{"ph", "M"},
                         {"name", "thread_name"},
                         {"pid", exec},
                         {"tid", 0},
                         {"args", {{"name", "queue"}}}});
    }
    for (auto& [key, w] : workers_) {
      const std::string& kind = pool_kind_[key.first];
      std::string label;
      if (kind == "cluster") {
        label = "rank " + std::to_string(w.rank >= 0 ? w.rank : key.second);
        if (w.host) label += " · " + *w.host;
        if (w.pid) label += " · pid " + std::to_string(w.pid);
      } else {
        label = "worker " + std::to_string(key.second) + " · pid " +
                std::to_string(w.pid ? w.pid : static_cast<std::int64_t>(self));
        if (w.host) label += " · " + *w.host;
      }
      const int lanes = std::max(lanes_used_[key], 1);
      for (int lane = 0; lane < lanes; ++lane)
        events_.push_back(
            {{"ph", "M"},
             {"name", "thread_name"},
             {"pid", key.first},
             {"tid", (key.second + 1) + lane * 100000},
             {"args", {{"name", lanes > 1 ? label + " · slot " + std::to_string(lane) : label}}}});
    }
  }

  const std::int64_t t0_;
  json events_ = json::array();
  std::map<std::pair<std::uint64_t, std::uint64_t>, Task> tasks_;  // (exec, task)
  std::map<std::uint64_t, std::string> pool_kind_;
  std::map<WorkerKey, WorkerInfo> workers_;
  std::map<WorkerKey, int> lanes_used_;
  std::int64_t first_ = -1, last_ = -1;
};

}  // namespace

nlohmann::json TraceRecorder::Impl::build() const {
  const std::vector<Rec> rs = records();
  return TraceBuilder(t0).build(rs);
}

bool TraceRecorder::Impl::write() const {
  std::string text;
  try {
    text = build().dump();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parx: the trace %s could not be built: %s\n", path.c_str(), e.what());
    return false;
  }
  // A fresh file created exclusively beside the target, mode 0600, renamed over it; a target
  // that is not a regular file (a planted symlink, a device, a FIFO) is refused (core/files.hpp).
  if (const std::string why = parx::detail::write_file_replacing(path, text); !why.empty()) {
    std::fprintf(stderr, "parx: cannot write the trace: %s\n", why.c_str());
    return false;
  }
  return true;
}

TraceRecorder::TraceRecorder(std::string path, std::uint64_t only)
    : impl_(std::make_shared<Impl>()) {
  impl_->path = std::move(path);
  impl_->only.store(only, std::memory_order_relaxed);
  impl_->sub = subscribe(std::make_shared<Sink>(impl_.get()));
}

TraceRecorder::~TraceRecorder() {
  impl_->sub.reset();  // waits out deliveries in progress
  if (!impl_->discarded.load(std::memory_order_relaxed)) impl_->write();
}

bool TraceRecorder::write() {
  return impl_->write();
}

const std::string& TraceRecorder::path() const noexcept {
  return impl_->path;
}

void TraceRecorder::discard() {
  impl_->sub.reset();
  impl_->discarded.store(true, std::memory_order_relaxed);
}

void TraceRecorder::only(std::uint64_t executor_id) {
  impl_->only.store(executor_id, std::memory_order_relaxed);
}

std::size_t TraceRecorder::events() const {
  std::lock_guard lk(impl_->mu);
  std::size_t n = 0;
  for (const auto& b : impl_->buffers)
    n += b->size();
  return n;
}

namespace detail {
namespace {
TraceRecorder* g_env_trace = nullptr;
void write_env_trace() {
  if (g_env_trace) g_env_trace->write();
}
}  // namespace

void start_from_env() noexcept {
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
      if (const std::string why = parx::detail::not_replaceable(path); !why.empty()) {
        std::fprintf(stderr, "parx: PARX_TRACE=%s: %s; no trace is recorded\n", p, why.c_str());
        start_dashboard_from_env();
        return;
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

}  // namespace detail

}  // namespace parx::observe
