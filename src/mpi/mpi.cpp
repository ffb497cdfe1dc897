// parx::mpi: joining an MPI job, and Comm's messages and collectives (see parx/mpi.hpp).
#include "parx/mpi.hpp"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

#include "core/env.hpp"
#include "mpi/mpi_join.hpp"

namespace parx::mpi {

namespace {

bool g_launched = false;
bool g_we_initialized = false;
int g_level = -1;
Comm* g_world = nullptr;  // lives until MPI is finalised
std::terminate_handler g_previous_terminate = nullptr;

bool mpi_finalized() {
  int f = 0;
  MPI_Finalized(&f);
  return f != 0;
}

bool mpi_initialized() {
  int i = 0;
  MPI_Initialized(&i);
  return i != 0;
}

// Waits, at most `limit`, until the launcher has read what this rank wrote to `fd`. A launcher
// that learns of an MPI_Abort may kill its ranks and exit before it has drained their output
// pipes (MPICH's hydra does, under load), and the last words of the aborting rank would be lost.
// A pipe reports its unread bytes with FIONREAD on either end, a socket its unsent ones with
// SIOCOUTQ; anything else (a terminal, a file) needs no wait.
void wait_until_read(int fd, std::chrono::milliseconds limit) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return;
  unsigned long request = 0;
  if (S_ISFIFO(st.st_mode)) {
    request = FIONREAD;
  } else if (S_ISSOCK(st.st_mode)) {
    request = SIOCOUTQ;
  } else {
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int pending = 0;
    if (ioctl(fd, request, &pending) != 0 || pending <= 0) return;
    if (std::chrono::steady_clock::now() >= deadline) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// An exception escaped main on this rank: say so, and end the whole job rather than leave the
// other ranks waiting for this one forever.
[[noreturn]] void abort_job_on_terminate() {
  if (mpi_initialized() && !mpi_finalized()) {
    std::string what = "unknown exception";
    if (auto e = std::current_exception()) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        what = x.what();
      } catch (...) {
      }
    }
    std::fprintf(stderr, "parx: rank %d of %d on %s ended with an uncaught exception: %s\n", rank(),
                 size(), host_name().c_str(), what.c_str());
    std::fprintf(stderr, "parx: aborting the MPI job\n");
    std::fflush(stderr);
    std::fflush(stdout);
    wait_until_read(STDOUT_FILENO, std::chrono::seconds(1));
    wait_until_read(STDERR_FILENO, std::chrono::seconds(1));
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  if (g_previous_terminate) g_previous_terminate();
  std::abort();
}

void finalize_at_exit() {
  if (!g_we_initialized || mpi_finalized()) return;
  delete g_world;
  g_world = nullptr;
  MPI_Finalize();
}

}  // namespace

namespace detail {

bool launcher_detected() {
  if (const int force = parx::detail::env_mpi(); force >= 0) return force == 1;
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

void join_if_launched(int* argc, char*** argv) {
  if (g_launched || !launcher_detected()) return;
  if (!mpi_initialized()) {
    int provided = MPI_THREAD_SINGLE;
    const int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) throw MpiError(rc, "parx::init: MPI_Init_thread failed");
    g_we_initialized = true;
    g_level = provided;
    std::atexit(finalize_at_exit);
  } else {  // the program initialised MPI itself
    MPI_Query_thread(&g_level);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  g_world = new Comm(MPI_COMM_WORLD, false);
  g_launched = true;
  g_previous_terminate = std::set_terminate(abort_job_on_terminate);
}

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
  throw MpiError(rc, std::string("parx::MpiError: ") + call + " failed: " +
                         (len ? std::string(msg, static_cast<std::size_t>(len))
                              : "error " + std::to_string(rc)));
}

MPI_Op native_op(OpKind k) {
  switch (k) {
    case OpKind::sum:
      return MPI_SUM;
    case OpKind::prod:
      return MPI_PROD;
    case OpKind::min:
      return MPI_MIN;
    case OpKind::max:
      return MPI_MAX;
    case OpKind::land:
      return MPI_LAND;
    case OpKind::lor:
      return MPI_LOR;
    case OpKind::lxor:
      return MPI_LXOR;
    case OpKind::band:
      return MPI_BAND;
    case OpKind::bor:
      return MPI_BOR;
    case OpKind::bxor:
      return MPI_BXOR;
  }
  return MPI_OP_NULL;
}

ByteType::ByteType(std::size_t bytes) {
  if (bytes <= static_cast<std::size_t>(INT_MAX)) {
    count_ = static_cast<int>(bytes);
    return;
  }
  // Beyond int counts: 1 GiB blocks plus the remainder, as one element of a derived type.
  constexpr std::size_t kBlock = std::size_t{1} << 30;
  const std::size_t q = bytes / kBlock, r = bytes % kBlock;
  MPI_Datatype block;
  check(MPI_Type_contiguous(static_cast<int>(kBlock), MPI_BYTE, &block), "MPI_Type_contiguous");
  if (r == 0) {
    check(MPI_Type_contiguous(static_cast<int>(q), block, &type_), "MPI_Type_contiguous");
  } else {
    int lens[2] = {static_cast<int>(q), static_cast<int>(r)};
    MPI_Aint displs[2] = {0, static_cast<MPI_Aint>(q * kBlock)};
    MPI_Datatype types[2] = {block, MPI_BYTE};
    check(MPI_Type_create_struct(2, lens, displs, types, &type_), "MPI_Type_create_struct");
  }
  MPI_Type_free(&block);
  check(MPI_Type_commit(&type_), "MPI_Type_commit");
  count_ = 1;
  owned_ = true;
}

ByteType::~ByteType() {
  if (owned_ && !mpi_finalized()) MPI_Type_free(&type_);
}

Status to_status(const MPI_Status& s) {
  Status out;
  out.source = s.MPI_SOURCE;
  out.tag = s.MPI_TAG;
  MPI_Count n = 0;
  MPI_Get_elements_x(&s, MPI_BYTE, &n);
  out.bytes = n > 0 ? static_cast<std::size_t>(n) : 0;
  return out;
}

Bytes receive_matched(MPI_Message& msg, const MPI_Status& st, Status* status) {
  const Status s = to_status(st);
  Bytes b;
  b.resize(s.bytes);
  const ByteType t(s.bytes);
  MPI_Status st2;
  check(MPI_Mrecv(b.data(), t.count(), t.type(), &msg, &st2), "MPI_Mrecv");
  if (status) *status = s;
  return b;
}

void receive_matched_into(MPI_Message& msg, void* p, std::size_t n) {
  const ByteType t(n);
  MPI_Status st;
  check(MPI_Mrecv(p, t.count(), t.type(), &msg, &st), "MPI_Mrecv");
}

}  // namespace detail

// ---- the job ------------------------------------------------------------------------------------

bool launched() noexcept {
  return g_launched;
}

int thread_level() noexcept {
  return g_level;
}

std::string library_version() {
  char v[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(v, &len);
  std::string s(v, static_cast<std::size_t>(std::max(len, 0)));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0' || s.back() == ' '))
    s.pop_back();
  return s;
}

Comm& world() {
  if (!g_world)
    throw InvalidState(
        "parx::mpi::world: this program was not launched under MPI. Start it with "
        "`parx run -n N prog` or `mpiexec -n N prog` (and call parx::init(argc, argv) first in "
        "main); run alone, a parx program uses the local machine only");
  if (mpi_finalized()) throw InvalidState("parx::mpi::world: MPI is already finalised");
  return *g_world;
}

int rank() {
  return g_world ? g_world->rank() : 0;
}

int size() {
  return g_world ? g_world->size() : 1;
}

std::string host_name() {
  if (mpi_initialized() && !mpi_finalized()) {
    char name[MPI_MAX_PROCESSOR_NAME];
    int len = 0;
    if (MPI_Get_processor_name(name, &len) == MPI_SUCCESS)
      return std::string(name, static_cast<std::size_t>(len));
  }
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

// ---- requests -----------------------------------------------------------------------------------

Request::Request(Request&& o) noexcept
    : req_(std::exchange(o.req_, MPI_REQUEST_NULL)), keep_(std::move(o.keep_)) {}

Request& Request::operator=(Request&& o) noexcept {
  if (this != &o) {
    if (req_ != MPI_REQUEST_NULL && !mpi_finalized()) MPI_Wait(&req_, MPI_STATUS_IGNORE);
    req_ = std::exchange(o.req_, MPI_REQUEST_NULL);
    keep_ = std::move(o.keep_);
  }
  return *this;
}

Request::~Request() {
  if (req_ != MPI_REQUEST_NULL && !mpi_finalized()) MPI_Wait(&req_, MPI_STATUS_IGNORE);
}

Status Request::wait() {
  MPI_Status st;
  detail::check(MPI_Wait(&req_, &st), "MPI_Wait");
  keep_.reset();
  return detail::to_status(st);
}

std::optional<Status> Request::test() {
  if (req_ == MPI_REQUEST_NULL) return Status{};
  int flag = 0;
  MPI_Status st;
  detail::check(MPI_Test(&req_, &flag, &st), "MPI_Test");
  if (!flag) return std::nullopt;
  keep_.reset();
  return detail::to_status(st);
}

std::vector<Status> wait_all(std::span<Request> reqs) {
  std::vector<MPI_Request> rs(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i)
    rs[i] = reqs[i].native();
  std::vector<MPI_Status> sts(reqs.size());
  const int rc = MPI_Waitall(static_cast<int>(rs.size()), rs.data(), sts.data());
  for (std::size_t i = 0; i < reqs.size(); ++i)
    reqs[i].native() = rs[i];
  detail::check(rc, "MPI_Waitall");
  std::vector<Status> out;
  out.reserve(sts.size());
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    out.push_back(detail::to_status(sts[i]));
    reqs[i] = Request();  // releases the kept bytes
  }
  return out;
}

std::size_t wait_any(std::span<Request> reqs) {
  std::vector<MPI_Request> rs(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i)
    rs[i] = reqs[i].native();
  int index = MPI_UNDEFINED;
  MPI_Status st;
  const int rc = MPI_Waitany(static_cast<int>(rs.size()), rs.data(), &index, &st);
  for (std::size_t i = 0; i < reqs.size(); ++i)
    reqs[i].native() = rs[i];
  detail::check(rc, "MPI_Waitany");
  if (index == MPI_UNDEFINED) throw InvalidArgument("parx::mpi::wait_any: no request is pending");
  reqs[static_cast<std::size_t>(index)] = Request();
  return static_cast<std::size_t>(index);
}

// ---- Comm ---------------------------------------------------------------------------------------

Comm::Comm(MPI_Comm c, bool owned) : comm_(c), owned_(owned) {
  if (c != MPI_COMM_NULL) {
    detail::check(MPI_Comm_rank(c, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(c, &size_), "MPI_Comm_size");
  } else {
    rank_ = -1;
    size_ = 0;
  }
}

Comm::Comm(Comm&& o) noexcept
    : comm_(std::exchange(o.comm_, MPI_COMM_NULL)),
      owned_(std::exchange(o.owned_, false)),
      rank_(o.rank_),
      size_(o.size_) {}

Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    if (owned_ && comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
    comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
    owned_ = std::exchange(o.owned_, false);
    rank_ = o.rank_;
    size_ = o.size_;
  }
  return *this;
}

Comm::~Comm() {
  if (owned_ && comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
}

void Comm::require() const {
  if (comm_ == MPI_COMM_NULL)
    throw InvalidState(
        "parx::mpi::Comm: this rank is not in the communicator (split with a negative color)");
}

Comm Comm::dup() const {
  require();
  MPI_Comm c;
  detail::check(MPI_Comm_dup(comm_, &c), "MPI_Comm_dup");
  return Comm(c, true);
}

Comm Comm::split(int color, int key) const {
  require();
  MPI_Comm c;
  detail::check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &c),
                "MPI_Comm_split");
  return Comm(c, c != MPI_COMM_NULL);
}

void Comm::barrier() const {
  require();
  detail::check(MPI_Barrier(comm_), "MPI_Barrier");
}

void Comm::send_bytes(const void* p, std::size_t n, int dest, int tag) const {
  require();
  const detail::ByteType t(n);
  detail::check(MPI_Send(p, t.count(), t.type(), dest, tag, comm_), "MPI_Send");
}

MPI_Request Comm::isend_bytes(const void* p, std::size_t n, int dest, int tag) const {
  require();
  const detail::ByteType t(n);  // freeing a datatype after posting is allowed
  MPI_Request r;
  detail::check(MPI_Isend(p, t.count(), t.type(), dest, tag, comm_, &r), "MPI_Isend");
  return r;
}

Status Comm::recv_into(void* p, std::size_t n, int source, int tag) const {
  require();
  const detail::ByteType t(n);
  MPI_Status st;
  detail::check(MPI_Recv(p, t.count(), t.type(), source, tag, comm_, &st), "MPI_Recv");
  return detail::to_status(st);
}

MPI_Request Comm::irecv_into(void* p, std::size_t n, int source, int tag) const {
  require();
  const detail::ByteType t(n);
  MPI_Request r;
  detail::check(MPI_Irecv(p, t.count(), t.type(), source, tag, comm_, &r), "MPI_Irecv");
  return r;
}

Status Comm::sendrecv_bytes(const void* out, std::size_t on, int dest, int sendtag, void* in,
                            std::size_t in_n, int source, int recvtag) const {
  require();
  const detail::ByteType to(on), ti(in_n);
  MPI_Status st;
  detail::check(MPI_Sendrecv(out, to.count(), to.type(), dest, sendtag, in, ti.count(), ti.type(),
                             source, recvtag, comm_, &st),
                "MPI_Sendrecv");
  return detail::to_status(st);
}

Status Comm::probe(int source, int tag) const {
  require();
  MPI_Status st;
  detail::check(MPI_Probe(source, tag, comm_, &st), "MPI_Probe");
  return detail::to_status(st);
}

std::optional<Status> Comm::iprobe(int source, int tag) const {
  require();
  MPI_Status st;
  int flag = 0;
  detail::check(MPI_Iprobe(source, tag, comm_, &flag, &st), "MPI_Iprobe");
  if (!flag) return std::nullopt;
  return detail::to_status(st);
}

void Comm::bcast_bytes(void* p, std::size_t n, int root) const {
  require();
  const detail::ByteType t(n);
  detail::check(MPI_Bcast(p, t.count(), t.type(), root, comm_), "MPI_Bcast");
}

Bytes Comm::bcast_message(Bytes b, int root) const {
  require();
  std::uint64_t n = b.size();
  detail::check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm_), "MPI_Bcast");
  if (rank_ != root) b.resize(n);
  bcast_bytes(b.data(), n, root);
  return b;
}

