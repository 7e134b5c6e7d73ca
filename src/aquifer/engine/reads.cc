#include "aquifer/engine/reads.h"

#include <nlohmann/json.hpp>

#include "aquifer/engine/wire.h"
#include "aquifer/schema/codec.h"

namespace aquifer::engine {

driver::CursorType CursorTypeFor(PayloadKind kind) {
  return kind == PayloadKind::kIndexReplay ? driver::CursorType::kIndex : driver::CursorType::kLog;
}

std::string EncodeEnginePayload(const EnginePayload& payload) {
  std::string out;
  out.reserve(1 + 8 + 2 + payload.filter_json.size() + payload.driver.size());
  out.push_back(static_cast<char>(payload.kind));
  AppendFixed64(&out, static_cast<uint64_t>(payload.from_ms));
  AppendVarint(&out, payload.filter_json.size());
  out.append(payload.filter_json);
  out.append(payload.driver);
  return out;
}

Result<EnginePayload> DecodeEnginePayload(driver::CursorType type, std::string_view data) {
  ByteReader reader(data);
  uint8_t kind = 0;
  uint64_t from = 0;
  std::string_view filter;
  if (!reader.Byte(&kind) || !reader.Fixed64(&from) || !reader.LengthPrefixed(&filter)) {
    return InvalidArgument("invalid cursor: truncated payload");
  }
  if (kind < static_cast<uint8_t>(PayloadKind::kIndexReplay) ||
      kind > static_cast<uint8_t>(PayloadKind::kChange)) {
    return InvalidArgument("invalid cursor: unknown payload kind {}", kind);
  }
  EnginePayload payload;
  payload.kind = static_cast<PayloadKind>(kind);
  if (CursorTypeFor(payload.kind) != type) {
    return InvalidArgument("invalid cursor: payload kind {} does not match the cursor type", kind);
  }
  payload.from_ms = static_cast<int64_t>(from);
  payload.filter_json.assign(filter);
  payload.driver.assign(reader.rest());
  return payload;
}

Status RenderRecords(const schema::Schema& schema, std::span<const driver::Record> records,
                     std::string* out, int64_t* bytes) {
  out->push_back('[');
  bool first = true;
  for (const auto& record : records) {
    auto value = schema::DecodeAvro(schema, record.avro);
    if (!value.ok()) {
      return Corruption("stored record at offset {} does not decode: {}", record.offset,
                        value.status().message());
    }
    if (!first) out->push_back(',');
    first = false;
    size_t start = out->size();
    schema::WriteJson(schema, *value, out);
    // WriteJson wrote "{...}": put "@timestamp" in before the closing brace.
    out->pop_back();
    if (out->size() > start + 1) out->push_back(',');
    fmt::format_to(std::back_inserter(*out), "\"@timestamp\":{}}}", record.timestamp_ms);
    *bytes += static_cast<int64_t>(record.avro.size());
  }
  out->push_back(']');
  return Status::OK();
}

std::string RecordPageJson(const RecordPage& page) {
  std::string out;
  out.reserve(page.data_json.size() + page.next_cursor.size() + page.change_cursor.size() + 80);
  out.append("{\"data\":");
  out.append(page.data_json.empty() ? "[]" : page.data_json);
  // Cursors are base58: no characters that need escaping in JSON.
  if (page.next_cursor.empty()) {
    out.append(",\"next_cursor\":null");
  } else {
    fmt::format_to(std::back_inserter(out), ",\"next_cursor\":\"{}\"", page.next_cursor);
  }
  if (!page.change_cursor.empty()) {
    fmt::format_to(std::back_inserter(out), ",\"change_cursor\":\"{}\"", page.change_cursor);
  }
  fmt::format_to(std::back_inserter(out), ",\"residual\":{}}}", page.residual ? "true" : "false");
  return out;
}

Status CheckReadLimit(int32_t limit) {
  if (limit < 1 || limit > kMaxReadLimit) {
    return InvalidArgument("limit must be between 1 and {}, got {}", kMaxReadLimit, limit);
  }
  return Status::OK();
}

}  // namespace aquifer::engine
