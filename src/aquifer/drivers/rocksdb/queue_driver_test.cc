// What the embedded queue does beyond the MessageQueue conformance suite
// (tests/conformance/message_queue_conformance.cc): its configuration, garbage
// collection, dead letters and exact ack state across reopens.

#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "aquifer/driver/registry.h"
#include "aquifer/driver/store_metrics.h"
#include "aquifer/drivers/rocksdb/queue.h"

namespace aquifer::drivers::rocksdb {
namespace {

using driver::Message;
using driver::MessageQueue;
using driver::OutgoingMessage;
using driver::Subscription;
using driver::SubscriptionOptions;
using ::testing::UnorderedElementsAreArray;

class QueueDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "aquifer-queue-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Result<std::shared_ptr<MessageQueue>> Make(driver::Config config = {}) {
    driver::DriverContext context;
    context.data_dir = dir_;
    context.clock = &clock_;
    return OpenQueue(config, context);
  }
  std::shared_ptr<MessageQueue> MustMake(driver::Config config = {}) {
    auto q = Make(std::move(config));
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    if (!q.ok()) return nullptr;
    EXPECT_TRUE((*q)->RegisterTopic("orders").ok());
    return *q;
  }

  // Counts the stored messages of `topic` by opening the database directly.
  size_t StoredMessages(const std::string& topic) {
    ::rocksdb::DB* raw = nullptr;
    ::rocksdb::Options options;
    auto s = ::rocksdb::DB::OpenForReadOnly(options, dir_ + "/queue", &raw);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return 0;
    std::unique_ptr<::rocksdb::DB> db(raw);
    std::string prefix = "m" + topic + std::string(1, '\0');
    size_t n = 0;
    std::unique_ptr<::rocksdb::Iterator> it(db->NewIterator(::rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) ++n;
    return n;
  }

  std::string dir_;
  ManualClock clock_;
};

SubscriptionOptions Persistent(const std::string& name, bool ordered = false) {
  SubscriptionOptions o;
  o.name = name;
  o.ordered = ordered;
  o.ack_timeout_ms = 1000;
  return o;
}

std::vector<std::string> Numbered(int n) {
  std::vector<std::string> v;
  for (int i = 0; i < n; ++i) v.push_back("m" + std::to_string(i));
  return v;
}

void Publish(MessageQueue* q, const std::string& topic, const std::vector<std::string>& data) {
  std::vector<OutgoingMessage> out;
  for (const auto& d : data) out.push_back({d, ""});
  Status s = q->Publish(topic, out);
  ASSERT_TRUE(s.ok()) << s.ToString();
}

std::vector<Message> PullAll(Subscription* sub) {
  std::vector<Message> got;
  for (;;) {
    auto r = sub->Pull(1000, 100);
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

void Ack(Subscription* sub, const std::vector<Message>& ms) {
  std::vector<std::string> ids;
  for (const auto& m : ms) ids.push_back(m.ack_id);
  ASSERT_TRUE(sub->Ack(ids).ok());
}

TEST_F(QueueDriverTest, RegistryKnowsTheQueueAsRocksdbAndEmbedded) {
  driver::Registry registry;
  RegisterQueue(&registry);
  EXPECT_THAT(registry.MessageQueueNames(), UnorderedElementsAreArray({"embedded", "rocksdb"}));
  driver::DriverContext context;
  context.data_dir = dir_;
  auto q = registry.MakeMessageQueue("rocksdb", {}, context);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/queue/CURRENT"));
}

TEST_F(QueueDriverTest, BlockCacheSizeIsParsedAndReported) {
  for (const char* bad : {"0", "1000", "big"}) {
    auto refused = Make({{"block_cache_size", bad}});
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(refused.status().message(), ::testing::HasSubstr("block_cache_size")) << bad;
  }
  auto q = MustMake({{"block_cache_size", "2097152"}});
  ASSERT_NE(q, nullptr);
  EXPECT_THAT(driver::StoreMetricsText(),
              ::testing::HasSubstr("aquifer_rocksdb_block_cache_capacity_bytes{db=\"queue\"} 2097152\n"));
  q.reset();
  auto defaults = MustMake();
  ASSERT_NE(defaults, nullptr);
  EXPECT_THAT(driver::StoreMetricsText(),
              ::testing::HasSubstr("aquifer_rocksdb_block_cache_capacity_bytes{db=\"queue\"} 16777216\n"));
}

TEST_F(QueueDriverTest, PathOverridesTheDataDir) {
  auto q = Make({{"path", dir_ + "/elsewhere"}});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/elsewhere/CURRENT"));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/queue"));
}

TEST_F(QueueDriverTest, SyncFalseSaysPublishIsNotDurable) {
  auto durable = MustMake();
  ASSERT_NE(durable, nullptr);
  EXPECT_TRUE(durable->capabilities().durable_publish);
  durable.reset();
  auto relaxed = MustMake({{"sync", "false"}});
  ASSERT_NE(relaxed, nullptr);
  EXPECT_FALSE(relaxed->capabilities().durable_publish);
}

TEST_F(QueueDriverTest, BadConfigValuesAreRejectedNamingTheKey) {
  auto q = Make({{"sync", "perhaps"}});
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), ::testing::HasSubstr("sync"));
  auto q2 = Make({{"max_message_size", "0"}});
  ASSERT_FALSE(q2.ok());
  EXPECT_THAT(q2.status().message(), ::testing::HasSubstr("max_message_size"));
}