namespace {

// Objects of different sizes per rank travel through the v-collectives, whose counts and
// displacements are ints. Longer messages go in rounds: in each, every rank moves at most
// `piece` bytes of each message, so every count and displacement of a round fits an int.
std::size_t piece_for(int ranks) {
  return static_cast<std::size_t>(INT_MAX) / static_cast<std::size_t>(std::max(ranks, 1));
}

std::size_t rounds_for(std::size_t longest, std::size_t piece) {
  return std::max<std::size_t>(1, (longest + piece - 1) / piece);
}

// The part of a message of `len` bytes that round `k` carries.
std::pair<std::size_t, std::size_t> slice(std::size_t len, std::size_t k, std::size_t piece) {
  const std::size_t begin = std::min(len, k * piece);
  return {begin, std::min(len, begin + piece) - begin};
}

}  // namespace

std::vector<Bytes> Comm::gather_messages(const Bytes& mine, int root) const {
  require();
  const auto p = static_cast<std::size_t>(size_);
  std::vector<std::uint64_t> sizes(p);
  const std::uint64_t my = mine.size();
  detail::check(MPI_Allgather(&my, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, comm_),
                "MPI_Allgather");
  const bool receiver = root < 0 || rank_ == root;
  std::vector<Bytes> out(receiver ? p : 0);
  if (receiver)
    for (std::size_t i = 0; i < p; ++i)
      out[i].resize(sizes[i]);
  const std::size_t piece = piece_for(size_);
  const std::size_t rounds = rounds_for(*std::max_element(sizes.begin(), sizes.end()), piece);
  std::vector<int> counts(p), displs(p);
  Bytes staging;
  for (std::size_t k = 0; k < rounds; ++k) {
    std::size_t total = 0;
    for (std::size_t i = 0; i < p; ++i) {
      const auto [b, n] = slice(sizes[i], k, piece);
      counts[i] = static_cast<int>(n);
      displs[i] = static_cast<int>(total);
      total += n;
    }
    staging.resize(receiver ? total : 0);
    const auto [mb, mn] = slice(my, k, piece);
    if (root < 0)
      detail::check(MPI_Allgatherv(mine.data() + mb, static_cast<int>(mn), MPI_BYTE, staging.data(),
                                   counts.data(), displs.data(), MPI_BYTE, comm_),
                    "MPI_Allgatherv");
    else
      detail::check(MPI_Gatherv(mine.data() + mb, static_cast<int>(mn), MPI_BYTE, staging.data(),
                                counts.data(), displs.data(), MPI_BYTE, root, comm_),
                    "MPI_Gatherv");
    if (receiver)
      for (std::size_t i = 0; i < p; ++i) {
        const auto [b, n] = slice(sizes[i], k, piece);
        if (n) std::memcpy(out[i].data() + b, staging.data() + displs[i], n);
      }
  }
  return out;
}

