// The ProcessPool transport's supervision (process/transport.hpp): the I/O thread's loop, and
// what it does beyond reading results. It attributes a dead worker's death to the exact item and
// fails or retries it, enforces timeouts and memory ceilings, replaces workers, and stops them at
// shutdown.
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <functional>

#include "process/transport.hpp"

namespace parx::detail {

using namespace channel;
using proc::ItemRef;
using proc::Job;
using proc::Slot;

namespace {

std::string exit_text(const ExitStatus& es) {
  if (es.signal) {
    const char* name = sigabbrev_np(es.signal);
    return "killed by signal " + std::to_string(es.signal) +
           (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  return "exited with code " + std::to_string(es.exit_code);
}

}  // namespace

// The worker died running item `cur` of `j`: the items before it ran again (their results died
// with the worker), the culprit fails with the cause (or is retried), the items after it run
// again as a new task.
void ProcessTransport::split_at_culprit(Slot& s, Job& j, std::size_t cur, const ExitStatus& es,
                                        std::vector<std::unique_ptr<Job>>& again, Done& done) {
  std::vector<ItemRef> before(j.items.begin(), j.items.begin() + cur);
  std::vector<ItemRef> after(j.items.begin() + cur + 1, j.items.end());
  ItemRef culprit = j.items[cur];
  if (!before.empty()) again.push_back(sub_job(j, std::move(before)));
  std::exception_ptr err;
  if (s.kill == Slot::Timeout) {
    ++counters_.timeouts;
    err = std::make_exception_ptr(
        TimeoutError("parx::TimeoutError: task " + std::to_string(culprit.index) +
                     " ran longer than " + std::to_string(opts_.timeout.count()) +
                     " ms; worker pid " + std::to_string(s.pid) + " was killed and replaced"));
  } else if (s.kill == Slot::Corrupt) {
    err = std::make_exception_ptr(SerializationError(s.kill_detail + "; worker replaced"));
  } else if (culprit.attempts < opts_.retries && accepting_) {
    ++culprit.attempts;
    ++counters_.retried;
    if (j.task_id) emit_job(observe::EventKind::TaskRetried, j);
    again.push_back(sub_job(j, {culprit}));
  } else {
    std::string detail =
        (j.fn_name.empty() ? std::string() : "in " + j.fn_name + "; ") +
        (s.kill == Slot::Memory ? s.kill_detail : std::string("the worker was replaced"));
    if (culprit.attempts > 0)
      detail += "; failed " + std::to_string(culprit.attempts + 1) + " times";
    err = std::make_exception_ptr(
        WorkerCrashed(s.pid, es.signal, es.exit_code, culprit.index, detail));
  }
  if (err) fail_item(j, culprit, err, done);
  // The job as scheduled ends here (its other items run again as new tasks).
  if (j.task_id)
    emit_job(observe::EventKind::TaskFailed, j, static_cast<int>(s.index), s.pid, 0,
             exit_text(es).c_str());
  if (!after.empty()) again.push_back(sub_job(j, std::move(after)));
}

void ProcessTransport::handle_exit(Slot& s, const ExitStatus& es, Done& done) {
  // What the worker wrote is printed before the outcome of its work: its pipes are read to the end
  // (an unfinished last line included).
  OutputRelay::get().unwatch(s.out);
  OutputRelay::get().unwatch(s.err);
  s.out.reset();
  s.err.reset();
  drain(s, done);  // results it posted before dying are good
  const WorkerStatus& st = s.reg->status;
  const bool busy = st.busy.load(std::memory_order_acquire) != 0;
  const std::uint64_t cur_job = st.job.load(std::memory_order_relaxed);
  const std::uint32_t cur_item = st.item.load(std::memory_order_relaxed);
  const bool clean_retire = s.state == Slot::Retiring && es.signal == 0 && es.exit_code == 0;
  std::vector<std::unique_ptr<Job>> again;
  bool held = false;
  for (auto& jp : s.assigned) {
    held = true;
    Job& j = *jp;
    j.all_items();
    if (busy && cur_job == j.id && cur_item < j.items.size()) {
      split_at_culprit(s, j, cur_item, es, again, done);
    } else if (s.kill == Slot::Corrupt && jp == s.assigned.front()) {
      // Its result was behind the corrupt bytes: the job fails, it is not run again.
      for (auto& it : j.items)
        fail_item(j, it,
                  std::make_exception_ptr(SerializationError(s.kill_detail + "; worker replaced")),
                  done);
    } else if (clean_retire) {
      again.push_back(std::move(jp));  // queued behind the last task of a retiring worker
    } else if (++j.blameless > 3) {
      for (auto& it : j.items)
        fail_item(j, it,
                  std::make_exception_ptr(WorkerCrashed(
                      s.pid, es.signal, es.exit_code, it.index,
                      "workers kept dying before starting this task" +
                          (s.kill_detail.empty() ? std::string() : ": " + s.kill_detail))),
                  done);
    } else {
      again.push_back(std::move(jp));
    }
  }
  s.assigned.clear();
  if (held && !clean_retire) ++counters_.crashes;
  if (observe::active()) {
    const bool asked = clean_retire || s.state == Slot::Stopping || s.kill == Slot::Stop;
    const std::string how = exit_text(es);
    emit_worker(asked ? observe::EventKind::WorkerStopped : observe::EventKind::WorkerCrashed, s,
                how.c_str());
  }
  requeue_front(again);
  by_pid_.erase(s.pid);
  fs_.forget(s.pid);
  if (s.state == Slot::Booting && !init_error_) {
    ++s.init_failures;
    if (s.initial)
      init_error_ = std::make_exception_ptr(WorkerCrashed(s.pid, es.signal, es.exit_code, -1,
                                                          "while starting (in the initializer?)"));
    boot_cv_.notify_all();
  }
  s.pid = 0;
  s.state = Slot::Empty;
  if (s.sock >= 0) {
    close(s.sock);
    s.sock = -1;
  }
  const int backoff = std::min(s.init_failures, 6);
  s.respawn_at = s.init_failures ? now_ns() + (std::int64_t{50'000'000} << backoff) : 0;
}

// One pass of the I/O thread, under the lock. True if anything happened. `wait_ns`: how long the
// thread may sleep before something is due (-1: until woken).
bool ProcessTransport::step(Done& done, std::int64_t& wait_ns) {
  bool progress = false;
  std::deque<std::pair<pid_t, ExitStatus>> exits;
  {
    std::lock_guard lk(inbox_->mu);
    exits.swap(inbox_->exits);
  }
  for (auto& [pid, es] : exits) {
    auto it = by_pid_.find(pid);
    if (it == by_pid_.end()) continue;
    handle_exit(slots_[it->second], es, done);
    progress = true;
  }
  for (auto& s : slots_)
    if (s.state != Slot::Empty && drain(s, done)) progress = true;

  const std::int64_t now = now_ns();
  wait_ns = -1;
  auto wake_in = [&](std::int64_t ns) { wait_ns = wait_ns < 0 ? ns : std::min(wait_ns, ns); };
  if (!stopping_) progress |= replace_workers(now, done, wake_in);
  dispatch();
  watch_running(now, wake_in);
  if (stopping_ && pending_.empty()) {
    if (stop_workers(now, wake_in)) {
      finished_ = true;
      return true;
    }
  }
  return progress;
}

// Replaces workers that are gone; fails what waits when initializers keep failing with nobody
// able to run it.
bool ProcessTransport::replace_workers(std::int64_t now, Done& done,
                                       const std::function<void(std::int64_t)>& wake_in) {
  bool progress = false;
  for (auto& s : slots_) {
    if (s.state != Slot::Empty || s.initial) continue;
    if (s.respawn_at > now) {
      wake_in(s.respawn_at - now);
      continue;
    }
    try {
      spawn(s);
      ++counters_.worker_restarts;
      progress = true;
    } catch (const Error&) {
      s.respawn_at = now + 200'000'000;  // fork failed (out of processes?): try again soon
      wake_in(200'000'000);
    }
  }
  if (init_error_ && !pending_.empty()) {
    bool any_ready = false;
    for (auto& s : slots_)
      any_ready |= s.state == Slot::Ready;
    if (!any_ready) {
      for (auto& jp : pending_)
        for (auto& it : jp->all_items())
          fail_item(*jp, it, init_error_, done);
      pending_.clear();
    }
  }
  return progress;
}

// Timeouts and memory ceilings of running items.
void ProcessTransport::watch_running(std::int64_t now,
                                     const std::function<void(std::int64_t)>& wake_in) {
  const bool mem_check = opts_.memory_limit && now >= next_mem_check_;
  if (mem_check) next_mem_check_ = now + 10'000'000;
  bool outstanding = !pending_.empty();
  for (auto& s : slots_) {
    if (s.assigned.empty()) continue;
    outstanding = true;
    if (s.kill != Slot::None || s.pid <= 0) continue;
    const WorkerStatus& st = s.reg->status;
    if (!st.busy.load(std::memory_order_acquire)) {
      // Dispatched but not started yet: look again soon, or a task that then runs for ever
      // would never be seen overrunning.
      if (opts_.timeout.count() > 0) wake_in(5'000'000);
      continue;
    }
    if (opts_.timeout.count() > 0) {
      const std::int64_t limit =
          std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.timeout).count();
      const std::int64_t ran = now - st.item_started_ns.load(std::memory_order_relaxed);
      if (ran > limit) {
        kill_slot(s, Slot::Timeout, "timeout");
      } else {
        wake_in(limit - ran + 1'000'000);
      }
    }
    if (mem_check) {
      const std::size_t rss = resident_bytes(s.pid);
      if (rss > opts_.memory_limit)
        kill_slot(s, Slot::Memory,
                  "memory ceiling: resident " + std::to_string(rss >> 20) + " MiB > limit " +
                      std::to_string(opts_.memory_limit >> 20) + " MiB; killed");
    }
  }
  if (opts_.memory_limit && outstanding) wake_in(10'000'000);
}

// Shutting down with nothing queued: once every worker is idle, stop them (killing those that
// do not stop in time). True once none is left.
bool ProcessTransport::stop_workers(std::int64_t now,
                                    const std::function<void(std::int64_t)>& wake_in) {
  for (auto& s : slots_)
    if (!s.assigned.empty()) return false;
  bool any_alive = false;
  for (auto& s : slots_) {
    if (s.state == Slot::Empty) continue;
    any_alive = true;
    if (s.state != Slot::Stopping) {
      s.state = Slot::Stopping;
      if (!ring_put(s.req, kStop, 0, 0, {})) kill_slot(s, Slot::Stop, "stop");
      ring_bell(s.req.ctl);
    }
  }
  if (!any_alive) return true;
  if (stop_deadline_ == 0) stop_deadline_ = now + 2'000'000'000;
  if (now > stop_deadline_) {
    for (auto& s : slots_)
      if (s.state != Slot::Empty) kill_slot(s, Slot::Stop, "did not stop in time");
  }
  wake_in(50'000'000);
  return false;
}

void ProcessTransport::io_loop() {
  Done done;
  std::int64_t spin_until = 0;
  for (;;) {
    const std::uint32_t v = hdr_->bell.load(std::memory_order_acquire);
    bool progress = false;
    std::int64_t wait_ns = -1;
    bool fin = false;
    {
      std::lock_guard lk(mu_);
      progress = step(done, wait_ns);
      fin = finished_;
    }
    finish(done);
    if (fin) return;
    const std::int64_t now = now_ns();
    if (progress) spin_until = now + spin_ns_;
    if (now < spin_until) {  // warm for the next submit too, as a worker is
      // Spin on the doorbell only: every event bumps it.
      while (hdr_->bell.load(std::memory_order_acquire) == v && now_ns() < spin_until) {
        for (int i = 0; i < 32 && hdr_->bell.load(std::memory_order_relaxed) == v; ++i)
          cpu_relax();
        sched_yield();
      }
      if (hdr_->bell.load(std::memory_order_acquire) != v) continue;
    }
    hdr_->io_sleeping.store(1, std::memory_order_seq_cst);
    if (hdr_->bell.load(std::memory_order_seq_cst) == v) futex_wait_shared(&hdr_->bell, v, wait_ns);
    hdr_->io_sleeping.store(0, std::memory_order_relaxed);
  }
}

}  // namespace parx::detail
