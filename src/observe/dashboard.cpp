// The live dashboard (parx/observe/dashboard.hpp): cpp-httplib serving one self-contained page
// and a JSON state, a sampler thread for the throughput history, and an observe listener that
// keeps the last failures.
//
// Security model (DESIGN §6): nothing listens unless asked; loopback by default; every request
// carries a 128-bit random token, compared in constant time; only GET; a strict CSP with a
// per-response nonce; untrusted text (task names, traces) travels as JSON strings and is put on
// the page with textContent only.
#include "parx/observe/dashboard.hpp"

#include <arpa/inet.h>
#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "observe/dashboard_page.hpp"
#include "parx/errors.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/version.hpp"

namespace parx::observe {
namespace {

constexpr std::size_t kFailuresKept = 50;
constexpr std::size_t kDetailMax = std::size_t{16} * 1024;  // per failure: bounds the log at ~1 MiB

// ---- small helpers ----------------------------------------------------------------------------

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  std::size_t got = 0;
  while (got < bytes) {
    const ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  if (got < bytes) {  // no getrandom (old kernel, seccomp): the C++ library's entropy source
    std::random_device rd;
    for (; got < bytes; ++got)
      raw[got] = static_cast<char>(rd() & 0xff);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * bytes);
  for (const char c : raw) {
    const auto b = static_cast<unsigned char>(c);
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// Time depends only on the secret's length, never on where the two differ.
bool same_secret(std::string_view given, std::string_view secret) noexcept {
  unsigned diff = given.size() == secret.size() ? 0u : 1u;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= g ^ static_cast<unsigned char>(secret[i]);
  }
  return diff == 0;
}

bool token_chars_ok(std::string_view t) noexcept {
  if (t.empty() || t.size() > 256) return false;
  for (const char c : t) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '~' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string strip_brackets(std::string a) {
  if (a.size() >= 2 && a.front() == '[' && a.back() == ']') a = a.substr(1, a.size() - 2);
  return a;
}

bool is_ipv6_literal(const std::string& a) {
  in6_addr v6{};
  return ::inet_pton(AF_INET6, a.c_str(), &v6) == 1;
}

bool is_loopback(const std::string& a) {
  if (a == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, a.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;  // 127.0.0.0/8
  in6_addr v6{};
  if (::inet_pton(AF_INET6, a.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

bool is_wildcard(const std::string& a) {
  return a == "0.0.0.0" || a == "::" || a == "[::]";
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

// Seconds since boot at which this process started (/proc/self/stat field 22), or -1.
double process_start_boottime() {
  std::ifstream f("/proc/self/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto close = s.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return -1;
  std::istringstream in(s.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && (in >> field); ++i) {
    if (i == 22) {
      const long ticks = ::sysconf(_SC_CLK_TCK);
      return ticks > 0 ? std::strtod(field.c_str(), nullptr) / static_cast<double>(ticks) : -1;
    }
  }
  return -1;
}

double boottime_now() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Server and sampler threads take no process-directed signals (the program's handlers run on
// its own threads), and a write to a closed connection gives EPIPE instead of killing the
// process: the SIGPIPE it raises stays pending on this thread, blocked. Threads started from here
// inherit the mask (httplib's workers too).
void block_signals_on_this_thread() noexcept {
  sigset_t all;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

// ---- failures ---------------------------------------------------------------------------------

struct Failure {
  std::uint64_t seq = 0;
  std::int64_t unix_ms = 0;
  std::string event;  // "task_failed" or "worker_crashed"
  std::uint64_t pool = 0;
  std::string pool_kind;
  std::uint64_t task_id = 0;
  std::int32_t worker = -1;
  std::int64_t pid = 0;
  std::int32_t rank = -1;
  std::string host;
  std::string function;
  std::string detail;
};

// What the listener fills on the emitting thread: copies the strings and appends under a short
// lock. Shared with the listener, so it outlives any delivery in flight.
struct FailureLog {
  std::mutex mu;
  std::deque<Failure> recent;
  std::uint64_t total = 0;

  void on_event(const Event& e) noexcept {
    if (e.kind != EventKind::TaskFailed && e.kind != EventKind::WorkerCrashed) return;
    try {
      Failure f;
      f.unix_ms = unix_ms_now();
      f.event = to_string(e.kind);
      f.pool = e.executor_id;
      f.pool_kind = e.executor_kind ? e.executor_kind : "";
      f.task_id = e.task_id;
      f.worker = e.worker;
      f.pid = e.pid;
      f.rank = e.rank;
      if (e.host) f.host = e.host;
      if (e.name) f.function = e.name;
      if (e.detail) {
        const std::string_view d(e.detail);
        f.detail.assign(d.substr(0, kDetailMax));
        if (d.size() > kDetailMax) f.detail += "\n… (truncated)";
      }
      std::lock_guard lk(mu);
      f.seq = ++total;
      recent.push_back(std::move(f));
      while (recent.size() > kFailuresKept)
        recent.pop_front();
    } catch (...) {  // out of memory: drop this record, never the worker
    }
  }
};

}  // namespace

// ---- the dashboard ----------------------------------------------------------------------------

class Dashboard::Impl {
 public:
  explicit Impl(Options o);
  ~Impl();

  std::string url() const;
  int port() const { return port_; }
  const std::string& token() const { return opt_.token; }

 private:
  struct History {
    std::uint64_t last_total = 0;
    std::chrono::steady_clock::time_point last_time;
    std::deque<double> rates;  // tasks/s, oldest first
  };

  using Request = httplib::Request;
  using Response = httplib::Response;
  using Handled = httplib::Server::HandlerResponse;

  void set_up_routes();
  bool authorized(const Request& req) const;
  void secure(Response& res, const std::string& csp) const;
  void serve_page(Response& res) const;
  void serve_state(Response& res);
  std::string state_json();

  void sampler_loop();
  void sample();
  void sampler_stop_and_join();

  Options opt_;
  int port_ = 0;
  std::string cookie_name_;
  std::string host_ = host_name();
  double started_boot_ = -1;
  std::chrono::steady_clock::time_point created_ = std::chrono::steady_clock::now();

  httplib::Server svr_;
  std::thread server_thread_;
  std::atomic<bool> listen_returned_{false};

  std::mutex hist_mu_;
  std::map<std::uint64_t, History> history_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread sampler_;

  std::shared_ptr<FailureLog> failures_ = std::make_shared<FailureLog>();
  Subscription sub_;
};

Dashboard::Impl::Impl(Options o) : opt_(std::move(o)) {
  opt_.address = strip_brackets(opt_.address);
  if (opt_.address.empty()) throw Error("parx dashboard: the address is empty");
  if (opt_.port < 0 || opt_.port > 65535)
    throw Error("parx dashboard: port " + std::to_string(opt_.port) +
                " is out of range (0 to 65535; 0 picks a free port)");
  if (opt_.sample_every.count() <= 0) throw Error("parx dashboard: sample_every must be positive");
  if (opt_.history == 0) throw Error("parx dashboard: history must keep at least one sample");
  if (opt_.token.empty()) {
    opt_.token = random_hex(16);
  } else if (!token_chars_ok(opt_.token)) {
    throw Error("parx dashboard: the token must be 1 to 256 characters of A-Z a-z 0-9 . _ ~ -");
  }
  started_boot_ = process_start_boottime();

  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let a second server
  // bind the same port silently and share its connections.
  svr_.set_socket_options([](socket_t s) {
    int yes = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // A few threads are plenty (httplib's default is max(8, cores - 1)). Each response closes its
  // connection: no idle keep-alive connection polls in a worker, and stopping is quick.
  svr_.new_task_queue = [] { return new httplib::ThreadPool(4); };
  svr_.set_keep_alive_max_count(1);
  svr_.set_read_timeout(3, 0);
  svr_.set_write_timeout(3, 0);
  svr_.set_payload_max_length(4096);
  set_up_routes();

  errno = 0;
  const std::string where =
      (is_ipv6_literal(opt_.address) ? "[" + opt_.address + "]" : opt_.address) + ":" +
      std::to_string(opt_.port);
  int bound = -1;
  if (opt_.port == 0) {
    bound = svr_.bind_to_any_port(opt_.address);
  } else if (svr_.bind_to_port(opt_.address, opt_.port)) {
    bound = opt_.port;
  }
  if (bound <= 0) {
    const int err = errno;
    std::string why;
    if (err == EADDRINUSE) {
      why =
          "the port is in use (another dashboard or program holds it; choose another port, or "
          "port 0 for any free one)";
    } else if (err == EADDRNOTAVAIL) {
      why = "the address is not one of this machine's";
    } else if (err == EACCES) {
      why = "permission denied (ports below 1024 need privileges)";
    } else if (err != 0) {
      why = std::error_code(err, std::generic_category()).message();
    } else {
      why = "the address cannot be resolved or bound";
    }
    throw Error("parx dashboard: cannot listen on " + where + ": " + why);
  }
  port_ = bound;
  cookie_name_ = "parx_dashboard_" + std::to_string(port_);

  if (!is_loopback(opt_.address)) {
    std::fprintf(stderr,
                 "parx dashboard: WARNING: listening on %s, which other machines may reach. Anyone "
                 "who learns the token can read task names and failure traces; the traffic is "
                 "not encrypted.\n",
                 where.c_str());
  }

  sub_ = subscribe([log = failures_](const Event& e) { log->on_event(e); });
  sampler_ = std::thread([this] { sampler_loop(); });
  try {
    server_thread_ = std::thread([this] {
      block_signals_on_this_thread();
      ::pthread_setname_np(::pthread_self(), "parx-dashboard");  // httplib's workers inherit it
      svr_.listen_after_bind();
      listen_returned_.store(true);
    });
  } catch (...) {  // no thread: undo the sampler, or its std::thread would terminate us
    sampler_stop_and_join();
    throw;
  }
  // stop() is a no-op until the listen loop runs; wait for it so the destructor cannot miss it.
  while (!svr_.is_running() && !listen_returned_.load())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (listen_returned_.load()) {  // the accept loop ended at once: not serving
    server_thread_.join();
    sampler_stop_and_join();
    throw Error("parx dashboard: the server on " + where + " stopped as soon as it started");
  }

  if (opt_.announce) std::fprintf(stderr, "parx dashboard: %s\n", url().c_str());
}

void Dashboard::Impl::sampler_stop_and_join() {
  {
    std::lock_guard lk(stop_mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (sampler_.joinable()) sampler_.join();
}

Dashboard::Impl::~Impl() {
  sampler_stop_and_join();
  sub_.reset();
  svr_.stop();
  if (server_thread_.joinable()) server_thread_.join();
}

std::string Dashboard::Impl::url() const {
  std::string host = opt_.address;
  if (is_wildcard(host)) host = host_;
  if (is_ipv6_literal(host)) host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(port_) + "/?token=" + opt_.token;
}

bool Dashboard::Impl::authorized(const Request& req) const {
  bool ok = false;
  if (req.has_param("token")) ok |= same_secret(req.get_param_value("token"), opt_.token);
  const std::string auth = req.get_header_value("Authorization");
  if (auth.size() > 7 && auth.compare(0, 7, "Bearer ") == 0)
    ok |= same_secret(std::string_view(auth).substr(7), opt_.token);
  const std::string cookies = req.get_header_value("Cookie");
  std::string_view rest(cookies);
  while (!rest.empty()) {
    const auto semi = rest.find(';');
    std::string_view item = rest.substr(0, semi);
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    const auto eq = item.find('=');
    if (eq != std::string_view::npos && item.substr(0, eq) == cookie_name_)
      ok |= same_secret(item.substr(eq + 1), opt_.token);
  }
  return ok;
}

void Dashboard::Impl::secure(Response& res, const std::string& csp) const {
  auto set = [&res](const char* k, const std::string& v) {
    res.headers.erase(k);
    res.set_header(k, v);
  };
  set("Cache-Control", "no-store");
  set("X-Content-Type-Options", "nosniff");
  set("X-Frame-Options", "DENY");
  set("Referrer-Policy", "no-referrer");
  set("Cross-Origin-Resource-Policy", "same-origin");
  set("Content-Security-Policy", csp);
}

namespace {
constexpr const char* kCspNone =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

void Dashboard::Impl::set_up_routes() {
  svr_.set_pre_routing_handler([this](const Request& req, Response& res) {
    if (req.method != "GET") {
      res.status = 405;
      res.set_header("Allow", "GET");
      res.set_content("parx dashboard: only GET is served\n", "text/plain; charset=utf-8");
      secure(res, kCspNone);
      return Handled::Handled;
    }
    if (!authorized(req)) {
      res.status = 403;
      res.set_content(
          "parx dashboard: this needs the token. Open the URL the program printed "
          "(http://host:port/?token=...).\n",
          "text/plain; charset=utf-8");
      secure(res, kCspNone);
      return Handled::Handled;
    }
    return Handled::Unhandled;
  });
  svr_.Get("/", [this](const Request&, Response& res) { serve_page(res); });
  svr_.Get("/api/state", [this](const Request&, Response& res) { serve_state(res); });
  svr_.set_error_handler(
      httplib::Server::HandlerWithResponse([this](const Request&, Response& res) {
        if (res.body.empty()) {
          res.set_content(
              res.status == 404 ? "parx dashboard: no such page\n" : "parx dashboard: error\n",
              "text/plain; charset=utf-8");
        }
        secure(res, kCspNone);
        return Handled::Handled;
      }));
  svr_.set_exception_handler([this](const Request&, Response& res, const std::exception_ptr& ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content("parx dashboard: internal error: " + what + "\n", "text/plain; charset=utf-8");
    secure(res, kCspNone);
  });
}

void Dashboard::Impl::serve_page(Response& res) const {
  const std::string nonce = random_hex(16);
  std::string page = detail::kDashboardPage;
  for (auto at = page.find("@NONCE@"); at != std::string::npos; at = page.find("@NONCE@", at))
    page.replace(at, 7, nonce);
  res.set_content(page, "text/html; charset=utf-8");
  secure(res, "default-src 'none'; script-src 'nonce-" + nonce + "'; style-src 'nonce-" + nonce +
                  "'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                  "frame-ancestors 'none'");
  // Later requests (a reload without ?token=) authenticate with this cookie. HttpOnly: the
  // page's script does not need it; SameSite=Strict: other sites' pages cannot send it.
  res.set_header("Set-Cookie",
                 cookie_name_ + "=" + opt_.token + "; Path=/; HttpOnly; SameSite=Strict");
}

void Dashboard::Impl::serve_state(Response& res) {
  res.set_content(state_json(), "application/json; charset=utf-8");
  secure(res, kCspNone);
}

std::string Dashboard::Impl::state_json() {
  using json = nlohmann::ordered_json;  // keys in the order written: readable by people too
  const std::vector<PoolSnapshot> snaps = pools();
  double up = started_boot_ >= 0 ? boottime_now() - started_boot_ : -1;
  if (up < 0)
    up = std::chrono::duration<double>(std::chrono::steady_clock::now() - created_).count();
  json state = {{"process",
                 {{"host", host_},
                  {"pid", static_cast<std::int64_t>(::getpid())},
                  {"program", program_invocation_short_name},
                  {"parx_version", PARX_VERSION_STRING},
                  {"uptime_s", std::round(up * 10) / 10},
                  {"now_unix_ms", unix_ms_now()},
                  {"sample_every_ms", static_cast<std::int64_t>(opt_.sample_every.count())},
                  {"history", opt_.history}}}};

  json& out_pools = state["pools"] = json::array();
  {
    std::lock_guard lk(hist_mu_);
    for (const PoolSnapshot& p : snaps) {
      const Counters& c = p.counters;
      json workers = json::array();
      for (const WorkerState& w : p.workers) {
        workers.push_back({{"index", w.index},
                           {"pid", static_cast<std::int64_t>(w.pid)},
                           {"rank", w.rank},
                           {"host", w.host},
                           {"state", w.state},
                           {"tasks", w.tasks}});
      }
      json rates = json::array();
      if (auto h = history_.find(p.id); h != history_.end())
        for (const double r : h->second.rates)
          rates.push_back(std::round(r * 1000) / 1000);
      out_pools.push_back({{"id", p.id},
                           {"kind", p.kind},
                           {"counters",
                            {{"submitted", c.submitted},
                             {"running", c.running},
                             {"done", c.done},
                             {"failed", c.failed},
                             {"cancelled", c.cancelled},
                             {"retried", c.retried},
                             {"worker_restarts", c.worker_restarts},
                             {"queue_depth", c.queue_depth},
                             {"chunks", c.chunks},
                             {"crashes", c.crashes},
                             {"timeouts", c.timeouts},
                             {"corrupt_messages", c.corrupt_messages},
                             {"bytes_moved", c.bytes_moved},
                             {"bytes_sent", c.bytes_sent},
                             {"bytes_received", c.bytes_received},
                             {"compressed", c.compressed},
                             {"bytes_saved", c.bytes_saved}}},
                           {"workers", std::move(workers)},
                           {"throughput", std::move(rates)}});
    }
  }

  json& out_failures = state["failures"] = json::array();
  {
    std::lock_guard lk(failures_->mu);
    state["failures_total"] = failures_->total;
    for (const Failure& f : failures_->recent) {
      out_failures.push_back({{"seq", f.seq},
                              {"time_unix_ms", f.unix_ms},
                              {"event", f.event},
                              {"pool", f.pool},
                              {"pool_kind", f.pool_kind},
                              {"task_id", f.task_id},
                              {"worker", f.worker},
                              {"pid", f.pid},
                              {"rank", f.rank},
                              {"host", f.host},
                              {"function", f.function},
                              {"detail", f.detail}});
    }
  }
  // Task names and traces are arbitrary bytes: invalid UTF-8 becomes U+FFFD instead of throwing.
  return state.dump(-1, ' ', false, json::error_handler_t::replace);
}

void Dashboard::Impl::sampler_loop() {
  block_signals_on_this_thread();
  ::pthread_setname_np(::pthread_self(), "parx-dash-stats");
  auto next = std::chrono::steady_clock::now();
  std::unique_lock lk(stop_mu_);
  while (!stopping_) {
    lk.unlock();
    try {
      sample();
    } catch (...) {  // out of memory: skip this sample
    }
    lk.lock();
    next += opt_.sample_every;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // fell behind (a stopped process, a suspend): do not catch up
    stop_cv_.wait_until(lk, next, [this] { return stopping_; });
  }
}

void Dashboard::Impl::sample() {
  const std::vector<PoolSnapshot> snaps = pools();
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lk(hist_mu_);
  std::map<std::uint64_t, History> next;
  for (const PoolSnapshot& p : snaps) {
    const std::uint64_t total = p.counters.done + p.counters.failed;
    auto it = history_.find(p.id);
    if (it == history_.end()) {  // first sight: a baseline, no rate yet
      History h;
      h.last_total = total;
      h.last_time = now;
      next.emplace(p.id, std::move(h));
      continue;
    }
    History h = std::move(it->second);
    const double dt = std::chrono::duration<double>(now - h.last_time).count();
    const double rate = dt > 0 ? static_cast<double>(total - h.last_total) / dt : 0.0;
    h.rates.push_back(rate);
    while (h.rates.size() > opt_.history)
      h.rates.pop_front();
    h.last_total = total;
    h.last_time = now;
    next.emplace(p.id, std::move(h));
  }
  history_ = std::move(next);  // pools that are gone drop out
}

// ---- public face ------------------------------------------------------------------------------

Dashboard::Dashboard() : Dashboard(Options{}) {}
Dashboard::Dashboard(Options o) : impl_(std::make_unique<Impl>(std::move(o))) {}
Dashboard::~Dashboard() = default;
std::string Dashboard::url() const {
  return impl_->url();
}
int Dashboard::port() const {
  return impl_->port();
}
const std::string& Dashboard::token() const {
  return impl_->token();
}

// ---- PARX_DASHBOARD ---------------------------------------------------------------------------

namespace detail {

namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The rank of this process in an MPI job started by a launcher, or -1.
int launcher_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"}) {
    if (const char* v = std::getenv(var)) {  // NOLINT(concurrency-mt-unsafe): read only
      return std::atoi(v);
    }
  }
  return -1;
}
}  // namespace

std::optional<Dashboard::Options> parse_dashboard_env(std::string_view value, std::string& error) {
  error.clear();
  std::string_view v = value;
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front())))
    v.remove_prefix(1);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back())))
    v.remove_suffix(1);
  const std::string low = lower(v);
  if (low.empty() || low == "0" || low == "off" || low == "false" || low == "no")
    return std::nullopt;
  Dashboard::Options o;
  if (low == "1" || low == "on" || low == "true" || low == "yes") return o;

  auto fail = [&](const std::string& why) {
    error = "PARX_DASHBOARD='" + std::string(value) + "' is not understood (" + why +
            "); expected 1, :port, host:port or [ipv6]:port";
    return std::nullopt;
  };
  std::string_view host, port;
  if (v.front() == '[') {
    const auto close = v.find("]:");
    if (close == std::string_view::npos) return fail("an IPv6 address in brackets needs ]:port");
    host = v.substr(1, close - 1);
    port = v.substr(close + 2);
    if (host.empty()) return fail("empty address");
  } else {
    const auto colon = v.rfind(':');
    if (colon == std::string_view::npos) {
      const bool digits =
          std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
      return fail(digits ? "no colon: write :" + std::string(v) + " for a port" : "no port");
    }
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return fail("put an IPv6 address in brackets, as [::1]:8265");
  }
  for (const char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == ':' || c == '%' || c == '_';
    if (!ok) return fail("bad character in the address");
  }
  if (port.empty() || port.size() > 5) return fail("the port must be a number from 0 to 65535");
  int p = 0;
  const auto r = std::from_chars(port.data(), port.data() + port.size(), p);
  if (r.ec != std::errc() || r.ptr != port.data() + port.size() || p < 0 || p > 65535)
    return fail("the port must be a number from 0 to 65535");
  if (!host.empty()) o.address = std::string(host);
  o.port = p;
  return o;
}

void start_dashboard_from_env() noexcept {
  static std::once_flag once;
  try {
    std::call_once(once, [] {
      const char* v = std::getenv("PARX_DASHBOARD");  // NOLINT(concurrency-mt-unsafe): read only
      if (v == nullptr) return;
      std::string error;
      const std::optional<Dashboard::Options> o = parse_dashboard_env(v, error);
      if (!o) {
        if (!error.empty()) std::fprintf(stderr, "parx: %s; no dashboard started\n", error.c_str());
        return;
      }
      if (launcher_rank() > 0) return;  // one dashboard per MPI job: rank 0's
      try {
        // Process lifetime: never destroyed, so it serves until exit, whatever the order of
        // static destruction.
        static Dashboard* const dash = new Dashboard(*o);
        (void)dash;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "%s (PARX_DASHBOARD=%s); no dashboard started\n", e.what(), v);
      }
    });
  } catch (...) {  // never let the dashboard stop a pool from being built
  }
}

}  // namespace detail
}  // namespace parx::observe
