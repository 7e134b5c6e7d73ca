#pragma once

// Catalog: the engine's metadata — projects, tables and their instances,
// secrets and grants, SQL jobs, idempotency keys, project quotas and the
// removals of deleted instances still to finish in the stores.
//
// Catalog is a pure abstract interface so that one process (SQLite, the
// default: OpenSqliteCatalog) and many processes sharing one database
// (Postgres: OpenPostgresCatalog, catalog_postgres.h) look the same to the
// engine. Every method is thread-safe and each mutation is one transaction: it
// happens entirely or not at all.
//
// Error codes mean the same across implementations:
//   InvalidArgument     bad names, schemas, flags or grant lists (the message names the rule
//                       or the field path)
//   NotFound            the named project, table, instance, secret or job does not exist
//   AlreadyExists       a create found the name taken
//   Unauthenticated     ResolveSecret got a secret that is not in the catalog
//   PermissionDenied    Authorize: the principal sees the target but may not do this
//   FailedPrecondition  the database was written by a newer Aquifer (schema version), or a job
//                       update would leave a finished state
//   Unavailable         the database is busy or unreachable; retrying may succeed
//   Corruption/Internal stored rows that do not parse, or a bug
//
// Lifecycle: open once per process and share; destroy after every user is done.
//
// Parsed schemas are cached by instance id (instances are immutable in shape),
// so hot lookups (GetTable, GetInstance) do not re-parse Avro JSON.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/types.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/engine/auth.h"

namespace aquifer::engine {

// Monthly byte quotas of a project; unset = unlimited.
struct Quotas {
  std::optional<int64_t> read_bytes = std::nullopt;
  std::optional<int64_t> write_bytes = std::nullopt;
  std::optional<int64_t> scan_bytes = std::nullopt;

  bool operator==(const Quotas&) const = default;
};

struct ProjectInfo {
  Uuid project_id;
  std::string name;
  int64_t created_ms = 0;
  Quotas quotas;
};

// What POST /v1/projects/{p}/tables asks for. The flags and retentions become
// those of the primary instance.
struct TableSpec {
  std::string name;
  std::string schema_json;        // Avro record schema
  std::vector<std::string> key;   // key field names, in key order
  bool use_log = true;
  bool use_index = true;
  bool use_warehouse = true;
  int64_t log_retention_ms = 0;   // 0 = forever
  int64_t index_retention_ms = 0;
  int64_t warehouse_retention_ms = 0;
};

struct TableInfo {
  Uuid table_id;
  Uuid project_id;
  std::string project;
  std::string name;
  int64_t created_ms = 0;
  // The primary instance, with its parsed schema (canonical Avro JSON in
  // primary.schema->avro_json(), key in primary.schema->key()).
  driver::InstanceInfo primary;
};

// A secret as listings show it; the plaintext is never stored.
struct SecretInfo {
  Uuid secret_id;
  bool is_admin = false;
  std::optional<Uuid> project_id;  // the project it was minted for; unset for the admin
  std::vector<Grant> grants;
  int64_t created_ms = 0;
};

// MintSecret's answer: the plaintext is returned this once.
struct MintedSecret {
  Uuid secret_id;
  std::string secret;
};

// A table a SQL job reads, as the engine resolved it at submission.
struct JobTable {
  std::string project;
  std::string table;
  Uuid instance_id;

