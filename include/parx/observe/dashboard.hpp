// parx/observe/dashboard.hpp — the live dashboard: a small web page, served from the process,
// that shows every pool's counters, workers, throughput and recent failures.
//
// Start it with `PARX_DASHBOARD=1` (or `host:port`, `:port`) in the environment of any program
// that builds a pool, or explicitly with an `observe::Dashboard` object. It prints its address on
// stderr; open that URL in a browser. See docs/dashboard.md.
//
// Contract
//   * Nothing listens unless asked. The default address is 127.0.0.1 (loopback only); any other
//     address must be given explicitly and is announced with a warning on stderr.
//   * Every request must carry the token: `?token=` in the URL, an `Authorization: Bearer` header,
//     or the cookie that the first page load with the token sets. Anything else gets 403. Only
//     GET is served. The page is self-contained (no CDN, no external file) and works offline.
//   * `GET /` is the page; `GET /api/state` is the JSON it polls (process, pools with counters,
//     workers and throughput history, recent failures).
//   * The constructor returns once the server listens, or throws parx::Error saying why it
//     cannot (port in use, bad option). The destructor stops the server and joins its threads.
//   * Costs while nobody looks: one sampler thread waking every `sample_every`, one listener on
//     the observe events that copies TaskFailed / WorkerCrashed events (nothing else), and a
//     few idle server threads.
//
// Thread-safety: a Dashboard's const members may be called from any thread.
//
// Example
//   parx::ThreadPool pool;
//   parx::observe::Dashboard dash({.port = 0});  // any free port, random token
//   std::cout << dash.url() << '\n';             // http://127.0.0.1:41234/?token=9f…
//   pool.map(simulate, parx::range(1'000'000));
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace parx::observe {

class Dashboard {
 public:
  struct Options {
    // Address to listen on. Loopback by default; anything else (e.g. "0.0.0.0") is reachable from
    // other machines and is announced with a warning on stderr.
    std::string address = "127.0.0.1";
    // TCP port; 0 picks any free port (read it back with port()).
    int port = 8265;
    // The secret every request must carry. Empty (default): 128 random bits from getrandom(), in
    // hex. If given: 1 to 256 characters of [A-Za-z0-9._~-].
    std::string token;
    // Print "parx dashboard: http://127.0.0.1:8265/?token=…" on stderr once serving.
    bool announce = true;
    // Resolution of the throughput history (default 1 s), and how many samples it keeps
    // (default 600: ten minutes at 1 s).
    std::chrono::milliseconds sample_every{1000};
    std::size_t history = 600;
  };

  // Starts serving on background threads. Throws parx::Error if an option is bad or the address
  // cannot be bound (port in use, unknown address). Dashboard() uses the default Options.
  Dashboard();
  explicit Dashboard(Options o);
  ~Dashboard();
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  // "http://<address>:<port>/?token=<token>" (a wildcard address shows as this host's name).
  std::string url() const;
  // The port it listens on (the chosen one when Options::port was 0).
  int port() const;
  const std::string& token() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

namespace detail {

// Starts one process-lifetime dashboard from PARX_DASHBOARD, the first time it is called; later
// calls do nothing. Accepted values: "1" (127.0.0.1:8265), ":port", "host:port", "[v6addr]:port";
// unset, empty or "0" mean no dashboard. A bad value or a failure to bind prints one line on
// stderr and the program goes on without a dashboard. Under MPI, only rank 0 starts one. Called
// by every pool's constructor.
void start_dashboard_from_env() noexcept;

// The parsing behind start_dashboard_from_env: Options for `value`, or nullopt with `error` set
// to a one-line explanation (empty for the values that mean "no dashboard").
std::optional<Dashboard::Options> parse_dashboard_env(std::string_view value, std::string& error);

}  // namespace detail
}  // namespace parx::observe
