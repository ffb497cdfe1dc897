// parx::log (parx/log.hpp) and this process's origin, as log lines and relayed output name it.
#include "parx/log.hpp"

#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>

#include "core/console.hpp"
#include "core/env.hpp"
#include "core/output_relay.hpp"
#include "parx/errors.hpp"

namespace parx {
namespace {

struct OriginState {
  std::mutex mu;
  int rank = -1;
  int worker = -1;
  std::string host;  // only when it differs from the driver's
};

OriginState& origin_state() {
  static OriginState* s = new OriginState();  // never destroyed: logging works until exit
  return *s;
}

std::atomic<bool> g_relayed{false};

const char* level_name(log::Level l) {
  switch (l) {
    case log::Level::debug:
      return "DEBUG";
    case log::Level::info:
      return "INFO ";
    case log::Level::warn:
      return "WARN ";
    case log::Level::error:
      return "ERROR";
    case log::Level::off:
      break;
  }
  return "?    ";
}

std::string compose(int rank, int worker, pid_t pid, const std::string& host) {
  std::string s;
  if (rank >= 0) s += "rank " + std::to_string(rank) + " · ";
  if (worker >= 0) s += "worker " + std::to_string(worker) + " · ";
  s += "pid " + std::to_string(pid);
  if (!host.empty()) s += " · " + host;
  return s;
}

}  // namespace

namespace log {
namespace detail {

std::atomic<int> g_level{-1};

int init_level() noexcept {
  static constexpr Level kLevels[] = {Level::debug, Level::info, Level::warn, Level::error,
                                      Level::off};
  const int v = static_cast<int>(kLevels[parx::detail::env_log_level()]);
  int expected = -1;
  g_level.compare_exchange_strong(expected, v);  // set_level may have won: it stays
  return g_level.load(std::memory_order_relaxed);
}

}  // namespace detail

void set_level(Level l) noexcept {
  detail::g_level.store(static_cast<int>(l), std::memory_order_relaxed);
}

Level level() noexcept {
  int t = detail::g_level.load(std::memory_order_relaxed);
  if (t < 0) t = detail::init_level();
  return static_cast<Level>(t);
}

std::string origin() {
  OriginState& o = origin_state();
  std::lock_guard lk(o.mu);
  return compose(o.rank, o.worker, getpid(), o.host);
}

void write(Level l, std::string_view message) noexcept {
  if (!enabled(l)) return;
  try {
    timeval tv{};
    gettimeofday(&tv, nullptr);
    tm t{};
    localtime_r(&tv.tv_sec, &t);
    char head[48];
    std::snprintf(head, sizeof head, "%02d:%02d:%02d.%03d %s [", t.tm_hour, t.tm_min, t.tm_sec,
                  static_cast<int>(tv.tv_usec / 1000), level_name(l));
    const std::string tag = std::string(head) + origin() + "] ";
    std::string out;
    out.reserve(tag.size() + message.size() + 1);
    std::size_t at = 0;
    do {  // each line of the message gets the tag
      std::size_t nl = message.find('\n', at);
      if (nl == std::string_view::npos) nl = message.size();
      out += tag;
      out.append(message.substr(at, nl - at));
      out += '\n';
      at = nl + 1;
    } while (at < message.size());
    parx::detail::console_lines(STDERR_FILENO, out, true);
  } catch (...) {  // out of memory: the line is lost, the program is not
  }
}

}  // namespace log

namespace detail {

Output resolve_output(Output o) {
  switch (o) {
    case Output::lines:
    case Output::prefixed:
    case Output::inherit:
      return o;
    case Output::automatic:
      break;
    default:
      throw InvalidArgument("parx: Output option has an unknown value");
  }
  static constexpr Output kModes[] = {Output::lines, Output::prefixed, Output::inherit};
  return kModes[env_output()];
}

void set_origin_worker(int worker) noexcept {
  OriginState& o = origin_state();
  std::lock_guard lk(o.mu);
  o.worker = worker;
}

void set_origin_rank(int rank, const std::string& remote_host) {
  OriginState& o = origin_state();
  std::lock_guard lk(o.mu);
  o.rank = rank;
  o.host = remote_host;
}

std::string worker_origin(int worker, pid_t pid) {
  OriginState& o = origin_state();
  std::lock_guard lk(o.mu);
  return compose(o.rank, worker, pid, o.host);
}

std::pair<int, std::string> origin_rank() {
  OriginState& o = origin_state();
  std::lock_guard lk(o.mu);
  return {o.rank, o.host};
}

bool output_relayed() noexcept {
  return g_relayed.load(std::memory_order_acquire);
}

void set_output_relayed(bool on) noexcept {
  g_relayed.store(on, std::memory_order_release);
}

void console_lines(int fd, std::string_view text, bool named) noexcept {
  if (!named || !output_relayed()) {
    console_write(fd, text);
    return;
  }
  try {
    std::string marked;
    marked.reserve(text.size() + 16);
    std::size_t at = 0;
    while (at < text.size()) {
      std::size_t nl = text.find('\n', at);
      nl = nl == std::string_view::npos ? text.size() : nl + 1;
      marked += kOriginMark;
      marked.append(text.substr(at, nl - at));
      at = nl;
    }
    console_write(fd, marked);
  } catch (...) {
    console_write(fd, text);
  }
}

}  // namespace detail
}  // namespace parx
