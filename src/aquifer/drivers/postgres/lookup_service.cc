#include "aquifer/drivers/postgres/lookup_service.h"

#include <libpq-fe.h>

#include <algorithm>
#include <limits>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "aquifer/driver/offset_lookup.h"
#include "aquifer/driver/offset_payload.h"
#include "aquifer/driver/record_limits.h"
#include "aquifer/drivers/postgres/script.h"
#include "aquifer/keys/filter.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::postgres {
namespace {

using driver::InstanceInfo;
using driver::Record;


std::string Describe(std::string_view what, const InstanceInfo& instance) {
  return fmt::format("{} {}", what, instance.instance_id.ToString());
}

// Cursor payloads: driver/offset_payload.h (the byte layout shared with the other offset-numbered drivers).
using driver::ChangePayload;
using driver::LogPayload;
using driver::RewindPayload;
using driver::PayloadKind;
using Payload = driver::OffsetPayload;

// ---- the service -------------------------------------------------------------------

class PgLookupService final : public driver::LookupService {
 public:
  PgLookupService(const LookupOptions& options, Clock* clock)
      : options_(options),
        clock_(clock),
        pool_(options.connection.url, options.connection.pool_size),
        log_(QuoteIdent(options.connection.schema) + ".lookup_log"),
        index_(QuoteIdent(options.connection.schema) + ".lookup_index"),
        sequence_(QuoteIdent(options.connection.schema) + ".lookup_sequence"),
        applied_(QuoteIdent(options.connection.schema) + ".lookup_applied") {}

  Status Init() {
    return EnsureSchema(pool_, options_.connection.schema, fmt::format(R"sql(
      CREATE TABLE IF NOT EXISTS {0} (
        instance_id uuid NOT NULL,
        log_offset bigint NOT NULL,
        ts bigint NOT NULL,
        key bytea NOT NULL,
        avro bytea NOT NULL,
        PRIMARY KEY (instance_id, log_offset));
      CREATE TABLE IF NOT EXISTS {1} (
        instance_id uuid NOT NULL,
        key bytea NOT NULL,
        ts bigint NOT NULL,
        log_offset bigint NOT NULL,
        avro bytea NOT NULL,
        PRIMARY KEY (instance_id, key));
      CREATE TABLE IF NOT EXISTS {2} (
        instance_id uuid PRIMARY KEY,
        next_offset bigint NOT NULL);
      CREATE TABLE IF NOT EXISTS {3} (
        instance_id uuid NOT NULL,
        group_id bytea NOT NULL,
        applied_ms bigint NOT NULL,
        PRIMARY KEY (instance_id, group_id));
      CREATE INDEX IF NOT EXISTS lookup_applied_ms ON {3} (applied_ms);
    )sql", log_, index_, sequence_, applied_));
  }

  driver::LookupCapabilities capabilities() const override { return {options_.limits}; }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) {
      return InvalidArgument("registering instance {}: no schema", instance.instance_id.ToString());
    }
    return Status::OK();
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    Status done = InTransaction(pool_, [&](Connection& conn) -> Status {
      Params id;
      id.Uuid(instance.instance_id);
      // The sequence row first: it waits for a writer of the instance to commit
      // and holds later writers until the rows below are gone.
      for (const std::string* table : {&sequence_, &log_, &index_, &applied_}) {
        AQ_RETURN_IF_ERROR(conn.Exec(fmt::format("DELETE FROM {} WHERE instance_id = $1", *table), id).status());
      }
      return Status::OK();
    });
    return done.ok() ? done : done.WithContext(Describe("removing instance", instance));
  }