TEST_F(QueueDriverTest, MaxMessageSizeIsConfigurable) {
  auto q = MustMake({{"max_message_size", "10"}});
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->capabilities().max_message_size, 10u);
  std::vector<OutgoingMessage> out = {{"12345678901", ""}};
  Status s = q->Publish("orders", out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("11 bytes, over the limit of 10 bytes"));
}

TEST_F(QueueDriverTest, ASecondOpenOfTheSameFolderIsUnavailable) {
  auto q = MustMake();
  ASSERT_NE(q, nullptr);
  auto second = Make();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

TEST_F(QueueDriverTest, NamesWithNulBytesAreRejected) {
  auto q = MustMake();
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->RegisterTopic(std::string("a\0b", 3)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(q->RegisterTopic("").code(), StatusCode::kInvalidArgument);
  auto sub = q->Subscribe("orders", Persistent(std::string("x\0y", 3)));
  EXPECT_EQ(sub.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(QueueDriverTest, OutOfOrderAcksSurviveAReopenExactly) {
  {
    auto q = MustMake();
    auto sub = q->Subscribe("orders", Persistent("worker")).value();
    Publish(q.get(), "orders", Numbered(10));
    auto got = PullAll(sub.get());
    ASSERT_EQ(got.size(), 10u);
    std::vector<Message> some;
    for (const auto& m : got) {
      if (m.data == "m1" || m.data == "m3" || m.data == "m7" || m.data == "m9") some.push_back(m);
    }
    Ack(sub.get(), some);
  }
  auto q = MustMake();
  auto sub = q->Subscribe("orders", Persistent("worker")).value();
  EXPECT_THAT(Data(PullAll(sub.get())),
              UnorderedElementsAreArray({"m0", "m2", "m4", "m5", "m6", "m8"}));
}

TEST_F(QueueDriverTest, OrderedSettingIsRememberedAcrossAReopen) {
  {
    auto q = MustMake();
    ASSERT_TRUE(q->Subscribe("orders", Persistent("worker", /*ordered=*/true)).ok());
  }
  auto q = MustMake();
  EXPECT_EQ(q->Subscribe("orders", Persistent("worker", false)).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(q->Subscribe("orders", Persistent("worker", true)).ok());
}

TEST_F(QueueDriverTest, MessagesAckedByEverySubscriptionAreDeleted) {
  {
    auto q = MustMake({{"gc_min_messages", "1"}});
    auto fast = q->Subscribe("orders", Persistent("fast")).value();
    auto slow = q->Subscribe("orders", Persistent("slow")).value();
    Publish(q.get(), "orders", Numbered(100));
    Ack(fast.get(), PullAll(fast.get()));
    auto slow_got = PullAll(slow.get());
    ASSERT_EQ(slow_got.size(), 100u);
    // The slow subscription acked only the first 40: those can go, the rest must stay.
    std::vector<Message> first;
    for (const auto& m : slow_got) {
      if (std::stoi(m.data.substr(1)) < 40) first.push_back(m);
    }
    Ack(slow.get(), first);
  }
  EXPECT_EQ(StoredMessages("orders"), 60u);
  {
    auto q = MustMake({{"gc_min_messages", "1"}});
    auto slow = q->Subscribe("orders", Persistent("slow")).value();
    auto rest = PullAll(slow.get());
    EXPECT_EQ(rest.size(), 60u);
    Ack(slow.get(), rest);
    auto fast = q->Subscribe("orders", Persistent("fast")).value();
    EXPECT_TRUE(PullAll(fast.get()).empty());
  }
  EXPECT_EQ(StoredMessages("orders"), 0u);
}

TEST_F(QueueDriverTest, EphemeralOnlyTopicsAreTrimmedWhenTheirSubscribersAreDone) {
  {
    auto q = MustMake({{"gc_min_messages", "1"}});
    SubscriptionOptions o = Persistent("gateway");
    o.persistent = false;
    auto e = q->Subscribe("orders", o).value();
    Publish(q.get(), "orders", Numbered(50));
    auto got = PullAll(e.get());
    ASSERT_EQ(got.size(), 50u);
    ASSERT_TRUE(e->Close().ok());
    // With nobody subscribed, later publishes are trimmed as they land.
    Publish(q.get(), "orders", Numbered(5));
  }
  EXPECT_EQ(StoredMessages("orders"), 0u);
}

TEST_F(QueueDriverTest, SequenceNumbersStayMonotonicAfterEverythingIsTrimmed) {
  {
    auto q = MustMake({{"gc_min_messages", "1"}});
    auto sub = q->Subscribe("orders", Persistent("worker")).value();
    Publish(q.get(), "orders", Numbered(10));
    Ack(sub.get(), PullAll(sub.get()));
  }
  ASSERT_EQ(StoredMessages("orders"), 0u);
  // New messages after a reopen must not land below the subscription's floor.
  auto q = MustMake({{"gc_min_messages", "1"}});
  auto sub = q->Subscribe("orders", Persistent("worker")).value();
  Publish(q.get(), "orders", {"new"});
  EXPECT_THAT(Data(PullAll(sub.get())), UnorderedElementsAreArray({"new"}));
}

TEST_F(QueueDriverTest, PoisonMessagesMoveToTheDeadLetterTopic) {
  auto q = MustMake({{"max_delivery_attempts", "2"}});
  ASSERT_TRUE(q->RegisterTopic("orders.dead").ok());
  auto dead = q->Subscribe("orders.dead", Persistent("inspector")).value();
  auto sub = q->Subscribe("orders", Persistent("worker")).value();
  Publish(q.get(), "orders", {"poison", "fine"});
  for (int attempt = 1; attempt <= 2; ++attempt) {
    auto got = PullAll(sub.get());
    std::vector<std::string> nack;
    for (const auto& m : got) {
      if (m.data == "poison") {
        EXPECT_EQ(m.delivery_attempt, attempt);
        nack.push_back(m.ack_id);
      } else {
        Ack(sub.get(), {m});
      }
    }
    ASSERT_EQ(nack.size(), 1u) << "attempt " << attempt;
    ASSERT_TRUE(sub->Nack(nack).ok());
  }
  EXPECT_TRUE(PullAll(sub.get()).empty()) << "delivered a third time";
  EXPECT_THAT(Data(PullAll(dead.get())), UnorderedElementsAreArray({"poison"}));
}

TEST_F(QueueDriverTest, ResetInvalidatesOpenSubscriptions) {
  auto q = MustMake();
  auto sub = q->Subscribe("orders", Persistent("worker")).value();
  ASSERT_TRUE(q->Reset().ok());
  auto r = sub->Pull(1, 10);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(QueueDriverTest, ResetIsDurable) {
  {
    auto q = MustMake();
    auto sub = q->Subscribe("orders", Persistent("worker", true)).value();
    Publish(q.get(), "orders", Numbered(5));
    sub.reset();
    ASSERT_TRUE(q->Reset().ok());
  }
  EXPECT_EQ(StoredMessages("orders"), 0u);
  auto q = MustMake();
  auto sub = q->Subscribe("orders", Persistent("worker", false));  // the old one is gone
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  Publish(q.get(), "orders", {"after"});
  EXPECT_THAT(Data(PullAll(sub->get())), UnorderedElementsAreArray({"after"}));
}

TEST_F(QueueDriverTest, OrderedMessagesHeldBackBeforeARestartStayInOrderAfterIt) {
  auto pull_one = [](Subscription* sub) {
    auto r = sub->Pull(1, 1000);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : std::vector<Message>{};
  };
  {
    auto q = MustMake();
    auto sub = q->Subscribe("orders", Persistent("worker", true)).value();
    std::vector<OutgoingMessage> out = {{"a1", "a"}, {"a2", "a"}, {"a3", "a"}};
    ASSERT_TRUE(q->Publish("orders", out).ok());
    auto got = pull_one(sub.get());
    ASSERT_EQ(Data(got), std::vector<std::string>{"a1"});
    Ack(sub.get(), got);
    ASSERT_EQ(Data(pull_one(sub.get())), std::vector<std::string>{"a2"});  // in flight at the "crash"
    // a3 is held back behind a2, in flight in another batch.
    EXPECT_TRUE(PullAll(sub.get()).empty());
  }
  auto q = MustMake();
  auto sub = q->Subscribe("orders", Persistent("worker", true)).value();
  auto got = PullAll(sub.get());
  EXPECT_EQ(Data(got), (std::vector<std::string>{"a2", "a3"}));
}

}  // namespace
}  // namespace aquifer::drivers::rocksdb
