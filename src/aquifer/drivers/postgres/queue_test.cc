// Postgres queue behaviour beyond the conformance suite, on the server from
// scripts/peers/postgres: LISTEN/NOTIFY wakes a waiting consumer of another
// queue object (another process, as far as the server can tell), and ordering
// holds across such objects.

#include "aquifer/drivers/postgres/queue.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "aquifer/base/uuid.h"
#include "aquifer/drivers/postgres/pg.h"
#include "aquifer/drivers/postgres/testing.h"

namespace aquifer::drivers::postgres {
namespace {

// Two queue objects on one fresh schema; the poll interval is an hour, so a
// Pull can only return before its timeout because a notification woke it.
// Pull claims once more when its timeout ends, so the tests tell a woken Pull
// from a timed-out one by a liveness bound with a wide margin: the Pull's
// timeout is 120 s, and a woken Pull is back in milliseconds; half the timeout
// is the bound.
constexpr int64_t kPullTimeoutMs = 120'000;
constexpr auto kWokenWithin = std::chrono::milliseconds(kPullTimeoutMs / 2);
struct TwoQueues {
  std::shared_ptr<driver::MessageQueue> consumer, publisher;
};

TwoQueues Open(const std::string& unique) {
  TwoQueues queues;
  auto config = testing::TestConfig(unique);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return queues;
  (*config)["poll_interval_ms"] = "3600000";
  auto options = ParseQueueOptions(*config);
  EXPECT_TRUE(options.ok()) << options.status().ToString();
  if (!options.ok()) return queues;
  auto consumer = MakeMessageQueue(*options, Clock::System());
  auto publisher = MakeMessageQueue(*options, Clock::System());
  EXPECT_TRUE(consumer.ok()) << consumer.status().ToString();
  EXPECT_TRUE(publisher.ok()) << publisher.status().ToString();
  if (consumer.ok()) queues.consumer = *consumer;
  if (publisher.ok()) queues.publisher = *publisher;
  return queues;
}

TEST(PostgresQueue, ANotificationWakesAConsumerOfAnotherQueueObject) {
  TwoQueues queues = Open("queue_notify_" + Uuid::Random().Hex());
  ASSERT_NE(queues.consumer, nullptr);
  ASSERT_NE(queues.publisher, nullptr);
  ASSERT_TRUE(queues.consumer->RegisterTopic("events").ok());
  driver::SubscriptionOptions options;
  options.name = "worker";
  auto sub = queues.consumer->Subscribe("events", options);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  std::thread publisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the consumer is waiting by then
    std::vector<driver::OutgoingMessage> out = {{"wake", ""}};
    EXPECT_TRUE(queues.publisher->Publish("events", out).ok());
  });
  // Without the notification this Pull would sleep through its whole timeout
  // (the next poll is an hour away).
  const auto start = std::chrono::steady_clock::now();
  auto got = (*sub)->Pull(10, kPullTimeoutMs);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWokenWithin) << "the publish did not wake the Pull";
  publisher.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].data, "wake");
}

// A server restart ends every session, the listeners' too: a listener must
// LISTEN again by itself, or consumers would only see new messages at their
// next poll (an hour here). The listeners' sessions are terminated, and a
// publish must still wake a waiting Pull of the other object.
TEST(PostgresQueue, AListenerWhoseSessionEndedListensAgain) {
  const std::string unique = "queue_relisten_" + Uuid::Random().Hex();
  TwoQueues queues = Open(unique);
  ASSERT_NE(queues.consumer, nullptr);
  ASSERT_NE(queues.publisher, nullptr);
  ASSERT_TRUE(queues.consumer->RegisterTopic("events").ok());
  driver::SubscriptionOptions options;
  options.name = "worker";
  auto sub = queues.consumer->Subscribe("events", options);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();

  auto config = testing::TestConfig(unique);
  ASSERT_TRUE(config.ok());
  const std::string listen = fmt::format(
      "LISTEN \"aquifer_mq_{:016x}\"", std::hash<std::string>()(config->at("schema")));
  auto admin = Connection::Open(config->at("url"));
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  auto listeners = [&]() -> std::vector<int64_t> {
    Params params;
    params.Text(listen);
    auto rows = (*admin)->Exec("SELECT pid FROM pg_stat_activity WHERE query = $1", params);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    std::vector<int64_t> pids;
    for (int row = 0; rows.ok() && row < rows->rows(); ++row) pids.push_back(*rows->Int(row, 0));
    return pids;
  };
  auto wait_for_listeners = [&](auto condition) {
    for (int i = 0; i < 3000; ++i) {  // 30 s at most
      if (condition(listeners())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  std::vector<int64_t> old;
  ASSERT_TRUE(wait_for_listeners([&](std::vector<int64_t> pids) {
    old = pids;
    return pids.size() == 2;
  })) << "two listeners (one per queue object) never showed up";
  for (int64_t pid : old) {
    ASSERT_TRUE((*admin)->Exec(fmt::format("SELECT pg_terminate_backend({})", pid)).ok());
  }
  ASSERT_TRUE(wait_for_listeners([&](std::vector<int64_t> pids) {
    if (pids.size() != 2) return false;
    for (int64_t pid : pids) {
      if (std::find(old.begin(), old.end(), pid) != old.end()) return false;
    }
    return true;
  })) << "the listeners did not LISTEN again after their sessions ended";

  std::thread publisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the consumer is waiting by then
    std::vector<driver::OutgoingMessage> out = {{"after", ""}};
    EXPECT_TRUE(queues.publisher->Publish("events", out).ok());
  });
  const auto start = std::chrono::steady_clock::now();
  auto got = (*sub)->Pull(10, kPullTimeoutMs);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWokenWithin)
      << "the publish did not wake the Pull: the listener is not listening";
  publisher.join();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].data, "after");
}

