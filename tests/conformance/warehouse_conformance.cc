#include "warehouse_conformance.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"
#include "aquifer/schema/testing_schemas.h"

namespace aquifer::conformance {
namespace {

using driver::InstanceInfo;
using driver::Job;
using driver::JobStatus;
using driver::Record;
using nlohmann::json;

constexpr const char* kEventSchema = R"json({
  "type": "record", "name": "Event",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "username", "type": "string"},
    {"name": "amount", "type": "double"},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "location", "type": {"type": "record", "name": "Location", "fields": [
      {"name": "city", "type": "string"},
      {"name": "zip", "type": "int"}]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}}
  ]
})json";

// Not "user": standard SQL reserves it (Postgres reads a bare `user` as CURRENT_USER).
const std::vector<std::string> kEventColumns = {"id", "username", "amount", "note", "location", "tags"};
const char* const kUsers[] = {"ada", "grace", "edsger", "barbara"};
const char* const kCities[] = {"london", "paris", "oslo"};

schema::SchemaPtr EventSchema() {
  static schema::SchemaPtr schema = [] {
    auto parsed = schema::Schema::Parse(kEventSchema, {"id"});
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    return parsed.ok() ? *parsed : nullptr;
  }();
  return schema;
}

InstanceInfo MakeInstance() {
  InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.project = "conformance";
  instance.table = "events";
  instance.schema = EventSchema();
  return instance;
}

// The expected content of event `id`, derived from the id alone.
struct Event {
  int64_t id;
  std::string user;
  double amount;  // multiples of 0.25: exact in binary, so sums are exact
  bool has_note;
  std::string city;
  int zip;
  int tag_count;
};

Event MakeEvent(int64_t id) {
  return Event{id, kUsers[id % 4], static_cast<double>(id) * 0.25, id % 3 == 0, kCities[id % 3],
               static_cast<int>(1000 + id), static_cast<int>(id % 4)};
}

Record ToRecord(const Event& e, int64_t timestamp_ms) {
  json j;
  j["id"] = e.id;
  j["username"] = e.user;
  j["amount"] = e.amount;
  j["note"] = e.has_note ? json("note " + std::to_string(e.id)) : json(nullptr);
  j["location"] = {{"city", e.city}, {"zip", e.zip}};
  j["tags"] = json::array();
  for (int t = 0; t < e.tag_count; ++t) j["tags"].push_back("t" + std::to_string(t));
  const schema::Schema& schema = *EventSchema();
  Result<schema::Value> value = schema::ParseJsonRecord(schema, j.dump());
  EXPECT_TRUE(value.ok()) << value.status().ToString();
  Record record;
  record.timestamp_ms = timestamp_ms;
  if (!value.ok()) return record;
  EXPECT_TRUE(schema::EncodeAvro(schema, *value, &record.avro).ok());
  Result<std::string> key = keys::EncodeKey(schema, *value);
  EXPECT_TRUE(key.ok()) << key.status().ToString();
  if (key.ok()) record.key = *key;
  return record;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<Record> Events(int64_t first, int64_t count) {
  std::vector<Record> records;
  const int64_t now = NowMs();
  for (int64_t id = first; id < first + count; ++id) records.push_back(ToRecord(MakeEvent(id), now + id));
  return records;
}

// A JSON integer, or an integer written as a string (HUGEINT-style results).
int64_t AsInt(const json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_float()) return static_cast<int64_t>(value.get<double>());
  if (value.is_string()) return std::stoll(value.get<std::string>());
  ADD_FAILURE() << "not an integer: " << value.dump();
  return 0;
}

double AsDouble(const json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string()) return std::stod(value.get<std::string>());
  ADD_FAILURE() << "not a number: " << value.dump();
  return 0;
}

struct Rows {
  std::vector<driver::Column> columns;
  std::vector<json> rows;
  int pages = 0;
};

// Reads every row of a done job, `page_size` at a time, checking the paging contract.
Rows ReadAll(driver::WarehouseService& warehouse, const Uuid& id, int32_t page_size) {
  Rows out;
  std::string token;
  while (true) {
    Result<driver::RowPage> page = warehouse.ReadJobRows(id, token, page_size);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) return out;
    ++out.pages;
    if (out.pages == 1) {
      out.columns = page->columns;
    } else {
      EXPECT_EQ(page->columns.size(), out.columns.size());
    }
    EXPECT_LE(page->rows.size(), static_cast<size_t>(page_size));
    for (const std::string& row : page->rows) {
      json parsed = json::parse(row, nullptr, false);
      EXPECT_FALSE(parsed.is_discarded()) << row;
      EXPECT_TRUE(parsed.is_array()) << row;
      EXPECT_EQ(parsed.size(), out.columns.size()) << row;
      out.rows.push_back(std::move(parsed));
    }
    if (page->next.empty()) break;
    EXPECT_FALSE(page->rows.empty()) << "a page with a next token must not be empty";
    if (out.pages > 100'000) {
      ADD_FAILURE() << "paging does not end";
      break;
    }
    token = page->next;
  }
  return out;
}

}  // namespace

void PrintTo(const WarehouseDriverFactory& factory, std::ostream* os) { *os << factory.name; }

driver::InstanceInfo IdInstance() {
  static const schema::SchemaPtr schema = *schema::Schema::Parse(
      R"json({"type": "record", "name": "E", "fields": [{"name": "id", "type": "long"}]})json", {"id"});
  driver::InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.schema = schema;
  return instance;
}

