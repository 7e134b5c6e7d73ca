#include "aquifer/drivers/postgres/warehouse.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <chrono>
#include <limits>
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
#include "aquifer/drivers/postgres/jobs.h"
#include "aquifer/drivers/postgres/script.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::postgres {
namespace {

using driver::InstanceInfo;
using driver::Job;
using driver::JobStatus;
using driver::Record;
using nlohmann::json;
using schema::Kind;
using schema::Logical;
using schema::Type;

constexpr unsigned kTimestampOid = 1114;
constexpr unsigned kTimestamptzOid = 1184;

// ---- schema → columns ---------------------------------------------------------------

bool IsNested(const Type& type) { return type.kind == Kind::kArray || type.kind == Kind::kRecord; }

std::string ColumnType(const Type& type) {
  switch (type.kind) {
    case Kind::kBoolean: return "boolean";
    case Kind::kInt: return "integer";
    case Kind::kLong: return type.logical == Logical::kTimestampMillis ? "timestamp(3) with time zone" : "bigint";
    case Kind::kFloat: return "real";
    case Kind::kDouble: return "double precision";
    case Kind::kString: return type.logical == Logical::kUuid ? "uuid" : "text";
    case Kind::kEnum: return "text";
    case Kind::kBytes:
    case Kind::kFixed:
      if (type.logical == Logical::kDecimal) {
        return type.precision >= 1 && type.precision <= 1000 ? fmt::format("numeric({},{})", type.precision, type.scale)
                                                              : "numeric";
      }
      return "bytea";
    case Kind::kArray: return IsNested(*type.items) ? "jsonb" : ColumnType(*type.items) + "[]";
    case Kind::kRecord: return "jsonb";
  }
  return "text";
}

// Timestamps as COPY text, UTC: "2023-11-14 22:13:20.123+00" (" BC" for year ≤ 0).
Result<std::string> TimestampText(int64_t ms) {
  // std::chrono's civil calendar covers years -32767..32767.
  constexpr int64_t kLimitMs = 900'000'000'000'000;
  if (ms < -kLimitMs || ms > kLimitMs) return InvalidArgument("timestamp {} ms is out of the supported range", ms);
  using namespace std::chrono;
  sys_time<milliseconds> tp{milliseconds(ms)};
  auto day = floor<days>(tp);
  year_month_day ymd{day};
  hh_mm_ss<milliseconds> time{tp - day};
  int year = static_cast<int>(ymd.year());
  const bool bc = year <= 0;
  if (bc) year = 1 - year;
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}+00{}", year, static_cast<unsigned>(ymd.month()),
                     static_cast<unsigned>(ymd.day()), time.hours().count(), time.minutes().count(),
                     time.seconds().count(), time.subseconds().count(), bc ? " BC" : "");
}

std::string ByteaText(std::string_view bytes) { return "\\x" + HexEncode(bytes); }

// One value (the codec's JSON for it) as Postgres input text; nullopt for NULL.
Result<std::optional<std::string>> ValueText(const Type& type, const json& value) {
  if (value.is_null()) return std::optional<std::string>();
  switch (type.kind) {
    case Kind::kBoolean: return std::optional<std::string>(value.get<bool>() ? "t" : "f");
    case Kind::kInt:
    case Kind::kLong:
      if (type.logical == Logical::kTimestampMillis) {
        AQ_ASSIGN_OR_RETURN(std::string text, TimestampText(value.get<int64_t>()));
        return std::optional<std::string>(std::move(text));
      }
      return std::optional<std::string>(value.dump());
    case Kind::kFloat:
    case Kind::kDouble:  // NaN and ±Infinity come as strings Postgres reads as they are
      return std::optional<std::string>(value.is_string() ? value.get<std::string>() : value.dump());
    case Kind::kString:
    case Kind::kEnum: return std::optional<std::string>(value.get<std::string>());
    case Kind::kBytes:
    case Kind::kFixed: {
      if (type.logical == Logical::kDecimal) return std::optional<std::string>(value.get<std::string>());
      std::string raw;
      if (!Base64Decode(value.get<std::string>(), &raw)) return Internal("the codec wrote bytes that are not base64");
      return std::optional<std::string>(ByteaText(raw));
    }
    case Kind::kArray: {
      if (IsNested(*type.items)) return std::optional<std::string>(value.dump());
      // An array literal: {"a","b",NULL} with \ and " escaped inside quotes.
      std::string out = "{";
      for (size_t item_idx = 0; item_idx < value.size(); ++item_idx) {
        if (item_idx > 0) out.push_back(',');
        AQ_ASSIGN_OR_RETURN(std::optional<std::string> item, ValueText(*type.items, value[item_idx]));
        if (!item) {
          out += "NULL";
          continue;
        }
        out.push_back('"');
        for (char c : *item) {
          if (c == '"' || c == '\\') out.push_back('\\');
          out.push_back(c);
        }
        out.push_back('"');
      }
      out.push_back('}');
      return std::optional<std::string>(std::move(out));
    }
    case Kind::kRecord: return std::optional<std::string>(value.dump());
  }
  return Internal("unknown schema kind");
}

