#include "aquifer/drivers/bigquery/warehouse.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/base/text.h"
#include "aquifer/driver/sql_text.h"
#include "aquifer/driver/warehouse_jobs.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::bigquery {
namespace {

using driver::InstanceInfo;
using driver::Job;
using driver::JobStatus;
using driver::Record;
using nlohmann::json;
using schema::Kind;
using schema::Logical;
using schema::Type;

constexpr int32_t kMaxPageRows = 100'000;
constexpr size_t kMaxRunningJobs = 16;
// insertAll: BigQuery takes up to 50,000 rows and 10 MB per request and
// recommends about 500 rows; the driver cuts at 500 rows or 5 MB of JSON.
constexpr size_t kInsertRows = 500;
constexpr size_t kInsertBytes = 5 << 20;
// Rows per getQueryResults call when the job checks its result size.
constexpr int64_t kCheckPageRows = 10'000;

// ---- schema → table -------------------------------------------------------------------

// An array BigQuery cannot hold as REPEATED (nested arrays, or null
// elements): stored as STRING holding the codec's JSON of the array.
bool ArrayAsJson(const Type& type) {
  return type.kind == Kind::kArray && (type.items->kind == Kind::kArray || type.items->nullable);
}

json FieldSchema(const std::string& name, const Type& type, bool in_array = false) {
  json field = {{"name", name}};
  std::string mode = in_array ? "REPEATED" : (type.nullable ? "NULLABLE" : "REQUIRED");
  switch (type.kind) {
    case Kind::kBoolean: field["type"] = "BOOL"; break;
    case Kind::kInt:
    case Kind::kLong: field["type"] = type.logical == Logical::kTimestampMillis ? "TIMESTAMP" : "INT64"; break;
    case Kind::kFloat:
    case Kind::kDouble: field["type"] = "FLOAT64"; break;
    case Kind::kString:
    case Kind::kEnum: field["type"] = "STRING"; break;
    case Kind::kBytes:
    case Kind::kFixed:
      if (type.logical == Logical::kDecimal) {
        // NUMERIC holds 29 integer and 9 fractional digits; wider decimals
        // keep their exact text in STRING (CAST(x AS BIGNUMERIC) reads them;
        // bqemulator has no BIGNUMERIC columns).
        field["type"] = type.scale <= 9 && type.precision - type.scale <= 29 ? "NUMERIC" : "STRING";
      } else {
        field["type"] = "BYTES";
      }
      break;
    case Kind::kArray:
      if (ArrayAsJson(type) || in_array) {
        field["type"] = "STRING";
        break;
      }
      return FieldSchema(name, *type.items, /*in_array=*/true);
    case Kind::kRecord: {
      field["type"] = "RECORD";
      json fields = json::array();
      for (const schema::Field& sub : type.fields) fields.push_back(FieldSchema(sub.name, *sub.type));
      field["fields"] = std::move(fields);
      break;
    }
  }
  field["mode"] = mode;
  return field;
}

// "2023-11-14T22:13:20.123Z" (insertAll's TIMESTAMP input).
Result<std::string> TimestampText(int64_t ms) {
  constexpr int64_t kLimitMs = 253'402'300'799'999;  // 9999-12-31T23:59:59.999, BigQuery's last instant
  constexpr int64_t kFirstMs = -62'135'596'800'000;  // 0001-01-01T00:00:00
  if (ms < kFirstMs || ms > kLimitMs) return InvalidArgument("timestamp {} ms is outside BigQuery's range", ms);
  using namespace std::chrono;
  sys_time<milliseconds> tp{milliseconds(ms)};
  auto day = floor<days>(tp);
  year_month_day ymd{day};
  hh_mm_ss<milliseconds> time{tp - day};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), time.hours().count(),
                     time.minutes().count(), time.seconds().count(), time.subseconds().count());
}

// The codec's JSON of a value → insertAll's JSON for the column FieldSchema made.
Result<json> RowValue(const Type& type, const json& value) {
  if (value.is_null()) {
    if (type.kind == Kind::kArray && !ArrayAsJson(type)) return json::array();  // REPEATED is never NULL
    return json();
  }
  switch (type.kind) {
    case Kind::kInt:
    case Kind::kLong:
      if (type.logical == Logical::kTimestampMillis) {
        AQ_ASSIGN_OR_RETURN(std::string text, TimestampText(value.get<int64_t>()));
        return json(std::move(text));
      }
      return value;
    case Kind::kArray: {
      if (ArrayAsJson(type)) return json(value.dump());
      json out = json::array();
      for (const json& item : value) {
        AQ_ASSIGN_OR_RETURN(json converted, RowValue(*type.items, item));
        out.push_back(std::move(converted));
      }
      return out;
    }
    case Kind::kRecord: {
      json out = json::object();
      for (const schema::Field& field : type.fields) {
        auto it = value.find(field.name);
        AQ_ASSIGN_OR_RETURN(out[field.name], RowValue(*field.type, it == value.end() ? json() : *it));
      }
      return out;
    }
    default:
      return value;  // booleans, numbers (NaN/Infinity as strings), strings, base64 bytes, decimals as strings
  }
}

// ---- results → JSON rows ---------------------------------------------------------------