std::vector<driver::Record> IdRecords(int64_t first, int64_t count) {
  std::vector<driver::Record> records;
  const auto& schema = *IdInstance().schema;
  for (int64_t id = first; id < first + count; ++id) {
    auto value = schema::ParseJsonRecord(schema, fmt::format(R"({{"id": {}}})", id));
    EXPECT_TRUE(value.ok());
    driver::Record record;
    record.timestamp_ms = 1'700'000'000'000 + id;
    EXPECT_TRUE(schema::EncodeAvro(schema, *value, &record.avro).ok());
    record.key = *keys::EncodeKey(schema, *value);
    records.push_back(std::move(record));
  }
  return records;
}

decltype(WarehouseDriverFactory::make) MakeFromRegistry(
    const driver::Registry& registry, std::string driver,
    std::function<Result<driver::Config>(const std::string& scratch_dir)> config_for) {
  return [&registry, driver = std::move(driver), config_for = std::move(config_for)](
             const std::string& scratch_dir, Clock* clock) -> Result<std::shared_ptr<driver::WarehouseService>> {
    AQ_ASSIGN_OR_RETURN(driver::Config config, config_for(scratch_dir));
    driver::DriverContext context;
    context.clock = clock;
    return registry.MakeWarehouseService(driver, config, context);
  };
}

Job WaitForJob(driver::WarehouseService& warehouse, const Uuid& id) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (true) {
    Result<Job> job = warehouse.PollJob(id);
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    if (!job.ok()) return Job{};
    EXPECT_EQ(job->job_id, id);
    if (job->status == JobStatus::kDone || job->status == JobStatus::kFailed) return *job;
    if (std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "job did not finish within 60 s";
      return *job;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<nlohmann::json> RunJob(driver::WarehouseService& warehouse, const std::string& sql) {
  const Uuid id = Uuid::Random();
  auto started = warehouse.StartQuery(id, sql, {});
  EXPECT_TRUE(started.ok()) << started.status().ToString();
  std::vector<json> rows;
  if (!started.ok()) return rows;
  const Job job = WaitForJob(warehouse, id);
  EXPECT_EQ(job.status, JobStatus::kDone) << sql << ": " << job.error;
  auto page = warehouse.ReadJobRows(id, "", 1000);
  if (!page.ok()) return rows;
  for (const std::string& row : page->rows) rows.push_back(json::parse(row));
  return rows;
}

void MakeRichRecord(const std::string& json, RichRecord* rich) {
  auto schema = schema::Schema::Parse(schema::testing::kRichSchemaJson, {"id"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  rich->schema = *schema;
  auto value = schema::ParseJsonRecord(*rich->schema, json);
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  rich->value = *value;
  ASSERT_TRUE(schema::EncodeAvro(*rich->schema, rich->value, &rich->record.avro).ok());
  auto key = keys::EncodeKey(*rich->schema, rich->value);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  rich->record.key = *key;
  rich->record.timestamp_ms = 1700000000999;
  rich->instance.instance_id = Uuid::Random();
  rich->instance.schema = rich->schema;
}

void StoreRichRecord(driver::WarehouseService& warehouse, const std::string& json, RichRecord* rich) {
  ASSERT_NO_FATAL_FAILURE(MakeRichRecord(json, rich));
  Status registered = warehouse.RegisterInstance(rich->instance);
  ASSERT_TRUE(registered.ok()) << registered.ToString();
  Status written = warehouse.WriteToWarehouse(rich->instance, std::vector<Record>{rich->record}, {});
  ASSERT_TRUE(written.ok()) << written.ToString();
}

void ExpectARetryCompletesAGroupStoredInPart(driver::WarehouseService& warehouse) {
  InstanceInfo instance = IdInstance();
  ASSERT_TRUE(warehouse.RegisterInstance(instance).ok());
  std::vector<Record> all = IdRecords(0, 5);
  std::vector<Record> part(all.begin(), all.begin() + 3);
  ASSERT_TRUE(warehouse.WriteToWarehouse(instance, part, std::vector<driver::RecordGroup>{{"G", 3}}).ok());
  ASSERT_TRUE(warehouse.WriteToWarehouse(instance, all, std::vector<driver::RecordGroup>{{"G", 5}}).ok());
  ASSERT_TRUE(warehouse.WriteToWarehouse(instance, all, std::vector<driver::RecordGroup>{{"G", 5}}).ok());
  auto rows = RunJob(warehouse, "SELECT id FROM " + warehouse.TableName(instance) + " ORDER BY id");
  std::vector<int64_t> ids;
  for (const auto& row : rows) ids.push_back(row[0].get<int64_t>());
  EXPECT_EQ(ids, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  ASSERT_TRUE(warehouse.Reset().ok());
}

void ExpectConcurrentWritesOfOneGroupStoreItOnce(driver::WarehouseService& warehouse) {
  InstanceInfo instance = IdInstance();
  ASSERT_TRUE(warehouse.RegisterInstance(instance).ok());
  const std::vector<Record> records = IdRecords(0, 5);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      Status written = warehouse.WriteToWarehouse(instance, records, std::vector<driver::RecordGroup>{{"G", 5}});
      if (!written.ok()) ++failures;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  auto rows = RunJob(warehouse, "SELECT count(*) FROM " + warehouse.TableName(instance));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], 5);
  ASSERT_TRUE(warehouse.Reset().ok());
}

std::string WarehouseDriverName(const ::testing::TestParamInfo<WarehouseDriverFactory>& info) {
  std::string name = info.param.name;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

void WarehouseConformance::SetUp() {
  std::string templ = (std::filesystem::temp_directory_path() / "aquifer-wh-XXXXXX").string();
  ASSERT_NE(mkdtemp(templ.data()), nullptr);
  scratch_dir_ = templ;
  clock_ = std::make_unique<ManualClock>(NowMs());
  auto made = GetParam().make(scratch_dir_, clock_.get());
  ASSERT_TRUE(made.ok()) << GetParam().name << ": " << made.status().ToString();
  warehouse_ = *made;
}

void WarehouseConformance::TearDown() {
  warehouse_.reset();
  std::error_code ec;
  if (!scratch_dir_.empty()) std::filesystem::remove_all(scratch_dir_, ec);
}

namespace {

TEST_P(WarehouseConformance, TableNameIsQuotedDeterministicAndUniquePerInstance) {
  InstanceInfo a = MakeInstance();
  InstanceInfo b = MakeInstance();
  const std::string name = warehouse_->TableName(a);
  ASSERT_FALSE(name.empty());
  EXPECT_TRUE(name.front() == '"' || name.front() == '`') << name;
  EXPECT_EQ(name.back(), name.front()) << name;
  EXPECT_EQ(warehouse_->TableName(a), name);
  InstanceInfo a_again = a;
  a_again.project = "other";
  a_again.table = "renamed";
  EXPECT_EQ(warehouse_->TableName(a_again), name) << "the name depends on the instance id only";
  EXPECT_NE(warehouse_->TableName(b), name);
}

}  // namespace

// The fixture's helpers as free functions over the fixture, so TEST_P bodies stay short.
#define WH_HELPERS                                                                                 \
  auto caps = [&] { return warehouse_->capabilities(); };                                         \
  auto registered = [&] {                                                                         \
    InstanceInfo instance = MakeInstance();                                                       \
    EXPECT_TRUE(warehouse_->RegisterInstance(instance).ok());                                     \
    return instance;                                                                              \
  };                                                                                              \
  auto run = [&](const std::string& sql, driver::JobOptions options = {}) {                       \
    const Uuid id = Uuid::Random();                                                               \
    Result<Job> started = warehouse_->StartQuery(id, sql, options);                               \
    EXPECT_TRUE(started.ok()) << started.status().ToString();                                     \
    if (!started.ok()) return Job{};                                                              \
    EXPECT_EQ(started->job_id, id);                                                               \
    return WaitForJob(*warehouse_, id);                                                           \
  };                                                                                              \
  auto select = [&](const std::string& sql, int32_t page_size = 1000) {                           \
    Job job = run(sql);                                                                           \
    EXPECT_EQ(job.status, JobStatus::kDone) << sql << ": " << job.error;                          \
    if (job.status != JobStatus::kDone) return Rows{};                                            \
    Rows rows = ReadAll(*warehouse_, job.job_id, page_size);                                      \
    EXPECT_EQ(static_cast<int64_t>(rows.rows.size()), job.rows) << sql;                           \
    return rows;                                                                                  \
  };                                                                                              \
  auto count = [&](const InstanceInfo& instance) -> int64_t {                                     \
    Rows rows = select("SELECT count(*) AS n FROM " + warehouse_->TableName(instance));           \
    if (!caps().stores_rows) { /* a driver that stores nothing returns no rows */                 \
      EXPECT_TRUE(rows.rows.empty());                                                             \
      return 0;                                                                                   \
    }                                                                                             \
    EXPECT_EQ(rows.rows.size(), 1u);                                                              \
    return rows.rows.empty() ? -1 : AsInt(rows.rows[0][0]);                                      \
  };                                                                                              \
  auto expected = [&](int64_t n) { return caps().stores_rows ? n : int64_t{0}; };                 \
  (void)caps; (void)registered; (void)run; (void)select; (void)count; (void)expected

TEST_P(WarehouseConformance, CreatesATableForASchemaWithNestedRecordAndArrayFields) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  if (caps().stores_rows) {
    EXPECT_EQ(count(instance), 0);
    // Every schema field is a column, and the nested parts are addressable.
    Rows rows = select(fmt::format("SELECT * FROM {}", warehouse_->TableName(instance)));
    std::vector<std::string> names;
    for (const auto& column : rows.columns) names.push_back(column.name);
    EXPECT_EQ(names, kEventColumns);
    for (const auto& column : rows.columns) EXPECT_FALSE(column.type.empty()) << column.name;
    Result<driver::QueryAnalysis> nested = warehouse_->AnalyzeQuery(
        fmt::format("SELECT {}, {} FROM {}", GetParam().nested_field("location", "city"),
                    GetParam().array_length("tags"), warehouse_->TableName(instance)));
    EXPECT_TRUE(nested.ok()) << nested.status().ToString();
  }
}

TEST_P(WarehouseConformance, RegisteringTwiceIsOkAndKeepsRows) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 5), {}).ok());
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  EXPECT_EQ(count(instance), expected(5));
}

