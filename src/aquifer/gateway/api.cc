#include "aquifer/gateway/api.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <chrono>
#include <limits>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/gateway/console.h"
#include "aquifer/gateway/errors.h"

namespace aquifer::gateway {
namespace {

using engine::Principal;

std::string JsonString(std::string_view text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A cursor field: the string, or null when there is none.
std::string CursorJson(const std::string& cursor) {
  return cursor.empty() ? std::string("null") : JsonString(cursor);
}

HttpResponse JsonResponse(int status, std::string body) {
  HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

std::string RecordPageJson(const engine::RecordPage& page) {
  std::string out;
  out.reserve(page.data_json.size() + 256);
  out += "{\"data\":";
  out += page.data_json.empty() ? std::string_view("[]") : std::string_view(page.data_json);
  out += ",\"next_cursor\":";
  out += CursorJson(page.next_cursor);
  out += ",\"change_cursor\":";
  out += CursorJson(page.change_cursor);
  if (page.residual) out += ",\"residual\":true";
  out += "}";
  return out;
}

std::string_view TrimSpace(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (size_t pos = 0; pos < prefix.size(); ++pos) {
    if (std::tolower(static_cast<unsigned char>(text[pos])) !=
        std::tolower(static_cast<unsigned char>(prefix[pos]))) {
      return false;
    }
  }
  return true;
}

// Media type without parameters, lower case: "application/x-ndjson".
std::string MediaType(std::string_view content_type) {
  std::string_view type = TrimSpace(content_type.substr(0, content_type.find(';')));
  std::string out(type);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Bodies of the create routes: one JSON object.
Status CheckJsonObjectBody(std::string_view body) {
  AQ_RETURN_IF_ERROR(CheckJsonBody(body));
  std::string_view trimmed = TrimSpace(body);
  if (trimmed.front() != '{') return InvalidArgument("the request body must be a JSON object");
  return Status::OK();
}

struct SqlRequest {
  std::string query;
  bool dry_run = false;
  std::optional<int64_t> wait_ms;  // set: answer the job's end (and first rows) when within this
  std::optional<int64_t> limit;    // rows in that first page (1..1000, default 100)
};

Result<SqlRequest> ParseSqlRequest(std::string_view body) {
  AQ_RETURN_IF_ERROR(CheckJsonObjectBody(body));
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  SqlRequest request;
  bool has_query = false;
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (it.key() == "query") {
      if (!it->is_string()) return InvalidArgument("field 'query' must be a string");
      request.query = it->get<std::string>();
      has_query = true;
    } else if (it.key() == "dry_run") {
      if (!it->is_boolean()) return InvalidArgument("field 'dry_run' must be true or false");
      request.dry_run = it->get<bool>();
    } else if (it.key() == "wait_ms" || it.key() == "limit") {
      const bool wait = it.key() == "wait_ms";
      const int64_t low = wait ? 0 : kMinLimit;
      const int64_t high = wait ? engine::kMaxSqlWaitMs : kMaxLimit;
      if (!it->is_number_integer() || it->get<int64_t>() < low || it->get<int64_t>() > high) {
        return InvalidArgument("field '{}' must be an integer {}..{}", it.key(), low, high);
      }
      (wait ? request.wait_ms : request.limit) = it->get<int64_t>();
    } else {
      return InvalidArgument(
          "unknown field '{}'; POST /v1/sql takes 'query', 'dry_run', 'wait_ms' and 'limit'", it.key());
    }
  }
  if (!has_query) return InvalidArgument("missing field 'query' (the SQL text)");

  return request;
}

int32_t ToLimit(int64_t value) { return static_cast<int32_t>(value); }

}  // namespace

Status CheckJsonBody(std::string_view body) {
  if (TrimSpace(body).empty()) {
    return InvalidArgument("malformed JSON: the request body is empty");
  }
  if (nlohmann::json::accept(body)) return Status::OK();  // no DOM built
  try {
    nlohmann::json parsed = nlohmann::json::parse(body);  // only for the error message
    return InvalidArgument("malformed JSON");
  } catch (const nlohmann::json::parse_error& error) {
    std::string_view message = error.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." → drop the tag.
    if (size_t close = message.find("] "); message.starts_with("[json.exception") &&
                                           close != std::string_view::npos) {
      message.remove_prefix(close + 2);
    }
    return InvalidArgument("malformed JSON: {}", message);
  }
  return Status::OK();
}

// The process's role as /healthz names it (a load balancer or an operator
// tells gateways from workers by it).
static std::string_view RoleText(engine::Role role) {
  switch (role) {
    case engine::Role::kGateway:
      return "gateway";
    case engine::Role::kWorker:
      return "worker";
    case engine::Role::kAll:
      break;
  }
  return "all";
}

HttpResponse ErrorResponse(const Status& status, std::span<const engine::RecordError> details) {
  HttpResponse response;
  response.status = HttpStatusFor(status.code());
  response.body = ErrorJson(status, details);
  if (response.status == 401) response.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"aquifer\"");
  if (response.status == 429) {
    // Over a quota: the seconds until it resets, as the engine computed them.
    std::optional<int64_t> retry_after = engine::RetryAfterSeconds(status);
    response.headers.emplace_back("Retry-After",
                                  std::to_string(retry_after.value_or(kRetryAfterSeconds)));
  }
  // Unavailable is transient (a storage server restarting, the write path
  // probing its queue, an unfinished Idempotency-Key claim): retry soon.
  if (response.status == 503) {
    response.headers.emplace_back("Retry-After", std::to_string(kUnavailableRetryAfterSeconds));
  }
  return response;
}

Api::Api(engine::Engine* engine, GatewayMetrics* metrics, ApiOptions options)
    : engine_(engine), metrics_(metrics), options_(options) {}

Result<Principal> Api::Authenticate(std::string_view authorization) {
  authorization = TrimSpace(authorization);
  if (authorization.empty()) {
    return Unauthenticated("missing 'Authorization: Bearer <secret>' header");
  }
  if (!StartsWithNoCase(authorization, "bearer ")) {
    return Unauthenticated("the Authorization header must use the Bearer scheme");
  }
  std::string_view secret = TrimSpace(authorization.substr(7));
  if (secret.empty()) return Unauthenticated("empty secret in the Authorization header");
  return engine_->Authenticate(secret);
}

Status Api::Health() {
  auto now_us = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  {
    std::lock_guard lock(health_mu_);
    bool fresh = health_checked_us_ >= 0 && now_us() - health_checked_us_ < kHealthTtlMicros;
    if (fresh || (health_refreshing_ && health_checked_us_ >= 0)) return health_;
    health_refreshing_ = true;
  }
  Status health = engine_->Health();
  std::lock_guard lock(health_mu_);
  health_ = health;
  health_checked_us_ = now_us();
  health_refreshing_ = false;
  return health;
}

Status Api::TakeRateToken(const engine::Principal& who) {
  const double rate = options_.rate_limit_per_secret;
  if (rate <= 0) return Status::OK();
  const double burst = options_.rate_limit_burst > 0 ? static_cast<double>(options_.rate_limit_burst)
                                                     : std::max(1.0, rate);
  const int64_t now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
  std::lock_guard lock(rate_mu_);
  if (buckets_.size() > 100'000) {
    // Forget full buckets (idle secrets) so the map stays the size of the active ones.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      double refilled = it->second.tokens + rate * static_cast<double>(now_us - it->second.refilled_us) / 1e6;
      it = refilled >= burst ? buckets_.erase(it) : std::next(it);
    }
  }
  auto [it, fresh] = buckets_.try_emplace(who.secret_id.ToString(), Bucket{burst, now_us});
  Bucket& bucket = it->second;
  if (!fresh) {
    bucket.tokens = std::min(
        burst, bucket.tokens + rate * static_cast<double>(now_us - bucket.refilled_us) / 1e6);
    bucket.refilled_us = now_us;
  }
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    return Status::OK();
  }
  auto wait_s = static_cast<int64_t>(std::ceil((1.0 - bucket.tokens) / rate));
  return engine::QuotaExhausted(
      fmt::format("this secret is over its request rate of {} per second (rate_limit_per_secret)",
                  rate),
      std::max<int64_t>(1, wait_s));
}

