#include "aquifer/driver/record_limits.h"

#include <fmt/format.h>

namespace aquifer::driver {

Status CheckRecordLimits(const Uuid& instance, std::span<const Record> records, const Limits& limits) {
  if (records.size() > limits.max_records_in_batch) {
    return InvalidArgument("writing to {}: batch of {} records exceeds the limit of {} records",
                           instance.ToString(), records.size(), limits.max_records_in_batch);
  }
  for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
    const Record& record = records[record_idx];
    if (record.key.empty()) {
      return InvalidArgument("writing to {}: record {}: empty key", instance.ToString(), record_idx);
    }
    if (record.key.size() > limits.max_key_size) {
      return InvalidArgument("writing to {}: record {}: key of {} bytes exceeds the limit of {} bytes",
                             instance.ToString(), record_idx, record.key.size(), limits.max_key_size);
    }
    if (record.avro.size() > limits.max_record_size) {
      return InvalidArgument("writing to {}: record {}: record of {} bytes exceeds the limit of {} bytes",
                             instance.ToString(), record_idx, record.avro.size(), limits.max_record_size);
    }
  }
  return Status::OK();
}

Status CheckWrite(const InstanceInfo& instance, std::span<const Record> records, std::span<const RecordGroup> groups,
                  const Limits& limits) {
  if (Status checked = CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext(fmt::format("writing to {}", instance.instance_id.ToString()));
  }
  return CheckRecordLimits(instance.instance_id, records, limits);
}

void KeepNewGroups(std::span<const Record> records, std::span<const RecordGroup> groups,
                   std::set<std::string, std::less<>>* applied, std::vector<const Record*>* kept,
                   std::vector<std::string>* fresh_ids) {
  size_t begin = 0;
  for (const RecordGroup& group : groups) {
    if (!applied->count(group.id)) {
      applied->insert(group.id);  // a repeat within the call is skipped
      fresh_ids->push_back(group.id);
      for (size_t record_idx = begin; record_idx < begin + group.records; ++record_idx) kept->push_back(&records[record_idx]);
    }
    begin += group.records;
  }
}

Result<int64_t> ConfigIntWithin(const Config& config, const std::string& key, int64_t fallback, int64_t max) {
  AQ_ASSIGN_OR_RETURN(int64_t value, ConfigInt(config, key, fallback));
  if (value < 1 || value > max) return InvalidArgument("config '{}': {} is outside 1..{}", key, value, max);
  return value;
}

Status ConfigureLimits(const Config& config, const Limits& maxima, Limits* limits) {
  auto within = [&](const char* key, size_t current, size_t max) {
    return ConfigIntWithin(config, key, static_cast<int64_t>(current), static_cast<int64_t>(max));
  };
  AQ_ASSIGN_OR_RETURN(int64_t key_size, within("max_key_size", limits->max_key_size, maxima.max_key_size));
  AQ_ASSIGN_OR_RETURN(int64_t record_size, within("max_record_size", limits->max_record_size, maxima.max_record_size));
  AQ_ASSIGN_OR_RETURN(int64_t batch,
                      within("max_records_in_batch", limits->max_records_in_batch, maxima.max_records_in_batch));
  limits->max_key_size = static_cast<size_t>(key_size);
  limits->max_record_size = static_cast<size_t>(record_size);
  limits->max_records_in_batch = static_cast<size_t>(batch);
  return Status::OK();
}

Status CheckReadOptions(const Uuid& instance, const ReadOptions& options) {
  if (options.limit < 1 || options.limit > 1000) {
    return InvalidArgument("reading {}: limit {} is outside 1..1000", instance.ToString(), options.limit);
  }
  if (options.scan_budget < 1) {
    return InvalidArgument("reading {}: scan budget {} must be positive", instance.ToString(), options.scan_budget);
  }
  return Status::OK();
}

}  // namespace aquifer::driver
