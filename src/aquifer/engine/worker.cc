#include "aquifer/engine/worker.h"

#include <algorithm>
#include <chrono>
#include <map>

#include "aquifer/base/logging.h"
#include "aquifer/base/text.h"

namespace aquifer::engine {
namespace {

constexpr size_t kPullBatch = 256;
constexpr int64_t kPullTimeoutMs = 100;
constexpr int64_t kAckTimeoutMs = 30'000;
constexpr int64_t kFirstBackoffMs = 50;
constexpr int64_t kMaxBackoffMs = 5'000;

// Errors a retry cannot fix: the message is dropped (logged) instead of redelivered forever.
bool IsPermanent(const Status& status) {
  return status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kCorruption ||
         status.code() == StatusCode::kTooLarge || status.code() == StatusCode::kNotSupported;
}

int64_t BackoffMs(int32_t attempt) {
  int64_t backoff = kFirstBackoffMs;
  for (int32_t step = 1; step < attempt && backoff < kMaxBackoffMs; ++step) backoff *= 2;
  return std::min(backoff, kMaxBackoffMs);
}

int64_t MessageBytes(const WriteMessage& message) {
  int64_t bytes = 0;
  for (const auto& record : message.records) bytes += static_cast<int64_t>(record.avro.size());
  return bytes;
}

}  // namespace

Status WorkerPool::Start(int32_t threads) {
  stopping_ = false;
  driver::SubscriptionOptions options;
  options.name = std::string(kWorkersSubscription);
  options.persistent = true;
  options.ack_timeout_ms = kAckTimeoutMs;
  options.ordered = true;  // ordering key = instance id: one table's writes apply in order
  for (int32_t thread_idx = 0; thread_idx < std::max(threads, 1); ++thread_idx) {
    auto subscription = deps_.queue->Subscribe(kWritesTopic, options);
    if (!subscription.ok()) {
      Stop();
      return subscription.status().WithContext("starting the workers");
    }
    subscriptions_.push_back(std::move(*subscription));
  }
  for (auto& subscription : subscriptions_) {
    threads_.emplace_back([this, sub = subscription.get()] { Run(sub); });
  }
  return Status::OK();
}

void WorkerPool::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  for (auto& subscription : subscriptions_) (void)subscription->Close();
  subscriptions_.clear();
}

void WorkerPool::Backoff(int64_t ms) {
  std::unique_lock lock(mu_);
  stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_.load(); });
}

void WorkerPool::Run(driver::Subscription* subscription) {
  int32_t pull_failures = 0;
  while (!stopping_) {
    auto pulled = subscription->Pull(kPullBatch, kPullTimeoutMs);
    if (!pulled.ok()) {
      deps_.metrics->worker_errors.fetch_add(1, std::memory_order_relaxed);
      AQ_LOG(Warn, "worker: pulling from '{}' failed: {}", kWritesTopic,
             pulled.status().ToString());
      Backoff(BackoffMs(++pull_failures));
      continue;
    }
    pull_failures = 0;
    // A pull holds the messages of an instance in publish order (the ordering
    // key); each instance's run is applied with one store write per store.
    std::vector<std::vector<const driver::Message*>> runs;
    std::map<std::string_view, size_t> run_of_key;
    for (const auto& message : *pulled) {
      if (message.ordering_key.empty()) {  // unordered: a run of its own
        runs.push_back({&message});
        continue;
      }
      auto [it, inserted] = run_of_key.try_emplace(message.ordering_key, runs.size());
      if (inserted) runs.emplace_back();
      runs[it->second].push_back(&message);
    }
    for (const auto& run : runs) {
      if (stopping_) break;  // the rest is redelivered after the ack timeout
      size_t done = HandleRun(run);
      std::vector<std::string> ack_ids;
      std::vector<std::string> nack_ids;
      for (size_t idx = 0; idx < run.size(); ++idx) {
        (idx < done ? ack_ids : nack_ids).push_back(run[idx]->ack_id);
      }
      if (!ack_ids.empty()) {
        Status acked = subscription->Ack(ack_ids);
        if (!acked.ok()) {
          AQ_LOG(Warn, "worker: ack failed (the messages will be redelivered): {}",
                 acked.ToString());
        }
        deps_.metrics->messages_processed.fetch_add(static_cast<int64_t>(ack_ids.size()),
                                                    std::memory_order_relaxed);
      }
      if (!nack_ids.empty()) {
        // The failed message and every later one of its instance go back, in order.
        Backoff(BackoffMs(run[done]->delivery_attempt));
        (void)subscription->Nack(nack_ids);
      }
    }
  }
}

