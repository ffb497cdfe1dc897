// parx::init and the fork server: a single-threaded process, forked at init, that forks every
// worker process and reports their exits.
#include "ipc/fork_server.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "parx/detail/sync.hpp"

namespace parx {
namespace detail {
namespace {

enum class Msg : std::uint32_t {
  Spawn = 1,
  Spawned = 2,
  Signal = 3,
  Exited = 4,
  WatchShm = 5,    // payload: a shm name the server unlinks if the parent dies
  UnwatchShm = 6,  // payload: a name the parent unlinked itself
};

// Fixed header of every message; a Spawn carries its arguments after it (or in a memfd).
struct Header {
  Msg kind;
  std::uint32_t flags;  // Spawn: kDetached | kArgsInFd
  std::uint64_t request;
  std::uint64_t fn;
  std::int64_t value;  // Spawned: pid or -errno; Signal: signal; Exited: wait status
  std::int64_t pid;
  std::uint64_t args_size;
};
constexpr std::uint32_t kDetached = 1;
constexpr std::uint32_t kArgsInFd = 2;
constexpr std::uint32_t kChannelFd = 4;  // Spawn: the last fd passed is handed to the child
constexpr std::size_t kInlineArgs = 32 * 1024;

ForkServer* g_server = nullptr;
int g_channel_fd = -1;   // in a spawned child: the channel fd its spawner passed, if any
bool g_spawned = false;  // this process was started by a fork server (a worker, a Process)

int count_threads() {
  DIR* d = opendir("/proc/self/task");
  if (!d) return 1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

// Sends one datagram (header + payload), optionally with up to two file descriptors.
bool send_msg(int fd, const Header& h, std::span<const std::byte> payload, int pass_fd = -1,
              int pass_fd2 = -1) {
  iovec iov[2] = {{const_cast<Header*>(&h), sizeof h},
                  {const_cast<std::byte*>(payload.data()), payload.size()}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = payload.empty() ? 1 : 2;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  const int fds[2] = {pass_fd >= 0 ? pass_fd : pass_fd2, pass_fd2};
  const std::size_t nfds = (pass_fd >= 0 ? 1 : 0) + (pass_fd2 >= 0 ? 1 : 0);
  if (nfds) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
  }
  for (;;) {
    const ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);
    if (r >= 0) return true;
    if (errno != EINTR) return false;
  }
}

// Receives one datagram into `buf`; returns its size (0 on EOF, -1 on error) and the fds passed
// (got_fd: the first, got_fd2: a second one, else -1).
ssize_t recv_msg(int fd, std::vector<std::byte>& buf, int& got_fd, int* got_fd2 = nullptr) {
  got_fd = -1;
  if (got_fd2) *got_fd2 = -1;
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t r;
  do {
    r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int fds[2] = {-1, -1};
        std::memcpy(fds, CMSG_DATA(c), std::min<std::size_t>(n, 2) * sizeof(int));
        got_fd = fds[0];
        if (n > 1) {
          if (got_fd2) {
            *got_fd2 = fds[1];
          } else {
            close(fds[1]);
          }
        }
      }
  }
  return r;
}

// ---- the server (runs in its own single-threaded process) --------------------------------------

[[noreturn]] void run_child(int server_fd, int sig_fd, const Header& h, std::vector<std::byte> args,
                            int args_fd, int chan_fd, pid_t server) {
  close(server_fd);
  close(sig_fd);
  g_channel_fd = chan_fd;
  g_spawned = true;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (!(h.flags & kDetached)) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    // The server may have died between fork() and the prctl: then no signal will ever come.
    if (getppid() != server) _exit(128 + SIGKILL);
  }
  if (h.flags & kArgsInFd) {
    args.resize(h.args_size);
    std::size_t got = 0;
    while (got < args.size()) {
      const ssize_t r =
          pread(args_fd, args.data() + got, args.size() - got, static_cast<off_t>(got));
      if (r <= 0) {
        std::fprintf(stderr, "parx: process could not read its arguments: %s\n",
                     std::strerror(errno));
        _exit(125);
      }
      got += static_cast<std::size_t>(r);
    }
    close(args_fd);
  }
  int code = 0;
  const RemoteEntry* e = find_remote(h.fn);
  try {
    (void)invoke_remote(h.fn, args);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "parx: process target %s threw %s: %s\n",
                 e ? ("'" + e->name + "'").c_str() : "(unknown)",
                 exception_type_name(std::current_exception()).c_str(), ex.what());
    code = 1;
  } catch (...) {
    std::fprintf(stderr, "parx: process target threw a non-standard exception\n");
    code = 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);  // never run the parent's atexit handlers or static destructors here
}