std::string ColumnType(const json& field) {
  std::string type = field.value("type", "");
  if (type == "RECORD" || type == "STRUCT") {
    std::string inner;
    for (const json& sub : field.value("fields", json::array())) {
      inner += (inner.empty() ? "" : ", ") + sub.value("name", "") + " " + ColumnType(sub);
    }
    type = "STRUCT<" + inner + ">";
  }
  if (field.value("mode", "") == "REPEATED") type = "ARRAY<" + type + ">";
  return type;
}

// One cell of getQueryResults' {"f":[{"v":...}]} rows as JSON, by its field.
json CellValue(const json& field, const json& v, bool element = false) {
  if (v.is_null()) return json();
  if (!element && field.value("mode", "") == "REPEATED") {
    json out = json::array();
    if (v.is_array()) {
      for (const json& item : v) out.push_back(CellValue(field, item.is_object() ? item.value("v", json()) : item, true));
    }
    return out;
  }
  const std::string type = field.value("type", "");
  if (type == "RECORD" || type == "STRUCT") {
    json out = json::object();
    const json fields = field.value("fields", json::array());
    const json cells = v.is_object() ? v.value("f", json::array()) : json::array();
    for (size_t i = 0; i < fields.size() && i < cells.size(); ++i) {
      out[fields[i].value("name", "")] = CellValue(fields[i], cells[i].value("v", json()));
    }
    return out;
  }
  if (!v.is_string()) return v;
  const std::string& text = v.get_ref<const std::string&>();
  if (type == "INTEGER" || type == "INT64") {
    int64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec == std::errc() && end == text.data() + text.size()) return n;
    return v;
  }
  if (type == "FLOAT" || type == "FLOAT64") {
    if (text == "NaN" || text == "Infinity" || text == "-Infinity") return v;
    char* end = nullptr;
    double d = std::strtod(text.c_str(), &end);
    return end != nullptr && *end == '\0' ? json(d) : v;
  }
  if (type == "BOOLEAN" || type == "BOOL") return json(text == "true");
  if (type == "TIMESTAMP") {
    // Epoch milliseconds, as the other drivers give timestamps: microseconds
    // with useInt64Timestamp (the emulator always), else float seconds.
    if (text.find_first_of(".eE") == std::string::npos) {
      int64_t micros = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), micros);
      if (ec == std::errc() && end == text.data() + text.size()) {
        return micros >= 0 ? micros / 1000 : -((-micros + 999) / 1000);
      }
      return v;
    }
    return static_cast<int64_t>(std::floor(std::strtod(text.c_str(), nullptr) * 1000.0 + 0.5));
  }
  return v;  // STRING, BYTES (base64), NUMERIC, DATE, ... as BigQuery spells them
}

// ---- SQL checks ------------------------------------------------------------------------

// A 128-bit FNV-1a style digest as 32 hex digits: the insertId of a row.
std::string Digest(std::initializer_list<std::string_view> parts) {
  uint64_t a = 0xcbf29ce484222325ULL, b = 0x84222325cbf29ce4ULL;
  for (std::string_view part : parts) {
    for (unsigned char c : part) {
      a = (a ^ c) * 0x100000001b3ULL;
      b = (b ^ c) * 0x100000001b3ULL + 0x9e3779b97f4a7c15ULL;
    }
    a = (a ^ 0xff) * 0x100000001b3ULL;  // part separator
    b = (b ^ 0xfe) * 0x100000001b3ULL;
  }
  return fmt::format("{:016x}{:016x}", a, b);
}

int64_t JsonInt(const json& object, const char* key, int64_t fallback = 0) {
  auto it = object.find(key);
  if (it == object.end()) return fallback;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    int64_t n = 0;
    const std::string& text = it->get_ref<const std::string&>();
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec == std::errc()) return n;
  }
  return fallback;
}

// ---- jobs ------------------------------------------------------------------------------

using JobState = driver::LocalJob;

class BqWarehouse final : public driver::WarehouseService {
 public:
  BqWarehouse(const WarehouseOptions& options, Clock* clock)
      : options_(options), clock_(clock), rest_(options.rest) {}

  ~BqWarehouse() override { StopJobs(); }

  Status Init() {
    json body = {{"datasetReference", {{"projectId", options_.rest.project}, {"datasetId", options_.dataset}}}};
    if (!options_.location.empty()) body["location"] = options_.location;
    auto made = rest_.Call("POST", "/datasets", &body);
    if (!made.ok() && made.status().code() != StatusCode::kAlreadyExists) {
      return made.status().WithContext(fmt::format("creating the dataset {}", options_.dataset));
    }
    return Status::OK();
  }

  driver::WarehouseCapabilities capabilities() const override {
    driver::WarehouseCapabilities caps;
    caps.limits = options_.limits;
    caps.dry_run_bytes = options_.dry_run_bytes;
    caps.stores_rows = true;
    // insertId deduplication is best effort in BigQuery and absent in the
    // emulator: retries without groups may be stored twice.
    caps.dedups_retries = false;
    return caps;
  }

