// The engine's parts on their own: wire formats, body splitting, waiters,
// the subscription hub, the usage meter and the worker pool (over the real
// embedded drivers, with wrappers injecting failures).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "aquifer/driver/registry.h"
#include "aquifer/driver/wrappers.h"
#include "aquifer/drivers/builtin.h"
#include "aquifer/engine/catalog.h"
#include "aquifer/engine/reads.h"
#include "aquifer/engine/subscriptions.h"
#include "aquifer/engine/usage_meter.h"
#include "aquifer/engine/wire.h"
#include "aquifer/engine/worker.h"
#include "aquifer/engine/write_pipeline.h"

namespace aquifer::engine {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "aquifer-parts-XXXXXX").string();
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
  return pattern;
}

WriteMessage SampleMessage() {
  WriteMessage message;
  message.write_id = std::string(16, '\x07');
  message.instance_id = Uuid::Random();
  message.part = 1;
  message.parts = 3;
  message.records.push_back({"key-1", std::string("avro\0bytes", 10), -5, -1});
  message.records.push_back({"", "", 1'700'000'000'000, -1});
  return message;
}

TEST(WireTest, WriteMessageRoundTripsAndRejectsEveryTruncation) {
  WriteMessage message = SampleMessage();
  std::string encoded = EncodeWriteMessage(message);
  auto decoded = DecodeWriteMessage(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->write_id, message.write_id);
  EXPECT_EQ(decoded->instance_id, message.instance_id);
  EXPECT_EQ(decoded->part, 1u);
  EXPECT_EQ(decoded->parts, 3u);
  EXPECT_EQ(decoded->records, message.records);
  for (size_t length = 0; length < encoded.size(); ++length) {
    EXPECT_EQ(DecodeWriteMessage(encoded.substr(0, length)).status().code(), StatusCode::kCorruption)
        << "prefix of " << length << " bytes";
  }
  EXPECT_FALSE(DecodeWriteMessage(encoded + "x").ok());
  std::string other_version = encoded;
  other_version[0] = 9;
  EXPECT_THAT(DecodeWriteMessage(other_version).status().message(), HasSubstr("version"));
}

TEST(WireTest, WriteReportRoundTrips) {
  WriteReport report{std::string(16, 'w'), Uuid::Random(), 2, 5, kStoreLog | kStoreIndex, 10, 1234};
  auto decoded = DecodeWriteReport(EncodeWriteReport(report));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->write_id, report.write_id);
  EXPECT_EQ(decoded->instance_id, report.instance_id);
  EXPECT_EQ(decoded->part, 2u);
  EXPECT_EQ(decoded->parts, 5u);
  EXPECT_EQ(decoded->stores, kStoreLog | kStoreIndex);
  EXPECT_EQ(decoded->records, 10);
  EXPECT_EQ(decoded->bytes, 1234);
  EXPECT_FALSE(DecodeWriteReport("").ok());
}

TEST(WritePipelineTest, SplitsJsonArraysAndNdjson) {
  std::vector<std::string_view> records;
  ASSERT_TRUE(SplitRecords(R"( [ {"a":"x,]}"} , {"b":[1,{"c":2}]}, 3 ] )", &records).ok());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0], R"({"a":"x,]}"})");
  EXPECT_EQ(records[1], R"({"b":[1,{"c":2}]})");
  EXPECT_EQ(records[2], "3");
  records.clear();
  ASSERT_TRUE(SplitRecords("{\"a\":1}\n\n{\"a\":\"\\\"}\"}\r\n{\n \"a\": 3\n}\n", &records).ok());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1], R"({"a":"\"}"})");
  records.clear();
  EXPECT_FALSE(SplitRecords(R"([{"a":1})", &records).ok());
  EXPECT_FALSE(SplitRecords(R"([{"a":1}] x)", &records).ok());
  EXPECT_FALSE(SplitRecords(R"({"a":[1})", &records).ok());
}

