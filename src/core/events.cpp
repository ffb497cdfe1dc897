// The listener registry behind parx/observe/events.hpp.
//
// The list of listeners is copy-on-write and read without a lock: an emit publishes "I am
// delivering" in its thread's own slot (a sequence number, odd while delivering), loads the
// current list and calls it. subscribe and unsubscribe swap in a new list under the registry
// mutex; unsubscribe then waits until every slot that was odd has moved on (a grace period, as in
// RCU) and frees the replaced lists, so it still returns only after deliveries in progress on
// other threads have finished. An emit writes to no cache line another thread writes to.
//
// Why the grace period is sound: emit stores its odd sequence number, then loads the list; the
// writer swaps the list, then loads each sequence number; all four are seq_cst, so either the
// writer sees the odd number (and waits), or the emit sees the new list.
#include "parx/observe/events.hpp"

#include <algorithm>
#include <mutex>
#include <thread>
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

// One per emitting thread; reused by a later thread once its owner has exited. Never freed.
struct alignas(64) Slot {
  std::atomic<std::uint64_t> seq{0};  // odd while the owner delivers an event
  std::atomic<bool> used{true};
  Slot* next = nullptr;  // immutable once the slot is in the registry's list
};

struct Registry {
  std::mutex mu;  // serialises writers
  std::atomic<const List*> list{new List()};
  std::uint64_t next_id = 1;
  // Lists replaced by a writer that could not wait for them (it was itself delivering); the next
  // writer frees them after its grace period.
  std::vector<const List*> retired;
  std::atomic<Slot*> slots{nullptr};  // push-front only
  // Emits from a thread whose slot is gone (thread-local teardown): counted here instead.
  std::atomic<int> late{0};
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: emits may run during static teardown
  return *r;
}

thread_local Slot* t_slot = nullptr;
thread_local int t_depth = 0;  // deliveries in progress on this thread (a listener may emit)
thread_local bool t_slot_gone = false;

struct SlotRelease {
  bool armed = false;
  ~SlotRelease() {
    if (t_slot) t_slot->used.store(false, std::memory_order_release);
    t_slot = nullptr;
    t_slot_gone = true;
  }
};
thread_local SlotRelease t_slot_release;

Slot* acquire_slot(Registry& r) {
  for (Slot* s = r.slots.load(std::memory_order_seq_cst); s; s = s->next) {
    bool free = false;
    if (!s->used.load(std::memory_order_relaxed) &&
        s->used.compare_exchange_strong(free, true, std::memory_order_acquire))
      return s;
  }
  auto* s = new Slot();
  Slot* head = r.slots.load(std::memory_order_relaxed);
  do {
    s->next = head;
  } while (!r.slots.compare_exchange_weak(head, s, std::memory_order_seq_cst));
  return s;
}

// This thread's slot, or nullptr once its thread-locals are being destroyed.
Slot* my_slot(Registry& r) {
  if (t_slot) return t_slot;
  if (t_slot_gone) return nullptr;
  t_slot_release.armed = true;  // constructs it, so its destructor runs at thread exit
  t_slot = acquire_slot(r);
  return t_slot;
}

// Waits until no emit can still hold a list replaced before this call (on a thread that is not
// delivering itself).
void wait_for_readers(Registry& r) {
  std::vector<std::pair<const Slot*, std::uint64_t>> busy;
  for (const Slot* s = r.slots.load(std::memory_order_seq_cst); s; s = s->next)
    if (const std::uint64_t v = s->seq.load(std::memory_order_seq_cst); v & 1)
      busy.emplace_back(s, v);
  auto pause = [spins = 0]() mutable {
    if (++spins < 64)
      parx::detail::cpu_relax();
    else
      std::this_thread::yield();
  };
  for (auto [s, v] : busy)
    while (s->seq.load(std::memory_order_acquire) == v)
      pause();
  while (r.late.load(std::memory_order_seq_cst) != 0)
    pause();
}

// Publishes `next` as the list (the caller holds r.mu). With `wait`, then waits for the emits
// that may still read a replaced list and frees those lists; without, or on a thread that is
// delivering (it may be iterating one of them, and two such threads would wait for each other),
// the replaced list is left for a later writer to free.
void replace_list(Registry& r, std::unique_lock<std::mutex>& lk, const List* next, bool wait) {
  r.retired.push_back(r.list.exchange(next, std::memory_order_seq_cst));
  if (!wait || t_depth > 0) return;
  std::vector<const List*> old;
  old.swap(r.retired);
  lk.unlock();
  wait_for_readers(r);
  for (const List* l : old)
    delete l;
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
  std::unique_lock lk(r.mu);
  auto* next = new List(*r.list.load(std::memory_order_relaxed));
  const std::uint64_t id = r.next_id++;
  next->push_back({id, std::move(listener)});
  replace_list(r, lk, next, false);  // never waits for deliveries
  detail::g_listeners.fetch_add(1, std::memory_order_release);
  return Subscription(id);
}

Subscription subscribe(std::function<void(const Event&)> fn) {
  return subscribe(std::make_shared<FnListener>(std::move(fn)));
}

void Subscription::reset() noexcept {
  if (id_ == 0) return;
  Registry& r = registry();
  std::unique_lock lk(r.mu);
  // Out of memory here ends the program (noexcept), as it did when the list was a shared_ptr.
  auto* next = new List();  // NOLINT(bugprone-unhandled-exception-at-new)
  for (const Entry& e : *r.list.load(std::memory_order_relaxed))
    if (e.id != id_) next->push_back(e);
  detail::g_listeners.fetch_sub(1, std::memory_order_release);
  id_ = 0;
  replace_list(r, lk, next, true);  // returns once deliveries in progress are over
}

void detail::emit_slow(Event& e) noexcept {
  Registry& r = registry();
  if (e.time_ns == 0) e.time_ns = parx::detail::now_ns();
  if (t_depth > 0) {  // a listener emits: the outer delivery already protects the lists
    ++t_depth;
    for (const Entry& en : *r.list.load(std::memory_order_seq_cst))
      en.listener->on_event(e);
    --t_depth;
    return;
  }
  Slot* s = my_slot(r);
  std::uint64_t seq = 0;
  if (s) {
    seq = s->seq.load(std::memory_order_relaxed) + 1;  // only this thread writes it
    s->seq.store(seq, std::memory_order_seq_cst);
  } else {
    r.late.fetch_add(1, std::memory_order_seq_cst);
  }
  ++t_depth;
  for (const Entry& en : *r.list.load(std::memory_order_seq_cst))
    en.listener->on_event(e);
  --t_depth;
  if (s)
    s->seq.store(seq + 1, std::memory_order_release);
  else
    r.late.fetch_sub(1, std::memory_order_release);
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
