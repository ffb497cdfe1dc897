// parx/observe/events.hpp — the event interface every executor emits to.
//
// Executors report what happens to tasks and workers as Events; recorders (progress bars,
// timelines, metrics — see the observe module) subscribe to them. No executor knows about
// terminals or files, and with nobody subscribed an emit site costs one relaxed atomic load and
// a not-taken branch. With listeners, delivery takes no lock: the emitting thread marks itself
// busy in a slot of its own, and unsubscribing waits for the threads it finds busy.
//
// Contract
//   * `subscribe(listener)` starts delivery to `listener` and returns a Subscription; delivery
//     stops when the Subscription is destroyed or reset. After that returns, the listener is
//     called no more (a call in progress on another thread finishes first). A listener may itself
//     emit, subscribe and unsubscribe (itself too); unsubscribing from inside a listener does not
//     wait for calls in progress on other threads.
//   * Listeners are called synchronously on the thread where the event happens (a worker, or
//     the submitting thread for TaskQueued), possibly concurrently from many threads. They must be
//     quick, thread-safe and must not throw (on_event is noexcept). Heavy work belongs on a
//     queue drained elsewhere.
//   * Per executor and task, the order is Queued → Started → Finished | Failed, or Queued →
//     Cancelled. A task queued before anyone subscribed has task_id 0 in later events.
//
// Thread-safety: subscribe/unsubscribe and emit are safe from any thread.
//
// Example
//   auto sub = parx::observe::subscribe([](const parx::observe::Event& e) {
//     if (e.kind == parx::observe::EventKind::TaskFailed) failures.fetch_add(1);
//   });
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

namespace parx::observe {

enum class EventKind : std::uint8_t {
  TaskQueued,
  TaskStarted,
  TaskFinished,
  TaskFailed,
  TaskCancelled,
  WorkerStarted,
  WorkerStopped,
  TaskRetried,    // a task (or some of its items) runs again after a crash or an exception
  WorkerCrashed,  // a worker process died unasked (signal or exit code in `detail`)
};

// Short lower-case name of a kind ("task_queued", ...).
const char* to_string(EventKind k) noexcept;

struct Event {
  EventKind kind;
  std::uint64_t executor_id = 0;   // unique per executor object in this process
  const char* executor_kind = "";  // "thread", "process", "cluster"
  std::uint64_t task_id = 0;       // unique per task in this process; 0 for worker events
  std::int32_t worker = -1;        // worker index, -1 when not on a worker
  std::int64_t time_ns = 0;        // steady clock
  const char* name = nullptr;      // function name when known
  // Filled where the executor knows them (0 / nullptr otherwise):
  const char* detail = nullptr;  // TaskFailed: "Type: message" and the stack trace;
                                 // WorkerCrashed: how it died
  std::int64_t pid = 0;          // the worker's process (process and cluster pools)
  std::int32_t rank = -1;        // the worker's MPI rank (cluster pools)
  const char* host = nullptr;    // the worker's host (worker events of process/cluster pools)
  std::uint32_t items = 0;       // map items the task carries (a chunk), 0 = not a chunk
  std::int64_t duration_ns = 0;  // TaskFinished/TaskFailed: run time measured by the worker,
                                 // when its start was not observed directly
};

class Listener {
 public:
  virtual ~Listener() = default;
  virtual void on_event(const Event& e) noexcept = 0;
};

// Keeps a listener subscribed; move-only; unsubscribes on destruction.
class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(std::uint64_t id) : id_(id) {}
  Subscription(Subscription&& o) noexcept : id_(std::exchange(o.id_, 0)) {}
  Subscription& operator=(Subscription&& o) noexcept {
    reset();
    id_ = std::exchange(o.id_, 0);
    return *this;
  }
  ~Subscription() { reset(); }
  void reset() noexcept;
  explicit operator bool() const noexcept { return id_ != 0; }

 private:
  std::uint64_t id_ = 0;
};

[[nodiscard]] Subscription subscribe(std::shared_ptr<Listener> listener);
[[nodiscard]] Subscription subscribe(std::function<void(const Event&)> fn);

namespace detail {
extern std::atomic<int> g_listeners;
void emit_slow(Event& e) noexcept;  // stamps e.time_ns if 0, then delivers `e`
}  // namespace detail

// True if anyone listens. Emit sites test this first.
inline bool active() noexcept {
  return detail::g_listeners.load(std::memory_order_relaxed) != 0;
}

// Delivers `e` (stamping time_ns if 0) to every listener. Cheap no-op when nobody listens.
inline void emit(Event e) noexcept {
  if (active()) detail::emit_slow(e);
}

// Process-unique ids for executors and tasks.
std::uint64_t next_executor_id() noexcept;
std::uint64_t next_task_id() noexcept;

}  // namespace parx::observe