  std::string TableName(const InstanceInfo& instance) const override {
    return "`" + TablePath(instance) + "`";
  }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) return InvalidArgument("registering {}: no schema", instance.instance_id.ToString());
    json fields = json::array();
    for (const schema::Field& field : instance.schema->fields()) fields.push_back(FieldSchema(field.name, *field.type));
    fields.push_back({{"name", "__key"}, {"type", "BYTES"}, {"mode", "REQUIRED"}});
    fields.push_back({{"name", "__timestamp"}, {"type", "TIMESTAMP"}, {"mode", "REQUIRED"}});
    fields.push_back({{"name", "__group"}, {"type", "STRING"}, {"mode", "NULLABLE"}});
    json body = {{"tableReference",
                  {{"projectId", options_.rest.project}, {"datasetId", options_.dataset}, {"tableId", TableId(instance)}}},
                 {"schema", {{"fields", std::move(fields)}}}};
    auto made = rest_.Call("POST", fmt::format("/datasets/{}/tables", options_.dataset), &body);
    if (!made.ok() && made.status().code() != StatusCode::kAlreadyExists) {
      return made.status().WithContext(fmt::format("creating the warehouse table of {}", instance.instance_id.ToString()));
    }
    NoteRetention(instance);
    return Status::OK();
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    auto gone = rest_.Call("DELETE", fmt::format("/datasets/{}/tables/{}", options_.dataset, TableId(instance)));
    if (!gone.ok() && gone.status().code() != StatusCode::kNotFound) {
      return gone.status().WithContext(fmt::format("dropping the warehouse table of {}", instance.instance_id.ToString()));
    }
    return Status::OK();
  }

  Status WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                          std::span<const driver::RecordGroup> groups) override;
  Result<driver::QueryAnalysis> AnalyzeQuery(std::string_view sql) override {
    return Analyze(std::string(driver::TrimStatement(sql)), nullptr);
  }
  Result<Job> StartQuery(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) override;
  Result<Job> PollJob(const Uuid& job_id) override;
  Result<driver::RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) override;

  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    NoteRetention(instance);
    if (instance.warehouse_retention_ms <= 0) return int64_t{0};
    const int64_t horizon = driver::RetentionHorizon(instance.warehouse_retention_ms, clock_->NowMillis());
    auto deleted = Query(fmt::format("DELETE FROM {} WHERE __timestamp < TIMESTAMP_MILLIS({})", TableName(instance),
                                     horizon));
    if (!deleted.ok()) {
      if (IsMissingTable(instance)) return int64_t{0};
      return deleted.status().WithContext("deleting the expired rows of " + TableName(instance));
    }
    return JsonInt(*deleted, "numDmlAffectedRows");
  }

  Result<int64_t> CountStoredRows(const InstanceInfo& instance) override {
    auto counted = Query("SELECT count(*) FROM " + TableName(instance));
    if (!counted.ok()) {
      if (IsMissingTable(instance)) return int64_t{0};
      return counted.status();
    }
    const json rows = counted->value("rows", json::array());
    if (rows.empty()) return Internal("count(*) returned no row");
    return CellValue({{"type", "INTEGER"}}, rows[0]["f"][0].value("v", json())).get<int64_t>();
  }

  Status Reset() override;

 private:
  std::string TableId(const InstanceInfo& instance) const { return "i_" + instance.instance_id.Hex(); }
  std::string TablePath(const InstanceInfo& instance) const {
    return options_.rest.project + "." + options_.dataset + "." + TableId(instance);
  }
  // BigQuery's id of a job: the dataset names it, so Reset finds this driver's jobs.
  std::string BqJobId(const Uuid& job_id) const { return "aq_" + options_.dataset + "_" + job_id.Hex(); }
  std::string JobPath(const std::string& bq_job_id) const { return "/jobs/" + bq_job_id + LocationParam("?"); }
  // "<separator>location=<location>", or nothing without a location.
  std::string LocationParam(const char* separator) const {
    return options_.location.empty() ? std::string() : separator + std::string("location=") + options_.location;
  }

  bool IsMissingTable(const InstanceInfo& instance) {
    auto found = rest_.Call("GET", fmt::format("/datasets/{}/tables/{}", options_.dataset, TableId(instance)));
    return !found.ok() && found.status().code() == StatusCode::kNotFound;
  }

  // A statement through jobs.query, waiting for it to complete.
  Result<json> Query(const std::string& sql) {
    json body = {{"query", sql}, {"useLegacySql", false}, {"timeoutMs", 10'000}};
    if (!options_.location.empty()) body["location"] = options_.location;
    AQ_ASSIGN_OR_RETURN(json answer, rest_.Call("POST", "/queries", &body));
    while (!answer.value("jobComplete", true)) {
      const std::string id = answer["jobReference"].value("jobId", "");
      std::this_thread::sleep_for(std::chrono::milliseconds(options_.poll_interval_ms));
      AQ_ASSIGN_OR_RETURN(answer, rest_.Call("GET", "/queries/" + id + "?timeoutMs=10000" + LocationParam("&")));
    }
    return answer;
  }

  // Dry run: one SELECT; the tables it reads, the bytes it would scan.
  Result<driver::QueryAnalysis> Analyze(const std::string& sql, const std::atomic<bool>* stop);
  // `sql` with each table that has a retention read through a filter on
  // __timestamp, so a job never sees an expired row, purged or not.
  std::string WithRetention(const std::string& sql);
  void RunJob(std::shared_ptr<JobState> state);
  Status RunJobBody(const std::shared_ptr<JobState>& state);
  void Finish(const std::shared_ptr<JobState>& state, Status status);
  void StopJobs();
  // A job this driver did not start, from BigQuery.
  Result<Job> ForeignJob(const Uuid& job_id, int64_t* finished_ms, int64_t* ttl_ms);

  void NoteRetention(const InstanceInfo& instance) {
    retention_.Note(TableName(instance), instance.warehouse_retention_ms);
  }

  const WarehouseOptions options_;
  Clock* const clock_;
  RestClient rest_;
  driver::RetentionByTable retention_;
  driver::InstanceLocks write_locks_;
  driver::LocalJobs jobs_{kMaxRunningJobs};  // last: stopped (its threads use the members above) before they go
};

Status BqWarehouse::WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                                     std::span<const driver::RecordGroup> groups) {
  const std::string who = instance.instance_id.ToString();
  if (instance.schema == nullptr) return InvalidArgument("writing to {}: no schema", who);
  if (Status checked = driver::CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext(fmt::format("writing to {}", who));
  }
  NoteRetention(instance);
  const int64_t now = clock_->NowMillis();
  // Each record's row and its group (hex id, index within the group), or
  // nothing when it has expired. Every record converts before any is sent.
  std::vector<std::optional<json>> rows(records.size());
  std::vector<std::string> group_of(records.size());
  std::vector<size_t> index_in_group(records.size());
  {
    size_t at = 0;
    for (const driver::RecordGroup& group : groups) {
      const std::string hex = HexEncode(group.id);
      for (size_t i = 0; i < group.records; ++i, ++at) {
        group_of[at] = hex;
        index_in_group[at] = i;
      }
    }
  }
  for (size_t idx = 0; idx < records.size(); ++idx) {
    const Record& record = records[idx];
    if (instance.warehouse_retention_ms > 0 &&
        record.timestamp_ms < driver::RetentionHorizon(instance.warehouse_retention_ms, now)) {
      continue;
    }
    auto text = schema::AvroToJson(*instance.schema, record.avro);
    if (!text.ok()) return text.status().WithContext(fmt::format("writing to {}: record {}", who, idx));
    json value = json::parse(*text, nullptr, false);
    if (!value.is_object()) return Internal("writing to {}: record {}: the codec wrote no JSON object", who, idx);
    json row = json::object();
    for (const schema::Field& field : instance.schema->fields()) {
      auto it = value.find(field.name);
      auto converted = RowValue(*field.type, it == value.end() ? json() : *it);
      if (!converted.ok()) {
        return converted.status().WithContext(fmt::format("writing to {}: record {}: field {}", who, idx, field.name));
      }
      row[field.name] = std::move(*converted);
    }
    row["__key"] = Base64Encode(record.key);
    auto timestamp = TimestampText(record.timestamp_ms);
    if (!timestamp.ok()) return timestamp.status().WithContext(fmt::format("writing to {}: record {}", who, idx));
    row["__timestamp"] = std::move(*timestamp);
    if (!groups.empty()) row["__group"] = group_of[idx];
    rows[idx] = std::move(row);
  }
  // Exactly once (README.md): the rows of a group the table already holds are skipped.
  // Writes of one instance are serialised here, so a group checked absent
  // is not inserted twice by this process.
  std::shared_ptr<std::mutex> write_lock;
  std::unique_lock<std::mutex> hold;
  if (!groups.empty()) {
    write_lock = write_locks_.Of(instance.instance_id);
    hold = std::unique_lock<std::mutex>(*write_lock);
    std::string list;
    for (const driver::RecordGroup& group : groups) list += (list.empty() ? "'" : ", '") + HexEncode(group.id) + "'";
    auto applied = Query(fmt::format("SELECT __group, count(*) FROM {} WHERE __group IN ({}) GROUP BY __group",
                                     TableName(instance), list));
    if (!applied.ok()) {
      if (IsMissingTable(instance)) {
        return NotFound("writing to {}: its warehouse table {} does not exist (register the instance)", who,
                        TableName(instance));
      }
      return applied.status().WithContext(fmt::format("writing to {}: reading its applied groups", who));
    }
    // A group's rows are sent in order, in sequential requests: what the
    // table holds of a group is a prefix of its rows, skipped here.
    std::map<std::string, int64_t> stored;
    for (const json& row : applied->value("rows", json::array())) {
      const json v = row["f"][0].value("v", json());
      const json n = CellValue({{"type", "INTEGER"}}, row["f"][1].value("v", json()));
      if (v.is_string() && n.is_number_integer()) stored[v.get<std::string>()] = n.get<int64_t>();
    }
    for (size_t idx = 0; idx < records.size(); ++idx) {
      auto it = stored.find(group_of[idx]);
      if (it == stored.end() || !rows[idx] || it->second <= 0) continue;
      rows[idx].reset();
      --it->second;
    }
  }
  // insertAll in chunks; a row's insertId is its group and place in it, or
  // (without groups) the digest of its key, timestamp and record.
  const std::string path = fmt::format("/datasets/{}/tables/{}/insertAll", options_.dataset, TableId(instance));
  json body = {{"skipInvalidRows", false}, {"ignoreUnknownValues", false}, {"rows", json::array()}};
  size_t bytes = 0;
  std::vector<size_t> sent;  // record indexes in the chunk
  auto flush = [&]() -> Status {
    if (body["rows"].empty()) return Status::OK();
    auto answer = rest_.Call("POST", path, &body);
    if (!answer.ok()) {
      if (answer.status().code() == StatusCode::kNotFound) {
        return NotFound("writing to {}: its warehouse table {} does not exist (register the instance)", who,
                        TableName(instance));
      }
      return answer.status().WithContext(fmt::format("writing to {}", who));
    }
    const json errors = answer->value("insertErrors", json::array());
    if (!errors.empty()) {
      const size_t index = static_cast<size_t>(errors[0].value("index", 0));
      const json details = errors[0].value("errors", json::array());
      return InvalidArgument("writing to {}: record {}: BigQuery refused the row: {}", who,
                             index < sent.size() ? sent[index] : index,
                             details.empty() ? std::string("(no reason)") : details[0].value("message", ""));
    }
    body["rows"] = json::array();
    sent.clear();
    bytes = 0;
    return Status::OK();
  };
  for (size_t idx = 0; idx < records.size(); ++idx) {
    if (!rows[idx]) continue;
    const Record& record = records[idx];
    std::string insert_id = groups.empty()
                                ? Digest({instance.instance_id.Hex(), record.key, std::to_string(record.timestamp_ms), record.avro})
                                : Digest({instance.instance_id.Hex(), group_of[idx], std::to_string(index_in_group[idx])});
    json entry = {{"insertId", std::move(insert_id)}, {"json", std::move(*rows[idx])}};
    bytes += entry.dump().size();
    body["rows"].push_back(std::move(entry));
    sent.push_back(idx);
    if (body["rows"].size() >= kInsertRows || bytes >= kInsertBytes) AQ_RETURN_IF_ERROR(flush());
  }
  return flush();
}

