// The conformance suites on the Postgres drivers, against the real server
// that scripts/peers/postgres starts (AQUIFER_TEST_POSTGRES; without it every
// test fails and says how to start one). Each test gets a schema of its own,
// named after its scratch directory, so a reopen finds the same data and
// parallel tests never meet.

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/postgres/register.h"
#include "aquifer/drivers/postgres/testing.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"
#include "lookup_conformance.h"
#include "message_queue_conformance.h"
#include "usage_conformance.h"
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& PostgresRegistry() { return RegistryOf<drivers::postgres::Register>(); }

Result<driver::Config> ConfigFor(const std::string& scratch_dir) {
  return drivers::postgres::testing::TestConfig(std::filesystem::path(scratch_dir).filename().string());
}

INSTANTIATE_TEST_SUITE_P(
    Postgres, UsageConformance,
    ::testing::Values(UsageDriverFactory{"postgres", [](const std::string& dir) -> Result<std::shared_ptr<driver::UsageService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      return PostgresRegistry().MakeUsageService("postgres", config, {});
    }}),
    UsageDriverFactoryName);

INSTANTIATE_TEST_SUITE_P(
    Postgres, LookupConformance,
    ::testing::Values(LookupDriverFactory{"postgres", [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::LookupService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      driver::DriverContext context;
      context.clock = clock;
      return PostgresRegistry().MakeLookupService("postgres", config, context);
    }}),
    LookupDriverFactoryName);

