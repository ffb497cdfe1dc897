// parx/mpi.hpp — mpi4py's communicators in C++: joining an MPI job, point-to-point messages and
// collectives, for objects of any codec type and for typed buffers.
//
// MPI is the engine: parx never reimplements transport or process launch. A program started by
// mpiexec/mpirun (Open MPI, MPICH) or srun joins the job in parx::init; started alone, it never
// initialises MPI and runs on the local machine only (no daemon needed).
//
// Contract
//   * Joining. parx::init(argc, argv) recognises a launcher from its environment (Open MPI's
//     OMPI_COMM_WORLD_SIZE, PMIx's PMIX_RANK, MPICH/Slurm's PMI_RANK or PMI_SIZE; PARX_MPI=1
//     forces it, PARX_MPI=0 forbids it) and calls MPI_Init_thread asking for
//     MPI_THREAD_MULTIPLE, after it started the fork server (so no worker is ever forked from an
//     MPI process). thread_level() says what the library granted; below MULTIPLE, MPI calls must
//     come from one thread at a time. MPI is finalised at exit. An exception that escapes main
//     on any rank prints itself and aborts the whole job (MPI_Abort), so the others never hang.
//   * Objects: send/recv/isend/irecv/sendrecv and the collectives take and return values of any
//     type the codec encodes (parx/codec.hpp); the receiver names the type. A message that does
//     not decode as that type throws parx::SerializationError. Point-to-point, a std::vector of
//     trivially copyable elements or a std::string travels as its bytes (no encoding copy); its
//     receiver must name a container of the same element size.
//   * Buffers (mpi4py's uppercase methods): a std::span of trivially copyable elements is sent
//     as its bytes, with no serialisation and no copy. Reductions on buffers need arithmetic
//     elements and one of the standard operators (mpi::sum, prod, min, max, land, lor, lxor,
//     band, bor, bxor). Ranks are assumed to share one binary and one architecture.
//   * Sizes: messages, buffers and blocks above MPI's int count limit (2^31 - 1) work: parx
//     describes them with derived datatypes, or splits reductions into pieces.
//   * Errors: communicators return MPI errors instead of aborting; a failed call throws
//     parx::MpiError with MPI's error string. Using MPI in a program that was not launched under
//     MPI throws parx::InvalidState saying how to launch it.
//   * A Comm owns its communicator (freed on destruction) except world(), which lives until MPI
//     is finalised. Collective calls must be made by every rank of the communicator, in the same
//     order (MPI's rule).
//
// Thread-safety: with thread_level() == MPI_THREAD_MULTIPLE, different threads may use a Comm at
// once for point-to-point messages; collectives on one communicator must not overlap.
//
// Example (under `mpiexec -n 4 ./sweep`)
//   int main(int argc, char** argv) {
//     parx::init(argc, argv);
//     auto& world = parx::mpi::world();
//     double mine = run(world.rank());
//     auto all = world.gather(mine, 0);                     // objects: std::vector<double> on 0
//     std::vector<double> grid(1 << 20);
//     world.bcast(std::span(grid), 0);                      // buffers: no copy
//     double total = world.allreduce(mine, parx::mpi::sum); // every rank
//   }
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "parx/codec.hpp"
#include "parx/errors.hpp"

