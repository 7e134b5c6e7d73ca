// openapi.json and the router describe the same API.
#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "aquifer/gateway/api.h"
#include "aquifer/gateway/router.h"

namespace aquifer::gateway {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

nlohmann::json Spec() { return nlohmann::json::parse(OpenApiJson()); }

TEST(OpenApi, EveryRouteIsInTheSpecAndEverySpecOperationIsARoute) {
  nlohmann::json spec = Spec();
  ASSERT_EQ(spec["openapi"].get<std::string>().substr(0, 2), "3.");
  std::set<std::string> in_spec, in_router;
  for (auto& [path, item] : spec["paths"].items()) {
    for (auto& [method, operation] : item.items()) {
      if (method == "parameters" || method == "summary" || method == "description") continue;
      in_spec.insert(Lower(method) + " " + path);
    }
  }
  for (const RouteSpec& route : Routes()) in_router.insert(Lower(route.method) + " " + std::string(route.pattern));
  for (const std::string& operation : in_router) {
    EXPECT_TRUE(in_spec.count(operation)) << "route missing from openapi.json: " << operation;
  }
  for (const std::string& operation : in_spec) {
    EXPECT_TRUE(in_router.count(operation)) << "openapi.json describes an unrouted operation: " << operation;
  }
}

// Resolves a local "$ref" ("#/components/parameters/limit").
const nlohmann::json* Resolve(const nlohmann::json& spec, const nlohmann::json& node) {
  if (!node.is_object() || !node.contains("$ref")) return &node;
  std::string ref = node["$ref"];
  if (!ref.starts_with("#/")) return nullptr;
  nlohmann::json::json_pointer pointer(ref.substr(1));
  return spec.contains(pointer) ? &spec.at(pointer) : nullptr;
}

void CheckRefs(const nlohmann::json& spec, const nlohmann::json& node, const std::string& where) {
  if (node.is_object()) {
    if (node.contains("$ref")) {
      EXPECT_NE(Resolve(spec, node), nullptr) << "dangling $ref " << node["$ref"] << " at " << where;
    }
    for (auto& [key, child] : node.items()) CheckRefs(spec, child, where + "/" + key);
  } else if (node.is_array()) {
    for (size_t idx = 0; idx < node.size(); ++idx) CheckRefs(spec, node[idx], where + "/" + std::to_string(idx));
  }
}

TEST(OpenApi, EveryRefResolves) {
  nlohmann::json spec = Spec();
  CheckRefs(spec, spec, "");
}

TEST(OpenApi, PathParametersAndQueryParametersMatchTheRouter) {
  nlohmann::json spec = Spec();
  for (const RouteSpec& route : Routes()) {
    const nlohmann::json& operation = spec["paths"][std::string(route.pattern)][Lower(route.method)];
    std::set<std::string> path_params, query_params;
    if (operation.contains("parameters")) {
      for (const nlohmann::json& raw : operation["parameters"]) {
        const nlohmann::json* parameter = Resolve(spec, raw);
        ASSERT_NE(parameter, nullptr);
        std::string in = (*parameter)["in"];
        if (in == "path") path_params.insert((*parameter)["name"].get<std::string>());
        if (in == "query") query_params.insert((*parameter)["name"].get<std::string>());
      }
    }
    std::set<std::string> pattern_params;
    std::string_view pattern = route.pattern;
    for (size_t open = pattern.find('{'); open != std::string_view::npos; open = pattern.find('{', open + 1)) {
      pattern_params.insert(std::string(pattern.substr(open + 1, pattern.find('}', open) - open - 1)));
    }
    EXPECT_EQ(path_params, pattern_params) << route.label;
    std::set<std::string> router_query(route.query_params.begin(), route.query_params.end());
    EXPECT_EQ(query_params, router_query) << route.label;
  }
}

TEST(OpenApi, OnlyHealthzAndOpenApiAreDeclaredWithoutSecret) {
  nlohmann::json spec = Spec();
  for (const RouteSpec& route : Routes()) {
    const nlohmann::json& operation = spec["paths"][std::string(route.pattern)][Lower(route.method)];
    bool open = operation.contains("security") && operation["security"].empty();
    EXPECT_EQ(open, !route.needs_secret) << route.label;
  }
}

}  // namespace
}  // namespace aquifer::gateway
