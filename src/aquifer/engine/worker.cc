#include "aquifer/engine/worker.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>

#include "aquifer/base/logging.h"
#include "aquifer/base/text.h"
#include "aquifer/base/thread.h"

namespace aquifer::engine {
namespace {

constexpr size_t kPullBatch = 256;
constexpr int64_t kPullTimeoutMs = 100;
constexpr int64_t kFirstBackoffMs = 50;
constexpr int64_t kMaxBackoffMs = 5'000;

constexpr std::string_view kLookupStore = "lookup service";
constexpr std::string_view kWarehouseStore = "warehouse";

// Damaged storage: Corruption, or an I/O error of a failed sync or a full
// disk (drivers map I/O errors to Unavailable or Internal and keep the
// backend's text: RocksDB "IO error", DuckDB "IO Error"). Retrying cannot
// help and acking would lose data: the write path fails closed until the
// store works again.
bool IsStorageFailure(const Status& status) {
  if (status.code() == StatusCode::kCorruption) return true;
  if (status.code() != StatusCode::kUnavailable && status.code() != StatusCode::kInternal) return false;
  const std::string& text = status.message();
  const bool io = text.find("IO error") != std::string::npos || text.find("IO Error") != std::string::npos ||
                  text.find("I/O error") != std::string::npos ||
                  text.find("IOError") != std::string::npos;
  // A failed fsync, a full disk, a failed append (RocksDB then stops writing
  // until resumed), or a database that could not resume.
  return io && (text.find("sync") != std::string::npos ||
                text.find("No space left") != std::string::npos ||
                text.find("While appending") != std::string::npos ||
                text.find("stopped writing") != std::string::npos);
}

// The store (or the network to it) is down or slow: an outage, not a fault of
// the message. However long it lasts, retrying is right and dead-lettering
// would only strand acknowledged writes.
bool IsOutage(const Status& status) {
  return status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kTimeout;
}

// Errors a retry of the same message cannot fix: the store refuses it.
bool IsRefusal(const Status& status) {
  return status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kTooLarge ||
         status.code() == StatusCode::kNotSupported;
}

int64_t BackoffMs(int32_t attempt) {
  int64_t backoff = kFirstBackoffMs;
  for (int32_t step = 1; step < attempt && backoff < kMaxBackoffMs; ++step) backoff *= 2;
  return std::min(backoff, kMaxBackoffMs);
}

// The report of a message's write (its stores set when written).
WriteReport ReportOf(const WriteMessage& message) {
  WriteReport report;
  report.write_id = message.write_id;
  report.instance_id = message.instance_id;
  report.part = message.part;
  report.parts = message.parts;
  report.records = static_cast<int64_t>(message.records.size());
  for (const auto& record : message.records) report.bytes += static_cast<int64_t>(record.avro.size());
  return report;
}

}  // namespace

Status WorkerPool::Start(int32_t threads) {
  stopping_ = false;
  for (bool lookup : {true, false}) {
    driver::SubscriptionOptions options;
    options.name = std::string(lookup ? kWorkersSubscription : kWarehouseWorkersSubscription);
    options.persistent = true;
    options.ack_timeout_ms = deps_.ack_timeout_ms;
    options.ordered = true;  // ordering key = instance id: one table's writes apply in order
    for (int32_t thread_idx = 0; thread_idx < std::max(threads, 1); ++thread_idx) {
      auto subscription = deps_.queue->Subscribe(kWritesTopic, options);
      if (!subscription.ok()) {
        Stop();
        return subscription.status().WithContext("starting the workers");
      }
      subscriptions_.push_back(std::move(*subscription));
      threads_.emplace_back([this, sub = subscriptions_.back().get(), lookup] { Run(sub, lookup); });
    }
  }
  return Status::OK();
}

void WorkerPool::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (deps_.waiters != nullptr && !threads_.empty()) deps_.waiters->WakeWarehouseWait();  // a paced consumer (Run)
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  for (auto& subscription : subscriptions_) (void)subscription->Close();
  subscriptions_.clear();
}

void WorkerPool::Backoff(int64_t ms) {
  std::unique_lock lock(mu_);
  stop_cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stopping_.load(); });
}