Bytes Comm::scatter_messages(const std::vector<Bytes>* items, int root) const {
  require();
  const auto p = static_cast<std::size_t>(size_);
  std::vector<std::uint64_t> sizes(p);
  if (rank_ == root)
    for (std::size_t i = 0; i < p; ++i)
      sizes[i] = (*items)[i].size();
  detail::check(MPI_Bcast(sizes.data(), static_cast<int>(p), MPI_UINT64_T, root, comm_),
                "MPI_Bcast");
  const std::uint64_t my = sizes[static_cast<std::size_t>(rank_)];
  Bytes out;
  out.resize(my);
  const std::size_t piece = piece_for(size_);
  const std::size_t rounds = rounds_for(*std::max_element(sizes.begin(), sizes.end()), piece);
  std::vector<int> counts(p), displs(p);
  Bytes staging;
  for (std::size_t k = 0; k < rounds; ++k) {
    if (rank_ == root) {
      std::size_t total = 0;
      for (std::size_t i = 0; i < p; ++i) {
        const auto [b, n] = slice(sizes[i], k, piece);
        counts[i] = static_cast<int>(n);
        displs[i] = static_cast<int>(total);
        total += n;
      }
      staging.resize(total);
      for (std::size_t i = 0; i < p; ++i) {
        const auto [b, n] = slice(sizes[i], k, piece);
        if (n) std::memcpy(staging.data() + displs[i], (*items)[i].data() + b, n);
      }
    }
    const auto [mb, mn] = slice(my, k, piece);
    detail::check(MPI_Scatterv(staging.data(), counts.data(), displs.data(), MPI_BYTE,
                               out.data() + mb, static_cast<int>(mn), MPI_BYTE, root, comm_),
                  "MPI_Scatterv");
  }
  return out;
}