TEST(PostgresQueue, AnAckInOneObjectReleasesTheNextMessageOfAKeyToAnother) {
  TwoQueues queues = Open("queue_order_" + Uuid::Random().Hex());
  ASSERT_NE(queues.consumer, nullptr);
  ASSERT_NE(queues.publisher, nullptr);
  ASSERT_TRUE(queues.consumer->RegisterTopic("events").ok());
  driver::SubscriptionOptions options;
  options.name = "ordered";
  options.ordered = true;
  auto first = queues.consumer->Subscribe("events", options);
  auto second = queues.publisher->Subscribe("events", options);
  ASSERT_TRUE(first.ok() && second.ok());
  std::vector<driver::OutgoingMessage> out = {{"k1", "k"}, {"k2", "k"}};
  ASSERT_TRUE(queues.publisher->Publish("events", out).ok());
  auto head = (*first)->Pull(10, 10'000);
  ASSERT_TRUE(head.ok()) << head.status().ToString();
  ASSERT_EQ(head->size(), 1u);
  EXPECT_EQ((*head)[0].data, "k1");
  // k2 waits while k1 is out at the other object's consumer.
  auto held = (*second)->Pull(10, 200);
  ASSERT_TRUE(held.ok());
  EXPECT_TRUE(held->empty());
  std::thread acker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_TRUE((*first)->Ack(std::vector<std::string>{(*head)[0].ack_id}).ok());
  });
  // The ack's notification wakes this Pull (the poll interval is an hour).
  const auto start = std::chrono::steady_clock::now();
  auto next = (*second)->Pull(10, kPullTimeoutMs);
  EXPECT_LT(std::chrono::steady_clock::now() - start, kWokenWithin) << "the ack did not wake the Pull";
  acker.join();
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  ASSERT_EQ(next->size(), 1u);
  EXPECT_EQ((*next)[0].data, "k2");
}

