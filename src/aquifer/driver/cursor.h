#pragma once

// Cursor: the opaque string a client holds to continue a read.
//
// Byte layout before base58 (all integers big-endian):
//
//   version   1 byte   = 1
//   type      1 byte   CursorType
//   id       16 bytes  instance id (log, index) or job id (job)
//   payload   n bytes  the engine's payload (driver payload plus the query's filter)
//   tag      16 bytes  HMAC-SHA256(key, everything above), truncated
//
// The tag makes cursors unforgeable: a client cannot point a payload at
// another instance, another job or a hand-made key range (a defect of the
// reference system, REFERENCE.md §9.4). Permission is still checked on the
// id at every read. Decode rejects anything else — wrong alphabet, wrong
// length, unknown version or type, a bad tag — with InvalidArgument, never a
// crash. Thread-safe (immutable after construction).

#include <cstdint>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"

namespace aquifer::driver {

enum class CursorType : uint8_t {
  kLog = 1,    // log replay or change feed of an instance
  kIndex = 2,  // index replay of an instance
  kJob = 3,    // rows of a warehouse job
};

struct Cursor {
  CursorType type = CursorType::kLog;
  Uuid id;
  std::string payload;

  bool operator==(const Cursor&) const = default;
};

class CursorCodec {
 public:
  static constexpr size_t kMaxEncodedLength = 4096;
  static constexpr size_t kTagSize = 16;

  // `key` signs cursors; every process of one deployment must share it.
  explicit CursorCodec(std::string key);

  std::string Encode(const Cursor& cursor) const;
  Result<Cursor> Decode(std::string_view text) const;

 private:
  std::string Tag(std::string_view bytes) const;
  std::string key_;
};

}  // namespace aquifer::driver
