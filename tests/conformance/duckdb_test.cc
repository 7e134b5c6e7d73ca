// The warehouse conformance suite over the DuckDB driver (a fresh directory
// per test), plus DuckDB-specific checks of the documented result encoding.

#include "aquifer/drivers/duckdb/warehouse.h"

#include <gmock/gmock.h>
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

Result<std::shared_ptr<driver::WarehouseService>> MakeDuckDB(const std::string& scratch_dir, Clock* clock = nullptr) {
  driver::DriverContext context;
  context.data_dir = scratch_dir;
  context.clock = clock;
  return drivers::duckdb::OpenWarehouse({}, context);
}

INSTANTIATE_TEST_SUITE_P(DuckDB, WarehouseConformance,
                         ::testing::Values(WarehouseDriverFactory{"duckdb", MakeDuckDB}), WarehouseDriverName);

// Every schema type written through the driver reads back as the codec's JSON
// for the same record (the documented encoding), column by column.
TEST(DuckDBWarehouse, ResultValuesUseTheCodecsJsonConventions) {
  std::string dir = (std::filesystem::temp_directory_path() / "aquifer-wh-rich-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  {
    auto warehouse = MakeDuckDB(dir);
    ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
    // n_string without the tab and the backslash.
    RichRecord rich;
    ASSERT_NO_FATAL_FAILURE(
        StoreRichRecord(**warehouse, schema::testing::RichRecordJson(R"("NaN")", R"("\u00e9\n")"), &rich));
    const schema::SchemaPtr& schema = rich.schema;

    const Uuid job_id = Uuid::Random();
    const std::string table = (*warehouse)->TableName(rich.instance);
    ASSERT_TRUE((*warehouse)->StartQuery(job_id, "SELECT *, sum(seq) OVER () AS big, epoch_ms(__timestamp) AS ts_ms FROM " + table, {}).ok());
    driver::Job job = WaitForJob(**warehouse, job_id);
    ASSERT_EQ(job.status, driver::JobStatus::kDone) << job.error;
    auto page = (*warehouse)->ReadJobRows(job_id, "", 10);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    ASSERT_EQ(page->rows.size(), 1u);
    nlohmann::json row = nlohmann::json::parse(page->rows[0]);
    std::string codec_json;
    schema::WriteJson(*schema, rich.value, &codec_json);
    nlohmann::json expected = nlohmann::json::parse(codec_json);
    const auto& fields = schema->fields();
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
    job = WaitForJob(**warehouse, count_id);
    ASSERT_EQ(job.status, driver::JobStatus::kDone) << job.error;
    auto counted = (*warehouse)->ReadJobRows(count_id, "", 10);
    ASSERT_TRUE(counted.ok());
    EXPECT_EQ(counted->rows, std::vector<std::string>{"[1]"});
  }
  std::filesystem::remove_all(dir);
}

// A fresh DuckDB warehouse in its own directory, removed with it.
class DuckDBLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() / "aquifer-wh-limits-XXXXXX").string();
    ASSERT_NE(mkdtemp(dir_.data()), nullptr);
  }
  void TearDown() override {
    warehouse_.reset();
    std::filesystem::remove_all(dir_);
  }
  Status Open(driver::Config config) {
    driver::DriverContext context;
    context.data_dir = dir_;
    context.clock = &clock_;
    auto opened = drivers::duckdb::OpenWarehouse(config, context);
    if (!opened.ok()) return opened.status();
    warehouse_ = *opened;
    return Status::OK();
  }
  driver::Job Run(const std::string& sql, driver::JobOptions options = {}) {
    const Uuid id = Uuid::Random();
    auto started = warehouse_->StartQuery(id, sql, options);
    EXPECT_TRUE(started.ok()) << started.status().ToString();
    return started.ok() ? WaitForJob(*warehouse_, id) : driver::Job{};
  }

  std::string dir_;
  ManualClock clock_;
  std::shared_ptr<driver::WarehouseService> warehouse_;
};