Result<driver::QueryAnalysis> BqWarehouse::Analyze(const std::string& sql, const std::atomic<bool>* stop) {
  AQ_RETURN_IF_ERROR(driver::CheckOneSelect(sql, driver::SqlComments::kHash));
  // The dry run compiles the query wrapped in `SELECT * ... LIMIT 0`: the
  // same tables, columns and bytes estimate (LIMIT does not lower bytes in
  // BigQuery), and an emulator that runs dry runs (bqemulator) neither
  // fails on a run-time error nor spends long on a slow query. When the
  // wrapped form fails, the query as written is dry-run for its own message.
  auto dry_run = [&](const std::string& text) -> Result<json> {
    json body = {{"jobReference", {{"projectId", options_.rest.project}, {"jobId", "aq_dry_" + Uuid::Random().Hex()}}},
                 {"configuration", {{"dryRun", true}, {"query", {{"query", text}, {"useLegacySql", false}}}}}};
    if (!options_.location.empty()) body["jobReference"]["location"] = options_.location;
    AQ_ASSIGN_OR_RETURN(json answer, rest_.Call("POST", "/jobs", &body, 0, stop));
    const json status = answer.value("status", json::object());
    if (status.contains("errorResult")) {
      return InvalidArgument("{}", status["errorResult"].value("message", "the dry run failed"));
    }
    return answer;
  };
  auto answer = dry_run("SELECT * FROM (\n" + sql + "\n) LIMIT 0");
  if (!answer.ok() && answer.status().code() == StatusCode::kInvalidArgument) answer = dry_run(sql);
  if (!answer.ok()) {
    const Status& status = answer.status();
    if (status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kNotFound) {
      return InvalidArgument("{}", status.message());
    }
    return status;
  }
  const json statistics = answer->value("statistics", json::object());
  const json query = statistics.value("query", json::object());
  const std::string type = query.value("statementType", "SELECT");
  if (type != "SELECT") return InvalidArgument("only read-only SELECT queries are allowed, not {}", type);
  driver::QueryAnalysis analysis;
  analysis.bytes_scanned_estimate = JsonInt(query, "totalBytesProcessed", JsonInt(statistics, "totalBytesProcessed"));
  // The tables: as TableName() spells them in the SQL (the engine's
  // rewrite names every table so), and those BigQuery reports.
  std::set<std::string> seen;
  auto add = [&](std::string name) {
    if (seen.insert(name).second) analysis.tables.push_back(std::move(name));
  };
  const std::string prefix = "`" + options_.rest.project + "." + options_.dataset + ".i_";
  for (size_t pos = sql.find(prefix); pos != std::string::npos; pos = sql.find(prefix, pos + 1)) {
    const size_t end = pos + prefix.size() + 32;
    if (end < sql.size() && sql[end] == '`') add(sql.substr(pos, end + 1 - pos));
  }
  for (const json& table : query.value("referencedTables", json::array())) {
    add("`" + table.value("projectId", "") + "." + table.value("datasetId", "") + "." + table.value("tableId", "") + "`");
  }
  return analysis;
}

