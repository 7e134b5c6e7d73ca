// The engine's parts on their own: wire formats, body splitting, waiters,
// the subscription hub, the usage meter and the worker pool (over the real
// embedded drivers, with wrappers injecting failures).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>
#include <utility>

#include "aquifer/driver/registry.h"
#include "aquifer/driver/wrappers.h"
#include "aquifer/drivers/builtin.h"
#include "aquifer/engine/catalog.h"
#include "aquifer/engine/health.h"
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

// Issue 10 goal 2: a paced warehouse consumer (worker.cc Run) waits in
// AwaitWarehouseWaiter; a writer waiting for the warehouse, registered before
// or during the wait, ends it, and so does a stop.
TEST(WritePipelineTest, AWarehouseWaiterOrAStopEndsAPacedConsumersWait) {
  WriteWaiters waiters;
  const auto never = [] { return false; };
  const auto far = std::chrono::steady_clock::now() + std::chrono::hours(1);
  EXPECT_FALSE(waiters.AwaitWarehouseWaiter(std::chrono::steady_clock::now(), never));
  auto index_only = waiters.Register("i", 1, kStoreIndex);
  EXPECT_EQ(waiters.warehouse_waiters(), 0);
  EXPECT_FALSE(waiters.AwaitWarehouseWaiter(std::chrono::steady_clock::now(), never));
  auto both = waiters.Register("w", 1, kStoreIndex | kStoreWarehouse);
  auto again = waiters.Register("w", 1, kStoreWarehouse);  // the same write id again: counted once
  EXPECT_EQ(waiters.warehouse_waiters(), 1);
  EXPECT_TRUE(waiters.AwaitWarehouseWaiter(far, never)) << "a waiter for the warehouse ends the wait at once";
  waiters.Unregister("w");
  waiters.Unregister("w");  // gone already: nothing to count down
  waiters.Unregister("i");
  EXPECT_EQ(waiters.warehouse_waiters(), 0);

  std::atomic<bool> woke{false};
  std::thread consumer([&] { woke = waiters.AwaitWarehouseWaiter(far, never); });
  auto late = waiters.Register("late", 1, kStoreWarehouse);
  consumer.join();  // an hour (the test's timeout) if the registration did not wake it
  EXPECT_TRUE(woke.load());
  waiters.Unregister("late");

  std::atomic<bool> stop{false};
  woke = true;
  std::thread stopped([&] { woke = waiters.AwaitWarehouseWaiter(far, [&] { return stop.load(); }); });
  stop = true;
  waiters.WakeWarehouseWait();
  stopped.join();
  EXPECT_FALSE(woke.load()) << "a stop is not a waiter";
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
  Status WriteRecords(const driver::InstanceInfo& instance, std::span<const driver::Record> records,
                      std::span<const driver::RecordGroup> groups) override {
    if (failures.fetch_sub(1) > 0) return Unavailable("injected lookup failure");
    return LookupServiceWrapper::WriteRecords(instance, records, groups);
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
  ASSERT_TRUE((*queue)->RegisterTopic(kDeadLettersTopic).ok());
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
  for (int attempt = 0; attempt < 400 && metrics.MessagesProcessed() < 3; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  workers.Stop();
  reports.Stop();
  EXPECT_EQ(metrics.MessagesProcessed(), 3);
  EXPECT_EQ(metrics.messages_dropped, 1);        // the deleted instance's
  EXPECT_EQ(metrics.messages_dead_lettered, 1);  // the undecodable one, kept for an operator
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

// --- Workers: exactly once, dead letters, damaged storage, deleted tables -----------------

// A warehouse whose writes fail with `code` while `failures` > 0 (counting
// down), or always for records whose key is `poison_key`.
class FlakyWarehouse : public driver::WarehouseServiceWrapper {
 public:
  using WarehouseServiceWrapper::WarehouseServiceWrapper;
  Status WriteToWarehouse(const driver::InstanceInfo& instance,
                          std::span<const driver::Record> records,
                          std::span<const driver::RecordGroup> groups) override {
    ++calls;
    for (const auto& record : records) {
      if (!poison_key.empty() && record.key == poison_key) return Internal("injected: poison");
    }
    if (failures.fetch_sub(1) > 0) return Status(code, "injected warehouse failure");
    return WarehouseServiceWrapper::WriteToWarehouse(instance, records, groups);
  }
  std::atomic<int> failures{0};
  std::atomic<int> calls{0};
  StatusCode code = StatusCode::kUnavailable;
  std::string poison_key;
};

// A lookup service that fails with `code` while `fail` is set, and can run a
// hook (once) before its next write.
class ScriptedLookup : public driver::LookupServiceWrapper {
 public:
  using LookupServiceWrapper::LookupServiceWrapper;
  Status WriteRecords(const driver::InstanceInfo& instance, std::span<const driver::Record> records,
                      std::span<const driver::RecordGroup> groups) override {
    if (before_write) std::exchange(before_write, nullptr)();
    if (fail) return Status(code, message);
    return LookupServiceWrapper::WriteRecords(instance, records, groups);
  }
  std::atomic<bool> fail{false};
  StatusCode code = StatusCode::kCorruption;
  std::string message = "injected: block checksum mismatch";
  std::function<void()> before_write;  // set before the workers start
};

// One table "p.t" over the embedded queue and lookup, a worker pool and the
// operators' dead-letter subscription.
class WorkerTest : public PartsWithDriversTest {
 protected:
  void SetUpStores(const std::string& warehouse_name = "mock", bool reports_topic = true) {
    auto queue = registry_.MakeMessageQueue("embedded", {{"poll_interval_ms", "5"}}, context_);
    auto lookup = registry_.MakeLookupService("embedded", {}, context_);
    auto warehouse = registry_.MakeWarehouseService(warehouse_name, {}, context_);
    ASSERT_TRUE(queue.ok() && lookup.ok() && warehouse.ok());
    queue_ = *queue;
    lookup_ = *lookup;
    warehouse_ = *warehouse;
    lookup_wrapper_ = std::make_shared<ScriptedLookup>(lookup_);
    warehouse_wrapper_ = std::make_shared<FlakyWarehouse>(warehouse_);
    auto catalog = OpenSqliteCatalog(":memory:");
    ASSERT_TRUE(catalog.ok());
    catalog_ = std::move(*catalog);
    ASSERT_TRUE(catalog_->CreateProject("p").ok());
    TableSpec spec;
    spec.name = "t";
    spec.schema_json = R"({"type":"record","name":"R","fields":[{"name":"k","type":"string"}]})";
    spec.key = {"k"};
    auto table = catalog_->CreateTable("p", spec);
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    instance_ = table->primary;
    ASSERT_TRUE(lookup_->RegisterInstance(instance_).ok());
    for (auto topic : {kWritesTopic, kWriteReportsTopic, kDeadLettersTopic}) {
      if (topic == kWriteReportsTopic && !reports_topic) continue;  // report publishes then fail
      ASSERT_TRUE(queue_->RegisterTopic(topic).ok());
    }
    driver::SubscriptionOptions operators;
    operators.name = std::string(kOperatorsSubscription);
    auto dead = queue_->Subscribe(kDeadLettersTopic, operators);
    ASSERT_TRUE(dead.ok());
    dead_letters_ = std::move(*dead);
  }
  void StartWorkers(int32_t max_attempts = 10, WriteWaiters* waiters = nullptr,
                    SubscriptionHub* hub = nullptr, int64_t warehouse_write_interval_ms = 0) {
    WorkerDeps deps{queue_.get(), catalog_.get(), lookup_wrapper_.get(), warehouse_wrapper_.get(),
                    &metrics_};
    deps.waiters = waiters;
    deps.warehouse_write_interval_ms = warehouse_write_interval_ms;
    deps.hub = hub;
    deps.health = &health_;
    deps.max_delivery_attempts = max_attempts;
    deps.storage_retry_ms = 100;
    workers_ = std::make_unique<WorkerPool>(deps);
    ASSERT_TRUE(workers_->Start(2).ok());
  }
  void TearDown() override {
    if (workers_) workers_->Stop();
    workers_.reset();
    dead_letters_.reset();
    PartsWithDriversTest::TearDown();
  }

  // A message of p.t with one record per key (timestamps 1, 2, ...).
  WriteMessage Message(char id, std::vector<std::string> keys) {
    WriteMessage message;
    message.write_id = std::string(16, id);
    message.instance_id = instance_.instance_id;
    int64_t ts = 0;
    for (const auto& key : keys) {
      // Tuple key of one string and the Avro of {"k": key}.
      std::string avro(1, static_cast<char>(key.size() * 2));
      message.records.push_back({std::string("\x02") + key + std::string("\x00", 1), avro + key, ++ts, -1});
    }
    return message;
  }
  void Publish(const std::vector<WriteMessage>& messages) {
    std::vector<std::string> data;
    for (const auto& message : messages) data.push_back(EncodeWriteMessage(message));
    std::vector<driver::OutgoingMessage> outgoing;
    const std::string key(instance_.instance_id.AsBytes());
    for (const auto& bytes : data) outgoing.push_back({bytes, key});
    ASSERT_TRUE(queue_->Publish(kWritesTopic, outgoing).ok());
  }
  // Waits (up to 30 s) for `done` to hold.
  bool WaitFor(const std::function<bool()>& done) {
    for (int attempt = 0; attempt < 3000; ++attempt) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }
  std::vector<driver::Record> Log(driver::LookupService* lookup = nullptr) {
    driver::QueryRequest request;
    request.kind = driver::QueryKind::kLog;
    auto cursors = (lookup ? lookup : lookup_.get())->Query(instance_, request);
    EXPECT_TRUE(cursors.ok());
    if (!cursors.ok() || cursors->replay.empty()) return {};
    driver::ReadOptions options;
    options.limit = 1000;
    auto read = (lookup ? lookup : lookup_.get())->ReadCursor(instance_, cursors->replay, {}, options);
    EXPECT_TRUE(read.ok()) << read.status().ToString();
    return read.ok() ? read->records : std::vector<driver::Record>{};
  }
  std::vector<DeadLetter> DeadLetters() {
    std::vector<DeadLetter> letters;
    auto pulled = dead_letters_->Pull(100, 200);
    EXPECT_TRUE(pulled.ok());
    if (!pulled.ok()) return letters;
    for (const auto& message : *pulled) {
      auto letter = DecodeDeadLetter(message.data);
      EXPECT_TRUE(letter.ok()) << letter.status().ToString();
      if (letter.ok()) letters.push_back(*letter);
    }
    return letters;
  }
  int64_t Processed() { return metrics_.MessagesProcessed(); }
  // Rows of p.t in the DuckDB warehouse (-1 if the query failed).
  int64_t WarehouseRows() {
    auto job = warehouse_->StartQuery(Uuid::Random(), "SELECT k FROM " + warehouse_->TableName(instance_), {});
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    if (!job.ok()) return -1;
    bool done = WaitFor([&] {
      auto polled = warehouse_->PollJob(job->job_id);
      return polled.ok() && polled->status == driver::JobStatus::kDone;
    });
    return done ? warehouse_->PollJob(job->job_id)->rows : -1;
  }

  std::shared_ptr<driver::MessageQueue> queue_;
  std::shared_ptr<driver::LookupService> lookup_;
  std::shared_ptr<driver::WarehouseService> warehouse_;
  std::shared_ptr<ScriptedLookup> lookup_wrapper_;
  std::shared_ptr<FlakyWarehouse> warehouse_wrapper_;
  std::unique_ptr<Catalog> catalog_;
  driver::InstanceInfo instance_;
  std::unique_ptr<driver::Subscription> dead_letters_;
  EngineMetrics metrics_;
  WriteHealth health_;
  std::unique_ptr<WorkerPool> workers_;
};

// Issue 8 item 2: the lookup write succeeded, the warehouse failed; the
// redelivered messages must not reach the log again.
TEST_F(WorkerTest, AWarehouseFailureAfterTheLookupWriteDoesNotLogTheMessagesTwice) {
  SetUpStores();
  warehouse_wrapper_->failures = 3;
  StartWorkers();
  Publish({Message('a', {"a1", "a2"}), Message('b', {"b1"})});
  ASSERT_TRUE(WaitFor([&] { return Processed() == 2; }));
  EXPECT_GE(warehouse_wrapper_->calls, 4);
  std::vector<driver::Record> log = Log();
  ASSERT_EQ(log.size(), 3u) << "each message is logged once despite 3 warehouse failures";
  EXPECT_EQ(log[2].key, std::string("\x02" "b1\x00", 4));
  EXPECT_EQ(metrics_.messages_dead_lettered, 0);
}

// Issue 8 item 2: a warehouse that does not know the instance (it was never
// registered there) gets it registered again instead of a retry forever.
TEST_F(WorkerTest, AnInstanceTheWarehouseDoesNotKnowIsRegisteredAgainAndWritten) {
  SetUpStores("duckdb");  // instance_ is registered with the lookup only
  StartWorkers();
  Publish({Message('a', {"a1", "a2"})});
  ASSERT_TRUE(WaitFor([&] { return Processed() == 1; }));
  EXPECT_EQ(metrics_.instances_reregistered, 1);
  EXPECT_EQ(metrics_.messages_dead_lettered, 0);
  auto job = warehouse_->StartQuery(Uuid::Random(), "SELECT k FROM " + warehouse_->TableName(instance_), {});
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_TRUE(WaitFor([&] {
    auto polled = warehouse_->PollJob(job->job_id);
    return polled.ok() && polled->status == driver::JobStatus::kDone;
  }));
  EXPECT_EQ(warehouse_->PollJob(job->job_id)->rows, 2);
}

// Issue 8 item 2: a message still failing after the attempt limit is
// dead-lettered with its reason, and the table's later messages go on.
TEST_F(WorkerTest, AMessageFailingTooOftenIsDeadLetteredAndTheTableMovesOn) {
  SetUpStores();
  WriteMessage bad = Message('x', {"bad"});
  warehouse_wrapper_->poison_key = bad.records[0].key;
  StartWorkers(/*max_attempts=*/3);
  Publish({bad, Message('g', {"good"})});
  ASSERT_TRUE(WaitFor([&] { return Processed() == 2; }));
  EXPECT_EQ(metrics_.messages_dead_lettered, 1);
  std::vector<DeadLetter> letters = DeadLetters();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].store, "warehouse");
  EXPECT_THAT(letters[0].reason, HasSubstr("injected: poison"));
  EXPECT_EQ(letters[0].attempts, 3);
  EXPECT_EQ(letters[0].ordering_key, std::string(instance_.instance_id.AsBytes()));
  auto original = DecodeWriteMessage(letters[0].data);
  ASSERT_TRUE(original.ok());
  EXPECT_EQ(original->write_id, bad.write_id);
  // Both reached the log once: the bad one before its warehouse write failed.
  EXPECT_EQ(Log().size(), 2u);
}

// Issue 8 item 3: corruption in the lookup store stops the write path
// (health fails, nothing acked or dropped) until the store works again.
TEST_F(WorkerTest, LookupCorruptionFailsTheWritePathClosedAndKeepsTheMessage) {
  SetUpStores();
  lookup_wrapper_->fail = true;
  StartWorkers(/*max_attempts=*/2);
  Publish({Message('c', {"c1"})});
  ASSERT_TRUE(WaitFor([&] { return !health_.Check().ok() && metrics_.store_failures >= 2; }));
  EXPECT_THAT(health_.Check().message(), HasSubstr("lookup service"));
  EXPECT_THAT(health_.Check().message(), HasSubstr("checksum"));
  EXPECT_EQ(Processed(), 0);
  EXPECT_EQ(metrics_.messages_dropped, 0);
  EXPECT_EQ(metrics_.messages_dead_lettered, 0) << "damage is not the message's fault";
  lookup_wrapper_->fail = false;
  ASSERT_TRUE(WaitFor([&] { return Processed() == 1; }));
  EXPECT_TRUE(health_.Check().ok()) << health_.Check().ToString();
  EXPECT_EQ(Log().size(), 1u);
}

// Issue 8 item 3: a failed fsync is damage too, not a transient error: even
// with one delivery attempt allowed, the message is neither dead-lettered nor
// acked, and the write path stays failed closed.
TEST_F(WorkerTest, AFailedSyncFailsTheWritePathClosedInsteadOfDeadLettering) {
  SetUpStores();
  lookup_wrapper_->fail = true;
  lookup_wrapper_->code = StatusCode::kUnavailable;
  lookup_wrapper_->message = "writing records to x: rocksdb: IO error: While fsync: a file descriptor";
  StartWorkers(/*max_attempts=*/1);
  Publish({Message('s', {"s1"})});
  ASSERT_TRUE(WaitFor([&] { return metrics_.store_failures >= 2; }));
  EXPECT_THAT(health_.Check().message(), HasSubstr("fsync"));
  EXPECT_EQ(Processed(), 0);
  EXPECT_EQ(metrics_.messages_dead_lettered, 0);
  lookup_wrapper_->fail = false;
  ASSERT_TRUE(WaitFor([&] { return Processed() == 1; }));
  EXPECT_TRUE(health_.Check().ok());
  EXPECT_EQ(Log().size(), 1u);
}

// Issue 8 item 3: a record the lookup store calls invalid is kept as a dead
// letter, never dropped.
TEST_F(WorkerTest, ARecordTheLookupRefusesIsDeadLetteredNotDropped) {
  SetUpStores();
  lookup_wrapper_->fail = true;
  lookup_wrapper_->code = StatusCode::kInvalidArgument;
  lookup_wrapper_->message = "injected: key too large";
  StartWorkers();
  Publish({Message('i', {"i1"})});
  ASSERT_TRUE(WaitFor([&] { return Processed() == 1; }));
  EXPECT_EQ(metrics_.messages_dropped, 0);
  EXPECT_EQ(metrics_.messages_dead_lettered, 1);
  std::vector<DeadLetter> letters = DeadLetters();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].store, "lookup service");
  EXPECT_THAT(letters[0].reason, HasSubstr("key too large"));
  EXPECT_TRUE(health_.Check().ok());
}

