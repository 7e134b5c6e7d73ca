#pragma once

// Value: a decoded record or field, the in-memory form between the codecs.
//
//   JSON text ──ParseJsonRecord──▶ Value ──EncodeAvro──▶ Avro binary
//   Avro binary ──DecodeAvro──▶ Value ──WriteJson──▶ JSON text
//
// Key encoding (aquifer/keys) and residual filters read Values. A Value knows
// its shape only through the Schema that produced it: a record is a vector of
// field values in schema order, an enum is its symbol index, a decimal is its
// unscaled two's-complement big-endian bytes (exact; the scale is in the
// schema), a uuid is its 16 raw bytes, a timestamp-millis is an int64.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace aquifer::schema {

struct Value;
using Array = std::vector<Value>;
using Record = std::vector<Value>;

struct Null {
  bool operator==(const Null&) const = default;
};
// Raw bytes (bytes, fixed, decimal, uuid). Distinct from std::string (text).
struct Bytes {
  std::string data;
  bool operator==(const Bytes&) const = default;
};
struct EnumSymbol {
  int32_t index = 0;
  bool operator==(const EnumSymbol&) const = default;
};

struct Value {
  // int and long both hold int64_t; float holds float, double holds double.
  std::variant<Null, bool, int64_t, float, double, std::string, Bytes, EnumSymbol, Array, Record> v;

  // Array and Record are the same C++ type, so address them by index:
  // std::get<Value::kArrayIndex>(value.v), value.v.emplace<Value::kRecordIndex>().
  static constexpr size_t kArrayIndex = 8;
  static constexpr size_t kRecordIndex = 9;

  bool is_null() const { return std::holds_alternative<Null>(v); }
  bool operator==(const Value&) const = default;
};

}  // namespace aquifer::schema
