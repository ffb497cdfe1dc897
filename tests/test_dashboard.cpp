// The live dashboard: binding (loopback, free port, a taken port), the token on every request,
// the security headers, PARX_DASHBOARD parsing, the JSON state against a real pool's counters,
// and the page itself rendered by headless Chromium (numbers in the DOM, and a screenshot left in
// the build folder for people to look at).
#include "parx/observe/dashboard.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parx/errors.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/thread_pool.hpp"
#include "test_util.hpp"

extern char** environ;

namespace {

using nlohmann::json;
using parx::observe::Dashboard;

Dashboard::Options quiet(int port = 0) {
  Dashboard::Options o;
  o.port = port;
  o.announce = false;
  return o;
}

// ---- a minimal HTTP/1.1 client over a real socket ----------------------------------------------

struct Reply {
  int status = 0;
  std::multimap<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

Reply http(int port, const std::string& target, const std::vector<std::string>& extra = {},
           const std::string& method = "GET") {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + " failed");
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n";
  for (const std::string& h : extra)
    req += h + "\r\n";
  req += "\r\n";
  for (std::size_t sent = 0; sent < req.size();) {
    const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  Reply r;
  const auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos) throw std::runtime_error("no HTTP reply: " + raw);
  std::istringstream head(raw.substr(0, end));
  std::string line;
  std::getline(head, line);
  r.status = std::stoi(line.substr(line.find(' ') + 1, 3));
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ')
      value.erase(0, 1);
    r.headers.emplace(name, value);
  }
  r.body = raw.substr(end + 4);
  return r;
}

json state_of(const Dashboard& d) {
  const Reply r = http(d.port(), "/api/state?token=" + d.token());
  EXPECT_EQ(r.status, 200) << r.body;
  return json::parse(r.body);  // throws, failing the test, if it is not JSON
}

const json* find_pool(const json& state, std::uint64_t id) {
  for (const json& p : state.at("pools"))
    if (p.at("id").get<std::uint64_t>() == id) return &p;
  return nullptr;
}

void expect_secure_headers(const Reply& r) {
  EXPECT_EQ(r.header("cache-control"), "no-store");
  EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
  EXPECT_EQ(r.header("x-frame-options"), "DENY");
  EXPECT_NE(r.header("content-security-policy").find("default-src 'none'"), std::string::npos)
      << r.header("content-security-policy");
}

// 200 tasks, 7 of which throw ("boom <i>"); returns once the pool is idle.
constexpr int kTasks = 200;
constexpr int kFailing = 7;
bool fails(int i) {
  return i % 29 == 3;
}  // 3, 32, 61, 90, 119, 148, 177

void run_workload(parx::ThreadPool& pool) {
  std::vector<parx::Future<int>> fs;
  for (int i = 0; i < kTasks; ++i) {
    fs.push_back(pool.submit([i] {
      std::this_thread::sleep_for(std::chrono::microseconds(300));
      if (fails(i)) throw std::runtime_error("boom " + std::to_string(i));
      return i;
    }));
  }
  int failed = 0;
  for (auto& f : fs) {
    try {
      (void)f.get();
    } catch (const std::runtime_error&) {
      ++failed;
    }
  }
  ASSERT_EQ(failed, kFailing);
  ASSERT_TRUE(parx_test::eventually([&] {
    const parx::observe::Counters c = pool.counters();
    return c.done + c.failed == kTasks && c.running == 0 && c.queue_depth == 0;
  }));
}

