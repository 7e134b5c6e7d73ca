#pragma once

// Wrapper base classes: each forwards every call to a target driver, so a
// decorator (metrics, tracing, fault injection) overrides only the methods it
// cares about (compare LevelDB's EnvWrapper, RocksDB's FileSystemWrapper).
// The wrapper shares ownership of its target. Thread-safety is the target's.

#include <memory>
#include <utility>

#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/message_queue.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/driver/warehouse_service.h"

namespace aquifer::driver {

class MessageQueueWrapper : public MessageQueue {
 public:
  explicit MessageQueueWrapper(std::shared_ptr<MessageQueue> target) : target_(std::move(target)) {}
  MessageQueue* target() const { return target_.get(); }

  MessageQueueCapabilities capabilities() const override { return target_->capabilities(); }
  Status RegisterTopic(std::string_view topic) override { return target_->RegisterTopic(topic); }
  Status Publish(std::string_view topic, std::span<const OutgoingMessage> messages) override {
    return target_->Publish(topic, messages);
  }
  Result<std::unique_ptr<Subscription>> Subscribe(std::string_view topic,
                                                  const SubscriptionOptions& options) override {
    return target_->Subscribe(topic, options);
  }
  Status Reset() override { return target_->Reset(); }

 private:
  std::shared_ptr<MessageQueue> target_;
};

class LookupServiceWrapper : public LookupService {
 public:
  explicit LookupServiceWrapper(std::shared_ptr<LookupService> target)
      : target_(std::move(target)) {}
  LookupService* target() const { return target_.get(); }

  LookupCapabilities capabilities() const override { return target_->capabilities(); }
  Status RegisterInstance(const InstanceInfo& instance) override {
    return target_->RegisterInstance(instance);
  }
  Status RemoveInstance(const InstanceInfo& instance) override {
    return target_->RemoveInstance(instance);
  }
  Status WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                      std::span<const RecordGroup> groups) override {
    return target_->WriteRecords(instance, records, groups);
  }
  Result<QueryCursors> Query(const InstanceInfo& instance, const QueryRequest& request) override {
    return target_->Query(instance, request);
  }
  Result<PeekCursors> Peek(const InstanceInfo& instance) override { return target_->Peek(instance); }
  Result<ReadResult> ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                const keys::Filter& filter, const ReadOptions& options) override {
    return target_->ReadCursor(instance, payload, filter, options);
  }
  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    return target_->PurgeExpired(instance);
  }
  Result<StoredRecords> CountStored(const InstanceInfo& instance) override {
    return target_->CountStored(instance);
  }
  Status Reset() override { return target_->Reset(); }

 private:
  std::shared_ptr<LookupService> target_;
};

class WarehouseServiceWrapper : public WarehouseService {
 public:
  explicit WarehouseServiceWrapper(std::shared_ptr<WarehouseService> target)
      : target_(std::move(target)) {}
  WarehouseService* target() const { return target_.get(); }

  WarehouseCapabilities capabilities() const override { return target_->capabilities(); }
  Status RegisterInstance(const InstanceInfo& instance) override {
    return target_->RegisterInstance(instance);
  }
  Status RemoveInstance(const InstanceInfo& instance) override {
    return target_->RemoveInstance(instance);
  }
  std::string TableName(const InstanceInfo& instance) const override {
    return target_->TableName(instance);
  }
  Status WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                          std::span<const RecordGroup> groups) override {
    return target_->WriteToWarehouse(instance, records, groups);
  }
  Result<QueryAnalysis> AnalyzeQuery(std::string_view sql) override {
    return target_->AnalyzeQuery(sql);
  }
  Result<Job> StartQuery(const Uuid& job_id, std::string_view sql,
                         const JobOptions& options) override {
    return target_->StartQuery(job_id, sql, options);
  }
  Result<Job> PollJob(const Uuid& job_id) override { return target_->PollJob(job_id); }
  Result<SmallResult> RunSmall(std::string_view sql, const SmallQueryLimits& limits) override {
    return target_->RunSmall(sql, limits);
  }
  Result<RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) override {
    return target_->ReadJobRows(job_id, page, limit);
  }
  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    return target_->PurgeExpired(instance);
  }
  Result<int64_t> CountStoredRows(const InstanceInfo& instance) override {
    return target_->CountStoredRows(instance);
  }
  Status Reset() override { return target_->Reset(); }

 private:
  std::shared_ptr<WarehouseService> target_;
};

class UsageServiceWrapper : public UsageService {
 public:
  explicit UsageServiceWrapper(std::shared_ptr<UsageService> target) : target_(std::move(target)) {}
  UsageService* target() const { return target_.get(); }

  Status WriteUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                    const UsageCounters& counters) override {
    return target_->WriteUsage(owner, period, time_ms, counters);
  }
  Result<BoundedAdd> AddUsageWithin(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                                    const UsageCounters& counters, UsageField field,
                                    int64_t limit) override {
    return target_->AddUsageWithin(owner, period, time_ms, counters, field, limit);
  }
  Result<UsageCounters> ReadUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms) override {
    return target_->ReadUsage(owner, period, time_ms);
  }
  Result<std::vector<UsageBucket>> ReadUsageRange(const Uuid& owner, UsagePeriod period,
                                                  int64_t from_ms, int64_t to_ms,
                                                  int32_t limit) override {
    return target_->ReadUsageRange(owner, period, from_ms, to_ms, limit);
  }
  Status ClearUsage(const Uuid& owner) override { return target_->ClearUsage(owner); }
  Status Reset() override { return target_->Reset(); }

 private:
  std::shared_ptr<UsageService> target_;
};

}  // namespace aquifer::driver