// Issue 8 item 5: the table is deleted (catalog, then the stores' data)
// after the worker resolved its instance and before its write lands: the
// worker must remove what it wrote.
TEST_F(WorkerTest, AWriteLandingAfterTheTableWasDeletedIsRemoved) {
  SetUpStores();
  lookup_wrapper_->before_write = [&] {
    auto removed = catalog_->DeleteTable("p", "t");
    ASSERT_TRUE(removed.ok());
    ASSERT_TRUE(lookup_->RemoveInstance(instance_).ok());
    ASSERT_TRUE(warehouse_->RemoveInstance(instance_).ok());
    ASSERT_TRUE(catalog_->FinishRemoval(instance_.instance_id).ok());
  };
  StartWorkers();
  Publish({Message('d', {"d1", "d2"})});
  ASSERT_TRUE(WaitFor([&] { return Processed() == 1; }));
  EXPECT_TRUE(Log().empty()) << "rows of a deleted table were left behind";
  auto pending = catalog_->ListPendingRemovals();
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
}

// Issue 10: each store has its own consumers: while the lookup service is
// down, the warehouse applies and acks the messages (once: the lookup's
// retries never reach it), and the lookup catches up when it is back.
TEST_F(WorkerTest, AFailingLookupDoesNotHoldBackTheWarehouse) {
  SetUpStores("duckdb");
  ASSERT_TRUE(warehouse_->RegisterInstance(instance_).ok());
  lookup_wrapper_->code = StatusCode::kUnavailable;  // an outage: retried
  lookup_wrapper_->message = "injected: lookup unavailable";
  lookup_wrapper_->fail = true;
  StartWorkers();
  Publish({Message('a', {"a1", "a2"}), Message('b', {"b1"})});
  ASSERT_TRUE(WaitFor([&] { return metrics_.messages_processed_warehouse.load() == 2; }))
      << "the warehouse was held back by the failing lookup";
  EXPECT_EQ(WarehouseRows(), 3);
  EXPECT_EQ(Processed(), 0) << "the lookup has not applied them yet";
  ASSERT_TRUE(WaitFor([&] { return metrics_.store_outage_retries.load() >= 3; }));
  lookup_wrapper_->fail = false;
  ASSERT_TRUE(WaitFor([&] { return Processed() == 2; }));
  EXPECT_LE(warehouse_wrapper_->calls, 2) << "the lookup's retries reached the warehouse";
  EXPECT_EQ(WarehouseRows(), 3);
  EXPECT_EQ(Log().size(), 3u);
  EXPECT_EQ(metrics_.messages_dead_lettered, 0);
}

