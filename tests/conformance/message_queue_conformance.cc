#include "message_queue_conformance.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <gmock/gmock.h>

namespace aquifer::conformance {
namespace {

using driver::Message;
using driver::MessageQueue;
using driver::OutgoingMessage;
using driver::Subscription;
using driver::SubscriptionOptions;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;

constexpr int64_t kQuietMs = 300;  // "nothing more arrives" waits this long

SubscriptionOptions Persistent(const std::string& name, int64_t ack_timeout_ms, bool ordered = false) {
  SubscriptionOptions o;
  o.name = name;
  o.persistent = true;
  o.ordered = ordered;
  o.ack_timeout_ms = ack_timeout_ms;
  return o;
}

SubscriptionOptions Ephemeral(const std::string& label, int64_t ack_timeout_ms) {
  SubscriptionOptions o = Persistent(label, ack_timeout_ms);
  o.persistent = false;
  return o;
}

void PublishAll(MessageQueue* q, const std::string& topic, const std::vector<std::string>& data,
                const std::string& key = "") {
  std::vector<OutgoingMessage> out;
  for (const auto& d : data) out.push_back({d, key});
  Status s = q->Publish(topic, out);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

std::vector<std::string> Numbered(const std::string& prefix, int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back(prefix + std::to_string(i));
  return v;
}

// Pulls until `n` messages arrived or `timeout_ms` of real time passed.
std::vector<Message> PullN(Subscription* sub, size_t n, int64_t timeout_ms = 10'000) {
  std::vector<Message> got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got.size() < n) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) break;
    auto r = sub->Pull(n - got.size(), left);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) break;
    for (auto& m : *r) got.push_back(std::move(m));
  }
  return got;
}

// Pulls until a pull of kQuietMs returns nothing.
std::vector<Message> PullUntilQuiet(Subscription* sub, size_t max_batch = 100) {
  std::vector<Message> got;
  for (;;) {
    auto r = sub->Pull(max_batch, kQuietMs);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || r->empty()) return got;
    for (auto& m : *r) got.push_back(std::move(m));
  }
}

std::vector<std::string> Data(const std::vector<Message>& ms) {
  std::vector<std::string> v;
  for (const auto& m : ms) v.push_back(m.data);
  return v;
}

void AckAll(Subscription* sub, const std::vector<Message>& ms) {
  std::vector<std::string> ids;
  for (const auto& m : ms) ids.push_back(m.ack_id);
  Status s = sub->Ack(ids);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

std::unique_ptr<Subscription> MustSubscribe(MessageQueue* q, const std::string& topic,
                                            const SubscriptionOptions& o) {
  auto r = q->Subscribe(topic, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r).value() : nullptr;
}

}  // namespace

std::string MessageQueueFactoryName(const ::testing::TestParamInfo<MessageQueueFactory>& info) {
  return info.param.name;
}

void MessageQueueConformance::SetUp() {
  std::string tmpl = ::testing::TempDir() + "aquifer-mq-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  dir_ = tmpl;
}

void MessageQueueConformance::TearDown() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::shared_ptr<MessageQueue> MessageQueueConformance::Open() {
  auto r = GetParam().make(dir_, &clock_);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : nullptr;
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(MessageQueueConformance);

#define OPEN_QUEUE(q)                \
  auto q = Open();                   \
  ASSERT_NE(q, nullptr);             \
  ASSERT_TRUE(q->RegisterTopic("orders").ok())

TEST_P(MessageQueueConformance, PublishedMessagesAreDeliveredToASubscription) {
  OPEN_QUEUE(q);
  const int64_t t = GetParam().ack_timeout_ms;
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  ASSERT_NE(sub, nullptr);
  PublishAll(q.get(), "orders", Numbered("m", 10));
  auto got = PullN(sub.get(), 10);
  EXPECT_THAT(Data(got), UnorderedElementsAreArray(Numbered("m", 10)));
  for (const auto& m : got) {
    EXPECT_EQ(m.delivery_attempt, 1);
    EXPECT_FALSE(m.ack_id.empty());
    EXPECT_GE(m.publish_time_ms, 1'600'000'000'000);
  }
  AckAll(sub.get(), got);
  EXPECT_TRUE(PullUntilQuiet(sub.get()).empty());
}

TEST_P(MessageQueueConformance, OrderingKeyAndBinaryDataRoundTrip) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  std::string binary("a\0b\xff\x01", 5);
  std::string key = q->capabilities().ordering_keys ? "user-7" : "";
  std::vector<OutgoingMessage> out = {{binary, key}};
  ASSERT_TRUE(q->Publish("orders", out).ok());
  auto got = PullN(sub.get(), 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, binary);
  EXPECT_EQ(got[0].ordering_key, key);
}

