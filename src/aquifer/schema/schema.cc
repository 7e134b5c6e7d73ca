#include "aquifer/schema/schema.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "aquifer/schema/internal.h"

namespace aquifer::schema {
namespace {

using nlohmann::json;

constexpr int kMaxSchemaDepth = 64;
constexpr int kMaxFixedSize = 1 << 24;

bool IsValidName(std::string_view name) {
  if (name.empty()) return false;
  auto head = static_cast<unsigned char>(name[0]);
  if (!(std::isalpha(head) || head == '_')) return false;
  for (char c : name) {
    auto uc = static_cast<unsigned char>(c);
    if (!(std::isalnum(uc) || uc == '_') || uc >= 0x80) return false;
  }
  return true;
}

bool IsValidFullName(std::string_view name) {
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    if (!IsValidName(name.substr(start, dot == std::string_view::npos ? dot : dot - start))) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

std::string Prefix(const std::string& path) { return path.empty() ? std::string() : path + ": "; }

// Largest decimal precision an n-byte two's complement integer always holds.
int MaxFixedPrecision(int size) {
  if (size <= 0) return 0;
  return static_cast<int>(std::floor((8.0 * size - 1) * std::log10(2.0)));
}

// Maximum nesting of [ and { in JSON text, ignoring strings; -1 if unbalanced.
int JsonDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t idx = 0; idx < text.size(); ++idx) {
    char c = text[idx];
    if (in_string) {
      if (c == '\\') {
        ++idx;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

class Parser {
 public:
  Result<TypePtr> ParseTopLevel(const json& j) {
    if (!j.is_object() || !j.contains("type") || j["type"] != "record") {
      return InvalidArgument("top-level schema must be a record, got {}", Brief(j));
    }
    return ParseType(j, "", "", 0);
  }

 private:
  static std::string Brief(const json& j) {
    std::string text = j.dump();
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
  }

  // Resolves `name` (short or full) against namespace `ns` and the types defined so far.
  Result<TypePtr> Lookup(const std::string& name, const std::string& ns, const std::string& path) {
    std::string full = name.find('.') == std::string::npos && !ns.empty() ? ns + "." + name : name;
    const std::string* candidates[] = {&full, &name};
    for (const std::string* candidate : candidates) {
      if (in_progress_.count(*candidate) != 0) {
        return InvalidArgument("{}recursive type '{}' is not supported", Prefix(path), *candidate);
      }
      auto it = named_.find(*candidate);
      if (it != named_.end()) return it->second;
    }
    return InvalidArgument("{}unknown type '{}'", Prefix(path), name);
  }

  Result<TypePtr> ParseType(const json& j, const std::string& path, const std::string& ns,
                            int depth) {
    if (depth > kMaxSchemaDepth) return InvalidArgument("{}schema nested too deeply", Prefix(path));
    if (j.is_array()) return ParseUnion(j, path, ns, depth);
    if (j.is_string()) return ParseNamedOrPrimitive(j.get<std::string>(), path, ns);
    if (!j.is_object()) return InvalidArgument("{}invalid type {}", Prefix(path), Brief(j));
    auto type_it = j.find("type");
    if (type_it == j.end()) return InvalidArgument("{}type object has no \"type\"", Prefix(path));
    if (!type_it->is_string()) {
      // {"type": {...}} or {"type": [...]}: a wrapped type, allowed only bare.
      if (j.contains("logicalType")) {
        return InvalidArgument("{}logicalType needs a primitive \"type\"", Prefix(path));
      }
      return ParseType(*type_it, path, ns, depth + 1);
    }
    const std::string type_name = type_it->get<std::string>();
    std::string logical;
    if (auto it = j.find("logicalType"); it != j.end()) {
      if (!it->is_string()) return InvalidArgument("{}logicalType must be a string", Prefix(path));
      logical = it->get<std::string>();
    }
    if (type_name == "record") return ParseRecord(j, path, ns, depth, logical);
    if (type_name == "enum") return ParseEnum(j, path, ns, logical);
    if (type_name == "fixed") return ParseFixed(j, path, ns, logical);
    if (type_name == "array") {
      if (!logical.empty()) return UnsupportedLogical(logical, path);
      auto items_it = j.find("items");
      if (items_it == j.end()) return InvalidArgument("{}array has no \"items\"", Prefix(path));
      AQ_ASSIGN_OR_RETURN(TypePtr items, ParseType(*items_it, path + "[]", ns, depth + 1));
      auto type = std::make_shared<Type>();
      type->kind = Kind::kArray;
      type->items = std::move(items);
      return TypePtr(std::move(type));
    }
    if (type_name == "map") return InvalidArgument("{}map types are not supported", Prefix(path));
    AQ_ASSIGN_OR_RETURN(TypePtr base, ParseNamedOrPrimitive(type_name, path, ns));
    if (logical.empty()) return base;
    if (base->kind == Kind::kRecord || base->kind == Kind::kEnum || base->kind == Kind::kFixed) {
      return InvalidArgument("{}logicalType '{}' cannot annotate a reference to '{}'", Prefix(path),
                             logical, base->name);
    }
    auto type = std::make_shared<Type>(*base);
    if (logical == "decimal") {
      if (type->kind != Kind::kBytes) return WrongLogicalBase(logical, "bytes or fixed", path);
      AQ_RETURN_IF_ERROR(ParseDecimal(j, path, 38, "bytes", type.get()));
    } else if (logical == "uuid") {
      if (type->kind != Kind::kString) return WrongLogicalBase(logical, "string", path);
      type->logical = Logical::kUuid;
    } else if (logical == "timestamp-millis") {
      if (type->kind != Kind::kLong) return WrongLogicalBase(logical, "long", path);
      type->logical = Logical::kTimestampMillis;
    } else {
      return UnsupportedLogical(logical, path);
    }
    return TypePtr(std::move(type));
  }

  static Status UnsupportedLogical(const std::string& logical, const std::string& path) {
    return InvalidArgument("{}unsupported logical type '{}'", Prefix(path), logical);
  }
  static Status WrongLogicalBase(const std::string& logical, std::string_view base,
                                 const std::string& path) {
    return InvalidArgument("{}logical type '{}' must annotate {}", Prefix(path), logical, base);
  }

  Status ParseDecimal(const json& j, const std::string& path, int max_precision,
                      std::string_view base, Type* type) {
    auto precision_it = j.find("precision");
    if (precision_it == j.end() || !precision_it->is_number_integer()) {
      return InvalidArgument("{}decimal needs an integer \"precision\"", Prefix(path));
    }
    int64_t precision = precision_it->get<int64_t>();
    if (precision < 1 || precision > max_precision) {
      return InvalidArgument("{}decimal precision {} out of range 1..{} for {}", Prefix(path),
                             precision, max_precision, base);
    }
    int64_t scale = 0;
    if (auto scale_it = j.find("scale"); scale_it != j.end()) {
      if (!scale_it->is_number_integer()) {
        return InvalidArgument("{}decimal \"scale\" must be an integer", Prefix(path));
      }
      scale = scale_it->get<int64_t>();
    }
    if (scale < 0 || scale > precision) {
      return InvalidArgument("{}decimal scale {} out of range 0..{} (the precision)", Prefix(path),
                             scale, precision);
    }
    type->logical = Logical::kDecimal;
    type->precision = static_cast<int32_t>(precision);
    type->scale = static_cast<int32_t>(scale);
    return Status::OK();
  }

  Result<TypePtr> ParseNamedOrPrimitive(const std::string& name, const std::string& path,
                                        const std::string& ns) {
    static const std::map<std::string, Kind, std::less<>> kPrimitives = {
        {"boolean", Kind::kBoolean}, {"int", Kind::kInt},       {"long", Kind::kLong},
        {"float", Kind::kFloat},     {"double", Kind::kDouble}, {"string", Kind::kString},
        {"bytes", Kind::kBytes},
    };
    if (auto it = kPrimitives.find(name); it != kPrimitives.end()) {
      auto type = std::make_shared<Type>();
      type->kind = it->second;
      return TypePtr(std::move(type));
    }
    if (name == "null") return InvalidArgument("{}a field cannot be only null", Prefix(path));
    if (name == "map") return InvalidArgument("{}map types are not supported", Prefix(path));
    if (name == "record" || name == "enum" || name == "fixed" || name == "array") {
      return InvalidArgument("{}type '{}' must be written as an object", Prefix(path), name);
    }
    return Lookup(name, ns, path);
  }

  Result<TypePtr> ParseUnion(const json& j, const std::string& path, const std::string& ns,
                             int depth) {
    int null_index = -1;
    for (size_t idx = 0; idx < j.size(); ++idx) {
      if (j[idx].is_string() && j[idx] == "null") {
        if (null_index >= 0) return InvalidArgument("{}union has \"null\" twice", Prefix(path));
        null_index = static_cast<int>(idx);
      }
    }
    if (j.size() != 2 || null_index < 0) {
      return InvalidArgument(
          "{}unsupported union {}: only two-branch nullable unions [\"null\", T] are supported",
          Prefix(path), Brief(j));
    }
    const json& branch = j[1 - null_index];
    if (branch.is_array()) return InvalidArgument("{}nested unions are not supported", Prefix(path));
    AQ_ASSIGN_OR_RETURN(TypePtr inner, ParseType(branch, path, ns, depth + 1));
    auto type = std::make_shared<Type>(*inner);
    type->nullable = true;
    type->null_branch = null_index;
    return TypePtr(std::move(type));
  }

  // Name, namespace and full name of a named type; registers nothing.
  Result<std::pair<std::string, std::string>> NamedTypeName(const json& j, const std::string& path,
                                                            const std::string& ns,
                                                            std::string_view what) {
    auto name_it = j.find("name");
    if (name_it == j.end() || !name_it->is_string()) {
      return InvalidArgument("{}{} needs a \"name\"", Prefix(path), what);
    }
    std::string name = name_it->get<std::string>();
    std::string type_ns = ns;
    if (auto ns_it = j.find("namespace"); ns_it != j.end() && !ns_it->is_null()) {
      if (!ns_it->is_string()) return InvalidArgument("{}namespace must be a string", Prefix(path));
      type_ns = ns_it->get<std::string>();
      if (!type_ns.empty() && !IsValidFullName(type_ns)) {
        return InvalidArgument("{}invalid namespace '{}': Avro names match [A-Za-z_][A-Za-z0-9_]*",
                               Prefix(path), type_ns);
      }
    }
    if (!IsValidFullName(name)) {
      return InvalidArgument("{}invalid {} name '{}': Avro names match [A-Za-z_][A-Za-z0-9_]*",
                             Prefix(path), what, name);
    }
    std::string full;
    if (name.find('.') != std::string::npos) {
      full = name;
      type_ns = name.substr(0, name.rfind('.'));
    } else {
      full = type_ns.empty() ? name : type_ns + "." + name;
    }
    if (named_.count(full) != 0 || in_progress_.count(full) != 0) {
      return InvalidArgument("{}type '{}' is defined twice", Prefix(path), full);
    }
    static const std::set<std::string, std::less<>> kReserved = {
        "null", "boolean", "int", "long", "float", "double", "string", "bytes"};
    if (kReserved.count(full) != 0) {
      return InvalidArgument("{}{} name '{}' is a primitive type name", Prefix(path), what, full);
    }
    return std::make_pair(full, type_ns);
  }

  Result<TypePtr> ParseRecord(const json& j, const std::string& path, const std::string& ns,
                              int depth, const std::string& logical) {
    if (!logical.empty()) return UnsupportedLogical(logical, path);
    AQ_ASSIGN_OR_RETURN(auto names, NamedTypeName(j, path, ns, "record"));
    auto [full, record_ns] = std::move(names);
    auto fields_it = j.find("fields");
    if (fields_it == j.end() || !fields_it->is_array()) {
      return InvalidArgument("{}record '{}' needs a \"fields\" array", Prefix(path), full);
    }
    if (fields_it->empty()) {
      return InvalidArgument("{}record '{}' has no fields", Prefix(path), full);
    }
    in_progress_.insert(full);
    auto type = std::make_shared<Type>();
    type->kind = Kind::kRecord;
    type->name = full;
    std::set<std::string, std::less<>> seen;
    for (const json& field_json : *fields_it) {
      if (!field_json.is_object()) {
        return InvalidArgument("{}record '{}' has a field that is not an object", Prefix(path), full);
      }
      auto name_it = field_json.find("name");
      if (name_it == field_json.end() || !name_it->is_string()) {
        return InvalidArgument("{}record '{}' has a field without a \"name\"", Prefix(path), full);
      }
      Field field;
      field.name = name_it->get<std::string>();
      std::string field_path = path.empty() ? field.name : path + "." + field.name;
      if (field.name.starts_with("__") || field.name.starts_with("@")) {
        return InvalidArgument("{}: field names beginning \"__\" or \"@\" are reserved",
                               field_path);
      }
      if (!IsValidName(field.name)) {
        return InvalidArgument("{}: invalid field name: Avro names match [A-Za-z_][A-Za-z0-9_]*",
                               field_path);
      }
      if (!seen.insert(field.name).second) {
        return InvalidArgument("{}: duplicate field name in record '{}'", field_path, full);
      }
      auto type_it = field_json.find("type");
      if (type_it == field_json.end()) return InvalidArgument("{}: field has no \"type\"", field_path);
      AQ_ASSIGN_OR_RETURN(field.type, ParseType(*type_it, field_path, record_ns, depth + 1));
      if (auto doc_it = field_json.find("doc"); doc_it != field_json.end() && doc_it->is_string()) {
        field.doc = doc_it->get<std::string>();
      }
      if (auto default_it = field_json.find("default"); default_it != field_json.end()) {
        AQ_ASSIGN_OR_RETURN(Value value, DefaultValue(*default_it, *field.type, field_path, true));
        field.default_json = default_it->dump();
        field.default_value = std::make_shared<const Value>(std::move(value));
      }
      type->fields.push_back(std::move(field));
    }
    in_progress_.erase(full);
    TypePtr result = std::move(type);
    named_[full] = result;
    return result;
  }

  Result<TypePtr> ParseEnum(const json& j, const std::string& path, const std::string& ns,
                            const std::string& logical) {
    if (!logical.empty()) return UnsupportedLogical(logical, path);
    AQ_ASSIGN_OR_RETURN(auto names, NamedTypeName(j, path, ns, "enum"));
    auto symbols_it = j.find("symbols");
    if (symbols_it == j.end() || !symbols_it->is_array() || symbols_it->empty()) {
      return InvalidArgument("{}enum '{}' needs a non-empty \"symbols\" array", Prefix(path),
                             names.first);
    }
    auto type = std::make_shared<Type>();
    type->kind = Kind::kEnum;
    type->name = names.first;
    std::set<std::string, std::less<>> seen;
    for (const json& symbol : *symbols_it) {
      if (!symbol.is_string() || !IsValidName(symbol.get<std::string>())) {
        return InvalidArgument("{}enum '{}' has invalid symbol {}: symbols match [A-Za-z_][A-Za-z0-9_]*",
                               Prefix(path), names.first, Brief(symbol));
      }
      if (!seen.insert(symbol.get<std::string>()).second) {
        return InvalidArgument("{}enum '{}' has duplicate symbol '{}'", Prefix(path), names.first,
                               symbol.get<std::string>());
      }
      type->symbols.push_back(symbol.get<std::string>());
    }
    if (auto default_it = j.find("default"); default_it != j.end()) {
      if (!default_it->is_string() || seen.count(default_it->get<std::string>()) == 0) {
        return InvalidArgument("{}enum '{}' default {} is not one of its symbols", Prefix(path),
                               names.first, Brief(*default_it));
      }
    }
    TypePtr result = std::move(type);
    named_[names.first] = result;
    return result;
  }

  Result<TypePtr> ParseFixed(const json& j, const std::string& path, const std::string& ns,
                             const std::string& logical) {
    AQ_ASSIGN_OR_RETURN(auto names, NamedTypeName(j, path, ns, "fixed"));
    auto size_it = j.find("size");
    if (size_it == j.end() || !size_it->is_number_integer()) {
      return InvalidArgument("{}fixed '{}' needs an integer \"size\"", Prefix(path), names.first);
    }
    int64_t size = size_it->get<int64_t>();
    if (size < 1 || size > kMaxFixedSize) {
      return InvalidArgument("{}fixed '{}' size {} out of range 1..{}", Prefix(path), names.first,
                             size, kMaxFixedSize);
    }
    auto type = std::make_shared<Type>();
    type->kind = Kind::kFixed;
    type->name = names.first;
    type->fixed_size = static_cast<int32_t>(size);
    if (logical == "decimal") {
      AQ_RETURN_IF_ERROR(ParseDecimal(j, path, MaxFixedPrecision(type->fixed_size),
                                      fmt::format("fixed({})", size), type.get()));
    } else if (!logical.empty()) {
      return UnsupportedLogical(logical, path);
    }
    TypePtr result = std::move(type);
    named_[names.first] = result;
    return result;
  }

  // Converts an Avro JSON default to a Value. `outer` applies the union rule:
  // a nullable field's default must match the union's first branch.
  Result<Value> DefaultValue(const json& j, const Type& type, const std::string& path, bool outer) {
    auto mismatch = [&]() {
      return InvalidArgument("{}: default {} does not match type {}", path, Brief(j),
                             type.Describe());
    };
    Value value;
    if (type.nullable) {
      if (type.null_branch == 0) {
        if (!j.is_null()) {
          return InvalidArgument(
              "{}: default {} must be null: Avro requires a union default to match the first "
              "branch (\"null\")",
              path, Brief(j));
        }
        return value;
      }
      if (j.is_null()) {
        return InvalidArgument(
            "{}: default null must match the first branch of the union ({}); put \"null\" first",
            path, Describe(type, false));
      }
    }
    switch (type.kind) {
      case Kind::kBoolean:
        if (!j.is_boolean()) return mismatch();
        value.v = j.get<bool>();
        break;
      case Kind::kInt:
      case Kind::kLong: {
        if (!j.is_number_integer()) return mismatch();
        if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
          return mismatch();
        }
        int64_t v = j.get<int64_t>();
        if (type.kind == Kind::kInt && (v < INT32_MIN || v > INT32_MAX)) return mismatch();
        value.v = v;
        break;
      }
      case Kind::kFloat: {
        if (!j.is_number()) return mismatch();
        double v = j.get<double>();
        if (std::isfinite(v) && std::fabs(v) >= 0x1.ffffffp+127) return mismatch();
        value.v = static_cast<float>(v);
        break;
      }
      case Kind::kDouble:
        if (!j.is_number()) return mismatch();
        value.v = j.get<double>();
        break;
      case Kind::kString: {
        if (!j.is_string()) return mismatch();
        if (type.logical == Logical::kUuid) {
          std::string raw;
          if (!internal::ParseUuidText(j.get<std::string>(), &raw)) return mismatch();
          value.v = Bytes{std::move(raw)};
        } else {
          value.v = j.get<std::string>();
        }
        break;
      }
      case Kind::kBytes:
      case Kind::kFixed: {
        if (!j.is_string()) return mismatch();
        // Avro JSON: each code point 0..255 is one byte.
        std::string utf8 = j.get<std::string>();
        std::string raw;
        for (size_t idx = 0; idx < utf8.size(); ++idx) {
          auto c = static_cast<uint8_t>(utf8[idx]);
          if (c < 0x80) {
            raw.push_back(static_cast<char>(c));
          } else if ((c & 0xe0) == 0xc0 && c <= 0xc3 && idx + 1 < utf8.size()) {
            raw.push_back(static_cast<char>(((c & 0x1f) << 6) | (static_cast<uint8_t>(utf8[++idx]) & 0x3f)));
          } else {
            return InvalidArgument("{}: default for {} must use code points 0..255 only", path,
                                   type.Describe());
          }
        }
        if (type.kind == Kind::kFixed && raw.size() != static_cast<size_t>(type.fixed_size)) {
          return InvalidArgument("{}: default has {} bytes, {} needs {}", path, raw.size(),
                                 type.Describe(), type.fixed_size);
        }
        if (type.logical == Logical::kDecimal) {
          if (raw.empty()) return mismatch();
          int digits = 0;
          internal::DecimalBytesToText(raw, type.scale, &digits);
          if (digits > type.precision) return mismatch();
          if (type.kind == Kind::kBytes) raw = internal::MinimalTwosComplement(raw);
        }
        value.v = Bytes{std::move(raw)};
        break;
      }
      case Kind::kEnum: {
        if (!j.is_string()) return mismatch();
        const std::string symbol = j.get<std::string>();
        for (size_t idx = 0; idx < type.symbols.size(); ++idx) {
          if (type.symbols[idx] == symbol) {
            value.v = EnumSymbol{static_cast<int32_t>(idx)};
            return value;
          }
        }
        return mismatch();
      }
      case Kind::kArray: {
        if (!j.is_array()) return mismatch();
        auto& array = value.v.emplace<Value::kArrayIndex>();
        for (size_t idx = 0; idx < j.size(); ++idx) {
          AQ_ASSIGN_OR_RETURN(Value item, DefaultValue(j[idx], *type.items,
                                                       fmt::format("{}[{}]", path, idx), false));
          array.push_back(std::move(item));
        }
        break;
      }
      case Kind::kRecord: {
        if (!j.is_object()) return mismatch();
        auto& record = value.v.emplace<Value::kRecordIndex>();
        for (const Field& field : type.fields) {
          std::string field_path = path + "." + field.name;
          auto it = j.find(field.name);
          if (it != j.end()) {
            AQ_ASSIGN_OR_RETURN(Value item, DefaultValue(*it, *field.type, field_path, true));
            record.push_back(std::move(item));
          } else if (field.default_value != nullptr) {
            record.push_back(*field.default_value);
          } else {
            return InvalidArgument("{}: default has no value for field '{}'", path, field.name);
          }
        }
        for (auto it = j.begin(); it != j.end(); ++it) {
          bool known = false;
          for (const Field& field : type.fields) known = known || field.name == it.key();
          if (!known) return InvalidArgument("{}: default has unknown field '{}'", path, it.key());
        }
        break;
      }
    }
    (void)outer;
    return value;
  }

  static std::string Describe(const Type& type, bool nullable) {
    Type copy = type;
    copy.nullable = nullable;
    return copy.Describe();
  }

  std::map<std::string, TypePtr, std::less<>> named_;
  std::set<std::string, std::less<>> in_progress_;
};

// Canonical Avro JSON: full names, named types defined once then referenced,
// union branch order preserved (it decides the binary encoding).
json ToAvroJson(const Type& type, std::set<std::string>* defined, bool with_null) {
  json out;
  if (type.nullable && with_null) {
    json inner = ToAvroJson(type, defined, false);
    out = json::array();
    if (type.null_branch == 0) {
      out.push_back("null");
      out.push_back(std::move(inner));
    } else {
      out.push_back(std::move(inner));
      out.push_back("null");
    }
    return out;
  }
  bool named = type.kind == Kind::kRecord || type.kind == Kind::kEnum || type.kind == Kind::kFixed;
  if (named && defined->count(type.name) != 0) return type.name;
  switch (type.kind) {
    case Kind::kBoolean: return "boolean";
    case Kind::kInt: return "int";
    case Kind::kLong:
      if (type.logical == Logical::kTimestampMillis) {
        return json{{"type", "long"}, {"logicalType", "timestamp-millis"}};
      }
      return "long";
    case Kind::kFloat: return "float";
    case Kind::kDouble: return "double";
    case Kind::kString:
      if (type.logical == Logical::kUuid) return json{{"type", "string"}, {"logicalType", "uuid"}};
      return "string";
    case Kind::kBytes:
      if (type.logical == Logical::kDecimal) {
        return json{{"type", "bytes"}, {"logicalType", "decimal"}, {"precision", type.precision},
                    {"scale", type.scale}};
      }
      return "bytes";
    case Kind::kFixed:
      defined->insert(type.name);
      out = json{{"type", "fixed"}, {"name", type.name}, {"size", type.fixed_size}};
      if (type.logical == Logical::kDecimal) {
        out["logicalType"] = "decimal";
        out["precision"] = type.precision;
        out["scale"] = type.scale;
      }
      return out;
    case Kind::kEnum:
      defined->insert(type.name);
      return json{{"type", "enum"}, {"name", type.name}, {"symbols", type.symbols}};
    case Kind::kArray:
      return json{{"type", "array"}, {"items", ToAvroJson(*type.items, defined, true)}};
    case Kind::kRecord: {
      defined->insert(type.name);
      json fields = json::array();
      for (const Field& field : type.fields) {
        json field_json = {{"name", field.name}, {"type", ToAvroJson(*field.type, defined, true)}};
        if (field.default_json) field_json["default"] = json::parse(*field.default_json);
        if (!field.doc.empty()) field_json["doc"] = field.doc;
        fields.push_back(std::move(field_json));
      }
      return json{{"type", "record"}, {"name", type.name}, {"fields", std::move(fields)}};
    }
  }
  return out;
}

bool IsKeyType(const Type& type) {
  if (type.nullable) return false;
  switch (type.kind) {
    case Kind::kString: return type.logical == Logical::kNone || type.logical == Logical::kUuid;
    case Kind::kBytes:
    case Kind::kFixed: return type.logical == Logical::kNone;
    case Kind::kInt: return true;
    case Kind::kLong: return true;
    default: return false;
  }
}

}  // namespace

std::string Type::Describe() const {
  std::string base;
  switch (kind) {
    case Kind::kBoolean: base = "boolean"; break;
    case Kind::kInt: base = "int"; break;
    case Kind::kLong: base = logical == Logical::kTimestampMillis ? "timestamp-millis" : "long"; break;
    case Kind::kFloat: base = "float"; break;
    case Kind::kDouble: base = "double"; break;
    case Kind::kString: base = logical == Logical::kUuid ? "uuid" : "string"; break;
    case Kind::kBytes:
      base = logical == Logical::kDecimal ? fmt::format("decimal({},{})", precision, scale) : "bytes";
      break;
    case Kind::kFixed:
      base = logical == Logical::kDecimal ? fmt::format("decimal({},{})", precision, scale)
                                          : fmt::format("fixed {}[{}]", name, fixed_size);
      break;
    case Kind::kEnum: base = "enum " + name; break;
    case Kind::kArray: base = "array<" + (items ? items->Describe() : std::string("?")) + ">"; break;
    case Kind::kRecord: base = "record " + name; break;
  }
  return nullable ? "null|" + base : base;
}

Result<std::shared_ptr<const Schema>> Schema::Parse(std::string_view avro_json,
                                                    const std::vector<std::string>& key) {
  if (JsonDepth(avro_json) > kMaxSchemaDepth) {
    return InvalidArgument("schema nested more than {} levels deep", kMaxSchemaDepth);
  }
  json j = json::parse(avro_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("schema is not valid JSON");
  Parser parser;
  auto schema = std::shared_ptr<Schema>(new Schema());
  try {
    AQ_ASSIGN_OR_RETURN(schema->root_, parser.ParseTopLevel(j));
  } catch (const std::exception& e) {
    return InvalidArgument("invalid schema: {}", e.what());
  }
  if (key.empty()) return InvalidArgument("key: at least one key field is required");
  std::set<std::string, std::less<>> seen;
  for (const std::string& name : key) {
    if (!seen.insert(name).second) return InvalidArgument("{}: key field listed twice", name);
    int index = schema->FieldIndex(name);
    if (index < 0) return InvalidArgument("{}: key field is not a top-level field", name);
    const TypePtr& type = schema->fields()[index].type;
    if (type->nullable) {
      return InvalidArgument("{}: key field cannot be nullable ({})", name, type->Describe());
    }
    if (!IsKeyType(*type)) {
      return InvalidArgument(
          "{}: key field must be string, bytes, fixed, int, long, timestamp-millis or uuid, not {}",
          name, type->Describe());
    }
    schema->key_.push_back(KeyField{name, index, type});
  }
  try {
    std::set<std::string> defined;
    schema->avro_json_ = ToAvroJson(*schema->root_, &defined, true).dump();
  } catch (const std::exception& e) {
    return InvalidArgument("invalid schema: {}", e.what());
  }
  return std::shared_ptr<const Schema>(std::move(schema));
}

int Schema::FieldIndex(std::string_view name) const {
  const auto& fields = root_->fields;
  for (size_t idx = 0; idx < fields.size(); ++idx) {
    if (fields[idx].name == name) return static_cast<int>(idx);
  }
  return -1;
}

const Field* Schema::FindField(std::string_view name) const {
  int index = FieldIndex(name);
  return index < 0 ? nullptr : &root_->fields[index];
}

}  // namespace aquifer::schema
