// parx's console (core/console.hpp): progress bars (on a terminal) stay at the bottom of stderr;
// every line written through console_write goes above them.
#include "core/console.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <set>

namespace parx::detail {
namespace {

void write_all(int fd, std::string_view s) noexcept {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The console: progress bars (on a terminal) stay at the bottom of stderr; every line written
// through console_write goes above them.
class Console {
 public:
  static Console& get() {
    static Console* c = new Console();  // never destroyed: used until the last thread ends
    return *c;
  }

  bool tty() const noexcept { return tty_; }

  void write(int fd, std::string_view text) noexcept {
    std::lock_guard lk(mu_);
    if (drawn_ && tty_) erase();
    write_all(fd, text);
    if (drawn_ && tty_) draw();
  }

  // Replaces the drawn bars (terminal only); each is keyed by its monitor.
  void set_bars(std::vector<std::pair<std::uint64_t, std::string>> bars) noexcept {
    std::lock_guard lk(mu_);
    if (drawn_) erase();
    bars_.clear();
    for (auto& [key, line] : bars)
      if (!gone_.contains(key)) bars_.push_back({key, std::move(line)});
    drawn_ = !bars_.empty();
    if (drawn_) draw();
  }

  // A map ended: its bar is replaced by `line`, printed permanently above the others.
  void end_bar(std::uint64_t key, std::string_view line) noexcept {
    std::lock_guard lk(mu_);
    if (drawn_ && tty_) erase();
    std::erase_if(bars_, [key](const auto& b) { return b.first == key; });
    gone_.insert(key);  // a redraw computed before the end must not bring it back
    if (gone_.size() > 64) gone_.erase(gone_.begin());
    write_all(STDERR_FILENO, line);
    drawn_ = !bars_.empty();
    if (drawn_ && tty_) draw();
  }

  // Prints `line` permanently above the bars.
  void print_above(std::string_view line) noexcept { write(STDERR_FILENO, line); }

 private:
  Console() : tty_(isatty(STDERR_FILENO) == 1) {}
  void erase() noexcept {
    std::string s;
    for (std::size_t i = 0; i < bars_.size(); ++i) {
      s += "\r\033[2K";
      if (i + 1 < bars_.size()) s += "\033[1A";
    }
    write_all(STDERR_FILENO, s);
  }
  void draw() noexcept {
    std::string s;
    for (std::size_t i = 0; i < bars_.size(); ++i) {
      if (i) s += "\n";
      s += bars_[i].second;
    }
    write_all(STDERR_FILENO, s);
  }
  std::mutex mu_;
  std::vector<std::pair<std::uint64_t, std::string>> bars_;
  std::set<std::uint64_t> gone_;
  bool drawn_ = false;
  const bool tty_;
};

}  // namespace

void console_write(int fd, std::string_view text) noexcept {
  Console::get().write(fd, text);
}

bool console_tty() noexcept {
  return Console::get().tty();
}

void console_set_bars(std::vector<std::pair<std::uint64_t, std::string>> bars) noexcept {
  Console::get().set_bars(std::move(bars));
}

void console_end_bar(std::uint64_t key, std::string_view line) noexcept {
  Console::get().end_bar(key, line);
}

void console_print_above(std::string_view line) noexcept {
  Console::get().print_above(line);
}

}  // namespace parx::detail
