// parx/shared_memory.hpp — named shared-memory segments (Python's
// multiprocessing.shared_memory.SharedMemory), safe when a process dies.
//
// Contract
//   * create(size) makes a zero-filled segment, mode 0600 (private to the user), with a unique
//     name unless one is given; attach(name) maps an existing one. The creator owns the name:
//     its destructor (or unlink()) removes it; attachers only map and unmap, so nothing leaks.
//   * After parx::init, the fork server also unlinks the creator's segments if the creator dies
//     without doing so (SIGKILL, abort): nothing is left in /dev/shm.
//   * A SharedMemory passed to a parx::Process (or any codec message) travels as its name; the
//     receiver attaches to it.
//   * A mapping stays valid after unlink() until this object is destroyed.
//
// Thread-safety: the object is a handle; the bytes are shared, so synchronise access to them
// (parx::Lock, or atomics placed in the segment).
//
// Example
//   auto seg = parx::SharedMemory::create(1 << 20);
//   std::memcpy(seg.data(), frame.data(), frame.size());
//   parx::Process p(process_frame, seg, frame.size());   // the child attaches by name
#pragma once

#include <cstddef>
#include <string>

#include "parx/codec.hpp"

namespace parx {

class SharedMemory {
 public:
  // A new zero-filled segment of `size` bytes, mode 0600. An empty name picks a unique one.
  // Throws parx::Error if the name exists or the segment cannot be made.
  static SharedMemory create(std::size_t size, const std::string& name = {});
  // Maps the existing segment `name` (read-write). Throws parx::Error if there is none.
  static SharedMemory attach(const std::string& name);

  SharedMemory() = default;  // empty: no segment
  SharedMemory(SharedMemory&& o) noexcept;
  SharedMemory& operator=(SharedMemory&& o) noexcept;
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  ~SharedMemory();

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  const std::string& name() const noexcept { return name_; }
  bool is_owner() const noexcept { return owner_; }
  explicit operator bool() const noexcept { return data_ != nullptr; }

  // Removes the name now (creator only; a no-op for attachers and after the first call).
  void unlink();

 private:
  void release() noexcept;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string name_;
  bool owner_ = false;
  bool linked_ = false;
};

template <>
struct Codec<SharedMemory> {
  static void encode(Encoder& e, const SharedMemory& s) { e.put(s.name()); }
  static SharedMemory make(Decoder& d) {
    std::string name;
    d.get(name);
    return name.empty() ? SharedMemory() : SharedMemory::attach(name);
  }
  static void decode(Decoder& d, SharedMemory& s) { s = make(d); }
};

}  // namespace parx
