// /healthz and write answers while the message queue refuses writes: the Api
// over a real Engine whose queue is wrapped to fail every publish.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "aquifer/driver/wrappers.h"
#include "aquifer/gateway/api.h"

namespace aquifer::gateway {
namespace {

using nlohmann::json;

constexpr char kAdminSecret[] = "api-health-test-admin-secret-0123";

class RefusingQueue final : public driver::MessageQueueWrapper {
 public:
  RefusingQueue(std::shared_ptr<driver::MessageQueue> target, std::atomic<bool>* refuse)
      : MessageQueueWrapper(std::move(target)), refuse_(refuse) {}
  Status Publish(std::string_view topic,
                 std::span<const driver::OutgoingMessage> messages) override {
    if (topic == "writes" && refuse_->load()) {
      return Corruption("injected: the queue's log is damaged");
    }
    return MessageQueueWrapper::Publish(topic, messages);
  }

 private:
  std::atomic<bool>* refuse_;
};

TEST(ApiHealth, HealthzIs503NamingTheQueueWhileItRefusesWritesAndWritesAre503Too) {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("aquifer_api_health_test_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::atomic<bool> refuse{false};
  engine::EngineOptions options;
  options.data_dir = dir.string();
  options.admin_secret = kAdminSecret;
  options.write_path_probe_interval_ms = 0;
  options.wrap_queue = [&refuse](std::shared_ptr<driver::MessageQueue> queue) {
    return std::make_shared<RefusingQueue>(std::move(queue), &refuse);
  };
  auto opened = engine::Engine::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<engine::Engine> core = std::move(*opened);
  ASSERT_TRUE(core->Start().ok());
  {
    GatewayMetrics metrics;
    Api api(core.get(), &metrics, ApiOptions{});
    auto call = [&](std::string method, std::string target, std::string body = "") {
      HttpRequest request;
      request.method = std::move(method);
      request.target = std::move(target);
      request.authorization = std::string("Bearer ") + kAdminSecret;
      request.content_type = "application/json";
      request.body = std::move(body);
      return api.Handle(request);
    };
    ASSERT_EQ(call("POST", "/v1/projects", R"({"name":"shop"})").status, 201);
    ASSERT_EQ(call("POST", "/v1/projects/shop/tables",
                   R"({"name":"orders","key":["id"],"schema":{"type":"record","name":"o",
                       "fields":[{"name":"id","type":"long"}]}})")
                  .status,
              201);
    HttpResponse healthy = call("GET", "/healthz");
    ASSERT_EQ(healthy.status, 200) << healthy.body;

    refuse = true;
    HttpResponse refused = call("POST", "/v1/projects/shop/tables/orders/records", R"([{"id":1}])");
    EXPECT_EQ(refused.status, 503) << refused.body;
    // Api::Health() caches its answer for up to kHealthTtlMicros.
    std::this_thread::sleep_for(std::chrono::microseconds(Api::kHealthTtlMicros + 50'000));
    HttpResponse unhealthy = call("GET", "/healthz");
    EXPECT_EQ(unhealthy.status, 503) << unhealthy.body;
    json body = json::parse(unhealthy.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << unhealthy.body;
    EXPECT_EQ(body["status"], "unhealthy");
    EXPECT_EQ(body["durability"], "durable");
    EXPECT_EQ(body["error"]["code"], "unavailable");
    std::string message = body["error"]["message"];
    EXPECT_NE(message.find("queue"), std::string::npos) << message;
    EXPECT_NE(message.find("injected: the queue's log is damaged"), std::string::npos) << message;

    refuse = false;
    HttpResponse accepted = call("POST", "/v1/projects/shop/tables/orders/records", R"([{"id":2}])");
    EXPECT_EQ(accepted.status, 202) << accepted.body;
    std::this_thread::sleep_for(std::chrono::microseconds(Api::kHealthTtlMicros + 50'000));
    EXPECT_EQ(call("GET", "/healthz").status, 200);
  }
  core->Stop();
  core.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace aquifer::gateway
