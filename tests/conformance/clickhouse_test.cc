// The warehouse conformance suite on the ClickHouse driver, against the
// server that scripts/peers/clickhouse starts (AQUIFER_TEST_CLICKHOUSE;
// without it every test fails and says how to start one). Each test gets a
// database of its own, named after its scratch directory, so a reopen finds
// the same data and parallel tests never meet.

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "aquifer/base/clock.h"
#include "aquifer/driver/registry.h"
#include "aquifer/drivers/clickhouse/http.h"
#include "aquifer/drivers/clickhouse/warehouse.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& ClickHouseRegistry() { return RegistryOf<drivers::clickhouse::Register>(); }

Result<driver::Config> TestConfig(const std::string& name) {
  const char* endpoint = std::getenv("AQUIFER_TEST_CLICKHOUSE");
  if (endpoint == nullptr || *endpoint == '\0') {
    return FailedPrecondition(
        "AQUIFER_TEST_CLICKHOUSE is not set: start a server with "
        "`eval \"$(bash scripts/peers/clickhouse start)\"` (and stop it with `bash scripts/peers/clickhouse stop`)");
  }
  std::string database = "t_";
  for (char c : name) database.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return driver::Config{{"endpoint", endpoint}, {"database", database}};
}

// ClickHouse 18.16 spells an array's length `length(a)` and a field of a
// named tuple `tupleElement(t, 'f')` (`t.f` is not known there).
WarehouseDriverFactory ClickHouseWarehouse() {
  WarehouseDriverFactory factory;
  factory.name = "clickhouse";
  factory.make = MakeFromRegistry(ClickHouseRegistry(), "clickhouse", [](const std::string& dir) {
    return TestConfig(std::filesystem::path(dir).filename().string());
  });
  factory.array_length = [](const std::string& column) { return "length(" + column + ")"; };
  factory.nested_field = [](const std::string& column, const std::string& field) {
    return "tupleElement(" + column + ", '" + field + "')";
  };
  return factory;
}

INSTANTIATE_TEST_SUITE_P(ClickHouse, WarehouseConformance, ::testing::Values(ClickHouseWarehouse()),
                         WarehouseDriverName);

std::string UniqueName() { return "ch-" + Uuid::Random().Hex().substr(0, 12); }

Result<std::shared_ptr<driver::WarehouseService>> OpenDriver(const std::string& name) {
  AQ_ASSIGN_OR_RETURN(driver::Config config, TestConfig(name));
  return ClickHouseRegistry().MakeWarehouseService("clickhouse", config, {});
}

// The group test bodies (warehouse_conformance.h).
TEST(ClickHouseWarehouse, ARetryCompletesAGroupStoredInPart) {
  auto warehouse = OpenDriver(UniqueName());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  ExpectARetryCompletesAGroupStoredInPart(**warehouse);
}

TEST(ClickHouseWarehouse, ConcurrentWritesOfOneGroupStoreItOnce) {
  auto warehouse = OpenDriver(UniqueName());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  ExpectConcurrentWritesOfOneGroupStoreItOnce(**warehouse);
}