void WorkerPool::Run(driver::Subscription* subscription, bool lookup) {
  int32_t pull_failures = 0;
  // Pacing (warehouse consumers in a process that runs the gateway too: one
  // machine, one disk): the warehouse's consumers pull in turn, and after a
  // pull that was not full the next pull (by any of them) waits until
  // warehouse_write_interval_ms after it, so trickling writes reach DuckDB in
  // a few larger commits instead of one per message. Each commit is a CPU
  // burst and a synced WAL write, and the queue's and the lookup service's
  // fsyncs, both on a subscriber's path, queued behind them (README
  // "Benchmarks"). A full pull (a backlog) is followed by the next at once,
  // and a `wait=warehouse` writer ends the wait (WriteWaiters).
  const bool pace = !lookup && deps_.waiters != nullptr && deps_.warehouse_write_interval_ms > 0;
  NameThisThread(lookup ? "aq-lookup-wk" : "aq-warehouse-wk");
  while (!stopping_) {
    std::unique_lock<std::mutex> turn;
    if (pace) {
      turn = std::unique_lock(warehouse_turn_);
      if (warehouse_next_pull_) {
        deps_.waiters->AwaitWarehouseWaiter(*warehouse_next_pull_, [this] { return stopping_.load(); });
        warehouse_next_pull_.reset();
      }
      if (stopping_) break;
    }
    auto pulled = subscription->Pull(kPullBatch, kPullTimeoutMs);
    if (pace) {
      if (pulled.ok() && !pulled->empty() && pulled->size() < kPullBatch) {
        warehouse_next_pull_ = std::chrono::steady_clock::now() +
                               std::chrono::milliseconds(deps_.warehouse_write_interval_ms);
      }
      turn.unlock();
    }
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
      RunResult result = HandleRun(run, lookup);
      const size_t done = result.done;
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
        deps_.metrics->NoteProcessed(lookup, static_cast<int64_t>(ack_ids.size()));
      }
      if (!nack_ids.empty()) {
        // The failed message and every later one of its instance go back, in order.
        Backoff(result.slow ? deps_.storage_retry_ms : BackoffMs(run[done]->delivery_attempt));
        (void)subscription->Nack(nack_ids);
      }
    }
  }
}

WorkerPool::RunResult WorkerPool::HandleRun(const std::vector<const driver::Message*>& run, bool lookup) {
  // Chunks of consecutive messages within the stores' batch limit.
  RunResult result;
  while (result.done < run.size()) {
    std::vector<const driver::Message*> chunk;
    std::vector<WriteMessage> messages;
    size_t total = 0;
    for (size_t idx = result.done; idx < run.size(); ++idx) {
      auto decoded = DecodeWriteMessage(run[idx]->data);
      if (!decoded.ok() || (!messages.empty() && decoded->instance_id != messages[0].instance_id)) {
        if (chunk.empty()) chunk.push_back(run[idx]);  // handled alone (dead-lettered) below
        break;
      }
      if (!chunk.empty() && total + decoded->records.size() > deps_.max_records_per_store_write) {
        break;
      }
      total += decoded->records.size();
      chunk.push_back(run[idx]);
      messages.push_back(std::move(*decoded));
    }
    // A chunk of one message goes alone, with the message decoded above (not twice).
    RunResult chunk_result = messages.size() != chunk.size() ? HandleEach(chunk, lookup)
                             : chunk.size() == 1             ? HandleEach(chunk, lookup, messages)
                                                             : HandleChunk(chunk, lookup, std::move(messages));
    result.done += chunk_result.done;
    if (chunk_result.done < chunk.size()) {
      result.slow = chunk_result.slow;
      break;
    }
  }
  return result;
}

WorkerPool::RunResult WorkerPool::HandleChunk(const std::vector<const driver::Message*>& run, bool lookup,
                                              std::vector<WriteMessage> messages) {
  size_t total = 0;
  for (const auto& message : messages) total += message.records.size();
  auto instance = deps_.catalog->GetInstance(messages[0].instance_id);
  if (!instance.ok()) return HandleEach(run, lookup);  // dropped or retried there, with its log line

  std::vector<driver::Record> records;
  std::vector<driver::RecordGroup> groups;
  std::vector<WriteReport> reports;
  records.reserve(total);
  groups.reserve(messages.size());
  reports.reserve(messages.size());
  for (auto& message : messages) {
    groups.push_back({WriteMessageId(message), message.records.size()});
    reports.push_back(ReportOf(message));
    // Moved, not copied: the decoded messages are this chunk's own.
    records.insert(records.end(), std::make_move_iterator(message.records.begin()),
                   std::make_move_iterator(message.records.end()));
  }
  Applied applied = Apply(lookup, *instance, records, groups, std::move(reports));
  switch (applied.failure) {
    case Failure::kNone:
      return {run.size(), false};
    case Failure::kStorage:
      return {0, true};  // logged and reported by Apply; nothing is acked
    case Failure::kOutage:
      LogOutage(run.size(), *instance, applied, run.front()->delivery_attempt);
      return {0, false};
    case Failure::kTransient: {
      bool exhausted = std::any_of(run.begin(), run.end(), [&](const driver::Message* message) {
        return message->delivery_attempt >= deps_.max_delivery_attempts;
      });
      if (!exhausted) {
        AQ_LOG(Warn, "worker: writing {} messages of {}.{} to the {} failed (attempt {}), will retry: {}",
               run.size(), instance->project, instance->table, applied.store,
               run.front()->delivery_attempt, applied.status.ToString());
        return {0, false};
      }
      [[fallthrough]];  // message by message: the exhausted ones are dead-lettered
    }
    case Failure::kRefused:       // message by message, to dead-letter only the bad one
    case Failure::kInstanceGone:  // dropped there, with its log line
      return HandleEach(run, lookup);
  }
  return {0, false};
}

