#pragma once

// Wire formats of the engine's two queue topics (README.md, "Queue messages").
//
//   "writes":        WriteMessage — one accepted write (or one part of it, when the
//                    write is larger than the queue's max_message_size).
//   "write-reports": WriteReport — a worker stored a write's part in some stores.
//
// Both are little binary formats with a version byte so that gateways and
// workers of different versions can refuse what they do not understand
// (Corruption), instead of misreading it. Decoding never reads out of bounds.
// Pure functions; thread-safe.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/types.h"

namespace aquifer::engine {

inline constexpr std::string_view kWritesTopic = "writes";
inline constexpr std::string_view kWriteReportsTopic = "write-reports";
// Each store has its own consumers and position in "writes": the lookup
// service's workers ("workers", the name from before the split) and the
// warehouse's, so a slow store never holds back the other.
inline constexpr std::string_view kWorkersSubscription = "workers";
inline constexpr std::string_view kWarehouseWorkersSubscription = "workers-warehouse";
// Write messages a worker gave up on, as DeadLetter; operators list and
// replay them through the persistent subscription kOperatorsSubscription.
inline constexpr std::string_view kDeadLettersTopic = "writes-dead";
inline constexpr std::string_view kOperatorsSubscription = "operators";

// Write ids are 16 random bytes, shown to users in base58.
inline constexpr size_t kWriteIdSize = 16;

struct WriteMessage {
  std::string write_id;   // 16 raw bytes
  Uuid instance_id;
  uint32_t part = 0;      // 0-based part of the write
  uint32_t parts = 1;     // how many messages the write was split into
  std::vector<driver::Record> records;  // key, avro, timestamp (offset unused)
};

// The message's stable id for exactly-once writes (driver::RecordGroup):
// write id (16) ‖ part (4, big-endian). The same on every redelivery.
std::string WriteMessageId(const WriteMessage& message);

// Bytes a WriteMessage takes on the wire besides its records.
inline constexpr size_t kWriteMessageOverhead = 1 + 16 + 16 + 3 * 10;
// Bytes one record takes in a WriteMessage.
size_t EncodedRecordSize(const driver::Record& record);

std::string EncodeWriteMessage(const WriteMessage& message);
Result<WriteMessage> DecodeWriteMessage(std::string_view data);

// Stores, as bits of WriteReport::stores.
enum StoreBits : uint8_t { kStoreLog = 1, kStoreIndex = 2, kStoreWarehouse = 4 };

struct WriteReport {
  std::string write_id;  // 16 raw bytes
  Uuid instance_id;
  uint32_t part = 0;
  uint32_t parts = 1;
  uint8_t stores = 0;    // StoreBits now holding this part
  int64_t records = 0;
  int64_t bytes = 0;
};

std::string EncodeWriteReport(const WriteReport& report);
Result<WriteReport> DecodeWriteReport(std::string_view data);

// A "writes" message a worker could not apply, with why: published to
// kDeadLettersTopic, then the original is acked. Replaying publishes `data`
// to "writes" again with `ordering_key`; the stores skip what they applied.
struct DeadLetter {
  std::string store;         // "lookup service", "warehouse" or "worker" (undecodable)
  std::string reason;        // the last error
  int64_t dead_ms = 0;       // when it was dead-lettered
  int32_t attempts = 0;      // delivery attempts made
  std::string ordering_key;  // as published to "writes"
  std::string data;          // the "writes" message, byte for byte
};

std::string EncodeDeadLetter(const DeadLetter& letter);
Result<DeadLetter> DecodeDeadLetter(std::string_view data);

// Byte helpers shared by the engine's formats: LEB128 varints (canonical:
// no redundant trailing zero groups) and 8-byte big-endian integers.
void AppendVarint(std::string* out, uint64_t value);
void AppendFixed64(std::string* out, uint64_t value);

// Reads the formats above from a byte string; every read checks bounds and
// returns false (leaving the reader failed) on truncation or a bad varint.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  bool Byte(uint8_t* value);
  bool Varint(uint64_t* value);
  bool Fixed64(uint64_t* value);
  bool Bytes(size_t length, std::string_view* value);
  // A varint length followed by that many bytes.
  bool LengthPrefixed(std::string_view* value);
  std::string_view rest() const { return data_.substr(pos_); }
  bool done() const { return pos_ == data_.size(); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

}  // namespace aquifer::engine