TEST_P(MessageQueueConformance, PullReturnsAtMostMaxMessages) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  PublishAll(q.get(), "orders", Numbered("m", 10));
  auto r = sub->Pull(3, 10'000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(r->size(), 1u);
  EXPECT_LE(r->size(), 3u);
}

TEST_P(MessageQueueConformance, PullWaitsForAMessagePublishedLater) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  std::thread publisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    PublishAll(q.get(), "orders", {"late"});
  });
  auto r = sub->Pull(10, 20'000);
  publisher.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].data, "late");
}

TEST_P(MessageQueueConformance, PullReturnsNothingWhenTheTimeoutPasses) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  auto r = sub->Pull(10, 100);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
}

TEST_P(MessageQueueConformance, RegisterTopicIsIdempotent) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  PublishAll(q.get(), "orders", {"before"});
  ASSERT_TRUE(q->RegisterTopic("orders").ok());
  PublishAll(q.get(), "orders", {"after"});
  EXPECT_THAT(Data(PullN(sub.get(), 2)), UnorderedElementsAreArray({"before", "after"}));
}

TEST_P(MessageQueueConformance, PublishingToAnUnregisteredTopicIsNotFound) {
  OPEN_QUEUE(q);
  std::vector<OutgoingMessage> out = {{"x", ""}};
  Status s = q->Publish("nope", out);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("nope"));
  auto sub = q->Subscribe("nope", Persistent("worker", GetParam().ack_timeout_ms));
  EXPECT_EQ(sub.status().code(), StatusCode::kNotFound) << sub.status().ToString();
}

TEST_P(MessageQueueConformance, OversizedMessageIsRejectedNamingSizeAndLimitAndNothingIsPublished) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  const size_t limit = q->capabilities().max_message_size;
  std::string big(limit + 1, 'x');
  std::vector<OutgoingMessage> out = {{"small-1", ""}, {big, ""}, {"small-2", ""}};
  Status s = q->Publish("orders", out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr(std::to_string(limit + 1)));
  EXPECT_THAT(s.message(), HasSubstr(std::to_string(limit)));
  PublishAll(q.get(), "orders", {"after"});
  auto got = PullUntilQuiet(sub.get());
  EXPECT_THAT(Data(got), UnorderedElementsAreArray({"after"}));
}

TEST_P(MessageQueueConformance, MessageAtTheSizeLimitIsDeliveredIntact) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  std::string at_limit(q->capabilities().max_message_size, 'y');
  at_limit.front() = 'a';
  at_limit.back() = 'z';
  PublishAll(q.get(), "orders", {at_limit});
  auto got = PullN(sub.get(), 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].data == at_limit) << "delivered " << got[0].data.size() << " bytes";
}

