// The listener registry behind parx/observe/events.hpp: a copy-on-write list, so emitting takes
// a short lock only to copy one shared_ptr.
#include "parx/observe/events.hpp"

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "parx/detail/sync.hpp"

namespace parx::observe {
namespace detail {
std::atomic<int> g_listeners{0};
}  // namespace detail

namespace {

struct Entry {
  std::uint64_t id;
  std::shared_ptr<Listener> listener;
};
using List = std::vector<Entry>;

struct Registry {
  std::mutex mu;
  std::shared_ptr<const List> list = std::make_shared<List>();
  std::uint64_t next_id = 1;
  // Emits in progress; unsubscribe waits for them so a listener is never called after reset().
  std::atomic<int> in_flight{0};
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: emits may run during static teardown
  return *r;
}

class FnListener final : public Listener {
 public:
  explicit FnListener(std::function<void(const Event&)> f) : f_(std::move(f)) {}
  void on_event(const Event& e) noexcept override { f_(e); }

 private:
  std::function<void(const Event&)> f_;
};

std::atomic<std::uint64_t> g_next_executor{1};
std::atomic<std::uint64_t> g_next_task{1};

}  // namespace

const char* to_string(EventKind k) noexcept {
  switch (k) {
    case EventKind::TaskQueued:
      return "task_queued";
    case EventKind::TaskStarted:
      return "task_started";
    case EventKind::TaskFinished:
      return "task_finished";
    case EventKind::TaskFailed:
      return "task_failed";
    case EventKind::TaskCancelled:
      return "task_cancelled";
    case EventKind::WorkerStarted:
      return "worker_started";
    case EventKind::WorkerStopped:
      return "worker_stopped";
    case EventKind::TaskRetried:
      return "task_retried";
    case EventKind::WorkerCrashed:
      return "worker_crashed";
  }
  return "unknown";
}

Subscription subscribe(std::shared_ptr<Listener> listener) {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  auto next = std::make_shared<List>(*r.list);
  const std::uint64_t id = r.next_id++;
  next->push_back({id, std::move(listener)});
  r.list = std::move(next);
  detail::g_listeners.fetch_add(1, std::memory_order_release);
  return Subscription(id);
}

Subscription subscribe(std::function<void(const Event&)> fn) {
  return subscribe(std::make_shared<FnListener>(std::move(fn)));
}

void Subscription::reset() noexcept {
  if (id_ == 0) return;
  Registry& r = registry();
  {
    std::lock_guard lk(r.mu);
    auto next = std::make_shared<List>();
    for (const Entry& e : *r.list)
      if (e.id != id_) next->push_back(e);
    r.list = std::move(next);
    detail::g_listeners.fetch_sub(1, std::memory_order_release);
  }
  id_ = 0;
  // Wait out emits that may still hold the old list.
  while (r.in_flight.load(std::memory_order_acquire) != 0)
    parx::detail::cpu_relax();
}

void detail::emit_slow(const Event& ev) noexcept {
  Registry& r = registry();
  r.in_flight.fetch_add(1, std::memory_order_acq_rel);
  std::shared_ptr<const List> list;
  {
    std::lock_guard lk(r.mu);
    list = r.list;
  }
  Event e = ev;
  if (e.time_ns == 0) e.time_ns = parx::detail::now_ns();
  for (const Entry& en : *list)
    en.listener->on_event(e);
  list.reset();
  r.in_flight.fetch_sub(1, std::memory_order_acq_rel);
}

std::uint64_t next_executor_id() noexcept {
  return g_next_executor.fetch_add(1, std::memory_order_relaxed);
}
std::uint64_t next_task_id() noexcept {
  return g_next_task.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace parx::observe

// ---- the pool registry behind observe::pools() -------------------------------------------------

#include "parx/observe/metrics.hpp"

namespace parx::observe {
namespace {
struct PoolList {
  std::mutex mu;
  std::vector<const detail::PoolSource*> live;
};
PoolList& pool_list() {
  static PoolList* l = new PoolList();  // never destroyed: pools may outlive static teardown
  return *l;
}
}  // namespace

void detail::PoolRegistration::attach(const PoolSource* src) {
  src_ = src;
  PoolList& l = pool_list();
  std::lock_guard lk(l.mu);
  l.live.push_back(src);
}

detail::PoolRegistration::~PoolRegistration() {
  if (!src_) return;
  PoolList& l = pool_list();
  std::lock_guard lk(l.mu);
  l.live.erase(std::remove(l.live.begin(), l.live.end(), src_), l.live.end());
}

std::vector<PoolSnapshot> pools() {
  PoolList& l = pool_list();
  std::lock_guard lk(l.mu);
  std::vector<PoolSnapshot> out;
  out.reserve(l.live.size());
  for (const detail::PoolSource* s : l.live)
    out.push_back(s->snapshot());
  return out;
}

}  // namespace parx::observe
