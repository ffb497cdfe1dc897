// Ping-pong between ranks 0 and 1 (run under `mpiexec -n 2`): raw MPI_Send/MPI_Recv, parx's
// Comm with buffers (std::span), and Comm with objects (std::vector<char>, encoded), at 8 B,
// 1 KiB, 1 MiB and 16 MiB. The three alternate within one run; each prints the median one-way
// latency of several rounds. Peer in Python: bench/py_mpi_pingpong.py (mpi4py); runner:
// bench/run_mpi.sh.
//   mpiexec -n 2 bench_mpi_pingpong [rounds]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <parx/mpi.hpp>
#include <parx/parx.hpp>
#include <span>
#include <string>
#include <vector>

namespace mpi = parx::mpi;

namespace {

int iterations_for(std::size_t bytes) {
  if (bytes <= 1024) return 20000;
  if (bytes <= (1 << 20)) return 400;
  return 40;
}

// The raw C API, as a C program would call it.
void raw(char* buf, int n, int iters, int rank) {
  for (int i = 0; i < iters; ++i) {
    if (rank == 0) {
      MPI_Send(buf, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD);
      MPI_Recv(buf, n, MPI_BYTE, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
      MPI_Recv(buf, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
    }
  }
}

void buffers(const mpi::Comm& w, std::vector<char>& buf, int iters) {
  const std::span<char> s(buf);
  for (int i = 0; i < iters; ++i) {
    if (w.rank() == 0) {
      w.send(s, 1);
      w.recv(s, 1);
    } else {
      w.recv(s, 0);
      w.send(s, 0);
    }
  }
}

void objects(const mpi::Comm& w, std::vector<char>& obj, int iters) {
  for (int i = 0; i < iters; ++i) {
    if (w.rank() == 0) {
      w.send(obj, 1);
      obj = w.recv<std::vector<char>>(1);
    } else {
      obj = w.recv<std::vector<char>>(0);
      w.send(obj, 0);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  auto& w = mpi::world();
  if (w.size() != 2) {
    if (w.rank() == 0) std::fprintf(stderr, "bench_mpi_pingpong: run with mpiexec -n 2\n");
    return 2;
  }
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  for (const std::size_t bytes :
       {std::size_t{8}, std::size_t{1024}, std::size_t{1} << 20, std::size_t{16} << 20}) {
    std::vector<char> buf(bytes, 'x');
    const int iters = iterations_for(bytes);
    std::vector<double> t_raw, t_buf, t_obj;
    auto time = [&](auto&& body) {
      w.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      body();
      const auto t1 = std::chrono::steady_clock::now();
      return std::chrono::duration<double, std::micro>(t1 - t0).count() / iters / 2;
    };
    raw(buf.data(), static_cast<int>(bytes), iters / 10, w.rank());  // warm-up
    for (int r = 0; r < rounds; ++r) {
      t_raw.push_back(time([&] { raw(buf.data(), static_cast<int>(bytes), iters, w.rank()); }));
      t_buf.push_back(time([&] { buffers(w, buf, iters); }));
      t_obj.push_back(time([&] { objects(w, buf, iters); }));
    }
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    if (w.rank() == 0)
      std::printf("pingpong bytes %zu raw_us %.3f parx_buffer_us %.3f parx_object_us %.3f\n", bytes,
                  median(t_raw), median(t_buf), median(t_obj));
  }
  return 0;
}
