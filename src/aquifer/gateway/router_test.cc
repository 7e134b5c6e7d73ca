#include "aquifer/gateway/router.h"

#include <set>

#include <gtest/gtest.h>

namespace aquifer::gateway {
namespace {

TEST(Router, RouteTableIsIndexedByRouteIdAndHasUniqueMethodPatternPairs) {
  std::set<std::pair<std::string_view, std::string_view>> seen;
  for (size_t route_idx = 0; route_idx < Routes().size(); ++route_idx) {
    const RouteSpec& route = Routes()[route_idx];
    EXPECT_EQ(static_cast<size_t>(route.id), route_idx);
    EXPECT_TRUE(seen.emplace(route.method, route.pattern).second) << route.label;
    EXPECT_EQ(route.label, std::string(route.method) + " " + std::string(route.pattern));
  }
}

TEST(Router, MatchesPatternsAndDecodesPathParameters) {
  RouteMatch match = MatchRoute("GET", "/v1/projects/shop/tables/orders/records");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(match.route->id, RouteId::kQueryIndex);
  EXPECT_EQ(match.params, (std::vector<std::string>{"shop", "orders"}));

  match = MatchRoute("POST", "/v1/projects/shop/tables/orders/records");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(match.route->id, RouteId::kWriteRecords);

  match = MatchRoute("DELETE", "/v1/projects/s%68op/tables/t");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(match.route->id, RouteId::kDeleteTable);
  EXPECT_EQ(match.params[0], "shop");

  match = MatchRoute("GET", "/v1/jobs/0b6f/rows");
  ASSERT_NE(match.route, nullptr);
  EXPECT_EQ(match.route->id, RouteId::kJobRows);
  EXPECT_EQ(match.params, (std::vector<std::string>{"0b6f"}));
}

TEST(Router, KnownPathWithAnotherMethodListsTheAllowedOnes) {
  RouteMatch match = MatchRoute("PUT", "/v1/projects/p/tables/t");
  EXPECT_EQ(match.route, nullptr);
  EXPECT_EQ(match.allow, "GET, DELETE");
  match = MatchRoute("DELETE", "/v1/projects/p/tables/t/records");
  EXPECT_EQ(match.allow, "POST, GET");
  match = MatchRoute("POST", "/healthz");
  EXPECT_EQ(match.allow, "GET");
}

TEST(Router, UnknownPathsMatchNothing) {
  for (std::string_view path : {"/", "/v1", "/v1/projects/", "/v1/projects/p/tables/t/x", "/v2/usage",
                                "/v1/projects//tables", "healthz", ""}) {
    RouteMatch match = MatchRoute("GET", path);
    EXPECT_EQ(match.route, nullptr) << path;
    EXPECT_TRUE(match.allow.empty()) << path;
  }
  // An empty parameter segment does not match a {name}.
  EXPECT_EQ(MatchRoute("POST", "/v1/projects//secrets").route, nullptr);
}

TEST(PercentDecode, DecodesEscapesAndPlusOnlyInQueries) {
  EXPECT_EQ(*PercentDecode("%7B%22a%22%3A1%7D", false), "{\"a\":1}");
  EXPECT_EQ(*PercentDecode("a+b", true), "a b");
  EXPECT_EQ(*PercentDecode("a+b", false), "a+b");
  EXPECT_EQ(*PercentDecode("%e2%82%AC", false), "\xe2\x82\xac");
  EXPECT_FALSE(PercentDecode("%", false).ok());
  EXPECT_FALSE(PercentDecode("%4", false).ok());
  EXPECT_FALSE(PercentDecode("%zz", false).ok());
}

TEST(ParseTarget, SplitsPathAndDecodesQueryInOrder) {
  Result<Target> target = ParseTarget("/v1/x?filter=%7B%22u%22%3A%22a+b%22%7D&limit=5&flag&&x=");
  ASSERT_TRUE(target.ok()) << target.status().ToString();
  EXPECT_EQ(target->path, "/v1/x");
  ASSERT_EQ(target->query.size(), 4u);
  EXPECT_EQ(target->query[0], (std::pair<std::string, std::string>{"filter", "{\"u\":\"a b\"}"}));
  EXPECT_EQ(target->query[1], (std::pair<std::string, std::string>{"limit", "5"}));
  EXPECT_EQ(target->query[2], (std::pair<std::string, std::string>{"flag", ""}));
  EXPECT_EQ(target->query[3], (std::pair<std::string, std::string>{"x", ""}));
  EXPECT_FALSE(ParseTarget("/v1/x?a=%G0").ok());
  EXPECT_FALSE(ParseTarget("http://host/v1").ok());
  EXPECT_EQ(ParseTarget("/healthz")->query.size(), 0u);
}

TEST(QueryParams, RejectsUnknownAndRepeatedParametersByName) {
  constexpr std::string_view kAllowed[] = {"limit", "filter"};
  QueryParams ok({{"limit", "5"}, {"filter", "{}"}});
  EXPECT_TRUE(ok.Check(kAllowed).ok());

  QueryParams unknown({{"limit", "5"}, {"colour", "red"}, {"size", "1"}});
  Status status = unknown.Check(kAllowed);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'colour', 'size'"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("'limit', 'filter'"), std::string::npos) << status.message();

  QueryParams twice({{"limit", "5"}, {"limit", "6"}});
  EXPECT_NE(twice.Check(kAllowed).message().find("'limit' given more than once"), std::string::npos);

  QueryParams one(std::vector<std::pair<std::string, std::string>>{{"x", "1"}});
  EXPECT_NE(one.Check({}).message().find("accepts none"), std::string::npos);
}

TEST(QueryParams, IntegersAreCheckedAgainstTheirRange) {
  auto limit = [](std::string value) {
    return QueryParams({{"limit", value}}).GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit);
  };
  EXPECT_EQ(*limit("1"), 1);
  EXPECT_EQ(*limit("1000"), 1000);
  EXPECT_EQ(*QueryParams().GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit), 100);
  for (std::string bad : {"abc", "0", "5000", "-1", "", "10x", " 5", "1e3", "99999999999999999999"}) {
    Result<int64_t> value = limit(bad);
    ASSERT_FALSE(value.ok()) << bad;
    EXPECT_EQ(value.status().message(),
              "query parameter 'limit' must be an integer from 1 to 1000, got '" + bad + "'");
  }
}

}  // namespace
}  // namespace aquifer::gateway
