#include "aquifer/keys/tuple.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include <gtest/gtest.h>

namespace aquifer::keys {
namespace {

using Tuple = std::vector<TupleElement>;

std::string Hex(std::string_view s) {
  std::string out;
  for (unsigned char c : s) out += fmt::format("{:02x} ", c);
  if (!out.empty()) out.pop_back();
  return out;
}

std::string Encode(const Tuple& t) {
  std::string out;
  for (const auto& e : t) AppendElement(&out, e);
  return out;
}

std::string Enc(const TupleElement& e) {
  std::string out;
  AppendElement(&out, e);
  return out;
}

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

// ---------------------------------------------------------------------------
// A reference order over values, written independently of the encoding:
// elements order first by type code, then by value.

int TypeRank(const TupleElement& e) {
  switch (e.index()) {
    case 0: return 0x00;                                  // null
    case 1: return 0x01;                                  // bytes
    case 2: return 0x02;                                  // string
    case 3: return 0x14;                                  // int
    case 4: return 0x20;                                  // float
    case 5: return 0x21;                                  // double
    case 6: return std::get<bool>(e) ? 0x27 : 0x26;       // bool
    case 7: return 0x30;                                  // uuid
  }
  return 0xFF;
}

template <typename T>
int Sign(T a, T b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// IEEE total order: -NaN < -inf < ... < -0.0 < +0.0 < ... < +inf < +NaN,
// NaNs ordered by payload (outward from zero).
template <typename F>
int CompareFloatTotal(F a, F b) {
  auto group = [](F x) { return std::isnan(x) ? (std::signbit(x) ? 0 : 2) : 1; };
  int ga = group(a), gb = group(b);
  if (ga != gb) return Sign(ga, gb);
  using U = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
  constexpr U kSign = U{1} << (sizeof(U) * 8 - 1);
  if (ga == 1) {
    if (a < b) return -1;
    if (a > b) return 1;
    return Sign(!std::signbit(a), !std::signbit(b));  // -0.0 before +0.0
  }
  U pa = std::bit_cast<U>(a) & ~kSign, pb = std::bit_cast<U>(b) & ~kSign;
  return ga == 2 ? Sign(pa, pb) : Sign(pb, pa);
}

int CompareBytes(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x != y) return x < y ? -1 : 1;
  }
  return Sign(a.size(), b.size());
}

int CompareElement(const TupleElement& a, const TupleElement& b) {
  int ra = TypeRank(a), rb = TypeRank(b);
  if (ra != rb) return Sign(ra, rb);
  switch (a.index()) {
    case 0: return 0;
    case 1: return CompareBytes(std::get<TupleBytes>(a).data, std::get<TupleBytes>(b).data);
    case 2: return CompareBytes(std::get<std::string>(a), std::get<std::string>(b));
    case 3: return Sign(std::get<int64_t>(a), std::get<int64_t>(b));
    case 4: return CompareFloatTotal(std::get<float>(a), std::get<float>(b));
    case 5: return CompareFloatTotal(std::get<double>(a), std::get<double>(b));
    case 6: return 0;
    case 7: return Sign(std::get<Uuid>(a).bytes, std::get<Uuid>(b).bytes);
  }
  return 0;
}

int CompareTuple(const Tuple& a, const Tuple& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (int c = CompareElement(a[i], b[i]); c != 0) return c;
  }
  return Sign(a.size(), b.size());
}

// Bitwise equality (so NaN payloads and -0.0 count).
bool SameElement(const TupleElement& a, const TupleElement& b) {
  if (a.index() != b.index()) return false;
  if (const float* f = std::get_if<float>(&a)) return std::bit_cast<uint32_t>(*f) == std::bit_cast<uint32_t>(std::get<float>(b));
  if (const double* d = std::get_if<double>(&a)) {
    return std::bit_cast<uint64_t>(*d) == std::bit_cast<uint64_t>(std::get<double>(b));
  }
  return a == b;
}

bool SameTuple(const Tuple& a, const Tuple& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!SameElement(a[i], b[i])) return false;
  }
  return true;
}

std::string Describe(const Tuple& t) { return Hex(Encode(t)); }