  bool operator==(const JobTable&) const = default;
};

struct NewJob {
  Uuid secret_id = {};                // the secret that submitted it
  std::vector<JobTable> tables = {};  // every table the SQL reads
  std::string sql = {};
  // > 0: CreateJob fails with ResourceExhausted when the secret already has
  // this many jobs pending or running, counted in the transaction that
  // inserts the job, so processes submitting together never exceed it.
  int64_t max_unfinished = 0;
  // Set: the job already ran (POST /v1/sql with wait_ms, SqlService::Submit's
  // inline path) and is recorded finished, with this status, error, counters
  // and, when done, its rows (`result`, JobResultText's format). It is never
  // pending or running, so it does not count against max_unfinished.
  struct Finished {
    driver::JobStatus status = driver::JobStatus::kDone;
    std::string error = {};
    int64_t bytes_scanned = 0;
    int64_t rows = 0;
    std::string result = {};  // done: the rows; failed: empty
  };
  std::optional<Finished> finished = std::nullopt;
  // false: the commit need not reach stable storage before CreateJob returns
  // (SQLite: synchronous=NORMAL for this commit, Postgres: synchronous_commit
  // off). Only for finished jobs whose answer the client already holds: a
  // crash of the machine may forget the record, nothing else.
  bool sync = true;
};

struct JobInfo {
  Uuid job_id;
  Uuid secret_id;
  std::vector<JobTable> tables;
  std::string sql;
  driver::JobStatus status = driver::JobStatus::kPending;
  std::string error;          // set when failed
  int64_t bytes_scanned = 0;
  int64_t rows = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  // The job's rows are kept in the catalog (NewJob::finished), not in the
  // warehouse: read them with Catalog::GetJobResult.
  bool result_in_catalog = false;
};

struct JobUpdate {
  driver::JobStatus status = driver::JobStatus::kPending;
  std::string error = {};
  int64_t bytes_scanned = 0;
  int64_t rows = 0;
};

// An Idempotency-Key is remembered this long; a retry after that is a new write.
inline constexpr int64_t kIdempotencyKeyTtlMs = 24LL * 60 * 60 * 1000;
inline constexpr size_t kMaxIdempotencyKeyLength = 255;

// What ClaimIdempotencyKey found. A claim is *pending* from the claim until
// the write is durable in the queue, then *committed*; only a committed claim
// stands for a write that happened.
struct IdempotencyClaim {
  enum class State : uint8_t {
    // The caller holds the claim (the key was free, its earlier use expired,
    // or a pending claim's lease had run out and was taken over): write, then
    // CommitIdempotencyKey after the publish or ReleaseIdempotencyKey if it failed.
    kClaimed,
    // An earlier write with this key is durable: answer it, do not write again.
    kCommitted,
    // Another request holds the claim and has not finished: its write may
    // still fail. Do not answer success; wait and claim again, or refuse
    // with a retryable error.
    kPending,
  };
  State state = State::kClaimed;
  // kClaimed: the proposed write id; otherwise the earlier claim's write id.
  std::string write_id;
  // kPending: when the other claim's lease ends (it may be taken over then).
  int64_t lease_expires_ms = 0;
};

class Catalog {
 public:
  virtual ~Catalog() = default;
  Catalog() = default;
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // --- Projects ---------------------------------------------------------------------------

  // Creates a project with no quotas. InvalidArgument if the name breaks
  // [a-z][a-z0-9_]{0,62}; AlreadyExists if taken.
  virtual Result<ProjectInfo> CreateProject(std::string_view name) = 0;
  virtual Result<ProjectInfo> GetProject(std::string_view name) = 0;
  // All projects, by name.
  virtual Result<std::vector<ProjectInfo>> ListProjects() = 0;
  // Deletes the project with its tables, instances, the secrets minted for it
  // (and every grant on it). Returns the instances removed, so the engine can
  // remove their data from the drivers; the catalog no longer knows them.
  virtual Result<std::vector<driver::InstanceInfo>> DeleteProject(std::string_view name) = 0;
  // Replaces the project's quotas; negative limits are InvalidArgument.
  virtual Status SetProjectQuotas(std::string_view project, const Quotas& quotas) = 0;
  virtual Result<Quotas> GetProjectQuotas(std::string_view project) = 0;

  // --- Tables and instances ---------------------------------------------------------------

  // Validates the spec (name rule; Schema::Parse with the field path in the
  // message; non-negative retentions; at least one store) and creates the
  // table and its primary instance (a fresh random id) in one transaction.
  // NotFound without the project, AlreadyExists if the table name is taken.
  virtual Result<TableInfo> CreateTable(std::string_view project, const TableSpec& spec) = 0;
  virtual Result<TableInfo> GetTable(std::string_view project, std::string_view table) = 0;
  // The project's tables, by name. NotFound without the project.
  virtual Result<std::vector<TableInfo>> ListTables(std::string_view project) = 0;
  // Deletes the table, its instances and the grants on it; returns the
  // instances removed. Like DeleteProject, it also records each removed
  // instance as a pending removal (below), in the same transaction.
  virtual Result<std::vector<driver::InstanceInfo>> DeleteTable(std::string_view project,
                                                                std::string_view table) = 0;
  // Any instance by id (primary or not), with its project and table names.
  virtual Result<driver::InstanceInfo> GetInstance(const Uuid& instance_id) = 0;
  // Every instance of every table (the engine registers them again at start-up).
  virtual Result<std::vector<driver::InstanceInfo>> ListInstances() = 0;

  // --- Pending removals -------------------------------------------------------------------
  // Instances deleted from the catalog whose data the stores may still hold.
  // DeleteTable and DeleteProject add theirs atomically with the deletion, so
  // a crash between the catalog commit and the stores' RemoveInstance leaves
  // a record; the engine removes the data and then calls FinishRemoval, and
  // retries the rest in the background.

