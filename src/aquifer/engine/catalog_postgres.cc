#include "aquifer/engine/catalog_postgres.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/drivers/postgres/pg.h"
#include "aquifer/schema/schema.h"

// The Postgres catalog (catalog_postgres.h). The tables mirror the SQLite
// catalog's (catalog.cc) with Postgres types: ids are uuid, flags boolean,
// Idempotency-Keys bytea (a header may carry any bytes). Every SQL text names
// its tables as {s}.name; {s} becomes the quoted catalog schema.
//
// Concurrency: statements run at READ COMMITTED. Each mutation is one
// transaction; where a decision rests on a row read earlier in it, the row is
// locked (FOR UPDATE / FOR SHARE) or the write is conditioned on what was read
// (compare-and-set), and a lost race (no row changed, a unique or foreign key
// violation, a serialization failure or deadlock) runs the whole transaction
// again, which then sees the winner's row and answers as the SQLite catalog
// would (AlreadyExists, kPending, NotFound).

namespace aquifer::engine {
namespace {

namespace pg = drivers::postgres;

// The class of the per-secret advisory locks CreateJob takes
// (pg_advisory_xact_lock(class, hashtext(secret id)): the two-key space,
// apart from the one-key locks elsewhere).
constexpr int32_t kJobsLockClass = 0x4A6F6273;  // "Jobs"
using driver::InstanceInfo;
using driver::JobStatus;
using pg::Connection;
using pg::Params;
using pg::PgResult;
using schema::Schema;
using schema::SchemaPtr;

// --- Migrations ------------------------------------------------------------------------------
//
// Append only, like the SQLite catalog's (but numbered on their own): version 1
// is the full schema of SQLite version 5, plus the shared keys.

struct Migration {
  int version;
  const char* description;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, "projects, tables, instances, secrets, grants, jobs, idempotency keys, removals, keys",
     R"sql(
CREATE TABLE {s}.projects (
  id                 uuid PRIMARY KEY,
  name               text NOT NULL UNIQUE,
  created_ms         bigint NOT NULL,
  read_quota_bytes   bigint,
  write_quota_bytes  bigint,
  scan_quota_bytes   bigint
);
CREATE TABLE {s}.tables (
  id                   uuid PRIMARY KEY,
  project_id           uuid NOT NULL REFERENCES {s}.projects(id) ON DELETE CASCADE,
  name                 text NOT NULL,
  primary_instance_id  uuid NOT NULL,
  created_ms           bigint NOT NULL,
  UNIQUE (project_id, name)
);
CREATE TABLE {s}.instances (
  id                      uuid PRIMARY KEY,
  table_id                uuid NOT NULL REFERENCES {s}.tables(id) ON DELETE CASCADE,
  avro_json               text NOT NULL,
  key_json                text NOT NULL,
  use_log                 boolean NOT NULL,
  use_index               boolean NOT NULL,
  use_warehouse           boolean NOT NULL,
  log_retention_ms        bigint NOT NULL,
  index_retention_ms      bigint NOT NULL,
  warehouse_retention_ms  bigint NOT NULL,
  created_ms              bigint NOT NULL
);
CREATE INDEX instances_by_table ON {s}.instances (table_id);
CREATE TABLE {s}.secrets (
  id          uuid PRIMARY KEY,
  hash        text NOT NULL UNIQUE,
  hash_kind   text NOT NULL DEFAULT 'hmac',
  is_admin    boolean NOT NULL,
  project_id  uuid REFERENCES {s}.projects(id) ON DELETE CASCADE,
  created_ms  bigint NOT NULL
);
CREATE INDEX secrets_by_project ON {s}.secrets (project_id);
CREATE TABLE {s}.grants (
  secret_id   uuid NOT NULL REFERENCES {s}.secrets(id) ON DELETE CASCADE,
  project_id  uuid NOT NULL REFERENCES {s}.projects(id) ON DELETE CASCADE,
  table_id    uuid REFERENCES {s}.tables(id) ON DELETE CASCADE,
  permission  text NOT NULL
);
CREATE INDEX grants_by_secret ON {s}.grants (secret_id);
CREATE INDEX grants_by_project ON {s}.grants (project_id);
CREATE INDEX grants_by_table ON {s}.grants (table_id);
CREATE TABLE {s}.jobs (
  id             uuid PRIMARY KEY,
  secret_id      uuid NOT NULL,
  sql_text       text NOT NULL,
  status         text NOT NULL,
  error          text NOT NULL,
  bytes_scanned  bigint NOT NULL,
  row_count      bigint NOT NULL,
  created_ms     bigint NOT NULL,
  updated_ms     bigint NOT NULL
);
CREATE INDEX jobs_unfinished_by_secret ON {s}.jobs (secret_id)
  WHERE status IN ('pending', 'running');
CREATE TABLE {s}.job_tables (
  job_id       uuid NOT NULL REFERENCES {s}.jobs(id) ON DELETE CASCADE,
  position     bigint NOT NULL,
  project      text NOT NULL,
  table_name   text NOT NULL,
  instance_id  uuid NOT NULL,
  PRIMARY KEY (job_id, position)
);
CREATE TABLE {s}.idempotency_keys (
  secret_id         uuid NOT NULL REFERENCES {s}.secrets(id) ON DELETE CASCADE,
  idem_key          bytea NOT NULL,
  write_id          text NOT NULL,
  created_ms        bigint NOT NULL,
  state             text NOT NULL,
  owner             text NOT NULL,
  lease_expires_ms  bigint NOT NULL,
  PRIMARY KEY (secret_id, idem_key)
);
CREATE INDEX idempotency_keys_by_created ON {s}.idempotency_keys (created_ms);
CREATE TABLE {s}.removed_instances (
  id                      uuid PRIMARY KEY,
  project                 text NOT NULL,
  table_name              text NOT NULL,
  avro_json               text NOT NULL,
  key_json                text NOT NULL,
  use_log                 boolean NOT NULL,
  use_index               boolean NOT NULL,
  use_warehouse           boolean NOT NULL,
  log_retention_ms        bigint NOT NULL,
  index_retention_ms      bigint NOT NULL,
  warehouse_retention_ms  bigint NOT NULL,
  removed_ms              bigint NOT NULL
);
CREATE TABLE {s}.shared_keys (
  name        text PRIMARY KEY,
  key_bytes   bytea NOT NULL,
  created_ms  bigint NOT NULL
);
)sql"},
    // Jobs answered inline (POST /v1/sql with wait_ms) keep their few rows
    // here, so every process pages them: NULL for a job whose rows are in the
    // warehouse, '' once they expired (result_ttl_ms).
    {2, "jobs.result_text: the rows of jobs answered inline", R"sql(
ALTER TABLE {s}.jobs ADD COLUMN IF NOT EXISTS result_text text;
CREATE INDEX IF NOT EXISTS jobs_with_result ON {s}.jobs (updated_ms) WHERE result_text IS NOT NULL AND result_text <> '';
)sql"},
};

constexpr int kSchemaVersion = kMigrations[std::size(kMigrations) - 1].version;
constexpr size_t kSharedKeyBytes = 32;

// The message of a lost race the transaction runner retries.
constexpr std::string_view kConflict = "catalog: a concurrent change won; retrying";

Status Conflict() { return Aborted("{}", kConflict); }

bool HasSqlState(const Status& status, std::string_view sqlstate) {
  return status.message().find(fmt::format("(SQLSTATE {})", sqlstate)) != std::string::npos;
}

bool IsSerializationFailure(const Status& status) {
  return status.code() == StatusCode::kAborted &&
         (HasSqlState(status, "40001") || HasSqlState(status, "40P01"));
}

// A lost race: running the transaction again sees the winner.
bool IsConflict(const Status& status) {
  return IsSerializationFailure(status) ||
         (status.code() == StatusCode::kAborted && status.message() == kConflict) ||
         HasSqlState(status, "23505") || HasSqlState(status, "23503");
}

Result<JobStatus> ParseJobStatus(std::string_view text) {
  for (JobStatus status :
       {JobStatus::kPending, JobStatus::kRunning, JobStatus::kDone, JobStatus::kFailed}) {
    if (text == driver::JobStatusName(status)) return status;
  }
  return Corruption("catalog: unknown job status '{}'", text);
}

bool IsFinished(JobStatus status) {
  return status == JobStatus::kDone || status == JobStatus::kFailed;
}

std::string KeyJson(const std::vector<std::string>& key) { return nlohmann::json(key).dump(); }

Result<std::vector<std::string>> ParseKeyJson(std::string_view text) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_array()) {
    return Corruption("catalog: stored key list is not a JSON array: {}", text);
  }
  std::vector<std::string> key;
  for (const auto& entry : parsed) {
    if (!entry.is_string()) return Corruption("catalog: stored key list holds a non-string");
    key.push_back(entry.get<std::string>());
  }
  return key;
}

