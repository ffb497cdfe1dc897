// The codec: round trips of every supported kind, and hostile input (truncation, corruption,
// lying lengths) giving SerializationError — never a crash, overread or huge allocation.
#include <gtest/gtest.h>

#include <parx/codec.hpp>

#include <chrono>
#include <complex>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

namespace {

enum class Color : std::uint8_t { Red, Green, Blue };

struct Point {  // padding-free aggregate of arithmetic: bulk memcpy
  double x, y, z;
  bool operator==(const Point&) const = default;
};
static_assert(parx::detail::memcpy_safe<Point>());

struct Padded {  // has padding: encoded field by field
  char c;
  double d;
};
static_assert(!parx::detail::memcpy_safe<Padded>());

struct Params {  // an aggregate of library types, no user code
  int seed;
  double temperature;
  std::string tag;
  std::vector<Point> grid;
  std::optional<std::map<std::string, std::vector<int>>> extra;
  std::variant<int, std::string, std::monostate> mode;
  Color color;
  std::array<float, 3> rgb;
  std::pair<long, bool> flag;
  bool operator==(const Params&) const = default;
};

struct Legacy {  // cereal-style member serialize
  int a = 0;
  std::string b;
  std::vector<double> c;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(a, b, c);
  }
  bool operator==(const Legacy&) const = default;
};

class Private {  // save/load pair, private members
 public:
  Private() = default;
  explicit Private(int v) : v_(v), twice_(2 * v) {}
  template <class Archive>
  void save(Archive& ar) const {
    ar(v_);
  }
  template <class Archive>
  void load(Archive& ar) {
    ar(v_);
    twice_ = 2 * v_;  // derived state rebuilt on load
  }
  int twice() const { return twice_; }

 private:
  int v_ = 0;
  int twice_ = 0;
};

struct Custom {
  int hidden = 0;
};

template <class T>
T round_trip(const T& v) {
  return parx::decode<T>(parx::encode(v));
}

}  // namespace

template <>
struct parx::Codec<Custom> {
  static void encode(parx::Encoder& e, const Custom& c) { e.put(c.hidden ^ 0x5a5a); }
  static void decode(parx::Decoder& d, Custom& c) {
    d.get(c.hidden);
    c.hidden ^= 0x5a5a;
  }
};

