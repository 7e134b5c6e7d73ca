// Fuzz target: the gateway's HTTP request path on raw bytes. The input is what
// a client sends on one connection; it goes through the code the server runs
// between the socket and the engine (gateway/wire.h): Beast's request parser
// with the server's limits, the WebSocket-upgrade test and handshake checks,
// ToHttpRequest, then Api::Handle (routing, auth, query parameters, bodies)
// over a real in-process Engine on a temp dir (embedded drivers), with a
// project "shop" and a table "orders" (id string key, qty long). Several
// requests may follow one another (keep-alive), as on a real connection.
// Every answer must be a valid status with a JSON error body for 4xx/5xx;
// never a crash, a sanitizer report or a 500. AQUIFER_FUZZ_TRACE=1 prints each
// answer's status and request line (to see what a corpus reaches).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <boost/beast/core/buffers_to_string.hpp>
#include <nlohmann/json.hpp>

#include "aquifer/engine/engine.h"
#include "aquifer/gateway/api.h"
#include "aquifer/gateway/metrics.h"
#include "aquifer/gateway/wire.h"

namespace {

namespace http = boost::beast::http;
using namespace aquifer;

constexpr char kAdmin[] = "fuzz-admin-secret-0123456789abcdef";
constexpr size_t kMaxHeaderBytes = 16 << 10;  // ServerOptions defaults, body smaller for speed
constexpr size_t kMaxBodyBytes = 1 << 20;

struct World {
  std::filesystem::path dir;
  std::unique_ptr<engine::Engine> engine;
  gateway::GatewayMetrics metrics;
  std::unique_ptr<gateway::Api> api;
};

World* world = nullptr;

void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "http_request_fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

void Call(const char* method, const char* target, const char* body) {
  gateway::HttpRequest request;
  request.method = method;
  request.target = target;
  request.authorization = std::string("Bearer ") + kAdmin;
  request.content_type = "application/json";
  request.body = body;
  gateway::HttpResponse response = world->api->Handle(request);
  if (response.status >= 300) Fail("setup", target + (" " + response.body));
}

World* Setup() {
  auto* created = new World;
  char tmpl[] = "/tmp/aquifer_http_fuzz.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) Fail("mkdtemp", "");
  created->dir = tmpl;
  engine::EngineOptions options;
  options.data_dir = created->dir.string();
  options.admin_secret = kAdmin;
  options.cursor_key = "http fuzz cursor key";
  options.max_body_bytes = kMaxBodyBytes;
  options.wait_timeout_ms = 200;  // a ?wait= that is not met gives up quickly
  auto opened = engine::Engine::Open(options);
  if (!opened.ok()) Fail("Engine::Open", opened.status().ToString());
  created->engine = std::move(*opened);
  if (Status started = created->engine->Start(); !started.ok()) Fail("Engine::Start", started.ToString());
  created->api = std::make_unique<gateway::Api>(created->engine.get(), &created->metrics,
                                                gateway::ApiOptions{});
  world = created;
  Call("POST", "/v1/projects", R"({"name":"shop"})");
  Call("POST", "/v1/projects/shop/tables",
       R"({"name":"orders","key":["id"],"schema":{"type":"record","name":"order","fields":[)"
       R"({"name":"id","type":"string"},{"name":"qty","type":"long"}]}})");
  Call("POST", "/v1/projects/shop/tables/orders/records?wait=index",
       R"([{"id":"a","qty":1},{"id":"b","qty":2}])");
  std::atexit([] {
    world->engine->Stop();
    std::error_code ec;
    std::filesystem::remove_all(world->dir, ec);
  });
  return created;
}

void CheckAnswer(const gateway::HttpResponse& response) {
  if (response.status < 100 || response.status > 599) Fail("status", std::to_string(response.status));
  if (response.status == 500) Fail("500", response.body);
  if (response.status >= 400 && response.content_type == "application/json") {
    auto body = nlohmann::json::parse(response.body, nullptr, false);
    if (body.is_discarded() || !body.is_object() || !body.contains("error") ||
        !body["error"].is_object() || !body["error"].contains("code") ||
        !body["error"]["code"].is_string() || !body["error"].contains("message")) {
      Fail("error shape", response.body);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* once = Setup();
  (void)once;
  boost::beast::string_view rest(reinterpret_cast<const char*>(data), size);
  for (int requests = 0; requests < 4 && !rest.empty(); ++requests) {
    gateway::WireParser parser;
    gateway::ConfigureParser(parser, kMaxHeaderBytes, kMaxBodyBytes);
    parser.eager(true);
    boost::beast::error_code ec;
    size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    if (ec == http::error::need_more) {
      if (parser.is_header_done() || used == 0) parser.put_eof(ec);  // the client closed
    }
    if (ec || !parser.is_done()) return 0;  // the server answers 400/413/431 and closes
    rest.remove_prefix(used);
    if (gateway::IsSubscribeUpgrade(parser.get(), engine::Role::kAll)) {
      // The server authenticates, checks the handshake, then switches to a
      // WebSocket (ws_frame_fuzz covers the frames).
      Status handshake = gateway::CheckWebSocketHandshake(parser.get());
      if (!handshake.ok()) CheckAnswer(gateway::HandshakeErrorResponse(handshake));
      if (std::getenv("AQUIFER_FUZZ_TRACE") != nullptr) {
        std::fprintf(stderr, "upgrade: %s\n", handshake.ToString().c_str());
      }
      return 0;
    }
    bool keep_alive = parser.get().keep_alive();
    gateway::HttpRequest request = gateway::ToHttpRequest(parser.release());
    gateway::HttpResponse response = world->api->Handle(request);
    static const bool trace = std::getenv("AQUIFER_FUZZ_TRACE") != nullptr;
    if (trace) std::fprintf(stderr, "%d %s %s\n", response.status, request.method.c_str(), request.target.c_str());
    CheckAnswer(response);
    if (!keep_alive) return 0;
  }
  return 0;
}
