#pragma once

// The gateway's route table, as data, and the URL parsing it needs.
//
// Routes() lists every (method, path pattern) the gateway serves, in the
// order DESIGN.md's API table gives them. Patterns use `{name}` for one path
// segment ("/v1/projects/{project}/tables/{table}"). The table is the single
// source for dispatch (Api), for 405's Allow header, for metrics labels and
// for the OpenAPI consistency test, which checks that openapi.json describes
// exactly these routes.
//
// Everything here is a pure function of its arguments and thread-safe.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aquifer/base/status.h"

namespace aquifer::gateway {

enum class RouteId : uint8_t {
  kCreateProject,
  kCreateTable,
  kDescribeTable,
  kDeleteTable,
  kWriteRecords,
  kQueryIndex,
  kQueryLog,
  kReadCursor,
  kSubscribe,
  kSql,
  kGetJob,
  kJobRows,
  kCreateSecret,
  kUsage,
  kListDeadLetters,
  kReplayDeadLetters,
  kHealthz,
  kMetrics,
  kOpenApi,
  kGetQuotas,
  kSetQuotas,
  kListTables,
};

struct RouteSpec {
  RouteId id;
  std::string_view method;   // "GET", "POST", "DELETE"
  std::string_view pattern;  // "/v1/projects/{project}/tables"
  std::string_view label;    // metrics label: "POST /v1/projects/{project}/tables"
  // Query parameters the route accepts; any other is a 400 naming it.
  std::span<const std::string_view> query_params;
  bool needs_secret = true;  // false: /healthz, /openapi.json (and /metrics when opened)
  bool on_worker = false;    // also served by a worker-only process
};

// Every route, in a stable order; index == static_cast<size_t>(RouteId).
std::span<const RouteSpec> Routes();
const RouteSpec& Route(RouteId id);

// The result of matching a path (already split from its query) against Routes().
struct RouteMatch {
  const RouteSpec* route = nullptr;  // null: no route for this method
  // Values of the pattern's {name} segments, in order, percent-decoded.
  std::vector<std::string> params;
  // Methods the path supports, "GET, DELETE" style; empty when no pattern
  // matches the path at all (404). Set when `route` is null and the path is
  // known (405).
  std::string allow;
};
RouteMatch MatchRoute(std::string_view method, std::string_view path);

// Percent-decodes one URL component. `plus_is_space` for query strings
// (application/x-www-form-urlencoded). InvalidArgument for a bad escape.
Result<std::string> PercentDecode(std::string_view text, bool plus_is_space);

// A request target split into its decoded path and query parameters.
struct Target {
  std::string path;  // raw (not decoded): segments are decoded one by one by MatchRoute
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
};
// Parses "/v1/x?limit=5&filter=%7B%7D". InvalidArgument for bad escapes or an
// origin form that does not start with '/'.
Result<Target> ParseTarget(std::string_view target);

// Query parameters of one request, checked against the route's list.
class QueryParams {
 public:
  QueryParams() = default;
  explicit QueryParams(std::vector<std::pair<std::string, std::string>> params)
      : params_(std::move(params)) {}

  // InvalidArgument naming every parameter not in `allowed` and every
  // parameter given twice.
  Status Check(std::span<const std::string_view> allowed) const;
  std::optional<std::string_view> Get(std::string_view name) const;
  // An integer parameter in [min, max], or `fallback` when absent.
  // InvalidArgument "query parameter 'limit' must be an integer from 1 to 1000, got 'abc'".
  Result<int64_t> GetInt(std::string_view name, int64_t min, int64_t max, int64_t fallback) const;

 private:
  std::vector<std::pair<std::string, std::string>> params_;
};

// `limit` on every paged read: 1..1000, default 100 (DESIGN.md, "Reads").
inline constexpr int64_t kMinLimit = 1;
inline constexpr int64_t kMaxLimit = 1000;
inline constexpr int64_t kDefaultLimit = 100;
// `hours` on GET /v1/usage: 0..168 hourly buckets (a week), default 0 (none).
inline constexpr int64_t kMaxUsageHours = 168;

}  // namespace aquifer::gateway
