// Fuzzes the filter pipeline of aquifer/keys: ParseFilter on arbitrary bytes
// against a fixed schema with a composite key; when a filter parses, it must
// plan, survive FilterToJson -> ParseFilter unchanged, and agree with its plan
// on every test record: Matches(filter, r) iff the record's key is in the
// planned range and Matches(residual, r). Also decodes the input as a tuple:
// whatever decodes must re-encode to exactly the input.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/keys/filter.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/schema.h"
#include "aquifer/schema/value.h"

namespace {

using aquifer::keys::Filter;
using aquifer::schema::Value;

constexpr char kSchema[] = R"({
  "type": "record", "name": "Event", "fields": [
    {"name": "user", "type": "string"},
    {"name": "ts", "type": "long"},
    {"name": "raw", "type": "bytes"},
    {"name": "country", "type": "string"},
    {"name": "score", "type": "double"},
    {"name": "n", "type": ["null", "int"]},
    {"name": "ok", "type": "boolean"},
    {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["red", "green", "blue"]}},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}},
    {"name": "f", "type": "float"},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "tags", "type": {"type": "array", "items": "string"}}
  ]})";

[[noreturn]] void Fail(const char* what, std::string_view input) {
  std::fprintf(stderr, "filter_parse_fuzz: %s\ninput: %.*s\n", what, static_cast<int>(input.size()), input.data());
  std::abort();
}

Value Record(std::string user, int64_t ts, std::string raw, std::string country, double score, bool has_n,
             int64_t n, bool ok, int32_t color, float f) {
  Value v;
  auto& fields = v.v.emplace<9>();
  fields.push_back(Value{std::move(user)});
  fields.push_back(Value{ts});
  fields.push_back(Value{aquifer::schema::Bytes{std::move(raw)}});
  fields.push_back(Value{std::move(country)});
  fields.push_back(Value{score});
  fields.push_back(has_n ? Value{n} : Value{aquifer::schema::Null{}});
  fields.push_back(Value{ok});
  fields.push_back(Value{aquifer::schema::EnumSymbol{color}});
  fields.push_back(Value{aquifer::schema::Bytes{std::string(16, static_cast<char>(color))}});
  fields.push_back(Value{aquifer::schema::Bytes{"abcd"}});
  fields.push_back(Value{f});
  fields.push_back(Value{ts / 1000});
  Value tags;
  tags.v.emplace<8>();
  fields.push_back(tags);
  return v;
}

struct Fixture {
  aquifer::schema::SchemaPtr schema;
  std::vector<Value> records;
  std::vector<std::string> keys;
};

const Fixture& GetFixture() {
  static const Fixture* fixture = [] {
    auto parsed = aquifer::schema::Schema::Parse(kSchema, {"user", "ts", "raw"});
    if (!parsed.ok()) {
      std::fprintf(stderr, "%s\n", parsed.status().ToString().c_str());
      std::abort();
    }
    auto* f = new Fixture{*parsed, {}, {}};
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const int64_t min = std::numeric_limits<int64_t>::min(), max = std::numeric_limits<int64_t>::max();
    f->records = {
        Record("", 0, "", "", 0.0, false, 0, false, 0, 0.0f),
        Record("a", 1, std::string("\0", 1), "nl", -0.0, true, 1, true, 1, -1.5f),
        Record(std::string("a\0", 2), -1, "\xFF", "no", nan, true, -1, false, 2, std::numeric_limits<float>::quiet_NaN()),
        Record("ab", min, "a", "a", -1e308, true, 2147483647, true, 0, std::numeric_limits<float>::infinity()),
        Record("b", max, std::string("\0\0", 2), "b", 1e308, false, 0, false, 1, -0.0f),
        Record("ada", 5, "ab", "nl", 2.5, true, 0, true, 2, 3.25f),
        Record("ada", 9, "", "se", -3, true, -2147483648, false, 0, 1e-40f),
    };
    for (const Value& r : f->records) {
      auto key = aquifer::keys::EncodeKey(*f->schema, r);
      if (!key.ok()) std::abort();
      f->keys.push_back(*key);
    }
    return f;
  }();
  return *fixture;
}

bool SameValue(const Value& a, const Value& b) {
  if (a.v.index() != b.v.index()) return false;
  if (const auto* x = std::get_if<double>(&a.v)) {
    return std::bit_cast<uint64_t>(*x) == std::bit_cast<uint64_t>(std::get<double>(b.v));
  }
  if (const auto* x = std::get_if<float>(&a.v)) {
    return std::bit_cast<uint32_t>(*x) == std::bit_cast<uint32_t>(std::get<float>(b.v));
  }
  return a == b;
}

bool SameFilter(const Filter& a, const Filter& b) {
  if (a.fields.size() != b.fields.size()) return false;
  for (size_t i = 0; i < a.fields.size(); ++i) {
    const auto& x = a.fields[i];
    const auto& y = b.fields[i];
    if (x.field != y.field || x.field_index != y.field_index || x.conditions.size() != y.conditions.size()) {
      return false;
    }
    for (size_t j = 0; j < x.conditions.size(); ++j) {
      if (x.conditions[j].op != y.conditions[j].op || !SameValue(x.conditions[j].value, y.conditions[j].value)) {
        return false;
      }
    }
  }
  return true;
}

void CheckTuple(std::string_view input) {
  auto decoded = aquifer::keys::DecodeTuple(input);
  if (!decoded.ok()) return;
  std::string encoded;
  for (const auto& e : *decoded) aquifer::keys::AppendElement(&encoded, e);
  if (encoded != input) Fail("decoded tuple does not re-encode to its input", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckTuple(input);

  const Fixture& fx = GetFixture();
  const aquifer::schema::Schema& schema = *fx.schema;
  auto filter = aquifer::keys::ParseFilter(schema, input);
  if (!filter.ok()) {
    if (filter.status().code() != aquifer::StatusCode::kInvalidArgument) Fail("error is not InvalidArgument", input);
    return 0;
  }
  auto plan = aquifer::keys::PlanFilter(schema, *filter);
  if (!plan.ok()) Fail("a parsed filter does not plan", input);

  const std::string json = aquifer::keys::FilterToJson(schema, *filter);
  auto again = aquifer::keys::ParseFilter(schema, json);
  if (!again.ok()) Fail(("FilterToJson output does not parse: " + json).c_str(), input);
  if (!SameFilter(*filter, *again)) Fail(("FilterToJson -> ParseFilter changed the filter: " + json).c_str(), input);
  if (aquifer::keys::FilterToJson(schema, *again) != json) Fail("FilterToJson is not canonical", input);

  for (size_t i = 0; i < fx.records.size(); ++i) {
    bool whole = aquifer::keys::Matches(schema, *filter, fx.records[i]);
    bool planned = plan->range.Contains(fx.keys[i]) && aquifer::keys::Matches(schema, plan->residual, fx.records[i]);
    if (whole != planned) Fail(("plan + residual disagrees with the whole filter: " + json).c_str(), input);
  }
  return 0;
}
