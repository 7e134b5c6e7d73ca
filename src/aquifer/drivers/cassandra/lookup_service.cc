#include "aquifer/drivers/cassandra/lookup_service.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "aquifer/base/text.h"
#include "aquifer/driver/offset_lookup.h"
#include "aquifer/driver/offset_payload.h"
#include "aquifer/driver/record_limits.h"
#include "aquifer/keys/filter.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::cassandra {
namespace {

using cql::Blob;
using cql::Null;
using cql::Value;
using driver::InstanceInfo;
using driver::Record;

constexpr int64_t kBucketRows = 4096;
// Statements per unlogged batch, and bytes: under Cassandra's default
// batch_size_fail_threshold (50 KiB); a larger row goes alone.
constexpr size_t kBatchStatements = 64;
constexpr size_t kBatchBytes = 32 * 1024;
constexpr size_t kInList = 50;  // keys per `IN (...)` read

std::string Describe(std::string_view what, const InstanceInfo& instance) {
  return fmt::format("{} {}", what, instance.instance_id.ToString());
}

Value UuidValue(const Uuid& id) {
  return Blob{std::string(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size())};
}

int64_t BucketOf(int64_t offset) { return offset / kBucketRows; }

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Cursor payloads: driver/offset_payload.h (the byte layout shared with the other offset-numbered drivers).
using driver::PayloadKind;
using Payload = driver::OffsetPayload;

Result<int64_t> BigintCell(const cql::Row& row, size_t column) {
  if (column >= row.size() || !row[column]) return Corruption("cassandra lookup: a null cell {}", column);
  return cql::DecodeBigint(*row[column]);
}
std::string_view BlobCell(const cql::Row& row, size_t column) {
  return column < row.size() && row[column] ? std::string_view(*row[column]) : std::string_view();
}

// Writes statements as unlogged batches of bounded size (each batch stays in
// whatever partitions its statements name; callers group by partition).
class BatchWriter {
 public:
  explicit BatchWriter(cql::Session* session) : session_(session) {}
  Status Add(const cql::PreparedStatement* statement, std::vector<Value> values, size_t bytes) {
    if (!entries_.empty() && (entries_.size() >= kBatchStatements || bytes_ + bytes > kBatchBytes)) {
      AQ_RETURN_IF_ERROR(Flush());
    }
    entries_.push_back(cql::BatchEntry{statement, "", std::move(values)});
    bytes_ += bytes;
    return Status::OK();
  }
  Status Flush() {
    if (entries_.empty()) return Status::OK();
    Status done;
    if (entries_.size() == 1) {
      auto rows = session_->Execute(*entries_[0].prepared, entries_[0].values);
      done = rows.ok() ? Status::OK() : rows.status();
    } else {
      done = session_->Batch(cql::BatchType::kUnlogged, entries_);
    }
    entries_.clear();
    bytes_ = 0;
    return done;
  }

 private:
  cql::Session* session_;
  std::vector<cql::BatchEntry> entries_;
  size_t bytes_ = 0;
};

struct Sequence {
  bool exists = false;
  int64_t next = 0;
  std::optional<std::string> writer;  // raw uuid bytes
  int64_t lease_until = 0;
};

class CassandraLookupService final : public driver::LookupService {
 public:
  CassandraLookupService(std::unique_ptr<cql::Session> session, const LookupOptions& options, Clock* clock)
      : session_(std::move(session)),
        options_(options),
        clock_(clock),
        ks_(options.base.keyspace) {}

  Status Init();

