#include "aquifer/keys/tuple.h"

#include "aquifer/keys/internal.h"

#include <bit>
#include <cstring>
#include <limits>

namespace aquifer::keys {
namespace {

constexpr uint8_t kNullCode = 0x00;
constexpr uint8_t kBytesCode = 0x01;
constexpr uint8_t kStringCode = 0x02;
constexpr uint8_t kIntZeroCode = 0x14;
constexpr uint8_t kFloatCode = 0x20;
constexpr uint8_t kDoubleCode = 0x21;
constexpr uint8_t kFalseCode = 0x26;
constexpr uint8_t kTrueCode = 0x27;
constexpr uint8_t kUuidCode = 0x30;


// Appends `bytes` with every 0x00 escaped as 0x00 0xFF, then the 0x00 terminator.
void AppendEscaped(std::string* out, uint8_t code, std::string_view bytes) {
  out->reserve(out->size() + bytes.size() + 2);
  out->push_back(static_cast<char>(code));
  size_t start = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (bytes[i] == '\0') {
      out->append(bytes.data() + start, i - start + 1);
      out->push_back('\xFF');
      start = i + 1;
    }
  }
  out->append(bytes.data() + start, bytes.size() - start);
  out->push_back('\0');
}

// Number of bytes in the minimal big-endian form of `magnitude` (> 0).
int MagnitudeLength(uint64_t magnitude) { return (64 - std::countl_zero(magnitude) + 7) / 8; }

void AppendBigEndian(std::string* out, uint64_t value, int length) {
  for (int i = length - 1; i >= 0; --i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
}

uint64_t ReadBigEndian(std::string_view in, size_t pos, int length) {
  uint64_t value = 0;
  for (int i = 0; i < length; ++i) value = value << 8 | static_cast<uint8_t>(in[pos + i]);
  return value;
}

// Order-preserving transform of IEEE bits: positives flip the sign bit,
// negatives flip every bit. Its own inverse is FromOrderedBits.
template <typename U>
U ToOrderedBits(U bits) {
  constexpr U kSign = U{1} << (sizeof(U) * 8 - 1);
  return (bits & kSign) ? ~bits : (bits ^ kSign);
}

template <typename U>
U FromOrderedBits(U ordered) {
  constexpr U kSign = U{1} << (sizeof(U) * 8 - 1);
  return (ordered & kSign) ? (ordered ^ kSign) : ~ordered;
}

// Decodes an escaped byte string starting at `*pos` (just after the type
// code); leaves `*pos` after the terminator.
Result<std::string> DecodeEscaped(std::string_view in, size_t* pos, std::string_view what) {
  std::string out;
  size_t i = *pos;
  while (true) {
    if (i >= in.size()) {
      return InvalidArgument("malformed tuple: {} at offset {} has no 0x00 terminator", what, *pos - 1);
    }
    char c = in[i];
    if (c == '\0') {
      if (i + 1 < in.size() && in[i + 1] == '\xFF') {
        out.push_back('\0');
        i += 2;
        continue;
      }
      *pos = i + 1;
      return out;
    }
    out.push_back(c);
    ++i;
  }
}

}  // namespace

std::string_view ValueKindName(const schema::Value& value) {
  switch (value.v.index()) {
    case 0: return "null";
    case 1: return "boolean";
    case 2: return "integer";
    case 3: return "float";
    case 4: return "double";
    case 5: return "string";
    case 6: return "bytes";
    case 7: return "enum";
    case 8: return "array";
    case 9: return "record";
  }
  return "unknown";
}

std::string TypeName(const schema::Type& type) {
  switch (type.kind) {
    case schema::Kind::kBoolean: return "boolean";
    case schema::Kind::kInt: return "int";
    case schema::Kind::kLong:
      return type.logical == schema::Logical::kTimestampMillis ? "timestamp-millis" : "long";
    case schema::Kind::kFloat: return "float";
    case schema::Kind::kDouble: return "double";
    case schema::Kind::kString: return type.logical == schema::Logical::kUuid ? "uuid" : "string";
    case schema::Kind::kBytes: return type.logical == schema::Logical::kDecimal ? "decimal" : "bytes";
    case schema::Kind::kFixed:
      if (type.logical == schema::Logical::kDecimal) return "decimal";
      return fmt::format("fixed({})", type.fixed_size);
    case schema::Kind::kEnum: return type.name.empty() ? "enum" : "enum " + type.name;
    case schema::Kind::kArray: return "array";
    case schema::Kind::kRecord: return type.name.empty() ? "record" : "record " + type.name;
  }
  return "unknown";
}

void AppendNull(std::string* out) { out->push_back(static_cast<char>(kNullCode)); }

void AppendBytes(std::string* out, std::string_view bytes) { AppendEscaped(out, kBytesCode, bytes); }

void AppendString(std::string* out, std::string_view utf8) { AppendEscaped(out, kStringCode, utf8); }

void AppendInt(std::string* out, int64_t value) {
  if (value == 0) {
    out->push_back(static_cast<char>(kIntZeroCode));
    return;
  }
  if (value > 0) {
    uint64_t magnitude = static_cast<uint64_t>(value);
    int length = MagnitudeLength(magnitude);
    out->push_back(static_cast<char>(kIntZeroCode + length));
    AppendBigEndian(out, magnitude, length);
    return;
  }
  // Magnitude computed in unsigned arithmetic so INT64_MIN (2^63) is exact.
  uint64_t magnitude = uint64_t{0} - static_cast<uint64_t>(value);
  int length = MagnitudeLength(magnitude);
  uint64_t mask = length == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * length)) - 1;
  out->push_back(static_cast<char>(kIntZeroCode - length));
  AppendBigEndian(out, mask - magnitude, length);  // (2^(8n) - 1) + value
}

