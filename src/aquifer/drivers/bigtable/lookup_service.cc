#include "aquifer/drivers/bigtable/lookup_service.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include "aquifer/driver/offset_lookup.h"
#include "aquifer/driver/offset_payload.h"
#include "aquifer/driver/record_limits.h"
#include "aquifer/keys/filter.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::bigtable {
namespace {

using driver::InstanceInfo;
using driver::Record;
using driver::PayloadKind;
using Payload = driver::OffsetPayload;
using Entry = v2::MutateRowsRequest::Entry;

constexpr char kData[] = "d";
constexpr char kApplied[] = "a";
constexpr char kSequenceKind = 'q', kLogKind = 'l', kIndexKind = 'x', kAppliedKind = 'a';
constexpr size_t kRowKeyLimit = 4096;  // Bigtable's row key limit
constexpr size_t kPrefixSize = 17;     // instance id + kind

std::string Describe(std::string_view what, const InstanceInfo& instance) {
  return fmt::format("{} {}", what, instance.instance_id.ToString());
}

std::string Prefix(const InstanceInfo& instance, char kind) {
  std::string out(reinterpret_cast<const char*>(instance.instance_id.bytes.data()), instance.instance_id.bytes.size());
  out.push_back(kind);
  return out;
}
std::string LogKey(const InstanceInfo& instance, int64_t offset) { return Prefix(instance, kLogKind) + EncodeInt64(offset); }
std::string IndexKey(const InstanceInfo& instance, std::string_view key) { return Prefix(instance, kIndexKind).append(key); }
// The first key after every key starting with `prefix` (prefixes here never end in 0xFF... bytes
// only: the kind byte is ASCII).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty() && static_cast<unsigned char>(prefix.back()) == 0xFF) prefix.pop_back();
  if (!prefix.empty()) prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
  return prefix;
}

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string HexToken() {
  const Uuid token = Uuid::Random();
  std::string out;
  for (uint8_t byte : token.bytes) out += fmt::format("{:02x}", byte);
  return out;
}

Result<int64_t> IntCell(const Row& row, std::string_view qualifier) {
  const Cell* cell = row.Find(kData, qualifier);
  if (cell == nullptr) return Corruption("bigtable lookup: row without d:{}", qualifier);
  return DecodeInt64(cell->value);
}
std::string_view BytesCell(const Row& row, std::string_view qualifier) {
  const Cell* cell = row.Find(kData, qualifier);
  return cell == nullptr ? std::string_view() : std::string_view(cell->value);
}

v2::RowRange* AddRange(v2::ReadRowsRequest* request, std::string start_closed, std::string end_open) {
  auto* range = request->mutable_rows()->add_row_ranges();
  range->set_start_key_closed(std::move(start_closed));
  range->set_end_key_open(std::move(end_open));
  return range;
}

struct Sequence {
  int64_t next = 0;
  std::string lease;  // empty: none
};

class BigtableLookupService final : public driver::LookupService {
 public:
  BigtableLookupService(const LookupOptions& options, Clock* clock)
      : client_(options.client), options_(options), clock_(clock), table_(client_.TablePath(options.table_prefix + "lookup")) {}

  Status Init() {
    std::map<std::string, admin::GcRule> families;
    families[kData].set_max_num_versions(1);
    const int64_t window_s = options_.applied_window_ms / 1000 + 1;
    families[kApplied].mutable_max_age()->set_seconds(window_s);
    return client_.EnsureTable(options_.table_prefix + "lookup", families);
  }

