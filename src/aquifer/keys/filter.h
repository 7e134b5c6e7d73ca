#pragma once

// Filters: the JSON filter syntax of DESIGN.md, checked against a schema and
// planned into a key byte range plus a residual predicate.
//
//   {"user": "ada", "ts": {"_gte": 5, "_lt": 9}, "country": {"_prefix": "n"}}
//
// A field maps to a value (equality) or to an object of operators among
// _eq _gt _gte _lt _lte _prefix. Two operators on one field must be a lower
// bound (_gt|_gte) and an upper bound (_lt|_lte). _prefix applies to string,
// bytes and fixed fields. Any top-level, primitive-typed field may be filtered;
// unknown fields, values of the wrong type and unknown operators are
// InvalidArgument errors naming the field.
//
// Planning walks the key fields left to right: equality on a key prefix,
// followed by at most one range (or prefix) on the next key field, becomes a
// byte range over the encoded keys. Every other condition is residual: it is
// evaluated on each record after the scan, and QueryPlan::residual says so.
// An empty filter is the whole key space.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/schema/schema.h"
#include "aquifer/schema/value.h"

namespace aquifer::keys {

enum class Op : uint8_t { kEq, kGt, kGte, kLt, kLte, kPrefix };

struct Condition {
  Op op = Op::kEq;
  schema::Value value;  // typed per the field (int64 for int/long/timestamp, Bytes for bytes, ...)
};

struct FieldFilter {
  std::string field;
  int field_index = 0;  // top-level index in the schema
  std::vector<Condition> conditions;  // 1 or 2
};

struct Filter {
  std::vector<FieldFilter> fields;  // in the order written
  bool empty() const { return fields.empty(); }
};

// Parses and checks a JSON filter against the schema. "" and "{}" are empty filters.
Result<Filter> ParseFilter(const schema::Schema& schema, std::string_view json);

// [start, end) over encoded keys; an empty `end` means unbounded above.
struct KeyRange {
  std::string start;
  std::string end;
  bool Contains(std::string_view key) const;
  bool IsEmpty() const;  // start >= end with end bounded: no key can match
};

struct QueryPlan {
  KeyRange range;
  Filter residual;  // the conditions the range does not cover
  // Every key field has an _eq condition: the range holds at most one key,
  // range.start (the encoded key, as EncodeKey gives it): a point lookup.
  bool point = false;
  bool has_residual() const { return !residual.empty(); }
};

Result<QueryPlan> PlanFilter(const schema::Schema& schema, const Filter& filter);

// True when `record` (a record Value of the schema) satisfies every condition of `filter`.
bool Matches(const schema::Schema& schema, const Filter& filter, const schema::Value& record);

// Serialises a parsed filter back to canonical JSON (so cursors can carry it).
std::string FilterToJson(const schema::Schema& schema, const Filter& filter);

}  // namespace aquifer::keys