// --- Parameters and rows ---------------------------------------------------------------------

struct Bytes {
  std::string_view value;
};

void AddParam(Params& p, std::string_view value) { p.Text(value); }
void AddParam(Params& p, const std::string& value) { p.Text(value); }
void AddParam(Params& p, const char* value) { p.Text(value); }
void AddParam(Params& p, Bytes value) { p.Bytea(value.value); }
void AddParam(Params& p, int64_t value) { p.Int8(value); }
void AddParam(Params& p, bool value) { p.Bool(value); }
void AddParam(Params& p, const Uuid& value) { p.Uuid(value); }
void AddParam(Params& p, const std::optional<Uuid>& value) {
  if (value) p.Uuid(*value); else p.Null(pg::kUuidOid);
}
void AddParam(Params& p, const std::optional<int64_t>& value) {
  if (value) p.Int8(*value); else p.Null(pg::kInt8Oid);
}
void AddParam(Params& p, const std::optional<std::string>& value) {
  if (value) p.Text(*value); else p.Null(pg::kTextOid);
}

template <typename... Args>
Params P(const Args&... args) {
  Params params;
  (AddParam(params, args), ...);
  return params;
}

// Row `row` of a result, read by column.
class Row {
 public:
  Row(const PgResult& result, int row) : result_(result), row_(row) {}
  bool IsNull(int col) const { return result_.IsNull(row_, col); }
  std::string Text(int col) const { return std::string(result_.Bytes(row_, col)); }
  Result<int64_t> Int(int col) const { return result_.Int(row_, col); }
  std::optional<int64_t> OptInt(int col) const {
    if (IsNull(col)) return std::nullopt;
    auto value = result_.Int(row_, col);
    return value.ok() ? std::optional<int64_t>(*value) : std::nullopt;
  }
  Result<bool> Bool(int col) const { return result_.Bool(row_, col); }
  Result<Uuid> Id(int col) const {
    if (IsNull(col)) return Corruption("catalog: stored id is NULL");
    auto id = Uuid::FromBytes(result_.Bytes(row_, col));
    if (!id.ok()) return Corruption("catalog: stored id is not a UUID: {}", id.status().message());
    return *id;
  }
  Result<std::optional<Uuid>> OptId(int col) const {
    if (IsNull(col)) return std::optional<Uuid>();
    AQ_ASSIGN_OR_RETURN(Uuid id, Id(col));
    return std::optional<Uuid>(id);
  }

 private:
  const PgResult& result_;
  int row_;
};

// Columns that describe an instance, in the order ReadInstance expects them.
constexpr const char* kInstanceColumns =
    "i.id, p.name, t.name, i.avro_json, i.key_json, i.use_log, i.use_index, i.use_warehouse, "
    "i.log_retention_ms, i.index_retention_ms, i.warehouse_retention_ms";

constexpr const char* kTableSelect =
    "SELECT t.id, t.project_id, p.name, t.name, t.created_ms, "
    "i.id, p.name, t.name, i.avro_json, i.key_json, i.use_log, i.use_index, i.use_warehouse, "
    "i.log_retention_ms, i.index_retention_ms, i.warehouse_retention_ms "
    "FROM {s}.tables t JOIN {s}.projects p ON p.id = t.project_id "
    "JOIN {s}.instances i ON i.id = t.primary_instance_id ";

// --- URL -------------------------------------------------------------------------------------

struct CatalogUrl {
  std::string conninfo;  // for libpq, without Aquifer's parameters
  std::optional<std::string> schema;
  std::optional<size_t> pool_size;
};

Result<CatalogUrl> ParseCatalogUrl(const std::string& url) {
  CatalogUrl parsed;
  const size_t question = url.find('?');
  parsed.conninfo = url.substr(0, question);
  if (question == std::string::npos) return parsed;
  std::string kept;
  std::string_view query = std::string_view(url).substr(question + 1);
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
    if (key == "schema") {
      parsed.schema = std::string(value);
    } else if (key == "pool_size") {
      int64_t size = 0;
      for (char c : value) {
        if (c < '0' || c > '9' || size > 100000) {
          return InvalidArgument("catalog URL: pool_size '{}' is not a number", value);
        }
        size = size * 10 + (c - '0');
      }
      if (size < 1 || size > 1000) {
        return InvalidArgument("catalog URL: pool_size {} is outside 1..1000", value);
      }
      parsed.pool_size = static_cast<size_t>(size);
    } else if (!param.empty()) {
      kept += kept.empty() ? "?" : "&";
      kept += param;
    }
  }
  parsed.conninfo += kept;
  return parsed;
}

Status ValidateSchemaName(std::string_view schema) {
  bool ok = !schema.empty() && schema.size() <= 63 && !(schema[0] >= '0' && schema[0] <= '9');
  for (char c : schema) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  if (!ok) {
    return InvalidArgument(
        "catalog: the Postgres schema name '{}' must match [a-z_][a-z0-9_]{{0,62}}", schema);
  }
  return Status::OK();
}

// --- The catalog -----------------------------------------------------------------------------

class PostgresCatalog final : public Catalog {
 public:
  PostgresCatalog(const CatalogUrl& url, std::string schema, const PostgresCatalogOptions& options)
      : pool_(url.conninfo, url.pool_size.value_or(options.pool_size), /*acquire_timeout_ms=*/10'000),
        pool_size_(static_cast<int>(url.pool_size.value_or(options.pool_size))),
        schema_(std::move(schema)),
        quoted_schema_(pg::QuoteIdent(schema_)),
        clock_(options.clock),
        max_attempts_(std::max(1, options.max_attempts)),
        secret_key_(options.secret_key) {}

  Status Init() {
    AQ_RETURN_IF_ERROR(Migrate());
    if (secret_key_.empty()) {
      AQ_ASSIGN_OR_RETURN(secret_key_, SharedKey("secret_key"));
    }
    return Status::OK();
  }

  // --- Shared keys --------------------------------------------------------------------------

  Result<std::string> SharedKey(std::string_view name) {
    std::string key;
    AQ_ASSIGN_OR_RETURN(std::string fresh, RandomBytes(kSharedKeyBytes));
    AQ_RETURN_IF_ERROR(Run("loading the shared key", kWrite, [&](Connection& c) -> Status {
      // The first process inserts; a concurrent one waits for it, inserts
      // nothing, and reads the winner's key.
      AQ_RETURN_IF_ERROR(Exec(c,
                              "INSERT INTO {s}.shared_keys (name, key_bytes, created_ms) "
                              "VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                              P(name, Bytes{fresh}, clock_->NowMillis()))
                             .status());
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c, "SELECT key_bytes FROM {s}.shared_keys WHERE name = $1",
                                           P(name)));
      if (r.rows() != 1) return Internal("catalog: shared key '{}' vanished", name);
      key = std::string(r.Bytes(0, 0));
      return Status::OK();
    }));
    if (key.size() < 16) return Corruption("catalog: shared key '{}' is {} bytes", name, key.size());
    return key;
  }

  // --- Projects -----------------------------------------------------------------------------

