#pragma once

// The Bigtable LookupService (README.md, "Lookup"). One table, `<table_prefix>lookup`, shared
// by every Aquifer instance; each row key starts with the instance id (16 bytes) and a kind:
//
//   id 'q'                 the offset sequence: d:n = the committed end of the log (8 bytes
//                          big-endian), d:w = the write lease ("<token hex>:<until ms>")
//   id 'l' offset (8 BE)   a log record: d:t timestamp, d:k key, d:v Avro
//   id 'x' encoded key     the index row of a key: d:t timestamp, d:o log offset, d:v Avro
//   id 'a' group id        an applied group: a:e = the log end it was committed with; family
//                          `a` keeps cells for the applied-id window (GC by age)
//
// A write holds the instance's lease (CheckAndMutateRow on the sequence row; one writer per
// instance across processes, a mutex per instance within one), writes the log rows past the
// committed end and the index rows that beat the stored ones by (timestamp, offset) with
// MutateRows, then the applied ids, and commits by moving d:n and dropping the lease in one
// CheckAndMutateRow conditioned on still holding it. Readers never look past d:n, so a write
// that died before its commit is invisible, and its retry writes the same offsets again.

#include <memory>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/drivers/bigtable/client.h"

namespace aquifer::drivers::bigtable {

struct LookupOptions {
  ClientOptions client;
  std::string table_prefix = "aquifer_";
  driver::Limits limits;
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
  int64_t lease_ms = 30'000;
};

// Keys of ParseClientOptions plus table_prefix, max_key_size (at most 4079: a row key is at
// most 4 KiB), max_record_size, max_records_in_batch, applied_window_ms and lease_ms.
Result<LookupOptions> ParseLookupOptions(const driver::Config& config);

// Creates the table if missing and returns the service.
Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options, Clock* clock);

}  // namespace aquifer::drivers::bigtable
