// parx/init.hpp — parx::init: the first line of main.
//
// Worker processes must never be forked from a threaded process (a fork copies one thread and
// every lock the others held: Python's fork-with-threads deadlocks). So parx::init, called while
// main is still single-threaded, forks a *fork server*: a small process that forks every worker
// and parx::Process later on, from a process that never has more than one thread.
//
// Contract
//   * Call it before anything starts a thread (a ThreadPool, std::thread, a library that spawns
//     threads). If the process already has threads, init throws parx::Error saying so.
//   * It checks the PARX_REMOTE registry for conflicting names (parx::Error listing them).
//   * The fork server and everything it forks die with this process (PR_SET_PDEATHSIG): after
//     normal exit, an exception, Ctrl-C or SIGKILL of this process no worker survives. Workers
//     run in the fork server's own process group, so Ctrl-C at the terminal reaches only this
//     process, which then stops its pools in order.
//   * Under an MPI launcher (mpiexec/mpirun, srun; see parx/mpi.hpp), init then joins the job:
//     MPI_Init_thread asking for MPI_THREAD_MULTIPLE, after the fork server exists, so no worker
//     is ever forked from an MPI process. MPI is finalised at exit; an exception escaping main
//     aborts the whole job instead of leaving the other ranks waiting. Without a launcher, MPI is
//     never initialised.
//   * Calling init twice is harmless. Process pools and parx::Process created without init fail
//     with a parx::Error that says to add it.
//
// Thread-safety: call once, from main, before other threads exist. initialized() may be called
// from anywhere.
//
// Example
//   int main(int argc, char** argv) {
//     parx::init(argc, argv);
//     parx::Process p(simulate, 42);  // simulate registered with PARX_REMOTE
//     p.start();
//     p.join();
//   }
#pragma once

namespace parx {

// Starts the fork server and, under an MPI launcher, joins the job (see above). argc/argv go to
// MPI_Init_thread, which may remove the launcher's arguments.
void init(int& argc, char**& argv);
void init();

// True once init() has run in this process.
bool initialized() noexcept;

}  // namespace parx