TEST(WritePipelineTest, ScansTimestampsOfTopLevelMembersOnly) {
  int64_t ms = 0;
  EXPECT_EQ(ScanTimestamp(R"({"x":{"@timestamp":1},"@timestamp":42})", &ms), TimestampField::kValid);
  EXPECT_EQ(ms, 42);
  EXPECT_EQ(ScanTimestamp(R"({"x":{"@timestamp":1}})", &ms), TimestampField::kAbsent);
  EXPECT_EQ(ScanTimestamp(R"({"@timestamp":null})", &ms), TimestampField::kAbsent);
  EXPECT_EQ(ScanTimestamp(R"({"@timestamp":1.5})", &ms), TimestampField::kInvalid);
  EXPECT_EQ(ScanTimestamp(R"({"@timestamp":"1"})", &ms), TimestampField::kInvalid);
  EXPECT_EQ(ScanTimestamp(R"({"@timestamp":99999999999999999999})", &ms), TimestampField::kInvalid);
  EXPECT_EQ(ScanTimestamp(R"({"@timestamp":-1})", &ms), TimestampField::kValid);
}

TEST(WritePipelineTest, SplitsLargeWritesIntoNumberedPartsAndWaitsForAllOfThem) {
  std::vector<driver::Record> records;
  for (int idx = 0; idx < 10; ++idx) records.push_back({"k", std::string(100, 'r'), idx, -1});
  auto messages = SplitIntoMessages(std::string(16, 'i'), Uuid::Random(), records, 400);
  ASSERT_TRUE(messages.ok());
  ASSERT_GT(messages->size(), 2u);
  size_t total = 0;
  for (size_t part = 0; part < messages->size(); ++part) {
    EXPECT_EQ((*messages)[part].part, part);
    EXPECT_EQ((*messages)[part].parts, messages->size());
    EXPECT_LE(EncodeWriteMessage((*messages)[part]).size(), 400u);
    total += (*messages)[part].records.size();
  }
  EXPECT_EQ(total, 10u);
  EXPECT_EQ(SplitIntoMessages("i", Uuid::Random(), records, 100).status().code(),
            StatusCode::kTooLarge);

  WriteWaiters waiters;
  auto waiter = waiters.Register("w", 2, kStoreIndex);
  WriteReport report{"w", Uuid::Random(), 0, 2, kStoreLog | kStoreIndex, 1, 1};
  waiters.OnReport(report);
  waiters.OnReport(report);  // a redelivered part counts once
  EXPECT_FALSE(waiters.Wait(waiter.get(), std::chrono::milliseconds(1)));
  report.part = 1;
  report.stores = kStoreWarehouse;
  waiters.OnReport(report);
  EXPECT_FALSE(waiters.Wait(waiter.get(), std::chrono::milliseconds(1)));
  report.stores = kStoreIndex;
  waiters.OnReport(report);
  EXPECT_TRUE(waiters.Wait(waiter.get(), std::chrono::milliseconds(1)));
  waiters.Unregister("w");
  EXPECT_EQ(waiters.size(), 0u);
}

TEST(EnginePayloadTest, RoundTripsAndChecksTheCursorType) {
  EnginePayload payload{PayloadKind::kChange, 77, R"({"user":"a"})", std::string("\x03\x00\x01", 3)};
  std::string encoded = EncodeEnginePayload(payload);
  auto decoded = DecodeEnginePayload(driver::CursorType::kLog, encoded);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->kind, PayloadKind::kChange);
  EXPECT_EQ(decoded->from_ms, 77);
  EXPECT_EQ(decoded->filter_json, payload.filter_json);
  EXPECT_EQ(decoded->driver, payload.driver);
  EXPECT_EQ(DecodeEnginePayload(driver::CursorType::kIndex, encoded).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(DecodeEnginePayload(driver::CursorType::kLog, encoded.substr(0, 5)).ok());
}

