#include "aquifer/schema/codec.h"

#include <simdjson.h>

#include <cmath>
#include <charconv>
#include <cstring>
#include <type_traits>
#include <limits>
#include <string>
#include <utility>

#include "aquifer/base/text.h"
#include "aquifer/schema/internal.h"

namespace aquifer::schema {
namespace {

// A field path built lazily: frames live on the stack of the recursive
// walkers and are turned into "items[3].price" only when an error is reported.
struct PathFrame {
  const PathFrame* parent = nullptr;
  std::string_view name;  // field name, or empty for an array item
  int64_t index = -1;     // array index when name is empty
};

void AppendPath(const PathFrame* frame, std::string* out) {
  if (frame == nullptr) return;
  AppendPath(frame->parent, out);
  if (frame->name.empty() && frame->index >= 0) {
    fmt::format_to(std::back_inserter(*out), "[{}]", frame->index);
  } else {
    if (!out->empty()) out->push_back('.');
    out->append(frame->name);
  }
}

std::string PathString(const PathFrame* frame) {
  std::string out;
  AppendPath(frame, &out);
  return out;
}

std::string WithPath(const PathFrame* frame, std::string_view message) {
  std::string path = PathString(frame);
  return path.empty() ? std::string(message) : path + ": " + std::string(message);
}

// ---------------------------------------------------------------------------
// JSON → Value (simdjson On-Demand).

namespace od = simdjson::ondemand;

constexpr double kFloatOverflow = 0x1.ffffffp+127;  // 2^128 - 2^103

std::string_view JsonTypeName(od::json_type type) {
  switch (type) {
    case od::json_type::array: return "array";
    case od::json_type::object: return "object";
    case od::json_type::number: return "number";
    case od::json_type::string: return "string";
    case od::json_type::boolean: return "boolean";
    case od::json_type::null: return "null";
  }
  return "value";
}

std::string_view TrimToken(std::string_view token) {
  while (!token.empty() && (token.back() == ' ' || token.back() == '\n' || token.back() == '\r' ||
                            token.back() == '\t')) {
    token.remove_suffix(1);
  }
  if (token.size() > 40) token = token.substr(0, 40);
  return token;
}

class JsonReader {
 public:
  explicit JsonReader(std::vector<FieldError>* errors) : errors_(errors) {}

  // Returns false only when the JSON itself is malformed (parsing cannot go on).
  bool ParseValue(od::value json, const Type& type, const PathFrame* path, Value* out) {
    od::json_type json_type;
    if (auto error = json.type().get(json_type)) return Fatal(path, error);
    if (json_type == od::json_type::null) {
      if (type.nullable) {
        out->v = Null{};
      } else {
        FieldErrorAt(path, fmt::format("expected {}, got null", type.Describe()));
      }
      return true;
    }
    switch (type.kind) {
      case Kind::kBoolean: {
        if (json_type != od::json_type::boolean) return Mismatch(path, type, json_type);
        bool v = false;
        if (auto error = json.get_bool().get(v)) return Fatal(path, error);
        out->v = v;
        return true;
      }
      case Kind::kInt:
      case Kind::kLong: return ParseInteger(json, json_type, type, path, out);
      case Kind::kFloat:
      case Kind::kDouble: return ParseFloating(json, json_type, type, path, out);
      case Kind::kString: {
        if (json_type != od::json_type::string) return Mismatch(path, type, json_type);
        std::string_view text;
        if (auto error = json.get_string().get(text)) return Fatal(path, error);
        if (type.logical == Logical::kUuid) {
          std::string raw;
          if (!internal::ParseUuidText(text, &raw)) {
            FieldErrorAt(path, fmt::format("invalid uuid \"{}\"", TrimToken(text)));
            return true;
          }
          out->v = Bytes{std::move(raw)};
        } else {
          out->v = std::string(text);
        }
        return true;
      }
      case Kind::kBytes:
      case Kind::kFixed: {
        if (type.logical == Logical::kDecimal) return ParseDecimal(json, json_type, type, path, out);
        if (json_type != od::json_type::string) return Mismatch(path, type, json_type);
        std::string_view text;
        if (auto error = json.get_string().get(text)) return Fatal(path, error);
        Bytes bytes;
        if (!Base64Decode(text, &bytes.data)) {
          FieldErrorAt(path, "invalid base64");
          return true;
        }
        if (type.kind == Kind::kFixed && bytes.data.size() != static_cast<size_t>(type.fixed_size)) {
          FieldErrorAt(path, fmt::format("expected {} bytes for {}, got {}", type.fixed_size,
                                         type.Describe(), bytes.data.size()));
          return true;
        }
        out->v = std::move(bytes);
        return true;
      }
      case Kind::kEnum: {
        if (json_type != od::json_type::string) return Mismatch(path, type, json_type);
        std::string_view text;
        if (auto error = json.get_string().get(text)) return Fatal(path, error);
        for (size_t idx = 0; idx < type.symbols.size(); ++idx) {
          if (type.symbols[idx] == text) {
            out->v = EnumSymbol{static_cast<int32_t>(idx)};
            return true;
          }
        }
        FieldErrorAt(path, fmt::format("\"{}\" is not a symbol of {}", TrimToken(text), type.Describe()));
        return true;
      }
      case Kind::kArray: {
        if (json_type != od::json_type::array) return Mismatch(path, type, json_type);
        od::array array;
        if (auto error = json.get_array().get(array)) return Fatal(path, error);
        auto& items = out->v.emplace<Value::kArrayIndex>();
        int64_t index = 0;
        for (auto item_result : array) {
          od::value item;
          PathFrame frame{path, {}, index++};
          if (auto error = std::move(item_result).get(item)) return Fatal(&frame, error);
          items.emplace_back();
          if (!ParseValue(item, *type.items, &frame, &items.back())) return false;
        }
        return true;
      }
      case Kind::kRecord: {
        if (json_type != od::json_type::object) return Mismatch(path, type, json_type);
        od::object object;
        if (auto error = json.get_object().get(object)) return Fatal(path, error);
        return ParseRecord(object, type, path, out, {});
      }
    }
    return true;
  }