TEST_P(MessageQueueConformance, PersistentSubscriptionResumesAfterTheLastAckAcrossAReopen) {
  const int64_t t = GetParam().ack_timeout_ms;
  {
    OPEN_QUEUE(q);
    auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t, /*ordered=*/false));
    PublishAll(q.get(), "orders", Numbered("m", 10));
    auto got = PullN(sub.get(), 10);
    ASSERT_EQ(got.size(), 10u);
    std::vector<Message> first_five;
    for (const auto& m : got) {
      if (m.data < "m5") first_five.push_back(m);  // m0..m4
    }
    ASSERT_EQ(first_five.size(), 5u);
    AckAll(sub.get(), first_five);
    ASSERT_TRUE(sub->Close().ok());
  }
  // A new process: the in-flight m5..m9 of the dead one come back once their
  // ack deadline passes; the acked ones never do.
  auto q = Open();
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->RegisterTopic("orders").ok());
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  clock_.Advance((t + 1) * 1000);
  auto got = PullN(sub.get(), 5, 3 * t + 5'000);
  EXPECT_THAT(Data(got), UnorderedElementsAreArray({"m5", "m6", "m7", "m8", "m9"}));
  AckAll(sub.get(), got);
  clock_.Advance((t + 1) * 1000);
  EXPECT_TRUE(PullUntilQuiet(sub.get()).empty());
}

TEST_P(MessageQueueConformance, BacklogIsKeptWhileNoConsumerIsSubscribed) {
  const int64_t t = GetParam().ack_timeout_ms;
  OPEN_QUEUE(q);
  {
    auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t));
    ASSERT_TRUE(sub->Close().ok());
  }
  PublishAll(q.get(), "orders", Numbered("m", 5));
  q.reset();
  auto q2 = Open();
  ASSERT_NE(q2, nullptr);
  ASSERT_TRUE(q2->RegisterTopic("orders").ok());
  auto sub = MustSubscribe(q2.get(), "orders", Persistent("worker", t));
  EXPECT_THAT(Data(PullN(sub.get(), 5)), UnorderedElementsAreArray(Numbered("m", 5)));
}

TEST_P(MessageQueueConformance, UnackedMessagesAreRedeliveredAfterTheAckTimeout) {
  const int64_t t = GetParam().ack_timeout_ms;
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  PublishAll(q.get(), "orders", {"slow"});
  auto first = PullN(sub.get(), 1);
  ASSERT_EQ(first.size(), 1u);
  auto early = sub->Pull(10, kQuietMs);
  ASSERT_TRUE(early.ok());
  EXPECT_TRUE(early->empty()) << "redelivered before the ack timeout";
  clock_.Advance((t + 1) * 1000);
  auto again = PullN(sub.get(), 1, 3 * t + 5'000);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].data, "slow");
  EXPECT_GE(again[0].delivery_attempt, 2);
  AckAll(sub.get(), again);
  clock_.Advance((t + 1) * 1000);
  EXPECT_TRUE(PullUntilQuiet(sub.get()).empty()) << "an acked message came back";
}

TEST_P(MessageQueueConformance, UnackedMessagesGoToAnotherConsumerAfterTheirConsumerCloses) {
  const int64_t t = GetParam().ack_timeout_ms;
  OPEN_QUEUE(q);
  auto dying = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  auto other = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  PublishAll(q.get(), "orders", Numbered("m", 3));
  auto taken = PullN(dying.get(), 3);
  ASSERT_EQ(taken.size(), 3u);
  ASSERT_TRUE(dying->Close().ok());
  ASSERT_TRUE(dying->Close().ok()) << "Close is idempotent";
  clock_.Advance((t + 1) * 1000);
  auto got = PullN(other.get(), 3, 3 * t + 5'000);
  EXPECT_THAT(Data(got), UnorderedElementsAreArray(Numbered("m", 3)));
  for (const auto& m : got) EXPECT_GE(m.delivery_attempt, 2);
}

TEST_P(MessageQueueConformance, UnackedMessagesAreRedeliveredAfterTheProcessDies) {
  const int64_t t = GetParam().ack_timeout_ms;
  {
    OPEN_QUEUE(q);
    auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t));
    PublishAll(q.get(), "orders", Numbered("m", 4));
    ASSERT_EQ(PullN(sub.get(), 4).size(), 4u);
    // No ack, no Close: the handles just go away.
  }
  auto q = Open();
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->RegisterTopic("orders").ok());
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  clock_.Advance((t + 1) * 1000);
  EXPECT_THAT(Data(PullN(sub.get(), 4, 3 * t + 5'000)),
              UnorderedElementsAreArray(Numbered("m", 4)));
}

TEST_P(MessageQueueConformance, NackRedeliversWithAHigherDeliveryAttempt) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  PublishAll(q.get(), "orders", {"retry-me"});
  auto first = PullN(sub.get(), 1);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].delivery_attempt, 1);
  std::vector<std::string> ids = {first[0].ack_id};
  ASSERT_TRUE(sub->Nack(ids).ok());
  auto again = PullN(sub.get(), 1);  // no clock advance: Nack is immediate
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].data, "retry-me");
  EXPECT_EQ(again[0].delivery_attempt, 2);
}