// The server's state and its loop: requests from the parent (spawn, signal, watch a segment),
// exits of its children, and the parent's death.
class Server {
 public:
  Server(int fd, pid_t parent) : fd_(fd), parent_(parent) {}

  [[noreturn]] void run() {
    block_signals();
    // Under load the server can start so late that the parent has already registered segments
    // and died before PDEATHSIG was armed (no signal will come): clean up from the queued
    // messages.
    if (getppid() != parent_) parent_gone();
    // After the parent died, stay only until the non-detached children are reaped.
    while (parent_alive_ || children_.size() > detached_.size()) {
      // Once the parent is gone only the children matter: stop watching the closed socket.
      pollfd fds[2] = {{parent_alive_ ? fd_ : -1, POLLIN, 0}, {sig_fd_, POLLIN, 0}};
      if (poll(fds, 2, parent_alive_ ? -1 : 100) < 0 && errno != EINTR) break;
      if (fds[1].revents & POLLIN) read_signals();
      reap();
      if (parent_alive_ && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) serve_request();
    }
    _exit(0);
  }

 private:
  // The parent's death arrives as SIGTERM through the signalfd (not as SIGKILL), so the server
  // can still kill its children and unlink the parent's shared-memory segments: nothing leaks
  // even when the parent is SIGKILLed.
  // Whatever the launcher left (a shell or test runner may start us with SIGTERM or SIGCHLD set
  // to SIG_IGN): an ignored SIGTERM would be discarded even while blocked, and an ignored SIGCHLD
  // would auto-reap children, losing their exit status.
  void block_signals() {
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGCHLD);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, nullptr);
    sig_fd_ = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_NAME, "parx-forksrv");
    setpgid(0, 0);  // Ctrl-C at the terminal reaches the parent, which stops its pools in order
  }

  void watch(const Header& h, const std::vector<std::byte>& msg, std::size_t n) {
    std::string name(reinterpret_cast<const char*>(msg.data()) + sizeof(Header),
                     n - sizeof(Header));
    if (h.kind == Msg::WatchShm) {
      segments_.insert(std::move(name));
    } else {
      segments_.erase(name);
    }
  }

  void parent_gone() {
    parent_alive_ = false;
    // Messages the parent sent before dying are still queued (a segment it registered a moment
    // before being killed): read them all before cleaning up. No new process is started.
    std::vector<std::byte> msg(sizeof(Header) + kInlineArgs);
    for (;;) {
      const ssize_t n = recv(fd_, msg.data(), msg.size(), MSG_DONTWAIT);
      if (n <= 0) break;
      if (static_cast<std::size_t>(n) < sizeof(Header)) continue;
      Header h;
      std::memcpy(&h, msg.data(), sizeof h);
      if (h.kind == Msg::WatchShm || h.kind == Msg::UnwatchShm)
        watch(h, msg, static_cast<std::size_t>(n));
    }
    for (pid_t c : children_)
      if (!detached_.count(c)) kill(c, SIGKILL);
    for (const auto& name : segments_)
      shm_unlink(name.c_str());
    segments_.clear();
  }

  void read_signals() {
    signalfd_siginfo si;
    while (read(sig_fd_, &si, sizeof si) == sizeof si)
      if (si.ssi_signo == SIGTERM && parent_alive_) parent_gone();
  }

  // Reaps every exited child and reports it.
  void reap() {
    for (;;) {
      int status = 0;
      const pid_t p = waitpid(-1, &status, WNOHANG);
      if (p <= 0) break;
      children_.erase(p);
      detached_.erase(p);
      if (parent_alive_) {
        Header x{Msg::Exited, 0, 0, 0, status, p, 0};
        send_msg(fd_, x, {});
      }
    }
  }

  void serve_request() {
    int got_fd = -1, got_fd2 = -1;
    const ssize_t n = recv_msg(fd_, buf_, got_fd, &got_fd2);
    if (n <= 0) {  // the parent is gone: nothing may outlive it
      parent_gone();
      return;
    }
    auto close_fds = [&] {
      if (got_fd >= 0) close(got_fd);
      if (got_fd2 >= 0) close(got_fd2);
    };
    if (static_cast<std::size_t>(n) < sizeof(Header)) {
      close_fds();
      return;
    }
    Header h;
    std::memcpy(&h, buf_.data(), sizeof h);
    if (h.kind == Msg::Spawn) {
      spawn(h, static_cast<std::size_t>(n), got_fd, got_fd2);
      close_fds();
    } else if (h.kind == Msg::WatchShm || h.kind == Msg::UnwatchShm) {
      watch(h, buf_, static_cast<std::size_t>(n));
      close_fds();
    } else {
      if (h.kind == Msg::Signal && children_.count(static_cast<pid_t>(h.pid)))
        kill(static_cast<pid_t>(h.pid), static_cast<int>(h.value));
      close_fds();
    }
  }

  void spawn(const Header& h, std::size_t n, int got_fd, int got_fd2) {
    std::vector<std::byte> args(buf_.begin() + sizeof(Header), buf_.begin() + n);
    // The fds arrive in order: the arguments' memfd (if any), then the channel (if any).
    int args_fd = -1, chan_fd = -1;
    if (h.flags & kArgsInFd) {
      args_fd = got_fd;
      if (h.flags & kChannelFd) chan_fd = got_fd2;
    } else if (h.flags & kChannelFd) {
      chan_fd = got_fd;
    }
    const pid_t self = getpid();
    const pid_t child = fork();
    if (child == 0) run_child(fd_, sig_fd_, h, std::move(args), args_fd, chan_fd, self);
    if (child > 0) {
      children_.insert(child);
      if (h.flags & kDetached) detached_.insert(child);
    }
    Header r{Msg::Spawned, 0, h.request, 0, child > 0 ? child : -errno, child, 0};
    send_msg(fd_, r, {});
  }

  const int fd_;
  const pid_t parent_;
  int sig_fd_ = -1;
  bool parent_alive_ = true;
  std::set<pid_t> children_;
  std::set<pid_t> detached_;  // started with kDetached: they outlive the parent
  std::set<std::string> segments_;
  std::vector<std::byte> buf_ = std::vector<std::byte>(sizeof(Header) + kInlineArgs);
};

