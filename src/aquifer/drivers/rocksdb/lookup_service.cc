#include "aquifer/drivers/rocksdb/lookup_service.h"

#include <atomic>
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "aquifer/base/text.h"
#include "aquifer/driver/record_limits.h"
#include "aquifer/drivers/rocksdb/rocksdb_handle.h"
#include "aquifer/drivers/rocksdb/usage_service.h"
#include "aquifer/keys/filter.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::rocksdb {
namespace {

using driver::InstanceInfo;
using driver::Record;

constexpr size_t kIdSize = 16;
constexpr char kSequenceTag = 's';
constexpr char kAppliedTag = 'a';  // instance ‖ 'a' ‖ group id → applied ms (8)
constexpr char kExpiryTag = 'e';   // instance ‖ 'e' ‖ applied ms (8) ‖ group id → empty
// Expired applied ids are pruned at most this often per instance, a bounded
// number per write, so pruning never costs a write more than a short scan.
constexpr int64_t kPruneIntervalMs = 60'000;
constexpr size_t kPruneMinPerWrite = 64;
// Bound on a key carried in an index payload: resume keys are at most one
// byte over the key limit, range ends come from filter values.
constexpr uint64_t kMaxPayloadKeySize = 1 << 20;
// Folding index merge operands: index keys hash into kMergeSlots counters;
// the write that brings a counter to kFoldAfterMerges reads its key's row and
// Puts the winner, which replaces every operand before it. The counters start
// again at 0 when the index family's active memtable is switched: a flush
// folds each key's operands of one memtable into one, so only the operands of
// the active memtable (and those of the few memtables and level-0 files not
// yet flushed or compacted: one each) can gather in a chain. So a key hot
// within one memtable never gathers a long chain for reads to fold, while
// keys rewritten at the pace of a whole batch's keyspace (each a few times
// per memtable) are not read before their write at all.
constexpr size_t kMergeSlots = size_t{1} << 16;
constexpr uint32_t kFoldAfterMerges = 32;

// ---- fixed-width and varint integers ---------------------------------------

void PutFixed32(std::string* out, uint32_t value) {
  char buf[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                 static_cast<char>(value >> 8), static_cast<char>(value)};
  out->append(buf, 4);
}
uint32_t GetFixed32(const char* p) {
  return (uint32_t{static_cast<uint8_t>(p[0])} << 24) | (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
         (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])};
}
void PutVarint(std::string* out, uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// Consumes bytes from a payload; every read is bounds-checked.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool Byte(uint8_t* out) {
    if (data_.empty()) return false;
    *out = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool Fixed64(uint64_t* out) {
    if (data_.size() < 8) return false;
    *out = GetBigEndian64(data_.data());
    data_.remove_prefix(8);
    return true;
  }
  bool Varint(uint64_t* out) {
    uint64_t value = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
      if (data_.empty()) return false;
      uint8_t byte = static_cast<uint8_t>(data_[0]);
      data_.remove_prefix(1);
      if (shift == 63 && byte > 1) return false;
      value |= uint64_t{byte & 0x7Fu} << shift;
      if ((byte & 0x80) == 0) {
        // Canonical form only: no redundant trailing zero groups.
        if (byte == 0 && shift > 0) return false;
        *out = value;
        return true;
      }
    }
    return false;
  }
  bool Bytes(uint64_t length, std::string* out) {
    if (data_.size() < length) return false;
    out->assign(data_.substr(0, length));
    data_.remove_prefix(length);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

// ---- keys and values --------------------------------------------------------

std::string InstancePrefix(const InstanceInfo& instance) { return std::string(instance.instance_id.AsBytes()); }

std::string LogKey(std::string_view prefix, uint64_t offset) {
  std::string key(prefix);
  PutBigEndian64(&key, offset);
  return key;
}
std::string SequenceKey(std::string_view prefix) {
  std::string key(prefix);
  key.push_back(kSequenceTag);
  return key;
}

std::string AppliedKey(std::string_view prefix, std::string_view id) {
  std::string key(prefix);
  key.push_back(kAppliedTag);
  key.append(id);
  return key;
}
std::string ExpiryKey(std::string_view prefix, int64_t applied_ms, std::string_view id) {
  std::string key(prefix);
  key.push_back(kExpiryTag);
  PutBigEndian64(&key, static_cast<uint64_t>(std::max<int64_t>(applied_ms, 0)));
  key.append(id);
  return key;
}

// Log value: timestamp(8) ‖ key length(4) ‖ key ‖ avro.
struct LogValue {
  int64_t timestamp_ms;
  std::string_view key;
  std::string_view avro;
};
Result<LogValue> DecodeLogValue(std::string_view value) {
  if (value.size() < 12) return Corruption("log value of {} bytes is shorter than its header", value.size());
  uint32_t key_size = GetFixed32(value.data() + 8);
  if (value.size() - 12 < key_size) {
    return Corruption("log value of {} bytes holds a key length of {}", value.size(), key_size);
  }
  return LogValue{static_cast<int64_t>(GetBigEndian64(value.data())), value.substr(12, key_size),
                  value.substr(12 + key_size)};
}

// Index value: timestamp(8) ‖ offset(8) ‖ avro.
struct IndexValue {
  int64_t timestamp_ms;
  int64_t offset;
  std::string_view avro;
};
Result<IndexValue> DecodeIndexValue(std::string_view value) {
  if (value.size() < 16) return Corruption("index value of {} bytes is shorter than its header", value.size());
  return IndexValue{static_cast<int64_t>(GetBigEndian64(value.data())),
                    static_cast<int64_t>(GetBigEndian64(value.data() + 8)), value.substr(16)};
}

// Keeps the latest index row of a key: the higher timestamp, ties to the
// higher offset (offsets are unique per instance, so the order is total and the
// merge associative and commutative). WriteRecords merges each batch's winner
// per key instead of reading the stored row first; RocksDB folds the operands
// on reads, flushes and compactions. A row too short for its header fails the
// merge, which RocksDB reports as Corruption to the read.
class LatestIndexRow final : public ::rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const ::rocksdb::Slice& /*key*/, const ::rocksdb::Slice* existing, const ::rocksdb::Slice& value,
             std::string* new_value, ::rocksdb::Logger* /*logger*/) const override {
    if (value.size() < 16) return false;
    if (existing == nullptr) {
      new_value->assign(value.data(), value.size());
      return true;
    }
    if (existing->size() < 16) return false;
    const auto ts = [](const ::rocksdb::Slice& row) { return static_cast<int64_t>(GetBigEndian64(row.data())); };
    const auto offset = [](const ::rocksdb::Slice& row) { return static_cast<int64_t>(GetBigEndian64(row.data() + 8)); };
    const bool keep_existing = ts(*existing) > ts(value) || (ts(*existing) == ts(value) && offset(*existing) > offset(value));
    const ::rocksdb::Slice& kept = keep_existing ? *existing : value;
    new_value->assign(kept.data(), kept.size());
    return true;
  }
  const char* Name() const override { return "aquifer.LatestIndexRow"; }
};

