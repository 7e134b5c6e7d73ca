#pragma once

// The cursor payload of the lookup drivers that number an instance's log by
// offset (Postgres, Cassandra): what a replay or change cursor carries for
// them (driver::Cursor::payload). One byte layout, so a payload is checked
// the same way whichever of them reads it:
//
// A kind byte and fixed-width big-endian fields (lengths are 4 bytes):
//   1 index replay   len · start key · len · end key (empty end: to the end of the instance)
//   2 log replay     next offset (8) · end offset (8, exclusive) · from timestamp (8)
//   3 change         next offset (8) · from timestamp (8)
//   4 rewind         before offset (8): the next record read is the newest below it

#include <cstdint>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"

namespace aquifer::driver {

enum class PayloadKind : uint8_t { kIndexReplay = 1, kLogReplay = 2, kChange = 3, kRewind = 4 };

struct OffsetPayload {
  PayloadKind kind = PayloadKind::kIndexReplay;
  std::string start, end;    // index
  uint64_t next = 0;         // log, change
  uint64_t end_offset = 0;   // log
  int64_t from_timestamp_ms = 0;
  uint64_t before = 0;       // rewind
};

std::string IndexPayload(std::string_view start, std::string_view end);
std::string LogPayload(uint64_t next, uint64_t end, int64_t from_ts);
std::string ChangePayload(uint64_t next, int64_t from_ts);
std::string RewindPayload(uint64_t before);
// InvalidArgument "malformed lookup cursor payload ..." for anything the
// functions above do not make (offsets beyond INT64_MAX or out of order, keys
// over 1 MiB, trailing bytes).
Result<OffsetPayload> DecodePayload(std::string_view bytes);

}  // namespace aquifer::driver
