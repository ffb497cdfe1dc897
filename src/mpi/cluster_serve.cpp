// A ClusterPool's serving ranks: polling for jobs, sending results, relaying output
// (mpi/cluster_impl.hpp).
#include "mpi/cluster_impl.hpp"

namespace parx::detail {

void ClusterImpl::print_output(const Bytes& msg, int source) {
  const int fd = msg.empty() ? 0 : static_cast<int>(msg[0]);
  if (fd != STDOUT_FILENO && fd != STDERR_FILENO) {
    console_write(STDERR_FILENO, "parx: rank " + std::to_string(source) +
                                     " sent an output message for descriptor " +
                                     std::to_string(fd) + " (refused)\n");
    return;
  }
  std::string_view text(reinterpret_cast<const char*>(msg.data()) + 1, msg.size() - 1);
  if (text.empty()) return;
  if (text.back() == '\n') {
    console_write(fd, text);
  } else {  // lines always end in a newline; a damaged message still prints as lines
    std::string t(text);
    t += '\n';
    console_write(fd, t);
  }
}

void ClusterImpl::start_output() {
  std::optional<RelayPipes> pipes;
  try {
    pipes.emplace();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "parx: rank %d keeps its own output (%s)\n", rank_, e.what());
    return;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  saved_out_ = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  saved_err_ = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  if (saved_out_ < 0 || saved_err_ < 0 || dup2(pipes->write_out, STDOUT_FILENO) < 0 ||
      dup2(pipes->write_err, STDERR_FILENO) < 0) {
    restore_output();
    return;
  }
  pipes->close_write_ends();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  {
    std::lock_guard lk(send_mu_);
    to_driver_ = true;
  }
  set_output_relayed(true);
  const std::string prefix = output_ == Output::prefixed ? "[" + log::origin() + "] " : "";
  std::tie(rank_out_, rank_err_) =
      pipes->start(prefix, [this](int fd, std::string_view lines) { relay_lines(fd, lines); });
}

void ClusterImpl::relay_lines(int fd, std::string_view lines) {
  {
    std::lock_guard lk(send_mu_);
    if (to_driver_) {
      auto buf = std::make_shared<Bytes>(lines.size() + 1);
      (*buf)[0] = static_cast<std::byte>(fd);
      std::memcpy(buf->data() + 1, lines.data(), lines.size());
      sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagOutput), buf});
      return;
    }
  }
  // After the end marker: the rank's own descriptors again (its launcher forwards them).
  const int to = fd == STDOUT_FILENO ? (saved_out_ >= 0 ? saved_out_ : fd)
                                     : (saved_err_ >= 0 ? saved_err_ : fd);
  std::size_t at = 0;
  while (at < lines.size()) {
    const ssize_t w = ::write(to, lines.data() + at, lines.size() - at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    at += static_cast<std::size_t>(w);
  }
}

void ClusterImpl::finish_output() {
  if (rank_out_) {
    std::fflush(stdout);
    std::fflush(stderr);
    rank_out_->pump();
    rank_err_->pump();
  }
  std::lock_guard lk(send_mu_);
  to_driver_ = false;
  static const std::byte none[1] = {};
  sending_.push_back({comm_->isend(std::span<const std::byte>(none, 0), 0, kTagOutputEnd), {}});
}

void ClusterImpl::restore_output() noexcept {
  std::fflush(stdout);
  std::fflush(stderr);
  if (saved_out_ >= 0) dup2(saved_out_, STDOUT_FILENO);
  if (saved_err_ >= 0) dup2(saved_err_, STDERR_FILENO);
  set_output_relayed(false);
  // The pipes' last writers are gone: what is left is read and written to the rank's own
  // descriptors.
  OutputRelay::get().unwatch(rank_out_);
  OutputRelay::get().unwatch(rank_err_);
  rank_out_.reset();
  rank_err_.reset();
  if (saved_out_ >= 0) ::close(saved_out_);
  if (saved_err_ >= 0) ::close(saved_err_);
  saved_out_ = saved_err_ = -1;
}

