#pragma once

// Api: the HTTP routes of DESIGN.md over an Engine, independent of the
// transport. The Beast server (server.h) parses the wire format into an
// HttpRequest, calls Handle() on a blocking-call pool (engine calls block:
// a `wait=index` write may take seconds), and writes the HttpResponse.
//
// Order of checks for every request, so answers are predictable:
//   1. route: unknown path → 404, known path with another method → 405 + Allow;
//   2. role: a worker-only process serves /healthz and /metrics only (404);
//   3. secret: `Authorization: Bearer <secret>` → Engine::Authenticate, else
//      401 + `WWW-Authenticate: Bearer`;
//   4. query parameters: unknown or repeated → 400; bad integers → 400;
//   5. body, then the engine call; its Status maps to HTTP in errors.h.
//
// Thread-safe: Handle() may run on any number of threads at once.

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "aquifer/engine/engine.h"
#include "aquifer/gateway/metrics.h"
#include "aquifer/gateway/router.h"

namespace aquifer::gateway {

struct HttpRequest {
  std::string method;         // "GET"
  std::string target;         // "/v1/cursor?cursor=...&limit=10" as sent
  std::string authorization;  // the Authorization header, "" when absent
  std::string content_type;
  std::string idempotency_key;
  std::string if_none_match;  // the If-None-Match header (console files), "" when absent
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;                                          // empty for 204
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  const RouteSpec* route = nullptr;                          // for metrics; null if unmatched
};

struct ApiOptions {
  engine::Role role = engine::Role::kAll;
  // false: GET /metrics needs the admin secret (the default); true: open.
  bool public_metrics = false;
  // Requests per second one secret may make (a token bucket holding
  // `rate_limit_burst` requests, default: one second's worth); over it: 429
  // with Retry-After. 0: no limit (the default).
  double rate_limit_per_secret = 0;
  int64_t rate_limit_burst = 0;
};

class Api {
 public:
  // `engine` and `metrics` outlive the Api.
  Api(engine::Engine* engine, GatewayMetrics* metrics, ApiOptions options);

  HttpResponse Handle(const HttpRequest& request);

  // Resolves an Authorization header value ("Bearer aq_...") to a principal.
  // Unauthenticated when absent, not Bearer, or unknown.
  Result<engine::Principal> Authenticate(std::string_view authorization);

  engine::Engine* engine() const { return engine_; }

  // Engine::Health() checks every store (a catalog read, a queue call, a
  // warehouse dry run), far too slow for a probe polled many times a second.
  // /healthz answers from a result at most kHealthTtlMicros old; one caller
  // refreshes it while the others keep answering the previous one.
  static constexpr int64_t kHealthTtlMicros = 1'000'000;
  Status Health();

 private:
  HttpResponse Dispatch(const RouteSpec& route, const std::vector<std::string>& params,
                        const QueryParams& query, const HttpRequest& request);

  engine::Engine* engine_;
  GatewayMetrics* metrics_;
  ApiOptions options_;

  std::mutex health_mu_;
  Status health_;                   // GUARDED_BY(health_mu_)
  int64_t health_checked_us_ = -1;  // GUARDED_BY(health_mu_); -1: never
  bool health_refreshing_ = false;  // GUARDED_BY(health_mu_)

  // ApiOptions::rate_limit_per_secret: a token bucket per secret id.
  Status TakeRateToken(const engine::Principal& who);
  struct Bucket {
    double tokens = 0;
    int64_t refilled_us = 0;
  };
  std::mutex rate_mu_;
  std::unordered_map<std::string, Bucket> buckets_;  // GUARDED_BY(rate_mu_)
};

// An error answer: the status's HTTP code and JSON body, plus the headers
// 401 (WWW-Authenticate) and 429 (Retry-After) call for.
HttpResponse ErrorResponse(const Status& status, std::span<const engine::RecordError> details = {});

// The embedded OpenAPI 3.0 document (src/aquifer/gateway/openapi.json).
std::string_view OpenApiJson();

// "malformed JSON: <parser message>" when `body` is not one JSON value; OK otherwise.
Status CheckJsonBody(std::string_view body);

// The first (and only) client message of a WebSocket subscription:
// {"type":"subscribe","cursor":"...","filter":{...},"secret":"..."} (DESIGN.md,
// "WebSocket"). InvalidArgument for anything else: not JSON, not an object, a
// type other than "subscribe", a field of the wrong type, an unknown field, no
// cursor. Fields absent from the message are empty; a null filter is none.
struct SubscribeMessage {
  std::string cursor;
  std::string filter_json;  // the filter object as JSON, "" when absent
  std::string secret;       // "" when absent
};
Result<SubscribeMessage> ParseSubscribeMessage(std::string_view text);

}  // namespace aquifer::gateway