  Result<ProjectInfo> CreateProject(std::string_view name) override {
    AQ_RETURN_IF_ERROR(ValidateName("project", name));
    ProjectInfo project;
    AQ_RETURN_IF_ERROR(Run("creating a project", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(auto existing, FindProjectId(c, name, ""));
      if (existing) return AlreadyExists("project '{}' already exists", name);
      project = ProjectInfo{};
      project.project_id = Uuid::Random();
      project.name = std::string(name);
      project.created_ms = clock_->NowMillis();
      return Exec(c, "INSERT INTO {s}.projects (id, name, created_ms) VALUES ($1, $2, $3)",
                  P(project.project_id, project.name, project.created_ms))
          .status();
    }));
    return project;
  }

  Result<ProjectInfo> GetProject(std::string_view name) override {
    std::vector<ProjectInfo> projects;
    AQ_RETURN_IF_ERROR(Run("reading a project", kNone, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(projects, SelectProjects(c, name));
      return Status::OK();
    }));
    if (projects.empty()) return ProjectNotFound(name);
    return std::move(projects.front());
  }

  Result<std::vector<ProjectInfo>> ListProjects() override {
    std::vector<ProjectInfo> projects;
    AQ_RETURN_IF_ERROR(Run("listing projects", kNone, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(projects, SelectProjects(c, std::nullopt));
      return Status::OK();
    }));
    return projects;
  }

  Result<std::vector<InstanceInfo>> DeleteProject(std::string_view name) override {
    std::vector<InstanceInfo> removed;
    AQ_RETURN_IF_ERROR(Run("deleting a project", kWrite, [&](Connection& c) -> Status {
      // The row lock keeps CreateTable/MintSecret in this project out until we commit.
      AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(c, name, " FOR UPDATE"));
      if (!project_id) return ProjectNotFound(name);
      AQ_ASSIGN_OR_RETURN(removed, SelectInstances(c, "t.project_id = $1", P(*project_id)));
      AQ_RETURN_IF_ERROR(RecordRemovals(c, "t.project_id = $2", *project_id));
      return Exec(c, "DELETE FROM {s}.projects WHERE id = $1", P(*project_id)).status();
    }));
    ForgetSchemas(removed);
    return removed;
  }

  Status SetProjectQuotas(std::string_view project, const Quotas& quotas) override {
    AQ_RETURN_IF_ERROR(CheckQuotas(project, quotas));
    return Run("setting quotas", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c,
                                           "UPDATE {s}.projects SET read_quota_bytes = $1, "
                                           "write_quota_bytes = $2, scan_quota_bytes = $3 "
                                           "WHERE name = $4",
                                           P(quotas.read_bytes, quotas.write_bytes,
                                             quotas.scan_bytes, project)));
      if (r.AffectedRows() == 0) return ProjectNotFound(project);
      return Status::OK();
    });
  }

  Result<Quotas> GetProjectQuotas(std::string_view project) override {
    AQ_ASSIGN_OR_RETURN(ProjectInfo info, GetProject(project));
    return info.quotas;
  }

  // --- Tables -------------------------------------------------------------------------------

  Result<TableInfo> CreateTable(std::string_view project, const TableSpec& spec) override {
    AQ_ASSIGN_OR_RETURN(SchemaPtr schema, CheckTableSpec(project, spec));
    const std::string where = fmt::format("table '{}.{}'", project, spec.name);

    TableInfo table;
    AQ_RETURN_IF_ERROR(Run("creating a table", kWrite, [&](Connection& c) -> Status {
      // FOR SHARE: a concurrent DeleteProject waits for us (or we for it).
      AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(c, project, " FOR SHARE"));
      if (!project_id) return ProjectNotFound(project);
      AQ_ASSIGN_OR_RETURN(auto existing, FindTableId(c, *project_id, spec.name, ""));
      if (existing) return AlreadyExists("{} already exists", where);
      table = NewTable(project, *project_id, spec, schema, clock_->NowMillis());
      const InstanceInfo& instance = table.primary;
      AQ_RETURN_IF_ERROR(Exec(c,
                              "INSERT INTO {s}.tables (id, project_id, name, primary_instance_id, "
                              "created_ms) VALUES ($1, $2, $3, $4, $5)",
                              P(table.table_id, table.project_id, table.name,
                                instance.instance_id, table.created_ms))
                             .status());
      return Exec(c,
                  "INSERT INTO {s}.instances (id, table_id, avro_json, key_json, use_log, "
                  "use_index, use_warehouse, log_retention_ms, index_retention_ms, "
                  "warehouse_retention_ms, created_ms) "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                  P(instance.instance_id, table.table_id, schema->avro_json(), KeyJson(spec.key),
                    instance.use_log, instance.use_index, instance.use_warehouse,
                    instance.log_retention_ms, instance.index_retention_ms,
                    instance.warehouse_retention_ms, table.created_ms))
          .status();
    }));
    {
      std::lock_guard lock(cache_mu_);
      schemas_[table.primary.instance_id] = schema;
    }
    return table;
  }

  Result<TableInfo> GetTable(std::string_view project, std::string_view table) override {
    std::optional<TableInfo> found;
    AQ_RETURN_IF_ERROR(Run("reading a table", kNone, [&](Connection& c) -> Status {
      found.reset();
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c, std::string(kTableSelect) +
                                                  "WHERE p.name = $1 AND t.name = $2",
                                           P(project, table)));
      if (r.rows() == 0) return Status::OK();
      AQ_ASSIGN_OR_RETURN(found, ReadTable(Row(r, 0)));
      return Status::OK();
    }));
    if (!found) return TableNotFound(project, table);
    return *std::move(found);
  }

  Result<std::vector<TableInfo>> ListTables(std::string_view project) override {
    std::vector<TableInfo> tables;
    AQ_RETURN_IF_ERROR(Run("listing tables", kRead, [&](Connection& c) -> Status {
      tables.clear();
      AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(c, project, ""));
      if (!project_id) return ProjectNotFound(project);
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c, std::string(kTableSelect) +
                                                  "WHERE t.project_id = $1 ORDER BY t.name",
                                           P(*project_id)));
      for (int row = 0; row < r.rows(); ++row) {
        AQ_ASSIGN_OR_RETURN(TableInfo table, ReadTable(Row(r, row)));
        tables.push_back(std::move(table));
      }
      return Status::OK();
    }));
    return tables;
  }

  Result<std::vector<InstanceInfo>> DeleteTable(std::string_view project,
                                                std::string_view table) override {
    std::vector<InstanceInfo> removed;
    AQ_RETURN_IF_ERROR(Run("deleting a table", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(c, project, " FOR SHARE"));
      if (!project_id) return TableNotFound(project, table);
      AQ_ASSIGN_OR_RETURN(auto table_id, FindTableId(c, *project_id, table, " FOR UPDATE"));
      if (!table_id) return TableNotFound(project, table);
      AQ_ASSIGN_OR_RETURN(removed, SelectInstances(c, "t.id = $1", P(*table_id)));
      AQ_RETURN_IF_ERROR(RecordRemovals(c, "t.id = $2", *table_id));
      return Exec(c, "DELETE FROM {s}.tables WHERE id = $1", P(*table_id)).status();
    }));
    ForgetSchemas(removed);
    return removed;
  }

  Result<InstanceInfo> GetInstance(const Uuid& instance_id) override {
    std::vector<InstanceInfo> found;
    AQ_RETURN_IF_ERROR(Run("reading an instance", kNone, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(found, SelectInstances(c, "i.id = $1", P(instance_id)));
      return Status::OK();
    }));
    if (found.empty()) return NotFound("instance {} not found", instance_id.ToString());
    return std::move(found.front());
  }

  Result<std::vector<InstanceInfo>> ListInstances() override {
    std::vector<InstanceInfo> found;
    AQ_RETURN_IF_ERROR(Run("listing instances", kNone, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(found, SelectInstances(c, "TRUE", Params()));
      return Status::OK();
    }));
    return found;
  }

  // --- Pending removals ---------------------------------------------------------------------

  Result<std::vector<InstanceInfo>> ListPendingRemovals() override {
    std::vector<InstanceInfo> removals;
    AQ_RETURN_IF_ERROR(Run("listing pending removals", kNone, [&](Connection& c) -> Status {
      removals.clear();
      AQ_ASSIGN_OR_RETURN(
          PgResult r,
          Exec(c,
               "SELECT id, project, table_name, avro_json, key_json, use_log, use_index, "
               "use_warehouse, log_retention_ms, index_retention_ms, warehouse_retention_ms "
               "FROM {s}.removed_instances ORDER BY removed_ms, id"));
      for (int row = 0; row < r.rows(); ++row) {
        AQ_ASSIGN_OR_RETURN(InstanceInfo instance, ReadInstance(Row(r, row), 0));
        removals.push_back(std::move(instance));
      }
      return Status::OK();
    }));
    return removals;
  }

  Status AddPendingRemoval(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) {
      return InvalidArgument("pending removal of instance {}: no schema",
                             instance.instance_id.ToString());
    }
    std::vector<std::string> key;
    for (const auto& field : instance.schema->key()) key.push_back(field.name);
    return Run("recording a pending removal", kWrite, [&](Connection& c) -> Status {
      return Exec(c,
                  "INSERT INTO {s}.removed_instances (id, project, table_name, avro_json, "
                  "key_json, use_log, use_index, use_warehouse, log_retention_ms, "
                  "index_retention_ms, warehouse_retention_ms, removed_ms) "
                  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                  "ON CONFLICT (id) DO NOTHING",
                  P(instance.instance_id, instance.project, instance.table,
                    instance.schema->avro_json(), KeyJson(key), instance.use_log,
                    instance.use_index, instance.use_warehouse, instance.log_retention_ms,
                    instance.index_retention_ms, instance.warehouse_retention_ms,
                    clock_->NowMillis()))
          .status();
    });
  }

  Status FinishRemoval(const Uuid& instance_id) override {
    AQ_RETURN_IF_ERROR(Run("finishing a removal", kWrite, [&](Connection& c) -> Status {
      return Exec(c, "DELETE FROM {s}.removed_instances WHERE id = $1", P(instance_id)).status();
    }));
    std::lock_guard lock(cache_mu_);
    schemas_.erase(instance_id);
    return Status::OK();
  }

  // --- Secrets ------------------------------------------------------------------------------

  Result<MintedSecret> MintSecret(std::string_view project, const SecretGrants& grants) override {
    for (const auto* list : {&grants.read, &grants.write}) {
      for (const auto& name : *list) AQ_RETURN_IF_ERROR(ValidateGrantTarget(name));
    }
    MintedSecret minted;
    AQ_RETURN_IF_ERROR(Run("minting a secret", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(c, project, " FOR SHARE"));
      if (!project_id) return ProjectNotFound(project);
      std::set<std::pair<std::optional<Uuid>, Permission>> rows;
      for (const auto& [list, permission] : {std::pair{&grants.read, Permission::kRead},
                                             std::pair{&grants.write, Permission::kWrite}}) {
        for (const auto& name : *list) {
          if (name == "*") {
            rows.emplace(std::nullopt, permission);
            continue;
          }
          AQ_ASSIGN_OR_RETURN(auto table_id, FindTableId(c, *project_id, name, " FOR SHARE"));
          if (!table_id) return TableNotFound(project, name);
          rows.emplace(*table_id, permission);
        }
      }
      if (grants.manage) rows.emplace(std::nullopt, Permission::kManage);
      if (rows.empty()) {
        return InvalidArgument(
            "a secret for project '{}' must grant something: name tables (or \"*\") in read or "
            "write, or set manage",
            project);
      }
      minted = MintedSecret{Uuid::Random(), GenerateSecret()};
      AQ_RETURN_IF_ERROR(InsertSecret(c, minted.secret_id, Hash(minted.secret),
                                      /*is_admin=*/false, project_id));
      for (const auto& [table_id, permission] : rows) {
        AQ_RETURN_IF_ERROR(Exec(c,
                                "INSERT INTO {s}.grants (secret_id, project_id, table_id, "
                                "permission) VALUES ($1, $2, $3, $4)",
                                P(minted.secret_id, *project_id, table_id,
                                  PermissionName(permission)))
                               .status());
      }
      return Status::OK();
    }));
    return minted;
  }

  Result<std::optional<std::string>> EnsureAdminSecret(
      const std::optional<std::string>& plaintext) override {
    if (plaintext && plaintext->size() < kMinAdminSecretLength) {
      return InvalidArgument("the admin secret must be at least {} characters, got {}",
                             kMinAdminSecretLength, plaintext->size());
    }
    std::optional<std::string> answer;
    AQ_RETURN_IF_ERROR(Run("setting up the admin secret", kWrite, [&](Connection& c) -> Status {
      answer.reset();
      // Processes starting together: one decides, the others then see its row.
      AQ_RETURN_IF_ERROR(Exec(c, "SELECT pg_advisory_xact_lock(hashtext($1))",
                              P("aquifer catalog admin " + schema_))
                             .status());
      if (!plaintext) {
        AQ_ASSIGN_OR_RETURN(PgResult count,
                            Exec(c, "SELECT COUNT(*) FROM {s}.secrets WHERE is_admin"));
        AQ_ASSIGN_OR_RETURN(int64_t admins, count.Int(0, 0));
        if (admins > 0) return Status::OK();
        std::string secret = GenerateSecret();
        AQ_RETURN_IF_ERROR(InsertSecret(c, Uuid::Random(), Hash(secret), /*is_admin=*/true,
                                        std::nullopt));
        answer = std::move(secret);
        return Status::OK();
      }
      const std::string hash = Hash(*plaintext);
      AQ_RETURN_IF_ERROR(Exec(c,
                              "UPDATE {s}.secrets SET hash = $1, hash_kind = 'hmac' "
                              "WHERE hash = $2 AND hash_kind = 'sha256'",
                              P(hash, LegacySecretHash(*plaintext)))
                             .status());
      AQ_ASSIGN_OR_RETURN(PgResult same,
                          Exec(c, "SELECT is_admin FROM {s}.secrets WHERE hash = $1", P(hash)));
      if (same.rows() > 0) {
        AQ_ASSIGN_OR_RETURN(bool is_admin, same.Bool(0, 0));
        if (!is_admin) return AlreadyExists("the given admin secret is already a project's secret");
      }
      AQ_RETURN_IF_ERROR(
          Exec(c, "DELETE FROM {s}.secrets WHERE is_admin AND hash <> $1", P(hash)).status());
      if (same.rows() == 0) {
        AQ_RETURN_IF_ERROR(InsertSecret(c, Uuid::Random(), hash, /*is_admin=*/true, std::nullopt));
      }
      answer = *plaintext;
      return Status::OK();
    }));
    return answer;
  }

  Result<Principal> ResolveSecret(std::string_view plaintext) override {
    const std::string hash = Hash(plaintext);
    const std::string legacy = LegacySecretHash(plaintext);
    Principal principal;
    bool found = false, upgrade = false;
    AQ_RETURN_IF_ERROR(Run("resolving a secret", kRead, [&](Connection& c) -> Status {
      principal = Principal{};
      found = upgrade = false;
      AQ_ASSIGN_OR_RETURN(
          PgResult r,
          Exec(c,
               "SELECT id, is_admin, hash_kind FROM {s}.secrets "
               "WHERE (hash = $1 AND hash_kind = 'hmac') OR (hash = $2 AND hash_kind = 'sha256')",
               P(hash, legacy)));
      if (r.rows() == 0) return Status::OK();
      found = true;
      Row row(r, 0);
      AQ_ASSIGN_OR_RETURN(principal.secret_id, row.Id(0));
      AQ_ASSIGN_OR_RETURN(principal.is_admin, row.Bool(1));
      upgrade = row.Text(2) != "hmac";
      AQ_ASSIGN_OR_RETURN(principal.grants, LoadGrants(c, principal.secret_id));
      return Status::OK();
    }));
    if (!found) return Unauthenticated("the secret is not valid (unknown or revoked)");
    if (!upgrade) return principal;
    // Stored the pre-HMAC way (only a database copied from an old SQLite
    // catalog has such rows): now that the plaintext proved it, store its HMAC.
    AQ_RETURN_IF_ERROR(Run("rewriting a secret's hash", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult updated,
                          Exec(c,
                               "UPDATE {s}.secrets SET hash = $1, hash_kind = 'hmac' "
                               "WHERE id = $2 AND hash_kind = 'sha256'",
                               P(hash, principal.secret_id)));
      if (updated.AffectedRows() == 0) {
        AQ_ASSIGN_OR_RETURN(PgResult still, Exec(c,
                                                 "SELECT is_admin FROM {s}.secrets "
                                                 "WHERE id = $1 AND hash = $2",
                                                 P(principal.secret_id, hash)));
        if (still.rows() == 0) return Unauthenticated("the secret is not valid (unknown or revoked)");
      }
      AQ_ASSIGN_OR_RETURN(principal.grants, LoadGrants(c, principal.secret_id));
      return Status::OK();
    }));
    AQ_LOG(Info, "catalog: secret {} was stored as plain SHA-256; now stored as HMAC-SHA256",
           principal.secret_id.ToString());
    return principal;
  }

  Result<std::vector<SecretInfo>> ListSecrets(std::string_view project) override {
    std::vector<SecretInfo> secrets;
    AQ_RETURN_IF_ERROR(Run("listing secrets", kRead, [&](Connection& c) -> Status {
      secrets.clear();
      AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(c, project, ""));
      if (!project_id) return ProjectNotFound(project);
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c,
                                           "SELECT id, created_ms FROM {s}.secrets "
                                           "WHERE project_id = $1 ORDER BY created_ms, id",
                                           P(*project_id)));
      for (int row = 0; row < r.rows(); ++row) {
        SecretInfo info;
        AQ_ASSIGN_OR_RETURN(info.secret_id, Row(r, row).Id(0));
        AQ_ASSIGN_OR_RETURN(info.created_ms, r.Int(row, 1));
        info.project_id = *project_id;
        AQ_ASSIGN_OR_RETURN(info.grants, LoadGrants(c, info.secret_id));
        secrets.push_back(std::move(info));
      }
      return Status::OK();
    }));
    return secrets;
  }

  Status DeleteSecret(const Uuid& secret_id) override {
    return Run("deleting a secret", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c, "DELETE FROM {s}.secrets WHERE id = $1", P(secret_id)));
      if (r.AffectedRows() == 0) return NotFound("secret {} not found", secret_id.ToString());
      return Status::OK();
    });
  }

  Status Authorize(const Principal& principal, std::string_view project, std::string_view table,
                   Permission permission) override {
    std::optional<Uuid> project_id, table_id;
    AQ_RETURN_IF_ERROR(Run("authorizing", kNone, [&](Connection& c) -> Status {
      project_id.reset();
      table_id.reset();
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c,
                               "SELECT p.id, t.id FROM {s}.projects p LEFT JOIN {s}.tables t "
                               "ON t.project_id = p.id AND t.name = $1 WHERE p.name = $2",
                               P(table, project)));
      if (r.rows() == 0) return Status::OK();
      AQ_ASSIGN_OR_RETURN(project_id, Row(r, 0).OptId(0));
      AQ_ASSIGN_OR_RETURN(table_id, Row(r, 0).OptId(1));
      return Status::OK();
    }));
    return AuthorizeTarget(principal, project, table, project_id, table_id, permission);
  }

  // --- Jobs ---------------------------------------------------------------------------------

  Result<JobInfo> CreateJob(const NewJob& job) override {
    if (job.sql.empty()) return InvalidArgument("a SQL job needs a query");
    JobInfo info;
    info.job_id = Uuid::Random();
    info.secret_id = job.secret_id;
    info.tables = job.tables;
    info.sql = job.sql;
    info.created_ms = info.updated_ms = clock_->NowMillis();
    std::optional<std::string> result;
    if (job.finished) {
      info.status = job.finished->status;
      info.error = job.finished->error;
      info.bytes_scanned = job.finished->bytes_scanned;
      info.rows = job.finished->rows;
      if (info.status == JobStatus::kDone) result = job.finished->result;
      info.result_in_catalog = result.has_value();
    }
    AQ_RETURN_IF_ERROR(Run("creating a job", kWrite, [&](Connection& c) -> Status {
      if (!job.sync) {
        // Nobody needs this commit on stable storage (NewJob::sync).
        AQ_RETURN_IF_ERROR(Exec(c, "SET LOCAL synchronous_commit = off", P()).status());
      }
      if (job.max_unfinished > 0 && !job.finished) {
        // One submission per secret at a time counts and inserts (a
        // transaction-scoped lock: released at commit or rollback).
        AQ_RETURN_IF_ERROR(Exec(c, "SELECT pg_advisory_xact_lock(" + std::to_string(kJobsLockClass) +
                                       ", hashtext($1))",
                                P(job.secret_id.ToString()))
                               .status());
        AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c,
                                             "SELECT COUNT(*) FROM {s}.jobs WHERE secret_id = $1 "
                                             "AND status IN ('pending', 'running')",
                                             P(job.secret_id)));
        AQ_ASSIGN_OR_RETURN(int64_t busy, r.Int(0, 0));
        if (busy >= job.max_unfinished) return TooManyUnfinishedJobs(busy);
      }
      AQ_RETURN_IF_ERROR(Exec(c,
                              "INSERT INTO {s}.jobs (id, secret_id, sql_text, status, error, "
                              "bytes_scanned, row_count, created_ms, updated_ms, result_text) "
                              "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                              P(info.job_id, info.secret_id, info.sql,
                                driver::JobStatusName(info.status), info.error,
                                info.bytes_scanned, info.rows, info.created_ms, info.updated_ms,
                                result))
                             .status());
      for (size_t position = 0; position < info.tables.size(); ++position) {
        const JobTable& table = info.tables[position];
        AQ_RETURN_IF_ERROR(Exec(c,
                                "INSERT INTO {s}.job_tables (job_id, position, project, "
                                "table_name, instance_id) VALUES ($1, $2, $3, $4, $5)",
                                P(info.job_id, static_cast<int64_t>(position), table.project,
                                  table.table, table.instance_id))
                               .status());
      }
      return Status::OK();
    }));
    return info;
  }

  Status UpdateJob(const Uuid& job_id, const JobUpdate& update) override {
    if (update.bytes_scanned < 0 || update.rows < 0) {
      return InvalidArgument("job {}: bytes_scanned and rows must be >= 0", job_id.ToString());
    }
    return Run("updating a job", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c, "SELECT status FROM {s}.jobs WHERE id = $1 FOR UPDATE",
                                           P(job_id)));
      if (r.rows() == 0) return NotFound("job {} not found", job_id.ToString());
      AQ_ASSIGN_OR_RETURN(JobStatus current, ParseJobStatus(r.Bytes(0, 0)));
      if (IsFinished(current)) {
        return FailedPrecondition("job {} is already {}; a finished job does not change",
                                  job_id.ToString(), driver::JobStatusName(current));
      }
      if (current == JobStatus::kRunning && update.status == JobStatus::kPending) {
        return FailedPrecondition("job {} is running; it cannot go back to pending",
                                  job_id.ToString());
      }
      // running -> running is a heartbeat: it refreshes updated_ms.
      return Exec(c,
                  "UPDATE {s}.jobs SET status = $1, error = $2, bytes_scanned = $3, "
                  "row_count = $4, updated_ms = $5 WHERE id = $6",
                  P(driver::JobStatusName(update.status), update.error, update.bytes_scanned,
                    update.rows, clock_->NowMillis(), job_id))
          .status();
    });
  }

  Result<int64_t> PurgeFinishedJobs(int64_t finished_before_ms) override {
    int64_t purged = 0;
    AQ_RETURN_IF_ERROR(Run("purging finished jobs", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c,
                                           "DELETE FROM {s}.jobs WHERE status IN ('done', 'failed') "
                                           "AND updated_ms < $1",
                                           P(finished_before_ms)));
      purged = r.AffectedRows();
      return Status::OK();
    }));
    return purged;
  }

  Result<int64_t> FailStaleJobs(int64_t updated_before_ms, std::string_view error) override {
    int64_t failed = 0;
    AQ_RETURN_IF_ERROR(Run("failing stale jobs", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c,
                               "UPDATE {s}.jobs SET status = $1, error = $2, updated_ms = $3 "
                               "WHERE status IN ('pending', 'running') AND updated_ms < $4",
                               P(driver::JobStatusName(JobStatus::kFailed), error,
                                 clock_->NowMillis(), updated_before_ms)));
      failed = r.AffectedRows();
      return Status::OK();
    }));
    return failed;
  }

  Result<JobInfo> GetJob(const Uuid& job_id) override {
    JobInfo info;
    bool found = false;
    AQ_RETURN_IF_ERROR(Run("reading a job", kRead, [&](Connection& c) -> Status {
      info = JobInfo{};
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c,
                               "SELECT secret_id, sql_text, status, error, bytes_scanned, "
                               "row_count, created_ms, updated_ms, result_text IS NOT NULL "
                               "FROM {s}.jobs WHERE id = $1",
                               P(job_id)));
      found = r.rows() > 0;
      if (!found) return Status::OK();
      Row row(r, 0);
      info.job_id = job_id;
      AQ_ASSIGN_OR_RETURN(info.secret_id, row.Id(0));
      info.sql = row.Text(1);
      AQ_ASSIGN_OR_RETURN(info.status, ParseJobStatus(row.Text(2)));
      info.error = row.Text(3);
      AQ_ASSIGN_OR_RETURN(info.bytes_scanned, row.Int(4));
      AQ_ASSIGN_OR_RETURN(info.rows, row.Int(5));
      AQ_ASSIGN_OR_RETURN(info.created_ms, row.Int(6));
      AQ_ASSIGN_OR_RETURN(info.updated_ms, row.Int(7));
      AQ_ASSIGN_OR_RETURN(info.result_in_catalog, row.Bool(8));
      AQ_ASSIGN_OR_RETURN(PgResult tables,
                          Exec(c,
                               "SELECT project, table_name, instance_id FROM {s}.job_tables "
                               "WHERE job_id = $1 ORDER BY position",
                               P(job_id)));
      for (int idx = 0; idx < tables.rows(); ++idx) {
        JobTable table;
        table.project = Row(tables, idx).Text(0);
        table.table = Row(tables, idx).Text(1);
        AQ_ASSIGN_OR_RETURN(table.instance_id, Row(tables, idx).Id(2));
        info.tables.push_back(std::move(table));
      }
      return Status::OK();
    }));
    if (!found) return NotFound("job {} not found", job_id.ToString());
    return info;
  }

  Result<std::optional<std::string>> GetJobResult(const Uuid& job_id) override {
    std::optional<std::string> text;
    bool found = false;
    AQ_RETURN_IF_ERROR(Run("reading a job's rows", kNone, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c,
                                           "SELECT result_text FROM {s}.jobs WHERE id = $1 AND "
                                           "result_text IS NOT NULL",
                                           P(job_id)));
      found = r.rows() > 0;
      if (found) {
        std::string stored = Row(r, 0).Text(0);
        text = stored.empty() ? std::nullopt : std::optional<std::string>(std::move(stored));
      }
      return Status::OK();
    }));
    if (!found) return NotFound("job {} keeps no rows in the catalog", job_id.ToString());
    return text;
  }

  Result<int64_t> ExpireJobResults(int64_t finished_before_ms) override {
    int64_t expired = 0;
    AQ_RETURN_IF_ERROR(Run("expiring job rows", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c,
                                           "UPDATE {s}.jobs SET result_text = '' WHERE result_text "
                                           "IS NOT NULL AND result_text <> '' AND updated_ms < $1",
                                           P(finished_before_ms)));
      expired = r.AffectedRows();
      return Status::OK();
    }));
    return expired;
  }

  Status CanReadJob(const Principal& principal, const JobInfo& job) override {
    if (principal.is_admin) return Status::OK();
    Status hidden = NotFound("job {} not found", job.job_id.ToString());
    if (principal.secret_id != job.secret_id) return hidden;
    for (const JobTable& table : job.tables) {
      Status status = Authorize(principal, table.project, table.table, Permission::kRead);
      if (status.code() == StatusCode::kNotFound ||
          status.code() == StatusCode::kPermissionDenied) {
        return hidden;
      }
      AQ_RETURN_IF_ERROR(status);
    }
    return Status::OK();
  }

  Result<int64_t> CountUnfinishedJobs(const Uuid& secret_id) override {
    int64_t count = 0;
    AQ_RETURN_IF_ERROR(Run("counting jobs", kNone, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c,
                                           "SELECT COUNT(*) FROM {s}.jobs WHERE secret_id = $1 "
                                           "AND status IN ('pending', 'running')",
                                           P(secret_id)));
      AQ_ASSIGN_OR_RETURN(count, r.Int(0, 0));
      return Status::OK();
    }));
    return count;
  }

  // --- Idempotency keys ---------------------------------------------------------------------

  Result<IdempotencyClaim> ClaimIdempotencyKey(const Uuid& secret_id, std::string_view key,
                                               std::string_view proposed_write_id,
                                               std::string_view owner, int64_t lease_ms) override {
    if (key.empty() || key.size() > kMaxIdempotencyKeyLength) {
      return InvalidArgument("Idempotency-Key must be 1 to {} bytes, got {}",
                             kMaxIdempotencyKeyLength, key.size());
    }
    if (proposed_write_id.empty()) return InvalidArgument("the proposed write id is empty");
    if (lease_ms <= 0) return InvalidArgument("the claim lease must be positive, got {} ms", lease_ms);
    IdempotencyClaim claim;
    AQ_RETURN_IF_ERROR(Run("claiming an Idempotency-Key", kWrite, [&](Connection& c) -> Status {
      const int64_t now = clock_->NowMillis();
      claim = IdempotencyClaim{IdempotencyClaim::State::kClaimed, std::string(proposed_write_id), 0};
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c,
                               "SELECT write_id, created_ms, state, owner, lease_expires_ms "
                               "FROM {s}.idempotency_keys WHERE secret_id = $1 AND idem_key = $2",
                               P(secret_id, Bytes{key})));
      if (r.rows() > 0) {
        Row row(r, 0);
        const std::string state = row.Text(2);
        const std::string old_write_id = row.Text(0);
        const std::string old_owner = row.Text(3);
        AQ_ASSIGN_OR_RETURN(int64_t created_ms, row.Int(1));
        AQ_ASSIGN_OR_RETURN(int64_t lease_expires_ms, row.Int(4));
        if (state == "committed") {
          if (now - created_ms < kIdempotencyKeyTtlMs) {
            claim = IdempotencyClaim{IdempotencyClaim::State::kCommitted, old_write_id, 0};
            return Status::OK();
          }
        } else if (state == "pending") {
          if (lease_expires_ms > now) {
            claim = IdempotencyClaim{IdempotencyClaim::State::kPending, old_write_id,
                                     lease_expires_ms};
            return Status::OK();
          }
        } else {
          return Corruption("catalog: idempotency claim has unknown state '{}'", state);
        }
        // Takeover: compare-and-set on the row read above. Another process
        // that took it over first changed owner and write id, so this updates
        // nothing and the transaction runs again (and answers kPending).
        AQ_ASSIGN_OR_RETURN(
            PgResult updated,
            Exec(c,
                 "UPDATE {s}.idempotency_keys SET write_id = $1, created_ms = $2, "
                 "state = 'pending', owner = $3, lease_expires_ms = $4 "
                 "WHERE secret_id = $5 AND idem_key = $6 AND owner = $7 AND write_id = $8",
                 P(proposed_write_id, now, owner, now + lease_ms, secret_id, Bytes{key},
                   old_owner, old_write_id)));
        if (updated.AffectedRows() != 1) return Conflict();
        return Status::OK();
      }
      auto inserted = Exec(c,
                           "INSERT INTO {s}.idempotency_keys (secret_id, idem_key, write_id, "
                           "created_ms, state, owner, lease_expires_ms) "
                           "VALUES ($1, $2, $3, $4, 'pending', $5, $6) "
                           "ON CONFLICT (secret_id, idem_key) DO NOTHING",
                           P(secret_id, Bytes{key}, proposed_write_id, now, owner, now + lease_ms));
      if (!inserted.ok() && HasSqlState(inserted.status(), "23503")) {
        return NotFound("secret {} not found", secret_id.ToString());
      }
      AQ_RETURN_IF_ERROR(inserted.status());
      // Another process inserted the key since our read: read it again.
      if (inserted->AffectedRows() != 1) return Conflict();
      return Status::OK();
    }));
    return claim;
  }

  Status CommitIdempotencyKey(const Uuid& secret_id, std::string_view key,
                              std::string_view write_id) override {
    return Run("committing an Idempotency-Key", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c,
                               "UPDATE {s}.idempotency_keys SET state = 'committed', "
                               "lease_expires_ms = 0 "
                               "WHERE secret_id = $1 AND idem_key = $2 AND write_id = $3",
                               P(secret_id, Bytes{key}, write_id)));
      if (r.AffectedRows() != 1) {
        return Aborted("the Idempotency-Key claim of write {} was lost (its lease ran out and "
                       "another request took it over)",
                       write_id);
      }
      return Status::OK();
    });
  }

  Status ReleaseIdempotencyKey(const Uuid& secret_id, std::string_view key,
                               std::string_view write_id) override {
    return Run("releasing an Idempotency-Key", kWrite, [&](Connection& c) -> Status {
      return Exec(c,
                  "DELETE FROM {s}.idempotency_keys WHERE secret_id = $1 AND idem_key = $2 AND "
                  "write_id = $3 AND state = 'pending'",
                  P(secret_id, Bytes{key}, write_id))
          .status();
    });
  }

  Result<int64_t> PurgeIdempotencyKeys() override {
    const int64_t now = clock_->NowMillis();
    const int64_t cutoff = now - kIdempotencyKeyTtlMs;
    int64_t purged = 0;
    AQ_RETURN_IF_ERROR(Run("purging Idempotency-Keys", kWrite, [&](Connection& c) -> Status {
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c,
                               "DELETE FROM {s}.idempotency_keys WHERE (state = 'committed' AND "
                               "created_ms <= $1) OR (state = 'pending' AND lease_expires_ms <= $2)",
                               P(cutoff, now)));
      purged = r.AffectedRows();
      return Status::OK();
    }));
    return purged;
  }

 private:
  enum TxnKind { kNone, kRead, kWrite };

  // The SQL with {s} replaced by the quoted schema.
  std::string Sql(std::string_view text) const {
    std::string out;
    out.reserve(text.size() + 64);
    size_t pos = 0;
    while (true) {
      size_t at = text.find("{s}", pos);
      out.append(text.substr(pos, at == std::string_view::npos ? std::string_view::npos : at - pos));
      if (at == std::string_view::npos) break;
      out.append(quoted_schema_);
      pos = at + 3;
    }
    return out;
  }

  Result<PgResult> Exec(Connection& c, std::string_view sql, const Params& params = Params()) {
    return c.Exec(Sql(sql), params);
  }

  // Runs `body` on a pooled connection: in a read-only REPEATABLE READ
  // transaction (kRead), a read-write one (kWrite) or none (kNone: one
  // statement). A lost race runs it again (up to max_attempts_); a connection
  // that turns out dead (the server restarted since it was pooled) is dropped
  // and the body runs again on a new one, unless the COMMIT had been sent.
  // `max_attempts` (0: the catalog's) bounds the runs after lost races.
  template <typename Body>
  Status Run(std::string_view what, TxnKind kind, Body&& body, int max_attempts = 0) {
    const int attempts = max_attempts > 0 ? max_attempts : max_attempts_;
    int broken = 0;
    for (int attempt = 1;; ++attempt) {
      auto conn = pool_.Acquire();
      if (!conn.ok()) return Unreachable(what, conn.status());
      Connection& c = **conn;
      bool commit_sent = false;
      Status status = [&]() -> Status {
        if (kind == kRead) {
          AQ_RETURN_IF_ERROR(c.ExecScript("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
        } else if (kind == kWrite) {
          AQ_RETURN_IF_ERROR(c.Begin());
        }
        AQ_RETURN_IF_ERROR(body(c));
        if (kind == kNone) return Status::OK();
        commit_sent = true;
        return c.Commit();
      }();
      if (status.ok()) return status;
      c.Rollback();
      if (c.broken()) {
        if (commit_sent && kind == kWrite) {
          return Unavailable(
              "catalog: {}: the connection to Postgres was lost while committing; the change "
              "may or may not have been applied: {}",
              what, status.message());
        }
        if (++broken <= pool_size_ + 1) {
          --attempt;
          continue;
        }
        return Unreachable(what, status);
      }
      if (!IsConflict(status)) return status;
      if (attempt >= attempts) {
        if (IsSerializationFailure(status) || status.message() == kConflict) {
          return Unavailable("catalog: {}: still conflicting with concurrent changes after {} "
                             "attempts; retry: {}",
                             what, attempt, status.message());
        }
        return status;
      }
      // Let the winner finish: a short, growing, jittered pause.
      std::this_thread::sleep_for(std::chrono::microseconds(
          200 * attempt + static_cast<int64_t>(Uuid::Random().AsBytes()[0] & 0x7f) * 8));
    }
  }

  Status Unreachable(std::string_view what, const Status& cause) const {
    return Unavailable("catalog: {}: the Postgres catalog (schema {}) is unreachable: {}", what,
                       schema_, cause.message());
  }

  static Result<std::string> RandomBytes(size_t size) {
    std::string bytes(size, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(size)) != 1) {
      return Internal("the CSPRNG (OpenSSL RAND_bytes) failed");
    }
    return bytes;
  }

  // Not retried after a conflict: under the lock there is none, so one would
  // be a bug (a step that is not safe to run twice) to report, not to hide.
  Status Migrate() {
    return Run("migrating the schema", kWrite, [&](Connection& c) -> Status {
      // Everyone starting at once queues here; the first applies, the rest
      // then find the version current.
      AQ_RETURN_IF_ERROR(Exec(c, "SELECT pg_advisory_xact_lock(hashtext($1))",
                              P("aquifer catalog migrate " + schema_))
                             .status());
      AQ_RETURN_IF_ERROR(c.ExecScript(Sql("CREATE SCHEMA IF NOT EXISTS {s}")));
      AQ_RETURN_IF_ERROR(c.ExecScript(
          Sql("CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer PRIMARY KEY, "
              "description text NOT NULL, applied_ms bigint NOT NULL)")));
      AQ_ASSIGN_OR_RETURN(PgResult r,
                          Exec(c, "SELECT COALESCE(MAX(version), 0)::bigint FROM {s}.schema_version"));
      AQ_ASSIGN_OR_RETURN(int64_t current, r.Int(0, 0));
      if (current > kSchemaVersion) {
        return FailedPrecondition(
            "catalog: the database is at schema version {}, newer than this binary's {}; "
            "upgrade Aquifer",
            current, kSchemaVersion);
      }
      for (const Migration& migration : kMigrations) {
        if (migration.version <= current) continue;
        Status status = c.ExecScript(Sql(migration.sql));
        if (!status.ok()) {
          return status.WithContext(
              fmt::format("migration {} ({})", migration.version, migration.description));
        }
        AQ_RETURN_IF_ERROR(Exec(c,
                                "INSERT INTO {s}.schema_version (version, description, "
                                "applied_ms) VALUES ($1::integer, $2, $3)",
                                P(static_cast<int64_t>(migration.version), migration.description,
                                  clock_->NowMillis()))
                               .status());
      }
      return Status::OK();
    }, /*max_attempts=*/1);
  }

  std::string Hash(std::string_view plaintext) const { return HashSecret(secret_key_, plaintext); }

  Status InsertSecret(Connection& c, const Uuid& id, const std::string& hash, bool is_admin,
                      const std::optional<Uuid>& project_id) {
    return Exec(c,
                "INSERT INTO {s}.secrets (id, hash, is_admin, project_id, created_ms, hash_kind) "
                "VALUES ($1, $2, $3, $4, $5, 'hmac')",
                P(id, hash, is_admin, project_id, clock_->NowMillis()))
        .status();
  }

  // Copies the instances matching `where` (over i, t, p; its id parameter is
  // $2, $1 being the time) into removed_instances.
  Status RecordRemovals(Connection& c, const std::string& where, const Uuid& id) {
    return Exec(c,
                fmt::format("INSERT INTO {{s}}.removed_instances (id, project, table_name, "
                            "avro_json, key_json, use_log, use_index, use_warehouse, "
                            "log_retention_ms, index_retention_ms, warehouse_retention_ms, "
                            "removed_ms) SELECT {}, $1 FROM {{s}}.instances i "
                            "JOIN {{s}}.tables t ON t.id = i.table_id "
                            "JOIN {{s}}.projects p ON p.id = t.project_id WHERE {} "
                            "ON CONFLICT (id) DO NOTHING",
                            kInstanceColumns, where),
                P(clock_->NowMillis(), id))
        .status();
  }

  // `lock` is "", " FOR SHARE" or " FOR UPDATE".
  Result<std::optional<Uuid>> FindProjectId(Connection& c, std::string_view name,
                                            std::string_view lock) {
    AQ_ASSIGN_OR_RETURN(PgResult r, Exec(c, fmt::format("SELECT id FROM {{s}}.projects "
                                                        "WHERE name = $1{}",
                                                        lock),
                                         P(name)));
    if (r.rows() == 0) return std::optional<Uuid>();
    return Row(r, 0).OptId(0);
  }

  Result<std::optional<Uuid>> FindTableId(Connection& c, const Uuid& project_id,
                                          std::string_view name, std::string_view lock) {
    AQ_ASSIGN_OR_RETURN(PgResult r,
                        Exec(c, fmt::format("SELECT id FROM {{s}}.tables "
                                            "WHERE project_id = $1 AND name = $2{}",
                                            lock),
                             P(project_id, name)));
    if (r.rows() == 0) return std::optional<Uuid>();
    return Row(r, 0).OptId(0);
  }

  Result<std::vector<ProjectInfo>> SelectProjects(Connection& c,
                                                  std::optional<std::string_view> name) {
    static const std::string kSelect =
        "SELECT id, name, created_ms, read_quota_bytes, write_quota_bytes, scan_quota_bytes "
        "FROM {s}.projects ";
    AQ_ASSIGN_OR_RETURN(PgResult r, name ? Exec(c, kSelect + "WHERE name = $1", P(*name))
                                         : Exec(c, kSelect + "ORDER BY name"));
    std::vector<ProjectInfo> projects;
    for (int idx = 0; idx < r.rows(); ++idx) {
      Row row(r, idx);
      ProjectInfo project;
      AQ_ASSIGN_OR_RETURN(project.project_id, row.Id(0));
      project.name = row.Text(1);
      AQ_ASSIGN_OR_RETURN(project.created_ms, row.Int(2));
      project.quotas.read_bytes = row.OptInt(3);
      project.quotas.write_bytes = row.OptInt(4);
      project.quotas.scan_bytes = row.OptInt(5);
      projects.push_back(std::move(project));
    }
    return projects;
  }

  Result<std::vector<InstanceInfo>> SelectInstances(Connection& c, const std::string& where,
                                                    const Params& params) {
    AQ_ASSIGN_OR_RETURN(
        PgResult r,
        Exec(c,
             fmt::format("SELECT {} FROM {{s}}.instances i JOIN {{s}}.tables t ON t.id = i.table_id "
                         "JOIN {{s}}.projects p ON p.id = t.project_id WHERE {} "
                         "ORDER BY t.name, i.created_ms, i.id",
                         kInstanceColumns, where),
             params));
    std::vector<InstanceInfo> instances;
    for (int idx = 0; idx < r.rows(); ++idx) {
      AQ_ASSIGN_OR_RETURN(InstanceInfo instance, ReadInstance(Row(r, idx), 0));
      instances.push_back(std::move(instance));
    }
    return instances;
  }

  // Reads kInstanceColumns from column `first`; the schema comes from the
  // cache, parsed on first sight.
  Result<InstanceInfo> ReadInstance(const Row& row, int first) {
    InstanceInfo instance;
    AQ_ASSIGN_OR_RETURN(instance.instance_id, row.Id(first));
    instance.project = row.Text(first + 1);
    instance.table = row.Text(first + 2);
    AQ_ASSIGN_OR_RETURN(instance.use_log, row.Bool(first + 5));
    AQ_ASSIGN_OR_RETURN(instance.use_index, row.Bool(first + 6));
    AQ_ASSIGN_OR_RETURN(instance.use_warehouse, row.Bool(first + 7));
    AQ_ASSIGN_OR_RETURN(instance.log_retention_ms, row.Int(first + 8));
    AQ_ASSIGN_OR_RETURN(instance.index_retention_ms, row.Int(first + 9));
    AQ_ASSIGN_OR_RETURN(instance.warehouse_retention_ms, row.Int(first + 10));
    {
      std::lock_guard lock(cache_mu_);
      if (auto it = schemas_.find(instance.instance_id); it != schemas_.end()) {
        instance.schema = it->second;
        return instance;
      }
    }
    AQ_ASSIGN_OR_RETURN(auto key, ParseKeyJson(row.Text(first + 4)));
    auto parsed = Schema::Parse(row.Text(first + 3), key);
    if (!parsed.ok()) {
      return Corruption("catalog: stored schema of instance {} ({}.{}) does not parse: {}",
                        instance.instance_id.ToString(), instance.project, instance.table,
                        parsed.status().message());
    }
    std::lock_guard lock(cache_mu_);
    // Another thread may have parsed it meanwhile: keep the first, so every
    // caller shares one parse.
    instance.schema = schemas_.emplace(instance.instance_id, *parsed).first->second;
    return instance;
  }

  Result<TableInfo> ReadTable(const Row& row) {
    TableInfo table;
    AQ_ASSIGN_OR_RETURN(table.table_id, row.Id(0));
    AQ_ASSIGN_OR_RETURN(table.project_id, row.Id(1));
    table.project = row.Text(2);
    table.name = row.Text(3);
    AQ_ASSIGN_OR_RETURN(table.created_ms, row.Int(4));
    AQ_ASSIGN_OR_RETURN(table.primary, ReadInstance(row, 5));
    return table;
  }

  void ForgetSchemas(const std::vector<InstanceInfo>& instances) {
    std::lock_guard lock(cache_mu_);
    for (const InstanceInfo& instance : instances) schemas_.erase(instance.instance_id);
  }

  Result<std::vector<Grant>> LoadGrants(Connection& c, const Uuid& secret_id) {
    AQ_ASSIGN_OR_RETURN(
        PgResult r,
        Exec(c,
             "SELECT g.project_id, p.name, g.table_id, t.name, g.permission FROM {s}.grants g "
             "JOIN {s}.projects p ON p.id = g.project_id "
             "LEFT JOIN {s}.tables t ON t.id = g.table_id "
             "WHERE g.secret_id = $1 ORDER BY p.name, t.name, g.permission",
             P(secret_id)));
    std::vector<Grant> grants;
    for (int idx = 0; idx < r.rows(); ++idx) {
      Row row(r, idx);
      Grant grant;
      AQ_ASSIGN_OR_RETURN(grant.project_id, row.Id(0));
      grant.project = row.Text(1);
      AQ_ASSIGN_OR_RETURN(grant.table_id, row.OptId(2));
      grant.table = grant.table_id ? row.Text(3) : "*";
      auto permission = ParsePermission(row.Text(4));
      if (!permission.ok()) return Corruption("catalog: {}", permission.status().message());
      grant.permission = *permission;
      grants.push_back(std::move(grant));
    }
    return grants;
  }

  pg::Pool pool_;
  const int pool_size_;
  const std::string schema_;
  const std::string quoted_schema_;
  Clock* const clock_;
  const int max_attempts_;
  std::string secret_key_;  // set before sharing (Init)
  std::mutex cache_mu_;
  std::unordered_map<Uuid, SchemaPtr, UuidHash> schemas_;  // guarded by cache_mu_
};

}  // namespace

