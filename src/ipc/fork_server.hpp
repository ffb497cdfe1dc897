// parx/detail/fork_server.hpp — the client side of the fork server started by parx::init.
// Internal: used by parx::Process and the process pools.
//
// Protocol (SOCK_SEQPACKET, one message per datagram; payloads over 32 KiB travel in a memfd
// passed with SCM_RIGHTS):
//   main -> server  Spawn{request, fn id, flags, args}     server -> main  Spawned{request, pid |
//   errno} main -> server  Signal{pid, signal}                    (only children not yet reaped are
//   signalled,
//                                                          so a recycled pid is never hit)
//   server -> main  Exited{pid, wait status}               for every child the server reaps
// When this process dies the socket closes; the server kills its children, reaps them and exits.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "parx/remote.hpp"

namespace parx::detail {

struct ExitStatus {
  int exit_code = 0;  // valid when signal == 0
  int signal = 0;     // > 0 when killed by a signal
  // Python's convention: the exit code, or minus the signal number.
  int python_exitcode() const noexcept { return signal ? -signal : exit_code; }
};

class ForkServer {
 public:
  // The fork server of this process. Throws parx::Error if parx::init has not run.
  static ForkServer& get();

  // Forks a process running the registered function `fn` with encoded `args`; returns its pid.
  // `detached`: the process does not die with this one. `channel_fd` (>= 0): a descriptor handed
  // to the child, which takes it with take_channel_fd() (the caller keeps and closes its own).
  pid_t spawn(FunctionId fn, std::span<const std::byte> args, bool detached, int channel_fd = -1);
  // In a spawned child: the channel descriptor its spawner passed (once; -1 if none).
  static int take_channel_fd() noexcept;
  // Sends `sig` to `pid` if it is a child of the server not yet reaped; false otherwise.
  void signal(pid_t pid, int sig);
  // Waits until `pid` has exited (deadline on the now_ns() clock, < 0: none).
  std::optional<ExitStatus> wait_exit(pid_t pid, std::int64_t deadline_ns);
  // The exit status if `pid` has exited, without waiting.
  std::optional<ExitStatus> poll_exit(pid_t pid);
  // Asks the server to shm_unlink `name` if this process dies without doing it (watch=false:
  // this process unlinked it itself).
  void watch_shm(const std::string& name, bool watch);
  // Stops tracking `pid` (after its status was read).
  void forget(pid_t pid);
  // Called (on the fork server's reader thread) for every child that exits.
  using ExitListener = std::function<void(pid_t, const ExitStatus&)>;
  std::uint64_t add_exit_listener(ExitListener l);
  void remove_exit_listener(std::uint64_t id);

  // Internal: set up by init.
  explicit ForkServer(int fd, pid_t server_pid);
  pid_t server_pid() const noexcept { return server_pid_; }

 private:
  void reader_loop();
  void ensure_reader();

  int fd_;
  pid_t server_pid_;
  std::mutex send_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool reader_started_ = false;
  bool server_gone_ = false;
  std::uint64_t next_request_ = 1;
  std::map<std::uint64_t, std::int64_t> spawn_replies_;  // request -> pid or -errno
  std::map<pid_t, ExitStatus> exited_;
  std::map<std::uint64_t, ExitListener> listeners_;
  std::uint64_t next_listener_ = 1;
};

// Starts the fork server (once), while the process has one thread: parx::init's first step
// (src/init/init.cpp). Throws Error if the process already has threads.
void start_fork_server();
// Whether it runs (parx::initialized()).
bool fork_server_running() noexcept;

}  // namespace parx::detail
