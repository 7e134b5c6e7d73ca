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
// them) and run on the warehouse driver; status is reconciled on each poll.
// Thread-safe.

#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <string>
#include <string_view>
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
  // ResourceExhausted (HTTP 429) beyond it. 0: no limit. Counted per
  // process (each gateway counts the jobs it started).
  int32_t max_jobs_per_secret = 4;
};

struct SqlJobRows {
  std::string columns_json;  // [{"name","type"}]
  std::string data_json;     // [[...],...]
  std::string next_cursor;   // a signed job cursor (driver::CursorType::kJob); empty at the end
};

class SqlService {
 public:
  SqlService(Catalog* catalog, driver::WarehouseService* warehouse,
             const driver::CursorCodec* cursors, Clock* clock, SqlOptions options = {});

  // Check, resolve with read permission, rewrite, and dry-run on the warehouse.
  Result<SqlAnalysisResult> Analyze(const Principal& who, std::string_view sql);
  // Analyze, record the job in the catalog, start it on the warehouse under
  // options.job; returns the job. ResourceExhausted when the secret already
  // has max_jobs_per_secret jobs pending or running, or the warehouse's
  // queue is full.
  Result<JobInfo> Submit(const Principal& who, std::string_view sql);
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

 private:
  // Reserves one of the secret's job slots, after dropping its jobs that
  // finished; ResourceExhausted when none is free.
  Status ReserveJobSlot(const Uuid& secret_id);
  // Ends a reservation: `job_id` now runs (or nothing, when it did not start).
  void EndReservation(const Uuid& secret_id, const std::optional<Uuid>& job_id);

  Catalog* catalog_;
  driver::WarehouseService* warehouse_;
  const driver::CursorCodec* cursors_;
  Clock* clock_;
  const SqlOptions options_;

  struct InFlight {
    std::vector<Uuid> jobs;  // started, not yet seen finished
    int32_t reserved = 0;    // submissions between the check and the start
  };
  std::mutex mu_;
  std::unordered_map<Uuid, InFlight, UuidHash> in_flight_;  // by secret; guarded by mu_
};

}  // namespace aquifer::engine
