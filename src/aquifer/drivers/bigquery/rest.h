#pragma once

// A small client of the BigQuery REST API v2 over libcurl: JSON in, JSON out,
// BigQuery's error responses turned into Status codes. Thread-safe: each call
// borrows a curl handle from a pool (kept connections are reused).
//
// Endpoint and credentials (README.md beside this file, "Options"): an
// emulator's http:// endpoint is used as is, without credentials; for the real
// service (https://bigquery.googleapis.com) each request carries
// `Authorization: Bearer <token>` with the token read from an environment
// variable at every call (so a refreshed token is picked up), over TLS with
// certificate and host verification.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "aquifer/base/status.h"

namespace aquifer::drivers::bigquery {

struct RestOptions {
  std::string endpoint;    // "http://127.0.0.1:9050" or "https://bigquery.googleapis.com"
  std::string project;     // the project every path names
  std::string token_env;   // environment variable holding a bearer token; empty: no credentials
  int64_t timeout_ms = 60'000;  // per request (a job's own deadline may be shorter)
};

class RestClient {
 public:
  explicit RestClient(RestOptions options);
  ~RestClient();
  RestClient(const RestClient&) = delete;
  RestClient& operator=(const RestClient&) = delete;

  const RestOptions& options() const { return options_; }

  // `method` GET/POST/DELETE/PATCH of `path` below /bigquery/v2/projects/<project>
  // (e.g. "/datasets"); `body` is sent when not null. `timeout_ms` > 0
  // overrides the default. Errors: the HTTP status mapped to a code
  // (400 InvalidArgument, 404 NotFound, 409 AlreadyExists, 401, 403, 429/5xx
  // Unavailable, a curl timeout Timeout) with BigQuery's own message.
  // A set `abort` flag ends the request early (Aborted).
  Result<nlohmann::json> Call(std::string_view method, const std::string& path,
                              const nlohmann::json* body = nullptr, int64_t timeout_ms = 0,
                              const std::atomic<bool>* abort = nullptr);

 private:
  void* Borrow();
  void Return(void* handle);

  const RestOptions options_;
  std::string base_;  // endpoint + /bigquery/v2/projects/<project>
  std::mutex mu_;
  std::vector<void*> idle_;  // CURL* handles; guarded by mu_
};

}  // namespace aquifer::drivers::bigquery
