#include "aquifer/drivers/cassandra/usage_service.h"

#include <algorithm>
#include <array>
#include <map>

#include <fmt/format.h>

#include "aquifer/driver/bounded_add.h"

namespace aquifer::drivers::cassandra {
namespace {

using cql::Blob;
using cql::Value;
using driver::UsageBucket;
using driver::UsageCounters;
using driver::UsagePeriod;

constexpr const char* kColumns =
    "read_ops, read_records, read_bytes, write_ops, write_records, write_bytes, scan_ops, scan_bytes";
constexpr std::array<const char*, 8> kColumnNames = {"read_ops",      "read_records", "read_bytes", "write_ops",
                                                     "write_records", "write_bytes",  "scan_ops",   "scan_bytes"};

std::array<int64_t, 8> Fields(const UsageCounters& c) {
  return {c.read_ops, c.read_records, c.read_bytes, c.write_ops, c.write_records, c.write_bytes, c.scan_ops, c.scan_bytes};
}

Result<int32_t> PeriodCode(UsagePeriod period) {
  switch (period) {
    case UsagePeriod::kHour: return 0;
    case UsagePeriod::kMonth: return 1;
  }
  return InvalidArgument("unknown usage period {}", static_cast<int>(period));
}

Value OwnerValue(const Uuid& owner) {
  return Blob{std::string(reinterpret_cast<const char*>(owner.bytes.data()), owner.bytes.size())};
}

// The 8 counters from cells [first, first + 8) of a row; null cells are 0.
Result<UsageCounters> CountersAt(const cql::Row& row, size_t first) {
  if (row.size() < first + 8) return Corruption("cassandra usage: a row of {} cells", row.size());
  UsageCounters c;
  int64_t* fields[] = {&c.read_ops,      &c.read_records, &c.read_bytes, &c.write_ops,
                       &c.write_records, &c.write_bytes,  &c.scan_ops,   &c.scan_bytes};
  for (size_t field_idx = 0; field_idx < 8; ++field_idx) {
    if (row[first + field_idx]) {
      AQ_ASSIGN_OR_RETURN(*fields[field_idx], cql::DecodeBigint(*row[first + field_idx]));
    }
  }
  return c;
}

class CassandraUsageService final : public driver::UsageService {
 public:
  CassandraUsageService(std::unique_ptr<cql::Session> session, std::string keyspace)
      : session_(std::move(session)), counters_(keyspace + ".usage_counters"), bounded_(keyspace + ".usage_bounded") {}

  Status Init() {
    // Partition per (owner, period): an owner's hours of a year are ~8800 rows.
    std::string counter_columns, bigint_columns;
    for (const char* name : kColumnNames) {
      counter_columns += fmt::format(", {} counter", name);
      bigint_columns += fmt::format(", {} bigint", name);
    }
    for (const std::string& ddl : {
             fmt::format("CREATE TABLE IF NOT EXISTS {} (owner uuid, period int, period_start bigint{}, "
                         "PRIMARY KEY ((owner, period), period_start))", counters_, counter_columns),
             fmt::format("CREATE TABLE IF NOT EXISTS {} (owner uuid, period int, period_start bigint{}, "
                         "version bigint, PRIMARY KEY ((owner, period), period_start))", bounded_, bigint_columns)}) {
      auto made = session_->Query(ddl);
      if (!made.ok()) return made.status();
    }
    std::string increments;
    for (const char* name : kColumnNames) {
      increments += fmt::format("{}{} = {} + ?", increments.empty() ? "" : ", ", name, name);
    }
    std::string sets;
    for (const char* name : kColumnNames) sets += fmt::format("{} = ?, ", name);
    struct {
      std::shared_ptr<const cql::PreparedStatement>* target;
      std::string cql;
    } statements[] = {
        {&add_, fmt::format("UPDATE {} SET {} WHERE owner = ? AND period = ? AND period_start = ?", counters_, increments)},
        {&read_counters_, fmt::format("SELECT {} FROM {} WHERE owner = ? AND period = ? AND period_start = ?", kColumns, counters_)},
        {&read_bounded_, fmt::format("SELECT {}, version FROM {} WHERE owner = ? AND period = ? AND period_start = ?", kColumns, bounded_)},
        {&range_counters_, fmt::format("SELECT period_start, {} FROM {} WHERE owner = ? AND period = ? AND period_start >= ? "
                                       "AND period_start < ?", kColumns, counters_)},
        {&range_bounded_, fmt::format("SELECT period_start, {} FROM {} WHERE owner = ? AND period = ? AND period_start >= ? "
                                      "AND period_start < ?", kColumns, bounded_)},
        {&insert_bounded_, fmt::format("INSERT INTO {} (owner, period, period_start, {}, version) "
                                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) IF NOT EXISTS", bounded_, kColumns)},
        {&update_bounded_, fmt::format("UPDATE {} SET {}version = ? WHERE owner = ? AND period = ? AND period_start = ? "
                                       "IF version = ?", bounded_, sets)},
        {&partition_counters_, fmt::format("SELECT period_start, {} FROM {} WHERE owner = ? AND period = ?", kColumns, counters_)},
        {&clear_bounded_, fmt::format("DELETE FROM {} WHERE owner = ? AND period = ?", bounded_)},
    };
    for (auto& statement : statements) {
      AQ_ASSIGN_OR_RETURN(*statement.target, session_->Prepare(statement.cql));
    }
    return Status::OK();
  }

  Status WriteUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms, const UsageCounters& counters) override {
    AQ_ASSIGN_OR_RETURN(int32_t code, PeriodCode(period));
    std::vector<Value> values;
    for (int64_t field : Fields(counters)) values.emplace_back(field);
    values.push_back(OwnerValue(owner));
    values.emplace_back(code);
    values.emplace_back(driver::PeriodStart(period, time_ms));
    auto done = session_->Execute(*add_, values);
    if (!done.ok()) return done.status().WithContext(fmt::format("adding usage of {}", owner.ToString()));
    return Status::OK();
  }

