#include "aquifer/driver/offset_payload.h"

#include <limits>

#include <fmt/format.h>

#include "aquifer/base/text.h"

namespace aquifer::driver {
namespace {

constexpr uint64_t kMaxOffset = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
// Bound on a key carried in an index payload: resume keys are at most one
// byte over the key limit, range ends come from filter values.
constexpr uint32_t kMaxPayloadKeySize = 1 << 20;

void PutU32(std::string* out, uint32_t value) {
  char buf[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
                 static_cast<char>(value)};
  out->append(buf, 4);
}

class PayloadReader {
 public:
  explicit PayloadReader(std::string_view data) : data_(data) {}
  bool U64(uint64_t* out) {
    if (data_.size() < 8) return false;
    *out = GetBigEndian64(data_.data());
    data_.remove_prefix(8);
    return true;
  }
  bool Key(std::string* out) {
    if (data_.size() < 4) return false;
    uint32_t length = (uint32_t{static_cast<uint8_t>(data_[0])} << 24) | (uint32_t{static_cast<uint8_t>(data_[1])} << 16) |
                      (uint32_t{static_cast<uint8_t>(data_[2])} << 8) | uint32_t{static_cast<uint8_t>(data_[3])};
    data_.remove_prefix(4);
    if (length > kMaxPayloadKeySize || data_.size() < length) return false;
    out->assign(data_.substr(0, length));
    data_.remove_prefix(length);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

}  // namespace

std::string IndexPayload(std::string_view start, std::string_view end) {
  std::string out(1, static_cast<char>(PayloadKind::kIndexReplay));
  PutU32(&out, static_cast<uint32_t>(start.size()));
  out.append(start);
  PutU32(&out, static_cast<uint32_t>(end.size()));
  out.append(end);
  return out;
}
std::string LogPayload(uint64_t next, uint64_t end, int64_t from_ts) {
  std::string out(1, static_cast<char>(PayloadKind::kLogReplay));
  PutBigEndian64(&out, next);
  PutBigEndian64(&out, end);
  PutBigEndian64(&out, static_cast<uint64_t>(from_ts));
  return out;
}
std::string ChangePayload(uint64_t next, int64_t from_ts) {
  std::string out(1, static_cast<char>(PayloadKind::kChange));
  PutBigEndian64(&out, next);
  PutBigEndian64(&out, static_cast<uint64_t>(from_ts));
  return out;
}
std::string RewindPayload(uint64_t before) {
  std::string out(1, static_cast<char>(PayloadKind::kRewind));
  PutBigEndian64(&out, before);
  return out;
}

Result<OffsetPayload> DecodePayload(std::string_view bytes) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument("malformed lookup cursor payload ({} bytes): {}", bytes.size(), why);
  };
  if (bytes.empty()) return bad("empty");
  PayloadReader reader(bytes.substr(1));
  OffsetPayload payload;
  uint64_t from = 0;
  switch (static_cast<PayloadKind>(bytes[0])) {
    case PayloadKind::kIndexReplay:
      payload.kind = PayloadKind::kIndexReplay;
      if (!reader.Key(&payload.start) || !reader.Key(&payload.end)) return bad("bad key range");
      if (!payload.end.empty() && payload.start >= payload.end) return bad("start key is not below end key");
      break;
    case PayloadKind::kLogReplay:
      payload.kind = PayloadKind::kLogReplay;
      if (!reader.U64(&payload.next) || !reader.U64(&payload.end_offset) || !reader.U64(&from)) {
        return bad("truncated log replay");
      }
      if (payload.end_offset > kMaxOffset || payload.next >= payload.end_offset) return bad("offsets out of order");
      payload.from_timestamp_ms = static_cast<int64_t>(from);
      break;
    case PayloadKind::kChange:
      payload.kind = PayloadKind::kChange;
      if (!reader.U64(&payload.next) || !reader.U64(&from)) return bad("truncated change");
      if (payload.next > kMaxOffset) return bad("offset out of range");
      payload.from_timestamp_ms = static_cast<int64_t>(from);
      break;
    case PayloadKind::kRewind:
      payload.kind = PayloadKind::kRewind;
      if (!reader.U64(&payload.before)) return bad("truncated rewind");
      if (payload.before == 0 || payload.before > kMaxOffset) return bad("offset out of range");
      break;
    default:
      return bad(fmt::format("unknown kind {}", static_cast<uint8_t>(bytes[0])));
  }
  if (!reader.done()) return bad("trailing bytes");
  return payload;
}

}  // namespace aquifer::driver
