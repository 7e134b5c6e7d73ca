#pragma once

// A small client of ClickHouse's HTTP interface over libcurl: each call POSTs
// one statement (in the body, or in the `query` URL parameter when the body
// carries INSERT data), with `wait_end_of_query=1` so the HTTP status is the
// statement's true outcome, and turns ClickHouse's `Code: N, e.displayText()
// = ...` error bodies into Status codes (README.md beside this file,
// "The driver"). Thread-safe: each call borrows a curl handle from a pool.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"

namespace aquifer::drivers::clickhouse {

struct HttpOptions {
  std::string endpoint;          // "http://127.0.0.1:8123"
  std::string user = "default";
  std::string password;
  int64_t timeout_ms = 60'000;   // per request (a job's own deadline may be shorter)
};

// A streamed body's source returns this to abort the request (the server
// sees the body cut off and stores nothing of it).
inline constexpr size_t kAbortBody = static_cast<size_t>(-1);

struct Request {
  std::string sql;                             // the statement
  std::string data;                            // INSERT data; when set, `sql` goes in the URL
  // INSERT data produced while it is sent (chunked): fills up to `size`
  // bytes at `buffer` and returns how many, 0 at the end, kAbortBody to
  // abort. When set, `data` is not used and `sql` goes in the URL.
  std::function<size_t(char* buffer, size_t size)> source;
  std::map<std::string, std::string> settings; // extra URL parameters (settings, query_id)
  int64_t timeout_ms = 0;                      // > 0 overrides the default
  const std::atomic<bool>* abort = nullptr;    // a set flag ends the request (Aborted)
};

// ClickHouse's error code in an error body ("Code: 60, e.displayText() = ..."), or -1.
int ErrorCode(std::string_view body);

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  const HttpOptions& options() const { return options_; }

  // The response body. Errors: ClickHouse's code mapped (syntax, unknown
  // identifier/function/type, bad value: InvalidArgument; unknown table or
  // database: NotFound; already exists: AlreadyExists; 159 timeout: Timeout;
  // 394 cancelled: Aborted; auth: Unauthenticated; readonly: PermissionDenied;
  // memory/limits: ResourceExhausted; else by HTTP status) with its message.
  // The Status message begins with "Code: N" so callers can tell codes apart.
  Result<std::string> Call(const Request& request);
  // Shorthand: one statement, its body.
  Result<std::string> Query(const std::string& sql, const std::map<std::string, std::string>& settings = {}) {
    Request request;
    request.sql = sql;
    request.settings = settings;
    return Call(request);
  }

 private:
  void* Borrow();
  void Return(void* handle);

  const HttpOptions options_;
  std::mutex mu_;
  std::vector<void*> idle_;  // CURL* handles; guarded by mu_
};

}  // namespace aquifer::drivers::clickhouse