// Appends one field of COPY text format: backslash escapes, \N for NULL.
// Runs without a special character are appended whole.
void AppendCopyField(std::string* out, const std::optional<std::string>& text) {
  if (!text) {
    out->append("\\N");
    return;
  }
  std::string_view rest = *text;
  while (!rest.empty()) {
    size_t plain = 0;
    while (plain < rest.size() && rest[plain] != '\\' && rest[plain] != '\n' && rest[plain] != '\r' &&
           rest[plain] != '\t') {
      ++plain;
    }
    out->append(rest.substr(0, plain));
    if (plain == rest.size()) break;
    switch (rest[plain]) {
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      default: out->append("\\t"); break;
    }
    rest.remove_prefix(plain + 1);
  }
}

// True when every top-level field is a primitive other than decimal: then
// records are rendered straight from their decoded value (FlatFieldText),
// without the JSON detour ValueText needs for nested values and decimals.
bool IsFlat(const schema::Schema& schema) {
  for (const schema::Field& field : schema.fields()) {
    const Type& type = *field.type;
    if (IsNested(type) || type.logical == Logical::kDecimal) return false;
  }
  return true;
}

// The same text ValueText makes from the codec's JSON for the value, for the
// types IsFlat admits; nullopt for NULL.
Result<std::optional<std::string>> FlatFieldText(const Type& type, const schema::Value& value) {
  using schema::Bytes;
  using schema::EnumSymbol;
  if (value.is_null()) return std::optional<std::string>();
  const auto& v = value.v;
  auto floating = [](auto number) {
    if (std::isnan(number)) return std::string("NaN");
    if (std::isinf(number)) return std::string(number > 0 ? "Infinity" : "-Infinity");
    return fmt::format("{}", number);
  };
  switch (type.kind) {
    case Kind::kBoolean:
      if (const bool* b = std::get_if<bool>(&v)) return std::optional<std::string>(*b ? "t" : "f");
      break;
    case Kind::kInt:
    case Kind::kLong:
      if (const int64_t* n = std::get_if<int64_t>(&v)) {
        if (type.logical == Logical::kTimestampMillis) {
          AQ_ASSIGN_OR_RETURN(std::string text, TimestampText(*n));
          return std::optional<std::string>(std::move(text));
        }
        return std::optional<std::string>(fmt::format("{}", *n));
      }
      break;
    case Kind::kFloat:
      if (const float* f = std::get_if<float>(&v)) return std::optional<std::string>(floating(*f));
      break;
    case Kind::kDouble:
      if (const double* d = std::get_if<double>(&v)) return std::optional<std::string>(floating(*d));
      break;
    case Kind::kString:
      if (type.logical == Logical::kUuid) {
        if (const Bytes* b = std::get_if<Bytes>(&v); b != nullptr && b->data.size() == 16) {
          std::string hex = HexEncode(b->data);
          return std::optional<std::string>(fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4),
                                                        hex.substr(12, 4), hex.substr(16, 4), hex.substr(20)));
        }
      } else if (const std::string* text = std::get_if<std::string>(&v)) {
        return std::optional<std::string>(*text);
      }
      break;
    case Kind::kEnum:
      if (const EnumSymbol* e = std::get_if<EnumSymbol>(&v);
          e != nullptr && e->index >= 0 && static_cast<size_t>(e->index) < type.symbols.size()) {
        return std::optional<std::string>(type.symbols[e->index]);
      }
      break;
    case Kind::kBytes:
    case Kind::kFixed:
      if (const Bytes* b = std::get_if<Bytes>(&v)) return std::optional<std::string>(ByteaText(b->data));
      break;
    default:
      break;
  }
  return Internal("the codec decoded a value that does not match its type {}", type.Describe());
}

// ---- SQL checks -------------------------------------------------------------------------

// Walks an EXPLAIN (FORMAT JSON, VERBOSE) plan: relations read, and whether
// any node modifies data (a data-modifying CTE, INSERT, UPDATE, DELETE).
void WalkPlan(const json& node, std::set<std::pair<std::string, std::string>>* relations, bool* modifies) {
  if (node.is_object()) {
    auto type = node.find("Node Type");
    if (type != node.end() && type->is_string() && *type == "ModifyTable") *modifies = true;
    auto relation = node.find("Relation Name");
    auto schema = node.find("Schema");
    if (relation != node.end() && relation->is_string()) {
      relations->emplace(schema != node.end() && schema->is_string() ? schema->get<std::string>() : "",
                         relation->get<std::string>());
    }
    for (const auto& [key, child] : node.items()) WalkPlan(child, relations, modifies);
  } else if (node.is_array()) {
    for (const auto& child : node) WalkPlan(child, relations, modifies);
  }
}