std::string BqWarehouse::WithRetention(const std::string& sql) {
  return retention_.ReadThrough(sql, '`', clock_->NowMillis(), [](const std::string& table, int64_t horizon_ms) {
    return fmt::format("(SELECT * FROM {} WHERE __timestamp >= TIMESTAMP_MILLIS({}))", table, horizon_ms);
  });
}

Result<Job> BqWarehouse::StartQuery(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) {
  if (jobs_.Find(job_id) != nullptr) return AlreadyExists("job {} already exists", job_id.ToString());
  // A job of another driver on the same dataset (or of an earlier process).
  auto existing = rest_.Call("GET", JobPath(BqJobId(job_id)));
  if (existing.ok()) return AlreadyExists("job {} already exists", job_id.ToString());
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  auto state = std::make_shared<JobState>();
  state->job.job_id = job_id;
  state->sql = driver::TrimStatement(sql);
  state->options = options;
  const Job started = state->job;  // before its thread may change it
  AQ_RETURN_IF_ERROR(jobs_.Launch(state, [this, state] { RunJob(state); }));
  return started;
}

void BqWarehouse::RunJob(std::shared_ptr<JobState> state) {
  {
    std::lock_guard<std::mutex> lock(jobs_.mu());
    if (state->finished) return;
    state->job.status = JobStatus::kRunning;
  }
  Finish(state, RunJobBody(state));
}

