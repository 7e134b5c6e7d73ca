#include "aquifer/keys/filter.h"

#include <cmath>
#include <limits>
#include <optional>

#include <fmt/ranges.h>
#include <simdjson.h>

#include "aquifer/base/text.h"
#include "aquifer/base/uuid.h"
#include "aquifer/keys/internal.h"
#include "aquifer/keys/tuple.h"

namespace aquifer::keys {
namespace {

using schema::Kind;
using schema::Logical;
using schema::Type;
using schema::Value;

constexpr std::string_view kValidOperators =
    "_eq _gt _gte _lt _lte _prefix (also without the underscore, or = == > >= < <=)";

// ---------------------------------------------------------------------------
// Operators

std::optional<Op> ParseOp(std::string_view name) {
  if (name == "_eq" || name == "eq" || name == "=" || name == "==") return Op::kEq;
  if (name == "_gt" || name == "gt" || name == ">") return Op::kGt;
  if (name == "_gte" || name == "gte" || name == ">=") return Op::kGte;
  if (name == "_lt" || name == "lt" || name == "<") return Op::kLt;
  if (name == "_lte" || name == "lte" || name == "<=") return Op::kLte;
  if (name == "_prefix" || name == "prefix") return Op::kPrefix;
  return std::nullopt;
}

std::string_view OpName(Op op) {
  switch (op) {
    case Op::kEq: return "_eq";
    case Op::kGt: return "_gt";
    case Op::kGte: return "_gte";
    case Op::kLt: return "_lt";
    case Op::kLte: return "_lte";
    case Op::kPrefix: return "_prefix";
  }
  return "_eq";
}

// The upper bound of all keys that start with the complete packed elements
// `parent`: the next element's type code (or the key's end) follows them, and
// every type code is below 0xFF. PrefixSuccessor(parent) would be wrong: a
// parent ending in a string's 0x00 terminator would take in the strings that
// extend it with NUL bytes (packed as 0x00 0xFF ...).
std::string ElementsUpperBound(const std::string& parent) {
  return parent.empty() ? std::string() : parent + '\xFF';
}

bool IsLower(Op op) { return op == Op::kGt || op == Op::kGte; }
bool IsUpper(Op op) { return op == Op::kLt || op == Op::kLte; }

std::optional<std::string> Base64Decode(std::string_view text) {
  std::string out;
  if (!aquifer::Base64Decode(text, &out)) return std::nullopt;
  return out;
}


// ---------------------------------------------------------------------------
// JSON parsing

std::string_view JsonTypeName(const simdjson::dom::element& e) {
  switch (e.type()) {
    case simdjson::dom::element_type::ARRAY: return "array";
    case simdjson::dom::element_type::OBJECT: return "object";
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64:
    case simdjson::dom::element_type::DOUBLE: return "number";
    case simdjson::dom::element_type::STRING: return "string";
    case simdjson::dom::element_type::BOOL: return "boolean";
    case simdjson::dom::element_type::NULL_VALUE: return "null";
  }
  return "unknown";
}

bool IsFilterable(const Type& type) {
  switch (type.kind) {
    case Kind::kArray:
    case Kind::kRecord: return false;
    case Kind::kBytes:
    case Kind::kFixed: return type.logical != Logical::kDecimal;
    default: return true;
  }
}

bool IsPrefixable(const Type& type) {
  return (type.kind == Kind::kString && type.logical == Logical::kNone) ||
         ((type.kind == Kind::kBytes || type.kind == Kind::kFixed) && type.logical == Logical::kNone);
}

// Parses one operand of `op` on field `name` of `type` into a typed Value.
Result<Value> ParseOperand(std::string_view name, const Type& type, Op op, const simdjson::dom::element& e) {
  using simdjson::dom::element_type;
  const element_type json_type = e.type();
  auto wrong = [&]() {
    return InvalidArgument("filter on '{}': expected {}, got {}", name, TypeName(type), JsonTypeName(e));
  };
  if (json_type == element_type::NULL_VALUE) {
    if (!type.nullable) return wrong();
    if (op != Op::kEq) {
      return InvalidArgument("filter on '{}': null can only be compared with _eq, not {}", name, OpName(op));
    }
    return Value{schema::Null{}};
  }
  if (op == Op::kPrefix) {
    if (!IsPrefixable(type)) {
      return InvalidArgument("filter on '{}': _prefix applies to string, bytes and fixed fields, not {}", name,
                             TypeName(type));
    }
    if (json_type != element_type::STRING) {
      return InvalidArgument("filter on '{}': _prefix expects a {} value, got {}", name,
                             type.kind == Kind::kString ? "string" : "base64 string", JsonTypeName(e));
    }
    std::string_view text = e.get_string().value_unsafe();
    if (type.kind == Kind::kString) return Value{std::string(text)};
    std::optional<std::string> bytes = Base64Decode(text);
    if (!bytes) return InvalidArgument("filter on '{}': _prefix expects base64, got '{}'", name, text.substr(0, 64));
    return Value{schema::Bytes{std::move(*bytes)}};
  }
  switch (type.kind) {
    case Kind::kBoolean:
      if (json_type != element_type::BOOL) return wrong();
      return Value{e.get_bool().value_unsafe()};
    case Kind::kInt:
    case Kind::kLong: {
      if (json_type == element_type::UINT64) {
        return InvalidArgument("filter on '{}': {} is out of range for {}", name, e.get_uint64().value_unsafe(),
                               TypeName(type));
      }
      if (json_type == element_type::DOUBLE) {
        return InvalidArgument("filter on '{}': expected {} (an integer), got {}", name, TypeName(type),
                               e.get_double().value_unsafe());
      }
      if (json_type != element_type::INT64) return wrong();
      int64_t v = e.get_int64().value_unsafe();
      if (type.kind == Kind::kInt &&
          (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())) {
        return InvalidArgument("filter on '{}': {} is out of range for int", name, v);
      }
      return Value{v};
    }
    case Kind::kFloat:
    case Kind::kDouble: {
      double d = 0;
      if (json_type == element_type::INT64) {
        d = static_cast<double>(e.get_int64().value_unsafe());
      } else if (json_type == element_type::UINT64) {
        d = static_cast<double>(e.get_uint64().value_unsafe());
      } else if (json_type == element_type::DOUBLE) {
        d = e.get_double().value_unsafe();
      } else if (json_type == element_type::STRING) {
        std::string_view text = e.get_string().value_unsafe();
        if (text == "NaN") {
          d = std::numeric_limits<double>::quiet_NaN();
        } else if (text == "Infinity") {
          d = std::numeric_limits<double>::infinity();
        } else if (text == "-Infinity") {
          d = -std::numeric_limits<double>::infinity();
        } else {
          return InvalidArgument("filter on '{}': expected {}, got string '{}' (only \"NaN\", \"Infinity\" and "
                                 "\"-Infinity\" are accepted as strings)",
                                 name, TypeName(type), text.substr(0, 64));
        }
      } else {
        return wrong();
      }
      if (type.kind == Kind::kDouble) return Value{d};
      float f = static_cast<float>(d);
      if (std::isinf(f) && std::isfinite(d)) {
        return InvalidArgument("filter on '{}': {} is out of range for float", name, d);
      }
      return Value{f};
    }
    case Kind::kString: {
      if (json_type != element_type::STRING) return wrong();
      std::string_view text = e.get_string().value_unsafe();
      if (type.logical == Logical::kUuid) {
        Result<Uuid> id = Uuid::Parse(text);
        if (!id.ok()) return id.status().WithContext(fmt::format("filter on '{}'", name));
        return Value{schema::Bytes{std::string(id->AsBytes())}};
      }
      return Value{std::string(text)};
    }
    case Kind::kBytes:
    case Kind::kFixed: {
      if (json_type != element_type::STRING) {
        return InvalidArgument("filter on '{}': expected {} as a base64 string, got {}", name, TypeName(type),
                               JsonTypeName(e));
      }
      std::string_view text = e.get_string().value_unsafe();
      std::optional<std::string> bytes = Base64Decode(text);
      if (!bytes) {
        return InvalidArgument("filter on '{}': expected {} as a base64 string, got '{}'", name, TypeName(type),
                               text.substr(0, 64));
      }
      if (type.kind == Kind::kFixed && static_cast<int64_t>(bytes->size()) != type.fixed_size) {
        return InvalidArgument("filter on '{}': expected {} bytes for {}, got {}", name, type.fixed_size,
                               TypeName(type), bytes->size());
      }
      return Value{schema::Bytes{std::move(*bytes)}};
    }
    case Kind::kEnum: {
      if (json_type != element_type::STRING) return wrong();
      std::string_view text = e.get_string().value_unsafe();
      for (size_t i = 0; i < type.symbols.size(); ++i) {
        if (type.symbols[i] == text) return Value{schema::EnumSymbol{static_cast<int32_t>(i)}};
      }
      return InvalidArgument("filter on '{}': unknown symbol '{}' of {} (symbols: {})", name, text.substr(0, 64),
                             TypeName(type), fmt::join(type.symbols, ", "));
    }
    case Kind::kArray:
    case Kind::kRecord: break;
  }
  return wrong();
}

std::string FieldList(const schema::Schema& schema) {
  std::string out;
  for (const auto& field : schema.fields()) {
    if (!out.empty()) out += ", ";
    out += field.name;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Comparison, in the order of the tuple encoding for key types.

// Floating point order for filters: numeric, with -0.0 == 0.0, and NaN equal
// to itself and greater than every other value (PostgreSQL's rule), so every
// value, NaN included, can be filtered for.
template <typename F>
int CompareFloat(F a, F b) {
  bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan || b_nan) return a_nan == b_nan ? 0 : (a_nan ? 1 : -1);
  return a < b ? -1 : (a > b ? 1 : 0);
}

template <typename T>
int Three(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// -1/0/1, or nullopt when the two values are not of the same comparable kind.
std::optional<int> CompareValues(const Value& a, const Value& b) {
  if (a.v.index() != b.v.index()) return std::nullopt;
  switch (a.v.index()) {
    case 0: return 0;
    case 1: return Three(std::get<1>(a.v), std::get<1>(b.v));
    case 2: return Three(std::get<2>(a.v), std::get<2>(b.v));
    case 3: return CompareFloat(std::get<3>(a.v), std::get<3>(b.v));
    case 4: return CompareFloat(std::get<4>(a.v), std::get<4>(b.v));
    case 5: {
      int c = std::string_view(std::get<5>(a.v)).compare(std::get<5>(b.v));  // unsigned bytes, as the tuple order
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    case 6: {
      int c = std::string_view(std::get<6>(a.v).data).compare(std::get<6>(b.v).data);
      return c < 0 ? -1 : (c > 0 ? 1 : 0);
    }
    case 7: return Three(std::get<7>(a.v).index, std::get<7>(b.v).index);
    default: return std::nullopt;
  }
}

bool ConditionHolds(const Condition& c, const Value& field) {
  if (c.value.is_null() || field.is_null()) return c.op == Op::kEq && c.value.is_null() && field.is_null();
  if (c.op == Op::kPrefix) {
    if (const auto* s = std::get_if<std::string>(&field.v)) {
      const auto* p = std::get_if<std::string>(&c.value.v);
      return p != nullptr && std::string_view(*s).starts_with(*p);
    }
    if (const auto* s = std::get_if<schema::Bytes>(&field.v)) {
      const auto* p = std::get_if<schema::Bytes>(&c.value.v);
      return p != nullptr && std::string_view(s->data).starts_with(p->data);
    }
    return false;
  }
  std::optional<int> cmp = CompareValues(field, c.value);
  if (!cmp) return false;
  switch (c.op) {
    case Op::kEq: return *cmp == 0;
    case Op::kGt: return *cmp > 0;
    case Op::kGte: return *cmp >= 0;
    case Op::kLt: return *cmp < 0;
    case Op::kLte: return *cmp <= 0;
    case Op::kPrefix: return false;
  }
  return false;
}

// ---------------------------------------------------------------------------
// JSON output


void AppendJsonDouble(std::string* out, double d) {
  if (std::isnan(d)) {
    out->append("\"NaN\"");
  } else if (std::isinf(d)) {
    out->append(d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  } else if (d == 0 && std::signbit(d)) {
    out->append("-0.0");
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", d);  // shortest form that reads back exactly
  }
}

void AppendJsonValue(std::string* out, const Type* type, const Value& value) {
  switch (value.v.index()) {
    case 0: out->append("null"); break;
    case 1: out->append(std::get<1>(value.v) ? "true" : "false"); break;
    case 2: fmt::format_to(std::back_inserter(*out), "{}", std::get<2>(value.v)); break;
    // A float is written as the double it widens to exactly, so it reads back bit for bit.
    case 3: AppendJsonDouble(out, static_cast<double>(std::get<3>(value.v))); break;
    case 4: AppendJsonDouble(out, std::get<4>(value.v)); break;
    case 5: AppendJsonString(out, std::get<5>(value.v)); break;
    case 6: {
      const std::string& data = std::get<6>(value.v).data;
      if (type != nullptr && type->kind == Kind::kString && type->logical == Logical::kUuid && data.size() == 16) {
        AppendJsonString(out, Uuid::FromBytes(data)->ToString());
      } else {
        AppendJsonString(out, Base64Encode(data));
      }
      break;
    }
    case 7: {
      int32_t index = std::get<7>(value.v).index;
      if (type != nullptr && index >= 0 && static_cast<size_t>(index) < type->symbols.size()) {
        AppendJsonString(out, type->symbols[index]);
      } else {
        fmt::format_to(std::back_inserter(*out), "{}", index);
      }
      break;
    }
    default: out->append("null"); break;
  }
}

}  // namespace

// ---------------------------------------------------------------------------

Result<Filter> ParseFilter(const schema::Schema& schema, std::string_view json) {
  Filter filter;
  size_t first = json.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return filter;
  json.remove_prefix(first);

  thread_local simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(json.data(), json.size()).get(root); error) {
    return InvalidArgument("filter is not valid JSON: {}", simdjson::error_message(error));
  }
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    return InvalidArgument("filter must be a JSON object mapping fields to a value or to {{operator: value}}, "
                           "got {}",
                           JsonTypeName(root));
  }
  for (simdjson::dom::key_value_pair member : object) {
    const std::string_view name = member.key;
    for (const FieldFilter& seen : filter.fields) {
      if (seen.field == name) return InvalidArgument("filter on '{}': field given more than once", name);
    }
    const int index = schema.FieldIndex(name);
    if (index < 0) {
      return InvalidArgument("filter on '{}': unknown field (fields: {})", name.substr(0, 128), FieldList(schema));
    }
    const Type& type = *schema.fields()[index].type;
    if (!IsFilterable(type)) {
      if (type.logical == Logical::kDecimal) {
        return InvalidArgument("filter on '{}': decimal fields are not filterable", name);
      }
      return InvalidArgument("filter on '{}': {} fields cannot be filtered (only primitive fields can)", name,
                             TypeName(type));
    }
    FieldFilter field{std::string(name), index, {}};
    simdjson::dom::object ops;
    if (member.value.get_object().get(ops) == simdjson::SUCCESS) {
      for (simdjson::dom::key_value_pair op_member : ops) {
        std::optional<Op> op = ParseOp(op_member.key);
        if (!op) {
          return InvalidArgument("filter on '{}': unknown operator '{}' (valid: {})", name,
                                 op_member.key.substr(0, 64), kValidOperators);
        }
        if (field.conditions.size() == 2) {
          return InvalidArgument("filter on '{}': at most two operators (a lower and an upper bound)", name);
        }
        AQ_ASSIGN_OR_RETURN(Value value, ParseOperand(name, type, *op, op_member.value));
        field.conditions.push_back(Condition{*op, std::move(value)});
      }
      if (field.conditions.empty()) {
        return InvalidArgument("filter on '{}': no operator given (valid: {})", name, kValidOperators);
      }
      if (field.conditions.size() == 2) {
        Op a = field.conditions[0].op, b = field.conditions[1].op;
        if (!((IsLower(a) && IsUpper(b)) || (IsUpper(a) && IsLower(b)))) {
          return InvalidArgument("filter on '{}': invalid operator pair {} and {}: two operators must be a lower "
                                 "bound (_gt or _gte) and an upper bound (_lt or _lte)",
                                 name, OpName(a), OpName(b));
        }
      }
    } else {
      AQ_ASSIGN_OR_RETURN(Value value, ParseOperand(name, type, Op::kEq, member.value));
      field.conditions.push_back(Condition{Op::kEq, std::move(value)});
    }
    filter.fields.push_back(std::move(field));
  }
  return filter;
}

bool KeyRange::Contains(std::string_view key) const {
  return key >= std::string_view(start) && (end.empty() || key < std::string_view(end));
}

bool KeyRange::IsEmpty() const { return !end.empty() && start >= end; }

Result<QueryPlan> PlanFilter(const schema::Schema& schema, const Filter& filter) {
  for (const FieldFilter& f : filter.fields) {
    if (f.field_index < 0 || static_cast<size_t>(f.field_index) >= schema.fields().size()) {
      return InvalidArgument("filter on '{}': field index {} is not in the schema", f.field, f.field_index);
    }
  }
  std::vector<bool> covered(filter.fields.size(), false);
  auto find = [&](int field_index) -> int {
    for (size_t i = 0; i < filter.fields.size(); ++i) {
      if (filter.fields[i].field_index == field_index) return static_cast<int>(i);
    }
    return -1;
  };

  QueryPlan plan;
  size_t equal_fields = 0;  // leading key fields with one _eq
  std::string prefix;  // the packed equality prefix ("parent")
  std::optional<KeyRange> range;
  for (const schema::KeyField& key : schema.key()) {
    int i = find(key.field_index);
    if (i < 0) break;  // a missing key field ends the walk; later conditions stay residual
    const FieldFilter& f = filter.fields[i];
    if (f.conditions.empty()) break;
    if (f.conditions.size() == 1 && f.conditions[0].op == Op::kEq) {
      Status status = AppendKeyValue(&prefix, *key.type, f.conditions[0].value);
      if (!status.ok()) return status.WithContext(fmt::format("filter on '{}'", f.field));
      covered[i] = true;
      ++equal_fields;
      continue;
    }
    bool all_bounds = true;
    for (const Condition& c : f.conditions) all_bounds &= IsLower(c.op) || IsUpper(c.op);
    if (f.conditions.size() == 1 && f.conditions[0].op == Op::kPrefix) {
      const auto* bytes = std::get_if<schema::Bytes>(&f.conditions[0].value.v);
      const auto* text = std::get_if<std::string>(&f.conditions[0].value.v);
      if (!IsPrefixable(*key.type) || (bytes == nullptr && text == nullptr)) break;
      // The packed value without its 0x00 terminator: every value extending it
      // packs to a string starting with exactly these bytes.
      std::string packed = prefix;
      if (key.type->kind == Kind::kString) {
        if (text == nullptr) break;
        AppendString(&packed, *text);
      } else {
        if (bytes == nullptr) break;
        AppendBytes(&packed, bytes->data);
      }
      packed.pop_back();
      range = KeyRange{packed, PrefixSuccessor(packed)};
      covered[i] = true;
      break;
    }
    if (!all_bounds) break;
    KeyRange r{prefix, ElementsUpperBound(prefix)};
    for (const Condition& c : f.conditions) {
      std::string packed = prefix;
      Status status = AppendKeyValue(&packed, *key.type, c.value);
      if (!status.ok()) return status.WithContext(fmt::format("filter on '{}'", f.field));
      // Keys whose field equals v are packed(v) followed by the next element's
      // type code (< 0xFF) or nothing, so packed(v) + 0xFF lies above all of
      // them and below every greater value, including strings that extend v
      // with NUL bytes (which pack to packed(v) 0xFF ...).
      std::string after = packed + '\xFF';
      auto raise_start = [&](std::string s) {
        if (s > r.start) r.start = std::move(s);
      };
      auto lower_end = [&](std::string s) {
        if (r.end.empty() || s < r.end) r.end = std::move(s);
      };
      switch (c.op) {
        case Op::kGt: raise_start(std::move(after)); break;
        case Op::kGte: raise_start(std::move(packed)); break;
        case Op::kLt: lower_end(std::move(packed)); break;
        case Op::kLte: lower_end(std::move(after)); break;
        default: break;
      }
    }
    range = std::move(r);
    covered[i] = true;
    break;
  }
  if (range) {
    plan.range = std::move(*range);
  } else {
    plan.range = KeyRange{prefix, ElementsUpperBound(prefix)};
    // Every key field pinned: the range holds one key, `prefix` itself.
    plan.point = !schema.key().empty() && equal_fields == schema.key().size();
  }
  for (size_t i = 0; i < filter.fields.size(); ++i) {
    if (!covered[i]) plan.residual.fields.push_back(filter.fields[i]);
  }
  return plan;
}

bool Matches(const schema::Schema& schema, const Filter& filter, const schema::Value& record) {
  if (record.v.index() != kRecordValueIndex) return false;
  const auto& fields = std::get<kRecordValueIndex>(record.v);
  for (const FieldFilter& f : filter.fields) {
    if (f.field_index < 0 || static_cast<size_t>(f.field_index) >= fields.size()) return false;
    const Value& field = fields[f.field_index];
    for (const Condition& c : f.conditions) {
      if (!ConditionHolds(c, field)) return false;
    }
  }
  return true;
}

std::string FilterToJson(const schema::Schema& schema, const Filter& filter) {
  std::string out = "{";
  for (size_t i = 0; i < filter.fields.size(); ++i) {
    const FieldFilter& f = filter.fields[i];
    const Type* type = nullptr;
    std::string_view name = f.field;
    if (f.field_index >= 0 && static_cast<size_t>(f.field_index) < schema.fields().size()) {
      type = schema.fields()[f.field_index].type.get();
      name = schema.fields()[f.field_index].name;
    }
    if (i > 0) out.push_back(',');
    AppendJsonString(&out, name);
    out.push_back(':');
    if (f.conditions.size() == 1 && f.conditions[0].op == Op::kEq) {
      AppendJsonValue(&out, type, f.conditions[0].value);
      continue;
    }
    out.push_back('{');
    for (size_t j = 0; j < f.conditions.size(); ++j) {
      if (j > 0) out.push_back(',');
      AppendJsonString(&out, OpName(f.conditions[j].op));
      out.push_back(':');
      AppendJsonValue(&out, type, f.conditions[j].value);
    }
    out.push_back('}');
  }
  out.push_back('}');
  return out;
}

}  // namespace aquifer::keys