// Ten BIGINTs are 80 bytes: a cap of 80 passes, 79 fails the job.
TEST_F(DuckDBLimits, TheResultByteCapAtItsEdge) {
  ASSERT_TRUE(Open({}).ok());
  const std::string sql = "SELECT 42::BIGINT AS v FROM range(10)";
  driver::JobOptions at_cap;
  at_cap.max_result_bytes = 80;
  driver::Job passed = Run(sql, at_cap);
  EXPECT_EQ(passed.status, driver::JobStatus::kDone) << passed.error;
  EXPECT_EQ(passed.rows, 10);
  driver::JobOptions below;
  below.max_result_bytes = 79;
  driver::Job failed = Run(sql, below);
  EXPECT_EQ(failed.status, driver::JobStatus::kFailed);
  EXPECT_THAT(failed.error, testing::HasSubstr("result exceeds 79 bytes"));
  // Strings count their length plus 16: 'abcd' x 2 = 40 bytes.
  const std::string strings = "SELECT 'abcd' AS s FROM range(2)";
  driver::JobOptions strings_cap;
  strings_cap.max_result_bytes = 40;
  EXPECT_EQ(Run(strings, strings_cap).status, driver::JobStatus::kDone);
  strings_cap.max_result_bytes = 39;
  EXPECT_EQ(Run(strings, strings_cap).status, driver::JobStatus::kFailed);
}

// A billion generated rows stop at the default row cap instead of filling memory.
TEST_F(DuckDBLimits, AGeneratorStopsAtTheDefaultRowCap) {
  ASSERT_TRUE(Open({}).ok());
  driver::Job job = Run("SELECT * FROM range(1000000000)");
  EXPECT_EQ(job.status, driver::JobStatus::kFailed);
  EXPECT_THAT(job.error, testing::HasSubstr("result exceeds 1000000 rows; add LIMIT"));
}

TEST_F(DuckDBLimits, ResultsExpireAfterTheirTtlAndTheJobStaysDone) {
  ASSERT_TRUE(Open({}).ok());
  driver::JobOptions options;
  options.result_ttl_ms = 1000;
  driver::Job job = Run("SELECT 1 AS x", options);
  ASSERT_EQ(job.status, driver::JobStatus::kDone) << job.error;
  clock_.Advance(999 * 1000);
  auto before = warehouse_->ReadJobRows(job.job_id, "", 10);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_EQ(before->rows, std::vector<std::string>{"[1]"});
  clock_.Advance(1000);
  auto after = warehouse_->ReadJobRows(job.job_id, "", 10);
  EXPECT_EQ(after.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(after.status().message(), testing::HasSubstr("expired 1000 ms after it finished"));
  auto polled = warehouse_->PollJob(job.job_id);
  ASSERT_TRUE(polled.ok());
  EXPECT_EQ(polled->status, driver::JobStatus::kDone);
}

TEST_F(DuckDBLimits, TheJobQueueIsBounded) {
  ASSERT_TRUE(Open({{"job_threads", "1"}, {"max_queued_jobs", "1"}}).ok());
  driver::JobOptions slow;
  slow.timeout_ms = 60'000;
  const std::string sql = "SELECT count(*) FROM range(1000000) a, range(1000000) b";
  const Uuid running = Uuid::Random();
  ASSERT_TRUE(warehouse_->StartQuery(running, sql, slow).ok());
  for (int i = 0; i < 6000 && warehouse_->PollJob(running)->status == driver::JobStatus::kPending; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(warehouse_->PollJob(running)->status, driver::JobStatus::kRunning);
  EXPECT_TRUE(warehouse_->StartQuery(Uuid::Random(), "SELECT 1", {}).ok()) << "one job may wait";
  auto refused = warehouse_->StartQuery(Uuid::Random(), "SELECT 1", {});
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), testing::HasSubstr("max_queued_jobs"));
}

