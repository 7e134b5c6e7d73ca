// The Kafka MessageQueue beyond the conformance suite, against the real broker
// of scripts/peers/kafka (AQUIFER_TEST_KAFKA; without it these tests fail and
// say how to start one): the client/broker version pairing (idempotent
// production with every compression codec, read back by a consumer group that
// commits), partitions split between members of several queue objects (as
// between processes) and handed over in a rebalance when one goes away, and
// the errors for an unreachable broker.

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "aquifer/base/uuid.h"
#include "aquifer/drivers/kafka/client.h"
#include "aquifer/drivers/kafka/queue.h"
#include "aquifer/drivers/kafka/testing.h"

namespace aquifer::drivers::kafka {
namespace {

using driver::Message;
using driver::OutgoingMessage;
using driver::SubscriptionOptions;

// A queue on the test broker under a prefix of its own.
std::shared_ptr<driver::MessageQueue> Open(const std::string& unique, driver::Config extra = {}) {
  auto config = testing::TestConfig(unique);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return nullptr;
  for (auto& [key, value] : extra) (*config)[key] = value;
  auto options = ParseQueueOptions(*config);
  EXPECT_TRUE(options.ok()) << options.status().ToString();
  if (!options.ok()) return nullptr;
  auto queue = MakeMessageQueue(*options, nullptr);
  EXPECT_TRUE(queue.ok()) << queue.status().ToString();
  return queue.ok() ? *queue : nullptr;
}

std::string Unique(const std::string& label) { return label + "-" + Uuid::Random().ToString().substr(0, 8); }

SubscriptionOptions Persistent(const std::string& name, bool ordered = false) {
  SubscriptionOptions options;
  options.name = name;
  options.ordered = ordered;
  options.ack_timeout_ms = 30'000;
  return options;
}

// Pulls and acks until `n` messages came or `ms` passed.
std::vector<Message> Drain(driver::Subscription* sub, size_t n, int64_t ms = 30'000, bool ack = true) {
  std::vector<Message> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    auto r = sub->Pull(100, 200);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) break;
    std::vector<std::string> ids;
    for (auto& m : *r) {
      ids.push_back(m.ack_id);
      got.push_back(std::move(m));
    }
    if (ack) {
      EXPECT_TRUE(sub->Ack(ids).ok());
    }
  }
  return got;
}

