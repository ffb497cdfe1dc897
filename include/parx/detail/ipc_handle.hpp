// parx/detail/ipc_handle.hpp — what every ipc handle shares, written once. Internal.
//
// An ipc handle (Event, Semaphore, BoundedSemaphore, Condition, Barrier, Queue, JoinableQueue,
// SharedValue, SharedArray) is a shared_ptr to a SharedMemory segment whose first bytes are a
// control word. It travels to another process (parx::Process arguments, a Queue, any codec
// message) as that segment's name, and the receiver attaches to the segment, after checking that
// it exists, is large enough, and holds the kind of word the handle expects. A Lock travels as a
// segment and an offset, a Condition as its Lock and its segment, a Connection as two queue names;
// they use decode_segment alone.
//
// Contract
//   * A handle H that travels as its segment alone declares
//       friend struct detail::SegmentCodec<H>;
//       static constexpr const char* kName = "H";   // in error messages
//       H(detail::AttachTo, std::shared_ptr<SharedMemory> seg);   // attaches, checks, or throws
//     and its codec is `template <> struct Codec<H> : detail::SegmentCodec<H> {};`.
//   * decode_segment and checked_word throw SerializationError naming the handle: a message
//     without a segment, a segment too small, a segment holding another kind of object (its
//     control word's magic differs). A forged or stale message never yields a handle over
//     memory that is not what it claims.
//
// Thread-safety: stateless functions; the handles say what they allow.
//
// Example (event.hpp)
//   class Event {
//    private:
//     friend struct detail::SegmentCodec<Event>;
//     static constexpr const char* kName = "Event";
//     Event(detail::AttachTo, std::shared_ptr<SharedMemory> seg)
//         : seg_(std::move(seg)), w_(detail::checked_word<detail::EventWord>(seg_, kName)) {}
//   };
//   template <> struct Codec<Event> : detail::SegmentCodec<Event> {};
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "parx/codec.hpp"
#include "parx/errors.hpp"
#include "parx/shared_memory.hpp"

namespace parx::detail {

// The tag of a handle's attaching constructor.
struct AttachTo {};

// Reads a segment from a message and attaches to it; throws SerializationError naming `what` if
// the message holds none.
inline std::shared_ptr<SharedMemory> decode_segment(Decoder& d, const char* what) {
  auto seg = std::make_shared<SharedMemory>();
  d.get(*seg);
  if (!*seg) throw SerializationError(std::string(what) + ": no segment in the message");
  return seg;
}

// The control word W at `offset` in `seg`, checked: the segment exists, holds sizeof(W) bytes
// there, and W::kMagic is in W's `magic` field. Throws SerializationError naming `what`.
template <class W>
W* checked_word(const std::shared_ptr<SharedMemory>& seg, const char* what,
                std::size_t offset = 0) {
  if (!seg || !*seg || seg->size() < offset || seg->size() - offset < sizeof(W))
    throw SerializationError(std::string(what) + ": segment missing or too small");
  auto* w = reinterpret_cast<W*>(seg->data() + offset);
  if (w->magic != W::kMagic)
    throw SerializationError(std::string(what) + ": segment '" + seg->name() + "' holds no " +
                             what);
  return w;
}

// The codec of a handle that travels as its segment alone (see the contract above).
template <class H>
struct SegmentCodec {
  static void encode(Encoder& e, const H& h) { e.put(*h.segment()); }
  static H make(Decoder& d) { return H(AttachTo{}, decode_segment(d, H::kName)); }
  static void decode(Decoder& d, H& h) { h = make(d); }
};

}  // namespace parx::detail