  Status WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                      std::span<const driver::RecordGroup> groups) override;
  Result<driver::QueryCursors> Query(const InstanceInfo& instance, const driver::QueryRequest& request) override;
  Result<driver::PeekCursors> Peek(const InstanceInfo& instance) override;
  Result<driver::ReadResult> ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                        const keys::Filter& filter, const driver::ReadOptions& options) override;

  // Retention: one DELETE per table by the record timestamp over the
  // instance's rows (README.md, "Retention"). A concurrent write of a key
  // whose row is being deleted either commits first (the DELETE re-checks
  // the newer row and keeps it) or waits for the DELETE and inserts anew.
  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    const int64_t now_ms = clock_->NowMillis();
    int64_t purged = 0;
    for (auto [table, retention] : {std::pair{&log_, instance.log_retention_ms},
                                    std::pair{&index_, instance.index_retention_ms}}) {
      if (retention <= 0) continue;
      Params params;
      params.Uuid(instance.instance_id).Int8(driver::RetentionHorizon(retention, now_ms));
      AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
      auto deleted = conn->Exec(fmt::format("DELETE FROM {} WHERE instance_id = $1 AND ts < $2", *table), params);
      if (!deleted.ok()) return deleted.status().WithContext(Describe("purging expired records of", instance));
      purged += deleted->AffectedRows();
    }
    return purged;
  }

  Result<driver::StoredRecords> CountStored(const InstanceInfo& instance) override {
    driver::StoredRecords stored;
    for (auto [table, out] : {std::pair{&log_, &stored.log}, std::pair{&index_, &stored.index}}) {
      Params id;
      id.Uuid(instance.instance_id);
      AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
      auto rows = conn->Exec(fmt::format("SELECT count(*) FROM {} WHERE instance_id = $1", *table), id);
      if (!rows.ok()) return rows.status().WithContext(Describe("counting the records of", instance));
      AQ_ASSIGN_OR_RETURN(*out, rows->Int(0, 0));
    }
    return stored;
  }

  Status Reset() override {
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    Status done = conn->ExecScript(fmt::format("TRUNCATE {}, {}, {}, {}", log_, index_, sequence_, applied_));
    return done.ok() ? done : done.WithContext("resetting the lookup tables");
  }

 private:
  Result<uint64_t> ReadSequence(const InstanceInfo& instance);
  // The write of an instance with a log, in one round trip (script.h).
  Status WriteLogged(Connection& conn, const InstanceInfo& instance, std::span<const Record> records,
                     std::span<const driver::RecordGroup> groups, int64_t now_ms);
  Status WriteBatch(Connection& conn, const InstanceInfo& instance, std::span<const Record> records);
  Result<driver::ReadResult> ReadIndex(const InstanceInfo& instance, const Payload& payload,
                                       const keys::Filter& filter, const driver::ReadOptions& options);
  Result<driver::ReadResult> ReadLog(const InstanceInfo& instance, const Payload& payload,
                                     const keys::Filter& filter, const driver::ReadOptions& options);

  // Deletes applied ids older than the window, at most once a minute.
  void PruneApplied(Connection& conn, int64_t now_ms);

  const LookupOptions options_;
  Clock* const clock_;
  Pool pool_;
  const std::string log_, index_, sequence_, applied_;  // quoted schema.table
  std::mutex prune_mu_;
  int64_t last_prune_ms_ = 0;  // guarded by prune_mu_
};

