// parx/shared_value.hpp — SharedValue<T> and SharedArray<T>: typed data in shared memory, each
// with its own robust lock (Python's multiprocessing.Value and Array).
//
// Contract
//   * T must be trivially copyable (it is shared as raw bytes between processes).
//   * get()/set() (and SharedArray's load/store) take the lock for each call; for a
//     read-modify-write, hold get_lock() and use ref()/operator[]:
//       { std::lock_guard g(counter.get_lock()); counter.ref() += 1; }   // no lost updates
//   * Passed to a parx::Process, the object travels as its segment's name; the child works on the
//     same memory. Copies within one process share it as well.
//   * The memory is freed when the creator's last copy is destroyed (and by the fork server if
//     the creator dies first); children attached to it keep their mapping until they drop it.
//   * The segment records what it holds (value or array, T's mangled name and size, the element
//     count): a message naming a SharedValue<int> decoded as a SharedValue<float>, a SharedArray,
//     or a segment of anything else throws SerializationError instead of reinterpreting bytes.
//
// Thread-safety: get/set/load/store and the lock are thread- and process-safe; ref() and
// operator[] are raw access — hold get_lock().
//
// Example (the seeds' Value counter, without its race)
//   void add(parx::SharedValue<long> counter, int times) {
//     for (int i = 0; i < times; ++i) { std::lock_guard g(counter.get_lock()); ++counter.ref(); }
//   }
//   PARX_REMOTE(add);
//   parx::SharedValue<long> counter(0);
//   std::vector<parx::Process> ps;
//   for (int i = 0; i < 8; ++i) ps.emplace_back(add, counter, 10'000);
//   for (auto& p : ps) p.start();
//   for (auto& p : ps) p.join();        // counter.get() == 80'000
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <typeinfo>

#include "parx/detail/ipc_handle.hpp"
#include "parx/lock.hpp"

namespace parx {

namespace detail {
// What a SharedValue's or SharedArray's segment holds, after its lock: checked on attach.
template <std::uint64_t Magic>
struct SharedDataWord {
  static constexpr std::uint64_t kMagic = Magic;
  std::uint64_t magic;
  std::uint64_t type;       // FNV-1a of T's mangled name
  std::uint64_t elem_size;  // sizeof(T)
  std::uint64_t n;          // elements
};
using SharedValueWord = SharedDataWord<0x7061727853564c55ull>;  // "parxSVLU"
using SharedArrayWord = SharedDataWord<0x7061727853415252ull>;  // "parxSARR"

template <class T>
std::uint64_t type_fingerprint() noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char* c = typeid(T).name(); *c; ++c)
    h = (h ^ static_cast<unsigned char>(*c)) * 0x100000001b3ull;
  return h;
}

// Writes the word of a new segment; checks it on attach (throws SerializationError naming
// `what`), returning the element count.
template <class W, class T>
void init_data_word(SharedMemory& seg, std::uint64_t n) {
  auto* w = new (seg.data() + Lock::footprint()) W{};
  w->type = type_fingerprint<T>();
  w->elem_size = sizeof(T);
  w->n = n;
  w->magic = W::kMagic;
}
template <class W, class T>
std::uint64_t check_data_word(const std::shared_ptr<SharedMemory>& seg, const char* what,
                              std::size_t data_offset) {
  const W* w = checked_word<W>(seg, what, Lock::footprint());
  if (w->type != type_fingerprint<T>() || w->elem_size != sizeof(T))
    throw SerializationError(std::string(what) + ": segment '" + seg->name() +
                             "' holds elements of another type (" + std::to_string(w->elem_size) +
                             " bytes each; this handle's type has " + std::to_string(sizeof(T)) +
                             ")");
  if (seg->size() < data_offset || w->n > (seg->size() - data_offset) / sizeof(T))
    throw SerializationError(std::string(what) + ": segment '" + seg->name() +
                             "' holds fewer elements than its header says");
  return w->n;
}
}  // namespace detail

template <class T>
class SharedValue {
  static_assert(std::is_trivially_copyable_v<T>,
                "parx::SharedValue<T> needs a trivially copyable T");

