#include "aquifer/gateway/router.h"

#include <algorithm>
#include <array>
#include <charconv>

#include "aquifer/base/text.h"

namespace aquifer::gateway {
namespace {

constexpr std::string_view kNoParams[] = {""};
constexpr std::span<const std::string_view> kNone(kNoParams, 0);
constexpr std::string_view kWriteParams[] = {"wait"};
constexpr std::string_view kIndexParams[] = {"filter", "limit"};
constexpr std::string_view kLogParams[] = {"limit", "from"};
constexpr std::string_view kCursorParams[] = {"cursor", "limit"};
constexpr std::string_view kLimitParams[] = {"limit"};
constexpr std::string_view kUsageParams[] = {"hours"};

constexpr std::array<RouteSpec, 22> kRoutes = {{
    {RouteId::kCreateProject, "POST", "/v1/projects", "POST /v1/projects", kNone},
    {RouteId::kCreateTable, "POST", "/v1/projects/{project}/tables",
     "POST /v1/projects/{project}/tables", kNone},
    {RouteId::kDescribeTable, "GET", "/v1/projects/{project}/tables/{table}",
     "GET /v1/projects/{project}/tables/{table}", kNone},
    {RouteId::kDeleteTable, "DELETE", "/v1/projects/{project}/tables/{table}",
     "DELETE /v1/projects/{project}/tables/{table}", kNone},
    {RouteId::kWriteRecords, "POST", "/v1/projects/{project}/tables/{table}/records",
     "POST /v1/projects/{project}/tables/{table}/records", kWriteParams},
    {RouteId::kQueryIndex, "GET", "/v1/projects/{project}/tables/{table}/records",
     "GET /v1/projects/{project}/tables/{table}/records", kIndexParams},
    {RouteId::kQueryLog, "GET", "/v1/projects/{project}/tables/{table}/log",
     "GET /v1/projects/{project}/tables/{table}/log", kLogParams},
    {RouteId::kReadCursor, "GET", "/v1/cursor", "GET /v1/cursor", kCursorParams},
    {RouteId::kSubscribe, "GET", "/v1/subscribe", "GET /v1/subscribe", kNone},
    {RouteId::kSql, "POST", "/v1/sql", "POST /v1/sql", kNone},
    {RouteId::kGetJob, "GET", "/v1/jobs/{job_id}", "GET /v1/jobs/{job_id}", kNone},
    {RouteId::kJobRows, "GET", "/v1/jobs/{job_id}/rows", "GET /v1/jobs/{job_id}/rows",
     kCursorParams},
    {RouteId::kCreateSecret, "POST", "/v1/projects/{project}/secrets",
     "POST /v1/projects/{project}/secrets", kNone},
    {RouteId::kUsage, "GET", "/v1/usage", "GET /v1/usage", kUsageParams},
    {RouteId::kListDeadLetters, "GET", "/v1/admin/dead-letters", "GET /v1/admin/dead-letters",
     kLimitParams},
    {RouteId::kReplayDeadLetters, "POST", "/v1/admin/dead-letters/replay",
     "POST /v1/admin/dead-letters/replay", kNone},
    {RouteId::kHealthz, "GET", "/healthz", "GET /healthz", kNone, /*needs_secret=*/false,
     /*on_worker=*/true},
    {RouteId::kMetrics, "GET", "/metrics", "GET /metrics", kNone, /*needs_secret=*/true,
     /*on_worker=*/true},
    {RouteId::kOpenApi, "GET", "/openapi.json", "GET /openapi.json", kNone,
     /*needs_secret=*/false},
    {RouteId::kGetQuotas, "GET", "/v1/projects/{project}/quotas",
     "GET /v1/projects/{project}/quotas", kNone},
    {RouteId::kSetQuotas, "PUT", "/v1/projects/{project}/quotas",
     "PUT /v1/projects/{project}/quotas", kNone},
    {RouteId::kListTables, "GET", "/v1/projects/{project}/tables",
     "GET /v1/projects/{project}/tables", kNone},
}};

// Splits "/a/b/c" into {"a","b","c"}; a trailing slash gives an empty last
// segment, so "/v1/projects/" does not match "/v1/projects".
std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.empty() || path.front() != '/') return out;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

// Matches `path_segments` against `pattern`; fills decoded params on success.
bool MatchPattern(std::string_view pattern, const std::vector<std::string_view>& path_segments,
                  std::vector<std::string>* params) {
  std::vector<std::string_view> pattern_segments = Segments(pattern);
  if (pattern_segments.size() != path_segments.size()) return false;
  std::vector<std::string> values;
  for (size_t segment_idx = 0; segment_idx < pattern_segments.size(); ++segment_idx) {
    std::string_view want = pattern_segments[segment_idx];
    std::string_view have = path_segments[segment_idx];
    if (!want.empty() && want.front() == '{') {
      Result<std::string> decoded = PercentDecode(have, /*plus_is_space=*/false);
      if (!decoded.ok() || decoded->empty()) return false;
      values.push_back(std::move(*decoded));
    } else if (want != have) {
      return false;
    }
  }
  if (params != nullptr) *params = std::move(values);
  return true;
}

}  // namespace

