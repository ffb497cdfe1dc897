// parx/remote.hpp — PARX_REMOTE: naming functions so they can run in another process or rank.
//
// A function crosses a process boundary as a stable id, derived from the name it is registered
// under (64-bit FNV-1a of the name: never from registration order, so every process and rank of
// the same binary agrees). The receiving side looks the id up and runs the function through a
// type-checked invoker that decodes the arguments with the codec — it never calls through an
// unchecked pointer, and an id it does not know is refused with an error.
//
//   double simulate(int seed, const Params& p);
//   PARX_REMOTE(simulate);                                   // registered as "simulate"
//
//   double f(int);  double f(double);                        // overloads: cast and name each
//   PARX_REMOTE_AS(static_cast<double (*)(int)>(f), "f(int)");
//   template <class T> T twice(T x) { return 2 * x; }
//   PARX_REMOTE_AS(twice<long>, "twice<long>");              // function templates: one per type
//
// Contract
//   * Register at namespace scope in a .cpp file (a static initialiser does it). Registering the
//     same function under the same name twice (a header included twice) is harmless; two
//     different functions under one name (or colliding ids) is an error reported by
//     check_remote_registry(), which parx::init and every pool call at start-up.
//   * Parameters are passed by value across the boundary: value and const-reference parameters
//     are supported; non-const references and pointers are compile-time errors (nothing can be
//     written back into the caller's memory from another process).
//   * Lambdas and std::function cannot cross a process boundary: pools that need a registered
//     function reject them at compile time. An unregistered function pointer is rejected when
//     submitted, with an error naming it.
//
// Thread-safety: registration happens during static initialisation; lookups are thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "parx/codec.hpp"
#include "parx/detail/function_name.hpp"
#include "parx/errors.hpp"

namespace parx {

using FunctionId = std::uint64_t;

// The id of a function registered under `name`: 64-bit FNV-1a of the name.
constexpr FunctionId function_id(std::string_view name) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : name) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

namespace detail {

// Decodes arguments from `args`, calls the function at `fn` and encodes its result into `out`.
// Exceptions thrown by the function propagate; malformed arguments throw SerializationError.
using Invoker = void (*)(const void* fn, Decoder& args, Encoder& out);

// Runs items [i, end) of a batch of a one-parameter function whose parameter and result types are
// memcpy-safe (codec.hpp): arguments packed in `in`, results packed into `out` (nothing for void).
// Stores each item's position in `*at` before running it, so a crash names the exact item. If the
// function throws, the exception propagates with `i` at the item that threw.
using BatchInvoker = void (*)(const void* fn, const std::byte* in, std::byte* out, std::size_t& i,
                              std::size_t end, std::atomic<std::uint32_t>* at);

struct BatchForm {
  BatchInvoker invoke = nullptr;  // nullptr: the function has no batch form
  std::uint32_t arg_size = 0;     // bytes per packed argument
  std::uint32_t result_size = 0;  // bytes per packed result (0 for void)
};

struct RemoteEntry {
  FunctionId id;
  std::string name;
  const void* fn;
  Invoker invoke;
  BatchForm batch;
};

template <class T>
inline constexpr bool is_passable_param_v =
    !(std::is_lvalue_reference_v<T> &&
      !std::is_const_v<std::remove_reference_t<T>>)&&!std::is_pointer_v<std::decay_t<T>>;

template <class R, class... P>
void invoke_remote_fn(const void* fn, Decoder& args, Encoder& out) {
  // Braced initialisation evaluates left to right: arguments decode in order.
  std::tuple<std::decay_t<P>...> values{args.template make<std::decay_t<P>>()...};
  if (args.remaining() != 0)
    throw SerializationError(std::to_string(args.remaining()) +
                             " trailing bytes after the arguments");
  auto* f = reinterpret_cast<R (*)(P...)>(const_cast<void*>(fn));
  if constexpr (std::is_void_v<R>) {
    std::apply(f, std::move(values));
  } else {
    out.put(std::apply(f, std::move(values)));
  }
}

template <class R, class... P>
Invoker make_invoker(R (*)(P...)) {
  static_assert((is_passable_param_v<P> && ...),
                "PARX_REMOTE: parameters must be values or const references (a non-const reference "
                "or a pointer cannot refer to memory in another process)");
  static_assert(!std::is_pointer_v<R> && !std::is_reference_v<R>,
                "PARX_REMOTE: a remote function must return a value, not a pointer or reference");
  return &invoke_remote_fn<R, P...>;
}

// Functions of one argument whose parameter and result travel as raw bytes in the codec too: a
// chunk of their calls can cross as two packed arrays instead of one encoded message per item.
template <class... P>
using only_param_t = std::decay_t<std::tuple_element_t<0, std::tuple<P...>>>;

template <class R, class... P>
constexpr bool batchable() {
  if constexpr (sizeof...(P) != 1) {
    return false;
  } else {
    return memcpy_safe<only_param_t<P...>>() && (std::is_void_v<R> || memcpy_safe<R>());
  }
}

template <class R, class P>
void invoke_batch(const void* fn, const std::byte* in, std::byte* out, std::size_t& i,
                  std::size_t end, std::atomic<std::uint32_t>* at) {
  using A = std::decay_t<P>;
  auto* f = reinterpret_cast<R (*)(P)>(const_cast<void*>(fn));
  for (; i < end; ++i) {
    at->store(static_cast<std::uint32_t>(i), std::memory_order_relaxed);
    A a;
    std::memcpy(&a, in + i * sizeof(A), sizeof(A));
    if constexpr (std::is_void_v<R>) {
      f(a);
    } else {
      const R r = f(a);
      std::memcpy(out + i * sizeof(R), &r, sizeof(R));
    }
  }
}

template <class R, class... P>
constexpr BatchForm make_batch_form(R (*)(P...)) {
  if constexpr (batchable<R, P...>()) {
    std::uint32_t rs = 0;
    if constexpr (!std::is_void_v<R>) rs = sizeof(R);
    return {&invoke_batch<R, P...>, static_cast<std::uint32_t>(sizeof(only_param_t<P...>)), rs};
  } else {
    return {};
  }
}

// Registers at static-initialisation time; used by PARX_REMOTE.
class Registration {
 public:
  template <class R, class... P>
  Registration(const char* name, R (*fn)(P...)) noexcept
      : Registration(name, reinterpret_cast<const void*>(fn), make_invoker(fn),
                     make_batch_form(fn)) {}

