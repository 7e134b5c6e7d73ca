#pragma once

// UsageService: counters per owner (a secret, a project) and period.
//
// Buckets are (owner, period, period start): hourly buckets start on the hour
// (UTC), monthly buckets on the first day of the calendar month (UTC).
// WriteUsage adds atomically, so concurrent writers never lose an increment.
// AddUsageWithin adds only while one counter stays within a limit, checking
// and adding in one atomic step (quota reservations shared by every process
// of a deployment). Fits RocksDB (read-modify-write under a lock), Postgres
// (INSERT ... ON CONFLICT DO UPDATE ... WHERE), Cassandra (lightweight
// transactions) and Bigtable (CheckAndMutateRow). All methods are thread-safe.

#include <cstdint>
#include <string>
#include <string_view>
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

// The counters a bounded add (AddUsageWithin) may limit: the quota'd ones.
enum class UsageField : uint8_t { kReadBytes, kWriteBytes, kScanBytes };

// The value of `field` in `counters`, and its name ("write_bytes").
int64_t& FieldOf(UsageCounters& counters, UsageField field);
int64_t FieldOf(const UsageCounters& counters, UsageField field);
std::string_view UsageFieldName(UsageField field);

// What AddUsageWithin did.
struct BoundedAdd {
  bool added = false;      // false: the add would pass the limit; nothing changed
  UsageCounters counters;  // the bucket just after the add; when refused, as read after it
};

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
  // Counters may be negative: adding the negation of an earlier add takes it back.
  virtual Status WriteUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                            const UsageCounters& counters) = 0;
  // Adds `counters` like WriteUsage, but only if afterwards the bucket's
  // `field` is at most `limit` (bucket.field + counters.field <= limit);
  // otherwise changes nothing and answers added = false. The check and the add
  // are one atomic step against every other add to the bucket, from any thread
  // or process sharing the service, so concurrent reservers never together
  // pass the limit. Errors only when the service fails (or a bad period).
  virtual Result<BoundedAdd> AddUsageWithin(const Uuid& owner, UsagePeriod period,
                                            int64_t time_ms, const UsageCounters& counters,
                                            UsageField field, int64_t limit) = 0;
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