  // Optimistic concurrency on the bounded row: read both rows, check the
  // limit against their sum, then write the bounded row IF its version is
  // still the one read (or IF NOT EXISTS). A failed condition means another
  // reserver got in between: read again and retry. Plain adds (counters) are
  // not serialised with it; they are unbounded by contract anyway.
  Result<driver::BoundedAdd> AddUsageWithin(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                                            const UsageCounters& counters, driver::UsageField field,
                                            int64_t limit) override {
    AQ_ASSIGN_OR_RETURN(int32_t code, PeriodCode(period));
    const int64_t start = driver::PeriodStart(period, time_ms);
    const std::vector<Value> key = {OwnerValue(owner), code, start};
    const std::string context = fmt::format("reserving usage of {}", owner.ToString());
    std::optional<int64_t> version;
    auto read = [&](UsageCounters* plain, UsageCounters* bounded) -> Status {
      cql::QueryOptions serial;
      serial.consistency = cql::Consistency::kSerial;  // sees every applied LWT
      auto bounded_rows = session_->Execute(*read_bounded_, key, serial);
      if (!bounded_rows.ok()) return bounded_rows.status().WithContext(context);
      auto counter_rows = session_->Execute(*read_counters_, key);
      if (!counter_rows.ok()) return counter_rows.status().WithContext(context);
      version.reset();
      if (!counter_rows->rows.empty()) {
        AQ_ASSIGN_OR_RETURN(*plain, CountersAt(counter_rows->rows[0], 0));
      }
      if (!bounded_rows->rows.empty()) {
        const cql::Row& row = bounded_rows->rows[0];
        AQ_ASSIGN_OR_RETURN(*bounded, CountersAt(row, 0));
        if (row[8]) {
          AQ_ASSIGN_OR_RETURN(version, cql::DecodeBigint(*row[8]));
        }
      }
      return Status::OK();
    };
    auto write = [&](const UsageCounters& next) -> Result<bool> {
      std::vector<Value> values;
      Result<cql::Rows> applied = cql::Rows{};
      cql::QueryOptions lwt;
      lwt.serial_consistency = session_->options().serial_consistency;
      if (!version) {
        values = key;
        for (int64_t value : Fields(next)) values.emplace_back(value);
        applied = session_->Execute(*insert_bounded_, values, lwt);
      } else {
        for (int64_t value : Fields(next)) values.emplace_back(value);
        values.emplace_back(*version + 1);
        values.insert(values.end(), key.begin(), key.end());
        values.emplace_back(*version);
        applied = session_->Execute(*update_bounded_, values, lwt);
      }
      if (!applied.ok()) {
        // A timed-out LWT may have been applied: the next round reads with
        // SERIAL and would see it, but cannot tell it was ours; so report the
        // uncertainty rather than risk counting twice.
        return applied.status().WithContext(context);
      }
      if (applied->rows.empty() || !applied->rows[0][0]) return Internal("{}: the LWT answered no [applied]", context);
      return cql::DecodeBoolean(*applied->rows[0][0]);
    };
    return driver::AddWithinOptimistically(counters, field, limit, context, read, write);
  }

  Result<UsageCounters> ReadUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms) override {
    AQ_ASSIGN_OR_RETURN(int32_t code, PeriodCode(period));
    const std::vector<Value> key = {OwnerValue(owner), code, driver::PeriodStart(period, time_ms)};
    const std::string context = fmt::format("reading usage of {}", owner.ToString());
    UsageCounters total;
    for (const auto* statement : {read_counters_.get(), read_bounded_.get()}) {
      auto rows = session_->Execute(*statement, key);
      if (!rows.ok()) return rows.status().WithContext(context);
      if (rows->rows.empty()) continue;
      AQ_ASSIGN_OR_RETURN(UsageCounters part, CountersAt(rows->rows[0], 0));
      total += part;
    }
    return total;
  }