// Every schema type lands in the ClickHouse column README.md names and comes
// back from a job as that column's JSON.
TEST(ClickHouseWarehouse, EverySchemaTypeRoundTrips) {
  auto warehouse = OpenDriver(UniqueName());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  // n_double: 2.5, not NaN.
  RichRecord rich;
  ASSERT_NO_FATAL_FAILURE(StoreRichRecord(**warehouse, schema::testing::RichRecordJson("2.5"), &rich));
  const std::string table = (*warehouse)->TableName(rich.instance);
  auto rows = RunJob(**warehouse, fmt::format(
      "SELECT id, seq, small, flag, price, blob, hash, color, uid, ts, items, tags, first_item, n_ts, n_long, "
      "n_string, n_matrix, n_items, famount, amount, n_bool, ratio FROM {}", table));
  ASSERT_EQ(rows.size(), 1u);
  const nlohmann::json& row = rows[0];
  using nlohmann::json;
  EXPECT_EQ(row[0], "o-1");
  EXPECT_EQ(row[1], 9007199254740993LL) << "Int64 exactly, beyond a double's 2^53";
  EXPECT_EQ(row[2], -5);
  EXPECT_EQ(row[3], 1) << "boolean as UInt8";
  EXPECT_EQ(row[4], -0.25);
  EXPECT_EQ(row[5], "AAEC/w==");
  EXPECT_EQ(row[6], "3q2+7w==");
  EXPECT_EQ(row[7], "GREEN");
  EXPECT_EQ(row[8], "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(row[9], 1700000000123) << "timestamp-millis as epoch milliseconds";
  EXPECT_EQ(json::parse(row[10].get<std::string>()),
            json::parse(R"([{"sku": "a\"b", "qty": 2, "price": null}, {"sku": "c", "qty": 3, "price": 4.5}])"))
      << "an array of records is kept as its JSON";
  EXPECT_EQ(row[11], json::parse(R"(["x", null])")) << "Array(Nullable(String))";
  EXPECT_EQ(json::parse(row[12].get<std::string>()), json::parse(R"({"sku": "f", "qty": 1, "price": 2.0})"))
      << "a nullable record is kept as its JSON";
  EXPECT_EQ(row[13], -1);
  EXPECT_TRUE(row[14].is_null());
  EXPECT_EQ(row[15], "\u00e9\n\t\\");
  EXPECT_EQ(json::parse(row[16].get<std::string>()), json::parse("[[1, 2], [], [3]]"));
  EXPECT_EQ(json::parse(row[17].get<std::string>()), json::array());
  EXPECT_EQ(row[18], "12.50") << "decimals keep their exact text";
  EXPECT_EQ(row[19], "-12345.6789");
  EXPECT_EQ(row[20], 0);
  EXPECT_EQ(row[21], 1.5);
  ASSERT_TRUE((*warehouse)->Reset().ok());
}

// A record column (a named Tuple) comes back as an object of its fields,
// in jobs and in RunSmall, which answers a small query at once within its
// limits.
TEST(ClickHouseWarehouse, RecordsComeBackAsObjectsAndRunSmallAnswersWithinItsLimits) {
  auto warehouse = OpenDriver(UniqueName());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  auto schema = schema::Schema::Parse(R"json({"type": "record", "name": "E", "fields": [
      {"name": "id", "type": "long"},
      {"name": "location", "type": {"type": "record", "name": "L", "fields": [
        {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "int"]}]}},
      {"name": "tags", "type": {"type": "array", "items": "string"}}]})json", {"id"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  driver::InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.schema = *schema;
  ASSERT_TRUE((*warehouse)->RegisterInstance(instance).ok());
  std::vector<driver::Record> records;
  for (int id = 0; id < 3; ++id) {
    auto value = schema::ParseJsonRecord(**schema, fmt::format(R"({{"id": {}, "location": {{"city": "c{}", "zip": {}}},
        "tags": ["a", "b"]}})", id, id, id == 1 ? "null" : std::to_string(1000 + id)));
    ASSERT_TRUE(value.ok()) << value.status().ToString();
    driver::Record record;
    ASSERT_TRUE(schema::EncodeAvro(**schema, *value, &record.avro).ok());
    record.key = *keys::EncodeKey(**schema, *value);
    record.timestamp_ms = 1'700'000'000'000 + id;
    records.push_back(std::move(record));
  }
  ASSERT_TRUE((*warehouse)->WriteToWarehouse(instance, records, {}).ok());
  const std::string table = (*warehouse)->TableName(instance);
  const std::string sql = "SELECT id, location, tags FROM " + table + " ORDER BY id";
  auto rows = RunJob(**warehouse, sql);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], nlohmann::json::parse(R"([0, {"city": "c0", "zip": 1000}, ["a", "b"]])"));
  EXPECT_EQ(rows[1], nlohmann::json::parse(R"([1, {"city": "c1", "zip": null}, ["a", "b"]])"));

  driver::SmallQueryLimits limits;
  auto small = (*warehouse)->RunSmall(sql, limits);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  ASSERT_EQ(small->rows.size(), 3u);
  ASSERT_EQ(small->columns.size(), 3u);
  EXPECT_EQ(small->columns[1].name, "location");
  EXPECT_EQ(nlohmann::json::parse(small->rows[0]), rows[0]);
  limits.max_rows = 2;
  EXPECT_EQ((*warehouse)->RunSmall(sql, limits).status().code(), StatusCode::kTooLarge);
  limits.max_rows = 1000;
  limits.max_bytes = 10;
  EXPECT_EQ((*warehouse)->RunSmall(sql, limits).status().code(), StatusCode::kTooLarge);
  limits.max_bytes = 1 << 20;
  EXPECT_EQ((*warehouse)->RunSmall("SELECT no_such FROM " + table, limits).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ((*warehouse)->RunSmall("SELECT CAST(tupleElement(location, 'city') AS INTEGER) FROM " + table, limits)
                .status().code(),
            StatusCode::kInvalidArgument) << "a run-time error";
  EXPECT_EQ((*warehouse)->RunSmall("DROP TABLE " + table, limits).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*warehouse)->CountStoredRows(instance).value_or(-1), 3);
  ASSERT_TRUE((*warehouse)->Reset().ok());
}