// ---------------------------------------------------------------------------
// Random values with the edge cases mixed in.

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  int64_t Int() {
    static const int64_t kEdges[] = {0, 1, -1, 2, -2, 127, 128, -128, -129, 255, 256, -255, -256, -257,
                                     65535, 65536, -65535, -65536, (int64_t{1} << 31) - 1, -(int64_t{1} << 31),
                                     (int64_t{1} << 56) - 1, int64_t{1} << 56, -(int64_t{1} << 56),
                                     -(int64_t{1} << 56) + 1, std::numeric_limits<int64_t>::max(),
                                     std::numeric_limits<int64_t>::max() - 1,
                                     std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::min() + 1};
    switch (Uniform(4)) {
      case 0: return kEdges[Uniform(std::size(kEdges))];
      case 1: return static_cast<int64_t>(rng_()) >> Uniform(64);  // every magnitude length
      case 2: return static_cast<int64_t>(Uniform(2000)) - 1000;
      default: {
        int64_t power = int64_t{1} << Uniform(63);
        return (Uniform(2) ? power : -power) + static_cast<int64_t>(Uniform(3)) - 1;
      }
    }
  }

  template <typename F>
  F Float() {
    using U = std::conditional_t<sizeof(F) == 4, uint32_t, uint64_t>;
    using L = std::numeric_limits<F>;
    const F edges[] = {F(0), -F(0), F(1), F(-1), L::infinity(), -L::infinity(), L::max(), L::lowest(),
                       L::min(), -L::min(), L::denorm_min(), -L::denorm_min(), L::epsilon(),
                       L::quiet_NaN(), -L::quiet_NaN(), std::nextafter(F(0), F(1)),
                       std::nextafter(L::min(), F(0)), F(0.1), F(-0.1)};
    switch (Uniform(4)) {
      case 0: return edges[Uniform(std::size(edges))];
      case 1: return std::bit_cast<F>(static_cast<U>(rng_()));  // any bit pattern, NaN payloads included
      case 2: return static_cast<F>(static_cast<double>(Uniform(200)) - 100) / F(8);
      default: {
        F x = std::ldexp(F(1) + static_cast<F>(Uniform(1000)) / F(1000), static_cast<int>(Uniform(60)) - 30);
        return Uniform(2) ? x : -x;
      }
    }
  }

  std::string Bytes() {
    static const char* kEdges[] = {"", "a", "ab", "b"};
    if (Uniform(5) == 0) return kEdges[Uniform(std::size(kEdges))];
    static const char kAlphabet[] = {'\0', '\0', '\xFF', '\xFF', '\x01', '\xFE', 'a', 'b', '\x7F', '\x80'};
    std::string s(Uniform(7), '\0');
    for (char& c : s) c = Uniform(3) == 0 ? static_cast<char>(rng_()) : kAlphabet[Uniform(std::size(kAlphabet))];
    return s;
  }

  Uuid Id() {
    Uuid id;
    int mode = static_cast<int>(Uniform(3));
    for (auto& b : id.bytes) b = mode == 0 ? 0 : (mode == 1 ? static_cast<uint8_t>(Uniform(2) * 0xFF) : rng_());
    return id;
  }

  TupleElement Element() {
    switch (Uniform(9)) {
      case 0: return TupleNull{};
      case 1: return TupleBytes{Bytes()};
      case 2: return Bytes();
      case 3:
      case 4: return Int();
      case 5: return Float<float>();
      case 6: return Float<double>();
      case 7: return Uniform(2) == 1;
      default: return Id();
    }
  }

  Tuple Composite() {
    Tuple t;
    size_t n = 1 + Uniform(3);
    for (size_t i = 0; i < n; ++i) t.push_back(Element());
    return t;
  }

  uint64_t Uniform(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  std::mt19937_64& rng() { return rng_; }

 private:
  std::mt19937_64 rng_;
};

// ---------------------------------------------------------------------------

