// parx/codec.hpp — parx's binary codec: how task arguments, results and messages cross a
// process or rank boundary.
//
// Supported without user code: arithmetic types, enums, std::string, std::vector (and deque,
// list), std::array, std::pair, std::tuple, std::optional, std::variant, std::monostate, maps and
// sets (ordered and unordered), std::complex, std::chrono::duration, and plain aggregates
// (structs) of these, nested freely. Contiguous data of "memcpy-safe" types — arithmetic, enums,
// and padding-free aggregates/arrays of them — is copied in bulk. User types with a cereal-style
// `template <class Archive> void serialize(Archive& ar) { ar(a, b, c); }` member (or free
// `serialize(Archive&, T&)`) work unchanged; for full control, specialise parx::Codec<T>.
//
// Contract
//   * decode<T>(encode(v)) == v for every supported T.
//   * Decoding is bounds-checked: truncated, corrupt or hostile bytes throw
//     parx::SerializationError naming what was wrong and where — never a crash, an overread,
//     or an allocation larger than the message (lengths are checked against the bytes left
//     before anything is reserved). decode() also rejects trailing bytes.
//   * The wire format is the host's byte order and type sizes: both ends run the same binary on
//     the same architecture, as parx requires (same binary on every rank).
//   * Pointers, references and std::string_view cannot be decoded (compile-time error): nothing
//     in a message may point into another address space.
//
// Thread-safety: Encoder/Decoder objects are not shared; the free functions are reentrant.
//
// Example
//   struct Params { int seed; double temperature; std::vector<double> grid; std::string tag; };
//   parx::Bytes bytes = parx::encode(Params{7, 300.0, {0.1, 0.2}, "run-7"});
//   Params p = parx::decode<Params>(bytes);                 // throws SerializationError if bad
#pragma once

#include <array>
#include <chrono>
#include <complex>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "parx/detail/reflect.hpp"
#include "parx/errors.hpp"

namespace parx {

// Specialise for full control over a type's encoding:
//   template <> struct parx::Codec<MyType> {
//     static void encode(parx::Encoder& e, const MyType& v);
//     static void decode(parx::Decoder& d, MyType& v);
//   };
template <class T>
struct Codec;

// Opt a type into bulk memcpy encoding (it must be trivially copyable and every bit pattern of
// its bytes must be a valid value). Arithmetic types, enums and padding-free aggregates of them
// are detected automatically.
template <class T>
inline constexpr bool enable_memcpy = false;

namespace detail {
// An allocator whose resize() leaves new bytes uninitialised: the encoder overwrites them at
// once, so zero-filling would be a wasted pass over every message.
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  using std::allocator<T>::allocator;
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
}  // namespace detail

// An encoded message: a contiguous byte vector (std::vector with an allocator that does not
// zero-fill on resize). Pass it, or any std::span<const std::byte>, to decode().
using Bytes = std::vector<std::byte, detail::DefaultInitAllocator<std::byte>>;

// ---- Encoder ----------------------------------------------------------------------------------

// Appends encoded values to a growable byte buffer.
class Encoder {
 public:
  // Starts with room for a typical small message, so small records never reallocate.
  Encoder() : Encoder(256) {}
  explicit Encoder(std::size_t reserve) { buf_.resize(std::max<std::size_t>(reserve, 16)); }

