// ProcessPool: the public pool over its transport (process/transport.hpp); the surface it shares
// with every remote pool is detail/remote_pool.hpp.
#include "parx/process_pool.hpp"

#include "parx/observe/trace.hpp"
#include "process/transport.hpp"

namespace parx {

namespace {
ProcessPool::Options with_workers(std::size_t n) {
  ProcessPool::Options o;
  o.workers = n;
  return o;
}
}  // namespace

ProcessPool::ProcessPool(std::size_t workers) : ProcessPool(with_workers(workers)) {}

ProcessPool::ProcessPool(const Options& opts)
    : impl_((observe::detail::start_from_env(), std::make_unique<detail::ProcessTransport>(opts))) {
  workers_ = impl_->workers();
  id_ = impl_->exec_id();
}

ProcessPool::~ProcessPool() = default;

std::vector<pid_t> ProcessPool::pids() const {
  return impl_->pids();
}

observe::Counters ProcessPool::read_counters() const {
  return impl_->counters();
}

bool ProcessPool::transport_shut_down() const noexcept {
  return impl_->is_shutdown();
}

void ProcessPool::shutdown(const ShutdownOptions& how) {
  impl_->shutdown(how);
}

void ProcessPool::enqueue(detail::RemoteJob&& job) {
  impl_->enqueue(std::move(job));
}

}  // namespace parx
