// The ProcessPool's worker process: a process forked by the fork server running `worker_main`.
// It maps its region of the pool's channel, runs the initializer, then loops: wait for a request
// frame (spin, then futex), run its items through the engine's runner, post one result frame.
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include "core/output_relay.hpp"
#include "engine/runner.hpp"
#include "ipc/fork_server.hpp"
#include "parx/detail/sync.hpp"
#include "parx/future.hpp"
#include "parx/log.hpp"
#include "process/channel.hpp"
#include "process/worker.hpp"

namespace parx::detail {

void set_throw_capture(bool on) noexcept;
void clear_throw_trace() noexcept;

namespace {

using namespace channel;

class Worker {
 public:
  Worker(const WorkerBoot& b, int sock, PoolHeader* hdr, RegionLayout* reg)
      : boot_(b),
        sock_(sock),
        hdr_(hdr),
        reg_(reg),
        req_{&reg->req, req_data(reg)},
        resp_{&reg->resp, resp_data(reg)} {
    ctx_.host = host_name();
    ctx_.where = "in the worker";
    ctx_.item = &reg->status.item;
    ctx_.item_started_ns = &reg->status.item_started_ns;
    ctx_.timed = b.timed;
  }

  int run() {
    reg_->status.pid.store(getpid(), std::memory_order_relaxed);
    set_throw_capture(true);
    if (boot_.init_fn) {
      const RemoteEntry* e = find_remote(boot_.init_fn);
      try {
        clear_throw_trace();
        (void)invoke_remote(boot_.init_fn, std::as_bytes(std::span(boot_.init_args)));
      } catch (...) {
        Encoder b(256);
        engine::put_error(b, std::current_exception(), -1,
                          "initializer " + (e ? e->name : std::string("(unknown)")), -1, ctx_.host);
        post(kInitFailed, 0, 0, {b.data(), b.size()});
        return 0;
      }
    }
    post(kReady, 0, 0, {});
    for (;;) {
      wait_request();
      Frame f;
      std::string why;
      const Peek p = ring_peek(req_, f, why);
      if (p == Peek::Empty) continue;
      if (p == Peek::Corrupt) return refuse(why);
      if (f.h.kind == kStop) return 0;
      if (f.h.kind != kRun) return refuse("unexpected frame kind " + std::to_string(f.h.kind));
      Mapped by_ref;
      std::span<const std::byte> payload = f.payload;
      if (f.h.flags & kByRef) {
        const int fd = recv_fd(sock_, true);
        if (fd < 0) return refuse("a payload sent by reference did not arrive");
        if (!by_ref.open(fd, f.h.size, why)) return refuse(why);
        payload = by_ref.bytes();
      }
      const std::uint64_t job = f.h.job;
      const bool batch = f.h.flags & kBatch;
      if (!run_job(job, payload, batch, why)) return refuse(why);
      ring_pop(req_, f);
      std::fflush(stdout);
      std::fflush(stderr);
      done_ += last_items_;  // the task budget counts items, as the parent's dispatch does
      bool retire = boot_.max_tasks && done_ >= boot_.max_tasks;
      if (boot_.memory_limit && resident_bytes(getpid()) > boot_.memory_limit) retire = true;
      // Output still in the pipes is read by the parent before it delivers this result.
      const bool pending = boot_.relay && pending_output();
      post(kResult, job,
           (retire ? std::uint32_t{kRetire} : 0u) | (batch ? std::uint32_t{kBatch} : 0u) |
               (pending ? std::uint32_t{kOutput} : 0u),
           out_.bytes());
      if (retire) return 0;
    }
  }

 private:
  // Runs a job's items (engine/runner.hpp) with the status words the parent reads if this
  // process dies or overruns.
  bool run_job(std::uint64_t job, std::span<const std::byte> payload, bool batch,
               std::string& why) {
    WorkerStatus& st = reg_->status;
    st.job.store(job, std::memory_order_relaxed);
    st.item.store(0, std::memory_order_relaxed);
    st.item_started_ns.store(engine::coarse_now_ns(), std::memory_order_relaxed);
    st.busy.store(1, std::memory_order_release);  // after the stamp: the parent reads both
    try {
      (void)engine::run_job(payload, batch, 0, ctx_, out_);
    } catch (const SerializationError& e) {
      st.busy.store(0, std::memory_order_release);
      why = e.what();
      return false;
    }
    st.busy.store(0, std::memory_order_release);
    last_items_ = engine::load_at<std::uint64_t>(payload, 8);
    return true;
  }