namespace parx {

// An MPI call failed; what() holds MPI's error string, code() its error code.
class MpiError : public Error {
 public:
  MpiError(int code, const std::string& what) : Error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

namespace mpi {

inline const int any_source = MPI_ANY_SOURCE;
inline const int any_tag = MPI_ANY_TAG;

// ---- the job ------------------------------------------------------------------------------------

class Comm;

// True when this process was started by an MPI launcher and joined the job in parx::init.
bool launched() noexcept;
// The thread level MPI granted (MPI_THREAD_SINGLE … MPI_THREAD_MULTIPLE); -1 before MPI starts.
int thread_level() noexcept;
// The MPI library's own description ("Open MPI v4.1.4, …", "MPICH Version: 4.0.2 …"), whether
// or not this process was launched under MPI.
std::string library_version();
// The communicator of the whole job. parx::InvalidState if the program was not launched under
// MPI (or parx::init was not called).
Comm& world();
// world().rank() and world().size(); 0 and 1 when not launched under MPI.
int rank();
int size();
// This host's name (MPI_Get_processor_name under MPI, gethostname otherwise).
std::string host_name();

// ---- operators ----------------------------------------------------------------------------------

namespace detail {
enum class OpKind { sum, prod, min, max, land, lor, lxor, band, bor, bxor };
// MPI_Reduce to a root, MPI_Allreduce, MPI_Scan.
enum class Reduction { to_root, all, scan };
MPI_Op native_op(OpKind k);
}  // namespace detail

// The standard reduction operators: each maps to MPI's own operator (buffers and arithmetic
// objects) and is also a C++ function object (any object type that supports it).
#define PARX_MPI_OP(Name, Kind, Expr)                            \
  struct Name##_op {                                             \
    static constexpr detail::OpKind kind = detail::OpKind::Kind; \
    template <class T>                                           \
    T operator()(const T& a, const T& b) const {                 \
      return Expr;                                               \
    }                                                            \
  };                                                             \
  inline constexpr Name##_op Name {}
PARX_MPI_OP(sum, sum, a + b);
PARX_MPI_OP(prod, prod, a* b);
PARX_MPI_OP(min, min, b < a ? b : a);
PARX_MPI_OP(max, max, a < b ? b : a);
PARX_MPI_OP(land, land, static_cast<T>(a&& b));
PARX_MPI_OP(lor, lor, static_cast<T>(a || b));
PARX_MPI_OP(lxor, lxor, static_cast<T>(!a != !b));
PARX_MPI_OP(band, band, static_cast<T>(a& b));
PARX_MPI_OP(bor, bor, static_cast<T>(a | b));
PARX_MPI_OP(bxor, bxor, static_cast<T>(a ^ b));
#undef PARX_MPI_OP

// ---- messages -----------------------------------------------------------------------------------

// Where a received (or probed) message came from, its tag and its size in bytes.
struct Status {
  int source = MPI_ANY_SOURCE;
  int tag = MPI_ANY_TAG;
  std::size_t bytes = 0;
  // Elements of type T in the message.
  template <class T>
  std::size_t count() const noexcept {
    return bytes / sizeof(T);
  }
};

namespace detail {

template <class T>
struct is_span : std::false_type {};
template <class T, std::size_t E>
struct is_span<std::span<T, E>> : std::true_type {};
template <class T>
concept Object = !is_span<std::remove_cvref_t<T>>::value;
template <class T>
concept BufferElement = std::is_trivially_copyable_v<std::remove_const_t<T>>;

// MPI's datatype for an arithmetic type (MPI_DATATYPE_NULL for others).
template <class T>
MPI_Datatype arithmetic_type() noexcept {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, bool>)
    return MPI_CXX_BOOL;
  else if constexpr (std::is_same_v<U, char>)
    return MPI_CHAR;
  else if constexpr (std::is_same_v<U, signed char>)
    return MPI_SIGNED_CHAR;
  else if constexpr (std::is_same_v<U, unsigned char>)
    return MPI_UNSIGNED_CHAR;
  else if constexpr (std::is_same_v<U, short>)
    return MPI_SHORT;
  else if constexpr (std::is_same_v<U, unsigned short>)
    return MPI_UNSIGNED_SHORT;
  else if constexpr (std::is_same_v<U, int>)
    return MPI_INT;
  else if constexpr (std::is_same_v<U, unsigned>)
    return MPI_UNSIGNED;
  else if constexpr (std::is_same_v<U, long>)
    return MPI_LONG;
  else if constexpr (std::is_same_v<U, unsigned long>)
    return MPI_UNSIGNED_LONG;
  else if constexpr (std::is_same_v<U, long long>)
    return MPI_LONG_LONG;
  else if constexpr (std::is_same_v<U, unsigned long long>)
    return MPI_UNSIGNED_LONG_LONG;
  else if constexpr (std::is_same_v<U, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<U, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<U, long double>)
    return MPI_LONG_DOUBLE;
  else
    return MPI_DATATYPE_NULL;
}

template <class Op>
concept StandardOp = requires {
  Op::kind;
};

// Throws MpiError for a failed MPI call.
void check(int rc, const char* call);
// A datatype of `bytes` bytes sent as `count` elements: MPI_BYTE × bytes when it fits an int,
// else a committed derived type × 1 (freed by the destructor).
class ByteType {
 public:
  explicit ByteType(std::size_t bytes);
  ~ByteType();
  ByteType(const ByteType&) = delete;
  ByteType& operator=(const ByteType&) = delete;
  MPI_Datatype type() const noexcept { return type_; }
  int count() const noexcept { return count_; }

