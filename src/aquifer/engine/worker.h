#pragma once

// Background work of the engine: the workers that apply queued writes to the
// stores, and the report listener that wakes `wait=` writers and subscribers.
//
// Workers (role all|worker): each store has its own consumers and its own
// position in topic "writes", as each sink of a Kafka topic has its own
// consumer group: `threads` threads on the ordered persistent subscription
// "workers" write the lookup service, and `threads` more on
// "workers-warehouse" write the warehouse (each thread with its own handle:
// competing consumers; the ordering key is the instance id, so one
// instance's writes are never applied to a store concurrently or out of
// order). So the slower store (usually the warehouse) never holds back the
// other: a `wait=index` writer and a subscriber wait for the lookup write
// only, and each store batches what queued up while it was busy. A pull's
// messages of one instance are applied together: one store write for the
// run (what makes ingest fast: one fsync for many requests), falling back
// to message by message when the store refuses the batch. Per chunk or
// message: decode; look the instance up in the catalog; then
// LookupService::WriteRecords (when the instance keeps a log or an index)
// and reports {stores: log|index}, or WarehouseService::WriteToWarehouse
// (when it keeps a warehouse) and reports {stores: warehouse}; then ack (a
// thread whose store the instance does not keep acks at once). A message
// leaves the queue once both subscriptions acked it; a new subscription
// starts at the oldest retained message, so a queue from before the split
// hands its backlog to the new warehouse consumers too (the warehouse
// skips what it applied within `applied_window_ms`). A chunk's reports of one store go
// to this process's WriteWaiters and SubscriptionHub directly (role all: no
// queue round trip before a `wait=` answer or a subscriber's read) and to
// "write-reports" in one publish (other processes' gateways).
//
// Role all (the gateway in the same process, one machine and one disk): the
// warehouse's consumers pull in turn and, while writes trickle in, pull at
// most once per `warehouse_write_interval_ms` (engine option, 200 ms), so
// DuckDB commits a few larger runs instead of one per message: its commits
// (a CPU burst and a synced WAL write each) were what the queue's and the
// lookup service's fsyncs on a subscriber's path waited behind. A full pull
// (a backlog) is followed by the next at once, and a registered
// `wait=warehouse` writer ends the wait (WriteWaiters::AwaitWarehouseWaiter).
//
// Exactly once per store: every store write carries the messages' ids
// (WriteMessageId: write id ‖ part) as driver::RecordGroups, and a store
// skips a message it already applied, atomically with its data. So a
// message redelivered to a store's consumers (after a crash, a timeout, a
// replayed dead letter, or a chunk grouped differently) is written once.
//
// Failures, by what retrying can do about them:
//  - Corruption, or an I/O error of a failed sync, from a store: storage is
//    damaged. The write path fails closed: WriteHealth::Fail(store) (writes
//    answer 503, /healthz unhealthy), nothing is acked or dropped, the
//    messages are retried slowly (5 s) and the health clears once a write
//    to that store succeeds again.
//  - NotFound or FailedPrecondition from a store: the instance's storage is
//    missing or stale (e.g. the process died between the catalog commit and
//    RegisterInstance). If the catalog still has the instance, it is
//    registered with that store once and the write retried; otherwise the
//    table was deleted and the message is dropped.
//  - InvalidArgument, TooLarge or NotSupported (the store refuses the
//    message; the gateway validated it, so it is a bug or damage), a
//    message that cannot be decoded, and any other error but an outage still failing at
//    delivery attempt `max_delivery_attempts` (default 10, with backoff 50 ms
//    doubling to 5 s): the message is dead-lettered — published to
//    "writes-dead" (DeadLetter: the message, the store, the reason, the
//    attempts) and then acked, with an Error log line and the counter
//    aquifer_messages_dead_lettered_total. Operators list and replay dead
//    letters (Engine::DeadLettersJson / ReplayDeadLetters). A dead letter
//    does not hold back the table's later messages: its table keeps
//    ingesting, and a replayed message lands after them (the index still
//    keeps the highest timestamp per key; the log has it at a later offset).
//  - Unavailable or Timeout from a store (it, or the network to it, is down):
//    an outage, not a fault of the message. Nacked with backoff (50 ms
//    doubling to 5 s) however many attempts it takes, never dead-lettered:
//    an outage of any length must not strand acknowledged writes. Counted
//    in aquifer_store_outage_retries_total.
//  - Other errors (Internal, Unknown, ...) below the attempt limit: nack
//    with backoff; the message and every later one of its instance come back
//    in order.
//  - The instance is gone from the catalog: the table was deleted, so the
//    message is dropped (logged, counted). After a successful write the
//    worker checks the catalog again: if the table was deleted meanwhile
//    (DeleteTable may have removed the stores' data before this write
//    landed), it removes the instance from the stores itself, or records a
//    pending removal that the engine retries.
//
// Report listener (role all|gateway): one thread on an ephemeral
// subscription of "write-reports"; each report completes waiters
// (WriteWaiters) and notifies the hub, which only sets flags (never blocks).
// Notifications are at-most-once: caught-up subscribers also re-read on a
// long fallback timer.
//
// Both are started by EngineImpl::Start and stopped (joined) by Stop; Stop
// leaves unacked messages for redelivery.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "aquifer/base/clock.h"
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
  // "writes" messages acked by this process's workers: by the lookup
  // service's and the warehouse's consumers (by both: MessagesProcessed).
  std::atomic<int64_t> messages_processed_lookup{0};
  std::atomic<int64_t> messages_processed_warehouse{0};
  std::atomic<int64_t> records_log{0};         // records written by workers, per store
  std::atomic<int64_t> records_index{0};
  std::atomic<int64_t> records_warehouse{0};
  std::atomic<int64_t> worker_errors{0};       // store/queue errors seen by workers
  std::atomic<int64_t> messages_dropped{0};    // instance gone (table deleted)
  std::atomic<int64_t> messages_dead_lettered{0};  // published to "writes-dead" and acked
  std::atomic<int64_t> store_failures{0};      // Corruption / failed syncs (write path failed closed)
  std::atomic<int64_t> store_outage_retries{0};  // store writes retried for Unavailable/Timeout
  std::atomic<int64_t> instances_reregistered{0};  // instances registered again by a worker
  std::atomic<int64_t> removal_failures{0};    // RemoveInstance calls that failed (retried later)
  std::atomic<int64_t> removals_pending{0};    // pending removals at the last retry
  std::atomic<int64_t> reports_received{0};
  std::atomic<int64_t> wait_timeouts{0};
  std::atomic<int64_t> reads{0};
  std::atomic<int64_t> records_read{0};
  std::atomic<int64_t> sql_jobs{0};

  void NoteProcessed(bool lookup, int64_t messages) {
    (lookup ? messages_processed_lookup : messages_processed_warehouse)
        .fetch_add(messages, std::memory_order_relaxed);
  }
  // Messages acked by both stores' consumers.
  int64_t MessagesProcessed() const {
    return std::min(messages_processed_lookup.load(), messages_processed_warehouse.load());
  }
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
  // A message still failing at this delivery attempt is dead-lettered.
  int32_t max_delivery_attempts = 10;
  Clock* clock = Clock::System();
  // How long a worker waits before retrying after damaged storage.
  int64_t storage_retry_ms = 5'000;
  // The queue redelivers a message this long after a worker claimed it
  // without acking (the worker died or hung): another worker takes it over.
  int64_t ack_timeout_ms = 30'000;
  // This process's waiters and subscribers (role all), told of reports
  // directly; null when no gateway runs here (the queue carries them).
  WriteWaiters* waiters = nullptr;
  SubscriptionHub* hub = nullptr;
  // With `waiters` (the gateway in this process): after a pull that was not
  // full, a warehouse consumer pulls again only this long after it, unless a
  // writer waits for the warehouse (worker.cc Run). 0: at once.
  int64_t warehouse_write_interval_ms = 0;
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
  // What became of the leading messages of a run: `done` are finished (to
  // ack), the rest go back for redelivery; `slow` asks for the longest backoff.
  struct RunResult {
    size_t done = 0;
    bool slow = false;
  };
  enum class Outcome : uint8_t { kAck, kRetry, kRetrySlowly };
  // Why a store write failed, or kNone.
  enum class Failure : uint8_t { kNone, kInstanceGone, kStorage, kRefused, kOutage, kTransient };
  struct Applied {
    Failure failure = Failure::kNone;
    std::string_view store;  // the store that failed
    Status status;
  };

  // `lookup`: this thread's store, the lookup service (subscription
  // "workers") or the warehouse ("workers-warehouse").
  void Run(driver::Subscription* subscription, bool lookup);
  // `decoded`: the message already decoded (HandleRun decodes every message
  // to chunk them), else it is decoded here.
  Outcome Handle(const driver::Message& message, bool lookup, const WriteMessage* decoded = nullptr);
  void LogOutage(size_t messages, const driver::InstanceInfo& instance, const Applied& applied,
                 int32_t attempt);
  // A pull's messages of one instance, in publish order, with one write per
  // store. Returns how many leading messages are done (to ack); the rest are
  // handed back for redelivery, in order.
  RunResult HandleRun(const std::vector<const driver::Message*>& run, bool lookup);
  // `decoded`: empty, or run[i] decoded as decoded[i].
  RunResult HandleEach(const std::vector<const driver::Message*>& run, bool lookup,
                       std::span<const WriteMessage> decoded = {});
  // Decoded messages of one instance within the batch limit: one store write.
  RunResult HandleChunk(const std::vector<const driver::Message*>& run, bool lookup,
                        std::vector<WriteMessage> messages);
  // Writes `records` (grouped by message) to the instance's lookup service
  // or warehouse, if it keeps one, exactly once per message, publishing
  // reports; then checks that the instance was not deleted meanwhile.
  Applied Apply(bool lookup, const driver::InstanceInfo& instance, std::span<const driver::Record> records,
                std::span<const driver::RecordGroup> groups, std::vector<WriteReport> reports);
  // One store's write, registering the instance again once on NotFound or
  // FailedPrecondition when the catalog still has it.
  Applied WriteStore(bool lookup, const driver::InstanceInfo& instance,
                     std::span<const driver::Record> records,
                     std::span<const driver::RecordGroup> groups);
  // Removes a deleted instance from the stores, or records a pending removal.
  void RemoveDeleted(const driver::InstanceInfo& instance);
  // Publishes the message to "writes-dead" with why. False if that failed
  // (then the message must not be acked).
  bool DeadLetter(const driver::Message& queued, std::string_view store, const Status& reason,
                  std::string_view what);
  // One store's write (WriteStore), then its metrics and the messages' reports.
  Applied WriteAndReport(bool lookup, const driver::InstanceInfo& instance,
                         std::span<const driver::Record> records,
                         std::span<const driver::RecordGroup> groups,
                         std::vector<WriteReport> reports);
  // Reports that `stores` have the reported messages (all of one instance):
  // to this process's waiters and hub directly, and in one publish on
  // "write-reports".
  void PublishReports(std::vector<WriteReport> reports, uint8_t stores);
  // Sleeps up to `ms`, returning early when stopping.
  void Backoff(int64_t ms);

  WorkerDeps deps_;
  std::atomic<bool> stopping_{false};
  // Paced warehouse consumers (Run) pull in turn; the earliest next pull.
  std::mutex warehouse_turn_;
  std::optional<std::chrono::steady_clock::time_point> warehouse_next_pull_;  // guarded by warehouse_turn_
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