  // Pending removals, oldest first, with the schema they had.
  virtual Result<std::vector<driver::InstanceInfo>> ListPendingRemovals() = 0;
  // Records `instance` as pending removal (a worker wrote to it after its
  // deletion and could not remove the data). Idempotent.
  virtual Status AddPendingRemoval(const driver::InstanceInfo& instance) = 0;
  // The stores hold nothing of the instance: forgets it. Unknown ids are not an error.
  virtual Status FinishRemoval(const Uuid& instance_id) = 0;

  // --- Secrets and authorization ----------------------------------------------------------

  // Mints a secret for `project` with these grants (each name a table of the
  // project, which must exist, or "*"). InvalidArgument when it would grant
  // nothing or a name is bad; NotFound for a missing project or table. Who
  // may mint is the engine's check (admin, or manage on the project).
  virtual Result<MintedSecret> MintSecret(std::string_view project,
                                          const SecretGrants& grants) = 0;
  // With a plaintext (e.g. AQUIFER_ADMIN_SECRET, at least kMinAdminSecretLength
  // characters): makes it the only admin secret and returns it. Without one:
  // creates an admin secret if none exists and returns its plaintext, or
  // returns nullopt when one already exists (its plaintext is not kept).
  virtual Result<std::optional<std::string>> EnsureAdminSecret(
      const std::optional<std::string>& plaintext) = 0;
  // The principal a plaintext secret stands for, with its grants as of now.
  // Unauthenticated when no such secret exists (or it was stored under
  // another secret key). A secret still stored the pre-HMAC way (plain
  // SHA-256, from before schema version 5) is recognised once and rewritten
  // as its HMAC; EnsureAdminSecret with a plaintext rewrites it too.
  virtual Result<Principal> ResolveSecret(std::string_view plaintext) = 0;
  // Secrets minted for a project (never the admin), oldest first.
  virtual Result<std::vector<SecretInfo>> ListSecrets(std::string_view project) = 0;
  // Revokes a secret: deletes it, its grants and its idempotency keys. NotFound if unknown.
  virtual Status DeleteSecret(const Uuid& secret_id) = 0;
  // Whether `principal` may do `permission` on `project`, or on its `table`
  // when `table` is not empty, as the catalog stands now. OK, NotFound (it may
  // not see it, or it does not exist: the same message either way) or
  // PermissionDenied. See auth.h for the rules.
  virtual Status Authorize(const Principal& principal, std::string_view project,
                           std::string_view table, Permission permission) = 0;

  // --- SQL jobs ---------------------------------------------------------------------------

  // Records a new pending job with a fresh random id (used as the warehouse
  // job id); ResourceExhausted beyond NewJob::max_unfinished.
  virtual Result<JobInfo> CreateJob(const NewJob& job) = 0;
  // Sets status, error and counters, and updated_ms to now (the same status
  // again is a heartbeat: the process running a job refreshes it so). NotFound
  // if unknown; FailedPrecondition when the job is already done or failed
  // (finished jobs do not change) or would go from running back to pending.
  virtual Status UpdateJob(const Uuid& job_id, const JobUpdate& update) = 0;
  // Marks failed, with `error`, every pending or running job whose updated_ms
  // is before `updated_before_ms` (the process running it stopped refreshing
  // it: see SqlOptions::job_lease_ms); returns how many.
  virtual Result<int64_t> FailStaleJobs(int64_t updated_before_ms, std::string_view error) = 0;
  virtual Result<JobInfo> GetJob(const Uuid& job_id) = 0;
  // OK if `principal` may see the job: the admin, or the secret that
  // submitted it while it may still read every table the job reads. Anyone
  // else gets the NotFound an unknown job id gets.
  virtual Status CanReadJob(const Principal& principal, const JobInfo& job) = 0;
  // Jobs of `secret_id` not yet done or failed (pending or running), in every process.
  virtual Result<int64_t> CountUnfinishedJobs(const Uuid& secret_id) = 0;
  // Deletes the done and failed jobs that finished (their last update)
  // before `finished_before_ms`; GetJob then answers NotFound for them.
  // Returns how many. Pending and running jobs are never deleted.
  virtual Result<int64_t> PurgeFinishedJobs(int64_t finished_before_ms) = 0;
  // The rows a finished job keeps in the catalog (JobInfo::result_in_catalog):
  // the text stored by CreateJob, or nullopt once ExpireJobResults dropped it.
  // NotFound for an unknown job or one without rows in the catalog.
  virtual Result<std::optional<std::string>> GetJobResult(const Uuid& job_id) = 0;
  // Drops the catalog rows of jobs that finished before `finished_before_ms`
  // (result_ttl_ms); the jobs stay, their rows read as expired. Returns how many.
  virtual Result<int64_t> ExpireJobResults(int64_t finished_before_ms) = 0;

  // --- Idempotency keys -------------------------------------------------------------------