 private:
  MPI_Datatype type_ = MPI_BYTE;
  int count_ = 0;
  bool owned_ = false;
};

Status to_status(const MPI_Status& s);

}  // namespace detail

// A pending non-blocking send or buffer receive. wait() completes it (and gives its Status);
// test() completes it if it can. A Request still pending when destroyed is waited for, so the
// buffers it uses stay valid while MPI uses them.
class Request {
 public:
  Request() = default;
  Request(MPI_Request r, std::shared_ptr<const void> keep) : req_(r), keep_(std::move(keep)) {}
  Request(Request&& o) noexcept;
  Request& operator=(Request&& o) noexcept;
  ~Request();
  Status wait();
  // The Status once complete, else nullopt.
  std::optional<Status> test();
  bool done() const noexcept { return req_ == MPI_REQUEST_NULL; }
  MPI_Request& native() noexcept { return req_; }

 private:
  MPI_Request req_ = MPI_REQUEST_NULL;
  std::shared_ptr<const void> keep_;  // an object send's encoded bytes
};

// Waits for every request; the Statuses in order.
std::vector<Status> wait_all(std::span<Request> reqs);
// Waits for one request to finish; its index (reqs[i] is then done). parx::InvalidArgument if
// none is pending.
std::size_t wait_any(std::span<Request> reqs);

// A pending object receive (irecv): wait() gives the object, test() gives it if it has arrived.
template <class T>
class RecvRequest {
 public:
  RecvRequest(MPI_Comm comm, int source, int tag) : comm_(comm), source_(source), tag_(tag) {}
  T wait(Status* status = nullptr);
  std::optional<T> test(Status* status = nullptr);

 private:
  MPI_Comm comm_;
  int source_, tag_;
};

namespace detail {

// Receives the message MPI_Mprobe/MPI_Improbe matched; its bytes.
Bytes receive_matched(MPI_Message& msg, const MPI_Status& st, Status* status);
// The same into `n` bytes at `p` (the message's size).
void receive_matched_into(MPI_Message& msg, void* p, std::size_t n);

// Point-to-point objects that are contiguous containers of trivially copyable elements
// (std::vector, std::string) travel as their bytes: no encoding, no decoding copy.
template <class T>
struct is_raw_object : std::false_type {};
template <class E, class A>
struct is_raw_object<std::vector<E, A>>
    : std::bool_constant<std::is_trivially_copyable_v<E> && !std::is_same_v<E, bool>> {};
template <class C, class Tr, class A>
struct is_raw_object<std::basic_string<C, Tr, A>> : std::true_type {};
template <class T>
concept RawObject = is_raw_object<T>::value;

template <class T>
T receive_object(MPI_Message& msg, const MPI_Status& st, Status* status) {
  if constexpr (RawObject<T>) {
    using E = typename T::value_type;
    const Status s = to_status(st);
    if (s.bytes % sizeof(E) != 0) {
      (void)receive_matched(msg, st, nullptr);  // take it off the queue all the same
      throw SerializationError("parx::mpi: a message of " + std::to_string(s.bytes) +
                               " bytes is not a whole number of " + std::to_string(sizeof(E)) +
                               "-byte elements");
    }
    T out;
    out.resize(s.bytes / sizeof(E));
    receive_matched_into(msg, out.data(), s.bytes);
    if (status) *status = s;
    return out;
  } else {
    const Bytes b = receive_matched(msg, st, status);
    return decode<T>(std::span<const std::byte>(b.data(), b.size()));
  }
}

}  // namespace detail

// ---- Comm ---------------------------------------------------------------------------------------

class Comm {
 public:
  // Adopts `c`; frees it on destruction when `owned`.
  explicit Comm(MPI_Comm c, bool owned);
  Comm(Comm&& o) noexcept;
  Comm& operator=(Comm&& o) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;
  ~Comm();

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  MPI_Comm native() const noexcept { return comm_; }