// ---- payloads -----------------------------------------------------------------

enum class PayloadKind : uint8_t {
  kIndexReplay = 1,  // varint len ‖ start key ‖ varint len ‖ end key (empty: unbounded)
  kLogReplay = 2,    // next offset(8) ‖ end offset(8, exclusive) ‖ from timestamp(8)
  kChange = 3,       // next offset(8) ‖ from timestamp(8)
  kRewind = 4,       // before offset(8): the next record read is the newest below it
};

struct Payload {
  PayloadKind kind = PayloadKind::kIndexReplay;
  std::string start, end;  // index
  uint64_t next = 0;       // log, change
  uint64_t end_offset = 0; // log
  int64_t from_timestamp_ms = 0;
  uint64_t before = 0;     // rewind
};

std::string IndexPayload(std::string_view start, std::string_view end) {
  std::string out(1, static_cast<char>(PayloadKind::kIndexReplay));
  PutVarint(&out, start.size());
  out.append(start);
  PutVarint(&out, end.size());
  out.append(end);
  return out;
}
std::string LogPayload(uint64_t next, uint64_t end, int64_t from_ts) {
  std::string out(1, static_cast<char>(PayloadKind::kLogReplay));
  PutBigEndian64(&out, next);
  PutBigEndian64(&out, end);
  PutBigEndian64(&out, static_cast<uint64_t>(from_ts));
  return out;
}
std::string ChangePayload(uint64_t next, int64_t from_ts) {
  std::string out(1, static_cast<char>(PayloadKind::kChange));
  PutBigEndian64(&out, next);
  PutBigEndian64(&out, static_cast<uint64_t>(from_ts));
  return out;
}
std::string RewindPayload(uint64_t before) {
  std::string out(1, static_cast<char>(PayloadKind::kRewind));
  PutBigEndian64(&out, before);
  return out;
}

constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

Result<Payload> DecodePayload(std::string_view bytes) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("malformed lookup cursor payload ({} bytes): {}", bytes.size(), why);
  };
  Reader reader(bytes);
  uint8_t kind = 0;
  if (!reader.Byte(&kind)) return bad("empty");
  Payload payload;
  switch (static_cast<PayloadKind>(kind)) {
    case PayloadKind::kIndexReplay: {
      payload.kind = PayloadKind::kIndexReplay;
      uint64_t length = 0;
      if (!reader.Varint(&length) || length > kMaxPayloadKeySize || !reader.Bytes(length, &payload.start)) {
        return bad("bad start key");
      }
      if (!reader.Varint(&length) || length > kMaxPayloadKeySize || !reader.Bytes(length, &payload.end)) {
        return bad("bad end key");
      }
      if (!payload.end.empty() && payload.start >= payload.end) return bad("start key is not below end key");
      break;
    }
    case PayloadKind::kLogReplay: {
      payload.kind = PayloadKind::kLogReplay;
      uint64_t from = 0;
      if (!reader.Fixed64(&payload.next) || !reader.Fixed64(&payload.end_offset) || !reader.Fixed64(&from)) {
        return bad("truncated log replay");
      }
      if (payload.end_offset > kMaxOffset || payload.next >= payload.end_offset) {
        return bad("offsets out of order");
      }
      payload.from_timestamp_ms = static_cast<int64_t>(from);
      break;
    }
    case PayloadKind::kChange: {
      payload.kind = PayloadKind::kChange;
      uint64_t from = 0;
      if (!reader.Fixed64(&payload.next) || !reader.Fixed64(&from)) return bad("truncated change");
      if (payload.next > kMaxOffset) return bad("offset out of range");
      payload.from_timestamp_ms = static_cast<int64_t>(from);
      break;
    }
    case PayloadKind::kRewind: {
      payload.kind = PayloadKind::kRewind;
      if (!reader.Fixed64(&payload.before)) return bad("truncated rewind");
      if (payload.before == 0 || payload.before > kMaxOffset) return bad("offset out of range");
      break;
    }
    default:
      return bad(fmt::format("unknown kind {}", kind));
  }
  if (!reader.done()) return bad("trailing bytes");
  return payload;
}

// ---- the service --------------------------------------------------------------

class RocksDbLookupService final : public driver::LookupService, public PositionedWriter {
 public:
  RocksDbLookupService(LookupOptions options, std::shared_ptr<RocksDbHandle> handle,
                       ::rocksdb::ColumnFamilyHandle* log, ::rocksdb::ColumnFamilyHandle* index,
                       ::rocksdb::ColumnFamilyHandle* meta)
      : options_(std::move(options)), handle_(std::move(handle)), db_(handle_->db()), log_(log),
        index_(index), meta_(meta) {
    write_options_.sync = options_.sync;
  }

