// mpi_sweep — the seeds' mpi4py program in parx, then the same sweep on a ClusterPool.
//
// The Python original:
//     comm = MPI.COMM_WORLD
//     rank = comm.Get_rank()
//     run(rank)                       # each rank does its own share
// run as `mpiexec -n 20 python job.py`. In parx: `parx run -n 4 build/release/examples/mpi_sweep`.
//
// Part 1 is that program: every rank computes its share of a parameter sweep (the parameters
// whose index modulo the job's size is its rank) and rank 0 gathers the results. The shares are
// fixed: a rank whose parameters happen to be slow finishes last while the others wait.
// Part 2 does the same sweep with a ClusterPool: rank 0 maps over every parameter, and the ranks
// pull chunks as their cores free, so the uneven costs even out. Both parts must agree.
// Without a launcher the program runs as a job of one rank.
#include <parx/mpi.hpp>
#include <parx/parx.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <utility>
#include <vector>

// One simulation: the Lyapunov exponent of the logistic map at growth rate r. Chaotic values of r
// are made to cost more steps, so the work is uneven across parameters.
double simulate(double r) {
  const long steps = r > 3.57 ? 400'000 : 40'000;
  double x = 0.5, sum = 0.0;
  for (long i = 0; i < steps; ++i) {
    x = r * x * (1 - x);
    sum += std::log(std::fabs(r * (1 - 2 * x)));
  }
  return sum / static_cast<double>(steps);
}
PARX_REMOTE(simulate);

namespace {

constexpr int kParams = 240;

double param(int i) {
  return 2.8 + 1.2 * i / kParams;
}

void stamp(const char* what) {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", std::localtime(&t));
  std::printf("%s  %s\n", buf, what);
  std::fflush(stdout);
}

// The seeds' run(rank): this rank's share of the sweep, as (index, result) pairs.
std::vector<std::pair<int, double>> run(int rank, int size) {
  std::vector<std::pair<int, double>> out;
  for (int i = rank; i < kParams; i += size)
    out.emplace_back(i, simulate(param(i)));
  return out;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const int rank = parx::mpi::rank(), size = parx::mpi::size();

  // Part 1: SPMD, as in the seeds.
  if (rank == 0) stamp("part 1: every rank runs run(rank) on its share");
  auto t0 = std::chrono::steady_clock::now();
  const auto mine = run(rank, size);
  std::vector<std::vector<std::pair<int, double>>> shares{mine};
  if (parx::mpi::launched()) shares = parx::mpi::world().gather(mine, 0);
  const double t_spmd = since(t0);
  std::vector<double> spmd(kParams);
  for (const auto& share : shares)
    for (const auto& [i, y] : share)
      spmd[static_cast<std::size_t>(i)] = y;

  // Part 2: the same sweep, load-balanced over every core of every rank.
  parx::ClusterPool pool;
  if (!pool.is_driver()) return 0;  // the serving ranks are done once rank 0 is
  stamp("part 2: rank 0 maps the sweep over a ClusterPool");
  std::vector<double> rs(kParams);
  for (int i = 0; i < kParams; ++i)
    rs[static_cast<std::size_t>(i)] = param(i);
  t0 = std::chrono::steady_clock::now();
  const std::vector<double> ys = pool.map(simulate, rs);
  const double t_pool = since(t0);

  if (ys != spmd) {
    std::fprintf(stderr, "mpi_sweep: the two parts disagree\n");
    return 1;
  }
  int chaotic = 0;
  for (double y : ys)
    chaotic += y > 0;
  stamp("done");
  std::printf("\n%d parameters, %d chaotic; %d ranks\n", kParams, chaotic, size);
  std::printf("part 1, run(rank) with fixed shares:  %.3f s on %d ranks (one core each)\n", t_spmd,
              size);
  std::printf("part 2, ClusterPool.map:              %.3f s on %zu slots of %d ranks\n", t_pool,
              pool.workers(), size);
  for (const auto& r : pool.ranks())
    std::printf("  rank %d on %s: %llu tasks, %.2f s busy\n", r.rank, r.host.c_str(),
                static_cast<unsigned long long>(r.tasks), r.busy_seconds);
  return 0;
}
