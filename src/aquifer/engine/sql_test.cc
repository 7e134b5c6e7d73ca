#include "aquifer/engine/sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/builtin.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"

namespace aquifer::engine {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSchema = R"({"type":"record","name":"Order","fields":[
  {"name":"user","type":"string"},
  {"name":"n","type":"long"},
  {"name":"amount","type":["null","double"],"default":null}]})";

class TempDir {
 public:
  TempDir()
      : path_(std::filesystem::temp_directory_path() / ("aquifer_sql_test_" + Uuid::Random().Hex())) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

class SqlServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto catalog = OpenSqliteCatalog(":memory:");
    ASSERT_TRUE(catalog.ok()) << catalog.status().ToString();
    catalog_ = std::move(*catalog);
    driver::Registry registry;
    drivers::RegisterBuiltinDrivers(&registry);
    driver::DriverContext context;
    context.data_dir = dir_.path();
    context.clock = &warehouse_clock_;
    auto warehouse = registry.MakeWarehouseService("duckdb", {{"job_threads", "2"}}, context);
    ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
    warehouse_ = std::move(*warehouse);
    service_ = std::make_unique<SqlService>(catalog_.get(), warehouse_.get(), &cursors_, Clock::System());

    auto admin_secret = catalog_->EnsureAdminSecret(std::string("an-admin-secret-of-some-length"));
    ASSERT_TRUE(admin_secret.ok()) << admin_secret.status().ToString();
    admin_ = Resolve(**admin_secret);

    ASSERT_TRUE(catalog_->CreateProject("shop").ok());
    orders_ = MakeTable("orders");
    other_ = MakeTable("other");
    std::vector<std::string> rows;
    for (int i = 1; i <= 5; ++i) {
      rows.push_back(fmt::format(R"({{"user":"u{}","n":{},"amount":{}}})", i, i, i == 3 ? "null" : "1.5"));
    }
    Write(orders_, rows);
    Write(other_, {R"({"user":"z","n":100,"amount":null})"});
  }

  Principal Resolve(const std::string& secret) {
    auto principal = catalog_->ResolveSecret(secret);
    EXPECT_TRUE(principal.ok()) << principal.status().ToString();
    return principal.ok() ? *principal : Principal{};
  }

  Principal Mint(const SecretGrants& grants) {
    auto minted = catalog_->MintSecret("shop", grants);
    EXPECT_TRUE(minted.ok()) << minted.status().ToString();
    return Resolve(minted->secret);
  }

  TableInfo MakeTable(const std::string& name) {
    TableSpec spec;
    spec.name = name;
    spec.schema_json = kSchema;
    spec.key = {"user", "n"};
    auto table = catalog_->CreateTable("shop", spec);
    EXPECT_TRUE(table.ok()) << table.status().ToString();
    EXPECT_TRUE(warehouse_->RegisterInstance(table->primary).ok());
    return *table;
  }

  void Write(const TableInfo& table, const std::vector<std::string>& json_rows) {
    const schema::Schema& schema = *table.primary.schema;
    std::vector<driver::Record> records;
    int64_t ts = 1'700'000'000'000;
    for (const std::string& json : json_rows) {
      auto value = schema::ParseJsonRecord(schema, json);
      ASSERT_TRUE(value.ok()) << value.status().ToString();
      driver::Record record;
      ASSERT_TRUE(schema::EncodeAvro(schema, *value, &record.avro).ok());
      auto key = keys::EncodeKey(schema, *value);
      ASSERT_TRUE(key.ok()) << key.status().ToString();
      record.key = *key;
      record.timestamp_ms = ts++;
      records.push_back(std::move(record));
    }
    ASSERT_TRUE(warehouse_->WriteToWarehouse(table.primary, records, {}).ok());
  }

  // Polls the job until it finishes (or 30 s pass); returns its JSON.
  nlohmann::json WaitForJob(const Principal& who, const Uuid& job_id) {
    nlohmann::json job;
    for (int attempt = 0; attempt < 3000; ++attempt) {
      auto text = service_->JobJson(who, job_id.ToString());
      EXPECT_TRUE(text.ok()) << text.status().ToString();
      if (!text.ok()) return job;
      job = nlohmann::json::parse(*text);
      if (job["status"] == "done" || job["status"] == "failed") return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "job did not finish: " << job.dump();
    return job;
  }

  Uuid SubmitAndWait(const Principal& who, std::string_view sql) {
    auto job = service_->Submit(who, sql);
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    if (!job.ok()) return Uuid{};
    WaitForJob(who, job->job_id);
    return job->job_id;
  }

  // Every row of a done job, page by page through the cursors.
  std::vector<nlohmann::json> AllRows(const Principal& who, const Uuid& job_id, int32_t limit, int* pages) {
    std::vector<nlohmann::json> rows;
    std::string cursor;
    *pages = 0;
    for (int guard = 0; guard < 100; ++guard) {
      auto page = service_->Rows(who, job_id.ToString(), cursor, limit);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) break;
      ++*pages;
      auto data = nlohmann::json::parse(page->data_json);
      EXPECT_LE(data.size(), static_cast<size_t>(limit));
      for (auto& row : data) rows.push_back(row);
      EXPECT_EQ(nlohmann::json::parse(page->columns_json),
                nlohmann::json::parse(R"([{"name":"user","type":"VARCHAR"},{"name":"n","type":"BIGINT"}])"));
      if (page->next_cursor.empty()) break;
      cursor = page->next_cursor;
    }
    return rows;
  }

  // A SqlService with other limits over the same catalog and warehouse.
  void Reopen(const SqlOptions& options) {
    service_ = std::make_unique<SqlService>(catalog_.get(), warehouse_.get(), &cursors_, Clock::System(), options);
  }

  TempDir dir_;
  ManualClock warehouse_clock_;  // moves result expiry; writes keep no retention
  driver::CursorCodec cursors_{"sql-test-cursor-key"};
  std::unique_ptr<Catalog> catalog_;
  std::shared_ptr<driver::WarehouseService> warehouse_;
  std::unique_ptr<SqlService> service_;
  Principal admin_;
  TableInfo orders_, other_;
};

