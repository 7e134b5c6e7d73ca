#pragma once

// SqlService: warehouse SQL for the engine — check, rewrite, run, page.
//
// Users write one SELECT naming tables as `project.table` (optionally quoted:
// "project"."table"). CheckSql tokenises the statement (strings, quoted
// identifiers, comments, dollar quotes) and refuses, at submission:
//  - anything but a single SELECT (or WITH ... SELECT) statement;
//  - table references (after FROM / JOIN / a comma in a FROM list) that are
//    not project.table or a CTE name declared in the same statement;
//  - table functions and file access (read_csv(...), 'file.parquet', glob ...),
//    ATTACH, COPY, PRAGMA, INSTALL/LOAD, SET, CALL, EXPORT/IMPORT, and any
//    catalog or system table or function (information_schema, pg_catalog,
//    duckdb_*, sqlite_*, pragma_*, current_setting, getenv ...).
// Each reference is then resolved in the catalog with a read check (NotFound
// for tables the principal may not see, with the same message as a missing
// one), and replaced by the warehouse driver's TableName(). As a second line
// of defence, the driver's analysis must name no physical table outside the
// rewritten set.
//
// Jobs are recorded in the catalog (so only secrets that may read them get
// them, and any process sharing the catalog can answer for them) and run on
// the warehouse driver, which keeps a done job's rows in its own database.
// The process running a job refreshes its catalog record every
// job_heartbeat_ms and writes its final status when it ends; a pending or
// running job whose record is older than job_lease_ms lost its process and is
// marked failed by whoever reads it (and by every SqlService at start-up).
// Thread-safe.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/cursor.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/engine/auth.h"
#include "aquifer/engine/catalog.h"
#include "aquifer/sql/sql_check.h"

namespace aquifer::engine {

// CheckSql and SqlTableRef live in aquifer/sql (a module without engine
// dependencies, so it can be fuzzed alone); these names keep them here too.
using sql::CheckSql;
using sql::SqlTableRef;

struct SqlAnalysisResult {
  std::vector<std::string> tables;  // "project.table"
  std::vector<JobTable> resolved;   // with instance ids
  std::string physical_sql;         // rewritten for the warehouse
  int64_t bytes_scanned_estimate = 0;
};

// Limits on SQL jobs (aquifer.toml [sql]). The job limits go to the
// warehouse driver with every job, which enforces them; the engine enforces
// max_jobs_per_secret itself.
struct SqlOptions {
  driver::JobLimits job;
  // Jobs one secret may have pending or running at once; Submit answers
  // ResourceExhausted (HTTP 429) beyond it. 0: no limit. Counted in the
  // catalog (Catalog::CountUnfinishedJobs), so across every process sharing
  // it; jobs whose process stopped (job_lease_ms) are failed first and do not
  // count.
  int32_t max_jobs_per_secret = 4;
  // How often the process running a job refreshes its catalog record (and
  // writes the status the warehouse reports). Must be below job_lease_ms.
  int64_t job_heartbeat_ms = 5'000;
  // A pending or running job whose catalog record was not refreshed for this
  // long is failed: "the process running this job stopped; submit it again".
  int64_t job_lease_ms = 15'000;
  // A done or failed job's record (status, counters, error) is deleted from
  // the catalog this long after it finished (the engine's flush thread, with
  // the Idempotency-Key purge); GET /v1/jobs/{id} then answers 404. At least
  // the job's result_ttl_ms, so rows never outlive their job.
  int64_t job_history_ms = int64_t{7} * 24 * 3600 * 1000;
};

struct SqlJobRows {
  std::string columns_json;  // [{"name","type"}]
  std::string data_json;     // [[...],...]
  std::string next_cursor;   // a signed job cursor (driver::CursorType::kJob); empty at the end
};

// SubmitAndWait's answer: the job as the catalog records it, and when it is
// done, the first page of its rows.
struct SqlWaited {
  JobInfo job;
  std::optional<SqlJobRows> rows;  // set when the job is done
  bool inline_answer = false;      // answered by the warehouse's RunSmall (no warehouse job)
};

// The bounds of the inline path (POST /v1/sql with wait_ms): results larger
// than these run as a job.
inline constexpr int64_t kInlineMaxRows = 1000;
inline constexpr int64_t kInlineMaxBytes = int64_t{1} << 20;

// {"job_id","status","error","bytes_scanned","rows"} (error null unless failed).
std::string JobInfoJson(const JobInfo& job);

class SqlService {
 public:
  // Fails the catalog's jobs whose process stopped (job_lease_ms) and starts
  // the heartbeat thread.
  SqlService(Catalog* catalog, driver::WarehouseService* warehouse,
             const driver::CursorCodec* cursors, Clock* clock, SqlOptions options = {});
  // Stops the heartbeat and marks the jobs this service started and that are
  // still pending or running failed ("the server stopped"): nobody would
  // refresh them any more.
  ~SqlService();
  SqlService(const SqlService&) = delete;
  SqlService& operator=(const SqlService&) = delete;

