#pragma once

// The Postgres WarehouseService: one typed table per instance,
// `"<schema>"."i_<32 hex digits>"`, mirroring the Avro schema so psql users
// read ordinary columns (nested records as jsonb, arrays of primitives as
// Postgres arrays), plus `__key bytea` and `__timestamp timestamptz`.
// Rows arrive with COPY; dry runs come from EXPLAIN; jobs run on their own
// connections inside READ ONLY transactions with a statement timeout.
// README.md beside this file has the type mapping and the job design.
//
// Config keys: url, schema, pool_size (pg.h). Each running job holds one
// more connection of its own, outside the pool.

#include <memory>
#include <string>
#include <string_view>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/postgres/pg.h"

namespace aquifer::drivers::postgres {

struct WarehouseOptions {
  ConnectionOptions connection;
  driver::Limits limits;
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
};

Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config);

// An instance's table: "<schema>"."i_<32 hex digits>". The Redshift driver
// names its tables so too (on PostgreSQL this warehouse runs its jobs on them).
std::string InstanceTable(std::string_view schema, const Uuid& instance_id);
// The capabilities of a warehouse whose jobs' rows are stored in the database
// (this one, Redshift's): dry runs estimate bytes, retries are not deduplicated.
driver::WarehouseCapabilities StoredRowsCapabilities(const driver::Limits& limits);

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock);

}  // namespace aquifer::drivers::postgres
