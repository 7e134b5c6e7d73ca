// The web console's files as Api::Handle serves them (no engine call is made for them).
#include "aquifer/gateway/console.h"

#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/gateway/api.h"

namespace aquifer::gateway {
namespace {

HttpResponse Get(engine::Role role, std::string target) {
  GatewayMetrics metrics;
  ApiOptions options;
  options.role = role;
  Api api(/*engine=*/nullptr, &metrics, options);
  HttpRequest request;
  request.method = "GET";
  request.target = std::move(target);
  return api.Handle(request);
}

std::string Header(const HttpResponse& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

TEST(Console, GatewaysServeItAndWorkersDoNot) {
  for (engine::Role role : {engine::Role::kAll, engine::Role::kGateway}) {
    HttpResponse index = Get(role, "/?from=bookmark");
    EXPECT_EQ(index.status, 200);
    EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
    EXPECT_EQ(index.route, nullptr);  // not an API route: metrics count it as "unmatched"
    EXPECT_EQ(Header(index, "Content-Security-Policy"), std::string(kConsoleCsp));
  }
  HttpResponse worker = Get(engine::Role::kWorker, "/");
  EXPECT_EQ(worker.status, 404);
  HttpResponse asset = Get(engine::Role::kWorker, "/console/" + std::string(ConsoleVersion()) + "/app.js");
  EXPECT_EQ(asset.status, 404);
}

TEST(Console, EveryEmbeddedFileHasAContentTypeAndTheIndexNamesTheCurrentVersion) {
  ASSERT_EQ(ConsoleVersion().size(), 16u);
  bool has_index = false;
  for (const ConsoleFile& file : ConsoleFiles()) {
    EXPECT_FALSE(file.body.empty()) << file.name;
    EXPECT_FALSE(file.content_type.empty()) << file.name;
    has_index = has_index || file.name == "index.html";
  }
  EXPECT_TRUE(has_index);
  std::optional<HttpResponse> index = ConsoleResponse("GET", "/", "");
  ASSERT_TRUE(index.has_value());
  for (std::string_view name : {"app.js", "console.css"}) {
    EXPECT_NE(index->body.find("/console/" + std::string(ConsoleVersion()) + "/" + std::string(name)),
              std::string::npos)
        << name;
  }
  EXPECT_FALSE(ConsoleResponse("GET", "/v1/usage", "").has_value());
  EXPECT_FALSE(ConsoleResponse("GET", "/healthz", "").has_value());
  EXPECT_FALSE(ConsoleResponse("GET", "/consoles", "").has_value());
}

}  // namespace
}  // namespace aquifer::gateway