  driver::LookupCapabilities capabilities() const override { return {options_.limits}; }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) {
      return InvalidArgument("registering instance {}: no schema", instance.instance_id.ToString());
    }
    return Status::OK();
  }

  Status RemoveInstance(const InstanceInfo& instance) override;
  Status WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                      std::span<const driver::RecordGroup> groups) override;
  Result<driver::QueryCursors> Query(const InstanceInfo& instance, const driver::QueryRequest& request) override;
  Result<driver::PeekCursors> Peek(const InstanceInfo& instance) override;
  Result<driver::ReadResult> ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                        const keys::Filter& filter, const driver::ReadOptions& options) override;
  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override;
  Result<driver::StoredRecords> CountStored(const InstanceInfo& instance) override;

  Status Reset() override {
    for (const char* table : {"lookup_sequence", "lookup_log", "lookup_index", "lookup_applied"}) {
      auto done = session_->Query(fmt::format("TRUNCATE {}.{}", ks_, table));
      if (!done.ok()) return done.status().WithContext("resetting the lookup tables");
    }
    return Status::OK();
  }

 private:
  std::shared_ptr<std::mutex> InstanceMutex(const Uuid& id) {
    std::lock_guard lock(mutexes_mu_);
    auto& slot = mutexes_[id];
    if (!slot) slot = std::make_shared<std::mutex>();
    return slot;
  }
  Result<Sequence> ReadSequence(const InstanceInfo& instance);
  Result<int64_t> Committed(const InstanceInfo& instance) {
    AQ_ASSIGN_OR_RETURN(Sequence sequence, ReadSequence(instance));
    return sequence.next;
  }
  Result<uint64_t> CommittedEnd(const InstanceInfo& instance) {
    AQ_ASSIGN_OR_RETURN(int64_t next, Committed(instance));
    return static_cast<uint64_t>(next);  // never negative: ReadSequence checks it
  }
  // Takes the instance's write lease; returns the committed next offset.
  Result<int64_t> AcquireLease(const InstanceInfo& instance, const std::string& token);
  void ReleaseLease(const InstanceInfo& instance, const std::string& token);
  Result<driver::ReadResult> ReadIndex(const InstanceInfo& instance, const Payload& payload,
                                       const keys::Filter& filter, const driver::ReadOptions& options);
  Result<driver::ReadResult> ReadLog(const InstanceInfo& instance, const Payload& payload,
                                     const keys::Filter& filter, const driver::ReadOptions& options);
  Result<std::shared_ptr<const cql::PreparedStatement>> InStatement(const std::string& head, size_t count);

  std::unique_ptr<cql::Session> session_;
  const LookupOptions options_;
  Clock* const clock_;
  const std::string ks_;
  std::mutex mutexes_mu_;
  std::map<Uuid, std::shared_ptr<std::mutex>> mutexes_;  // GUARDED_BY(mutexes_mu_)
  std::shared_ptr<const cql::PreparedStatement> read_sequence_, insert_sequence_, take_lease_, commit_, release_,
      delete_sequence_, insert_log_, read_log_, read_log_desc_, insert_index_, read_index_from_, read_index_range_,
      insert_applied_, delete_log_bucket_, delete_index_, delete_applied_, delete_log_row_, delete_index_row_,
      scan_log_bucket_, scan_index_, count_log_bucket_, count_index_;
};

