// Fuzz target: WebSocket frames and the subscribe message. The input is what a
// client sends after a valid upgrade request: raw RFC 6455 frames (masked,
// fragmented, control frames, bad opcodes, oversized lengths...). The server
// side is Beast's websocket::stream with the gateway's settings (message limit)
// over an in-memory stream, so the real frame decoder runs; every message it
// assembles goes to the gateway's ParseSubscribeMessage, as the first message
// of a subscription does in server.cc. Checked: no crash or sanitizer report;
// a message that parses has a non-empty cursor and a filter that is a JSON
// object (or none); one that does not parse gets an InvalidArgument.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "aquifer/gateway/api.h"

namespace {

namespace beast = boost::beast;
namespace websocket = beast::websocket;

constexpr char kUpgrade[] =
    "GET /v1/subscribe HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n";
constexpr size_t kMaxMessageBytes = 64 << 10;  // the server's is 1 MiB; smaller keeps runs fast

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  boost::asio::io_context ioc;
  beast::test::stream server(ioc), client(ioc);
  server.connect(client);  // the server's answers (handshake, pongs, close) go to `client`
  server.append(beast::string_view(kUpgrade, sizeof(kUpgrade) - 1));
  server.append(beast::string_view(reinterpret_cast<const char*>(data), size));
  server.close_remote();  // after the input: end of stream

  websocket::stream<beast::test::stream&> ws(server);
  ws.read_message_max(kMaxMessageBytes);
  beast::error_code ec;
  ws.accept(ec);
  if (ec) std::abort();  // the upgrade is fixed and valid
  for (int messages = 0; messages < 16; ++messages) {
    beast::flat_buffer buffer;
    ws.read(buffer, ec);
    if (ec) break;  // closed, or a protocol error: the session ends
    std::string text = beast::buffers_to_string(buffer.data());
    auto parsed = aquifer::gateway::ParseSubscribeMessage(text);
    if (parsed.ok()) {
      if (parsed->cursor.empty()) std::abort();
      if (!parsed->filter_json.empty()) {
        auto filter = nlohmann::json::parse(parsed->filter_json, nullptr, false);
        if (filter.is_discarded() || !filter.is_object()) std::abort();
      }
    } else if (parsed.status().code() != aquifer::StatusCode::kInvalidArgument) {
      std::abort();
    }
  }
  return 0;
}
