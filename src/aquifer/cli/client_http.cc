#include "aquifer/cli/client_http.h"

#include <cctype>
#include <cstring>
#include <mutex>

#include <curl/curl.h>

namespace aquifer::cli {

using nlohmann::json;

namespace {

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t ReadHeader(char* data, size_t size, size_t count, void* user) {
  auto* response = static_cast<HttpResponse*>(user);
  std::string_view line(data, size * count);
  size_t colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
      value.remove_suffix(1);
    }
    if (name == "retry-after") {
      response->retry_after_s = std::atoll(std::string(value).c_str());
    } else if (name == "content-type") {
      response->content_type = std::string(value);
    }
  }
  return size * count;
}

}  // namespace

ServerClient::ServerClient(ServerOptions options) : options_(std::move(options)) {
  static std::once_flag global_init;
  std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  while (!options_.url.empty() && options_.url.back() == '/') options_.url.pop_back();
  curl_ = curl_easy_init();
}

ServerClient::~ServerClient() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

HttpResponse ServerClient::Send(std::string_view method, std::string_view path, std::string_view body,
                                std::string_view content_type,
                                const std::vector<std::string>& extra_headers) {
  CURL* curl = static_cast<CURL*>(curl_);
  if (curl == nullptr) throw CommandError(kExitUnreachable, "cannot start libcurl");
  curl_easy_reset(curl);
  HttpResponse response;
  std::string url = options_.url + std::string(path);
  char error_buffer[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  if (options_.timeout_ms > 0) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, options_.timeout_ms);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, ReadHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "aquifer-cli/0.1");

  std::string method_text(method);
  if (method == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method_text.c_str());
    if (method != "DELETE" || !body.empty()) {
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
  }

  curl_slist* headers = nullptr;
  std::string authorization = "Authorization: Bearer " + options_.secret;
  std::string content = "Content-Type: " + std::string(content_type);
  if (!options_.secret.empty()) headers = curl_slist_append(headers, authorization.c_str());
  if (!body.empty()) headers = curl_slist_append(headers, content.c_str());
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip for big batches
  for (const std::string& header : extra_headers) headers = curl_slist_append(headers, header.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

  CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    std::string reason = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
    throw CommandError(kExitUnreachable, "cannot reach " + options_.url + ": " + reason);
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

json ServerClient::Call(std::string_view method, std::string_view path, const json* body) {
  std::string text = body != nullptr ? body->dump() : std::string();
  HttpResponse response = Send(method, path, text);
  if (!response.ok()) ThrowServerError(response);
  if (response.body.empty()) return json::object();
  return ParseJsonBody(response, path);
}

std::string ErrorMessage(const HttpResponse& response) {
  std::string prefix = std::to_string(response.status);
  json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const json& error = body["error"];
    std::string code = error.value("code", "");
    std::string message = error.value("message", "");
    std::string out = prefix;
    if (!code.empty()) out += " " + code;
    if (!message.empty()) out += (code.empty() ? " " : ": ") + message;
    return out;
  }
  std::string excerpt = response.body.substr(0, 200);
  while (!excerpt.empty() && std::isspace(static_cast<unsigned char>(excerpt.back()))) excerpt.pop_back();
  if (excerpt.empty()) {
    const char* reason = response.status == 401   ? "unauthenticated (give --secret or AQUIFER_SECRET)"
                         : response.status == 404 ? "not found"
                                                  : "error";
    return prefix + " " + reason;
  }
  return prefix + " " + excerpt;
}

void ThrowServerError(const HttpResponse& response) {
  throw CommandError(kExitServerError, ErrorMessage(response));
}

json ParseJsonBody(const HttpResponse& response, std::string_view what) {
  json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    throw CommandError(kExitServerError,
                       "the server's answer to " + std::string(what) + " is not JSON: " +
                           response.body.substr(0, 200));
  }
  return body;
}

}  // namespace aquifer::cli