Status BqWarehouse::RunJobBody(const std::shared_ptr<JobState>& state) {
  const driver::JobOptions& options = state->options;
  const auto started = std::chrono::steady_clock::now();
  // Each request gets what is left of the job's wall time (0: no limit).
  auto remaining_ms = [&]() -> int64_t {
    if (options.timeout_ms <= 0) return 0;
    auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    return std::max<int64_t>(1, options.timeout_ms - spent.count());
  };
  auto timed_out = [&] {
    return options.timeout_ms > 0 && std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(options.timeout_ms);
  };
  const std::string bq_id = BqJobId(state->job.job_id);
  auto give_up = [&](Status status) -> Status {
    if (status.code() == StatusCode::kTimeout || timed_out()) {
      // Best effort: the emulator runs queries to their end regardless.
      (void)rest_.Call("POST", "/jobs/" + bq_id + "/cancel" + LocationParam("?"), nullptr, 2'000);
      return Timeout("query exceeded its timeout of {} ms", options.timeout_ms);
    }
    return status;
  };
  auto analysis = Analyze(state->sql, &state->stop);
  if (!analysis.ok()) return give_up(analysis.status());
  if (options.max_bytes_scanned > 0 && analysis->bytes_scanned_estimate > options.max_bytes_scanned) {
    return ResourceExhausted("the query would scan about {} bytes, over the job's cap of {}",
                             analysis->bytes_scanned_estimate, options.max_bytes_scanned);
  }
  json labels = {{"aquifer_max_rows", std::to_string(options.max_result_rows)},
                 {"aquifer_ttl_ms", std::to_string(options.result_ttl_ms)}};
  json query = {{"query", WithRetention(state->sql)}, {"useLegacySql", false}};
  json configuration = {{"query", std::move(query)}, {"labels", std::move(labels)}};
  if (options.timeout_ms > 0) configuration["jobTimeoutMs"] = std::to_string(options.timeout_ms);
  json body = {{"jobReference", {{"projectId", options_.rest.project}, {"jobId", bq_id}}},
               {"configuration", std::move(configuration)}};
  if (!options_.location.empty()) body["jobReference"]["location"] = options_.location;
  auto job = rest_.Call("POST", "/jobs", &body, remaining_ms(), &state->stop);
  if (!job.ok()) return give_up(job.status());
  while (job->value("status", json::object()).value("state", "") != "DONE") {
    if (timed_out()) return give_up(Timeout("deadline"));
    if (state->stop.load()) return Aborted("stopped");
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.poll_interval_ms));
    job = rest_.Call("GET", JobPath(bq_id), nullptr, remaining_ms(), &state->stop);
    if (!job.ok()) return give_up(job.status());
  }
  const json status = job->value("status", json::object());
  if (status.contains("errorResult")) {
    const json error = status["errorResult"];
    if (timed_out() || error.value("reason", "") == "timeout") return give_up(Timeout("deadline"));
    return InvalidArgument("{}", error.value("message", "the query failed"));
  }
  const json statistics = job->value("statistics", json::object());
  const json stats = statistics.value("query", json::object());
  int64_t total = JsonInt(stats, "totalRows", -1);
  const int64_t scanned = JsonInt(stats, "totalBytesProcessed", analysis->bytes_scanned_estimate);
  // The result caps: the rows by the count BigQuery reports; the bytes by
  // paging through the result until it is read or over the cap.
  if (total < 0 || options.max_result_bytes > 0) {
    int64_t offset = 0, bytes = 0;
    while (true) {
      if (timed_out()) return give_up(Timeout("deadline"));
      auto page = rest_.Call("GET",
                             fmt::format("/queries/{}?startIndex={}&maxResults={}&formatOptions.useInt64Timestamp=true{}",
                                         bq_id, offset, kCheckPageRows,
                                         options_.location.empty() ? "" : "&location=" + options_.location),
                             nullptr, remaining_ms(), &state->stop);
      if (!page.ok()) return give_up(page.status());
      total = JsonInt(*page, "totalRows", 0);
      if (options.max_result_rows > 0 && total > options.max_result_rows) break;
      const json fields = page->value("schema", json::object()).value("fields", json::array());
      const json rows = page->value("rows", json::array());
      for (const json& row : rows) {
        json out = json::array();
        const json cells = row.value("f", json::array());
        for (size_t i = 0; i < fields.size() && i < cells.size(); ++i) {
          if (fields[i].value("name", "").starts_with("__")) continue;
          out.push_back(CellValue(fields[i], cells[i].value("v", json())));
        }
        bytes += static_cast<int64_t>(out.dump().size()) + 16;
      }
      if (options.max_result_bytes > 0 && bytes > options.max_result_bytes) {
        return ResourceExhausted("result exceeds {} bytes; add LIMIT or select fewer columns", options.max_result_bytes);
      }
      offset += static_cast<int64_t>(rows.size());
      if (rows.empty() || offset >= total || options.max_result_bytes <= 0) break;
    }
  }
  if (options.max_result_rows > 0 && total > options.max_result_rows) {
    return ResourceExhausted("result exceeds {} rows; add LIMIT", options.max_result_rows);
  }
  std::lock_guard<std::mutex> lock(jobs_.mu());
  state->job.rows = total;
  state->job.bytes_scanned = scanned;
  return Status::OK();
}

