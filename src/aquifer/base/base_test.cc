#include <pthread.h>

#include <random>
#include <thread>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "aquifer/base/base58.h"
#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/base/text.h"
#include "aquifer/base/thread.h"
#include "aquifer/base/uuid.h"

namespace aquifer {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument("{} is odd", x);
  return x / 2;
}

Result<int> Quarter(int x) {
  AQ_ASSIGN_OR_RETURN(int half, Half(x));
  AQ_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

Status CheckEven(int x) {
  AQ_RETURN_IF_ERROR(Half(x));
  return Status::OK();
}

TEST(Status, CarriesCodeAndFormattedMessage) {
  Status s = NotFound("table {} in project {}", "events", "demo");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "table events in project demo");
  EXPECT_EQ(s.ToString(), "NotFound: table events in project demo");
  EXPECT_EQ(s.WithContext("reading").message(), "reading: table events in project demo");
  EXPECT_TRUE(Status::OK().ok());
}

TEST(Result, MacrosPropagateTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(5).code(), StatusCode::kInvalidArgument);
}

TEST(Result, AnOkStatusIsNotAValue) {
  Result<int> r{Status::OK()};
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(Uuid, RandomIdsAreVersion4AndDistinct) {
  std::set<Uuid> seen;
  for (int i = 0; i < 1000; ++i) {
    Uuid id = Uuid::Random();
    EXPECT_EQ(id.bytes[6] >> 4, 4);
    EXPECT_EQ(id.bytes[8] >> 6, 2);
    EXPECT_TRUE(seen.insert(id).second);
  }
}

TEST(Uuid, TextRoundTripsAndRejectsGarbage) {
  Uuid id = Uuid::Random();
  EXPECT_EQ(*Uuid::Parse(id.ToString()), id);
  EXPECT_EQ(*Uuid::Parse(id.Hex()), id);
  auto parsed = Uuid::Parse("123e4567-E89B-12d3-a456-426614174000");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->ToString(), "123e4567-e89b-12d3-a456-426614174000");
  EXPECT_FALSE(Uuid::Parse("123e4567e89b-12d3-a456-426614174000-").ok());
  EXPECT_FALSE(Uuid::Parse("123e4567-e89b-12d3-a456-42661417400g").ok());
  EXPECT_FALSE(Uuid::Parse("").ok());
  EXPECT_FALSE(Uuid::FromBytes("short").ok());
  EXPECT_EQ(*Uuid::FromBytes(id.AsBytes()), id);
}

TEST(Base58, KnownVectors) {
  EXPECT_EQ(Base58Encode(""), "");
  EXPECT_EQ(Base58Encode("Hello World!"), "2NEpo7TZRRrLZSi2U");
  EXPECT_EQ(Base58Encode(std::string("\0\0\x01", 3)), "112");
  EXPECT_EQ(*Base58Decode("2NEpo7TZRRrLZSi2U"), "Hello World!");
  EXPECT_EQ(*Base58Decode("112"), std::string("\0\0\x01", 3));
}

TEST(Base58, RoundTripsRandomBytes) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string bytes(rng() % 64, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng() % 4 == 0 ? 0 : rng());
    std::string text = Base58Encode(bytes);
    auto back = Base58Decode(text);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, bytes);
  }
}

// The textbook byte-by-digit encoder: the limb-based Base58Encode must give
// exactly its digits (cursors issued by older builds stay the same strings).
std::string ReferenceBase58(std::string_view bytes) {
  static constexpr char kAlphabet[] = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  size_t zeros = 0;
  while (zeros < bytes.size() && bytes[zeros] == 0) ++zeros;
  std::vector<uint8_t> digits((bytes.size() - zeros) * 138 / 100 + 1, 0);
  size_t used = 0;
  for (size_t i = zeros; i < bytes.size(); ++i) {
    uint32_t carry = static_cast<uint8_t>(bytes[i]);
    size_t j = 0;
    for (auto it = digits.rbegin(); (carry != 0 || j < used) && it != digits.rend(); ++it, ++j) {
      carry += 256u * *it;
      *it = static_cast<uint8_t>(carry % 58);
      carry /= 58;
    }
    used = j;
  }
  std::string out(zeros, '1');
  for (auto it = digits.begin() + static_cast<std::ptrdiff_t>(digits.size() - used); it != digits.end(); ++it) {
    out.push_back(kAlphabet[*it]);
  }
  return out;
}

