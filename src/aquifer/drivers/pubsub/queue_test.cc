// The Pub/Sub queue's own behaviour beyond the conformance suite, against the emulator of
// AQUIFER_TEST_PUBSUB (scripts/peers/pubsub): leases kept while a worker holds a batch,
// delivery attempts counted by the service across queue objects, ephemeral subscriptions
// deleted on Close and stale ones by Reset, config errors, an unreachable endpoint.

#include "aquifer/drivers/pubsub/queue.h"

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "aquifer/base/uuid.h"
#include "aquifer/drivers/pubsub/testing.h"
#include "google/pubsub/v1/pubsub.grpc.pb.h"

namespace aquifer::drivers::pubsub {
namespace {

namespace pb = ::google::pubsub::v1;
using driver::Message;
using driver::OutgoingMessage;
using driver::SubscriptionOptions;
using ::testing::HasSubstr;

class PubSubQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unique_ = "unit-" + Uuid::Random().Hex().substr(0, 12);
    auto config = testing::TestConfig(unique_);
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    config_ = *config;
  }

  std::shared_ptr<driver::MessageQueue> Open(driver::Config config = {}) {
    if (config.empty()) config = config_;
    auto options = ParseQueueOptions(config);
    EXPECT_TRUE(options.ok()) << options.status().ToString();
    if (!options.ok()) return nullptr;
    auto q = MakeMessageQueue(*options, &clock_);
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    return q.ok() ? *q : nullptr;
  }

  // A raw stub on the emulator, to look at what the driver made.
  std::unique_ptr<pb::Subscriber::Stub> RawSubscriber() {
    auto channel = grpc::CreateChannel(config_.at("endpoint"), grpc::InsecureChannelCredentials());
    return pb::Subscriber::NewStub(channel);
  }

  std::string SubscriptionPrefix() const {
    return std::string("projects/") + testing::kProject + "/subscriptions/" + config_.at("prefix");
  }

  grpc::StatusCode GetSubscription(pb::Subscriber::Stub* stub, const std::string& path) {
    pb::GetSubscriptionRequest request;
    request.set_subscription(path);
    pb::Subscription response;
    grpc::ClientContext context;
    return stub->GetSubscription(&context, request, &response).error_code();
  }

  std::vector<std::string> ListMine(pb::Subscriber::Stub* stub) {
    pb::ListSubscriptionsRequest request;
    request.set_project(std::string("projects/") + testing::kProject);
    request.set_page_size(1000);
    pb::ListSubscriptionsResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub->ListSubscriptions(&context, request, &response).ok());
    std::vector<std::string> mine;
    for (const auto& s : response.subscriptions()) {
      if (s.name().starts_with(SubscriptionPrefix())) mine.push_back(s.name());
    }
    return mine;
  }

  static SubscriptionOptions Options(std::string name, bool persistent = true) {
    SubscriptionOptions o;
    o.name = std::move(name);
    o.persistent = persistent;
    o.ack_timeout_ms = 60'000;
    return o;
  }

  std::string unique_;
  driver::Config config_;
  ManualClock clock_;
};

TEST_F(PubSubQueueTest, LeasesStayExtendedWhileAWorkerHoldsABatchLongerThanTheAckDeadline) {
  auto q = Open();
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->RegisterTopic("events").ok());
  // Pub/Sub's ack deadline of this subscription is 10 s; the ack timeout follows the manual
  // clock, which stays: only the driver's lease extensions keep the message from the rival.
  SubscriptionOptions o = Options("worker");
  o.ack_timeout_ms = 10'000;
  auto holder = q->Subscribe("events", o);
  auto rival = q->Subscribe("events", o);
  ASSERT_TRUE(holder.ok() && rival.ok());
  ASSERT_TRUE(q->Publish("events", std::vector<OutgoingMessage>{{"batch", ""}}).ok());
  std::vector<Message> batch;
  for (int i = 0; i < 100 && batch.empty(); ++i) {
    auto r = (*holder)->Pull(1, 200);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    batch = std::move(*r);
  }
  ASSERT_EQ(batch.size(), 1u);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(13);
  while (std::chrono::steady_clock::now() < until) {
    auto r = (*rival)->Pull(10, 500);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->empty()) << "redelivered while held: " << (*r)[0].data;
  }
  ASSERT_TRUE((*holder)->Ack(std::vector<std::string>{batch[0].ack_id}).ok());
  auto after = (*rival)->Pull(10, 500);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
}

TEST_F(PubSubQueueTest, DeliveryAttemptsAreCountedByTheServiceAcrossQueueObjects) {
  auto q1 = Open();
  auto q2 = Open();
  ASSERT_TRUE(q1 && q2);
  ASSERT_TRUE(q1->RegisterTopic("events").ok());
  auto a = q1->Subscribe("events", Options("worker"));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(q1->Publish("events", std::vector<OutgoingMessage>{{"poison", ""}}).ok());
  for (int expected = 1; expected <= 2; ++expected) {
    std::vector<Message> got;
    for (int i = 0; i < 100 && got.empty(); ++i) got = *(*a)->Pull(1, 200);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].delivery_attempt, expected);
    ASSERT_TRUE((*a)->Nack(std::vector<std::string>{got[0].ack_id}).ok());
  }
  ASSERT_TRUE((*a)->Close().ok());
  auto b = q2->Subscribe("events", Options("worker"));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  std::vector<Message> got;
  for (int i = 0; i < 100 && got.empty(); ++i) got = *(*b)->Pull(1, 200);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "poison");
  EXPECT_EQ(got[0].delivery_attempt, 3) << "another process must count on, not start again";
}