 private:
  Registration(const char* name, const void* fn, Invoker inv, BatchForm batch) noexcept;
};

// Lookups (thread-safe). nullptr when nothing is registered under the id / for the pointer.
const RemoteEntry* find_remote(FunctionId id) noexcept;
const RemoteEntry* find_remote_by_pointer(const void* fn) noexcept;

// A readable name for a function pointer that may not be registered (symbol lookup, demangled).
std::string describe_function(const void* fn);

}  // namespace detail

// Throws parx::Error if two different functions were registered under one name or id.
void check_remote_registry();

// Names of every registered function, sorted.
std::vector<std::string> registered_functions();

// The id under which `fn` is registered; throws parx::Error naming the function if it is not.
template <class R, class... P>
FunctionId remote_id(R (*fn)(P...)) {
  const auto* e = detail::find_remote_by_pointer(reinterpret_cast<const void*>(fn));
  if (!e)
    throw Error("parx: function " + detail::describe_function(reinterpret_cast<const void*>(fn)) +
                " is not registered for remote execution; add PARX_REMOTE(name) at namespace "
                "scope in a .cpp file");
  return e->id;
}

// Encodes a call of `fn` with `args`, converted to fn's parameter types (a wrong argument is a
// compile-time error here, not a decoding failure in a worker).
template <class R, class... P, class... A>
void encode_call(Encoder& e, R (*)(P...), A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "wrong number of arguments for the remote function");
  static_assert(((std::is_same_v<std::decay_t<A>, std::decay_t<P>> ||
                  std::is_constructible_v<std::decay_t<P>, A&&>)&&...),
                "an argument cannot be converted to the remote function's parameter type");
  auto put_as = [&e]<class Param, class Arg>(Arg&& a) {
    if constexpr (std::is_same_v<std::decay_t<Arg>, std::decay_t<Param>>) {
      e.put(a);  // already the parameter's type: no conversion (and no copy of handles)
    } else {
      e.put(std::decay_t<Param>(std::forward<Arg>(a)));
    }
  };
  (put_as.template operator()<P>(std::forward<A>(args)), ...);
}

// Runs the function registered under `id` with encoded `args`, returning its encoded result.
// Throws parx::Error for an unknown id (never jumps anywhere), SerializationError for malformed
// arguments, and whatever the function throws.
Bytes invoke_remote(FunctionId id, std::span<const std::byte> args);

}  // namespace parx

#define PARX_DETAIL_CONCAT2(a, b) a##b
#define PARX_DETAIL_CONCAT(a, b) PARX_DETAIL_CONCAT2(a, b)

// Registers `fn` under its own name. See the header comment.
#define PARX_REMOTE(fn) PARX_REMOTE_AS(fn, #fn)
// Registers `fn` (a function or a cast selecting an overload / template instance) under `name`.
#define PARX_REMOTE_AS(fn, name)                                                                \
  static const ::parx::detail::Registration PARX_DETAIL_CONCAT(parx_remote_reg_, __COUNTER__) { \
    name, fn                                                                                    \
  }