HttpResponse Api::Handle(const HttpRequest& request) {
  Result<Target> target = ParseTarget(request.target);
  if (!target.ok()) return ErrorResponse(target.status());
  RouteMatch match = MatchRoute(request.method, target->path);
  if (match.route == nullptr) {
    // The web console ("/" and /console/...; console.h): not an API route, served by gateways.
    if (options_.role != engine::Role::kWorker) {
      if (std::optional<HttpResponse> console =
              ConsoleResponse(request.method, target->path, request.if_none_match)) {
        return std::move(*console);
      }
    }
    if (match.allow.empty()) {
      return ErrorResponse(NotFound("no route for {} {}; the API is described at /openapi.json",
                                    request.method, target->path));
    }
    HttpResponse response;
    response.status = 405;
    response.body = ErrorJson(
        InvalidArgument("method {} is not allowed on {}; allowed: {}", request.method,
                        target->path, match.allow),
        {}, "method_not_allowed");
    response.headers.emplace_back("Allow", match.allow);
    return response;
  }
  const RouteSpec& route = *match.route;
  HttpResponse response = [&] {
    if (options_.role == engine::Role::kWorker && !route.on_worker) {
      return ErrorResponse(
          NotFound("{} is not served by a worker-only process (--role worker); ask a gateway",
                   route.label));
    }
    return Dispatch(route, match.params, QueryParams(std::move(target->query)), request);
  }();
  response.route = &route;
  return response;
}