// Compares every counter of the JSON pool with the pool's own counters().
void expect_counters_equal(const json& jp, const parx::observe::Counters& c) {
  const json& j = jp.at("counters");
  EXPECT_EQ(j.at("submitted").get<std::uint64_t>(), c.submitted);
  EXPECT_EQ(j.at("running").get<std::uint64_t>(), c.running);
  EXPECT_EQ(j.at("done").get<std::uint64_t>(), c.done);
  EXPECT_EQ(j.at("failed").get<std::uint64_t>(), c.failed);
  EXPECT_EQ(j.at("cancelled").get<std::uint64_t>(), c.cancelled);
  EXPECT_EQ(j.at("retried").get<std::uint64_t>(), c.retried);
  EXPECT_EQ(j.at("worker_restarts").get<std::uint64_t>(), c.worker_restarts);
  EXPECT_EQ(j.at("queue_depth").get<std::uint64_t>(), c.queue_depth);
  EXPECT_EQ(j.at("chunks").get<std::uint64_t>(), c.chunks);
  EXPECT_EQ(j.at("crashes").get<std::uint64_t>(), c.crashes);
  EXPECT_EQ(j.at("timeouts").get<std::uint64_t>(), c.timeouts);
  EXPECT_EQ(j.at("corrupt_messages").get<std::uint64_t>(), c.corrupt_messages);
  EXPECT_EQ(j.at("bytes_moved").get<std::uint64_t>(), c.bytes_moved);
  EXPECT_EQ(j.at("bytes_sent").get<std::uint64_t>(), c.bytes_sent);
  EXPECT_EQ(j.at("bytes_received").get<std::uint64_t>(), c.bytes_received);
  EXPECT_EQ(j.at("compressed").get<std::uint64_t>(), c.compressed);
  EXPECT_EQ(j.at("bytes_saved").get<std::uint64_t>(), c.bytes_saved);
}

// ---- binding --------------------------------------------------------------------------------

// The local address of the socket listening on `port`, from /proc/net/tcp{,6} ("0100007F" is
// 127.0.0.1), or "" if none listens.
std::string listening_address(int port) {
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream f(file);
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string slot, local, remote, st;
      in >> slot >> local >> remote >> st;
      const auto colon = local.find(':');
      if (st == "0A" && std::stoi(local.substr(colon + 1), nullptr, 16) == port)  // 0A: LISTEN
        return local.substr(0, colon);
    }
  }
  return "";
}

TEST(Dashboard, BindsLoopbackOnAFreePortWithARandomToken) {
  EXPECT_EQ(Dashboard::Options{}.address, "127.0.0.1");
  EXPECT_EQ(Dashboard::Options{}.port, 8265);
  Dashboard d(quiet(0));
  ASSERT_GT(d.port(), 0);
  EXPECT_EQ(listening_address(d.port()), "0100007F");
  EXPECT_TRUE(std::regex_match(d.token(), std::regex("[0-9a-f]{32}"))) << d.token();
  EXPECT_EQ(d.url(), "http://127.0.0.1:" + std::to_string(d.port()) + "/?token=" + d.token());
  Dashboard other(quiet(0));
  EXPECT_NE(other.port(), d.port());
  EXPECT_NE(other.token(), d.token());
}

TEST(Dashboard, StopsListeningWhenDestroyed) {
  int port = 0;
  {
    Dashboard d(quiet(0));
    port = d.port();
    EXPECT_EQ(http(port, "/?token=" + d.token()).status, 200);
  }
  EXPECT_EQ(listening_address(port), "");
  EXPECT_THROW(http(port, "/"), std::runtime_error);
}

TEST(Dashboard, ASecondDashboardOnTheSamePortIsAClearError) {
  Dashboard first(quiet(0));
  const std::string port = std::to_string(first.port());
  try {
    Dashboard second(quiet(first.port()));
    FAIL() << "a second dashboard bound port " << port;
  } catch (const parx::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot listen on 127.0.0.1:" + port), std::string::npos) << what;
    EXPECT_NE(what.find("in use"), std::string::npos) << what;
  }
  EXPECT_EQ(http(first.port(), "/api/state?token=" + first.token()).status, 200);
}