// A done job's rows expire result_ttl_ms after it finished (by the driver's
// clock): a later job drops the expired result table from the server,
// ReadJobRows says the rows expired, PollJob still says done.
TEST(ClickHouseWarehouse, ExpiredJobResultsAreRefusedAndTheirTablesDropped) {
  const std::string name = UniqueName();
  auto config = TestConfig(name);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ManualClock clock(1'700'000'000'000);
  driver::DriverContext context;
  context.clock = &clock;
  auto warehouse = ClickHouseRegistry().MakeWarehouseService("clickhouse", *config, context);
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  const Uuid id = Uuid::Random();
  driver::JobOptions options;
  options.result_ttl_ms = 1000;
  ASSERT_TRUE((*warehouse)->StartQuery(id, "SELECT 1 AS one", options).ok());
  const driver::Job job = WaitForJob(**warehouse, id);
  ASSERT_EQ(job.status, driver::JobStatus::kDone) << job.error;
  ASSERT_TRUE((*warehouse)->ReadJobRows(id, "", 10).ok());
  drivers::clickhouse::HttpClient http({.endpoint = config->at("endpoint")});
  const std::string exists = "EXISTS TABLE `" + config->at("database") + "`.`j_" + id.Hex() + "`";
  EXPECT_EQ(http.Query(exists).value_or(""), "1\n");
  clock.Advance(61'000'000);  // 61 s: past the ttl and the sweep's minute
  // Another job sweeps the expired result table away.
  auto rows = RunJob(**warehouse, "SELECT 2");
  EXPECT_EQ(rows.size(), 1u);
  EXPECT_EQ(http.Query(exists).value_or(""), "0\n");
  EXPECT_EQ((*warehouse)->ReadJobRows(id, "", 10).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*warehouse)->PollJob(id).value_or(driver::Job{}).status, driver::JobStatus::kDone);
  ASSERT_TRUE((*warehouse)->Reset().ok());
}