[[noreturn]] void server_main(int fd, pid_t parent) {
  Server(fd, parent).run();
}

}  // namespace

// ---- the client ------------------------------------------------------------------------------

ForkServer::ForkServer(int fd, pid_t server_pid) : fd_(fd), server_pid_(server_pid) {}

ForkServer& ForkServer::get() {
  if (!g_server && g_spawned)
    throw InvalidState(
        "parx: a ProcessPool, a process-based ClusterPool or a parx::Process cannot be started "
        "inside a process that parx started (a ProcessPool task, a parx::Process): that process "
        "has no fork server of its own. Inside a task, run nested work on a parx::ThreadPool, or "
        "return what is left to do and submit it from the parent");
  if (!g_server)
    throw Error(
        "parx: worker processes need parx::init(argc, argv) as the first line of main (it starts "
        "the fork server while the program is still single-threaded)");
  return *g_server;
}

void ForkServer::ensure_reader() {
  std::lock_guard lk(mu_);
  if (reader_started_) return;
  reader_started_ = true;
  std::thread([this] { reader_loop(); }).detach();  // lives as long as the process
}

void ForkServer::reader_loop() {
  std::vector<std::byte> buf(sizeof(Header) + 64);
  for (;;) {
    int got_fd = -1;
    const ssize_t n = recv_msg(fd_, buf, got_fd);
    if (got_fd >= 0) close(got_fd);
    if (n <= 0) {
      std::lock_guard lk(mu_);
      server_gone_ = true;
      cv_.notify_all();
      return;
    }
    if (static_cast<std::size_t>(n) < sizeof(Header)) continue;
    Header h;
    std::memcpy(&h, buf.data(), sizeof h);
    if (h.kind == Msg::Spawned) {
      std::lock_guard lk(mu_);
      spawn_replies_[h.request] = h.value;
      cv_.notify_all();
    } else if (h.kind == Msg::Exited) {
      const int st = static_cast<int>(h.value);
      ExitStatus es;
      if (WIFSIGNALED(st)) {
        es.signal = WTERMSIG(st);
      } else {
        es.exit_code = WEXITSTATUS(st);
      }
      std::vector<ExitListener> ls;
      {
        std::lock_guard lk(mu_);
        exited_[static_cast<pid_t>(h.pid)] = es;
        for (auto& [id, l] : listeners_)
          ls.push_back(l);
        cv_.notify_all();
      }
      for (auto& l : ls)
        l(static_cast<pid_t>(h.pid), es);
    }
  }
}