TEST_P(WarehouseConformance, SelectReturnsExactlyTheAppendedRowsThroughEveryPageSize) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 17), {}).ok());
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(17, 8), {}).ok());
  const std::string sql = fmt::format(
      "SELECT id, username, amount, note, {} AS city, {} AS zip, {} AS tag_count FROM {} ORDER BY id",
      GetParam().nested_field("location", "city"), GetParam().nested_field("location", "zip"),
      GetParam().array_length("tags"), warehouse_->TableName(instance));
  for (int32_t page_size : {1, 3, 1000}) {
    SCOPED_TRACE(fmt::format("page size {}", page_size));
    Rows rows = select(sql, page_size);
    ASSERT_EQ(static_cast<int64_t>(rows.rows.size()), expected(25));
    if (!caps().stores_rows) continue;
    std::vector<std::string> names;
    for (const auto& column : rows.columns) names.push_back(column.name);
    EXPECT_EQ(names, (std::vector<std::string>{"id", "username", "amount", "note", "city", "zip", "tag_count"}));
    EXPECT_EQ(rows.pages, page_size == 1000 ? 1 : (25 + page_size - 1) / page_size);
    for (int64_t id = 0; id < 25; ++id) {
      const Event e = MakeEvent(id);
      const json& row = rows.rows[id];
      EXPECT_EQ(AsInt(row[0]), id) << row.dump();
      EXPECT_EQ(row[1], e.user) << row.dump();
      EXPECT_DOUBLE_EQ(AsDouble(row[2]), e.amount) << row.dump();
      if (e.has_note) {
        EXPECT_EQ(row[3], "note " + std::to_string(id)) << row.dump();
      } else {
        EXPECT_TRUE(row[3].is_null()) << row.dump();
      }
      EXPECT_EQ(row[4], e.city) << row.dump();
      EXPECT_EQ(AsInt(row[5]), e.zip) << row.dump();
      EXPECT_EQ(AsInt(row[6]), e.tag_count) << row.dump();
    }
  }
}