  bool ParseRecord(od::object& object, const Type& type, const PathFrame* path, Value* out,
                   const std::vector<std::string_view>& ignored) {
    auto& record = out->v.emplace<Value::kRecordIndex>();
    const size_t field_count = type.fields.size();
    record.resize(field_count);
    // Which fields were seen: a bit mask for the usual small record, a vector beyond 64.
    uint64_t seen_mask = 0;
    std::vector<bool> seen_large(field_count > 64 ? field_count : 0);
    auto seen = [&](size_t idx) { return idx < 64 ? ((seen_mask >> idx) & 1) != 0 : bool(seen_large[idx]); };
    auto mark = [&](size_t idx) {
      if (idx < 64) {
        seen_mask |= uint64_t{1} << idx;
      } else {
        seen_large[idx] = true;
      }
    };
    size_t hint = 0;  // members usually arrive in schema order
    for (auto field_result : object) {
      od::field member;
      if (auto error = std::move(field_result).get(member)) return Fatal(path, error);
      std::string_view key;
      if (auto error = member.unescaped_key().get(key)) return Fatal(path, error);
      size_t found = field_count;
      if (hint < field_count && type.fields[hint].name == key) {
        found = hint;
      } else {
        for (size_t idx = 0; idx < field_count; ++idx) {
          if (type.fields[idx].name == key) {
            found = idx;
            break;
          }
        }
      }
      if (found == field_count) {
        bool skip = false;
        for (std::string_view name : ignored) skip = skip || name == key;
        if (!skip) {
          std::string key_copy(key);
          PathFrame frame{path, key_copy, -1};
          FieldErrorAt(&frame, "unknown field");
        }
        continue;
      }
      hint = found + 1;
      PathFrame frame{path, type.fields[found].name, -1};
      if (seen(found)) {
        FieldErrorAt(&frame, "field given twice");
        continue;
      }
      mark(found);
      od::value member_value = member.value();
      if (!ParseValue(member_value, *type.fields[found].type, &frame, &record[found])) return false;
    }
    for (size_t idx = 0; idx < field_count; ++idx) {
      if (seen(idx)) continue;
      const Field& field = type.fields[idx];
      if (field.default_value != nullptr) {
        record[idx] = *field.default_value;
      } else if (field.type->nullable) {
        record[idx].v = Null{};
      } else {
        PathFrame frame{path, field.name, -1};
        FieldErrorAt(&frame, fmt::format("missing required field ({})", field.type->Describe()));
      }
    }
    return true;
  }

  void FieldErrorAt(const PathFrame* path, std::string message) {
    errors_->push_back(FieldError{PathString(path), std::move(message)});
  }

  bool Fatal(const PathFrame* path, simdjson::error_code error) {
    errors_->push_back(
        FieldError{PathString(path), fmt::format("malformed JSON: {}", simdjson::error_message(error))});
    return false;
  }

