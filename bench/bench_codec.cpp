// parx's codec against cereal's binary archive (libcereal-dev) on realistic payloads: a
// round trip (encode + decode) of each. Both libraries use the very same types and the same
// cereal-style serialize() members, so only the archive machinery differs.
//
//   Job        a task's parameters: ints, doubles, a short string, a small vector
//   Bulk       std::vector<double> of 100'000 (a result array)
//   Index      std::map<std::string, std::vector<int>>: 200 keys of 20 ints
//   Monsters   50 nested records (the cpp_serializers_benchmark shape)
#include <benchmark/benchmark.h>
#include <cereal/archives/binary.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <parx/codec.hpp>

#include <sstream>

namespace {

struct Job {
  int id = 0;
  double temperature = 0, pressure = 0;
  std::string name;
  std::vector<double> params;
  template <class A>
  void serialize(A& ar) {
    ar(id, temperature, pressure, name, params);
  }
};

struct Vec3 {
  float x = 0, y = 0, z = 0;
  template <class A>
  void serialize(A& ar) {
    ar(x, y, z);
  }
};

struct Weapon {
  std::string name;
  std::int16_t damage = 0;
  template <class A>
  void serialize(A& ar) {
    ar(name, damage);
  }
};

struct Monster {
  Vec3 pos;
  std::int16_t mana = 0, hp = 0;
  std::string name;
  std::vector<std::uint8_t> inventory;
  std::vector<Weapon> weapons;
  Weapon equipped;
  std::vector<Vec3> path;
  template <class A>
  void serialize(A& ar) {
    ar(pos, mana, hp, name, inventory, weapons, equipped, path);
  }
};

Job make_job() {
  return {7, 300.0, 1.5, "sweep-point-0042", {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}};
}
std::vector<double> make_bulk() {
  return std::vector<double>(100'000, 1.25);
}
std::map<std::string, std::vector<int>> make_index() {
  std::map<std::string, std::vector<int>> m;
  for (int k = 0; k < 200; ++k)
    m["key-" + std::to_string(k)] = std::vector<int>(20, k);
  return m;
}
std::vector<Monster> make_monsters() {
  std::vector<Monster> ms(50);
  for (std::size_t i = 0; i < ms.size(); ++i) {
    auto& m = ms[i];
    m.pos = {1.f * i, 2.f, 3.f};
    m.mana = 20;
    m.hp = 100;
    m.name = "monster-" + std::to_string(i);
    m.inventory.assign(10, 7);
    m.weapons = {{"sword", 10}, {"axe", 12}, {"bow", 5}};
    m.equipped = {"sword", 10};
    m.path.assign(10, Vec3{1, 2, 3});
  }
  return ms;
}

template <class T>
void parx_round_trip(benchmark::State& st, const T& v) {
  std::size_t bytes = 0;
  for (auto _ : st) {
    auto buf = parx::encode(v);
    T out = parx::decode<T>(buf);
    bytes = buf.size();
    benchmark::DoNotOptimize(out);
  }
  st.counters["bytes"] = static_cast<double>(bytes);
}

template <class T>
void cereal_round_trip(benchmark::State& st, const T& v) {
  std::size_t bytes = 0;
  for (auto _ : st) {
    std::stringstream ss;
    {
      cereal::BinaryOutputArchive out(ss);
      out(v);
    }
    bytes = ss.str().size();
    T back{};
    {
      cereal::BinaryInputArchive in(ss);
      in(back);
    }
    benchmark::DoNotOptimize(back);
  }
  st.counters["bytes"] = static_cast<double>(bytes);
}

// The same round trip into buffers reused across iterations (as a transport does: it encodes into
// a reused segment and decodes into the caller's objects), for both libraries: measures the codecs
// rather than malloc's page faults on fresh 800 KB buffers.
template <class T>
void parx_round_trip_reused(benchmark::State& st, const T& v) {
  parx::Encoder e(1 << 20);
  T out{};
  for (auto _ : st) {
    e.clear();
    e.put(v);
    parx::Decoder d(e.bytes());
    d.get(out);
    benchmark::DoNotOptimize(out);
  }
}

template <class T>
void cereal_round_trip_reused(benchmark::State& st, const T& v) {
  std::stringstream ss;
  T out{};
  for (auto _ : st) {
    ss.clear();
    ss.seekp(0);
    {
      cereal::BinaryOutputArchive o(ss);
      o(v);
    }
    ss.seekg(0);
    {
      cereal::BinaryInputArchive in(ss);
      in(out);
    }
    benchmark::DoNotOptimize(out);
  }
}

void Codec_BulkReused_parx(benchmark::State& st) {
  parx_round_trip_reused(st, make_bulk());
}
void Codec_BulkReused_cereal(benchmark::State& st) {
  cereal_round_trip_reused(st, make_bulk());
}
void Codec_MonstersReused_parx(benchmark::State& st) {
  parx_round_trip_reused(st, make_monsters());
}
void Codec_MonstersReused_cereal(benchmark::State& st) {
  cereal_round_trip_reused(st, make_monsters());
}

void Codec_Job_parx(benchmark::State& st) {
  parx_round_trip(st, make_job());
}
void Codec_Job_cereal(benchmark::State& st) {
  cereal_round_trip(st, make_job());
}
void Codec_Bulk_parx(benchmark::State& st) {
  parx_round_trip(st, make_bulk());
}
void Codec_Bulk_cereal(benchmark::State& st) {
  cereal_round_trip(st, make_bulk());
}
void Codec_Index_parx(benchmark::State& st) {
  parx_round_trip(st, make_index());
}
void Codec_Index_cereal(benchmark::State& st) {
  cereal_round_trip(st, make_index());
}
void Codec_Monsters_parx(benchmark::State& st) {
  parx_round_trip(st, make_monsters());
}
void Codec_Monsters_cereal(benchmark::State& st) {
  cereal_round_trip(st, make_monsters());
}

}  // namespace

BENCHMARK(Codec_Job_parx);
BENCHMARK(Codec_Job_cereal);
BENCHMARK(Codec_Bulk_parx);
BENCHMARK(Codec_Bulk_cereal);
BENCHMARK(Codec_Index_parx);
BENCHMARK(Codec_Index_cereal);
BENCHMARK(Codec_Monsters_parx);
BENCHMARK(Codec_Monsters_cereal);

BENCHMARK(Codec_BulkReused_parx);
BENCHMARK(Codec_BulkReused_cereal);
BENCHMARK(Codec_MonstersReused_parx);
BENCHMARK(Codec_MonstersReused_cereal);

BENCHMARK_MAIN();