// The plan check fails closed on table functions it does not know, and a
// generator's rows count in the dry-run estimate.
TEST_F(DuckDBLimits, ThePlanCheckCollectsTableFunctionScans) {
  ASSERT_TRUE(Open({}).ok());
  for (const char* sql : {"SELECT * FROM duckdb_tables()", "SELECT * FROM duckdb_settings()",
                          "SELECT 1 FROM range(3), (SELECT * FROM pragma_database_size())"}) {
    auto analysis = warehouse_->AnalyzeQuery(sql);
    ASSERT_FALSE(analysis.ok()) << sql;
    EXPECT_EQ(analysis.status().code(), StatusCode::kInvalidArgument) << sql;
    EXPECT_THAT(analysis.status().message(), testing::HasSubstr("table function")) << sql;
  }
  auto lateral = warehouse_->AnalyzeQuery("SELECT * FROM range(3) r(a), LATERAL generate_series(1, a) g(b), "
                                          "LATERAL unnest([a, b]) u(c)");
  ASSERT_TRUE(lateral.ok()) << lateral.status().ToString();
  EXPECT_GT(lateral->bytes_scanned_estimate, 0);
  auto generated = warehouse_->AnalyzeQuery("SELECT * FROM range(1000000)");
  ASSERT_TRUE(generated.ok()) << generated.status().ToString();
  EXPECT_TRUE(generated->tables.empty());
  EXPECT_GE(generated->bytes_scanned_estimate, 8'000'000);
}

// memory_limit bounds a job's memory: a 160 MB list under a 20 MB limit
// fails the job (and only the job); a small one still runs.
TEST_F(DuckDBLimits, MemoryLimitFailsTheJobThatNeedsMore) {
  ASSERT_TRUE(Open({{"memory_limit", "20MB"}}).ok());
  driver::Job big = Run("SELECT length(list(i)) AS n FROM range(20000000) t(i)");
  EXPECT_EQ(big.status, driver::JobStatus::kFailed);
  EXPECT_THAT(big.error, testing::HasSubstr("Out of Memory"));
  driver::Job small = Run("SELECT length(list(i)) AS n FROM range(1000) t(i)");
  EXPECT_EQ(small.status, driver::JobStatus::kDone) << small.error;
}