void AppendFloat(std::string* out, float value) {
  out->push_back(static_cast<char>(kFloatCode));
  AppendBigEndian(out, ToOrderedBits(std::bit_cast<uint32_t>(value)), 4);
}

void AppendDouble(std::string* out, double value) {
  out->push_back(static_cast<char>(kDoubleCode));
  AppendBigEndian(out, ToOrderedBits(std::bit_cast<uint64_t>(value)), 8);
}

void AppendBool(std::string* out, bool value) {
  out->push_back(static_cast<char>(value ? kTrueCode : kFalseCode));
}

void AppendUuid(std::string* out, const Uuid& value) {
  out->push_back(static_cast<char>(kUuidCode));
  out->append(value.AsBytes());
}

void AppendElement(std::string* out, const TupleElement& element) {
  std::visit(
      [out](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, TupleNull>) {
          AppendNull(out);
        } else if constexpr (std::is_same_v<T, TupleBytes>) {
          AppendBytes(out, e.data);
        } else if constexpr (std::is_same_v<T, std::string>) {
          AppendString(out, e);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          AppendInt(out, e);
        } else if constexpr (std::is_same_v<T, float>) {
          AppendFloat(out, e);
        } else if constexpr (std::is_same_v<T, double>) {
          AppendDouble(out, e);
        } else if constexpr (std::is_same_v<T, bool>) {
          AppendBool(out, e);
        } else {
          AppendUuid(out, e);
        }
      },
      element);
}

Result<std::vector<TupleElement>> DecodeTuple(std::string_view in) {
  std::vector<TupleElement> elements;
  size_t pos = 0;
  while (pos < in.size()) {
    size_t start = pos;
    uint8_t code = static_cast<uint8_t>(in[pos++]);
    auto need = [&](size_t n) -> Status {
      if (in.size() - pos < n) {
        return InvalidArgument("malformed tuple: element 0x{:02x} at offset {} needs {} bytes, {} left",
                               code, start, n, in.size() - pos);
      }
      return Status::OK();
    };
    if (code == kNullCode) {
      elements.emplace_back(TupleNull{});
    } else if (code == kBytesCode) {
      AQ_ASSIGN_OR_RETURN(std::string data, DecodeEscaped(in, &pos, "bytes"));
      elements.emplace_back(TupleBytes{std::move(data)});
    } else if (code == kStringCode) {
      AQ_ASSIGN_OR_RETURN(std::string data, DecodeEscaped(in, &pos, "string"));
      elements.emplace_back(std::move(data));
    } else if (code == kIntZeroCode) {
      elements.emplace_back(int64_t{0});
    } else if (code > kIntZeroCode && code <= kIntZeroCode + 8) {
      int length = code - kIntZeroCode;
      AQ_RETURN_IF_ERROR(need(length));
      if (in[pos] == '\0') {
        return InvalidArgument("malformed tuple: integer at offset {} is not in minimal form", start);
      }
      uint64_t magnitude = ReadBigEndian(in, pos, length);
      if (magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return InvalidArgument("malformed tuple: integer at offset {} exceeds the int64 range", start);
      }
      pos += length;
      elements.emplace_back(static_cast<int64_t>(magnitude));
    } else if (code < kIntZeroCode && code >= kIntZeroCode - 8) {
      int length = kIntZeroCode - code;
      AQ_RETURN_IF_ERROR(need(length));
      if (in[pos] == '\xFF') {
        return InvalidArgument("malformed tuple: integer at offset {} is not in minimal form", start);
      }
      uint64_t mask = length == 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * length)) - 1;
      uint64_t magnitude = mask - ReadBigEndian(in, pos, length);
      if (magnitude > uint64_t{1} << 63) {
        return InvalidArgument("malformed tuple: integer at offset {} exceeds the int64 range", start);
      }
      pos += length;
      elements.emplace_back(static_cast<int64_t>(uint64_t{0} - magnitude));
    } else if (code == kFloatCode) {
      AQ_RETURN_IF_ERROR(need(4));
      uint32_t bits = FromOrderedBits(static_cast<uint32_t>(ReadBigEndian(in, pos, 4)));
      pos += 4;
      elements.emplace_back(std::bit_cast<float>(bits));
    } else if (code == kDoubleCode) {
      AQ_RETURN_IF_ERROR(need(8));
      uint64_t bits = FromOrderedBits(ReadBigEndian(in, pos, 8));
      pos += 8;
      elements.emplace_back(std::bit_cast<double>(bits));
    } else if (code == kFalseCode || code == kTrueCode) {
      elements.emplace_back(code == kTrueCode);
    } else if (code == kUuidCode) {
      AQ_RETURN_IF_ERROR(need(16));
      Uuid id;
      std::memcpy(id.bytes.data(), in.data() + pos, 16);
      pos += 16;
      elements.emplace_back(id);
    } else {
      return InvalidArgument("malformed tuple: unsupported type code 0x{:02x} at offset {}", code, start);
    }
  }
  return elements;
}