TEST(Dashboard, RejectsBadOptions) {
  auto with = [](auto change) {
    Dashboard::Options o = quiet(0);
    change(o);
    return o;
  };
  EXPECT_THROW(Dashboard(with([](auto& o) { o.port = -1; })), parx::Error);
  EXPECT_THROW(Dashboard(with([](auto& o) { o.port = 65536; })), parx::Error);
  EXPECT_THROW(Dashboard(with([](auto& o) { o.address = ""; })), parx::Error);
  EXPECT_THROW(Dashboard(with([](auto& o) { o.address = "no.such.host.invalid"; })), parx::Error);
  EXPECT_THROW(Dashboard(with([](auto& o) { o.token = "has space"; })), parx::Error);
  EXPECT_THROW(Dashboard(with([](auto& o) { o.token = "semi;colon"; })), parx::Error);
  EXPECT_THROW(Dashboard(with([](auto& o) { o.sample_every = std::chrono::milliseconds(0); })),
               parx::Error);
  EXPECT_THROW(Dashboard(with([](auto& o) { o.history = 0; })), parx::Error);
  Dashboard mine(with([](auto& o) { o.token = "my-token_1.0~"; }));
  EXPECT_EQ(mine.token(), "my-token_1.0~");
  EXPECT_EQ(http(mine.port(), "/api/state?token=my-token_1.0~").status, 200);
}

TEST(Dashboard, AnnouncesItsUrlAndWarnsOffLoopback) {
  testing::internal::CaptureStderr();
  { Dashboard d({.port = 0}); }
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(std::regex_search(
      err, std::regex("parx dashboard: http://127\\.0\\.0\\.1:[0-9]+/\\?token=[0-9a-f]{32}\n")))
      << err;
  EXPECT_EQ(err.find("WARNING"), std::string::npos) << err;

  testing::internal::CaptureStderr();
  {
    Dashboard d({.address = "0.0.0.0", .port = 0, .announce = false});
    EXPECT_NE(d.url().find(":" + std::to_string(d.port()) + "/?token="), std::string::npos);
    EXPECT_EQ(d.url().find("0.0.0.0"), std::string::npos) << "a wildcard shows as the host name";
  }
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("WARNING: listening on 0.0.0.0:"), std::string::npos) << err;
}

// ---- the token and the headers ----------------------------------------------------------------

TEST(Dashboard, EveryRequestNeedsTheToken) {
  Dashboard d(quiet(0));
  const int port = d.port();
  const std::string t = d.token();
  std::string wrong = t;
  wrong[0] = wrong[0] == 'a' ? 'b' : 'a';

  for (const char* path : {"/", "/api/state", "/nothing"}) {
    const Reply r = http(port, path);
    EXPECT_EQ(r.status, 403) << path;
    EXPECT_NE(r.body.find("token"), std::string::npos) << r.body;
    expect_secure_headers(r);
  }
  EXPECT_EQ(http(port, "/api/state?token=" + wrong).status, 403);
  EXPECT_EQ(http(port, "/api/state?token=" + t.substr(0, 31)).status, 403);
  EXPECT_EQ(http(port, "/api/state?token=" + t + "0").status, 403);
  EXPECT_EQ(http(port, "/api/state?token=").status, 403);
  EXPECT_EQ(http(port, "/api/state", {"Authorization: Bearer " + wrong}).status, 403);
  EXPECT_EQ(http(port, "/api/state", {"Authorization: Basic " + t}).status, 403);
  EXPECT_EQ(
      http(port, "/api/state", {"Cookie: parx_dashboard_" + std::to_string(port) + "=" + wrong})
          .status,
      403);
  // Another dashboard's cookie name does not count.
  EXPECT_EQ(http(port, "/api/state", {"Cookie: parx_dashboard_1=" + t}).status, 403);

  const Reply page = http(port, "/?token=" + t);
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.header("content-type").find("text/html"), std::string::npos);
  expect_secure_headers(page);
  const std::string cookie = page.header("set-cookie");
  EXPECT_NE(cookie.find("HttpOnly"), std::string::npos) << cookie;
  EXPECT_NE(cookie.find("SameSite=Strict"), std::string::npos) << cookie;
  const std::string pair = cookie.substr(0, cookie.find(';'));
  EXPECT_EQ(pair, "parx_dashboard_" + std::to_string(port) + "=" + t);

  const Reply by_query = http(port, "/api/state?token=" + t);
  EXPECT_EQ(by_query.status, 200);
  EXPECT_NE(by_query.header("content-type").find("application/json"), std::string::npos);
  expect_secure_headers(by_query);
  EXPECT_EQ(http(port, "/api/state", {"Authorization: Bearer " + t}).status, 200);
  EXPECT_EQ(http(port, "/api/state", {"Cookie: theme=dark; " + pair + "; x=1"}).status, 200);

  EXPECT_EQ(http(port, "/nothing?token=" + t).status, 404);
  for (const char* m : {"POST", "PUT", "DELETE", "HEAD", "OPTIONS"}) {
    const Reply r = http(port, "/api/state?token=" + t, {"Content-Length: 0"}, m);
    EXPECT_EQ(r.status, 405) << m;
  }
}