TEST_F(DuckDBLimits, EverySettingIsCheckedAtOpen) {
  Status bad_temp = Open({{"max_temp_directory_size", "banana"}});
  EXPECT_EQ(bad_temp.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_temp.message(), testing::HasSubstr("cannot set max_temp_directory_size to 'banana'"));
  Status bad_memory = Open({{"memory_limit", "lots"}});
  EXPECT_EQ(bad_memory.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_memory.message(), testing::HasSubstr("memory_limit"));
  EXPECT_EQ(Open({{"max_queued_jobs", "-1"}}).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(Open({{"memory_limit", "512MiB"}, {"max_temp_directory_size", "1GiB"}}).ok());
  EXPECT_EQ(Run("SELECT 1").status, driver::JobStatus::kDone);
}

// Writes without group ids are deduplicated against the fingerprints of the
// last `dedup_window` records: a record still in the window is skipped, one
// that left it is stored again. 3000 records through a window of 100 move
// fingerprints in and out of the driver's table many times.
TEST_F(DuckDBLimits, TheDedupWindowForgetsTheOldestFingerprints) {
  ASSERT_TRUE(Open({{"dedup_window", "100"}}).ok());
  auto schema = schema::Schema::Parse(
      R"({"type": "record", "name": "r", "fields": [{"name": "id", "type": "long"}]})", {"id"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  driver::InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.schema = *schema;
  instance.use_warehouse = true;
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  auto record = [&](int64_t id) {
    auto value = schema::ParseJsonRecord(**schema, "{\"id\": " + std::to_string(id) + "}");
    EXPECT_TRUE(value.ok());
    driver::Record out;
    EXPECT_TRUE(schema::EncodeAvro(**schema, *value, &out.avro).ok());
    out.key = *keys::EncodeKey(**schema, *value);
    out.timestamp_ms = 1'700'000'000'000;
    return out;
  };
  auto write = [&](std::vector<driver::Record> records) {
    Status written = warehouse_->WriteToWarehouse(instance, records, {});
    EXPECT_TRUE(written.ok()) << written.ToString();
  };
  auto count = [&] {
    driver::Job job = Run("SELECT count(*) FROM " + warehouse_->TableName(instance));
    EXPECT_EQ(job.status, driver::JobStatus::kDone) << job.error;
    auto page = warehouse_->ReadJobRows(job.job_id, "", 10);
    EXPECT_TRUE(page.ok());
    return page.ok() && page->rows.size() == 1 ? page->rows[0] : std::string("?");
  };
  for (int64_t first = 0; first < 3000; first += 10) {
    std::vector<driver::Record> batch;
    for (int64_t id = first; id < first + 10; ++id) batch.push_back(record(id));
    write(std::move(batch));
  }
  // Duplicates within one write are stored once.
  write({record(5000), record(5000)});
  EXPECT_EQ(count(), "[3001]");
  // The window holds ids 2901..2999 and 5000: all skipped.
  for (int64_t id = 2901; id < 3000; ++id) write({record(id)});
  write({record(5000)});
  EXPECT_EQ(count(), "[3001]");
  // 2900 left the window: stored again, pushing 2901 out, which then is
  // stored again too (pushing 2902 out).
  write({record(2900)});
  write({record(2901)});
  write({record(2903), record(0), record(1999)});  // 2903 still in; 0 and 1999 long gone
  EXPECT_EQ(count(), "[3005]");
}

// --- the analysis cache and RunSmall's prepared statements (README, "Plan cache") ---

constexpr const char* kCountsSchema = R"({"type":"record","name":"Count","fields":[
  {"name":"n","type":"long"},{"name":"label","type":"string"}]})";

class DuckDBCaches : public DuckDBLimits {
 protected:
  driver::InstanceInfo Register(int64_t retention_ms = 0) {
    auto schema = schema::Schema::Parse(kCountsSchema, {"n"});
    EXPECT_TRUE(schema.ok()) << schema.status().ToString();
    driver::InstanceInfo instance;
    instance.instance_id = Uuid::Random();
    instance.schema = *schema;
    instance.warehouse_retention_ms = retention_ms;
    EXPECT_TRUE(warehouse_->RegisterInstance(instance).ok());
    return instance;
  }
  void Write(const driver::InstanceInfo& instance, int64_t from, int64_t to) {
    std::vector<driver::Record> records;
    for (int64_t n = from; n < to; ++n) {
      auto value = schema::ParseJsonRecord(*instance.schema, fmt::format(R"({{"n":{},"label":"l{}"}})", n, n));
      ASSERT_TRUE(value.ok()) << value.status().ToString();
      driver::Record record;
      ASSERT_TRUE(schema::EncodeAvro(*instance.schema, *value, &record.avro).ok());
      record.key = *keys::EncodeKey(*instance.schema, *value);
      record.timestamp_ms = 1'700'000'000'000 + n;
      records.push_back(std::move(record));
    }
    ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, records, {}).ok());
  }
  // AnalyzeQuery's bytes-scanned estimate of `sql`, or -1 after recording
  // the failure.
  int64_t Estimate(const std::string& sql) {
    auto analyzed = warehouse_->AnalyzeQuery(sql);
    if (!analyzed.ok()) {
      ADD_FAILURE() << "AnalyzeQuery(" << sql << "): " << analyzed.status().ToString();
      return -1;
    }
    return analyzed->bytes_scanned_estimate;
  }
  Result<driver::SmallResult> Small(const std::string& sql) {
    driver::SmallQueryLimits limits;
    limits.timeout_ms = 30'000;
    limits.max_rows = 1000;
    limits.max_bytes = 1 << 20;
    return warehouse_->RunSmall(sql, limits);
  }
};