TEST_P(WarehouseConformance, AggregatesOverAppendedRowsAreExact) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(1, 40), {}).ok());
  Rows rows = select(fmt::format(
      "SELECT count(*) AS n, sum(id) AS ids, sum(amount) AS total, sum({}) AS tags, "
      "count(note) AS notes, count(DISTINCT username) AS users FROM {}",
      GetParam().array_length("tags"), warehouse_->TableName(instance)));
  if (!caps().stores_rows) {
    EXPECT_TRUE(rows.rows.empty());
    return;
  }
  ASSERT_EQ(rows.rows.size(), 1u);
  int64_t ids = 0, tags = 0, notes = 0;
  double total = 0;
  for (int64_t id = 1; id <= 40; ++id) {
    const Event e = MakeEvent(id);
    ids += id;
    total += e.amount;
    tags += e.tag_count;
    notes += e.has_note ? 1 : 0;
  }
  const json& row = rows.rows[0];
  EXPECT_EQ(AsInt(row[0]), 40);
  EXPECT_EQ(AsInt(row[1]), ids);
  EXPECT_DOUBLE_EQ(AsDouble(row[2]), total);
  EXPECT_EQ(AsInt(row[3]), tags);
  EXPECT_EQ(AsInt(row[4]), notes);
  EXPECT_EQ(AsInt(row[5]), 4);
}

TEST_P(WarehouseConformance, HiddenColumnsAreDroppedFromResults) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 3), {}).ok());
  const std::string table = warehouse_->TableName(instance);
  Rows rows = select(fmt::format("SELECT id, __key, __timestamp, __key AS __k2 FROM {} ORDER BY id", table));
  if (caps().stores_rows) {
    ASSERT_EQ(rows.columns.size(), 1u);
    EXPECT_EQ(rows.columns[0].name, "id");
    ASSERT_EQ(rows.rows.size(), 3u);
    for (const json& row : rows.rows) EXPECT_EQ(row.size(), 1u) << row.dump();
    // The hidden columns exist and hold the key and the timestamp.
    Rows check = select(fmt::format("SELECT count(*) FROM {} WHERE __key IS NOT NULL AND __timestamp IS NOT NULL", table));
    ASSERT_EQ(check.rows.size(), 1u);
    EXPECT_EQ(AsInt(check.rows[0][0]), 3);
  }
  Rows star = select("SELECT * FROM " + table);
  for (const auto& column : star.columns) EXPECT_FALSE(column.name.starts_with("__")) << column.name;
}

TEST_P(WarehouseConformance, DryRunListsTablesAndEstimatesBytesThatGrowWithData) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  InstanceInfo other = registered();
  const std::string sql = fmt::format("SELECT username, amount FROM {} WHERE amount > 1", warehouse_->TableName(instance));
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 10), {}).ok());
  Result<driver::QueryAnalysis> small = warehouse_->AnalyzeQuery(sql);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ(small->tables, std::vector<std::string>{warehouse_->TableName(instance)});
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(10, 1000), {}).ok());
  Result<driver::QueryAnalysis> large = warehouse_->AnalyzeQuery(sql);
  ASSERT_TRUE(large.ok()) << large.status().ToString();
  if (caps().dry_run_bytes) {
    EXPECT_GT(small->bytes_scanned_estimate, 0);
    EXPECT_GT(large->bytes_scanned_estimate, small->bytes_scanned_estimate);
  } else {
    EXPECT_EQ(large->bytes_scanned_estimate, 0);
  }
  Result<driver::QueryAnalysis> both = warehouse_->AnalyzeQuery(fmt::format(
      "SELECT a.id FROM {} a JOIN {} b ON a.id = b.id", warehouse_->TableName(instance), warehouse_->TableName(other)));
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  std::set<std::string> tables(both->tables.begin(), both->tables.end());
  EXPECT_EQ(tables, (std::set<std::string>{warehouse_->TableName(instance), warehouse_->TableName(other)}));
  EXPECT_EQ(both->tables.size(), 2u) << "each table listed once";
}

TEST_P(WarehouseConformance, AJobRunsAsynchronouslyAndIsPolledUntilDone) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 12), {}).ok());
  const Uuid id = Uuid::Random();
  Result<Job> started = warehouse_->StartQuery(
      id, fmt::format("SELECT username, count(*) AS n FROM {} GROUP BY username ORDER BY username", warehouse_->TableName(instance)), {});
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  EXPECT_EQ(started->job_id, id);
  EXPECT_TRUE(started->error.empty());
  Job done = WaitForJob(*warehouse_, id);
  EXPECT_EQ(done.status, JobStatus::kDone) << done.error;
  EXPECT_TRUE(done.error.empty());
  EXPECT_EQ(done.rows, expected(4));
  // Polling a finished job again gives the same answer.
  Result<Job> again = warehouse_->PollJob(id);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->status, JobStatus::kDone);
  EXPECT_EQ(again->rows, done.rows);
  // The id is taken now.
  EXPECT_EQ(warehouse_->StartQuery(id, "SELECT 1", {}).status().code(), StatusCode::kAlreadyExists);
}