 private:
  bool Mismatch(const PathFrame* path, const Type& type, od::json_type got) {
    FieldErrorAt(path, fmt::format("expected {}, got {}", type.Describe(), JsonTypeName(got)));
    return true;
  }

  bool ParseInteger(od::value& json, od::json_type json_type, const Type& type,
                    const PathFrame* path, Value* out) {
    if (json_type != od::json_type::number) return Mismatch(path, type, json_type);
    od::number_type number_type;
    if (auto error = json.get_number_type().get(number_type)) return Fatal(path, error);
    std::string_view token = TrimToken(json.raw_json_token());
    if (number_type == od::number_type::floating_point_number) {
      FieldErrorAt(path, fmt::format("expected {}, got non-integer number {}", type.Describe(), token));
      return true;
    }
    int64_t v = 0;
    if (number_type != od::number_type::signed_integer || json.get_int64().get(v) != simdjson::SUCCESS ||
        (type.kind == Kind::kInt && (v < INT32_MIN || v > INT32_MAX))) {
      FieldErrorAt(path, fmt::format("{} is out of range for {}", token, type.Describe()));
      return true;
    }
    out->v = v;
    return true;
  }

  bool ParseFloating(od::value& json, od::json_type json_type, const Type& type,
                     const PathFrame* path, Value* out) {
    double v = 0;
    if (json_type == od::json_type::string) {
      std::string_view text;
      if (auto error = json.get_string().get(text)) return Fatal(path, error);
      if (text == "NaN") {
        v = std::numeric_limits<double>::quiet_NaN();
      } else if (text == "Infinity") {
        v = std::numeric_limits<double>::infinity();
      } else if (text == "-Infinity") {
        v = -std::numeric_limits<double>::infinity();
      } else {
        FieldErrorAt(path, fmt::format("expected {}, got string", type.Describe()));
        return true;
      }
    } else if (json_type == od::json_type::number) {
      if (json.get_double().get(v) != simdjson::SUCCESS || !std::isfinite(v)) {
        FieldErrorAt(path, fmt::format("{} is out of range for {}", TrimToken(json.raw_json_token()),
                                       type.Describe()));
        return true;
      }
    } else {
      return Mismatch(path, type, json_type);
    }
    if (type.kind == Kind::kFloat) {
      // Values up to the midpoint between FLT_MAX and 2^128 round to FLT_MAX
      // (the shortest text of FLT_MAX, 3.4028235e+38, is slightly above it).
      if (std::isfinite(v) && std::fabs(v) >= kFloatOverflow) {
        FieldErrorAt(path, fmt::format("{} is out of range for float", v));
        return true;
      }
      out->v = static_cast<float>(v);
    } else {
      out->v = v;
    }
    return true;
  }

  bool ParseDecimal(od::value& json, od::json_type json_type, const Type& type,
                    const PathFrame* path, Value* out) {
    std::string_view text;
    if (json_type == od::json_type::string) {
      if (auto error = json.get_string().get(text)) return Fatal(path, error);
    } else if (json_type == od::json_type::number) {
      text = json.raw_json_token();
      while (!text.empty() && (text.back() == ' ' || text.back() == '\n' || text.back() == '\r' ||
                               text.back() == '\t')) {
        text.remove_suffix(1);
      }
    } else {
      return Mismatch(path, type, json_type);
    }
    auto bytes = internal::DecimalTextToBytes(text, type.precision, type.scale,
                                              type.kind == Kind::kFixed ? type.fixed_size : 0);
    if (!bytes.ok()) {
      FieldErrorAt(path, fmt::format("{}: {}", type.Describe(), bytes.status().message()));
      return true;
    }
    out->v = Bytes{std::move(bytes).value()};
    return true;
  }