  driver::LookupCapabilities capabilities() const override { return {options_.limits}; }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) return InvalidArgument("registering instance {}: no schema", instance.instance_id.ToString());
    return Status::OK();
  }
  Status RemoveInstance(const InstanceInfo& instance) override {
    auto mutex = InstanceMutex(instance.instance_id);
    std::lock_guard lock(*mutex);
    std::string prefix(reinterpret_cast<const char*>(instance.instance_id.bytes.data()), instance.instance_id.bytes.size());
    Status done = client_.DropRowRange(options_.table_prefix + "lookup", prefix);
    return done.ok() ? done : done.WithContext(Describe("removing instance", instance));
  }
  Status WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                      std::span<const driver::RecordGroup> groups) override;
  Result<driver::QueryCursors> Query(const InstanceInfo& instance, const driver::QueryRequest& request) override;
  Result<driver::PeekCursors> Peek(const InstanceInfo& instance) override {
    return driver::PeekOffsetCursors(instance, [&] { return CommittedEnd(instance); });
  }
  Result<driver::ReadResult> ReadCursor(const InstanceInfo& instance, std::string_view payload, const keys::Filter& filter,
                                        const driver::ReadOptions& options) override {
    return driver::ReadOffsetCursor(
        instance, payload, options, [&](const Payload& decoded) { return ReadIndex(instance, decoded, filter, options); },
        [&](const Payload& decoded) { return ReadLog(instance, decoded, filter, options); });
  }
  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override;
  Result<driver::StoredRecords> CountStored(const InstanceInfo& instance) override;
  Status Reset() override {
    std::lock_guard lock(mutexes_mu_);
    Status done = client_.DropRowRange(options_.table_prefix + "lookup", "");
    return done.ok() ? done : done.WithContext("resetting the lookup table");
  }

 private:
  std::shared_ptr<std::mutex> InstanceMutex(const Uuid& id) {
    std::lock_guard lock(mutexes_mu_);
    auto& slot = mutexes_[id];
    if (!slot) slot = std::make_shared<std::mutex>();
    return slot;
  }
  Result<Sequence> ReadSequence(const InstanceInfo& instance);
  Result<uint64_t> CommittedEnd(const InstanceInfo& instance) {
    AQ_ASSIGN_OR_RETURN(Sequence sequence, ReadSequence(instance));
    return static_cast<uint64_t>(sequence.next);
  }
  // Takes the write lease; returns the committed end (read after taking it) and the lease value.
  Result<Sequence> AcquireLease(const InstanceInfo& instance, const std::string& token);
  Status CommitOrRelease(const InstanceInfo& instance, const std::string& lease, std::optional<int64_t> end, bool* held);
  Result<driver::ReadResult> ReadIndex(const InstanceInfo& instance, const Payload& payload, const keys::Filter& filter,
                                       const driver::ReadOptions& options);
  Result<driver::ReadResult> ReadLog(const InstanceInfo& instance, const Payload& payload, const keys::Filter& filter,
                                     const driver::ReadOptions& options);
  // The log rows with offsets in [low, high), ascending, at most `limit` (0: all).
  Status ScanLog(const InstanceInfo& instance, int64_t low, int64_t high, int64_t limit, std::vector<Row>* rows);
  // Count (and optionally collect the keys of) the rows of a kind whose d:t is before `horizon`.
  Status ScanTimestamps(const InstanceInfo& instance, char kind, const std::function<Status(const std::string&, int64_t)>& each);

  Client client_;
  const LookupOptions options_;
  Clock* const clock_;
  const std::string table_;
  std::mutex mutexes_mu_;
  std::map<Uuid, std::shared_ptr<std::mutex>> mutexes_;  // GUARDED_BY(mutexes_mu_)
};

Result<Sequence> BigtableLookupService::ReadSequence(const InstanceInfo& instance) {
  v2::ReadRowsRequest request;
  request.set_table_name(table_);
  request.mutable_rows()->add_row_keys(Prefix(instance, kSequenceKind));
  *request.mutable_filter() = LatestCellFilter();
  std::vector<Row> rows;
  Status read = client_.ReadRowsInto(std::move(request), &rows);
  if (!read.ok()) return read.WithContext(Describe("reading the offset sequence of", instance));
  Sequence sequence;
  if (rows.empty()) return sequence;
  if (const Cell* next = rows[0].Find(kData, "n"); next != nullptr) {
    AQ_ASSIGN_OR_RETURN(sequence.next, DecodeInt64(next->value));
  }
  if (const Cell* lease = rows[0].Find(kData, "w"); lease != nullptr) sequence.lease = lease->value;
  if (sequence.next < 0) return Corruption("{}: negative next offset {}", Describe("offset sequence of", instance), sequence.next);
  return sequence;
}