void ClusterImpl::send_result(Bytes body, const Trailer& t) {
  if (rank_out_) {  // the lines the task wrote go first
    rank_out_->pump();
    rank_err_->pump();
  }
  auto buf = std::make_shared<Bytes>(std::move(body));
  seal(*buf, t, compress_for(0, *buf));
  std::lock_guard lk(send_mu_);
  sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagResult), buf});
}

void ClusterImpl::reap_sends(bool all) {
  std::unique_lock lk(send_mu_, std::defer_lock);
  if (all) {
    lk.lock();
  } else if (!lk.try_lock()) {
    return;
  }
  for (std::size_t i = 0; i < sending_.size();) {
    if (all) sending_[i].req.wait();
    if (sending_[i].req.done() || sending_[i].req.test()) {
      sending_[i] = std::move(sending_.back());
      sending_.pop_back();
    } else {
      ++i;
    }
  }
}

// A serving rank: its task threads take turns at polling MPI (leader/followers). The poller
// receives a job and, in thread mode, runs it itself while another idle thread takes over the
// polling; results go straight from the thread that made them. No job changes threads on its
// way, so a round trip costs two MPI messages and no hand-offs.
void ClusterImpl::serve() {
  const bool caller_runs = server_ && !opts_.processes;
  const std::size_t threads = caller_runs ? slots_[rank_] : 1;
  std::vector<std::thread> helpers;
  for (std::size_t i = 1; i < threads; ++i)
    helpers.emplace_back([this, caller_runs] { serve_loop(caller_runs); });
  serve_loop(caller_runs);
  for (auto& h : helpers)
    h.join();
  if (server_) server_->shutdown();
  if (comm_) finish_output();
  reap_sends(true);
  if (rank_out_) restore_output();
  // Results produced after the stop would have no reader: the driver only stops once every
  // chunk it sent has come back, so there are none.
}

void ClusterImpl::serve_loop(bool caller_runs) {
  for (;;) {
    {
      std::unique_lock lk(poll_mu_);
      poll_cv_.wait(lk, [this] { return !polling_ || served_; });
      if (served_) return;
      polling_ = true;
    }
    std::optional<std::pair<Bytes, Trailer>> job;
    bool stop = false;
    std::int64_t last = now_ns(), backoff = 0;
    while (!job && !stop) {
      auto st = comm_->iprobe(0);
      if (!st) {
        reap_sends(false);
        const std::int64_t now = now_ns();
        if (now - last < spin_ns_) {
          sched_yield();
        } else {
          backoff = std::clamp<std::int64_t>(backoff * 2, 20'000, 1'000'000);
          std::this_thread::sleep_for(std::chrono::nanoseconds(backoff));
        }
        continue;
      }
      Bytes msg(st->bytes);
      comm_->recv(std::span<std::byte>(msg), 0, st->tag);
      last = now_ns();
      backoff = 0;
      if (st->tag == kTagStop) {
        stop = true;
        break;
      }
      try {
        if (st->tag != kTagJob)
          throw SerializationError("unexpected tag " + std::to_string(st->tag));
        const Trailer t = read_trailer(msg, kKindJob, 0);
        if (!server_) throw SerializationError("a job for a rank that runs no tasks");
        Bytes body = take_body(std::move(msg), t, 0);
        if (caller_runs)
          job.emplace(std::move(body), t);
        else
          server_->run(std::move(body), t);  // the rank's ProcessPool; keep polling
      } catch (const std::exception& e) {
        const std::string why = e.what();
        auto buf =
            std::make_shared<Bytes>(reinterpret_cast<const std::byte*>(why.data()),
                                    reinterpret_cast<const std::byte*>(why.data()) + why.size());
        std::lock_guard lk(send_mu_);
        sending_.push_back({comm_->isend(std::span<const std::byte>(*buf), 0, kTagRefused), buf});
      }
    }
    {
      std::lock_guard lk(poll_mu_);
      polling_ = false;
      if (stop) served_ = true;
    }
    if (stop) {
      poll_cv_.notify_all();
      return;
    }
    poll_cv_.notify_one();  // an idle thread takes over the polling
    server_->execute(std::span<const std::byte>(job->first), job->second);
  }
}

}  // namespace parx::detail
