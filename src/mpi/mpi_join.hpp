// parx/detail/mpi_join.hpp — the hook through which parx::init joins an MPI job (src/mpi.cpp).
#pragma once

namespace parx::mpi::detail {

// True when the environment shows an MPI launcher (or PARX_MPI=1).
bool launcher_detected();
// Initialises MPI (MPI_THREAD_MULTIPLE asked) when launched under MPI; a no-op otherwise and
// on later calls. Called by parx::init after the fork server exists.
void join_if_launched(int* argc, char*** argv);

}  // namespace parx::mpi::detail
