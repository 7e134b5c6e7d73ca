// The LookupService conformance suite on the Kafka driver, against the real
// broker that scripts/peers/kafka starts (its bootstrap servers in
// AQUIFER_TEST_KAFKA; without it every test fails and says how to start one).
// Each test gets a topic prefix of its own, named after its scratch
// directory, so a reopen finds the same topics and parallel tests never meet.
// Below the suite: what only a networked driver with per-process state can
// get wrong (two service objects stand for two processes: each has its own
// local state store).

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/kafka/register.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"
#include "lookup_conformance.h"

namespace aquifer::conformance {
namespace {

constexpr char kBrokersVariable[] = "AQUIFER_TEST_KAFKA";

const driver::Registry& KafkaRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::kafka::Register(r);
    return r;
  }();
  return *registry;
}

Result<driver::Config> ConfigFor(const std::string& scratch_dir, const std::string& brokers_override = "") {
  const char* brokers = std::getenv(kBrokersVariable);
  if (brokers_override.empty() && (brokers == nullptr || *brokers == '\0')) {
    return FailedPrecondition(
        "{} is not set: the Kafka suites need a real broker. Run `make test`, or "
        "`eval \"$(bash scripts/peers/kafka start)\"` before ctest",
        kBrokersVariable);
  }
  return driver::Config{{"brokers", brokers_override.empty() ? std::string(brokers) : brokers_override},
                        {"topic_prefix", "aquifer.test." + std::filesystem::path(scratch_dir).filename().string() + "."},
                        {"state_dir", scratch_dir + "/state"}};
}

Result<std::shared_ptr<driver::LookupService>> MakeKafka(const std::string& dir, Clock* clock) {
  AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
  driver::DriverContext context;
  context.data_dir = dir;
  context.clock = clock;
  return KafkaRegistry().MakeLookupService("kafka", config, context);
}

INSTANTIATE_TEST_SUITE_P(Kafka, LookupConformance, ::testing::Values(LookupDriverFactory{"kafka", MakeKafka}),
                         LookupDriverFactoryName);

// ---- two processes -------------------------------------------------------------------

schema::SchemaPtr Schema() {
  static const schema::SchemaPtr schema = *schema::Schema::Parse(R"json({"type": "record", "name": "R",
      "fields": [{"name": "id", "type": "long"}, {"name": "v", "type": "string"}]})json", {"id"});
  return schema;
}

driver::Record MakeRecord(int64_t id, const std::string& v, int64_t ts) {
  auto value = schema::ParseJsonRecord(*Schema(), fmt::format(R"({{"id": {}, "v": "{}"}})", id, v));
  EXPECT_TRUE(value.ok()) << value.status().ToString();
  driver::Record record;
  EXPECT_TRUE(schema::EncodeAvro(*Schema(), *value, &record.avro).ok());
  record.key = *keys::EncodeKey(*Schema(), *value);
  record.timestamp_ms = ts;
  return record;
}

std::vector<driver::Record> ReadAll(driver::LookupService& service, const driver::InstanceInfo& instance,
                                    driver::QueryKind kind) {
  driver::QueryRequest request;
  request.kind = kind;
  auto cursors = service.Query(instance, request);
  EXPECT_TRUE(cursors.ok()) << cursors.status().ToString();
  std::vector<driver::Record> out;
  if (!cursors.ok()) return out;
  std::string payload = cursors->replay;
  while (!payload.empty()) {
    auto page = service.ReadCursor(instance, payload, {}, driver::ReadOptions{.limit = 1000});
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) break;
    out.insert(out.end(), page->records.begin(), page->records.end());
    payload = page->next;
  }
  return out;
}

driver::InstanceInfo NewInstance() {
  driver::InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.project = "p";
  instance.table = "t";
  instance.schema = Schema();
  return instance;
}

class KafkaLookupProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto* service : {&a_, &b_}) {
      // One topic prefix, two state stores: two processes of one deployment.
      auto config = ConfigFor(scratch_.path());
      ASSERT_TRUE(config.ok()) << config.status().ToString();
      (*config)["state_dir"] = scratch_.path() + (service == &a_ ? "/a" : "/b");
      auto made = KafkaRegistry().MakeLookupService("kafka", *config, {});
      ASSERT_TRUE(made.ok()) << made.status().ToString();
      *service = *made;
    }
  }
  ScratchDir scratch_;
  std::shared_ptr<driver::LookupService> a_, b_;
};

TEST_F(KafkaLookupProcesses, AWriteAcknowledgedThroughOneIsReadThroughTheOther) {
  driver::InstanceInfo instance = NewInstance();
  // b reads first, so its store has caught up to an earlier point.
  ASSERT_TRUE(b_->WriteRecords(instance, std::vector{MakeRecord(1, "b", 5)}, {}).ok());
  ASSERT_EQ(ReadAll(*b_, instance, driver::QueryKind::kIndex).size(), 1u);
  for (int round = 0; round < 20; ++round) {
    std::vector<driver::Record> batch = {MakeRecord(100 + round, "a", 10 + round), MakeRecord(1, "a", 10 + round)};
    ASSERT_TRUE(a_->WriteRecords(instance, batch, {}).ok());
    // Right after a's acknowledgement, b sees it: no sleep, no retry.
    std::vector<driver::Record> index = ReadAll(*b_, instance, driver::QueryKind::kIndex);
    ASSERT_EQ(index.size(), static_cast<size_t>(round + 2)) << "round " << round;
    EXPECT_EQ(index.front().avro, batch[1].avro) << "round " << round;
    std::vector<driver::Record> log = ReadAll(*b_, instance, driver::QueryKind::kLog);
    ASSERT_EQ(log.size(), static_cast<size_t>(1 + 2 * (round + 1)));
    EXPECT_EQ(log.back().avro, batch[1].avro);
    EXPECT_EQ(log.back().offset, static_cast<int64_t>(log.size()) - 1);
  }
}

TEST_F(KafkaLookupProcesses, AGroupAppliedThroughOneIsSkippedThroughTheOther) {
  driver::InstanceInfo instance = NewInstance();
  std::vector<driver::Record> batch = {MakeRecord(1, "x", 5), MakeRecord(2, "y", 5)};
  std::vector<driver::RecordGroup> groups = {{"message-1", 2}};
  ASSERT_TRUE(a_->WriteRecords(instance, batch, groups).ok());
  // The queue redelivers the message to another worker.
  ASSERT_TRUE(b_->WriteRecords(instance, batch, groups).ok());
  for (auto* service : {&a_, &b_}) {
    std::vector<driver::Record> log = ReadAll(**service, instance, driver::QueryKind::kLog);
    ASSERT_EQ(log.size(), 2u);
    EXPECT_EQ(log[1].offset, 1);
  }
}

TEST_F(KafkaLookupProcesses, AnOlderRecordWrittenLaterThroughAnotherNeverWins) {
  driver::InstanceInfo instance = NewInstance();
  ASSERT_TRUE(a_->WriteRecords(instance, std::vector{MakeRecord(1, "new", 20)}, {}).ok());
  ASSERT_TRUE(b_->WriteRecords(instance, std::vector{MakeRecord(1, "old", 10)}, {}).ok());  // a retry, late
  for (auto* service : {&a_, &b_}) {
    std::vector<driver::Record> index = ReadAll(**service, instance, driver::QueryKind::kIndex);
    ASSERT_EQ(index.size(), 1u);
    EXPECT_EQ(index[0].avro, MakeRecord(1, "new", 20).avro);
  }
  // A third process rebuilds its store from the topics and agrees.
  auto config = ConfigFor(scratch_.path());
  ASSERT_TRUE(config.ok());
  (*config)["state_dir"] = scratch_.path() + "/c";
  auto c = KafkaRegistry().MakeLookupService("kafka", *config, {});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<driver::Record> index = ReadAll(**c, instance, driver::QueryKind::kIndex);
  ASSERT_EQ(index.size(), 1u);
  EXPECT_EQ(index[0].avro, MakeRecord(1, "new", 20).avro);
  EXPECT_EQ(ReadAll(**c, instance, driver::QueryKind::kLog).size(), 2u);
}