  driver::LookupCapabilities capabilities() const override { return {options_.limits, /*local_reads=*/true}; }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) {
      return InvalidArgument("registering instance {}: no schema", instance.instance_id.ToString());
    }
    return Status::OK();
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    std::string prefix = InstancePrefix(instance);
    auto lock = LockInstance(instance);
    ::rocksdb::WriteBatch batch;
    for (auto* cf : {log_, index_, meta_}) AQ_RETURN_IF_ERROR(AddDeletePrefix(db_, cf, prefix, &batch));
    AQ_RETURN_IF_ERROR(Write(&batch, "removing instance", instance));
    // The range tombstones already hide everything; compaction drops the bytes.
    for (auto* cf : {log_, index_, meta_}) {
      Status compacted = CompactPrefix(db_, cf, prefix);
      if (!compacted.ok()) return compacted.WithContext(Describe("removing instance", instance));
    }
    return Status::OK();
  }

  Status WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                      std::span<const driver::RecordGroup> groups) override {
    return WriteGrouped(instance, records, groups, {}, std::nullopt);
  }
  Status WriteRecordsAt(const InstanceInfo& instance, std::span<const Record> records,
                        std::span<const driver::RecordGroup> groups, std::span<const int64_t> offsets,
                        int64_t next_offset) override;

  Result<driver::QueryCursors> Query(const InstanceInfo& instance,
                                     const driver::QueryRequest& request) override;
  Result<driver::PeekCursors> Peek(const InstanceInfo& instance) override;
  Result<driver::ReadResult> ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                        const keys::Filter& filter,
                                        const driver::ReadOptions& options) override;

  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override;
  Result<driver::StoredRecords> CountStored(const InstanceInfo& instance) override;

  Status Reset() override {
    std::lock_guard<std::mutex> lock(reset_mu_);
    ::rocksdb::WriteBatch batch;
    for (auto* cf : {log_, index_, meta_}) AQ_RETURN_IF_ERROR(AddDeletePrefix(db_, cf, "", &batch));
    ::rocksdb::Status status = db_->Write(write_options_, &batch);
    if (!status.ok()) return FromRocksStatus(status, "resetting the lookup store");
    for (auto* cf : {log_, index_, meta_}) AQ_RETURN_IF_ERROR(CompactPrefix(db_, cf, ""));
    return Status::OK();
  }

 private:
  static std::string Describe(std::string_view what, const InstanceInfo& instance) {
    return fmt::format("{} {} ({}.{})", what, instance.instance_id.ToString(), instance.project, instance.table);
  }

  Status Write(::rocksdb::WriteBatch* batch, std::string_view what, const InstanceInfo& instance) {
    AQ_RETURN_IF_ERROR(ResumeAfterWriteError(db_, &write_error_, Describe(what, instance)));
    ::rocksdb::Status status = db_->Write(write_options_, batch);
    NoteWriteError(&write_error_, status);
    return FromRocksStatus(status, Describe(what, instance));
  }

  std::unique_lock<std::mutex> LockInstance(const InstanceInfo& instance) {
    std::shared_ptr<std::mutex> mu;
    {
      std::lock_guard<std::mutex> lock(locks_mu_);
      auto& slot = locks_[instance.instance_id];
      if (slot == nullptr) slot = std::make_shared<std::mutex>();
      mu = slot;
    }
    // The map never drops entries, so the mutex outlives this lock.
    return std::unique_lock<std::mutex>(*mu);
  }

  // The next offset to assign (0 for a new instance).
  Result<uint64_t> ReadSequence(const InstanceInfo& instance, std::string_view prefix) {
    std::string value;
    ::rocksdb::Status status = db_->Get(::rocksdb::ReadOptions(), meta_, SequenceKey(prefix), &value);
    if (status.IsNotFound()) return uint64_t{0};
    if (!status.ok()) return FromRocksStatus(status, Describe("reading the offset sequence of", instance));
    if (value.size() != 8 || GetBigEndian64(value.data()) > kMaxOffset) {
      return Corruption("{}: sequence value of {} bytes", Describe("reading the offset sequence of", instance),
                        value.size());
    }
    return GetBigEndian64(value.data());
  }

  // WriteRecords and WriteRecordsAt: with `next_offset`, records[i] goes to
  // offsets[i] and the sequence to *next_offset; without, the records take
  // the next offsets of the sequence.
  Status WriteGrouped(const InstanceInfo& instance, std::span<const Record> all_records,
                      std::span<const driver::RecordGroup> groups, std::span<const int64_t> offsets,
                      std::optional<uint64_t> next_offset);

  // Which groups to write: false for a group whose id is stored as applied
  // (or repeats an earlier group of the call). Requires the instance lock.
  Result<std::vector<bool>> FreshGroups(const InstanceInfo& instance, std::string_view prefix,
                                        std::span<const driver::RecordGroup> groups);
  // Adds deletions of up to `budget` applied ids older than the window, at most
  // once per kPruneIntervalMs per instance. Requires the instance lock.
  Status PruneApplied(const InstanceInfo& instance, std::string_view prefix, int64_t now_ms,
                      size_t budget, ::rocksdb::WriteBatch* batch);

  // Retention (README.md, "Retention"): the expired head of the log goes as
  // one range tombstone; expired index rows as point deletes, a bounded
  // number per hold of the instance lock.
  Result<int64_t> PurgeLog(const InstanceInfo& instance, int64_t horizon);
  Result<int64_t> PurgeIndex(const InstanceInfo& instance, int64_t horizon);
  // Keys of `cf` under the instance's prefix.
  Result<int64_t> CountPrefix(const InstanceInfo& instance, ::rocksdb::ColumnFamilyHandle* cf);

  Result<driver::ReadResult> ReadIndex(const InstanceInfo& instance, const Payload& payload,
                                       const keys::Filter& filter, const driver::ReadOptions& options);
  Result<driver::ReadResult> ReadLog(const InstanceInfo& instance, const Payload& payload,
                                     const keys::Filter& filter, const driver::ReadOptions& options);

  const LookupOptions options_;
  const std::shared_ptr<RocksDbHandle> handle_;
  ::rocksdb::DB* const db_;
  ::rocksdb::ColumnFamilyHandle* const log_;
  ::rocksdb::ColumnFamilyHandle* const index_;
  ::rocksdb::ColumnFamilyHandle* const meta_;
  ::rocksdb::WriteOptions write_options_;
  WriteErrorState write_error_;  // an I/O error stopped RocksDB (ResumeAfterWriteError)
  std::mutex reset_mu_;
  std::mutex locks_mu_;
  std::unordered_map<Uuid, std::shared_ptr<std::mutex>, UuidHash> locks_;  // guarded by locks_mu_
  // Last prune per instance; read and written under that instance's lock.
  std::mutex pruned_mu_;
  std::unordered_map<Uuid, int64_t, UuidHash> pruned_ms_;  // guarded by pruned_mu_
  // Index merges per key hash slot since its last fold (kFoldAfterMerges)
  // in the index family's active memtable; races between instances only move
  // a fold a little.
  std::unique_ptr<std::atomic<uint32_t>[]> merge_counts_{new std::atomic<uint32_t>[kMergeSlots]()};
  // Entries of the index family's active memtable at the last write: fewer
  // now means it was switched (NoteIndexMemtable).
  std::atomic<uint64_t> index_memtable_entries_{0};

  // Starts the fold counters again when the index's active memtable was
  // switched since the last write (its operands are then folded by the flush).
  void NoteIndexMemtable() {
    uint64_t entries = 0;
    if (!db_->GetIntProperty(index_, ::rocksdb::DB::Properties::kNumEntriesActiveMemTable, &entries)) return;
    if (index_memtable_entries_.exchange(entries, std::memory_order_relaxed) <= entries) return;
    for (size_t slot = 0; slot < kMergeSlots; ++slot) merge_counts_[slot].store(0, std::memory_order_relaxed);
  }
};

