#include "aquifer/engine/catalog.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>

#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/engine/checksum_vfs.h"
#include "aquifer/schema/schema.h"

// The SQLite catalog. One connection, serialized by one mutex: catalog calls
// are short (a few indexed statements each) and SQLite runs one writer at a
// time anyway, so a connection pool would add little but locking subtleties.
// Statements are prepared once and cached per SQL text. Several processes
// may share a file: WAL lets readers run beside the writer, every mutation
// takes the write lock up front (BEGIN IMMEDIATE) and waits up to the busy
// timeout for it.
//
// The SQL sticks to what Postgres also accepts (TEXT ids in canonical UUID
// form, BIGINT times, no AUTOINCREMENT, no INSERT OR REPLACE) so the Postgres
// catalog can share the migrations with few changes.

namespace aquifer::engine {
namespace {

using driver::InstanceInfo;
using driver::JobStatus;
using schema::Schema;
using schema::SchemaPtr;

// --- Migrations ------------------------------------------------------------------------------
//
// Append only: a released step never changes, a schema change is a new step.
// Each step runs inside the opening transaction, after the steps before it.

struct Migration {
  int version;
  const char* description;
  const char* sql;
};

constexpr Migration kMigrations[] = {
    {1, "projects, tables, instances, secrets, grants, jobs, idempotency keys", R"sql(
CREATE TABLE projects (
  id                 TEXT PRIMARY KEY,
  name               TEXT NOT NULL UNIQUE,
  created_ms         BIGINT NOT NULL,
  read_quota_bytes   BIGINT,
  write_quota_bytes  BIGINT,
  scan_quota_bytes   BIGINT
);
CREATE TABLE tables (
  id                   TEXT PRIMARY KEY,
  project_id           TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  name                 TEXT NOT NULL,
  primary_instance_id  TEXT NOT NULL,
  created_ms           BIGINT NOT NULL,
  UNIQUE (project_id, name)
);
CREATE TABLE instances (
  id                      TEXT PRIMARY KEY,
  table_id                TEXT NOT NULL REFERENCES tables(id) ON DELETE CASCADE,
  avro_json               TEXT NOT NULL,
  key_json                TEXT NOT NULL,
  use_log                 INTEGER NOT NULL,
  use_index               INTEGER NOT NULL,
  use_warehouse           INTEGER NOT NULL,
  log_retention_ms        BIGINT NOT NULL,
  index_retention_ms      BIGINT NOT NULL,
  warehouse_retention_ms  BIGINT NOT NULL,
  created_ms              BIGINT NOT NULL
);
CREATE INDEX instances_by_table ON instances (table_id);
CREATE TABLE secrets (
  id          TEXT PRIMARY KEY,
  hash        TEXT NOT NULL UNIQUE,
  is_admin    INTEGER NOT NULL,
  project_id  TEXT REFERENCES projects(id) ON DELETE CASCADE,
  created_ms  BIGINT NOT NULL
);
CREATE INDEX secrets_by_project ON secrets (project_id);
CREATE TABLE grants (
  secret_id   TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
  project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  table_id    TEXT REFERENCES tables(id) ON DELETE CASCADE,
  permission  TEXT NOT NULL
);
CREATE INDEX grants_by_secret ON grants (secret_id);
CREATE INDEX grants_by_project ON grants (project_id);
CREATE INDEX grants_by_table ON grants (table_id);
CREATE TABLE jobs (
  id             TEXT PRIMARY KEY,
  secret_id      TEXT NOT NULL,
  sql_text       TEXT NOT NULL,
  status         TEXT NOT NULL,
  error          TEXT NOT NULL,
  bytes_scanned  BIGINT NOT NULL,
  row_count      BIGINT NOT NULL,
  created_ms     BIGINT NOT NULL,
  updated_ms     BIGINT NOT NULL
);
CREATE TABLE job_tables (
  job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  position     INTEGER NOT NULL,
  project      TEXT NOT NULL,
  table_name   TEXT NOT NULL,
  instance_id  TEXT NOT NULL,
  PRIMARY KEY (job_id, position)
);
CREATE TABLE idempotency_keys (
  secret_id   TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
  idem_key    TEXT NOT NULL,
  write_id    TEXT NOT NULL,
  created_ms  BIGINT NOT NULL,
  PRIMARY KEY (secret_id, idem_key)
);
CREATE INDEX idempotency_keys_by_created ON idempotency_keys (created_ms);
)sql"},
    // Claims written before this step were made before publishing and never
    // confirmed; they are taken as committed (what the binary that wrote them
    // assumed).
    {2, "idempotency claims: pending until the write is durable, with an owner and a lease", R"sql(
ALTER TABLE idempotency_keys ADD COLUMN state TEXT NOT NULL DEFAULT 'committed';
ALTER TABLE idempotency_keys ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ADD COLUMN lease_expires_ms BIGINT NOT NULL DEFAULT 0;
)sql"},
    {3, "removed_instances: deleted instances whose data the stores may still hold", R"sql(
CREATE TABLE IF NOT EXISTS removed_instances (
  id                      TEXT PRIMARY KEY,
  project                 TEXT NOT NULL,
  table_name              TEXT NOT NULL,
  avro_json               TEXT NOT NULL,
  key_json                TEXT NOT NULL,
  use_log                 INTEGER NOT NULL,
  use_index               INTEGER NOT NULL,
  use_warehouse           INTEGER NOT NULL,
  log_retention_ms        BIGINT NOT NULL,
  index_retention_ms      BIGINT NOT NULL,
  warehouse_retention_ms  BIGINT NOT NULL,
  removed_ms              BIGINT NOT NULL
);
)sql"},
    // Secrets are stored as HMAC-SHA256 under the server's secret key. Rows of
    // older files keep their plain SHA-256, marked 'sha256', until the secret
    // is next used (ResolveSecret / EnsureAdminSecret rewrite them).
    {5, "secrets: hash_kind (hmac, or sha256 for rows stored before keyed hashing)", R"sql(
ALTER TABLE secrets ADD COLUMN hash_kind TEXT NOT NULL DEFAULT 'sha256';
)sql"},
    // CountUnfinishedJobs (every submission) and FailStaleJobs read only the
    // unfinished jobs; the finished ones, which accumulate, stay out of it.
    {6, "jobs_unfinished: index of the pending and running jobs", R"sql(
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (secret_id, updated_ms) WHERE status IN ('pending', 'running');
)sql"},
    // Jobs answered inline (POST /v1/sql with wait_ms) keep their few rows
    // here, so every process sharing the catalog pages them: NULL for a job
    // whose rows are in the warehouse, '' once they expired (result_ttl_ms).
    {7, "jobs.result_text: the rows of jobs answered inline", R"sql(
ALTER TABLE jobs ADD COLUMN result_text TEXT;
CREATE INDEX IF NOT EXISTS jobs_with_result ON jobs (updated_ms) WHERE result_text IS NOT NULL AND result_text <> '';
)sql"},
};

constexpr int kSchemaVersion = kMigrations[std::size(kMigrations) - 1].version;

// --- SQLite plumbing -------------------------------------------------------------------------

Status SqliteError(int code, sqlite3* db, std::string_view doing) {
  std::string message = fmt::format("catalog: {}: {} (sqlite code {})", doing,
                                    db ? sqlite3_errmsg(db) : sqlite3_errstr(code), code);
  // A page that failed its checksum (checksum_vfs.h) is damage, not an outage.
  // The VFS said which page of which file; SQLite's own text is only "disk I/O error".
  if (code == SQLITE_IOERR_DATA || (code & 0xff) == SQLITE_CORRUPT) {
    std::string fault = TakeChecksumFault();
    if (!fault.empty()) message += ": " + fault;
    if (code == SQLITE_IOERR_DATA) return Status(StatusCode::kCorruption, std::move(message));
  }
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      return Status(StatusCode::kUnavailable, std::move(message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status(StatusCode::kCorruption, std::move(message));
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Status(StatusCode::kAlreadyExists, std::move(message));
      }
      if (code == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return Status(StatusCode::kNotFound, std::move(message));
      }
      return Status(StatusCode::kInternal, std::move(message));
    default:
      return Status(StatusCode::kInternal, std::move(message));
  }
}

// A catalog file found damaged (a page failing its checksum, or SQLite's
// "malformed"). From then on the catalog fails closed: every statement
// answers this Corruption, naming the file, instead of serving anything read
// from it (a cached answer included) until the process restarts on a
// repaired file. Guarded by the catalog's mutex.
struct Damage {
  std::string path;
  Status status;