namespace {

TEST(Codec, Scalars) {
  EXPECT_EQ(round_trip(42), 42);
  EXPECT_EQ(round_trip(-7LL), -7LL);
  EXPECT_EQ(round_trip(3.25), 3.25);
  EXPECT_EQ(round_trip(true), true);
  EXPECT_EQ(round_trip('x'), 'x');
  EXPECT_EQ(round_trip(Color::Blue), Color::Blue);
  EXPECT_EQ(round_trip(std::complex<double>(1, -2)), std::complex<double>(1, -2));
  EXPECT_EQ(round_trip(std::chrono::milliseconds(1500)), std::chrono::milliseconds(1500));
}

TEST(Codec, StringsAndContainers) {
  EXPECT_EQ(round_trip(std::string("hello\0world", 11)), std::string("hello\0world", 11));
  EXPECT_EQ(round_trip(std::string()), "");
  std::vector<double> big(100'000);
  for (std::size_t i = 0; i < big.size(); ++i)
    big[i] = 0.5 * static_cast<double>(i);
  EXPECT_EQ(round_trip(big), big);
  EXPECT_EQ(round_trip(std::vector<bool>{true, false, true}),
            (std::vector<bool>{true, false, true}));
  EXPECT_EQ(round_trip(std::deque<int>{1, 2, 3}), (std::deque<int>{1, 2, 3}));
  EXPECT_EQ(round_trip(std::list<std::string>{"a", "b"}), (std::list<std::string>{"a", "b"}));
  std::map<std::string, std::vector<int>> m{{"x", {1}}, {"y", {}}};
  EXPECT_EQ(round_trip(m), m);
  std::unordered_map<int, std::string> um{{1, "one"}, {2, "two"}};
  EXPECT_EQ(round_trip(um), um);
  std::set<int> s{3, 1, 2};
  EXPECT_EQ(round_trip(s), s);
  std::multiset<int> ms{1, 1, 2};
  EXPECT_EQ(round_trip(ms), ms);
  EXPECT_EQ(round_trip(std::tuple<int, std::string, double>{1, "a", 2.0}),
            (std::tuple<int, std::string, double>{1, "a", 2.0}));
  EXPECT_EQ(round_trip(std::optional<int>{}), std::nullopt);
  EXPECT_EQ(round_trip(std::optional<std::string>{"s"}), "s");
  std::vector<std::monostate> empties(5);
  EXPECT_EQ(round_trip(empties).size(), 5u);
}

TEST(Codec, AggregatesWithoutUserCode) {
  Params p{7,
           300.5,
           "run-7",
           {{1, 2, 3}, {4, 5, 6}},
           std::map<std::string, std::vector<int>>{{"k", {9}}},
           std::string("hot"),
           Color::Green,
           {0.1f, 0.2f, 0.3f},
           {-5, true}};
  Params q = round_trip(p);
  EXPECT_TRUE(p == q);
  Padded pd{'c', 2.5};
  Padded pe = round_trip(pd);
  EXPECT_EQ(pe.c, 'c');
  EXPECT_EQ(pe.d, 2.5);
  // Padding-free aggregates go as raw bytes: 3 doubles, nothing else.
  EXPECT_EQ(parx::encode(Point{1, 2, 3}).size(), sizeof(Point));
  // Bulk arrays: count, zero padding to the element alignment, then the raw elements.
  EXPECT_EQ(parx::encode(std::vector<Point>(10)).size(), 8 + 10 * sizeof(Point));
}

TEST(Codec, CerealStyleAndCustomCodecs) {
  Legacy l{3, "three", {3.0, 3.5}};
  EXPECT_TRUE(round_trip(l) == l);
  EXPECT_EQ(round_trip(Private(21)).twice(), 42);
  EXPECT_EQ(round_trip(Custom{77}).hidden, 77);
  std::vector<Legacy> ls{l, l};
  EXPECT_EQ(round_trip(ls).size(), 2u);
}

TEST(Codec, SeveralValuesInOneMessage) {
  auto bytes = parx::encode(1, std::string("two"), 3.0);
  parx::Decoder d(bytes);
  int a = 0;
  std::string b;
  double c = 0;
  d.get(a);
  d.get(b);
  d.get(c);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, "two");
  EXPECT_EQ(c, 3.0);
  EXPECT_EQ(d.remaining(), 0u);
}

// ---- hostile input --------------------------------------------------------------------------

std::vector<std::byte> bytes_of(std::initializer_list<int> xs) {
  std::vector<std::byte> v;
  for (int x : xs)
    v.push_back(static_cast<std::byte>(x));
  return v;
}

TEST(CodecErrors, EveryTruncationIsReported) {
  Params p{1,
           2,
           "tag",
           {{1, 2, 3}},
           std::map<std::string, std::vector<int>>{{"k", {1, 2}}},
           42,
           Color::Red,
           {1, 2, 3},
           {1, false}};
  auto full = parx::encode(p);
  for (std::size_t n = 0; n < full.size(); ++n) {
    EXPECT_THROW(parx::decode<Params>(std::span(full.data(), n)), parx::SerializationError) << n;
  }
  EXPECT_NO_THROW(parx::decode<Params>(full));
}

TEST(CodecErrors, TrailingBytesRejected) {
  auto b = parx::encode(1, 2);
  try {
    parx::decode<int>(b);
    FAIL();
  } catch (const parx::SerializationError& e) {
    EXPECT_NE(std::string(e.what()).find("trailing"), std::string::npos);
  }
}

TEST(CodecErrors, InvalidTagBytes) {
  EXPECT_THROW(parx::decode<bool>(bytes_of({2})), parx::SerializationError);
  EXPECT_THROW(parx::decode<std::optional<int>>(bytes_of({7, 0, 0, 0, 0})),
               parx::SerializationError);
  EXPECT_THROW((parx::decode<std::variant<int, double>>(bytes_of({5, 0, 0, 0, 0}))),
               parx::SerializationError);
  EXPECT_THROW(parx::decode<std::monostate>(bytes_of({1})), parx::SerializationError);
}

TEST(CodecErrors, LyingLengthsDoNotAllocate) {
  // A varint count of 2^62 followed by a few bytes: must be refused before any reserve.
  auto huge = bytes_of({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1, 2, 3});
  EXPECT_THROW(parx::decode<std::vector<double>>(huge), parx::SerializationError);
  EXPECT_THROW(parx::decode<std::vector<std::string>>(huge), parx::SerializationError);
  EXPECT_THROW(parx::decode<std::string>(huge), parx::SerializationError);
  EXPECT_THROW((parx::decode<std::map<int, int>>(huge)), parx::SerializationError);
  EXPECT_THROW(parx::decode<std::vector<std::monostate>>(huge), parx::SerializationError);
  // Over-long varint.
  EXPECT_THROW(parx::decode<std::string>(
                   bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})),
               parx::SerializationError);
}

TEST(CodecErrors, NonZeroPaddingRejected) {
  auto b = parx::encode(std::vector<double>{1.0});
  ASSERT_EQ(b.size(), 16u);
  b[3] = std::byte{1};
  EXPECT_THROW(parx::decode<std::vector<double>>(b), parx::SerializationError);
}

TEST(CodecErrors, DuplicateKeys) {
  parx::Encoder e;
  e.varint(2);
  e.put(1);
  e.put(10);
  e.put(1);
  e.put(11);
  EXPECT_THROW((parx::decode<std::map<int, int>>(e.bytes())), parx::SerializationError);
  EXPECT_EQ((parx::decode<std::multimap<int, int>>(e.bytes()).size()), 2u);
}

TEST(CodecErrors, RandomCorruptionNeverCrashes) {
  Params p{1,
           2,
           "a fairly long tag string",
           {{1, 2, 3}, {4, 5, 6}},
           std::map<std::string, std::vector<int>>{{"k", {1, 2, 3, 4}}, {"l", {}}},
           std::string("s"),
           Color::Red,
           {1, 2, 3},
           {1, false}};
  const auto good = parx::encode(p);
  std::mt19937 rng(12345);
  int ok = 0, rejected = 0;
  for (int iter = 0; iter < 20'000; ++iter) {
    auto bad = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f)
      bad[rng() % bad.size()] = static_cast<std::byte>(rng() & 0xff);
    try {
      (void)parx::decode<Params>(bad);
      ++ok;  // a flip inside a value's payload is still a valid message
    } catch (const parx::SerializationError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(ok + rejected, 20'000);
}

}  // namespace
