#pragma once

// Schemas shared by the schema module's unit tests, fuzz targets and the Avro
// interop test. Not part of the library's contract.

#include <cmath>
#include <cstring>
#include <variant>

#include "aquifer/schema/value.h"

namespace aquifer::schema::testing {

// Value equality where floats compare by bits, except that every NaN equals
// every NaN (JSON has one "NaN"). Value::operator== says NaN != NaN.
inline bool SameValue(const Value& a, const Value& b) {
  if (a.v.index() != b.v.index()) return false;
  if (const float* fa = std::get_if<float>(&a.v)) {
    float fb = std::get<float>(b.v);
    if (std::isnan(*fa) || std::isnan(fb)) return std::isnan(*fa) && std::isnan(fb);
    return std::memcmp(fa, &fb, sizeof fb) == 0;
  }
  if (const double* da = std::get_if<double>(&a.v)) {
    double db = std::get<double>(b.v);
    if (std::isnan(*da) || std::isnan(db)) return std::isnan(*da) && std::isnan(db);
    return std::memcmp(da, &db, sizeof db) == 0;
  }
  if (a.v.index() == Value::kArrayIndex || a.v.index() == Value::kRecordIndex) {
    const auto& va = a.v.index() == Value::kArrayIndex ? std::get<Value::kArrayIndex>(a.v)
                                                       : std::get<Value::kRecordIndex>(a.v);
    const auto& vb = b.v.index() == Value::kArrayIndex ? std::get<Value::kArrayIndex>(b.v)
                                                       : std::get<Value::kRecordIndex>(b.v);
    if (va.size() != vb.size()) return false;
    for (size_t idx = 0; idx < va.size(); ++idx) {
      if (!SameValue(va[idx], vb[idx])) return false;
    }
    return true;
  }
  return a == b;
}

// Every supported type, nullable variants, named-type references, arrays of
// records and defaults. Key: "id".
inline constexpr const char* kRichSchemaJson = R"json({
  "type": "record", "name": "Order", "namespace": "test",
  "fields": [
    {"name": "id", "type": "string"},
    {"name": "seq", "type": "long"},
    {"name": "small", "type": "int"},
    {"name": "flag", "type": "boolean"},
    {"name": "ratio", "type": "float"},
    {"name": "price", "type": "double"},
    {"name": "blob", "type": "bytes"},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
    {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 4}},
    {"name": "famount", "type": {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 2}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "items", "type": {"type": "array", "items": {"type": "record", "name": "Item", "fields": [
      {"name": "sku", "type": "string"},
      {"name": "qty", "type": "int"},
      {"name": "price", "type": ["null", "double"]}]}}},
    {"name": "tags", "type": {"type": "array", "items": ["null", "string"]}, "default": []},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "other_hash", "type": ["null", "Hash"]},
    {"name": "first_item", "type": ["Item", "null"]},
    {"name": "n_color", "type": ["null", "Color"]},
    {"name": "n_amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}]},
    {"name": "n_famount", "type": ["null", "Money"]},
    {"name": "n_uid", "type": ["null", {"type": "string", "logicalType": "uuid"}]},
    {"name": "n_ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    {"name": "n_long", "type": ["long", "null"], "default": 7},
    {"name": "n_int", "type": ["null", "int"]},
    {"name": "n_bool", "type": ["null", "boolean"]},
    {"name": "n_float", "type": ["null", "float"]},
    {"name": "n_double", "type": ["null", "double"]},
    {"name": "n_string", "type": ["null", "string"]},
    {"name": "n_bytes", "type": ["null", "bytes"]},
    {"name": "n_items", "type": ["null", {"type": "array", "items": "Item"}]},
    {"name": "n_matrix", "type": ["null", {"type": "array", "items": {"type": "array", "items": "long"}}]}
  ]
})json";

}  // namespace aquifer::schema::testing