  Result<std::vector<UsageBucket>> ReadUsageRange(const Uuid& owner, UsagePeriod period, int64_t from_ms,
                                                  int64_t to_ms, int32_t limit) override {
    if (limit < 1) return InvalidArgument("reading usage of {}: limit {} must be positive", owner.ToString(), limit);
    AQ_ASSIGN_OR_RETURN(int32_t code, PeriodCode(period));
    const std::string context = fmt::format("reading usage of {}", owner.ToString());
    std::map<int64_t, UsageCounters> buckets;
    if (from_ms < to_ms) {
      // No LIMIT: cleared buckets (all zeros) are left out after merging, so
      // the first `limit` kept ones may lie further on.
      const std::vector<Value> values = {OwnerValue(owner), code, from_ms, to_ms};
      for (const auto* statement : {range_counters_.get(), range_bounded_.get()}) {
        auto rows = session_->ExecuteAll(*statement, values);
        if (!rows.ok()) return rows.status().WithContext(context);
        for (const cql::Row& row : *rows) {
          if (!row[0]) return Corruption("{}: a bucket without a start", context);
          AQ_ASSIGN_OR_RETURN(int64_t start, cql::DecodeBigint(*row[0]));
          AQ_ASSIGN_OR_RETURN(UsageCounters part, CountersAt(row, 1));
          buckets[start] += part;
        }
      }
    }
    std::vector<UsageBucket> out;
    for (const auto& [start, counters] : buckets) {
      if (out.size() == static_cast<size_t>(limit)) break;
      if (counters == UsageCounters{}) continue;  // cleared (ClearUsage)
      out.push_back(UsageBucket{start, counters});
    }
    return out;
  }

  // Counters cannot be deleted for good: Cassandra adds an increment made
  // after a DELETE to the value before it (the suite's "counting starts again
  // from zero" caught it). So clearing subtracts what each bucket holds, and
  // range reads leave out buckets that sum to zero (a missing bucket reads as
  // zeros anyway). An add racing with the clear is either subtracted or kept
  // whole, never half. The bounded rows are ordinary cells and are deleted.
  Status ClearUsage(const Uuid& owner) override {
    const std::string context = fmt::format("clearing usage of {}", owner.ToString());
    for (UsagePeriod period : {UsagePeriod::kHour, UsagePeriod::kMonth}) {
      AQ_ASSIGN_OR_RETURN(int32_t code, PeriodCode(period));
      const std::vector<Value> key = {OwnerValue(owner), code};
      auto rows = session_->ExecuteAll(*partition_counters_, key);
      if (!rows.ok()) return rows.status().WithContext(context);
      for (const cql::Row& row : *rows) {
        if (!row[0]) return Corruption("{}: a bucket without a start", context);
        AQ_ASSIGN_OR_RETURN(int64_t start, cql::DecodeBigint(*row[0]));
        AQ_ASSIGN_OR_RETURN(UsageCounters held, CountersAt(row, 1));
        if (held == UsageCounters{}) continue;
        std::vector<Value> values;
        for (int64_t field : Fields(held)) values.emplace_back(-field);
        values.push_back(OwnerValue(owner));
        values.emplace_back(code);
        values.emplace_back(start);
        auto done = session_->Execute(*add_, values);
        if (!done.ok()) return done.status().WithContext(context);
      }
      auto done = session_->Execute(*clear_bounded_, key);
      if (!done.ok()) return done.status().WithContext(context);
    }
    return Status::OK();
  }

  Status Reset() override {
    for (const std::string& table : {counters_, bounded_}) {
      auto done = session_->Query("TRUNCATE " + table);
      if (!done.ok()) return done.status().WithContext("resetting usage");
    }
    return Status::OK();
  }

 private:
  std::unique_ptr<cql::Session> session_;
  const std::string counters_, bounded_;  // keyspace.table
  std::shared_ptr<const cql::PreparedStatement> add_, read_counters_, read_bounded_, range_counters_, range_bounded_,
      insert_bounded_, update_bounded_, partition_counters_, clear_bounded_;
};

}  // namespace

Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const Options& options) {
  auto session = ConnectAndEnsureKeyspace(options);
  if (!session.ok()) return session.status().WithContext("cassandra usage service");
  auto service = std::make_shared<CassandraUsageService>(std::move(*session), options.keyspace);
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("cassandra usage service");
  return std::shared_ptr<driver::UsageService>(std::move(service));
}

}  // namespace aquifer::drivers::cassandra
