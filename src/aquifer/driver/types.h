#pragma once

// Types shared by every driver interface: what a driver knows about a table
// instance, the record as it travels between the engine and the stores, and
// the limits a driver imposes.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/schema/schema.h"

namespace aquifer::driver {

// A table instance as drivers see it. Instances are immutable in shape: a new
// schema means a new instance. `project` and `table` are for naming and
// messages only; drivers key all storage by `instance_id`.
struct InstanceInfo {
  Uuid instance_id;
  std::string project;
  std::string table;
  schema::SchemaPtr schema;
  bool use_log = true;
  bool use_index = true;
  bool use_warehouse = true;
  // 0 = keep forever.
  int64_t log_retention_ms = 0;
  int64_t index_retention_ms = 0;
  int64_t warehouse_retention_ms = 0;
};

// The oldest record timestamp a store with `retention_ms` still keeps at
// `now_ms` (lookup_service.h, "Retention"): a record whose timestamp is below
// it has expired. INT64_MIN when `retention_ms` is 0 (keep forever).
inline int64_t RetentionHorizon(int64_t retention_ms, int64_t now_ms) {
  if (retention_ms <= 0) return INT64_MIN;
  // now − retention, saturating (both come from configuration and clocks).
  if (now_ms < INT64_MIN + retention_ms) return INT64_MIN;
  return now_ms - retention_ms;
}

// One record. On write, `offset` is ignored (the lookup service assigns log
// offsets); on read it is the record's log offset within its instance.
struct Record {
  std::string key;        // tuple-encoded primary key (aquifer/keys)
  std::string avro;       // Avro binary of the record (aquifer/schema)
  int64_t timestamp_ms = 0;
  int64_t offset = -1;

  bool operator==(const Record&) const = default;
};

// The records of one queued message within a WriteRecords or WriteToWarehouse
// call: `records` consecutive records of the call, from where the previous
// group ended. The engine names each message write id ‖ part (20 bytes), so a
// message keeps its id however the worker groups messages into calls and
// however often the queue redelivers it. See "Exactly once" in
// lookup_service.h for what a driver does with the ids.
struct RecordGroup {
  std::string id;      // 1..kMaxRecordGroupIdSize bytes, opaque
  size_t records = 0;  // may be 0

  bool operator==(const RecordGroup&) const = default;
};
inline constexpr size_t kMaxRecordGroupIdSize = 64;
// OK when `groups` is empty, or its counts add up to `record_count` and every
// id is 1..kMaxRecordGroupIdSize bytes; InvalidArgument naming the rule otherwise.
Status CheckRecordGroups(size_t record_count, std::span<const RecordGroup> groups);
// The default applied-id window of the drivers: 7 days.
inline constexpr int64_t kDefaultAppliedWindowMs = 7LL * 24 * 60 * 60 * 1000;

// Sizes a driver accepts; the gateway rejects larger input before queuing.
// The engine's limits are the minimum over its lookup and warehouse drivers.
struct Limits {
  size_t max_key_size = 1024;
  size_t max_record_size = 1 << 20;
  size_t max_records_in_batch = 10'000;
};

// A driver's configuration section: flat string keys and values, from the
// config file or AQUIFER_<ROLE>_<KEY> environment variables.
using Config = std::map<std::string, std::string>;

// Reads a config value with a default, and typed variants that fail with a
// message naming the key when the value does not parse.
std::string ConfigString(const Config& config, const std::string& key, const std::string& fallback);
Result<int64_t> ConfigInt(const Config& config, const std::string& key, int64_t fallback);
Result<bool> ConfigBool(const Config& config, const std::string& key, bool fallback);

}  // namespace aquifer::driver
