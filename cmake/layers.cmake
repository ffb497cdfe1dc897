# parx's layers (DESIGN.md §3), bottom first. Each layer is a folder of src/ (its sources and its
# private headers) and a list of public headers under include/parx/. A file may include headers
# of its own layer and of the layers before it, never of a layer after it: cmake/check_layers.cmake
# checks every include on every build, and each layer's object library links only the layers
# before it.
set(PARX_LAYERS core observe durable thread ipc engine process mpi aio init)

set(PARX_LAYER_core_HEADERS
    errors.hpp future.hpp when.hpp executor.hpp range.hpp version.hpp codec.hpp remote.hpp log.hpp
    detail/function_name.hpp
    detail/reflect.hpp detail/sync.hpp detail/task.hpp observe/events.hpp observe/metrics.hpp)
set(PARX_LAYER_observe_HEADERS
    observe/trace.hpp observe/trace_summary.hpp observe/dashboard.hpp detail/progress.hpp)
set(PARX_LAYER_durable_HEADERS memory.hpp detail/journal.hpp)
set(PARX_LAYER_thread_HEADERS thread_pool.hpp task_group.hpp checkpoint.hpp detail/map_stream.hpp)
set(PARX_LAYER_ipc_HEADERS
    shared_memory.hpp shared_value.hpp queue.hpp pipe.hpp lock.hpp condition.hpp event.hpp
    barrier.hpp process.hpp detail/ipc_handle.hpp)
set(PARX_LAYER_engine_HEADERS detail/remote_pool.hpp)
set(PARX_LAYER_process_HEADERS process_pool.hpp)
set(PARX_LAYER_mpi_HEADERS mpi.hpp cluster_pool.hpp)
set(PARX_LAYER_aio_HEADERS aio.hpp aio/task.hpp aio/sync.hpp aio/net.hpp)
set(PARX_LAYER_init_HEADERS init.hpp parx.hpp)
