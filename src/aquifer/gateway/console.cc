#include "aquifer/gateway/console.h"

#include <string>

#include "aquifer/gateway/errors.h"

namespace aquifer::gateway {
namespace {

const ConsoleFile* FindFile(std::string_view name) {
  for (const ConsoleFile& file : ConsoleFiles()) {
    if (file.name == name) return &file;
  }
  return nullptr;
}

// index.html names its assets with "%CONSOLE_BASE%/", replaced by /console/<version>.
const std::string& IndexHtml() {
  static const std::string html = [] {
    const ConsoleFile* index = FindFile("index.html");
    std::string text(index == nullptr ? std::string_view() : index->body);
    const std::string base = std::string(kConsolePrefix) + std::string(ConsoleVersion());
    constexpr std::string_view kPlaceholder = "%CONSOLE_BASE%";
    for (size_t at = text.find(kPlaceholder); at != std::string::npos;
         at = text.find(kPlaceholder, at + base.size())) {
      text.replace(at, kPlaceholder.size(), base);
    }
    return text;
  }();
  return html;
}

void SecurityHeaders(HttpResponse* response) {
  response->headers.emplace_back("Content-Security-Policy", std::string(kConsoleCsp));
  response->headers.emplace_back("X-Content-Type-Options", "nosniff");
  response->headers.emplace_back("Referrer-Policy", "no-referrer");
  response->headers.emplace_back("X-Frame-Options", "DENY");
}

HttpResponse NotFoundResponse(std::string_view path) {
  HttpResponse response =
      ErrorResponse(NotFound("no console file at {}; the console is at /", path));
  SecurityHeaders(&response);
  return response;
}

// A strong ETag per file: the build's version and the file name.
std::string ETagOf(std::string_view name) {
  return "\"" + std::string(ConsoleVersion()) + "-" + std::string(name) + "\"";
}

bool Matches(std::string_view if_none_match, const std::string& etag) {
  if (if_none_match == "*") return true;
  while (!if_none_match.empty()) {
    size_t comma = if_none_match.find(',');
    std::string_view tag = if_none_match.substr(0, comma);
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    while (!tag.empty() && tag.back() == ' ') tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == etag) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

HttpResponse FileResponse(std::string_view name, std::string_view content_type,
                          std::string_view body, std::string_view cache_control,
                          std::string_view if_none_match) {
  HttpResponse response;
  std::string etag = ETagOf(name);
  if (!if_none_match.empty() && Matches(if_none_match, etag)) {
    response.status = 304;
  } else {
    response.status = 200;
    response.content_type = std::string(content_type);
    response.body = std::string(body);
  }
  response.headers.emplace_back("ETag", etag);
  response.headers.emplace_back("Cache-Control", std::string(cache_control));
  SecurityHeaders(&response);
  return response;
}

}  // namespace

std::optional<HttpResponse> ConsoleResponse(std::string_view method, std::string_view path,
                                            std::string_view if_none_match) {
  bool index = path == "/";
  if (!index && !path.starts_with(kConsolePrefix)) return std::nullopt;
  if (method != "GET") {
    HttpResponse response;
    response.status = 405;
    response.body = ErrorJson(
        InvalidArgument("method {} is not allowed on {}; allowed: GET", method, path), {},
        "method_not_allowed");
    response.headers.emplace_back("Allow", "GET");
    SecurityHeaders(&response);
    return response;
  }
  if (index) {
    return FileResponse("index.html", "text/html; charset=utf-8", IndexHtml(), "no-cache",
                        if_none_match);
  }
  // /console/<version>/<file>
  std::string_view rest = path.substr(kConsolePrefix.size());
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos || rest.substr(0, slash) != ConsoleVersion()) {
    return NotFoundResponse(path);
  }
  std::string_view name = rest.substr(slash + 1);
  const ConsoleFile* file = FindFile(name);
  if (file == nullptr || name == "index.html") return NotFoundResponse(path);
  return FileResponse(file->name, file->content_type, file->body,
                      "public, max-age=31536000, immutable", if_none_match);
}

}  // namespace aquifer::gateway
