#include "aquifer/driver/cursor.h"

#include <random>

#include <gtest/gtest.h>

#include "aquifer/base/base58.h"

namespace aquifer::driver {
namespace {

TEST(CursorCodec, RoundTripsEveryTypeAndPayload) {
  CursorCodec codec("secret key");
  std::mt19937_64 rng(7);
  for (CursorType type : {CursorType::kLog, CursorType::kIndex, CursorType::kJob}) {
    for (int i = 0; i < 200; ++i) {
      Cursor cursor{type, Uuid::Random(), std::string(rng() % 200, '\0')};
      for (auto& c : cursor.payload) c = static_cast<char>(rng());
      std::string text = codec.Encode(cursor);
      auto back = codec.Decode(text);
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      EXPECT_EQ(*back, cursor);
    }
  }
}

TEST(CursorCodec, RejectsCursorsSignedWithAnotherKey) {
  CursorCodec ours("key one");
  CursorCodec theirs("key two");
  std::string text = theirs.Encode({CursorType::kIndex, Uuid::Random(), "payload"});
  auto decoded = ours.Decode(text);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(decoded.status().message().find("not issued by this server"), std::string::npos);
}

TEST(CursorCodec, RejectsEveryAlteredByte) {
  CursorCodec codec("k");
  Cursor cursor{CursorType::kLog, Uuid::Random(), "some driver payload"};
  std::string bytes = *Base58Decode(codec.Encode(cursor));
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string altered = bytes;
    altered[i] = static_cast<char>(altered[i] ^ 0x01);
    EXPECT_FALSE(codec.Decode(Base58Encode(altered)).ok()) << "byte " << i;
  }
}

TEST(CursorCodec, GarbageDecodesToAnError) {
  CursorCodec codec("k");
  for (std::string_view garbage : {"", "0OIl", "abc", "1111111111111111111111111111111111111111",
                                   "not a cursor at all", "\xff\xfe"}) {
    auto decoded = codec.Decode(garbage);
    EXPECT_FALSE(decoded.ok()) << garbage;
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_FALSE(codec.Decode(std::string(CursorCodec::kMaxEncodedLength + 1, '2')).ok());
  std::mt19937_64 rng(3);
  for (int i = 0; i < 5000; ++i) {
    std::string bytes(rng() % 80, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    EXPECT_FALSE(codec.Decode(Base58Encode(bytes)).ok());
  }
}

}  // namespace
}  // namespace aquifer::driver
