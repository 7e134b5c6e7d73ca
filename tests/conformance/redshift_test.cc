// The Redshift warehouse driver. No Redshift server runs here, so:
// - the warehouse conformance suite runs unchanged through the `redshift`
//   driver against the real PostgreSQL server of scripts/peers/postgres
//   (AQUIFER_TEST_POSTGRES): the driver detects PostgreSQL from version()
//   and leaves out the Redshift-only clauses. Its config names an S3 bucket,
//   so every write there also shows the fallback to multi-row INSERT;
// - the staging upload runs against moto's S3 server of scripts/peers/moto
//   (AQUIFER_TEST_S3);
// - the Redshift SQL itself is checked in src/aquifer/drivers/redshift/dialect_test.cc.
// Without either server every test here fails and says how to start it.

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/postgres/testing.h"
#include "aquifer/drivers/redshift/dialect.h"
#include "aquifer/drivers/redshift/register.h"
#include "aquifer/drivers/redshift/s3.h"
#include "aquifer/drivers/redshift/warehouse.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"
#include "lookup_conformance.h"  // ScratchDir
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

constexpr char kS3Variable[] = "AQUIFER_TEST_S3";

const driver::Registry& RedshiftRegistry() { return RegistryOf<drivers::redshift::Register>(); }

Result<std::string> S3Endpoint() {
  const char* endpoint = std::getenv(kS3Variable);
  if (endpoint == nullptr || *endpoint == '\0') {
    return FailedPrecondition("{} is not set: the Redshift suites need moto's S3 server. Run `make test`, or "
                              "`eval \"$(scripts/peers/moto start)\"` before ctest",
                              kS3Variable);
  }
  return std::string(endpoint);
}

drivers::redshift::S3Options S3For(const std::string& endpoint, const std::string& bucket) {
  drivers::redshift::S3Options s3;
  s3.endpoint = endpoint;
  s3.bucket = bucket;
  s3.access_key_id = "testing";
  s3.secret_access_key = "testing";
  return s3;
}

// The Postgres test config plus an S3 bucket on moto (named after the scratch
// folder), which a PostgreSQL server never uses: it cannot COPY from S3.
Result<driver::Config> ConfigFor(const std::string& scratch_dir) {
  const std::string unique = std::filesystem::path(scratch_dir).filename().string();
  AQ_ASSIGN_OR_RETURN(driver::Config config, drivers::postgres::testing::TestConfig(unique));
  AQ_ASSIGN_OR_RETURN(std::string endpoint, S3Endpoint());
  config["s3_endpoint"] = endpoint;
  config["s3_bucket"] = "aquifer-test";
  config["s3_access_key_id"] = "testing";
  config["s3_secret_access_key"] = "testing";
  config["s3_prefix"] = "staging/" + unique + "/";
  return config;
}

// On PostgreSQL SUPER becomes jsonb: an array's length is
// jsonb_array_length(a) and a field of a record `(r->'f')`.
WarehouseDriverFactory RedshiftWarehouse() {
  WarehouseDriverFactory factory;
  factory.name = "redshift";
  factory.make = MakeFromRegistry(RedshiftRegistry(), "redshift", ConfigFor);
  factory.array_length = [](const std::string& column) { return "jsonb_array_length(" + column + ")"; };
  factory.nested_field = [](const std::string& column, const std::string& field) {
    return "(" + column + "->'" + field + "')";
  };
  return factory;
}

// The same driver with `jobs = portable`: the job, dry-run and paging code a
// Redshift server runs (jobs.h), here against PostgreSQL.
WarehouseDriverFactory RedshiftPortableJobs() {
  WarehouseDriverFactory factory = RedshiftWarehouse();
  factory.name = "redshift_portable_jobs";
  factory.make = MakeFromRegistry(RedshiftRegistry(), "redshift", [](const std::string& dir) -> Result<driver::Config> {
    AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
    config["jobs"] = "portable";
    return config;
  });
  return factory;
}

INSTANTIATE_TEST_SUITE_P(Redshift, WarehouseConformance, ::testing::Values(RedshiftWarehouse(), RedshiftPortableJobs()),
                         WarehouseDriverName);

// The rich record (warehouse_conformance.h) and its codec JSON, which the
// staging file's rows are made from.
struct Rich : RichRecord {
  nlohmann::json json;
};

void MakeRich(Rich* rich) {
  ASSERT_NO_FATAL_FAILURE(MakeRichRecord(schema::testing::RichRecordJson(), rich));
  rich->json = nlohmann::json::parse(*schema::AvroToJson(*rich->schema, rich->record.avro));
}