// A plan checked (and cached) before a table was dropped is not used after:
// the same text is analyzed again and refused. Then a new table with other
// rows: the estimate is the new table's.
TEST_F(DuckDBCaches, TheAnalysisOfADroppedTableIsNotReused) {
  ASSERT_TRUE(Open({}).ok());
  driver::InstanceInfo instance = Register();
  Write(instance, 0, 10);
  const std::string sql = "SELECT n, label FROM " + warehouse_->TableName(instance) + " WHERE n > 2";
  for (int i = 0; i < 2; ++i) {  // the second answer comes from the cache
    auto analysis = warehouse_->AnalyzeQuery(sql);
    ASSERT_TRUE(analysis.ok()) << analysis.status().ToString();
    EXPECT_EQ(analysis->tables, std::vector<std::string>{warehouse_->TableName(instance)});
  }
  ASSERT_TRUE(warehouse_->RemoveInstance(instance).ok());
  auto dropped = warehouse_->AnalyzeQuery(sql);
  ASSERT_FALSE(dropped.ok());
  EXPECT_EQ(dropped.status().code(), StatusCode::kInvalidArgument) << dropped.status().ToString();
  auto small = Small(sql);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), StatusCode::kInvalidArgument) << small.status().ToString();
}

// Reset drops every table: a cached plan and a prepared statement of the
// same text are not used after it.
TEST_F(DuckDBCaches, ResetForgetsCachedPlansAndStatements) {
  ASSERT_TRUE(Open({}).ok());
  driver::InstanceInfo instance = Register();
  Write(instance, 0, 3);
  const std::string sql = "SELECT count(*) AS c FROM " + warehouse_->TableName(instance);
  ASSERT_TRUE(warehouse_->AnalyzeQuery(sql).ok());
  auto counted = Small(sql);
  ASSERT_TRUE(counted.ok()) << counted.status().ToString();
  EXPECT_EQ(counted->rows, std::vector<std::string>{"[3]"});
  ASSERT_TRUE(warehouse_->Reset().ok());
  EXPECT_FALSE(warehouse_->AnalyzeQuery(sql).ok());
  EXPECT_FALSE(Small(sql).ok());
}

// The bytes-scanned estimate follows the rows written since the plan was cached.
TEST_F(DuckDBCaches, TheEstimateFollowsWritesAfterThePlanWasCached) {
  ASSERT_TRUE(Open({}).ok());
  driver::InstanceInfo instance = Register();
  Write(instance, 0, 10);
  const std::string sql = "SELECT sum(n) FROM " + warehouse_->TableName(instance);
  EXPECT_EQ(Estimate(sql), 10 * 8);
  Write(instance, 10, 110);
  EXPECT_EQ(Estimate(sql), 110 * 8);
}

// The row count behind the estimate is tracked across appends, and read
// again after a table is dropped and made again under the same name: a count
// kept across that would estimate rows that are gone.
TEST_F(DuckDBCaches, TheEstimateCountsTheRowsOfATableMadeAgain) {
  ASSERT_TRUE(Open({}).ok());
  driver::InstanceInfo instance = Register();
  Write(instance, 0, 10);
  const std::string sql = "SELECT sum(n) FROM " + warehouse_->TableName(instance);
  EXPECT_EQ(Estimate(sql), 10 * 8);
  ASSERT_TRUE(warehouse_->RemoveInstance(instance).ok());
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  Write(instance, 0, 3);
  EXPECT_EQ(Estimate(sql), 3 * 8);
  Write(instance, 3, 5);
  EXPECT_EQ(Estimate(sql), 5 * 8);
}