// ---- jobs -------------------------------------------------------------------------------------

// Result rows sent per INSERT.
constexpr size_t kStoreBatchRows = 1000;

class PgWarehouse final : public driver::WarehouseService {
 public:
  PgWarehouse(const WarehouseOptions& options, Clock* clock)
      : options_(options), clock_(clock), pool_(options.connection.url, options.connection.pool_size),
        schema_(options.connection.schema),
        applied_(QuoteIdent(options.connection.schema) + ".warehouse_applied"),
        results_(QuoteIdent(options.connection.schema) + ".warehouse_job_results"),
        result_rows_(QuoteIdent(options.connection.schema) + ".warehouse_job_rows"),
        jobs_(pool_.conninfo(), clock_,
              {.run = [this](Connection& conn, const Uuid& job_id, const std::string& sql,
                             const driver::JobOptions& options, const std::function<int64_t()>& remaining_ms) {
                 return RunJob(conn, job_id, sql, options, remaining_ms);
               },
               .find_stored = [this](const Uuid& job_id) { return FindStoredJob(job_id); },
               .drop_expired = [this](int64_t now_ms) { return DropExpiredRows(now_ms); },
               .name = "postgres warehouse"}) {}

  ~PgWarehouse() override { jobs_.StopAll(); }

  Status Init() {
    return EnsureSchema(pool_, schema_, fmt::format(R"sql(
      CREATE TABLE IF NOT EXISTS {0} (
        instance_id uuid NOT NULL,
        group_id bytea NOT NULL,
        applied_ms bigint NOT NULL,
        PRIMARY KEY (instance_id, group_id));
      CREATE INDEX IF NOT EXISTS warehouse_applied_ms ON {0} (applied_ms);
      CREATE TABLE IF NOT EXISTS {1} (
        job_id uuid PRIMARY KEY,
        columns text NOT NULL,
        row_count bigint NOT NULL,
        bytes_scanned bigint NOT NULL,
        finished_ms bigint NOT NULL,
        expires_ms bigint NOT NULL,
        expired boolean NOT NULL DEFAULT false);
      CREATE INDEX IF NOT EXISTS warehouse_job_results_expiry ON {1} (expires_ms) WHERE NOT expired AND expires_ms > 0;
      CREATE TABLE IF NOT EXISTS {2} (
        job_id uuid NOT NULL,
        row_no bigint NOT NULL,
        row_json text NOT NULL,
        PRIMARY KEY (job_id, row_no));
    )sql", applied_, results_, result_rows_));
  }

  driver::WarehouseCapabilities capabilities() const override { return StoredRowsCapabilities(options_.limits); }

  std::string TableName(const InstanceInfo& instance) const override {
    return InstanceTable(schema_, instance.instance_id);
  }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) return InvalidArgument("registering {}: no schema", instance.instance_id.ToString());
    std::string columns;
    for (const schema::Field& field : instance.schema->fields()) {
      columns += fmt::format("{} {}{}, ", QuoteIdent(field.name), ColumnType(*field.type),
                             field.type->nullable ? "" : " NOT NULL");
    }
    const std::string ddl = fmt::format(
        "CREATE TABLE IF NOT EXISTS {} ({}__key bytea NOT NULL, __timestamp timestamp(3) with time zone NOT NULL)",
        TableName(instance), columns);
    Status done = EnsureSchema(pool_, schema_, ddl);
    if (done.ok()) NoteRetention(instance);
    return done.ok() ? done : done.WithContext(fmt::format("creating the warehouse table of {}", instance.instance_id.ToString()));
  }

  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    NoteRetention(instance);
    if (instance.warehouse_retention_ms <= 0) return int64_t{0};
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    return DeleteExpired(*conn, TableName(instance), instance.warehouse_retention_ms);
  }

  Result<int64_t> CountStoredRows(const InstanceInfo& instance) override {
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    Params name;
    name.Text(TableName(instance));
    AQ_ASSIGN_OR_RETURN(PgResult exists, conn->Exec("SELECT to_regclass($1) IS NOT NULL", name));
    AQ_ASSIGN_OR_RETURN(bool found, exists.Bool(0, 0));
    if (!found) return int64_t{0};
    AQ_ASSIGN_OR_RETURN(PgResult rows, conn->Exec("SELECT count(*) FROM " + TableName(instance)));
    return rows.Int(0, 0);
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    Params id;
    id.Uuid(instance.instance_id);
    auto forgot = conn->Exec(fmt::format("DELETE FROM {} WHERE instance_id = $1", applied_), id);
    if (!forgot.ok()) return forgot.status().WithContext(fmt::format("forgetting the applied groups of {}", instance.instance_id.ToString()));
    Status done = conn->ExecScript("DROP TABLE IF EXISTS " + TableName(instance));
    return done.ok() ? done : done.WithContext(fmt::format("dropping the warehouse table of {}", instance.instance_id.ToString()));
  }

  Status WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                          std::span<const driver::RecordGroup> groups) override;
  Result<driver::QueryAnalysis> AnalyzeQuery(std::string_view sql) override;
  Result<Job> StartQuery(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) override;
  Result<Job> PollJob(const Uuid& job_id) override;
  Result<driver::RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) override;

  Status Reset() override {
    jobs_.StopAll();
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    Params schema;
    schema.Text(schema_);
    auto tables = conn->Exec("SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'i\\_%'", schema);
    if (!tables.ok()) return tables.status().WithContext("resetting the warehouse");
    Status forgot = conn->ExecScript("TRUNCATE " + applied_ + ", " + results_ + ", " + result_rows_);
    if (!forgot.ok()) return forgot.WithContext("resetting the warehouse");
    for (int row = 0; row < tables->rows(); ++row) {
      Status dropped = conn->ExecScript("DROP TABLE IF EXISTS " + QuoteIdent(schema_) + "." + QuoteIdent(std::string(tables->Bytes(row, 0))));
      if (!dropped.ok()) return dropped.WithContext("resetting the warehouse");
    }
    return Status::OK();
  }

 private:
  // Checks that `sql` is one read-only query and explains it on `conn`.
  Result<driver::QueryAnalysis> Analyze(Connection& conn, std::string_view sql);
  void PruneApplied(Connection& conn, int64_t now_ms);
  // The COPY ... FROM STDIN of the instance's table (text format, every column).
  std::string CopySql(const InstanceInfo& instance) const;
  // A job (JobRunner::Hooks::run): the query on its own connection, its result stored.
  Result<JobRunner::Totals> RunJob(Connection& conn, const Uuid& job_id, const std::string& sql,
                                   const driver::JobOptions& options, const std::function<int64_t()>& remaining_ms);
  // A done job of any process sharing the database, from the results table.
  Result<Job> FindStoredJob(const Uuid& job_id);
  // Deletes the rows of done jobs past their expiry by `now_ms` (every
  // process's); JobRunner calls it at most every kExpireIntervalMs.
  Status DropExpiredRows(int64_t now_ms);
  // Stores a done job's rows and columns, in one transaction on `conn`.
  Status StoreResult(Connection& conn, const Uuid& job_id, const std::vector<driver::Column>& columns,
                     const std::vector<std::string>& rows, int64_t bytes_scanned, int64_t result_ttl_ms);

  // Retention (README.md, "Retention"): remembers the instance's retention
  // for the jobs that read its table.
  void NoteRetention(const InstanceInfo& instance) {
    retention_.Note(TableName(instance), instance.warehouse_retention_ms);
  }
  // Deletes the rows of `table` older than the retention (a missing table has none).
  Result<int64_t> DeleteExpired(Connection& conn, const std::string& table, int64_t retention_ms) {
    Params params;
    params.Int8(driver::RetentionHorizon(retention_ms, clock_->NowMillis()));
    // The horizon in exact milliseconds (no float8 seconds on the way).
    auto deleted = conn.Exec(fmt::format("DELETE FROM {} WHERE "
                                         "__timestamp < TIMESTAMPTZ 'epoch' + $1::int8 * INTERVAL '1 millisecond'",
                                         table),
                             params);
    if (!deleted.ok()) {
      // The table went (RemoveInstance) since it was named: nothing to delete.
      if (deleted.status().message().find("does not exist") != std::string::npos) return int64_t{0};
      return deleted.status().WithContext("deleting the expired rows of " + table);
    }
    return deleted->AffectedRows();
  }
  // Before a job's READ ONLY transaction: deletes the expired rows of every
  // table with a retention its SQL names (the engine spells tables as
  // TableName()), so the job never reads an expired row, purged or not.
  Status PurgeReferenced(Connection& conn, std::string_view sql) {
    const std::vector<std::pair<std::string, int64_t>> named = retention_.NamedIn(sql);
    for (const auto& [table, retention] : named) AQ_RETURN_IF_ERROR(DeleteExpired(conn, table, retention).status());
    return Status::OK();
  }

  const WarehouseOptions options_;
  Clock* const clock_;
  Pool pool_;
  const std::string schema_;
  const std::string applied_;  // quoted schema.warehouse_applied
  const std::string results_;      // quoted schema.warehouse_job_results: one row per done job
  const std::string result_rows_;  // quoted schema.warehouse_job_rows: (job_id, row_no) -> JSON array
  std::mutex mu_;
  int64_t last_prune_ms_ = 0;  // guarded by mu_
  driver::RetentionByTable retention_;
  JobRunner jobs_;  // last: stopped (its threads use the members above) before they go
};