TEST_P(MessageQueueConformance, AckingUnknownOrRepeatedIdsIsNotAnError) {
  OPEN_QUEUE(q);
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms));
  PublishAll(q.get(), "orders", {"m"});
  auto got = PullN(sub.get(), 1);
  ASSERT_EQ(got.size(), 1u);
  std::vector<std::string> ids = {got[0].ack_id};
  EXPECT_TRUE(sub->Ack(ids).ok());
  EXPECT_TRUE(sub->Ack(ids).ok());
  std::vector<std::string> bogus = {"bogus", "", "123456789.1"};
  EXPECT_TRUE(sub->Ack(bogus).ok());
  EXPECT_TRUE(sub->Nack(bogus).ok());
}

TEST_P(MessageQueueConformance, CompetingConsumersGetDisjointMessages) {
  OPEN_QUEUE(q);
  const int64_t t = GetParam().ack_timeout_ms;
  auto a = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  auto b = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  PublishAll(q.get(), "orders", Numbered("m", 20));
  auto from_a = PullN(a.get(), 5);
  ASSERT_EQ(from_a.size(), 5u);
  auto from_b = PullN(b.get(), 15);
  ASSERT_EQ(from_b.size(), 15u);
  std::vector<std::string> all = Data(from_a);
  for (const auto& d : Data(from_b)) all.push_back(d);
  EXPECT_THAT(all, UnorderedElementsAreArray(Numbered("m", 20)));
}