  std::vector<FieldError>* errors_;
};

// ---------------------------------------------------------------------------
// Value → JSON.


template <typename T>
void AppendFloating(T v, std::string* out) {
  if (std::isnan(v)) {
    out->append("\"NaN\"");
  } else if (std::isinf(v)) {
    out->append(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  } else {
    size_t start = out->size();
    fmt::format_to(std::back_inserter(*out), "{}", v);
    // Keep it a floating-point token ("-0" would read back as integer zero).
    if (out->find_first_of(".eE", start) == std::string::npos) out->append(".0");
  }
}

void WriteValue(const Type& type, const Value& value, std::string* out) {
  if (value.is_null()) {
    out->append("null");
    return;
  }
  const auto& v = value.v;
  switch (type.kind) {
    case Kind::kBoolean:
      if (const bool* b = std::get_if<bool>(&v)) {
        out->append(*b ? "true" : "false");
        return;
      }
      break;
    case Kind::kInt:
    case Kind::kLong:
      if (const int64_t* n = std::get_if<int64_t>(&v)) {
        fmt::format_to(std::back_inserter(*out), "{}", *n);
        return;
      }
      break;
    case Kind::kFloat:
      if (const float* f = std::get_if<float>(&v)) {
        AppendFloating(*f, out);
        return;
      }
      break;
    case Kind::kDouble:
      if (const double* d = std::get_if<double>(&v)) {
        AppendFloating(*d, out);
        return;
      }
      break;
    case Kind::kString:
      if (type.logical == Logical::kUuid) {
        if (const Bytes* b = std::get_if<Bytes>(&v); b != nullptr && b->data.size() == 16) {
          out->push_back('"');
          out->append(internal::FormatUuid(b->data));
          out->push_back('"');
          return;
        }
      } else if (const std::string* s = std::get_if<std::string>(&v)) {
        AppendJsonString(out, *s);
        return;
      }
      break;
    case Kind::kBytes:
    case Kind::kFixed:
      if (const Bytes* b = std::get_if<Bytes>(&v)) {
        out->push_back('"');
        if (type.logical == Logical::kDecimal) {
          out->append(internal::DecimalBytesToText(b->data, type.scale));
        } else {
          AppendBase64(out, b->data);
        }
        out->push_back('"');
        return;
      }
      break;
    case Kind::kEnum:
      if (const EnumSymbol* e = std::get_if<EnumSymbol>(&v);
          e != nullptr && e->index >= 0 && static_cast<size_t>(e->index) < type.symbols.size()) {
        AppendJsonString(out, type.symbols[e->index]);
        return;
      }
      break;
    case Kind::kArray:
      if (v.index() == Value::kArrayIndex) {
        out->push_back('[');
        bool first = true;
        for (const Value& item : std::get<Value::kArrayIndex>(v)) {
          if (!first) out->push_back(',');
          first = false;
          WriteValue(*type.items, item, out);
        }
        out->push_back(']');
        return;
      }
      break;
    case Kind::kRecord:
      if (v.index() == Value::kRecordIndex) {
        const auto& record = std::get<Value::kRecordIndex>(v);
        out->push_back('{');
        for (size_t idx = 0; idx < type.fields.size(); ++idx) {
          if (idx > 0) out->push_back(',');
          AppendJsonString(out, type.fields[idx].name);
          out->push_back(':');
          if (idx < record.size()) {
            WriteValue(*type.fields[idx].type, record[idx], out);
          } else {
            out->append("null");
          }
        }
        out->push_back('}');
        return;
      }
      break;
  }
  // Precondition violated (the Value does not match the schema): write null
  // rather than invent data.
  out->append("null");
}

// ---------------------------------------------------------------------------
// Value → Avro binary.

void PutLong(int64_t n, std::string* out) {
  uint64_t z = (static_cast<uint64_t>(n) << 1) ^ static_cast<uint64_t>(n >> 63);
  while (z >= 0x80) {
    out->push_back(static_cast<char>((z & 0x7f) | 0x80));
    z >>= 7;
  }
  out->push_back(static_cast<char>(z));
}

void PutBytes(std::string_view bytes, std::string* out) {
  PutLong(static_cast<int64_t>(bytes.size()), out);
  out->append(bytes);
}

std::string_view AlternativeName(const Value& value) {
  static constexpr std::string_view kNames[] = {"null", "boolean", "integer", "float", "double",
                                                "string", "bytes", "enum symbol", "array", "record"};
  return kNames[value.v.index()];
}

Status EncodeValue(const Type& type, const Value& value, const PathFrame* path, std::string* out) {
  const auto& v = value.v;
  auto mismatch = [&]() {
    return InvalidArgument("{}", WithPath(path, fmt::format("expected {}, got {} value",
                                                             type.Describe(), AlternativeName(value))));
  };
  if (type.nullable) {
    if (value.is_null()) {
      PutLong(type.null_branch, out);
      return Status::OK();
    }
    PutLong(1 - type.null_branch, out);
  } else if (value.is_null()) {
    return mismatch();
  }
  switch (type.kind) {
    case Kind::kBoolean: {
      const bool* b = std::get_if<bool>(&v);
      if (b == nullptr) return mismatch();
      out->push_back(*b ? 1 : 0);
      return Status::OK();
    }
    case Kind::kInt:
    case Kind::kLong: {
      const int64_t* n = std::get_if<int64_t>(&v);
      if (n == nullptr) return mismatch();
      if (type.kind == Kind::kInt && (*n < INT32_MIN || *n > INT32_MAX)) {
        return InvalidArgument("{}", WithPath(path, fmt::format("{} is out of range for int", *n)));
      }
      PutLong(*n, out);
      return Status::OK();
    }
    case Kind::kFloat: {
      const float* f = std::get_if<float>(&v);
      if (f == nullptr) return mismatch();
      uint32_t bits;
      std::memcpy(&bits, f, 4);
      for (int shift = 0; shift < 32; shift += 8) out->push_back(static_cast<char>(bits >> shift));
      return Status::OK();
    }
    case Kind::kDouble: {
      const double* d = std::get_if<double>(&v);
      if (d == nullptr) return mismatch();
      uint64_t bits;
      std::memcpy(&bits, d, 8);
      for (int shift = 0; shift < 64; shift += 8) out->push_back(static_cast<char>(bits >> shift));
      return Status::OK();
    }
    case Kind::kString: {
      if (type.logical == Logical::kUuid) {
        const Bytes* b = std::get_if<Bytes>(&v);
        if (b == nullptr || b->data.size() != 16) return mismatch();
        PutBytes(internal::FormatUuid(b->data), out);
        return Status::OK();
      }
      const std::string* s = std::get_if<std::string>(&v);
      if (s == nullptr) return mismatch();
      PutBytes(*s, out);
      return Status::OK();
    }
    case Kind::kBytes: {
      const Bytes* b = std::get_if<Bytes>(&v);
      if (b == nullptr) return mismatch();
      if (type.logical == Logical::kDecimal && b->data.empty()) {
        return InvalidArgument("{}", WithPath(path, "empty decimal bytes"));
      }
      PutBytes(b->data, out);
      return Status::OK();
    }
    case Kind::kFixed: {
      const Bytes* b = std::get_if<Bytes>(&v);
      if (b == nullptr) return mismatch();
      if (b->data.size() != static_cast<size_t>(type.fixed_size)) {
        return InvalidArgument("{}", WithPath(path, fmt::format("expected {} bytes for {}, got {}",
                                                                 type.fixed_size, type.Describe(),
                                                                 b->data.size())));
      }
      out->append(b->data);
      return Status::OK();
    }
    case Kind::kEnum: {
      const EnumSymbol* e = std::get_if<EnumSymbol>(&v);
      if (e == nullptr) return mismatch();
      if (e->index < 0 || static_cast<size_t>(e->index) >= type.symbols.size()) {
        return InvalidArgument("{}", WithPath(path, fmt::format("enum index {} out of range for {}",
                                                                 e->index, type.Describe())));
      }
      PutLong(e->index, out);
      return Status::OK();
    }
    case Kind::kArray: {
      if (v.index() != Value::kArrayIndex) return mismatch();
      const auto& items = std::get<Value::kArrayIndex>(v);
      if (!items.empty()) {
        PutLong(static_cast<int64_t>(items.size()), out);
        for (size_t idx = 0; idx < items.size(); ++idx) {
          PathFrame frame{path, {}, static_cast<int64_t>(idx)};
          AQ_RETURN_IF_ERROR(EncodeValue(*type.items, items[idx], &frame, out));
        }
      }
      PutLong(0, out);
      return Status::OK();
    }
    case Kind::kRecord: {
      if (v.index() != Value::kRecordIndex) return mismatch();
      const auto& record = std::get<Value::kRecordIndex>(v);
      if (record.size() != type.fields.size()) {
        return InvalidArgument("{}", WithPath(path, fmt::format("{} has {} fields, the value has {}",
                                                                 type.Describe(), type.fields.size(),
                                                                 record.size())));
      }
      for (size_t idx = 0; idx < record.size(); ++idx) {
        PathFrame frame{path, type.fields[idx].name, -1};
        AQ_RETURN_IF_ERROR(EncodeValue(*type.fields[idx].type, record[idx], &frame, out));
      }
      return Status::OK();
    }
  }
  return mismatch();
}

// ---------------------------------------------------------------------------
// Avro binary → Value. Every read is checked against the end of the input.

// Where AvroReader::Decode writes a datum's JSON text.
struct JsonOut {
  std::string* text;
};

class AvroReader {
 public:
  explicit AvroReader(std::string_view data)
      : pos_(reinterpret_cast<const uint8_t*>(data.data())), end_(pos_ + data.size()) {}

  size_t remaining() const { return static_cast<size_t>(end_ - pos_); }

  // Reads one datum of `type` into `out`: a Value, or its JSON text (JsonOut,
  // as WriteJson would write the Value) without building the Value. One
  // reader for both, so both check the input alike.
  template <class Out>
  Status Decode(const Type& type, const PathFrame* path, Out* out) {
    constexpr bool kJson = std::is_same_v<Out, JsonOut>;
    if (type.nullable) {
      int64_t branch = 0;
      AQ_RETURN_IF_ERROR(ReadLong(path, &branch));
      if (branch != 0 && branch != 1) return Corrupt(path, fmt::format("union index {} out of range", branch));
      if (branch == type.null_branch) {
        if constexpr (kJson) {
          out->text->append("null");
        } else {
          out->v = Null{};
        }
        return Status::OK();
      }
    }
    switch (type.kind) {
      case Kind::kBoolean: {
        if (remaining() < 1) return Truncated(path);
        uint8_t b = *pos_++;
        if (b > 1) return Corrupt(path, fmt::format("invalid boolean byte {}", b));
        if constexpr (kJson) {
          out->text->append(b == 1 ? "true" : "false");
        } else {
          out->v = b == 1;
        }
        return Status::OK();
      }
      case Kind::kInt:
      case Kind::kLong: {
        int64_t n = 0;
        AQ_RETURN_IF_ERROR(ReadLong(path, &n));
        if (type.kind == Kind::kInt && (n < INT32_MIN || n > INT32_MAX)) {
          return Corrupt(path, fmt::format("{} is out of range for int", n));
        }
        if constexpr (kJson) {
          char digits[24];
          out->text->append(digits, std::to_chars(digits, digits + sizeof digits, n).ptr);
        } else {
          out->v = n;
        }
        return Status::OK();
      }
      case Kind::kFloat: {
        if (remaining() < 4) return Truncated(path);
        uint32_t bits = 0;
        for (int idx = 0; idx < 4; ++idx) bits |= static_cast<uint32_t>(pos_[idx]) << (8 * idx);
        pos_ += 4;
        float f;
        std::memcpy(&f, &bits, 4);
        if constexpr (kJson) {
          AppendFloating(f, out->text);
        } else {
          out->v = f;
        }
        return Status::OK();
      }
      case Kind::kDouble: {
        if (remaining() < 8) return Truncated(path);
        uint64_t bits = 0;
        for (int idx = 0; idx < 8; ++idx) bits |= static_cast<uint64_t>(pos_[idx]) << (8 * idx);
        pos_ += 8;
        double d;
        std::memcpy(&d, &bits, 8);
        if constexpr (kJson) {
          AppendFloating(d, out->text);
        } else {
          out->v = d;
        }
        return Status::OK();
      }
      case Kind::kString: {
        std::string_view text;
        AQ_RETURN_IF_ERROR(ReadBytes(path, &text));
        if (type.logical == Logical::kUuid) {
          std::string raw;
          if (!internal::ParseUuidText(text, &raw)) return Corrupt(path, "invalid uuid text");
          if constexpr (kJson) {
            out->text->push_back('"');
            out->text->append(internal::FormatUuid(raw));
            out->text->push_back('"');
          } else {
            out->v = Bytes{std::move(raw)};
          }
          return Status::OK();
        }
        if (!internal::IsValidUtf8(text)) return Corrupt(path, "string is not valid UTF-8");
        if constexpr (kJson) {
          AppendJsonString(out->text, text);
        } else {
          out->v = std::string(text);
        }
        return Status::OK();
      }
      case Kind::kBytes:
      case Kind::kFixed: {
        std::string_view raw;
        if (type.kind == Kind::kFixed) {
          if (remaining() < static_cast<size_t>(type.fixed_size)) return Truncated(path);
          raw = std::string_view(reinterpret_cast<const char*>(pos_), type.fixed_size);
          pos_ += type.fixed_size;
        } else {
          AQ_RETURN_IF_ERROR(ReadBytes(path, &raw));
        }
        if (type.logical == Logical::kDecimal) {
          if (raw.empty()) return Corrupt(path, "empty decimal");
          // Cheap size bound before the quadratic digit count: 10^p < 2^(4p).
          if (internal::MinimalTwosComplement(raw).size() > static_cast<size_t>(type.precision) / 2 + 2) {
            return Corrupt(path, fmt::format("decimal wider than its precision {}", type.precision));
          }
          int digits = 0;
          std::string text = internal::DecimalBytesToText(raw, type.scale, &digits);
          if (digits > type.precision) {
            return Corrupt(path, fmt::format("decimal has {} digits, more than the precision {}",
                                             digits, type.precision));
          }
          if constexpr (kJson) {
            out->text->push_back('"');
            out->text->append(text);
            out->text->push_back('"');
            return Status::OK();
          } else if (type.kind == Kind::kBytes) {
            out->v = Bytes{internal::MinimalTwosComplement(raw)};
            return Status::OK();
          }
        }
        if constexpr (kJson) {
          out->text->push_back('"');
          AppendBase64(out->text, raw);
          out->text->push_back('"');
        } else {
          out->v = Bytes{std::string(raw)};
        }
        return Status::OK();
      }
      case Kind::kEnum: {
        int64_t index = 0;
        AQ_RETURN_IF_ERROR(ReadLong(path, &index));
        if (index < 0 || static_cast<uint64_t>(index) >= type.symbols.size()) {
          return Corrupt(path, fmt::format("enum index {} out of range for {}", index, type.Describe()));
        }
        if constexpr (kJson) {
          AppendJsonString(out->text, type.symbols[index]);
        } else {
          out->v = EnumSymbol{static_cast<int32_t>(index)};
        }
        return Status::OK();
      }
      case Kind::kArray: {
        std::vector<Value>* items = nullptr;
        if constexpr (kJson) {
          out->text->push_back('[');
        } else {
          items = &out->v.template emplace<Value::kArrayIndex>();
        }
        int64_t decoded = 0;
        while (true) {
          int64_t count = 0;
          AQ_RETURN_IF_ERROR(ReadLong(path, &count));
          if (count == 0) break;
          if (count < 0) {
            if (count == INT64_MIN) return Corrupt(path, "invalid array block count");
            count = -count;
            int64_t block_bytes = 0;
            AQ_RETURN_IF_ERROR(ReadLong(path, &block_bytes));
            if (block_bytes < 0 || static_cast<uint64_t>(block_bytes) > remaining()) {
              return Corrupt(path, fmt::format("array block size {} exceeds the input", block_bytes));
            }
          }
          // Every item takes at least one byte (records have fields, fixed has size >= 1).
          if (static_cast<uint64_t>(count) > remaining()) {
            return Corrupt(path, fmt::format("array block count {} exceeds the input", count));
          }
          if constexpr (!kJson) items->reserve(items->size() + static_cast<size_t>(count));
          for (int64_t idx = 0; idx < count; ++idx, ++decoded) {
            PathFrame frame{path, {}, decoded};
            if constexpr (kJson) {
              if (decoded > 0) out->text->push_back(',');
              AQ_RETURN_IF_ERROR(Decode(*type.items, &frame, out));
            } else {
              items->emplace_back();
              AQ_RETURN_IF_ERROR(Decode(*type.items, &frame, &items->back()));
            }
          }
        }
        if constexpr (kJson) out->text->push_back(']');
        return Status::OK();
      }
      case Kind::kRecord: {
        if constexpr (kJson) {
          out->text->push_back('{');
          for (size_t idx = 0; idx < type.fields.size(); ++idx) {
            if (idx > 0) out->text->push_back(',');
            AppendJsonString(out->text, type.fields[idx].name);
            out->text->push_back(':');
            PathFrame frame{path, type.fields[idx].name, -1};
            AQ_RETURN_IF_ERROR(Decode(*type.fields[idx].type, &frame, out));
          }
          out->text->push_back('}');
        } else {
          auto& record = out->v.template emplace<Value::kRecordIndex>();
          record.resize(type.fields.size());
          for (size_t idx = 0; idx < type.fields.size(); ++idx) {
            PathFrame frame{path, type.fields[idx].name, -1};
            AQ_RETURN_IF_ERROR(Decode(*type.fields[idx].type, &frame, &record[idx]));
          }
        }
        return Status::OK();
      }
    }
    return Corrupt(path, "unknown type");
  }

 private:
  Status ReadLong(const PathFrame* path, int64_t* out) {
    uint64_t z = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ == end_) return Truncated(path);
      uint8_t byte = *pos_++;
      if (shift == 63 && (byte & 0x7e) != 0) return Corrupt(path, "varint overflows 64 bits");
      z |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *out = static_cast<int64_t>(z >> 1) ^ -static_cast<int64_t>(z & 1);
        return Status::OK();
      }
    }
    return Corrupt(path, "varint longer than 10 bytes");
  }

