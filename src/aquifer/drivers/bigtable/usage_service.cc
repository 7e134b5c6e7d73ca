#include "aquifer/drivers/bigtable/usage_service.h"

#include <array>

#include <fmt/format.h>

#include "aquifer/driver/bounded_add.h"

namespace aquifer::drivers::bigtable {
namespace {

using driver::UsageBucket;
using driver::UsageCounters;
using driver::UsagePeriod;

constexpr char kPlain[] = "p";
constexpr char kBounded[] = "b";
constexpr std::array<const char*, 8> kNames = {"read_ops",      "read_records", "read_bytes", "write_ops",
                                               "write_records", "write_bytes",  "scan_ops",   "scan_bytes"};

std::array<int64_t*, 8> Fields(UsageCounters& c) {
  return {&c.read_ops, &c.read_records, &c.read_bytes, &c.write_ops, &c.write_records, &c.write_bytes, &c.scan_ops, &c.scan_bytes};
}
std::array<int64_t, 8> Values(const UsageCounters& c) {
  return {c.read_ops, c.read_records, c.read_bytes, c.write_ops, c.write_records, c.write_bytes, c.scan_ops, c.scan_bytes};
}

Result<char> PeriodCode(UsagePeriod period) {
  switch (period) {
    case UsagePeriod::kHour: return 'h';
    case UsagePeriod::kMonth: return 'm';
  }
  return InvalidArgument("unknown usage period {}", static_cast<int>(period));
}

std::string OwnerPrefix(const Uuid& owner) {
  return std::string(reinterpret_cast<const char*>(owner.bytes.data()), owner.bytes.size());
}
// Sign bit flipped: big-endian bytes then sort like the numbers.
std::string StartBytes(int64_t start) { return EncodeInt64(static_cast<int64_t>(static_cast<uint64_t>(start) ^ (uint64_t{1} << 63))); }
Result<int64_t> StartOf(std::string_view key) {
  if (key.size() != 16 + 1 + 8) return Corruption("bigtable usage: a row key of {} bytes", key.size());
  AQ_ASSIGN_OR_RETURN(int64_t flipped, DecodeInt64(key.substr(17)));
  return static_cast<int64_t>(static_cast<uint64_t>(flipped) ^ (uint64_t{1} << 63));
}

// The counters of one family of a row (missing cells: 0).
Result<UsageCounters> CountersOf(const Row& row, std::string_view family) {
  UsageCounters c;
  auto fields = Fields(c);
  for (size_t field_idx = 0; field_idx < kNames.size(); ++field_idx) {
    if (const Cell* cell = row.Find(family, kNames[field_idx]); cell != nullptr) {
      AQ_ASSIGN_OR_RETURN(*fields[field_idx], DecodeInt64(cell->value));
    }
  }
  return c;
}

class BigtableUsageService final : public driver::UsageService {
 public:
  explicit BigtableUsageService(const UsageOptions& options)
      : client_(options.client), table_id_(options.table_prefix + "usage"), table_(client_.TablePath(table_id_)) {}

  Status Init() {
    std::map<std::string, admin::GcRule> families;
    families[kPlain].set_max_num_versions(1);
    families[kBounded].set_max_num_versions(1);
    return client_.EnsureTable(table_id_, families);
  }

  Status WriteUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms, const UsageCounters& counters) override {
    AQ_ASSIGN_OR_RETURN(std::string key, RowKey(owner, period, time_ms));
    v2::ReadModifyWriteRowRequest request;
    request.set_table_name(table_);
    request.set_row_key(std::move(key));
    const auto values = Values(counters);
    for (size_t field_idx = 0; field_idx < kNames.size(); ++field_idx) {
      auto* rule = request.add_rules();
      rule->set_family_name(kPlain);
      rule->set_column_qualifier(kNames[field_idx]);
      rule->set_increment_amount(values[field_idx]);
    }
    auto done = client_.ReadModifyWriteRow(std::move(request));
    if (!done.ok()) return done.status().WithContext(fmt::format("adding usage of {}", owner.ToString()));
    return Status::OK();
  }