HttpResponse Api::Dispatch(const RouteSpec& route, const std::vector<std::string>& params,
                           const QueryParams& query, const HttpRequest& request) {
  // Routes without a secret first.
  switch (route.id) {
    case RouteId::kHealthz: {
      if (Status status = query.Check(route.query_params); !status.ok()) return ErrorResponse(status);
      // {"status":"ok","durability":"durable"}; with relaxed durability also
      // "warnings":[why]. Unhealthy: 503, the error naming the cause, plus
      // "status":"unhealthy".
      std::optional<std::string> relaxed = engine_->RelaxedDurability();
      Status health = Health();
      if (!health.ok()) {
        HttpResponse response = ErrorResponse(health);
        nlohmann::json body = nlohmann::json::parse(response.body, nullptr, false);
        if (body.is_object()) {
          body["status"] = "unhealthy";
          body["durability"] = relaxed ? "relaxed" : "durable";
          body["role"] = RoleText(options_.role);
          response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        }
        return response;
      }
      nlohmann::json body{{"status", "ok"},
                          {"durability", relaxed ? "relaxed" : "durable"},
                          {"role", RoleText(options_.role)}};
      if (relaxed) body["warnings"] = nlohmann::json::array({*relaxed});
      return JsonResponse(200, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    case RouteId::kOpenApi: {
      HttpResponse response = JsonResponse(200, std::string(OpenApiJson()));
      return response;
    }
    case RouteId::kSubscribe: {
      // A plain GET: no secret (or a bad one) is 401 first, like every route
      // that needs one; only an authenticated caller learns it must upgrade.
      if (Result<Principal> principal = Authenticate(request.authorization); !principal.ok()) {
        return ErrorResponse(principal.status());
      }
      HttpResponse response = JsonResponse(
          426, ErrorJson(InvalidArgument("GET /v1/subscribe is a WebSocket endpoint: send an "
                                         "Upgrade: websocket request"),
                         {}, "upgrade_required"));
      response.headers.emplace_back("Upgrade", "websocket");
      response.headers.emplace_back("Connection", "Upgrade");
      return response;
    }
    default:
      break;
  }

  Principal who;
  bool metrics_open = route.id == RouteId::kMetrics && options_.public_metrics;
  if (!metrics_open) {
    Result<Principal> principal = Authenticate(request.authorization);
    if (!principal.ok()) return ErrorResponse(principal.status());
    who = std::move(*principal);
  }
  if (!metrics_open) {
    if (Status limited = TakeRateToken(who); !limited.ok()) return ErrorResponse(limited);
  }
  if (Status status = query.Check(route.query_params); !status.ok()) return ErrorResponse(status);
  auto param = [&](size_t idx) -> std::string_view { return params[idx]; };

  switch (route.id) {
    case RouteId::kCreateProject: {
      if (Status status = CheckJsonObjectBody(request.body); !status.ok()) return ErrorResponse(status);
      Result<std::string> created = engine_->CreateProject(who, request.body);
      if (!created.ok()) return ErrorResponse(created.status());
      return JsonResponse(201, std::move(*created));
    }
    case RouteId::kCreateTable: {
      if (Status status = CheckJsonObjectBody(request.body); !status.ok()) return ErrorResponse(status);
      Result<std::string> created = engine_->CreateTable(who, param(0), request.body);
      if (!created.ok()) return ErrorResponse(created.status());
      return JsonResponse(201, std::move(*created));
    }
    case RouteId::kDescribeTable: {
      Result<std::string> described = engine_->DescribeTable(who, param(0), param(1));
      if (!described.ok()) return ErrorResponse(described.status());
      return JsonResponse(200, std::move(*described));
    }
    case RouteId::kListTables: {
      Result<std::string> listed = engine_->ListTablesJson(who, param(0));
      if (!listed.ok()) return ErrorResponse(listed.status());
      return JsonResponse(200, std::move(*listed));
    }
    case RouteId::kDeleteTable: {
      Status deleted = engine_->DeleteTable(who, param(0), param(1));
      if (!deleted.ok()) return ErrorResponse(deleted);
      return JsonResponse(204, "");
    }
    case RouteId::kCreateSecret: {
      if (Status status = CheckJsonObjectBody(request.body); !status.ok()) return ErrorResponse(status);
      Result<std::string> created = engine_->CreateSecret(who, param(0), request.body);
      if (!created.ok()) return ErrorResponse(created.status());
      return JsonResponse(201, std::move(*created));
    }
    case RouteId::kWriteRecords: {
      engine::WriteRequest write;
      write.project = param(0);
      write.table = param(1);
      write.body = request.body;
      write.idempotency_key = request.idempotency_key;
      if (std::optional<std::string_view> wait = query.Get("wait"); wait && !wait->empty()) {
        Result<engine::WaitFor> wait_for = engine::ParseWaitFor(*wait);
        if (!wait_for.ok()) {
          return ErrorResponse(wait_for.status().WithContext("query parameter 'wait'"));
        }
        write.wait = *wait_for;
      }
      std::string_view trimmed = TrimSpace(request.body);
      if (MediaType(request.content_type) == "application/x-ndjson" && !trimmed.empty() &&
          trimmed.front() == '[') {
        return ErrorResponse(InvalidArgument(
            "Content-Type is application/x-ndjson but the body is a JSON array; send one "
            "record object per line, or use application/json"));
      }
      std::vector<engine::RecordError> details;
      Result<engine::WriteAck> ack = engine_->Write(who, write, &details);
      if (!ack.ok()) return ErrorResponse(ack.status(), details);
      std::string body = "{\"write_id\":" + JsonString(ack->write_id) +
                         ",\"records\":" + std::to_string(ack->records);
      if (ack->replayed) body += ",\"replayed\":true";
      if (!ack->durable) body += ",\"durable\":false";
      body += "}";
      HttpResponse response = JsonResponse(ack->waited ? 200 : 202, std::move(body));
      if (!ack->durable) response.headers.emplace_back("Aquifer-Durability", "relaxed");
      return response;
    }
    case RouteId::kQueryIndex: {
      Result<int64_t> limit = query.GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit);
      if (!limit.ok()) return ErrorResponse(limit.status());
      engine::IndexQuery index_query;
      index_query.project = param(0);
      index_query.table = param(1);
      index_query.limit = ToLimit(*limit);
      if (std::optional<std::string_view> filter = query.Get("filter"); filter && !filter->empty()) {
        if (Status status = CheckJsonBody(*filter); !status.ok()) {
          return ErrorResponse(status.WithContext("query parameter 'filter'"));
        }
        index_query.filter_json = *filter;
      }
      Result<engine::RecordPage> page = engine_->QueryIndex(who, index_query);
      if (!page.ok()) return ErrorResponse(page.status());
      return JsonResponse(200, RecordPageJson(*page));
    }
    case RouteId::kQueryLog: {
      Result<int64_t> limit = query.GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit);
      if (!limit.ok()) return ErrorResponse(limit.status());
      Result<int64_t> from = query.GetInt("from", 0, std::numeric_limits<int64_t>::max(), 0);
      if (!from.ok()) return ErrorResponse(from.status());
      engine::LogQuery log_query;
      log_query.project = param(0);
      log_query.table = param(1);
      log_query.limit = ToLimit(*limit);
      log_query.from_ms = *from;
      Result<engine::RecordPage> page = engine_->QueryLog(who, log_query);
      if (!page.ok()) return ErrorResponse(page.status());
      return JsonResponse(200, RecordPageJson(*page));
    }
    case RouteId::kReadCursor: {
      Result<int64_t> limit = query.GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit);
      if (!limit.ok()) return ErrorResponse(limit.status());
      std::optional<std::string_view> cursor = query.Get("cursor");
      if (!cursor || cursor->empty()) {
        return ErrorResponse(InvalidArgument("missing query parameter 'cursor'"));
      }
      Result<std::string> page = engine_->ReadCursorJson(who, *cursor, ToLimit(*limit));
      if (!page.ok()) return ErrorResponse(page.status());
      return JsonResponse(200, std::move(*page));
    }
    case RouteId::kSql: {
      Result<SqlRequest> sql = ParseSqlRequest(request.body);
      if (!sql.ok()) return ErrorResponse(sql.status());
      if (sql->dry_run) {
        Result<engine::SqlAnalysis> analysis = engine_->AnalyzeSql(who, sql->query);
        if (!analysis.ok()) return ErrorResponse(analysis.status());
        nlohmann::json body{{"tables", analysis->tables},
                            {"bytes_scanned_estimate", analysis->bytes_scanned_estimate}};
        return JsonResponse(200, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      }
      if (sql->wait_ms) {
        Result<engine::SqlAnswer> answer = engine_->SubmitSqlAndWait(
            who, sql->query, *sql->wait_ms, ToLimit(sql->limit.value_or(kDefaultLimit)));
        if (!answer.ok()) return ErrorResponse(answer.status());
        return JsonResponse(answer->finished ? 200 : 202, std::move(answer->json));
      }
      Result<std::string> job_id = engine_->SubmitSql(who, sql->query);
      if (!job_id.ok()) return ErrorResponse(job_id.status());
      return JsonResponse(202, "{\"job_id\":" + JsonString(*job_id) + "}");
    }
    case RouteId::kGetJob: {
      Result<std::string> job = engine_->GetJobJson(who, param(0));
      if (!job.ok()) return ErrorResponse(job.status());
      return JsonResponse(200, std::move(*job));
    }
    case RouteId::kJobRows: {
      Result<int64_t> limit = query.GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit);
      if (!limit.ok()) return ErrorResponse(limit.status());
      std::string_view cursor = query.Get("cursor").value_or(std::string_view());
      Result<engine::JobRowsPage> rows = engine_->ReadJobRows(who, param(0), cursor, ToLimit(*limit));
      if (!rows.ok()) return ErrorResponse(rows.status());
      std::string body = "{\"columns\":";
      body += rows->columns_json.empty() ? std::string_view("[]") : std::string_view(rows->columns_json);
      body += ",\"data\":";
      body += rows->data_json.empty() ? std::string_view("[]") : std::string_view(rows->data_json);
      body += ",\"next_cursor\":" + CursorJson(rows->next_cursor) + "}";
      return JsonResponse(200, std::move(body));
    }
    case RouteId::kGetQuotas: {
      Result<std::string> quotas = engine_->GetQuotasJson(who, param(0));
      if (!quotas.ok()) return ErrorResponse(quotas.status());
      return JsonResponse(200, std::move(*quotas));
    }
    case RouteId::kSetQuotas: {
      if (Status status = CheckJsonObjectBody(request.body); !status.ok()) return ErrorResponse(status);
      Result<std::string> quotas = engine_->SetQuotas(who, param(0), request.body);
      if (!quotas.ok()) return ErrorResponse(quotas.status());
      return JsonResponse(200, std::move(*quotas));
    }
    case RouteId::kUsage: {
      Result<int64_t> hours = query.GetInt("hours", 0, kMaxUsageHours, 0);
      if (!hours.ok()) return ErrorResponse(hours.status());
      Result<std::string> usage = engine_->UsageJson(who, static_cast<int32_t>(*hours));
      if (!usage.ok()) return ErrorResponse(usage.status());
      return JsonResponse(200, std::move(*usage));
    }
    case RouteId::kListDeadLetters: {
      Result<int64_t> limit = query.GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit);
      if (!limit.ok()) return ErrorResponse(limit.status());
      Result<std::string> listed = engine_->DeadLettersJson(who, ToLimit(*limit));
      if (!listed.ok()) return ErrorResponse(listed.status());
      return JsonResponse(200, std::move(*listed));
    }
    case RouteId::kReplayDeadLetters: {
      if (!TrimSpace(request.body).empty()) {
        if (Status status = CheckJsonObjectBody(request.body); !status.ok()) return ErrorResponse(status);
      }
      Result<std::string> replayed = engine_->ReplayDeadLetters(who, TrimSpace(request.body));
      if (!replayed.ok()) return ErrorResponse(replayed.status());
      return JsonResponse(200, std::move(*replayed));
    }
    case RouteId::kMetrics: {
      if (!metrics_open && !who.is_admin) {
        return ErrorResponse(PermissionDenied(
            "GET /metrics needs the admin secret (or start the server with public_metrics = true)"));
      }
      HttpResponse response;
      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
      response.body = engine_->MetricsText();
      if (!response.body.empty() && response.body.back() != '\n') response.body += '\n';
      response.body += metrics_->Text();
      return response;
    }
    case RouteId::kHealthz:
    case RouteId::kOpenApi:
    case RouteId::kSubscribe:
      break;
  }
  return ErrorResponse(Internal("route {} has no handler", route.label));
}

}  // namespace aquifer::gateway