  // `cause` if it is not corruption; else the catalog's lasting Corruption.
  Status Note(Status cause) {
    if (cause.code() != StatusCode::kCorruption) return cause;
    if (status.ok()) {
      status = Status(StatusCode::kCorruption,
                      fmt::format("the catalog file {} is damaged; nothing more is read from it "
                                  "until Aquifer restarts on a repaired or restored file: {}",
                                  path, cause.message()));
      AQ_LOG(Error, "{}", status.message());
    }
    return status;
  }
};

// A cached prepared statement in use: binds parameters in order, steps, reads
// columns, and resets itself for the next user when it goes out of scope.
class Statement {
 public:
  // `stmt` null: one that could not be prepared, failing with `failed`.
  Statement(sqlite3* db, sqlite3_stmt* stmt, Damage* damage, Status failed = Status::OK())
      : db_(db), stmt_(stmt), damage_(damage), bind_status_(std::move(failed)) {}
  ~Statement() {
    if (stmt_ == nullptr) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  template <typename... Args>
  Statement& Bind(const Args&... args) {
    (BindOne(args), ...);
    return *this;
  }

  // True when a row is ready, false when the statement is done.
  Result<bool> Step() {
    if (!bind_status_.ok()) return bind_status_;
    if (!damage_->status.ok()) return damage_->status;
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return damage_->Note(SqliteError(sqlite3_extended_errcode(db_), db_, sqlite3_sql(stmt_)));
  }
  // Runs a statement that returns no rows.
  Status Run() {
    AQ_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return Status::OK();
  }

  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool Bool(int col) const { return Int(col) != 0; }
  std::optional<int64_t> OptInt(int col) const {
    if (IsNull(col)) return std::nullopt;
    return Int(col);
  }
  std::string Text(int col) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    if (text == nullptr) return {};
    return std::string(text, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  Result<Uuid> Id(int col) const {
    auto id = Uuid::Parse(Text(col));
    if (!id.ok()) return Corruption("catalog: stored id is not a UUID: {}", id.status().message());
    return *id;
  }
  Result<std::optional<Uuid>> OptId(int col) const {
    if (IsNull(col)) return std::optional<Uuid>();
    AQ_ASSIGN_OR_RETURN(Uuid id, Id(col));
    return std::optional<Uuid>(id);
  }

 private:
  int Next() { return ++next_param_; }
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_status_.ok()) bind_status_ = SqliteError(rc, db_, "binding");
  }
  void BindOne(std::string_view text) {
    Check(sqlite3_bind_text64(stmt_, Next(), text.data(), text.size(), SQLITE_TRANSIENT,
                              SQLITE_UTF8));
  }
  void BindOne(const std::string& text) { BindOne(std::string_view(text)); }
  void BindOne(const char* text) { BindOne(std::string_view(text)); }
  void BindOne(int64_t value) { Check(sqlite3_bind_int64(stmt_, Next(), value)); }
  void BindOne(int value) { Check(sqlite3_bind_int64(stmt_, Next(), value)); }
  void BindOne(bool value) { Check(sqlite3_bind_int64(stmt_, Next(), value ? 1 : 0)); }
  void BindOne(std::nullopt_t) { Check(sqlite3_bind_null(stmt_, Next())); }
  void BindOne(const std::optional<int64_t>& value) {
    if (value) BindOne(*value); else BindOne(std::nullopt);
  }
  void BindOne(const Uuid& id) { BindOne(id.ToString()); }
  void BindOne(const std::optional<std::string>& text) {
    if (text) {
      BindOne(std::string_view(*text));
    } else {
      BindOne(std::nullopt);
    }
  }
  void BindOne(const std::optional<Uuid>& id) {
    if (id) BindOne(*id); else BindOne(std::nullopt);
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  Damage* damage_;
  Status bind_status_;
  int next_param_ = 0;
};

std::string_view JobStatusText(JobStatus status) { return driver::JobStatusName(status); }

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

// Columns that describe an instance, in the order ReadInstance expects them.
constexpr const char* kInstanceColumns =
    "i.id, p.name, t.name, i.avro_json, i.key_json, i.use_log, i.use_index, i.use_warehouse, "
    "i.log_retention_ms, i.index_retention_ms, i.warehouse_retention_ms";
constexpr int kInstanceColumnCount = 11;

// Columns of a table row followed by its primary instance's.
constexpr const char* kTableSelect =
    "SELECT t.id, t.project_id, p.name, t.name, t.created_ms, "
    "i.id, p.name, t.name, i.avro_json, i.key_json, i.use_log, i.use_index, i.use_warehouse, "
    "i.log_retention_ms, i.index_retention_ms, i.warehouse_retention_ms "
    "FROM tables t JOIN projects p ON p.id = t.project_id "
    "JOIN instances i ON i.id = t.primary_instance_id ";

std::string KeyJson(const std::vector<std::string>& key) { return nlohmann::json(key).dump(); }

Result<std::vector<std::string>> ParseKeyJson(const std::string& text) {
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

// --- The catalog -----------------------------------------------------------------------------

class SqliteCatalog final : public Catalog {
 public:
  SqliteCatalog(sqlite3* db, std::string path, const SqliteCatalogOptions& options)
      : db_(db), clock_(options.clock), secret_key_(options.secret_key) {
    damage_.path = std::move(path);
  }

  ~SqliteCatalog() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }

  // Sets the connection up and migrates. Called once, before sharing.
  // `checksums`: the connection runs on the checksum VFS (a file, not ":memory:").
  Status Init(int busy_timeout_ms, bool checksums) {
    std::lock_guard lock(mu_);
    AQ_RETURN_IF_ERROR(Exec(fmt::format("PRAGMA busy_timeout = {}", busy_timeout_ms)));
    AQ_RETURN_IF_ERROR(Exec("PRAGMA foreign_keys = ON"));
    // A new file reserves the checksum's bytes in every page from its first
    // write on (the reserve can be set only while the file is empty).
    AQ_ASSIGN_OR_RETURN(int64_t pages, QueryInt("PRAGMA page_count"));
    if (checksums && pages == 0) AQ_RETURN_IF_ERROR(ReserveChecksumBytes());
    // In-memory databases answer "memory" and keep it; files switch to WAL,
    // which is persistent in the file.
    // Several processes opening a fresh file at once race to switch it; SQLite
    // may answer SQLITE_BUSY at once there (without its busy handler, to avoid
    // a deadlock), so the switch is retried within the busy timeout.
    for (int waited_ms = 0;; waited_ms += 10) {
      Status wal = Exec("PRAGMA journal_mode = WAL");
      if (wal.ok()) break;
      if (wal.code() != StatusCode::kUnavailable || waited_ms >= busy_timeout_ms) return wal;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    AQ_RETURN_IF_ERROR(Exec("PRAGMA synchronous = FULL"));
    if (checksums && pages > 0) AQ_RETURN_IF_ERROR(AddPageChecksums(pages));
    return Migrate();
  }

  // --- Projects -----------------------------------------------------------------------------

  Result<ProjectInfo> CreateProject(std::string_view name) override {
    AQ_RETURN_IF_ERROR(ValidateName("project", name));
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_ASSIGN_OR_RETURN(auto existing, FindProjectId(name));
    if (existing) return AlreadyExists("project '{}' already exists", name);
    ProjectInfo project;
    project.project_id = Uuid::Random();
    project.name = std::string(name);
    project.created_ms = clock_->NowMillis();
    AQ_RETURN_IF_ERROR(Prepare("INSERT INTO projects (id, name, created_ms) VALUES (?, ?, ?)")
                           ->Bind(project.project_id, project.name, project.created_ms)
                           .Run());
    AQ_RETURN_IF_ERROR(txn.Commit());
    return project;
  }

  Result<ProjectInfo> GetProject(std::string_view name) override {
    std::lock_guard lock(mu_);
    const bool fresh = CacheFreshLocked();
    if (fresh) {
      if (auto it = cached_projects_.find(name); it != cached_projects_.end()) return it->second;
    }
    AQ_ASSIGN_OR_RETURN(auto projects, SelectProjects(name));
    if (projects.empty()) return ProjectNotFound(name);
    if (fresh) CacheInsert(&cached_projects_, std::string(name), projects.front());
    return std::move(projects.front());
  }

  Result<std::vector<ProjectInfo>> ListProjects() override {
    std::lock_guard lock(mu_);
    return SelectProjects(std::nullopt);
  }

  Result<std::vector<InstanceInfo>> DeleteProject(std::string_view name) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(name));
    if (!project_id) return ProjectNotFound(name);
    AQ_ASSIGN_OR_RETURN(auto removed, SelectInstances("t.project_id = ?", [&](Statement& s) {
                          s.Bind(*project_id);
                        }));
    AQ_RETURN_IF_ERROR(RecordRemovals("t.project_id = ?", *project_id));
    // Cascades: tables → instances and table grants; secrets minted for the
    // project → their grants and idempotency keys; other secrets' grants on it.
    AQ_RETURN_IF_ERROR(Prepare("DELETE FROM projects WHERE id = ?")->Bind(*project_id).Run());
    AQ_RETURN_IF_ERROR(txn.Commit());
    ForgetSchemas(removed);
    return removed;
  }

