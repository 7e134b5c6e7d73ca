// An in-process server on port 0 over a real Engine (embedded drivers in a
// temporary directory), driven by a small Beast client.
#include <utility>  // before asio's awaitable.hpp (Boost 1.74 + g++ 12)

#include "aquifer/gateway/server.h"

#include "aquifer/gateway/console.h"

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace aquifer::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using nlohmann::json;

constexpr char kAdminSecret[] = "server-test-admin-secret-0123456789";
constexpr size_t kMaxBody = 64 << 10;

struct Reply {
  int status = 0;
  http::fields headers;
  std::string body;
  json Json() const { return json::parse(body, nullptr, false); }
};

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("aquifer_server_test_" + std::to_string(::getpid())));
    std::filesystem::remove_all(*dir_);
    engine::EngineOptions options;
    options.data_dir = dir_->string();
    options.admin_secret = kAdminSecret;
    options.max_body_bytes = kMaxBody;
    options.wait_timeout_ms = 10'000;
    Result<std::unique_ptr<engine::Engine>> opened = engine::Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    engine_ = opened->release();
    ASSERT_TRUE(engine_->Start().ok());
    ServerOptions server_options;
    server_options.port = 0;
    server_options.io_threads = 2;
    server_options.handler_threads = 8;
    server_options.max_body_bytes = kMaxBody;
    server_options.ws_poll_interval = std::chrono::milliseconds(200);
    server_ = new Server(engine_, server_options);
    Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
    ASSERT_NE(server_->port(), 0);
  }
  static void TearDownTestSuite() {
    delete server_;
    if (engine_ != nullptr) engine_->Stop();
    delete engine_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static Reply Send(http::verb method, const std::string& target, const std::string& body = "",
                    const std::string& secret = kAdminSecret,
                    std::vector<std::pair<std::string, std::string>> headers = {}) {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
    http::request<http::string_body> request{method, target, 11};
    request.set(http::field::host, "127.0.0.1");
    if (!secret.empty()) request.set(http::field::authorization, "Bearer " + secret);
    for (auto& [name, value] : headers) request.set(name, value);
    if (!body.empty() || method == http::verb::post) {
      request.set(http::field::content_type, "application/json");
      request.body() = body;
    }
    request.prepare_payload();
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, buffer, parser);
    Reply reply;
    reply.status = static_cast<int>(parser.get().result_int());
    reply.headers = parser.get().base();
    reply.body = parser.get().body();
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return reply;
  }

  static void EnsureTable() {
    static bool created = false;
    if (created) return;
    Reply project = Send(http::verb::post, "/v1/projects", R"({"name":"shop"})");
    ASSERT_EQ(project.status, 201) << project.body;
    Reply table = Send(http::verb::post, "/v1/projects/shop/tables", R"({
      "name": "orders",
      "schema": {"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]},
      "key": ["id"]})");
    ASSERT_EQ(table.status, 201) << table.body;
    created = true;
  }

  // A new table `name` of the same Order schema as "orders" (in project
  // "shop"); answers its change cursor, or "" after recording a failure.
  static std::string NewOrderTable(const std::string& name) {
    EnsureTable();
    Reply table = Send(http::verb::post, "/v1/projects/shop/tables",
                       json{{"name", name},
                            {"schema", json::parse(R"({"type": "record", "name": "Order", "fields": [
                               {"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]})")},
                            {"key", {"id"}}}
                           .dump());
    if (table.status != 201) {
      ADD_FAILURE() << "creating table " << name << ": " << table.status << " " << table.body;
      return "";
    }
    return ChangeCursorOf(name);
  }

  // The change cursor of table `name` (in project "shop"), or "" after
  // recording a failure.
  static std::string ChangeCursorOf(const std::string& name) {
    Reply read = Send(http::verb::get, "/v1/projects/shop/tables/" + name + "/records?limit=1");
    if (read.status != 200) {
      ADD_FAILURE() << "reading table " << name << ": " << read.status << " " << read.body;
      return "";
    }
    return read.Json()["change_cursor"];
  }

  static std::string ErrorCode(const Reply& reply) {
    json body = reply.Json();
    if (!body.is_object() || !body.contains("error")) return "<no error body: " + reply.body + ">";
    return body["error"]["code"];
  }

  static std::filesystem::path* dir_;
  static engine::Engine* engine_;
  static Server* server_;
};

std::filesystem::path* ServerTest::dir_ = nullptr;
engine::Engine* ServerTest::engine_ = nullptr;
Server* ServerTest::server_ = nullptr;

TEST_F(ServerTest, HealthAndOpenApiNeedNoSecret) {
  Reply health = Send(http::verb::get, "/healthz", "", "");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.Json(), json::parse(R"({"status":"ok","durability":"durable","role":"all"})"));
  Reply spec = Send(http::verb::get, "/openapi.json", "", "");
  EXPECT_EQ(spec.status, 200);
  EXPECT_EQ(spec.Json()["openapi"], "3.0.3");
}

TEST_F(ServerTest, MissingOrUnknownSecretIs401WithWwwAuthenticate) {
  for (const std::string secret : {"", "aq_not-a-real-secret"}) {
    Reply reply = Send(http::verb::get, "/v1/usage", "", secret);
    EXPECT_EQ(reply.status, 401) << secret;
    EXPECT_EQ(ErrorCode(reply), "unauthenticated");
    EXPECT_TRUE(std::string(reply.headers[http::field::www_authenticate]).starts_with("Bearer"));
  }
  Reply metrics = Send(http::verb::get, "/metrics", "", "");
  EXPECT_EQ(metrics.status, 401);
}