TEST_F(SqlServiceTest, DryRunListsTablesAndEstimatesBytes) {
  auto analysis = service_->Analyze(admin_, "SELECT o.user, x.n FROM shop.orders o JOIN \"shop\".\"other\" x "
                                            "ON o.n < x.n, shop.orders o2 WHERE o2.n = o.n");
  ASSERT_TRUE(analysis.ok()) << analysis.status().ToString();
  EXPECT_EQ(analysis->tables, (std::vector<std::string>{"shop.orders", "shop.other"}));
  ASSERT_EQ(analysis->resolved.size(), 2u);
  EXPECT_EQ(analysis->resolved[0], (JobTable{"shop", "orders", orders_.primary.instance_id}));
  EXPECT_EQ(analysis->resolved[1], (JobTable{"shop", "other", other_.primary.instance_id}));
  EXPECT_GT(analysis->bytes_scanned_estimate, 0);
  EXPECT_THAT(analysis->physical_sql, HasSubstr(warehouse_->TableName(orders_.primary)));
  EXPECT_THAT(analysis->physical_sql, HasSubstr(warehouse_->TableName(other_.primary)));
  EXPECT_THAT(analysis->physical_sql, Not(HasSubstr("shop.")));
  EXPECT_THAT(analysis->physical_sql, Not(HasSubstr("\"shop\"")));
}

TEST_F(SqlServiceTest, BadSqlIsInvalidArgumentWithTheBackendMessageInUserNames) {
  auto analysis = service_->Analyze(admin_, "SELECT no_such_column FROM shop.orders");
  ASSERT_FALSE(analysis.ok());
  EXPECT_EQ(analysis.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(analysis.status().message(), HasSubstr("no_such_column"));
  EXPECT_THAT(analysis.status().message(), Not(HasSubstr(orders_.primary.instance_id.Hex())));
}

TEST_F(SqlServiceTest, SubmitRunsTheJobAndPagesRowsWithCursors) {
  auto job = service_->Submit(admin_, "SELECT user, n FROM shop.orders ORDER BY n");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->tables, (std::vector<JobTable>{{"shop", "orders", orders_.primary.instance_id}}));
  EXPECT_EQ(job->secret_id, admin_.secret_id);
  const nlohmann::json status = WaitForJob(admin_, job->job_id);
  EXPECT_EQ(status["job_id"], job->job_id.ToString());
  EXPECT_EQ(status["status"], "done");
  EXPECT_TRUE(status["error"].is_null());
  EXPECT_EQ(status["rows"], 5);
  EXPECT_GT(status["bytes_scanned"].get<int64_t>(), 0);
  // The catalog now holds the finished state.
  auto stored = catalog_->GetJob(job->job_id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->status, driver::JobStatus::kDone);
  EXPECT_EQ(stored->rows, 5);

  std::vector<nlohmann::json> expected;
  for (int n = 1; n <= 5; ++n) expected.push_back(nlohmann::json::array({fmt::format("u{}", n), n}));
  for (auto [limit, want_pages] : std::vector<std::pair<int32_t, int>>{{1, 5}, {2, 3}, {1000, 1}}) {
    int pages = 0;
    EXPECT_EQ(AllRows(admin_, job->job_id, limit, &pages), expected) << "limit " << limit;
    EXPECT_EQ(pages, want_pages) << "limit " << limit;
  }

  // The same pages through decoded cursors (GET /v1/cursor).
  auto first = service_->Rows(admin_, job->job_id.ToString(), "", 2);
  ASSERT_TRUE(first.ok());
  auto decoded = cursors_.Decode(first->next_cursor);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->type, driver::CursorType::kJob);
  EXPECT_EQ(decoded->id, job->job_id);
  auto second = service_->RowsFromCursor(admin_, *decoded, 2);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(nlohmann::json::parse(second->data_json), nlohmann::json::parse(R"([["u3",3],["u4",4]])"));
}