  void write(const void* src, std::size_t n) {
    if (buf_.size() - n_ < n) grow(n);
    if (n) std::memcpy(buf_.data() + n_, src, n);
    n_ += n;
  }
  void varint(std::uint64_t v) {
    std::byte tmp[10];
    std::size_t n = 0;
    while (v >= 0x80) {
      tmp[n++] = static_cast<std::byte>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    tmp[n++] = static_cast<std::byte>(v);
    write(tmp, n);
  }
  // Pads with zero bytes to a multiple of `a` from the message start: bulk arrays start aligned,
  // so copies run at full speed (a misaligned `rep movsb` is several times slower) and a reader
  // could use the data in place.
  void align(std::size_t a) {
    static constexpr std::byte zeros[64] = {};
    const std::size_t pad = (a - n_ % a) % a;
    write(zeros, pad);
  }
  // Appends `n` bytes left for the caller to fill; returns where they start (valid until the next
  // write).
  std::byte* extend(std::size_t n) {
    if (buf_.size() - n_ < n) grow(n);
    std::byte* p = buf_.data() + n_;
    n_ += n;
    return p;
  }
  template <class T>
  void put(const T& v);  // encodes any supported value

  std::size_t size() const noexcept { return n_; }
  std::span<const std::byte> bytes() const noexcept { return {buf_.data(), n_}; }
  // Writable access to bytes already written (to patch a length field after the fact).
  std::byte* data() noexcept { return buf_.data(); }
  // Drops everything after the first `n` bytes (undoes a partly written value).
  void truncate(std::size_t n) noexcept {
    if (n < n_) n_ = n;
  }
  Bytes take() noexcept {
    buf_.resize(n_);  // shrinking a default-initialised vector: no reallocation, no writes
    n_ = 0;
    return std::move(buf_);
  }
  void clear() noexcept { n_ = 0; }

 private:
  // The buffer's size is its usable room (bytes are default-initialised, never zeroed); n_ is
  // what has been written.
  void grow(std::size_t n) { buf_.resize(std::max(buf_.size() * 2, n_ + n)); }
  Bytes buf_;
  std::size_t n_ = 0;
};

// ---- Decoder ----------------------------------------------------------------------------------

// Reads values from a byte span, checking every read against the bytes left.
class Decoder {
 public:
  explicit Decoder(std::span<const std::byte> bytes) noexcept
      : begin_(bytes.data()), p_(bytes.data()), end_(bytes.data() + bytes.size()) {}
  // Decodes a value that was encoded starting at byte `base` of a larger message: alignment
  // padding is computed from the message start, as Encoder::align wrote it.
  Decoder(std::span<const std::byte> bytes, std::size_t base) noexcept : Decoder(bytes) {
    base_ = base;
  }

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(p_ - begin_); }

  void need(std::size_t n, const char* what) const {
    if (n > remaining()) fail_truncated(n, what);
  }
  void read(void* dst, std::size_t n, const char* what = "value") {
    need(n, what);
    if (n) std::memcpy(dst, p_, n);
    p_ += n;
  }
  std::uint64_t varint(const char* what = "length") {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1, what);
      const auto b = static_cast<std::uint8_t>(*p_++);
      if (shift == 63 && (b & 0x7e)) fail("varint overflows 64 bits", what);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes", what);
  }
  // A count of elements each at least `min_bytes` long on the wire: rejects counts the remaining
  // bytes cannot hold, so no allocation can exceed the message.
  std::size_t count(std::size_t min_bytes, const char* what) {
    const std::uint64_t n = varint(what);
    if (min_bytes && n > remaining() / min_bytes)
      fail(("count " + std::to_string(n) + " exceeds what the remaining " +
            std::to_string(remaining()) + " bytes can hold")
               .c_str(),
           what);
    return static_cast<std::size_t>(n);
  }
  // Skips the zero padding Encoder::align wrote (and checks it is zero).
  void align(std::size_t a, const char* what) {
    const std::size_t pad = (a - (base_ + offset()) % a) % a;
    need(pad, what);
    for (std::size_t i = 0; i < pad; ++i)
      if (p_[i] != std::byte{0}) fail("non-zero alignment padding", what);
    p_ += pad;
  }
  template <class T>
  void get(T& v);  // decodes any supported value in place
  // Decodes and returns a T: through Codec<T>::make(Decoder&) when the type provides one (types
  // that must not be default-constructed first, such as handles to shared memory), else by
  // default construction and get().
  template <class T>
  T make() {
    if constexpr (requires(Decoder & d) {
                    { Codec<T>::make(d) } -> std::same_as<T>;
                  }) {
      return Codec<T>::make(*this);
    } else {
      T v{};
      get(v);
      return v;
    }
  }