// The committed offsets of `group` on `topic` (a Kafka name), summed over partitions.
int64_t CommittedTotal(const std::string& group, const std::string& topic, int partitions) {
  auto config = testing::TestConfig("committed");
  EXPECT_TRUE(config.ok());
  auto client = ParseClientOptions(*config);
  EXPECT_TRUE(client.ok());
  auto conf = MakeConf(*client, {{"group.id", group}, {"enable.auto.commit", "false"}});
  EXPECT_TRUE(conf.ok()) << conf.status().ToString();
  auto rk = MakeHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  EXPECT_TRUE(rk.ok()) << rk.status().ToString();
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  rd_kafka_resp_err_t err = rd_kafka_committed(rk->get(), list, 10'000);
  EXPECT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  int64_t total = 0;
  for (int i = 0; i < list->cnt; ++i) total += std::max<int64_t>(list->elems[i].offset, 0);
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_consumer_close(rk->get());
  return total;
}

// Broker 3.9.1 and librdkafka 2.0.2 (README.md "Versions"): with every codec,
// an idempotent acks=all producer's messages come back intact through a
// consumer group, and the group's committed offsets reach the end.
TEST(KafkaVersions, IdempotentProductionWithEveryCodecIsConsumedByAGroupThatCommits) {
  for (const std::string codec : {"gzip", "snappy", "lz4", "zstd"}) {
    SCOPED_TRACE(codec);
    const std::string unique = Unique("codec-" + codec);
    auto queue = Open(unique, {{"compression", codec}, {"partitions", "2"}});
    ASSERT_NE(queue, nullptr);
    ASSERT_TRUE(queue->RegisterTopic("events").ok());
    auto sub = queue->Subscribe("events", Persistent("reader"));
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    constexpr int kMessages = 300;
    std::vector<std::string> data;
    std::vector<std::string> keys;
    for (int i = 0; i < kMessages; ++i) {
      // Compressible payloads of a few sizes, keys spread over both partitions.
      data.push_back(fmt::format("{}:{}:{}", codec, i, std::string(static_cast<size_t>(50 + (i % 7) * 300), 'a' + i % 26)));
      keys.push_back("key-" + std::to_string(i % 10));
    }
    for (int i = 0; i < kMessages; i += 30) {
      std::vector<OutgoingMessage> out;
      for (int j = i; j < i + 30; ++j) out.push_back({data[j], keys[j]});
      Status published = queue->Publish("events", out);
      ASSERT_TRUE(published.ok()) << published.ToString();
    }
    auto got = Drain(sub->get(), kMessages);
    std::multiset<std::string> want(data.begin(), data.end()), have;
    for (const auto& m : got) have.insert(m.data);
    EXPECT_EQ(have, want);
    ASSERT_TRUE((*sub)->Close().ok());  // commits the acked offsets and leaves the group
    sub->reset();
    const std::string topic = "aqt-" + unique + ".events";
    EXPECT_EQ(CommittedTotal(topic + "/reader", topic, 2), kMessages);
  }
}

// Two queue objects (as two processes) on one subscription name split a
// topic's partitions; when one goes away with messages unacked, the other
// gets its partitions in a rebalance and redelivers them: nothing is lost,
// and per key the order holds.
TEST(KafkaQueue, AMemberThatGoesAwayHandsItsPartitionsAndUnackedMessagesToTheOther) {
  const std::string unique = Unique("rebalance");
  auto a = Open(unique, {{"partitions", "3"}, {"session_timeout_ms", "6000"}});
  auto b = Open(unique, {{"partitions", "3"}, {"session_timeout_ms", "6000"}});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->RegisterTopic("writes").ok());
  auto sub_a = a->Subscribe("writes", Persistent("workers", /*ordered=*/true));
  ASSERT_TRUE(sub_a.ok()) << sub_a.status().ToString();
  auto sub_b = b->Subscribe("writes", Persistent("workers", /*ordered=*/true));
  ASSERT_TRUE(sub_b.ok()) << sub_b.status().ToString();

  constexpr int kKeys = 12, kPerKey = 20;
  std::vector<OutgoingMessage> out;
  std::vector<std::string> data, keys;
  for (int i = 0; i < kPerKey; ++i) {
    for (int k = 0; k < kKeys; ++k) {
      keys.push_back("k" + std::to_string(k));
      data.push_back(keys.back() + ":" + std::to_string(i));
    }
  }
  for (size_t i = 0; i < data.size(); ++i) out.push_back({data[i], keys[i]});
  ASSERT_TRUE(a->Publish("writes", out).ok());

  // A takes what it can and acks none of it (ordered: what its first Pull
  // returned, a run from the start of each of its keys); B acks what it gets.
  auto held_by_a = Drain(sub_a->get(), data.size(), 3'000, /*ack=*/false);
  auto first_of_b = Drain(sub_b->get(), data.size(), 3'000);
  EXPECT_FALSE(held_by_a.empty()) << "A got no partition";
  EXPECT_FALSE(first_of_b.empty()) << "B got no partition";
  std::set<std::string> keys_of_a, keys_of_b;
  std::map<std::string, int> next_of_a;
  for (const auto& m : held_by_a) {
    // Unacked, a key's messages come only in the same Pull, in order.
    EXPECT_EQ(m.data, m.ordering_key + ":" + std::to_string(next_of_a[m.ordering_key]++));
    keys_of_a.insert(m.ordering_key);
  }
  for (const auto& m : first_of_b) keys_of_b.insert(m.ordering_key);
  for (const auto& key : keys_of_a) EXPECT_EQ(keys_of_b.count(key), 0u) << key << " went to both members";
  EXPECT_EQ(keys_of_a.size() + keys_of_b.size(), size_t{kKeys});
  EXPECT_EQ(first_of_b.size(), keys_of_b.size() * kPerKey);

  // A goes away (its process ends): B gets A's partitions from their
  // committed offsets, so everything A held comes again.
  sub_a->reset();
  a.reset();
  auto rest = Drain(sub_b->get(), data.size() - first_of_b.size(), 60'000);
  std::multiset<std::string> want(data.begin(), data.end()), have;
  std::map<std::string, int> next;  // per key: the index B expects next, over both of its runs
  std::vector<std::string> order_errors;
  for (const auto* run : {&first_of_b, &rest}) {
    for (const auto& m : *run) {
      have.insert(m.data);
      int index = std::stoi(m.data.substr(m.data.find(':') + 1));
      if (index != next[m.ordering_key]) order_errors.push_back(m.data);
      next[m.ordering_key] = index + 1;
    }
  }
  EXPECT_EQ(have, want);
  EXPECT_THAT(order_errors, ::testing::IsEmpty());
}

// Pulls one message within `ms` (real time), or fails.
std::optional<Message> PullOne(driver::Subscription* sub, int64_t ms = 20'000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = sub->Pull(1, 200);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return std::nullopt;
    if (!r->empty()) return std::move(r->front());
  }
  return std::nullopt;
}

SubscriptionOptions Expiring(const std::string& name, int64_t ack_timeout_ms) {
  SubscriptionOptions options = Persistent(name);
  options.ack_timeout_ms = ack_timeout_ms;
  return options;
}

// A message's delivery_attempt counts on when its partition moves to another
// member (a rebalance, or the next process after a close): the committed
// offset's metadata carries it. Nack, an expired ack deadline and a handover
// each add one.
TEST(KafkaQueue, DeliveryAttemptsContinueOnTheNextOwnerOfAPartition) {
  const std::string unique = Unique("attempts");
  auto a = Open(unique);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->RegisterTopic("writes").ok());
  auto sub_a = a->Subscribe("writes", Expiring("workers", 500));
  ASSERT_TRUE(sub_a.ok()) << sub_a.status().ToString();
  std::vector<OutgoingMessage> out = {{"poison", "k"}};
  ASSERT_TRUE(a->Publish("writes", out).ok());
  auto first = PullOne(sub_a->get());
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->delivery_attempt, 1);
  ASSERT_TRUE((*sub_a)->Nack(std::vector<std::string>{first->ack_id}).ok());
  auto second = PullOne(sub_a->get());
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->delivery_attempt, 2);

  // B joins while A holds the message (a rebalance), then A goes away: the
  // partition ends up with B, and the count goes on from A's.
  auto b = Open(unique);
  ASSERT_NE(b, nullptr);
  auto sub_b = b->Subscribe("writes", Expiring("workers", 500));
  ASSERT_TRUE(sub_b.ok()) << sub_b.status().ToString();
  sub_a->reset();
  a.reset();
  auto third = PullOne(sub_b->get(), 30'000);
  ASSERT_TRUE(third.has_value()) << "B never got the message";
  EXPECT_EQ(third->data, "poison");
  EXPECT_EQ(third->delivery_attempt, 3);
  // Not acked: its deadline passes and B hands it out again.
  auto fourth = PullOne(sub_b->get());
  ASSERT_TRUE(fourth.has_value());
  EXPECT_EQ(fourth->delivery_attempt, 4);
  sub_b->reset();
  b.reset();

  // A restarted process goes on from there too; once acked, nothing comes back.
  auto c = Open(unique);
  ASSERT_NE(c, nullptr);
  auto sub_c = c->Subscribe("writes", Expiring("workers", 500));
  ASSERT_TRUE(sub_c.ok()) << sub_c.status().ToString();
  auto fifth = PullOne(sub_c->get());
  ASSERT_TRUE(fifth.has_value());
  EXPECT_EQ(fifth->delivery_attempt, 5);
  ASSERT_TRUE((*sub_c)->Ack(std::vector<std::string>{fifth->ack_id}).ok());
  EXPECT_FALSE(PullOne(sub_c->get(), 1'500).has_value());
}

// What the engine's workers do with a message that keeps failing (worker.cc:
// dead-letter it at delivery_attempt >= max_delivery_attempts), with a worker
// process that dies on it every time: each attempt is made by another queue
// object, and the message still ends dead-lettered after max attempts, while
// the messages around it go through once.
TEST(KafkaQueue, AMessageThatKillsEveryWorkerIsDeadLetteredAfterMaxAttempts) {
  constexpr int kMaxAttempts = 4;
  const std::string unique = Unique("poison");
  {
    auto q = Open(unique, {{"partitions", "2"}});
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(q->RegisterTopic("writes").ok());
    ASSERT_TRUE(q->RegisterTopic("dead-letters").ok());
    auto sub = q->Subscribe("writes", Persistent("workers", /*ordered=*/true));  // the group starts at the beginning
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    std::vector<OutgoingMessage> out = {{"before", "k"}, {"poison", "k"}, {"after", "k"}, {"other", "j"}};
    ASSERT_TRUE(q->Publish("writes", out).ok());
  }
  std::vector<std::string> applied, dead;
  int processes = 0;
  while (processes < 3 * kMaxAttempts && dead.empty()) {
    ++processes;
    auto q = Open(unique, {{"partitions", "2"}});
    ASSERT_NE(q, nullptr);
    auto sub = q->Subscribe("writes", Persistent("workers", /*ordered=*/true));
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    bool died = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!died && std::chrono::steady_clock::now() < deadline) {
      auto got = (*sub)->Pull(10, 300);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      if (got->empty() && applied.size() == 3) break;  // nothing else left
      for (const Message& m : *got) {
        if (m.data == "poison" && m.delivery_attempt < kMaxAttempts) {
          died = true;  // the process dies: no ack, nothing after it
          break;
        }
        if (m.data == "poison") {
          std::vector<OutgoingMessage> letter = {{m.data, ""}};
          ASSERT_TRUE(q->Publish("dead-letters", letter).ok());
          dead.push_back(m.data + "@" + std::to_string(m.delivery_attempt));
        } else {
          applied.push_back(m.data);
        }
        ASSERT_TRUE((*sub)->Ack(std::vector<std::string>{m.ack_id}).ok());
      }
    }
  }
  EXPECT_EQ(processes, kMaxAttempts);
  EXPECT_THAT(dead, ::testing::ElementsAre("poison@" + std::to_string(kMaxAttempts)));
  EXPECT_THAT(applied, ::testing::UnorderedElementsAre("before", "after", "other"));
  // Nothing is left for the next worker, and the letter is there.
  auto q = Open(unique, {{"partitions", "2"}});
  ASSERT_NE(q, nullptr);
  auto sub = q->Subscribe("writes", Persistent("workers", /*ordered=*/true));
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_FALSE(PullOne(sub->get(), 2'000).has_value());
  auto letters = q->Subscribe("dead-letters", Persistent("operators"));
  ASSERT_TRUE(letters.ok()) << letters.status().ToString();
  auto letter = PullOne(letters->get());
  ASSERT_TRUE(letter.has_value());
  EXPECT_EQ(letter->data, "poison");
}

// A queue whose brokers cannot be reached answers Unavailable (503 at the API)
// within its request timeout instead of hanging, and names the brokers.
TEST(KafkaQueue, AnUnreachableBrokerIsUnavailableWithinTheRequestTimeout) {
  driver::Config config = {{"brokers", "127.0.0.1:1"}, {"topic_prefix", "nowhere."}, {"request_timeout_ms", "1500"}};
  auto options = ParseQueueOptions(config);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  auto queue = MakeMessageQueue(*options, nullptr);
  ASSERT_TRUE(queue.ok()) << queue.status().ToString();
  Status registered = (*queue)->RegisterTopic("writes");
  EXPECT_EQ(registered.code(), StatusCode::kUnavailable) << registered.ToString();
  std::vector<OutgoingMessage> out = {{"x", "k"}};
  Status published = (*queue)->Publish("writes", out);
  EXPECT_EQ(published.code(), StatusCode::kUnavailable) << published.ToString();
  auto sub = (*queue)->Subscribe("writes", Persistent("w"));
  EXPECT_EQ(sub.status().code(), StatusCode::kUnavailable) << sub.status().ToString();
}

// Bad config is refused naming the key, before anything connects.
TEST(KafkaQueue, ConfigErrorsNameTheKey) {
  EXPECT_THAT(ParseQueueOptions({}).status().message(), ::testing::HasSubstr("brokers"));
  EXPECT_THAT(ParseQueueOptions({{"brokers", "x:1"}, {"compression", "brotli"}}).status().message(),
              ::testing::HasSubstr("compression"));
  EXPECT_THAT(ParseQueueOptions({{"brokers", "x:1"}, {"partitions", "0"}}).status().message(),
              ::testing::HasSubstr("partitions"));
  EXPECT_THAT(ParseQueueOptions({{"brokers", "x:1"}, {"librdkafka.no.such.property", "1"}}).ok() ? "" : "parsed",
              ::testing::StrEq(""));  // passthrough keys are checked when the client is made
  auto options = ParseQueueOptions({{"brokers", "x:1"}, {"librdkafka.no.such.property", "1"}});
  ASSERT_TRUE(options.ok());
  auto queue = MakeMessageQueue(*options, nullptr);
  EXPECT_EQ(queue.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(queue.status().message(), ::testing::HasSubstr("no.such.property"));
}

}  // namespace
}  // namespace aquifer::drivers::kafka
