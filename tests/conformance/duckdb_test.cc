// The warehouse conformance suite over the DuckDB driver (a fresh directory
// per test), plus DuckDB-specific checks of the documented result encoding.

#include "aquifer/drivers/duckdb/warehouse.h"

#include <nlohmann/json.hpp>

#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"
#include "warehouse_conformance.h"

#include <chrono>
#include <filesystem>
#include <thread>

namespace aquifer::conformance {
namespace {

Result<std::shared_ptr<driver::WarehouseService>> MakeDuckDB(const std::string& scratch_dir) {
  driver::DriverContext context;
  context.data_dir = scratch_dir;
  return drivers::duckdb::OpenWarehouse({}, context);
}

INSTANTIATE_TEST_SUITE_P(DuckDB, WarehouseConformance,
                         ::testing::Values(WarehouseDriverFactory{"duckdb", MakeDuckDB}), WarehouseDriverName);

constexpr const char* kRichRecord = R"json({
  "id": "o-1", "seq": 9007199254740993, "small": -5, "flag": true, "ratio": 1.5, "price": -0.25,
  "blob": "AAEC/w==", "hash": "3q2+7w==", "color": "GREEN", "amount": "-12345.6789",
  "famount": "12.50", "uid": "00112233-4455-6677-8899-aabbccddeeff", "ts": 1700000000123,
  "items": [{"sku": "a\"b", "qty": 2, "price": null}, {"sku": "c", "qty": 3, "price": 4.5}],
  "tags": ["x", null], "note": null, "other_hash": "AAAAAQ==", "first_item": {"sku": "f", "qty": 1, "price": 2.0},
  "n_color": null, "n_amount": "-0.05", "n_famount": null, "n_uid": null, "n_ts": -1, "n_long": null,
  "n_int": 7, "n_bool": false, "n_float": null, "n_double": "NaN", "n_string": "\u00e9\n",
  "n_bytes": "", "n_items": [], "n_matrix": [[1, 2], [], [3]]
})json";

// Every schema type written through the driver reads back as the codec's JSON
// for the same record (the documented encoding), column by column.
TEST(DuckDBWarehouse, ResultValuesUseTheCodecsJsonConventions) {
  std::string dir = (std::filesystem::temp_directory_path() / "aquifer-wh-rich-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  {
    auto warehouse = MakeDuckDB(dir);
    ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
    auto schema = schema::Schema::Parse(schema::testing::kRichSchemaJson, {"id"});
    ASSERT_TRUE(schema.ok()) << schema.status().ToString();
    auto value = schema::ParseJsonRecord(**schema, kRichRecord);
    ASSERT_TRUE(value.ok()) << value.status().ToString();
    driver::Record record;
    ASSERT_TRUE(schema::EncodeAvro(**schema, *value, &record.avro).ok());
    record.key = *keys::EncodeKey(**schema, *value);
    record.timestamp_ms = 1700000000999;
    driver::InstanceInfo instance;
    instance.instance_id = Uuid::Random();
    instance.schema = *schema;
    ASSERT_TRUE((*warehouse)->RegisterInstance(instance).ok());
    ASSERT_TRUE((*warehouse)->WriteToWarehouse(instance, std::vector<driver::Record>{record}).ok());

    const Uuid job_id = Uuid::Random();
    const std::string table = (*warehouse)->TableName(instance);
    ASSERT_TRUE((*warehouse)->StartQuery(job_id, "SELECT *, sum(seq) OVER () AS big, epoch_ms(__timestamp) AS ts_ms FROM " + table, {}).ok());
    driver::Job job;
    for (int i = 0; i < 2000; ++i) {
      job = *(*warehouse)->PollJob(job_id);
      if (job.status == driver::JobStatus::kDone || job.status == driver::JobStatus::kFailed) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(job.status, driver::JobStatus::kDone) << job.error;
    auto page = (*warehouse)->ReadJobRows(job_id, "", 10);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    ASSERT_EQ(page->rows.size(), 1u);
    nlohmann::json row = nlohmann::json::parse(page->rows[0]);
    std::string codec_json;
    schema::WriteJson(**schema, *value, &codec_json);
    nlohmann::json expected = nlohmann::json::parse(codec_json);
    const auto& fields = (*schema)->fields();
    ASSERT_EQ(page->columns.size(), fields.size() + 2);
    for (size_t i = 0; i < fields.size(); ++i) {
      EXPECT_EQ(page->columns[i].name, fields[i].name);
      EXPECT_EQ(row[i], expected[fields[i].name]) << fields[i].name << " (" << page->columns[i].type << ")";
    }
    EXPECT_EQ(page->columns[fields.size()].type, "HUGEINT");
    EXPECT_EQ(row[fields.size()], "9007199254740993") << "HUGEINT is exact integer text";
    EXPECT_EQ(row[fields.size() + 1], 1700000000999) << "__timestamp holds the record timestamp";
    EXPECT_EQ(page->columns[9].type, "DECIMAL(38,4)");
    EXPECT_EQ(page->columns[11].type, "UUID");
    // The UUID is stored as a real UUID (DuckDB's order and text form).
    const Uuid count_id = Uuid::Random();
    ASSERT_TRUE((*warehouse)->StartQuery(count_id, "SELECT count(*) FROM " + table +
        " WHERE uid = '00112233-4455-6677-8899-aabbccddeeff'::UUID AND uid::VARCHAR = '00112233-4455-6677-8899-aabbccddeeff'", {}).ok());
    for (int i = 0; i < 2000; ++i) {
      job = *(*warehouse)->PollJob(count_id);
      if (job.status == driver::JobStatus::kDone || job.status == driver::JobStatus::kFailed) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(job.status, driver::JobStatus::kDone) << job.error;
    auto counted = (*warehouse)->ReadJobRows(count_id, "", 10);
    ASSERT_TRUE(counted.ok());
    EXPECT_EQ(counted->rows, std::vector<std::string>{"[1]"});
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace aquifer::conformance