TEST(Base58, EncodesTheSameDigitsAsTheByteByByteEncoder) {
  std::mt19937 rng(7);
  for (int round = 0; round < 3000; ++round) {
    const size_t size = static_cast<size_t>(rng() % 200);
    std::string bytes(size, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    // Leading zero bytes, and zero bytes and 0xFF runs inside.
    if (round % 3 == 0) bytes.insert(0, static_cast<size_t>(rng() % 4), '\0');
    if (round % 5 == 0 && !bytes.empty()) bytes[rng() % bytes.size()] = '\0';
    if (round % 7 == 0) bytes.append(static_cast<size_t>(rng() % 9), '\xFF');
    ASSERT_EQ(Base58Encode(bytes), ReferenceBase58(bytes)) << "size " << bytes.size();
    auto back = Base58Decode(Base58Encode(bytes));
    ASSERT_TRUE(back.ok());
    ASSERT_EQ(*back, bytes);
  }
  for (const std::string& edge : {std::string(1, '\0'), std::string(5, '\0'), std::string("\x01"),
                                  std::string(4, '\xFF'), std::string(3, '\xFF'), std::string("\0\0\0\0\x01", 5)}) {
    EXPECT_EQ(Base58Encode(edge), ReferenceBase58(edge));
  }
}

TEST(Base58, RejectsCharactersOutsideTheAlphabetAndLongInput) {
  for (const char* bad : {"0", "O", "I", "l", "abc+", "ab c", "\xff"}) {
    EXPECT_EQ(Base58Decode(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(Base58Decode(std::string(5000, '2')).ok());
}

TEST(Base64, KnownVectorsRoundTripAndRejects) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  std::string out;
  ASSERT_TRUE(Base64Decode("Zm9vYg==", &out));
  EXPECT_EQ(out, "foob");
  ASSERT_TRUE(Base64Decode("Zm9vYg", &out));  // padding optional
  EXPECT_EQ(out, "foob");
  EXPECT_FALSE(Base64Decode("Zm9vY", &out));   // impossible length
  EXPECT_FALSE(Base64Decode("Zm9v!g==", &out));
  EXPECT_FALSE(Base64Decode("Zg=", &out));     // padding without a full quantum
  std::mt19937_64 rng(5);
  for (int i = 0; i < 500; ++i) {
    std::string bytes(rng() % 40, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    ASSERT_TRUE(Base64Decode(Base64Encode(bytes), &out));
    EXPECT_EQ(out, bytes);
  }
}

TEST(AppendJsonString, EscapesQuotesBackslashesAndControls) {
  std::string out;
  AppendJsonString(&out, std::string("a\"b\\c\n\x01\0d", 9));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\u0001\\u0000d\"");
}

TEST(ManualClock, MovesOnlyWhenTold) {
  ManualClock clock(1000);
  EXPECT_EQ(clock.NowMillis(), 1000);
  clock.SleepForMicros(2500);
  EXPECT_EQ(clock.NowMillis(), 1002);
  EXPECT_EQ(clock.MonotonicMicros(), 1'002'500);
}

TEST(Thread, NamesTheCallingThread) {
  char before[32] = {};
  pthread_getname_np(pthread_self(), before, sizeof(before));
  std::string name;
  std::thread([&] {
    NameThisThread("aq-test-thread-with-a-long-name");
    char buf[32] = {};
    pthread_getname_np(pthread_self(), buf, sizeof(buf));
    name = buf;
  }).join();
  EXPECT_EQ(name, "aq-test-thread-");  // 15 bytes kept
  char after[32] = {};
  pthread_getname_np(pthread_self(), after, sizeof(after));
  EXPECT_STREQ(after, before) << "only the calling thread is named";
}

}  // namespace
}  // namespace aquifer