TEST_P(WarehouseConformance, BadSqlIsInvalidArgumentWithTheBackendsMessage) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  Result<driver::QueryAnalysis> syntax = warehouse_->AnalyzeQuery("SELEC id FRM " + warehouse_->TableName(instance));
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(syntax.status().message().empty());
  Job job = run("SELEC id FRM " + warehouse_->TableName(instance));
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_FALSE(job.error.empty());
  if (caps().stores_rows) {
    Result<driver::QueryAnalysis> column =
        warehouse_->AnalyzeQuery("SELECT no_such_column FROM " + warehouse_->TableName(instance));
    ASSERT_FALSE(column.ok());
    EXPECT_EQ(column.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(column.status().message().find("no_such_column"), std::string::npos) << column.status().message();
  }
}

TEST_P(WarehouseConformance, ARuntimeErrorFailsTheJobWithItsMessage) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 5), {}).ok());
  // Compiles (a dry run accepts it) but cannot convert 'ada' at run time.
  const std::string sql = "SELECT CAST(username AS INTEGER) AS n FROM " + warehouse_->TableName(instance);
  ASSERT_TRUE(warehouse_->AnalyzeQuery(sql).ok());
  Job job = run(sql);
  if (!caps().stores_rows) {
    EXPECT_EQ(job.status, JobStatus::kDone);
    return;
  }
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_FALSE(job.error.empty());
  EXPECT_TRUE(job.error.find("ada") != std::string::npos || job.error.find("grace") != std::string::npos ||
              job.error.find("edsger") != std::string::npos || job.error.find("barbara") != std::string::npos)
      << "the message names the bad value: " << job.error;
  // A failed job has no rows to read.
  auto page = warehouse_->ReadJobRows(job.job_id, "", 10);
  EXPECT_EQ(page.status().code(), StatusCode::kFailedPrecondition);
}

TEST_P(WarehouseConformance, NonSelectStatementsAreRejectedAtAnalyzeAndChangeNothing) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 4), {}).ok());
  const std::string table = warehouse_->TableName(instance);
  const std::string file = (std::filesystem::path(scratch_dir_) / "out.csv").string();
  const std::vector<std::string> statements = {
      fmt::format("INSERT INTO {} SELECT * FROM {}", table, table),
      fmt::format("DELETE FROM {}", table),
      fmt::format("UPDATE {} SET amount = 0", table),
      fmt::format("DROP TABLE {}", table),
      "CREATE TABLE conformance_x (a INTEGER)",
      fmt::format("COPY {} TO '{}'", table, file),
      fmt::format("ATTACH '{}' AS other", (std::filesystem::path(scratch_dir_) / "other.db").string()),
      "PRAGMA show_tables",
      fmt::format("SELECT 1; DROP TABLE {}", table),
  };
  for (const std::string& sql : statements) {
    SCOPED_TRACE(sql);
    Result<driver::QueryAnalysis> analysis = warehouse_->AnalyzeQuery(sql);
    EXPECT_EQ(analysis.status().code(), StatusCode::kInvalidArgument) << analysis.status().ToString();
    Job job = run(sql);
    EXPECT_EQ(job.status, JobStatus::kFailed) << "a job must not run a non-SELECT statement";
  }
  EXPECT_EQ(count(instance), expected(4));
  EXPECT_FALSE(std::filesystem::exists(file));
}

TEST_P(WarehouseConformance, UnknownJobIsNotFound) {
  const Uuid id = Uuid::Random();
  EXPECT_EQ(warehouse_->PollJob(id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(warehouse_->ReadJobRows(id, "", 10).status().code(), StatusCode::kNotFound);
}

TEST_P(WarehouseConformance, RowsOfAnUnfinishedOrFailedJobAreFailedPrecondition) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 30), {}).ok());
  const std::string t = warehouse_->TableName(instance);
  // Slow with rows (30^7 combinations); cut short by the timeout.
  const std::string slow = fmt::format(
      "SELECT count(*) FROM {t} a, {t} b, {t} c, {t} d, {t} e, {t} f, {t} g "
      "WHERE a.amount + b.amount + c.amount + d.amount + e.amount + f.amount + g.amount > -1",
      fmt::arg("t", t));
  driver::JobOptions options;
  options.timeout_ms = 2000;
  const Uuid id = Uuid::Random();
  ASSERT_TRUE(warehouse_->StartQuery(id, slow, options).ok());
  Result<driver::RowPage> early = warehouse_->ReadJobRows(id, "", 10);
  Result<Job> after = warehouse_->PollJob(id);
  ASSERT_TRUE(after.ok());
  if (after->status == JobStatus::kPending || after->status == JobStatus::kRunning) {
    // Still unfinished after the read, so it was unfinished during it.
    EXPECT_EQ(early.status().code(), StatusCode::kFailedPrecondition) << early.status().ToString();
  } else {
    EXPECT_FALSE(caps().stores_rows) << "a 30^7-row join finished at once";
  }
  WaitForJob(*warehouse_, id);
  Job failed = run("DELETE FROM " + t);
  ASSERT_EQ(failed.status, JobStatus::kFailed);
  EXPECT_EQ(warehouse_->ReadJobRows(failed.job_id, "", 10).status().code(), StatusCode::kFailedPrecondition);
}