Result<std::vector<bool>> RocksDbLookupService::FreshGroups(const InstanceInfo& instance,
                                                            std::string_view prefix,
                                                            std::span<const driver::RecordGroup> groups) {
  std::vector<std::string> keys;
  keys.reserve(groups.size());
  for (const auto& group : groups) keys.push_back(AppliedKey(prefix, group.id));
  std::vector<::rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<::rocksdb::ColumnFamilyHandle*> families(slices.size(), meta_);
  std::vector<std::string> values;
  std::vector<::rocksdb::Status> statuses =
      db_->MultiGet(::rocksdb::ReadOptions(), families, slices, &values);
  std::vector<bool> fresh(groups.size(), true);
  std::unordered_set<std::string_view> in_call;
  for (size_t group_idx = 0; group_idx < groups.size(); ++group_idx) {
    if (statuses[group_idx].ok() || !in_call.insert(groups[group_idx].id).second) {
      fresh[group_idx] = false;
    } else if (!statuses[group_idx].IsNotFound()) {
      return FromRocksStatus(statuses[group_idx], Describe("reading applied group ids of", instance));
    }
  }
  return fresh;
}

Status RocksDbLookupService::PruneApplied(const InstanceInfo& instance, std::string_view prefix,
                                          int64_t now_ms, size_t budget, ::rocksdb::WriteBatch* batch) {
  {
    std::lock_guard<std::mutex> lock(pruned_mu_);
    int64_t& last = pruned_ms_[instance.instance_id];
    if (last != 0 && now_ms - last < kPruneIntervalMs) return Status::OK();
    last = now_ms;
  }
  std::string lower(prefix);
  lower.push_back(kExpiryTag);
  const std::string upper = ExpiryKey(prefix, now_ms - options_.applied_window_ms, "");
  ::rocksdb::Slice upper_slice(upper);
  ::rocksdb::ReadOptions read_options;
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options, meta_));
  size_t pruned = 0;
  for (it->Seek(lower); it->Valid() && pruned < budget; it->Next(), ++pruned) {
    std::string_view key(it->key().data(), it->key().size());
    if (key.size() < lower.size() + 8) {
      return Corruption("{}: applied-id expiry key of {} bytes", Describe("pruning", instance), key.size());
    }
    ::rocksdb::Status status = batch->Delete(meta_, it->key());
    if (status.ok()) status = batch->Delete(meta_, AppliedKey(prefix, key.substr(lower.size() + 8)));
    if (!status.ok()) return FromRocksStatus(status, Describe("pruning applied ids of", instance));
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), Describe("pruning applied ids of", instance));
  return Status::OK();
}

Status RocksDbLookupService::WriteRecordsAt(const InstanceInfo& instance, std::span<const Record> records,
                                            std::span<const driver::RecordGroup> groups,
                                            std::span<const int64_t> offsets, int64_t next_offset) {
  if (offsets.size() != records.size()) {
    return InvalidArgument("{}: {} offsets for {} records", Describe("writing to", instance), offsets.size(),
                           records.size());
  }
  for (size_t record_idx = 0; record_idx < offsets.size(); ++record_idx) {
    if (offsets[record_idx] < 0 || (record_idx > 0 && offsets[record_idx] <= offsets[record_idx - 1])) {
      return InvalidArgument("{}: offsets not increasing at record {}", Describe("writing to", instance), record_idx);
    }
  }
  if (next_offset < 0 || (!offsets.empty() && next_offset <= offsets.back())) {
    return InvalidArgument("{}: next offset {} not above the records'", Describe("writing to", instance), next_offset);
  }
  return WriteGrouped(instance, records, groups, offsets, static_cast<uint64_t>(next_offset));
}