Status AppendKeyValue(std::string* out, const schema::Type& type, const schema::Value& value) {
  if (value.is_null()) {
    if (!type.nullable) return InvalidArgument("expected {}, got null", TypeName(type));
    AppendNull(out);
    return Status::OK();
  }
  auto mistyped = [&]() {
    return InvalidArgument("expected {}, got {}", TypeName(type), ValueKindName(value));
  };
  switch (type.kind) {
    case schema::Kind::kInt:
    case schema::Kind::kLong: {
      const int64_t* v = std::get_if<int64_t>(&value.v);
      if (v == nullptr) return mistyped();
      if (type.kind == schema::Kind::kInt &&
          (*v < std::numeric_limits<int32_t>::min() || *v > std::numeric_limits<int32_t>::max())) {
        return InvalidArgument("value {} out of range for int", *v);
      }
      AppendInt(out, *v);
      return Status::OK();
    }
    case schema::Kind::kString: {
      if (type.logical == schema::Logical::kUuid) {
        const schema::Bytes* v = std::get_if<schema::Bytes>(&value.v);
        if (v == nullptr) return mistyped();
        if (v->data.size() != 16) return InvalidArgument("a uuid is 16 bytes, got {}", v->data.size());
        out->push_back(static_cast<char>(kUuidCode));
        out->append(v->data);
        return Status::OK();
      }
      const std::string* v = std::get_if<std::string>(&value.v);
      if (v == nullptr) return mistyped();
      AppendString(out, *v);
      return Status::OK();
    }
    case schema::Kind::kBytes:
    case schema::Kind::kFixed: {
      if (type.logical == schema::Logical::kDecimal) {
        return InvalidArgument("decimal cannot be a key field");
      }
      const schema::Bytes* v = std::get_if<schema::Bytes>(&value.v);
      if (v == nullptr) return mistyped();
      if (type.kind == schema::Kind::kFixed && static_cast<int64_t>(v->data.size()) != type.fixed_size) {
        return InvalidArgument("expected {} bytes for fixed, got {}", type.fixed_size, v->data.size());
      }
      AppendBytes(out, v->data);
      return Status::OK();
    }
    default:
      return InvalidArgument("{} cannot be a key field (key fields are string, bytes, fixed, int, long, "
                             "timestamp-millis or uuid)",
                             TypeName(type));
  }
}

Result<std::string> EncodeKey(const schema::Schema& schema, const schema::Value& record) {
  if (record.v.index() != kRecordValueIndex) {
    return InvalidArgument("encoding a key: expected a record, got {}", ValueKindName(record));
  }
  const auto& fields = std::get<kRecordValueIndex>(record.v);
  std::string out;
  for (const schema::KeyField& key : schema.key()) {
    if (key.field_index < 0 || static_cast<size_t>(key.field_index) >= fields.size()) {
      return InvalidArgument("encoding a key: key field '{}' is missing from the record", key.name);
    }
    Status status = AppendKeyValue(&out, *key.type, fields[key.field_index]);
    if (!status.ok()) return status.WithContext(fmt::format("encoding key field '{}'", key.name));
  }
  return out;
}

std::string PrefixSuccessor(std::string_view prefix) {
  std::string out(prefix);
  while (!out.empty() && out.back() == '\xFF') out.pop_back();
  if (out.empty()) return out;
  out.back() = static_cast<char>(static_cast<uint8_t>(out.back()) + 1);
  return out;
}

}  // namespace aquifer::keys
