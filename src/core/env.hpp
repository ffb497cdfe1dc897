// core/env.hpp — every PARX_* environment variable is read here, with one rule.
//
// Contract
//   * An unset or empty variable gives the default, silently.
//   * A bad value (not a number, out of range, trailing characters, an unknown word) gives the
//     default too, and one warning on stderr, once per variable per process, naming the
//     variable, the value, what was expected and what is used instead:
//       parx: PARX_SPIN_US=abc is not a whole number from 0 to 10000000; using 50 (the default)
//     Never an exception from deep inside a pool's constructor, never a silent guess.
//   * Values are read when asked for (the callers cache what they read once); nothing in parx
//     calls setenv.
//
// The variables (docs/errors.md lists them with their meaning): PARX_SPIN_US, PARX_LOG_LEVEL,
// PARX_OUTPUT, PARX_PROGRESS, PARX_PROGRESS_INTERVAL, PARX_MPI, PARX_TRACE, PARX_DASHBOARD.
//
// Thread-safety: any thread (the warning set is locked).
//
// Example
//   const std::int64_t spin_us = parx::detail::env_int("PARX_SPIN_US", 50, 0, 10'000'000);
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

namespace parx::detail {

// A whole number in [lo, hi].
std::int64_t env_int(const char* name, std::int64_t dflt, std::int64_t lo, std::int64_t hi);
// A number of seconds in (0, hi].
double env_seconds(const char* name, double dflt, double hi);
// An on/off switch: 1/0, true/false, yes/no, on/off. -1 when unset (or bad: the caller's default).
int env_switch(const char* name);
// One of `words` (its index), or `dflt` (an index of `words`).
int env_choice(const char* name, std::initializer_list<const char*> words, int dflt);
// Prints the warning for `name` once ("parx: NAME=value <why>; using <what>").
void env_warn(const char* name, const std::string& value, const std::string& why,
              const std::string& using_what);

// The variables, each read by one function (the callers' defaults and ranges in one place).
std::int64_t env_spin_us(std::int64_t dflt);  // PARX_SPIN_US
double env_progress_interval();               // PARX_PROGRESS_INTERVAL, seconds (5)
int env_progress();                           // PARX_PROGRESS: -1 unset, 0, 1
int env_mpi();                                // PARX_MPI: -1 detect, 0, 1
// PARX_OUTPUT: 0 lines, 1 prefixed, 2 inherit.
int env_output();
// PARX_LOG_LEVEL: 0 debug, 1 info, 2 warn, 3 error, 4 off.
int env_log_level();
// Reads every variable once, so that a bad value is said at parx::init, not when first used.
void check_env();

}  // namespace parx::detail