  // A copy of this communicator (its own message space). Collective.
  Comm dup() const;
  // Ranks with the same `color` form a new communicator, ordered by `key` then by rank here.
  // A negative color (MPI_UNDEFINED) leaves the rank out: it gets an empty Comm (size 0).
  // Collective.
  Comm split(int color, int key = 0) const;
  // Blocks until every rank has called it. Collective.
  void barrier() const;

  // ---- point-to-point, objects -------------------------------------------------------------
  template <detail::Object T>
  void send(const T& obj, int dest, int tag = 0) const {
    if constexpr (detail::RawObject<T>) {
      send_bytes(obj.data(), obj.size() * sizeof(typename T::value_type), dest, tag);
    } else {
      const Bytes b = encode(obj);
      send_bytes(b.data(), b.size(), dest, tag);
    }
  }
  // Receives an object of type T from `source` (or any_source) with `tag` (or any_tag).
  template <class T>
  T recv(int source = MPI_ANY_SOURCE, int tag = MPI_ANY_TAG, Status* status = nullptr) const {
    require();
    MPI_Message msg;
    MPI_Status st;
    detail::check(MPI_Mprobe(source, tag, comm_, &msg, &st), "MPI_Mprobe");
    return detail::receive_object<T>(msg, st, status);
  }
  // The object is copied (or encoded) at once: `obj` may change or die before the send ends.
  template <detail::Object T>
  Request isend(const T& obj, int dest, int tag = 0) const {
    if constexpr (detail::RawObject<T>) {
      auto keep = std::make_shared<const T>(obj);
      MPI_Request r =
          isend_bytes(keep->data(), keep->size() * sizeof(typename T::value_type), dest, tag);
      return Request(r, std::move(keep));
    } else {
      auto b = std::make_shared<Bytes>(encode(obj));
      MPI_Request r = isend_bytes(b->data(), b->size(), dest, tag);
      return Request(r, std::move(b));
    }
  }
  template <class T>
  RecvRequest<T> irecv(int source = MPI_ANY_SOURCE, int tag = MPI_ANY_TAG) const {
    return RecvRequest<T>(comm_, source, tag);
  }
  // Sends `obj` to `dest` and receives a T from `source` at once (no deadlock between pairs).
  template <class T, detail::Object U>
  T sendrecv(const U& obj, int dest, int source, int sendtag = 0, int recvtag = MPI_ANY_TAG,
             Status* status = nullptr) const {
    Request r = isend(obj, dest, sendtag);
    T out = recv<T>(source, recvtag, status);
    r.wait();
    return out;
  }

  // ---- point-to-point, buffers -------------------------------------------------------------
  template <detail::BufferElement T, std::size_t E>
  void send(std::span<T, E> buf, int dest, int tag = 0) const {
    send_bytes(buf.data(), buf.size_bytes(), dest, tag);
  }
  // Receives into `buf`; parx::MpiError if the message is larger (MPI_ERR_TRUNCATE).
  template <detail::BufferElement T, std::size_t E>
  Status recv(std::span<T, E> buf, int source = MPI_ANY_SOURCE, int tag = MPI_ANY_TAG) const {
    static_assert(!std::is_const_v<T>, "parx::mpi::Comm::recv needs a writable span");
    return recv_into(buf.data(), buf.size_bytes(), source, tag);
  }
  // Receives a message of any length as a vector of T.
  template <detail::BufferElement T>
  std::vector<T> recv_vector(int source = MPI_ANY_SOURCE, int tag = MPI_ANY_TAG,
                             Status* status = nullptr) const;
  template <detail::BufferElement T, std::size_t E>
  Request isend(std::span<T, E> buf, int dest, int tag = 0) const {
    return Request(isend_bytes(buf.data(), buf.size_bytes(), dest, tag), nullptr);
  }
  template <detail::BufferElement T, std::size_t E>
  Request irecv(std::span<T, E> buf, int source = MPI_ANY_SOURCE, int tag = MPI_ANY_TAG) const {
    static_assert(!std::is_const_v<T>, "parx::mpi::Comm::irecv needs a writable span");
    return Request(irecv_into(buf.data(), buf.size_bytes(), source, tag), nullptr);
  }
  template <detail::BufferElement T, std::size_t E, detail::BufferElement U, std::size_t F>
  Status sendrecv(std::span<T, E> out, int dest, std::span<U, F> in, int source, int sendtag = 0,
                  int recvtag = MPI_ANY_TAG) const {
    return sendrecv_bytes(out.data(), out.size_bytes(), dest, sendtag, in.data(), in.size_bytes(),
                          source, recvtag);
  }