std::vector<Bytes> Comm::alltoall_messages(const std::vector<Bytes>& items) const {
  require();
  const auto p = static_cast<std::size_t>(size_);
  std::vector<std::uint64_t> send_sizes(p), recv_sizes(p);
  for (std::size_t i = 0; i < p; ++i)
    send_sizes[i] = items[i].size();
  detail::check(
      MPI_Alltoall(send_sizes.data(), 1, MPI_UINT64_T, recv_sizes.data(), 1, MPI_UINT64_T, comm_),
      "MPI_Alltoall");
  std::uint64_t longest = std::max(*std::max_element(send_sizes.begin(), send_sizes.end()),
                                   *std::max_element(recv_sizes.begin(), recv_sizes.end()));
  detail::check(MPI_Allreduce(MPI_IN_PLACE, &longest, 1, MPI_UINT64_T, MPI_MAX, comm_),
                "MPI_Allreduce");
  std::vector<Bytes> out(p);
  for (std::size_t i = 0; i < p; ++i)
    out[i].resize(recv_sizes[i]);
  const std::size_t piece = piece_for(size_);
  const std::size_t rounds = rounds_for(longest, piece);
  std::vector<int> sc(p), sd(p), rc(p), rd(p);
  Bytes sbuf, rbuf;
  for (std::size_t k = 0; k < rounds; ++k) {
    std::size_t st = 0, rt = 0;
    for (std::size_t i = 0; i < p; ++i) {
      const auto [sb, sn] = slice(send_sizes[i], k, piece);
      const auto [rb, rn] = slice(recv_sizes[i], k, piece);
      sc[i] = static_cast<int>(sn);
      sd[i] = static_cast<int>(st);
      rc[i] = static_cast<int>(rn);
      rd[i] = static_cast<int>(rt);
      st += sn;
      rt += rn;
    }
    sbuf.resize(st);
    rbuf.resize(rt);
    for (std::size_t i = 0; i < p; ++i) {
      const auto [b, n] = slice(send_sizes[i], k, piece);
      if (n) std::memcpy(sbuf.data() + sd[i], items[i].data() + b, n);
    }
    detail::check(MPI_Alltoallv(sbuf.data(), sc.data(), sd.data(), MPI_BYTE, rbuf.data(), rc.data(),
                                rd.data(), MPI_BYTE, comm_),
                  "MPI_Alltoallv");
    for (std::size_t i = 0; i < p; ++i) {
      const auto [b, n] = slice(recv_sizes[i], k, piece);
      if (n) std::memcpy(out[i].data() + b, rbuf.data() + rd[i], n);
    }
  }
  return out;
}