  // Optimistic concurrency on family `b`: read the row, check the limit against the sum of
  // both families, then set the bounded counters IF the version cell still holds what was
  // read (CheckAndMutateRow; a missing version: IF there is none). A miss means another
  // reserver got in between: read again. Plain adds are not serialised with it (unbounded by
  // contract).
  Result<driver::BoundedAdd> AddUsageWithin(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                                            const UsageCounters& counters, driver::UsageField field,
                                            int64_t limit) override {
    AQ_ASSIGN_OR_RETURN(std::string key, RowKey(owner, period, time_ms));
    const std::string context = fmt::format("reserving usage of {}", owner.ToString());
    std::string version;  // decimal text; empty: none yet
    auto read = [&](UsageCounters* plain, UsageCounters* bounded) -> Status {
      auto row = ReadRow(key);
      if (!row.ok()) return row.status().WithContext(context);
      version.clear();
      if (*row) {
        AQ_ASSIGN_OR_RETURN(*plain, CountersOf(**row, kPlain));
        AQ_ASSIGN_OR_RETURN(*bounded, CountersOf(**row, kBounded));
        if (const Cell* cell = (*row)->Find(kBounded, "version"); cell != nullptr) version = cell->value;
      }
      return Status::OK();
    };
    auto write = [&](const UsageCounters& next) -> Result<bool> {
      v2::CheckAndMutateRowRequest request;
      request.set_table_name(table_);
      request.set_row_key(key);
      auto* chain = request.mutable_predicate_filter()->mutable_chain();
      chain->add_filters()->set_family_name_regex_filter(ExactRegex(kBounded));
      chain->add_filters()->set_column_qualifier_regex_filter(ExactRegex("version"));
      auto* mutations = version.empty() ? request.mutable_false_mutations() : request.mutable_true_mutations();
      if (!version.empty()) chain->add_filters()->set_value_regex_filter(ExactRegex(version));
      const auto values = Values(next);
      for (size_t field_idx = 0; field_idx < kNames.size(); ++field_idx) {
        AddSetCell(mutations, kBounded, kNames[field_idx], EncodeInt64(values[field_idx]));
      }
      const int64_t next_version = version.empty() ? 1 : std::strtoll(version.c_str(), nullptr, 10) + 1;
      AddSetCell(mutations, kBounded, "version", std::to_string(next_version));
      auto matched = client_.CheckAndMutateRow(std::move(request));
      // A timed-out call may have been applied: report it rather than risk counting twice.
      if (!matched.ok()) return matched.status().WithContext(context);
      return *matched != version.empty();
    };
    return driver::AddWithinOptimistically(counters, field, limit, context, read, write);
  }

  Result<UsageCounters> ReadUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms) override {
    AQ_ASSIGN_OR_RETURN(std::string key, RowKey(owner, period, time_ms));
    auto row = ReadRow(key);
    if (!row.ok()) return row.status().WithContext(fmt::format("reading usage of {}", owner.ToString()));
    if (!*row) return UsageCounters{};
    return Sum(**row);
  }

  Result<std::vector<UsageBucket>> ReadUsageRange(const Uuid& owner, UsagePeriod period, int64_t from_ms, int64_t to_ms,
                                                  int32_t limit) override {
    if (limit < 1) return InvalidArgument("reading usage of {}: limit {} must be positive", owner.ToString(), limit);
    AQ_ASSIGN_OR_RETURN(char code, PeriodCode(period));
    std::vector<UsageBucket> out;
    if (from_ms >= to_ms) return out;
    const std::string prefix = OwnerPrefix(owner) + code;
    v2::ReadRowsRequest request;
    request.set_table_name(table_);
    auto* range = request.mutable_rows()->add_row_ranges();
    range->set_start_key_closed(prefix + StartBytes(from_ms));
    range->set_end_key_open(prefix + StartBytes(to_ms));
    *request.mutable_filter() = LatestCellFilter();
    std::vector<Row> rows;
    Status read = client_.ReadRowsInto(std::move(request), &rows);
    if (!read.ok()) return read.WithContext(fmt::format("reading usage of {}", owner.ToString()));
    for (const Row& row : rows) {
      if (out.size() == static_cast<size_t>(limit)) break;
      AQ_ASSIGN_OR_RETURN(UsageCounters sum, Sum(row));
      AQ_ASSIGN_OR_RETURN(int64_t start, StartOf(row.key));
      out.push_back(UsageBucket{start, sum});
    }
    return out;
  }