TEST_P(WarehouseConformance, AJobOverItsTimeoutFails) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 30), {}).ok());
  const std::string t = warehouse_->TableName(instance);
  const std::string slow = fmt::format(
      "SELECT count(*) FROM {t} a, {t} b, {t} c, {t} d, {t} e, {t} f, {t} g, {t} h "
      "WHERE a.amount + b.amount + c.amount + d.amount + e.amount + f.amount + g.amount + h.amount > -1",
      fmt::arg("t", t));
  driver::JobOptions options;
  options.timeout_ms = 300;
  const auto start = std::chrono::steady_clock::now();
  Job job = run(slow, options);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  if (!caps().stores_rows) {
    EXPECT_EQ(job.status, JobStatus::kDone);
    return;
  }
  EXPECT_EQ(job.status, JobStatus::kFailed);
  EXPECT_NE(job.error.find("timeout of 300 ms"), std::string::npos) << job.error;
  EXPECT_LT(elapsed, std::chrono::seconds(20)) << "the timeout stops the query";
}

// JobLimits::max_result_rows at its edge: exactly N rows pass, N + 1 fail the
// job with a message naming the cap. 27,000 rows span many fetch chunks, so
// the cap is checked while the result is fetched, mid-chunk included.
TEST_P(WarehouseConformance, TheResultRowCapPassesNRowsAndFailsAtNPlusOne) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 30), {}).ok());
  const std::string t = warehouse_->TableName(instance);
  const std::string sql = fmt::format("SELECT a.id, b.id AS b_id, c.id AS c_id FROM {t} a, {t} b, {t} c",
                                      fmt::arg("t", t));
  for (const int64_t rows : {int64_t{5}, int64_t{27'000}}) {
    const std::string query = rows == 5 ? "SELECT id FROM " + t + " WHERE id < 5" : sql;
    driver::JobOptions at_cap;
    at_cap.max_result_rows = rows;
    Job passed = run(query, at_cap);
    ASSERT_EQ(passed.status, JobStatus::kDone) << query << ": " << passed.error;
    EXPECT_EQ(passed.rows, expected(rows));
    EXPECT_EQ(static_cast<int64_t>(ReadAll(*warehouse_, passed.job_id, 1000).rows.size()), expected(rows));
    if (!caps().stores_rows) continue;
    driver::JobOptions below;
    below.max_result_rows = rows - 1;
    Job failed = run(query, below);
    EXPECT_EQ(failed.status, JobStatus::kFailed) << query;
    EXPECT_NE(failed.error.find(fmt::format("result exceeds {} rows", rows - 1)), std::string::npos) << failed.error;
    EXPECT_NE(failed.error.find("LIMIT"), std::string::npos) << failed.error;
    EXPECT_EQ(warehouse_->ReadJobRows(failed.job_id, "", 10).status().code(), StatusCode::kFailedPrecondition);
  }
  // 0 turns the cap off.
  driver::JobOptions off;
  off.max_result_rows = 0;
  EXPECT_EQ(run(sql, off).status, JobStatus::kDone);
}

TEST_P(WarehouseConformance, TheResultByteCapFailsABigResultAndPassesASmallOne) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 30), {}).ok());
  const std::string sql = "SELECT * FROM " + warehouse_->TableName(instance);
  driver::JobOptions tiny;
  tiny.max_result_bytes = 1;
  Job failed = run(sql, tiny);
  if (caps().stores_rows) {
    EXPECT_EQ(failed.status, JobStatus::kFailed);
    EXPECT_NE(failed.error.find("result exceeds 1 bytes"), std::string::npos) << failed.error;
  }
  driver::JobOptions roomy;
  roomy.max_result_bytes = 1 << 20;
  Job passed = run(sql, roomy);
  EXPECT_EQ(passed.status, JobStatus::kDone) << passed.error;
  EXPECT_EQ(passed.rows, expected(30));
}

TEST_P(WarehouseConformance, AMalformedPageTokenIsInvalidArgument) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 5), {}).ok());
  Job job = run("SELECT id FROM " + warehouse_->TableName(instance));
  ASSERT_EQ(job.status, JobStatus::kDone) << job.error;
  for (std::string token : {std::string("not a token"), std::string("\xff\x01", 2), std::string("r-1"),
                            std::string("99999999999999999999999999")}) {
    SCOPED_TRACE(token);
    EXPECT_EQ(warehouse_->ReadJobRows(job.job_id, token, 10).status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(warehouse_->ReadJobRows(job.job_id, "", 0).status().code(), StatusCode::kInvalidArgument);
}

TEST_P(WarehouseConformance, RemovingAnInstanceDropsItsTableAndLeavesOthers) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  InstanceInfo other = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 6), {}).ok());
  ASSERT_TRUE(warehouse_->WriteToWarehouse(other, Events(0, 3), {}).ok());
  ASSERT_TRUE(warehouse_->RemoveInstance(instance).ok());
  ASSERT_TRUE(warehouse_->RemoveInstance(instance).ok()) << "idempotent";
  const std::string sql = "SELECT count(*) FROM " + warehouse_->TableName(instance);
  if (caps().stores_rows) {
    EXPECT_EQ(warehouse_->AnalyzeQuery(sql).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(run(sql).status, JobStatus::kFailed);
    EXPECT_FALSE(warehouse_->WriteToWarehouse(instance, Events(0, 1), {}).ok()) << "no table to write to";
  }
  EXPECT_EQ(count(other), expected(3));
  // Registering again starts empty.
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  EXPECT_EQ(count(instance), 0);
}

TEST_P(WarehouseConformance, ANewDriverOnTheSameDirectoryKeepsTheData) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 7), {}).ok());
  warehouse_.reset();
  auto reopened = GetParam().make(scratch_dir_, clock_.get());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  warehouse_ = *reopened;
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  EXPECT_EQ(count(instance), expected(7));
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(7, 2), {}).ok());
  EXPECT_EQ(count(instance), expected(9));
}

