#pragma once

// WarehouseService: every record of an instance as rows of a SQL table, and
// asynchronous SQL jobs over them.
//
// Each instance gets one table holding the schema's fields plus two hidden
// columns, `__key` (the encoded key, bytes) and `__timestamp` (the record's
// timestamp). Nested records become structs, arrays become lists where the
// backend has them (JSON or flattened columns elsewhere).
//
// SQL reaching a driver is already checked and rewritten by the engine: it is
// one SELECT whose only table references are identifiers returned by
// TableName(). Jobs have caller-chosen ids; status moves pending → running →
// done | failed. Result columns whose names begin with "__" are dropped.
//
// Retention: InstanceInfo::warehouse_retention_ms (0 = forever) bounds how
// old a row the instance serves and keeps, by the rule of lookup_service.h
// ("Retention"): a row is expired when its `__timestamp` < now −
// retention, now by the driver's clock, with the retention of the latest
// InstanceInfo the driver saw for the instance (RegisterInstance,
// WriteToWarehouse, PurgeExpired), so a retention changed later applies.
// A record already expired when written is not stored. A job never sees an
// expired row, purged or not (each driver's README says how), and
// PurgeExpired deletes them; the engine calls it for every instance with a
// retention once per `retention_purge_interval_ms`.
//
// Fits DuckDB (appender, thread pool), Postgres, BigQuery (streaming insert,
// dry-run, query jobs), Redshift (S3 + COPY), ClickHouse (HTTP) and a mock
// that discards. All methods are thread-safe.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/types.h"

namespace aquifer::driver {

struct WarehouseCapabilities {
  Limits limits;
  bool dry_run_bytes = true;  // AnalyzeQuery returns a bytes estimate
  bool stores_rows = true;    // written rows are queryable (false: a driver that discards, e.g. the mock)
  bool dedups_retries = false;  // a retried batch (same key, timestamp, record) is not stored twice
};

struct QueryAnalysis {
  int64_t bytes_scanned_estimate = 0;
  std::vector<std::string> tables;  // physical tables referenced, as TableName() spells them
};

// The limits a job runs under. The driver enforces each one itself and fails
// the job (status failed, never a crash or a partial result) with a message
// that names the limit. 0 turns a limit off. Every driver honours the same
// limits; the engine sets them from its configuration ([sql] in aquifer.toml).
struct JobLimits {
  // Wall time from the job's start; then it fails with "query exceeded its
  // timeout of N ms".
  int64_t timeout_ms = 300'000;
  // Result rows kept. The driver stops fetching as soon as the result has
  // more, so the rows beyond the cap are never materialised; the job fails
  // with "result exceeds N rows; add LIMIT". Exactly N rows pass.
  int64_t max_result_rows = 1'000'000;
  // Result size: the in-memory size of the rows fetched so far (the
  // backend's value widths, strings and blobs at their length plus 16 bytes).
  // Enforced chunk by chunk like max_result_rows; "result exceeds N bytes".
  int64_t max_result_bytes = int64_t{256} << 20;
  // A done job's rows are dropped this long after it finished; then
  // ReadJobRows answers FailedPrecondition ("expired") and PollJob still
  // reports the job as done.
  int64_t result_ttl_ms = 3'600'000;
};

struct JobOptions : JobLimits {
  int64_t max_bytes_scanned = 0;  // 0: no cap below the backend's own
};

enum class JobStatus : uint8_t { kPending, kRunning, kDone, kFailed };
std::string_view JobStatusName(JobStatus status);

struct Job {
  Uuid job_id;
  JobStatus status = JobStatus::kPending;
  std::string error;  // set only when failed
  int64_t bytes_scanned = 0;
  int64_t rows = 0;   // result rows, when done
};

struct Column {
  std::string name;
  std::string type;  // the backend's type name, e.g. "BIGINT", "VARCHAR", "STRUCT(...)"
};

struct RowPage {
  std::vector<Column> columns;
  std::vector<std::string> rows;  // each a JSON array of the row's values, in column order
  std::string next;               // page token; empty when no more rows
};

// RunSmall's bounds: a query answered at once must stay within all three.
struct SmallQueryLimits {
  int64_t timeout_ms = 1'000;     // wall time
  int64_t max_rows = 1'000;       // result rows
  int64_t max_bytes = 1 << 20;    // result size, counted as for JobLimits::max_result_bytes
};

// A small query's whole result: columns and rows as ReadJobRows gives them.
struct SmallResult {
  std::vector<Column> columns;
  std::vector<std::string> rows;  // each a JSON array of the row's values, in column order
};

class WarehouseService {
 public:
  virtual ~WarehouseService() = default;
  WarehouseService() = default;
  WarehouseService(const WarehouseService&) = delete;
  WarehouseService& operator=(const WarehouseService&) = delete;