TEST_F(ServerTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  Reply missing = Send(http::verb::get, "/v1/nothing-here");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(ErrorCode(missing), "not_found");
  Reply wrong = Send(http::verb::put, "/v1/projects/shop/tables/orders", "{}");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(ErrorCode(wrong), "method_not_allowed");
  EXPECT_EQ(wrong.headers[http::field::allow], "GET, DELETE");
}

TEST_F(ServerTest, BodyOverTheLimitIs413) {
  std::string big(kMaxBody + 1, ' ');
  Reply reply = Send(http::verb::post, "/v1/projects", big);
  EXPECT_EQ(reply.status, 413);
  EXPECT_EQ(ErrorCode(reply), "too_large");
}

TEST_F(ServerTest, MalformedJsonIs400SayingSo) {
  Reply reply = Send(http::verb::post, "/v1/projects", R"({"name": shop})");
  EXPECT_EQ(reply.status, 400);
  EXPECT_EQ(ErrorCode(reply), "invalid_argument");
  EXPECT_TRUE(reply.Json()["error"]["message"].get<std::string>().starts_with("malformed JSON: "))
      << reply.body;
  Reply sql = Send(http::verb::post, "/v1/sql", "[1,");
  EXPECT_EQ(sql.status, 400);
}

TEST_F(ServerTest, BadQueryParametersAre400) {
  EnsureTable();
  for (const std::string query : {"limit=abc", "limit=0", "limit=5000", "colour=red", "limit=1&limit=2"}) {
    Reply reply = Send(http::verb::get, "/v1/projects/shop/tables/orders/records?" + query);
    EXPECT_EQ(reply.status, 400) << query << ": " << reply.body;
  }
  Reply unknown = Send(http::verb::get, "/v1/usage?verbose=1");
  EXPECT_NE(unknown.Json()["error"]["message"].get<std::string>().find("'verbose'"), std::string::npos);
}

TEST_F(ServerTest, WriteReadAndDescribeATable) {
  EnsureTable();
  Reply write = Send(http::verb::post, "/v1/projects/shop/tables/orders/records?wait=index",
                     R"([{"id":"a","qty":1},{"id":"b","qty":2},{"id":"a","qty":3}])");
  ASSERT_EQ(write.status, 200) << write.body;
  EXPECT_EQ(write.Json()["records"], 3);
  EXPECT_TRUE(write.Json()["write_id"].is_string());

  Reply ndjson = Send(http::verb::post, "/v1/projects/shop/tables/orders/records",
                      "{\"id\":\"c\",\"qty\":4}\n{\"id\":\"d\",\"qty\":5}\n", kAdminSecret,
                      {{"Content-Type", "application/x-ndjson"}});
  ASSERT_EQ(ndjson.status, 202) << ndjson.body;
  EXPECT_EQ(ndjson.Json()["records"], 2);

  Reply invalid = Send(http::verb::post, "/v1/projects/shop/tables/orders/records",
                       R"([{"id":"e","qty":1},{"id":"f","qty":"many"}])");
  EXPECT_EQ(invalid.status, 400) << invalid.body;
  EXPECT_EQ(ErrorCode(invalid), "invalid_records");
  ASSERT_FALSE(invalid.Json()["error"]["details"].empty()) << invalid.body;
  EXPECT_EQ(invalid.Json()["error"]["details"][0]["record"], 1);

  Reply read = Send(http::verb::get,
                    "/v1/projects/shop/tables/orders/records?filter=%7B%22id%22%3A%22a%22%7D&limit=10");
  ASSERT_EQ(read.status, 200) << read.body;
  json page = read.Json();
  ASSERT_EQ(page["data"].size(), 1u) << read.body;
  EXPECT_EQ(page["data"][0]["qty"], 3);
  EXPECT_TRUE(page["data"][0].contains("@timestamp"));
  EXPECT_TRUE(page.contains("next_cursor"));
  EXPECT_TRUE(page["change_cursor"].is_string());

  Reply log = Send(http::verb::get, "/v1/projects/shop/tables/orders/log?limit=2");
  ASSERT_EQ(log.status, 200) << log.body;
  EXPECT_EQ(log.Json()["data"].size(), 2u);
  ASSERT_TRUE(log.Json()["next_cursor"].is_string()) << log.body;
  Reply next = Send(http::verb::get,
                    "/v1/cursor?cursor=" + log.Json()["next_cursor"].get<std::string>() + "&limit=1");
  ASSERT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(next.Json()["data"].size(), 1u);

  Reply described = Send(http::verb::get, "/v1/projects/shop/tables/orders");
  EXPECT_EQ(described.status, 200) << described.body;
  Reply missing = Send(http::verb::get, "/v1/projects/shop/tables/nope");
  EXPECT_EQ(missing.status, 404);
}

TEST_F(ServerTest, CreateAndDeleteAnswer201And204) {
  EnsureTable();
  Reply table = Send(http::verb::post, "/v1/projects/shop/tables",
                     R"({"name":"scratch","schema":{"type":"record","name":"S","fields":[{"name":"k","type":"long"}]},"key":["k"]})");
  ASSERT_EQ(table.status, 201) << table.body;
  Reply again = Send(http::verb::post, "/v1/projects/shop/tables",
                     R"({"name":"scratch","schema":{"type":"record","name":"S","fields":[{"name":"k","type":"long"}]},"key":["k"]})");
  EXPECT_EQ(again.status, 409) << again.body;
  Reply secret = Send(http::verb::post, "/v1/projects/shop/secrets", R"({"read":["scratch"]})");
  ASSERT_EQ(secret.status, 201) << secret.body;
  std::string reader = secret.Json()["secret"];
  EXPECT_EQ(Send(http::verb::get, "/v1/projects/shop/tables/scratch", "", reader).status, 200);
  EXPECT_EQ(Send(http::verb::get, "/v1/projects/shop/tables/orders", "", reader).status, 404);
  EXPECT_EQ(Send(http::verb::get, "/metrics", "", reader).status, 403);
  Reply deleted = Send(http::verb::delete_, "/v1/projects/shop/tables/scratch");
  EXPECT_EQ(deleted.status, 204);
  EXPECT_TRUE(deleted.body.empty());
  EXPECT_EQ(Send(http::verb::get, "/v1/projects/shop/tables/scratch").status, 404);
}