void Comm::blocks(const char* what, std::size_t whole, std::size_t block, bool check) const {
  require();
  if (check && whole != block * static_cast<std::size_t>(size_))
    throw InvalidArgument(std::string("parx::mpi::Comm::") + what + ": a buffer of " +
                          std::to_string(whole) + " bytes is not " + std::to_string(size_) +
                          " blocks of " + std::to_string(block) + " bytes");
}

void Comm::scatter_bytes(const void* send, void* recv, std::size_t block, int root) const {
  const detail::ByteType t(block);
  detail::check(MPI_Scatter(send, t.count(), t.type(), recv, t.count(), t.type(), root, comm_),
                "MPI_Scatter");
}

void Comm::gather_bytes(const void* send, std::size_t block, void* recv, int root) const {
  const detail::ByteType t(block);
  detail::check(MPI_Gather(send, t.count(), t.type(), recv, t.count(), t.type(), root, comm_),
                "MPI_Gather");
}

void Comm::allgather_bytes(const void* send, std::size_t block, void* recv) const {
  const detail::ByteType t(block);
  detail::check(MPI_Allgather(send, t.count(), t.type(), recv, t.count(), t.type(), comm_),
                "MPI_Allgather");
}

void Comm::alltoall_bytes(const void* send, void* recv, std::size_t block) const {
  const detail::ByteType t(block);
  detail::check(MPI_Alltoall(send, t.count(), t.type(), recv, t.count(), t.type(), comm_),
                "MPI_Alltoall");
}