Status RocksDbLookupService::WriteGrouped(const InstanceInfo& instance, std::span<const Record> all_records,
                                          std::span<const driver::RecordGroup> groups,
                                          std::span<const int64_t> offsets, std::optional<uint64_t> next_offset) {
  NoPerfCountersOnThisThread();
  const driver::Limits& limits = options_.limits;
  std::span<const Record> records = all_records;
  if (Status checked = driver::CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext(Describe("writing to", instance));
  }
  if (Status checked = driver::CheckRecordLimits(instance.instance_id, records, limits); !checked.ok()) {
    return checked;
  }
  const bool positioned = next_offset.has_value();
  if (!positioned && groups.empty() && (records.empty() || (!instance.use_log && !instance.use_index))) {
    return Status::OK();
  }

  const std::string prefix = InstancePrefix(instance);
  auto lock = LockInstance(instance);
  AQ_ASSIGN_OR_RETURN(uint64_t first_offset, ReadSequence(instance, prefix));
  if (positioned && !offsets.empty() && static_cast<uint64_t>(offsets.front()) < first_offset) {
    return InvalidArgument("{}: offset {} is below the sequence {}", Describe("writing to", instance), offsets.front(),
                           first_offset);
  }
  // Exactly once: drop the groups already applied, keep the rest in order.
  std::vector<Record> kept;
  std::vector<int64_t> kept_offsets;
  std::vector<size_t> fresh_groups;
  if (!groups.empty()) {
    AQ_ASSIGN_OR_RETURN(std::vector<bool> fresh, FreshGroups(instance, prefix, groups));
    size_t begin = 0;
    bool all_fresh = true;
    for (size_t group_idx = 0; group_idx < groups.size(); ++group_idx) {
      if (fresh[group_idx]) {
        fresh_groups.push_back(group_idx);
        kept.insert(kept.end(), records.begin() + begin, records.begin() + begin + groups[group_idx].records);
        if (positioned) {
          kept_offsets.insert(kept_offsets.end(), offsets.begin() + begin,
                              offsets.begin() + begin + groups[group_idx].records);
        }
      } else {
        all_fresh = false;
      }
      begin += groups[group_idx].records;
    }
    if (!all_fresh) {
      records = kept;
      offsets = kept_offsets;
    }
    if (fresh_groups.empty()) records = {};
  }
  if (!positioned && fresh_groups.empty() && !groups.empty()) return Status::OK();
  // The offset of records[record_idx].
  auto offset_of = [&](size_t record_idx) -> uint64_t {
    return positioned ? static_cast<uint64_t>(offsets[record_idx]) : first_offset + record_idx;
  };

  size_t payload_bytes = 0;
  for (const Record& record : records) payload_bytes += record.key.size() + record.avro.size();
  // Room for the log and index rows with their headers, so the batch does not regrow.
  ::rocksdb::WriteBatch batch(2 * payload_bytes + records.size() * 64 + 64);
  std::string key, value;
  if (instance.use_log) {
    for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
      const Record& record = records[record_idx];
      key = prefix;
      PutBigEndian64(&key, offset_of(record_idx));
      value.clear();
      value.reserve(12 + record.key.size() + record.avro.size());
      PutBigEndian64(&value, static_cast<uint64_t>(record.timestamp_ms));
      PutFixed32(&value, static_cast<uint32_t>(record.key.size()));
      value.append(record.key);
      value.append(record.avro);
      ::rocksdb::Status status = batch.Put(log_, key, value);
      if (!status.ok()) return FromRocksStatus(status, Describe("batching log records for", instance));
    }
  }
  if (instance.use_index) {
    // The winner per key within the batch: highest timestamp, ties to the
    // later record (the higher offset). Then against the stored row, read
    // under the instance lock so no concurrent batch can slip in between.
    std::unordered_map<std::string_view, size_t> winners;
    winners.reserve(records.size());
    std::vector<std::string_view> order;
    for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
      auto [it, inserted] = winners.try_emplace(records[record_idx].key, record_idx);
      if (inserted) {
        order.push_back(records[record_idx].key);
      } else if (records[record_idx].timestamp_ms >= records[it->second].timestamp_ms) {
        it->second = record_idx;
      }
    }
    NoteIndexMemtable();
    // No read of the stored row: the merge operator (LatestIndexRow) keeps
    // whichever of it and this row is later, atomically with the batch. Now
    // and then a key is folded instead (kFoldAfterMerges): read, and the
    // winner Put, still under the instance lock.
    std::vector<std::pair<std::string, size_t>> folds;  // index key, record
    for (std::string_view record_key : order) {
      const size_t record_idx = winners[record_key];
      const Record& record = records[record_idx];
      key.assign(prefix);
      key.append(record_key);
      std::atomic<uint32_t>& count = merge_counts_[std::hash<std::string>{}(key) & (kMergeSlots - 1)];
      if (count.fetch_add(1, std::memory_order_relaxed) + 1 >= kFoldAfterMerges) {
        count.store(0, std::memory_order_relaxed);
        folds.emplace_back(key, record_idx);
        continue;
      }
      value.clear();
      PutBigEndian64(&value, static_cast<uint64_t>(record.timestamp_ms));
      PutBigEndian64(&value, offset_of(record_idx));
      value.append(record.avro);
      ::rocksdb::Status status = batch.Merge(index_, key, value);
      if (!status.ok()) return FromRocksStatus(status, Describe("batching index rows for", instance));
    }
    if (!folds.empty()) {
      std::vector<::rocksdb::Slice> slices;
      slices.reserve(folds.size());
      for (const auto& fold : folds) slices.emplace_back(fold.first);
      std::vector<::rocksdb::ColumnFamilyHandle*> families(slices.size(), index_);
      std::vector<std::string> existing;
      std::vector<::rocksdb::Status> statuses = db_->MultiGet(::rocksdb::ReadOptions(), families, slices, &existing);
      for (size_t fold_idx = 0; fold_idx < folds.size(); ++fold_idx) {
        const Record& record = records[folds[fold_idx].second];
        const int64_t offset = static_cast<int64_t>(offset_of(folds[fold_idx].second));
        ::rocksdb::Status status;
        if (statuses[fold_idx].ok()) {
          AQ_ASSIGN_OR_RETURN(IndexValue stored, DecodeIndexValue(existing[fold_idx]));
          if (record.timestamp_ms < stored.timestamp_ms ||
              (record.timestamp_ms == stored.timestamp_ms && offset < stored.offset)) {
            // The stored row stays; Put back as one value, it ends the chain.
            status = batch.Put(index_, slices[fold_idx], existing[fold_idx]);
            if (!status.ok()) return FromRocksStatus(status, Describe("batching index rows for", instance));
            continue;
          }
        } else if (!statuses[fold_idx].IsNotFound()) {
          return FromRocksStatus(statuses[fold_idx], Describe("reading index rows of", instance));
        }
        value.clear();
        PutBigEndian64(&value, static_cast<uint64_t>(record.timestamp_ms));
        PutBigEndian64(&value, static_cast<uint64_t>(offset));
        value.append(record.avro);
        status = batch.Put(index_, slices[fold_idx], value);
        if (!status.ok()) return FromRocksStatus(status, Describe("batching index rows for", instance));
      }
    }
  }
  std::string next;
  PutBigEndian64(&next, positioned ? std::max(first_offset, *next_offset) : first_offset + records.size());
  ::rocksdb::Status status = batch.Put(meta_, SequenceKey(prefix), next);
  if (!status.ok()) return FromRocksStatus(status, Describe("batching the offset sequence of", instance));
  if (!fresh_groups.empty()) {
    const int64_t now_ms = options_.clock->NowMillis();
    std::string applied_ms;
    PutBigEndian64(&applied_ms, static_cast<uint64_t>(now_ms));
    for (size_t group_idx : fresh_groups) {
      const std::string& id = groups[group_idx].id;
      status = batch.Put(meta_, AppliedKey(prefix, id), applied_ms);
      if (status.ok()) status = batch.Put(meta_, ExpiryKey(prefix, now_ms, id), ::rocksdb::Slice());
      if (!status.ok()) return FromRocksStatus(status, Describe("batching applied group ids of", instance));
    }
    AQ_RETURN_IF_ERROR(PruneApplied(instance, prefix, now_ms,
                                    std::max(kPruneMinPerWrite, 2 * fresh_groups.size()), &batch));
  }
  return Write(&batch, "writing records to", instance);
}

Result<driver::QueryCursors> RocksDbLookupService::Query(const InstanceInfo& instance,
                                                         const driver::QueryRequest& request) {
  NoPerfCountersOnThisThread();
  if (instance.schema == nullptr) {
    return InvalidArgument("querying {}: no schema", instance.instance_id.ToString());
  }
  driver::QueryCursors cursors;
  const std::string prefix = InstancePrefix(instance);
  AQ_ASSIGN_OR_RETURN(uint64_t stable, ReadSequence(instance, prefix));
  if (request.kind == driver::QueryKind::kIndex) {
    if (!instance.use_index) {
      return InvalidArgument("querying {}: the table has no index (use_index is off)", instance.instance_id.ToString());
    }
    AQ_ASSIGN_OR_RETURN(keys::QueryPlan plan, keys::PlanFilter(*instance.schema, request.filter));
    if (!plan.range.IsEmpty()) cursors.replay = IndexPayload(plan.range.start, plan.range.end);
    cursors.change = ChangePayload(stable, 0);
  } else {
    if (!instance.use_log) {
      return InvalidArgument("querying {}: the table has no log (use_log is off)", instance.instance_id.ToString());
    }
    if (stable > 0) cursors.replay = LogPayload(0, stable, request.from_timestamp_ms);
    cursors.change = ChangePayload(stable, request.from_timestamp_ms);
  }
  return cursors;
}