TEST_P(MessageQueueConformance, CompetingConsumersSplitTheWorkWithoutLoss) {
  OPEN_QUEUE(q);
  const int64_t t = GetParam().ack_timeout_ms;
  constexpr int kMessages = 600;
  constexpr int kConsumers = 3;
  std::vector<std::unique_ptr<Subscription>> subs;
  for (int i = 0; i < kConsumers; ++i) subs.push_back(MustSubscribe(q.get(), "orders", Persistent("worker", t)));
  std::vector<std::string> expected = Numbered("m", kMessages);
  for (int i = 0; i < kMessages; i += 50) {
    PublishAll(q.get(), "orders", std::vector<std::string>(expected.begin() + i, expected.begin() + i + 50));
  }
  std::mutex mu;
  std::vector<std::string> received;
  std::atomic<int> total{0};
  std::vector<std::thread> threads;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int i = 0; i < kConsumers; ++i) {
    threads.emplace_back([&, i] {
      while (total.load() < kMessages && std::chrono::steady_clock::now() < deadline) {
        auto r = subs[i]->Pull(7, 100);
        if (!r.ok()) {
          ADD_FAILURE() << r.status().ToString();
          return;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto& m : *r) received.push_back(m.data);
        }
        AckAll(subs[i].get(), *r);
        total += static_cast<int>(r->size());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(received, UnorderedElementsAreArray(expected));
}

TEST_P(MessageQueueConformance, PersistentSubscriptionsWithDifferentNamesEachGetEveryMessage) {
  OPEN_QUEUE(q);
  const int64_t t = GetParam().ack_timeout_ms;
  auto a = MustSubscribe(q.get(), "orders", Persistent("indexer", t));
  auto b = MustSubscribe(q.get(), "orders", Persistent("warehouse", t));
  PublishAll(q.get(), "orders", Numbered("m", 8));
  EXPECT_THAT(Data(PullN(a.get(), 8)), UnorderedElementsAreArray(Numbered("m", 8)));
  EXPECT_THAT(Data(PullN(b.get(), 8)), UnorderedElementsAreArray(Numbered("m", 8)));
}

TEST_P(MessageQueueConformance, OrderedSubscriptionHoldsBackLaterMessagesOfAKeyUntilTheEarlierIsAcked) {
  OPEN_QUEUE(q);
  ASSERT_TRUE(q->capabilities().ordering_keys) << "the engine orders each table's writes by key: every queue driver must";
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", GetParam().ack_timeout_ms, true));
  std::vector<OutgoingMessage> out = {{"a1", "a"}, {"a2", "a"}, {"b1", "b"}, {"free", ""}};
  ASSERT_TRUE(q->Publish("orders", out).ok());
  std::vector<Message> first, rest;
  if (q->capabilities().publish_order_across_keys) {
    first = PullN(sub.get(), 1);
    ASSERT_EQ(Data(first), std::vector<std::string>{"a1"});
    // While a1 is out, a2 stays back; the other keys flow.
    rest = PullUntilQuiet(sub.get());
  } else {
    // Only the order per key is promised: other keys may come before a1; a2
    // stays back while a1 is out, and the other keys flow.
    for (auto& m : PullUntilQuiet(sub.get(), 1)) (m.data == "a1" && first.empty() ? first : rest).push_back(m);
    ASSERT_EQ(Data(first), std::vector<std::string>{"a1"}) << "got " << ::testing::PrintToString(Data(rest));
  }
  EXPECT_THAT(Data(rest), UnorderedElementsAreArray({"b1", "free"}));
  AckAll(sub.get(), rest);
  // Nacking a1 gives a1 back, still before a2 (a2 may come in the same batch, after it).
  ASSERT_TRUE(sub->Nack(std::vector<std::string>{first[0].ack_id}).ok());
  auto again = PullUntilQuiet(sub.get());
  ASSERT_FALSE(again.empty());
  EXPECT_EQ(again[0].data, "a1");
  if (again.size() > 1) {
    EXPECT_EQ(Data(again), (std::vector<std::string>{"a1", "a2"}));
  }
  AckAll(sub.get(), again);
  if (again.size() == 1) {
    EXPECT_EQ(Data(PullN(sub.get(), 1)), std::vector<std::string>{"a2"});
  }
}

TEST_P(MessageQueueConformance, OneBatchMayCarrySeveralMessagesOfAKeyInPublishOrder) {
  OPEN_QUEUE(q);
  ASSERT_TRUE(q->capabilities().ordering_keys) << "the engine orders each table's writes by key: every queue driver must";
  auto sub = MustSubscribe(q.get(), "orders", Persistent("batcher", GetParam().ack_timeout_ms, true));
  std::vector<OutgoingMessage> out;
  std::vector<std::string> expected = Numbered("k", 20);
  for (const auto& d : expected) out.push_back({d, "k"});
  ASSERT_TRUE(q->Publish("orders", out).ok());
  std::vector<std::string> got;
  for (int round = 0; round < 50 && got.size() < expected.size(); ++round) {
    auto batch = PullUntilQuiet(sub.get());
    for (const auto& m : batch) got.push_back(m.data);
    AckAll(sub.get(), batch);
  }
  EXPECT_EQ(got, expected);
}

TEST_P(MessageQueueConformance, MessagesOfAKeyAreDeliveredInOrderAndNeverConcurrentlyAcrossConsumers) {
  OPEN_QUEUE(q);
  ASSERT_TRUE(q->capabilities().ordering_keys) << "the engine orders each table's writes by key: every queue driver must";
  const int64_t t = GetParam().ack_timeout_ms;
  constexpr int kKeys = 5;
  constexpr int kPerKey = 60;
  constexpr int kConsumers = 3;
  std::vector<std::unique_ptr<Subscription>> subs;
  for (int i = 0; i < kConsumers; ++i) subs.push_back(MustSubscribe(q.get(), "orders", Persistent("ordered", t, true)));
  // Interleaved keys, published in small batches.
  std::vector<std::string> data;
  std::vector<std::string> keys;
  for (int i = 0; i < kPerKey; ++i) {
    for (int k = 0; k < kKeys; ++k) {
      keys.push_back("k" + std::to_string(k));
      data.push_back(keys.back() + ":" + std::to_string(i));
    }
  }
  for (size_t i = 0; i < data.size(); i += 7) {
    std::vector<OutgoingMessage> out;
    for (size_t j = i; j < std::min(data.size(), i + 7); ++j) out.push_back({data[j], keys[j]});
    ASSERT_TRUE(q->Publish("orders", out).ok());
  }
  std::mutex mu;
  std::map<std::string, int> next_index;   // per key: the index expected next
  std::map<std::string, bool> in_hand;     // per key: a consumer holds an unacked message
  std::vector<std::string> violations;
  std::atomic<int> done{0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::vector<std::thread> threads;
  for (int c = 0; c < kConsumers; ++c) {
    threads.emplace_back([&, c] {
      while (done.load() < kKeys * kPerKey && std::chrono::steady_clock::now() < deadline) {
        auto r = subs[c]->Pull(4, 50);
        if (!r.ok()) {
          ADD_FAILURE() << r.status().ToString();
          return;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          std::set<std::string> batch_keys;  // one batch may hold several messages of a key
          for (const auto& m : *r) {
            if (in_hand[m.ordering_key] && !batch_keys.count(m.ordering_key)) {
              violations.push_back("concurrent delivery of " + m.data);
            }
            batch_keys.insert(m.ordering_key);
            in_hand[m.ordering_key] = true;
            int index = std::stoi(m.data.substr(m.data.find(':') + 1));
            if (index != next_index[m.ordering_key]) {
              violations.push_back("got " + m.data + ", expected index " +
                                   std::to_string(next_index[m.ordering_key]));
            }
            next_index[m.ordering_key] = index + 1;
          }
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));  // "handle" the messages
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto& m : *r) in_hand[m.ordering_key] = false;  // before the ack releases the key
        }
        AckAll(subs[c].get(), *r);
        done += static_cast<int>(r->size());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(violations, ::testing::IsEmpty());
  EXPECT_EQ(done.load(), kKeys * kPerKey);
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(next_index["k" + std::to_string(k)], kPerKey);
}

TEST_P(MessageQueueConformance, ReopeningAPersistentSubscriptionWithAnotherOrderedSettingFails) {
  OPEN_QUEUE(q);
  const int64_t t = GetParam().ack_timeout_ms;
  {
    auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t, /*ordered=*/true));
    ASSERT_NE(sub, nullptr);
    ASSERT_TRUE(sub->Close().ok());
  }
  auto other = q->Subscribe("orders", Persistent("worker", t, /*ordered=*/false));
  EXPECT_FALSE(other.ok());
  auto same = q->Subscribe("orders", Persistent("worker", t, /*ordered=*/true));
  EXPECT_TRUE(same.ok()) << same.status().ToString();
}

TEST_P(MessageQueueConformance, EphemeralSubscriptionSeesOnlyMessagesPublishedAfterItOpened) {
  OPEN_QUEUE(q);
  ASSERT_TRUE(q->capabilities().ephemeral_subscriptions) << "write reports use an ephemeral subscription: every queue driver must";
  const int64_t t = GetParam().ack_timeout_ms;
  auto durable = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  PublishAll(q.get(), "orders", {"old-1", "old-2"});
  auto e1 = MustSubscribe(q.get(), "orders", Ephemeral("gateway", t));
  auto e2 = MustSubscribe(q.get(), "orders", Ephemeral("gateway", t));
  PublishAll(q.get(), "orders", {"new-1", "new-2"});
  // Each ephemeral subscription has its own consumer: both see every new message.
  EXPECT_THAT(Data(PullUntilQuiet(e1.get())), UnorderedElementsAreArray({"new-1", "new-2"}));
  EXPECT_THAT(Data(PullUntilQuiet(e2.get())), UnorderedElementsAreArray({"new-1", "new-2"}));
  // And they took nothing from the persistent subscription.
  EXPECT_THAT(Data(PullN(durable.get(), 4)),
              UnorderedElementsAreArray({"old-1", "old-2", "new-1", "new-2"}));
}

TEST_P(MessageQueueConformance, EphemeralSubscriptionLeavesNoBacklogWhenClosed) {
  OPEN_QUEUE(q);
  ASSERT_TRUE(q->capabilities().ephemeral_subscriptions) << "write reports use an ephemeral subscription: every queue driver must";
  const int64_t t = GetParam().ack_timeout_ms;
  auto e = MustSubscribe(q.get(), "orders", Ephemeral("gateway", t));
  PublishAll(q.get(), "orders", {"seen-unacked"});
  ASSERT_EQ(PullN(e.get(), 1).size(), 1u);
  ASSERT_TRUE(e->Close().ok());
  PublishAll(q.get(), "orders", {"while-closed"});
  auto again = MustSubscribe(q.get(), "orders", Ephemeral("gateway", t));
  clock_.Advance((t + 1) * 1000);
  PublishAll(q.get(), "orders", {"fresh"});
  EXPECT_THAT(Data(PullUntilQuiet(again.get())), UnorderedElementsAreArray({"fresh"}));
}

TEST_P(MessageQueueConformance, ResetDropsSubscriptionsAndBacklogAndTopicsStayUsable) {
  OPEN_QUEUE(q);
  const int64_t t = GetParam().ack_timeout_ms;
  {
    auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t, /*ordered=*/true));
    PublishAll(q.get(), "orders", Numbered("m", 5));
    ASSERT_EQ(PullN(sub.get(), 2).size(), 2u);  // in flight, unacked
    ASSERT_TRUE(sub->Close().ok());
  }
  Status s = q->Reset();
  ASSERT_TRUE(s.ok()) << s.ToString();
  // The subscription is gone: reopening it with another `ordered` is allowed,
  // and neither the backlog nor the in-flight messages come back.
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t, /*ordered=*/false));
  ASSERT_NE(sub, nullptr);
  clock_.Advance((t + 1) * 1000);
  PublishAll(q.get(), "orders", {"after-reset"});
  EXPECT_THAT(Data(PullUntilQuiet(sub.get())), UnorderedElementsAreArray({"after-reset"}));
}