Status CassandraLookupService::Init() {
  for (const std::string& ddl : {
           fmt::format("CREATE TABLE IF NOT EXISTS {}.lookup_sequence (instance_id uuid PRIMARY KEY, next_offset bigint, "
                       "writer uuid, lease_until bigint)", ks_),
           fmt::format("CREATE TABLE IF NOT EXISTS {}.lookup_log (instance_id uuid, bucket bigint, log_offset bigint, "
                       "ts bigint, key blob, avro blob, PRIMARY KEY ((instance_id, bucket), log_offset))", ks_),
           fmt::format("CREATE TABLE IF NOT EXISTS {}.lookup_index (instance_id uuid, key blob, ts bigint, "
                       "log_offset bigint, avro blob, PRIMARY KEY (instance_id, key))", ks_),
           fmt::format("CREATE TABLE IF NOT EXISTS {}.lookup_applied (instance_id uuid, group_id blob, end_offset bigint, "
                       "PRIMARY KEY (instance_id, group_id))", ks_)}) {
    auto made = session_->Query(ddl);
    if (!made.ok()) return made.status();
  }
  struct {
    std::shared_ptr<const cql::PreparedStatement>* target;
    std::string cql;
  } statements[] = {
      {&read_sequence_, fmt::format("SELECT next_offset, writer, lease_until FROM {}.lookup_sequence WHERE instance_id = ?", ks_)},
      {&insert_sequence_, fmt::format("INSERT INTO {}.lookup_sequence (instance_id, next_offset, writer, lease_until) "
                                      "VALUES (?, 0, ?, ?) IF NOT EXISTS", ks_)},
      {&take_lease_, fmt::format("UPDATE {}.lookup_sequence SET writer = ?, lease_until = ? WHERE instance_id = ? "
                                 "IF writer = ? AND lease_until = ?", ks_)},
      {&commit_, fmt::format("UPDATE {}.lookup_sequence SET next_offset = ?, writer = null, lease_until = null "
                             "WHERE instance_id = ? IF writer = ?", ks_)},
      {&release_, fmt::format("UPDATE {}.lookup_sequence SET writer = null, lease_until = null WHERE instance_id = ? "
                              "IF writer = ?", ks_)},
      {&delete_sequence_, fmt::format("DELETE FROM {}.lookup_sequence WHERE instance_id = ? IF EXISTS", ks_)},
      {&insert_log_, fmt::format("INSERT INTO {}.lookup_log (instance_id, bucket, log_offset, ts, key, avro) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", ks_)},
      {&read_log_, fmt::format("SELECT log_offset, ts, key, avro FROM {}.lookup_log WHERE instance_id = ? AND bucket = ? "
                               "AND log_offset >= ? AND log_offset < ? LIMIT ?", ks_)},
      {&read_log_desc_, fmt::format("SELECT log_offset, ts, key, avro FROM {}.lookup_log WHERE instance_id = ? AND bucket = ? "
                                    "AND log_offset >= ? AND log_offset < ? ORDER BY log_offset DESC LIMIT ?", ks_)},
      {&insert_index_, fmt::format("INSERT INTO {}.lookup_index (instance_id, key, ts, log_offset, avro) "
                                   "VALUES (?, ?, ?, ?, ?)", ks_)},
      {&read_index_from_, fmt::format("SELECT key, ts, log_offset, avro FROM {}.lookup_index WHERE instance_id = ? "
                                      "AND key >= ? LIMIT ?", ks_)},
      {&read_index_range_, fmt::format("SELECT key, ts, log_offset, avro FROM {}.lookup_index WHERE instance_id = ? "
                                       "AND key >= ? AND key < ? LIMIT ?", ks_)},
      {&insert_applied_, fmt::format("INSERT INTO {}.lookup_applied (instance_id, group_id, end_offset) VALUES (?, ?, ?) "
                                     "USING TTL ?", ks_)},
      {&delete_log_bucket_, fmt::format("DELETE FROM {}.lookup_log WHERE instance_id = ? AND bucket = ?", ks_)},
      {&delete_index_, fmt::format("DELETE FROM {}.lookup_index WHERE instance_id = ?", ks_)},
      {&delete_applied_, fmt::format("DELETE FROM {}.lookup_applied WHERE instance_id = ?", ks_)},
      {&delete_log_row_, fmt::format("DELETE FROM {}.lookup_log WHERE instance_id = ? AND bucket = ? AND log_offset = ?", ks_)},
      {&delete_index_row_, fmt::format("DELETE FROM {}.lookup_index WHERE instance_id = ? AND key = ?", ks_)},
      {&scan_log_bucket_, fmt::format("SELECT log_offset, ts FROM {}.lookup_log WHERE instance_id = ? AND bucket = ?", ks_)},
      {&scan_index_, fmt::format("SELECT key, ts FROM {}.lookup_index WHERE instance_id = ?", ks_)},
      {&count_log_bucket_, fmt::format("SELECT count(*) FROM {}.lookup_log WHERE instance_id = ? AND bucket = ?", ks_)},
      {&count_index_, fmt::format("SELECT count(*) FROM {}.lookup_index WHERE instance_id = ?", ks_)},
  };
  for (auto& statement : statements) {
    AQ_ASSIGN_OR_RETURN(*statement.target, session_->Prepare(statement.cql));
  }
  return Status::OK();
}

Result<std::shared_ptr<const cql::PreparedStatement>> CassandraLookupService::InStatement(const std::string& head,
                                                                                          size_t count) {
  std::string markers;
  for (size_t marker_idx = 0; marker_idx < count; ++marker_idx) markers += marker_idx == 0 ? "?" : ", ?";
  return session_->Prepare(fmt::format("{} ({})", head, markers));
}

Result<Sequence> CassandraLookupService::ReadSequence(const InstanceInfo& instance) {
  cql::QueryOptions serial;
  serial.consistency = session_->options().serial_consistency;
  auto rows = session_->Execute(*read_sequence_, std::vector<Value>{UuidValue(instance.instance_id)}, serial);
  if (!rows.ok()) return rows.status().WithContext(Describe("reading the offset sequence of", instance));
  Sequence sequence;
  if (rows->rows.empty()) return sequence;
  const cql::Row& row = rows->rows[0];
  sequence.exists = true;
  if (row[0]) {
    AQ_ASSIGN_OR_RETURN(sequence.next, cql::DecodeBigint(*row[0]));
  }
  if (row[1]) sequence.writer = *row[1];
  if (row[2]) {
    AQ_ASSIGN_OR_RETURN(sequence.lease_until, cql::DecodeBigint(*row[2]));
  }
  if (sequence.next < 0) return Corruption("{}: negative next offset {}", Describe("offset sequence of", instance), sequence.next);
  return sequence;
}

