#pragma once

// UsageService: counters per owner (a secret, a project) and period.
//
// Buckets are (owner, period, period start): hourly buckets start on the hour
// (UTC), monthly buckets on the first day of the calendar month (UTC).
// WriteUsage adds atomically, so concurrent writers never lose an increment.
// Fits RocksDB (merge operator or read-modify-write under a lock), Postgres
// (INSERT ... ON CONFLICT DO UPDATE), Cassandra (counter columns) and
// Bigtable (ReadModifyWriteRow increments). All methods are thread-safe.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"

namespace aquifer::driver {

struct UsageCounters {
  int64_t read_ops = 0, read_records = 0, read_bytes = 0;
  int64_t write_ops = 0, write_records = 0, write_bytes = 0;
  int64_t scan_ops = 0, scan_bytes = 0;

  UsageCounters& operator+=(const UsageCounters& other);
  bool operator==(const UsageCounters&) const = default;
};

enum class UsagePeriod : uint8_t { kHour, kMonth };

// The start (ms since the epoch, UTC) of the period containing `time_ms`.
int64_t PeriodStart(UsagePeriod period, int64_t time_ms);

struct UsageBucket {
  int64_t period_start_ms = 0;
  UsageCounters counters;
};

class UsageService {
 public:
  virtual ~UsageService() = default;
  UsageService() = default;
  UsageService(const UsageService&) = delete;
  UsageService& operator=(const UsageService&) = delete;

  // Adds `counters` to the bucket of `owner` for the period containing `time_ms`.
  virtual Status WriteUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                            const UsageCounters& counters) = 0;
  // The bucket containing `time_ms`; zeros when missing.
  virtual Result<UsageCounters> ReadUsage(const Uuid& owner, UsagePeriod period,
                                          int64_t time_ms) = 0;
  // Buckets whose start is in [from_ms, to_ms), ascending, at most `limit`.
  virtual Result<std::vector<UsageBucket>> ReadUsageRange(const Uuid& owner, UsagePeriod period,
                                                          int64_t from_ms, int64_t to_ms,
                                                          int32_t limit) = 0;
  // Removes every bucket of `owner`.
  virtual Status ClearUsage(const Uuid& owner) = 0;
  virtual Status Reset() = 0;
};

}  // namespace aquifer::driver