// Rows a retention purges before a query are gone from the next answer of
// the same text (its cached statement is prepared again), and a purge that
// deletes nothing keeps the cache (nothing to see: the answers stay right).
TEST_F(DuckDBCaches, RowsPurgedByTheRetentionLeaveTheNextAnswer) {
  ASSERT_TRUE(Open({}).ok());
  driver::InstanceInfo instance = Register(/*retention_ms=*/60'000);
  Write(instance, 0, 5);  // stamped 1'700'000'000'000 + n ms: the clock's now
  const std::string t = warehouse_->TableName(instance);
  for (const std::string& sql : {"SELECT count(*) AS c FROM " + t, "SELECT max(n) AS m FROM " + t}) {
    for (int i = 0; i < 2; ++i) {
      auto rows = Small(sql);
      ASSERT_TRUE(rows.ok()) << rows.status().ToString();
      EXPECT_EQ(rows->rows, std::vector<std::string>{sql.find("count") != std::string::npos ? "[5]" : "[4]"});
    }
  }
  clock_.Advance(int64_t{120'000} * 1000);  // every row past the retention
  auto counted = Small("SELECT count(*) AS c FROM " + t);
  ASSERT_TRUE(counted.ok()) << counted.status().ToString();
  EXPECT_EQ(counted->rows, std::vector<std::string>{"[0]"});
  auto max = Small("SELECT max(n) AS m FROM " + t);
  ASSERT_TRUE(max.ok()) << max.status().ToString();
  EXPECT_EQ(max->rows, std::vector<std::string>{"[null]"});
}

// A statement prepared (and kept) while no row matched still finds the rows
// written after it: no plan made from the table's statistics of the time
// (DuckDB can turn a filter its statistics rule out into an empty result) is
// reused. The same for a count, a filter and a join.
TEST_F(DuckDBCaches, APreparedStatementSeesRowsWrittenAfterIt) {
  ASSERT_TRUE(Open({}).ok());
  driver::InstanceInfo instance = Register();
  driver::InstanceInfo other = Register();
  Write(instance, 0, 100);
  Write(other, 0, 2);
  const std::string t = warehouse_->TableName(instance), o = warehouse_->TableName(other);
  const std::vector<std::string> queries = {
      "SELECT count(*) AS c FROM " + t + " WHERE n = 200",
      "SELECT n, label FROM " + t + " WHERE n >= 200 ORDER BY n",
      "SELECT count(*) AS c FROM " + t + " JOIN " + o + " USING (n) WHERE n >= 200",
      "SELECT max(n) AS m FROM " + t,
  };
  std::vector<std::string> first;
  for (const std::string& sql : queries) {
    for (int i = 0; i < 3; ++i) {  // prepared once, then reused
      auto rows = Small(sql);
      ASSERT_TRUE(rows.ok()) << sql << ": " << rows.status().ToString();
      if (i == 0) first.push_back(testing::PrintToString(rows->rows));
    }
  }
  EXPECT_EQ(first, (std::vector<std::string>{testing::PrintToString(std::vector<std::string>{"[0]"}),
                                             testing::PrintToString(std::vector<std::string>{}),
                                             testing::PrintToString(std::vector<std::string>{"[0]"}),
                                             testing::PrintToString(std::vector<std::string>{"[99]"})}));
  Write(instance, 200, 201);
  Write(other, 200, 201);
  const std::vector<std::vector<std::string>> expected = {
      {"[1]"}, {R"([200,"l200"])"}, {"[1]"}, {"[200]"}};
  for (size_t q = 0; q < queries.size(); ++q) {
    auto rows = Small(queries[q]);
    ASSERT_TRUE(rows.ok()) << queries[q] << ": " << rows.status().ToString();
    EXPECT_EQ(rows->rows, expected[q]) << queries[q];
  }
}

}  // namespace
}  // namespace aquifer::conformance
