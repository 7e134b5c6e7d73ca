#pragma once

// LookupService: the per-instance log and index.
//
//  - Log: every record written, in write order, addressed by a per-instance
//    offset the service assigns (0, 1, 2, ...; a redelivered batch is logged
//    again at new offsets). Offsets only increase; a driver may leave gaps
//    (Kafka: its topic's offsets, where a skipped group sat), so readers must
//    not count on density.
//  - Index: per primary key, the record with the highest timestamp; equal
//    timestamps are broken by the higher log offset (so re-applying a batch
//    changes nothing, and a later write of the same timestamp wins).
//
// Reads go through cursors. A query returns driver payloads: a replay payload
// (finite; a snapshot of what existed) and a change payload (open-ended; the
// log from the query on). The engine wraps payloads in signed, opaque cursors
// (aquifer/driver/cursor.h), so a driver only ever sees payloads it made, but
// it must still reject malformed payloads with InvalidArgument, never crash.
//
// Exactly once: writes carry the ids of the queued messages their records
// came from (RecordGroup, types.h). A group whose id the instance already
// applied is skipped whole: none of its records is logged or indexed again.
// The ids of the groups written are stored atomically with their records (one
// batch or transaction), so a crash leaves both or neither, and are kept at
// least for the driver's applied-id window (RocksDB: `applied_window_ms`,
// default 7 days), after which they may be forgotten. So a message the queue
// redelivers — after a crash, a nack, or grouped with other messages than the
// first time — lands in the log once. Writes without groups are not
// deduplicated (tests, tools). RemoveInstance forgets the instance's ids too.
//
// Filters: the engine passes the parsed filter on every read. Index reads use
// its key range and evaluate the remaining (residual) conditions on each
// record; log and change reads evaluate the whole filter. A read scans at most
// `scan_budget` records, so a selective residual filter returns fewer than
// `limit` records (possibly none) with a next cursor, never a silent end.
//
// Retention: InstanceInfo::log_retention_ms and index_retention_ms (0 =
// forever) bound how old a record the instance serves and keeps. A record's
// age is now − its timestamp (Record::timestamp_ms: the `@timestamp` the
// gateway assigns at the write when the client gives none), with now read
// from the driver's clock (DriverContext::clock, injectable). A record is
// expired when timestamp < now − retention (one exactly `retention` old is
// still kept). Always from the InstanceInfo of the call, so a retention
// changed later applies to the next read and purge.
//  - Reads never return an expired record, whether or not it was purged yet:
//    every read filters by age (and counts what it skips in `scanned`).
//  - Index: a key whose latest record (its index row) expired disappears from
//    the index; its older records are older still, so nothing of it is left.
//  - Log cursors: offsets are never reused, and a cursor (replay, change or
//    rewind) that points at or before expired records continues from the
//    oldest record still kept, as a Kafka consumer with
//    auto.offset.reset=earliest does; the reader sees a jump in offsets,
//    never an error.
//  - PurgeExpired deletes the instance's expired records from storage; the
//    engine calls it for every instance with a retention once per
//    `retention_purge_interval_ms`. Until then expired records are hidden, not
//    yet deleted. Each driver's README says how it deletes.
//
// Fits RocksDB (column families, prefix iterators), Postgres (tables keyed by
// instance and key), Cassandra (partition per instance and bucket, clustering
// by key/offset), Bigtable (row ranges) and Kafka (topic log + compacted
// state). All methods are thread-safe.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"
#include "aquifer/keys/filter.h"

namespace aquifer::driver {

struct LookupCapabilities {
  Limits limits;
  // Reads are served from this process's memory and local disk, never over
  // the network nor by waiting for another system (RocksDB: true; Postgres,
  // and Kafka, whose reads wait for the topics' end offsets: false). A
  // gateway may then run short reads on its network threads.
  bool local_reads = false;
};

enum class QueryKind : uint8_t {
  kIndex,  // latest record per key, ascending by encoded key
  kLog,    // every record, ascending by offset
};

struct QueryRequest {
  QueryKind kind = QueryKind::kIndex;
  keys::Filter filter;            // index: planned to a range + residual; log: evaluated per record
  int64_t from_timestamp_ms = 0;  // log only: skip records with an earlier timestamp
};

struct QueryCursors {
  std::string replay;  // empty when there is nothing to replay
  std::string change;  // the log from now on; never empty
};

struct ReadOptions {
  int32_t limit = 100;          // 1..1000, else InvalidArgument
  int64_t scan_budget = 10'000;  // records examined at most per call
  int64_t from_timestamp_ms = 0;
};

struct ReadResult {
  std::vector<Record> records;
  std::string next;       // empty: the replay is exhausted (change reads always return one)
  bool residual = false;  // true when a filter was evaluated record by record
  int64_t scanned = 0;    // records examined (for usage metering)
  int64_t scanned_bytes = 0;
};

// What a driver physically holds for one instance, expired or not (tests and
// diagnostics: it reads storage, never filters by age).
struct StoredRecords {
  int64_t log = 0;    // log records
  int64_t index = 0;  // index rows

  bool operator==(const StoredRecords&) const = default;
};

struct PeekCursors {
  std::string rewind;  // newest first, paging backwards; empty if the log is empty
  std::string change;
};

class LookupService {
 public:
  virtual ~LookupService() = default;
  LookupService() = default;
  LookupService(const LookupService&) = delete;
  LookupService& operator=(const LookupService&) = delete;

  virtual LookupCapabilities capabilities() const = 0;

  // Prepares storage for an instance. Idempotent; re-registering after a
  // metadata change (retention, flags) must succeed.
  virtual Status RegisterInstance(const InstanceInfo& instance) = 0;
  // Deletes every log record, index row and sequence of the instance, so that
  // nothing of it is readable or stored afterwards. Other instances are
  // untouched. Idempotent.
  virtual Status RemoveInstance(const InstanceInfo& instance) = 0;

  // Appends every record to the log (if use_log) and updates the index (if
  // use_index) by the highest-timestamp rule, atomically per call where the
  // backend allows. InvalidArgument (nothing written) when a key or record
  // exceeds the limits, the batch is too large, or `groups` is not empty and
  // its counts do not add up to records.size() or an id is empty or longer
  // than kMaxRecordGroupIdSize. With groups, a group already applied is
  // skipped and the ids of the rest are recorded with them ("Exactly once"
  // above); OK when every group was skipped.
  virtual Status WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                              std::span<const RecordGroup> groups) = 0;

  // Plans a query. InvalidArgument for an index query on an instance without
  // use_index, or a log query without use_log.
  virtual Result<QueryCursors> Query(const InstanceInfo& instance, const QueryRequest& request) = 0;
  virtual Result<PeekCursors> Peek(const InstanceInfo& instance) = 0;
  // Reads one page from a payload made by Query or Peek (or a previous read's
  // `next`). `filter` must be the query's filter. An empty payload gives an
  // empty result with an empty next.
  virtual Result<ReadResult> ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                        const keys::Filter& filter, const ReadOptions& options) = 0;

  // Deletes the instance's expired log records and index rows now
  // ("Retention" above) and returns how many it deleted. OK (0) when the
  // instance has no retention. Safe to call concurrently with writes and reads.
  virtual Result<int64_t> PurgeExpired(const InstanceInfo& instance) = 0;
  // Counts what storage holds for the instance (StoredRecords).
  virtual Result<StoredRecords> CountStored(const InstanceInfo& instance) = 0;

  // Drops everything the driver stores; the driver stays usable.
  virtual Status Reset() = 0;
};

}  // namespace aquifer::driver
