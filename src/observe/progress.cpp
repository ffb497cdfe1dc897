// Progress of maps: the console that keeps bars and output lines apart, the progress thread that
// draws bars and calls on_progress, and MapMonitor (see parx/detail/progress.hpp).
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "core/console.hpp"
#include "core/env.hpp"
#include "parx/detail/progress.hpp"
#include "parx/detail/sync.hpp"

namespace parx::detail {
namespace {

std::string human_count(double v) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.1fG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else if (v >= 1e4)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else if (v >= 100 || v == std::floor(v))
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string clock_time(double s) {
  if (s < 0 || !std::isfinite(s)) return "?";
  const auto t = static_cast<long long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

int terminal_width() {
  winsize ws{};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
  return 80;
}

// "label  42% |█████▌    | 420/1000 · 3 failed · 1.2k/s · ETA 0:05 · 0:03"
std::string bar_line(const Progress& p, int width) {
  std::string tail;
  tail += " " + human_count(static_cast<double>(p.done));
  if (p.total) tail += "/" + human_count(static_cast<double>(p.total));
  if (p.failed) tail += " · " + human_count(static_cast<double>(p.failed)) + " failed";
  if (p.resumed) tail += " · " + human_count(static_cast<double>(p.resumed)) + " resumed";
  tail += " · " + human_count(p.rate) + "/s";
  if (!p.finished && p.eta >= 0) tail += " · ETA " + clock_time(p.eta);
  tail += " · " + clock_time(p.elapsed);
  std::string head(p.label.substr(0, 24));
  if (!p.total) return head + tail;
  const double frac =
      std::clamp(static_cast<double>(p.done) / static_cast<double>(p.total), 0.0, 1.0);
  char pct[16];
  std::snprintf(pct, sizeof pct, " %3d%% ", static_cast<int>(frac * 100));
  head += pct;
  // Display width of `tail`: its bytes minus UTF-8 continuation bytes.
  auto cols = [](const std::string& s) {
    return static_cast<int>(std::count_if(
        s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
  };
  const int room = width - 1 - cols(head) - cols(tail) - 2;
  if (room < 5) return head + tail;
  static const char* const kEighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  const int cells = room * 8;
  const int filled = static_cast<int>(frac * cells);
  std::string bar = "|";
  for (int i = 0; i < filled / 8; ++i)
    bar += "█";
  int used = filled / 8;
  if (used < room && filled % 8) {
    bar += kEighths[filled % 8];
    ++used;
  }
  bar.append(static_cast<std::size_t>(room - used), ' ');
  bar += "|";
  return head + bar + tail;
}

std::string plain_line(const Progress& p) {
  std::string s = "parx: " + std::string(p.label) + " " + human_count(static_cast<double>(p.done));
  if (p.total) {
    char pct[24];
    std::snprintf(pct, sizeof pct, " (%d%%)",
                  static_cast<int>(100.0 * static_cast<double>(p.done) /
                                   static_cast<double>(std::max<std::size_t>(p.total, 1))));
    s += "/" + human_count(static_cast<double>(p.total)) + pct;
  }
  if (p.failed) s += ", " + human_count(static_cast<double>(p.failed)) + " failed";
  if (p.resumed) s += ", " + human_count(static_cast<double>(p.resumed)) + " resumed";
  s += ", " + human_count(p.rate) + "/s";
  if (!p.finished && p.eta >= 0) s += ", ETA " + clock_time(p.eta);
  s += p.finished ? ", done in " : ", elapsed ";
  s += clock_time(p.elapsed);
  return s + "\n";
}

// Draws bars 5 times a second, prints plain lines every few seconds, calls on_progress.
class ProgressThread {
 public:
  static ProgressThread& get() {
    static ProgressThread* t = new ProgressThread();  // never destroyed (detached thread)
    return *t;
  }

  void add(const std::shared_ptr<MapMonitor>& m) {
    std::lock_guard lk(mu_);
    live_.push_back(m);
    if (!started_) {
      started_ = true;
      std::thread([this] { loop(); }).detach();
    }
    cv_.notify_one();
  }

  // A monitor ended: redraw soon (its bar is taken down).
  void poke() noexcept { cv_.notify_one(); }

 private:
  void loop() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait_for(lk, std::chrono::milliseconds(200));
      const std::int64_t now = now_ns();
      // Strong references are dropped only with mu_ released: a monitor's destructor may run
      // here (its map ended meanwhile), and it pokes this thread.
      std::vector<std::shared_ptr<MapMonitor>> live;
      for (auto it = live_.begin(); it != live_.end();) {
        auto m = it->lock();
        if (!m || m->finished()) {
          it = live_.erase(it);
          continue;
        }
        live.push_back(std::move(m));
        ++it;
      }
      lk.unlock();
      for (auto& m : live)
        m->report(m->snapshot(now));
      const bool tty = console_tty();
      if (tty) {
        std::vector<std::pair<std::uint64_t, std::string>> bars;
        const int width = terminal_width();
        for (auto& m : live)
          if (m->bar() && !m->finished())
            bars.emplace_back(m->id(), bar_line(m->snapshot(now), width));
        console_set_bars(std::move(bars));
      } else if (now - last_plain_ >= plain_every_ns()) {
        last_plain_ = now;
        for (auto& m : live)
          if (m->bar() && !m->finished()) {
            const Progress p = m->snapshot(now);
            if (p.elapsed >= 1.0) console_print_above(plain_line(p));
          }
      }
      live.clear();
      lk.lock();
    }
  }

  static std::int64_t plain_every_ns() {
    static const std::int64_t ns = [] {
      return static_cast<std::int64_t>(env_progress_interval() * 1e9);
    }();
    return ns;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::weak_ptr<MapMonitor>> live_;
  bool started_ = false;
  std::int64_t last_plain_ = now_ns();  // the progress thread's own
};

}  // namespace

int progress_env() noexcept {
  static const int v = [] { return env_progress(); }();
  return v;
}

bool map_observed(const MapOptions& o) noexcept {
  return o.progress || o.on_progress || !o.checkpoint.empty() || progress_env() == 1;
}

std::shared_ptr<MapMonitor> MapMonitor::start(const MapOptions& o, std::size_t total,
                                              std::string label) {
  const int env = progress_env();
  const bool bar = env == 1 || (env == -1 && o.progress);
  if (!bar && !o.on_progress) return nullptr;
  auto m = std::make_shared<MapMonitor>(o, total, std::move(label), bar);
  ProgressThread::get().add(m);
  return m;
}

MapMonitor::MapMonitor(const MapOptions& o, std::size_t total, std::string label, bool bar)
    : total_(total),
      label_(label.empty() ? std::string("map") : std::move(label)),
      bar_(bar),
      cb_(o.on_progress),
      t0_(now_ns()),
      win_t_(t0_) {
  static std::atomic<std::uint64_t> next{1};
  id_ = next.fetch_add(1, std::memory_order_relaxed);
}

MapMonitor::~MapMonitor() {
  finish();
}

Progress MapMonitor::snapshot(std::int64_t now) noexcept {
  Progress p;
  p.done = done_.load(std::memory_order_relaxed);
  p.failed = failed_.load(std::memory_order_relaxed);
  p.resumed = resumed_.load(std::memory_order_relaxed);
  p.total = total_;
  p.elapsed = static_cast<double>(now - t0_) * 1e-9;
  p.finished = finished_.load(std::memory_order_acquire);
  p.label = label_;
  std::lock_guard lk(mu_);
  const std::size_t ran = p.done - std::min(p.done, p.resumed);
  const double dt = static_cast<double>(now - win_t_) * 1e-9;
  if (dt >= 1.0 || (rate_ == 0 && dt > 0.05)) {
    const double r = static_cast<double>(ran - std::min(ran, win_done_)) / dt;
    rate_ = rate_ == 0 ? r : 0.6 * rate_ + 0.4 * r;
    win_t_ = now;
    win_done_ = ran;
  }
  if (p.finished && p.elapsed > 0) rate_ = static_cast<double>(ran) / p.elapsed;
  p.rate = rate_;
  if (total_ && rate_ > 0 && !p.finished)
    p.eta = static_cast<double>(total_ - std::min(total_, p.done)) / rate_;
  return p;
}

void MapMonitor::report(const Progress& p) noexcept {
  if (!cb_) return;
  std::lock_guard lk(mu_);
  if (finished_.load(std::memory_order_acquire) && !p.finished) return;  // the end was reported
  try {
    cb_(p);
  } catch (...) {
    // on_progress must not throw; an exception from it is dropped, never reaches a worker.
  }
}

void MapMonitor::finish() noexcept {
  if (finished_.exchange(true, std::memory_order_acq_rel)) return;
  const Progress p = snapshot(now_ns());
  if (bar_) {
    // The final state stays on the screen; the live bar goes at the next redraw (poked now).
    console_end_bar(id_, console_tty() ? bar_line(p, terminal_width()) + "\n" : plain_line(p));
    ProgressThread::get().poke();
  }
  report(p);
}

}  // namespace parx::detail
