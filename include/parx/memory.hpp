// parx/memory.hpp — Memory: a persistent cache of function results on disk, shared by threads,
// processes and runs of a program (joblib.Memory).
//
// A call through the cache looks its result up by (function, version, arguments). A hit decodes
// the stored result instead of running the function; a miss runs it and stores the result, so the
// next run of the program, or another process using the same directory, finds it.
//
// Example
//   Spectrum analyse(const std::string& file, int bins);      // slow, deterministic
//   PARX_REMOTE(analyse);                                      // a stable name: the cache key
//
//   parx::Memory cache(".cache/analyse", {.version = 3, .max_bytes = 1ull << 30});
//   Spectrum s = cache.call(analyse, "run-7.dat", 512);         // runs analyse, stores the result
//   Spectrum t = cache.call(analyse, "run-7.dat", 512);         // read back: analyse does not run
//   auto cached = cache.wrap(analyse);                          // the same, as a callable
//   Spectrum u = cached("run-8.dat", 512);
//   int n = cache.call("count_lines", [](const std::string& f) { return count(f); }, "a.txt");
//
// Contract
//   * The key of a call is (function id, Options::version, XXH3-128 of the encoded arguments,
//     salted with the result and argument types). The function id is the PARX_REMOTE id (the
//     FNV-1a hash of its registered name) for a function pointer, or function_id(name) for a
//     callable given with a name. Nothing in the key depends on addresses, so it is the same in
//     every process and every run of the same code. Changing what a function computes without
//     changing its name or types is invisible to the cache: bump Options::version.
//   * Arguments are keyed as the function receives them: a function pointer's arguments are
//     converted to its parameter types first (call(f, 7) and call(f, short{7}) share an entry);
//     a named callable's arguments are keyed as given, decayed, with string literals and
//     std::string_view as std::string. Arguments and results must be encodable by the codec
//     (codec.hpp). Equal values must encode to equal bytes for a hit: unordered containers
//     encode in iteration order, so equal ones built in different orders may miss (never hit
//     wrongly).
//   * Results are stored with the codec and checked on every read: a truncated or foreign file,
//     a bad checksum, a header naming another function, version or key, or a payload that does
//     not decode as the result type counts as `corrupt`; the file is removed and the function
//     runs again. A read never returns a wrong value for an entry written by parx, and never
//     crashes or hangs on a damaged one. (The checks guard against accidents, not against a user
//     who can write to the directory: they could forge a valid entry. The directory is 0700.)
//   * void functions are cached too: the entry records that the call ran (run-once semantics).
//   * A function that throws stores nothing; the exception propagates to the caller.
//   * Entries are written to a temporary file and renamed into place, so no reader, in any
//     process, ever sees half an entry. Two callers that miss the same key at once both run the
//     function and both store; the last rename wins and both get their value.
//   * A failure to store (disk full, permissions) does not fail the call: the value is returned,
//     a line goes to stderr and Stats::store_failures counts it. An entry that exists but cannot
//     be opened (EACCES) throws parx::Error naming it: a configuration problem, not damage.
//   * Limits (Options::max_bytes, max_entries) are kept after each store by removing the least
//     recently used entries (a hit refreshes an entry's mtime). See MemoryOptions for the cost.
//   * The directory holds `<function name>-<16 hex id>/<32 hex key>.bin` files; see
//     docs/memory.md for the entry format.
//
// Thread-safety: every member function may be called from any number of threads at once, and any
// number of processes may use Memory objects on the same directory at once (ThreadPool and
// ProcessPool tasks included: each process constructs its own). A Memory is a handle: copies,
// and the callables wrap() returns, share one directory, one set of options and one set of
// counters.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "parx/codec.hpp"
#include "parx/errors.hpp"
#include "parx/remote.hpp"