  virtual WarehouseCapabilities capabilities() const = 0;

  // Creates the instance's table (idempotent).
  virtual Status RegisterInstance(const InstanceInfo& instance) = 0;
  // Drops the instance's table and any of its pending rows. Idempotent.
  virtual Status RemoveInstance(const InstanceInfo& instance) = 0;
  // The quoted SQL identifier of the instance's table: deterministic and unique per instance.
  virtual std::string TableName(const InstanceInfo& instance) const = 0;

  // Appends rows. Exactly once per group, as LookupService::WriteRecords
  // (lookup_service.h, "Exactly once"): when `groups` is not empty, a group
  // whose id the instance already applied is skipped whole, and the ids of
  // the groups appended are stored in the same transaction as their rows and
  // kept at least for the driver's applied-id window (DuckDB:
  // `applied_window_ms`, default 7 days). InvalidArgument (nothing written)
  // when the counts do not add up to records.size() or an id is empty or
  // over kMaxRecordGroupIdSize. NotFound or FailedPrecondition when the
  // instance's table is missing or does not match (RegisterInstance again).
  // Without groups, retries of the same records should not duplicate them
  // where the backend can deduplicate (best effort; `dedups_retries`).
  virtual Status WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                                  std::span<const RecordGroup> groups) = 0;

  // Dry run: checks the SQL compiles and estimates the bytes it would scan.
  // InvalidArgument with the backend's message for bad SQL.
  virtual Result<QueryAnalysis> AnalyzeQuery(std::string_view sql) = 0;
  // Starts a job and returns at once. AlreadyExists if the id is taken;
  // ResourceExhausted when the driver's queue of jobs waiting to run is full
  // (retry later).
  virtual Result<Job> StartQuery(const Uuid& job_id, std::string_view sql,
                                 const JobOptions& options) = 0;
  virtual Result<Job> PollJob(const Uuid& job_id) = 0;
  // A page of a done job's rows. `page` is empty for the first page, then a
  // previous page's `next`. FailedPrecondition if the job is not done,
  // NotFound for an unknown job, InvalidArgument for a malformed page token.
  // FailedPrecondition too once the rows expired (JobLimits::result_ttl_ms).
  virtual Result<RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) = 0;
  // Runs `sql` at once on the calling thread, without a job or a stored
  // result, and returns its whole result (the same columns, types and JSON
  // rows a job's ReadJobRows would give) when it stays within `limits`.
  // NotSupported when this driver (or this query's column types) cannot
  // answer so: the caller runs a job instead. TooLarge past max_rows or
  // max_bytes, Timeout past timeout_ms (the query is interrupted); the
  // caller then runs a job. InvalidArgument with the backend's message when
  // the query fails at run time (a job would fail with it). Retention holds
  // as for jobs: no expired row is read.
  virtual Result<SmallResult> RunSmall(std::string_view sql, const SmallQueryLimits& limits) {
    (void)sql;
    (void)limits;
    return NotSupported("this warehouse driver runs every query as a job");
  }

  // Deletes the instance's expired rows now ("Retention" above) and returns
  // how many it deleted; remembers the instance's retention for later jobs.
  // OK (0) when the instance has no retention or no table.
  virtual Result<int64_t> PurgeExpired(const InstanceInfo& instance) = 0;
  // Tests and diagnostics: the rows the instance's table physically holds,
  // expired or not (no purge, no age filter); 0 when it has no table.
  virtual Result<int64_t> CountStoredRows(const InstanceInfo& instance) = 0;

  virtual Status Reset() = 0;
};

}  // namespace aquifer::driver