TEST(Dashboard, ThePageIsSelfContainedUnderANonceCsp) {
  Dashboard d(quiet(0));
  const Reply a = http(d.port(), "/?token=" + d.token());
  const Reply b = http(d.port(), "/?token=" + d.token());
  const std::string csp = a.header("content-security-policy");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(csp, m, std::regex("script-src 'nonce-([0-9a-f]{32})'"))) << csp;
  const std::string nonce = m[1];
  EXPECT_NE(csp.find("style-src 'nonce-" + nonce + "'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_NE(b.header("content-security-policy"), csp) << "a fresh nonce per response";
  EXPECT_NE(a.body.find("<script nonce=\"" + nonce + "\">"), std::string::npos);
  EXPECT_NE(a.body.find("<style nonce=\"" + nonce + "\">"), std::string::npos);
  EXPECT_EQ(a.body.find("@NONCE@"), std::string::npos);
  // Nothing from elsewhere: no external script, style, font or image.
  EXPECT_EQ(a.body.find("http://"), std::string::npos);
  EXPECT_EQ(a.body.find("https://"), std::string::npos);
  EXPECT_EQ(a.body.find(" src="), std::string::npos);
  EXPECT_EQ(a.body.find("innerHTML"), std::string::npos) << "untrusted text goes in textContent";
}

// ---- PARX_DASHBOARD ---------------------------------------------------------------------------

TEST(Dashboard, ParsesParxDashboardValues) {
  using parx::observe::detail::parse_dashboard_env;
  std::string err;
  struct Good {
    const char* value;
    const char* address;
    int port;
  };
  for (const Good& g : {Good{"1", "127.0.0.1", 8265}, Good{"on", "127.0.0.1", 8265},
                        Good{":9000", "127.0.0.1", 9000}, Good{":0", "127.0.0.1", 0},
                        Good{" :8300 ", "127.0.0.1", 8300}, Good{"0.0.0.0:8000", "0.0.0.0", 8000},
                        Good{"localhost:8265", "localhost", 8265}, Good{"[::1]:8265", "::1", 8265},
                        Good{"127.0.0.2:65535", "127.0.0.2", 65535}}) {
    const auto o = parse_dashboard_env(g.value, err);
    ASSERT_TRUE(o.has_value()) << g.value << ": " << err;
    EXPECT_EQ(err, "");
    EXPECT_EQ(o->address, g.address) << g.value;
    EXPECT_EQ(o->port, g.port) << g.value;
    EXPECT_TRUE(o->token.empty()) << "a random token, never one from the environment";
  }
  for (const char* off : {"", "0", "off", "false", "no", "  "}) {
    EXPECT_FALSE(parse_dashboard_env(off, err).has_value()) << off;
    EXPECT_EQ(err, "") << off;
  }
  for (const char* bad :
       {"yes please", "8265", "127.0.0.1", ":", ":99999", ":-1", ":80x", "host:port", "::1:8265",
        "[::1]8265", "[]:80", "a b:80", ":123456", "evil.com/x:80"}) {
    EXPECT_FALSE(parse_dashboard_env(bad, err).has_value()) << bad;
    EXPECT_NE(err.find("PARX_DASHBOARD='" + std::string(bad) + "'"), std::string::npos) << err;
    EXPECT_NE(err.find("expected 1, :port, host:port"), std::string::npos) << err;
  }
  parse_dashboard_env("8265", err);
  EXPECT_NE(err.find("write :8265"), std::string::npos) << err;
}

// start_dashboard_from_env acts once per process, so each case runs in a fresh process (a death
// test in the "threadsafe" style re-executes this binary).
TEST(Dashboard, EnvBadValueSaysSoAndTheProgramGoesOn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("PARX_DASHBOARD", "localhost", 1);
        parx::observe::detail::start_dashboard_from_env();
        parx::ThreadPool pool(1);
        std::fprintf(stderr, "went on: %d\n", pool.submit([] { return 42; }).get());
        std::_Exit(0);
      },
      testing::ExitedWithCode(0),
      "parx: PARX_DASHBOARD='localhost' is not understood \\(no port\\).*no dashboard "
      "started\n.*went on: 42");
}

