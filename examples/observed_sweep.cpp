// observed_sweep — a long parameter sweep the way a cluster user runs one: it shows its progress,
// its workers' output arrives whole and named, it logs, and when it is killed a re-run picks up
// where it stopped.
//
//   observed_sweep [journal]          (default: observed_sweep.ckpt in the working directory)
//
// Run it, press Ctrl-C halfway, run it again: the second run reports how many results it took
// from the journal and computes only the rest. Delete the journal to start over. Environment
// knobs that work on any parx program:
//   PARX_OUTPUT=lines|prefixed|inherit   how workers' printf reaches this terminal
//   PARX_LOG_LEVEL=debug                 parx::log::debug lines too
//   PARX_TRACE=run.json                  a timeline; then `parx trace summary run.json`
//   PARX_PROGRESS=0                      no bar
#include <parx/parx.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

// One simulation: the Lyapunov exponent of the logistic map at growth rate r.
double lyapunov(double r) {
  const long steps = r > 3.57 ? 300'000 : 30'000;
  double x = 0.5, sum = 0.0;
  for (long i = 0; i < steps; ++i) {
    x = r * x * (1 - x);
    sum += std::log(std::fabs(r * (1 - 2 * x)));
  }
  const double l = sum / static_cast<double>(steps);
  if (l > 0.6)  // something worth telling: printed by a worker, relayed whole to this terminal
    std::printf("r = %.4f is strongly chaotic (lambda = %.3f)\n", r, l);
  parx::log::debug("r = ", r, " done");
  return l;
}
PARX_REMOTE(lyapunov);

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const std::string journal = argc > 1 ? argv[1] : "observed_sweep.ckpt";

  std::vector<double> rs;
  for (int i = 0; i < 400; ++i)
    rs.push_back(2.8 + 1.2 * i / 400);

  parx::ProcessPool pool({.output = parx::Output::prefixed});
  parx::log::info("sweeping ", rs.size(), " growth rates on ", pool.workers(), " workers");

  parx::MapStats stats;
  const std::vector<double> ls =
      pool.map(lyapunov, rs,
               {.stats = &stats, .progress = true, .label = "lyapunov", .checkpoint = journal});

  int chaotic = 0;
  for (double l : ls)
    chaotic += l > 0;
  parx::log::info(stats.resumed, " results from the journal, ", rs.size() - stats.resumed,
                  " computed now");
  std::printf("%zu growth rates, %d chaotic\n", rs.size(), chaotic);
}