Result<int64_t> CassandraLookupService::AcquireLease(const InstanceInfo& instance, const std::string& token) {
  const std::string context = Describe("taking the write lease of", instance);
  cql::QueryOptions lwt;
  lwt.serial_consistency = session_->options().serial_consistency;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.lease_ms * 2);
  for (int attempt = 0;; ++attempt) {
    AQ_ASSIGN_OR_RETURN(Sequence sequence, ReadSequence(instance));
    const int64_t now = WallMillis();
    Result<cql::Rows> applied = cql::Rows{};
    if (!sequence.exists) {
      applied = session_->Execute(*insert_sequence_,
                                  std::vector<Value>{UuidValue(instance.instance_id), Blob{token}, now + options_.lease_ms}, lwt);
    } else if (!sequence.writer || sequence.lease_until < now) {
      std::vector<Value> values = {Blob{token}, now + options_.lease_ms, UuidValue(instance.instance_id)};
      if (sequence.writer) {
        values.push_back(Blob{*sequence.writer});
        values.emplace_back(sequence.lease_until);
      } else {
        values.push_back(Null{});
        values.push_back(Null{});
      }
      applied = session_->Execute(*take_lease_, values, lwt);
    } else {
      applied = cql::Rows{};  // held by another live writer: wait
    }
    if (!applied.ok()) return applied.status().WithContext(context);
    if (!applied->rows.empty() && applied->rows[0][0]) {
      AQ_ASSIGN_OR_RETURN(bool ok, cql::DecodeBoolean(*applied->rows[0][0]));
      if (ok) return sequence.next;
    }
    if (std::chrono::steady_clock::now() > give_up) {
      return Unavailable("{}: another writer holds it (retry later)", context);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2 + attempt % 20));
  }
}

void CassandraLookupService::ReleaseLease(const InstanceInfo& instance, const std::string& token) {
  cql::QueryOptions lwt;
  lwt.serial_consistency = session_->options().serial_consistency;
  (void)session_->Execute(*release_, std::vector<Value>{UuidValue(instance.instance_id), Blob{token}}, lwt);
}