pid_t ForkServer::spawn(FunctionId fn, std::span<const std::byte> args, bool detached,
                        int channel_fd) {
  ensure_reader();
  Header h{Msg::Spawn, detached ? kDetached : 0u, 0, fn, 0, 0, args.size()};
  if (channel_fd >= 0) h.flags |= kChannelFd;
  int args_fd = -1;
  if (args.size() > kInlineArgs) {  // large arguments travel in a memfd, not the socket
    args_fd = memfd_create("parx-args", MFD_CLOEXEC);
    if (args_fd < 0) throw Error(std::string("parx: memfd_create failed: ") + std::strerror(errno));
    std::size_t put = 0;
    while (put < args.size()) {
      const ssize_t w = write(args_fd, args.data() + put, args.size() - put);
      if (w <= 0) {
        close(args_fd);
        throw Error(std::string("parx: writing process arguments failed: ") + std::strerror(errno));
      }
      put += static_cast<std::size_t>(w);
    }
    h.flags |= kArgsInFd;
  }
  {
    std::lock_guard lk(send_mu_);
    {
      std::lock_guard l2(mu_);
      h.request = next_request_++;
    }
    const bool ok =
        send_msg(fd_, h, args_fd >= 0 ? std::span<const std::byte>{} : args, args_fd, channel_fd);
    if (args_fd >= 0) close(args_fd);
    if (!ok) throw Error("parx: the fork server is gone (it cannot start new processes)");
  }
  std::unique_lock lk(mu_);
  cv_.wait(lk, [&] { return spawn_replies_.count(h.request) || server_gone_; });
  if (!spawn_replies_.count(h.request)) throw Error("parx: the fork server is gone");
  const std::int64_t v = spawn_replies_[h.request];
  spawn_replies_.erase(h.request);
  if (v < 0) throw Error(std::string("parx: fork failed: ") + std::strerror(static_cast<int>(-v)));
  return static_cast<pid_t>(v);
}

void ForkServer::signal(pid_t pid, int sig) {
  Header h{Msg::Signal, 0, 0, 0, sig, pid, 0};
  std::lock_guard lk(send_mu_);
  send_msg(fd_, h, {});
}

void ForkServer::watch_shm(const std::string& name, bool watch) {
  Header h{watch ? Msg::WatchShm : Msg::UnwatchShm, 0, 0, 0, 0, 0, name.size()};
  std::lock_guard lk(send_mu_);
  send_msg(fd_, h, std::as_bytes(std::span(name.data(), name.size())));
}

std::optional<ExitStatus> ForkServer::wait_exit(pid_t pid, std::int64_t deadline_ns) {
  ensure_reader();
  std::unique_lock lk(mu_);
  for (;;) {
    if (auto it = exited_.find(pid); it != exited_.end()) return it->second;
    if (server_gone_) return std::nullopt;
    if (deadline_ns < 0) {
      cv_.wait(lk);
    } else {
      const std::int64_t left = deadline_ns - now_ns();
      if (left <= 0) return std::nullopt;
      cv_.wait_for(lk, std::chrono::nanoseconds(left));
    }
  }
}

int ForkServer::take_channel_fd() noexcept {
  return std::exchange(g_channel_fd, -1);
}

std::optional<ExitStatus> ForkServer::poll_exit(pid_t pid) {
  std::lock_guard lk(mu_);
  if (auto it = exited_.find(pid); it != exited_.end()) return it->second;
  return std::nullopt;
}

void ForkServer::forget(pid_t pid) {
  std::lock_guard lk(mu_);
  exited_.erase(pid);
}

std::uint64_t ForkServer::add_exit_listener(ExitListener l) {
  ensure_reader();
  std::lock_guard lk(mu_);
  const std::uint64_t id = next_listener_++;
  listeners_.emplace(id, std::move(l));
  return id;
}

void ForkServer::remove_exit_listener(std::uint64_t id) {
  std::lock_guard lk(mu_);
  listeners_.erase(id);
}

}  // namespace detail

bool detail::fork_server_running() noexcept {
  return detail::g_server != nullptr;
}

void detail::start_fork_server() {
  if (detail::g_server) return;
  check_remote_registry();
  if (const int threads = detail::count_threads(); threads > 1)
    throw Error("parx::init must run before any thread is started (this process already has " +
                std::to_string(threads) +
                " threads); make it the first line of main, before pools or std::threads");
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
    throw Error(std::string("parx::init: socketpair failed: ") + std::strerror(errno));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw Error(std::string("parx::init: fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    detail::server_main(fds[1], parent);
  }
  close(fds[1]);
  detail::g_server = new detail::ForkServer(fds[0], pid);  // lives as long as the process
}

}  // namespace parx
