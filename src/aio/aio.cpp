// parx::aio: the event loop, task states and TaskGroup (see parx/aio/task.hpp).
#include "parx/aio/task.hpp"

#include <asio/executor_work_guard.hpp>
#include <thread>

namespace parx::aio {

namespace {

std::string describe(const std::vector<std::exception_ptr>& errors) {
  std::string s = "parx::aio::ExceptionGroup: " + std::to_string(errors.size()) +
                  (errors.size() == 1 ? " task failed" : " tasks failed");
  for (const auto& e : errors)
    s += "; " + exception_type_name(e) + ": " + exception_message(e);
  return s;
}

bool is_cancellation(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Cancelled&) {
    return true;
  } catch (const std::system_error& se) {
    return se.code() == asio::error::operation_aborted;
  } catch (...) {
    return false;
  }
}

}  // namespace

ExceptionGroup::ExceptionGroup(std::vector<std::exception_ptr> errors)
    : Error(describe(errors)), errors_(std::move(errors)) {}

namespace detail {

namespace {
thread_local Loop* tl_loop = nullptr;
}

Loop* current_loop() noexcept {
  return tl_loop;
}

Loop& require_loop(const char* what) {
  if (!tl_loop)
    throw InvalidState(std::string("parx::aio::") + what +
                       ": no running loop on this thread (call it from a task under aio::run)");
  return *tl_loop;
}

Loop::Loop(std::size_t threads) : threads_(threads ? threads : 1) {}

Loop::~Loop() = default;

asio::any_io_executor Loop::task_executor() {
  if (threads_ > 1) return asio::make_strand(ctx_);
  return ctx_.get_executor();
}

void Loop::add(const std::shared_ptr<TaskStateBase>& t) {
  std::lock_guard lk(mu_);
  if (live_.empty()) work_.emplace(ctx_.get_executor());
  live_.insert(t);
}

void Loop::remove(const std::shared_ptr<TaskStateBase>& t) {
  std::lock_guard lk(mu_);
  live_.erase(t);
  if (live_.empty()) work_.reset();
}

void Loop::cancel_all() {
  std::vector<std::shared_ptr<TaskStateBase>> all;
  {
    std::lock_guard lk(mu_);
    all.assign(live_.begin(), live_.end());
  }
  for (auto& t : all)
    t->cancel();
}

ThreadPool& Loop::blocking_pool() {
  std::lock_guard lk(mu_);
  if (!pool_) pool_ = std::make_unique<ThreadPool>();
  return *pool_;
}

void Loop::run() {
  std::exception_ptr failure;
  std::mutex fm;
  auto body = [&] {  // one thread's share of the loop; the first failure stops every thread
    tl_loop = this;
    try {
      ctx_.run();
    } catch (...) {
      std::lock_guard lk(fm);
      if (!failure) failure = std::current_exception();
      ctx_.stop();
    }
    tl_loop = nullptr;
  };
  std::vector<std::thread> extra;
  for (std::size_t i = 1; i < threads_; ++i)
    extra.emplace_back(body);
  body();
  for (auto& t : extra)
    t.join();
  if (failure) std::rethrow_exception(failure);
}

void TaskStateBase::cancel() {
  {
    std::lock_guard lk(mu_);
    if (done_) return;
    cancel_requested_ = true;
  }
  asio::post(executor,
             [self = shared_from_this()] { self->signal.emit(asio::cancellation_type::terminal); });
}

void TaskStateBase::finish(std::exception_ptr e) {
  {
    std::lock_guard lk(mu_);
    done_ = true;
    if (e && cancel_requested_ && is_cancellation(e)) {
      cancelled_ = true;
      e = std::make_exception_ptr(Cancelled("parx::Cancelled: the task was cancelled"));
    }
    error_ = std::move(e);
    joiners_.notify_all();
  }
  if (on_finish) on_finish(*this);
}

Task<void> TaskStateBase::wait() {
  auto self = shared_from_this();
  const auto enlist = [self](std::shared_ptr<Waiter> w) {
    std::lock_guard lk(self->mu_);
    if (self->done_)
      w->fire({});
    else
      self->joiners_.add(std::move(w));
  };
  co_await wait_on(enlist);
}

}  // namespace detail

// ---- TaskGroup

void TaskGroup::State::ended(detail::TaskStateBase& s) {
  std::lock_guard lk(mu);
  --running;
  if (auto e = s.error(); e && !s.cancelled()) {
    errors.push_back(e);
    if (!failed) {
      failed = true;
      cancel_all();
    }
  }
  if (running == 0) idle.notify_all();
}

void TaskGroup::State::cancel_all() {
  for (auto& w : tasks)
    if (auto t = w.lock()) t->cancel();
}

TaskGroup::TaskGroup() : g_(std::make_shared<State>()) {}

TaskGroup::~TaskGroup() {
  std::lock_guard lk(g_->mu);
  if (g_->running) g_->cancel_all();
}

void TaskGroup::enter() {
  std::lock_guard lk(g_->mu);
  if (g_->failed || g_->cancelled)
    throw InvalidState(
        "parx::aio::TaskGroup::spawn: the group was cancelled or a task of it failed");
  ++g_->running;
}

void TaskGroup::track(const std::shared_ptr<detail::TaskStateBase>& t) {
  std::lock_guard lk(g_->mu);
  g_->tasks.push_back(t);
  if (g_->failed || g_->cancelled) t->cancel();
}

void TaskGroup::cancel() {
  std::lock_guard lk(g_->mu);
  g_->cancelled = true;
  g_->cancel_all();
}

std::size_t TaskGroup::size() const {
  std::lock_guard lk(g_->mu);
  return g_->tasks.size();
}

Task<void> TaskGroup::join() {
  auto g = g_;
  auto wait_idle = [g](std::shared_ptr<detail::Waiter> w) {
    std::lock_guard lk(g->mu);
    if (g->running == 0)
      w->fire({});
    else
      g->idle.add(std::move(w));
  };
  bool interrupted = false;
  try {
    co_await detail::wait_on(wait_idle);
  } catch (const Cancelled&) {
    interrupted = true;
  }
  if (interrupted) {
    // Structured: the group's tasks end before the cancellation propagates.
    {
      std::lock_guard lk(g->mu);
      g->cancelled = true;
      g->cancel_all();
    }
    co_await asio::this_coro::reset_cancellation_state();
    co_await detail::wait_on(wait_idle);
    throw Cancelled("parx::Cancelled: cancelled while joining a TaskGroup");
  }
  std::vector<std::exception_ptr> errors;
  {
    std::lock_guard lk(g->mu);
    errors = g->errors;
  }
  if (!errors.empty()) throw ExceptionGroup(std::move(errors));
}

Task<void> sleep(std::chrono::steady_clock::duration d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  auto [ec] = co_await t.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  if (ec) throw Cancelled("parx::Cancelled: the task was cancelled while sleeping");
}

}  // namespace parx::aio