void PgLookupService::PruneApplied(Connection& conn, int64_t now_ms) {
  {
    std::lock_guard<std::mutex> lock(prune_mu_);
    if (last_prune_ms_ != 0 && now_ms - last_prune_ms_ < 60'000) return;
    last_prune_ms_ = now_ms;
  }
  Params cutoff;
  cutoff.Int8(now_ms - options_.applied_window_ms);
  // Best effort: a failed prune is retried a minute later.
  (void)conn.Exec(fmt::format("DELETE FROM {} WHERE applied_ms < $1", applied_), cutoff);
}

Status PgLookupService::WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                                     std::span<const driver::RecordGroup> groups) {
  AQ_RETURN_IF_ERROR(driver::CheckWrite(instance, records, groups, options_.limits));
  if (groups.empty() && (records.empty() || (!instance.use_log && !instance.use_index))) return Status::OK();
  const int64_t now_ms = clock_->NowMillis();
  if (instance.use_log) {
    auto conn = pool_.Acquire();
    if (!conn.ok()) return conn.status().WithContext(Describe("writing records to", instance));
    Status done = WriteLogged(**conn, instance, records, groups, now_ms);
    if (done.ok() && !groups.empty()) PruneApplied(**conn, now_ms);
    return done.ok() ? done : done.WithContext(Describe("writing records to", instance));
  }
  const std::span<const Record> all_records = records;
  std::vector<Record> kept;  // the records of groups not applied yet

  Status done = InTransaction(pool_, [&](Connection& conn) -> Status {
    if (!groups.empty()) {
      // Exactly once: record the ids; the ones the instance already had (or
      // that repeat within the call) come back as conflicts, and their
      // records are skipped. A concurrent writer of the same id waits here
      // for ours to commit or roll back.
      std::vector<std::string_view> ids;
      for (const driver::RecordGroup& group : groups) ids.push_back(group.id);
      Params applied;
      applied.Uuid(instance.instance_id).ByteaArray(ids).Int8(now_ms);
      AQ_ASSIGN_OR_RETURN(PgResult fresh_rows, conn.Exec(fmt::format(
          "INSERT INTO {} (instance_id, group_id, applied_ms) SELECT $1, g, $3 FROM unnest($2::bytea[]) AS g "
          "ON CONFLICT DO NOTHING RETURNING group_id", applied_), applied));
      std::set<std::string, std::less<>> fresh;
      for (int row = 0; row < fresh_rows.rows(); ++row) fresh.emplace(fresh_rows.Bytes(row, 0));
      size_t begin = 0;
      for (const driver::RecordGroup& group : groups) {
        if (fresh.erase(group.id) > 0) {
          kept.insert(kept.end(), all_records.begin() + begin, all_records.begin() + begin + group.records);
        }
        begin += group.records;
      }
      PruneApplied(conn, now_ms);
      if (kept.empty() || (!instance.use_log && !instance.use_index)) return Status::OK();
      return WriteBatch(conn, instance, kept);
    }
    return WriteBatch(conn, instance, all_records);
  });
  return done.ok() ? done : done.WithContext(Describe("writing records to", instance));
}