  [[noreturn]] void fail(const char* why, const char* what) const {
    throw SerializationError(std::string(why) + " (decoding " + what + " at byte " +
                             std::to_string(offset()) + ")");
  }

 private:
  [[noreturn]] void fail_truncated(std::size_t n, const char* what) const {
    throw SerializationError("truncated message: " + std::string(what) + " needs " +
                             std::to_string(n) + " bytes at byte " + std::to_string(offset()) +
                             ", only " + std::to_string(remaining()) + " left");
  }
  const std::byte* begin_;
  const std::byte* p_;
  const std::byte* end_;
  std::size_t base_ = 0;
};

// ---- archives for cereal-style serialize(Archive&) --------------------------------------------

class OutputArchive {
 public:
  explicit OutputArchive(Encoder& e) noexcept : e_(e) {}
  template <class... A>
  void operator()(const A&... a) {
    (e_.put(a), ...);
  }
  static constexpr bool is_loading = false;

 private:
  Encoder& e_;
};

class InputArchive {
 public:
  explicit InputArchive(Decoder& d) noexcept : d_(d) {}
  template <class... A>
  void operator()(A&... a) {
    (d_.get(a), ...);
  }
  static constexpr bool is_loading = true;

 private:
  Decoder& d_;
};

namespace detail {

template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};
template <class T>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};
template <class T>
struct is_tuple : std::false_type {};
template <class... A>
struct is_tuple<std::tuple<A...>> : std::true_type {};
template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_variant : std::false_type {};
template <class... A>
struct is_variant<std::variant<A...>> : std::true_type {};
template <class T>
struct is_complex : std::false_type {};
template <class T>
struct is_complex<std::complex<T>> : std::true_type {};
template <class T>
struct is_duration : std::false_type {};
template <class R, class P>
struct is_duration<std::chrono::duration<R, P>> : std::true_type {};
template <class T>
struct is_string_view : std::false_type {};
template <class C, class Tr>
struct is_string_view<std::basic_string_view<C, Tr>> : std::true_type {};
template <class T>
struct is_basic_string : std::false_type {};
template <class C, class Tr, class A>
struct is_basic_string<std::basic_string<C, Tr, A>> : std::true_type {};

template <class T>
concept HasUserCodec = requires(Encoder& e, Decoder& d, const T& c, T& v) {
  Codec<T>::encode(e, c);
  Codec<T>::decode(d, v);
};
template <class T>
concept HasMemberSerialize = requires(T& v, OutputArchive& o, InputArchive& i) {
  v.serialize(o);
  v.serialize(i);
};
template <class T>
concept HasFreeSerialize = requires(T& v, OutputArchive& o, InputArchive& i) {
  serialize(o, v);
  serialize(i, v);
};
template <class T>
concept HasSaveLoad = requires(const T& c, T& v, OutputArchive& o, InputArchive& i) {
  c.save(o);
  v.load(i);
};
template <class T>
concept MapLike = requires {
  typename T::key_type;
  typename T::mapped_type;
}
&&requires(T& m) {
  m.clear();
  m.size();
};
template <class T>
concept SetLike = requires {
  typename T::key_type;
}
&&!MapLike<T> && requires(T & s, const typename T::key_type& k) {
  s.insert(k);
};
template <class T>
concept Sequence = requires {
  typename T::value_type;
}
&&requires(T& s) {
  s.emplace_back();
  s.clear();
  s.size();
};

template <class T>
constexpr bool user_defined() {
  return HasUserCodec<T> || HasMemberSerialize<T> || HasFreeSerialize<T> || HasSaveLoad<T>;
}

// Types whose bytes can be copied as they are: every bit pattern is a valid value, no padding.
template <class T>
constexpr bool memcpy_safe();