TEST(SubscriptionHubTest, CallsListenersOfTheInstanceOnlyAndNeverAfterTheyAreGone) {
  SubscriptionHub hub;
  Uuid one = Uuid::Random(), two = Uuid::Random();
  std::atomic<int> calls_one{0}, calls_two{0};
  auto listener_one = hub.Listen(one, [&] { ++calls_one; });
  auto listener_two = hub.Listen(two, [&] { ++calls_two; });
  hub.Notify(one);
  EXPECT_EQ(calls_one, 1);
  EXPECT_EQ(calls_two, 0);
  listener_one.reset();
  hub.Notify(one);
  EXPECT_EQ(calls_one, 1);
  EXPECT_EQ(hub.listeners(), 1);
}

TEST(SubscriptionHubTest, ListenerMayDestroyItselfInsideItsCallback) {
  SubscriptionHub hub;
  Uuid instance = Uuid::Random();
  std::unique_ptr<Listener> self;
  int calls = 0;
  self = hub.Listen(instance, [&] {
    ++calls;
    self.reset();  // would deadlock with a plain mutex
  });
  hub.Notify(instance);
  hub.Notify(instance);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(hub.listeners(), 0);
}

TEST(SubscriptionHubTest, ListenerMayOutliveTheHub) {
  std::unique_ptr<Listener> listener;
  {
    SubscriptionHub hub;
    listener = hub.Listen(Uuid::Random(), [] {});
  }
  listener.reset();  // must not touch freed memory (ASan would tell)
  SUCCEED();
}

// A usage service whose writes fail while `fail` is set.
class FlakyUsage : public driver::UsageServiceWrapper {
 public:
  using UsageServiceWrapper::UsageServiceWrapper;
  Status WriteUsage(const Uuid& owner, driver::UsagePeriod period, int64_t time_ms,
                    const driver::UsageCounters& counters) override {
    if (fail) return Unavailable("injected usage failure");
    return UsageServiceWrapper::WriteUsage(owner, period, time_ms, counters);
  }
  std::atomic<bool> fail{false};
};

class PartsWithDriversTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    drivers::RegisterBuiltinDrivers(&registry_);
    context_.data_dir = dir_;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  driver::Registry registry_;
  driver::DriverContext context_;
};

TEST_F(PartsWithDriversTest, UsageMeterKeepsFailedFlushesAndWritesThemLater) {
  auto usage = registry_.MakeUsageService("embedded", {}, context_);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  auto flaky = std::make_shared<FlakyUsage>(*usage);
  ManualClock clock;
  UsageMeter meter(flaky, &clock);
  Uuid owner = Uuid::Random();
  driver::UsageCounters counters;
  counters.write_ops = 1;
  counters.write_bytes = 100;
  meter.Record(owner, counters);
  flaky->fail = true;
  EXPECT_FALSE(meter.Flush().ok());
  EXPECT_EQ(meter.flush_errors(), 2);  // hour and month buckets
  EXPECT_EQ(meter.pending(), 2u);
  meter.Record(owner, counters);
  EXPECT_EQ(meter.Current(owner, driver::UsagePeriod::kMonth)->write_bytes, 200);
  flaky->fail = false;
  EXPECT_TRUE(meter.Flush().ok());
  EXPECT_EQ(meter.pending(), 0u);
  auto stored = (*usage)->ReadUsage(owner, driver::UsagePeriod::kHour, clock.NowMillis());
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->write_ops, 2);
  EXPECT_EQ(stored->write_bytes, 200);
  EXPECT_EQ(meter.Current(owner, driver::UsagePeriod::kMonth)->write_bytes, 200);
}

// A lookup service whose first `failures` writes fail with Unavailable.
class FlakyLookup : public driver::LookupServiceWrapper {
 public:
  using LookupServiceWrapper::LookupServiceWrapper;
  Status WriteRecords(const driver::InstanceInfo& instance,
                      std::span<const driver::Record> records) override {
    if (failures.fetch_sub(1) > 0) return Unavailable("injected lookup failure");
    return LookupServiceWrapper::WriteRecords(instance, records);
  }
  std::atomic<int> failures{0};
};