// Takes the lease ("<token>:<until ms>"), the row's only conditional state: absent → set
// (predicate: the lease cell exists → nothing); expired → replaced (predicate: it still
// holds the value read). The end is read again once the lease is ours: another process may
// have committed between the first read and the take.
Result<Sequence> BigtableLookupService::AcquireLease(const InstanceInfo& instance, const std::string& token) {
  const std::string context = Describe("taking the write lease of", instance);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.lease_ms * 2);
  Sequence sequence;  // the first try assumes no lease is held (the common case) and reads nothing
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      AQ_ASSIGN_OR_RETURN(sequence, ReadSequence(instance));
    }
    const int64_t now = WallMillis();
    int64_t held_until = 0;
    if (!sequence.lease.empty()) {
      auto colon = sequence.lease.find(':');
      held_until = colon == std::string::npos ? 0 : std::strtoll(sequence.lease.c_str() + colon + 1, nullptr, 10);
    }
    if (sequence.lease.empty() || held_until < now) {
      const std::string mine = fmt::format("{}:{}", token, now + options_.lease_ms);
      v2::CheckAndMutateRowRequest request;
      request.set_table_name(table_);
      request.set_row_key(Prefix(instance, kSequenceKind));
      auto* chain = request.mutable_predicate_filter()->mutable_chain();
      chain->add_filters()->set_family_name_regex_filter(ExactRegex(kData));
      chain->add_filters()->set_column_qualifier_regex_filter(ExactRegex("w"));
      if (sequence.lease.empty()) {
        AddSetCell(request.mutable_false_mutations(), kData, "w", mine);
      } else {
        chain->add_filters()->set_value_regex_filter(ExactRegex(sequence.lease));
        AddSetCell(request.mutable_true_mutations(), kData, "w", mine);
      }
      auto matched = client_.CheckAndMutateRow(std::move(request));
      if (!matched.ok()) return matched.status().WithContext(context);
      if (*matched != sequence.lease.empty()) {
        auto after = ReadSequence(instance);
        if (!after.ok()) {  // ours but unreadable: give it back rather than block others for lease_ms
          bool held = false;
          (void)CommitOrRelease(instance, mine, std::nullopt, &held);
          return after.status().WithContext(context);
        }
        if (after->lease == mine) return *after;
      }
    }
    if (std::chrono::steady_clock::now() > give_up) return Unavailable("{}: another writer holds it (retry later)", context);
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + attempt % 10));
  }
}

// With `end`: commits (d:n = end) and drops the lease; without: drops it. `held` tells
// whether the lease was still ours.
Status BigtableLookupService::CommitOrRelease(const InstanceInfo& instance, const std::string& lease,
                                              std::optional<int64_t> end, bool* held) {
  v2::CheckAndMutateRowRequest request;
  request.set_table_name(table_);
  request.set_row_key(Prefix(instance, kSequenceKind));
  auto* chain = request.mutable_predicate_filter()->mutable_chain();
  chain->add_filters()->set_family_name_regex_filter(ExactRegex(kData));
  chain->add_filters()->set_column_qualifier_regex_filter(ExactRegex("w"));
  chain->add_filters()->set_value_regex_filter(ExactRegex(lease));
  if (end) AddSetCell(request.mutable_true_mutations(), kData, "n", EncodeInt64(*end));
  auto* drop = request.add_true_mutations()->mutable_delete_from_column();
  drop->set_family_name(kData);
  drop->set_column_qualifier("w");
  AQ_ASSIGN_OR_RETURN(*held, client_.CheckAndMutateRow(std::move(request)));
  return Status::OK();
}

