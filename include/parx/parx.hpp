// parx/parx.hpp — everything parx offers, in one include.
//
//   Future, Promise, when_all, when_any, as_completed, wait: future.hpp, when.hpp
//   ThreadPool, TaskGroup: thread_pool.hpp, task_group.hpp
//   ProcessPool, PARX_REMOTE, the codec: process_pool.hpp, remote.hpp, codec.hpp
//   ClusterPool (every core of every MPI rank): cluster_pool.hpp; mpi::Comm: mpi.hpp (separate)
//   init, Process and the ipc primitives: init.hpp, process.hpp, queue.hpp, pipe.hpp, ...
//   range, generate, MapOptions, Executor: range.hpp, executor.hpp
//   Memory (persistent result cache, joblib.Memory): memory.hpp
//   observe::subscribe: observe/events.hpp; Error and its family: errors.hpp
//   log::info and friends, Output (worker and rank output to the driver): log.hpp
#pragma once

#include "parx/barrier.hpp"
#include "parx/checkpoint.hpp"
#include "parx/cluster_pool.hpp"
#include "parx/codec.hpp"
#include "parx/condition.hpp"
#include "parx/errors.hpp"
#include "parx/event.hpp"
#include "parx/executor.hpp"
#include "parx/future.hpp"
#include "parx/init.hpp"
#include "parx/lock.hpp"
#include "parx/log.hpp"
#include "parx/memory.hpp"
#include "parx/mpi.hpp"
#include "parx/observe/events.hpp"
#include "parx/observe/metrics.hpp"
#include "parx/observe/trace.hpp"
#include "parx/pipe.hpp"
#include "parx/process.hpp"
#include "parx/process_pool.hpp"
#include "parx/queue.hpp"
#include "parx/range.hpp"
#include "parx/remote.hpp"
#include "parx/shared_memory.hpp"
#include "parx/shared_value.hpp"
#include "parx/task_group.hpp"
#include "parx/thread_pool.hpp"
#include "parx/version.hpp"
#include "parx/when.hpp"