// One script (one round trip, one transaction):
//   0 (with groups)  record the group ids; the fresh ones come back
//   1  lock the instance's sequence row and read the next offset
//   2  COPY the log rows of the fresh groups' records (binary), offsets from there on
//   3  (use_index) upsert the index from those log rows: per key the highest
//      (timestamp, offset), and only over an older row
//   4  advance the sequence past the rows copied
// The sequence row stays locked until commit, so writers of one instance
// commit in offset order, one at a time.
Status PgLookupService::WriteLogged(Connection& conn, const InstanceInfo& instance, std::span<const Record> records,
                                    std::span<const driver::RecordGroup> groups, int64_t now_ms) {
  const std::string id = UuidLiteral(instance.instance_id);
  // Rows past the next offset written by this call: at most records.size().
  const size_t bound = records.size();
  std::string script;
  int statement = 0;
  int applied_statement = -1;
  if (!groups.empty()) {
    std::vector<std::string_view> ids;
    for (const driver::RecordGroup& group : groups) ids.push_back(group.id);
    script += fmt::format(
        "INSERT INTO {} (instance_id, group_id, applied_ms) SELECT {}, g, {} FROM unnest({}) AS g "
        "ON CONFLICT DO NOTHING RETURNING encode(group_id, 'hex');\n",
        applied_, id, now_ms, ByteaArrayLiteral(ids));
    applied_statement = statement++;
  }
  script += fmt::format(
      "INSERT INTO {0} AS s (instance_id, next_offset) VALUES ({1}, 0) "
      "ON CONFLICT (instance_id) DO UPDATE SET next_offset = s.next_offset RETURNING next_offset;\n"
      "COPY {2} (instance_id, log_offset, ts, key, avro) FROM STDIN (FORMAT binary);\n",
      sequence_, id, log_);
  const int sequence_statement = statement++;
  const int copy_statement = statement++;
  // The copied rows: offsets in [next, next + bound) of the instance, read
  // through the log's primary key (a nested loop on the one sequence row).
  const std::string copied = fmt::format(
      "FROM {0} l, (SELECT next_offset FROM {1} WHERE instance_id = {2}) q "
      "WHERE l.instance_id = {2} AND l.log_offset >= q.next_offset AND l.log_offset < q.next_offset + {3}",
      log_, sequence_, id, bound);
  if (instance.use_index) {
    script += fmt::format(
        "INSERT INTO {0} AS i (instance_id, key, ts, log_offset, avro) "
        "SELECT DISTINCT ON (l.key) l.instance_id, l.key, l.ts, l.log_offset, l.avro {1} "
        "ORDER BY l.key, l.ts DESC, l.log_offset DESC "
        "ON CONFLICT (instance_id, key) DO UPDATE "
        "SET ts = EXCLUDED.ts, log_offset = EXCLUDED.log_offset, avro = EXCLUDED.avro "
        "WHERE (EXCLUDED.ts, EXCLUDED.log_offset) > (i.ts, i.log_offset);\n",
        index_, copied);
  }
  script += fmt::format("UPDATE {0} SET next_offset = next_offset + (SELECT count(*) {1}) WHERE instance_id = {2}",
                        sequence_, copied, id);

  std::vector<const Record*> kept;
  if (groups.empty()) {
    for (const Record& record : records) kept.push_back(&record);
  }
  int64_t first_offset = -1;
  ScriptHandlers handlers;
  handlers.on_result = [&](int index, const ScriptRows& rows) -> Status {
    if (index == applied_statement) {
      // Only the first occurrence of an id repeated within the call counts.
      std::set<std::string, std::less<>> fresh;
      for (int row = 0; row < rows.rows(); ++row) {
        AQ_ASSIGN_OR_RETURN(std::string group_id, rows.HexBytes(row, 0));
        fresh.insert(std::move(group_id));
      }
      size_t begin = 0;
      for (const driver::RecordGroup& group : groups) {
        if (fresh.erase(group.id) > 0) {
          for (size_t record_idx = begin; record_idx < begin + group.records; ++record_idx) {
            kept.push_back(&records[record_idx]);
          }
        }
        begin += group.records;
      }
    } else if (index == sequence_statement) {
      if (rows.rows() != 1) return Internal("locking the offset sequence returned {} rows", rows.rows());
      AQ_ASSIGN_OR_RETURN(first_offset, rows.Int(0, 0));
      if (first_offset < 0) return Corruption("negative next offset {}", first_offset);
    }
    return Status::OK();
  };
  handlers.copy_data = [&](int index) -> Result<std::string> {
    if (index != copy_statement || first_offset < 0) return Internal("unexpected COPY in the lookup write");
    std::string data("PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
    size_t size = 0;
    for (const Record* record : kept) size += record->key.size() + record->avro.size() + 64;
    data.reserve(data.size() + size + 2);
    auto put32 = [&](uint32_t value) {
      char buf[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
                     static_cast<char>(value)};
      data.append(buf, 4);
    };
    const std::string_view uuid = instance.instance_id.AsBytes();
    for (size_t kept_idx = 0; kept_idx < kept.size(); ++kept_idx) {
      const Record& record = *kept[kept_idx];
      data.append("\0\5", 2);  // five fields
      put32(static_cast<uint32_t>(uuid.size()));
      data.append(uuid);
      put32(8);
      PutBigEndian64(&data, static_cast<uint64_t>(first_offset) + kept_idx);
      put32(8);
      PutBigEndian64(&data, static_cast<uint64_t>(record.timestamp_ms));
      put32(static_cast<uint32_t>(record.key.size()));
      data.append(record.key);
      put32(static_cast<uint32_t>(record.avro.size()));
      data.append(record.avro);
    }
    data.append("\xff\xff", 2);
    return data;
  };
  return RunScript(conn, script, handlers);
}

// Allocates offsets and writes the log and index rows of `records` inside the caller's transaction.
Status PgLookupService::WriteBatch(Connection& conn, const InstanceInfo& instance, std::span<const Record> records) {
  // The winner per key within the batch: highest timestamp, ties to the later
  // record (its offset is higher). One row per key, because one INSERT ... ON
  // CONFLICT may not touch a row twice.
  std::vector<size_t> winners;
  if (instance.use_index) {
    std::unordered_map<std::string_view, size_t> by_key;
    by_key.reserve(records.size());
    for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
      auto [it, inserted] = by_key.try_emplace(records[record_idx].key, winners.size());
      if (inserted) {
        winners.push_back(record_idx);
      } else if (records[record_idx].timestamp_ms >= records[winners[it->second]].timestamp_ms) {
        winners[it->second] = record_idx;
      }
    }
    // Rows in key order, so two writers of overlapping keys lock them in one order.
    std::sort(winners.begin(), winners.end(),
              [&](size_t a, size_t b) { return records[a].key < records[b].key; });
  }

  {
    // Offsets: the sequence row is locked until commit, so writers of one
    // instance commit in offset order and a reader never sees offset n+1
    // without n.
    Params allocate;
    allocate.Uuid(instance.instance_id).Int8(static_cast<int64_t>(records.size()));
    AQ_ASSIGN_OR_RETURN(PgResult allocated, conn.Exec(fmt::format(R"sql(
        INSERT INTO {0} AS s (instance_id, next_offset) VALUES ($1, $2)
        ON CONFLICT (instance_id) DO UPDATE SET next_offset = s.next_offset + $2
        RETURNING next_offset - $2)sql", sequence_), allocate));
    if (allocated.rows() != 1) return Internal("allocating offsets returned {} rows", allocated.rows());
    AQ_ASSIGN_OR_RETURN(const int64_t first_offset, allocated.Int(0, 0));

    if (instance.use_log) {
      std::vector<int64_t> timestamps;
      std::vector<std::string_view> keys, avros;
      timestamps.reserve(records.size());
      keys.reserve(records.size());
      avros.reserve(records.size());
      for (const Record& record : records) {
        timestamps.push_back(record.timestamp_ms);
        keys.push_back(record.key);
        avros.push_back(record.avro);
      }
      Params rows;
      rows.Uuid(instance.instance_id).Int8(first_offset).Int8Array(timestamps).ByteaArray(keys).ByteaArray(avros);
      AQ_RETURN_IF_ERROR(conn.Exec(fmt::format(R"sql(
          INSERT INTO {} (instance_id, log_offset, ts, key, avro)
          SELECT $1, $2 + u.ord - 1, u.ts, u.key, u.avro
          FROM unnest($3::int8[], $4::bytea[], $5::bytea[]) WITH ORDINALITY AS u(ts, key, avro, ord))sql", log_),
          rows).status());
    }
    if (instance.use_index) {
      std::vector<int64_t> timestamps, offsets;
      std::vector<std::string_view> keys, avros;
      for (size_t record_idx : winners) {
        const Record& record = records[record_idx];
        timestamps.push_back(record.timestamp_ms);
        offsets.push_back(first_offset + static_cast<int64_t>(record_idx));
        keys.push_back(record.key);
        avros.push_back(record.avro);
      }
      Params rows;
      rows.Uuid(instance.instance_id).ByteaArray(keys).Int8Array(timestamps).Int8Array(offsets).ByteaArray(avros);
      // The highest (timestamp, offset) wins whatever order batches arrive in,
      // so a redelivered or late batch never replaces a newer row.
      AQ_RETURN_IF_ERROR(conn.Exec(fmt::format(R"sql(
          INSERT INTO {0} AS i (instance_id, key, ts, log_offset, avro)
          SELECT $1, u.key, u.ts, u.log_offset, u.avro
          FROM unnest($2::bytea[], $3::int8[], $4::int8[], $5::bytea[]) AS u(key, ts, log_offset, avro)
          ON CONFLICT (instance_id, key) DO UPDATE
            SET ts = EXCLUDED.ts, log_offset = EXCLUDED.log_offset, avro = EXCLUDED.avro
            WHERE (EXCLUDED.ts, EXCLUDED.log_offset) > (i.ts, i.log_offset))sql", index_),
          rows).status());
    }
    return Status::OK();
  }
}

Result<uint64_t> PgLookupService::ReadSequence(const InstanceInfo& instance) {
  Params id;
  id.Uuid(instance.instance_id);
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  auto rows = conn->Exec(fmt::format("SELECT next_offset FROM {} WHERE instance_id = $1", sequence_), id);
  if (!rows.ok()) return rows.status().WithContext(Describe("reading the offset sequence of", instance));
  if (rows->rows() == 0) return uint64_t{0};
  AQ_ASSIGN_OR_RETURN(int64_t next, rows->Int(0, 0));
  if (next < 0) return Corruption("{}: negative next offset {}", Describe("offset sequence of", instance), next);
  return static_cast<uint64_t>(next);
}

Result<driver::QueryCursors> PgLookupService::Query(const InstanceInfo& instance,
                                                    const driver::QueryRequest& request) {
  return driver::QueryOffsetCursors(instance, request, [&] { return ReadSequence(instance); });
}

Result<driver::PeekCursors> PgLookupService::Peek(const InstanceInfo& instance) {
  return driver::PeekOffsetCursors(instance, [&] { return ReadSequence(instance); });
}

Result<driver::ReadResult> PgLookupService::ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                                       const keys::Filter& filter, const driver::ReadOptions& options) {
  return driver::ReadOffsetCursor(
      instance, payload, options, [&](const Payload& decoded) { return ReadIndex(instance, decoded, filter, options); },
      [&](const Payload& decoded) { return ReadLog(instance, decoded, filter, options); });
}

// Both reads fetch one row more than they may examine: whether it exists says
// if the next payload is needed. Without a residual filter every examined row
// is returned, so at most min(limit, budget) rows are examined.
Result<driver::ReadResult> PgLookupService::ReadIndex(const InstanceInfo& instance, const Payload& payload,
                                                      const keys::Filter& filter, const driver::ReadOptions& options) {
  AQ_ASSIGN_OR_RETURN(keys::QueryPlan plan, keys::PlanFilter(*instance.schema, filter));
  const int64_t examine = driver::IndexExamine(plan, options);

  Params params;
  params.Uuid(instance.instance_id).Bytea(payload.start).Int8(examine + 1);
  std::string sql = fmt::format("SELECT key, ts, log_offset, avro FROM {} WHERE instance_id = $1 AND key >= $2", index_);
  if (!payload.end.empty()) {
    params.Bytea(payload.end);
    sql += " AND key < $4";
  }
  sql += " ORDER BY key LIMIT $3";
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  auto rows = conn->Exec(sql, params);
  if (!rows.ok()) return rows.status().WithContext(Describe("scanning the index of", instance));

  // Rows older than the retention are hidden until PurgeExpired deletes them.
  const int64_t horizon = driver::RetentionHorizon(instance.index_retention_ms, clock_->NowMillis());
  return driver::ReadIndexPage(
      instance, plan, payload, options, horizon, static_cast<size_t>(rows->rows()),
      [&](size_t row) {
        return driver::IndexRowView{rows->Bytes(static_cast<int>(row), 0), rows->Bytes(static_cast<int>(row), 3)};
      },
      [&](size_t row) { return rows->Int(static_cast<int>(row), 1); },
      [&](size_t row) { return rows->Int(static_cast<int>(row), 2); });
}

Result<driver::ReadResult> PgLookupService::ReadLog(const InstanceInfo& instance, const Payload& payload,
                                                    const keys::Filter& filter, const driver::ReadOptions& options) {
  const schema::Schema& schema = *instance.schema;
  driver::ReadResult result;
  result.residual = !filter.empty();
  // Records older than the retention are skipped like those before `from`,
  // so a cursor into the expired (or purged) head continues from the oldest
  // record kept.
  const int64_t from_ts = driver::LogFromTimestamp(instance, payload, options, clock_->NowMillis());
  // Without a filter nearly every row is returned (a row older than from_ts
  // only makes the page shorter), so fetch no more than a page.
  const int64_t examine = driver::LogExamine(filter, options);

  Params params;
  params.Uuid(instance.instance_id).Int8(examine + 1);
  std::string where;
  switch (payload.kind) {
    case PayloadKind::kLogReplay:
      params.Int8(static_cast<int64_t>(payload.next)).Int8(static_cast<int64_t>(payload.end_offset));
      where = "log_offset >= $3 AND log_offset < $4 ORDER BY log_offset";
      break;
    case PayloadKind::kRewind:
      params.Int8(static_cast<int64_t>(payload.before));
      where = "log_offset < $3 ORDER BY log_offset DESC";
      break;
    default:
      params.Int8(static_cast<int64_t>(payload.next));
      where = "log_offset >= $3 ORDER BY log_offset";
      break;
  }
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  auto rows = conn->Exec(
      fmt::format("SELECT log_offset, ts, key, avro FROM {} WHERE instance_id = $1 AND {} LIMIT $2", log_, where),
      params);
  if (!rows.ok()) return rows.status().WithContext(Describe("scanning the log of", instance));

  int64_t last_offset = 0;
  int row = 0;
  for (; row < rows->rows(); ++row) {
    if (static_cast<int64_t>(result.records.size()) >= options.limit || result.scanned >= examine) break;
    AQ_ASSIGN_OR_RETURN(last_offset, rows->Int(row, 0));
    AQ_ASSIGN_OR_RETURN(int64_t ts, rows->Int(row, 1));
    std::string_view avro = rows->Bytes(row, 3);
    ++result.scanned;
    result.scanned_bytes += static_cast<int64_t>(avro.size());
    if (ts < from_ts) continue;
    if (!filter.empty()) {
      auto value = schema::DecodeAvro(schema, avro);
      if (!value.ok()) return value.status().WithContext(Describe("decoding a log record of", instance));
      if (!keys::Matches(schema, filter, *value)) continue;
    }
    result.records.push_back(Record{std::string(rows->Bytes(row, 2)), std::string(avro), ts, last_offset});
  }
  const bool more = row < rows->rows();
  switch (payload.kind) {
    case PayloadKind::kLogReplay:
      if (more) result.next = LogPayload(static_cast<uint64_t>(last_offset) + 1, payload.end_offset, payload.from_timestamp_ms);
      break;
    case PayloadKind::kRewind:
      if (more) result.next = RewindPayload(static_cast<uint64_t>(last_offset));
      break;
    default:  // a change feed never ends: continue after what was examined
      result.next = ChangePayload(result.scanned > 0 ? static_cast<uint64_t>(last_offset) + 1 : payload.next,
                                  payload.from_timestamp_ms);
      break;
  }
  return result;
}

}  // namespace