TEST(Dashboard, EnvGoodValueStartsOneDashboard) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("PARX_DASHBOARD", ":0", 1);
        parx::observe::detail::start_dashboard_from_env();
        parx::observe::detail::start_dashboard_from_env();  // once only
        std::fprintf(stderr, "done\n");
        std::_Exit(0);
      },
      testing::ExitedWithCode(0),
      "^parx dashboard: http://127\\.0\\.0\\.1:[0-9]+/\\?token=[0-9a-f]{32}\ndone\n$");
}

TEST(Dashboard, EnvPortInUseSaysSoAndTheProgramGoesOn) {
  Dashboard holder(quiet(0));
  const std::string value = ":" + std::to_string(holder.port());
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("PARX_DASHBOARD", value.c_str(), 1);
        parx::observe::detail::start_dashboard_from_env();
        std::fprintf(stderr, "went on\n");
        std::_Exit(0);
      },
      testing::ExitedWithCode(0),
      "parx dashboard: cannot listen on 127\\.0\\.0\\.1:[0-9]+: the port is in "
      "use.*\\(PARX_DASHBOARD=:"
      "[0-9]+\\); no dashboard started\nwent on");
}

TEST(Dashboard, EnvOnlyRankZeroOfAnMpiJobStartsOne) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        ::setenv("PARX_DASHBOARD", ":0", 1);
        ::setenv("OMPI_COMM_WORLD_RANK", "1", 1);
        parx::observe::detail::start_dashboard_from_env();
        std::fprintf(stderr, "quiet\n");
        std::_Exit(0);
      },
      testing::ExitedWithCode(0), "^quiet\n$");
}

// ---- the state against a real pool ------------------------------------------------------------

