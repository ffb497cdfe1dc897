// Fuzz target for the codec's decoder: any bytes given to decode<T> must either decode or throw
// parx::SerializationError — no crash, no overread (ASan), no undefined behaviour (UBSan), no
// allocation beyond the input's size (libFuzzer's -rss_limit_mb / -malloc_limit_mb).
//
// Built two ways:
//   * with clang's libFuzzer (preset `fuzz`): `build/fuzz/tests/fuzz/fuzz_codec
//   -max_total_time=600`
//   * with any compiler as a regression test (PARX_FUZZ_STANDALONE): replays a deterministic set of
//     mutated messages, so the suite exercises the same entry point on every run.
#include <parx/codec.hpp>

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace {

enum class Kind : std::uint8_t { A, B };

struct Inner {
  std::string name;
  std::vector<double> values;
  std::optional<int> limit;
};

struct Message {
  std::uint64_t id;
  Kind kind;
  std::vector<Inner> items;
  std::map<std::string, std::vector<std::int32_t>> index;
  std::variant<std::monostate, int, std::string, std::vector<bool>> payload;
  std::tuple<float, std::pair<int, std::string>> extra;
  std::set<long> tags;
};

template <class T>
void try_decode(const std::uint8_t* data, std::size_t size) {
  try {
    (void)parx::decode<T>(std::span(reinterpret_cast<const std::byte*>(data), size));
  } catch (const parx::SerializationError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the type, so one target covers every decoder path.
  const std::uint8_t which = data[0] % 8;
  ++data;
  --size;
  switch (which) {
    case 0:
      try_decode<Message>(data, size);
      break;
    case 1:
      try_decode<std::vector<Message>>(data, size);
      break;
    case 2:
      try_decode<std::string>(data, size);
      break;
    case 3:
      try_decode<std::map<int, std::string>>(data, size);
      break;
    case 4:
      try_decode<std::vector<std::vector<std::string>>>(data, size);
      break;
    case 5:
      try_decode<std::variant<int, double, std::string, std::monostate>>(data, size);
      break;
    case 6:
      try_decode<std::unordered_map<std::string, std::optional<std::vector<double>>>>(data, size);
      break;
    default:
      try_decode<std::tuple<bool, Kind, std::array<std::int16_t, 4>, std::list<int>>>(data, size);
      break;
  }
  return 0;
}

#ifdef PARX_FUZZ_STANDALONE
#include <random>

// Replays valid messages and deterministic mutations of them (truncations, byte flips, inserted
// and deleted bytes) through the fuzz entry point.
int main() {
  Message m{42,
            Kind::B,
            {{"alpha", {1.0, 2.0}, 7}, {"beta", {}, std::nullopt}},
            {{"k", {1, 2, 3}}, {"z", {}}},
            std::string("payload"),
            {1.5f, {3, "three"}},
            {1, 5, 9}};
  std::vector<parx::Bytes> seeds;
  seeds.push_back(parx::encode(m));
  seeds.push_back(parx::encode(std::vector<Message>{m, m}));
  seeds.push_back(parx::encode(std::string("hello")));
  seeds.push_back(parx::encode(std::map<int, std::string>{{1, "a"}, {2, "b"}}));
  seeds.push_back(parx::encode(std::vector<std::vector<std::string>>{{"a"}, {"b", "c"}}));
  std::mt19937_64 rng(2026);
  long runs = 0;
  for (std::size_t s = 0; s < seeds.size(); ++s) {
    for (int iter = 0; iter < 4000; ++iter) {
      std::vector<std::uint8_t> in;
      in.push_back(static_cast<std::uint8_t>(s == 0   ? 0
                                             : s == 1 ? 1
                                             : s == 2 ? 2
                                             : s == 3 ? 3
                                                      : 4));
      for (std::byte b : seeds[s])
        in.push_back(static_cast<std::uint8_t>(b));
      switch (iter % 4) {
        case 0:
          in.resize(1 + rng() % in.size());
          break;  // truncate
        case 1:
          in[1 + rng() % (in.size() - 1)] = static_cast<std::uint8_t>(rng());
          break;  // flip
        case 2:
          in.insert(in.begin() + 1 + static_cast<long>(rng() % (in.size() - 1)),
                    static_cast<std::uint8_t>(rng()));
          break;
        default:
          if (in.size() > 2) in.erase(in.begin() + 1 + static_cast<long>(rng() % (in.size() - 1)));
          break;
      }
      LLVMFuzzerTestOneInput(in.data(), in.size());
      ++runs;
    }
  }
  // And pure noise, for every type selector.
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<std::uint8_t> in(1 + rng() % 64);
    for (auto& b : in)
      b = static_cast<std::uint8_t>(rng());
    LLVMFuzzerTestOneInput(in.data(), in.size());
    ++runs;
  }
  std::printf("fuzz_codec: %ld inputs replayed, no crash\n", runs);
  return 0;
}
#endif