namespace parx {

// How a Memory behaves. Every field has a default that needs no thought.
struct MemoryOptions {
  // Part of every key. Bump it when a cached function's code changes, to stop old results being
  // returned; entries of other versions are never read (they age out under the limits, or go
  // with clear()).
  std::uint64_t version = 0;
  // Bytes on disk (headers included) the whole directory may hold; 0: unlimited. After a store,
  // least-recently-used entries are removed until the cache is under it. A result larger than the
  // limit on its own is therefore not kept. The directory is scanned when this process's stores
  // take it over a limit and every 64 stores (to see other processes' stores), not per store.
  std::uint64_t max_bytes = 0;
  // Entries the whole directory may hold; 0: unlimited. Kept like max_bytes.
  std::size_t max_entries = 0;
  // One line on stderr per miss (the function ran: how long it took, what was stored) and per
  // corrupt entry. Corrupt entries and store failures are reported even when false.
  bool verbose = false;
  // fsync each entry (and its directory) before it counts as stored. Off by default: after a
  // power loss a recent entry may read as corrupt, which only means it is computed again.
  bool fsync = false;
};

// What a Memory has done, and what its directory holds.
struct MemoryStats {
  // Counters of this Memory (and its copies), since construction.
  std::uint64_t hits = 0;            // calls answered from the cache
  std::uint64_t misses = 0;          // calls that ran the function (corrupt ones included)
  std::uint64_t corrupt = 0;         // entries found damaged, removed and recomputed
  std::uint64_t evictions = 0;       // entries removed to keep the limits or by reduce_size
  std::uint64_t store_failures = 0;  // results computed but not stored (see stderr)
  // The directory now, every function and version, counted by a scan.
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;  // file sizes, headers included
};

namespace detail {

// The header of an entry file; the encoded result follows it. Host byte order.
struct MemoryEntryHeader {
  char magic[8];               // "PARXMEM1"
  std::uint32_t format;        // kMemoryFormat
  std::uint32_t header_size;   // sizeof(MemoryEntryHeader)
  std::uint64_t function_id;   // FunctionId of the function
  std::uint64_t user_version;  // MemoryOptions::version
  std::uint64_t key_lo;        // the 128-bit key (also the file's name)
  std::uint64_t key_hi;
  std::uint64_t payload_size;  // bytes after the header
  std::uint64_t checksum;      // XXH3-64 of the payload
};
static_assert(sizeof(MemoryEntryHeader) == 64);
inline constexpr std::uint32_t kMemoryFormat = 1;

// A cached function as the directory knows it: its id and the name its directory is named after.
struct MemoryFn {
  FunctionId id = 0;
  std::string name;
};

struct MemoryKey {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
};

// The registered function at `fn`; InvalidArgument naming it if it is not registered.
MemoryFn memory_registered_fn(const void* fn);
// A callable given with a name; InvalidArgument if the name is empty.
MemoryFn memory_named_fn(std::string_view name);

// The shared state of a Memory and its copies: the directory, the options, the counters. Its
// members do the file work; the templates below only encode, decode and call.
class MemoryCore {
 public:
  MemoryCore(const std::filesystem::path& dir, MemoryOptions opts);

  const std::filesystem::path& dir() const noexcept { return dir_; }
  const MemoryOptions& options() const noexcept { return opts_; }

  MemoryKey key(const MemoryFn& f, std::string_view signature,
                std::span<const std::byte> args) const;
  std::filesystem::path function_dir(const MemoryFn& f) const;
  std::filesystem::path entry_path(const MemoryFn& f, const MemoryKey& k) const;

  // The verified payload of an entry; nullopt if there is none or it is damaged. Unless `peek`,
  // a damaged entry is removed and counted, and a sound one's mtime is refreshed.
  std::optional<Bytes> load(const MemoryFn& f, const MemoryKey& k, bool peek);
  // Records an entry whose payload would not decode: removes it and counts it as corrupt.
  void reject(const MemoryFn& f, const MemoryKey& k, std::string_view why);
  void count_hit() noexcept { hits_.fetch_add(1, std::memory_order_relaxed); }
  void count_miss() noexcept { misses_.fetch_add(1, std::memory_order_relaxed); }
  // Writes an entry atomically, then keeps the limits. Never throws for I/O failures: they are
  // reported and counted.
  void store(const MemoryFn& f, const MemoryKey& k, std::span<const std::byte> payload,
             double seconds) noexcept;
  void store_failed(const MemoryFn& f, std::string_view why) noexcept;

  void clear(const MemoryFn* f);
  void reduce_size(std::uint64_t max_bytes, std::uint64_t max_entries);
  MemoryStats stats() const;