TEST(Dashboard, StateMatchesThePoolCountersAndListsFailures) {
  parx::ThreadPool pool(2);
  Dashboard::Options o = quiet(0);
  o.sample_every = std::chrono::milliseconds(20);
  Dashboard d(o);
  // The sampler has seen the pool (a baseline, then a first rate) before the work starts.
  ASSERT_TRUE(parx_test::eventually([&] {
    const json s = state_of(d);
    const json* p = find_pool(s, pool.id());
    return p && !p->at("throughput").empty();
  }));
  run_workload(pool);

  const parx::observe::Counters c = pool.counters();
  EXPECT_EQ(c.done, static_cast<std::uint64_t>(kTasks - kFailing));
  EXPECT_EQ(c.failed, static_cast<std::uint64_t>(kFailing));
  json s;
  EXPECT_TRUE(parx_test::eventually([&] {  // a worker may still be leaving its last task
    s = state_of(d);
    const json* p = find_pool(s, pool.id());
    return p && std::all_of(p->at("workers").begin(), p->at("workers").end(),
                            [](const json& w) { return w.at("state") == "idle"; });
  })) << s.dump(2);

  const json& proc = s.at("process");
  EXPECT_EQ(proc.at("pid").get<long>(), static_cast<long>(::getpid()));
  EXPECT_FALSE(proc.at("host").get<std::string>().empty());
  EXPECT_EQ(proc.at("program").get<std::string>(), "test_dashboard");
  EXPECT_GE(proc.at("uptime_s").get<double>(), 0.0);
  EXPECT_EQ(proc.at("sample_every_ms").get<int>(), 20);

  const json* p = find_pool(s, pool.id());
  ASSERT_NE(p, nullptr) << s.dump(2);
  EXPECT_EQ(p->at("kind"), "thread");
  expect_counters_equal(*p, c);
  ASSERT_EQ(p->at("workers").size(), 2u);
  std::uint64_t by_workers = 0;
  for (const json& w : p->at("workers")) {
    EXPECT_EQ(w.at("state"), "idle") << w.dump();
    EXPECT_EQ(w.at("pid").get<long>(), static_cast<long>(::getpid()));
    by_workers += w.at("tasks").get<std::uint64_t>();
  }
  EXPECT_EQ(by_workers, static_cast<std::uint64_t>(kTasks));

  // The throughput history saw the work, and sums (rate × interval) to about the task count.
  ASSERT_TRUE(parx_test::eventually([&] {
    const json now = state_of(d);
    const json* q = find_pool(now, pool.id());
    return q && !q->at("throughput").empty() && q->at("throughput").back().get<double>() == 0.0;
  }));
  const json later = state_of(d);
  const json* q = find_pool(later, pool.id());
  ASSERT_NE(q, nullptr);
  double peak = 0;
  for (const json& r : q->at("throughput"))
    peak = std::max(peak, r.get<double>());
  EXPECT_GT(peak, 0.0);

  // Every failure is listed with its pool, and the detail carries the exception's message.
  int mine = 0;
  std::vector<std::string> details;
  for (const json& f : s.at("failures")) {
    if (f.at("pool").get<std::uint64_t>() != pool.id()) continue;
    ++mine;
    EXPECT_EQ(f.at("event"), "task_failed");
    EXPECT_EQ(f.at("pool_kind"), "thread");
    EXPECT_GT(f.at("time_unix_ms").get<std::int64_t>(), 1'600'000'000'000);
    details.push_back(f.at("detail").get<std::string>());
  }
  EXPECT_EQ(mine, kFailing) << s.at("failures").dump(2);
  EXPECT_EQ(s.at("failures_total").get<int>(), kFailing);
  // Event::detail is filled "where the executor knows it": when the pool reports the exception
  // text, it is the task's own. (The copying and escaping of detail text is checked below with
  // events as a process pool emits them.)
  const bool has_text =
      std::any_of(details.begin(), details.end(), [](const std::string& t) { return !t.empty(); });
  if (has_text) {
    bool found = false;
    for (const std::string& det : details)
      found |= det.find("boom 61") != std::string::npos;
    EXPECT_TRUE(found) << s.at("failures").dump(2);
  }
}

