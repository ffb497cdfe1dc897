// parx/log.hpp — log lines that name where they come from, and how the output of worker processes
// and ranks reaches the driver's terminal.
//
// Logging
//   `parx::log::info("loaded ", n, " files from ", dir)` writes one line to stderr:
//       12:00:01.234 INFO  [rank 2 · worker 3 · pid 4711] loaded 12 files from /data
//   The arguments are concatenated with operator<< (any streamable type). The origin names the
//   MPI rank (on a ClusterPool's serving ranks), the ProcessPool worker index (in a worker
//   process), the pid, and the host when it differs from the driver's. The time is local wall time
//   in milliseconds.
//   Levels: debug < info < warn < error; lines below the threshold cost one relaxed atomic load
//   and are not formatted. The threshold is PARX_LOG_LEVEL (debug, info, warn, error, off;
//   default info), read on first use; set_level overrides it. An unknown PARX_LOG_LEVEL prints
//   one warning and keeps info.
//   A line goes through parx's console: above any progress bar, never into it. In a worker
//   process or on a serving rank it travels with the worker's other output to the driver (see
//   Output) and keeps its own origin: it is never prefixed twice.
//
// Worker and rank output (parx::Output, the `output` option of ProcessPool and ClusterPool)
//   `lines` (the default): what tasks write to stdout and stderr in worker processes, and on
//   serving ranks of a ClusterPool, is relayed to the driver's stdout and stderr whole-line (a
//   line is never cut by another worker's line or by a progress bar), in order per worker and
//   stream. Output a task wrote before it returned is printed before its result is delivered.
//   An unfinished last line is printed when its worker exits. Workers' stdout is line-buffered.
//   `prefixed`: the same, each line starting with its origin: "[worker 3 · pid 4711] ", or under
//   MPI "[rank 2 · pid 4711] ".
//   `inherit`: workers write straight to the descriptors the program had at parx::init (no
//   relay thread, no ordering with results, lines of different workers may mix).
//   `automatic` (the option's default): PARX_OUTPUT=lines|prefixed|inherit, else `lines`. An
//   unknown PARX_OUTPUT makes the pool's constructor throw InvalidArgument.
//
// Thread-safety: every function may be called from any thread; a line is written whole.
//
// Example
//   parx::log::set_level(parx::log::Level::debug);
//   parx::ProcessPool pool({.output = parx::Output::prefixed});
//   pool.map(simulate, parx::range(100));      // a task's printf lines arrive prefixed
//   parx::log::warn("run ", id, " finished with ", failures, " failures");
#pragma once

#include <atomic>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace parx {

// How output of worker processes and serving ranks reaches the driver (see above).
enum class Output { automatic, lines, prefixed, inherit };

namespace log {

enum class Level : int { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

// The threshold: lines of a lower level are dropped.
void set_level(Level l) noexcept;
Level level() noexcept;

namespace detail {
extern std::atomic<int> g_level;  // -1 until PARX_LOG_LEVEL was read
int init_level() noexcept;
}  // namespace detail

// True if a line of level `l` would be written.
inline bool enabled(Level l) noexcept {
  int t = detail::g_level.load(std::memory_order_relaxed);
  if (t < 0) t = detail::init_level();
  return static_cast<int>(l) >= t && l != Level::off;
}

// Writes `message` at level `l` (one line; a newline inside it starts a new line, each tagged).
void write(Level l, std::string_view message) noexcept;

// Concatenates `args` (operator<<) and writes them at level `l`.
template <class... A>
void print(Level l, A&&... args) {
  if (!enabled(l)) return;
  if constexpr (sizeof...(A) == 1 && (std::is_convertible_v<A, std::string_view> && ...)) {
    write(l, std::string_view(args...));
  } else {
    std::ostringstream s;
    (s << ... << std::forward<A>(args));
    write(l, s.str());
  }
}

template <class... A>
void debug(A&&... args) {
  print(Level::debug, std::forward<A>(args)...);
}
template <class... A>
void info(A&&... args) {
  print(Level::info, std::forward<A>(args)...);
}
template <class... A>
void warn(A&&... args) {
  print(Level::warn, std::forward<A>(args)...);
}
template <class... A>
void error(A&&... args) {
  print(Level::error, std::forward<A>(args)...);
}

// This process's origin as log lines show it: "pid 4711", "worker 3 · pid 4711",
// "rank 2 · pid 4711", "rank 2 · worker 3 · pid 4711 · node7".
std::string origin();

}  // namespace log
}  // namespace parx