template <class Tuple, std::size_t... I>
constexpr bool all_memcpy_safe(std::index_sequence<I...>) {
  return (memcpy_safe<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>() && ...);
}
template <class Tuple, std::size_t... I>
constexpr std::size_t sum_sizes(std::index_sequence<I...>) {
  return (std::size_t{0} + ... + sizeof(std::remove_cvref_t<std::tuple_element_t<I, Tuple>>));
}

template <class T>
constexpr bool memcpy_safe() {
  if constexpr (enable_memcpy<T>) {
    static_assert(std::is_trivially_copyable_v<T>,
                  "parx::enable_memcpy<T> needs a trivially copyable T");
    return true;
  } else if constexpr (user_defined<T>() || std::is_same_v<T, bool> || std::is_pointer_v<T> ||
                       std::is_member_pointer_v<T>) {
    return false;
  } else if constexpr (std::is_arithmetic_v<T> || std::is_enum_v<T>) {
    return true;
  } else if constexpr (is_std_array<T>::value) {
    return memcpy_safe<typename T::value_type>();
  } else if constexpr (std::is_aggregate_v<T> && !std::is_array_v<T> &&
                       std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>) {
    if constexpr (!reflectable_v<T> || member_count<T>() == 0) {
      return false;
    } else {
      using Tie = decltype(tie_members(std::declval<T&>()));
      constexpr auto idx = std::make_index_sequence<std::tuple_size_v<Tie>>{};
      return all_memcpy_safe<Tie>(idx) && sum_sizes<Tie>(idx) == sizeof(T);
    }
  } else {
    return false;
  }
}

// Smallest encoding of a T in bytes (every T takes at least one byte, so a count can always be
// checked against the bytes left).
template <class T>
constexpr std::size_t min_wire_size() {
  if constexpr (memcpy_safe<T>()) return sizeof(T) ? sizeof(T) : 1;
  return 1;
}

// Alignment of a bulk array's payload relative to the message start. Large arrays start on a
// cache line: besides being aligned, that keeps the copy's destination well away from the
// source modulo 4 KiB when both buffers come from malloc at the same page offset — an 8-byte
// distance makes `rep movsb` 14x slower (measured: 240 us vs 17 us for 800 KB). Small arrays
// only take their natural alignment, so they do not bloat.
template <class V>
constexpr std::size_t bulk_alignment(std::size_t bytes) noexcept {
  return bytes >= 4096 ? 64 : std::min<std::size_t>(alignof(V), 16);
}

template <class T>
[[noreturn]] void unsupported() {
  static_assert(sizeof(T) == 0,
                "parx codec: this type cannot be encoded. Add a member "
                "`template <class Archive> void serialize(Archive& ar) { ar(field1, field2); }`, "
                "or specialise parx::Codec<T>.");
  std::abort();
}

template <class Variant, std::size_t I = 0>
void decode_variant(Decoder& d, Variant& v, std::size_t index) {
  if constexpr (I < std::variant_size_v<Variant>) {
    if (index == I) {
      std::variant_alternative_t<I, Variant> alt{};
      d.get(alt);
      v.template emplace<I>(std::move(alt));
      return;
    }
    decode_variant<Variant, I + 1>(d, v, index);
  }
}

}  // namespace detail

// ---- encoding ---------------------------------------------------------------------------------