// Two subscriptions acking the same messages at the same time: each message
// row goes once the last delivery is acked, whichever ack comes last.
TEST(PostgresQueue, MessagesAckedBySeveralSubscriptionsAtOnceAreAllRemoved) {
  const std::string unique = "queue_gc_" + Uuid::Random().Hex();
  TwoQueues queues = Open(unique);
  ASSERT_NE(queues.consumer, nullptr);
  ASSERT_TRUE(queues.consumer->RegisterTopic("events").ok());
  constexpr int kMessages = 300;
  std::vector<std::unique_ptr<driver::Subscription>> subs;
  for (const char* name : {"indexer", "warehouse"}) {
    driver::SubscriptionOptions options;
    options.name = name;
    auto sub = queues.consumer->Subscribe("events", options);
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    subs.push_back(std::move(*sub));
  }
  std::vector<std::string> data;
  for (int message_idx = 0; message_idx < kMessages; ++message_idx) data.push_back("m" + std::to_string(message_idx));
  std::vector<driver::OutgoingMessage> out;
  for (const std::string& d : data) out.push_back({d, ""});
  ASSERT_TRUE(queues.publisher->Publish("events", out).ok());
  // Both pull everything first, then ack one message at a time side by side.
  std::vector<std::vector<std::string>> ack_ids(2);
  for (int sub_idx = 0; sub_idx < 2; ++sub_idx) {
    while (ack_ids[sub_idx].size() < kMessages) {
      auto got = subs[sub_idx]->Pull(kMessages, 10'000);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_FALSE(got->empty());
      for (const auto& message : *got) ack_ids[sub_idx].push_back(message.ack_id);
    }
  }
  std::vector<std::thread> ackers;
  for (int sub_idx = 0; sub_idx < 2; ++sub_idx) {
    ackers.emplace_back([&, sub_idx] {
      for (const std::string& id : ack_ids[sub_idx]) EXPECT_TRUE(subs[sub_idx]->Ack(std::vector<std::string>{id}).ok());
    });
  }
  for (auto& acker : ackers) acker.join();
  auto config = testing::TestConfig(unique);
  ASSERT_TRUE(config.ok());
  auto conn = Connection::Open(config->at("url"));
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  auto left = (*conn)->Exec(fmt::format("SELECT count(*) FROM {}.mq_message", QuoteIdent(config->at("schema"))));
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  EXPECT_EQ(*left->Int(0, 0), 0) << "message rows left behind after every subscription acked";
}

// Messages published while a topic has no subscription are kept for a later
// persistent subscription, but not forever.
TEST(PostgresQueue, UnclaimedMessagesAreKeptForANewSubscriptionUntilTheirRetentionEnds) {
  auto config = testing::TestConfig("queue_unclaimed_" + Uuid::Random().Hex());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  (*config)["unclaimed_retention_ms"] = "3600000";
  auto options = ParseQueueOptions(*config);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  ManualClock clock;
  auto queue = MakeMessageQueue(*options, &clock);
  ASSERT_TRUE(queue.ok()) << queue.status().ToString();
  ASSERT_TRUE((*queue)->RegisterTopic("reports").ok());
  auto publish = [&](std::string_view data) {
    std::vector<driver::OutgoingMessage> out = {{data, ""}};
    ASSERT_TRUE((*queue)->Publish("reports", out).ok());
  };
  auto backlog = [&](const std::string& name) {
    driver::SubscriptionOptions subscription;
    subscription.name = name;
    auto sub = (*queue)->Subscribe("reports", subscription);
    EXPECT_TRUE(sub.ok()) << sub.status().ToString();
    std::vector<std::string> got;
    if (!sub.ok()) return got;
    while (true) {
      auto pulled = (*sub)->Pull(100, 300);
      EXPECT_TRUE(pulled.ok());
      if (!pulled.ok() || pulled->empty()) break;
      for (const auto& message : *pulled) got.push_back(message.data);
    }
    return got;
  };
  publish("old");
  clock.Advance(int64_t{30} * 60'000 * 1000);  // 30 min: within the retention
  publish("middle");
  EXPECT_EQ(backlog("first"), (std::vector<std::string>{"old", "middle"}));
  clock.Advance(int64_t{2} * 3'600'000 * 1000);  // past the retention of both
  publish("new");  // sweeps what nobody holds: "first" still holds all three
  EXPECT_EQ(backlog("first"), (std::vector<std::string>{"old", "middle", "new"})) << "unacked, so redelivered";
  EXPECT_EQ(backlog("second"), (std::vector<std::string>{"old", "middle", "new"})) << "held by 'first', so kept";
}

TEST(PostgresQueue, AnUnclaimedMessagePastItsRetentionIsDeleted) {
  auto config = testing::TestConfig("queue_unclaimed_" + Uuid::Random().Hex());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  (*config)["unclaimed_retention_ms"] = "3600000";
  auto options = ParseQueueOptions(*config);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  ManualClock clock;
  auto queue = MakeMessageQueue(*options, &clock);
  ASSERT_TRUE(queue.ok()) << queue.status().ToString();
  ASSERT_TRUE((*queue)->RegisterTopic("reports").ok());
  std::vector<driver::OutgoingMessage> old_one = {{"old", ""}}, new_one = {{"new", ""}};
  ASSERT_TRUE((*queue)->Publish("reports", old_one).ok());
  clock.Advance(int64_t{2} * 3'600'000 * 1000);
  ASSERT_TRUE((*queue)->Publish("reports", new_one).ok());  // sweeps "old"
  driver::SubscriptionOptions subscription;
  subscription.name = "late";
  auto sub = (*queue)->Subscribe("reports", subscription);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  auto got = (*sub)->Pull(100, 1000);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].data, "new");
}

}  // namespace
}  // namespace aquifer::drivers::postgres