Status BigtableLookupService::WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                                           std::span<const driver::RecordGroup> groups) {
  AQ_RETURN_IF_ERROR(driver::CheckWrite(instance, records, groups, options_.limits));
  if (groups.empty() && (records.empty() || (!instance.use_log && !instance.use_index))) return Status::OK();
  const std::string context = Describe("writing records to", instance);

  auto mutex = InstanceMutex(instance.instance_id);
  std::lock_guard instance_lock(*mutex);
  const std::string token = HexToken();
  auto leased = AcquireLease(instance, token);
  if (!leased.ok()) return leased.status().WithContext(context);
  const int64_t first = leased->next;
  const std::string lease = leased->lease;

  bool committed = false;
  Status done = [&]() -> Status {
    // Exactly once: which groups are new (an applied id counts once its end is committed).
    std::vector<const Record*> kept;
    std::vector<std::string> fresh_ids;
    if (groups.empty()) {
      for (const Record& record : records) kept.push_back(&record);
    } else {
      std::set<std::string, std::less<>> applied;
      v2::ReadRowsRequest request;
      request.set_table_name(table_);
      std::set<std::string> keys;
      for (const driver::RecordGroup& group : groups) keys.insert(Prefix(instance, kAppliedKind) + group.id);
      for (const std::string& key : keys) request.mutable_rows()->add_row_keys(key);
      *request.mutable_filter() = ColumnFilter(kApplied, "e");
      std::vector<Row> rows;
      AQ_RETURN_IF_ERROR(client_.ReadRowsInto(std::move(request), &rows));
      for (const Row& row : rows) {
        const Cell* end = row.Find(kApplied, "e");
        if (end == nullptr) continue;
        AQ_ASSIGN_OR_RETURN(int64_t end_offset, DecodeInt64(end->value));
        if (end_offset <= first) applied.insert(row.key.substr(kPrefixSize));
      }
      driver::KeepNewGroups(records, groups, &applied, &kept, &fresh_ids);
      if (fresh_ids.empty()) return Status::OK();
    }

    // The log rows and applied ids go out while the index rows are read and decided (the log
    // does not depend on them); the commit waits for both.
    std::vector<Entry> entries, index_entries;
    if (instance.use_log) {
      for (size_t kept_idx = 0; kept_idx < kept.size(); ++kept_idx) {
        const Record& record = *kept[kept_idx];
        Entry& entry = entries.emplace_back();
        entry.set_row_key(LogKey(instance, first + static_cast<int64_t>(kept_idx)));
        AddSetCell(entry.mutable_mutations(), kData, "t", EncodeInt64(record.timestamp_ms));
        AddSetCell(entry.mutable_mutations(), kData, "k", record.key);
        AddSetCell(entry.mutable_mutations(), kData, "v", record.avro);
      }
    }
    const int64_t end = first + static_cast<int64_t>(kept.size());
    // Applied ids: cell timestamps are the write time, so family `a`'s age rule forgets them.
    const int64_t now_micros = WallMillis() * 1000;
    for (const std::string& group_id : fresh_ids) {
      Entry& entry = entries.emplace_back();
      entry.set_row_key(Prefix(instance, kAppliedKind) + group_id);
      AddSetCell(entry.mutable_mutations(), kApplied, "e", EncodeInt64(end), now_micros);
    }
    std::future<Status> log_write = std::async(std::launch::async, [this, log = std::move(entries)]() mutable {
      return client_.MutateRows(table_, std::move(log));
    });
    // From here on every return waits for log_write (a future from std::async joins in its destructor).
    // The index: per key the highest (timestamp, offset) of the call, written where it beats the stored row.
    if (instance.use_index && !kept.empty()) {
      std::unordered_map<std::string_view, size_t> winner_of;
      for (size_t kept_idx = 0; kept_idx < kept.size(); ++kept_idx) {
        auto [it, inserted] = winner_of.try_emplace(kept[kept_idx]->key, kept_idx);
        if (!inserted && kept[kept_idx]->timestamp_ms >= kept[it->second]->timestamp_ms) it->second = kept_idx;
      }
      v2::ReadRowsRequest request;
      request.set_table_name(table_);
      std::set<std::string> keys;
      for (const auto& [key, kept_idx] : winner_of) keys.insert(IndexKey(instance, key));
      for (const std::string& key : keys) request.mutable_rows()->add_row_keys(key);
      v2::RowFilter filter;
      auto* chain = filter.mutable_chain();
      chain->add_filters()->set_family_name_regex_filter(ExactRegex(kData));
      chain->add_filters()->set_column_qualifier_regex_filter("^[to]$");
      chain->add_filters()->set_cells_per_column_limit_filter(1);
      *request.mutable_filter() = std::move(filter);
      std::map<std::string, std::pair<int64_t, int64_t>, std::less<>> stored;  // key → (ts, offset)
      AQ_RETURN_IF_ERROR(client_.ReadRows(std::move(request), [&](Row&& row) -> Status {
        AQ_ASSIGN_OR_RETURN(int64_t ts, IntCell(row, "t"));
        AQ_ASSIGN_OR_RETURN(int64_t offset, IntCell(row, "o"));
        stored[row.key.substr(kPrefixSize)] = {ts, offset};
        return Status::OK();
      }));
      for (const auto& [key, kept_idx] : winner_of) {
        const Record& record = *kept[kept_idx];
        const int64_t offset = first + static_cast<int64_t>(kept_idx);
        if (auto it = stored.find(record.key); it != stored.end() && std::pair{record.timestamp_ms, offset} <= it->second) {
          continue;
        }
        Entry& entry = index_entries.emplace_back();
        entry.set_row_key(IndexKey(instance, record.key));
        AddSetCell(entry.mutable_mutations(), kData, "t", EncodeInt64(record.timestamp_ms));
        AddSetCell(entry.mutable_mutations(), kData, "o", EncodeInt64(offset));
        AddSetCell(entry.mutable_mutations(), kData, "v", record.avro);
      }
    }
    Status index_done = index_entries.empty() ? Status::OK() : client_.MutateRows(table_, std::move(index_entries));
    Status log_done = log_write.get();
    AQ_RETURN_IF_ERROR(log_done);
    AQ_RETURN_IF_ERROR(index_done);
    bool held = false;
    AQ_RETURN_IF_ERROR(CommitOrRelease(instance, lease, end, &held));
    if (!held) return Aborted("the write lease was taken over before the commit (the write took longer than lease_ms)");
    committed = true;
    return Status::OK();
  }();
  if (!committed) {
    bool held = false;
    (void)CommitOrRelease(instance, lease, std::nullopt, &held);
  }
  return done.ok() ? done : done.WithContext(context);
}