  // Waits for a matching message without receiving it.
  Status probe(int source = MPI_ANY_SOURCE, int tag = MPI_ANY_TAG) const;
  std::optional<Status> iprobe(int source = MPI_ANY_SOURCE, int tag = MPI_ANY_TAG) const;

  // ---- collectives, objects ----------------------------------------------------------------
  // `obj` from `root` on every rank (the argument is ignored elsewhere).
  template <detail::Object T>
  T bcast(const T& obj, int root = 0) const;
  // Rank i gets items[i] of root's vector (which must hold size() items).
  template <class T>
  T scatter(const std::vector<T>& items, int root = 0) const;
  // Every rank's `obj`, in rank order, on `root` (an empty vector elsewhere).
  template <detail::Object T>
  std::vector<T> gather(const T& obj, int root = 0) const;
  template <detail::Object T>
  std::vector<T> allgather(const T& obj) const;
  // Rank i sends items[j] to rank j and gets, at [j], what rank j sent it.
  template <class T>
  std::vector<T> alltoall(const std::vector<T>& items) const;
  // op(…op(op(x0, x1), x2)…, xn-1) on `root` (a default T elsewhere). `op` is one of the
  // standard operators or any callable T(const T&, const T&); rank order is kept, so it need not
  // be commutative.
  template <detail::Object T, class Op>
  T reduce(const T& obj, Op op, int root = 0) const;
  template <detail::Object T, class Op>
  T allreduce(const T& obj, Op op) const;
  // Inclusive prefix: rank r gets op over ranks 0..r.
  template <detail::Object T, class Op>
  T scan(const T& obj, Op op) const;

  // ---- collectives, buffers ----------------------------------------------------------------
  // Root's buffer into everyone's (same length on every rank).
  template <detail::BufferElement T, std::size_t E>
  void bcast(std::span<T, E> buf, int root = 0) const {
    bcast_bytes(buf.data(), buf.size_bytes(), root);
  }
  // Root's `send` (size() blocks of recv.size() elements) into each rank's `recv`.
  template <detail::BufferElement T, std::size_t E, detail::BufferElement U, std::size_t F>
  void scatter(std::span<T, E> send, std::span<U, F> recv, int root = 0) const {
    blocks("scatter", send.size_bytes(), recv.size_bytes(), rank_ == root);
    scatter_bytes(send.data(), recv.data(), recv.size_bytes(), root);
  }
  // Each rank's `send` into block r of root's `recv` (size() blocks of send.size() elements).
  template <detail::BufferElement T, std::size_t E, detail::BufferElement U, std::size_t F>
  void gather(std::span<T, E> send, std::span<U, F> recv, int root = 0) const {
    blocks("gather", recv.size_bytes(), send.size_bytes(), rank_ == root);
    gather_bytes(send.data(), send.size_bytes(), recv.data(), root);
  }
  template <detail::BufferElement T, std::size_t E, detail::BufferElement U, std::size_t F>
  void allgather(std::span<T, E> send, std::span<U, F> recv) const {
    blocks("allgather", recv.size_bytes(), send.size_bytes(), true);
    allgather_bytes(send.data(), send.size_bytes(), recv.data());
  }
  // Block j of `send` goes to rank j; block i of `recv` comes from rank i.
  template <detail::BufferElement T, std::size_t E, detail::BufferElement U, std::size_t F>
  void alltoall(std::span<T, E> send, std::span<U, F> recv) const {
    require();
    // Blocks of whole elements: send.size() must divide by size(); recv holds as many bytes.
    const std::size_t block = send.size() / static_cast<std::size_t>(size_) * sizeof(T);
    blocks("alltoall", send.size_bytes(), block, true);
    blocks("alltoall", recv.size_bytes(), block, true);
    alltoall_bytes(send.data(), recv.data(), block);
  }
  // Element-wise reductions with a standard operator, on arithmetic elements. `out` matters on
  // root only (reduce); in and out have the same length.
  template <class T, std::size_t E, class U, std::size_t F, detail::StandardOp Op>
  void reduce(std::span<T, E> in, std::span<U, F> out, Op, int root = 0) const {
    using V = std::remove_const_t<T>;
    static_assert(std::is_same_v<V, U>, "parx::mpi: reduce needs in and out of one type");
    reduce_typed(in.data(), rank_ == root ? out.data() : nullptr, in.size(), out.size(),
                 detail::arithmetic_type<V>(), Op::kind, root, detail::Reduction::to_root);
  }
  template <class T, std::size_t E, class U, std::size_t F, detail::StandardOp Op>
  void allreduce(std::span<T, E> in, std::span<U, F> out, Op) const {
    using V = std::remove_const_t<T>;
    static_assert(std::is_same_v<V, U>, "parx::mpi: allreduce needs in and out of one type");
    reduce_typed(in.data(), out.data(), in.size(), out.size(), detail::arithmetic_type<V>(),
                 Op::kind, -1, detail::Reduction::all);
  }
  // In place: `inout` becomes the reduction over all ranks.
  template <class T, std::size_t E, detail::StandardOp Op>
  void allreduce(std::span<T, E> inout, Op) const {
    reduce_typed(nullptr, inout.data(), inout.size(), inout.size(), detail::arithmetic_type<T>(),
                 Op::kind, -1, detail::Reduction::all);
  }
  template <class T, std::size_t E, class U, std::size_t F, detail::StandardOp Op>
  void scan(std::span<T, E> in, std::span<U, F> out, Op) const {
    using V = std::remove_const_t<T>;
    static_assert(std::is_same_v<V, U>, "parx::mpi: scan needs in and out of one type");
    reduce_typed(in.data(), out.data(), in.size(), out.size(), detail::arithmetic_type<V>(),
                 Op::kind, -1, detail::Reduction::scan);
  }

