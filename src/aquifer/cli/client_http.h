#pragma once

// The client commands' view of an Aquifer server: a blocking HTTP client on
// libcurl (one connection, kept alive between requests) plus the error type
// the commands end with.
//
// A command fails by throwing CommandError, which RunClientCommand (in
// client_commands.cc) catches, prints and turns into the exit code:
//   1  the server answered with an error (its code and message are printed)
//   2  bad usage found after parsing (CLI11 itself reports the rest)
//   3  the server could not be reached
// Nothing else throws across these functions. Not thread-safe: one
// ServerClient per thread.

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace aquifer::cli {

inline constexpr int kExitServerError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

class CommandError : public std::runtime_error {
 public:
  CommandError(int exit_code, const std::string& message, std::vector<std::string> details = {})
      : std::runtime_error(message), exit_code_(exit_code), details_(std::move(details)) {}
  int exit_code() const { return exit_code_; }
  // Lines printed under the message (one per bad record of a rejected write).
  const std::vector<std::string>& details() const { return details_; }

 private:
  int exit_code_;
  std::vector<std::string> details_;
};

struct HttpResponse {
  long status = 0;
  std::string body;
  std::string content_type;
  int64_t retry_after_s = -1;  // the Retry-After header, when present
  bool ok() const { return status >= 200 && status < 300; }
};

struct ServerOptions {
  std::string url = "http://127.0.0.1:8080";  // base URL, no trailing "/v1"
  std::string secret;                         // empty: no Authorization header
  long timeout_ms = 0;                        // whole request; 0: none
};

class ServerClient {
 public:
  explicit ServerClient(ServerOptions options);
  ~ServerClient();
  ServerClient(const ServerClient&) = delete;
  ServerClient& operator=(const ServerClient&) = delete;

  // Sends one request to options.url + path ("/v1/..."). Throws CommandError
  // (exit 3, "cannot reach URL: reason") when no HTTP answer arrived;
  // otherwise returns whatever status the server gave.
  HttpResponse Send(std::string_view method, std::string_view path, std::string_view body = {},
                    std::string_view content_type = "application/json",
                    const std::vector<std::string>& extra_headers = {});

  // Send, then require a 2xx answer with a JSON body: any other status throws
  // the server's error (exit 1) as ErrorMessage renders it.
  nlohmann::json Call(std::string_view method, std::string_view path, const nlohmann::json* body = nullptr);

  const ServerOptions& options() const { return options_; }

 private:
  ServerOptions options_;
  void* curl_ = nullptr;  // CURL*
};

// "404 not_found: table 'p.t' not found" from an error answer
// {"error":{"code","message"}}; falls back to the status and a body excerpt.
std::string ErrorMessage(const HttpResponse& response);

// Throws CommandError(1, ErrorMessage(response)).
[[noreturn]] void ThrowServerError(const HttpResponse& response);

// Parses a JSON body, or throws CommandError(1) naming the route.
nlohmann::json ParseJsonBody(const HttpResponse& response, std::string_view what);

}  // namespace aquifer::cli