TEST(Dashboard, FailureTextIsCopiedKeptBoundedAndEscaped) {
  Dashboard d(quiet(0));
  // Events as a process pool emits them; the strings die right after emit().
  for (int i = 0; i < 60; ++i) {
    std::string name = "render\"<frame>\"";
    std::string detail = "std::runtime_error: bad \xff byte\n  #0 frame " + std::to_string(i) +
                         "\n\t</script><script>alert(1)</script>";
    parx::observe::Event e{};
    e.kind = i % 2 ? parx::observe::EventKind::WorkerCrashed : parx::observe::EventKind::TaskFailed;
    e.executor_id = 999'999;
    e.executor_kind = "process";
    e.worker = 3;
    e.name = name.c_str();
    e.detail = detail.c_str();
    e.pid = 4242;
    e.host = "node-7";
    parx::observe::emit(e);
    name.assign(name.size(), 'x');
    detail.assign(detail.size(), 'x');
  }
  const json s = state_of(d);
  const json& fs = s.at("failures");
  ASSERT_EQ(fs.size(), 50u) << "the last 50 are kept";
  EXPECT_EQ(s.at("failures_total").get<int>(), 60);
  const json& last = fs.back();
  EXPECT_EQ(last.at("function"), "render\"<frame>\"");
  EXPECT_EQ(last.at("event"), "worker_crashed");
  EXPECT_EQ(last.at("host"), "node-7");
  EXPECT_EQ(last.at("pid").get<long>(), 4242);
  const std::string det = last.at("detail");
  EXPECT_NE(det.find("bad \xef\xbf\xbd byte"), std::string::npos) << "invalid UTF-8 replaced";
  EXPECT_NE(det.find("#0 frame 59"), std::string::npos) << det;
  EXPECT_NE(fs.front().at("detail").get<std::string>().find("#0 frame 10\n"), std::string::npos)
      << "the oldest kept is the 11th";
  EXPECT_NE(det.find("</script><script>alert(1)</script>"), std::string::npos) << "kept as text";
}

// ---- the page in a real browser ---------------------------------------------------------------

std::string find_chromium() {
  if (const char* env = std::getenv("PARX_CHROMIUM")) return env;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    for (const char* name :
         {"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}) {
      const std::string p = dir + "/" + name;
      if (::access(p.c_str(), X_OK) == 0) return p;
    }
  }
  return "";
}

struct ChildRun {
  bool timed_out = false;
  int status = -1;
};