bool IsPostgresCatalogUrl(std::string_view url) {
  return url.starts_with("postgres://") || url.starts_with("postgresql://");
}

int PostgresCatalogSchemaVersion() { return kSchemaVersion; }

Result<std::unique_ptr<Catalog>> OpenPostgresCatalog(const std::string& url,
                                                     const PostgresCatalogOptions& options) {
  if (options.clock == nullptr) return InvalidArgument("catalog: options.clock is null");
  AQ_ASSIGN_OR_RETURN(CatalogUrl parsed, ParseCatalogUrl(url));
  std::string schema = parsed.schema.value_or(options.schema);
  AQ_RETURN_IF_ERROR(ValidateSchemaName(schema));
  auto catalog = std::make_unique<PostgresCatalog>(parsed, schema, options);
  Status status = catalog->Init();
  if (!status.ok()) {
    return status.WithContext(fmt::format("opening the Postgres catalog (schema {})", schema));
  }
  return std::unique_ptr<Catalog>(std::move(catalog));
}

Result<std::string> PostgresSharedKey(Catalog& catalog, std::string_view name) {
  auto* postgres = dynamic_cast<PostgresCatalog*>(&catalog);
  if (postgres == nullptr) return InvalidArgument("catalog: not a Postgres catalog");
  return postgres->SharedKey(name);
}

}  // namespace aquifer::engine
