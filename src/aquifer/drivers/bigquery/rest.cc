#include "aquifer/drivers/bigquery/rest.h"

#include <cstdlib>

#include <curl/curl.h>
#include <fmt/format.h>

namespace aquifer::drivers::bigquery {

using nlohmann::json;

namespace {

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

int AbortCheck(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

Status HttpError(long http, std::string_view method, const std::string& path, const std::string& body) {
  std::string message;
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) {
    message = parsed["error"].value("message", "");
  }
  if (message.empty()) message = body.substr(0, 500);
  const std::string what = fmt::format("bigquery {} {}: HTTP {}: {}", method, path, http, message);
  switch (http) {
    case 400: return InvalidArgument("{}", what);
    case 401: return Unauthenticated("{}", what);
    case 403: return PermissionDenied("{}", what);
    case 404: return NotFound("{}", what);
    case 409: return AlreadyExists("{}", what);
    case 429: return Unavailable("{}", what);
    default: break;
  }
  if (http >= 500) return Unavailable("{}", what);
  return Internal("{}", what);
}

}  // namespace

RestClient::RestClient(RestOptions options) : options_(std::move(options)) {
  static std::once_flag global_init;
  std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::string endpoint = options_.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  base_ = endpoint + "/bigquery/v2/projects/" + options_.project;
}

RestClient::~RestClient() {
  for (void* handle : idle_) curl_easy_cleanup(static_cast<CURL*>(handle));
}

void* RestClient::Borrow() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      void* handle = idle_.back();
      idle_.pop_back();
      return handle;
    }
  }
  return curl_easy_init();
}

void RestClient::Return(void* handle) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(handle);
}

Result<json> RestClient::Call(std::string_view method, const std::string& path, const json* body, int64_t timeout_ms,
                              const std::atomic<bool>* abort) {
  CURL* curl = static_cast<CURL*>(Borrow());
  if (curl == nullptr) return Internal("bigquery: cannot start libcurl");
  curl_easy_reset(curl);
  const std::string url = base_ + path;
  std::string response;
  std::string payload = body != nullptr ? body->dump() : std::string();
  char error_buffer[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  if (!options_.token_env.empty()) {
    const char* token = std::getenv(options_.token_env.c_str());
    if (token == nullptr || *token == '\0') {
      curl_slist_free_all(headers);
      Return(curl);
      return Unauthenticated("bigquery: the environment variable {} (token_env) holding the bearer token is not set",
                             options_.token_env);
    }
    headers = curl_slist_append(headers, fmt::format("Authorization: Bearer {}", token).c_str());
  }
  const std::string method_text(method);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms > 0 ? timeout_ms : options_.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "aquifer-bigquery/0.1");
  curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  if (abort != nullptr) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, AbortCheck);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, abort);
  }
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method_text.c_str());
    if (body != nullptr || method == "POST") {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
    }
  }
  const CURLcode code = curl_easy_perform(curl);
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  curl_slist_free_all(headers);
  Return(curl);
  if (code == CURLE_ABORTED_BY_CALLBACK) return Aborted("bigquery {} {}: stopped", method, path);
  if (code == CURLE_OPERATION_TIMEDOUT) {
    return Timeout("bigquery {} {}: no answer within the request timeout", method, path);
  }
  if (code != CURLE_OK) {
    return Unavailable("bigquery {} {}: {}", method, path, error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code));
  }
  if (http < 200 || http >= 300) return HttpError(http, method, path, response);
  if (response.empty()) return json::object();
  json parsed = json::parse(response, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Internal("bigquery {} {}: the answer is not JSON", method, path);
  return parsed;
}

}  // namespace aquifer::drivers::bigquery