void BqWarehouse::Finish(const std::shared_ptr<JobState>& state, Status status) {
  std::lock_guard<std::mutex> lock(jobs_.mu());
  state->finished = true;
  state->finished_ms = clock_->NowMillis();
  state->job.status = status.ok() ? JobStatus::kDone : JobStatus::kFailed;
  if (!status.ok()) state->job.error = status.message();
}

Result<Job> BqWarehouse::ForeignJob(const Uuid& job_id, int64_t* finished_ms, int64_t* ttl_ms) {
  AQ_ASSIGN_OR_RETURN(json answer, rest_.Call("GET", JobPath(BqJobId(job_id))));
  Job job;
  job.job_id = job_id;
  const json status = answer.value("status", json::object());
  const json statistics = answer.value("statistics", json::object());
  const json stats = statistics.value("query", json::object());
  const json labels = answer.value("configuration", json::object()).value("labels", json::object());
  const std::string state = status.value("state", "");
  if (finished_ms != nullptr) *finished_ms = JsonInt(statistics, "endTime");
  if (ttl_ms != nullptr) *ttl_ms = JsonInt(labels, "aquifer_ttl_ms", 0);
  if (state != "DONE") {
    job.status = state == "PENDING" ? JobStatus::kPending : JobStatus::kRunning;
    return job;
  }
  if (status.contains("errorResult")) {
    job.status = JobStatus::kFailed;
    job.error = status["errorResult"].value("message", "the query failed");
    return job;
  }
  job.rows = JsonInt(stats, "totalRows");
  job.bytes_scanned = JsonInt(stats, "totalBytesProcessed");
  const int64_t max_rows = JsonInt(labels, "aquifer_max_rows", 0);
  if (max_rows > 0 && job.rows > max_rows) {
    job.status = JobStatus::kFailed;
    job.error = fmt::format("result exceeds {} rows; add LIMIT", max_rows);
    job.rows = 0;
    return job;
  }
  job.status = JobStatus::kDone;
  return job;
}

Result<Job> BqWarehouse::PollJob(const Uuid& job_id) {
  if (std::shared_ptr<JobState> mine = jobs_.Find(job_id)) {
    std::lock_guard<std::mutex> lock(jobs_.mu());
    return mine->job;
  }
  auto job = ForeignJob(job_id, nullptr, nullptr);
  if (!job.ok() && job.status().code() == StatusCode::kNotFound) return NotFound("job {} not found", job_id.ToString());
  return job;
}

Result<driver::RowPage> BqWarehouse::ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) {
  Job job;
  int64_t finished_ms = 0, ttl_ms = 0;
  const std::shared_ptr<JobState> mine = jobs_.Find(job_id);
  if (mine != nullptr) {
    std::lock_guard<std::mutex> lock(jobs_.mu());
    job = mine->job;
    finished_ms = mine->finished_ms;
    ttl_ms = mine->options.result_ttl_ms;
  }
  if (!mine) {
    auto foreign = ForeignJob(job_id, &finished_ms, &ttl_ms);
    if (!foreign.ok()) {
      if (foreign.status().code() == StatusCode::kNotFound) return NotFound("job {} not found", job_id.ToString());
      return foreign.status();
    }
    job = *foreign;
  }
  if (job.status != JobStatus::kDone) {
    return FailedPrecondition("job {} is {}{}", job_id.ToString(), driver::JobStatusName(job.status),
                              job.error.empty() ? "" : ": " + job.error);
  }
  if (const int64_t expires_ms = driver::ExpiresMs(finished_ms, ttl_ms); expires_ms > 0 && clock_->NowMillis() >= expires_ms) {
    return driver::ResultExpired(job_id, finished_ms, expires_ms);
  }
  if (limit < 1 || limit > kMaxPageRows) return InvalidArgument("limit {} is outside 1..{}", limit, kMaxPageRows);
  // Page tokens are "o<offset>" into the job's rows.
  AQ_ASSIGN_OR_RETURN(int64_t offset, driver::ParsePageToken(page, job.rows, job_id));
  AQ_ASSIGN_OR_RETURN(json answer,
                      rest_.Call("GET", fmt::format("/queries/{}?startIndex={}&maxResults={}&formatOptions.useInt64Timestamp=true{}",
                                                    BqJobId(job_id), offset, limit,
                                                    options_.location.empty() ? "" : "&location=" + options_.location)));
  driver::RowPage out;
  const json fields = answer.value("schema", json::object()).value("fields", json::array());
  std::vector<bool> visible;
  for (const json& field : fields) {
    const std::string name = field.value("name", "");
    visible.push_back(!name.starts_with("__"));
    if (visible.back()) out.columns.push_back({name, ColumnType(field)});
  }
  const json rows = answer.value("rows", json::array());
  for (const json& row : rows) {
    if (static_cast<int32_t>(out.rows.size()) >= limit) break;
    json values = json::array();
    const json cells = row.value("f", json::array());
    for (size_t i = 0; i < fields.size() && i < cells.size(); ++i) {
      if (visible[i]) values.push_back(CellValue(fields[i], cells[i].value("v", json())));
    }
    out.rows.push_back(values.dump());
  }
  const int64_t total = JsonInt(answer, "totalRows", job.rows);
  const int64_t next = offset + static_cast<int64_t>(out.rows.size());
  if (next < total) {
    if (out.rows.empty()) return Internal("BigQuery returned no rows at offset {} of {} for job {}", offset, total, job_id.ToString());
    out.next = driver::PageToken(next);
  }
  return out;
}