TEST_P(MessageQueueConformance, ManyConcurrentPublishersAreAllDeliveredExactlyOnce) {
  OPEN_QUEUE(q);
  const int64_t t = GetParam().ack_timeout_ms;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  auto sub = MustSubscribe(q.get(), "orders", Persistent("worker", t));
  std::vector<std::thread> threads;
  for (int th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      for (int i = 0; i < kPerThread;) {
        // Mostly single messages (the group-commit case), some spans.
        int n = (i % 100 == 0) ? std::min(10, kPerThread - i) : 1;
        std::vector<std::string> data;
        for (int j = 0; j < n; ++j) data.push_back("p" + std::to_string(th) + "-" + std::to_string(i + j));
        std::vector<OutgoingMessage> out;
        for (const auto& d : data) out.push_back({d, ""});
        Status s = q->Publish("orders", out);
        if (!s.ok()) {
          ADD_FAILURE() << s.ToString();
          return;
        }
        i += n;
      }
    });
  }
  // Consume while they publish.
  std::map<std::string, int> seen;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (seen.size() < size_t{kThreads * kPerThread} && std::chrono::steady_clock::now() < deadline) {
    auto r = sub->Pull(500, 200);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& m : *r) ++seen[m.data];
    AckAll(sub.get(), *r);
  }
  for (auto& th : threads) th.join();
  for (const auto& m : PullUntilQuiet(sub.get(), 500)) ++seen[m.data];
  EXPECT_EQ(seen.size(), size_t{kThreads * kPerThread});
  int duplicates = 0;
  for (const auto& [d, n] : seen) duplicates += n - 1;
  EXPECT_EQ(duplicates, 0);
  for (int th = 0; th < kThreads; ++th) {
    for (int i = 0; i < kPerThread; i += 397) {
      EXPECT_TRUE(seen.count("p" + std::to_string(th) + "-" + std::to_string(i)));
    }
  }
}

}  // namespace aquifer::conformance
