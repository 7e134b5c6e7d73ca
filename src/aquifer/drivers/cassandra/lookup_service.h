#pragma once

// The Cassandra LookupService (README.md, "Lookup"). Tables in the driver's
// keyspace, shared by every instance:
//
//   lookup_sequence  instance_id → next_offset (the committed end of the log),
//                    writer, lease_until: changed only by lightweight
//                    transactions (LWT), read with SERIAL consistency
//   lookup_log       ((instance_id, bucket), log_offset) → ts, key, avro;
//                    bucket = offset / 4096, so a partition holds at most
//                    4096 records and a log range is a clustering range
//   lookup_index     ((instance_id), key) → ts, log_offset, avro: a key range
//                    is a clustering range of one partition
//   lookup_applied   ((instance_id), group_id) → end_offset, with a TTL of
//                    the applied-id window
//
// A write holds the instance's write lease (an LWT on the sequence row; one
// writer per instance at a time across processes, one mutex per instance
// within one), writes the log rows past the committed end, the index rows
// that beat the stored ones by (timestamp, offset), and the applied group
// ids, then commits by moving next_offset past them in one LWT that also
// drops the lease. Readers never look past next_offset, so a write that died
// before its commit is invisible, and its retry writes the same offsets again.
// A group id counts as applied only when its end_offset is committed.

#include <memory>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/drivers/cassandra/options.h"

namespace aquifer::drivers::cassandra {

struct LookupOptions {
  Options base;
  driver::Limits limits;
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
  int64_t lease_ms = 30'000;  // a dead writer's lease is taken over after this long
};

// Keys of options.h plus max_key_size, max_record_size, max_records_in_batch,
// applied_window_ms and lease_ms.
Result<LookupOptions> ParseLookupOptions(const driver::Config& config);

// Connects, creates the keyspace and tables if missing, and returns the service.
Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options, Clock* clock);

}  // namespace aquifer::drivers::cassandra