 private:
  void evict_locked(std::uint64_t max_bytes, std::uint64_t max_entries);
  void keep_limits(std::uint64_t stored_bytes);

  std::filesystem::path dir_;
  MemoryOptions opts_;
  std::uint64_t nonce_;  // in temporary file names, with the pid and a counter
  std::atomic<std::uint64_t> tmp_counter_{0};
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, corrupt_{0}, evictions_{0}, store_failures_{0};
  // Eviction: one scan at a time per Memory, and an upper bound of the directory's size since
  // the last scan (this process's stores added), so most stores need no scan.
  std::mutex evict_mu_;
  bool estimate_valid_ = false;
  std::uint64_t est_bytes_ = 0;
  std::uint64_t est_entries_ = 0;
  std::uint64_t stores_since_scan_ = 0;
};

template <class T>
inline constexpr bool memory_fn_ptr_v =
    std::is_pointer_v<T>&& std::is_function_v<std::remove_pointer_t<T>>;

// How a named callable's argument is keyed: decayed, with strings of every kind as std::string.
template <class A, class D = std::decay_t<A>>
using memory_arg_t =
    std::conditional_t<std::is_same_v<D, const char*> || std::is_same_v<D, char*> ||
                           std::is_same_v<D, std::string_view>,
                       std::string, D>;

template <class A>
void memory_put_arg(Encoder& e, const A& a) {
  using K = memory_arg_t<A>;
  static_assert(!std::is_pointer_v<K>,
                "parx::Memory: a pointer argument cannot be part of a cache key (its address "
                "changes from run to run): pass the value it points to");
  if constexpr (std::is_same_v<std::decay_t<A>, K>) {
    e.put(a);
  } else {
    e.put(K(a));
  }
}

template <class R>
R memory_decode(std::span<const std::byte> payload) {
  Decoder d(payload);
  R v = d.template make<R>();
  if (d.remaining() != 0)
    throw SerializationError(std::to_string(d.remaining()) +
                             " trailing bytes after the result (wrong type, or corrupt)");
  return v;
}

template <class R>
constexpr void memory_check_result() {
  static_assert(!std::is_reference_v<R> && !std::is_pointer_v<R>,
                "parx::Memory: a cached function must return a value (or void), not a pointer or "
                "a reference: only values can be stored");
}

// Whether a sound entry that decodes as R is stored under `k`.
template <class R>
bool memory_peek(MemoryCore& core, const MemoryFn& f, const MemoryKey& k) {
  std::optional<Bytes> payload = core.load(f, k, /*peek=*/true);
  if (!payload) return false;
  if constexpr (std::is_void_v<R>) {
    return payload->empty();
  } else {
    try {
      (void)memory_decode<R>(*payload);
      return true;
    } catch (const SerializationError&) {
      return false;
    }
  }
}

// The cache's one algorithm: look up, verify, else compute and store.
template <class R, class Compute>
R memory_run(MemoryCore& core, const MemoryFn& f, std::string_view signature,
             std::span<const std::byte> args, Compute&& compute) {
  const MemoryKey k = core.key(f, signature, args);
  if (std::optional<Bytes> payload = core.load(f, k, /*peek=*/false)) {
    if constexpr (std::is_void_v<R>) {
      if (payload->empty()) {
        core.count_hit();
        return;
      }
      core.reject(f, k, "a void result has no payload, this entry has one");
    } else {
      std::optional<R> v;
      try {
        v.emplace(memory_decode<R>(*payload));
      } catch (const SerializationError& e) {
        core.reject(f, k, e.what());
      }
      if (v) {
        core.count_hit();
        return std::move(*v);
      }
    }
  }
  core.count_miss();
  const auto t0 = std::chrono::steady_clock::now();
  auto seconds = [&t0] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  if constexpr (std::is_void_v<R>) {
    compute();
    core.store(f, k, {}, seconds());
  } else {
    R r = compute();
    const double took = seconds();
    Encoder e;
    try {
      e.put(r);
    } catch (const SerializationError& err) {  // a valueless variant: return it, uncached
      core.store_failed(f, err.what());
      return r;
    }
    core.store(f, k, e.bytes(), took);
    return r;
  }
}

}  // namespace detail

template <class F>
class CachedFunction;

// A persistent result cache in a directory. See the header comment.
class Memory {
 public:
  using Options = MemoryOptions;
  using Stats = MemoryStats;

