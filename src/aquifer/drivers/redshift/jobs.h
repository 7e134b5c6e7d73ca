#pragma once

// Jobs, dry runs and paged results in SQL both Redshift and PostgreSQL run
// (the "portable" jobs), for a Redshift server, where the Postgres warehouse's
// job code cannot run (EXPLAIN (FORMAT JSON), json_build_array, uuid/bytea
// tables). On PostgreSQL the driver uses the Postgres warehouse's jobs unless
// `jobs = portable`, which the conformance suite sets for a second run so
// this code is tested against a real server too.
//
// - Dry run: the statement's first keyword must be SELECT or WITH; `EXPLAIN
//   <sql>` (text: Redshift's "XN Seq Scan on t  (cost=... rows=R width=W)",
//   PostgreSQL's "Seq Scan on t ..."); a plan node that inserts, updates or
//   deletes is refused; the tables are the relations scanned, the bytes
//   estimate the sum of rows × width over the scans (ParseExplain).
// - Job: a thread with its own connection; `BEGIN READ ONLY`, `SET timezone
//   TO 'UTC'`, `SET statement_timeout` before each statement (what is left of
//   the job's timeout), the dry run's checks, then the query through a
//   cursor, FETCH FORWARD 1000 rows at a time in text format, each row
//   rendered as a JSON array in the driver by the column's type (RenderValue:
//   timestamps as epoch ms, bytes as base64, numbers exact, SUPER/json as
//   JSON). The caps stop the fetch as for the Postgres warehouse.
// - Results: `redshift_job_results` (one row per done job) and
//   `redshift_job_rows` (row JSON in parts of at most 60000 bytes, Redshift's
//   VARCHAR tops at 65535), so every process sharing the database pages a
//   done job's rows, also after a restart. Tokens `o<offset>`.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/postgres/jobs.h"
#include "aquifer/drivers/postgres/pg.h"
#include "aquifer/drivers/redshift/dialect.h"

namespace aquifer::drivers::redshift {

struct ExplainSummary {
  std::vector<std::string> relations;  // as EXPLAIN names them, each once, in plan order
  int64_t bytes = 0;                   // sum of rows × width over the scan nodes
  bool modifies = false;               // an Insert/Update/Delete node
};
ExplainSummary ParseExplain(const std::vector<std::string>& lines);

// One value of a text-format result as JSON, by the column's type OID; `null`
// for SQL NULL.
Result<std::string> RenderValue(unsigned type_oid, std::optional<std::string_view> text);
std::string TypeName(unsigned type_oid);

class PortableJobs {
 public:
  // `purge(conn, sql)`: deletes the expired rows of the tables `sql` names
  // (retention), on the job's connection before its transaction.
  using Purge = std::function<Status(postgres::Connection& conn, std::string_view sql)>;

  PortableJobs(postgres::Pool* pool, std::string schema, Server server, Clock* clock, Purge purge);
  ~PortableJobs();

  // Creates the result tables through `ddl` (the driver's: the schema created too,
  // under a lock on PostgreSQL).
  Status Init(const std::function<Status(const std::string&)>& ddl);
  Result<driver::QueryAnalysis> Analyze(std::string_view sql);
  Result<driver::Job> Start(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options);
  Result<driver::Job> Poll(const Uuid& job_id);
  Result<driver::RowPage> ReadRows(const Uuid& job_id, std::string_view page, int32_t limit);
  Status Reset();  // cancels running jobs, empties the result tables

 private:
  Result<driver::QueryAnalysis> AnalyzeOn(postgres::Connection& conn, std::string_view sql);
  // A job (postgres::JobRunner::Hooks::run): the query on its own connection, its result stored.
  Result<postgres::JobRunner::Totals> Run(postgres::Connection& conn, const Uuid& job_id, const std::string& sql,
                                          const driver::JobOptions& options,
                                          const std::function<int64_t()>& remaining_ms);
  Status Store(postgres::Connection& conn, const Uuid& job_id, const std::vector<driver::Column>& columns,
               const std::vector<std::string>& rows, int64_t bytes_scanned, int64_t result_ttl_ms);
  Result<driver::Job> FindStored(const Uuid& job_id);  // a done job of any process, from redshift_job_results
  Status DropExpired(int64_t now_ms);

  postgres::Pool* const pool_;
  const std::string schema_;
  const Server server_;
  Clock* const clock_;
  const Purge purge_;
  const std::string results_;  // quoted schema.redshift_job_results
  const std::string rows_;     // quoted schema.redshift_job_rows
  postgres::JobRunner runner_;  // last: stopped (its threads use the members above) before they go
};

}  // namespace aquifer::drivers::redshift