TEST(Tuple, EncodesTheKnownVectorsOfTheFoundationDbSpec) {
  EXPECT_EQ(Hex(Enc(TupleNull{})), "00");
  EXPECT_EQ(Hex(Enc(int64_t{0})), "14");
  EXPECT_EQ(Hex(Enc(int64_t{1})), "15 01");
  EXPECT_EQ(Hex(Enc(int64_t{-1})), "13 fe");
  EXPECT_EQ(Hex(Enc(int64_t{255})), "15 ff");
  EXPECT_EQ(Hex(Enc(int64_t{256})), "16 01 00");
  EXPECT_EQ(Hex(Enc(int64_t{-255})), "13 00");
  EXPECT_EQ(Hex(Enc(int64_t{-256})), "12 fe ff");
  EXPECT_EQ(Hex(Enc(int64_t{-5551212})), "11 ab 4b 93");  // the spec's example
  EXPECT_EQ(Hex(Enc(std::numeric_limits<int64_t>::max())), "1c 7f ff ff ff ff ff ff ff");
  EXPECT_EQ(Hex(Enc(std::numeric_limits<int64_t>::min())), "0c 7f ff ff ff ff ff ff ff");
  EXPECT_EQ(Hex(Enc(std::numeric_limits<int64_t>::min() + 1)), "0c 80 00 00 00 00 00 00 00");
  EXPECT_EQ(Hex(Enc(std::string("a\0b", 3))), "02 61 00 ff 62 00");
  EXPECT_EQ(Hex(Enc(std::string("F\xC3\x94O\0bar", 8))), "02 46 c3 94 4f 00 ff 62 61 72 00");
  EXPECT_EQ(Hex(Enc(TupleBytes{std::string("foo\0bar", 7)})), "01 66 6f 6f 00 ff 62 61 72 00");
  EXPECT_EQ(Hex(Enc(std::string())), "02 00");
  EXPECT_EQ(Hex(Enc(3.14)), "21 c0 09 1e b8 51 eb 85 1f");
  EXPECT_EQ(Hex(Enc(-42.0f)), "20 3d d7 ff ff");
  EXPECT_EQ(Hex(Enc(0.0)), "21 80 00 00 00 00 00 00 00");
  EXPECT_EQ(Hex(Enc(-0.0)), "21 7f ff ff ff ff ff ff ff");
  EXPECT_EQ(Hex(Enc(false)), "26");
  EXPECT_EQ(Hex(Enc(true)), "27");
  Uuid id = *Uuid::Parse("00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(Hex(Enc(id)), "30 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff");
  Tuple composite = {std::string("user"), int64_t{5}};
  EXPECT_EQ(Hex(Encode(composite)), "02 75 73 65 72 00 15 05");
}

TEST(Tuple, ByteOrderOfEncodingsEqualsValueOrderForManyRandomCompositeKeys) {
  Generator gen(20240601);
  std::vector<std::pair<Tuple, std::string>> items;
  for (int i = 0; i < 25000; ++i) {
    Tuple t = gen.Composite();
    items.emplace_back(t, Encode(t));
  }
  std::sort(items.begin(), items.end(),
            [](const auto& a, const auto& b) { return CompareTuple(a.first, b.first) < 0; });
  for (size_t i = 1; i < items.size(); ++i) {
    int ref = CompareTuple(items[i - 1].first, items[i].first);
    int enc = CompareBytes(items[i - 1].second, items[i].second);
    ASSERT_EQ(ref, enc) << Describe(items[i - 1].first) << " vs " << Describe(items[i].first);
  }
  // And on random pairs, not only neighbours.
  for (int i = 0; i < 100000; ++i) {
    const auto& a = items[gen.Uniform(items.size())];
    const auto& b = items[gen.Uniform(items.size())];
    ASSERT_EQ(CompareTuple(a.first, b.first), CompareBytes(a.second, b.second))
        << Describe(a.first) << " vs " << Describe(b.first);
  }
}

TEST(Tuple, ByteOrderEqualsValueOrderWithinEachTypeIncludingEdgeCases) {
  Generator gen(7);
  for (int type = 0; type < 6; ++type) {
    std::vector<TupleElement> values;
    for (int i = 0; i < 5000; ++i) {
      switch (type) {
        case 0: values.emplace_back(gen.Int()); break;
        case 1: values.emplace_back(gen.Float<float>()); break;
        case 2: values.emplace_back(gen.Float<double>()); break;
        case 3: values.emplace_back(gen.Bytes()); break;
        case 4: values.emplace_back(TupleBytes{gen.Bytes()}); break;
        default: values.emplace_back(gen.Id()); break;
      }
    }
    for (size_t i = 0; i + 1 < values.size(); ++i) {
      const auto& a = values[i];
      const auto& b = values[i + 1];
      ASSERT_EQ(CompareElement(a, b), CompareBytes(Enc(a), Enc(b))) << Hex(Enc(a)) << " vs " << Hex(Enc(b));
    }
  }
}

TEST(Tuple, DecodeInvertsEncodeForManyRandomCompositeKeys) {
  Generator gen(99);
  for (int i = 0; i < 25000; ++i) {
    Tuple t = gen.Composite();
    std::string encoded = Encode(t);
    Result<Tuple> decoded = DecodeTuple(encoded);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString() << " for " << Hex(encoded);
    ASSERT_TRUE(SameTuple(t, *decoded)) << Hex(encoded);
  }
}

TEST(Tuple, OrdersSignedZerosAndNansConsistently) {
  // -0.0 sorts just below +0.0 and both round-trip with their sign; NaNs keep
  // their bits: negative NaNs sort below -inf, positive NaNs above +inf.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> ordered = {-nan, -inf, -1.0, -std::numeric_limits<double>::denorm_min(), -0.0, 0.0,
                                 std::numeric_limits<double>::denorm_min(), 1.0, inf, nan};
  for (size_t i = 0; i + 1 < ordered.size(); ++i) {
    EXPECT_LT(Enc(ordered[i]), Enc(ordered[i + 1])) << i;
  }
  auto decoded = DecodeTuple(Enc(-0.0));
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(std::signbit(std::get<double>((*decoded)[0])));
}