  // The life of a claim on (secret_id, key), each step one transaction:
  //
  //   (none) --Claim--> pending(owner, write_id, lease) --Commit--> committed(write_id)
  //                        |  \--Release (the publish failed)--> (none)
  //                        \--lease ran out, another Claim takes it over (compare-and-set
  //                            on owner and write_id) --> pending(new owner, new write_id)
  //
  // Claims `key` (1..kMaxIdempotencyKeyLength bytes) for `secret_id`'s write
  // `proposed_write_id`, made by the process `owner` (a random id per process,
  // for diagnostics and the takeover's compare-and-set), with a lease of
  // `lease_ms`. Answers kClaimed when the key is free, was last used more than
  // kIdempotencyKeyTtlMs ago, or is pending with a lease that has run out (a
  // process that died between claiming and publishing): the caller then holds
  // it. kCommitted with the earlier write id when a committed claim is younger
  // than kIdempotencyKeyTtlMs. kPending when another claim's lease still runs:
  // the caller must not answer success for it. NotFound for an unknown secret.
  //
  // The lease must outlast the longest publish: a claim taken over while its
  // owner is still publishing lets both writes through.
  virtual Result<IdempotencyClaim> ClaimIdempotencyKey(const Uuid& secret_id, std::string_view key,
                                                       std::string_view proposed_write_id,
                                                       std::string_view owner,
                                                       int64_t lease_ms) = 0;
  // Marks the pending claim of `key` by `secret_id` naming `write_id` committed:
  // the write is durable. OK when it already is. Aborted when the claim no
  // longer names `write_id` (its lease ran out and another request took it
  // over, or it was released): the write happened, but the key does not say so.
  virtual Status CommitIdempotencyKey(const Uuid& secret_id, std::string_view key,
                                      std::string_view write_id) = 0;
  // Undoes a pending claim whose write never happened (the publish failed):
  // deletes it only while it is pending and still names `write_id`, so a
  // retry can write. Releasing a claim that is gone, committed or names
  // another write is not an error and changes nothing.
  virtual Status ReleaseIdempotencyKey(const Uuid& secret_id, std::string_view key,
                                       std::string_view write_id) = 0;
  // Deletes committed claims older than kIdempotencyKeyTtlMs and pending
  // claims whose lease has run out; returns how many.
  virtual Result<int64_t> PurgeIdempotencyKeys() = 0;
};

// Checks every Catalog implementation makes before touching its database
// (catalog_checks.cc), so both answer the same InvalidArgument:
// CheckTableSpec validates the name rule, at least one store, non-negative
// retentions and the schema (field path in the message) and returns the
// parsed schema; CheckQuotas refuses negative limits.
Result<schema::SchemaPtr> CheckTableSpec(std::string_view project, const TableSpec& spec);
Status CheckQuotas(std::string_view project, const Quotas& quotas);
// A new table of `project` as `spec` asks, with fresh random table and primary
// instance ids (CreateTable of every implementation).
TableInfo NewTable(std::string_view project, const Uuid& project_id, const TableSpec& spec,
                   schema::SchemaPtr schema, int64_t now_ms);
// CreateJob's answer beyond NewJob::max_unfinished (`busy` jobs unfinished).
Status TooManyUnfinishedJobs(int64_t busy);

struct SqliteCatalogOptions {
  Clock* clock = Clock::System();  // created/updated times, idempotency expiry
  // The key of the stored secret hashes (HashSecret): raw bytes, from
  // <data_dir>/secret.key (Engine::Open). Every process sharing the catalog
  // must use the same key; another key authenticates no stored secret.
  // Empty only in tests.
  std::string secret_key = {};
  int busy_timeout_ms = 5000;      // how long a write waits for another process's lock
  // Page checksums (checksum_vfs.h): the file runs on the checksum VFS, and a
  // file made without them is converted at open. false opens it as binaries
  // before page checksums did (tests make such files with it).
  bool page_checksums = true;
};

// Opens (creating if needed) a SQLite catalog at `path`, or ":memory:" for a
// private in-memory one, and brings its schema up to date: the migrations
// this binary knows that the file lacks are applied in one transaction.
// FailedPrecondition if the file was migrated by a newer binary. The
// connection uses WAL journaling (files only), a busy timeout and foreign keys.
// Every page of a file carries a checksum (SqliteCatalogOptions::page_checksums);
// a page that fails it, like any damage SQLite reports, makes this call and
// every later one answer Corruption naming the file.
Result<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path,
                                                   const SqliteCatalogOptions& options);
Result<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path);

// The schema version this binary's SQLite catalog migrates to.
int SqliteCatalogSchemaVersion();

}  // namespace aquifer::engine