Result<LookupOptions> ParseLookupOptions(const driver::Config& config) {
  LookupOptions options;
  AQ_ASSIGN_OR_RETURN(options.connection, ParseConnectionOptions(config));
  auto positive = [&](const char* name, size_t fallback, size_t* out) -> Status {
    AQ_ASSIGN_OR_RETURN(int64_t value, driver::ConfigInt(config, name, static_cast<int64_t>(fallback)));
    if (value < 1) return InvalidArgument("config '{}': must be positive, got {}", name, value);
    *out = static_cast<size_t>(value);
    return Status::OK();
  };
  AQ_RETURN_IF_ERROR(positive("max_key_size", options.limits.max_key_size, &options.limits.max_key_size));
  AQ_RETURN_IF_ERROR(positive("max_record_size", options.limits.max_record_size, &options.limits.max_record_size));
  AQ_RETURN_IF_ERROR(
      positive("max_records_in_batch", options.limits.max_records_in_batch, &options.limits.max_records_in_batch));
  AQ_ASSIGN_OR_RETURN(options.applied_window_ms,
                      driver::ConfigInt(config, "applied_window_ms", options.applied_window_ms));
  if (options.applied_window_ms < 1) {
    return InvalidArgument("config 'applied_window_ms': must be positive, got {}", options.applied_window_ms);
  }
  return options;
}

Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options, Clock* clock) {
  auto service = std::make_shared<PgLookupService>(options, clock != nullptr ? clock : Clock::System());
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("postgres lookup service");
  return std::shared_ptr<driver::LookupService>(std::move(service));
}

}  // namespace aquifer::drivers::postgres
