#pragma once

// Schemas shared by the schema module's unit tests, fuzz targets, the Avro
// interop test and the warehouse drivers' tests. Not part of the library's
// contract.

#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
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

// A record of kRichSchemaJson with every field set, nulls where a branch
// allows them. `n_double` and `n_string` are the JSON of those two fields:
// not every store keeps a NaN, or a tab and a backslash, so a test may pick
// other values there.
inline std::string RichRecordJson(std::string_view n_double = R"("NaN")",
                                  std::string_view n_string = R"("\u00e9\n\t\\")") {
  return std::string(R"json({
  "id": "o-1", "seq": 9007199254740993, "small": -5, "flag": true, "ratio": 1.5, "price": -0.25,
  "blob": "AAEC/w==", "hash": "3q2+7w==", "color": "GREEN", "amount": "-12345.6789",
  "famount": "12.50", "uid": "00112233-4455-6677-8899-aabbccddeeff", "ts": 1700000000123,
  "items": [{"sku": "a\"b", "qty": 2, "price": null}, {"sku": "c", "qty": 3, "price": 4.5}],
  "tags": ["x", null], "note": null, "other_hash": "AAAAAQ==", "first_item": {"sku": "f", "qty": 1, "price": 2.0},
  "n_color": null, "n_amount": "-0.05", "n_famount": null, "n_uid": null, "n_ts": -1, "n_long": null,
  "n_int": 7, "n_bool": false, "n_float": null, "n_double": )json") +
         std::string(n_double) + R"json(, "n_string": )json" + std::string(n_string) + R"json(,
  "n_bytes": "", "n_items": [], "n_matrix": [[1, 2], [], [3]]
})json";
}

}  // namespace aquifer::schema::testing
