#include "aquifer/gateway/errors.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "aquifer/gateway/api.h"

namespace aquifer::gateway {
namespace {

TEST(StatusMapping, EveryCodeHasTheStatusEngineHDocuments) {
  struct Row {
    StatusCode code;
    int http;
    std::string_view name;
  };
  const Row kTable[] = {
      {StatusCode::kInvalidArgument, 400, "invalid_argument"},
      {StatusCode::kUnauthenticated, 401, "unauthenticated"},
      {StatusCode::kPermissionDenied, 403, "permission_denied"},
      {StatusCode::kNotFound, 404, "not_found"},
      {StatusCode::kAlreadyExists, 409, "already_exists"},
      {StatusCode::kFailedPrecondition, 409, "failed_precondition"},
      {StatusCode::kAborted, 409, "aborted"},
      {StatusCode::kTooLarge, 413, "too_large"},
      {StatusCode::kResourceExhausted, 429, "resource_exhausted"},
      {StatusCode::kUnavailable, 503, "unavailable"},
      {StatusCode::kTimeout, 504, "timeout"},
      {StatusCode::kCorruption, 500, "corruption"},
      {StatusCode::kNotSupported, 500, "not_supported"},
      {StatusCode::kInternal, 500, "internal"},
  };
  for (const Row& row : kTable) {
    EXPECT_EQ(HttpStatusFor(row.code), row.http) << row.name;
    EXPECT_EQ(ErrorCodeName(row.code), row.name);
  }
  EXPECT_EQ(std::size(kTable), static_cast<size_t>(StatusCode::kTooLarge)) << "a code is missing here";
}

TEST(StatusMapping, ErrorBodyCarriesCodeMessageAndRecordDetails) {
  nlohmann::json plain = nlohmann::json::parse(ErrorJson(NotFound("table 'p.t' not found")));
  EXPECT_EQ(plain, nlohmann::json::parse(
                       R"({"error":{"code":"not_found","message":"table 'p.t' not found"}})"));

  std::vector<engine::RecordError> details = {{3, "items[2].price", "expected double, got string"},
                                              {5, "", "not an object"}};
  nlohmann::json records =
      nlohmann::json::parse(ErrorJson(InvalidArgument("2 invalid records"), details));
  EXPECT_EQ(records["error"]["code"], "invalid_records");
  ASSERT_EQ(records["error"]["details"].size(), 2u);
  EXPECT_EQ(records["error"]["details"][0],
            nlohmann::json::parse(
                R"({"record":3,"field":"items[2].price","message":"expected double, got string"})"));

  // Messages with raw bytes still make valid JSON.
  EXPECT_TRUE(nlohmann::json::accept(ErrorJson(Internal("bad \xff byte"))));
}

TEST(StatusMapping, ErrorResponsesAdd401And429And503Headers) {
  HttpResponse unauthenticated = ErrorResponse(Unauthenticated("no secret"));
  EXPECT_EQ(unauthenticated.status, 401);
  ASSERT_EQ(unauthenticated.headers.size(), 1u);
  EXPECT_EQ(unauthenticated.headers[0].first, "WWW-Authenticate");
  EXPECT_TRUE(unauthenticated.headers[0].second.starts_with("Bearer"));

  HttpResponse quota = ErrorResponse(ResourceExhausted("over the monthly write quota"));
  EXPECT_EQ(quota.status, 429);
  ASSERT_EQ(quota.headers.size(), 1u);
  EXPECT_EQ(quota.headers[0], (std::pair<std::string, std::string>{"Retry-After",
                                                                     std::to_string(kRetryAfterSeconds)}));
  EXPECT_TRUE(ErrorResponse(InvalidArgument("x")).headers.empty());

  HttpResponse unavailable = ErrorResponse(Unavailable("postgres: connection refused"));
  EXPECT_EQ(unavailable.status, 503);
  ASSERT_EQ(unavailable.headers.size(), 1u);
  EXPECT_EQ(unavailable.headers[0], (std::pair<std::string, std::string>{
                                        "Retry-After", std::to_string(kUnavailableRetryAfterSeconds)}));
}

TEST(StatusMapping, AnOverQuotaAnswerCarriesTheSecondsUntilTheQuotaResets) {
  Status over = engine::QuotaExhausted("project 'p' is over its monthly write quota", 2'678'400);
  EXPECT_EQ(engine::RetryAfterSeconds(over), 2'678'400);
  EXPECT_EQ(engine::RetryAfterSeconds(over.WithContext("writing p.t")), 2'678'400);
  EXPECT_EQ(engine::RetryAfterSeconds(ResourceExhausted("retry after soon s")), std::nullopt);
  EXPECT_EQ(engine::RetryAfterSeconds(InvalidArgument("x; retry after 5 s")), std::nullopt);
  HttpResponse quota = ErrorResponse(over);
  EXPECT_EQ(quota.status, 429);
  ASSERT_EQ(quota.headers.size(), 1u);
  EXPECT_EQ(quota.headers[0], (std::pair<std::string, std::string>{"Retry-After", "2678400"}));
}

TEST(CheckJsonBody, MalformedBodiesSayMalformedJsonAndWhere) {
  EXPECT_TRUE(CheckJsonBody(R"({"name":"shop"})").ok());
  Status broken = CheckJsonBody(R"({"name": shop})");
  EXPECT_EQ(broken.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(broken.message().starts_with("malformed JSON: ")) << broken.message();
  EXPECT_NE(broken.message().find("line 1, column"), std::string::npos) << broken.message();
  EXPECT_EQ(broken.message().find("json.exception"), std::string::npos) << broken.message();
  EXPECT_EQ(CheckJsonBody("  ").message(), "malformed JSON: the request body is empty");
}

}  // namespace
}  // namespace aquifer::gateway
