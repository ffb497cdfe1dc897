// The output relay (parx/detail/output_relay.hpp): worker pipes read by one epoll thread and by
// result delivery, turned into whole lines with their origin.
#include "core/output_relay.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "core/console.hpp"
#include "parx/errors.hpp"

namespace parx::detail {
namespace {

// A line longer than this without a newline is passed on in pieces of this size.
constexpr std::size_t kMaxLine = 64 * 1024;

int g_out_fd = -1, g_err_fd = -1;  // a relayed worker's own pipe ends (pending_output)

}  // namespace

// ---- RelayStream --------------------------------------------------------------------------------

RelayStream::RelayStream(int read_fd, int to_fd, std::string prefix, Sink sink)
    : fd_(read_fd), to_fd_(to_fd), prefix_(std::move(prefix)), sink_(std::move(sink)) {}

RelayStream::~RelayStream() {
  if (fd_ >= 0) ::close(fd_);
}

bool RelayStream::pump() noexcept {
  std::lock_guard lk(mu_);
  if (fd_ < 0 || eof_) return false;
  char buf[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n > 0) {
      take(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      eof_ = true;
      flush_partial();
    }
    break;
  }
  if (!out_.empty()) emit(out_);
  out_.clear();
  return !eof_;
}

void RelayStream::close() noexcept {
  pump();
  std::lock_guard lk(mu_);
  flush_partial();
  if (!out_.empty()) emit(out_);
  out_.clear();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RelayStream::take(const char* p, std::size_t n) {
  try {
    std::size_t at = 0;
    while (at < n) {
      const void* nl = std::memchr(p + at, '\n', n - at);
      if (!nl) {
        partial_.append(p + at, n - at);
        while (partial_.size() >= kMaxLine) {  // an endless line: passed on in pieces
          std::string rest = partial_.substr(kMaxLine);
          partial_.resize(kMaxLine);
          flush_partial();
          partial_ = std::move(rest);
        }
        return;
      }
      const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(nl) - p) + 1;
      partial_.append(p + at, end - at);
      flush_partial();
      at = end;
    }
  } catch (...) {  // out of memory: what could not be kept is dropped
    partial_.clear();
  }
}

void RelayStream::flush_partial() {
  if (partial_.empty()) return;
  std::string_view line(partial_);
  bool named = false;
  if (line.front() == kOriginMark) {
    line.remove_prefix(1);
    named = true;
  } else if (!prefix_.empty()) {
    named = true;
  }
  // Written to this process's console while its own output is relayed: the line is marked so
  // the next relay up passes it on as it is.
  if (named && !sink_ && output_relayed()) out_ += kOriginMark;
  if (!prefix_.empty() && partial_.front() != kOriginMark) out_ += prefix_;
  out_.append(line);
  if (out_.back() != '\n') out_ += '\n';
  partial_.clear();
}

void RelayStream::emit(std::string_view lines) {
  if (sink_) {
    try {
      sink_(to_fd_, lines);
    } catch (...) {  // a sink that fails loses these lines, never the worker
    }
  } else {
    console_write(to_fd_, lines);
  }
}

// ---- OutputRelay: the epoll thread --------------------------------------------------------------

struct OutputRelay::Impl {
  int ep = -1;
  std::mutex mu;
  struct Watched {
    std::shared_ptr<RelayStream> s;
    int fd;
  };
  std::unordered_map<std::uint64_t, Watched> streams;
  std::unordered_map<const RelayStream*, std::uint64_t> ids;
  std::uint64_t next = 1;
  std::once_flag started;