// A done job's rows live in the warehouse, not in the driver object: a new
// driver on the same directory (a restart, or another process sharing the
// database) polls the job as done and pages the same rows.
TEST_P(WarehouseConformance, ADoneJobsRowsOutliveTheDriverThatRanIt) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 7), {}).ok());
  Job job = run(fmt::format("SELECT id, username FROM {} ORDER BY id", warehouse_->TableName(instance)));
  ASSERT_EQ(job.status, JobStatus::kDone) << job.error;
  const Rows before = ReadAll(*warehouse_, job.job_id, 3);
  Result<driver::RowPage> first_page = warehouse_->ReadJobRows(job.job_id, "", 3);
  ASSERT_TRUE(first_page.ok()) << first_page.status().ToString();
  warehouse_.reset();
  auto reopened = GetParam().make(scratch_dir_, clock_.get());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  warehouse_ = *reopened;
  if (!caps().stores_rows) {
    // A driver that stores nothing keeps no jobs either.
    EXPECT_EQ(warehouse_->PollJob(job.job_id).status().code(), StatusCode::kNotFound);
    return;
  }
  Result<Job> polled = warehouse_->PollJob(job.job_id);
  ASSERT_TRUE(polled.ok()) << polled.status().ToString();
  EXPECT_EQ(polled->status, JobStatus::kDone);
  EXPECT_EQ(polled->rows, 7);
  const Rows after = ReadAll(*warehouse_, job.job_id, 3);
  EXPECT_EQ(after.pages, 3);
  ASSERT_EQ(after.rows.size(), 7u);
  EXPECT_EQ(after.rows, before.rows);
  ASSERT_EQ(after.columns.size(), 2u);
  EXPECT_EQ(after.columns[0].name, "id");
  EXPECT_EQ(after.columns[1].name, "username");
  for (int64_t id = 0; id < 7; ++id) EXPECT_EQ(AsInt(after.rows[id][0]), id);
  // A page token of the first driver pages on in the second.
  ASSERT_FALSE(first_page->next.empty());
  Result<driver::RowPage> second_page = warehouse_->ReadJobRows(job.job_id, first_page->next, 3);
  ASSERT_TRUE(second_page.ok()) << second_page.status().ToString();
  ASSERT_EQ(second_page->rows.size(), 3u);
  EXPECT_EQ(json::parse(second_page->rows[0]), before.rows[3]);
  EXPECT_EQ(warehouse_->ReadJobRows(job.job_id, "not a token", 3).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(warehouse_->PollJob(Uuid::Random()).status().code(), StatusCode::kNotFound);
}

TEST_P(WarehouseConformance, ResetDropsTablesAndJobsAndLeavesTheDriverUsable) {
  WH_HELPERS;
  InstanceInfo a = registered();
  InstanceInfo b = registered();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(a, Events(0, 4), {}).ok());
  ASSERT_TRUE(warehouse_->WriteToWarehouse(b, Events(0, 4), {}).ok());
  Job job = run("SELECT id FROM " + warehouse_->TableName(a));
  ASSERT_EQ(job.status, JobStatus::kDone);
  ASSERT_TRUE(warehouse_->Reset().ok());
  EXPECT_EQ(warehouse_->PollJob(job.job_id).status().code(), StatusCode::kNotFound);
  if (caps().stores_rows) {
    EXPECT_EQ(warehouse_->AnalyzeQuery("SELECT id FROM " + warehouse_->TableName(a)).status().code(),
              StatusCode::kInvalidArgument);
  }
  ASSERT_TRUE(warehouse_->RegisterInstance(a).ok());
  ASSERT_TRUE(warehouse_->WriteToWarehouse(a, Events(0, 2), {}).ok());
  EXPECT_EQ(count(a), expected(2));
}

TEST_P(WarehouseConformance, ARetriedBatchIsStoredOnceWhereTheDriverDeduplicates) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  std::vector<Record> batch = Events(0, 10);
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, batch, {}).ok());
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, batch, {}).ok());
  // The same key with a new timestamp is a new version, never a duplicate.
  std::vector<Record> newer = {ToRecord(MakeEvent(3), NowMs() + 1'000'000)};
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, newer, {}).ok());
  if (!caps().stores_rows) {
    EXPECT_EQ(count(instance), 0);
  } else if (caps().dedups_retries) {
    EXPECT_EQ(count(instance), 11);
  } else {
    EXPECT_EQ(count(instance), 21);
  }
}

// Exactly once: rows of a group (a queued message) are stored once however
// often, and however grouped, it is written again.
TEST_P(WarehouseConformance, GroupsWrittenAgainAreStoredOnceEvenRegroupedAndAfterReopening) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  std::vector<Record> a = Events(0, 3);
  std::vector<Record> b = Events(3, 2);
  std::vector<Record> c = Events(5, 4);
  auto concat = [](std::vector<Record> x, const std::vector<Record>& y) {
    x.insert(x.end(), y.begin(), y.end());
    return x;
  };
  std::vector<driver::RecordGroup> ab{{"A", 3}, {"B", 2}};
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, concat(a, b), ab).ok());
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, concat(a, b), ab).ok());
  std::vector<driver::RecordGroup> bc{{"B", 2}, {"C", 4}};
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, concat(b, c), bc).ok());
  EXPECT_EQ(count(instance), expected(9));
  warehouse_.reset();
  auto reopened = GetParam().make(scratch_dir_, clock_.get());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  warehouse_ = *reopened;
  std::vector<driver::RecordGroup> ca{{"C", 4}, {"A", 3}};
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, concat(c, a), ca).ok());
  EXPECT_EQ(count(instance), expected(9));
  // Equal records of two messages are two rows: groups, not contents, decide.
  std::vector<driver::RecordGroup> d{{"D", 3}};
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, a, d).ok());
  EXPECT_EQ(count(instance), expected(12));
}

