#pragma once

// Order-preserving tuple encoding of key fields, after the FoundationDB tuple
// layer (REFERENCE.md §4): each element is a type byte plus an encoding whose
// unsigned byte order equals value order, so concatenated elements sort like
// the tuples they encode and a filter on a key prefix is one contiguous range.
//
//   null 0x00 | bytes 0x01 | string 0x02 (0x00 escaped as 0x00 0xFF, 0x00 ends)
//   int 0x0C..0x1C (0x14 is zero; 0x14±n for n magnitude bytes; negatives one's complement)
//   float 0x20 | double 0x21 (big-endian IEEE; positives flip sign bit, negatives all bits)
//   false 0x26 | true 0x27 | uuid 0x30 (16 raw bytes)
//
// Key field types map as: string→string, bytes/fixed→bytes, int/long/
// timestamp-millis→int (int widened to int64), uuid→uuid.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/schema/schema.h"
#include "aquifer/schema/value.h"

namespace aquifer::keys {

struct TupleNull {
  bool operator==(const TupleNull&) const = default;
};
struct TupleBytes {
  std::string data;
  bool operator==(const TupleBytes&) const = default;
};
// One decoded tuple element.
using TupleElement = std::variant<TupleNull, TupleBytes, std::string, int64_t, float, double, bool, Uuid>;

void AppendNull(std::string* out);
void AppendBytes(std::string* out, std::string_view bytes);
void AppendString(std::string* out, std::string_view utf8);
void AppendInt(std::string* out, int64_t value);
void AppendFloat(std::string* out, float value);
void AppendDouble(std::string* out, double value);
void AppendBool(std::string* out, bool value);
void AppendUuid(std::string* out, const Uuid& value);
void AppendElement(std::string* out, const TupleElement& element);

// Decodes a whole tuple; any malformed input is InvalidArgument, never a crash.
Result<std::vector<TupleElement>> DecodeTuple(std::string_view encoded);

// Encodes the schema's key fields of `record` (a record Value that matches the
// schema) in key order. InvalidArgument if a key field is missing or mistyped.
Result<std::string> EncodeKey(const schema::Schema& schema, const schema::Value& record);

// Encodes one key field's value as the tuple element its type maps to.
Status AppendKeyValue(std::string* out, const schema::Type& type, const schema::Value& value);

// The smallest byte string greater than every string with `prefix` as prefix:
// increments the last byte below 0xFF and drops what follows. Empty when none
// exists (prefix empty or all 0xFF), meaning "no upper bound".
std::string PrefixSuccessor(std::string_view prefix);

}  // namespace aquifer::keys