TEST_F(ServerTest, DeadLetterRoutesAreAdminOnlyAndAnswerJson) {
  EnsureTable();
  Reply listed = Send(http::verb::get, "/v1/admin/dead-letters?limit=10");
  ASSERT_EQ(listed.status, 200) << listed.body;
  ASSERT_TRUE(listed.Json()["dead_letters"].is_array()) << listed.body;
  EXPECT_EQ(Send(http::verb::get, "/v1/admin/dead-letters?limit=0").status, 400);
  Reply replayed = Send(http::verb::post, "/v1/admin/dead-letters/replay", "");
  ASSERT_EQ(replayed.status, 200) << replayed.body;
  EXPECT_EQ(replayed.Json()["replayed"], 0);
  Reply filtered = Send(http::verb::post, "/v1/admin/dead-letters/replay", R"({"write_ids":["x"]})");
  EXPECT_EQ(filtered.status, 200) << filtered.body;
  EXPECT_EQ(Send(http::verb::post, "/v1/admin/dead-letters/replay", R"({"ids":[]})").status, 400);
  Reply secret = Send(http::verb::post, "/v1/projects/shop/secrets", R"({"read":["orders"],"manage":true})");
  ASSERT_EQ(secret.status, 201) << secret.body;
  std::string manager = secret.Json()["secret"];
  Reply denied = Send(http::verb::get, "/v1/admin/dead-letters", "", manager);
  EXPECT_EQ(denied.status, 403) << denied.body;
  EXPECT_EQ(Send(http::verb::post, "/v1/admin/dead-letters/replay", "", manager).status, 403);
}

TEST_F(ServerTest, SubscriptionPushesNewRecordsWithAResumeCursor) {
  EnsureTable();
  std::string change_cursor = ChangeCursorOf("orders");
  ASSERT_FALSE(change_cursor.empty());

  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  beast::get_lowest_layer(ws).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
  ws.handshake("127.0.0.1", "/v1/subscribe");
  ws.write(asio::buffer(json{{"type", "subscribe"}, {"cursor", change_cursor}, {"secret", kAdminSecret}}.dump()));

  std::thread writer([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Reply write = Send(http::verb::post, "/v1/projects/shop/tables/orders/records",
                       R"([{"id":"live","qty":42}])");
    EXPECT_EQ(write.status, 202) << write.body;
  });
  bool seen = false;
  beast::get_lowest_layer(ws).expires_after(std::chrono::seconds(20));
  while (!seen) {
    beast::flat_buffer buffer;
    ws.read(buffer);
    json message = json::parse(beast::buffers_to_string(buffer.data()));
    ASSERT_EQ(message["type"], "records") << message.dump();
    EXPECT_TRUE(message["cursor"].is_string());
    for (const json& record : message["data"]) seen = seen || record["id"] == "live";
  }
  writer.join();
  // A second subscribe on the same socket is an error, then the server closes.
  ws.write(asio::buffer(json{{"type", "subscribe"}, {"cursor", change_cursor}}.dump()));
  beast::flat_buffer buffer;
  ws.read(buffer);
  json error = json::parse(beast::buffers_to_string(buffer.data()));
  EXPECT_EQ(error["type"], "error");
  EXPECT_EQ(error["error"]["code"], "invalid_argument");
  beast::error_code ec;
  ws.read(buffer, ec);
  EXPECT_EQ(ec, websocket::error::closed);
}

TEST_F(ServerTest, SubscribeWithoutSecretOrWithABrokenCursorIsAnError) {
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  beast::get_lowest_layer(ws).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server_->port()));
  ws.handshake("127.0.0.1", "/v1/subscribe");
  ws.write(asio::buffer(std::string(R"({"type":"subscribe","cursor":"x"})")));
  beast::flat_buffer buffer;
  ws.read(buffer);
  json error = json::parse(beast::buffers_to_string(buffer.data()));
  EXPECT_EQ(error["type"], "error");
  EXPECT_EQ(error["error"]["code"], "unauthenticated");

  // A plain GET: a valid secret learns it must upgrade (426); no secret or a
  // wrong one is 401 first, as on every route that needs a secret.
  Reply plain = Send(http::verb::get, "/v1/subscribe");
  EXPECT_EQ(plain.status, 426);
  Reply anonymous = Send(http::verb::get, "/v1/subscribe", "", "");
  EXPECT_EQ(anonymous.status, 401);
  EXPECT_EQ(json::parse(anonymous.body)["error"]["code"], "unauthenticated");
  Reply wrong = Send(http::verb::get, "/v1/subscribe", "", "not-a-secret-of-this-server");
  EXPECT_EQ(wrong.status, 401);

  // A bad handshake gets the API's JSON error shape, not Beast's plain text.
  std::vector<std::pair<std::string, std::string>> upgrade = {
      {"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Version", "13"}};
  Reply no_key = Send(http::verb::get, "/v1/subscribe", "", kAdminSecret, upgrade);
  EXPECT_EQ(no_key.status, 400);
  EXPECT_EQ(json::parse(no_key.body, nullptr, false)["error"]["code"], "invalid_argument") << no_key.body;
  upgrade[2].second = "8";
  upgrade.emplace_back("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
  Reply old_version = Send(http::verb::get, "/v1/subscribe", "", kAdminSecret, upgrade);
  EXPECT_EQ(old_version.status, 426);
  EXPECT_EQ(json::parse(old_version.body, nullptr, false)["error"]["code"], "upgrade_required")
      << old_version.body;
  EXPECT_EQ(old_version.headers["Sec-WebSocket-Version"], "13");
}

