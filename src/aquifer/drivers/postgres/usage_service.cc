#include "aquifer/drivers/postgres/usage_service.h"

#include <fmt/format.h>

namespace aquifer::drivers::postgres {
namespace {

using driver::UsageBucket;
using driver::UsageCounters;
using driver::UsagePeriod;

constexpr const char* kCounterColumns =
    "read_ops, read_records, read_bytes, write_ops, write_records, write_bytes, scan_ops, scan_bytes";

Result<int16_t> PeriodCode(UsagePeriod period) {
  switch (period) {
    case UsagePeriod::kHour: return int16_t{0};
    case UsagePeriod::kMonth: return int16_t{1};
  }
  return InvalidArgument("unknown usage period {}", static_cast<int>(period));
}

void AddCounters(Params* params, const UsageCounters& c) {
  for (int64_t value : {c.read_ops, c.read_records, c.read_bytes, c.write_ops, c.write_records, c.write_bytes,
                        c.scan_ops, c.scan_bytes}) {
    params->Int8(value);
  }
}

Result<UsageCounters> CountersAt(const PgResult& result, int row, int first_column) {
  UsageCounters c;
  int64_t* fields[] = {&c.read_ops,      &c.read_records, &c.read_bytes, &c.write_ops,
                       &c.write_records, &c.write_bytes,  &c.scan_ops,   &c.scan_bytes};
  for (int field_idx = 0; field_idx < 8; ++field_idx) {
    AQ_ASSIGN_OR_RETURN(*fields[field_idx], result.Int(row, first_column + field_idx));
  }
  return c;
}

class PgUsageService final : public driver::UsageService {
 public:
  PgUsageService(const ConnectionOptions& options)
      : pool_(options.url, options.pool_size), table_(QuoteIdent(options.schema) + ".usage") {}