  // Deletes the owner's rows: their keys by a prefix scan, then DeleteFromRow entries.
  Status ClearUsage(const Uuid& owner) override {
    const std::string context = fmt::format("clearing usage of {}", owner.ToString());
    v2::ReadRowsRequest request;
    request.set_table_name(table_);
    std::string prefix = OwnerPrefix(owner);
    auto* range = request.mutable_rows()->add_row_ranges();
    range->set_start_key_closed(prefix);
    std::string end = prefix;
    while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xFF) end.pop_back();
    if (!end.empty()) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      range->set_end_key_open(end);
    }
    auto* chain = request.mutable_filter()->mutable_chain();
    chain->add_filters()->set_cells_per_row_limit_filter(1);
    chain->add_filters()->set_strip_value_transformer(true);
    std::vector<v2::MutateRowsRequest::Entry> deletes;
    Status read = client_.ReadRows(std::move(request), [&](Row&& row) {
      auto& entry = deletes.emplace_back();
      entry.set_row_key(std::move(row.key));
      entry.add_mutations()->mutable_delete_from_row();
      return Status::OK();
    });
    if (!read.ok()) return read.WithContext(context);
    Status done = client_.MutateRows(table_, std::move(deletes));
    return done.ok() ? done : done.WithContext(context);
  }

  Status Reset() override {
    Status done = client_.DropRowRange(table_id_, "");
    return done.ok() ? done : done.WithContext("resetting usage");
  }

 private:
  Result<std::string> RowKey(const Uuid& owner, UsagePeriod period, int64_t time_ms) {
    AQ_ASSIGN_OR_RETURN(char code, PeriodCode(period));
    return OwnerPrefix(owner) + code + StartBytes(driver::PeriodStart(period, time_ms));
  }
  Result<std::optional<Row>> ReadRow(const std::string& key) {
    v2::ReadRowsRequest request;
    request.set_table_name(table_);
    request.mutable_rows()->add_row_keys(key);
    *request.mutable_filter() = LatestCellFilter();
    std::vector<Row> rows;
    AQ_RETURN_IF_ERROR(client_.ReadRowsInto(std::move(request), &rows));
    if (rows.empty()) return std::optional<Row>();
    return std::optional<Row>(std::move(rows[0]));
  }
  static Result<UsageCounters> Sum(const Row& row) {
    AQ_ASSIGN_OR_RETURN(UsageCounters total, CountersOf(row, kPlain));
    AQ_ASSIGN_OR_RETURN(UsageCounters bounded, CountersOf(row, kBounded));
    total += bounded;
    return total;
  }

  Client client_;
  const std::string table_id_;
  const std::string table_;
};

}  // namespace

Result<UsageOptions> ParseUsageOptions(const driver::Config& config) {
  UsageOptions options;
  AQ_ASSIGN_OR_RETURN(options.client, ParseClientOptions(config));
  options.table_prefix = driver::ConfigString(config, "table_prefix", options.table_prefix);
  if (options.table_prefix.size() > 40 ||
      options.table_prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != std::string::npos) {
    return InvalidArgument("bigtable: table_prefix '{}' must be at most 40 letters, digits, _, - or .", options.table_prefix);
  }
  return options;
}

Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const UsageOptions& options) {
  auto service = std::make_shared<BigtableUsageService>(options);
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("bigtable usage service");
  return std::shared_ptr<driver::UsageService>(std::move(service));
}

}  // namespace aquifer::drivers::bigtable