TEST(Tuple, ShorterTupleSortsBeforeItsExtensions) {
  EXPECT_LT(Encode({std::string("a")}), Encode({std::string("a"), TupleNull{}}));
  EXPECT_LT(Encode({std::string("a"), std::numeric_limits<int64_t>::max()}), Encode({std::string("a\0", 2)}));
  EXPECT_LT(Encode({std::string("a"), Uuid{}}), Encode({std::string("a\0", 2), TupleNull{}}));
}

TEST(Tuple, DecodeRejectsMalformedInputWithAnError) {
  const std::string bad[] = {
      Bytes({0x02, 'a'}),                                          // no terminator
      Bytes({0x01}),                                               // no terminator
      Bytes({0x02, 'a', 0x00, 0xFF}),                              // escape then end
      Bytes({0x15}),                                               // truncated int
      Bytes({0x1C, 0x7F, 0xFF}),                                   // truncated int
      Bytes({0x15, 0x00}),                                         // non-minimal positive
      Bytes({0x13, 0xFF}),                                         // non-minimal negative
      Bytes({0x1C, 0x80, 0, 0, 0, 0, 0, 0, 0}),                    // 2^63 > INT64_MAX
      Bytes({0x0C, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE}),  // -(2^63+1)
      Bytes({0x1D, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0}),              // big int beyond int64
      Bytes({0x0B, 0xF6}),                                         // negative big int
      Bytes({0x05, 0x00}),                                         // nested tuple: not a key element
      Bytes({0x20, 0x00, 0x00}),                                   // truncated float
      Bytes({0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}),     // truncated double
      Bytes({0x30, 0x01, 0x02}),                                   // truncated uuid
      Bytes({0x14, 0x40}),                                         // unknown type code
      Bytes({0xFF}),
  };
  for (const std::string& input : bad) {
    Result<Tuple> decoded = DecodeTuple(input);
    ASSERT_FALSE(decoded.ok()) << Hex(input);
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(decoded.status().message().find("malformed tuple"), std::string::npos);
  }
  EXPECT_TRUE(DecodeTuple("").ok());
  EXPECT_TRUE(DecodeTuple("")->empty());
}

TEST(Tuple, EveryDecodableByteStringIsTheCanonicalEncodingOfWhatItDecodesTo) {
  // Random bytes biased toward type codes: decoding never crashes and, when it
  // succeeds, re-encoding gives back exactly the input (one encoding per value).
  Generator gen(4242);
  const int codes[] = {0x00, 0x01, 0x02, 0x0C, 0x10, 0x13, 0x14, 0x15, 0x1C, 0x20, 0x21, 0x26, 0x27, 0x30, 0xFF};
  int decoded_ok = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string input(gen.Uniform(24), '\0');
    for (char& c : input) {
      c = static_cast<char>(gen.Uniform(2) ? codes[gen.Uniform(std::size(codes))] : gen.Uniform(256));
    }
    Result<Tuple> decoded = DecodeTuple(input);
    if (!decoded.ok()) continue;
    ++decoded_ok;
    ASSERT_EQ(Hex(Encode(*decoded)), Hex(input));
  }
  EXPECT_GT(decoded_ok, 1000);
}

TEST(Tuple, PrefixSuccessorIncrementsTheLastByteBelowFf) {
  EXPECT_EQ(PrefixSuccessor("ab"), "ac");
  EXPECT_EQ(PrefixSuccessor(Bytes({'a', 0xFF})), "b");
  EXPECT_EQ(PrefixSuccessor(Bytes({0x01, 0xFE, 0xFF, 0xFF})), Bytes({0x01, 0xFF}));
  EXPECT_EQ(PrefixSuccessor(Bytes({0xFF, 0xFF})), "");
  EXPECT_EQ(PrefixSuccessor(""), "");
  EXPECT_EQ(PrefixSuccessor(Bytes({0x02, 'a', 0x00})), Bytes({0x02, 'a', 0x01}));
}

TEST(Tuple, PrefixSuccessorBoundsEveryExtensionOfThePrefix) {
  Generator gen(5);
  for (int i = 0; i < 5000; ++i) {
    std::string prefix = gen.Bytes();
    std::string succ = PrefixSuccessor(prefix);
    std::string extended = prefix + gen.Bytes();
    if (succ.empty()) continue;
    ASSERT_LT(extended, succ) << Hex(prefix);
    ASSERT_GT(succ, prefix);
  }
}

}  // namespace
}  // namespace aquifer::keys
