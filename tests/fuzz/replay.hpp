// The deterministic replay of a fuzz target (PARX_FUZZ_STANDALONE), so that the regular suite
// runs every decoder's fuzz entry point on every build, with any compiler: each seed (a valid
// input the target defines in fuzz_seeds()) as it is, then mutated the way libFuzzer mutates
// (truncations, byte flips, inserted and deleted bytes, overwritten 8-byte words), then pure
// noise. The mutations come from a fixed seed: a failure reproduces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

std::vector<std::vector<std::uint8_t>> fuzz_seeds();

#ifdef PARX_FUZZ_STANDALONE
// `replay DIR` writes the seeds to DIR (a libFuzzer corpus to start a campaign from) instead.
int main(int argc, char** argv) {
  const std::vector<std::vector<std::uint8_t>> seeds = fuzz_seeds();
  if (argc > 1) {
    for (std::size_t i = 0; i < seeds.size(); ++i) {
      const std::string path = std::string(argv[1]) + "/seed-" + std::to_string(i);
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (!f || std::fwrite(seeds[i].data(), 1, seeds[i].size(), f) != seeds[i].size()) return 1;
      std::fclose(f);
    }
    std::printf("%zu seeds written to %s\n", seeds.size(), argv[1]);
    return 0;
  }
  std::mt19937_64 rng(2026);
  long runs = 0;
  auto run = [&](const std::vector<std::uint8_t>& in) {
    LLVMFuzzerTestOneInput(in.data(), in.size());
    ++runs;
  };
  for (const auto& seed : seeds) {
    run(seed);
    for (int iter = 0; iter < PARX_FUZZ_MUTATIONS; ++iter) {
      std::vector<std::uint8_t> in = seed;
      const int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits && !in.empty(); ++e) {
        const std::size_t at = rng() % in.size();
        switch (rng() % 5) {
          case 0:
            in.resize(at + 1);  // truncate
            break;
          case 1:
            in[at] = static_cast<std::uint8_t>(rng());  // flip a byte
            break;
          case 2:
            in.insert(in.begin() + static_cast<long>(at), static_cast<std::uint8_t>(rng()));
            break;
          case 3:
            if (in.size() > 1) in.erase(in.begin() + static_cast<long>(at));
            break;
          default: {  // overwrite a word: lengths and counts are 8-byte fields
            const std::uint64_t w = rng() % 4 == 0 ? ~std::uint64_t{0} >> (rng() % 64) : rng();
            for (std::size_t k = 0; k < 8 && at + k < in.size(); ++k)
              in[at + k] = static_cast<std::uint8_t>(w >> (8 * k));
            break;
          }
        }
      }
      run(in);
    }
  }
  for (int iter = 0; iter < PARX_FUZZ_MUTATIONS; ++iter) {
    std::vector<std::uint8_t> in(rng() % 256);
    for (auto& b : in)
      b = static_cast<std::uint8_t>(rng());
    run(in);
  }
  std::printf("%s: %ld inputs replayed, no crash\n", PARX_FUZZ_NAME, runs);
  return 0;
}
#endif
