// make_pipe and wait_ready.
#include "parx/pipe.hpp"

#include <thread>

#include "parx/detail/sync.hpp"

namespace parx {

std::pair<Connection, Connection> make_pipe(bool duplex, std::size_t capacity_bytes) {
  auto a_to_b = std::make_shared<detail::ByteQueue>(0, capacity_bytes);
  if (!duplex) return {Connection(a_to_b, nullptr), Connection(nullptr, a_to_b)};  // (recv, send)
  auto b_to_a = std::make_shared<detail::ByteQueue>(0, capacity_bytes);
  return {Connection(b_to_a, a_to_b), Connection(a_to_b, b_to_a)};
}

std::vector<std::size_t> wait_ready(std::initializer_list<WaitItem> items,
                                    std::chrono::nanoseconds timeout) {
  const std::int64_t deadline = timeout.count() < 0 ? -1 : detail::now_ns() + timeout.count();
  // Readiness of unrelated objects (rings in different segments, processes) has no common futex;
  // poll with a back-off from 20 us to 1 ms: cheap when something is ready soon, idle otherwise.
  std::int64_t nap = 20'000;
  for (;;) {
    std::vector<std::size_t> ready;
    std::size_t i = 0;
    for (const WaitItem& it : items) {
      if (it.ready()) ready.push_back(i);
      ++i;
    }
    if (!ready.empty()) return ready;
    const std::int64_t now = detail::now_ns();
    if (deadline >= 0 && now >= deadline) return ready;
    std::int64_t sleep = nap;
    if (deadline >= 0) sleep = std::min(sleep, deadline - now);
    std::this_thread::sleep_for(std::chrono::nanoseconds(sleep));
    nap = std::min<std::int64_t>(nap * 2, 1'000'000);
  }
}

}  // namespace parx