INSTANTIATE_TEST_SUITE_P(
    Postgres, MessageQueueConformance,
    ::testing::Values(MessageQueueFactory{
        "postgres", [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::MessageQueue>> {
          AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
          driver::DriverContext context;
          context.clock = clock;
          return PostgresRegistry().MakeMessageQueue("postgres", config, context);
        }}),
    MessageQueueFactoryName);

// Postgres spells an array's length `cardinality(a)` and a field of a jsonb
// record `(r->'f')`.
WarehouseDriverFactory PostgresWarehouse() {
  WarehouseDriverFactory factory;
  factory.name = "postgres";
  factory.make = MakeFromRegistry(PostgresRegistry(), "postgres", ConfigFor);
  factory.array_length = [](const std::string& column) { return "cardinality(" + column + ")"; };
  factory.nested_field = [](const std::string& column, const std::string& field) {
    return "(" + column + "->'" + field + "')";
  };
  return factory;
}

INSTANTIATE_TEST_SUITE_P(Postgres, WarehouseConformance, ::testing::Values(PostgresWarehouse()), WarehouseDriverName);

// Every schema type lands in an ordinary typed column that plain SQL (what a
// psql user types) reads as that type, and job results follow the codec's
// JSON conventions for the scalar types.
TEST(PostgresWarehouse, EverySchemaTypeIsAnOrdinaryTypedColumn) {
  ScratchDir scratch;
  auto config = ConfigFor(scratch.path());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto warehouse = PostgresRegistry().MakeWarehouseService("postgres", *config, {});
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  RichRecord rich;
  ASSERT_NO_FATAL_FAILURE(StoreRichRecord(**warehouse, schema::testing::RichRecordJson(), &rich));
  const std::string table = (*warehouse)->TableName(rich.instance);

  // The column types a psql user sees (\d).
  auto types = RunJob(**warehouse, fmt::format(
      "SELECT json_object_agg(attname, format_type(atttypid, atttypmod))::text FROM pg_attribute "
      "WHERE attrelid = '{}'::regclass AND attnum > 0", table));
  ASSERT_EQ(types.size(), 1u);
  nlohmann::json type_of = nlohmann::json::parse(types[0][0].get<std::string>());
  const std::map<std::string, std::string> expected_types = {
      {"id", "text"}, {"seq", "bigint"}, {"small", "integer"}, {"flag", "boolean"}, {"ratio", "real"},
      {"price", "double precision"}, {"blob", "bytea"}, {"hash", "bytea"}, {"color", "text"},
      {"amount", "numeric(38,4)"}, {"famount", "numeric(18,2)"}, {"uid", "uuid"},
      {"ts", "timestamp(3) with time zone"}, {"items", "jsonb"}, {"tags", "text[]"}, {"first_item", "jsonb"},
      {"n_matrix", "jsonb"}, {"n_ts", "timestamp(3) with time zone"}, {"__key", "bytea"},
      {"__timestamp", "timestamp(3) with time zone"}};
  for (const auto& [column, type] : expected_types) EXPECT_EQ(type_of[column], type) << column;

  // Values compared in SQL against literals of their own type.
  auto checks = RunJob(**warehouse, fmt::format(R"sql(
      SELECT seq = 9007199254740993, small = -5, flag, ratio = 1.5, price = -0.25,
             blob = '\x000102ff'::bytea, hash = '\xdeadbeef'::bytea, color = 'GREEN',
             amount = -12345.6789, famount = 12.50, uid = '00112233-4455-6677-8899-aabbccddeeff'::uuid,
             ts = '2023-11-14 22:13:20.123+00'::timestamptz, items->0->>'sku' = 'a"b',
             (items->1->>'price')::float8 = 4.5, tags = ARRAY['x', NULL]::text[],
             note IS NULL, n_ts = '1969-12-31 23:59:59.999+00'::timestamptz, n_long IS NULL,
             n_double = 'NaN'::float8, n_string = E'\u00e9\n\t\\', n_bytes = ''::bytea,
             (n_matrix->0->>1)::int = 2, jsonb_array_length(n_matrix) = 3, n_items = '[]'::jsonb,
             __timestamp = '2023-11-14 22:13:20.999+00'::timestamptz
      FROM {})sql", table));
  ASSERT_EQ(checks.size(), 1u);
  for (size_t check_idx = 0; check_idx < checks[0].size(); ++check_idx) {
    EXPECT_EQ(checks[0][check_idx], true) << "check " << check_idx << " of " << checks[0].dump();
  }

  // Job results: timestamps as ms, bytes as base64, like the codec's JSON.
  auto rows = RunJob(**warehouse, fmt::format("SELECT ts, blob, uid, amount, n_double, tags FROM {}", table));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], 1700000000123);
  EXPECT_EQ(rows[0][1], "AAEC/w==");
  EXPECT_EQ(rows[0][2], "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(rows[0][3].dump(), "-12345.6789");
  EXPECT_EQ(rows[0][4], "NaN");
  EXPECT_EQ(rows[0][5], nlohmann::json::parse(R"(["x", null])"));
}

// A schema of top-level scalars only (no decimal, array or record) is written
// from the decoded value without the JSON detour: every scalar must land as
// the same typed value the JSON path stores (EverySchemaTypeIsAnOrdinaryTypedColumn).
TEST(PostgresWarehouse, FlatSchemasStoreEveryScalarTypeAsTheJsonPathDoes) {
  ScratchDir scratch;
  auto config = ConfigFor(scratch.path());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto warehouse = PostgresRegistry().MakeWarehouseService("postgres", *config, {});
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  auto schema = schema::Schema::Parse(R"json({"type": "record", "name": "Flat", "fields": [
      {"name": "id", "type": "string"},
      {"name": "seq", "type": "long"},
      {"name": "small", "type": "int"},
      {"name": "flag", "type": "boolean"},
      {"name": "ratio", "type": "float"},
      {"name": "price", "type": "double"},
      {"name": "blob", "type": "bytes"},
      {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
      {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}},
      {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
      {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
      {"name": "n_double", "type": ["null", "double"]},
      {"name": "n_float", "type": ["null", "float"]},
      {"name": "n_string", "type": ["null", "string"]},
      {"name": "n_ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
      {"name": "n_color", "type": ["null", "Color"]}]})json", {"id"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  const std::vector<std::string> json_records = {
      R"({"id": "a", "seq": 9007199254740993, "small": -5, "flag": true, "ratio": 0.1, "price": -0.25,
          "blob": "AAEC/w==", "hash": "3q2+7w==", "color": "GREEN", "uid": "00112233-4455-6677-8899-AABBCCDDEEFF",
          "ts": 1700000000123, "n_double": "NaN", "n_float": "-Infinity", "n_string": "é\n\t\\ \"x\"",
          "n_ts": -1, "n_color": null})",
      R"({"id": "b", "seq": -9223372036854775808, "small": 2147483647, "flag": false, "ratio": 1e-30,
          "price": 1.7976931348623157e308, "blob": "", "hash": "AAAAAA==", "color": "BLUE",
          "uid": "ffffffff-ffff-ffff-ffff-ffffffffffff", "ts": -62135596800000, "n_double": "Infinity",
          "n_float": 3.5, "n_string": null, "n_ts": null, "n_color": "RED"})"};
  std::vector<driver::Record> records;
  for (const std::string& json : json_records) {
    auto value = schema::ParseJsonRecord(**schema, json);
    ASSERT_TRUE(value.ok()) << value.status().ToString();
    driver::Record record;
    ASSERT_TRUE(schema::EncodeAvro(**schema, *value, &record.avro).ok());
    record.key = *keys::EncodeKey(**schema, *value);
    record.timestamp_ms = 1700000000999;
    records.push_back(std::move(record));
  }
  driver::InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.schema = *schema;
  ASSERT_TRUE((*warehouse)->RegisterInstance(instance).ok());
  Status written = (*warehouse)->WriteToWarehouse(instance, records, {});
  ASSERT_TRUE(written.ok()) << written.ToString();
  const std::string table = (*warehouse)->TableName(instance);

  auto checks = RunJob(**warehouse, fmt::format(R"sql(
      SELECT seq = 9007199254740993, small = -5, flag, ratio = 0.1::real, price = -0.25,
             blob = '\x000102ff'::bytea, hash = '\xdeadbeef'::bytea, color = 'GREEN',
             uid = '00112233-4455-6677-8899-aabbccddeeff'::uuid, ts = '2023-11-14 22:13:20.123+00'::timestamptz,
             n_double = 'NaN'::float8, n_float = '-Infinity'::real, n_string = E'\u00e9\n\t\\ "x"',
             n_ts = '1969-12-31 23:59:59.999+00'::timestamptz, n_color IS NULL,
             __timestamp = '2023-11-14 22:13:20.999+00'::timestamptz
      FROM {0} WHERE id = 'a'
      UNION ALL
      SELECT seq = -9223372036854775808, small = 2147483647, NOT flag, ratio = 1e-30::real,
             price = 1.7976931348623157e308::float8, blob = ''::bytea, hash = '\x00000000'::bytea, color = 'BLUE',
             uid = 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid, ts = '0001-01-01 00:00:00+00'::timestamptz,
             n_double = 'Infinity'::float8, n_float = 3.5::real, n_string IS NULL, n_ts IS NULL, n_color = 'RED',
             __key IS NOT NULL
      FROM {0} WHERE id = 'b')sql", table));
  ASSERT_EQ(checks.size(), 2u);
  for (size_t row = 0; row < checks.size(); ++row) {
    for (size_t check_idx = 0; check_idx < checks[row].size(); ++check_idx) {
      EXPECT_EQ(checks[row][check_idx], true) << "row " << row << " check " << check_idx << " of " << checks[row].dump();
    }
  }
}

