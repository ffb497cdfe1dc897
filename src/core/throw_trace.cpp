// Stack traces of throw sites, for TaskError: in a worker process, every throw records the
// throwing thread's stack (glibc backtrace) before unwinding starts, and the worker symbolises it
// when the exception reaches the task boundary.
//
// The hook interposes __cxa_throw: a program linked with parx resolves every throw to it (its own
// and those inside libstdc++), and it forwards to the next definition (libstdc++'s, or a
// sanitizer's interceptor). Capture is off until a worker turns it on, so ordinary throws in the
// parent cost one relaxed load.
#include <dlfcn.h>
#include <execinfo.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <typeinfo>

// <cxxabi.h> would declare __cxa_throw with attributes this definition cannot repeat portably.
namespace __cxxabiv1 {
extern "C" char* __cxa_demangle(const char* mangled, char* out, std::size_t* len, int* status);
}

namespace parx::detail {
namespace {

std::atomic<bool> g_capture{false};
constexpr int kMaxFrames = 48;
thread_local void* t_frames[kMaxFrames];
thread_local int t_count = 0;

using ThrowFn = void (*)(void*, std::type_info*, void (*)(void*));

ThrowFn next_throw() noexcept {
  static ThrowFn fn = reinterpret_cast<ThrowFn>(dlsym(RTLD_NEXT, "__cxa_throw"));
  return fn;
}

std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(
      __cxxabiv1::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

}  // namespace

void set_throw_capture(bool on) noexcept {
  g_capture.store(on, std::memory_order_relaxed);
}

void clear_throw_trace() noexcept {
  t_count = 0;
}

// The stack of the most recent throw on this thread, one frame per line ("#n function+0xoff
// (module)"), from the throw site outwards; frames after the task boundary are dropped.
std::string last_throw_trace() {
  std::string out;
  for (int i = 1; i < t_count; ++i) {  // frame 0 is the hook itself
    Dl_info info{};
    std::string fn, mod;
    std::uintptr_t off = 0;
    if (dladdr(t_frames[i], &info)) {
      if (info.dli_sname) {
        fn = demangled(info.dli_sname);
        off = reinterpret_cast<std::uintptr_t>(t_frames[i]) -
              reinterpret_cast<std::uintptr_t>(info.dli_saddr);
      }
      if (info.dli_fname) {
        const char* slash = std::strrchr(info.dli_fname, '/');
        mod = slash ? slash + 1 : info.dli_fname;
      }
    }
    if (fn.find("parx::detail::invoke_remote_fn") != std::string::npos) break;  // task boundary
    char line[64];
    if (fn.empty()) {
      std::snprintf(line, sizeof line, "#%d %p", i - 1, t_frames[i]);
      out += line;
    } else {
      std::snprintf(line, sizeof line, "#%d ", i - 1);
      out += line;
      out += fn;
      std::snprintf(line, sizeof line, "+0x%zx", static_cast<std::size_t>(off));
      out += line;
    }
    if (!mod.empty()) out += " (" + mod + ")";
    out += '\n';
  }
  return out;
}

}  // namespace parx::detail

// Declared as the compiler's builtin declares it (the type_info argument as void*).
extern "C" [[noreturn]] void __cxa_throw(void* obj, void* type, void (*dtor)(void*)) {
  if (parx::detail::g_capture.load(std::memory_order_relaxed))
    parx::detail::t_count = backtrace(parx::detail::t_frames, parx::detail::kMaxFrames);
  parx::detail::next_throw()(obj, static_cast<std::type_info*>(type), dtor);
  std::abort();  // not reached: the real __cxa_throw does not return
}