 public:
  explicit SharedValue(const T& initial = T{})
      : seg_(std::make_shared<SharedMemory>(SharedMemory::create(value_offset() + sizeof(T)))),
        lock_(seg_, 0, true) {
    detail::init_data_word<detail::SharedValueWord, T>(*seg_, 1);
    std::memcpy(ptr(), &initial, sizeof(T));
  }

  T get() const {
    std::lock_guard g(lock_);
    return ref();
  }
  void set(const T& v) {
    std::lock_guard g(lock_);
    ref() = v;
  }
  // Raw access: hold get_lock() around read-modify-write sequences.
  T& ref() const noexcept { return *ptr(); }
  Lock& get_lock() const noexcept { return lock_; }
  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 private:
  friend struct detail::SegmentCodec<SharedValue<T>>;
  static constexpr const char* kName = "SharedValue";
  SharedValue(detail::AttachTo, std::shared_ptr<SharedMemory> seg) : seg_(std::move(seg)) {
    if (detail::check_data_word<detail::SharedValueWord, T>(seg_, kName, value_offset()) != 1)
      throw SerializationError("SharedValue: segment '" + seg_->name() + "' holds an array");
    lock_ = Lock(seg_, 0, false);
  }
  static std::size_t value_offset() noexcept {
    const std::size_t header = Lock::footprint() + sizeof(detail::SharedValueWord);
    return (header + alignof(T) - 1) / alignof(T) * alignof(T);
  }
  T* ptr() const noexcept { return reinterpret_cast<T*>(seg_->data() + value_offset()); }

  std::shared_ptr<SharedMemory> seg_;
  mutable Lock lock_;
};

template <class T>
class SharedArray {
  static_assert(std::is_trivially_copyable_v<T>,
                "parx::SharedArray<T> needs a trivially copyable T");

 public:
  // `n` elements, each `fill`.
  explicit SharedArray(std::size_t n, const T& fill = T{})
      : seg_(std::make_shared<SharedMemory>(
            SharedMemory::create(data_offset() + n * sizeof(T) + sizeof(T)))),
        lock_(seg_, 0, true),
        n_(n) {
    detail::init_data_word<detail::SharedArrayWord, T>(*seg_, n);
    for (std::size_t i = 0; i < n; ++i)
      std::memcpy(data() + i, &fill, sizeof(T));
  }

  std::size_t size() const noexcept { return n_; }
  T* data() const noexcept { return reinterpret_cast<T*>(seg_->data() + data_offset()); }
  // Raw access: hold get_lock() around read-modify-write sequences.
  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + n_; }
  T load(std::size_t i) const {
    check(i);
    std::lock_guard g(lock_);
    return data()[i];
  }
  void store(std::size_t i, const T& v) {
    check(i);
    std::lock_guard g(lock_);
    data()[i] = v;
  }
  Lock& get_lock() const noexcept { return lock_; }
  const std::shared_ptr<SharedMemory>& segment() const noexcept { return seg_; }

 private:
  friend struct detail::SegmentCodec<SharedArray<T>>;
  static constexpr const char* kName = "SharedArray";
  SharedArray(detail::AttachTo, std::shared_ptr<SharedMemory> seg)
      : seg_(std::move(seg)),
        n_(detail::check_data_word<detail::SharedArrayWord, T>(seg_, kName, data_offset())) {
    lock_ = Lock(seg_, 0, false);
  }
  void check(std::size_t i) const {
    if (i >= n_)
      throw InvalidArgument("SharedArray index " + std::to_string(i) + " >= size " +
                            std::to_string(n_));
  }
  static std::size_t data_offset() noexcept {
    const std::size_t header = Lock::footprint() + sizeof(detail::SharedArrayWord);
    return (header + alignof(T) - 1) / alignof(T) * alignof(T);
  }

  std::shared_ptr<SharedMemory> seg_;
  mutable Lock lock_;
  std::uint64_t n_ = 0;
};

template <class T>
struct Codec<SharedValue<T>> : detail::SegmentCodec<SharedValue<T>> {};
template <class T>
struct Codec<SharedArray<T>> : detail::SegmentCodec<SharedArray<T>> {};

}  // namespace parx