// The COPY staging file of a batch goes to S3 through the driver's signed
// PUT, and moto's S3 API gives back exactly those bytes: one JSON object per
// row, keyed by column, as COPY ... FORMAT AS JSON 'auto ignorecase' reads it.
TEST(RedshiftStaging, TheUploadedObjectHoldsTheCopyFilesBytes) {
  auto endpoint = S3Endpoint();
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  const std::string bucket = "stage-" + Uuid::Random().Hex().substr(0, 12);
  drivers::redshift::S3Client s3(S3For(*endpoint, bucket));
  ASSERT_TRUE(s3.CreateBucket().ok());
  Rich rich;
  ASSERT_NO_FATAL_FAILURE(MakeRich(&rich));
  auto row = drivers::redshift::RowValues(*rich.schema, rich.json, rich.record.key, rich.record.timestamp_ms);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  std::vector<const std::vector<std::optional<std::string>>*> rows(3, &*row);
  auto body = drivers::redshift::StagingBody(*rich.schema, rows, /*gzip=*/false);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  const Uuid instance = Uuid::Random();
  const std::string key = drivers::redshift::StagingKey("aquifer/", instance, Uuid::Random());
  Status put = s3.PutObject(key, *body);
  ASSERT_TRUE(put.ok()) << put.ToString();
  auto got = s3.GetObject(key);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, *body);
  EXPECT_EQ(std::count(got->begin(), got->end(), '\n'), 3);
  // The driver's default: gzip (COPY ... GZIP); the object gunzips to the same lines.
  auto zipped = drivers::redshift::StagingBody(*rich.schema, rows, /*gzip=*/true);
  ASSERT_TRUE(zipped.ok()) << zipped.status().ToString();
  const std::string zipped_key = drivers::redshift::StagingKey("aquifer/", instance, Uuid::Random(), /*gzip=*/true);
  EXPECT_TRUE(zipped_key.ends_with(".json.gz")) << zipped_key;
  ASSERT_TRUE(s3.PutObject(zipped_key, *zipped).ok());
  auto got_zipped = s3.GetObject(zipped_key);
  ASSERT_TRUE(got_zipped.ok()) << got_zipped.status().ToString();
  EXPECT_EQ(*got_zipped, *zipped);
  EXPECT_EQ(got_zipped->substr(0, 2), std::string("\x1f\x8b", 2));  // the gzip magic
  EXPECT_LT(got_zipped->size(), body->size());
  auto unzipped = drivers::redshift::Gunzip(*got_zipped);
  ASSERT_TRUE(unzipped.ok()) << unzipped.status().ToString();
  EXPECT_EQ(*unzipped, *body);
  auto keys = s3.ListKeys("aquifer/" + instance.Hex() + "/");
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  std::vector<std::string> expected_keys{key, zipped_key};
  std::sort(expected_keys.begin(), expected_keys.end());
  EXPECT_EQ(*keys, expected_keys);
  // The line's values: SUPER columns as JSON, bytes as hex, timestamps as text.
  nlohmann::json line = nlohmann::json::parse(got->substr(0, got->find('\n')));
  EXPECT_EQ(line["items"][0]["sku"], "a\"b");
  EXPECT_EQ(line["n_matrix"], nlohmann::json::parse("[[1, 2], [], [3]]"));
  EXPECT_EQ(line["blob"], "000102ff");
  EXPECT_EQ(line["ts"], "2023-11-14 22:13:20.123+00");
  EXPECT_EQ(line["__timestamp"], "2023-11-14 22:13:20.999+00");
  EXPECT_EQ(line["seq"], 9007199254740993);
  // Errors name what failed: a missing object, a missing bucket.
  EXPECT_EQ(s3.GetObject("aquifer/missing").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(s3.DeleteObject(key).ok());
  EXPECT_EQ(s3.GetObject(key).status().code(), StatusCode::kNotFound);
  drivers::redshift::S3Client nowhere(S3For(*endpoint, "no-such-bucket-" + Uuid::Random().Hex().substr(0, 8)));
  EXPECT_EQ(nowhere.PutObject("k", "v").code(), StatusCode::kNotFound);
}

