// parx/process.hpp — parx::Process: one function run in a separate process (Python's
// multiprocessing.Process), started from the fork server.
//
// Contract
//   * The target is a function registered with PARX_REMOTE; its arguments are encoded with the
//     codec when the Process is constructed (a wrong argument is a compile-time error, an
//     unregistered function an immediate parx::Error naming it). Its return value is discarded.
//   * start() forks it from the fork server (parx::init must have run). The child sees the
//     program as it was when init ran (like Python's forkserver), not later changes.
//   * exitcode(): std::nullopt while running; 0 when the target returned; 1 when it threw (the
//     exception is printed on stderr); n when it called exit(n); -signal when killed (Python's
//     convention).
//   * It dies with this process unless Options::detached. Destroying a Process that is still
//     running kills it (SIGKILL) and reaps it: join() first to wait for it.
//   * terminate() sends SIGTERM, kill() SIGKILL; both are safe after the process has exited (they
//     never signal a recycled pid).
//
// Thread-safety: distinct Process objects are independent; one object must not be used by two
// threads at once, except is_alive()/exitcode(), which may be polled from anywhere.
//
// Example
//   void render(int frame, std::string out_dir);
//   PARX_REMOTE(render);
//   ...
//   parx::Process p(render, 7, std::string("frames/"));
//   p.start();
//   if (!p.join(std::chrono::seconds(30))) p.kill();
//   std::cout << "exit code " << *p.exitcode() << '\n';
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>

#include "parx/codec.hpp"
#include "parx/remote.hpp"

namespace parx {

class Process {
 public:
  struct Options {
    // A detached process does not die with this one (it is still started by the fork server).
    bool detached = false;
  };

  template <class R, class... P, class... A>
  explicit Process(R (*fn)(P...), A&&... args) : Process(Options{}, fn, std::forward<A>(args)...) {}
  template <class R, class... P, class... A>
  Process(Options opts, R (*fn)(P...), A&&... args) : opts_(opts), fn_(remote_id(fn)) {
    Encoder e;
    encode_call(e, fn, std::forward<A>(args)...);
    args_ = e.take();
  }
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  // Starts the process. Throws parx::Error if already started or parx::init has not run.
  void start();
  // Waits for the process to end; returns true if it has. Without a timeout waits for ever.
  bool join();
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_until(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count());
  }
  bool is_alive() const;
  void terminate();  // SIGTERM
  void kill();       // SIGKILL
  // The pid, once started (0 before).
  pid_t pid() const noexcept { return pid_; }
  std::optional<int> exitcode() const;
  bool started() const noexcept { return pid_ > 0; }

 private:
  bool join_until(long long timeout_ns);
  void send(int sig);

  Options opts_{};
  FunctionId fn_ = 0;
  Bytes args_;
  pid_t pid_ = 0;
  mutable std::optional<int> exitcode_;
};

}  // namespace parx