size_t WorkerPool::HandleRun(const std::vector<const driver::Message*>& run) {
  // Chunks of consecutive messages within the stores' batch limit.
  size_t done = 0;
  while (done < run.size()) {
    std::vector<const driver::Message*> chunk;
    std::vector<WriteMessage> messages;
    size_t total = 0;
    for (size_t idx = done; idx < run.size(); ++idx) {
      auto decoded = DecodeWriteMessage(run[idx]->data);
      if (!decoded.ok() || (!messages.empty() && decoded->instance_id != messages[0].instance_id)) {
        if (chunk.empty()) chunk.push_back(run[idx]);  // handled alone (and dropped) below
        break;
      }
      if (!chunk.empty() && total + decoded->records.size() > deps_.max_records_per_store_write) {
        break;
      }
      total += decoded->records.size();
      chunk.push_back(run[idx]);
      messages.push_back(std::move(*decoded));
    }
    size_t chunk_done = chunk.size() == 1 || messages.size() != chunk.size()
                            ? HandleEach(chunk)
                            : HandleChunk(chunk, std::move(messages));
    done += chunk_done;
    if (chunk_done < chunk.size()) break;
  }
  return done;
}

size_t WorkerPool::HandleChunk(const std::vector<const driver::Message*>& run,
                               std::vector<WriteMessage> messages) {
  size_t total = 0;
  for (const auto& message : messages) total += message.records.size();
  auto instance = deps_.catalog->GetInstance(messages[0].instance_id);
  if (!instance.ok()) return HandleEach(run);  // dropped or retried there, with its log line

  std::vector<driver::Record> records;
  records.reserve(total);
  for (auto& message : messages) {
    records.insert(records.end(), message.records.begin(), message.records.end());
  }
  EngineMetrics& metrics = *deps_.metrics;
  const auto count = static_cast<int64_t>(records.size());
  auto failed = [&](std::string_view store, const Status& status) {
    metrics.worker_errors.fetch_add(1, std::memory_order_relaxed);
    // A refused batch is retried message by message, to drop only the bad one.
    if (IsPermanent(status)) return HandleEach(run);
    AQ_LOG(Warn, "worker: writing {} messages to the {} failed (attempt {}), will retry: {}",
           run.size(), store, run.front()->delivery_attempt, status.ToString());
    return size_t{0};
  };
  if (instance->use_log || instance->use_index) {
    Status written = deps_.lookup->WriteRecords(*instance, records);
    if (!written.ok()) return failed("lookup service", written);
    if (instance->use_log) metrics.records_log.fetch_add(count, std::memory_order_relaxed);
    if (instance->use_index) metrics.records_index.fetch_add(count, std::memory_order_relaxed);
    uint8_t stores = static_cast<uint8_t>((instance->use_log ? kStoreLog : 0) |
                                          (instance->use_index ? kStoreIndex : 0));
    for (const auto& message : messages) PublishReport(message, stores, MessageBytes(message));
  }
  if (instance->use_warehouse) {
    Status written = deps_.warehouse->WriteToWarehouse(*instance, records);
    if (!written.ok()) return failed("warehouse", written);
    metrics.records_warehouse.fetch_add(count, std::memory_order_relaxed);
    for (const auto& message : messages) {
      PublishReport(message, kStoreWarehouse, MessageBytes(message));
    }
  }
  return run.size();
}

size_t WorkerPool::HandleEach(const std::vector<const driver::Message*>& run) {
  // In order; the first that must be retried stops the run there.
  for (size_t idx = 0; idx < run.size(); ++idx) {
    if (Handle(*run[idx]) == Outcome::kRetry) return idx;
  }
  return run.size();
}

