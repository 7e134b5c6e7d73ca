#pragma once

// The DuckDB WarehouseService ("duckdb", also "embedded"): every instance is a
// table in one DuckDB database file, jobs run on a small thread pool and
// their results are materialised into tables of an attached in-memory
// database. README.md in this folder describes naming, type mapping, jobs,
// result encoding, the byte estimate and deduplication.
//
// Config keys:
//   path          database file; default <data_dir>/warehouse.duckdb; ":memory:" allowed
//   job_threads   threads running jobs (default 2)
//   dedup_window  recent records remembered per instance to drop retried
//                 duplicates of writes without group ids (default 100000; 0 disables)
//   applied_window_ms  how long applied group ids are kept for exactly-once
//                 writes (default 7 days)
//   memory_limit  DuckDB's memory_limit, e.g. "1GB" (default: DuckDB's own)

#include <memory>

#include "aquifer/driver/registry.h"
#include "aquifer/driver/warehouse_service.h"

namespace aquifer::drivers::duckdb {

Result<std::shared_ptr<driver::WarehouseService>> OpenWarehouse(const driver::Config& config,
                                                                const driver::DriverContext& context);

// Registers the WarehouseService factories "duckdb" and "embedded".
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::duckdb