std::span<const RouteSpec> Routes() { return kRoutes; }

const RouteSpec& Route(RouteId id) { return kRoutes[static_cast<size_t>(id)]; }

RouteMatch MatchRoute(std::string_view method, std::string_view path) {
  RouteMatch match;
  std::vector<std::string_view> path_segments = Segments(path);
  if (path_segments.empty()) return match;
  for (const RouteSpec& route : kRoutes) {
    std::vector<std::string> params;
    if (!MatchPattern(route.pattern, path_segments, &params)) continue;
    if (route.method == method) {
      match.route = &route;
      match.params = std::move(params);
      match.allow.clear();
      return match;
    }
    if (match.allow.find(route.method) == std::string::npos) {
      if (!match.allow.empty()) match.allow += ", ";
      match.allow += route.method;
    }
  }
  return match;
}

Result<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size(); ++pos) {
    char c = text[pos];
    if (c == '%') {
      int high = pos + 1 < text.size() ? HexDigitValue(text[pos + 1]) : -1;
      int low = pos + 2 < text.size() ? HexDigitValue(text[pos + 2]) : -1;
      if (high < 0 || low < 0) {
        return InvalidArgument("bad percent-escape at byte {} of '{}'", pos, text);
      }
      out.push_back(static_cast<char>(high * 16 + low));
      pos += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<Target> ParseTarget(std::string_view target) {
  if (target.empty() || target.front() != '/') {
    return InvalidArgument("request target '{}' must start with '/'", target);
  }
  Target out;
  size_t question = target.find('?');
  out.path = std::string(target.substr(0, question));
  if (question == std::string_view::npos) return out;
  std::string_view query = target.substr(question + 1);
  size_t fragment = query.find('#');
  if (fragment != std::string_view::npos) query = query.substr(0, fragment);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t equals = pair.find('=');
    std::string_view raw_name = pair.substr(0, equals);
    std::string_view raw_value =
        equals == std::string_view::npos ? std::string_view() : pair.substr(equals + 1);
    AQ_ASSIGN_OR_RETURN(std::string name, PercentDecode(raw_name, /*plus_is_space=*/true));
    AQ_ASSIGN_OR_RETURN(std::string value, PercentDecode(raw_value, /*plus_is_space=*/true));
    out.query.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

Status QueryParams::Check(std::span<const std::string_view> allowed) const {
  std::vector<std::string> unknown, repeated;
  for (size_t param_idx = 0; param_idx < params_.size(); ++param_idx) {
    const std::string& name = params_[param_idx].first;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      if (std::find(unknown.begin(), unknown.end(), name) == unknown.end()) unknown.push_back(name);
      continue;
    }
    for (size_t earlier = 0; earlier < param_idx; ++earlier) {
      if (params_[earlier].first == name &&
          std::find(repeated.begin(), repeated.end(), name) == repeated.end()) {
        repeated.push_back(name);
      }
    }
  }
  auto quoted = [](const std::vector<std::string>& names) {
    std::string text;
    for (const std::string& name : names) {
      if (!text.empty()) text += ", ";
      text += "'" + name + "'";
    }
    return text;
  };
  if (!unknown.empty()) {
    std::vector<std::string> accepted(allowed.begin(), allowed.end());
    return InvalidArgument("unknown query parameter{} {}; this route accepts {}",
                           unknown.size() > 1 ? "s" : "", quoted(unknown),
                           accepted.empty() ? std::string("none") : quoted(accepted));
  }
  if (!repeated.empty()) {
    return InvalidArgument("query parameter {} given more than once", quoted(repeated));
  }
  return Status::OK();
}

std::optional<std::string_view> QueryParams::Get(std::string_view name) const {
  for (const auto& [key, value] : params_) {
    if (key == name) return std::string_view(value);
  }
  return std::nullopt;
}

Result<int64_t> QueryParams::GetInt(std::string_view name, int64_t min, int64_t max,
                                    int64_t fallback) const {
  std::optional<std::string_view> text = Get(name);
  if (!text) return fallback;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < min || value > max) {
    return InvalidArgument("query parameter '{}' must be an integer from {} to {}, got '{}'", name,
                           min, max, *text);
  }
  return value;
}

}  // namespace aquifer::gateway