WorkerPool::RunResult WorkerPool::HandleEach(const std::vector<const driver::Message*>& run, bool lookup,
                                             std::span<const WriteMessage> decoded) {
  // In order; the first that must be retried stops the run there.
  for (size_t idx = 0; idx < run.size(); ++idx) {
    Outcome outcome = Handle(*run[idx], lookup, idx < decoded.size() ? &decoded[idx] : nullptr);
    if (outcome != Outcome::kAck) return {idx, outcome == Outcome::kRetrySlowly};
  }
  return {run.size(), false};
}

WorkerPool::Outcome WorkerPool::Handle(const driver::Message& queued, bool lookup, const WriteMessage* decoded) {
  EngineMetrics& metrics = *deps_.metrics;
  std::optional<WriteMessage> decoded_here;
  if (decoded == nullptr) {
    auto result = DecodeWriteMessage(queued.data);
    if (!result.ok()) {
      // Kept for an operator once: by the lookup service's consumers.
      if (!lookup) return Outcome::kAck;
      return DeadLetter(queued, "worker", result.status(), "an undecodable message")
                 ? Outcome::kAck
                 : Outcome::kRetry;
    }
    decoded_here = std::move(*result);
    decoded = &*decoded_here;
  }
  const WriteMessage& message = *decoded;
  auto instance = deps_.catalog->GetInstance(message.instance_id);
  if (!instance.ok()) {
    if (instance.status().code() == StatusCode::kNotFound) {
      if (!lookup) return Outcome::kAck;  // counted and logged once, by the lookup's consumers
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
  const driver::RecordGroup group{WriteMessageId(message), message.records.size()};
  Applied applied = Apply(lookup, *instance, message.records, std::span(&group, 1), {ReportOf(message)});
  const std::string what = fmt::format("write {} part {} ({} records of {}.{})",
                                       HexEncode(message.write_id), message.part,
                                       message.records.size(), instance->project, instance->table);
  switch (applied.failure) {
    case Failure::kNone:
      return Outcome::kAck;
    case Failure::kInstanceGone:
      if (lookup) {  // counted and logged once, by the lookup's consumers
        metrics.messages_dropped.fetch_add(1, std::memory_order_relaxed);
        AQ_LOG(Info, "worker: dropping {}: the table was deleted", what);
      }
      return Outcome::kAck;
    case Failure::kStorage:
      return Outcome::kRetrySlowly;
    case Failure::kOutage:
      LogOutage(1, *instance, applied, queued.delivery_attempt);
      return Outcome::kRetry;
    case Failure::kRefused:
      return DeadLetter(queued, applied.store, applied.status, what) ? Outcome::kAck
                                                                     : Outcome::kRetry;
    case Failure::kTransient:
      if (queued.delivery_attempt >= deps_.max_delivery_attempts) {
        return DeadLetter(queued, applied.store, applied.status, what) ? Outcome::kAck
                                                                       : Outcome::kRetry;
      }
      AQ_LOG(Warn, "worker: writing {} to the {} failed (attempt {} of {}), will retry: {}", what,
             applied.store, queued.delivery_attempt, deps_.max_delivery_attempts,
             applied.status.ToString());
      return Outcome::kRetry;
  }
  return Outcome::kRetry;
}

void WorkerPool::LogOutage(size_t messages, const driver::InstanceInfo& instance, const Applied& applied,
                           int32_t attempt) {
  deps_.metrics->store_outage_retries.fetch_add(1, std::memory_order_relaxed);
  // Once at the first few attempts, then every tenth: an outage can last long.
  if (attempt > 3 && attempt % 10 != 0) return;
  AQ_LOG(Warn, "worker: the {} is unavailable writing {} messages of {}.{} (attempt {}); retrying "
               "until it is back, never dead-lettering for an outage: {}",
         applied.store, messages, instance.project, instance.table, attempt, applied.status.ToString());
}

WorkerPool::Applied WorkerPool::Apply(bool lookup, const driver::InstanceInfo& instance,
                                      std::span<const driver::Record> records,
                                      std::span<const driver::RecordGroup> groups,
                                      std::vector<WriteReport> reports) {
  // Each store has its own consumers (and position in the queue): this
  // thread writes only its store, and an instance without it has nothing
  // to write here.
  const bool uses_store = lookup ? (instance.use_log || instance.use_index) : instance.use_warehouse;
  if (!uses_store) return {};
  Applied applied = WriteAndReport(lookup, instance, records, groups, std::move(reports));
  if (applied.failure == Failure::kInstanceGone) {
    // The table was deleted meanwhile; the other store's write may have
    // landed after the deletion removed its data.
    RemoveDeleted(instance);
  }
  if (applied.failure != Failure::kNone) return applied;
  // DeleteTable commits the catalog first, then removes the stores' data. A
  // write that resolved the instance before the commit may land after the
  // removal; seeing the deletion now, this worker removes what it wrote.
  auto still = deps_.catalog->GetInstance(instance.instance_id);
  if (!still.ok() && still.status().code() == StatusCode::kNotFound) RemoveDeleted(instance);
  return {};
}

WorkerPool::Applied WorkerPool::WriteAndReport(bool lookup, const driver::InstanceInfo& instance,
                                               std::span<const driver::Record> records,
                                               std::span<const driver::RecordGroup> groups,
                                               std::vector<WriteReport> reports) {
  EngineMetrics& metrics = *deps_.metrics;
  const auto count = static_cast<int64_t>(records.size());
  Applied applied = WriteStore(lookup, instance, records, groups);
  if (applied.failure != Failure::kNone) return applied;
  uint8_t stores = kStoreWarehouse;
  if (lookup) {
    if (instance.use_log) metrics.records_log.fetch_add(count, std::memory_order_relaxed);
    if (instance.use_index) metrics.records_index.fetch_add(count, std::memory_order_relaxed);
    stores = static_cast<uint8_t>((instance.use_log ? kStoreLog : 0) |
                                  (instance.use_index ? kStoreIndex : 0));
  } else {
    metrics.records_warehouse.fetch_add(count, std::memory_order_relaxed);
  }
  PublishReports(std::move(reports), stores);
  return {};
}

WorkerPool::Applied WorkerPool::WriteStore(bool lookup, const driver::InstanceInfo& instance,
                                           std::span<const driver::Record> records,
                                           std::span<const driver::RecordGroup> groups) {
  const std::string_view store = lookup ? kLookupStore : kWarehouseStore;
  auto write = [&] {
    return lookup ? deps_.lookup->WriteRecords(instance, records, groups)
                  : deps_.warehouse->WriteToWarehouse(instance, records, groups);
  };
  Status written = write();
  if (written.code() == StatusCode::kNotFound || written.code() == StatusCode::kFailedPrecondition) {
    // Storage of the instance is missing or stale. Register it again, unless
    // the table was deleted (then the removal must not be undone).
    auto current = deps_.catalog->GetInstance(instance.instance_id);
    if (!current.ok() && current.status().code() == StatusCode::kNotFound) {
      return {Failure::kInstanceGone, store, written};
    }
    if (current.ok()) {
      Status registered = lookup ? deps_.lookup->RegisterInstance(*current)
                                 : deps_.warehouse->RegisterInstance(*current);
      if (registered.ok()) {
        deps_.metrics->instances_reregistered.fetch_add(1, std::memory_order_relaxed);
        AQ_LOG(Warn, "worker: the {} did not know instance {} ({}.{}): {}; registered it again",
               store, instance.instance_id.ToString(), instance.project, instance.table,
               written.ToString());
        written = write();
      } else {
        written = registered.WithContext(
            fmt::format("registering instance {} again after: {}", instance.instance_id.ToString(),
                        written.ToString()));
      }
    }
  }
  if (written.ok()) {
    if (deps_.health != nullptr) deps_.health->Clear(store);
    return {};
  }
  deps_.metrics->worker_errors.fetch_add(1, std::memory_order_relaxed);
  if (IsStorageFailure(written)) {
    deps_.metrics->store_failures.fetch_add(1, std::memory_order_relaxed);
    if (deps_.health != nullptr) deps_.health->Fail(store, written);
    AQ_LOG(Error, "worker: the {} reports damaged storage writing to {}.{}; the write path is "
                  "failed closed (writes answer 503), nothing is acked, retrying slowly: {}",
           store, instance.project, instance.table, written.ToString());
    return {Failure::kStorage, store, written};
  }
  if (IsRefusal(written)) return {Failure::kRefused, store, written};
  return {IsOutage(written) ? Failure::kOutage : Failure::kTransient, store, written};
}

void WorkerPool::RemoveDeleted(const driver::InstanceInfo& instance) {
  Status removed = deps_.lookup->RemoveInstance(instance);
  if (removed.ok()) removed = deps_.warehouse->RemoveInstance(instance);
  if (removed.ok()) {
    AQ_LOG(Info, "worker: table {}.{} was deleted while instance {} was being written; removed "
                 "what was written",
           instance.project, instance.table, instance.instance_id.ToString());
    return;
  }
  deps_.metrics->removal_failures.fetch_add(1, std::memory_order_relaxed);
  Status recorded = deps_.catalog->AddPendingRemoval(instance);
  AQ_LOG(Error, "worker: removing instance {} of deleted table {}.{} failed ({}); {}",
         instance.instance_id.ToString(), instance.project, instance.table, removed.ToString(),
         recorded.ok() ? "recorded as a pending removal, retried in the background"
                       : "recording the pending removal failed too: " + recorded.ToString());
}

bool WorkerPool::DeadLetter(const driver::Message& queued, std::string_view store,
                            const Status& reason, std::string_view what) {
  engine::DeadLetter letter;
  letter.store = std::string(store);
  letter.reason = reason.ToString();
  letter.dead_ms = deps_.clock->NowMillis();
  letter.attempts = queued.delivery_attempt;
  letter.ordering_key = queued.ordering_key;
  letter.data = queued.data;
  const std::string data = EncodeDeadLetter(letter);
  driver::OutgoingMessage outgoing{data, {}};
  Status published = deps_.queue->Publish(kDeadLettersTopic, std::span(&outgoing, 1));
  if (!published.ok()) {
    deps_.metrics->worker_errors.fetch_add(1, std::memory_order_relaxed);
    AQ_LOG(Error, "worker: dead-lettering {} failed, keeping it queued: {}", what,
           published.ToString());
    return false;
  }
  deps_.metrics->messages_dead_lettered.fetch_add(1, std::memory_order_relaxed);
  AQ_LOG(Error, "worker: dead-lettered {} to '{}' after {} attempts: the {} refused it: {}", what,
         kDeadLettersTopic, queued.delivery_attempt, store, reason.ToString());
  return true;
}

void WorkerPool::PublishReports(std::vector<WriteReport> reports, uint8_t stores) {
  for (WriteReport& report : reports) report.stores = stores;
  // This process's own waiters and subscribers first, directly: no queue
  // round trip (a synced publish, then the listener's pull) between a store
  // write and a `wait=` answer or a subscriber's read. The listener sees the
  // same reports again from the queue; both consumers are idempotent.
  if (deps_.hub != nullptr && (stores & (kStoreLog | kStoreIndex)) != 0) {
    deps_.hub->Advance();  // before a waiter learns of the write (shared change pages, engine.cc)
  }
  if (deps_.waiters != nullptr) {
    for (const WriteReport& report : reports) deps_.waiters->OnReport(report);
  }
  if (deps_.hub != nullptr && (stores & (kStoreLog | kStoreIndex)) != 0 && !reports.empty()) {
    deps_.hub->Notify(reports.front().instance_id);  // a chunk is of one instance
  }
  // Then for every other process, all of the chunk's reports in one publish
  // (one sync), unless no other process can read this queue.
  if (deps_.waiters != nullptr && deps_.hub != nullptr &&
      !deps_.queue->capabilities().shared_between_processes) {
    return;
  }
  std::vector<std::string> data;
  data.reserve(reports.size());
  for (const WriteReport& report : reports) data.push_back(EncodeWriteReport(report));
  std::vector<driver::OutgoingMessage> outgoing;
  outgoing.reserve(data.size());
  for (const std::string& encoded : data) outgoing.push_back({encoded, {}});
  Status published = deps_.queue->Publish(kWriteReportsTopic, outgoing);
  if (!published.ok()) {
    // Reports are notifications: waiters time out, subscribers re-read on their fallback timer.
    deps_.metrics->worker_errors.fetch_add(1, std::memory_order_relaxed);
    AQ_LOG(Warn, "worker: publishing the reports of {} writes (first {}) failed: {}",
           reports.size(), reports.empty() ? std::string() : HexEncode(reports.front().write_id),
           published.ToString());
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
      if ((report->stores & (kStoreLog | kStoreIndex)) != 0) hub_->Advance();  // before its waiter hears
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
