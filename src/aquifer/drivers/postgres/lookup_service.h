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
// Exactly once: the ids of the record groups written (queued messages) go to
//   lookup_applied  (instance_id uuid, group_id bytea) → applied_ms
// in the same transaction as their records; a group already there is skipped.
//
// Config keys: url, schema, pool_size (pg.h), the limits max_key_size
// (1024), max_record_size (1 MiB), max_records_in_batch (10000), and
// applied_window_ms (7 days: how long applied group ids are kept).

#include <memory>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/drivers/postgres/pg.h"

namespace aquifer::drivers::postgres {

struct LookupOptions {
  ConnectionOptions connection;
  driver::Limits limits;
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
};

Result<LookupOptions> ParseLookupOptions(const driver::Config& config);

// Connects, creates the schema and tables if missing, and returns the service.
// Applied group ids are stamped and expired by `clock`.
Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options, Clock* clock);

}  // namespace aquifer::drivers::postgres