Result<driver::QueryCursors> BigtableLookupService::Query(const InstanceInfo& instance, const driver::QueryRequest& request) {
  return driver::QueryOffsetCursors(instance, request, [&] { return CommittedEnd(instance); });
}

Result<driver::ReadResult> BigtableLookupService::ReadIndex(const InstanceInfo& instance, const Payload& payload,
                                                            const keys::Filter& filter, const driver::ReadOptions& options) {
  AQ_ASSIGN_OR_RETURN(keys::QueryPlan plan, keys::PlanFilter(*instance.schema, filter));
  const int64_t examine = driver::IndexExamine(plan, options);
  v2::ReadRowsRequest request;
  request.set_table_name(table_);
  AddRange(&request, IndexKey(instance, payload.start),
           payload.end.empty() ? PrefixEnd(Prefix(instance, kIndexKind)) : IndexKey(instance, payload.end));
  request.set_rows_limit(examine + 1);
  *request.mutable_filter() = LatestCellFilter();
  std::vector<Row> rows;
  Status read = client_.ReadRowsInto(std::move(request), &rows);
  if (!read.ok()) return read.WithContext(Describe("scanning the index of", instance));

  const int64_t horizon = driver::RetentionHorizon(instance.index_retention_ms, clock_->NowMillis());
  return driver::ReadIndexPage(
      instance, plan, payload, options, horizon, rows.size(),
      [&](size_t row_idx) {
        return driver::IndexRowView{std::string_view(rows[row_idx].key).substr(kPrefixSize), BytesCell(rows[row_idx], "v")};
      },
      [&](size_t row_idx) { return IntCell(rows[row_idx], "t"); },
      [&](size_t row_idx) { return IntCell(rows[row_idx], "o"); });
}

Status BigtableLookupService::ScanLog(const InstanceInfo& instance, int64_t low, int64_t high, int64_t limit,
                                      std::vector<Row>* rows) {
  v2::ReadRowsRequest request;
  request.set_table_name(table_);
  AddRange(&request, LogKey(instance, low), LogKey(instance, high));
  if (limit > 0) request.set_rows_limit(limit);
  *request.mutable_filter() = LatestCellFilter();
  return client_.ReadRowsInto(std::move(request), rows);
}

