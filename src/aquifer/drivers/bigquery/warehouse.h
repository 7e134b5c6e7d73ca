#pragma once

// The BigQuery WarehouseService over the REST API v2 (rest.h): one table per
// instance, `project.dataset.i_<32 hex digits>`, mirroring the Avro schema
// (records as RECORD, arrays as REPEATED), plus `__key BYTES`,
// `__timestamp TIMESTAMP` and `__group STRING` (the write group a row came
// in: the exactly-once marker). Rows arrive by tabledata.insertAll with an
// insertId; dry runs are query jobs with dryRun; jobs are query jobs polled
// with jobs.get and paged with getQueryResults. README.md beside this file
// has the options, the type mapping and what the driver guarantees.

#include <memory>
#include <string>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/registry.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/bigquery/rest.h"

namespace aquifer::drivers::bigquery {

struct WarehouseOptions {
  RestOptions rest;
  std::string dataset = "aquifer";
  std::string location;         // of the dataset and the jobs; empty: the service's default
  bool dry_run_bytes = true;    // the backend reports totalBytesProcessed on dry runs
  int64_t poll_interval_ms = 100;  // between jobs.get calls of a running job
  driver::Limits limits;
};

// Keys: endpoint, project (required), dataset, location, token_env,
// request_timeout_ms, dry_run_bytes, poll_interval_ms (README.md, "Options").
Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config);

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock);

// Registers the "bigquery" WarehouseService factory.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::bigquery
