// parx::init (init.hpp): the one call above every layer. It starts the fork server (ipc) while
// the process has one thread, then joins the MPI job (mpi) when a launcher started this program:
// MPI's libraries start threads of their own, so the order matters.
#include "parx/init.hpp"

#include "core/env.hpp"
#include "ipc/fork_server.hpp"
#include "mpi/mpi_join.hpp"

namespace parx {

void init() {
  detail::check_env();  // bad PARX_* values are said now, once (the workers inherit that)
  detail::start_fork_server();
  mpi::detail::join_if_launched(nullptr, nullptr);
}

bool initialized() noexcept {
  return detail::fork_server_running();
}

void init(int& argc, char**& argv) {
  detail::check_env();
  detail::start_fork_server();
  mpi::detail::join_if_launched(&argc, &argv);
}

}  // namespace parx