Status BqWarehouse::Reset() {
  StopJobs();
  // The dataset's instance tables.
  std::string token;
  std::vector<std::string> tables;
  do {
    AQ_ASSIGN_OR_RETURN(json listed, rest_.Call("GET", fmt::format("/datasets/{}/tables?maxResults=1000{}", options_.dataset,
                                                                   token.empty() ? "" : "&pageToken=" + token)));
    for (const json& table : listed.value("tables", json::array())) {
      const std::string id = table.value("tableReference", json::object()).value("tableId", "");
      if (id.starts_with("i_")) tables.push_back(id);
    }
    token = listed.value("nextPageToken", "");
  } while (!token.empty());
  for (const std::string& id : tables) {
    auto gone = rest_.Call("DELETE", fmt::format("/datasets/{}/tables/{}", options_.dataset, id));
    if (!gone.ok() && gone.status().code() != StatusCode::kNotFound) return gone.status().WithContext("resetting the warehouse");
  }
  // This dataset's jobs (their ids name it), so none is found again.
  const std::string prefix = "aq_" + options_.dataset + "_";
  std::vector<std::string> jobs;
  token.clear();
  do {
    AQ_ASSIGN_OR_RETURN(json listed, rest_.Call("GET", fmt::format("/jobs?maxResults=1000{}",
                                                                   token.empty() ? "" : "&pageToken=" + token)));
    for (const json& job : listed.value("jobs", json::array())) {
      const std::string id = job.value("jobReference", json::object()).value("jobId", "");
      if (id.starts_with(prefix)) jobs.push_back(id);
    }
    token = listed.value("nextPageToken", "");
  } while (!token.empty());
  for (const std::string& id : jobs) {
    auto gone = rest_.Call("DELETE", "/jobs/" + id + "/delete" + LocationParam("?"));
    if (!gone.ok() && gone.status().code() != StatusCode::kNotFound) return gone.status().WithContext("resetting the warehouse");
  }
  return Status::OK();
}

void BqWarehouse::StopJobs() { jobs_.StopAll(); }

}  // namespace

Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config) {
  WarehouseOptions options;
  options.rest.endpoint = driver::ConfigString(config, "endpoint", "https://bigquery.googleapis.com");
  options.rest.project = driver::ConfigString(config, "project", "");
  if (options.rest.project.empty()) return InvalidArgument("config 'project': the BigQuery project id is required");
  options.dataset = driver::ConfigString(config, "dataset", options.dataset);
  for (char c : options.dataset) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return InvalidArgument("config 'dataset': '{}' may hold only letters, digits and underscores", options.dataset);
    }
  }
  if (options.dataset.empty() || options.dataset.size() > 1024) return InvalidArgument("config 'dataset': 1..1024 characters");
  options.location = driver::ConfigString(config, "location", "");
  const bool https = options.rest.endpoint.starts_with("https://");
  if (!https && !options.rest.endpoint.starts_with("http://")) {
    return InvalidArgument("config 'endpoint': '{}' is not an http:// or https:// URL", options.rest.endpoint);
  }
  // Credentials only over TLS: an http:// endpoint is an emulator.
  options.rest.token_env = https ? driver::ConfigString(config, "token_env", "GOOGLE_OAUTH_ACCESS_TOKEN") : "";
  AQ_ASSIGN_OR_RETURN(options.rest.timeout_ms, driver::ConfigInt(config, "request_timeout_ms", options.rest.timeout_ms));
  if (options.rest.timeout_ms < 1) return InvalidArgument("config 'request_timeout_ms': must be positive");
  AQ_ASSIGN_OR_RETURN(options.dry_run_bytes, driver::ConfigBool(config, "dry_run_bytes", options.dry_run_bytes));
  AQ_ASSIGN_OR_RETURN(options.poll_interval_ms, driver::ConfigInt(config, "poll_interval_ms", options.poll_interval_ms));
  if (options.poll_interval_ms < 1) return InvalidArgument("config 'poll_interval_ms': must be positive");
  return options;
}

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock) {
  auto service = std::make_shared<BqWarehouse>(options, clock != nullptr ? clock : Clock::System());
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("bigquery warehouse service");
  return std::shared_ptr<driver::WarehouseService>(std::move(service));
}

void Register(driver::Registry* registry) {
  registry->Register(
      "bigquery",
      driver::Factory<driver::WarehouseService>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::WarehouseService>> {
            AQ_ASSIGN_OR_RETURN(WarehouseOptions options, ParseWarehouseOptions(config));
            return MakeWarehouseService(options, context.clock);
          }));
}

}  // namespace aquifer::drivers::bigquery
