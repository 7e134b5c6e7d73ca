#pragma once

// The web console: plain HTML, CSS and ES modules from gateway/console/,
// embedded into the binary at build time (embed_console.cmake writes
// console_data.cc), served by the gateway outside the API's routes:
//
//   GET /                              index.html (Cache-Control: no-cache, ETag)
//   GET /console/<version>/<file>      an asset, immutable for a year: <version>
//                                      is a hash of every file, so a new build
//                                      changes every asset URL
//
// Every answer carries a strict Content-Security-Policy (same-origin scripts,
// styles and connections only, no inline code, no frames), nosniff and
// no-referrer. The console talks to the API like any client (console/api.js).

#include <optional>
#include <span>
#include <string_view>

#include "aquifer/gateway/api.h"

namespace aquifer::gateway {

struct ConsoleFile {
  std::string_view name;          // "app.js"
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view body;
};

// Generated (console_data.cc).
std::span<const ConsoleFile> ConsoleFiles();
std::string_view ConsoleVersion();  // 16 hex digits, a hash of every file's name and contents

inline constexpr std::string_view kConsolePrefix = "/console/";
inline constexpr std::string_view kConsoleCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// The answer for `path` (no query) when it is the console's: "/" or under
// /console/. nullopt for every other path (the API's). GET only (405 with
// Allow otherwise); an unknown file or version is 404; If-None-Match equal to
// the ETag is 304.
std::optional<HttpResponse> ConsoleResponse(std::string_view method, std::string_view path,
                                            std::string_view if_none_match);

}  // namespace aquifer::gateway
