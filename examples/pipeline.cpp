// pipeline — producers and consumers in separate processes connected by parx::Queue (the seeds'
// producer/consumer queue example, done right: no sentinel bookkeeping, no feeder thread that
// deadlocks a join, typed messages, and a consumer pool that ends cleanly when the input closes).
//
//   pipeline [items]
#include <parx/parx.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

struct Job {
  long id;
  double x;
};
struct Result {
  long id;
  double value;
  int worker;
};

// Stage 1: one producer generates jobs.
void produce(parx::Queue<Job> jobs, long n) {
  for (long i = 0; i < n; ++i)
    jobs.put(Job{i, 0.001 * static_cast<double>(i)});
  jobs.close();  // consumers drain what is queued, then see QueueClosed
}

// Stage 2: several consumers turn jobs into results.
void work(parx::Queue<Job> jobs, parx::Queue<Result> results, int worker) {
  try {
    for (;;) {
      Job j = jobs.get();
      double v = 0;
      for (int k = 1; k <= 2000; ++k)
        v += std::sin(j.x * k) / k;  // CPU work
      results.put(Result{j.id, v, worker});
    }
  } catch (const parx::QueueClosed&) {
  }
}

PARX_REMOTE(produce);
PARX_REMOTE(work);

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const long n = argc > 1 ? std::atol(argv[1]) : 20'000;
  const int workers = 2;

  parx::Queue<Job> jobs(1000);  // bounded: the producer cannot run away from the consumers
  parx::Queue<Result> results;
  const auto t0 = std::chrono::steady_clock::now();
  parx::Process producer(produce, jobs, n);
  std::vector<parx::Process> consumers;
  for (int w = 0; w < workers; ++w)
    consumers.emplace_back(work, jobs, results, w);
  producer.start();
  for (auto& c : consumers)
    c.start();

  std::vector<long> per_worker(workers, 0);
  double checksum = 0;
  for (long i = 0; i < n; ++i) {
    Result r = results.get(std::chrono::seconds(60));
    ++per_worker[static_cast<std::size_t>(r.worker)];
    checksum += r.value;
  }
  producer.join();
  for (auto& c : consumers)
    c.join();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("pipeline: %ld jobs through 1 producer and %d consumer processes in %.3f s\n", n,
              workers, secs);
  for (int w = 0; w < workers; ++w)
    std::printf("  consumer %d handled %ld jobs\n", w, per_worker[w]);
  std::printf("checksum %.6f; exit codes: producer %d", checksum, *producer.exitcode());
  for (auto& c : consumers)
    std::printf(", consumer %d", *c.exitcode());
  std::printf("\n");
  return 0;
}
