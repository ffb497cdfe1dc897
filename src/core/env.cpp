// PARX_* environment variables, read with one rule (core/env.hpp).
#include "core/env.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string_view>

#include "core/console.hpp"

namespace parx::detail {

namespace {

// NOLINTNEXTLINE(concurrency-mt-unsafe): parx never calls setenv; callers read at start-up.
const char* value_of(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

std::string number_text(double v) {
  std::string s = std::to_string(v);
  while (!s.empty() && s.back() == '0')
    s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

void env_warn(const char* name, const std::string& value, const std::string& why,
              const std::string& using_what) {
  static std::mutex mu;
  static std::set<std::string> warned;
  {
    std::lock_guard lk(mu);
    if (!warned.insert(name).second) return;
  }
  console_write(STDERR_FILENO, std::string("parx: ") + name + "=" + value + " " + why + "; using " +
                                   using_what + "\n");
}

std::int64_t env_int(const char* name, std::int64_t dflt, std::int64_t lo, std::int64_t hi) {
  const char* s = value_of(name);
  if (!s) return dflt;
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  const bool starts_well = (*s >= '0' && *s <= '9') || *s == '-' || *s == '+';  // no spaces
  if (!starts_well || end == s || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
    env_warn(name, s,
             "is not a whole number from " + std::to_string(lo) + " to " + std::to_string(hi),
             std::to_string(dflt) + " (the default)");
    return dflt;
  }
  return v;
}

double env_seconds(const char* name, double dflt, double hi) {
  const char* s = value_of(name);
  if (!s) return dflt;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (!((*s >= '0' && *s <= '9') || *s == '.' || *s == '+') || end == s || *end != '\0' ||
      errno == ERANGE || !std::isfinite(v) || v <= 0 || v > hi) {
    env_warn(name, s, "is not a number of seconds above 0 and at most " + number_text(hi),
             number_text(dflt) + " (the default)");
    return dflt;
  }
  return v;
}

int env_switch(const char* name) {
  const char* s = value_of(name);
  if (!s) return -1;
  const std::string_view v(s);
  for (const char* on : {"1", "true", "yes", "on"})
    if (v == on) return 1;
  for (const char* off : {"0", "false", "no", "off"})
    if (v == off) return 0;
  env_warn(name, s, "is not a switch (1/0, true/false, yes/no, on/off)", "the default");
  return -1;
}

int env_choice(const char* name, std::initializer_list<const char*> words, int dflt) {
  const char* s = value_of(name);
  if (!s) return dflt;
  int i = 0;
  std::string list;
  for (const char* w : words) {
    if (std::string_view(s) == w) return i;
    list += (i ? ", " : "") + std::string(w);
    ++i;
  }
  env_warn(name, s, "is not one of " + list, std::string(*(words.begin() + dflt)));
  return dflt;
}

std::int64_t env_spin_us(std::int64_t dflt) {
  return env_int("PARX_SPIN_US", dflt, 0, 10'000'000);
}

double env_progress_interval() {
  return env_seconds("PARX_PROGRESS_INTERVAL", 5.0, 86'400);
}

int env_progress() {
  return env_switch("PARX_PROGRESS");
}

int env_mpi() {
  return env_switch("PARX_MPI");
}

int env_output() {
  static constexpr int kMode[] = {0, 1, 1, 2};
  return kMode[env_choice("PARX_OUTPUT", {"lines", "prefixed", "prefix", "inherit"}, 0)];
}

int env_log_level() {
  static constexpr int kLevel[] = {0, 1, 2, 2, 3, 4, 4};
  return kLevel[env_choice("PARX_LOG_LEVEL",
                           {"debug", "info", "warn", "warning", "error", "off", "none"}, 1)];
}

void check_env() {
  (void)env_spin_us(50);
  (void)env_progress_interval();
  (void)env_progress();
  (void)env_mpi();
  (void)env_output();
  (void)env_log_level();
}

}  // namespace parx::detail
