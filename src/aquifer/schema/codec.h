#pragma once

// Codecs between JSON, Value and standard Avro binary (no container header:
// the plain binary encoding of one datum, as Avro's BinaryEncoder writes it).
//
// JSON conventions of the HTTP API:
//  - nullable fields take plain JSON: null or the value (no {"type": value} wrapping);
//  - fields with a schema default, and nullable fields, may be omitted;
//  - unknown fields are rejected;
//  - int/long: JSON integers, exact over the whole 64-bit range (no double rounding);
//  - float/double: JSON numbers; "NaN", "Infinity", "-Infinity" strings accepted;
//  - bytes and fixed: base64 strings;
//  - decimal: a string or a number, exact ("12.50"); written back as a string;
//  - uuid: the 8-4-4-4-12 string; timestamp-millis: integer ms since the epoch;
//  - enum: the symbol string.
//
// Errors carry the field path, e.g. `items[3].price: expected double, got string`.
// All functions are pure and thread-safe.

#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/schema/schema.h"
#include "aquifer/schema/value.h"

namespace aquifer::schema {

// One problem with one field of one record.
struct FieldError {
  std::string field;    // path: "items[3].price"; empty for the record itself
  std::string message;  // "expected double, got string"
};

// Parses one JSON object into a record Value. Every error found is appended to
// `errors` (the parse goes on past the first bad field where it can); returns
// InvalidArgument summarising the first error when there is any.
// `ignored_fields` names top-level members to skip (e.g. "@timestamp").
Result<Value> ParseJsonRecord(const Schema& schema, std::string_view json,
                              std::vector<FieldError>* errors = nullptr,
                              const std::vector<std::string_view>& ignored_fields = {});

// Writes a record Value as a JSON object (no trailing newline), appended to `out`.
void WriteJson(const Schema& schema, const Value& record, std::string* out);

// Appends the Avro binary encoding of a record Value. The Value must match the
// schema (as produced by ParseJsonRecord or DecodeAvro); returns
// InvalidArgument naming the path if not.
Status EncodeAvro(const Schema& schema, const Value& record, std::string* out);

// Decodes exactly one record from `avro`; trailing bytes, truncation, bad
// lengths, out-of-range enum or union indexes are Corruption errors. Never
// reads out of bounds, whatever the input.
Result<Value> DecodeAvro(const Schema& schema, std::string_view avro);

// Convenience: ParseJsonRecord then EncodeAvro.
Result<std::string> JsonToAvro(const Schema& schema, std::string_view json,
                               std::vector<FieldError>* errors = nullptr);
// What WriteJson writes of DecodeAvro's Value, straight from the Avro (no
// Value between), and failing as DecodeAvro fails.
Result<std::string> AvroToJson(const Schema& schema, std::string_view avro);
// The same, appended to `out` (left as it was on an error).
Status AppendAvroAsJson(const Schema& schema, std::string_view avro, std::string* out);

}  // namespace aquifer::schema
