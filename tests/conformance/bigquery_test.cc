// The warehouse conformance suite on the BigQuery driver, against the
// emulator that scripts/peers/bigquery starts (AQUIFER_TEST_BIGQUERY; without
// it every test fails and says how to start one). Each test gets a dataset of
// its own, named after its scratch directory, so a reopen finds the same
// data and parallel tests never meet.

#include <cstdlib>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/bigquery/testing.h"
#include "aquifer/drivers/bigquery/warehouse.h"
#include "aquifer/schema/testing_schemas.h"
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& BigQueryRegistry() { return RegistryOf<drivers::bigquery::Register>(); }

// BigQuery spells an array's length `ARRAY_LENGTH(a)` and a field of a record
// `r.f`: the suite's defaults.
WarehouseDriverFactory BigQueryWarehouse() {
  WarehouseDriverFactory factory;
  factory.name = "bigquery";
  factory.make = MakeFromRegistry(BigQueryRegistry(), "bigquery", [](const std::string& dir) {
    return drivers::bigquery::testing::TestConfig(std::filesystem::path(dir).filename().string());
  });
  return factory;
}

INSTANTIATE_TEST_SUITE_P(BigQuery, WarehouseConformance, ::testing::Values(BigQueryWarehouse()), WarehouseDriverName);

// A scratch name per test: the dataset of the driver.
std::string UniqueName() { return "bq-" + Uuid::Random().Hex().substr(0, 12); }

Result<std::shared_ptr<driver::WarehouseService>> OpenDriver(const std::string& name) {
  AQ_ASSIGN_OR_RETURN(driver::Config config, drivers::bigquery::testing::TestConfig(name));
  return BigQueryRegistry().MakeWarehouseService("bigquery", config, {});
}

// The group test bodies (warehouse_conformance.h).
TEST(BigQueryWarehouse, ARetryCompletesAGroupStoredInPart) {
  auto warehouse = OpenDriver(UniqueName());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  ExpectARetryCompletesAGroupStoredInPart(**warehouse);
}

TEST(BigQueryWarehouse, ConcurrentWritesOfOneGroupStoreItOnce) {
  auto warehouse = OpenDriver(UniqueName());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  ExpectConcurrentWritesOfOneGroupStoreItOnce(**warehouse);
}

// Every schema type lands in a column of the BigQuery type the README
// names, and comes back from a job as the codec's JSON does.
TEST(BigQueryWarehouse, EverySchemaTypeRoundTrips) {
  auto warehouse = OpenDriver(UniqueName());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  // n_double: 2.5, not NaN.
  RichRecord rich;
  ASSERT_NO_FATAL_FAILURE(StoreRichRecord(**warehouse, schema::testing::RichRecordJson("2.5"), &rich));
  const std::string table = (*warehouse)->TableName(rich.instance);
  auto rows = RunJob(**warehouse, fmt::format(
      "SELECT id, seq, small, flag, price, blob, hash, color, uid, ts, items[OFFSET(1)].price AS p1, "
      "ARRAY_LENGTH(items) AS n_items_len, tags, first_item.sku AS first_sku, n_ts, n_long, n_string, "
      "n_matrix, n_items, CAST(famount AS STRING) AS famount FROM {}", table));
  ASSERT_EQ(rows.size(), 1u);
  const nlohmann::json& row = rows[0];
  EXPECT_EQ(row[0], "o-1");
  EXPECT_EQ(row[1], 9007199254740993LL) << "INT64 exactly, beyond a double's 2^53";
  EXPECT_EQ(row[2], -5);
  EXPECT_EQ(row[3], true);
  EXPECT_EQ(row[4], -0.25);
  EXPECT_EQ(row[5], "AAEC/w==");
  EXPECT_EQ(row[6], "3q2+7w==");
  EXPECT_EQ(row[7], "GREEN");
  EXPECT_EQ(row[8], "00112233-4455-6677-8899-aabbccddeeff");
  EXPECT_EQ(row[9], 1700000000123) << "TIMESTAMP as epoch milliseconds";
  EXPECT_EQ(row[10], 4.5);
  EXPECT_EQ(row[11], 2);
  EXPECT_EQ(nlohmann::json::parse(row[12].get<std::string>()), nlohmann::json::parse(R"(["x", null])"))
      << "an array with null items is kept as its JSON";
  EXPECT_EQ(row[13], "f");
  EXPECT_EQ(row[14], -1);
  EXPECT_TRUE(row[15].is_null());
  EXPECT_EQ(row[16], "\u00e9\n\t\\");
  EXPECT_EQ(nlohmann::json::parse(row[17].get<std::string>()), nlohmann::json::parse("[[1, 2], [], [3]]"));
  EXPECT_EQ(row[18], nlohmann::json::array());
  EXPECT_EQ(std::stod(row[19].get<std::string>()), 12.5);
  ASSERT_TRUE((*warehouse)->Reset().ok());
}

TEST(BigQueryWarehouse, OptionsAreCheckedAndCredentialsGoOnlyOverTls) {
  using drivers::bigquery::ParseWarehouseOptions;
  EXPECT_EQ(ParseWarehouseOptions({}).status().code(), StatusCode::kInvalidArgument) << "project is required";
  EXPECT_EQ(ParseWarehouseOptions({{"project", "p"}, {"dataset", "no-dashes"}}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseWarehouseOptions({{"project", "p"}, {"endpoint", "ftp://x"}}).status().code(),
            StatusCode::kInvalidArgument);
  auto emulator = ParseWarehouseOptions({{"project", "p"}, {"endpoint", "http://127.0.0.1:1"}, {"token_env", "T"}});
  ASSERT_TRUE(emulator.ok());
  EXPECT_TRUE(emulator->rest.token_env.empty()) << "no credentials to an http:// endpoint";
  auto real = ParseWarehouseOptions({{"project", "p"}});
  ASSERT_TRUE(real.ok());
  EXPECT_EQ(real->rest.endpoint, "https://bigquery.googleapis.com");
  EXPECT_EQ(real->rest.token_env, "GOOGLE_OAUTH_ACCESS_TOKEN");
  // Without the token the driver refuses before sending anything.
  ::unsetenv("AQUIFER_TEST_NO_SUCH_TOKEN");
  auto opened = BigQueryRegistry().MakeWarehouseService(
      "bigquery", {{"project", "p"}, {"endpoint", "https://127.0.0.1:1"}, {"token_env", "AQUIFER_TEST_NO_SUCH_TOKEN"}}, {});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), StatusCode::kUnauthenticated) << opened.status().ToString();
  EXPECT_NE(opened.status().message().find("AQUIFER_TEST_NO_SUCH_TOKEN"), std::string::npos);
}

}  // namespace
}  // namespace aquifer::conformance