// Issue 10: a worker tells this process's waiters and hub of its writes
// directly: a `wait=` write completes although no report can reach the
// queue ("write-reports" is not registered here).
TEST_F(WorkerTest, AWorkerTellsItsOwnWaitersAndHubWithoutTheQueue) {
  SetUpStores("mock", /*reports_topic=*/false);
  WriteWaiters waiters;
  SubscriptionHub hub;
  std::atomic<int> notified{0};
  auto listener = hub.Listen(instance_.instance_id, [&] { ++notified; });
  WriteMessage message = Message('w', {"w1", "w2"});
  auto waiter = waiters.Register(message.write_id, 1, kStoreIndex | kStoreWarehouse);
  StartWorkers(10, &waiters, &hub);
  Publish({message});
  EXPECT_TRUE(waiters.Wait(waiter.get(), std::chrono::seconds(30)))
      << "the waiter heard of the index and warehouse writes";
  EXPECT_TRUE(WaitFor([&] { return notified.load() >= 1; })) << "the hub was notified of the log/index write";
  ASSERT_TRUE(WaitFor([&] { return Processed() == 1; }));
  waiters.Unregister(message.write_id);
  workers_->Stop();  // before `waiters` goes
}

// Issue 10 goal 2: with the gateway in the process (waiters), the
// warehouse's consumers write what trickled in together: after a pull, the
// next one waits for the interval (here ten minutes) unless a writer waits
// for the warehouse; the lookup's consumers are not paced; Stop ends the wait.
TEST_F(WorkerTest, PacedWarehouseConsumersWriteWhatTrickledInTogether) {
  SetUpStores("duckdb");
  ASSERT_TRUE(warehouse_->RegisterInstance(instance_).ok());
  WriteWaiters waiters;
  StartWorkers(10, &waiters, nullptr, /*warehouse_write_interval_ms=*/600'000);
  Publish({Message('a', {"a1"})});
  ASSERT_TRUE(WaitFor([&] { return metrics_.messages_processed_warehouse.load() == 1; }))
      << "the first write after an idle spell goes at once";
  Publish({Message('b', {"b1"})});
  Publish({Message('c', {"c1"})});
  WriteMessage d = Message('d', {"d1"});
  Publish({d});
  ASSERT_TRUE(WaitFor([&] { return metrics_.messages_processed_lookup.load() == 4; }))
      << "the lookup's consumers are not paced";
  EXPECT_EQ(metrics_.messages_processed_warehouse.load(), 1) << "a warehouse consumer pulled within the interval";
  EXPECT_EQ(warehouse_wrapper_->calls.load(), 1);
  auto waiter = waiters.Register(d.write_id, 1, kStoreWarehouse);
  EXPECT_TRUE(waiters.Wait(waiter.get(), std::chrono::seconds(30))) << "a wait=warehouse writer ends the pacing";
  waiters.Unregister(d.write_id);
  ASSERT_TRUE(WaitFor([&] { return metrics_.messages_processed_warehouse.load() == 4; }));
  EXPECT_EQ(warehouse_wrapper_->calls.load(), 2) << "b, c and d in one store write";
  EXPECT_EQ(WarehouseRows(), 4);
  EXPECT_EQ(metrics_.messages_dead_lettered, 0);
  workers_->Stop();  // ends the consumers' wait for the next interval (else: ten minutes)
}

}  // namespace
}  // namespace aquifer::engine