  Status ReadBytes(const PathFrame* path, std::string_view* out) {
    int64_t length = 0;
    AQ_RETURN_IF_ERROR(ReadLong(path, &length));
    if (length < 0) return Corrupt(path, fmt::format("negative length {}", length));
    if (static_cast<uint64_t>(length) > remaining()) {
      return Corrupt(path, fmt::format("length {} exceeds the {} bytes left", length, remaining()));
    }
    *out = std::string_view(reinterpret_cast<const char*>(pos_), static_cast<size_t>(length));
    pos_ += length;
    return Status::OK();
  }

  Status Truncated(const PathFrame* path) { return Corrupt(path, "truncated Avro datum"); }
  Status Corrupt(const PathFrame* path, std::string_view message) {
    return Corruption("{}", WithPath(path, message));
  }

  const uint8_t* pos_;
  const uint8_t* end_;
};

}  // namespace

Result<Value> ParseJsonRecord(const Schema& schema, std::string_view json,
                              std::vector<FieldError>* errors,
                              const std::vector<std::string_view>& ignored_fields) {
  std::vector<FieldError> local_errors;
  if (errors == nullptr) errors = &local_errors;
  const size_t errors_before = errors->size();
  JsonReader reader(errors);

  // One parser and padded buffer per thread: no allocation per record once warm.
  thread_local od::parser parser;
  thread_local std::string buffer;
  if (buffer.size() < json.size() + simdjson::SIMDJSON_PADDING) {
    buffer.resize(json.size() + simdjson::SIMDJSON_PADDING);
  }
  std::memcpy(buffer.data(), json.data(), json.size());

  Value record;
  od::document doc;
  od::object object;
  if (auto error = parser.iterate(buffer.data(), json.size(), buffer.size()).get(doc)) {
    reader.Fatal(nullptr, error);
  } else if (auto type_error = doc.get_object().get(object)) {
    od::json_type type;
    if (type_error == simdjson::INCORRECT_TYPE && doc.type().get(type) == simdjson::SUCCESS) {
      reader.FieldErrorAt(nullptr, fmt::format("expected a JSON object, got {}", JsonTypeName(type)));
    } else {
      reader.Fatal(nullptr, type_error);
    }
  } else if (reader.ParseRecord(object, schema.root(), nullptr, &record, ignored_fields)) {
    const char* trailing = nullptr;
    if (doc.current_location().get(trailing) == simdjson::SUCCESS) {
      reader.FieldErrorAt(nullptr, "malformed JSON: content after the object");
    }
  }
  if (errors->size() > errors_before) {
    const FieldError& first = (*errors)[errors_before];
    size_t more = errors->size() - errors_before - 1;
    std::string summary = first.field.empty() ? first.message : first.field + ": " + first.message;
    if (more > 0) summary += fmt::format(" (and {} more error{})", more, more == 1 ? "" : "s");
    return InvalidArgument("{}", summary);
  }
  return record;
}

