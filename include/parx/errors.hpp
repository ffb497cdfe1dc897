// parx/errors.hpp — the one hierarchy of errors every parx module throws.
//
// Contract
//   * Every error parx raises derives from `parx::Error` (itself a `std::runtime_error`), so
//     `catch (const parx::Error&)` catches everything parx-specific.
//   * An exception thrown by a task that ran *in this process* (ThreadPool) reaches the caller as
//     the original exception object (`std::exception_ptr` is rethrown unchanged).
//   * An exception thrown by a task that ran in another process or rank cannot travel as an
//     object; it arrives as `TaskError`, which carries the original type name, message, task
//     index, host, rank, pid and the remote stack trace.
//   * `Cancelled`, `TimeoutError`, `WorkerCrashed`, `SerializationError` and `ExecutorShutdown`
//     name the other ways a task can fail to produce a value. One failing task never breaks its
//     pool: there is no "broken executor" state.
//
// Thread-safety: error objects are immutable after construction; copying them is thread-safe.
//
// Example
//   try {
//     double x = pool.submit(simulate, 42).get();
//   } catch (const parx::TaskError& e) {       // remote task threw
//     std::cerr << e.type_name() << " on " << e.host() << ": " << e.message() << '\n';
//   } catch (const parx::Cancelled&) {          // future.cancel() won the race
//   } catch (const parx::Error& e) {            // any other parx failure
//     std::cerr << e.what() << '\n';
//   }
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace parx {

// Base of every parx error.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Where a remote task failed and what it threw. `what()` is a one-line summary that names all of
// it; the accessors give the parts.
struct TaskErrorInfo {
  std::string type_name;         // demangled type of the original exception
  std::string message;           // its what()
  std::int64_t task_index = -1;  // index of the input item in a map, -1 for a plain submit
  std::string function;          // registered name of the function, when known
  std::string host;              // host name of the process that ran the task
  int rank = -1;                 // MPI rank, -1 outside MPI
  std::int64_t pid = -1;         // pid of the process that ran the task
  std::string stack_trace;       // symbolised frames, one per line; may be empty
};

// A task threw an exception in another process or on another rank.
class TaskError : public Error {
 public:
  explicit TaskError(TaskErrorInfo info);
  const TaskErrorInfo& info() const noexcept { return info_; }
  const std::string& type_name() const noexcept { return info_.type_name; }
  const std::string& message() const noexcept { return info_.message; }
  std::int64_t task_index() const noexcept { return info_.task_index; }
  const std::string& host() const noexcept { return info_.host; }
  int rank() const noexcept { return info_.rank; }
  std::int64_t pid() const noexcept { return info_.pid; }
  const std::string& stack_trace() const noexcept { return info_.stack_trace; }

 private:
  TaskErrorInfo info_;
};

// The task was cancelled before it started (Future::cancel, shutdown({.cancel_pending = true}), or
// a sibling's failure in a structured group).
class Cancelled : public Error {
 public:
  Cancelled() : Error("parx::Cancelled: the task was cancelled before it ran") {}
  explicit Cancelled(const std::string& what) : Error(what) {}
};

// A deadline passed: Future::get with a timeout, as_completed with a timeout, a per-task timeout.
class TimeoutError : public Error {
 public:
  explicit TimeoutError(const std::string& what = "parx::TimeoutError: deadline exceeded")
      : Error(what) {}
};

// The worker process running a task died (signal or exit code) before reporting a result.
class WorkerCrashed : public Error {
 public:
  // `signal` > 0 when killed by a signal, else `exit_code` is what the worker returned.
  WorkerCrashed(std::int64_t pid, int signal, int exit_code, std::int64_t task_index,
                const std::string& detail = {});
  std::int64_t pid() const noexcept { return pid_; }
  int signal() const noexcept { return signal_; }
  int exit_code() const noexcept { return exit_code_; }
  std::int64_t task_index() const noexcept { return task_index_; }

 private:
  std::int64_t pid_;
  int signal_;
  int exit_code_;
  std::int64_t task_index_;
};

// Bytes could not be decoded (truncated, corrupt, hostile) or a value could not be encoded.
class SerializationError : public Error {
 public:
  explicit SerializationError(const std::string& what)
      : Error("parx::SerializationError: " + what) {}
};

// Work was submitted to an executor that is shut down (or shutting down).
class ExecutorShutdown : public Error {
 public:
  explicit ExecutorShutdown(const std::string& what) : Error(what) {}
};

// A Future was used in a way its state does not allow (get() on an empty future, a Promise
// satisfied twice). Programming errors, reported loudly rather than as undefined behaviour.
class InvalidState : public Error {
 public:
  explicit InvalidState(const std::string& what) : Error("parx::InvalidState: " + what) {}
};

// Bad options given to a parx API (a worker count of 0 where it is not allowed, a negative grain).
class InvalidArgument : public Error {
 public:
  explicit InvalidArgument(const std::string& what) : Error("parx::InvalidArgument: " + what) {}
};

// A checkpoint journal that cannot be used: corrupt (not just a torn last record), written by a
// different map (another function, other inputs), or not writable. The message names the file
// and what to do; results are never silently mixed.
class CheckpointError : public Error {
 public:
  explicit CheckpointError(const std::string& what) : Error("parx::CheckpointError: " + what) {}
};

// Demangled name of the dynamic type of the exception held by `e` ("unknown" if not a
// std::exception). Used to build TaskError on the worker side.
std::string exception_type_name(const std::exception_ptr& e);

// what() of the exception held by `e`, or a placeholder for non-std exceptions.
std::string exception_message(const std::exception_ptr& e);

}  // namespace parx