Result<driver::PeekCursors> RocksDbLookupService::Peek(const InstanceInfo& instance) {
  if (!instance.use_log) {
    return InvalidArgument("peeking {}: the table has no log (use_log is off)", instance.instance_id.ToString());
  }
  AQ_ASSIGN_OR_RETURN(uint64_t stable, ReadSequence(instance, InstancePrefix(instance)));
  driver::PeekCursors cursors;
  if (stable > 0) cursors.rewind = RewindPayload(stable);
  cursors.change = ChangePayload(stable, 0);
  return cursors;
}

Result<driver::ReadResult> RocksDbLookupService::ReadCursor(const InstanceInfo& instance,
                                                            std::string_view payload,
                                                            const keys::Filter& filter,
                                                            const driver::ReadOptions& options) {
  NoPerfCountersOnThisThread();
  AQ_RETURN_IF_ERROR(driver::CheckReadOptions(instance.instance_id, options));
  if (payload.empty()) return driver::ReadResult{};
  if (instance.schema == nullptr) {
    return InvalidArgument("reading {}: no schema", instance.instance_id.ToString());
  }
  AQ_ASSIGN_OR_RETURN(Payload decoded, DecodePayload(payload));
  if (decoded.kind == PayloadKind::kIndexReplay) {
    if (!instance.use_index) {
      return InvalidArgument("reading {}: the table has no index (use_index is off)", instance.instance_id.ToString());
    }
    return ReadIndex(instance, decoded, filter, options);
  }
  return ReadLog(instance, decoded, filter, options);
}

Result<driver::ReadResult> RocksDbLookupService::ReadIndex(const InstanceInfo& instance, const Payload& payload,
                                                           const keys::Filter& filter,
                                                           const driver::ReadOptions& options) {
  const schema::Schema& schema = *instance.schema;
  AQ_ASSIGN_OR_RETURN(keys::QueryPlan plan, keys::PlanFilter(schema, filter));
  driver::ReadResult result;
  result.residual = plan.has_residual();

  // Every read is confined to the instance's prefix: the payload holds only
  // the part after it, and the bounds below never leave [prefix, successor).
  const std::string prefix = InstancePrefix(instance);
  // Rows older than the retention are hidden until PurgeExpired deletes them.
  const int64_t horizon = driver::RetentionHorizon(instance.index_retention_ms, options_.clock->NowMillis());

  // A point lookup (every key field equal) on its first page: one Get, which
  // the table files' bloom filters answer, instead of an iterator over every
  // level; the range holds no other key, so there is never a next page.
  if (plan.point && payload.start == plan.range.start && payload.end == plan.range.end && options.limit >= 1 &&
      options.scan_budget >= 1) {
    std::string value;
    ::rocksdb::Status got = db_->Get(::rocksdb::ReadOptions(), index_, prefix + payload.start, &value);
    if (got.IsNotFound()) return result;
    if (!got.ok()) return FromRocksStatus(got, Describe("reading the index of", instance));
    ++result.scanned;
    AQ_ASSIGN_OR_RETURN(IndexValue stored, DecodeIndexValue(value));
    result.scanned_bytes += static_cast<int64_t>(stored.avro.size());
    if (stored.timestamp_ms < horizon) return result;
    if (plan.has_residual()) {
      auto decoded = schema::DecodeAvro(schema, stored.avro);
      if (!decoded.ok()) return decoded.status().WithContext(Describe("decoding an index row of", instance));
      if (!keys::Matches(schema, plan.residual, *decoded)) return result;
    }
    result.records.push_back(Record{payload.start, std::string(stored.avro), stored.timestamp_ms, stored.offset});
    return result;
  }

  std::string lower = prefix + payload.start;
  std::string upper = payload.end.empty() ? keys::PrefixSuccessor(prefix) : prefix + payload.end;
  ::rocksdb::Slice upper_slice(upper);
  ::rocksdb::ReadOptions read_options;
  if (!upper.empty()) read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options, index_));

  std::string last_key;
  bool examined_any = false;
  for (it->Seek(lower); it->Valid(); it->Next()) {
    if (static_cast<int64_t>(result.records.size()) >= options.limit || result.scanned >= options.scan_budget) break;
    std::string_view raw_key(it->key().data(), it->key().size());
    if (!raw_key.starts_with(prefix)) break;
    std::string_view record_key = raw_key.substr(kIdSize);
    ++result.scanned;
    last_key.assign(record_key);
    examined_any = true;
    std::string_view raw_value(it->value().data(), it->value().size());
    AQ_ASSIGN_OR_RETURN(IndexValue stored, DecodeIndexValue(raw_value));
    result.scanned_bytes += static_cast<int64_t>(stored.avro.size());
    if (stored.timestamp_ms < horizon) continue;
    if (!plan.range.Contains(record_key)) continue;
    if (plan.has_residual()) {
      auto value = schema::DecodeAvro(schema, stored.avro);
      if (!value.ok()) return value.status().WithContext(Describe("decoding an index row of", instance));
      if (!keys::Matches(schema, plan.residual, *value)) continue;
    }
    result.records.push_back(Record{std::string(record_key), std::string(stored.avro), stored.timestamp_ms,
                                    stored.offset});
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), Describe("scanning the index of", instance));
  bool more = it->Valid() && std::string_view(it->key().data(), it->key().size()).starts_with(prefix);
  if (more) {
    // Resume strictly after the last examined key: its immediate successor.
    std::string resume = examined_any ? last_key + '\0' : payload.start;
    result.next = IndexPayload(resume, payload.end);
  }
  return result;
}