// A second server over the suite's engine. Its caught-up sessions wait for a
// change notification, and for `poll` without one.
std::unique_ptr<Server> StartServer(engine::Engine* engine, std::chrono::milliseconds poll) {
  ServerOptions options;
  options.port = 0;
  options.io_threads = 1;
  options.handler_threads = 2;
  options.max_body_bytes = kMaxBody;
  options.ws_poll_interval = poll;
  auto server = std::make_unique<Server>(engine, options);
  Status started = server->Start();
  EXPECT_TRUE(started.ok()) << started.ToString();
  return server;
}

// Opens a WebSocket on `port` and subscribes with the admin secret.
void Subscribe(websocket::stream<beast::tcp_stream>& ws, uint16_t port, const std::string& cursor,
               const json& filter = nullptr) {
  beast::get_lowest_layer(ws).connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  ws.handshake("127.0.0.1", "/v1/subscribe");
  json subscribe = {{"type", "subscribe"}, {"cursor", cursor}, {"secret", kAdminSecret}};
  if (!filter.is_null()) subscribe["filter"] = filter;
  ws.write(asio::buffer(subscribe.dump()));
}

// The next message within `timeout` (a real deadline: a blocking read would
// wait forever), or nullopt with the reason in *error.
std::optional<json> ReadWithin(asio::io_context& ioc, websocket::stream<beast::tcp_stream>& ws,
                               std::chrono::seconds timeout, std::string* error) {
  beast::flat_buffer buffer;
  beast::error_code ec;
  bool done = false;
  ws.async_read(buffer, [&](beast::error_code read_ec, size_t) {
    ec = read_ec;
    done = true;
  });
  ioc.restart();
  ioc.run_for(timeout);
  if (!done) {
    beast::error_code ignored;
    beast::get_lowest_layer(ws).socket().close(ignored);
    ioc.restart();
    ioc.run();
    *error = "no message within " + std::to_string(timeout.count()) + " s";
    return std::nullopt;
  }
  if (ec) {
    *error = ec.message();
    return std::nullopt;
  }
  return json::parse(beast::buffers_to_string(buffer.data()));
}

int64_t EngineMetric(engine::Engine* engine, const std::string& name) {
  std::string text = engine->MetricsText();
  size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + name.size() + 2));
}

TEST_F(ServerTest, AFilteredCatchUpReadsPageAfterPageWithoutWaiting) {
  std::string change_cursor = NewOrderTable("catchup");
  ASSERT_FALSE(change_cursor.empty());
  // 25,000 records no filter matches, then one that matches: with the
  // driver's scan budget of 10,000 records per read, the catch-up takes three
  // reads, the first two of which return nothing.
  constexpr int kMisses = 25'000, kPerWrite = 1'000;
  for (int written = 0; written < kMisses; written += kPerWrite) {
    json batch = json::array();
    for (int i = written; i < written + kPerWrite; ++i) batch.push_back({{"id", "n" + std::to_string(i)}, {"qty", 0}});
    Reply write = Send(http::verb::post, "/v1/projects/shop/tables/catchup/records?wait=log", batch.dump());
    ASSERT_EQ(write.status, 200) << write.body;
  }
  Reply last = Send(http::verb::post, "/v1/projects/shop/tables/catchup/records?wait=log",
                    R"([{"id":"match","qty":1}])");
  ASSERT_EQ(last.status, 200) << last.body;

  // Sessions of this server never re-read on a timer: a session that waited
  // after an empty page (as if caught up) would never get to the match.
  std::unique_ptr<Server> server = StartServer(engine_, std::chrono::hours(1));
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  Subscribe(ws, server->port(), change_cursor, json{{"qty", 1}});
  std::string error;
  std::optional<json> message = ReadWithin(ioc, ws, std::chrono::seconds(30), &error);
  ASSERT_TRUE(message.has_value()) << "no batch: the catch-up stopped after an empty page (" << error << ")";
  ASSERT_EQ((*message)["type"], "records") << message->dump();
  ASSERT_EQ((*message)["data"].size(), 1u) << message->dump();
  EXPECT_EQ((*message)["data"][0]["id"], "match");
  EXPECT_GE(server->metrics().ws_change_reads(), 3u);
  beast::error_code ec;
  ws.close(websocket::close_code::normal, ec);
}