TEST_F(KafkaLookupProcesses, AnInstanceRemovedThroughOneIsGoneThroughTheOther) {
  driver::InstanceInfo instance = NewInstance();
  ASSERT_TRUE(a_->WriteRecords(instance, std::vector{MakeRecord(1, "x", 1), MakeRecord(2, "y", 1)}, {}).ok());
  ASSERT_EQ(ReadAll(*b_, instance, driver::QueryKind::kLog).size(), 2u);
  ASSERT_TRUE(a_->RemoveInstance(instance).ok());
  EXPECT_TRUE(ReadAll(*b_, instance, driver::QueryKind::kLog).empty());
  EXPECT_TRUE(ReadAll(*b_, instance, driver::QueryKind::kIndex).empty());
  // Written again (through b), offsets start at 0 in both.
  ASSERT_TRUE(b_->WriteRecords(instance, std::vector{MakeRecord(3, "z", 1)}, {}).ok());
  for (auto* service : {&a_, &b_}) {
    std::vector<driver::Record> log = ReadAll(**service, instance, driver::QueryKind::kLog);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].offset, 0);
  }
}

// The value of `name` in the broker's config of `topic` (DescribeConfigs), or
// "<missing>".
std::string TopicConfig(const std::string& brokers, const std::string& topic, const std::string& name) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  rd_kafka_ConfigResource_t* resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_DescribeConfigs(rk, &resource, 1, nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 15'000);
  std::string value = "<missing>";
  if (event != nullptr && rd_kafka_event_error(event) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    size_t count = 0;
    const rd_kafka_ConfigResource_t** results =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(event), &count);
    for (size_t i = 0; i < count; ++i) {
      size_t entries = 0;
      const rd_kafka_ConfigEntry_t** configs = rd_kafka_ConfigResource_configs(results[i], &entries);
      for (size_t j = 0; j < entries; ++j) {
        if (name == rd_kafka_ConfigEntry_name(configs[j]) && rd_kafka_ConfigEntry_value(configs[j]) != nullptr) {
          value = rd_kafka_ConfigEntry_value(configs[j]);
        }
      }
    }
  }
  if (event != nullptr) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_ConfigResource_destroy(resource);
  rd_kafka_destroy(rk);
  return value;
}

// The index is a compacted topic keyed by the tuple key; the log is kept whole.
TEST_F(KafkaLookupProcesses, TheIndexTopicIsCompactedAndTheLogTopicKeptWhole) {
  driver::InstanceInfo instance = NewInstance();
  ASSERT_TRUE(a_->WriteRecords(instance, std::vector{MakeRecord(1, "x", 1)}, {}).ok());
  const std::string brokers = std::getenv(kBrokersVariable);
  const std::string prefix = "aquifer.test." + std::filesystem::path(scratch_.path()).filename().string() +
                             ".lookup." + instance.instance_id.ToString();
  EXPECT_EQ(TopicConfig(brokers, prefix + ".index", "cleanup.policy"), "compact");
  EXPECT_EQ(TopicConfig(brokers, prefix + ".log", "cleanup.policy"), "delete");
  EXPECT_EQ(TopicConfig(brokers, prefix + ".log", "retention.ms"), "-1");
}