TEST_F(PartsWithDriversTest, WorkersDropPoisonAndDeletedInstancesAndRetryStoreFailures) {
  auto queue = registry_.MakeMessageQueue("embedded", {{"poll_interval_ms", "5"}}, context_);
  auto lookup = registry_.MakeLookupService("embedded", {}, context_);
  auto warehouse = registry_.MakeWarehouseService("mock", {}, context_);
  ASSERT_TRUE(queue.ok() && lookup.ok() && warehouse.ok());
  auto flaky = std::make_shared<FlakyLookup>(*lookup);
  flaky->failures = 2;
  auto catalog = OpenSqliteCatalog(":memory:");
  ASSERT_TRUE(catalog.ok());
  ASSERT_TRUE((*catalog)->CreateProject("p").ok());
  TableSpec spec;
  spec.name = "t";
  spec.schema_json = R"({"type":"record","name":"R","fields":[{"name":"k","type":"string"}]})";
  spec.key = {"k"};
  auto table = (*catalog)->CreateTable("p", spec);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_TRUE(flaky->RegisterInstance(table->primary).ok());

  ASSERT_TRUE((*queue)->RegisterTopic(kWritesTopic).ok());
  ASSERT_TRUE((*queue)->RegisterTopic(kWriteReportsTopic).ok());
  EngineMetrics metrics;
  WriteWaiters waiters;
  SubscriptionHub hub;
  ReportListener reports(queue->get(), &waiters, &hub, &metrics);
  ASSERT_TRUE(reports.Start().ok());
  std::atomic<int> notified{0};
  auto listener = hub.Listen(table->primary.instance_id, [&] { ++notified; });
  WorkerPool workers({queue->get(), catalog->get(), flaky.get(), warehouse->get(), &metrics});
  ASSERT_TRUE(workers.Start(2).ok());

  WriteMessage gone;
  gone.write_id = std::string(16, 'g');
  gone.instance_id = Uuid::Random();
  gone.records.push_back({"\x02x\x00", "\x02x", 1, -1});
  WriteMessage good;
  good.write_id = std::string(16, 'o');
  good.instance_id = table->primary.instance_id;
  good.records.push_back({std::string("\x02" "a\x00", 3), "\x02" "a", 5, -1});
  auto waiter = waiters.Register(good.write_id, 1, kStoreLog | kStoreIndex | kStoreWarehouse);
  std::string poison = "\x01 this is not a write message";
  std::string gone_data = EncodeWriteMessage(gone), good_data = EncodeWriteMessage(good);
  std::vector<driver::OutgoingMessage> outgoing = {{poison, {}}, {gone_data, {}}, {good_data, {}}};
  ASSERT_TRUE((*queue)->Publish(kWritesTopic, outgoing).ok());

  EXPECT_TRUE(waiters.Wait(waiter.get(), std::chrono::seconds(20)));
  for (int attempt = 0; attempt < 400 && metrics.messages_processed < 3; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  workers.Stop();
  reports.Stop();
  EXPECT_EQ(metrics.messages_processed, 3);
  EXPECT_EQ(metrics.messages_dropped, 2);
  EXPECT_GE(metrics.worker_errors, 2);
  EXPECT_EQ(metrics.records_index, 1);
  EXPECT_GE(notified, 1);

  driver::QueryRequest request;
  request.kind = driver::QueryKind::kLog;
  auto cursors = (*lookup)->Query(table->primary, request);
  ASSERT_TRUE(cursors.ok());
  auto read = (*lookup)->ReadCursor(table->primary, cursors->replay, {}, {});
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->records.size(), 1u);  // written once despite two failed attempts
  EXPECT_EQ(read->records[0].timestamp_ms, 5);
}

}  // namespace
}  // namespace aquifer::engine