Status PgWarehouse::WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                                     std::span<const driver::RecordGroup> groups) {
  if (instance.schema == nullptr) return InvalidArgument("writing to {}: no schema", instance.instance_id.ToString());
  if (Status checked = driver::CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext(fmt::format("writing to {}", instance.instance_id.ToString()));
  }
  const auto& fields = instance.schema->fields();
  const bool flat = IsFlat(*instance.schema);
  const int64_t now = clock_->NowMillis();
  NoteRetention(instance);
  // Every record is converted before a row is committed: a bad one rejects
  // the batch (the COPY is abandoned, which rolls the transaction back).
  // The conversion runs while the server records the applied ids.
  // lines[i] is record i's COPY line, empty when it has expired.
  std::vector<std::string> lines(records.size());
  auto convert = [&]() -> Status {
    for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
      const Record& record = records[record_idx];
      if (instance.warehouse_retention_ms > 0 && record.timestamp_ms < now - instance.warehouse_retention_ms) continue;
      std::string& data = lines[record_idx];
      if (flat) {
        auto value = schema::DecodeAvro(*instance.schema, record.avro);
        if (!value.ok()) return value.status().WithContext(fmt::format("writing to {}: record {}", instance.instance_id.ToString(), record_idx));
        const schema::Record& values = std::get<schema::Value::kRecordIndex>(value->v);
        if (values.size() != fields.size()) return Internal("writing to {}: record {}: the codec decoded {} fields, expected {}", instance.instance_id.ToString(), record_idx, values.size(), fields.size());
        for (size_t field_idx = 0; field_idx < fields.size(); ++field_idx) {
          auto field_text = FlatFieldText(*fields[field_idx].type, values[field_idx]);
          if (!field_text.ok()) {
            return field_text.status().WithContext(
                fmt::format("writing to {}: record {}: field {}", instance.instance_id.ToString(), record_idx, fields[field_idx].name));
          }
          AppendCopyField(&data, *field_text);
          data.push_back('\t');
        }
      } else {
        auto text = schema::AvroToJson(*instance.schema, record.avro);
        if (!text.ok()) return text.status().WithContext(fmt::format("writing to {}: record {}", instance.instance_id.ToString(), record_idx));
        json value = json::parse(*text, nullptr, false);
        if (!value.is_object()) return Internal("writing to {}: record {}: the codec wrote no JSON object", instance.instance_id.ToString(), record_idx);
        for (const schema::Field& field : fields) {
          auto it = value.find(field.name);
          auto field_text = ValueText(*field.type, it == value.end() ? json() : *it);
          if (!field_text.ok()) {
            return field_text.status().WithContext(
                fmt::format("writing to {}: record {}: field {}", instance.instance_id.ToString(), record_idx, field.name));
          }
          AppendCopyField(&data, *field_text);
          data.push_back('\t');
        }
      }
      AppendCopyField(&data, ByteaText(record.key));
      data.push_back('\t');
      AQ_ASSIGN_OR_RETURN(std::string timestamp, TimestampText(record.timestamp_ms));
      AppendCopyField(&data, timestamp);
      data.push_back('\n');
    }
    return Status::OK();
  };
  // One transaction in one round trip (script.h): the applied group ids
  // (exactly once, as the lookup service) and a COPY of the rows of the groups
  // not applied yet, all or nothing.
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  std::string script;
  if (!groups.empty()) {
    std::vector<std::string_view> ids;
    for (const driver::RecordGroup& group : groups) ids.push_back(group.id);
    script = fmt::format(
        "INSERT INTO {} (instance_id, group_id, applied_ms) SELECT {}, g, {} FROM unnest({}) AS g "
        "ON CONFLICT DO NOTHING RETURNING encode(group_id, 'hex');\n",
        applied_, UuidLiteral(instance.instance_id), now, ByteaArrayLiteral(ids));
  }
  script += CopySql(instance);
  std::string data;
  ScriptHandlers handlers;
  Status converted;
  handlers.after_send = [&] { return converted = convert(); };
  handlers.on_result = [&](int statement, const ScriptRows& rows) -> Status {
    if (groups.empty() || statement != 0) return Status::OK();  // the COPY's own result
    std::set<std::string, std::less<>> fresh;
    for (int row = 0; row < rows.rows(); ++row) {
      AQ_ASSIGN_OR_RETURN(std::string group_id, rows.HexBytes(row, 0));
      fresh.insert(std::move(group_id));
    }
    size_t begin = 0;
    for (const driver::RecordGroup& group : groups) {
      if (fresh.erase(group.id) > 0) {
        for (size_t record_idx = begin; record_idx < begin + group.records; ++record_idx) data += lines[record_idx];
      }
      begin += group.records;
    }
    return Status::OK();
  };
  handlers.copy_data = [&](int) -> Result<std::string> {
    if (groups.empty()) {
      for (const std::string& line : lines) data += line;
    }
    return std::move(data);
  };
  Status done = RunScript(*conn, script, handlers);
  if (!converted.ok()) return converted;  // it names the instance and the record
  if (done.ok() && !groups.empty()) PruneApplied(*conn, now);
  return done.ok() ? done : done.WithContext(fmt::format("writing to {}", instance.instance_id.ToString()));
}