// Retention: the topics' retention.ms follows log_retention_ms and
// index_retention_ms, set at registration and again when a registration
// changes it (also on topics another process made); back to forever, the log
// is kept whole and the index only compacted.
TEST_F(KafkaLookupProcesses, TheTopicsRetentionFollowsTheInstances) {
  driver::InstanceInfo instance = NewInstance();
  instance.log_retention_ms = 3'600'000;
  instance.index_retention_ms = 7'200'000;
  ASSERT_TRUE(a_->RegisterInstance(instance).ok());
  const std::string brokers = std::getenv(kBrokersVariable);
  const std::string prefix = "aquifer.test." + std::filesystem::path(scratch_.path()).filename().string() +
                             ".lookup." + instance.instance_id.ToString();
  EXPECT_EQ(TopicConfig(brokers, prefix + ".log", "cleanup.policy"), "delete");
  EXPECT_EQ(TopicConfig(brokers, prefix + ".log", "retention.ms"), "3600000");
  EXPECT_EQ(TopicConfig(brokers, prefix + ".index", "cleanup.policy"), "compact,delete");
  EXPECT_EQ(TopicConfig(brokers, prefix + ".index", "retention.ms"), "7200000");

  // Changed through the other process, whose topics exist already.
  driver::InstanceInfo changed = instance;
  changed.log_retention_ms = 60'000;
  changed.index_retention_ms = 0;
  ASSERT_TRUE(b_->RegisterInstance(changed).ok());
  EXPECT_EQ(TopicConfig(brokers, prefix + ".log", "retention.ms"), "60000");
  EXPECT_EQ(TopicConfig(brokers, prefix + ".index", "cleanup.policy"), "compact");

  driver::InstanceInfo forever = changed;
  forever.log_retention_ms = 0;
  ASSERT_TRUE(b_->RegisterInstance(forever).ok());
  EXPECT_EQ(TopicConfig(brokers, prefix + ".log", "retention.ms"), "-1");
  EXPECT_EQ(TopicConfig(brokers, prefix + ".log", "cleanup.policy"), "delete");
}

// Retention across processes: each purges its own store; records expired by
// the clock are hidden through both before either purged.
TEST_F(KafkaLookupProcesses, ExpiredRecordsAreHiddenThroughEveryProcessAndPurgedFromEach) {
  driver::InstanceInfo instance = NewInstance();
  instance.log_retention_ms = 10'000;
  instance.index_retention_ms = 10'000;
  const int64_t now = Clock::System()->NowMillis();
  ASSERT_TRUE(a_->WriteRecords(instance, std::vector{MakeRecord(1, "old", now - 20'000), MakeRecord(2, "new", now)}, {})
                  .ok());
  for (auto* service : {&a_, &b_}) {
    std::vector<driver::Record> index = ReadAll(**service, instance, driver::QueryKind::kIndex);
    ASSERT_EQ(index.size(), 1u);
    EXPECT_EQ(index[0].avro, MakeRecord(2, "new", now).avro);
    ASSERT_EQ(ReadAll(**service, instance, driver::QueryKind::kLog).size(), 1u);
    auto stored = (*service)->CountStored(instance);
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    EXPECT_EQ(*stored, (driver::StoredRecords{2, 2}));
    auto purged = (*service)->PurgeExpired(instance);
    ASSERT_TRUE(purged.ok()) << purged.status().ToString();
    EXPECT_EQ(*purged, 2);
    stored = (*service)->CountStored(instance);
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    EXPECT_EQ(*stored, (driver::StoredRecords{1, 1}));
  }
}

// Deletes the records of `topic` (partition 0) below `before` at the broker
// (DeleteRecords: what retention does to closed segments, on demand).
// Answers the error text, empty when done.
std::string DeleteRecordsBefore(const std::string& brokers, const std::string& topic, int64_t before) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), errstr, sizeof(errstr));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return errstr;
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(offsets, topic.c_str(), 0)->offset = before;
  rd_kafka_DeleteRecords_t* request = rd_kafka_DeleteRecords_new(offsets);
  rd_kafka_topic_partition_list_destroy(offsets);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_DeleteRecords(rk, &request, 1, nullptr, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 15'000);
  std::string error;
  if (event == nullptr) {
    error = "DeleteRecords timed out";
  } else if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    error = rd_kafka_event_error_string(event);
  } else {
    const rd_kafka_topic_partition_list_t* result =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(event));
    if (result == nullptr || result->cnt != 1) {
      error = "DeleteRecords: no result";
    } else if (result->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      error = rd_kafka_err2str(result->elems[0].err);
    } else if (result->elems[0].offset != before) {
      error = fmt::format("DeleteRecords: the log now starts at {}, not {}", result->elems[0].offset, before);
    }
  }
  if (event != nullptr) rd_kafka_event_destroy(event);
  rd_kafka_DeleteRecords_destroy(request);
  rd_kafka_queue_destroy(queue);
  rd_kafka_destroy(rk);
  return error;
}

