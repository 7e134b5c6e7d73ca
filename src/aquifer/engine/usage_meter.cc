#include "aquifer/engine/usage_meter.h"

#include "aquifer/base/logging.h"

namespace aquifer::engine {

using driver::UsageCounters;
using driver::UsagePeriod;

UsageMeter::UsageMeter(std::shared_ptr<driver::UsageService> usage, Clock* clock)
    : usage_(std::move(usage)), clock_(clock) {}

void UsageMeter::Record(const Uuid& owner, const UsageCounters& counters) {
  const int64_t now = clock_->NowMillis();
  std::lock_guard lock(mu_);
  for (UsagePeriod period : {UsagePeriod::kHour, UsagePeriod::kMonth}) {
    pending_[BucketKey{owner, period, driver::PeriodStart(period, now)}] += counters;
  }
}

void UsageMeter::RecordBucket(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                              const UsageCounters& counters) {
  std::lock_guard lock(mu_);
  pending_[BucketKey{owner, period, driver::PeriodStart(period, time_ms)}] += counters;
}

Status UsageMeter::Flush() {
  std::lock_guard flush_lock(flush_mu_);
  {
    std::lock_guard lock(mu_);
    in_flight_.swap(pending_);
  }
  Status first_error;
  for (auto it = in_flight_.begin(); it != in_flight_.end();) {
    const auto& [owner, period, start] = it->first;
    Status written = usage_->WriteUsage(owner, period, start, it->second);
    std::lock_guard lock(mu_);
    if (written.ok()) {
      it = in_flight_.erase(it);
      continue;
    }
    ++flush_errors_;
    if (first_error.ok()) first_error = written;
    pending_[it->first] += it->second;  // retried next time
    it = in_flight_.erase(it);
  }
  if (!first_error.ok()) {
    AQ_LOG(Warn, "usage flush failed, will retry: {}", first_error.ToString());
  }
  return first_error;
}

UsageCounters UsageMeter::Unflushed(const BucketKey& key) const {
  UsageCounters total;
  if (auto it = pending_.find(key); it != pending_.end()) total += it->second;
  if (auto it = in_flight_.find(key); it != in_flight_.end()) total += it->second;
  return total;
}

UsageCounters UsageMeter::Unflushed(const Uuid& owner, UsagePeriod period, int64_t time_ms) const {
  std::lock_guard lock(mu_);
  return Unflushed(BucketKey{owner, period, driver::PeriodStart(period, time_ms)});
}

Result<UsageCounters> UsageMeter::Current(const Uuid& owner, UsagePeriod period) {
  const int64_t now = clock_->NowMillis();
  BucketKey key{owner, period, driver::PeriodStart(period, now)};
  UsageCounters buffered;
  {
    std::lock_guard lock(mu_);
    buffered = Unflushed(key);
  }
  AQ_ASSIGN_OR_RETURN(UsageCounters stored, usage_->ReadUsage(owner, period, now));
  stored += buffered;
  return stored;
}

int64_t UsageMeter::flush_errors() const {
  std::lock_guard lock(mu_);
  return flush_errors_;
}

size_t UsageMeter::pending() const {
  std::lock_guard lock(mu_);
  return pending_.size() + in_flight_.size();
}

}  // namespace aquifer::engine