void Comm::reduce_typed(const void* in, void* out, std::size_t n, std::size_t out_n, MPI_Datatype t,
                        detail::OpKind op, int root, detail::Reduction how) const {
  require();
  if (t == MPI_DATATYPE_NULL)
    throw InvalidArgument(
        "parx::mpi::Comm: buffer reductions need arithmetic elements (reduce objects for other "
        "types)");
  if (out && n != out_n)
    throw InvalidArgument("parx::mpi::Comm: reduction of " + std::to_string(n) +
                          " elements into a buffer of " + std::to_string(out_n));
  int esize = 0;
  detail::check(MPI_Type_size(t, &esize), "MPI_Type_size");
  const auto es = static_cast<std::size_t>(esize);
  constexpr std::size_t kPiece = std::size_t{1} << 30;  // elements per call: an int count
  const MPI_Op mop = detail::native_op(op);
  for (std::size_t off = 0; off < n; off += kPiece) {
    const int cnt = static_cast<int>(std::min(kPiece, n - off));
    const void* src = in ? static_cast<const char*>(in) + off * es : MPI_IN_PLACE;
    void* dst = out ? static_cast<char*>(out) + off * es : nullptr;
    if (how == detail::Reduction::to_root) {
      detail::check(MPI_Reduce(src, dst, cnt, t, mop, root, comm_), "MPI_Reduce");
    } else if (how == detail::Reduction::all) {
      detail::check(MPI_Allreduce(src, dst, cnt, t, mop, comm_), "MPI_Allreduce");
    } else {
      detail::check(MPI_Scan(src, dst, cnt, t, mop, comm_), "MPI_Scan");
    }
  }
}

}  // namespace parx::mpi