std::vector<int64_t> OffsetsOf(const std::vector<driver::Record>& records) {
  std::vector<int64_t> out;
  for (const auto& record : records) out.push_back(record.offset);
  return out;
}

// Every page of a payload (a cursor made by any process), read through `service`.
std::vector<driver::Record> ReadPayload(driver::LookupService& service, const driver::InstanceInfo& instance,
                                        std::string payload, bool change = false) {
  std::vector<driver::Record> out;
  while (!payload.empty()) {
    auto page = service.ReadCursor(instance, payload, {}, driver::ReadOptions{.limit = 2});
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) break;
    out.insert(out.end(), page->records.begin(), page->records.end());
    payload = page->next;
    if (change && page->records.empty()) break;  // a change feed never ends: stop at its head
  }
  return out;
}

// Offsets are the log topic's Kafka offsets (README.md, "Offsets"): a skipped
// duplicate group and a marker leave gaps, and every process numbers every
// record alike, also one that rebuilt its store after the broker deleted the
// head of the log (retention; here DeleteRecords), so a cursor one process
// minted reads the same records through another.
TEST_F(KafkaLookupProcesses, OffsetsAreTheTopicsSoCursorsAgreeAcrossProcessesAfterTheHeadWasDeleted) {
  driver::InstanceInfo instance = NewInstance();
  std::vector<driver::Record> first = {MakeRecord(1, "a", 5), MakeRecord(2, "b", 5)};
  std::vector<driver::RecordGroup> group = {{"message-1", 2}};
  ASSERT_TRUE(a_->WriteRecords(instance, first, group).ok());                      // Kafka offsets 0, 1
  ASSERT_TRUE(b_->WriteRecords(instance, first, group).ok());                      // 2, 3: skipped
  ASSERT_TRUE(a_->WriteRecords(instance, {}, std::vector<driver::RecordGroup>{{"empty", 0}}).ok());  // 4: marker
  ASSERT_TRUE(b_->WriteRecords(instance, std::vector{MakeRecord(3, "c", 6), MakeRecord(4, "d", 6)}, {}).ok());  // 5, 6
  const std::vector<int64_t> expected = {0, 1, 5, 6};
  EXPECT_EQ(OffsetsOf(ReadAll(*a_, instance, driver::QueryKind::kLog)), expected);
  EXPECT_EQ(OffsetsOf(ReadAll(*b_, instance, driver::QueryKind::kLog)), expected);

  // A change cursor of a, read through b after more writes.
  driver::QueryRequest log_request;
  log_request.kind = driver::QueryKind::kLog;
  auto from_a = a_->Query(instance, log_request);
  ASSERT_TRUE(from_a.ok()) << from_a.status().ToString();
  ASSERT_TRUE(a_->WriteRecords(instance, std::vector{MakeRecord(5, "e", 7), MakeRecord(6, "f", 7)}, {}).ok());  // 7, 8
  std::vector<driver::Record> changes = ReadPayload(*b_, instance, from_a->change, /*change=*/true);
  EXPECT_EQ(OffsetsOf(changes), (std::vector<int64_t>{7, 8}));
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].avro, MakeRecord(5, "e", 7).avro);

  // The broker drops the log's head up to offset 6 (what retention does);
  // a third process rebuilds its store from what is left.
  const std::string brokers = std::getenv(kBrokersVariable);
  const std::string log_topic = "aquifer.test." + std::filesystem::path(scratch_.path()).filename().string() +
                                ".lookup." + instance.instance_id.ToString() + ".log";
  ASSERT_EQ(DeleteRecordsBefore(brokers, log_topic, 6), "");
  auto config = ConfigFor(scratch_.path());
  ASSERT_TRUE(config.ok());
  (*config)["state_dir"] = scratch_.path() + "/c";
  auto made = KafkaRegistry().MakeLookupService("kafka", *config, {});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  driver::LookupService& c = **made;
  std::vector<driver::Record> rebuilt = ReadAll(c, instance, driver::QueryKind::kLog);
  EXPECT_EQ(OffsetsOf(rebuilt), (std::vector<int64_t>{6, 7, 8}));
  std::vector<driver::Record> whole = ReadAll(*a_, instance, driver::QueryKind::kLog);
  ASSERT_EQ(OffsetsOf(whole), (std::vector<int64_t>{0, 1, 5, 6, 7, 8}));  // a applied the head before
  ASSERT_EQ(rebuilt.size(), 3u);
  for (size_t i = 0; i < rebuilt.size(); ++i) EXPECT_EQ(rebuilt[i].avro, whole[i + 3].avro) << "offset " << rebuilt[i].offset;

  // Cursors cross over both ways: a's replay (made before the deletion) and
  // a rewind read through c find what c has at the same offsets; c's change
  // cursor read through a finds the next writes at the same offsets.
  EXPECT_EQ(OffsetsOf(ReadPayload(c, instance, from_a->replay)), (std::vector<int64_t>{6}));
  auto peek_a = a_->Peek(instance);
  ASSERT_TRUE(peek_a.ok());
  EXPECT_EQ(OffsetsOf(ReadPayload(c, instance, peek_a->rewind)), (std::vector<int64_t>{8, 7, 6}));
  auto from_c = c.Query(instance, log_request);
  ASSERT_TRUE(from_c.ok()) << from_c.status().ToString();
  auto peek_c = c.Peek(instance);
  ASSERT_TRUE(peek_c.ok());
  EXPECT_EQ(peek_c->change, peek_a->change);  // the same head in both
  ASSERT_TRUE(b_->WriteRecords(instance, std::vector{MakeRecord(7, "g", 8)}, {}).ok());  // 9
  for (driver::LookupService* reader : {a_.get(), b_.get(), &c}) {
    std::vector<driver::Record> next = ReadPayload(*reader, instance, from_c->change, /*change=*/true);
    EXPECT_EQ(OffsetsOf(next), (std::vector<int64_t>{9}));
  }
}

