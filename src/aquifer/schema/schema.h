#pragma once

// Schema: an Avro record schema (JSON) plus the list of primary-key fields.
//
// Parse() validates everything a table definition may get wrong and names the
// field path in each message ("items[].price: unsupported logical type 'date'").
// A parsed Schema is immutable and shared (std::shared_ptr<const Schema>), so it
// is safe to use from any number of threads.
//
// Supported types: boolean, int, long, float, double, string, bytes, fixed,
// enum, arrays, nested records, nullable unions (["null", T] or [T, "null"]),
// and the logical types decimal (on bytes or fixed), uuid (on string) and
// timestamp-millis (on long). Other unions, maps, "null" fields, recursive
// types and other logical types are rejected.
//
// Key fields are top-level fields whose type is a non-null primitive:
// string, bytes, fixed, int, long, timestamp-millis or uuid.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/schema/value.h"

namespace aquifer::schema {

enum class Kind : uint8_t {
  kBoolean,
  kInt,
  kLong,
  kFloat,
  kDouble,
  kString,
  kBytes,
  kFixed,
  kEnum,
  kArray,
  kRecord,
};

enum class Logical : uint8_t { kNone, kDecimal, kUuid, kTimestampMillis };

struct Field;

// One node of the type tree. `nullable` marks a two-branch union with "null";
// `null_branch` is that branch's index (0 or 1), needed for the binary encoding.
struct Type {
  Kind kind = Kind::kBoolean;
  Logical logical = Logical::kNone;
  bool nullable = false;
  int null_branch = 0;
  std::string name;                   // record, enum, fixed: full name (namespace.name)
  int32_t fixed_size = 0;             // fixed
  int32_t precision = 0, scale = 0;   // decimal
  std::vector<std::string> symbols;   // enum
  std::shared_ptr<const Type> items;  // array
  std::vector<Field> fields;          // record

  // The type without its nullability, for messages: "double", "array<string>",
  // "record Item", "decimal(10,2)"; nullable types print as "null|double".
  std::string Describe() const;
};
using TypePtr = std::shared_ptr<const Type>;

struct Field {
  std::string name;
  TypePtr type;
  // The default from the schema, as JSON text, if any. A field with a default
  // (or a nullable field) may be omitted from a JSON record.
  std::optional<std::string> default_json;
  std::string doc;
  // default_json converted to a Value of `type` (set by Schema::Parse whenever
  // default_json is), so codecs need not re-parse it.
  std::shared_ptr<const Value> default_value;
};

struct KeyField {
  std::string name;
  int field_index = 0;  // into Schema::root().fields
  TypePtr type;
};

class Schema {
 public:
  // Parses `avro_json` (an Avro schema whose top level is a record) and
  // checks `key` (non-empty, distinct, top-level, non-null primitives).
  static Result<std::shared_ptr<const Schema>> Parse(std::string_view avro_json,
                                                     const std::vector<std::string>& key);

  const Type& root() const { return *root_; }
  const std::vector<Field>& fields() const { return root_->fields; }
  const std::vector<KeyField>& key() const { return key_; }
  // Index of a top-level field, or -1.
  int FieldIndex(std::string_view name) const;
  const Field* FindField(std::string_view name) const;
  // The schema as canonical Avro JSON (what standard Avro tools read).
  const std::string& avro_json() const { return avro_json_; }

 private:
  TypePtr root_;
  std::vector<KeyField> key_;
  std::string avro_json_;
};
using SchemaPtr = std::shared_ptr<const Schema>;

}  // namespace aquifer::schema