void PgWarehouse::PruneApplied(Connection& conn, int64_t now_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (last_prune_ms_ != 0 && now_ms - last_prune_ms_ < 60'000) return;
    last_prune_ms_ = now_ms;
  }
  Params cutoff;
  cutoff.Int8(now_ms - options_.applied_window_ms);
  (void)conn.Exec(fmt::format("DELETE FROM {} WHERE applied_ms < $1", applied_), cutoff);
}

std::string PgWarehouse::CopySql(const InstanceInfo& instance) const {
  std::string columns;
  for (const schema::Field& field : instance.schema->fields()) columns += QuoteIdent(field.name) + ", ";
  return fmt::format("COPY {} ({}__key, __timestamp) FROM STDIN", TableName(instance), columns);
}

Result<driver::QueryAnalysis> PgWarehouse::Analyze(Connection& conn, std::string_view sql) {
  const std::string keyword = driver::FirstKeyword(sql);
  if (keyword != "SELECT" && keyword != "WITH" && keyword != "VALUES" && keyword != "TABLE") {
    return InvalidArgument("only SELECT queries are allowed, not {}", keyword.empty() ? std::string("this") : keyword);
  }
  // One statement only: the extended protocol refuses several.
  auto plan = conn.Exec(fmt::format("EXPLAIN (FORMAT JSON, VERBOSE) {}", sql));
  if (!plan.ok()) return ExplainError(plan.status());
  if (plan->rows() != 1) return Internal("EXPLAIN returned {} rows", plan->rows());
  json parsed = json::parse(plan->Bytes(0, 0), nullptr, false);
  std::set<std::pair<std::string, std::string>> relations;
  bool modifies = false;
  WalkPlan(parsed, &relations, &modifies);
  if (modifies) return InvalidArgument("only read-only SELECT queries are allowed; this one modifies data");
  driver::QueryAnalysis analysis;
  std::vector<std::string_view> names;
  std::vector<std::string> qualified;
  for (const auto& [schema, relation] : relations) {
    qualified.push_back(schema.empty() ? QuoteIdent(relation) : QuoteIdent(schema) + "." + QuoteIdent(relation));
    analysis.tables.push_back(qualified.back());
  }
  // Bytes scanned: the on-disk size of every table read (heap and TOAST), an
  // upper bound of what a full scan reads.
  for (const std::string& name : qualified) names.push_back(name);
  if (!names.empty()) {
    Params params;
    params.ByteaArray(names);
    auto size = conn.Exec(
        "SELECT coalesce(sum(pg_table_size(to_regclass(convert_from(n, 'UTF8')))), 0)::int8 FROM unnest($1::bytea[]) AS n",
        params);
    if (!size.ok()) return size.status().WithContext("estimating bytes scanned");
    AQ_ASSIGN_OR_RETURN(analysis.bytes_scanned_estimate, size->Int(0, 0));
  }
  return analysis;
}

