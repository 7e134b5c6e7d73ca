#pragma once

// Helpers of the read path (EngineImpl's QueryIndex, QueryLog, ReadCursorJson,
// ReadChanges): the engine's cursor payload and rendering records as JSON.
//
// Engine payload: what the engine puts in driver::Cursor::payload (which the
// CursorCodec signs, so a client cannot alter it). Byte layout:
//
//   kind      1 byte   1 index replay, 2 log replay, 3 change feed
//   from_ms   8 bytes  big-endian two's complement: log reads skip earlier records
//   filter    varint length + canonical filter JSON (keys::FilterToJson; empty: none)
//   driver    the rest: the lookup driver's payload, passed back to it verbatim
//
// The cursor type must agree with the kind: kIndex for index replays, kLog
// for log replays and change feeds. Carrying the filter makes every page of a
// filtered query, and its change feed, apply the same filter (REFERENCE.md §9.5).
// Pure functions; thread-safe.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/cursor.h"
#include "aquifer/driver/types.h"
#include "aquifer/engine/engine.h"
#include "aquifer/schema/schema.h"

namespace aquifer::engine {

enum class PayloadKind : uint8_t { kIndexReplay = 1, kLogReplay = 2, kChange = 3 };

struct EnginePayload {
  PayloadKind kind = PayloadKind::kIndexReplay;
  int64_t from_ms = 0;
  std::string filter_json;
  std::string driver;
};

driver::CursorType CursorTypeFor(PayloadKind kind);
std::string EncodeEnginePayload(const EnginePayload& payload);
// InvalidArgument ("invalid cursor: ...") for anything malformed or a kind
// that does not match `type`.
Result<EnginePayload> DecodeEnginePayload(driver::CursorType type, std::string_view payload);

// Appends the records as a JSON array of objects: the schema's fields plus
// "@timestamp". Adds the Avro bytes rendered to *bytes. Corruption when a
// stored record does not decode.
Status RenderRecords(const schema::Schema& schema, std::span<const driver::Record> records,
                     std::string* out, int64_t* bytes);

// {"data":[...],"next_cursor":"..."|null,["change_cursor":...,]"residual":bool}
std::string RecordPageJson(const RecordPage& page);

// Read limits: 1..1000.
inline constexpr int32_t kMaxReadLimit = 1000;
Status CheckReadLimit(int32_t limit);

}  // namespace aquifer::engine