// An unreachable broker: writes and reads answer Unavailable within the
// configured bound, never hang.
TEST(KafkaLookup, AnUnreachableBrokerGivesUnavailable) {
  ScratchDir scratch;
  auto config = ConfigFor(scratch.path(), "127.0.0.1:1");
  ASSERT_TRUE(config.ok());
  (*config)["request_timeout_ms"] = "1000";
  (*config)["catchup_timeout_ms"] = "1000";
  auto service = KafkaRegistry().MakeLookupService("kafka", *config, {});
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  driver::InstanceInfo instance = NewInstance();
  Status written = (*service)->WriteRecords(instance, std::vector{MakeRecord(1, "x", 1)}, {});
  EXPECT_EQ(written.code(), StatusCode::kUnavailable) << written.ToString();
  auto queried = (*service)->Query(instance, driver::QueryRequest{});
  EXPECT_EQ(queried.status().code(), StatusCode::kUnavailable) << queried.status().ToString();
}

TEST(KafkaLookup, ConfigWithoutBrokersIsRefused) {
  auto service = KafkaRegistry().MakeLookupService("kafka", {}, {});
  EXPECT_EQ(service.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(service.status().message().find("brokers"), std::string::npos) << service.status().ToString();
}

}  // namespace
}  // namespace aquifer::conformance