template <class T>
void Encoder::put(const T& v) {
  using namespace detail;
  if constexpr (HasUserCodec<T>) {
    Codec<T>::encode(*this, v);
  } else if constexpr (HasMemberSerialize<T>) {
    OutputArchive ar(*this);
    const_cast<T&>(v).serialize(ar);  // cereal convention: one serialize for both directions
  } else if constexpr (HasSaveLoad<T>) {
    OutputArchive ar(*this);
    v.save(ar);
  } else if constexpr (HasFreeSerialize<T>) {
    OutputArchive ar(*this);
    serialize(ar, const_cast<T&>(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    const std::uint8_t b = v ? 1 : 0;
    write(&b, 1);
  } else if constexpr (memcpy_safe<T>()) {
    write(&v, sizeof(T));
  } else if constexpr (is_basic_string<T>::value || is_string_view<T>::value) {
    static_assert(memcpy_safe<typename T::value_type>());
    varint(v.size());
    write(v.data(), v.size() * sizeof(typename T::value_type));
  } else if constexpr (std::is_same_v<T, std::vector<bool>>) {
    varint(v.size());
    for (bool b : v)
      put(b);
  } else if constexpr (is_std_array<T>::value) {
    for (const auto& x : v)
      put(x);
  } else if constexpr (std::is_same_v<T, std::monostate> || std::is_empty_v<T>) {
    const std::uint8_t zero = 0;  // one byte, so counts of empty values stay bounded
    write(&zero, 1);
  } else if constexpr (is_pair<T>::value) {
    put(v.first);
    put(v.second);
  } else if constexpr (is_tuple<T>::value) {
    if constexpr (std::tuple_size_v<T> == 0) {
      const std::uint8_t zero = 0;
      write(&zero, 1);
    } else {
      std::apply([this](const auto&... x) { (put(x), ...); }, v);
    }
  } else if constexpr (is_optional<T>::value) {
    put(v.has_value());
    if (v) put(*v);
  } else if constexpr (is_variant<T>::value) {
    if (v.valueless_by_exception())
      throw SerializationError("cannot encode a valueless std::variant");
    varint(v.index());
    std::visit([this](const auto& x) { put(x); }, v);
  } else if constexpr (is_complex<T>::value) {
    put(v.real());
    put(v.imag());
  } else if constexpr (is_duration<T>::value) {
    put(v.count());
  } else if constexpr (MapLike<T> || SetLike<T>) {
    varint(v.size());
    for (const auto& x : v)
      put(x);
  } else if constexpr (Sequence<T>) {
    using V = typename T::value_type;
    varint(v.size());
    if constexpr (memcpy_safe<V>() && std::is_same_v<T, std::vector<V>>) {
      if (!v.empty()) {
        align(bulk_alignment<V>(v.size() * sizeof(V)));
        write(v.data(), v.size() * sizeof(V));
      }
    } else {
      for (const auto& x : v)
        put(x);
    }
  } else if constexpr (std::is_pointer_v<T> || std::is_reference_v<T>) {
    unsupported<T>();
  } else if constexpr (std::is_aggregate_v<T> && reflectable_v<T>) {
    std::apply([this](const auto&... x) { (put(x), ...); }, tie_members(v));
  } else {
    unsupported<T>();
  }
}

// ---- decoding ---------------------------------------------------------------------------------

// One `if constexpr` arm per supported kind of type, in the same order as Encoder::put: longer
// than a function should be, kept whole so that the two directions of the format read side by
// side.
template <class T>
void Decoder::get(T& v) {
  using namespace detail;
  if constexpr (HasUserCodec<T>) {
    Codec<T>::decode(*this, v);
  } else if constexpr (HasMemberSerialize<T>) {
    InputArchive ar(*this);
    v.serialize(ar);
  } else if constexpr (HasSaveLoad<T>) {
    InputArchive ar(*this);
    v.load(ar);
  } else if constexpr (HasFreeSerialize<T>) {
    InputArchive ar(*this);
    serialize(ar, v);
  } else if constexpr (std::is_same_v<T, bool>) {
    std::uint8_t b = 0;
    read(&b, 1, "bool");
    if (b > 1) fail("invalid bool byte", "bool");
    v = b == 1;
  } else if constexpr (memcpy_safe<T>()) {
    read(&v, sizeof(T));
  } else if constexpr (is_basic_string<T>::value) {
    using C = typename T::value_type;
    const std::size_t n = count(sizeof(C), "string length");
    v.resize(n);
    read(v.data(), n * sizeof(C), "string");
  } else if constexpr (std::is_same_v<T, std::vector<bool>>) {
    const std::size_t n = count(1, "vector<bool> length");
    v.clear();
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      bool b = false;
      get(b);
      v.push_back(b);
    }
  } else if constexpr (is_std_array<T>::value) {
    for (auto& x : v)
      get(x);
  } else if constexpr (std::is_same_v<T, std::monostate> || std::is_empty_v<T>) {
    std::uint8_t zero = 0;
    read(&zero, 1, "empty value");
    if (zero != 0) fail("invalid byte for an empty value", "empty value");
  } else if constexpr (is_pair<T>::value) {
    get(v.first);
    get(v.second);
  } else if constexpr (is_tuple<T>::value) {
    if constexpr (std::tuple_size_v<T> == 0) {
      std::uint8_t zero = 0;
      read(&zero, 1, "empty tuple");
    } else {
      std::apply([this](auto&... x) { (get(x), ...); }, v);
    }
  } else if constexpr (is_optional<T>::value) {
    bool has = false;
    get(has);
    if (has) {
      typename T::value_type x{};
      get(x);
      v = std::move(x);
    } else {
      v.reset();
    }
  } else if constexpr (is_variant<T>::value) {
    const std::uint64_t index = varint("variant index");
    if (index >= std::variant_size_v<T>) fail("variant index out of range", "std::variant");
    decode_variant(*this, v, static_cast<std::size_t>(index));
  } else if constexpr (is_complex<T>::value) {
    typename T::value_type re{}, im{};
    get(re);
    get(im);
    v = T(re, im);
  } else if constexpr (is_duration<T>::value) {
    typename T::rep c{};
    get(c);
    v = T(c);
  } else if constexpr (MapLike<T>) {
    using K = typename T::key_type;
    using M = typename T::mapped_type;
    const std::size_t n = count(min_wire_size<K>() + min_wire_size<M>(), "map size");
    v.clear();
    for (std::size_t i = 0; i < n; ++i) {
      K k{};
      M m{};
      get(k);
      get(m);
      if constexpr (requires {
                      typename T::key_compare;
                      v.emplace(std::move(k), std::move(m)).second;
                    }) {
        // Ordered map: the encoder wrote keys in order, so each insert goes at the end in O(1).
        const std::size_t before = v.size();
        v.emplace_hint(v.end(), std::move(k), std::move(m));
        if (v.size() == before) fail("duplicate key", "map");
      } else if constexpr (requires { v.emplace(std::move(k), std::move(m)).second; }) {
        if (!v.emplace(std::move(k), std::move(m)).second) fail("duplicate key", "map");
      } else {
        v.emplace(std::move(k), std::move(m));  // multimap: duplicates are legal
      }
    }
  } else if constexpr (SetLike<T>) {
    using K = typename T::key_type;
    const std::size_t n = count(min_wire_size<K>(), "set size");
    v.clear();
    for (std::size_t i = 0; i < n; ++i) {
      K k{};
      get(k);
      if constexpr (requires { v.insert(std::move(k)).second; }) {
        if (!v.insert(std::move(k)).second) fail("duplicate element", "set");
      } else {
        v.insert(std::move(k));  // multiset: duplicates are legal
      }
    }
  } else if constexpr (Sequence<T>) {
    using V = typename T::value_type;
    const std::size_t n = count(min_wire_size<V>(), "sequence length");
    v.clear();
    if constexpr (memcpy_safe<V>() && std::is_same_v<T, std::vector<V>>) {
      if (n) {
        align(bulk_alignment<V>(n * sizeof(V)), "array padding");
        need(n * sizeof(V), "array data");  // before resize: no allocation beyond the message
        v.resize(n);
        read(v.data(), n * sizeof(V), "array data");
      }
    } else {
      if constexpr (requires { v.reserve(n); })
        v.reserve(std::min(n, remaining() / std::max<std::size_t>(sizeof(V), 1)));
      for (std::size_t i = 0; i < n; ++i)
        get(v.emplace_back());
    }
  } else if constexpr (std::is_pointer_v<T> || std::is_reference_v<T> || is_string_view<T>::value) {
    unsupported<T>();
  } else if constexpr (std::is_aggregate_v<T> && reflectable_v<T>) {
    std::apply([this](auto&... x) { (get(x), ...); }, tie_members(v));
  } else {
    unsupported<T>();
  }
}

// ---- encodability ------------------------------------------------------------------------------

namespace detail {
template <class T>
constexpr bool encodable();
template <class Tuple, std::size_t... I>
constexpr bool all_encodable(std::index_sequence<I...>) {
  return (encodable<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>() && ...);
}
template <class V, std::size_t... I>
constexpr bool all_alternatives_encodable(std::index_sequence<I...>) {
  return (encodable<std::variant_alternative_t<I, V>>() && ...);
}
// Mirrors Encoder::put's dispatch, answering false where put would not compile.
template <class T>
constexpr bool encodable() {
  if constexpr (user_defined<T>() || std::is_same_v<T, bool> || memcpy_safe<T>()) {
    return true;
  } else if constexpr (is_basic_string<T>::value || is_string_view<T>::value) {
    return memcpy_safe<typename T::value_type>();
  } else if constexpr (std::is_same_v<T, std::vector<bool>> || std::is_same_v<T, std::monostate> ||
                       std::is_empty_v<T>) {
    return true;
  } else if constexpr (is_std_array<T>::value) {
    return encodable<typename T::value_type>();
  } else if constexpr (is_pair<T>::value) {
    return encodable<typename T::first_type>() && encodable<typename T::second_type>();
  } else if constexpr (is_tuple<T>::value) {
    return all_encodable<T>(std::make_index_sequence<std::tuple_size_v<T>>{});
  } else if constexpr (is_optional<T>::value) {
    return encodable<typename T::value_type>();
  } else if constexpr (is_variant<T>::value) {
    return all_alternatives_encodable<T>(std::make_index_sequence<std::variant_size_v<T>>{});
  } else if constexpr (is_complex<T>::value || is_duration<T>::value) {
    return true;
  } else if constexpr (MapLike<T>) {
    return encodable<std::remove_cv_t<typename T::key_type>>() &&
           encodable<typename T::mapped_type>();
  } else if constexpr (SetLike<T> || Sequence<T>) {
    return encodable<typename T::value_type>();
  } else if constexpr (std::is_pointer_v<T> || std::is_reference_v<T>) {
    return false;
  } else if constexpr (std::is_aggregate_v<T> && reflectable_v<T>) {
    using Tied = decltype(tie_members(std::declval<T&>()));
    return all_encodable<Tied>(std::make_index_sequence<std::tuple_size_v<Tied>>{});
  } else {
    return false;
  }
}
}  // namespace detail

// True if parx::encode accepts T (and decode gives it back): the codec's rules, checked without
// instantiating the encoder, for code that encodes only when it can.
template <class T>
inline constexpr bool is_encodable_v = detail::encodable<std::remove_cvref_t<T>>();

// ---- free functions ---------------------------------------------------------------------------

// Encodes `values...` one after another into a new byte vector.
template <class... T>
Bytes encode(const T&... values) {
  Encoder e;
  (e.put(values), ...);
  return e.take();
}

// Decodes one T from `bytes`, which must hold exactly one encoded T.
template <class T>
T decode(std::span<const std::byte> bytes) {
  static_assert(std::is_default_constructible_v<T>,
                "parx::decode<T> needs a default-constructible T (decode fills it in place)");
  Decoder d(bytes);
  T v{};
  d.get(v);
  if (d.remaining() != 0)
    throw SerializationError(std::to_string(d.remaining()) +
                             " trailing bytes after the decoded value (wrong type, or corrupt)");
  return v;
}
template <class T>
T decode(std::string_view bytes) {
  return decode<T>(std::as_bytes(std::span(bytes.data(), bytes.size())));
}

}  // namespace parx