Result<driver::ReadResult> RocksDbLookupService::ReadLog(const InstanceInfo& instance, const Payload& payload,
                                                         const keys::Filter& filter,
                                                         const driver::ReadOptions& options) {
  if (!instance.use_log) {
    return InvalidArgument("reading {}: the table has no log (use_log is off)", instance.instance_id.ToString());
  }
  const schema::Schema& schema = *instance.schema;
  driver::ReadResult result;
  result.residual = !filter.empty();
  // Records older than the retention are skipped like those before `from`,
  // so a cursor into the expired (or purged) head continues from the oldest
  // record kept.
  const int64_t from_ts =
      std::max({payload.from_timestamp_ms, options.from_timestamp_ms,
                driver::RetentionHorizon(instance.log_retention_ms, options_.clock->NowMillis())});
  const std::string prefix = InstancePrefix(instance);
  const bool backwards = payload.kind == PayloadKind::kRewind;

  std::string lower = backwards ? LogKey(prefix, 0) : LogKey(prefix, payload.next);
  std::string upper = payload.kind == PayloadKind::kLogReplay ? LogKey(prefix, payload.end_offset)
                      : backwards                             ? LogKey(prefix, payload.before)
                                                              : keys::PrefixSuccessor(prefix);
  ::rocksdb::Slice lower_slice(lower), upper_slice(upper);
  ::rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  if (!upper.empty()) read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options, log_));

  auto in_log = [&](const ::rocksdb::Slice& key) {
    return key.size() == kIdSize + 8 && std::string_view(key.data(), kIdSize) == prefix;
  };
  uint64_t last_offset = 0;
  bool examined_any = false;
  if (backwards) {
    it->SeekToLast();
  } else {
    it->Seek(lower);
  }
  for (; it->Valid(); backwards ? it->Prev() : it->Next()) {
    if (static_cast<int64_t>(result.records.size()) >= options.limit || result.scanned >= options.scan_budget) break;
    if (!in_log(it->key())) break;
    uint64_t offset = GetBigEndian64(it->key().data() + kIdSize);
    ++result.scanned;
    last_offset = offset;
    examined_any = true;
    AQ_ASSIGN_OR_RETURN(LogValue stored, DecodeLogValue(std::string_view(it->value().data(), it->value().size())));
    result.scanned_bytes += static_cast<int64_t>(stored.avro.size());
    if (stored.timestamp_ms < from_ts) continue;
    if (!filter.empty()) {
      auto value = schema::DecodeAvro(schema, stored.avro);
      if (!value.ok()) return value.status().WithContext(Describe("decoding a log record of", instance));
      if (!keys::Matches(schema, filter, *value)) continue;
    }
    result.records.push_back(Record{std::string(stored.key), std::string(stored.avro), stored.timestamp_ms,
                                    static_cast<int64_t>(offset)});
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), Describe("scanning the log of", instance));
  const bool more = it->Valid() && in_log(it->key());
  switch (payload.kind) {
    case PayloadKind::kLogReplay:
      if (more) result.next = LogPayload(last_offset + 1, payload.end_offset, payload.from_timestamp_ms);
      break;
    case PayloadKind::kRewind:
      if (more) result.next = RewindPayload(last_offset);
      break;
    default:  // a change feed never ends: continue after what was examined
      result.next = ChangePayload(examined_any ? last_offset + 1 : payload.next, payload.from_timestamp_ms);
      break;
  }
  return result;
}

Result<int64_t> RocksDbLookupService::PurgeExpired(const InstanceInfo& instance) {
  const int64_t now_ms = options_.clock->NowMillis();
  int64_t purged = 0;
  // The log is purged even when use_log is off now: it may hold records from before.
  if (instance.log_retention_ms > 0) {
    AQ_ASSIGN_OR_RETURN(int64_t count, PurgeLog(instance, driver::RetentionHorizon(instance.log_retention_ms, now_ms)));
    purged += count;
  }
  if (instance.index_retention_ms > 0) {
    AQ_ASSIGN_OR_RETURN(int64_t count,
                        PurgeIndex(instance, driver::RetentionHorizon(instance.index_retention_ms, now_ms)));
    purged += count;
  }
  return purged;
}

Result<int64_t> RocksDbLookupService::PurgeLog(const InstanceInfo& instance, int64_t horizon) {
  // Log keys are in write order, so the expired records are (nearly all) one
  // run at the head: scan it up to the first record kept and drop the run as
  // one range tombstone. Writers only append above the sequence, so no lock
  // is needed. A record logged after a newer one but with an older timestamp
  // (a client-set @timestamp, a late redelivery) is hidden by reads at once
  // and deleted when the head reaches it.
  const std::string prefix = InstancePrefix(instance);
  const std::string lower = LogKey(prefix, 0);
  const std::string upper = keys::PrefixSuccessor(prefix);
  ::rocksdb::Slice lower_slice(lower), upper_slice(upper);
  ::rocksdb::ReadOptions read_options;
  read_options.iterate_lower_bound = &lower_slice;
  if (!upper.empty()) read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options, log_));
  int64_t expired = 0;
  uint64_t end = 0;  // exclusive end offset of the expired head
  for (it->Seek(lower); it->Valid(); it->Next()) {
    if (it->key().size() != kIdSize + 8 || !it->key().starts_with(prefix)) break;
    AQ_ASSIGN_OR_RETURN(LogValue stored, DecodeLogValue(std::string_view(it->value().data(), it->value().size())));
    if (stored.timestamp_ms >= horizon) break;
    end = GetBigEndian64(it->key().data() + kIdSize) + 1;
    ++expired;
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), Describe("scanning the expired log of", instance));
  it.reset();
  if (expired == 0) return int64_t{0};
  ::rocksdb::WriteBatch batch;
  const std::string end_key = LogKey(prefix, end);
  ::rocksdb::Status status = batch.DeleteRange(log_, lower, end_key);
  if (!status.ok()) return FromRocksStatus(status, Describe("batching the expired log of", instance));
  AQ_RETURN_IF_ERROR(Write(&batch, "purging the expired log of", instance));
  // The tombstone hides the run at once; compacting it drops the bytes now
  // rather than whenever RocksDB gets there (a hint: errors are harmless).
  ::rocksdb::Slice begin_slice(lower), end_slice(end_key);
  ::rocksdb::CompactRangeOptions compact;
  compact.exclusive_manual_compaction = false;
  (void)db_->CompactRange(compact, log_, &begin_slice, &end_slice);
  return expired;
}