  // Uses `dir` (made absolute now), creating it and any missing parents with mode 0700.
  // Throws InvalidArgument if `dir` is empty or exists and is not a directory, parx::Error if it
  // cannot be created or is not readable and writable.
  explicit Memory(const std::filesystem::path& dir, Options opts = {});

  // fn(args...) through the cache. `fn` must be registered with PARX_REMOTE, whose name is the
  // key's (stable from run to run); an unregistered function throws InvalidArgument naming it
  // (register it, or use the named form). Arguments are converted to fn's parameter types for
  // the key. Whatever fn throws propagates, and nothing is stored.
  template <class R, class... P, class... A>
  R call(R (*fn)(P...), A&&... args) const;

  // f(args...) through the cache, for any callable (lambdas, functors, unregistered functions):
  // `name` identifies it in the key, so give each distinct computation its own name and keep it
  // from run to run. Names share one space with PARX_REMOTE names. Returns f's result decayed.
  //   int n = cache.call("count_lines", count_lines_lambda, path);
  template <class F, class... A>
  auto call(std::string_view name, F&& f, A&&... args) const;

  // A lambda or functor without a name is a compile-time error that says what to do.
  template <class F, class... A>
  requires(!detail::memory_fn_ptr_v<std::decay_t<F>> &&
           !std::is_function_v<std::remove_reference_t<F>> &&
           !std::is_convertible_v<F, std::string_view>) int call(F&&, A&&...) const {
    static_assert(detail::memory_fn_ptr_v<F>,
                  "parx::Memory::call: a lambda or functor has no stable identity for the cache "
                  "key: give it a name, cache.call(\"name\", f, args...), or pass a function "
                  "registered with PARX_REMOTE");
    return 0;
  }

  // fn as a callable whose calls go through this cache (same keys as call). The callable holds a
  // copy of this Memory, so it may outlive it.
  //   auto cached = cache.wrap(simulate);  double y = cached(7);
  template <class R, class... P>
  CachedFunction<R (*)(P...)> wrap(R (*fn)(P...)) const;
  template <class F>
  CachedFunction<std::decay_t<F>> wrap(std::string_view name, F&& f) const;

  // Whether a sound entry for fn(args...) is stored, without running anything or changing the
  // counters or the entry's age (joblib's check_call_in_cache).
  template <class R, class... P, class... A>
  bool contains(R (*fn)(P...), A&&... args) const;
  template <class F, class... A>
  bool contains(std::string_view name, const F& f, A&&... args) const;

  // Removes every entry of the directory (every function, every version). Files parx did not
  // write are left alone, and so are other processes' temporary files still being written.
  void clear() const;
  // Removes one function's entries (every version).
  template <class R, class... P>
  void clear(R (*fn)(P...)) const;
  void clear(std::string_view name) const;

  // Counters and the directory's current size (a scan of the directory).
  Stats stats() const;

  // Removes least-recently-used entries until the directory holds at most `max_bytes` bytes and
  // `max_entries` entries (0: no limit on that measure), as joblib's reduce_size. Also removes
  // temporary files left by processes that died writing (over an hour old).
  void reduce_size(std::uint64_t max_bytes, std::size_t max_entries = 0) const;

  const std::filesystem::path& dir() const noexcept { return core_->dir(); }
  const Options& options() const noexcept { return core_->options(); }

 private:
  std::shared_ptr<detail::MemoryCore> core_;
};

// A function bound to a Memory: calling it goes through the cache. Made by Memory::wrap; copies
// share the cache. Thread-safe as Memory is.
template <class F>
class CachedFunction {
 public:
  // Registered function pointer, keyed by its PARX_REMOTE name.
  CachedFunction(Memory mem, F f) requires detail::memory_fn_ptr_v<F> : mem_(std::move(mem)),
                                                                        f_(f) {}
  // Any callable, keyed by `name`.
  CachedFunction(Memory mem, std::string name, F f)
      : mem_(std::move(mem)), name_(std::move(name)), f_(std::move(f)) {}