  int refuse(const std::string& why) {
    const std::string msg = "worker pid " + std::to_string(getpid()) + " refused a request: " + why;
    post(kRefused, 0, 0, std::as_bytes(std::span(msg.data(), msg.size())));
    return 3;
  }

  void wait_request() {
    RingControl* c = req_.ctl;
    auto ready = [c] {
      return c->tail.load(std::memory_order_acquire) != c->head.load(std::memory_order_relaxed);
    };
    if (ready()) return;
    // Spin, yielding the core between looks: on a machine with more runnable threads than cores
    // (the parent's threads, other workers) a pure spin would delay the very work it waits for.
    const std::int64_t until = now_ns() + boot_.spin_ns;
    while (now_ns() < until) {
      for (int i = 0; i < 32; ++i) {
        if (ready()) return;
        cpu_relax();
      }
      sched_yield();
    }
    for (;;) {
      const std::uint32_t v = c->bell.load(std::memory_order_seq_cst);
      c->sleeping.store(1, std::memory_order_seq_cst);
      if (ready()) {
        c->sleeping.store(0, std::memory_order_relaxed);
        return;
      }
      futex_wait_shared(&c->bell, v, 1'000'000'000);
      c->sleeping.store(0, std::memory_order_relaxed);
      if (ready()) return;
    }
  }

  void post(std::uint32_t kind, std::uint64_t job, std::uint32_t flags,
            std::span<const std::byte> payload) {
    int fd = -1;
    if (payload.size() > kInlineLimit) {
      fd = memfd_with(payload, "parx-result");
      if (fd < 0 || !send_fd(sock_, fd)) {
        std::fprintf(stderr, "parx: worker %d cannot send a result by reference: %s\n",
                     static_cast<int>(getpid()), std::strerror(errno));
        _exit(4);
      }
      close(fd);
      flags |= kByRef;
    }
    while (!ring_put(resp_, kind, job, flags, payload, payload.size()))
      std::this_thread::sleep_for(std::chrono::microseconds(50));  // the parent drains it
    hdr_->bell.fetch_add(1, std::memory_order_seq_cst);
    if (hdr_->io_sleeping.load(std::memory_order_seq_cst)) futex_wake_shared(&hdr_->bell, 1);
  }

  WorkerBoot boot_;
  int sock_;
  PoolHeader* hdr_;
  RegionLayout* reg_;
  Ring req_, resp_;
  engine::RunContext ctx_;
  engine::ResultWriter out_{64 * 1024};
  std::uint64_t done_ = 0;        // items run
  std::uint64_t last_items_ = 0;  // items of the last job
};

void worker_main(WorkerBoot boot) {
  const int sock = ForkServer::take_channel_fd();
  if (sock < 0) _exit(120);
  const int memfd = recv_fd(sock, true);
  if (memfd < 0) _exit(0);  // the pool went away before this worker booted
  if (boot.relay) {
    const int out = recv_fd(sock, true);
    const int err = recv_fd(sock, true);
    if (out < 0 || err < 0) _exit(0);
    adopt_relay(out, err);
  }
  if (boot.origin_rank >= 0) set_origin_rank(boot.origin_rank, boot.origin_host);
  set_origin_worker(boot.index);
  void* hdr = mmap(nullptr, kHeaderBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  void* reg = mmap(nullptr, kRegionBytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd,
                   static_cast<off_t>(boot.region_offset));
  close(memfd);
  if (hdr == MAP_FAILED || reg == MAP_FAILED) _exit(121);
  Worker w(boot, sock, static_cast<PoolHeader*>(hdr), static_cast<RegionLayout*>(reg));
  const int code = w.run();
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

}  // namespace

FunctionId worker_entry_id() {
  static const FunctionId id = function_id("parx::process_pool_worker");
  return id;
}

}  // namespace parx::detail

PARX_REMOTE_AS(parx::detail::worker_main, "parx::process_pool_worker");
