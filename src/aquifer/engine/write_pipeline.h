#pragma once

// The gateway half of the write path, independent of the queue and catalog:
// split a request body into records, validate and encode them, cut the batch
// into queue messages, and let `wait=` requests wait for the workers' reports.
//
//   body ──SplitRecords──▶ record texts ──PrepareRecords──▶ driver::Records
//        ──SplitIntoMessages──▶ WriteMessages (wire.h) ──▶ topic "writes"
//
// EngineImpl::Write (engine.cc) strings these together with authorization,
// quotas, idempotency and publishing. Everything here is thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"
#include "aquifer/engine/engine.h"
#include "aquifer/engine/wire.h"
#include "aquifer/schema/schema.h"

namespace aquifer::engine {

// Timestamps a record may carry: year 1 to year 9999 (ms since the epoch).
inline constexpr int64_t kMinTimestampMs = -62'135'596'800'000;
inline constexpr int64_t kMaxTimestampMs = 253'402'300'799'999;

// Splits a body into the texts of its records: either one JSON array of
// values, or a sequence of values separated by whitespace (NDJSON, and also
// concatenated or pretty-printed objects). Values are not checked here beyond
// their nesting; an unbalanced body is InvalidArgument with the byte offset.
Status SplitRecords(std::string_view body, std::vector<std::string_view>* records);

enum class TimestampField : uint8_t { kAbsent, kValid, kInvalid };
// Finds the top-level "@timestamp" member of a JSON object. kAbsent when
// missing or null (or the object is malformed: the record parser reports
// that), kValid with `*ms` set for an integer in range, kInvalid otherwise.
TimestampField ScanTimestamp(std::string_view object_json, int64_t* ms);

struct PreparedBatch {
  std::vector<driver::Record> records;
  int64_t avro_bytes = 0;
};

// Parses every record against `schema` (collecting every bad record and
// field into `details`, in record order), encodes its key and Avro and
// checks both against `limits`. Records without "@timestamp" get `now_ms`.
// Returns InvalidArgument (code invalid_records; details filled) when any
// record is bad, TooLarge naming the first oversized record, else OK.
Status PrepareRecords(const schema::Schema& schema, const driver::Limits& limits,
                      const std::vector<std::string_view>& texts, int64_t now_ms,
                      PreparedBatch* batch, std::vector<RecordError>* details);

// Cuts records into messages of at most `max_message_size` encoded bytes, in
// order, numbering the parts. TooLarge if one record cannot fit a message.
Result<std::vector<WriteMessage>> SplitIntoMessages(const std::string& write_id,
                                                    const Uuid& instance_id,
                                                    std::vector<driver::Record> records,
                                                    size_t max_message_size);

// Writers waiting for their write to reach some stores (`wait=`), keyed by
// write id. Register before publishing (a report may come back before
// Publish returns); the report listener calls OnReport for every report.
class WriteWaiters {
 public:
  class Waiter;

  std::shared_ptr<Waiter> Register(const std::string& write_id, uint32_t parts, uint8_t stores);
  void Unregister(const std::string& write_id);
  // Marks the report's part as stored in its stores; wakes the waiter when
  // every part is in every store it wants. Unknown write ids are ignored
  // (another gateway's writes, or a waiter that gave up).
  void OnReport(const WriteReport& report);
  // Blocks until the waiter is satisfied (true) or `timeout` passes (false).
  bool Wait(Waiter* waiter, std::chrono::milliseconds timeout);
  // The stores (StoreBits) that have every part so far.
  uint8_t Completed(Waiter* waiter);
  size_t size() const;
  // Blocks until a registered waiter wants the warehouse (true at once if one
  // already does), `deadline` passes or `stop()` holds after a
  // WakeWarehouseWait (false): a paced warehouse consumer waits here between
  // commits (worker.cc Run), and a `wait=warehouse` writer ends the wait.
  bool AwaitWarehouseWaiter(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& stop);
  void WakeWarehouseWait();
  int64_t warehouse_waiters() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Waiter>> waiters_;  // guarded by mu_
  int64_t warehouse_waiters_ = 0;                                     // guarded by mu_
  std::condition_variable warehouse_cv_;                              // a waiter wants the warehouse
};

}  // namespace aquifer::engine