 private:
  void require() const;
  void send_bytes(const void* p, std::size_t n, int dest, int tag) const;
  MPI_Request isend_bytes(const void* p, std::size_t n, int dest, int tag) const;
  Status recv_into(void* p, std::size_t n, int source, int tag) const;
  MPI_Request irecv_into(void* p, std::size_t n, int source, int tag) const;
  Status sendrecv_bytes(const void* out, std::size_t on, int dest, int sendtag, void* in,
                        std::size_t in_n, int source, int recvtag) const;
  void bcast_bytes(void* p, std::size_t n, int root) const;
  Bytes bcast_message(Bytes b, int root) const;
  // Each rank's bytes, in rank order, on root (all ranks when root < 0).
  std::vector<Bytes> gather_messages(const Bytes& mine, int root) const;
  // Root's items[i] to rank i.
  Bytes scatter_messages(const std::vector<Bytes>* items, int root) const;
  std::vector<Bytes> alltoall_messages(const std::vector<Bytes>& items) const;
  void blocks(const char* what, std::size_t whole, std::size_t block, bool check) const;
  void scatter_bytes(const void* send, void* recv, std::size_t block, int root) const;
  void gather_bytes(const void* send, std::size_t block, void* recv, int root) const;
  void allgather_bytes(const void* send, std::size_t block, void* recv) const;
  void alltoall_bytes(const void* send, void* recv, std::size_t block) const;
  // `in` null: in place.
  void reduce_typed(const void* in, void* out, std::size_t n, std::size_t out_n, MPI_Datatype t,
                    detail::OpKind op, int root, detail::Reduction how) const;

