#pragma once

// Background work of the engine: the workers that apply queued writes to the
// stores, and the report listener that wakes `wait=` writers and subscribers.
//
// Workers (role all|worker): `threads` threads, each with its own handle on
// the ordered persistent subscription "workers" of topic "writes" (competing
// consumers; the ordering key is the instance id, so one instance's writes
// are never applied concurrently or out of order). A pull's messages of one
// instance are applied together: one lookup write and one warehouse write for
// the run (what makes ingest fast: one fsync for many requests), falling back
// to message by message when a store refuses the batch. Per message: decode; look the instance up in the catalog;
// LookupService::WriteRecords (when the instance keeps a log or an index),
// then a WriteReport {stores: log|index} on "write-reports";
// WarehouseService::WriteToWarehouse (when it keeps a warehouse), then a
// report {stores: warehouse}; then ack. A store error that may pass
// (Unavailable, Timeout, ...) waits with exponential backoff (per delivery
// attempt, 50 ms doubling to 5 s) and nacks, so the message is redelivered;
// a message that cannot be decoded, whose instance no longer exists, or that
// a store refuses as invalid is logged, counted and acked — never a crash
// loop (REFERENCE.md §9.11). Redelivery can log a batch twice (at-least-once);
// the index is unaffected (highest timestamp wins).
//
// Report listener (role all|gateway): one thread on an ephemeral
// subscription of "write-reports"; each report completes waiters
// (WriteWaiters) and notifies the hub, which only sets flags (never blocks).
// Notifications are at-most-once: caught-up subscribers also re-read on a
// long fallback timer.
//
// Both are started by EngineImpl::Start and stopped (joined) by Stop; Stop
// leaves unacked messages for redelivery.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/message_queue.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/engine/catalog.h"
#include "aquifer/engine/health.h"
#include "aquifer/engine/subscriptions.h"
#include "aquifer/engine/wire.h"
#include "aquifer/engine/write_pipeline.h"

namespace aquifer::engine {

// The engine's counters, exported by MetricsText. Relaxed atomics: each is
// exact on its own, not consistent with the others at one instant.
struct EngineMetrics {
  std::atomic<int64_t> writes{0};              // accepted write requests
  std::atomic<int64_t> writes_rejected{0};     // refused write requests (any reason)
  std::atomic<int64_t> records_accepted{0};    // records in accepted writes
  std::atomic<int64_t> messages_published{0};  // "writes" messages published by this process
  std::atomic<int64_t> messages_processed{0};  // "writes" messages acked by this process's workers
  std::atomic<int64_t> records_log{0};         // records written by workers, per store
  std::atomic<int64_t> records_index{0};
  std::atomic<int64_t> records_warehouse{0};
  std::atomic<int64_t> worker_errors{0};       // store/queue errors seen by workers
  std::atomic<int64_t> messages_dropped{0};    // undecodable, instance gone, or refused by a store
  std::atomic<int64_t> reports_received{0};
  std::atomic<int64_t> wait_timeouts{0};
  std::atomic<int64_t> reads{0};
  std::atomic<int64_t> records_read{0};
  std::atomic<int64_t> sql_jobs{0};
};

struct WorkerDeps {
  driver::MessageQueue* queue = nullptr;
  Catalog* catalog = nullptr;
  driver::LookupService* lookup = nullptr;
  driver::WarehouseService* warehouse = nullptr;
  EngineMetrics* metrics = nullptr;
  // A run of queued writes is applied with one store write when it holds at
  // most this many records (the smaller of the lookup and warehouse limits).
  size_t max_records_per_store_write = 10'000;
  // Where a worker reports a failure that stops the write path (never null when started by the engine).
  WriteHealth* health = nullptr;
};

class WorkerPool {
 public:
  explicit WorkerPool(WorkerDeps deps) : deps_(deps) {}
  ~WorkerPool() { Stop(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Opens one subscription per thread (so a failure is reported here) and
  // starts the threads.
  Status Start(int32_t threads);
  // Signals the threads, waits for the message each is handling, joins. Idempotent.
  void Stop();

 private:
  enum class Outcome : uint8_t { kAck, kRetry };
  void Run(driver::Subscription* subscription);
  Outcome Handle(const driver::Message& message);
  // A pull's messages of one instance, in publish order, with one write per
  // store. Returns how many leading messages are done (to ack); the rest are
  // handed back for redelivery, in order.
  size_t HandleRun(const std::vector<const driver::Message*>& run);
  size_t HandleEach(const std::vector<const driver::Message*>& run);
  // Decoded messages of one instance within the batch limit: one write per store.
  size_t HandleChunk(const std::vector<const driver::Message*>& run,
                     std::vector<WriteMessage> messages);
  void PublishReport(const WriteMessage& message, uint8_t stores, int64_t bytes);
  // Sleeps up to `ms`, returning early when stopping.
  void Backoff(int64_t ms);

  WorkerDeps deps_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable stop_cv_;
  std::vector<std::unique_ptr<driver::Subscription>> subscriptions_;
  std::vector<std::thread> threads_;
};

class ReportListener {
 public:
  ReportListener(driver::MessageQueue* queue, WriteWaiters* waiters, SubscriptionHub* hub,
                 EngineMetrics* metrics)
      : queue_(queue), waiters_(waiters), hub_(hub), metrics_(metrics) {}
  ~ReportListener() { Stop(); }
  ReportListener(const ReportListener&) = delete;
  ReportListener& operator=(const ReportListener&) = delete;

  // Opens the ephemeral subscription (reports published from now on are
  // seen) and starts the thread.
  Status Start();
  void Stop();

 private:
  void Run();

  driver::MessageQueue* queue_;
  WriteWaiters* waiters_;
  SubscriptionHub* hub_;
  EngineMetrics* metrics_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<driver::Subscription> subscription_;
  std::thread thread_;
};

}  // namespace aquifer::engine