Status CassandraLookupService::WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                                            std::span<const driver::RecordGroup> groups) {
  AQ_RETURN_IF_ERROR(driver::CheckWrite(instance, records, groups, options_.limits));
  if (groups.empty() && (records.empty() || (!instance.use_log && !instance.use_index))) return Status::OK();
  const std::string context = Describe("writing records to", instance);
  const Value id = UuidValue(instance.instance_id);

  auto mutex = InstanceMutex(instance.instance_id);
  std::lock_guard instance_lock(*mutex);
  const std::string token(reinterpret_cast<const char*>(Uuid::Random().bytes.data()), 16);
  auto leased = AcquireLease(instance, token);
  if (!leased.ok()) return leased.status().WithContext(context);
  const int64_t first = *leased;

  bool committed_write = false;
  Status done = [&]() -> Status {
    // Exactly once: which groups are new (an applied id counts once its end is committed).
    std::vector<const Record*> kept;
    std::vector<std::string> fresh_ids;
    if (groups.empty()) {
      for (const Record& record : records) kept.push_back(&record);
    } else {
      std::set<std::string, std::less<>> applied;
      std::vector<std::string> ids;
      for (const driver::RecordGroup& group : groups) ids.push_back(group.id);
      for (size_t begin = 0; begin < ids.size(); begin += kInList) {
        const size_t count = std::min(kInList, ids.size() - begin);
        AQ_ASSIGN_OR_RETURN(auto statement, InStatement(fmt::format(
            "SELECT group_id, end_offset FROM {}.lookup_applied WHERE instance_id = ? AND group_id IN", ks_), count));
        std::vector<Value> values = {id};
        for (size_t id_idx = begin; id_idx < begin + count; ++id_idx) values.push_back(Blob{ids[id_idx]});
        AQ_ASSIGN_OR_RETURN(std::vector<cql::Row> rows, session_->ExecuteAll(*statement, values));
        for (const cql::Row& row : rows) {
          AQ_ASSIGN_OR_RETURN(int64_t end, BigintCell(row, 1));
          if (end <= first) applied.emplace(BlobCell(row, 0));
        }
      }
      driver::KeepNewGroups(records, groups, &applied, &kept, &fresh_ids);
      if (fresh_ids.empty()) return Status::OK();
    }

    // The log rows, offsets from the committed end on.
    BatchWriter batch(session_.get());
    if (instance.use_log) {
      int64_t bucket = -1;
      for (size_t kept_idx = 0; kept_idx < kept.size(); ++kept_idx) {
        const Record& record = *kept[kept_idx];
        const int64_t offset = first + static_cast<int64_t>(kept_idx);
        if (BucketOf(offset) != bucket) {
          AQ_RETURN_IF_ERROR(batch.Flush());
          bucket = BucketOf(offset);
        }
        AQ_RETURN_IF_ERROR(batch.Add(insert_log_.get(),
                                     {id, bucket, offset, record.timestamp_ms, Blob{record.key}, Blob{record.avro}},
                                     record.key.size() + record.avro.size() + 64));
      }
      AQ_RETURN_IF_ERROR(batch.Flush());
    }

    // The index: per key the highest (timestamp, offset) of the call, written
    // where it beats the stored row.
    if (instance.use_index && !kept.empty()) {
      std::unordered_map<std::string_view, size_t> winner_of;
      for (size_t kept_idx = 0; kept_idx < kept.size(); ++kept_idx) {
        auto [it, inserted] = winner_of.try_emplace(kept[kept_idx]->key, kept_idx);
        if (!inserted && kept[kept_idx]->timestamp_ms >= kept[it->second]->timestamp_ms) it->second = kept_idx;
      }
      std::vector<size_t> winners;
      for (const auto& [key, kept_idx] : winner_of) winners.push_back(kept_idx);
      std::sort(winners.begin(), winners.end(), [&](size_t a, size_t b) { return kept[a]->key < kept[b]->key; });
      std::map<std::string, std::pair<int64_t, int64_t>, std::less<>> stored;  // key → (ts, offset)
      for (size_t begin = 0; begin < winners.size(); begin += kInList) {
        const size_t count = std::min(kInList, winners.size() - begin);
        AQ_ASSIGN_OR_RETURN(auto statement, InStatement(fmt::format(
            "SELECT key, ts, log_offset FROM {}.lookup_index WHERE instance_id = ? AND key IN", ks_), count));
        std::vector<Value> values = {id};
        for (size_t winner_idx = begin; winner_idx < begin + count; ++winner_idx) {
          values.push_back(Blob{kept[winners[winner_idx]]->key});
        }
        AQ_ASSIGN_OR_RETURN(std::vector<cql::Row> rows, session_->ExecuteAll(*statement, values));
        for (const cql::Row& row : rows) {
          AQ_ASSIGN_OR_RETURN(int64_t ts, BigintCell(row, 1));
          AQ_ASSIGN_OR_RETURN(int64_t offset, BigintCell(row, 2));
          stored[std::string(BlobCell(row, 0))] = {ts, offset};
        }
      }
      for (size_t kept_idx : winners) {
        const Record& record = *kept[kept_idx];
        const int64_t offset = first + static_cast<int64_t>(kept_idx);
        if (auto it = stored.find(record.key);
            it != stored.end() && std::pair{record.timestamp_ms, offset} <= it->second) {
          continue;
        }
        AQ_RETURN_IF_ERROR(batch.Add(insert_index_.get(), {id, Blob{record.key}, record.timestamp_ms, offset, Blob{record.avro}},
                                     record.key.size() + record.avro.size() + 64));
      }
      AQ_RETURN_IF_ERROR(batch.Flush());
    }

    // The applied ids (committed with the sequence below), then the commit.
    const int64_t end = first + static_cast<int64_t>(kept.size());
    const int32_t ttl = static_cast<int32_t>(std::clamp<int64_t>(options_.applied_window_ms / 1000 + 1, 1, 630'720'000));
    for (const std::string& group_id : fresh_ids) {
      AQ_RETURN_IF_ERROR(batch.Add(insert_applied_.get(), {id, Blob{group_id}, end, ttl}, group_id.size() + 32));
    }
    AQ_RETURN_IF_ERROR(batch.Flush());
    cql::QueryOptions lwt;
    lwt.serial_consistency = session_->options().serial_consistency;
    AQ_ASSIGN_OR_RETURN(cql::Rows committed, session_->Execute(*commit_, std::vector<Value>{end, id, Blob{token}}, lwt));
    if (committed.rows.empty() || !committed.rows[0][0]) return Internal("the commit answered no [applied]");
    AQ_ASSIGN_OR_RETURN(bool ok, cql::DecodeBoolean(*committed.rows[0][0]));
    if (!ok) return Aborted("the write lease was taken over before the commit (the write took longer than lease_ms)");
    committed_write = true;
    return Status::OK();
  }();
  if (!done.ok()) {
    ReleaseLease(instance, token);
    return done.WithContext(context);
  }
  if (!committed_write) ReleaseLease(instance, token);  // nothing new: every group was applied
  return Status::OK();
}

