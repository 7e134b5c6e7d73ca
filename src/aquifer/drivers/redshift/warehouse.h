#pragma once

// The Redshift WarehouseService: one table per instance,
// `"<schema>"."i_<32 hex digits>"`, in Redshift's dialect (dialect.h: SUPER
// for records and arrays, DISTSTYLE/DISTKEY/SORTKEY), over the Postgres wire
// protocol through the Postgres driver's libpq layer (postgres/pg.h). Rows
// arrive by COPY from a JSON file staged in S3 (s3.h), or by multi-row INSERT
// (the fallback: no bucket configured, or a PostgreSQL server, which cannot
// COPY from S3). The server is detected from `SELECT version()`; on
// PostgreSQL the Redshift-only clauses are left out and jobs, dry runs and
// paged results are the Postgres warehouse's own (shared, not copied). What
// was tested against what: README.md beside this file.

#include <memory>
#include <optional>
#include <string>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/postgres/pg.h"
#include "aquifer/drivers/redshift/dialect.h"
#include "aquifer/drivers/redshift/s3.h"

namespace aquifer::drivers::redshift {

enum class Ingest { kAuto, kCopy, kInsert };

struct WarehouseOptions {
  postgres::ConnectionOptions connection;
  driver::Limits limits;
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
  std::optional<Server> server;  // unset: detected from version()
  TableLayout layout;
  Ingest ingest = Ingest::kAuto;
  std::optional<S3Options> s3;   // set when s3_bucket is configured
  std::string s3_prefix = "aquifer/";
  CopyAuthorization copy_auth;   // iam_role, else the S3 keys
  bool s3_gzip = true;           // staging files gzip-compressed (COPY ... GZIP)
  size_t insert_batch_rows = 1000;
  // Jobs in SQL both servers run (jobs.h) also on PostgreSQL (config `jobs =
  // portable`; `auto`: the Postgres warehouse's jobs there). Always on Redshift.
  bool portable_jobs = false;
};

// Keys: url, schema, pool_size, applied_window_ms, server (auto | redshift |
// postgres), diststyle, distkey, sortkey (comma-separated), ingest (auto |
// copy | insert), s3_bucket, s3_prefix, s3_region, s3_endpoint,
// s3_access_key_id, s3_secret_access_key, s3_session_token, s3_gzip, iam_role,
// insert_batch_rows, jobs (auto | portable). README.md has the defaults.
Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config);

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock);

// The staging object's key for one COPY: <prefix><instance hex>/<uuid>.json[.gz].
std::string StagingKey(std::string_view prefix, const Uuid& instance_id, const Uuid& batch_id, bool gzip = false);

// The staging file of rows (RowValues): their JsonLine()s, gzip-compressed when `gzip`.
Result<std::string> StagingBody(const schema::Schema& schema,
                                const std::vector<const std::vector<std::optional<std::string>>*>& rows, bool gzip);

}  // namespace aquifer::drivers::redshift
