// parx::Process on top of the fork server.
#include "parx/process.hpp"

#include <signal.h>

#include "ipc/fork_server.hpp"
#include "parx/detail/sync.hpp"

namespace parx {

Process::Process(Process&& o) noexcept
    : opts_(o.opts_),
      fn_(o.fn_),
      args_(std::move(o.args_)),
      pid_(std::exchange(o.pid_, 0)),
      exitcode_(o.exitcode_) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    this->~Process();
    new (this) Process(std::move(o));
  }
  return *this;
}

Process::~Process() {
  if (pid_ > 0 && !exitcode_ && !opts_.detached) {
    try {
      auto& fs = detail::ForkServer::get();
      if (!fs.poll_exit(pid_)) {
        fs.signal(pid_, SIGKILL);
        fs.wait_exit(pid_, detail::now_ns() + 5'000'000'000LL);
      }
      fs.forget(pid_);
    } catch (...) {
      // The fork server is gone: so is the child (it dies with the server).
    }
  }
}

void Process::start() {
  if (pid_ > 0) throw InvalidState("parx::Process::start called twice");
  pid_ = detail::ForkServer::get().spawn(fn_, args_, opts_.detached);
}

bool Process::join() {
  return join_until(-1);
}

bool Process::join_until(long long timeout_ns) {
  if (pid_ <= 0) throw InvalidState("parx::Process::join before start");
  if (exitcode_) return true;
  auto& fs = detail::ForkServer::get();
  const auto st = fs.wait_exit(pid_, timeout_ns < 0 ? -1 : detail::now_ns() + timeout_ns);
  if (!st) return false;
  exitcode_ = st->python_exitcode();
  fs.forget(pid_);
  return true;
}

bool Process::is_alive() const {
  if (pid_ <= 0 || exitcode_) return false;
  return !detail::ForkServer::get().poll_exit(pid_).has_value();
}

std::optional<int> Process::exitcode() const {
  if (exitcode_ || pid_ <= 0) return exitcode_;
  if (auto st = detail::ForkServer::get().poll_exit(pid_)) exitcode_ = st->python_exitcode();
  return exitcode_;
}

void Process::send(int sig) {
  if (pid_ <= 0) throw InvalidState("parx::Process: signal before start");
  if (exitcode_) return;
  detail::ForkServer::get().signal(pid_, sig);
}

void Process::terminate() {
  send(SIGTERM);
}
void Process::kill() {
  send(SIGKILL);
}

}  // namespace parx
