// shared_counter — several processes update one counter in shared memory (the seeds'
// multiprocessing.Value example, without its race: the increment is a read-modify-write, so it is
// done under the value's own lock). It also shows why the lock matters: the unlocked run loses
// updates.
#include <parx/parx.hpp>

#include <cstdio>
#include <mutex>
#include <vector>

void add_locked(parx::SharedValue<long> counter, int times) {
  for (int i = 0; i < times; ++i) {
    std::lock_guard g(counter.get_lock());
    counter.ref() += 1;
  }
}

void add_racy(parx::SharedValue<long> counter, int times) {
  for (int i = 0; i < times; ++i)
    counter.ref() += 1;  // what not to do
}

PARX_REMOTE(add_locked);
PARX_REMOTE(add_racy);

template <class F>
long run(F fn, int procs, int times) {
  parx::SharedValue<long> counter(0);
  std::vector<parx::Process> ps;
  for (int i = 0; i < procs; ++i)
    ps.emplace_back(fn, counter, times);
  for (auto& p : ps)
    p.start();
  for (auto& p : ps)
    p.join();
  return counter.get();
}

int main(int argc, char** argv) {
  parx::init(argc, argv);
  const int procs = 8, times = 100'000;
  const long expected = static_cast<long>(procs) * times;
  const long locked = run(add_locked, procs, times);
  const long racy = run(add_racy, procs, times);
  std::printf("%d processes x %d increments (expected %ld)\n", procs, times, expected);
  std::printf("  under the lock: %ld%s\n", locked, locked == expected ? "  (exact)" : "  (WRONG)");
  std::printf("  without it:     %ld  (%ld updates lost)\n", racy, expected - racy);
  return locked == expected ? 0 : 1;
}