TEST(ClickHouseWarehouse, OptionsAreChecked) {
  using drivers::clickhouse::ParseWarehouseOptions;
  EXPECT_EQ(ParseWarehouseOptions({}).status().code(), StatusCode::kInvalidArgument) << "endpoint is required";
  EXPECT_EQ(ParseWarehouseOptions({{"endpoint", "ftp://x"}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseWarehouseOptions({{"endpoint", "http://127.0.0.1:1"}, {"database", "no-dashes"}}).status().code(),
            StatusCode::kInvalidArgument);
  auto parsed = ParseWarehouseOptions({{"endpoint", "http://127.0.0.1:1"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->database, "aquifer");
  EXPECT_EQ(parsed->http.user, "default");
}

// A driver on a given clock, sharing the database of `name` with the others
// opened on it: as drivers in separate processes would.
Result<std::shared_ptr<driver::WarehouseService>> OpenDriverOn(const std::string& name, Clock* clock,
                                                              const driver::Config& extra = {}) {
  AQ_ASSIGN_OR_RETURN(driver::Config config, TestConfig(name));
  for (const auto& [key, value] : extra) config[key] = value;
  driver::DriverContext context;
  context.clock = clock;
  return ClickHouseRegistry().MakeWarehouseService("clickhouse", config, context);
}

// Rows of the instance's table: all, and distinct by (key, group, seq).
std::pair<int64_t, int64_t> RowsAndDistinctRows(const driver::Config& config, const std::string& table) {
  drivers::clickhouse::HttpClient http({.endpoint = config.at("endpoint")});
  auto answer = http.Query("SELECT count(), uniqExact(__key, __group, __seq) FROM " + table + " FORMAT TSV");
  EXPECT_TRUE(answer.ok()) << answer.status().ToString();
  int64_t rows = -1, distinct = -1;
  std::sscanf(answer.value_or("").c_str(), "%ld\t%ld", &rows, &distinct);
  return {rows, distinct};
}

// A driver on a database of its own, with an instance of IdInstance() registered.
struct OneDriver {
  driver::Config config;
  std::shared_ptr<driver::WarehouseService> warehouse;
  driver::InstanceInfo instance = IdInstance();
};
void OpenOneDriver(OneDriver* one) {
  const std::string name = UniqueName();
  auto config = TestConfig(name);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  one->config = *config;
  auto warehouse = OpenDriver(name);
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  one->warehouse = *warehouse;
  ASSERT_TRUE(one->warehouse->RegisterInstance(one->instance).ok());
}

// Two drivers (as two worker processes would) writing the same group at
// the same moment store it once: the later claim waits for the earlier
// (Unavailable, retried as the engine retries), and a writer that raced
// anyway removes the copy before it returns.
TEST(ClickHouseWarehouse, TwoDriversWritingOneGroupAtOnceStoreItOnce) {
  const std::string name = UniqueName();
  auto config = TestConfig(name);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto first = OpenDriverOn(name, Clock::System());
  auto second = OpenDriverOn(name, Clock::System());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  driver::InstanceInfo instance = IdInstance();
  ASSERT_TRUE((*first)->RegisterInstance(instance).ok());
  constexpr int kRounds = 12;
  constexpr int64_t kPerGroup = 50;
  std::atomic<int> waited{0}, failures{0};
  for (int round = 0; round < kRounds; ++round) {
    const std::vector<driver::Record> records = IdRecords(round * kPerGroup, kPerGroup);
    const std::vector<driver::RecordGroup> groups{{fmt::format("G{}", round), static_cast<size_t>(kPerGroup)}};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (driver::WarehouseService* writer : {first->get(), second->get()}) {
      threads.emplace_back([&, writer] {
        while (!go.load()) std::this_thread::yield();
        for (int attempt = 0; attempt < 500; ++attempt) {
          Status written = writer->WriteToWarehouse(instance, records, groups);
          if (written.ok()) return;
          if (written.code() != StatusCode::kUnavailable) {
            ADD_FAILURE() << written.ToString();
            break;
          }
          ++waited;
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        ++failures;
      });
    }
    go = true;
    for (auto& thread : threads) thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
  const auto [rows, distinct] = RowsAndDistinctRows(*config, (*first)->TableName(instance));
  EXPECT_EQ(distinct, kRounds * kPerGroup);
  EXPECT_EQ(rows, kRounds * kPerGroup) << "every row stored once";
  std::cout << "writes that waited for the other driver's claim: " << waited.load() << "\n";
  ASSERT_TRUE((*first)->Reset().ok());
}

// A writer that stopped half way through a group (its claim stays, part of
// the group stored) holds the group off other writers until its claim
// lapses (group_claim_ms by their clock); then the next writer completes it.
TEST(ClickHouseWarehouse, AGroupLeftHalfWrittenIsCompletedWhenItsWritersClaimLapses) {
  const std::string name = UniqueName();
  auto config = TestConfig(name);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ManualClock stopped_clock(1'700'000'000'000), next_clock(1'700'000'000'000);
  auto stopped = OpenDriverOn(name, &stopped_clock, {{"group_claim_ms", "10000"}});
  auto next = OpenDriverOn(name, &next_clock, {{"group_claim_ms", "10000"}});
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  driver::InstanceInfo instance = IdInstance();
  ASSERT_TRUE((*stopped)->RegisterInstance(instance).ok());
  const std::vector<driver::Record> all = IdRecords(0, 5);
  const std::vector<driver::Record> part(all.begin(), all.begin() + 3);
  ASSERT_TRUE((*stopped)->WriteToWarehouse(instance, part, std::vector<driver::RecordGroup>{{"G", 3}}).ok());
  // The same group, whole, from another driver: held off while the claim holds.
  next_clock.Advance(9'000'000);  // µs: 9 s
  Status held = (*next)->WriteToWarehouse(instance, all, std::vector<driver::RecordGroup>{{"G", 5}});
  EXPECT_EQ(held.code(), StatusCode::kUnavailable) << held.ToString();
  EXPECT_NE(held.message().find("another writer"), std::string::npos) << held.ToString();
  EXPECT_EQ(RowsAndDistinctRows(*config, (*next)->TableName(instance)).first, 3) << "nothing written while held";
  next_clock.Advance(2'000'000);  // 11 s after the first claim: lapsed
  Status completed = (*next)->WriteToWarehouse(instance, all, std::vector<driver::RecordGroup>{{"G", 5}});
  ASSERT_TRUE(completed.ok()) << completed.ToString();
  auto rows = RunJob(**next, "SELECT id FROM " + (*next)->TableName(instance) + " ORDER BY id");
  std::vector<int64_t> ids;
  for (const auto& row : rows) ids.push_back(row[0].get<int64_t>());
  EXPECT_EQ(ids, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  // A finished group is skipped at once, whoever claimed it last.
  EXPECT_TRUE((*stopped)->WriteToWarehouse(instance, all, std::vector<driver::RecordGroup>{{"G", 5}}).ok());
  EXPECT_EQ(RowsAndDistinctRows(*config, (*next)->TableName(instance)).first, 5);
  ASSERT_TRUE((*next)->Reset().ok());
}

// Rows written without groups are never folded together, even when equal.
TEST(ClickHouseWarehouse, EqualRowsWrittenWithoutGroupsAreKeptApart) {
  OneDriver one;
  ASSERT_NO_FATAL_FAILURE(OpenOneDriver(&one));
  auto& [config, warehouse, instance] = one;
  const std::vector<driver::Record> records = IdRecords(0, 3);
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(warehouse->WriteToWarehouse(instance, records, {}).ok());
  drivers::clickhouse::HttpClient http({.endpoint = config.at("endpoint")});
  ASSERT_TRUE(http.Query("OPTIMIZE TABLE " + warehouse->TableName(instance) + " FINAL").ok());
  EXPECT_EQ(RowsAndDistinctRows(config, warehouse->TableName(instance)).first, 6);
  ASSERT_TRUE(warehouse->Reset().ok());
}

// A job whose driver stopped (no heartbeat in `__aq_jobs` for 6 heartbeats
// by the reader's clock) is reported failed by another driver, not running
// forever; while the heartbeat is recent it is running.
TEST(ClickHouseWarehouse, AJobWhoseDriverStoppedIsReportedFailed) {
  const std::string name = UniqueName();
  ManualClock owner_clock(1'700'000'000'000), reader_clock(1'700'000'000'000);
  auto owner = OpenDriverOn(name, &owner_clock, {{"job_heartbeat_ms", "1000"}});
  auto reader = OpenDriverOn(name, &reader_clock, {{"job_heartbeat_ms", "1000"}});
  ASSERT_TRUE(owner.ok()) << owner.status().ToString();
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  const Uuid id = Uuid::Random();
  driver::JobOptions options;
  options.timeout_ms = 20'000;
  ASSERT_TRUE((*owner)->StartQuery(id, "SELECT count() FROM system.numbers", options).ok());
  reader_clock.Advance(5'000'000);  // µs: 5 s
  auto polled = (*reader)->PollJob(id);
  ASSERT_TRUE(polled.ok()) << polled.status().ToString();
  EXPECT_TRUE(polled->status == driver::JobStatus::kPending || polled->status == driver::JobStatus::kRunning)
      << driver::JobStatusName(polled->status) << ": " << polled->error;
  reader_clock.Advance(2'000'000);  // 7 s after the owner's last heartbeat (its clock stands still)
  polled = (*reader)->PollJob(id);
  ASSERT_TRUE(polled.ok()) << polled.status().ToString();
  EXPECT_EQ(polled->status, driver::JobStatus::kFailed);
  EXPECT_NE(polled->error.find("no heartbeat"), std::string::npos) << polled->error;
  EXPECT_EQ((*reader)->ReadJobRows(id, "", 10).status().code(), StatusCode::kFailedPrecondition);
  // The owner is alive here (a real stopped process runs nothing more): its
  // query may have started after the reader's KILL QUERY. Stopping the owner
  // kills it, so the database can be dropped.
  owner->reset();
  ASSERT_TRUE((*reader)->Reset().ok());
}

// Rows stream to the server while they convert: a record that fails to
// convert cuts the INSERT's body off, and the server stores none of it
// (on the converting thread of large writes and inline for small ones).
TEST(ClickHouseWarehouse, ARecordThatFailsToConvertStoresNothingOfItsWrite) {
  OneDriver one;
  ASSERT_NO_FATAL_FAILURE(OpenOneDriver(&one));
  auto& [config, warehouse, instance] = one;
  for (int64_t count : {10, 5000}) {
    std::vector<driver::Record> records = IdRecords(0, count);
    records[count * 7 / 10].avro = std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 11);  // no valid long
    Status written = warehouse->WriteToWarehouse(instance, records, std::vector<driver::RecordGroup>{
                                                                           {"G" + std::to_string(count), records.size()}});
    EXPECT_FALSE(written.ok()) << count << " records";
    EXPECT_NE(written.message().find(fmt::format("record {}", count * 7 / 10)), std::string::npos) << written.ToString();
    EXPECT_EQ(RowsAndDistinctRows(config, warehouse->TableName(instance)).first, 0) << count << " records";
  }
  // The same rows, all good, go in whole.
  ASSERT_TRUE(warehouse->WriteToWarehouse(instance, IdRecords(0, 5000), {}).ok());
  EXPECT_EQ(RowsAndDistinctRows(config, warehouse->TableName(instance)).first, 5000);
  ASSERT_TRUE(warehouse->Reset().ok());
}

// Group claims are kept applied_window_ms, in day partitions: a write more
// than a window later drops the days wholly older than it.
TEST(ClickHouseWarehouse, GroupClaimsOlderThanTheWindowAreDropped) {
  const std::string name = UniqueName();
  auto config = TestConfig(name);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ManualClock clock(1'700'000'000'000);  // 2023-11-14
  auto warehouse = OpenDriverOn(name, &clock, {{"applied_window_ms", "86400000"}});  // a day
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  driver::InstanceInfo instance = IdInstance();
  instance.warehouse_retention_ms = 0;
  ASSERT_TRUE((*warehouse)->RegisterInstance(instance).ok());
  drivers::clickhouse::HttpClient http({.endpoint = config->at("endpoint")});
  const std::string days = "SELECT groupUniqArray(partition) FROM system.parts WHERE active AND database = '" +
                           config->at("database") + "' AND table = '__aq_groups' FORMAT TSV";
  ASSERT_TRUE((*warehouse)->WriteToWarehouse(instance, IdRecords(0, 2), std::vector<driver::RecordGroup>{{"A", 2}}).ok());
  EXPECT_EQ(http.Query(days).value_or(""), "['20231114']\n");
  clock.Advance(int64_t{2} * 86'400'000'000);  // µs: two days on: the sweep runs (at most once an hour)
  ASSERT_TRUE((*warehouse)->WriteToWarehouse(instance, IdRecords(2, 2), std::vector<driver::RecordGroup>{{"B", 2}}).ok());
  EXPECT_EQ(http.Query(days).value_or(""), "['20231116']\n") << "the first day's claims are gone";
  ASSERT_TRUE((*warehouse)->Reset().ok());
}

TEST(ClickHouseWarehouse, ClaimAndHeartbeatOptionsAreChecked) {
  using drivers::clickhouse::ParseWarehouseOptions;
  const driver::Config base = {{"endpoint", "http://127.0.0.1:1"}};
  auto with = [&](const std::string& key, const std::string& value) {
    driver::Config config = base;
    config[key] = value;
    return ParseWarehouseOptions(config).status().code();
  };
  EXPECT_EQ(with("group_claim_ms", "0"), StatusCode::kInvalidArgument);
  EXPECT_EQ(with("group_claim_ms", "3600001"), StatusCode::kInvalidArgument);
  EXPECT_EQ(with("job_heartbeat_ms", "-1"), StatusCode::kInvalidArgument);
  EXPECT_EQ(with("applied_window_ms", "x"), StatusCode::kInvalidArgument);
  EXPECT_EQ(with("max_records_in_batch", "1000001"), StatusCode::kInvalidArgument);
  auto parsed = ParseWarehouseOptions(base);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->group_claim_ms, 60'000);
  EXPECT_EQ(parsed->job_heartbeat_ms, 5'000);
  EXPECT_EQ(parsed->applied_window_ms, driver::kDefaultAppliedWindowMs);
}

}  // namespace
}  // namespace aquifer::conformance
