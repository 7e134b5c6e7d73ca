#pragma once

// The HTTP wire steps of the gateway that need no socket: what the server
// (server.cc) does between Beast's parser and Api::Handle, shared with the
// fuzz targets (fuzz/http_request_fuzz.cc) so they run the same code on raw
// bytes. Includes Beast's HTTP headers (not Asio's networking): include it
// only where Beast is already used.

#include <boost/beast/http.hpp>

#include "aquifer/base/status.h"
#include "aquifer/engine/engine.h"
#include "aquifer/gateway/api.h"

namespace aquifer::gateway {

using WireRequest = boost::beast::http::request<boost::beast::http::string_body>;
using WireParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// The server's limits on one request: request line + headers (431 over it)
// and body (413 over it).
void ConfigureParser(WireParser& parser, size_t max_header_bytes, size_t max_body_bytes);

// A WebSocket upgrade of GET /v1/subscribe that this process serves (not a
// worker-only one): the server hands the connection to a WebSocket session.
bool IsSubscribeUpgrade(const WireParser::value_type& header, engine::Role role);

// RFC 6455 §4.2.1 on the upgrade's own headers: Sec-WebSocket-Key is the
// base64 of 16 bytes (24 characters, "==" at the end), Sec-WebSocket-Version
// is 13. FailedPrecondition for a bad version (answered 426 with
// Sec-WebSocket-Version: 13), InvalidArgument for a bad key (400).
Status CheckWebSocketHandshake(const boost::beast::http::fields& upgrade);

// The answer to a refused handshake (CheckWebSocketHandshake's status), in the
// API's JSON error shape.
HttpResponse HandshakeErrorResponse(const Status& handshake);

// The transport-independent request Api::Handle takes.
HttpRequest ToHttpRequest(WireRequest&& message);

}  // namespace aquifer::gateway