// The ws_poll_interval fallback (notifications are at-most-once): a caught-up
// session re-reads after the interval without a wake-up, also after a
// wake-up ended an earlier wait (the poll timer is left armed across waits),
// and neither spins nor stops.
TEST_F(ServerTest, ACaughtUpSubscriptionReReadsAfterThePollIntervalBeforeAndAfterAWakeUp) {
  EnsureTable();
  std::string change_cursor = ChangeCursorOf("orders");
  ASSERT_FALSE(change_cursor.empty());
  std::unique_ptr<Server> server = StartServer(engine_, std::chrono::milliseconds(100));
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  Subscribe(ws, server->port(), change_cursor);
  auto reads_reach = [&](uint64_t target) {
    for (int attempt = 0; attempt < 3000 && server->metrics().ws_change_reads() < target; ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return server->metrics().ws_change_reads() >= target;
  };
  ASSERT_TRUE(reads_reach(3)) << "no re-read on the poll interval: " << server->metrics().ws_change_reads();
  Reply write = Send(http::verb::post, "/v1/projects/shop/tables/orders/records",
                     R"([{"id":"poll-wake","qty":1}])");
  ASSERT_EQ(write.status, 202) << write.body;
  std::string error;
  std::optional<json> message = ReadWithin(ioc, ws, std::chrono::seconds(20), &error);
  ASSERT_TRUE(message.has_value()) << error;
  ASSERT_EQ((*message)["type"], "records") << message->dump();
  EXPECT_EQ((*message)["data"][0]["id"], "poll-wake");
  const uint64_t after_wake = server->metrics().ws_change_reads();
  EXPECT_TRUE(reads_reach(after_wake + 3)) << "no re-read on the poll interval after a wake-up";
  // Polling, not spinning: a handful of reads a second at 100 ms, never thousands.
  const uint64_t before_idle = server->metrics().ws_change_reads();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_LT(server->metrics().ws_change_reads() - before_idle, 100u);
  beast::error_code ec;
  ws.close(websocket::close_code::normal, ec);
}

TEST_F(ServerTest, AnIdleSubscriptionReadsNothingUntilAWriteWakesIt) {
  EnsureTable();
  std::string change_cursor = ChangeCursorOf("orders");
  ASSERT_FALSE(change_cursor.empty());
  // Default options: the fallback re-read is far longer than the window below.
  ServerOptions defaults;
  std::unique_ptr<Server> server = StartServer(engine_, defaults.ws_poll_interval);
  const int64_t reads_before = EngineMetric(engine_, "aquifer_reads_total");
  ASSERT_GE(reads_before, 0);
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  Subscribe(ws, server->port(), change_cursor);
  // The first read finds nothing new; the session is caught up.
  for (int attempt = 0; attempt < 2000 && EngineMetric(engine_, "aquifer_reads_total") == reads_before; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const int64_t reads_caught_up = EngineMetric(engine_, "aquifer_reads_total");
  ASSERT_EQ(reads_caught_up, reads_before + 1);
  const int64_t checks_caught_up = EngineMetric(engine_, "aquifer_change_feed_checks_total");
  // Idle: no reads and no catalog lookups, however long it stays idle.
  std::this_thread::sleep_for(std::chrono::milliseconds(2'500));
  EXPECT_EQ(EngineMetric(engine_, "aquifer_reads_total"), reads_caught_up)
      << "an idle subscription kept reading";
  EXPECT_EQ(EngineMetric(engine_, "aquifer_change_feed_checks_total"), checks_caught_up)
      << "an idle subscription kept asking the catalog";

  // A write wakes it: the record arrives without a timer.
  Reply write = Send(http::verb::post, "/v1/projects/shop/tables/orders/records",
                     R"([{"id":"wake","qty":1}])");
  ASSERT_EQ(write.status, 202) << write.body;
  std::string error;
  std::optional<json> message = ReadWithin(ioc, ws, std::chrono::seconds(20), &error);
  ASSERT_TRUE(message.has_value()) << error;
  ASSERT_EQ((*message)["type"], "records") << message->dump();
  ASSERT_EQ((*message)["data"].size(), 1u) << message->dump();
  EXPECT_EQ((*message)["data"][0]["id"], "wake");
  EXPECT_GE(server->metrics().ws_wakeups(), 1u);
  EXPECT_EQ(EngineMetric(engine_, "aquifer_change_feed_checks_total"), checks_caught_up)
      << "a woken subscription asked the catalog again";
  beast::error_code ec;
  ws.close(websocket::close_code::normal, ec);
}

// Many sessions on one table at different positions, some catching up while
// others are live and all sharing pages (one read per position, taken without
// a read by the sessions that follow, on two WebSocket threads, woken through
// one hub listener per thread): each gets every record after its cursor
// exactly once, in write order.
TEST_F(ServerTest, ManySubscribersAtDifferentPositionsGetEveryRecordOnceInWriteOrder) {
  const std::string start_cursor = NewOrderTable("fanout");
  ASSERT_FALSE(start_cursor.empty());
  ServerOptions options;
  options.port = 0;
  options.io_threads = 1;
  options.ws_threads = 2;
  options.handler_threads = 4;
  options.max_body_bytes = kMaxBody;
  options.ws_poll_interval = std::chrono::hours(1);  // only the hub's wake-ups deliver
  Server server(engine_, options);
  ASSERT_TRUE(server.Start().ok());

  constexpr int kTotal = 600, kPerWrite = 5, kGroups = 4, kPerGroup = 8;
  struct Sub {
    explicit Sub(asio::io_context& ioc) : ws(ioc) {}
    websocket::stream<beast::tcp_stream> ws;
    beast::flat_buffer buffer;
    int64_t first = 0;              // the first record it must get
    std::vector<int64_t> seen;      // on the client thread only
    std::atomic<int64_t> last{-1};  // the last record seen
    std::string error;
  };
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  std::vector<std::unique_ptr<Sub>> subs;
  subs.reserve(kGroups * kPerGroup);
  Sub* leader = nullptr;  // its cursors start the later groups
  std::mutex checkpoints_mu;
  std::vector<std::pair<int64_t, std::string>> checkpoints;  // (last record, cursor after it)
  std::function<void(Sub*)> read_next = [&](Sub* sub) {
    sub->ws.async_read(sub->buffer, [&, sub](beast::error_code ec, size_t) {
      if (ec) {
        sub->error = ec.message();
        return;
      }
      json message = json::parse(beast::buffers_to_string(sub->buffer.data()), nullptr, false);
      sub->buffer.consume(sub->buffer.size());
      if (!message.is_object() || message.value("type", "") != "records" || !message["cursor"].is_string()) {
        sub->error = "unexpected message: " + message.dump().substr(0, 300);
        return;
      }
      for (const json& record : message["data"]) sub->seen.push_back(record["qty"].get<int64_t>());
      if (!sub->seen.empty()) sub->last = sub->seen.back();
      if (sub == leader && !sub->seen.empty()) {
        std::lock_guard lock(checkpoints_mu);
        checkpoints.emplace_back(sub->seen.back(), message["cursor"].get<std::string>());
      }
      read_next(sub);
    });
  };
  auto open_group = [&](const std::string& cursor, int64_t first) {
    for (int i = 0; i < kPerGroup; ++i) {
      auto sub = std::make_unique<Sub>(ioc);
      sub->first = first;
      Subscribe(sub->ws, server.port(), cursor);
      Sub* raw = sub.get();
      subs.push_back(std::move(sub));
      asio::post(ioc, [&, raw] { read_next(raw); });
    }
  };
  open_group(start_cursor, 0);
  leader = subs.front().get();
  std::thread client([&] { ioc.run(); });

  std::atomic<bool> write_failed{false};
  std::string write_error;
  std::thread writer([&] {
    for (int sent = 0; sent < kTotal && !write_failed; sent += kPerWrite) {
      json batch = json::array();
      for (int i = sent; i < sent + kPerWrite; ++i) batch.push_back({{"id", "f" + std::to_string(i)}, {"qty", i}});
      Reply write = Send(http::verb::post, "/v1/projects/shop/tables/fanout/records", batch.dump());
      if (write.status != 202) {
        write_error = write.body;
        write_failed = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  // Each later group starts from the leader's cursor after a later record, while records flow.
  for (int group = 1; group < kGroups && !write_failed; ++group) {
    const int64_t after = group * kTotal / kGroups / 2;
    std::optional<std::pair<int64_t, std::string>> start;
    for (int attempt = 0; attempt < 6000 && !start; ++attempt) {
      {
        std::lock_guard lock(checkpoints_mu);
        for (const auto& checkpoint : checkpoints) {
          if (checkpoint.first >= after) {
            start = checkpoint;
            break;
          }
        }
      }
      if (!start) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(start.has_value()) << "the first subscribers never got past record " << after;
    open_group(start->second, start->first + 1);
  }
  writer.join();
  ASSERT_FALSE(write_failed.load()) << write_error;
  auto all_done = [&] {
    for (const auto& sub : subs) {
      if (sub->last.load() < kTotal - 1) return false;
    }
    return true;
  };
  for (int attempt = 0; attempt < 6000 && !all_done(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // anything repeated after the last record
  // The hub holds one listener of the table per WebSocket thread, not one
  // per session (a write's notification is one callback per thread).
  const int64_t listeners = EngineMetric(engine_, "aquifer_subscription_listeners");
  EXPECT_GE(listeners, 1);
  EXPECT_LE(listeners, options.ws_threads) << "with " << subs.size() << " sessions on one table";
  for (const auto& sub : subs) {
    asio::post(ioc, [raw = sub.get()] {
      beast::error_code ec;
      beast::get_lowest_layer(raw->ws).socket().close(ec);
    });
  }
  work.reset();
  client.join();
  ASSERT_EQ(subs.size(), static_cast<size_t>(kGroups * kPerGroup));
  for (size_t i = 0; i < subs.size(); ++i) {
    const Sub& sub = *subs[i];
    std::vector<int64_t> want;
    for (int64_t seq = sub.first; seq < kTotal; ++seq) want.push_back(seq);
    EXPECT_EQ(sub.seen, want) << "subscriber " << i << " (from record " << sub.first
                              << ") did not get every record once in write order; error: " << sub.error;
  }
}

// A records message larger than Beast's 4 KiB write buffer goes out as one
// final text frame (one write per message, not one per 4 KiB fragment), and
// is the whole page in order with its resume cursor. Read as raw frames on
// the socket: a WebSocket client would reassemble fragments and not tell.
TEST_F(ServerTest, ALargeRecordsMessageIsOneFrame) {
  const std::string change_cursor = NewOrderTable("bigpage");
  ASSERT_FALSE(change_cursor.empty());
  constexpr int kRecords = 200;  // ~130 bytes of JSON each: ~26 KB, six 4 KiB fragments before
  json batch = json::array();
  for (int i = 0; i < kRecords; ++i) {
    batch.push_back({{"id", "big-" + std::to_string(i) + "-" + std::string(100, 'x')}, {"qty", i}});
  }
  Reply write = Send(http::verb::post, "/v1/projects/shop/tables/bigpage/records?wait=log", batch.dump());
  ASSERT_EQ(write.status, 200) << write.body;

  std::unique_ptr<Server> server = StartServer(engine_, std::chrono::hours(1));
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  Subscribe(ws, server->port(), change_cursor);  // nothing is sent before the subscribe message
  tcp::socket& socket = beast::get_lowest_layer(ws).socket();
  auto read_exactly = [&](size_t n) {
    std::string bytes(n, '\0');
    asio::read(socket, asio::buffer(bytes.data(), n));
    return bytes;
  };
  const std::string head = read_exactly(2);
  const auto b0 = static_cast<uint8_t>(head[0]), b1 = static_cast<uint8_t>(head[1]);
  EXPECT_EQ(b0 & 0x80, 0x80) << "the first frame is not final: the message was fragmented";
  EXPECT_EQ(b0 & 0x0f, 0x1) << "not a text frame";
  ASSERT_EQ(b1 & 0x80, 0) << "a server frame is never masked";
  uint64_t length = b1 & 0x7f;
  if (length == 126 || length == 127) {
    const std::string ext = read_exactly(length == 126 ? 2 : 8);
    length = 0;
    for (char c : ext) length = (length << 8) | static_cast<uint8_t>(c);
  }
  ASSERT_GT(length, 4096u) << "the page should not fit Beast's 4 KiB write buffer";
  ASSERT_LT(length, 1u << 20);
  json message = json::parse(read_exactly(static_cast<size_t>(length)), nullptr, false);
  ASSERT_TRUE(message.is_object()) << "the frame is not a whole JSON message";
  ASSERT_EQ(message["type"], "records");
  ASSERT_EQ(message["data"].size(), static_cast<size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) EXPECT_EQ(message["data"][i]["qty"], i);
  ASSERT_TRUE(message["cursor"].is_string());
  // The cursor resumes after the page: a new subscription from it gets only what follows.
  Reply next = Send(http::verb::post, "/v1/projects/shop/tables/bigpage/records?wait=log",
                    R"([{"id":"after","qty":1000}])");
  ASSERT_EQ(next.status, 200) << next.body;
  websocket::stream<beast::tcp_stream> resumed(ioc);
  Subscribe(resumed, server->port(), message["cursor"].get<std::string>());
  std::string error;
  std::optional<json> more = ReadWithin(ioc, resumed, std::chrono::seconds(20), &error);
  ASSERT_TRUE(more.has_value()) << error;
  ASSERT_EQ((*more)["data"].size(), 1u) << more->dump();
  EXPECT_EQ((*more)["data"][0]["id"], "after");
  beast::error_code ec;
  socket.close(ec);
  resumed.close(websocket::close_code::normal, ec);
}

TEST_F(ServerTest, DeletingTheTableEndsItsIdleSubscriptionsAtOnce) {
  const std::string change_cursor = NewOrderTable("doomed");
  ASSERT_FALSE(change_cursor.empty());
  std::unique_ptr<Server> server = StartServer(engine_, std::chrono::hours(1));
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws(ioc);
  Subscribe(ws, server->port(), change_cursor);
  for (int attempt = 0; attempt < 2000 && server->metrics().ws_idle_waits() == 0; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(server->metrics().ws_idle_waits(), 1u) << "the session never caught up";
  ASSERT_EQ(Send(http::verb::delete_, "/v1/projects/shop/tables/doomed").status, 204);
  std::string error;
  std::optional<json> message = ReadWithin(ioc, ws, std::chrono::seconds(20), &error);
  ASSERT_TRUE(message.has_value()) << "the subscription of a deleted table stayed open: " << error;
  EXPECT_EQ((*message)["type"], "error") << message->dump();
  EXPECT_EQ((*message)["error"]["code"], "not_found") << message->dump();
}

TEST_F(ServerTest, MetricsCountRequestsByRouteAndStatus) {
  Send(http::verb::get, "/healthz", "", "");
  Reply metrics = Send(http::verb::get, "/metrics");
  ASSERT_EQ(metrics.status, 200) << metrics.body;
  EXPECT_TRUE(std::string(metrics.headers[http::field::content_type]).starts_with("text/plain"));
  EXPECT_NE(metrics.body.find("aquifer_http_requests_total{route=\"GET /healthz\",status=\"200\"}"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("aquifer_http_request_duration_seconds_bucket{route=\"GET /healthz\",le=\"+Inf\"}"),
            std::string::npos);
  EXPECT_NE(metrics.body.find("aquifer_ws_sessions "), std::string::npos);
  EXPECT_NE(metrics.body.find("aquifer_ws_idle_waits_total "), std::string::npos);
  EXPECT_NE(metrics.body.find("aquifer_change_feeds "), std::string::npos);
}

TEST_F(ServerTest, TheConsoleIsServedAtTheRootWithStrictHeaders) {
  Reply index = Send(http::verb::get, "/", "", "");
  ASSERT_EQ(index.status, 200) << index.body;
  EXPECT_EQ(std::string(index.headers[http::field::content_type]), "text/html; charset=utf-8");
  EXPECT_EQ(std::string(index.headers[http::field::cache_control]), "no-cache");
  EXPECT_EQ(std::string(index.headers["Content-Security-Policy"]), std::string(kConsoleCsp));
  EXPECT_EQ(std::string(index.headers["X-Content-Type-Options"]), "nosniff");
  const std::string base = "/console/" + std::string(ConsoleVersion()) + "/";
  EXPECT_NE(index.body.find("src=\"" + base + "app.js\""), std::string::npos) << index.body;
  EXPECT_EQ(index.body.find("%CONSOLE_BASE%"), std::string::npos);
  std::string etag(index.headers[http::field::etag]);
  ASSERT_FALSE(etag.empty());
  Reply again = Send(http::verb::get, "/", "", "", {{"If-None-Match", etag}});
  EXPECT_EQ(again.status, 304);
  EXPECT_EQ(again.body, "");
  EXPECT_EQ(Send(http::verb::get, "/", "", "", {{"If-None-Match", "\"other\""}}).status, 200);

  ASSERT_GE(ConsoleFiles().size(), 2u);
  for (const ConsoleFile& file : ConsoleFiles()) {
    if (file.name == "index.html") {
      EXPECT_EQ(Send(http::verb::get, base + "index.html", "", "").status, 404);
      continue;
    }
    Reply asset = Send(http::verb::get, base + std::string(file.name), "", "");
    EXPECT_EQ(asset.status, 200) << file.name;
    EXPECT_EQ(std::string(asset.headers[http::field::content_type]), std::string(file.content_type)) << file.name;
    EXPECT_EQ(std::string(asset.headers[http::field::cache_control]), "public, max-age=31536000, immutable");
    EXPECT_EQ(std::string(asset.headers["Content-Security-Policy"]), std::string(kConsoleCsp));
    EXPECT_EQ(asset.body, file.body);
    EXPECT_EQ(asset.body.find("innerHTML"), std::string::npos) << file.name << " builds HTML from strings";
  }
  Reply stale = Send(http::verb::get, "/console/0123456789abcdef/app.js", "", "");
  EXPECT_EQ(stale.status, 404);
  EXPECT_EQ(ErrorCode(stale), "not_found");
  EXPECT_EQ(Send(http::verb::get, base + "missing.js", "", "").status, 404);
  EXPECT_EQ(Send(http::verb::get, "/console/", "", "").status, 404);
  Reply post = Send(http::verb::post, "/", "{}", "");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(std::string(post.headers[http::field::allow]), "GET");
  EXPECT_EQ(ErrorCode(post), "method_not_allowed");
  // The API around it is unchanged.
  EXPECT_EQ(ErrorCode(Send(http::verb::get, "/v2", "", "")), "not_found");
}

TEST_F(ServerTest, ListTablesShowsWhatTheSecretMayRead) {
  ASSERT_EQ(Send(http::verb::post, "/v1/projects", R"({"name":"listing"})").status, 201);
  Reply empty = Send(http::verb::get, "/v1/projects/listing/tables");
  ASSERT_EQ(empty.status, 200) << empty.body;
  EXPECT_EQ(empty.Json(), json::parse(R"({"project":"listing","tables":[]})"));
  for (const char* name : {"zeta", "alpha"}) {
    Reply table = Send(http::verb::post, "/v1/projects/listing/tables",
                       std::string(R"({"name": ")") + name + R"(", "key": ["id"],
      "schema": {"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"}]}})");
    ASSERT_EQ(table.status, 201) << table.body;
  }
  Reply listed = Send(http::verb::get, "/v1/projects/listing/tables");
  ASSERT_EQ(listed.status, 200) << listed.body;
  json body = listed.Json();
  EXPECT_EQ(body["project"], "listing");
  std::vector<std::string> names;
  for (const json& table : body["tables"]) names.push_back(table["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"alpha", "zeta"}));
  EXPECT_EQ(body["tables"][1], Send(http::verb::get, "/v1/projects/listing/tables/zeta").Json());

  Reply minted = Send(http::verb::post, "/v1/projects/listing/secrets", R"({"read":["zeta"]})");
  ASSERT_EQ(minted.status, 201) << minted.body;
  std::string scoped = minted.Json()["secret"];
  Reply seen = Send(http::verb::get, "/v1/projects/listing/tables", "", scoped);
  ASSERT_EQ(seen.status, 200) << seen.body;
  ASSERT_EQ(seen.Json()["tables"].size(), 1u) << seen.body;
  EXPECT_EQ(seen.Json()["tables"][0]["name"], "zeta");

  // What the secret may not see answers like what does not exist.
  Reply missing = Send(http::verb::get, "/v1/projects/nope/tables");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(ErrorCode(missing), "not_found");
  EXPECT_EQ(Send(http::verb::get, "/v1/projects/nope/tables", "", scoped).status, 404);
  EnsureTable();
  EXPECT_EQ(Send(http::verb::get, "/v1/projects/shop/tables", "", scoped).status, 404);
  EXPECT_EQ(Send(http::verb::get, "/v1/projects/listing/tables", "", "").status, 401);
  EXPECT_EQ(Send(http::verb::get, "/v1/projects/listing/tables?limit=1").status, 400);
}

TEST_F(ServerTest, UsageHoursGivesTheLastHourlyBuckets) {
  EnsureTable();
  ASSERT_EQ(Send(http::verb::post, "/v1/projects/shop/tables/orders/records",
                 R"([{"id":"u1","qty":1}])").status, 202);
  Reply plain = Send(http::verb::get, "/v1/usage");
  ASSERT_EQ(plain.status, 200) << plain.body;
  ASSERT_FALSE(plain.Json()["projects"].empty());
  EXPECT_FALSE(plain.Json()["projects"][0].contains("hours"));

  Reply usage = Send(http::verb::get, "/v1/usage?hours=3");
  ASSERT_EQ(usage.status, 200) << usage.body;
  const json answer = usage.Json();  // a range-for over usage.Json()["projects"] reads a dead temporary
  for (const json& project : answer["projects"]) {
    const json& hours = project["hours"];
    ASSERT_EQ(hours.size(), 3u) << project.dump();
    for (size_t idx = 1; idx < hours.size(); ++idx) {
      EXPECT_EQ(hours[idx]["start_ms"].get<int64_t>() - hours[idx - 1]["start_ms"].get<int64_t>(), 3'600'000);
    }
    json last = hours[2];
    EXPECT_EQ(last["start_ms"], project["hour_start_ms"]);
    last.erase("start_ms");
    EXPECT_EQ(last, project["hour"]);
    if (project["project"] == "shop") {
      EXPECT_GT(last["write_records"].get<int64_t>(), 0);
    }
  }
  EXPECT_EQ(Send(http::verb::get, "/v1/usage?hours=169").status, 400);
  EXPECT_EQ(Send(http::verb::get, "/v1/usage?hours=-1").status, 400);
}

}  // namespace
}  // namespace aquifer::gateway
