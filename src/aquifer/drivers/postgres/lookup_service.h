#pragma once

// The Postgres LookupService: the log and the index of every instance in
// three tables of the driver's schema, each keyed by instance first, so an
// instance is one contiguous btree range of each:
//
//   lookup_log      (instance_id uuid, log_offset bigint) → ts, key bytea, avro bytea
//   lookup_index    (instance_id uuid, key bytea)         → ts, log_offset, avro
//   lookup_sequence (instance_id uuid)                    → next_offset
//
// Keys are the tuple-encoded bytes; bytea compares bytewise, so a btree range
// scan over `key` is a key range (README.md beside this file has the design,
// the SQL and the cursor payload format).
//
// Config keys: url, schema, pool_size (pg.h), and the limits max_key_size
// (1024), max_record_size (1 MiB), max_records_in_batch (10000).

#include <memory>

#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/drivers/postgres/pg.h"

namespace aquifer::drivers::postgres {

struct LookupOptions {
  ConnectionOptions connection;
  driver::Limits limits;
};

Result<LookupOptions> ParseLookupOptions(const driver::Config& config);

// Connects, creates the schema and tables if missing, and returns the service.
Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options);

}  // namespace aquifer::drivers::postgres
