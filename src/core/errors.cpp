// Out-of-line parts of parx/errors.hpp: message formatting and exception introspection.
#include "parx/errors.hpp"

#include "parx/detail/function_name.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <typeinfo>

namespace parx {
namespace {

std::string summarise(const TaskErrorInfo& i) {
  std::string s =
      "parx::TaskError: " + (i.type_name.empty() ? std::string("exception") : i.type_name);
  if (!i.message.empty()) s += ": " + i.message;
  std::string where;
  if (!i.function.empty()) where += " in " + i.function;
  if (i.task_index >= 0) where += " (task " + std::to_string(i.task_index) + ")";
  if (!i.host.empty()) where += " on " + i.host;
  if (i.rank >= 0) where += " rank " + std::to_string(i.rank);
  if (i.pid >= 0) where += " pid " + std::to_string(i.pid);
  return s + where;
}

}  // namespace

std::string detail::demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

TaskError::TaskError(TaskErrorInfo info) : Error(summarise(info)), info_(std::move(info)) {}

WorkerCrashed::WorkerCrashed(std::int64_t pid, int signal, int exit_code, std::int64_t task_index,
                             const std::string& detail)
    : Error("parx::WorkerCrashed: worker pid " + std::to_string(pid) +
            (signal > 0 ? " killed by signal " + std::to_string(signal)
                        : " exited with code " + std::to_string(exit_code)) +
            (task_index >= 0 ? " while running task " + std::to_string(task_index) : "") +
            (detail.empty() ? "" : " (" + detail + ")")),
      pid_(pid),
      signal_(signal),
      exit_code_(exit_code),
      task_index_(task_index) {}

std::string exception_type_name(const std::exception_ptr& e) {
  if (!e) return "none";
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return detail::demangle(typeid(ex).name());
  } catch (...) {
    const std::type_info* t = abi::__cxa_current_exception_type();
    return t ? detail::demangle(t->name()) : "unknown";
  }
}

std::string exception_message(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "(exception not derived from std::exception)";
  }
}

}  // namespace parx
