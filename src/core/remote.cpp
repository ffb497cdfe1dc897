// The PARX_REMOTE registry: a list filled by static initialisers, looked up by id or pointer.
#include "parx/remote.hpp"

#include <cxxabi.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace parx {
namespace detail {
namespace {

struct Registry {
  std::mutex mu;
  // Entries live in a deque-like vector of unique_ptrs so pointers handed out stay valid.
  std::vector<std::unique_ptr<RemoteEntry>> entries;
  std::unordered_map<FunctionId, const RemoteEntry*> by_id;
  std::unordered_map<const void*, const RemoteEntry*> by_fn;
  std::vector<std::string> conflicts;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: lookups may run during teardown
  return *r;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Registration::Registration(const char* name, const void* fn, Invoker inv,
                           BatchForm batch) noexcept {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  const FunctionId id = function_id(name);
  if (auto it = r.by_id.find(id); it != r.by_id.end()) {
    const RemoteEntry* prev = it->second;
    if (prev->fn == fn && prev->name == name) return;  // the same registration again: harmless
    r.conflicts.push_back("'" + prev->name + "' and '" + std::string(name) + "' (" +
                          describe_function(prev->fn) + " vs " + describe_function(fn) +
                          ") share the function id " + hex(id));
    return;
  }
  auto e = std::make_unique<RemoteEntry>(RemoteEntry{id, name, fn, inv, batch});
  r.by_id.emplace(id, e.get());
  r.by_fn.emplace(fn, e.get());  // a function registered under two names: the first one wins
  r.entries.push_back(std::move(e));
}

const RemoteEntry* find_remote(FunctionId id) noexcept {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  auto it = r.by_id.find(id);
  return it == r.by_id.end() ? nullptr : it->second;
}

const RemoteEntry* find_remote_by_pointer(const void* fn) noexcept {
  Registry& r = registry();
  std::lock_guard lk(r.mu);
  auto it = r.by_fn.find(fn);
  return it == r.by_fn.end() ? nullptr : it->second;
}

std::string describe_function(const void* fn) {
  Dl_info info{};
  if (dladdr(fn, &info) && info.dli_sname) {
    int status = 0;
    std::unique_ptr<char, void (*)(void*)> d(
        abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status), std::free);
    return "'" + std::string(status == 0 && d ? d.get() : info.dli_sname) + "'";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "at %p (no symbol name: static or not exported)", fn);
  return buf;
}

const char* registered_name(const void* fn) noexcept {
  const RemoteEntry* e = find_remote_by_pointer(fn);
  return e ? e->name.c_str() : nullptr;
}

}  // namespace detail

void check_remote_registry() {
  auto& r = detail::registry();
  std::lock_guard lk(r.mu);
  if (r.conflicts.empty()) return;
  std::string msg = "parx: conflicting PARX_REMOTE registrations:";
  for (const auto& c : r.conflicts)
    msg += "\n  " + c;
  msg +=
      "\nregister overloads and templates under distinct names with PARX_REMOTE_AS(fn, \"name\")";
  throw Error(msg);
}

std::vector<std::string> registered_functions() {
  auto& r = detail::registry();
  std::lock_guard lk(r.mu);
  std::vector<std::string> names;
  for (const auto& e : r.entries)
    names.push_back(e->name);
  std::sort(names.begin(), names.end());
  return names;
}

Bytes invoke_remote(FunctionId id, std::span<const std::byte> args) {
  const detail::RemoteEntry* e = detail::find_remote(id);
  if (!e)
    throw Error("parx: no function is registered under id " + detail::hex(id) +
                " in this binary (was the worker built from a different version of the program?)");
  Decoder d(args);
  Encoder out;
  e->invoke(e->fn, d, out);
  return out.take();
}

}  // namespace parx