  Status SetProjectQuotas(std::string_view project, const Quotas& quotas) override {
    AQ_RETURN_IF_ERROR(CheckQuotas(project, quotas));
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(
        Prepare("UPDATE projects SET read_quota_bytes = ?, write_quota_bytes = ?, "
                "scan_quota_bytes = ? WHERE name = ?")
            ->Bind(quotas.read_bytes, quotas.write_bytes, quotas.scan_bytes, project)
            .Run());
    if (sqlite3_changes(db_) == 0) return ProjectNotFound(project);
    return txn.Commit();
  }

  Result<Quotas> GetProjectQuotas(std::string_view project) override {
    AQ_ASSIGN_OR_RETURN(ProjectInfo info, GetProject(project));
    return info.quotas;
  }

  // --- Tables -------------------------------------------------------------------------------

  Result<TableInfo> CreateTable(std::string_view project, const TableSpec& spec) override {
    AQ_ASSIGN_OR_RETURN(SchemaPtr schema, CheckTableSpec(project, spec));
    const std::string where = fmt::format("table '{}.{}'", project, spec.name);

    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(project));
    if (!project_id) return ProjectNotFound(project);
    AQ_ASSIGN_OR_RETURN(auto existing, FindTableId(*project_id, spec.name));
    if (existing) return AlreadyExists("{} already exists", where);

    TableInfo table = NewTable(project, *project_id, spec, schema, clock_->NowMillis());
    const InstanceInfo& instance = table.primary;

    AQ_RETURN_IF_ERROR(Prepare("INSERT INTO tables (id, project_id, name, primary_instance_id, "
                               "created_ms) VALUES (?, ?, ?, ?, ?)")
                           ->Bind(table.table_id, table.project_id, table.name,
                                  instance.instance_id, table.created_ms)
                           .Run());
    AQ_RETURN_IF_ERROR(
        Prepare("INSERT INTO instances (id, table_id, avro_json, key_json, use_log, use_index, "
                "use_warehouse, log_retention_ms, index_retention_ms, warehouse_retention_ms, "
                "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            ->Bind(instance.instance_id, table.table_id, schema->avro_json(), KeyJson(spec.key),
                   instance.use_log, instance.use_index, instance.use_warehouse,
                   instance.log_retention_ms, instance.index_retention_ms,
                   instance.warehouse_retention_ms, table.created_ms)
            .Run());
    AQ_RETURN_IF_ERROR(txn.Commit());
    schemas_[instance.instance_id] = schema;
    return table;
  }

  Result<TableInfo> GetTable(std::string_view project, std::string_view table) override {
    std::lock_guard lock(mu_);
    const bool fresh = CacheFreshLocked();
    std::string key = CacheKey(project, table);
    if (fresh) {
      if (auto it = cached_tables_.find(key); it != cached_tables_.end()) return it->second;
    }
    auto stmt = Prepare(std::string(kTableSelect) + "WHERE p.name = ? AND t.name = ?");
    stmt->Bind(project, table);
    AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) return TableNotFound(project, table);
    AQ_ASSIGN_OR_RETURN(TableInfo info, ReadTable(*stmt));
    if (fresh) CacheInsert(&cached_tables_, std::move(key), info);
    return info;
  }