TEST_F(PubSubQueueTest, EphemeralSubscriptionsAreDeletedOnCloseAndStaleOnesByReset) {
  auto q = Open();
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->RegisterTopic("events").ok());
  auto stub = RawSubscriber();
  auto e = q->Subscribe("events", Options("gateway", /*persistent=*/false));
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  auto mine = ListMine(stub.get());
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_THAT(mine[0], HasSubstr("gateway"));
  ASSERT_TRUE((*e)->Close().ok());
  EXPECT_EQ(GetSubscription(stub.get(), mine[0]), grpc::StatusCode::NOT_FOUND);

  // One left behind by a process that died before Close: Reset removes it.
  pb::Subscription stale;
  stale.set_name(SubscriptionPrefix() + "events~~gateway-deadbeef");
  stale.set_topic(std::string("projects/") + testing::kProject + "/topics/" + config_.at("prefix") + "events");
  pb::Subscription created;
  grpc::ClientContext context;
  ASSERT_TRUE(stub->CreateSubscription(&context, stale, &created).ok());
  ASSERT_EQ(ListMine(stub.get()).size(), 1u);
  ASSERT_TRUE(q->Reset().ok());
  EXPECT_TRUE(ListMine(stub.get()).empty());
}

TEST_F(PubSubQueueTest, ConcurrentPublishersSharingCallsEachGetTheOutcome) {
  auto q = Open();
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->RegisterTopic("events").ok());
  auto sub = q->Subscribe("events", Options("worker"));
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  // Calls on one topic are grouped; a failing group (unregistered topic) fails every caller
  // in it, and the good topic's callers all succeed, each message once.
  constexpr int kThreads = 4, kPerThread = 50;
  std::atomic<int> ok{0}, not_found{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string data = std::to_string(t) + "-" + std::to_string(i);
        Status good = q->Publish("events", std::vector<OutgoingMessage>{{data, ""}});
        Status bad = q->Publish("missing", std::vector<OutgoingMessage>{{data, ""}});
        (good.ok() ? ok : other)++;
        (bad.code() == StatusCode::kNotFound && bad.message().find("missing") != std::string::npos ? not_found : other)++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(not_found.load(), kThreads * kPerThread);
  EXPECT_EQ(other.load(), 0);
  std::set<std::string> seen;
  int total = 0;
  for (int round = 0; round < 200 && total < kThreads * kPerThread; ++round) {
    auto r = (*sub)->Pull(500, 200);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::vector<std::string> ids;
    for (const auto& m : *r) {
      seen.insert(m.data);
      ids.push_back(m.ack_id);
    }
    total += static_cast<int>(r->size());
    ASSERT_TRUE((*sub)->Ack(ids).ok());
  }
  EXPECT_EQ(total, kThreads * kPerThread);
  EXPECT_EQ(seen.size(), size_t{kThreads * kPerThread});
}

TEST_F(PubSubQueueTest, BinaryOrderingKeysRoundTripAndKeepTheirOrder) {
  // The engine's keys are 16-byte instance ids, mostly not UTF-8, which the service's string
  // field refuses; a text key that looks like the driver's encoding must round-trip too.
  auto q = Open();
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->RegisterTopic("events").ok());
  SubscriptionOptions o = Options("worker");
  o.ordered = true;
  auto sub = q->Subscribe("events", o);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  const std::string binary("\xff\x00\xfe\xc3\x28\xed\xa0\x80key", 11);
  const std::string marker_like = "~b64~aGVsbG8=";
  const std::string text = "caf\xc3\xa9";
  std::vector<OutgoingMessage> out = {{"b1", binary}, {"m1", marker_like}, {"t1", text}, {"b2", binary}};
  Status s = q->Publish("events", out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<Message> got;
  for (int round = 0; round < 100 && got.size() < 4; ++round) {
    auto r = (*sub)->Pull(10, 200);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::vector<std::string> ids;
    for (auto& m : *r) {
      ids.push_back(m.ack_id);
      got.push_back(std::move(m));
    }
    ASSERT_TRUE((*sub)->Ack(ids).ok());
  }
  ASSERT_EQ(got.size(), 4u);
  std::vector<std::string> binary_order;
  for (const auto& m : got) {
    if (m.data == "b1" || m.data == "b2") {
      EXPECT_TRUE(m.ordering_key == binary) << "key of " << m.data << " came back as " << m.ordering_key.size() << " bytes";
      binary_order.push_back(m.data);
    }
    if (m.data == "m1") {
      EXPECT_EQ(m.ordering_key, marker_like);
    }
    if (m.data == "t1") {
      EXPECT_EQ(m.ordering_key, text);
    }
  }
  EXPECT_EQ(binary_order, (std::vector<std::string>{"b1", "b2"}));
}

TEST_F(PubSubQueueTest, BadConfigIsRefusedNamingTheKey) {
  driver::Config c = config_;
  c.erase("project");
  auto r = ParseQueueOptions(c);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("project"));
  c = config_;
  c["prefix"] = "9lives";
  r = ParseQueueOptions(c);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("prefix"));
  c = config_;
  c["max_message_size"] = "20000000";
  r = ParseQueueOptions(c);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("max_message_size"));
}

TEST_F(PubSubQueueTest, AnUnreachableEndpointIsUnavailableOrTimeout) {
  driver::Config c = config_;
  c["endpoint"] = "127.0.0.1:1";  // nothing listens on port 1
  c["request_timeout_ms"] = "1000";
  auto q = Open(c);
  ASSERT_NE(q, nullptr);
  Status s = q->RegisterTopic("events");
  EXPECT_TRUE(s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kTimeout) << s.ToString();
  s = q->Publish("events", std::vector<OutgoingMessage>{{"x", ""}});
  EXPECT_TRUE(s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kTimeout) << s.ToString();
}

}  // namespace
}  // namespace aquifer::drivers::pubsub
