// The WebSocket client of `aquifer subscribe`, on Boost.Beast's synchronous
// API. Ctrl-C: SIGINT and SIGTERM are blocked in every thread and taken by a
// sigwait thread, which flushes stdout (under stdio's lock, so a line being
// printed is finished first) and ends the process with 0. That keeps the
// reading loop a plain blocking loop.
#include <utility>  // before any asio header (Boost 1.74 + g++ 12, DEPS.md §6)

#include "aquifer/cli/client_subscribe.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

namespace aquifer::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using nlohmann::json;
using tcp = asio::ip::tcp;

namespace {

struct WsTarget {
  std::string host;
  std::string port;
  std::string path;  // base path of the server URL + "/v1/subscribe"
};

WsTarget ParseUrl(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    throw CommandError(kExitUsage, "subscribe supports http:// server URLs only (got " + url + ")");
  }
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string base = slash == std::string::npos ? "" : rest.substr(slash);
  while (!base.empty() && base.back() == '/') base.pop_back();
  WsTarget target;
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    target.host = authority.substr(0, colon);
    target.port = authority.substr(colon + 1);
  } else {
    target.host = authority;
    target.port = "80";
  }
  if (target.host.size() > 1 && target.host.front() == '[') target.host = target.host.substr(1, target.host.size() - 2);
  target.path = base + "/v1/subscribe";
  return target;
}

// Why a connection ended.
enum class Ended : uint8_t { kDisconnected, kStdoutClosed };

class Session {
 public:
  Session(const ServerOptions& server, WsTarget target, std::string filter_json)
      : server_(server), target_(std::move(target)), filter_json_(std::move(filter_json)) {}

  // Connects, subscribes from `*cursor` and prints batches, advancing *cursor
  // after each printed batch. Returns when the connection drops (the error in
  // *reason) or stdout closes. *connected tells whether the handshake passed.
  // Throws CommandError for a declined handshake or an error message.
  Ended Run(std::string* cursor, bool* connected, std::string* reason) {
    *connected = false;
    asio::io_context io;
    websocket::stream<tcp::socket> ws(io);
    beast::error_code ec;
    tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(target_.host, target_.port, ec);
    if (ec) return Drop(reason, "resolve " + target_.host + ": " + ec.message());
    asio::connect(ws.next_layer(), endpoints, ec);
    if (ec) return Drop(reason, ec.message());
    ws.next_layer().set_option(tcp::no_delay(true), ec);
    ws.next_layer().set_option(asio::socket_base::keep_alive(true), ec);
    std::string authorization = server_.secret.empty() ? std::string() : "Bearer " + server_.secret;
    ws.set_option(websocket::stream_base::decorator([&](websocket::request_type& request) {
      request.set(http::field::user_agent, "aquifer-cli/0.1");
      if (!authorization.empty()) request.set(http::field::authorization, authorization);
    }));
    ws.read_message_max(256u << 20);
    websocket::response_type response;
    ws.handshake(response, target_.host + ":" + target_.port, target_.path, ec);
    if (ec) {
      if (response.result_int() != 0 && response.result_int() != 101) {
        // The server answered the upgrade with an HTTP error: show it.
        HttpResponse declined;
        declined.status = response.result_int();
        declined.body = response.body();
        ThrowServerError(declined);
      }
      return Drop(reason, "WebSocket handshake: " + ec.message());
    }
    *connected = true;

    json subscribe = {{"type", "subscribe"}, {"cursor", *cursor}};
    if (!filter_json_.empty()) subscribe["filter"] = json::parse(filter_json_);
    ws.text(true);
    ws.write(asio::buffer(subscribe.dump()), ec);
    if (ec) return Drop(reason, ec.message());

    beast::flat_buffer buffer;
    while (true) {
      buffer.clear();
      ws.read(buffer, ec);
      if (ec) {
        return Drop(reason, ec == websocket::error::closed ? "the server closed the connection" : ec.message());
      }
      std::string text = beast::buffers_to_string(buffer.data());
      json message = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!message.is_object()) {
        throw CommandError(kExitServerError, "the server sent a message that is not a JSON object: " + text.substr(0, 200));
      }
      std::string type = message.contains("type") && message["type"].is_string() ? message["type"].get<std::string>() : "";
      if (type == "error") {
        HttpResponse error;
        error.body = json{{"error", message.contains("error") ? message["error"] : json::object()}}.dump();
        std::string code = message.contains("error") && message["error"].is_object() &&
                                   message["error"].contains("code") && message["error"]["code"].is_string()
                               ? message["error"]["code"].get<std::string>()
                               : std::string();
        error.status = code == "not_found" ? 404 : code == "unauthenticated" ? 401 : code == "permission_denied" ? 403 : 400;
        // The status is our reading of the code; the message is the server's.
        std::string text_error = ErrorMessage(error);
        throw CommandError(kExitServerError, "subscription: " + text_error.substr(text_error.find(' ') + 1));
      }
      if (type != "records") continue;  // unknown message types are for newer clients
      std::string out;
      if (message.contains("data") && message["data"].is_array()) {
        for (const json& record : message["data"]) {
          out += record.dump(-1, ' ', false, json::error_handler_t::replace);
          out += '\n';
        }
      }
      if (!out.empty()) {
        std::fwrite(out.data(), 1, out.size(), stdout);
        if (std::fflush(stdout) != 0) return Ended::kStdoutClosed;
      }
      if (message.contains("cursor") && message["cursor"].is_string()) *cursor = message["cursor"].get<std::string>();
    }
  }

 private:
  static Ended Drop(std::string* reason, std::string text) {
    *reason = std::move(text);
    return Ended::kDisconnected;
  }

  const ServerOptions& server_;
  WsTarget target_;
  std::string filter_json_;
};

}  // namespace

int RunSubscribe(const ServerOptions& server, const std::string& cursor, const std::string& filter_json) {
  WsTarget target = ParseUrl(server.url);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::thread([signals] {
    int received = 0;
    sigwait(&signals, &received);
    std::fflush(stdout);
    std::_Exit(0);
  }).detach();

  Session session(server, target, filter_json);
  std::string position = cursor;
  bool ever_connected = false;
  std::chrono::milliseconds backoff(100);
  while (true) {
    bool connected = false;
    std::string reason;
    Ended ended = session.Run(&position, &connected, &reason);
    if (ended == Ended::kStdoutClosed) return 0;
    if (!ever_connected && !connected) {
      throw CommandError(kExitUnreachable, "cannot reach " + server.url + ": " + reason);
    }
    if (connected) {
      ever_connected = true;
      backoff = std::chrono::milliseconds(100);
    }
    std::fprintf(stderr, "aquifer: subscription interrupted (%s); reconnecting in %.1f s\n", reason.c_str(),
                 static_cast<double>(backoff.count()) / 1000.0);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

}  // namespace aquifer::cli
