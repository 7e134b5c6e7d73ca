#include "aquifer/driver/types.h"

#include <charconv>
#include <chrono>

#include "aquifer/driver/usage_service.h"
#include "aquifer/driver/warehouse_service.h"

namespace aquifer::driver {

Status CheckRecordGroups(size_t record_count, std::span<const RecordGroup> groups) {
  if (groups.empty()) return Status::OK();
  size_t total = 0;
  for (size_t group_idx = 0; group_idx < groups.size(); ++group_idx) {
    const RecordGroup& group = groups[group_idx];
    if (group.id.empty() || group.id.size() > kMaxRecordGroupIdSize) {
      return InvalidArgument("record group {}: id of {} bytes (must be 1..{})", group_idx,
                             group.id.size(), kMaxRecordGroupIdSize);
    }
    total += group.records;
  }
  if (total != record_count) {
    return InvalidArgument("record groups cover {} records, the batch holds {}", total,
                           record_count);
  }
  return Status::OK();
}

std::string ConfigString(const Config& config, const std::string& key, const std::string& fallback) {
  auto it = config.find(key);
  return it == config.end() ? fallback : it->second;
}

Result<int64_t> ConfigInt(const Config& config, const std::string& key, int64_t fallback) {
  auto it = config.find(key);
  if (it == config.end()) return fallback;
  int64_t value = 0;
  const std::string& text = it->second;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return InvalidArgument("config '{}': expected an integer, got '{}'", key, text);
  }
  return value;
}

Result<bool> ConfigBool(const Config& config, const std::string& key, bool fallback) {
  auto it = config.find(key);
  if (it == config.end()) return fallback;
  const std::string& text = it->second;
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  return InvalidArgument("config '{}': expected true or false, got '{}'", key, text);
}

UsageCounters& UsageCounters::operator+=(const UsageCounters& other) {
  read_ops += other.read_ops;
  read_records += other.read_records;
  read_bytes += other.read_bytes;
  write_ops += other.write_ops;
  write_records += other.write_records;
  write_bytes += other.write_bytes;
  scan_ops += other.scan_ops;
  scan_bytes += other.scan_bytes;
  return *this;
}

int64_t& FieldOf(UsageCounters& counters, UsageField field) {
  switch (field) {
    case UsageField::kReadBytes: return counters.read_bytes;
    case UsageField::kWriteBytes: return counters.write_bytes;
    case UsageField::kScanBytes: break;
  }
  return counters.scan_bytes;
}

int64_t FieldOf(const UsageCounters& counters, UsageField field) {
  return FieldOf(const_cast<UsageCounters&>(counters), field);
}

std::string_view UsageFieldName(UsageField field) {
  switch (field) {
    case UsageField::kReadBytes: return "read_bytes";
    case UsageField::kWriteBytes: return "write_bytes";
    case UsageField::kScanBytes: break;
  }
  return "scan_bytes";
}

int64_t PeriodStart(UsagePeriod period, int64_t time_ms) {
  constexpr int64_t kHourMs = 3'600'000;
  if (period == UsagePeriod::kHour) {
    int64_t start = time_ms - time_ms % kHourMs;
    return time_ms < 0 && time_ms % kHourMs != 0 ? start - kHourMs : start;
  }
  // Calendar month in UTC, via days since the epoch (Howard Hinnant's civil algorithms).
  using namespace std::chrono;
  auto days = floor<std::chrono::days>(sys_time<milliseconds>(milliseconds(time_ms)));
  year_month_day ymd{days};
  sys_days first{ymd.year() / ymd.month() / 1};
  return duration_cast<milliseconds>(first.time_since_epoch()).count();
}

std::string_view JobStatusName(JobStatus status) {
  switch (status) {
    case JobStatus::kPending: return "pending";
    case JobStatus::kRunning: return "running";
    case JobStatus::kDone: return "done";
    case JobStatus::kFailed: return "failed";
  }
  return "unknown";
}

}  // namespace aquifer::driver