  // Stops watching `s` if it is watched (a stream is only closed once it is forgotten here, so
  // a descriptor number reused by a newer stream is never removed from epoll by mistake).
  void forget(const RelayStream* s) {
    std::lock_guard lk(mu);
    auto it = ids.find(s);
    if (it == ids.end()) return;
    epoll_ctl(ep, EPOLL_CTL_DEL, streams.at(it->second).fd, nullptr);
    streams.erase(it->second);
    ids.erase(it);
  }
};

OutputRelay& OutputRelay::get() {
  static OutputRelay* r = new OutputRelay();  // never destroyed: its thread lives until exit
  return *r;
}

OutputRelay::OutputRelay() : impl_(new Impl) {
  impl_->ep = epoll_create1(EPOLL_CLOEXEC);
  if (impl_->ep < 0)
    throw Error(std::string("parx: epoll_create1 failed for the output relay: ") +
                std::strerror(errno));
}

void OutputRelay::watch(const std::shared_ptr<RelayStream>& s) {
  std::call_once(impl_->started, [this] { std::thread([this] { loop(); }).detach(); });
  std::lock_guard lk(impl_->mu);
  const std::uint64_t id = impl_->next++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  if (epoll_ctl(impl_->ep, EPOLL_CTL_ADD, s->fd(), &ev) != 0)
    throw Error(std::string("parx: cannot watch a worker's output: ") + std::strerror(errno));
  impl_->streams.emplace(id, Impl::Watched{s, s->fd()});
  impl_->ids.emplace(s.get(), id);
}

void OutputRelay::unwatch(const std::shared_ptr<RelayStream>& s) noexcept {
  if (!s) return;
  impl_->forget(s.get());
  s->close();
}

void OutputRelay::loop() {
  epoll_event evs[32];
  for (;;) {
    const int n = epoll_wait(impl_->ep, evs, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      std::shared_ptr<RelayStream> s;
      {
        std::lock_guard lk(impl_->mu);
        auto it = impl_->streams.find(evs[i].data.u64);
        if (it == impl_->streams.end()) continue;
        s = it->second.s;
      }
      if (!s->pump()) impl_->forget(s.get());  // end of file: the owner closes it
    }
  }
}

// ---- pipes --------------------------------------------------------------------------------------

RelayPipes::RelayPipes() {
  int a[2], b[2];
  if (pipe2(a, O_CLOEXEC) != 0)
    throw Error(std::string("parx: pipe2 for a worker's output failed: ") + std::strerror(errno));
  if (pipe2(b, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(a[0]);
    ::close(a[1]);
    throw Error(std::string("parx: pipe2 for a worker's output failed: ") + std::strerror(e));
  }
  read_out = a[0];
  write_out = a[1];
  read_err = b[0];
  write_err = b[1];
  fcntl(read_out, F_SETFL, fcntl(read_out, F_GETFL) | O_NONBLOCK);
  fcntl(read_err, F_SETFL, fcntl(read_err, F_GETFL) | O_NONBLOCK);
}

RelayPipes::~RelayPipes() {
  close_write_ends();
  if (read_out >= 0) ::close(read_out);
  if (read_err >= 0) ::close(read_err);
}

void RelayPipes::close_write_ends() noexcept {
  if (write_out >= 0) ::close(write_out);
  if (write_err >= 0) ::close(write_err);
  write_out = write_err = -1;
}

std::pair<std::shared_ptr<RelayStream>, std::shared_ptr<RelayStream>> RelayPipes::start(
    const std::string& prefix, const RelayStream::Sink& sink) {
  auto out = std::make_shared<RelayStream>(read_out, STDOUT_FILENO, prefix, sink);
  read_out = -1;
  auto err = std::make_shared<RelayStream>(read_err, STDERR_FILENO, prefix, sink);
  read_err = -1;
  OutputRelay::get().watch(out);
  try {
    OutputRelay::get().watch(err);
  } catch (...) {
    OutputRelay::get().unwatch(out);
    throw;
  }
  return {std::move(out), std::move(err)};
}

// ---- the worker side ----------------------------------------------------------------------------

void adopt_relay(int out, int err) noexcept {
  std::fflush(stdout);
  std::fflush(stderr);
  dup2(out, STDOUT_FILENO);
  dup2(err, STDERR_FILENO);
  g_out_fd = out;
  g_err_fd = err;
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  set_output_relayed(true);
}

bool pending_output() noexcept {
  int n = 0;
  if (g_out_fd >= 0 && ioctl(g_out_fd, FIONREAD, &n) == 0 && n > 0) return true;
  n = 0;
  return g_err_fd >= 0 && ioctl(g_err_fd, FIONREAD, &n) == 0 && n > 0;
}

}  // namespace parx::detail