// With a bucket configured, a PostgreSQL server still gets its rows by
// multi-row INSERT (it cannot COPY from S3): nothing is staged, every type
// lands, and the Postgres warehouse's jobs read it back. `ingest = copy` on
// PostgreSQL is refused at start.
TEST(RedshiftOnPostgres, FallsBackToMultiRowInsertAndStagesNothing) {
  ScratchDir scratch;
  auto config = ConfigFor(scratch.path());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  const std::string bucket = "fallback-" + Uuid::Random().Hex().substr(0, 12);
  (*config)["s3_bucket"] = bucket;
  drivers::redshift::S3Client s3(S3For((*config)["s3_endpoint"], bucket));
  ASSERT_TRUE(s3.CreateBucket().ok());
  auto warehouse = RedshiftRegistry().MakeWarehouseService("redshift", *config, {});
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  Rich rich;
  ASSERT_NO_FATAL_FAILURE(MakeRich(&rich));
  const driver::InstanceInfo& instance = rich.instance;
  ASSERT_TRUE((*warehouse)->RegisterInstance(instance).ok());
  // 2500 rows: three INSERT statements of insert_batch_rows (1000) rows.
  std::vector<driver::Record> records(2500, rich.record);
  for (size_t i = 0; i < records.size(); ++i) records[i].timestamp_ms += static_cast<int64_t>(i);
  Status written = (*warehouse)->WriteToWarehouse(instance, records, {});
  ASSERT_TRUE(written.ok()) << written.ToString();
  EXPECT_EQ(*(*warehouse)->CountStoredRows(instance), 2500);
  auto staged = s3.ListKeys("");
  ASSERT_TRUE(staged.ok()) << staged.status().ToString();
  EXPECT_TRUE(staged->empty());

  const std::string table = (*warehouse)->TableName(instance);
  auto checks = RunJob(**warehouse, fmt::format(R"sql(
      SELECT seq = 9007199254740993, small = -5, flag, ratio = 1.5, price = -0.25,
             blob = '\x000102ff'::bytea, hash = '\xdeadbeef'::bytea, color = 'GREEN',
             amount = -12345.6789, famount = 12.50, uid = '00112233-4455-6677-8899-aabbccddeeff',
             ts = '2023-11-14 22:13:20.123+00'::timestamptz, items->0->>'sku' = 'a"b',
             (items->1->>'price')::float8 = 4.5, tags = '["x", null]'::jsonb,
             note IS NULL, n_ts = '1969-12-31 23:59:59.999+00'::timestamptz, n_long IS NULL,
             n_double = 'NaN'::float8, n_string = E'\u00e9\n\t\\', n_bytes = ''::bytea,
             (n_matrix->0->>1)::int = 2, jsonb_array_length(n_matrix) = 3, n_items = '[]'::jsonb,
             __timestamp = '2023-11-14 22:13:20.999+00'::timestamptz
      FROM {} ORDER BY __timestamp LIMIT 1)sql", table));
  ASSERT_EQ(checks.size(), 1u);
  for (size_t check_idx = 0; check_idx < checks[0].size(); ++check_idx) {
    EXPECT_EQ(checks[0][check_idx], true) << "check " << check_idx << " of " << checks[0].dump();
  }

  (*config)["ingest"] = "copy";
  auto copying = RedshiftRegistry().MakeWarehouseService("redshift", *config, {});
  ASSERT_FALSE(copying.ok());
  EXPECT_EQ(copying.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(copying.status().message().find("cannot COPY from S3"), std::string::npos) << copying.status().ToString();
}

// A bad record rejects the whole batch, naming it, and nothing is written.
TEST(RedshiftOnPostgres, ABadRecordRejectsTheBatch) {
  ScratchDir scratch;
  auto config = ConfigFor(scratch.path());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto warehouse = RedshiftRegistry().MakeWarehouseService("redshift", *config, {});
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  Rich rich;
  ASSERT_NO_FATAL_FAILURE(MakeRich(&rich));
  const driver::InstanceInfo& instance = rich.instance;
  ASSERT_TRUE((*warehouse)->RegisterInstance(instance).ok());
  std::vector<driver::Record> records(3, rich.record);
  records[2].timestamp_ms = int64_t{1} << 60;  // past year 9999
  Status written = (*warehouse)->WriteToWarehouse(instance, records, {});
  EXPECT_EQ(written.code(), StatusCode::kInvalidArgument) << written.ToString();
  EXPECT_NE(written.message().find("record 2"), std::string::npos) << written.ToString();
  EXPECT_EQ(*(*warehouse)->CountStoredRows(instance), 0);
}

}  // namespace
}  // namespace aquifer::conformance