// Runs argv in its own process group with stdout and stderr to files; kills the whole group
// after `limit` (Chromium starts helpers).
ChildRun run_with_timeout(const std::vector<std::string>& args, const std::string& out,
                          const std::string& err, std::chrono::seconds limit) {
  std::vector<char*> argv;
  for (const std::string& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ChildRun r;
  if (rc != 0) return r;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int st = 0;
    const pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      r.status = st;
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      r.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(-pid, SIGKILL);  // helpers left behind, if any
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string tail(const std::string& s, std::size_t n = 2000) {
  return s.size() > n ? "…" + s.substr(s.size() - n) : s;
}

TEST(Dashboard, ChromiumRendersThePoolCounters) {
  const std::string chromium = find_chromium();
  if (!chromium.empty() && ::access(chromium.c_str(), X_OK) != 0)
    FAIL() << "PARX_CHROMIUM=" << chromium << " is not an executable file";
  ASSERT_FALSE(chromium.empty())
      << "Chromium is not installed, and this test needs it to load the dashboard page. Install "
         "it with tools/install-deps.sh (Debian: apt-get install chromium), or point "
         "PARX_CHROMIUM at a Chromium or Chrome binary.";
  const std::string dir = PARX_TEST_BINARY_DIR;
  const std::string profile = dir + "/dashboard-chromium-profile";
  const std::string shot = dir + "/dashboard.png";
  std::filesystem::remove_all(profile);
  std::filesystem::remove(shot);

  parx::ThreadPool pool(2);
  Dashboard::Options o = quiet(0);
  o.sample_every = std::chrono::milliseconds(100);
  Dashboard d(o);
  run_workload(pool);
  // And a failure as a process pool reports it (the stack trace is for people to look at).
  parx::observe::Event crash{};
  crash.kind = parx::observe::EventKind::TaskFailed;
  crash.executor_id = 424242;
  crash.executor_kind = "process";
  crash.task_id = 9001;
  crash.worker = 1;
  crash.pid = 31337;
  crash.host = "node-7";
  crash.name = "render_frame";
  crash.detail =
      "std::out_of_range: frame 118 has no camera\n"
      "  #0 render_frame(int) at examples/render.cpp:42\n"
      "  #1 parx::detail::invoke_remote at src/remote.cpp:131\n"
      "  #2 parx::detail::worker_main at src/process_pool.cpp:877";
  parx::observe::emit(crash);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));  // an idle sample after the work
  const parx::observe::Counters c = pool.counters();

  std::vector<std::string> args = {chromium,
                                   "--headless",
                                   "--disable-gpu",
                                   "--no-first-run",
                                   "--no-default-browser-check",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-extensions",
                                   "--disable-sync",
                                   "--disable-breakpad",
                                   "--disable-dev-shm-usage",
                                   "--hide-scrollbars",
                                   "--mute-audio",
                                   "--user-data-dir=" + profile,
                                   "--window-size=1280,900",
                                   "--virtual-time-budget=3000",
                                   "--screenshot=" + shot,
                                   "--dump-dom",
                                   d.url()};
  if (::geteuid() == 0) args.insert(args.begin() + 1, "--no-sandbox");  // root: no user namespace
  const std::string out = dir + "/dashboard-dom.html";
  const std::string err = dir + "/dashboard-chromium.log";
  const ChildRun r = run_with_timeout(args, out, err, std::chrono::seconds(60));
  ASSERT_FALSE(r.timed_out) << "Chromium did not finish in 60 s; its log:\n"
                            << tail(read_file(err));
  ASSERT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
      << "Chromium failed (status " << r.status << "); its log:\n"
      << tail(read_file(err));
  const std::string dom = read_file(out);

  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("<body data-updated=\"([0-9]+)\"")))
      << tail(dom, 4000);
  EXPECT_GE(std::stoi(m[1]), 1) << "the page never rendered a state";

  const std::string id = std::to_string(pool.id());
  auto shown = [&](const std::string& counter) -> long long {
    std::smatch n;
    const std::regex re("id=\"pool-" + id + "-" + counter + "\"[^>]*>([0-9,]+)<");
    if (!std::regex_search(dom, n, re)) {
      ADD_FAILURE() << "no element pool-" << id << "-" << counter << " in the page";
      return -1;
    }
    std::string digits = n[1];
    std::erase(digits, ',');
    return std::stoll(digits);
  };
  EXPECT_EQ(shown("submitted"), static_cast<long long>(c.submitted));
  EXPECT_EQ(shown("running"), static_cast<long long>(c.running));
  EXPECT_EQ(shown("done"), static_cast<long long>(c.done));
  EXPECT_EQ(shown("failed"), static_cast<long long>(c.failed));
  EXPECT_EQ(shown("cancelled"), static_cast<long long>(c.cancelled));
  EXPECT_EQ(shown("retried"), static_cast<long long>(c.retried));
  EXPECT_EQ(shown("worker_restarts"), static_cast<long long>(c.worker_restarts));
  EXPECT_EQ(shown("queue_depth"), static_cast<long long>(c.queue_depth));
  EXPECT_EQ(shown("bytes_moved"), static_cast<long long>(c.bytes_moved));
  EXPECT_EQ(shown("done"), kTasks - kFailing);

  // Two worker rows, and the failures with their messages.
  const std::regex row("<tr><td>[0-9]+</td><td><span class=\"state (idle|busy|starting|stopped)\"");
  EXPECT_EQ(
      std::distance(std::sregex_iterator(dom.begin(), dom.end(), row), std::sregex_iterator()), 2)
      << tail(dom, 4000);
  const std::regex failure("<details class=\"failure\"");
  EXPECT_EQ(
      std::distance(std::sregex_iterator(dom.begin(), dom.end(), failure), std::sregex_iterator()),
      kFailing + 1);
  EXPECT_NE(dom.find("frame 118 has no camera"), std::string::npos);
  EXPECT_NE(dom.find("#0 render_frame(int) at examples/render.cpp:42"), std::string::npos);

  // The screenshot, for people: a real PNG of a full window.
  const std::string png = read_file(shot);
  ASSERT_GT(png.size(), 10'000u) << "no screenshot at " << shot << "; log:\n"
                                 << tail(read_file(err));
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::printf("dashboard screenshot: %s\n", shot.c_str());
}

}  // namespace