  template <class... A>
  auto operator()(A&&... args) const {
    if constexpr (detail::memory_fn_ptr_v<F>) {
      if (!name_) return mem_.call(f_, std::forward<A>(args)...);
    }
    return mem_.call(*name_, f_, std::forward<A>(args)...);
  }
  template <class... A>
  bool contains(A&&... args) const {
    if constexpr (detail::memory_fn_ptr_v<F>) {
      if (!name_) return mem_.contains(f_, std::forward<A>(args)...);
    }
    return mem_.contains(*name_, f_, std::forward<A>(args)...);
  }
  // Removes this function's entries.
  void clear() const {
    if constexpr (detail::memory_fn_ptr_v<F>) {
      if (!name_) return mem_.clear(f_);
    }
    mem_.clear(*name_);
  }
  const Memory& memory() const noexcept { return mem_; }

 private:
  Memory mem_;
  std::optional<std::string> name_;
  F f_;
};

// ---- implementation ---------------------------------------------------------------------------

template <class R, class... P, class... A>
R Memory::call(R (*fn)(P...), A&&... args) const {
  detail::memory_check_result<R>();
  static_assert(sizeof...(P) == sizeof...(A),
                "parx::Memory::call: wrong number of arguments for the function");
  const detail::MemoryFn f = detail::memory_registered_fn(reinterpret_cast<const void*>(fn));
  Encoder e;
  encode_call(e, fn, args...);  // as lvalues: nothing is moved from before fn gets them
  return detail::memory_run<R>(*core_, f, typeid(R(std::decay_t<P>...)).name(), e.bytes(),
                               [&]() -> R { return fn(std::forward<A>(args)...); });
}

template <class F, class... A>
auto Memory::call(std::string_view name, F&& f, A&&... args) const {
  static_assert(std::is_invocable_v<F&, A&&...>,
                "parx::Memory::call: the callable cannot be called with these arguments");
  using R = std::remove_cvref_t<std::invoke_result_t<F&, A&&...>>;
  detail::memory_check_result<R>();
  const detail::MemoryFn id = detail::memory_named_fn(name);
  Encoder e;
  (detail::memory_put_arg(e, args), ...);
  return detail::memory_run<R>(*core_, id, typeid(R(detail::memory_arg_t<A>...)).name(), e.bytes(),
                               [&]() -> R { return std::invoke(f, std::forward<A>(args)...); });
}

template <class R, class... P>
CachedFunction<R (*)(P...)> Memory::wrap(R (*fn)(P...)) const {
  detail::memory_check_result<R>();
  (void)detail::memory_registered_fn(reinterpret_cast<const void*>(fn));  // fail here, not later
  return CachedFunction<R (*)(P...)>(*this, fn);
}

template <class F>
CachedFunction<std::decay_t<F>> Memory::wrap(std::string_view name, F&& f) const {
  (void)detail::memory_named_fn(name);
  return CachedFunction<std::decay_t<F>>(*this, std::string(name), std::forward<F>(f));
}

template <class R, class... P, class... A>
bool Memory::contains(R (*fn)(P...), A&&... args) const {
  detail::memory_check_result<R>();
  static_assert(sizeof...(P) == sizeof...(A),
                "parx::Memory::contains: wrong number of arguments for the function");
  const detail::MemoryFn f = detail::memory_registered_fn(reinterpret_cast<const void*>(fn));
  Encoder e;
  encode_call(e, fn, args...);
  return detail::memory_peek<R>(*core_, f,
                                core_->key(f, typeid(R(std::decay_t<P>...)).name(), e.bytes()));
}

template <class F, class... A>
bool Memory::contains(std::string_view name, const F&, A&&... args) const {
  using R = std::remove_cvref_t<std::invoke_result_t<const F&, A&&...>>;
  detail::memory_check_result<R>();
  const detail::MemoryFn id = detail::memory_named_fn(name);
  Encoder e;
  (detail::memory_put_arg(e, args), ...);
  return detail::memory_peek<R>(
      *core_, id, core_->key(id, typeid(R(detail::memory_arg_t<A>...)).name(), e.bytes()));
}

template <class R, class... P>
void Memory::clear(R (*fn)(P...)) const {
  const detail::MemoryFn f = detail::memory_registered_fn(reinterpret_cast<const void*>(fn));
  core_->clear(&f);
}

}  // namespace parx