TEST_P(WarehouseConformance, BadGroupsAreRejectedAndNothingIsStored) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  std::vector<Record> batch = Events(0, 2);
  std::vector<driver::RecordGroup> short_groups{{"G", 1}};
  std::vector<driver::RecordGroup> empty_id{{"", 2}};
  EXPECT_EQ(warehouse_->WriteToWarehouse(instance, batch, short_groups).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(warehouse_->WriteToWarehouse(instance, batch, empty_id).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(count(instance), 0);
}

TEST_P(WarehouseConformance, GroupsOfAnUnregisteredInstanceAreNotFoundOrFailedPrecondition) {
  WH_HELPERS;
  InstanceInfo instance = MakeInstance();  // never registered
  std::vector<driver::RecordGroup> groups{{"G", 2}};
  Status status = warehouse_->WriteToWarehouse(instance, Events(0, 2), groups);
  if (caps().stores_rows) {
    EXPECT_TRUE(status.code() == StatusCode::kNotFound || status.code() == StatusCode::kFailedPrecondition)
        << status.ToString();
  } else {
    EXPECT_TRUE(status.ok()) << "a driver that stores nothing has no table to miss: " << status.ToString();
  }
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, Events(0, 2), groups).ok());
  EXPECT_EQ(count(instance), expected(2));
}

TEST_P(WarehouseConformance, ExpiredRowsAreNotStored) {
  WH_HELPERS;
  InstanceInfo instance = MakeInstance();
  instance.warehouse_retention_ms = 3'600'000;
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  std::vector<Record> batch = {ToRecord(MakeEvent(1), NowMs() - 7'200'000), ToRecord(MakeEvent(2), NowMs())};
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, batch, {}).ok());
  EXPECT_EQ(count(instance), expected(1));
}

// warehouse_retention_ms by the driver's clock: a row exactly `retention`
// old is served, one 1 ms older is not, whether or not it was purged yet;
// PurgeExpired deletes expired rows from storage; a retention changed later
// (re-registered) applies to the next job and purge.
TEST_P(WarehouseConformance, RetentionHidesExpiredRowsFromJobsAndPurgeDeletesThem) {
  WH_HELPERS;
  constexpr int64_t kMicrosPerMs = 1000;
  InstanceInfo instance = MakeInstance();
  instance.warehouse_retention_ms = 60'000;
  ASSERT_TRUE(warehouse_->RegisterInstance(instance).ok());
  auto ids = [&](const InstanceInfo& of) {
    Rows rows = select(fmt::format("SELECT id FROM {} ORDER BY id", warehouse_->TableName(of)));
    std::vector<int64_t> out;
    for (const json& row : rows.rows) out.push_back(AsInt(row[0]));
    return out;
  };
  auto stored = [&](const InstanceInfo& of) {
    Result<int64_t> n = warehouse_->CountStoredRows(of);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : -1;
  };
  auto want = [&](std::vector<int64_t> all) { return caps().stores_rows ? all : std::vector<int64_t>{}; };

  const int64_t t0 = clock_->NowMillis();
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, std::vector<Record>{ToRecord(MakeEvent(1), t0), ToRecord(MakeEvent(2), t0)}, {}).ok());
  clock_->Advance(30'000 * kMicrosPerMs);
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, std::vector<Record>{ToRecord(MakeEvent(3), t0 + 30'000)}, {}).ok());
  clock_->Advance(30'000 * kMicrosPerMs);  // rows 1 and 2 are exactly 60 s old: kept
  EXPECT_EQ(ids(instance), want({1, 2, 3}));
  EXPECT_EQ(stored(instance), expected(3));

  clock_->Advance(1 * kMicrosPerMs);  // now 1 ms past
  Result<int64_t> purged = warehouse_->PurgeExpired(instance);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, expected(2));
  EXPECT_EQ(stored(instance), expected(1)) << "expired rows are deleted, not only hidden";
  EXPECT_EQ(ids(instance), want({3}));

  // A shorter retention, registered later: row 3 (30 s old) is over it and
  // is not served, before any purge.
  ASSERT_TRUE(warehouse_->WriteToWarehouse(instance, std::vector<Record>{ToRecord(MakeEvent(4), clock_->NowMillis())}, {}).ok());
  InstanceInfo shorter = instance;
  shorter.warehouse_retention_ms = 10'000;
  ASSERT_TRUE(warehouse_->RegisterInstance(shorter).ok());
  EXPECT_EQ(ids(shorter), want({4}));
  purged = warehouse_->PurgeExpired(shorter);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(stored(shorter), expected(1));
  EXPECT_EQ(ids(shorter), want({4}));
}

TEST_P(WarehouseConformance, AnUndecodableRecordRejectsTheWholeBatch) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  std::vector<Record> batch = Events(0, 3000);
  batch[2500].avro = "\x01\x02";  // truncated
  Status status = warehouse_->WriteToWarehouse(instance, batch, {});
  if (caps().stores_rows) {
    EXPECT_FALSE(status.ok());
    EXPECT_NE(status.message().find("2500"), std::string::npos) << status.ToString();
  }
  EXPECT_EQ(count(instance), 0);
}

TEST_P(WarehouseConformance, ConcurrentWritesFromManyThreadsAreAllStored) {
  WH_HELPERS;
  InstanceInfo instance = registered();
  InstanceInfo other = registered();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < 5; ++b) {
        const int64_t first = (t * 5 + b) * 50;
        if (!warehouse_->WriteToWarehouse(t % 2 == 0 ? instance : other, Events(first, 50), {}).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(count(instance), expected(500));
  EXPECT_EQ(count(other), expected(500));
}

// Drivers instantiate this suite in their own test binaries; binaries of
// other interfaces link it too.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(WarehouseConformance);

}  // namespace aquifer::conformance
