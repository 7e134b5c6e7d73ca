#pragma once

// UsageMeter: buffers usage counters in memory and flushes them to the
// UsageService (REFERENCE.md §7, done better than §9.7).
//
// Owners are secret ids and project ids. Record() adds to two pending
// buckets per owner, (owner, hour, start of hour) and (owner, month, start of
// month), so a flush that spans a period boundary still charges the right
// periods. Flush() writes each pending bucket with one WriteUsage call: a
// bucket leaves the buffer only when its write succeeded; a failed one goes
// back and is retried on the next flush (its error is logged, never dropped).
// Because hour and month are separate buckets, a failure never leaves one
// written twice.
//
// Current(owner, period) = the stored bucket + what is pending or being
// flushed for it. Usage charged to the UsageService directly (a write quota's
// reservation, engine.cc) is recorded here only for the buckets it did not
// charge (RecordBucket), so it is never counted twice. While a flush is in flight a bucket may be counted twice
// for a moment (stored and in flight): quota checks err on the safe side.
//
// Thread-safe: Record and Current may run on any thread, concurrently with Flush.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/usage_service.h"

namespace aquifer::engine {

class UsageMeter {
 public:
  UsageMeter(std::shared_ptr<driver::UsageService> usage, Clock* clock);

  // Adds `counters` to `owner`'s current hour and month. Never fails.
  void Record(const Uuid& owner, const driver::UsageCounters& counters);

  // Adds `counters` to one bucket of `owner` only: the `period` containing
  // `time_ms`. Counters may be negative (a give-back that must be retried).
  void RecordBucket(const Uuid& owner, driver::UsagePeriod period, int64_t time_ms,
                    const driver::UsageCounters& counters);

  // Writes every pending bucket. Returns the first error (the failed buckets
  // stay pending); OK when everything was written.
  Status Flush();

  // The owner's counters for the period containing now: stored plus unflushed.
  Result<driver::UsageCounters> Current(const Uuid& owner, driver::UsagePeriod period);
  // Only the unflushed part of Current, for the period containing `time_ms`.
  driver::UsageCounters Unflushed(const Uuid& owner, driver::UsagePeriod period,
                                  int64_t time_ms) const;

  int64_t flush_errors() const;
  // Buckets waiting to be written.
  size_t pending() const;

 private:
  using BucketKey = std::tuple<Uuid, driver::UsagePeriod, int64_t>;
  driver::UsageCounters Unflushed(const BucketKey& key) const;  // requires mu_

  std::shared_ptr<driver::UsageService> usage_;
  Clock* clock_;
  std::mutex flush_mu_;  // one flush at a time
  mutable std::mutex mu_;
  std::map<BucketKey, driver::UsageCounters> pending_;    // guarded by mu_
  std::map<BucketKey, driver::UsageCounters> in_flight_;  // guarded by mu_
  int64_t flush_errors_ = 0;                              // guarded by mu_
};

}  // namespace aquifer::engine