Result<driver::QueryCursors> CassandraLookupService::Query(const InstanceInfo& instance,
                                                           const driver::QueryRequest& request) {
  return driver::QueryOffsetCursors(instance, request, [&] { return CommittedEnd(instance); });
}

Result<driver::PeekCursors> CassandraLookupService::Peek(const InstanceInfo& instance) {
  return driver::PeekOffsetCursors(instance, [&] { return CommittedEnd(instance); });
}

Result<driver::ReadResult> CassandraLookupService::ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                                              const keys::Filter& filter,
                                                              const driver::ReadOptions& options) {
  return driver::ReadOffsetCursor(
      instance, payload, options, [&](const Payload& decoded) { return ReadIndex(instance, decoded, filter, options); },
      [&](const Payload& decoded) { return ReadLog(instance, decoded, filter, options); });
}

Result<driver::ReadResult> CassandraLookupService::ReadIndex(const InstanceInfo& instance, const Payload& payload,
                                                             const keys::Filter& filter,
                                                             const driver::ReadOptions& options) {
  AQ_ASSIGN_OR_RETURN(keys::QueryPlan plan, keys::PlanFilter(*instance.schema, filter));
  const int64_t examine = driver::IndexExamine(plan, options);
  const int32_t fetch = static_cast<int32_t>(std::min<int64_t>(examine + 1, std::numeric_limits<int32_t>::max()));
  std::vector<Value> values = {UuidValue(instance.instance_id), Blob{payload.start}};
  if (!payload.end.empty()) values.push_back(Blob{payload.end});
  values.emplace_back(fetch);
  cql::QueryOptions paging;
  paging.page_size = std::min<int32_t>(fetch, 5000);
  auto rows = session_->ExecuteAll(payload.end.empty() ? *read_index_from_ : *read_index_range_, values, paging);
  if (!rows.ok()) return rows.status().WithContext(Describe("scanning the index of", instance));

  const int64_t horizon = driver::RetentionHorizon(instance.index_retention_ms, clock_->NowMillis());
  return driver::ReadIndexPage(
      instance, plan, payload, options, horizon, rows->size(),
      [&](size_t row_idx) { return driver::IndexRowView{BlobCell((*rows)[row_idx], 0), BlobCell((*rows)[row_idx], 3)}; },
      [&](size_t row_idx) { return BigintCell((*rows)[row_idx], 1); },
      [&](size_t row_idx) { return BigintCell((*rows)[row_idx], 2); });
}