  // Check, resolve with read permission, rewrite, and dry-run on the warehouse.
  Result<SqlAnalysisResult> Analyze(const Principal& who, std::string_view sql);
  // Analyze, record the job in the catalog, start it on the warehouse under
  // options.job; returns the job. ResourceExhausted when the secret already
  // has max_jobs_per_secret jobs pending or running, or the warehouse's
  // queue is full.
  Result<JobInfo> Submit(const Principal& who, std::string_view sql);
  // The same with the analysis already made (Analyze of the same text and principal).
  Result<JobInfo> Submit(const Principal& who, std::string_view sql, const SqlAnalysisResult& analysis);
  // Submit, then wait up to `wait_ms` for the job to finish; when it is done,
  // the first page of its rows (`limit`) comes with it. A query whose result is
  // small (kInlineMaxRows, kInlineMaxBytes, within wait_ms and the job
  // limits) is first run at once by the warehouse (RunSmall) and recorded in
  // the catalog as a finished job with its rows, in one commit that need not
  // be synced (the client holds the answer; a machine crash may forget the
  // record): no warehouse job, no result table. Otherwise, or when the
  // driver cannot, the query runs as a normal job. The per-secret job limit
  // holds for both: an inline run counts as an unfinished job of the secret
  // while it runs (in this process; the catalog counts the others').
  Result<SqlWaited> SubmitAndWait(const Principal& who, std::string_view sql,
                                  const SqlAnalysisResult& analysis, int64_t wait_ms, int32_t limit);
  // {"job_id","status","error","bytes_scanned","rows"}; NotFound unless CanReadJob.
  Result<std::string> JobJson(const Principal& who, std::string_view job_id);
  // Rows of a done job: `cursor` empty for the first page or a job cursor from
  // a previous page. FailedPrecondition while pending/running, when failed,
  // and once the rows expired (options.job.result_ttl_ms after the job
  // finished; the job itself still reads as done).
  Result<SqlJobRows> Rows(const Principal& who, std::string_view job_id, std::string_view cursor,
                          int32_t limit);
  // The same for a decoded job cursor (GET /v1/cursor).
  Result<SqlJobRows> RowsFromCursor(const Principal& who, const driver::Cursor& cursor,
                                    int32_t limit);

 // Refreshes the catalog records of the jobs this service runs and writes
  // the final status of those that ended (the heartbeat thread calls it
  // every job_heartbeat_ms).
  void Heartbeat();

 private:
  // What this process knows of a job it started and has not seen end.
  struct LocalJob {
    Uuid secret_id;
    std::vector<JobTable> tables;
  };

  // Brings the catalog's record of an unfinished job up to date: with the
  // warehouse's status when the warehouse knows the job, else failed when
  // this process ran it (the warehouse forgot it) or its lease ran out.
  Result<JobInfo> Reconcile(JobInfo job);
  // Fails every pending or running job past its lease; returns how many (0
  // when the catalog cannot: Catalog::FailStaleJobs).
  int64_t FailStaleJobs();
  // Writes what the warehouse says of each of `secret_id`'s local jobs that
  // ended (before counting the secret's unfinished jobs).
  void SettleLocalJobs(const std::optional<Uuid>& secret_id);
  bool IsLocal(const Uuid& job_id);
  void ForgetLocal(const Uuid& job_id);
  void HeartbeatLoop();
  // The rows of a job kept in the catalog (JobInfo::result_in_catalog).
  Result<SqlJobRows> CatalogRows(const JobInfo& job, std::string_view page, int32_t limit);

  Catalog* catalog_;
  driver::WarehouseService* warehouse_;
  const driver::CursorCodec* cursors_;
  Clock* clock_;
  const SqlOptions options_;

  std::mutex submit_mu_;  // serialises count-then-create in Submit (this process)
  std::mutex mu_;
  std::unordered_map<Uuid, LocalJob, UuidHash> local_;  // guarded by mu_
  std::unordered_map<Uuid, int64_t, UuidHash> inline_runs_;  // guarded by mu_: per secret, in flight
  int64_t last_result_expiry_ms_ = 0;                   // guarded by mu_
  bool stopping_ = false;                               // guarded by mu_
  std::condition_variable stop_cv_;
  std::thread heartbeat_;  // started last
};

}  // namespace aquifer::engine