// JobLimits::result_ttl_ms by the driver's clock: the rows go, the job stays done.
TEST(PostgresWarehouse, ADoneJobsRowsExpireAfterTheResultTtl) {
  ScratchDir scratch;
  auto config = ConfigFor(scratch.path());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ManualClock clock;
  driver::DriverContext context;
  context.clock = &clock;
  auto warehouse = PostgresRegistry().MakeWarehouseService("postgres", *config, context);
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  const Uuid id = Uuid::Random();
  driver::JobOptions options;
  options.result_ttl_ms = 60'000;
  ASSERT_TRUE((*warehouse)->StartQuery(id, "SELECT 1 AS one", options).ok());
  const driver::Job job = WaitForJob(**warehouse, id);
  ASSERT_EQ(job.status, driver::JobStatus::kDone) << job.error;
  clock.Advance(int64_t{59'000} * 1000);
  auto fresh = (*warehouse)->ReadJobRows(id, "", 10);
  ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
  EXPECT_EQ(fresh->rows, std::vector<std::string>{"[1]"});
  clock.Advance(int64_t{2'000} * 1000);
  auto expired = (*warehouse)->ReadJobRows(id, "", 10);
  EXPECT_EQ(expired.status().code(), StatusCode::kFailedPrecondition) << expired.status().ToString();
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos) << expired.status().ToString();
  EXPECT_EQ((*warehouse)->PollJob(id)->status, driver::JobStatus::kDone);
}

}  // namespace
}  // namespace aquifer::conformance