  Status Init(const std::string& schema) {
    return EnsureSchema(pool_, schema, fmt::format(R"sql(
      CREATE TABLE IF NOT EXISTS {} (
        owner uuid NOT NULL,
        period smallint NOT NULL,         -- 0 hour, 1 calendar month (UTC)
        period_start bigint NOT NULL,     -- ms since the epoch
        read_ops bigint NOT NULL, read_records bigint NOT NULL, read_bytes bigint NOT NULL,
        write_ops bigint NOT NULL, write_records bigint NOT NULL, write_bytes bigint NOT NULL,
        scan_ops bigint NOT NULL, scan_bytes bigint NOT NULL,
        PRIMARY KEY (owner, period, period_start))
    )sql", table_));
  }

  Status WriteUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms, const UsageCounters& counters) override {
    AQ_ASSIGN_OR_RETURN(int16_t code, PeriodCode(period));
    Params params;
    params.Uuid(owner).Int2(code).Int8(driver::PeriodStart(period, time_ms));
    AddCounters(&params, counters);
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    auto done = conn->Exec(fmt::format(R"sql(
        INSERT INTO {0} AS u (owner, period, period_start, {1})
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        ON CONFLICT (owner, period, period_start) DO UPDATE SET
          read_ops = u.read_ops + EXCLUDED.read_ops, read_records = u.read_records + EXCLUDED.read_records,
          read_bytes = u.read_bytes + EXCLUDED.read_bytes, write_ops = u.write_ops + EXCLUDED.write_ops,
          write_records = u.write_records + EXCLUDED.write_records,
          write_bytes = u.write_bytes + EXCLUDED.write_bytes, scan_ops = u.scan_ops + EXCLUDED.scan_ops,
          scan_bytes = u.scan_bytes + EXCLUDED.scan_bytes)sql", table_, kCounterColumns), params);
    if (!done.ok()) return done.status().WithContext(fmt::format("adding usage of {}", owner.ToString()));
    return Status::OK();
  }

  // One statement: the upsert's conflict path locks the row and evaluates
  // the WHERE on its latest version, so concurrent reservers (any process)
  // serialise on the row and never together pass the limit. A missing row is
  // inserted only when the add alone fits (checked before).
  Result<driver::BoundedAdd> AddUsageWithin(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                                            const UsageCounters& counters, driver::UsageField field,
                                            int64_t limit) override {
    AQ_ASSIGN_OR_RETURN(int16_t code, PeriodCode(period));
    driver::BoundedAdd result;
    if (driver::FieldOf(counters, field) <= limit) {
      Params params;
      params.Uuid(owner).Int2(code).Int8(driver::PeriodStart(period, time_ms));
      AddCounters(&params, counters);
      params.Int8(limit);
      AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
      const std::string column(driver::UsageFieldName(field));
      auto rows = conn->Exec(fmt::format(R"sql(
          INSERT INTO {0} AS u (owner, period, period_start, {1})
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
          ON CONFLICT (owner, period, period_start) DO UPDATE SET
            read_ops = u.read_ops + EXCLUDED.read_ops, read_records = u.read_records + EXCLUDED.read_records,
            read_bytes = u.read_bytes + EXCLUDED.read_bytes, write_ops = u.write_ops + EXCLUDED.write_ops,
            write_records = u.write_records + EXCLUDED.write_records,
            write_bytes = u.write_bytes + EXCLUDED.write_bytes, scan_ops = u.scan_ops + EXCLUDED.scan_ops,
            scan_bytes = u.scan_bytes + EXCLUDED.scan_bytes
          WHERE u.{2} <= $12 - EXCLUDED.{2}
          RETURNING {1})sql", table_, kCounterColumns, column), params);
      if (!rows.ok()) return rows.status().WithContext(fmt::format("adding usage of {}", owner.ToString()));
      if (rows->rows() == 1) {
        result.added = true;
        AQ_ASSIGN_OR_RETURN(result.counters, CountersAt(*rows, 0, 0));
        return result;
      }
    }
    AQ_ASSIGN_OR_RETURN(result.counters, ReadUsage(owner, period, time_ms));
    return result;
  }

  Result<UsageCounters> ReadUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms) override {
    AQ_ASSIGN_OR_RETURN(int16_t code, PeriodCode(period));
    Params params;
    params.Uuid(owner).Int2(code).Int8(driver::PeriodStart(period, time_ms));
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    auto rows = conn->Exec(fmt::format("SELECT {} FROM {} WHERE owner = $1 AND period = $2 AND period_start = $3",
                                       kCounterColumns, table_), params);
    if (!rows.ok()) return rows.status().WithContext(fmt::format("reading usage of {}", owner.ToString()));
    if (rows->rows() == 0) return UsageCounters{};
    return CountersAt(*rows, 0, 0);
  }

  Result<std::vector<UsageBucket>> ReadUsageRange(const Uuid& owner, UsagePeriod period, int64_t from_ms,
                                                  int64_t to_ms, int32_t limit) override {
    if (limit < 1) return InvalidArgument("reading usage of {}: limit {} must be positive", owner.ToString(), limit);
    AQ_ASSIGN_OR_RETURN(int16_t code, PeriodCode(period));
    Params params;
    params.Uuid(owner).Int2(code).Int8(from_ms).Int8(to_ms).Int8(limit);
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    auto rows = conn->Exec(fmt::format(
        "SELECT period_start, {} FROM {} WHERE owner = $1 AND period = $2 AND period_start >= $3 "
        "AND period_start < $4 ORDER BY period_start LIMIT $5", kCounterColumns, table_), params);
    if (!rows.ok()) return rows.status().WithContext(fmt::format("reading usage of {}", owner.ToString()));
    std::vector<UsageBucket> buckets;
    buckets.reserve(rows->rows());
    for (int row = 0; row < rows->rows(); ++row) {
      UsageBucket bucket;
      AQ_ASSIGN_OR_RETURN(bucket.period_start_ms, rows->Int(row, 0));
      AQ_ASSIGN_OR_RETURN(bucket.counters, CountersAt(*rows, row, 1));
      buckets.push_back(bucket);
    }
    return buckets;
  }

  Status ClearUsage(const Uuid& owner) override {
    Params params;
    params.Uuid(owner);
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    auto done = conn->Exec(fmt::format("DELETE FROM {} WHERE owner = $1", table_), params);
    if (!done.ok()) return done.status().WithContext(fmt::format("clearing usage of {}", owner.ToString()));
    return Status::OK();
  }

  Status Reset() override {
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    Status done = conn->ExecScript("TRUNCATE " + table_);
    return done.ok() ? done : done.WithContext("resetting usage");
  }

 private:
  Pool pool_;
  const std::string table_;  // quoted schema.table
};

}  // namespace

Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const ConnectionOptions& options) {
  auto service = std::make_shared<PgUsageService>(options);
  Status init = service->Init(options.schema);
  if (!init.ok()) return init.WithContext("postgres usage service");
  return std::shared_ptr<driver::UsageService>(std::move(service));
}

}  // namespace aquifer::drivers::postgres