  Result<std::vector<TableInfo>> ListTables(std::string_view project) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin(/*write=*/false));
    AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(project));
    if (!project_id) return ProjectNotFound(project);
    std::vector<TableInfo> tables;
    {
      auto stmt = Prepare(std::string(kTableSelect) + "WHERE t.project_id = ? ORDER BY t.name");
      stmt->Bind(*project_id);
      while (true) {
        AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
        if (!row) break;
        AQ_ASSIGN_OR_RETURN(TableInfo table, ReadTable(*stmt));
        tables.push_back(std::move(table));
      }
    }
    AQ_RETURN_IF_ERROR(txn.Commit());
    return tables;
  }

  Result<std::vector<InstanceInfo>> DeleteTable(std::string_view project,
                                                std::string_view table) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(project));
    if (!project_id) return TableNotFound(project, table);
    AQ_ASSIGN_OR_RETURN(auto table_id, FindTableId(*project_id, table));
    if (!table_id) return TableNotFound(project, table);
    AQ_ASSIGN_OR_RETURN(auto removed,
                        SelectInstances("t.id = ?", [&](Statement& s) { s.Bind(*table_id); }));
    AQ_RETURN_IF_ERROR(RecordRemovals("t.id = ?", *table_id));
    AQ_RETURN_IF_ERROR(Prepare("DELETE FROM tables WHERE id = ?")->Bind(*table_id).Run());
    AQ_RETURN_IF_ERROR(txn.Commit());
    ForgetSchemas(removed);
    return removed;
  }

  Result<InstanceInfo> GetInstance(const Uuid& instance_id) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto found,
                        SelectInstances("i.id = ?", [&](Statement& s) { s.Bind(instance_id); }));
    if (found.empty()) return NotFound("instance {} not found", instance_id.ToString());
    return std::move(found.front());
  }

  Result<std::vector<InstanceInfo>> ListInstances() override {
    std::lock_guard lock(mu_);
    return SelectInstances("1 = 1", [](Statement&) {});
  }

  // --- Pending removals ---------------------------------------------------------------------

  Result<std::vector<InstanceInfo>> ListPendingRemovals() override {
    std::lock_guard lock(mu_);
    auto stmt = Prepare(
        "SELECT id, project, table_name, avro_json, key_json, use_log, use_index, use_warehouse, "
        "log_retention_ms, index_retention_ms, warehouse_retention_ms FROM removed_instances "
        "ORDER BY removed_ms, id");
    std::vector<InstanceInfo> removals;
    while (true) {
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) break;
      AQ_ASSIGN_OR_RETURN(InstanceInfo instance, ReadInstance(*stmt, 0));
      removals.push_back(std::move(instance));
    }
    return removals;
  }

  Status AddPendingRemoval(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) {
      return InvalidArgument("pending removal of instance {}: no schema",
                             instance.instance_id.ToString());
    }
    std::vector<std::string> key;
    for (const auto& field : instance.schema->key()) key.push_back(field.name);
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(
        Prepare("INSERT OR IGNORE INTO removed_instances (id, project, table_name, avro_json, "
                "key_json, use_log, use_index, use_warehouse, log_retention_ms, "
                "index_retention_ms, warehouse_retention_ms, removed_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            ->Bind(instance.instance_id, instance.project, instance.table,
                   instance.schema->avro_json(), KeyJson(key), instance.use_log,
                   instance.use_index, instance.use_warehouse, instance.log_retention_ms,
                   instance.index_retention_ms, instance.warehouse_retention_ms,
                   clock_->NowMillis())
            .Run());
    return txn.Commit();
  }

  Status FinishRemoval(const Uuid& instance_id) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(
        Prepare("DELETE FROM removed_instances WHERE id = ?")->Bind(instance_id).Run());
    schemas_.erase(instance_id);
    return txn.Commit();
  }

  // --- Secrets ------------------------------------------------------------------------------

  Result<MintedSecret> MintSecret(std::string_view project, const SecretGrants& grants) override {
    for (const auto* list : {&grants.read, &grants.write}) {
      for (const auto& name : *list) AQ_RETURN_IF_ERROR(ValidateGrantTarget(name));
    }
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(project));
    if (!project_id) return ProjectNotFound(project);

    // (table id or none for "*", permission), deduplicated.
    std::set<std::pair<std::optional<Uuid>, Permission>> rows;
    for (const auto& [list, permission] : {std::pair{&grants.read, Permission::kRead},
                                           std::pair{&grants.write, Permission::kWrite}}) {
      for (const auto& name : *list) {
        if (name == "*") {
          rows.emplace(std::nullopt, permission);
          continue;
        }
        AQ_ASSIGN_OR_RETURN(auto table_id, FindTableId(*project_id, name));
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

    MintedSecret minted{Uuid::Random(), GenerateSecret()};
    AQ_RETURN_IF_ERROR(InsertSecret(minted.secret_id, Hash(minted.secret),
                                    /*is_admin=*/false, project_id));
    for (const auto& [table_id, permission] : rows) {
      AQ_RETURN_IF_ERROR(Prepare("INSERT INTO grants (secret_id, project_id, table_id, "
                                 "permission) VALUES (?, ?, ?, ?)")
                             ->Bind(minted.secret_id, *project_id, table_id,
                                    PermissionName(permission))
                             .Run());
    }
    AQ_RETURN_IF_ERROR(txn.Commit());
    return minted;
  }

  Result<std::optional<std::string>> EnsureAdminSecret(
      const std::optional<std::string>& plaintext) override {
    if (plaintext && plaintext->size() < kMinAdminSecretLength) {
      return InvalidArgument("the admin secret must be at least {} characters, got {}",
                             kMinAdminSecretLength, plaintext->size());
    }
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    if (!plaintext) {
      auto count = Prepare("SELECT COUNT(*) FROM secrets WHERE is_admin = 1");
      AQ_ASSIGN_OR_RETURN(bool row, count->Step());
      if (row && count->Int(0) > 0) return std::optional<std::string>();
      count.reset();
      std::string secret = GenerateSecret();
      AQ_RETURN_IF_ERROR(InsertSecret(Uuid::Random(), Hash(secret), /*is_admin=*/true,
                                      std::nullopt));
      AQ_RETURN_IF_ERROR(txn.Commit());
      return std::optional<std::string>(std::move(secret));
    }
    const std::string hash = Hash(*plaintext);
    // A row of this secret from before HMAC hashing becomes an HMAC row (same id).
    AQ_RETURN_IF_ERROR(Prepare("UPDATE secrets SET hash = ?, hash_kind = 'hmac' "
                               "WHERE hash = ? AND hash_kind = 'sha256'")
                           ->Bind(hash, LegacySecretHash(*plaintext))
                           .Run());
    {
      auto same = Prepare("SELECT is_admin FROM secrets WHERE hash = ?");
      same->Bind(hash);
      AQ_ASSIGN_OR_RETURN(bool row, same->Step());
      if (row && !same->Bool(0)) {
        return AlreadyExists("the given admin secret is already a project's secret");
      }
    }
    AQ_RETURN_IF_ERROR(
        Prepare("DELETE FROM secrets WHERE is_admin = 1 AND hash <> ?")->Bind(hash).Run());
    auto exists = Prepare("SELECT COUNT(*) FROM secrets WHERE hash = ?");
    exists->Bind(hash);
    AQ_ASSIGN_OR_RETURN(bool row, exists->Step());
    bool present = row && exists->Int(0) > 0;
    exists.reset();
    if (!present) {
      AQ_RETURN_IF_ERROR(InsertSecret(Uuid::Random(), hash, /*is_admin=*/true, std::nullopt));
    }
    AQ_RETURN_IF_ERROR(txn.Commit());
    return plaintext;
  }

  Result<Principal> ResolveSecret(std::string_view plaintext) override {
    const std::string hash = Hash(plaintext);
    std::lock_guard lock(mu_);
    // A secret verified since the catalog last changed (in this process or any
    // other: CacheFreshLocked) resolves from memory, keyed by its HMAC.
    const bool fresh = CacheFreshLocked();
    if (fresh) {
      if (auto it = cached_principals_.find(hash); it != cached_principals_.end()) return it->second;
    }
    const std::string legacy = LegacySecretHash(plaintext);
    Principal principal;
    bool upgrade = false;
    {
      AQ_ASSIGN_OR_RETURN(auto txn, Begin(/*write=*/false));
      {
        auto stmt = Prepare(
            "SELECT id, is_admin, hash_kind FROM secrets "
            "WHERE (hash = ? AND hash_kind = 'hmac') OR (hash = ? AND hash_kind = 'sha256')");
        stmt->Bind(hash, legacy);
        AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
        if (!row) return Unauthenticated("the secret is not valid (unknown or revoked)");
        AQ_ASSIGN_OR_RETURN(principal.secret_id, stmt->Id(0));
        principal.is_admin = stmt->Bool(1);
        upgrade = stmt->Text(2) != "hmac";
      }
      if (!upgrade) {
        AQ_ASSIGN_OR_RETURN(principal.grants, LoadGrants(principal.secret_id));
        AQ_RETURN_IF_ERROR(txn.Commit());
        if (fresh) CacheInsert(&cached_principals_, hash, principal);
        return principal;
      }
    }
    // Stored the pre-HMAC way (plain SHA-256): now that the plaintext proved
    // it, store its HMAC instead, so the catalog no longer holds the old hash.
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(Prepare("UPDATE secrets SET hash = ?, hash_kind = 'hmac' "
                               "WHERE id = ? AND hash_kind = 'sha256'")
                           ->Bind(hash, principal.secret_id)
                           .Run());
    if (sqlite3_changes(db_) == 0) {
      // Revoked (or rewritten by another process) in between: resolve as it stands now.
      auto stmt = Prepare("SELECT is_admin FROM secrets WHERE id = ? AND hash = ?");
      stmt->Bind(principal.secret_id, hash);
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) return Unauthenticated("the secret is not valid (unknown or revoked)");
    }
    AQ_ASSIGN_OR_RETURN(principal.grants, LoadGrants(principal.secret_id));
    AQ_RETURN_IF_ERROR(txn.Commit());
    AQ_LOG(Info, "catalog: secret {} was stored as plain SHA-256; now stored as HMAC-SHA256",
           principal.secret_id.ToString());
    return principal;
  }

  Result<std::vector<SecretInfo>> ListSecrets(std::string_view project) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin(/*write=*/false));
    AQ_ASSIGN_OR_RETURN(auto project_id, FindProjectId(project));
    if (!project_id) return ProjectNotFound(project);
    std::vector<SecretInfo> secrets;
    {
      auto stmt = Prepare(
          "SELECT id, created_ms FROM secrets WHERE project_id = ? ORDER BY created_ms, id");
      stmt->Bind(*project_id);
      while (true) {
        AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
        if (!row) break;
        SecretInfo info;
        AQ_ASSIGN_OR_RETURN(info.secret_id, stmt->Id(0));
        info.created_ms = stmt->Int(1);
        info.project_id = *project_id;
        secrets.push_back(std::move(info));
      }
    }
    for (SecretInfo& info : secrets) {
      AQ_ASSIGN_OR_RETURN(info.grants, LoadGrants(info.secret_id));
    }
    AQ_RETURN_IF_ERROR(txn.Commit());
    return secrets;
  }

  Status DeleteSecret(const Uuid& secret_id) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(Prepare("DELETE FROM secrets WHERE id = ?")->Bind(secret_id).Run());
    if (sqlite3_changes(db_) == 0) return NotFound("secret {} not found", secret_id.ToString());
    return txn.Commit();
  }

  Status Authorize(const Principal& principal, std::string_view project, std::string_view table,
                   Permission permission) override {
    std::lock_guard lock(mu_);
    return AuthorizeLocked(principal, project, table, permission);
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
    std::lock_guard lock(mu_);
    // A commit nobody needs on stable storage (NewJob::sync): synchronous=NORMAL
    // for it (WAL mode: the file stays consistent; a power cut may lose it),
    // FULL again after it. The next synced commit makes it durable too.
    struct Relaxed {
      SqliteCatalog* self;
      bool on;
      ~Relaxed() {
        if (on) (void)self->Exec("PRAGMA synchronous = FULL");
      }
    } relaxed{this, !job.sync};
    if (relaxed.on) AQ_RETURN_IF_ERROR(Exec("PRAGMA synchronous = NORMAL"));
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());  // BEGIN IMMEDIATE: the count below cannot go stale
    if (job.max_unfinished > 0 && !job.finished) {
      auto stmt = Prepare("SELECT COUNT(*) FROM jobs WHERE secret_id = ? AND status IN ('pending', 'running')");
      stmt->Bind(job.secret_id);
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      const int64_t busy = row ? stmt->Int(0) : 0;
      if (busy >= job.max_unfinished) return TooManyUnfinishedJobs(busy);
    }
    AQ_RETURN_IF_ERROR(
        Prepare("INSERT INTO jobs (id, secret_id, sql_text, status, error, bytes_scanned, "
                "row_count, created_ms, updated_ms, result_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            ->Bind(info.job_id, info.secret_id, info.sql, JobStatusText(info.status),
                   info.error, info.bytes_scanned, info.rows, info.created_ms, info.updated_ms, result)
            .Run());
    for (size_t position = 0; position < info.tables.size(); ++position) {
      const JobTable& table = info.tables[position];
      AQ_RETURN_IF_ERROR(Prepare("INSERT INTO job_tables (job_id, position, project, "
                                 "table_name, instance_id) VALUES (?, ?, ?, ?, ?)")
                             ->Bind(info.job_id, static_cast<int64_t>(position), table.project,
                                    table.table, table.instance_id)
                             .Run());
    }
    AQ_RETURN_IF_ERROR(txn.Commit());
    return info;
  }

  Status UpdateJob(const Uuid& job_id, const JobUpdate& update) override {
    if (update.bytes_scanned < 0 || update.rows < 0) {
      return InvalidArgument("job {}: bytes_scanned and rows must be >= 0", job_id.ToString());
    }
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    {
      auto stmt = Prepare("SELECT status FROM jobs WHERE id = ?");
      stmt->Bind(job_id);
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) return NotFound("job {} not found", job_id.ToString());
      AQ_ASSIGN_OR_RETURN(JobStatus current, ParseJobStatus(stmt->Text(0)));
      if (IsFinished(current)) {
        return FailedPrecondition("job {} is already {}; a finished job does not change",
                                  job_id.ToString(), JobStatusText(current));
      }
      if (current == JobStatus::kRunning && update.status == JobStatus::kPending) {
        return FailedPrecondition("job {} is running; it cannot go back to pending",
                                  job_id.ToString());
      }
    }
    AQ_RETURN_IF_ERROR(Prepare("UPDATE jobs SET status = ?, error = ?, bytes_scanned = ?, "
                               "row_count = ?, updated_ms = ? WHERE id = ?")
                           ->Bind(JobStatusText(update.status), update.error,
                                  update.bytes_scanned, update.rows, clock_->NowMillis(), job_id)
                           .Run());
    return txn.Commit();
  }

  Result<int64_t> PurgeFinishedJobs(int64_t finished_before_ms) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(Prepare("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_ms < ?")
                           ->Bind(finished_before_ms)
                           .Run());
    const int64_t purged = sqlite3_changes64(db_);
    AQ_RETURN_IF_ERROR(txn.Commit());
    return purged;
  }

  Result<int64_t> FailStaleJobs(int64_t updated_before_ms, std::string_view error) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(Prepare("UPDATE jobs SET status = ?, error = ?, updated_ms = ? "
                               "WHERE status IN ('pending', 'running') AND updated_ms < ?")
                           ->Bind(JobStatusText(JobStatus::kFailed), error, clock_->NowMillis(),
                                  updated_before_ms)
                           .Run());
    const int64_t failed = sqlite3_changes64(db_);
    AQ_RETURN_IF_ERROR(txn.Commit());
    return failed;
  }

  Result<int64_t> CountUnfinishedJobs(const Uuid& secret_id) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin(/*write=*/false));
    auto stmt = Prepare("SELECT COUNT(*) FROM jobs WHERE secret_id = ? AND status IN ('pending', 'running')");
    stmt->Bind(secret_id);
    AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
    const int64_t count = row ? stmt->Int(0) : 0;
    AQ_RETURN_IF_ERROR(txn.Commit());
    return count;
  }

  Result<std::optional<std::string>> GetJobResult(const Uuid& job_id) override {
    std::lock_guard lock(mu_);
    auto stmt = Prepare("SELECT result_text FROM jobs WHERE id = ? AND result_text IS NOT NULL");
    stmt->Bind(job_id);
    AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) return NotFound("job {} keeps no rows in the catalog", job_id.ToString());
    std::string text = stmt->Text(0);
    if (text.empty()) return std::optional<std::string>();
    return std::optional<std::string>(std::move(text));
  }

  Result<int64_t> ExpireJobResults(int64_t finished_before_ms) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(Prepare("UPDATE jobs SET result_text = '' WHERE result_text IS NOT NULL AND "
                               "result_text <> '' AND updated_ms < ?")
                           ->Bind(finished_before_ms)
                           .Run());
    const int64_t expired = sqlite3_changes64(db_);
    AQ_RETURN_IF_ERROR(txn.Commit());
    return expired;
  }

  Result<JobInfo> GetJob(const Uuid& job_id) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin(/*write=*/false));
    JobInfo info;
    {
      auto stmt = Prepare("SELECT secret_id, sql_text, status, error, bytes_scanned, row_count, "
                          "created_ms, updated_ms, result_text IS NOT NULL FROM jobs WHERE id = ?");
      stmt->Bind(job_id);
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) return NotFound("job {} not found", job_id.ToString());
      info.job_id = job_id;
      AQ_ASSIGN_OR_RETURN(info.secret_id, stmt->Id(0));
      info.sql = stmt->Text(1);
      AQ_ASSIGN_OR_RETURN(info.status, ParseJobStatus(stmt->Text(2)));
      info.error = stmt->Text(3);
      info.bytes_scanned = stmt->Int(4);
      info.rows = stmt->Int(5);
      info.created_ms = stmt->Int(6);
      info.updated_ms = stmt->Int(7);
      info.result_in_catalog = stmt->Int(8) != 0;
    }
    {
      auto stmt = Prepare("SELECT project, table_name, instance_id FROM job_tables "
                          "WHERE job_id = ? ORDER BY position");
      stmt->Bind(job_id);
      while (true) {
        AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
        if (!row) break;
        JobTable table;
        table.project = stmt->Text(0);
        table.table = stmt->Text(1);
        AQ_ASSIGN_OR_RETURN(table.instance_id, stmt->Id(2));
        info.tables.push_back(std::move(table));
      }
    }
    AQ_RETURN_IF_ERROR(txn.Commit());
    return info;
  }

  Status CanReadJob(const Principal& principal, const JobInfo& job) override {
    if (principal.is_admin) return Status::OK();
    Status hidden = NotFound("job {} not found", job.job_id.ToString());
    if (principal.secret_id != job.secret_id) return hidden;
    std::lock_guard lock(mu_);
    for (const JobTable& table : job.tables) {
      Status status = AuthorizeLocked(principal, table.project, table.table, Permission::kRead);
      if (status.code() == StatusCode::kNotFound ||
          status.code() == StatusCode::kPermissionDenied) {
        return hidden;
      }
      AQ_RETURN_IF_ERROR(status);
    }
    return Status::OK();
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
    const int64_t now = clock_->NowMillis();
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    IdempotencyClaim claim;
    claim.write_id = std::string(proposed_write_id);
    bool replace = false;  // a row exists and this claim overwrites it
    std::string old_owner, old_write_id;
    {
      auto stmt = Prepare(
          "SELECT write_id, created_ms, state, owner, lease_expires_ms FROM idempotency_keys "
          "WHERE secret_id = ? AND idem_key = ?");
      stmt->Bind(secret_id, key);
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (row) {
        const std::string state = stmt->Text(2);
        old_write_id = stmt->Text(0);
        old_owner = stmt->Text(3);
        if (state == "committed") {
          if (now - stmt->Int(1) < kIdempotencyKeyTtlMs) {
            return IdempotencyClaim{IdempotencyClaim::State::kCommitted, old_write_id, 0};
          }
        } else if (state == "pending") {
          if (stmt->Int(4) > now) {
            return IdempotencyClaim{IdempotencyClaim::State::kPending, old_write_id, stmt->Int(4)};
          }
        } else {
          return Corruption("catalog: idempotency claim has unknown state '{}'", state);
        }
        replace = true;
      }
    }
    if (replace) {
      // Compare-and-set on the row read above: a catalog shared by several
      // processes (Postgres) may see another takeover in between.
      AQ_RETURN_IF_ERROR(
          Prepare("UPDATE idempotency_keys SET write_id = ?, created_ms = ?, state = 'pending', "
                  "owner = ?, lease_expires_ms = ? "
                  "WHERE secret_id = ? AND idem_key = ? AND owner = ? AND write_id = ?")
              ->Bind(proposed_write_id, now, owner, now + lease_ms, secret_id, key, old_owner,
                     old_write_id)
              .Run());
      if (sqlite3_changes(db_) != 1) {
        return Aborted("Idempotency-Key claim changed concurrently; retry");
      }
    } else {
      Status written =
          Prepare("INSERT INTO idempotency_keys (secret_id, idem_key, write_id, created_ms, state, "
                  "owner, lease_expires_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?)")
              ->Bind(secret_id, key, proposed_write_id, now, owner, now + lease_ms)
              .Run();
      if (written.code() == StatusCode::kNotFound) {
        return NotFound("secret {} not found", secret_id.ToString());
      }
      AQ_RETURN_IF_ERROR(written);
    }
    AQ_RETURN_IF_ERROR(txn.Commit());
    return claim;
  }

  Status CommitIdempotencyKey(const Uuid& secret_id, std::string_view key,
                              std::string_view write_id) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(
        Prepare("UPDATE idempotency_keys SET state = 'committed', lease_expires_ms = 0 "
                "WHERE secret_id = ? AND idem_key = ? AND write_id = ?")
            ->Bind(secret_id, key, write_id)
            .Run());
    if (sqlite3_changes(db_) != 1) {
      return Aborted("the Idempotency-Key claim of write {} was lost (its lease ran out and "
                     "another request took it over)",
                     write_id);
    }
    return txn.Commit();
  }

  Status ReleaseIdempotencyKey(const Uuid& secret_id, std::string_view key,
                               std::string_view write_id) override {
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(
        Prepare("DELETE FROM idempotency_keys WHERE secret_id = ? AND idem_key = ? AND "
                "write_id = ? AND state = 'pending'")
            ->Bind(secret_id, key, write_id)
            .Run());
    return txn.Commit();
  }

  Result<int64_t> PurgeIdempotencyKeys() override {
    const int64_t now = clock_->NowMillis();
    const int64_t cutoff = now - kIdempotencyKeyTtlMs;
    std::lock_guard lock(mu_);
    AQ_ASSIGN_OR_RETURN(auto txn, Begin());
    AQ_RETURN_IF_ERROR(
        Prepare("DELETE FROM idempotency_keys WHERE (state = 'committed' AND created_ms <= ?) OR "
                "(state = 'pending' AND lease_expires_ms <= ?)")
            ->Bind(cutoff, now)
            .Run());
    int64_t purged = sqlite3_changes64(db_);
    AQ_RETURN_IF_ERROR(txn.Commit());
    return purged;
  }

 private:
  // A transaction on the connection; rolls back unless committed. Write
  // transactions take the write lock at BEGIN (IMMEDIATE), so a busy
  // database is waited for up front instead of failing mid-way.
  class Transaction {
   public:
    explicit Transaction(SqliteCatalog* catalog) : catalog_(catalog) {}
    Transaction(Transaction&& other) noexcept : catalog_(std::exchange(other.catalog_, nullptr)) {}
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction() {
      if (catalog_ != nullptr) (void)catalog_->Exec("ROLLBACK");
    }
    Status Commit() {
      SqliteCatalog* catalog = std::exchange(catalog_, nullptr);
      Status status = catalog->Exec("COMMIT");
      if (!status.ok()) (void)catalog->Exec("ROLLBACK");
      return status;
    }

   private:
    SqliteCatalog* catalog_;
  };

  // Requires mu_.
  Result<Transaction> Begin(bool write = true) {
    AQ_RETURN_IF_ERROR(Exec(write ? "BEGIN IMMEDIATE" : "BEGIN"));
    return Transaction(this);
  }

  // Requires mu_.
  Status Exec(const std::string& sql, int (*callback)(void*, int, char**, char**) = nullptr,
              void* callback_arg = nullptr) {
    // A damaged file is not read again; a transaction already open still rolls back.
    if (!damage_.status.ok() && sql != "ROLLBACK") return damage_.status;
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), callback, callback_arg, &error);
    if (rc == SQLITE_OK) return Status::OK();
    std::string message = error ? error : sqlite3_errstr(rc);
    sqlite3_free(error);
    Status status = SqliteError(sqlite3_extended_errcode(db_), nullptr, sql);
    if (status.code() == StatusCode::kCorruption) return damage_.Note(std::move(status));
    return Status(status.code(), fmt::format("catalog: {}: {}", sql.substr(0, 80), message));
  }

  // The single integer `sql` answers (through Exec: the first statement of
  // a connection reads the schema, which may be damaged). Requires mu_.
  Result<int64_t> QueryInt(const std::string& sql) {
    int64_t value = -1;
    AQ_RETURN_IF_ERROR(Exec(
        sql,
        [](void* out, int columns, char** values, char**) {
          if (columns > 0 && values[0] != nullptr) {
            *static_cast<int64_t*>(out) = std::strtoll(values[0], nullptr, 10);
          }
          return 0;
        },
        &value));
    if (value < 0) return Internal("catalog: {} returned no row", sql);
    return value;
  }

  // --- Page checksums (checksum_vfs.h) ------------------------------------------------------

  // The bytes each page reserves, as SQLite sees the file (WAL included);
  // valid once a statement has read it. Requires mu_.
  int ReservedBytes() {
    int reserve = -1;  // -1: only ask
    sqlite3_file_control(db_, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
    return reserve;
  }

  // Asks for the checksum's bytes on every page SQLite lays out from now on
  // (a new file's, or a VACUUM's). Requires mu_.
  Status ReserveChecksumBytes() {
    int reserve = kChecksumReserveBytes;
    int rc = sqlite3_file_control(db_, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
    if (rc != SQLITE_OK) return SqliteError(rc, db_, "reserving the page checksum bytes");
    return Status::OK();
  }

  // A file made before page checksums (no reserved bytes) gets them: the
  // reserve is raised, then VACUUM rewrites every page in the new layout. The
  // VACUUM is one write transaction of a WAL database: a crash or an error
  // leaves the file as it was, never half-converted, and other processes
  // sharing the file wait for it as for any write. The pages land in the
  // main file, checksummed, at the checkpoint that follows. If the
  // conversion fails for any reason other than damage, the file is used
  // unchecked as before (logged) and the next open tries again. Requires mu_.
  Status AddPageChecksums(int64_t pages) {
    const int reserve = ReservedBytes();
    if (reserve == kChecksumReserveBytes) return Status::OK();
    if (reserve != 0) {
      AQ_LOG(Warn,
             "catalog: {} reserves {} bytes per page for something else; its pages are not "
             "checksummed",
             damage_.path, reserve);
      return Status::OK();
    }
    AQ_RETURN_IF_ERROR(ReserveChecksumBytes());
    Status vacuum = Exec("VACUUM");
    if (vacuum.code() == StatusCode::kCorruption) return vacuum;
    if (!vacuum.ok()) {
      AQ_LOG(Warn,
             "catalog: adding page checksums to {} failed ({}); it is used without them, the "
             "next start tries again",
             damage_.path, vacuum.ToString());
      return Status::OK();
    }
    (void)Exec("PRAGMA wal_checkpoint(TRUNCATE)");  // busy (a reader): a later checkpoint does it
    AQ_LOG(Info, "catalog: added page checksums to {} ({} pages rewritten)", damage_.path, pages);
    return Status::OK();
  }

  // The cached statement for `sql`, prepared on first use. Requires mu_. A
  // statement that fails to prepare is a bug in this file, so it aborts
  // rather than threading an error through every call.
  std::unique_ptr<Statement> Prepare(const std::string& sql) {
    auto [it, inserted] = statements_.try_emplace(sql, nullptr);
    if (inserted) {
      int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()) + 1,
                                  SQLITE_PREPARE_PERSISTENT, &it->second, nullptr);
      if (rc != SQLITE_OK) {
        const int code = sqlite3_extended_errcode(db_);
        if ((code & 0xff) != SQLITE_ERROR) {
          // Not the SQL: preparing reads the schema, which may meet a damaged
          // page (or a busy or failing disk). The statement fails when run.
          Status status = damage_.Note(SqliteError(code, db_, sql));
          sqlite3_finalize(it->second);
          statements_.erase(it);
          return std::make_unique<Statement>(db_, nullptr, &damage_, std::move(status));
        }
        fmt::print(stderr, "catalog: cannot prepare '{}': {}\n", sql, sqlite3_errmsg(db_));
        std::abort();
      }
    }
    return std::make_unique<Statement>(db_, it->second, &damage_);
  }

  Status Migrate() {
    AQ_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Transaction txn(this);
    AQ_RETURN_IF_ERROR(Exec(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
        "description TEXT NOT NULL, applied_ms BIGINT NOT NULL)"));
    int64_t current = 0;
    {
      auto stmt = Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (row) current = stmt->Int(0);
    }
    if (current > kSchemaVersion) {
      return FailedPrecondition(
          "catalog: the database is at schema version {}, newer than this binary's {}; "
          "upgrade Aquifer",
          current, kSchemaVersion);
    }
    for (const Migration& migration : kMigrations) {
      if (migration.version <= current) continue;
      Status status = Exec(migration.sql);
      if (!status.ok()) {
        return status.WithContext(fmt::format("migration {} ({})", migration.version,
                                              migration.description));
      }
      AQ_RETURN_IF_ERROR(Prepare("INSERT INTO schema_version (version, description, applied_ms) "
                                 "VALUES (?, ?, ?)")
                             ->Bind(migration.version, migration.description,
                                    clock_->NowMillis())
                             .Run());
    }
    return txn.Commit();
  }

  // The stored form of a plaintext secret (auth.h HashSecret, under this catalog's key).
  std::string Hash(std::string_view plaintext) const { return HashSecret(secret_key_, plaintext); }

  Status InsertSecret(const Uuid& id, const std::string& hash, bool is_admin,
                      const std::optional<Uuid>& project_id) {
    return Prepare("INSERT INTO secrets (id, hash, is_admin, project_id, created_ms, hash_kind) "
                   "VALUES (?, ?, ?, ?, ?, 'hmac')")
        ->Bind(id, hash, is_admin, project_id, clock_->NowMillis())
        .Run();
  }

  // Copies the instances matching `where` (over i, t, p; one id parameter)
  // into removed_instances. Requires mu_ and an open transaction.
  Status RecordRemovals(const std::string& where, const Uuid& id) {
    return Prepare(fmt::format(
                       "INSERT OR IGNORE INTO removed_instances (id, project, table_name, "
                       "avro_json, key_json, use_log, use_index, use_warehouse, "
                       "log_retention_ms, index_retention_ms, warehouse_retention_ms, removed_ms) "
                       "SELECT {}, ? FROM instances i JOIN tables t ON t.id = i.table_id "
                       "JOIN projects p ON p.id = t.project_id WHERE {}",
                       kInstanceColumns, where))
        ->Bind(clock_->NowMillis(), id)
        .Run();
  }

  Result<std::optional<Uuid>> FindProjectId(std::string_view name) {
    auto stmt = Prepare("SELECT id FROM projects WHERE name = ?");
    stmt->Bind(name);
    AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) return std::optional<Uuid>();
    return stmt->OptId(0);
  }

  Result<std::optional<Uuid>> FindTableId(const Uuid& project_id, std::string_view name) {
    auto stmt = Prepare("SELECT id FROM tables WHERE project_id = ? AND name = ?");
    stmt->Bind(project_id, name);
    AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
    if (!row) return std::optional<Uuid>();
    return stmt->OptId(0);
  }

  // Projects named `name`, or all of them, by name.
  Result<std::vector<ProjectInfo>> SelectProjects(std::optional<std::string_view> name) {
    static const std::string kSelect =
        "SELECT id, name, created_ms, read_quota_bytes, write_quota_bytes, scan_quota_bytes "
        "FROM projects ";
    auto stmt = name ? Prepare(kSelect + "WHERE name = ?") : Prepare(kSelect + "ORDER BY name");
    if (name) stmt->Bind(*name);
    std::vector<ProjectInfo> projects;
    while (true) {
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) break;
      ProjectInfo project;
      AQ_ASSIGN_OR_RETURN(project.project_id, stmt->Id(0));
      project.name = stmt->Text(1);
      project.created_ms = stmt->Int(2);
      project.quotas.read_bytes = stmt->OptInt(3);
      project.quotas.write_bytes = stmt->OptInt(4);
      project.quotas.scan_bytes = stmt->OptInt(5);
      projects.push_back(std::move(project));
    }
    return projects;
  }

  // Instances matching `where` (over i, t, p), with a binder for its parameters.
  template <typename BindFn>
  Result<std::vector<InstanceInfo>> SelectInstances(const std::string& where, BindFn bind) {
    auto stmt = Prepare(fmt::format(
        "SELECT {} FROM instances i JOIN tables t ON t.id = i.table_id "
        "JOIN projects p ON p.id = t.project_id WHERE {} ORDER BY t.name, i.created_ms, i.id",
        kInstanceColumns, where));
    bind(*stmt);
    std::vector<InstanceInfo> instances;
    while (true) {
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) break;
      AQ_ASSIGN_OR_RETURN(InstanceInfo instance, ReadInstance(*stmt, 0));
      instances.push_back(std::move(instance));
    }
    return instances;
  }

  // Reads kInstanceColumns starting at column `first`; the schema comes from
  // the cache, parsed on first sight.
  Result<InstanceInfo> ReadInstance(const Statement& stmt, int first) {
    InstanceInfo instance;
    AQ_ASSIGN_OR_RETURN(instance.instance_id, stmt.Id(first));
    instance.project = stmt.Text(first + 1);
    instance.table = stmt.Text(first + 2);
    instance.use_log = stmt.Bool(first + 5);
    instance.use_index = stmt.Bool(first + 6);
    instance.use_warehouse = stmt.Bool(first + 7);
    instance.log_retention_ms = stmt.Int(first + 8);
    instance.index_retention_ms = stmt.Int(first + 9);
    instance.warehouse_retention_ms = stmt.Int(first + 10);
    static_assert(kInstanceColumnCount == 11);
    if (auto it = schemas_.find(instance.instance_id); it != schemas_.end()) {
      instance.schema = it->second;
      return instance;
    }
    AQ_ASSIGN_OR_RETURN(auto key, ParseKeyJson(stmt.Text(first + 4)));
    auto parsed = Schema::Parse(stmt.Text(first + 3), key);
    if (!parsed.ok()) {
      return Corruption("catalog: stored schema of instance {} ({}.{}) does not parse: {}",
                        instance.instance_id.ToString(), instance.project, instance.table,
                        parsed.status().message());
    }
    instance.schema = *parsed;
    schemas_.emplace(instance.instance_id, instance.schema);
    return instance;
  }

  Result<TableInfo> ReadTable(const Statement& stmt) {
    TableInfo table;
    AQ_ASSIGN_OR_RETURN(table.table_id, stmt.Id(0));
    AQ_ASSIGN_OR_RETURN(table.project_id, stmt.Id(1));
    table.project = stmt.Text(2);
    table.name = stmt.Text(3);
    table.created_ms = stmt.Int(4);
    AQ_ASSIGN_OR_RETURN(table.primary, ReadInstance(stmt, 5));
    return table;
  }

  void ForgetSchemas(const std::vector<InstanceInfo>& instances) {
    for (const InstanceInfo& instance : instances) schemas_.erase(instance.instance_id);
  }

  Result<std::vector<Grant>> LoadGrants(const Uuid& secret_id) {
    auto stmt = Prepare(
        "SELECT g.project_id, p.name, g.table_id, t.name, g.permission FROM grants g "
        "JOIN projects p ON p.id = g.project_id LEFT JOIN tables t ON t.id = g.table_id "
        "WHERE g.secret_id = ? ORDER BY p.name, t.name, g.permission");
    stmt->Bind(secret_id);
    std::vector<Grant> grants;
    while (true) {
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (!row) break;
      Grant grant;
      AQ_ASSIGN_OR_RETURN(grant.project_id, stmt->Id(0));
      grant.project = stmt->Text(1);
      AQ_ASSIGN_OR_RETURN(grant.table_id, stmt->OptId(2));
      grant.table = grant.table_id ? stmt->Text(3) : "*";
      auto permission = ParsePermission(stmt->Text(4));
      if (!permission.ok()) return Corruption("catalog: {}", permission.status().message());
      grant.permission = *permission;
      grants.push_back(std::move(grant));
    }
    return grants;
  }

  Status AuthorizeLocked(const Principal& principal, std::string_view project,
                         std::string_view table, Permission permission) {
    std::optional<Uuid> project_id, table_id;
    const bool fresh = CacheFreshLocked();
    std::string key = CacheKey(project, table);
    if (auto it = cached_ids_.find(key); fresh && it != cached_ids_.end()) {
      std::tie(project_id, table_id) = it->second;
    } else {
      auto stmt = Prepare(
          "SELECT p.id, t.id FROM projects p "
          "LEFT JOIN tables t ON t.project_id = p.id AND t.name = ? WHERE p.name = ?");
      stmt->Bind(table, project);
      AQ_ASSIGN_OR_RETURN(bool row, stmt->Step());
      if (row) {
        AQ_ASSIGN_OR_RETURN(project_id, stmt->OptId(0));
        AQ_ASSIGN_OR_RETURN(table_id, stmt->OptId(1));
      }
      if (fresh) CacheInsert(&cached_ids_, std::move(key), std::pair{project_id, table_id});
    }
    return AuthorizeTarget(principal, project, table, project_id, table_id, permission);
  }

  // --- Read cache ---------------------------------------------------------------------------
  // Secrets (by HMAC), projects, tables and the ids Authorize checks, as this
  // connection last read them. Valid while the database is unchanged: SQLite's
  // `PRAGMA data_version` moves when another connection (another process
  // sharing the file) commits, and sqlite3_total_changes64 when this one
  // writes (including writes rolled back: that only clears the cache). Both
  // are checked under mu_ before every cached read, so a revoked secret or a
  // deleted table is seen by the next request, in every process. The check is
  // one statement on the open connection (a read of the WAL index), instead
  // of a query per lookup.

  // Requires mu_. True when the cache may be used (and was emptied if stale);
  // false when the version could not be read (then nothing is cached).
  bool CacheFreshLocked() {
    int64_t version = -1;
    {
      auto stmt = Prepare("PRAGMA data_version");
      auto row = stmt->Step();
      if (!row.ok() || !*row) return false;
      version = stmt->Int(0);
    }
    const int64_t changes = sqlite3_total_changes64(db_);
    if (version != cache_version_ || changes != cache_changes_) {
      cached_principals_.clear();
      cached_projects_.clear();
      cached_tables_.clear();
      cached_ids_.clear();
      cache_version_ = version;
      cache_changes_ = changes;
    }
    return true;
  }
  static std::string CacheKey(std::string_view project, std::string_view table) {
    std::string key(project);
    key += '\0';
    key += table;
    return key;
  }
  // Bounded: a flood of distinct names or secrets empties a map rather than growing it.
  // Nothing read inside an open transaction is kept: it may still roll back.
  template <typename Map, typename Value>
  void CacheInsert(Map* map, std::string key, Value value) {
    if (sqlite3_get_autocommit(db_) == 0) return;
    if (map->size() >= kCacheEntries) map->clear();
    map->insert_or_assign(std::move(key), std::move(value));
  }
  static constexpr size_t kCacheEntries = 4096;

  std::mutex mu_;
  sqlite3* const db_;                                                // guarded by mu_
  Damage damage_;                                                    // guarded by mu_
  Clock* const clock_;
  const std::string secret_key_;  // of the stored secret hashes
  std::unordered_map<std::string, sqlite3_stmt*> statements_;        // guarded by mu_
  std::unordered_map<Uuid, SchemaPtr, UuidHash> schemas_;            // guarded by mu_
  // The read cache (CacheFreshLocked), all guarded by mu_.
  int64_t cache_version_ = -1;
  int64_t cache_changes_ = -1;
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>()(text); }
  };
  template <typename V>
  using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;
  StringMap<Principal> cached_principals_;  // by HashSecret
  StringMap<ProjectInfo> cached_projects_;  // by name
  StringMap<TableInfo> cached_tables_;      // by CacheKey(project, table)
  StringMap<std::pair<std::optional<Uuid>, std::optional<Uuid>>> cached_ids_;  // Authorize's lookup
};

}  // namespace

int SqliteCatalogSchemaVersion() { return kSchemaVersion; }

Result<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path,
                                                   const SqliteCatalogOptions& options) {
  if (options.clock == nullptr) return InvalidArgument("catalog: options.clock is null");
  // A file runs on the checksum VFS; ":memory:" and file: URIs of memory
  // databases never touch a file.
  const bool in_memory = path.empty() || path == ":memory:" || path.starts_with("file::memory:");
  const bool checksums = options.page_checksums && !in_memory;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           checksums ? ChecksumVfsName() : nullptr);
  if (rc != SQLITE_OK) {
    Status status = SqliteError(rc, db, fmt::format("opening '{}'", path));
    sqlite3_close_v2(db);
    return status;
  }
  sqlite3_extended_result_codes(db, 1);
  auto catalog = std::make_unique<SqliteCatalog>(db, path, options);
  Status status = catalog->Init(options.busy_timeout_ms, checksums);
  if (!status.ok()) return status.WithContext(fmt::format("opening catalog '{}'", path));
  return std::unique_ptr<Catalog>(std::move(catalog));
}

Result<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path) {
  return OpenSqliteCatalog(path, SqliteCatalogOptions{});
}

}  // namespace aquifer::engine
