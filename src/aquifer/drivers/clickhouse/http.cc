#include "aquifer/drivers/clickhouse/http.h"

#include <charconv>

#include <curl/curl.h>
#include <fmt/format.h>

namespace aquifer::drivers::clickhouse {
namespace {

size_t AppendBody(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

size_t ReadSource(char* buffer, size_t size, size_t count, void* user) {
  const size_t got = (*static_cast<const std::function<size_t(char*, size_t)>*>(user))(buffer, size * count);
  return got == kAbortBody ? CURL_READFUNC_ABORT : got;
}

int AbortCheck(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

// "Code: 60, e.displayText() = DB::Exception: Table x doesn't exist., e.what() = DB::Exception"
// → "Table x doesn't exist."
std::string ErrorMessage(const std::string& body) {
  std::string message = body;
  const std::string display = "e.displayText() = ";
  if (size_t at = message.find(display); at != std::string::npos) message = message.substr(at + display.size());
  if (message.starts_with("DB::Exception: ")) message = message.substr(15);
  if (size_t at = message.rfind(", e.what() = "); at != std::string::npos) message.resize(at);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  if (message.size() > 2000) message.resize(2000);
  return message;
}

Status ServerError(long http, const std::string& body) {
  const int code = ErrorCode(body);
  const std::string what = fmt::format("Code: {}: {}", code, ErrorMessage(body));
  switch (code) {
    case 6: case 26: case 27: case 32: case 33: case 35: case 36: case 38: case 41: case 42: case 43: case 44:
    case 46: case 47: case 48: case 49: case 50: case 53: case 62: case 69: case 70: case 72: case 73: case 115:
    case 117: case 130: case 131: case 179: case 184: case 190: case 215: case 352: case 386:
      return InvalidArgument("{}", what);
    case 60: case 81: return NotFound("{}", what);
    case 57: case 82: case 216: return AlreadyExists("{}", what);
    case 159: return Timeout("{}", what);
    case 394: return Aborted("{}", what);
    case 192: case 193: case 516: return Unauthenticated("{}", what);
    case 164: case 497: return PermissionDenied("{}", what);
    case 158: case 160: case 241: case 396: return ResourceExhausted("{}", what);
    default: break;
  }
  if (http == 400 || http == 404) return InvalidArgument("{}", what);
  if (http == 401 || http == 403) return Unauthenticated("{}", what);
  if (http == 503) return Unavailable("{}", what);
  return Internal("{}", what);
}

}  // namespace

int ErrorCode(std::string_view body) {
  size_t at = body.find("Code: ");
  if (at == std::string_view::npos) return -1;
  at += 6;
  int code = -1;
  auto [end, ec] = std::from_chars(body.data() + at, body.data() + body.size(), code);
  return ec == std::errc() ? code : -1;
}

HttpClient::HttpClient(HttpOptions options) : options_(std::move(options)) {
  static std::once_flag global_init;
  std::call_once(global_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

HttpClient::~HttpClient() {
  for (void* handle : idle_) curl_easy_cleanup(static_cast<CURL*>(handle));
}

void* HttpClient::Borrow() {
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

void HttpClient::Return(void* handle) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(handle);
}

Result<std::string> HttpClient::Call(const Request& request) {
  CURL* curl = static_cast<CURL*>(Borrow());
  if (curl == nullptr) return Internal("clickhouse: cannot start libcurl");
  curl_easy_reset(curl);
  auto escape = [&](const std::string& text) {
    char* escaped = curl_easy_escape(curl, text.data(), static_cast<int>(text.size()));
    std::string out = escaped != nullptr ? escaped : "";
    curl_free(escaped);
    return out;
  };
  std::string endpoint = options_.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  std::string url = endpoint + "/?wait_end_of_query=1";
  for (const auto& [name, value] : request.settings) url += "&" + escape(name) + "=" + escape(value);
  const bool streamed = static_cast<bool>(request.source);
  const bool insert = streamed || !request.data.empty();
  if (insert) url += "&query=" + escape(request.sql);
  const std::string& payload = insert ? request.data : request.sql;
  std::string response;
  char error_buffer[CURL_ERROR_SIZE] = {0};
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: text/plain; charset=utf-8");
  headers = curl_slist_append(headers, ("X-ClickHouse-User: " + options_.user).c_str());
  if (!options_.password.empty()) headers = curl_slist_append(headers, ("X-ClickHouse-Key: " + options_.password).c_str());
  headers = curl_slist_append(headers, "Expect:");
  if (streamed) headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(request.timeout_ms > 0 ? request.timeout_ms : options_.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "aquifer-clickhouse/0.1");
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  if (streamed) {
    curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);  // fewer, larger chunks (64 KiB by default)
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, ReadSource);
    curl_easy_setopt(curl, CURLOPT_READDATA, &request.source);
  } else {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(payload.size()));
  }
  if (request.abort != nullptr) {
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, AbortCheck);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, request.abort);
  }
  const CURLcode code = curl_easy_perform(curl);
  long http = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &http);
  curl_slist_free_all(headers);
  Return(curl);
  if (code == CURLE_ABORTED_BY_CALLBACK) return Aborted("clickhouse: request stopped");
  if (code == CURLE_READ_ERROR) return Aborted("clickhouse: the request's body was cut off by its source");
  if (code == CURLE_OPERATION_TIMEDOUT) return Timeout("clickhouse: no answer within the request timeout");
  if (code != CURLE_OK) {
    return Unavailable("clickhouse {}: {}", options_.endpoint,
                       error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code));
  }
  if (http < 200 || http >= 300) return ServerError(http, response);
  return response;
}

}  // namespace aquifer::drivers::clickhouse