void WriteJson(const Schema& schema, const Value& record, std::string* out) {
  WriteValue(schema.root(), record, out);
}

Status EncodeAvro(const Schema& schema, const Value& record, std::string* out) {
  size_t start = out->size();
  Status status = EncodeValue(schema.root(), record, nullptr, out);
  if (!status.ok()) out->resize(start);
  return status;
}

Result<Value> DecodeAvro(const Schema& schema, std::string_view avro) {
  AvroReader reader(avro);
  Value record;
  AQ_RETURN_IF_ERROR(reader.Decode(schema.root(), nullptr, &record));
  if (reader.remaining() != 0) {
    return Corruption("{} trailing bytes after the Avro datum", reader.remaining());
  }
  return record;
}

Result<std::string> JsonToAvro(const Schema& schema, std::string_view json,
                               std::vector<FieldError>* errors) {
  AQ_ASSIGN_OR_RETURN(Value record, ParseJsonRecord(schema, json, errors));
  std::string out;
  AQ_RETURN_IF_ERROR(EncodeAvro(schema, record, &out));
  return out;
}

Status AppendAvroAsJson(const Schema& schema, std::string_view avro, std::string* out) {
  const size_t start = out->size();
  AvroReader reader(avro);
  JsonOut json{out};
  Status status = reader.Decode(schema.root(), nullptr, &json);
  if (status.ok() && reader.remaining() != 0) {
    status = Corruption("{} trailing bytes after the Avro datum", reader.remaining());
  }
  if (!status.ok()) out->resize(start);
  return status;
}

Result<std::string> AvroToJson(const Schema& schema, std::string_view avro) {
  std::string out;
  AQ_RETURN_IF_ERROR(AppendAvroAsJson(schema, avro, &out));
  return out;
}

}  // namespace aquifer::schema
