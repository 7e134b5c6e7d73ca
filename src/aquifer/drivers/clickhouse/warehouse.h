#pragma once

// The ClickHouse WarehouseService over the HTTP interface (http.h): one
// MergeTree table per instance, `db`.`i_<32 hex digits>`, ordered by `__key`,
// mirroring the Avro schema (records as named Tuple, arrays as Array, nullable
// scalars as Nullable; what ClickHouse 18.16 cannot hold as JSON text in a
// String), plus `__key String` (hex), `__timestamp Int64` (epoch ms) and
// `__group String` (the write group a row came in), with each group's marker in
// `__aq_groups` written before its rows (exactly once).
// Rows go in by INSERT ... FORMAT JSONEachRow, at most 1,000,000 rows per
// INSERT (one part: all or nothing). Jobs run `CREATE TABLE j_<id> ... AS
// SELECT` under a query id (KILL QUERY on timeout) and page that table; their
// state lives in `__aq_jobs`, so a new driver finds them. README.md beside
// this file has the options, the mapping and what the driver guarantees.

#include <memory>
#include <string>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/registry.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/clickhouse/http.h"

namespace aquifer::drivers::clickhouse {

struct WarehouseOptions {
  HttpOptions http;
  std::string database = "aquifer";
  driver::Limits limits;
  // How long a claim on a write group holds off other writers; a writer only
  // sends rows within the first half of its claim (README.md, "Exactly once").
  int64_t group_claim_ms = 60'000;
  // How long group claims are kept: a group redelivered later than this is
  // written again (the ReplacingMergeTree folds the copy when it merges).
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
  // A running job's heartbeat in `__aq_jobs`; a job whose heartbeat is older
  // than 6 of these is reported failed (its driver stopped).
  int64_t job_heartbeat_ms = 5'000;
};

// Keys: endpoint (required), database, user, password_env, request_timeout_ms,
// group_claim_ms, applied_window_ms, job_heartbeat_ms, max_key_size,
// max_record_size, max_records_in_batch.
Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config);

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock);

// Registers the "clickhouse" WarehouseService factory.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::clickhouse
