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
#include <type_traits>

#include "parx/lock.hpp"

namespace parx {

template <class T>
class SharedValue {
  static_assert(std::is_trivially_copyable_v<T>,
                "parx::SharedValue<T> needs a trivially copyable T");

 public:
  explicit SharedValue(const T& initial = T{})
      : seg_(std::make_shared<SharedMemory>(SharedMemory::create(value_offset() + sizeof(T)))),
        lock_(seg_, 0, true) {
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
  friend struct Codec<SharedValue<T>>;
  struct Attach {};
  SharedValue(Attach, std::shared_ptr<SharedMemory> seg)
      : seg_(std::move(seg)), lock_(seg_, 0, false) {
    if (seg_->size() < value_offset() + sizeof(T))
      throw SerializationError("SharedValue: segment '" + seg_->name() + "' is too small");
  }
  static std::size_t value_offset() noexcept {
    return (Lock::footprint() + alignof(T) - 1) / alignof(T) * alignof(T);
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
    std::memcpy(seg_->data() + Lock::footprint(), &n_, sizeof n_);
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
  friend struct Codec<SharedArray<T>>;
  struct Attach {};
  SharedArray(Attach, std::shared_ptr<SharedMemory> seg)
      : seg_(std::move(seg)), lock_(seg_, 0, false) {
    if (seg_->size() < data_offset())
      throw SerializationError("SharedArray: segment '" + seg_->name() + "' is too small");
    std::memcpy(&n_, seg_->data() + Lock::footprint(), sizeof n_);
    if (n_ > (seg_->size() - data_offset()) / sizeof(T))
      throw SerializationError("SharedArray: segment '" + seg_->name() +
                               "' holds fewer elements than its header says");
  }
  void check(std::size_t i) const {
    if (i >= n_)
      throw InvalidArgument("SharedArray index " + std::to_string(i) + " >= size " +
                            std::to_string(n_));
  }
  static std::size_t data_offset() noexcept {
    const std::size_t header = Lock::footprint() + sizeof(std::uint64_t);
    return (header + alignof(T) - 1) / alignof(T) * alignof(T);
  }

  std::shared_ptr<SharedMemory> seg_;
  mutable Lock lock_;
  std::uint64_t n_ = 0;
};

template <class T>
struct Codec<SharedValue<T>> {
  static void encode(Encoder& e, const SharedValue<T>& v) { e.put(*v.segment()); }
  static SharedValue<T> make(Decoder& d) {
    auto seg = std::make_shared<SharedMemory>();
    d.get(*seg);
    if (!*seg) throw SerializationError("SharedValue: no segment in the message");
    return SharedValue<T>(typename SharedValue<T>::Attach{}, std::move(seg));
  }
  static void decode(Decoder& d, SharedValue<T>& v) { v = make(d); }
};

template <class T>
struct Codec<SharedArray<T>> {
  static void encode(Encoder& e, const SharedArray<T>& a) { e.put(*a.segment()); }
  static SharedArray<T> make(Decoder& d) {
    auto seg = std::make_shared<SharedMemory>();
    d.get(*seg);
    if (!*seg) throw SerializationError("SharedArray: no segment in the message");
    return SharedArray<T>(typename SharedArray<T>::Attach{}, std::move(seg));
  }
  static void decode(Decoder& d, SharedArray<T>& a) { a = make(d); }
};

}  // namespace parx