Result<int64_t> RocksDbLookupService::PurgeIndex(const InstanceInfo& instance, int64_t horizon) {
  // The index is in key order, so every row is looked at. A row is deleted
  // under the instance lock, so a concurrent write of its key (which would
  // bring a newer row) waits and is never lost; the lock is let go every
  // kChunk rows so writers are not held up by a long scan. Index rows are
  // merge entries: the iterator's value is the folded latest row
  // (LatestIndexRow), and WriteRecords merges and folds under the same lock,
  // so a key is deleted (base and every operand) only when its latest row is
  // expired; a newer row merged after an expired one keeps the key.
  constexpr int64_t kChunk = 4096;
  const std::string prefix = InstancePrefix(instance);
  const std::string upper = keys::PrefixSuccessor(prefix);
  std::string resume = prefix;
  int64_t purged = 0;
  while (true) {
    auto lock = LockInstance(instance);
    ::rocksdb::Slice upper_slice(upper);
    ::rocksdb::ReadOptions read_options;
    if (!upper.empty()) read_options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options, index_));
    ::rocksdb::WriteBatch batch;
    int64_t examined = 0, deleted = 0;
    bool more = false;
    for (it->Seek(resume); it->Valid(); it->Next()) {
      if (!it->key().starts_with(prefix)) break;
      if (examined == kChunk) {
        resume.assign(it->key().data(), it->key().size());
        more = true;
        break;
      }
      ++examined;
      AQ_ASSIGN_OR_RETURN(IndexValue stored, DecodeIndexValue(std::string_view(it->value().data(), it->value().size())));
      if (stored.timestamp_ms >= horizon) continue;
      ::rocksdb::Status status = batch.Delete(index_, it->key());
      if (!status.ok()) return FromRocksStatus(status, Describe("batching expired index rows of", instance));
      ++deleted;
    }
    if (!it->status().ok()) return FromRocksStatus(it->status(), Describe("scanning the index of", instance));
    it.reset();
    if (deleted > 0) AQ_RETURN_IF_ERROR(Write(&batch, "purging expired index rows of", instance));
    purged += deleted;
    if (!more) break;
  }
  return purged;
}

Result<int64_t> RocksDbLookupService::CountPrefix(const InstanceInfo& instance, ::rocksdb::ColumnFamilyHandle* cf) {
  const std::string prefix = InstancePrefix(instance);
  const std::string upper = keys::PrefixSuccessor(prefix);
  ::rocksdb::Slice upper_slice(upper);
  ::rocksdb::ReadOptions read_options;
  if (!upper.empty()) read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options, cf));
  int64_t count = 0;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) ++count;
  if (!it->status().ok()) return FromRocksStatus(it->status(), Describe("counting the records of", instance));
  return count;
}

Result<driver::StoredRecords> RocksDbLookupService::CountStored(const InstanceInfo& instance) {
  driver::StoredRecords stored;
  AQ_ASSIGN_OR_RETURN(stored.log, CountPrefix(instance, log_));
  AQ_ASSIGN_OR_RETURN(stored.index, CountPrefix(instance, index_));
  return stored;
}

}  // namespace

Result<LookupOptions> ParseLookupOptions(const driver::Config& config, const driver::DriverContext& context) {
  LookupOptions options;
  options.path = driver::ConfigString(config, "path", context.data_dir + "/lookup");
  AQ_ASSIGN_OR_RETURN(options.sync, driver::ConfigBool(config, "sync", true));
  auto positive = [&](const char* name, size_t fallback, size_t* out) -> Status {
    AQ_ASSIGN_OR_RETURN(int64_t value, driver::ConfigInt(config, name, static_cast<int64_t>(fallback)));
    if (value < 1) return InvalidArgument("config '{}': must be positive, got {}", name, value);
    *out = static_cast<size_t>(value);
    return Status::OK();
  };
  AQ_RETURN_IF_ERROR(positive("max_key_size", options.limits.max_key_size, &options.limits.max_key_size));
  AQ_RETURN_IF_ERROR(positive("max_record_size", options.limits.max_record_size, &options.limits.max_record_size));
  AQ_RETURN_IF_ERROR(positive("max_records_in_batch", options.limits.max_records_in_batch,
                              &options.limits.max_records_in_batch));
  AQ_ASSIGN_OR_RETURN(options.applied_window_ms,
                      driver::ConfigInt(config, "applied_window_ms", driver::kDefaultAppliedWindowMs));
  if (options.applied_window_ms < 1) {
    return InvalidArgument("config 'applied_window_ms': must be positive, got {}", options.applied_window_ms);
  }
  AQ_ASSIGN_OR_RETURN(options.block_cache_size, ParseBlockCacheSize(config, kDefaultLookupBlockCacheSize));
  if (context.clock != nullptr) options.clock = context.clock;
  return options;
}

Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options) {
  if (options.path.empty()) return InvalidArgument("rocksdb lookup service: empty path");
  if (options.clock == nullptr) return InvalidArgument("rocksdb lookup service: no clock");
  AQ_ASSIGN_OR_RETURN(std::shared_ptr<RocksDbHandle> handle, RocksDbHandle::Open(options.path, HandleOptions{.block_cache_size = options.block_cache_size}));
  AQ_ASSIGN_OR_RETURN(auto* log, handle->ColumnFamily(kLogFamily));
  AQ_ASSIGN_OR_RETURN(auto* index, handle->ColumnFamily(kIndexFamily));
  AQ_ASSIGN_OR_RETURN(auto* meta, handle->ColumnFamily(kMetaFamily));
  return std::shared_ptr<driver::LookupService>(
      std::make_shared<RocksDbLookupService>(options, std::move(handle), log, index, meta));
}

void TuneLookupFamily(const std::string& name, ::rocksdb::ColumnFamilyOptions* options) {
  if (name == kIndexFamily || name == kLogFamily) {
    // Both are read only through iterators (no point Get: the index is no
    // longer read before a write), which a memtable bloom filter does not
    // serve, while every insert pays for it.
    options->memtable_prefix_bloom_size_ratio = 0;
    options->memtable_whole_key_filtering = false;
  }
  if (name == kIndexFamily) {
    static const auto* merge = new std::shared_ptr<::rocksdb::MergeOperator>(std::make_shared<LatestIndexRow>());
    options->merge_operator = *merge;
    // No max_successive_merges: its check is a memtable search per merge,
    // as dear as the read it replaces; WriteRecords folds hot keys itself.
  }
}

void RegisterLookupAndUsage(driver::Registry* registry) {
  driver::Factory<driver::LookupService> lookup =
      [](const driver::Config& config,
         const driver::DriverContext& context) -> Result<std::shared_ptr<driver::LookupService>> {
    AQ_ASSIGN_OR_RETURN(LookupOptions options, ParseLookupOptions(config, context));
    return MakeLookupService(options);
  };
  driver::Factory<driver::UsageService> usage =
      [](const driver::Config& config,
         const driver::DriverContext& context) -> Result<std::shared_ptr<driver::UsageService>> {
    AQ_ASSIGN_OR_RETURN(UsageOptions options, ParseUsageOptions(config, context));
    return MakeUsageService(options);
  };
  for (const char* name : {"rocksdb", "embedded"}) {
    registry->Register(name, lookup);
    registry->Register(name, usage);
  }
}

}  // namespace aquifer::drivers::rocksdb