  template <class T>
  static T decode_as(const Bytes& b) {
    return decode<T>(std::span<const std::byte>(b.data(), b.size()));
  }
  template <class T>
  static std::vector<T> decode_all(const std::vector<Bytes>& bs) {
    std::vector<T> out;
    out.reserve(bs.size());
    for (const auto& b : bs)
      out.push_back(decode_as<T>(b));
    return out;
  }
  template <class T, class Op>
  static T fold(std::vector<T> xs, Op& op, std::size_t upto) {
    T acc = std::move(xs[0]);
    for (std::size_t i = 1; i <= upto; ++i)
      acc = op(acc, xs[i]);
    return acc;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
  int rank_ = 0, size_ = 0;
};

// ---- templates ----------------------------------------------------------------------------------

template <class T>
T RecvRequest<T>::wait(Status* status) {
  MPI_Message msg;
  MPI_Status st;
  detail::check(MPI_Mprobe(source_, tag_, comm_, &msg, &st), "MPI_Mprobe");
  return detail::receive_object<T>(msg, st, status);
}

template <class T>
std::optional<T> RecvRequest<T>::test(Status* status) {
  MPI_Message msg;
  MPI_Status st;
  int flag = 0;
  detail::check(MPI_Improbe(source_, tag_, comm_, &flag, &msg, &st), "MPI_Improbe");
  if (!flag) return std::nullopt;
  return detail::receive_object<T>(msg, st, status);
}

template <detail::BufferElement T>
std::vector<T> Comm::recv_vector(int source, int tag, Status* status) const {
  return recv<std::vector<T>>(source, tag, status);
}

template <detail::Object T>
T Comm::bcast(const T& obj, int root) const {
  Bytes b;
  if (rank_ == root) b = encode(obj);
  const Bytes got = bcast_message(std::move(b), root);
  if (rank_ == root) return obj;
  return decode_as<T>(got);
}

template <class T>
T Comm::scatter(const std::vector<T>& items, int root) const {
  if (rank_ != root) return decode_as<T>(scatter_messages(nullptr, root));
  if (items.size() != static_cast<std::size_t>(size_))
    throw InvalidArgument("parx::mpi::Comm::scatter: root has " + std::to_string(items.size()) +
                          " items for " + std::to_string(size_) + " ranks");
  std::vector<Bytes> enc;
  enc.reserve(items.size());
  for (const auto& x : items)
    enc.push_back(encode(x));
  (void)scatter_messages(&enc, root);
  return items[static_cast<std::size_t>(rank_)];
}

template <detail::Object T>
std::vector<T> Comm::gather(const T& obj, int root) const {
  auto all = gather_messages(encode(obj), root);
  if (rank_ != root) return {};
  return decode_all<T>(all);
}

template <detail::Object T>
std::vector<T> Comm::allgather(const T& obj) const {
  return decode_all<T>(gather_messages(encode(obj), -1));
}

template <class T>
std::vector<T> Comm::alltoall(const std::vector<T>& items) const {
  if (items.size() != static_cast<std::size_t>(size_))
    throw InvalidArgument("parx::mpi::Comm::alltoall: " + std::to_string(items.size()) +
                          " items for " + std::to_string(size_) + " ranks");
  std::vector<Bytes> enc;
  enc.reserve(items.size());
  for (const auto& x : items)
    enc.push_back(encode(x));
  return decode_all<T>(alltoall_messages(enc));
}

template <detail::Object T, class Op>
T Comm::reduce(const T& obj, Op op, int root) const {
  if constexpr (detail::StandardOp<Op> && std::is_arithmetic_v<T>) {
    T out{};
    reduce_typed(&obj, rank_ == root ? &out : nullptr, 1, 1, detail::arithmetic_type<T>(), Op::kind,
                 root, detail::Reduction::to_root);
    return out;
  } else {
    auto all = gather(obj, root);
    if (rank_ != root) return T{};
    const std::size_t last = all.size() - 1;
    return fold(std::move(all), op, last);
  }
}

template <detail::Object T, class Op>
T Comm::allreduce(const T& obj, Op op) const {
  if constexpr (detail::StandardOp<Op> && std::is_arithmetic_v<T>) {
    T out{};
    reduce_typed(&obj, &out, 1, 1, detail::arithmetic_type<T>(), Op::kind, -1,
                 detail::Reduction::all);
    return out;
  } else {
    auto all = allgather(obj);  // every rank folds in the same order: the same result
    const std::size_t last = all.size() - 1;
    return fold(std::move(all), op, last);
  }
}

template <detail::Object T, class Op>
T Comm::scan(const T& obj, Op op) const {
  if constexpr (detail::StandardOp<Op> && std::is_arithmetic_v<T>) {
    T out{};
    reduce_typed(&obj, &out, 1, 1, detail::arithmetic_type<T>(), Op::kind, -1,
                 detail::Reduction::scan);
    return out;
  } else {
    auto all = allgather(obj);
    return fold(std::move(all), op, static_cast<std::size_t>(rank_));
  }
}

}  // namespace mpi
}  // namespace parx