TEST_F(SqlServiceTest, ReadersSeeOnlyTablesTheyMayReadAndHiddenTablesLookMissing) {
  const Principal reader = Mint({.read = {"orders"}});
  const Principal other_reader = Mint({.read = {"other"}});
  auto ok = service_->Analyze(reader, "SELECT * FROM shop.orders");
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();

  auto hidden = service_->Analyze(other_reader, "SELECT * FROM shop.orders");
  ASSERT_FALSE(hidden.ok());
  EXPECT_EQ(hidden.status().code(), StatusCode::kNotFound);
  auto missing = service_->Analyze(other_reader, "SELECT * FROM shop.missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(hidden.status(), TableNotFound("shop", "orders"));
  EXPECT_EQ(missing.status(), TableNotFound("shop", "missing"));
  auto no_project = service_->Analyze(admin_, "SELECT * FROM nope.orders");
  EXPECT_EQ(no_project.status(), TableNotFound("nope", "orders"));

  // One readable and one hidden table: refused as a whole.
  auto mixed = service_->Submit(reader, "SELECT * FROM shop.orders, shop.other");
  EXPECT_EQ(mixed.status(), TableNotFound("shop", "other"));
}

TEST_F(SqlServiceTest, ASecretCannotSeeAnotherSecretsJobOrItsCursor) {
  const Principal alice = Mint({.read = {"*"}});
  const Principal bob = Mint({.read = {"*"}});
  const Uuid job = SubmitAndWait(alice, "SELECT user, n FROM shop.orders ORDER BY n");
  auto page = service_->Rows(alice, job.ToString(), "", 1);
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  ASSERT_FALSE(page->next_cursor.empty());

  const Status unknown = service_->JobJson(bob, Uuid::Random().ToString()).status();
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound);
  auto seen_by_bob = service_->JobJson(bob, job.ToString());
  EXPECT_EQ(seen_by_bob.status(), NotFound("job {} not found", job.ToString()));
  EXPECT_EQ(service_->Rows(bob, job.ToString(), "", 10).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(service_->Rows(bob, job.ToString(), page->next_cursor, 10).status().code(), StatusCode::kNotFound);
  auto decoded = cursors_.Decode(page->next_cursor);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(service_->RowsFromCursor(bob, *decoded, 10).status().code(), StatusCode::kNotFound);
  // The admin sees every job.
  EXPECT_TRUE(service_->JobJson(admin_, job.ToString()).ok());
  // Not a job id at all: the same NotFound.
  EXPECT_EQ(service_->JobJson(alice, "not-a-uuid").status().code(), StatusCode::kNotFound);
}

TEST_F(SqlServiceTest, ForgedAndGarbageCursorsAreInvalidArgument) {
  const Uuid job = SubmitAndWait(admin_, "SELECT user, n FROM shop.orders ORDER BY n");
  const Uuid other_job = SubmitAndWait(admin_, "SELECT user, n FROM shop.other");
  auto page = service_->Rows(admin_, job.ToString(), "", 1);
  ASSERT_TRUE(page.ok()) << page.status().ToString();

  EXPECT_EQ(service_->Rows(admin_, job.ToString(), "garbage!", 1).status().code(), StatusCode::kInvalidArgument);
  driver::CursorCodec forger("another-key");
  const std::string forged = forger.Encode({driver::CursorType::kJob, job, "r1"});
  EXPECT_EQ(service_->Rows(admin_, job.ToString(), forged, 1).status().code(), StatusCode::kInvalidArgument);
  // A genuine cursor of one job does not page another.
  EXPECT_EQ(service_->Rows(admin_, other_job.ToString(), page->next_cursor, 1).status().code(),
            StatusCode::kInvalidArgument);
  // A cursor of another kind.
  const std::string log_cursor = cursors_.Encode({driver::CursorType::kLog, job, "r1"});
  EXPECT_EQ(service_->Rows(admin_, job.ToString(), log_cursor, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->RowsFromCursor(admin_, {driver::CursorType::kIndex, job, "r1"}, 1).status().code(),
            StatusCode::kInvalidArgument);
  // A signed cursor whose page token the warehouse does not understand.
  const std::string bad_page = cursors_.Encode({driver::CursorType::kJob, job, "zzz"});
  EXPECT_EQ(service_->Rows(admin_, job.ToString(), bad_page, 1).status().code(), StatusCode::kInvalidArgument);
  // Limits.
  EXPECT_EQ(service_->Rows(admin_, job.ToString(), "", 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->Rows(admin_, job.ToString(), "", 1001).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SqlServiceTest, RuntimeErrorsFailTheJobAndRowsAnswerFailedPrecondition) {
  auto job = service_->Submit(admin_, "SELECT CAST(user AS INTEGER) AS broken FROM shop.orders");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  const nlohmann::json status = WaitForJob(admin_, job->job_id);
  EXPECT_EQ(status["status"], "failed");
  ASSERT_TRUE(status["error"].is_string());
  EXPECT_THAT(status["error"].get<std::string>(), HasSubstr("u1"));
  auto rows = service_->Rows(admin_, job->job_id.ToString(), "", 10);
  EXPECT_EQ(rows.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(rows.status().message(), HasSubstr("job failed: "));
}

TEST_F(SqlServiceTest, RowsOfARunningJobAnswerFailedPrecondition) {
  // Long enough to still be running a moment later; the warehouse interrupts
  // it when the test tears down.
  auto job = service_->Submit(admin_, "SELECT count(*) FROM shop.orders, range(1000000) a, range(1000000) b");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  auto rows = service_->Rows(admin_, job->job_id.ToString(), "", 10);
  EXPECT_EQ(rows.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(rows.status().message(), HasSubstr("is still running"));
  auto text = service_->JobJson(admin_, job->job_id.ToString());
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(nlohmann::json::parse(*text)["status"].get<std::string>(), testing::AnyOf("pending", "running"));
}

TEST_F(SqlServiceTest, AJobThisProcessStartedAndTheWarehouseForgotIsMarkedFailed) {
  auto job = service_->Submit(admin_, "SELECT count(*) FROM shop.orders, range(1000000) a, range(1000000) b");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_TRUE(warehouse_->Reset().ok());  // the warehouse loses the job under it
  auto text = service_->JobJson(admin_, job->job_id.ToString());
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  const nlohmann::json status = nlohmann::json::parse(*text);
  EXPECT_EQ(status["status"], "failed");
  EXPECT_THAT(status["error"].get<std::string>(), HasSubstr("no longer knows this job"));
  auto stored = catalog_->GetJob(job->job_id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->status, driver::JobStatus::kFailed);
  EXPECT_EQ(service_->Rows(admin_, job->job_id.ToString(), "", 1).status().code(),
            StatusCode::kFailedPrecondition);
}

// A job recorded by another process (here: straight in the catalog) that
// nobody refreshes: pending while its lease runs, then failed by whoever reads it.
TEST_F(SqlServiceTest, AJobWhoseProcessStoppedIsFailedByTheReaderOnceItsLeaseRunsOut) {
  ManualClock clock(Clock::System()->NowMillis());
  SqlOptions options;
  options.job_lease_ms = 15'000;
  service_ = std::make_unique<SqlService>(catalog_.get(), warehouse_.get(), &cursors_, &clock, options);
  auto created = catalog_->CreateJob({.secret_id = admin_.secret_id,
                                      .tables = {{"shop", "orders", orders_.primary.instance_id}},
                                      .sql = "SELECT * FROM shop.orders"});
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(catalog_->UpdateJob(created->job_id, {.status = driver::JobStatus::kRunning}).ok());
  auto text = service_->JobJson(admin_, created->job_id.ToString());
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(nlohmann::json::parse(*text)["status"], "running") << "another process may still run it";
  EXPECT_THAT(service_->Rows(admin_, created->job_id.ToString(), "", 1).status().message(),
              HasSubstr("still running"));

  clock.Advance(int64_t{16'000} * 1000);
  text = service_->JobJson(admin_, created->job_id.ToString());
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  const nlohmann::json status = nlohmann::json::parse(*text);
  EXPECT_EQ(status["status"], "failed");
  EXPECT_EQ(status["error"], "the process running this job stopped; submit it again");
  EXPECT_EQ(catalog_->GetJob(created->job_id)->status, driver::JobStatus::kFailed);
  service_.reset();  // before its clock goes
}

TEST_F(SqlServiceTest, AtStartUpJobsPastTheirLeaseAreFailedWithoutAnyoneReadingThem) {
  auto stale = catalog_->CreateJob({.secret_id = admin_.secret_id, .tables = {}, .sql = "SELECT 1"});
  ASSERT_TRUE(stale.ok());
  ManualClock later(Clock::System()->NowMillis() + 60'000);
  SqlOptions options;
  options.job_lease_ms = 30'000;
  service_ = std::make_unique<SqlService>(catalog_.get(), warehouse_.get(), &cursors_, &later, options);
  auto stored = catalog_->GetJob(stale->job_id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->status, driver::JobStatus::kFailed);
  EXPECT_EQ(stored->error, "the process running this job stopped; submit it again");
  service_.reset();
}

TEST_F(SqlServiceTest, TheProcessRunningAJobRefreshesItInTheCatalog) {
  SqlOptions options;
  options.job_heartbeat_ms = 20;
  options.job.timeout_ms = 60'000;
  Reopen(options);
  auto job = service_->Submit(admin_, "SELECT count(*) FROM shop.orders, range(1000000) a, range(1000000) b");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  const int64_t first = catalog_->GetJob(job->job_id)->updated_ms;
  JobInfo seen;
  for (int attempt = 0; attempt < 1000; ++attempt) {  // up to 10 s; nobody polls the job
    seen = *catalog_->GetJob(job->job_id);
    if (seen.status == driver::JobStatus::kRunning && seen.updated_ms > first) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(seen.status, driver::JobStatus::kRunning);
  EXPECT_GT(seen.updated_ms, first);
  // Closing the service fails what it still runs: nobody would refresh it.
  service_.reset();
  auto closed = catalog_->GetJob(job->job_id);
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(closed->status, driver::JobStatus::kFailed);
  EXPECT_THAT(closed->error, HasSubstr("shut down"));
}

// max_jobs_per_secret counts the catalog's unfinished jobs of the secret,
// whichever process runs them; those whose process stopped do not count.
TEST_F(SqlServiceTest, TheJobLimitCountsEveryProcesssJobsButNotStaleOnes) {
  ManualClock clock(Clock::System()->NowMillis());
  SqlOptions options;
  options.max_jobs_per_secret = 2;
  options.job_lease_ms = 15'000;
  service_ = std::make_unique<SqlService>(catalog_.get(), warehouse_.get(), &cursors_, &clock, options);
  const Principal reader = Mint({.read = {"orders"}});
  std::vector<Uuid> elsewhere;
  for (int i = 0; i < 2; ++i) {  // running in "another process"
    auto created = catalog_->CreateJob({.secret_id = reader.secret_id, .tables = {}, .sql = "SELECT 1"});
    ASSERT_TRUE(created.ok());
    ASSERT_TRUE(catalog_->UpdateJob(created->job_id, {.status = driver::JobStatus::kRunning}).ok());
    elsewhere.push_back(created->job_id);
  }
  auto refused = service_->Submit(reader, "SELECT n FROM shop.orders");
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("already has 2 SQL jobs pending or running"));
  clock.Advance(int64_t{16'000} * 1000);  // their process stopped refreshing them
  auto accepted = service_->Submit(reader, "SELECT n FROM shop.orders");
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  for (const Uuid& id : elsewhere) {
    EXPECT_EQ(catalog_->GetJob(id)->status, driver::JobStatus::kFailed);
    EXPECT_EQ(catalog_->GetJob(id)->error, "the process running this job stopped; submit it again");
  }
  WaitForJob(reader, accepted->job_id);
  service_.reset();  // before its clock goes
}

TEST_F(SqlServiceTest, RefusedSqlIsInvalidArgument) {
  const std::string physical = warehouse_->TableName(orders_.primary);
  const std::vector<std::string> refused = {
      "SELECT * FROM read_csv('/etc/passwd')",
      "SELECT * FROM '/etc/passwd'",
      "ATTACH '/tmp/x.db' AS x",
      "SELECT 1; ATTACH '/tmp/x.db' AS x",
      "SELECT * FROM duckdb_tables()",
      "SELECT * FROM information_schema.tables",
      "SELECT * FROM orders",
      "SELECT * FROM " + physical,
      "SELECT * FROM main." + physical,
      "SELECT current_setting('threads')",
      "COPY (SELECT 1) TO '/tmp/out.csv'",
      "INSERT INTO shop.orders VALUES ('x', 1, null)",
  };
  for (const std::string& sql : refused) {
    auto analysis = service_->Analyze(admin_, sql);
    EXPECT_EQ(analysis.status().code(), StatusCode::kInvalidArgument) << sql << ": " << analysis.status().ToString();
    EXPECT_EQ(service_->Submit(admin_, sql).status().code(), StatusCode::kInvalidArgument) << sql;
  }
}

TEST_F(SqlServiceTest, TheWarehousePlanIsTheSecondLineOfDefence) {
  // DuckDB binds a CTE's own name inside its body to a real table of that
  // name, which the lexical check takes for the CTE: the plan exposes it.
  const std::string physical = warehouse_->TableName(orders_.primary);
  const std::string sql =
      "WITH RECURSIVE " + physical + " AS (SELECT * FROM " + physical + ") SELECT * FROM " + physical;
  ASSERT_TRUE(CheckSql(sql).ok());
  auto analysis = service_->Analyze(admin_, sql);
  ASSERT_FALSE(analysis.ok());
  EXPECT_EQ(analysis.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(analysis.status().message(), HasSubstr("query reads a table it does not name"));
}

TEST_F(SqlServiceTest, AtMostSixteenDistinctTables) {
  std::string sql = "SELECT 1 FROM shop.orders";
  for (int i = 0; i < 16; ++i) sql += fmt::format(", shop.t{}", i);
  auto analysis = service_->Analyze(admin_, sql);
  EXPECT_EQ(analysis.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(analysis.status().message(), HasSubstr("more than 16 tables"));
  // Repeats of one table count once.
  std::string repeats = "SELECT 1 FROM shop.orders";
  for (int i = 0; i < 20; ++i) repeats += fmt::format(", shop.orders o{}", i);
  EXPECT_TRUE(service_->Analyze(admin_, repeats).ok());
}

TEST_F(SqlServiceTest, ASecretRunsAtMostMaxJobsAtOnce) {
  SqlOptions options;
  options.max_jobs_per_secret = 2;
  options.job.timeout_ms = 3000;  // the slow jobs end on their own
  Reopen(options);
  const Principal reader = Mint({.read = {"orders"}});
  const std::string slow = "SELECT count(*) FROM shop.orders, range(1000000) a, range(1000000) b";
  auto first = service_->Submit(reader, slow);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = service_->Submit(reader, slow);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  auto third = service_->Submit(reader, "SELECT 1");
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("already has 2 SQL jobs pending or running"));
  EXPECT_THAT(third.status().message(), HasSubstr("max_jobs_per_secret"));
  // The limit is per secret: another one still runs jobs.
  EXPECT_TRUE(service_->Submit(admin_, "SELECT 1").ok());
  // Once one finishes (here: times out), its slot is free again, whether or
  // not anyone polled it.
  for (int attempt = 0;; ++attempt) {
    auto polled = warehouse_->PollJob(first->job_id);
    ASSERT_TRUE(polled.ok());
    if (polled->status == driver::JobStatus::kFailed) break;
    ASSERT_LT(attempt, 6000) << "the slow job did not time out";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto again = service_->Submit(reader, "SELECT 1");
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST_F(SqlServiceTest, TheRowCapPassesNRowsAndFailsTheJobAtNPlusOne) {
  const std::string sql = "SELECT a.user, b.n FROM shop.orders a, shop.orders b";  // 25 rows
  SqlOptions options;
  options.job.max_result_rows = 25;
  Reopen(options);
  const Uuid passed = SubmitAndWait(admin_, sql);
  EXPECT_EQ(WaitForJob(admin_, passed)["status"], "done");
  EXPECT_EQ(WaitForJob(admin_, passed)["rows"], 25);
  options.job.max_result_rows = 24;
  Reopen(options);
  const Uuid failed = SubmitAndWait(admin_, sql);
  const nlohmann::json status = WaitForJob(admin_, failed);
  EXPECT_EQ(status["status"], "failed");
  EXPECT_THAT(status["error"].get<std::string>(), HasSubstr("result exceeds 24 rows; add LIMIT"));
  auto rows = service_->Rows(admin_, failed.ToString(), "", 10);
  EXPECT_EQ(rows.status().code(), StatusCode::kFailedPrecondition);
}

// SELECT * FROM range(1e9) from a read-only secret once materialised every row.
TEST_F(SqlServiceTest, AGeneratorFromAReadOnlySecretStopsAtTheDefaultCaps) {
  Reopen(SqlOptions{});
  const Principal reader = Mint({.read = {"orders"}});
  const Uuid job = SubmitAndWait(reader, "SELECT * FROM range(1000000000)");
  const nlohmann::json status = WaitForJob(reader, job);
  EXPECT_EQ(status["status"], "failed");
  EXPECT_THAT(status["error"].get<std::string>(), HasSubstr("result exceeds 1000000 rows"));
}

TEST_F(SqlServiceTest, DryRunEstimatesCountGeneratedRows) {
  auto generated = service_->Analyze(admin_, "SELECT * FROM range(1000000)");
  ASSERT_TRUE(generated.ok()) << generated.status().ToString();
  EXPECT_GE(generated->bytes_scanned_estimate, 8'000'000);
  auto plain = service_->Analyze(admin_, "SELECT n FROM shop.orders");
  auto crossed = service_->Analyze(admin_, "SELECT n FROM shop.orders, generate_series(1, 100000)");
  ASSERT_TRUE(plain.ok() && crossed.ok());
  EXPECT_GE(crossed->bytes_scanned_estimate, plain->bytes_scanned_estimate + 800'000);
}

TEST_F(SqlServiceTest, RowsExpireAfterTheResultTtlAndTheJobStaysDone) {
  SqlOptions options;
  options.job.result_ttl_ms = 60'000;
  Reopen(options);
  const Uuid job = SubmitAndWait(admin_, "SELECT user, n FROM shop.orders ORDER BY n");
  warehouse_clock_.Advance(59'999 * 1000);
  EXPECT_TRUE(service_->Rows(admin_, job.ToString(), "", 10).ok());
  warehouse_clock_.Advance(1000);
  auto rows = service_->Rows(admin_, job.ToString(), "", 10);
  EXPECT_EQ(rows.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(rows.status().message(), HasSubstr("expired 60000 ms after it finished"));
  EXPECT_EQ(WaitForJob(admin_, job)["status"], "done");
}

TEST_F(SqlServiceTest, TablesWithoutAWarehouseCopyAreRefused) {
  TableSpec spec;
  spec.name = "nowh";
  spec.schema_json = kSchema;
  spec.key = {"user", "n"};
  spec.use_warehouse = false;
  ASSERT_TRUE(catalog_->CreateTable("shop", spec).ok());
  auto analysis = service_->Analyze(admin_, "SELECT * FROM shop.nowh");
  EXPECT_EQ(analysis.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(analysis.status().message(), HasSubstr("use_warehouse"));
}


// --- The inline path (POST /v1/sql with wait_ms) --------------------------------------------

// Every row and the columns of a job, through Rows() and its cursors.
std::pair<nlohmann::json, nlohmann::json> RowsOf(SqlService& service, const Principal& who, const Uuid& job_id,
                                                 std::string first_cursor, int32_t limit) {
  nlohmann::json columns, rows = nlohmann::json::array();
  std::string cursor = std::move(first_cursor);
  for (int guard = 0; guard < 100; ++guard) {
    auto page = service.Rows(who, job_id.ToString(), cursor, limit);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) break;
    columns = nlohmann::json::parse(page->columns_json);
    for (auto& row : nlohmann::json::parse(page->data_json)) rows.push_back(row);
    if (page->next_cursor.empty()) break;
    cursor = page->next_cursor;
  }
  return {columns, rows};
}

TEST_F(SqlServiceTest, SmallResultsAreAnsweredInlineWithTheRowsAJobWouldGive) {
  const std::string sql =
      "SELECT user, n, amount, n * 2 AS twice, CAST(n AS DECIMAL(10,2)) AS d, n::INTEGER AS i, "
      "user = 'u2' AS b, sum(n) OVER () AS total FROM shop.orders ORDER BY n";
  auto analysis = service_->Analyze(admin_, sql);
  ASSERT_TRUE(analysis.ok()) << analysis.status().ToString();
  auto waited = service_->SubmitAndWait(admin_, sql, *analysis, 10'000, 2);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_TRUE(waited->inline_answer);
  EXPECT_EQ(waited->job.status, driver::JobStatus::kDone);
  EXPECT_EQ(waited->job.rows, 5);
  EXPECT_TRUE(waited->job.result_in_catalog);
  ASSERT_TRUE(waited->rows.has_value());
  auto first = nlohmann::json::parse(waited->rows->data_json);
  ASSERT_EQ(first.size(), 2u);
  ASSERT_FALSE(waited->rows->next_cursor.empty());

  // The same query as a job: the same columns (names and types) and rows.
  const Uuid job = SubmitAndWait(admin_, sql);
  auto [job_columns, job_rows] = RowsOf(*service_, admin_, job, "", 1000);
  EXPECT_EQ(nlohmann::json::parse(waited->rows->columns_json), job_columns);
  auto [columns, rest] = RowsOf(*service_, admin_, waited->job.job_id, waited->rows->next_cursor, 2);
  EXPECT_EQ(columns, job_columns);
  nlohmann::json all = first;
  for (auto& row : rest) all.push_back(row);
  EXPECT_EQ(all, job_rows);
  EXPECT_EQ(all.size(), 5u);

  // Another process sharing the catalog (and the warehouse's database) sees
  // the job and pages its rows: nothing lives in this service's memory.
  auto text = service_->JobJson(admin_, waited->job.job_id.ToString());
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(nlohmann::json::parse(*text)["status"], "done");
  SqlService other(catalog_.get(), warehouse_.get(), &cursors_, Clock::System());
  auto [other_columns, other_rows] = RowsOf(other, admin_, waited->job.job_id, "", 3);
  EXPECT_EQ(other_columns, job_columns);
  EXPECT_EQ(other_rows, job_rows);
  // Its cursor does not page another job, and a forged page is refused.
  auto foreign = service_->Rows(admin_, job.ToString(), waited->rows->next_cursor, 10);
  EXPECT_EQ(foreign.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SqlServiceTest, InlineRunTimeErrorsFailTheJobLikeAJob) {
  const std::string sql = "SELECT CAST(user AS INTEGER) AS broken FROM shop.orders";
  auto analysis = service_->Analyze(admin_, sql);
  ASSERT_TRUE(analysis.ok()) << analysis.status().ToString();
  auto waited = service_->SubmitAndWait(admin_, sql, *analysis, 10'000, 100);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_EQ(waited->job.status, driver::JobStatus::kFailed);
  EXPECT_THAT(waited->job.error, HasSubstr("u1"));
  EXPECT_THAT(waited->job.error, Not(HasSubstr(orders_.primary.instance_id.Hex())));
  EXPECT_FALSE(waited->rows.has_value());
  auto rows = service_->Rows(admin_, waited->job.job_id.ToString(), "", 10);
  EXPECT_EQ(rows.status().code(), StatusCode::kFailedPrecondition);
  auto text = service_->JobJson(admin_, waited->job.job_id.ToString());
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(nlohmann::json::parse(*text)["status"], "failed");
}

TEST_F(SqlServiceTest, LargeResultsAndOtherTypesRunAsJobsWithinTheWait) {
  // Over kInlineMaxRows: a job, still answered with its first page when it ends in time.
  const std::string sql = "SELECT r.range AS v FROM range(2500) AS r, shop.other ORDER BY v";
  auto analysis = service_->Analyze(admin_, sql);
  ASSERT_TRUE(analysis.ok()) << analysis.status().ToString();
  auto waited = service_->SubmitAndWait(admin_, sql, *analysis, 30'000, 1000);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  EXPECT_FALSE(waited->inline_answer);
  EXPECT_FALSE(waited->job.result_in_catalog);
  ASSERT_EQ(waited->job.status, driver::JobStatus::kDone);
  EXPECT_EQ(waited->job.rows, 2500);
  ASSERT_TRUE(waited->rows.has_value());
  EXPECT_EQ(nlohmann::json::parse(waited->rows->data_json).size(), 1000u);
  EXPECT_FALSE(waited->rows->next_cursor.empty());

  // A column type the inline path leaves to jobs (a list).
  const std::string lists = "SELECT [n, n] AS pair FROM shop.orders ORDER BY n";
  auto list_analysis = service_->Analyze(admin_, lists);
  ASSERT_TRUE(list_analysis.ok()) << list_analysis.status().ToString();
  auto list_waited = service_->SubmitAndWait(admin_, lists, *list_analysis, 30'000, 10);
  ASSERT_TRUE(list_waited.ok()) << list_waited.status().ToString();
  EXPECT_FALSE(list_waited->inline_answer);
  ASSERT_EQ(list_waited->job.status, driver::JobStatus::kDone);
  EXPECT_EQ(nlohmann::json::parse(list_waited->rows->data_json)[0], nlohmann::json::parse("[[1,1]]"));

  // wait_ms 0: no inline run, the job's status at once.
  auto now = service_->SubmitAndWait(admin_, "SELECT n FROM shop.orders", *service_->Analyze(admin_, "SELECT n FROM shop.orders"), 0, 10);
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  EXPECT_FALSE(now->inline_answer);
  WaitForJob(admin_, now->job.job_id);
}

TEST_F(SqlServiceTest, InlineRowsExpireAfterTheResultTtl) {
  SqlOptions options;
  options.job.result_ttl_ms = 50;
  Reopen(options);
  const std::string sql = "SELECT n FROM shop.orders ORDER BY n";
  auto waited = service_->SubmitAndWait(admin_, sql, *service_->Analyze(admin_, sql), 10'000, 100);
  ASSERT_TRUE(waited.ok()) << waited.status().ToString();
  ASSERT_TRUE(waited->inline_answer);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  auto rows = service_->Rows(admin_, waited->job.job_id.ToString(), "", 10);
  EXPECT_EQ(rows.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(rows.status().message(), HasSubstr("expired"));
  // The catalog drops the text; the job stays done.
  auto expired = catalog_->ExpireJobResults(Clock::System()->NowMillis());
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_GE(*expired, 1);
  auto text = catalog_->GetJobResult(waited->job.job_id);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_FALSE(text->has_value());
  auto job = catalog_->GetJob(waited->job.job_id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->status, driver::JobStatus::kDone);
}

TEST_F(SqlServiceTest, InlineRunsCountAgainstTheSecretsJobLimit) {
  SqlOptions options;
  options.max_jobs_per_secret = 1;
  Reopen(options);
  // One unfinished job of the secret (recorded, never started): the next
  // submission, inline or not, is over the limit.
  ASSERT_TRUE(catalog_->CreateJob({.secret_id = admin_.secret_id, .tables = {}, .sql = "SELECT 1"}).ok());
  const std::string sql = "SELECT n FROM shop.orders";
  auto waited = service_->SubmitAndWait(admin_, sql, *service_->Analyze(admin_, sql), 10'000, 100);
  ASSERT_FALSE(waited.ok());
  EXPECT_EQ(waited.status().code(), StatusCode::kResourceExhausted);
}

// The caches on the inline path (the catalog's answers, the warehouse's plan
// check and prepared statements) never outlive what they answered for: another
// process sharing the catalog file revokes a secret and drops a table, and
// rows written meanwhile are counted, each seen by the very next query.
TEST_F(SqlServiceTest, TheNextInlineQuerySeesAnotherProcesssChangesAndNewRows) {
  const std::string path = dir_.path() + "/shared-catalog.db";
  auto mine = OpenSqliteCatalog(path);
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  auto theirs = OpenSqliteCatalog(path);
  ASSERT_TRUE(theirs.ok()) << theirs.status().ToString();
  const std::string admin_secret = "another-admin-secret-of-some-length";
  ASSERT_TRUE((*mine)->EnsureAdminSecret(admin_secret).ok());
  ASSERT_TRUE((*mine)->CreateProject("p").ok());
  TableSpec spec;
  spec.name = "t";
  spec.schema_json = kSchema;
  spec.key = {"user", "n"};
  auto table = (*mine)->CreateTable("p", spec);
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_TRUE(warehouse_->RegisterInstance(table->primary).ok());
  Write(*table, {R"({"user":"a","n":1,"amount":null})", R"({"user":"b","n":2,"amount":null})"});
  SecretGrants grants;
  grants.read = {"t"};
  auto reader = (*mine)->MintSecret("p", grants);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();

  SqlService service(mine->get(), warehouse_.get(), &cursors_, Clock::System());
  // No row has n >= 3 yet: a plan made from the statistics of now answers 0 forever.
  const std::string sql = "SELECT count(*) AS c FROM p.t WHERE n >= 3";
  // As the gateway does per request: the secret resolved, then the query.
  auto run = [&](const std::string& secret) -> Result<std::string> {
    AQ_ASSIGN_OR_RETURN(Principal who, (*mine)->ResolveSecret(secret));
    AQ_ASSIGN_OR_RETURN(SqlAnalysisResult analysis, service.Analyze(who, sql));
    AQ_ASSIGN_OR_RETURN(SqlWaited waited, service.SubmitAndWait(who, sql, analysis, 10'000, 100));
    if (!waited.rows) return Internal("no rows answered");
    return waited.rows->data_json;
  };
  for (int i = 0; i < 3; ++i) {  // the later runs from the caches
    auto rows = run(reader->secret);
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    EXPECT_EQ(*rows, "[[0]]");
  }
  Write(*table, {R"({"user":"c","n":3,"amount":null})"});
  auto more = run(reader->secret);
  ASSERT_TRUE(more.ok()) << more.status().ToString();
  EXPECT_EQ(*more, "[[1]]");

  ASSERT_TRUE((*theirs)->DeleteSecret(reader->secret_id).ok());
  EXPECT_EQ(run(reader->secret).status().code(), StatusCode::kUnauthenticated);
  auto admin = run(admin_secret);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  EXPECT_EQ(*admin, "[[1]]");

  ASSERT_TRUE((*theirs)->DeleteTable("p", "t").ok());
  EXPECT_EQ(run(admin_secret).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace aquifer::engine