WorkerPool::Outcome WorkerPool::Handle(const driver::Message& queued) {
  EngineMetrics& metrics = *deps_.metrics;
  auto decoded = DecodeWriteMessage(queued.data);
  if (!decoded.ok()) {
    metrics.messages_dropped.fetch_add(1, std::memory_order_relaxed);
    AQ_LOG(Error, "worker: dropping an undecodable message of {} bytes: {}", queued.data.size(),
           decoded.status().ToString());
    return Outcome::kAck;
  }
  const WriteMessage& message = *decoded;
  auto instance = deps_.catalog->GetInstance(message.instance_id);
  if (!instance.ok()) {
    if (instance.status().code() == StatusCode::kNotFound) {
      metrics.messages_dropped.fetch_add(1, std::memory_order_relaxed);
      AQ_LOG(Info, "worker: dropping {} records of write {}: instance {} was deleted",
             message.records.size(), HexEncode(message.write_id),
             message.instance_id.ToString());
      return Outcome::kAck;
    }
    metrics.worker_errors.fetch_add(1, std::memory_order_relaxed);
    AQ_LOG(Warn, "worker: looking up instance {} failed, will retry: {}",
           message.instance_id.ToString(), instance.status().ToString());
    return Outcome::kRetry;
  }
  const int64_t bytes = MessageBytes(message);
  const auto records = static_cast<int64_t>(message.records.size());

  // Returns the outcome for a failed store write, after logging it.
  auto failed = [&](std::string_view store, const Status& status) {
    metrics.worker_errors.fetch_add(1, std::memory_order_relaxed);
    if (IsPermanent(status)) {
      metrics.messages_dropped.fetch_add(1, std::memory_order_relaxed);
      AQ_LOG(Error, "worker: {} refused write {} ({} records of {}.{}); dropping it: {}", store,
             HexEncode(message.write_id), records, instance->project, instance->table,
             status.ToString());
      return Outcome::kAck;
    }
    AQ_LOG(Warn, "worker: writing write {} to the {} failed (attempt {}), will retry: {}",
           HexEncode(message.write_id), store, queued.delivery_attempt, status.ToString());
    return Outcome::kRetry;
  };

  if (instance->use_log || instance->use_index) {
    Status written = deps_.lookup->WriteRecords(*instance, message.records);
    if (!written.ok()) return failed("lookup service", written);
    if (instance->use_log) metrics.records_log.fetch_add(records, std::memory_order_relaxed);
    if (instance->use_index) metrics.records_index.fetch_add(records, std::memory_order_relaxed);
    uint8_t stores = static_cast<uint8_t>((instance->use_log ? kStoreLog : 0) |
                                          (instance->use_index ? kStoreIndex : 0));
    PublishReport(message, stores, bytes);
  }
  if (instance->use_warehouse) {
    Status written = deps_.warehouse->WriteToWarehouse(*instance, message.records);
    if (!written.ok()) return failed("warehouse", written);
    metrics.records_warehouse.fetch_add(records, std::memory_order_relaxed);
    PublishReport(message, kStoreWarehouse, bytes);
  }
  return Outcome::kAck;
}

void WorkerPool::PublishReport(const WriteMessage& message, uint8_t stores, int64_t bytes) {
  WriteReport report;
  report.write_id = message.write_id;
  report.instance_id = message.instance_id;
  report.part = message.part;
  report.parts = message.parts;
  report.stores = stores;
  report.records = static_cast<int64_t>(message.records.size());
  report.bytes = bytes;
  std::string data = EncodeWriteReport(report);
  driver::OutgoingMessage outgoing{data, {}};
  Status published = deps_.queue->Publish(kWriteReportsTopic, std::span(&outgoing, 1));
  if (!published.ok()) {
    // Reports are notifications: waiters time out, subscribers re-read on their fallback timer.
    deps_.metrics->worker_errors.fetch_add(1, std::memory_order_relaxed);
    AQ_LOG(Warn, "worker: publishing the report of write {} failed: {}",
           HexEncode(message.write_id), published.ToString());
  }
}

Status ReportListener::Start() {
  stopping_ = false;
  driver::SubscriptionOptions options;
  options.name = "reports";
  options.persistent = false;
  AQ_ASSIGN_OR_RETURN(subscription_, queue_->Subscribe(kWriteReportsTopic, options));
  thread_ = std::thread([this] { Run(); });
  return Status::OK();
}

void ReportListener::Stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (subscription_) {
    (void)subscription_->Close();
    subscription_.reset();
  }
}

void ReportListener::Run() {
  std::vector<std::string> ack_ids;
  std::vector<Uuid> instances;
  while (!stopping_) {
    auto pulled = subscription_->Pull(256, kPullTimeoutMs);
    if (!pulled.ok()) {
      AQ_LOG(Warn, "report listener: pull failed: {}", pulled.status().ToString());
      std::this_thread::sleep_for(std::chrono::milliseconds(kFirstBackoffMs));
      continue;
    }
    ack_ids.clear();
    instances.clear();
    for (const auto& message : *pulled) {
      ack_ids.push_back(message.ack_id);
      auto report = DecodeWriteReport(message.data);
      if (!report.ok()) {
        AQ_LOG(Warn, "report listener: ignoring a bad report: {}", report.status().ToString());
        continue;
      }
      metrics_->reports_received.fetch_add(1, std::memory_order_relaxed);
      waiters_->OnReport(*report);
      if ((report->stores & (kStoreLog | kStoreIndex)) != 0 &&
          std::find(instances.begin(), instances.end(), report->instance_id) == instances.end()) {
        instances.push_back(report->instance_id);
      }
    }
    // One notification per instance per batch of reports.
    for (const auto& instance : instances) hub_->Notify(instance);
    if (!ack_ids.empty()) (void)subscription_->Ack(ack_ids);
  }
}

}  // namespace aquifer::engine