// Ascending (replay, change): one range read of [low, high). Descending (rewind): Bigtable
// scans forwards only, so windows of the page's size below `high`, each read forwards and
// walked backwards; an empty window asks for the highest offset left below it (rows purged).
Result<driver::ReadResult> BigtableLookupService::ReadLog(const InstanceInfo& instance, const Payload& payload,
                                                          const keys::Filter& filter, const driver::ReadOptions& options) {
  const schema::Schema& schema = *instance.schema;
  driver::ReadResult result;
  result.residual = !filter.empty();
  const int64_t from_ts = driver::LogFromTimestamp(instance, payload, options, clock_->NowMillis());
  const int64_t examine = driver::LogExamine(filter, options);
  AQ_ASSIGN_OR_RETURN(Sequence sequence, ReadSequence(instance));
  const int64_t committed = sequence.next;
  const bool descending = payload.kind == PayloadKind::kRewind;
  const driver::LogSpan span = driver::LogSpanToRead(payload, committed);
  int64_t low = span.low, high = span.high;  // the offsets still to read: [low, high)
  auto full = [&] { return static_cast<int64_t>(result.records.size()) >= options.limit || result.scanned >= examine; };
  auto take = [&](const Row& row) -> Status {
    AQ_ASSIGN_OR_RETURN(int64_t offset, DecodeInt64(std::string_view(row.key).substr(kPrefixSize)));
    AQ_ASSIGN_OR_RETURN(int64_t ts, IntCell(row, "t"));
    std::string_view avro = BytesCell(row, "v");
    ++result.scanned;
    result.scanned_bytes += static_cast<int64_t>(avro.size());
    if (descending) high = offset; else low = offset + 1;
    if (ts < from_ts) return Status::OK();
    if (!filter.empty()) {
      auto value = schema::DecodeAvro(schema, avro);
      if (!value.ok()) return value.status().WithContext(Describe("decoding a log record of", instance));
      if (!keys::Matches(schema, filter, *value)) return Status::OK();
    }
    result.records.push_back(Record{std::string(BytesCell(row, "k")), std::string(avro), ts, offset});
    return Status::OK();
  };
  if (!descending) {
    if (low < high) {
      std::vector<Row> rows;
      Status read = ScanLog(instance, low, high, examine, &rows);
      if (!read.ok()) return read.WithContext(Describe("scanning the log of", instance));
      for (const Row& row : rows) {
        if (full()) break;
        AQ_RETURN_IF_ERROR(take(row));
      }
      if (!full()) low = high;  // read to the end: nothing is left in [low, high)
    }
  } else {
    while (low < high && !full()) {
      const int64_t window_low = std::max<int64_t>(0, high - (examine - result.scanned));
      std::vector<Row> rows;
      Status read = ScanLog(instance, window_low, high, 0, &rows);
      if (!read.ok()) return read.WithContext(Describe("scanning the log of", instance));
      for (auto it = rows.rbegin(); it != rows.rend() && !full(); ++it) AQ_RETURN_IF_ERROR(take(*it));
      if (full()) break;
      high = window_low;
      if (rows.empty() && high > 0) {
        // Purged offsets: jump to the highest row left below (none: the log ends here).
        std::vector<Row> below;
        v2::ReadRowsRequest probe;
        probe.set_table_name(table_);
        AddRange(&probe, LogKey(instance, 0), LogKey(instance, high));
        v2::RowFilter strip;
        auto* chain = strip.mutable_chain();
        chain->add_filters()->set_cells_per_row_limit_filter(1);
        chain->add_filters()->set_strip_value_transformer(true);
        *probe.mutable_filter() = std::move(strip);
        Status probed = client_.ReadRowsInto(std::move(probe), &below);
        if (!probed.ok()) return probed.WithContext(Describe("scanning the log of", instance));
        if (below.empty()) {
          high = 0;
        } else {
          AQ_ASSIGN_OR_RETURN(int64_t last, DecodeInt64(std::string_view(below.back().key).substr(kPrefixSize)));
          high = last + 1;
        }
      }
    }
  }
  result.next = driver::NextLogPayload(payload, low, high);
  return result;
}