Result<driver::QueryAnalysis> PgWarehouse::AnalyzeQuery(std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  AQ_RETURN_IF_ERROR(conn->Begin());
  auto analysis = Analyze(*conn, driver::TrimStatement(sql));
  conn->Rollback();
  return analysis;
}

Result<Job> PgWarehouse::StartQuery(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) {
  return jobs_.Start(job_id, sql, options);
}

// A job: its own connection (JobRunner's), a READ ONLY transaction with
// statement_timeout, the same checks as a dry run, then the query wrapped so
// the server renders each row as one JSON array.
Result<JobRunner::Totals> PgWarehouse::RunJob(Connection& conn, const Uuid& job_id, const std::string& sql,
                                              const driver::JobOptions& options,
                                              const std::function<int64_t()>& remaining_ms) {
  auto limit_time = [&]() {
    return conn.ExecScript(fmt::format("SET LOCAL statement_timeout = {}", remaining_ms()));
  };
  AQ_RETURN_IF_ERROR(PurgeReferenced(conn, sql));
  AQ_RETURN_IF_ERROR(conn.ExecScript("BEGIN READ ONLY; SET LOCAL TimeZone = 'UTC'"));
  AQ_RETURN_IF_ERROR(limit_time());
  AQ_ASSIGN_OR_RETURN(driver::QueryAnalysis analysis, Analyze(conn, sql));
  AQ_RETURN_IF_ERROR(CheckScanCap(options, analysis.bytes_scanned_estimate));
  AQ_ASSIGN_OR_RETURN(PgResult shape, conn.Exec(fmt::format("SELECT * FROM ({}) AS q LIMIT 0", sql)));
  const int n = shape.columns();
  std::vector<driver::Column> columns;
  std::string aliases, values;
  std::vector<int64_t> oids, typmods;
  std::vector<int> visible;
  for (int column = 0; column < n; ++column) {
    aliases += fmt::format("{}c{}", column == 0 ? "" : ", ", column);
    std::string name = shape.ColumnName(column);
    if (name.starts_with("__")) continue;
    visible.push_back(column);
    oids.push_back(shape.ColumnType(column));
    typmods.push_back(shape.ColumnTypmod(column));
    const unsigned oid = shape.ColumnType(column);
    std::string ref = fmt::format("q.c{}", column);
    if (oid == kByteaOid) {
      ref = fmt::format("encode({}, 'base64')", ref);
    } else if (oid == kTimestampOid || oid == kTimestamptzOid) {
      ref = fmt::format("(extract(epoch FROM {}) * 1000)::int8", ref);
    }
    values += (values.empty() ? "" : ", ") + ref;
    columns.push_back({name, ""});
  }
  if (!oids.empty()) {
    Params types;
    types.Int8Array(oids).Int8Array(typmods);
    AQ_ASSIGN_OR_RETURN(PgResult names, conn.Exec(
        "SELECT format_type(t::oid, m::int4) FROM unnest($1::int8[], $2::int8[]) WITH ORDINALITY AS u(t, m, o) ORDER BY o",
        types));
    for (int row = 0; row < names.rows() && row < static_cast<int>(columns.size()); ++row) {
      columns[row].type = std::string(names.Bytes(row, 0));
    }
  }
  std::string wrapped = n == 0 ? fmt::format("SELECT '[]'::text FROM ({}) AS q", sql)
                               : fmt::format("SELECT json_build_array({})::text FROM ({}) AS q({})", values, sql, aliases);
  // Fetched in chunks through a cursor, so the result caps stop the query (FetchCapped).
  AQ_RETURN_IF_ERROR(limit_time());
  AQ_RETURN_IF_ERROR(conn.ExecScript("DECLARE aquifer_job NO SCROLL CURSOR FOR " + wrapped));
  std::vector<std::string> out;
  AQ_RETURN_IF_ERROR(FetchCapped(options, limit_time,
                                 [&](int64_t chunk, std::vector<std::string>* rows_out) -> Result<int64_t> {
                                   AQ_ASSIGN_OR_RETURN(PgResult rows, conn.Exec(fmt::format(
                                       "FETCH FORWARD {} FROM aquifer_job", chunk)));
                                   for (int row = 0; row < rows.rows(); ++row) rows_out->emplace_back(rows.Bytes(row, 0));
                                   return rows.rows();
                                 },
                                 &out));
  AQ_RETURN_IF_ERROR(conn.Commit());
  // Stored before the job reads as done: a done job always has its rows.
  AQ_RETURN_IF_ERROR(StoreResult(conn, job_id, columns, out, analysis.bytes_scanned_estimate, options.result_ttl_ms));
  return JobRunner::Totals{static_cast<int64_t>(out.size()), analysis.bytes_scanned_estimate};
}

