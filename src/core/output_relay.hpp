// parx/detail/output_relay.hpp — internal: relays what worker processes and serving ranks write
// to their stdout and stderr, whole-line, to the driver (see parx/log.hpp, parx::Output).
//
// A worker's fd 1 and 2 are the write ends of two pipes; the read ends are RelayStreams, read by
// one relay thread per process (epoll) and, to order output before results, by the thread that
// delivers a worker's result (pump). A stream turns bytes into whole lines, prefixes them with
// their origin if asked, and hands them to its sink (the console by default).
//
// A line that already names its origin (a parx::log line, or a line relayed from a worker of a
// pool running inside a worker or a serving rank) starts with kOriginMark when it is written in a
// process whose own output is relayed; a stream strips the mark and does not prefix that line.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "parx/log.hpp"

namespace parx::detail {

inline constexpr char kOriginMark = '\x1e';

// The policy a pool uses: `automatic` resolved through PARX_OUTPUT. Throws InvalidArgument for an
// unknown PARX_OUTPUT or option value.
Output resolve_output(Output o);

// This process's origin (parx::log::origin): set where a process takes a role.
void set_origin_worker(int worker) noexcept;                     // a ProcessPool worker
void set_origin_rank(int rank, const std::string& remote_host);  // a serving rank ("" same host)
// The origin of a worker of this process's pool: "[rank 2 · ]worker 3 · pid 4711".
std::string worker_origin(int worker, pid_t pid);
// This process's rank (-1: none) and its host if not the driver's, for workers it starts.
std::pair<int, std::string> origin_rank();

// True once this process's fd 1 and 2 are relayed (a worker or serving rank in lines/prefixed).
bool output_relayed() noexcept;
void set_output_relayed(bool on) noexcept;

// Writes complete lines `text` (each ending in '\n') through the console; in a process whose
// output is relayed, each line is marked as already naming its origin (named = true).
void console_lines(int fd, std::string_view text, bool named) noexcept;

class RelayStream {
 public:
  // Receives whole lines (each ending in '\n', prefixes applied, marks removed) for fd `to_fd`.
  using Sink = std::function<void(int to_fd, std::string_view lines)>;
  // Takes ownership of `read_fd` (non-blocking). `prefix` ("" for none) starts every line that
  // is not already marked. A null sink writes through console_lines.
  RelayStream(int read_fd, int to_fd, std::string prefix, Sink sink = nullptr);
  ~RelayStream();
  RelayStream(const RelayStream&) = delete;
  RelayStream& operator=(const RelayStream&) = delete;

  // Reads what the pipe holds now and passes on its whole lines. False once at end of file.
  bool pump() noexcept;
  // Waits until a pump in progress on another thread has passed on its lines.
  void sync() noexcept { std::lock_guard lk(mu_); }
  // Reads the rest without waiting, passes on an unfinished last line (with a '\n'), closes.
  void close() noexcept;
  int fd() const noexcept { return fd_; }

 private:
  void take(const char* p, std::size_t n);  // under mu_
  void flush_partial();                     // under mu_
  void emit(std::string_view lines);        // under mu_

  std::mutex mu_;
  int fd_;
  int to_fd_;
  std::string prefix_;
  Sink sink_;
  std::string partial_;
  std::string out_;
  bool eof_ = false;
};

// The relay thread of this process (started on first use; lives until the process ends).
class OutputRelay {
 public:
  static OutputRelay& get();
  // Starts reading `s` whenever its pipe has data.
  void watch(const std::shared_ptr<RelayStream>& s);
  // Stops reading `s`, then closes it (RelayStream::close).
  void unwatch(const std::shared_ptr<RelayStream>& s) noexcept;

 private:
  OutputRelay();
  void loop();
  struct Impl;
  Impl* impl_;
};

// Two pipes for a worker's stdout and stderr: the caller hands `write_out`/`write_err` to the
// worker and closes them; the read ends become streams when the worker's origin is known.
struct RelayPipes {
  int read_out = -1, read_err = -1, write_out = -1, write_err = -1;
  RelayPipes();  // throws parx::Error if pipe2 fails
  ~RelayPipes();
  RelayPipes(const RelayPipes&) = delete;
  RelayPipes& operator=(const RelayPipes&) = delete;
  void close_write_ends() noexcept;
  // Streams for the read ends (ownership moves to them), watched by the relay thread.
  std::pair<std::shared_ptr<RelayStream>, std::shared_ptr<RelayStream>> start(
      const std::string& prefix, const RelayStream::Sink& sink = nullptr);
};

// In a worker: makes `out`/`err` its fd 1 and 2 (line-buffered stdout), keeps them as the
// descriptors pending_output() looks at, and marks this process's output as relayed.
void adopt_relay(int out, int err) noexcept;
// In a worker whose output is relayed: true if its pipes hold bytes the relay has not read yet.
bool pending_output() noexcept;

}  // namespace parx::detail