Status BigtableLookupService::ScanTimestamps(const InstanceInfo& instance, char kind,
                                             const std::function<Status(const std::string&, int64_t)>& each) {
  v2::ReadRowsRequest request;
  request.set_table_name(table_);
  const std::string prefix = Prefix(instance, kind);
  AddRange(&request, prefix, PrefixEnd(prefix));
  *request.mutable_filter() = ColumnFilter(kData, "t");
  return client_.ReadRows(std::move(request), [&](Row&& row) -> Status {
    AQ_ASSIGN_OR_RETURN(int64_t ts, IntCell(row, "t"));
    return each(row.key, ts);
  });
}

// Row by row: expiry is by timestamp (not by offset or key), so the rows are read first.
// Writers of the instance in this process wait (its mutex), so an index row replaced
// meanwhile is not deleted.
Result<int64_t> BigtableLookupService::PurgeExpired(const InstanceInfo& instance) {
  const int64_t now_ms = clock_->NowMillis();
  const std::string context = Describe("purging expired records of", instance);
  auto mutex = InstanceMutex(instance.instance_id);
  std::lock_guard lock(*mutex);
  std::vector<Entry> deletes;
  auto collect = [&](char kind, int64_t retention) -> Status {
    if (retention <= 0) return Status::OK();
    const int64_t horizon = driver::RetentionHorizon(retention, now_ms);
    return ScanTimestamps(instance, kind, [&](const std::string& key, int64_t ts) {
      if (ts < horizon) {
        Entry& entry = deletes.emplace_back();
        entry.set_row_key(key);
        entry.add_mutations()->mutable_delete_from_row();
      }
      return Status::OK();
    });
  };
  Status scanned = collect(kLogKind, instance.log_retention_ms);
  if (scanned.ok()) scanned = collect(kIndexKind, instance.index_retention_ms);
  if (!scanned.ok()) return scanned.WithContext(context);
  const auto purged = static_cast<int64_t>(deletes.size());
  Status done = client_.MutateRows(table_, std::move(deletes));
  if (!done.ok()) return done.WithContext(context);
  return purged;
}

Result<driver::StoredRecords> BigtableLookupService::CountStored(const InstanceInfo& instance) {
  driver::StoredRecords stored;
  AQ_ASSIGN_OR_RETURN(Sequence sequence, ReadSequence(instance));
  Status counted = ScanTimestamps(instance, kLogKind, [&](const std::string& key, int64_t) -> Status {
    AQ_ASSIGN_OR_RETURN(int64_t offset, DecodeInt64(std::string_view(key).substr(kPrefixSize)));
    if (offset < sequence.next) ++stored.log;
    return Status::OK();
  });
  if (counted.ok()) {
    counted = ScanTimestamps(instance, kIndexKind, [&](const std::string&, int64_t) {
      ++stored.index;
      return Status::OK();
    });
  }
  if (!counted.ok()) return counted.WithContext(Describe("counting the records of", instance));
  return stored;
}

}  // namespace

Result<LookupOptions> ParseLookupOptions(const driver::Config& config) {
  LookupOptions options;
  AQ_ASSIGN_OR_RETURN(options.client, ParseClientOptions(config));
  options.table_prefix = driver::ConfigString(config, "table_prefix", options.table_prefix);
  if (options.table_prefix.size() > 40 ||
      options.table_prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != std::string::npos) {
    return InvalidArgument("bigtable: table_prefix '{}' must be at most 40 letters, digits, _, - or .", options.table_prefix);
  }
  const driver::Limits maxima{.max_key_size = kRowKeyLimit - kPrefixSize, .max_record_size = 64 << 20,
                              .max_records_in_batch = 1'000'000};
  AQ_RETURN_IF_ERROR(driver::ConfigureLimits(config, maxima, &options.limits));
  AQ_ASSIGN_OR_RETURN(options.applied_window_ms,
                      driver::ConfigIntWithin(config, "applied_window_ms", options.applied_window_ms, int64_t{1} << 45));
  AQ_ASSIGN_OR_RETURN(options.lease_ms, driver::ConfigIntWithin(config, "lease_ms", options.lease_ms, 3'600'000));
  return options;
}

Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options, Clock* clock) {
  auto service = std::make_shared<BigtableLookupService>(options, clock != nullptr ? clock : Clock::System());
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("bigtable lookup service");
  return std::shared_ptr<driver::LookupService>(std::move(service));
}

}  // namespace aquifer::drivers::bigtable