Status PgWarehouse::StoreResult(Connection& conn, const Uuid& job_id, const std::vector<driver::Column>& columns,
                                const std::vector<std::string>& rows, int64_t bytes_scanned, int64_t result_ttl_ms) {
  const int64_t finished_ms = clock_->NowMillis();
  const int64_t expires_ms = driver::ExpiresMs(finished_ms, result_ttl_ms);
  return StoreInTransaction(conn, [&]() -> Status {
    for (size_t first = 0; first < rows.size(); first += kStoreBatchRows) {
      const size_t end = std::min(rows.size(), first + kStoreBatchRows);
      std::vector<std::string_view> batch(rows.begin() + static_cast<ptrdiff_t>(first),
                                          rows.begin() + static_cast<ptrdiff_t>(end));
      Params params;
      params.Uuid(job_id).Int8(static_cast<int64_t>(first)).ByteaArray(batch);
      AQ_RETURN_IF_ERROR(conn.Exec(fmt::format("INSERT INTO {} (job_id, row_no, row_json) "
                                               "SELECT $1, $2 + o - 1, convert_from(r, 'UTF8') "
                                               "FROM unnest($3::bytea[]) WITH ORDINALITY AS u(r, o)",
                                               result_rows_),
                                   params)
                             .status());
    }
    Params params;
    params.Uuid(job_id).Text(StoredColumns(columns)).Int8(static_cast<int64_t>(rows.size())).Int8(bytes_scanned)
        .Int8(finished_ms).Int8(expires_ms);
    AQ_RETURN_IF_ERROR(conn.Exec(fmt::format("INSERT INTO {} (job_id, columns, row_count, bytes_scanned, "
                                             "finished_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                                             results_),
                                 params)
                           .status());
    return Status::OK();
  });
}

Result<Job> PgWarehouse::PollJob(const Uuid& job_id) { return jobs_.Poll(job_id); }

Result<Job> PgWarehouse::FindStoredJob(const Uuid& job_id) {
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  Params id;
  id.Uuid(job_id);
  AQ_ASSIGN_OR_RETURN(PgResult found,
                      conn->Exec(fmt::format("SELECT row_count, bytes_scanned FROM {} WHERE job_id = $1", results_), id));
  return StoredJob(job_id, found);
}

Result<driver::RowPage> PgWarehouse::ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) {
  AQ_RETURN_IF_ERROR(jobs_.CheckReadable(job_id, limit));
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  Params id;
  id.Uuid(job_id);
  AQ_ASSIGN_OR_RETURN(PgResult found, conn->Exec(fmt::format("SELECT columns, row_count, finished_ms, expires_ms, "
                                                             "expired FROM {} WHERE job_id = $1",
                                                             results_),
                                                 id));
  if (found.rows() == 0) return NotFound("job {} not found", job_id.ToString());
  AQ_ASSIGN_OR_RETURN(int64_t total, found.Int(0, 1));
  AQ_ASSIGN_OR_RETURN(int64_t finished_ms, found.Int(0, 2));
  AQ_ASSIGN_OR_RETURN(int64_t expires_ms, found.Int(0, 3));
  AQ_ASSIGN_OR_RETURN(bool expired, found.Bool(0, 4));
  if (expired || (expires_ms > 0 && clock_->NowMillis() >= expires_ms)) {
    return driver::ResultExpired(job_id, finished_ms, expires_ms);
  }
  // Page tokens are "o<offset>" into the job's rows.
  AQ_ASSIGN_OR_RETURN(int64_t offset, driver::ParsePageToken(page, total, job_id));
  driver::RowPage out;
  AQ_ASSIGN_OR_RETURN(out.columns, ParseStoredColumns(found.Bytes(0, 0), job_id));
  const int64_t stop = std::min<int64_t>(total, offset + limit);
  if (offset < stop) {
    Params range;
    range.Uuid(job_id).Int8(offset).Int8(stop);
    AQ_ASSIGN_OR_RETURN(PgResult rows, conn->Exec(fmt::format("SELECT row_json FROM {} WHERE job_id = $1 AND "
                                                              "row_no >= $2 AND row_no < $3 ORDER BY row_no",
                                                              result_rows_),
                                                  range));
    if (rows.rows() != stop - offset) {
      // Deleted under us: the expiry ran between the two reads.
      return driver::ResultExpired(job_id, finished_ms, expires_ms);
    }
    for (int row = 0; row < rows.rows(); ++row) out.rows.emplace_back(rows.Bytes(row, 0));
  }
  if (stop < total) out.next = driver::PageToken(stop);
  return out;
}

