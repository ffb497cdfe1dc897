// tour — the README's tour of the API as a complete program (built and run by the test suite, so
// the README cannot drift from the library).
#include <parx/parx.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace {

double simulate(int seed) {
  double x = seed;
  for (int i = 0; i < 1000; ++i)
    x = std::sin(x) + 1.0;
  return x / 2.0;
}
double sink = 0;
void use(double y) {
  sink += y;
}

}  // namespace

int main() {
  parx::ThreadPool pool;  // one worker per core

  // multiprocessing.Pool(n).map(run, range(1000)): results in input order.
  std::vector<double> ys = pool.map(simulate, parx::range(1000));

  // concurrent.futures: submit, continuations, waiting on many.
  parx::Future<double> f = pool.submit(simulate, 7);
  parx::Future<std::string> s = std::move(f).then([](double x) { return std::to_string(x); });
  std::vector<parx::Future<double>> fs;
  for (int i = 0; i < 8; ++i)
    fs.push_back(pool.submit(simulate, i));
  for (parx::Future<double>& done : parx::as_completed(fs))
    use(done.get());
  std::vector<parx::Future<double>> more;
  for (int i = 0; i < 8; ++i)
    more.push_back(pool.submit(simulate, i));
  auto [done, pending] = parx::wait(more, parx::ReturnWhen::FirstException);

  // Lazy maps over huge or infinite inputs run in bounded memory, in order or as completed.
  long k = 0;
  auto gen = parx::generate([&]() -> std::optional<int> {
    return k < 1'000'000'000 ? std::optional(static_cast<int>(k++)) : std::nullopt;
  });
  long seen = 0;
  for (double y : pool.imap(simulate, gen, {.max_in_flight = 10'000})) {
    if (++seen == 100'000 || y > 2.0) break;
  }
  for (double y : pool.imap_unordered(simulate, parx::range(100)))
    use(y);

  // Data-parallel loops (TBB-style), deterministic reductions.
  std::vector<float> x(1 << 20, 1.f), z(1 << 20);
  pool.parallel_for(std::size_t{0}, x.size(), [&](std::size_t i) { z[i] = 2 * x[i]; });
  double total = pool.parallel_reduce(
      std::size_t{0}, x.size(), 0.0, [&](std::size_t i) { return x[i]; }, std::plus<>{});

  // Fork-join without futures; nested parallelism never deadlocks.
  parx::TaskGroup tg(pool);
  for (int i = 0; i < 100; ++i)
    tg.run([i] { simulate(i); });
  tg.wait();  // rethrows the first exception

  std::printf(
      "map: %zu results; continuation: %s; wait: %zu done; imap pulled %ld items lazily; "
      "sum %.0f\n",
      ys.size(), s.get().c_str(), done.size() + pending.size(), seen, total);
  return total == static_cast<double>(x.size()) ? 0 : 1;
}