namespace aquifer::gateway {

Result<SubscribeMessage> ParseSubscribeMessage(std::string_view text) {
  nlohmann::json message = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded()) {
    AQ_RETURN_IF_ERROR(CheckJsonBody(text));
    return InvalidArgument("malformed JSON in the subscribe message");
  }
  if (!message.is_object()) return InvalidArgument("the subscribe message must be a JSON object");
  SubscribeMessage parsed;
  bool has_type = false;
  for (auto it = message.begin(); it != message.end(); ++it) {
    if (it.key() == "type") {
      if (!it->is_string() || it->get<std::string>() != "subscribe") {
        return InvalidArgument("expected {{\"type\":\"subscribe\",...}}, got type {}", it->dump());
      }
      has_type = true;
    } else if (it.key() == "cursor") {
      if (!it->is_string()) return InvalidArgument("'cursor' must be a string (a change cursor)");
      parsed.cursor = it->get<std::string>();
    } else if (it.key() == "filter") {
      if (it->is_object()) {
        parsed.filter_json = it->dump();
      } else if (!it->is_null()) {
        return InvalidArgument("'filter' must be a JSON object");
      }
    } else if (it.key() == "secret") {
      if (!it->is_string()) return InvalidArgument("'secret' must be a string");
      parsed.secret = it->get<std::string>();
    } else {
      return InvalidArgument(
          "unknown field '{}' in the subscribe message; it takes type, cursor, filter, secret",
          it.key());
    }
  }
  if (!has_type) return InvalidArgument("the first message must be {{\"type\":\"subscribe\",...}}");
  if (parsed.cursor.empty()) {
    return InvalidArgument("missing 'cursor': pass the change_cursor of a records or log read");
  }
  return parsed;
}

}  // namespace aquifer::gateway