Status PgWarehouse::DropExpiredRows(int64_t now_ms) {
  return InTransaction(pool_, [&](Connection& conn) -> Status {
    Params params;
    params.Int8(now_ms);
    return conn.Exec(fmt::format("WITH gone AS (UPDATE {} SET expired = true WHERE NOT expired AND expires_ms > 0 "
                                 "AND expires_ms <= $1 RETURNING job_id) "
                                 "DELETE FROM {} WHERE job_id IN (SELECT job_id FROM gone)",
                                 results_, result_rows_),
                     params)
        .status();
  });
}

}  // namespace

std::string InstanceTable(std::string_view schema, const Uuid& instance_id) {
  return QuoteIdent(schema) + "." + QuoteIdent("i_" + instance_id.Hex());
}

driver::WarehouseCapabilities StoredRowsCapabilities(const driver::Limits& limits) {
  driver::WarehouseCapabilities caps;
  caps.limits = limits;
  caps.dry_run_bytes = true;
  caps.stores_rows = true;
  caps.dedups_retries = false;
  return caps;
}

Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config) {
  WarehouseOptions options;
  AQ_ASSIGN_OR_RETURN(options.connection, ParseConnectionOptions(config));
  AQ_ASSIGN_OR_RETURN(options.applied_window_ms,
                      driver::ConfigInt(config, "applied_window_ms", options.applied_window_ms));
  if (options.applied_window_ms < 1) {
    return InvalidArgument("config 'applied_window_ms': must be positive, got {}", options.applied_window_ms);
  }
  return options;
}

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock) {
  auto service = std::make_shared<PgWarehouse>(options, clock != nullptr ? clock : Clock::System());
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("postgres warehouse service");
  return std::shared_ptr<driver::WarehouseService>(std::move(service));
}

}  // namespace aquifer::drivers::postgres
