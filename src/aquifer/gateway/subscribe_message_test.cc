// ParseSubscribeMessage: the first WebSocket message of a subscription.
#include <gtest/gtest.h>

#include "aquifer/gateway/api.h"

namespace aquifer::gateway {
namespace {

TEST(SubscribeMessage, TakesTypeCursorFilterAndSecret) {
  auto parsed = ParseSubscribeMessage(
      R"({"type":"subscribe","cursor":"3yZe","filter":{"id":{"_gte":"a"}},"secret":"aq_x"})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->cursor, "3yZe");
  EXPECT_EQ(parsed->filter_json, R"({"id":{"_gte":"a"}})");
  EXPECT_EQ(parsed->secret, "aq_x");
}

TEST(SubscribeMessage, NullOrAbsentFilterAndSecretAreEmpty) {
  auto parsed = ParseSubscribeMessage(R"({"cursor":"c","type":"subscribe","filter":null})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->cursor, "c");
  EXPECT_EQ(parsed->filter_json, "");
  EXPECT_EQ(parsed->secret, "");
}

TEST(SubscribeMessage, RefusesEverythingElseWithInvalidArgument) {
  for (const char* text : {
           "", "{", "[]", "\"subscribe\"", R"({"cursor":"c"})", R"({"type":"subscribe"})",
           R"({"type":"subscribe","cursor":""})", R"({"type":"records","cursor":"c"})",
           R"({"type":1,"cursor":"c"})", R"({"type":"subscribe","cursor":5})",
           R"({"type":"subscribe","cursor":"c","filter":[1]})",
           R"({"type":"subscribe","cursor":"c","filter":"{}"})",
           R"({"type":"subscribe","cursor":"c","secret":null})",
           R"({"type":"subscribe","cursor":"c","extra":true})"}) {
    auto parsed = ParseSubscribeMessage(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_FALSE(parsed.status().message().empty()) << text;
  }
}

}  // namespace
}  // namespace aquifer::gateway
