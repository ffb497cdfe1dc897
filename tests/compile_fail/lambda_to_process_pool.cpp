// Must not compile: a lambda cannot cross a process boundary (the test checks the message).
#include <parx/process_pool.hpp>

int main() {
  parx::ProcessPool* pool = nullptr;
  pool->submit([](int x) { return x; }, 1);
  pool->map([](int x) { return x; }, std::vector<int>{1, 2});
}