// Walks the log bucket by bucket (one partition per 4096 offsets), never past
// the committed end, ascending (replay, change) or descending (rewind).
Result<driver::ReadResult> CassandraLookupService::ReadLog(const InstanceInfo& instance, const Payload& payload,
                                                           const keys::Filter& filter,
                                                           const driver::ReadOptions& options) {
  const schema::Schema& schema = *instance.schema;
  driver::ReadResult result;
  result.residual = !filter.empty();
  const int64_t from_ts = driver::LogFromTimestamp(instance, payload, options, clock_->NowMillis());
  const int64_t examine = driver::LogExamine(filter, options);
  AQ_ASSIGN_OR_RETURN(int64_t committed, Committed(instance));
  const bool descending = payload.kind == PayloadKind::kRewind;
  const driver::LogSpan span = driver::LogSpanToRead(payload, committed);
  int64_t low = span.low, high = span.high;  // the offsets still to read: [low, high)
  bool stopped = false;  // a limit or the budget ended the page before [low, high) did
  while (low < high && !stopped) {
    const int64_t bucket = BucketOf(descending ? high - 1 : low);
    const int64_t bucket_low = std::max(low, bucket * kBucketRows);
    const int64_t bucket_high = std::min(high, (bucket + 1) * kBucketRows);
    const int64_t want = examine - result.scanned;
    std::vector<Value> values = {UuidValue(instance.instance_id), bucket, bucket_low, bucket_high,
                                 static_cast<int32_t>(std::min<int64_t>(want, 100'000))};
    cql::QueryOptions paging;
    paging.page_size = static_cast<int32_t>(std::min<int64_t>(want, 5000));
    auto rows = session_->ExecuteAll(descending ? *read_log_desc_ : *read_log_, values, paging);
    if (!rows.ok()) return rows.status().WithContext(Describe("scanning the log of", instance));
    for (const cql::Row& row : *rows) {
      if (static_cast<int64_t>(result.records.size()) >= options.limit || result.scanned >= examine) {
        stopped = true;
        break;
      }
      AQ_ASSIGN_OR_RETURN(int64_t offset, BigintCell(row, 0));
      AQ_ASSIGN_OR_RETURN(int64_t ts, BigintCell(row, 1));
      std::string_view avro = BlobCell(row, 3);
      ++result.scanned;
      result.scanned_bytes += static_cast<int64_t>(avro.size());
      if (descending) {
        high = offset;
      } else {
        low = offset + 1;
      }
      if (ts < from_ts) continue;
      if (!filter.empty()) {
        auto value = schema::DecodeAvro(schema, avro);
        if (!value.ok()) return value.status().WithContext(Describe("decoding a log record of", instance));
        if (!keys::Matches(schema, filter, *value)) continue;
      }
      result.records.push_back(Record{std::string(BlobCell(row, 2)), std::string(avro), ts, offset});
    }
    if (stopped) break;
    if (static_cast<int64_t>(result.records.size()) >= options.limit || result.scanned >= examine) {
      stopped = true;
      if (static_cast<int64_t>(rows->size()) < want) {
        // The bucket ended with the page: what remains of it holds nothing.
        if (descending) high = bucket_low; else low = bucket_high;
      }
      break;
    }
    if (descending) high = bucket_low; else low = bucket_high;  // the rest of the bucket is empty (purged)
  }
  result.next = driver::NextLogPayload(payload, low, high);
  return result;
}

Status CassandraLookupService::RemoveInstance(const InstanceInfo& instance) {
  const std::string context = Describe("removing instance", instance);
  auto mutex = InstanceMutex(instance.instance_id);
  std::lock_guard instance_lock(*mutex);
  auto sequence = ReadSequence(instance);
  if (!sequence.ok()) return sequence.status().WithContext(context);
  const Value id = UuidValue(instance.instance_id);
  // Past the committed end too: a write that died before its commit left rows there.
  const int64_t last_bucket =
      BucketOf(sequence->next + static_cast<int64_t>(options_.limits.max_records_in_batch));
  for (int64_t bucket = 0; bucket <= last_bucket; ++bucket) {
    auto done = session_->Execute(*delete_log_bucket_, std::vector<Value>{id, bucket});
    if (!done.ok()) return done.status().WithContext(context);
  }
  for (const auto* statement : {delete_index_.get(), delete_applied_.get()}) {
    auto done = session_->Execute(*statement, std::vector<Value>{id});
    if (!done.ok()) return done.status().WithContext(context);
  }
  cql::QueryOptions lwt;
  lwt.serial_consistency = session_->options().serial_consistency;
  auto done = session_->Execute(*delete_sequence_, std::vector<Value>{id}, lwt);
  if (!done.ok()) return done.status().WithContext(context);
  return Status::OK();
}

// Row by row: Cassandra deletes by key, and expiry is by timestamp (not by
// offset), so the rows are read first. Writers of the instance in this
// process wait (its mutex), so an index row replaced meanwhile is not deleted.
Result<int64_t> CassandraLookupService::PurgeExpired(const InstanceInfo& instance) {
  const int64_t now_ms = clock_->NowMillis();
  const std::string context = Describe("purging expired records of", instance);
  const Value id = UuidValue(instance.instance_id);
  auto mutex = InstanceMutex(instance.instance_id);
  std::lock_guard instance_lock(*mutex);
  int64_t purged = 0;
  BatchWriter batch(session_.get());
  if (instance.log_retention_ms > 0) {
    const int64_t horizon = driver::RetentionHorizon(instance.log_retention_ms, now_ms);
    auto committed = Committed(instance);
    if (!committed.ok()) return committed.status().WithContext(context);
    for (int64_t bucket = 0; bucket <= BucketOf(*committed); ++bucket) {
      auto rows = session_->ExecuteAll(*scan_log_bucket_, std::vector<Value>{id, bucket});
      if (!rows.ok()) return rows.status().WithContext(context);
      for (const cql::Row& row : *rows) {
        AQ_ASSIGN_OR_RETURN(int64_t offset, BigintCell(row, 0));
        AQ_ASSIGN_OR_RETURN(int64_t ts, BigintCell(row, 1));
        if (ts >= horizon) continue;
        AQ_RETURN_IF_ERROR(batch.Add(delete_log_row_.get(), {id, bucket, offset}, 48));
        ++purged;
      }
      AQ_RETURN_IF_ERROR(batch.Flush());
    }
  }
  if (instance.index_retention_ms > 0) {
    const int64_t horizon = driver::RetentionHorizon(instance.index_retention_ms, now_ms);
    auto rows = session_->ExecuteAll(*scan_index_, std::vector<Value>{id});
    if (!rows.ok()) return rows.status().WithContext(context);
    for (const cql::Row& row : *rows) {
      AQ_ASSIGN_OR_RETURN(int64_t ts, BigintCell(row, 1));
      if (ts >= horizon) continue;
      AQ_RETURN_IF_ERROR(batch.Add(delete_index_row_.get(), {id, Blob{std::string(BlobCell(row, 0))}}, BlobCell(row, 0).size() + 32));
      ++purged;
    }
    AQ_RETURN_IF_ERROR(batch.Flush());
  }
  return purged;
}

Result<driver::StoredRecords> CassandraLookupService::CountStored(const InstanceInfo& instance) {
  const std::string context = Describe("counting the records of", instance);
  const Value id = UuidValue(instance.instance_id);
  driver::StoredRecords stored;
  AQ_ASSIGN_OR_RETURN(int64_t committed, Committed(instance));
  for (int64_t bucket = 0; bucket <= BucketOf(committed); ++bucket) {
    auto rows = session_->Execute(*count_log_bucket_, std::vector<Value>{id, bucket});
    if (!rows.ok()) return rows.status().WithContext(context);
    if (!rows->rows.empty()) {
      AQ_ASSIGN_OR_RETURN(int64_t count, BigintCell(rows->rows[0], 0));
      stored.log += count;
    }
  }
  auto rows = session_->Execute(*count_index_, std::vector<Value>{id});
  if (!rows.ok()) return rows.status().WithContext(context);
  if (!rows->rows.empty()) {
    AQ_ASSIGN_OR_RETURN(stored.index, BigintCell(rows->rows[0], 0));
  }
  return stored;
}

}  // namespace

Result<LookupOptions> ParseLookupOptions(const driver::Config& config) {
  LookupOptions options;
  AQ_ASSIGN_OR_RETURN(options.base, ParseOptions(config));
  // A clustering key (the index's `key`) is at most 64 KiB in Cassandra.
  const driver::Limits maxima{.max_key_size = 65'535, .max_record_size = 16 << 20, .max_records_in_batch = 1'000'000};
  AQ_RETURN_IF_ERROR(driver::ConfigureLimits(config, maxima, &options.limits));
  AQ_ASSIGN_OR_RETURN(options.applied_window_ms,
                      driver::ConfigIntWithin(config, "applied_window_ms", options.applied_window_ms, int64_t{1} << 45));
  AQ_ASSIGN_OR_RETURN(options.lease_ms, driver::ConfigIntWithin(config, "lease_ms", options.lease_ms, 3'600'000));
  return options;
}

Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options, Clock* clock) {
  auto session = ConnectAndEnsureKeyspace(options.base);
  if (!session.ok()) return session.status().WithContext("cassandra lookup service");
  auto service = std::make_shared<CassandraLookupService>(std::move(*session), options,
                                                          clock != nullptr ? clock : Clock::System());
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("cassandra lookup service");
  return std::shared_ptr<driver::LookupService>(std::move(service));
}

}  // namespace aquifer::drivers::cassandra
