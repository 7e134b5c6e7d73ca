#pragma once

// The embedded LookupService and UsageService on RocksDB, and their registration.
//
// Both live in one RocksDB database (default `<data_dir>/lookup`, config key
// `path`), shared through RocksDbHandle, in the column families below. The
// byte layouts and the cursor payload format are described in README.md
// beside this file.
//
// Config keys (LookupService): path, sync (default true: every WriteRecords
// is fsynced before it returns, because the queue acks after it), and the
// limits max_key_size (1024), max_record_size (1 MiB), max_records_in_batch
// (10000), applied_window_ms (how long applied group ids are remembered for
// exactly-once writes; default 7 days). UsageService: path, sync.

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/registry.h"
#include "aquifer/driver/types.h"

namespace rocksdb {
struct ColumnFamilyOptions;
}

namespace aquifer::drivers::rocksdb {

inline constexpr char kLogFamily[] = "lookup_log";      // instance ‖ offset → timestamp ‖ key ‖ avro
inline constexpr char kIndexFamily[] = "lookup_index";  // instance ‖ key → timestamp ‖ offset ‖ avro
inline constexpr char kMetaFamily[] = "lookup_meta";    // instance ‖ 's' → next offset;
                                                        // instance ‖ 'a' ‖ group id → applied ms;
                                                        // instance ‖ 'e' ‖ applied ms ‖ group id → ""
inline constexpr char kUsageFamily[] = "usage";         // owner ‖ period ‖ start → 8 counters

struct LookupOptions {
  std::string path;  // the database directory
  bool sync = true;
  driver::Limits limits;
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
  Clock* clock = Clock::System();  // applied-id times
  size_t block_cache_size = size_t{64} << 20;  // the database's block cache (rocksdb_handle.h)
};

// Reads the config keys above; `path` defaults to `<context.data_dir>/lookup`.
Result<LookupOptions> ParseLookupOptions(const driver::Config& config,
                                         const driver::DriverContext& context);

Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options);

// For a driver that keeps this store as a cache of another system's log and
// numbers records by that log's positions (drivers/kafka: the Kafka offsets of
// the instance's topic), so every process numbers them alike. What a store of
// MakeLookupService also is (dynamic_cast). Not part of the LookupService
// contract.
class PositionedWriter {
 public:
  // WriteRecords (the same checks, exactly-once groups and index rule), but
  // records[i] is logged (and its index row carries) offset offsets[i]
  // instead of the next of the sequence: offsets strictly increasing and not
  // below the instance's sequence, else InvalidArgument and nothing written.
  // The sequence (the end of a log replay, the start of a change feed) moves
  // to `next_offset` (above the last offset given; a gap where a skipped group
  // or a marker sat), also when every group was skipped or nothing is given;
  // it never moves back.
  virtual Status WriteRecordsAt(const driver::InstanceInfo& instance, std::span<const driver::Record> records,
                                std::span<const driver::RecordGroup> groups, std::span<const int64_t> offsets,
                                int64_t next_offset) = 0;

 protected:
  ~PositionedWriter() = default;
};

// The column-family options of the lookup families (a no-op for other names):
// lookup_index gets the merge operator that keeps the latest row per key (by
// timestamp, ties to the higher offset), so WriteRecords merges index rows
// instead of reading them first; both lookup_log and lookup_index go without a
// memtable bloom filter (only iterators read them). RocksDbHandle applies it to
// every family it opens.
void TuneLookupFamily(const std::string& name, ::rocksdb::ColumnFamilyOptions* options);

// Registers the names "rocksdb" and "embedded" for LookupService and
// UsageService. Called once from RegisterBuiltinDrivers.
void RegisterLookupAndUsage(driver::Registry* registry);

}  // namespace aquifer::drivers::rocksdb
