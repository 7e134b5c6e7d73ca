#include "aquifer/gateway/wire.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include <boost/beast/websocket/rfc6455.hpp>

#include "aquifer/gateway/errors.h"
#include "aquifer/gateway/router.h"

namespace aquifer::gateway {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;

std::string HeaderString(const http::fields& fields, http::field name) {
  auto it = fields.find(name);
  return it == fields.end() ? std::string() : std::string(it->value());
}

std::string HeaderString(const http::fields& fields, std::string_view name) {
  auto it = fields.find(beast::string_view(name.data(), name.size()));
  return it == fields.end() ? std::string() : std::string(it->value());
}

}  // namespace

void ConfigureParser(WireParser& parser, size_t max_header_bytes, size_t max_body_bytes) {
  parser.header_limit(static_cast<uint32_t>(max_header_bytes));
  parser.body_limit(max_body_bytes);
}

bool IsSubscribeUpgrade(const WireParser::value_type& header, engine::Role role) {
  std::string_view target(header.target().data(), header.target().size());
  return beast::websocket::is_upgrade(header) &&
         target.substr(0, target.find('?')) == Route(RouteId::kSubscribe).pattern &&
         header.method() == http::verb::get && role != engine::Role::kWorker;
}

Status CheckWebSocketHandshake(const http::fields& upgrade) {
  std::string version = HeaderString(upgrade, http::field::sec_websocket_version);
  if (version != "13") {
    return FailedPrecondition(
        "WebSocket handshake: Sec-WebSocket-Version must be 13 (got '{}')", version);
  }
  std::string key = HeaderString(upgrade, http::field::sec_websocket_key);
  bool key_ok = key.size() == 24 && key.ends_with("==") &&
                std::all_of(key.begin(), key.end() - 2, [](char c) {
                  return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
                });
  if (!key_ok) {
    return InvalidArgument(
        "WebSocket handshake: Sec-WebSocket-Key must be the base64 of 16 random bytes "
        "(24 characters ending in '=='), got '{}'",
        key.substr(0, 64));
  }
  return Status::OK();
}

HttpResponse HandshakeErrorResponse(const Status& handshake) {
  bool bad_version = handshake.code() == StatusCode::kFailedPrecondition;
  HttpResponse response;
  response.status = bad_version ? 426 : 400;
  response.body = ErrorJson(InvalidArgument("{}", handshake.message()), {},
                            bad_version ? "upgrade_required" : "");
  if (bad_version) response.headers.emplace_back("Sec-WebSocket-Version", "13");
  response.route = &Route(RouteId::kSubscribe);
  return response;
}

HttpRequest ToHttpRequest(WireRequest&& message) {
  HttpRequest request;
  request.method = std::string(message.method_string());
  request.target = std::string(message.target());
  request.authorization = HeaderString(message, http::field::authorization);
  request.content_type = HeaderString(message, http::field::content_type);
  request.idempotency_key = HeaderString(message, std::string_view("Idempotency-Key"));
  request.if_none_match = HeaderString(message, http::field::if_none_match);
  request.body = std::move(message.body());
  return request;
}

}  // namespace aquifer::gateway
