#include "aquifer/keys/filter.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "aquifer/keys/tuple.h"

namespace aquifer::keys {
namespace {

using schema::Value;
using ::testing::HasSubstr;

constexpr char kEventSchema[] = R"({
  "type": "record", "name": "Event", "fields": [
    {"name": "user", "type": "string"},
    {"name": "ts", "type": "long"},
    {"name": "country", "type": "string"},
    {"name": "score", "type": "double"},
    {"name": "n", "type": ["null", "int"]},
    {"name": "ok", "type": "boolean"},
    {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["red", "green", "blue"]}},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "raw", "type": "bytes"},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "f", "type": "float"},
    {"name": "small", "type": "int"},
    {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}}
  ]})";

enum FieldNo { kUser, kTs, kCountry, kScore, kN, kOk, kColor, kId, kRaw, kAt, kPrice, kTags, kF, kSmall, kHash };

schema::SchemaPtr EventSchema(std::vector<std::string> key = {"user", "ts"}) {
  auto parsed = schema::Schema::Parse(kEventSchema, key);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return *parsed;
}

// A test-side record; converted to a schema Value for the code under test.
struct Rec {
  std::string user;
  int64_t ts = 0;
  std::string country;
  double score = 0;
  std::optional<int32_t> n;
  bool ok = false;
  int32_t color = 0;
  std::string id = std::string(16, '\0');
  std::string raw;
  int64_t at = 0;
  float f = 0;
  int32_t small = 0;
  std::string hash = std::string(4, '\0');
};

Value ToValue(const Rec& r) {
  Value v;
  auto& fields = v.v.emplace<9>();
  fields.push_back(Value{r.user});
  fields.push_back(Value{r.ts});
  fields.push_back(Value{r.country});
  fields.push_back(Value{r.score});
  fields.push_back(r.n ? Value{int64_t{*r.n}} : Value{schema::Null{}});
  fields.push_back(Value{r.ok});
  fields.push_back(Value{schema::EnumSymbol{r.color}});
  fields.push_back(Value{schema::Bytes{r.id}});
  fields.push_back(Value{schema::Bytes{r.raw}});
  fields.push_back(Value{r.at});
  fields.push_back(Value{schema::Bytes{std::string("\x04\xd2", 2)}});
  Value tags;
  tags.v.emplace<8>();
  fields.push_back(tags);
  fields.push_back(Value{r.f});
  fields.push_back(Value{int64_t{r.small}});
  fields.push_back(Value{schema::Bytes{r.hash}});
  return v;
}

Filter MustParse(const schema::Schema& s, std::string_view json) {
  Result<Filter> f = ParseFilter(s, json);
  EXPECT_TRUE(f.ok()) << json << ": " << f.status().ToString();
  return f.ok() ? *f : Filter{};
}

std::string ParseError(const schema::Schema& s, std::string_view json) {
  Result<Filter> f = ParseFilter(s, json);
  EXPECT_FALSE(f.ok()) << json << " parsed";
  if (f.ok()) return "";
  EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
  return f.status().message();
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\0') {
      out += "\\u0000";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else {
      out += c;
    }
  }
  return out + "\"";
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
      if (x.conditions[j].op != y.conditions[j].op) return false;
      if (!SameValue(x.conditions[j].value, y.conditions[j].value)) return false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// Parsing

TEST(ParseFilter, ReadsEqualityAndOperatorObjectsInTheOrderWritten) {
  auto s = EventSchema();
  Filter f = MustParse(*s, R"({"user": "ada", "ts": {"_gte": 5, "_lt": 9}, "country": {"_prefix": "n"}})");
  ASSERT_EQ(f.fields.size(), 3u);
  EXPECT_EQ(f.fields[0].field, "user");
  EXPECT_EQ(f.fields[0].field_index, kUser);
  ASSERT_EQ(f.fields[0].conditions.size(), 1u);
  EXPECT_EQ(f.fields[0].conditions[0].op, Op::kEq);
  EXPECT_EQ(f.fields[0].conditions[0].value, Value{std::string("ada")});
  EXPECT_EQ(f.fields[1].field_index, kTs);
  ASSERT_EQ(f.fields[1].conditions.size(), 2u);
  EXPECT_EQ(f.fields[1].conditions[0].op, Op::kGte);
  EXPECT_EQ(f.fields[1].conditions[0].value, Value{int64_t{5}});
  EXPECT_EQ(f.fields[1].conditions[1].op, Op::kLt);
  EXPECT_EQ(f.fields[2].conditions[0].op, Op::kPrefix);
}

TEST(ParseFilter, TreatsEmptyInputAndEmptyObjectAsTheEmptyFilter) {
  auto s = EventSchema();
  EXPECT_TRUE(MustParse(*s, "").empty());
  EXPECT_TRUE(MustParse(*s, "  \n").empty());
  EXPECT_TRUE(MustParse(*s, "{}").empty());
}

TEST(ParseFilter, AcceptsTheOperatorAliases) {
  auto s = EventSchema();
  const std::pair<const char*, Op> aliases[] = {
      {"_eq", Op::kEq}, {"eq", Op::kEq},   {"=", Op::kEq},      {"==", Op::kEq},       {"_gt", Op::kGt},
      {"gt", Op::kGt},  {">", Op::kGt},    {"_gte", Op::kGte},  {"gte", Op::kGte},     {">=", Op::kGte},
      {"_lt", Op::kLt}, {"lt", Op::kLt},   {"<", Op::kLt},      {"_lte", Op::kLte},    {"lte", Op::kLte},
      {"<=", Op::kLte}, {"_prefix", Op::kPrefix}, {"prefix", Op::kPrefix}};
  for (const auto& [alias, op] : aliases) {
    std::string value = op == Op::kPrefix ? "\"x\"" : "\"x\"";
    Filter f = MustParse(*s, fmt::format(R"({{"country": {{"{}": {}}}}})", alias, value));
    ASSERT_EQ(f.fields.size(), 1u) << alias;
    EXPECT_EQ(f.fields[0].conditions[0].op, op) << alias;
  }
}

TEST(ParseFilter, TypesValuesPerTheFieldSchemaType) {
  auto s = EventSchema();
  Filter f = MustParse(*s, R"({"score": 1, "n": null, "ok": true, "color": "blue",
      "id": "00112233-4455-6677-8899-aabbccddeeff", "raw": "AAH/", "at": 1700000000000, "f": 0.5,
      "small": -2147483648, "hash": "AQIDBA=="})");
  ASSERT_EQ(f.fields.size(), 10u);
  EXPECT_EQ(f.fields[0].conditions[0].value, Value{1.0});
  EXPECT_TRUE(f.fields[1].conditions[0].value.is_null());
  EXPECT_EQ(f.fields[2].conditions[0].value, Value{true});
  EXPECT_EQ(f.fields[3].conditions[0].value, Value{schema::EnumSymbol{2}});
  EXPECT_EQ(f.fields[4].conditions[0].value,
            Value{schema::Bytes{std::string("\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff", 16)}});
  EXPECT_EQ(f.fields[5].conditions[0].value, Value{schema::Bytes{std::string("\x00\x01\xff", 3)}});
  EXPECT_EQ(f.fields[6].conditions[0].value, Value{int64_t{1700000000000}});
  EXPECT_EQ(f.fields[7].conditions[0].value, Value{0.5f});
  EXPECT_EQ(f.fields[8].conditions[0].value, Value{int64_t{-2147483648}});
  EXPECT_EQ(f.fields[9].conditions[0].value, Value{schema::Bytes{"\x01\x02\x03\x04"}});

  Filter special = MustParse(*s, R"({"score": {"_gt": "-Infinity", "_lt": "NaN"}, "ts": -9223372036854775808})");
  EXPECT_TRUE(std::isinf(std::get<double>(special.fields[0].conditions[0].value.v)));
  EXPECT_TRUE(std::isnan(std::get<double>(special.fields[0].conditions[1].value.v)));
  EXPECT_EQ(special.fields[1].conditions[0].value, Value{std::numeric_limits<int64_t>::min()});
}

TEST(ParseFilter, NamesTheFieldAndTheProblemInEveryError) {
  auto s = EventSchema();
  EXPECT_THAT(ParseError(*s, R"({"nope": 1})"), HasSubstr("filter on 'nope': unknown field"));
  EXPECT_THAT(ParseError(*s, R"({"ts": "5"})"), HasSubstr("filter on 'ts': expected long, got string"));
  EXPECT_THAT(ParseError(*s, R"({"ts": 5.5})"), HasSubstr("filter on 'ts': expected long"));
  EXPECT_THAT(ParseError(*s, R"({"ts": 9223372036854775808})"), HasSubstr("filter on 'ts'"));
  EXPECT_THAT(ParseError(*s, R"({"small": 2147483648})"), HasSubstr("filter on 'small': 2147483648 is out of range for int"));
  EXPECT_THAT(ParseError(*s, R"({"user": 3})"), HasSubstr("filter on 'user': expected string, got number"));
  EXPECT_THAT(ParseError(*s, R"({"user": null})"), HasSubstr("filter on 'user': expected string, got null"));
  EXPECT_THAT(ParseError(*s, R"({"at": "2024-01-01"})"),
              HasSubstr("filter on 'at': expected timestamp-millis, got string"));
  EXPECT_THAT(ParseError(*s, R"({"ok": 1})"), HasSubstr("filter on 'ok': expected boolean, got number"));
  EXPECT_THAT(ParseError(*s, R"({"ts": {"_like": 5}})"),
              HasSubstr("filter on 'ts': unknown operator '_like' (valid: _eq _gt _gte _lt _lte _prefix"));
  EXPECT_THAT(ParseError(*s, R"({"ts": {"_gt": 5, "_gte": 6}})"),
              HasSubstr("filter on 'ts': invalid operator pair _gt and _gte"));
  EXPECT_THAT(ParseError(*s, R"({"ts": {"_eq": 5, "_lt": 6}})"), HasSubstr("filter on 'ts': invalid operator pair"));
  EXPECT_THAT(ParseError(*s, R"({"ts": {"_gt": 5, "_lt": 6, "_lte": 7}})"),
              HasSubstr("filter on 'ts': at most two operators"));
  EXPECT_THAT(ParseError(*s, R"({"ts": {}})"), HasSubstr("filter on 'ts': no operator given"));
  EXPECT_THAT(ParseError(*s, R"({"ts": {"_prefix": "1"}})"),
              HasSubstr("filter on 'ts': _prefix applies to string, bytes and fixed fields, not long"));
  EXPECT_THAT(ParseError(*s, R"({"id": {"_prefix": "0011"}})"),
              HasSubstr("filter on 'id': _prefix applies to string, bytes and fixed fields, not uuid"));
  EXPECT_THAT(ParseError(*s, R"({"tags": "x"})"), HasSubstr("filter on 'tags': array fields cannot be filtered"));
  EXPECT_THAT(ParseError(*s, R"({"price": "1.00"})"),
              HasSubstr("filter on 'price': decimal fields are not filterable"));
  EXPECT_THAT(ParseError(*s, R"({"color": "pink"})"),
              HasSubstr("filter on 'color': unknown symbol 'pink' of enum Color (symbols: red, green, blue)"));
  EXPECT_THAT(ParseError(*s, R"({"id": "not-a-uuid"})"), HasSubstr("filter on 'id': invalid UUID"));
  EXPECT_THAT(ParseError(*s, R"({"raw": "***"})"), HasSubstr("filter on 'raw': expected bytes as a base64 string"));
  EXPECT_THAT(ParseError(*s, R"({"hash": "AQID"})"), HasSubstr("filter on 'hash': expected 4 bytes"));
  EXPECT_THAT(ParseError(*s, R"({"n": {"_gt": null}})"),
              HasSubstr("filter on 'n': null can only be compared with _eq"));
  EXPECT_THAT(ParseError(*s, R"({"f": 1e300})"), HasSubstr("filter on 'f': 1e+300 is out of range for float"));
  EXPECT_THAT(ParseError(*s, R"({"score": "lots"})"), HasSubstr("filter on 'score': expected double, got string"));
  EXPECT_THAT(ParseError(*s, R"({"user": "a", "user": "b"})"), HasSubstr("filter on 'user': field given more than once"));
  EXPECT_THAT(ParseError(*s, R"([1, 2])"), HasSubstr("filter must be a JSON object"));
  EXPECT_THAT(ParseError(*s, R"("user")"), HasSubstr("filter must be a JSON object"));
  EXPECT_THAT(ParseError(*s, R"({"user": )"), HasSubstr("filter is not valid JSON"));
}

TEST(FilterToJson, RoundTripsThroughParseFilter) {
  auto s = EventSchema();
  const char* filters[] = {
      R"({"user": "a\u0000b\"\\\n", "ts": {"_gt": -9223372036854775808, "_lte": 9223372036854775807}})",
      R"({"score": {"_gte": "-Infinity", "_lt": "NaN"}, "f": 0.1, "n": null})",
      R"({"score": -0.0, "f": {"gt": 3.4028234663852886e38}, "small": {"<": -5}})",
      R"({"color": {"_gte": "green"}, "id": "00112233-4455-6677-8899-aabbccddeeff", "ok": false})",
      R"({"raw": {"_prefix": "AAE="}, "hash": {">=": "AQIDBA==", "<": "/////w=="}, "at": 17})",
      R"({"country": {"prefix": "é"}, "score": 1e-320})",
  };
  for (const char* json : filters) {
    Filter f = MustParse(*s, json);
    std::string canonical = FilterToJson(*s, f);
    Filter again = MustParse(*s, canonical);
    EXPECT_TRUE(SameFilter(f, again)) << json << " -> " << canonical;
    EXPECT_EQ(FilterToJson(*s, again), canonical);
  }
  EXPECT_EQ(FilterToJson(*s, Filter{}), "{}");
  EXPECT_EQ(FilterToJson(*s, MustParse(*s, R"({"user": "ada", "ts": {"gte": 5, "<": 9}})")),
            R"({"user":"ada","ts":{"_gte":5,"_lt":9}})");
}

// ---------------------------------------------------------------------------
// Matching

TEST(Matches, ComparesEachTypeSensibly) {
  auto s = EventSchema();
  Rec r;
  r.user = "ada";
  r.ts = -3;
  r.score = -0.0;
  r.ok = true;
  r.color = 1;
  r.raw = std::string("\x00\xff", 2);
  r.f = std::numeric_limits<float>::quiet_NaN();
  Value v = ToValue(r);
  auto matches = [&](std::string_view json) { return Matches(*s, MustParse(*s, json), v); };
  EXPECT_TRUE(matches(R"({})"));
  EXPECT_TRUE(matches(R"({"user": "ada", "ts": -3})"));
  EXPECT_FALSE(matches(R"({"user": "ad"})"));
  EXPECT_TRUE(matches(R"({"user": {"_prefix": "ad"}})"));
  EXPECT_TRUE(matches(R"({"user": {"_prefix": ""}})"));
  EXPECT_FALSE(matches(R"({"user": {"_prefix": "adam"}})"));
  EXPECT_TRUE(matches(R"({"ts": {"_gt": -4, "_lt": -2}})"));
  EXPECT_FALSE(matches(R"({"ts": {"_gt": -3}})"));
  EXPECT_TRUE(matches(R"({"score": 0.0})"));  // -0.0 == 0.0
  EXPECT_TRUE(matches(R"({"score": {"_lt": "NaN"}})"));
  EXPECT_TRUE(matches(R"({"f": "NaN"})"));  // NaN equals NaN and sorts above everything
  EXPECT_TRUE(matches(R"({"f": {"_gt": "Infinity"}})"));
  EXPECT_TRUE(matches(R"({"ok": {"_gt": false}})"));
  EXPECT_TRUE(matches(R"({"color": {"_gt": "red", "_lt": "blue"}})"));  // by declaration order
  EXPECT_FALSE(matches(R"({"color": "red"})"));
  EXPECT_TRUE(matches(R"({"n": null})"));
  EXPECT_FALSE(matches(R"({"n": 0})"));
  EXPECT_FALSE(matches(R"({"n": {"_gt": -100}})"));
  EXPECT_TRUE(matches(R"({"raw": {"_prefix": "AA=="}})"));
  EXPECT_TRUE(matches(R"({"raw": {"_gt": "AA=="}})"));
  EXPECT_FALSE(matches(R"({"raw": {"_lt": "AP8="}})"));
  r.n = 7;
  EXPECT_TRUE(Matches(*s, MustParse(*s, R"({"n": 7})"), ToValue(r)));
  EXPECT_FALSE(Matches(*s, MustParse(*s, R"({"n": null})"), ToValue(r)));
}

// ---------------------------------------------------------------------------
// Key encoding through the schema

TEST(EncodeKey, EncodesTheKeyFieldsInKeyOrderPerTheirTypes) {
  auto s = EventSchema({"ts", "user", "id", "raw", "small", "at", "hash"});
  Rec r;
  r.user = "u";
  r.ts = 1;
  r.id = std::string(16, '\x01');
  r.raw = std::string("\0", 1);
  r.small = -1;
  r.at = 256;
  r.hash = "abcd";
  Result<std::string> key = EncodeKey(*s, ToValue(r));
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  std::string expected;
  AppendInt(&expected, 1);
  AppendString(&expected, "u");
  AppendUuid(&expected, *Uuid::FromBytes(std::string(16, '\x01')));
  AppendBytes(&expected, std::string("\0", 1));
  AppendInt(&expected, -1);
  AppendInt(&expected, 256);
  AppendBytes(&expected, "abcd");
  EXPECT_EQ(*key, expected);
}

TEST(EncodeKey, RejectsMissingAndMistypedKeyFields) {
  auto s = EventSchema();
  Value not_record{std::string("x")};
  EXPECT_FALSE(EncodeKey(*s, not_record).ok());
  Value short_record;
  short_record.v.emplace<9>().push_back(Value{std::string("a")});
  Result<std::string> missing = EncodeKey(*s, short_record);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("'ts'"));
  Value mistyped = ToValue(Rec{});
  std::get<9>(mistyped.v)[kTs] = Value{std::string("5")};
  Result<std::string> bad = EncodeKey(*s, mistyped);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("encoding key field 'ts': expected long, got string"));
  std::string out;
  EXPECT_FALSE(AppendKeyValue(&out, *s->fields()[kSmall].type, Value{int64_t{1} << 40}).ok());
  EXPECT_FALSE(AppendKeyValue(&out, *s->fields()[kId].type, Value{schema::Bytes{"short"}}).ok());
  EXPECT_FALSE(AppendKeyValue(&out, *s->fields()[kHash].type, Value{schema::Bytes{"abc"}}).ok());
  EXPECT_FALSE(AppendKeyValue(&out, *s->fields()[kScore].type, Value{1.0}).ok());
}

// ---------------------------------------------------------------------------
// Planning

TEST(PlanFilter, EmptyFilterIsTheWholeKeySpace) {
  auto s = EventSchema();
  Result<QueryPlan> plan = PlanFilter(*s, Filter{});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->range.start, "");
  EXPECT_EQ(plan->range.end, "");
  EXPECT_FALSE(plan->has_residual());
  EXPECT_TRUE(plan->range.Contains("anything"));
  EXPECT_FALSE(plan->range.IsEmpty());
}

TEST(PlanFilter, EveryKeyFieldEqualIsAPointAtTheEncodedKey) {
  auto s = EventSchema();
  Result<QueryPlan> plan = PlanFilter(*s, MustParse(*s, R"({"ts": 7, "user": "ada"})"));
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->point);
  std::string key;
  AppendString(&key, "ada");
  AppendInt(&key, 7);
  EXPECT_EQ(plan->range.start, key);
  EXPECT_TRUE(plan->range.Contains(key));
  // A residual on a non-key field keeps it a point (one key, then the residual).
  plan = PlanFilter(*s, MustParse(*s, R"({"ts": 7, "user": "ada", "score": {"_gt": 1}})"));
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->point);
  EXPECT_TRUE(plan->has_residual());
  // Not every key field pinned, or a range: not a point.
  for (const char* filter : {R"({"user": "ada"})", R"({"user": "ada", "ts": {"_gte": 7, "_lte": 7}})",
                             R"({"ts": 7})", "{}", R"({"user": {"_prefix": "ada"}, "ts": 7})"}) {
    plan = PlanFilter(*s, MustParse(*s, filter));
    ASSERT_TRUE(plan.ok()) << filter;
    EXPECT_FALSE(plan->point) << filter;
  }
}

TEST(PlanFilter, UsesEqualityPrefixThenOneRangeAndLeavesTheRestResidual) {
  auto s = EventSchema();
  Result<QueryPlan> plan = PlanFilter(*s, MustParse(*s, R"({"ts": {"_gte": 5, "_lt": 9}, "user": "ada"})"));
  ASSERT_TRUE(plan.ok());
  std::string parent;
  AppendString(&parent, "ada");
  std::string lo = parent, hi = parent;
  AppendInt(&lo, 5);
  AppendInt(&hi, 9);
  EXPECT_EQ(plan->range.start, lo);
  EXPECT_EQ(plan->range.end, hi);
  EXPECT_FALSE(plan->has_residual());

  // A range on the first key field ends the walk: ts is residual.
  plan = PlanFilter(*s, MustParse(*s, R"({"user": {"_gt": "a"}, "ts": 3})"));
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->residual.fields.size(), 1u);
  EXPECT_EQ(plan->residual.fields[0].field, "ts");

  // A range on ts with user missing is residual, not an error.
  plan = PlanFilter(*s, MustParse(*s, R"({"ts": {"_gt": 3}})"));
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->range.start, "");
  EXPECT_EQ(plan->range.end, "");
  ASSERT_EQ(plan->residual.fields.size(), 1u);

  // Non-key conditions never empty the range: they stay residual.
  plan = PlanFilter(*s, MustParse(*s, R"({"user": "ada", "ts": 4, "country": "nl"})"));
  ASSERT_TRUE(plan.ok());
  std::string full = parent;
  AppendInt(&full, 4);
  EXPECT_EQ(plan->range.start, full);
  EXPECT_EQ(plan->range.end, full + '\xFF');
  EXPECT_TRUE(plan->range.Contains(full));
  ASSERT_EQ(plan->residual.fields.size(), 1u);
  EXPECT_EQ(plan->residual.fields[0].field, "country");
}

TEST(PlanFilter, GreaterThanOnAStringKeepsValuesThatExtendItWithNulBytes) {
  auto s = EventSchema({"user"});
  Result<QueryPlan> plan = PlanFilter(*s, MustParse(*s, R"({"user": {"_gt": "a"}})"));
  ASSERT_TRUE(plan.ok());
  auto key = [](std::string_view user) {
    std::string k;
    AppendString(&k, user);
    return k;
  };
  EXPECT_FALSE(plan->range.Contains(key("a")));
  EXPECT_TRUE(plan->range.Contains(key(std::string("a\0", 2))));
  EXPECT_TRUE(plan->range.Contains(key(std::string("a\0\0", 3))));
  EXPECT_TRUE(plan->range.Contains(key("a\x01")));
  EXPECT_TRUE(plan->range.Contains(key("b")));
  plan = PlanFilter(*s, MustParse(*s, R"({"user": {"_lte": "a"}})"));
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->range.Contains(key("a")));
  EXPECT_FALSE(plan->range.Contains(key(std::string("a\0", 2))));
  EXPECT_TRUE(plan->range.Contains(key("")));
}

TEST(PlanFilter, EqualityOnAStringKeyExcludesValuesThatExtendItWithNulBytes) {
  auto s = EventSchema();
  Result<QueryPlan> plan = PlanFilter(*s, MustParse(*s, R"({"user": "a"})"));
  ASSERT_TRUE(plan.ok());
  auto key = [](std::string_view user, int64_t ts) {
    std::string k;
    AppendString(&k, user);
    AppendInt(&k, ts);
    return k;
  };
  EXPECT_TRUE(plan->range.Contains(key("a", std::numeric_limits<int64_t>::min())));
  EXPECT_TRUE(plan->range.Contains(key("a", std::numeric_limits<int64_t>::max())));
  EXPECT_FALSE(plan->range.Contains(key(std::string("a\0", 2), 0)));
  EXPECT_FALSE(plan->range.Contains(key("", 0)));
  EXPECT_FALSE(plan->range.Contains(key("a\x01", 0)));
}

TEST(PlanFilter, ContradictoryBoundsGiveAnEmptyRange) {
  auto s = EventSchema();
  Result<QueryPlan> plan = PlanFilter(*s, MustParse(*s, R"({"user": "a", "ts": {"_gt": 9, "_lt": 5}})"));
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->range.IsEmpty());
}

// ---------------------------------------------------------------------------
// Plan + residual == brute force, on random data and random filters.

// One generated condition: its JSON and an independent reference predicate.
struct Cond {
  std::string field;
  std::string json;  // the field's value in the filter object
  std::function<bool(const Rec&)> holds;
};

const std::vector<std::string>& UserPool() {
  static const std::vector<std::string> pool = {"",   "a",     std::string("a\0", 2), std::string("a\0\0", 3),
                                                std::string("a\0b", 3), "ab", "abc", "b", "bb",  "é",
                                                "z",  "\x7f"};
  return pool;
}

int CompareUnsigned(std::string_view a, std::string_view b) { return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1); }

struct RangeOp {
  const char* name;
  std::function<bool(int)> test;  // on sign(field - bound)
};

const RangeOp kRangeOps[] = {
    {"_gt", [](int c) { return c > 0; }},  {"_gte", [](int c) { return c >= 0; }},
    {"_lt", [](int c) { return c < 0; }},  {"_lte", [](int c) { return c <= 0; }},
    {"_eq", [](int c) { return c == 0; }},
};

class FilterGen {
 public:
  explicit FilterGen(uint64_t seed) : rng_(seed) {}
  uint64_t Uniform(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  std::string User() { return UserPool()[Uniform(UserPool().size())]; }
  int64_t Ts() {
    static const int64_t kEdges[] = {std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 0,
                                     -1, 255, 256};
    if (Uniform(8) == 0) return kEdges[Uniform(std::size(kEdges))];
    return static_cast<int64_t>(Uniform(41)) - 20;
  }

  Rec Record() {
    Rec r;
    r.user = User();
    r.ts = Ts();
    r.country = Uniform(2) ? "nl" : "no";
    r.score = static_cast<double>(Uniform(7)) - 3;
    if (Uniform(3)) r.n = static_cast<int32_t>(Uniform(5));
    r.ok = Uniform(2);
    r.color = static_cast<int32_t>(Uniform(3));
    return r;
  }

  // A one- or two-sided range (or equality) on user or ts.
  Cond UserCond(bool allow_prefix) {
    if (allow_prefix && Uniform(4) == 0) {
      static const std::vector<std::string> prefixes = {"", "a", std::string("a\0", 2), "ab", "b", "é", "q"};
      std::string p = prefixes[Uniform(prefixes.size())];
      return {"user", fmt::format(R"({{"_prefix": {}}})", JsonString(p)),
              [p](const Rec& r) { return std::string_view(r.user).starts_with(p); }};
    }
    return Range<std::string>("user", [this] { return User(); }, [](const std::string& v) { return JsonString(v); },
                              [](const Rec& r) -> const std::string& { return r.user; },
                              [](const std::string& a, const std::string& b) { return CompareUnsigned(a, b); });
  }
  Cond TsCond() {
    return Range<int64_t>("ts", [this] { return Ts(); }, [](int64_t v) { return std::to_string(v); },
                          [](const Rec& r) -> const int64_t& { return r.ts; },
                          [](int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); });
  }
  Cond ResidualCond() {
    switch (Uniform(4)) {
      case 0: {
        std::string c = Uniform(2) ? "nl" : "no";
        return {"country", JsonString(c), [c](const Rec& r) { return r.country == c; }};
      }
      case 1: {
        double bound = static_cast<double>(Uniform(7)) - 3;
        return {"score", fmt::format(R"({{"_gte": {}}})", bound), [bound](const Rec& r) { return r.score >= bound; }};
      }
      case 2:
        if (Uniform(2)) return {"n", "null", [](const Rec& r) { return !r.n.has_value(); }};
        return {"n", R"({"_lt": 2})", [](const Rec& r) { return r.n.has_value() && *r.n < 2; }};
      default: {
        static const char* kColors[] = {"red", "green", "blue"};
        int32_t c = static_cast<int32_t>(Uniform(3));
        return {"color", fmt::format(R"({{"_lte": "{}"}})", kColors[c]), [c](const Rec& r) { return r.color <= c; }};
      }
    }
  }

  // A filter: some mix of key conditions (shaped to hit the planner's cases)
  // and residual ones, in random written order.
  std::vector<Cond> Filter() {
    std::vector<Cond> conds;
    switch (Uniform(6)) {
      case 0: break;                                                      // no key condition
      case 1: conds.push_back(UserCond(true)); break;                     // range/prefix on the first key field
      case 2: conds.push_back(EqUser()); conds.push_back(TsCond()); break;  // equality prefix + range
      case 3: conds.push_back(TsCond()); break;                           // missing leading key field
      case 4: conds.push_back(UserCond(true)); conds.push_back(TsCond()); break;
      default: conds.push_back(EqUser()); break;
    }
    size_t residuals = Uniform(3);
    std::set<std::string> used;
    for (const auto& c : conds) used.insert(c.field);
    for (size_t i = 0; i < residuals; ++i) {
      Cond c = ResidualCond();
      if (used.insert(c.field).second) conds.push_back(std::move(c));
    }
    std::shuffle(conds.begin(), conds.end(), rng_);
    return conds;
  }

 private:
  Cond EqUser() {
    std::string u = User();
    return {"user", JsonString(u), [u](const Rec& r) { return r.user == u; }};
  }

  template <typename T, typename Gen, typename ToJson, typename Get, typename Cmp>
  Cond Range(const std::string& field, Gen gen, ToJson to_json, Get get, Cmp cmp) {
    int shape = static_cast<int>(Uniform(4));
    if (shape == 0) {  // one operator (including _eq in its object form)
      const RangeOp& op = kRangeOps[Uniform(std::size(kRangeOps))];
      T v = gen();
      return {field, fmt::format(R"({{"{}": {}}})", op.name, to_json(v)),
              [=](const Rec& r) { return op.test(cmp(get(r), v)); }};
    }
    if (shape == 1) {  // plain equality
      T v = gen();
      return {field, to_json(v), [=](const Rec& r) { return cmp(get(r), v) == 0; }};
    }
    // A lower and an upper bound, in either order.
    const RangeOp& lo = kRangeOps[Uniform(2)];
    const RangeOp& hi = kRangeOps[2 + Uniform(2)];
    T a = gen(), b = gen();
    if (cmp(a, b) > 0 && Uniform(4) != 0) std::swap(a, b);  // mostly non-empty ranges
    std::string json = Uniform(2) ? fmt::format(R"({{"{}": {}, "{}": {}}})", lo.name, to_json(a), hi.name, to_json(b))
                                  : fmt::format(R"({{"{}": {}, "{}": {}}})", hi.name, to_json(b), lo.name, to_json(a));
    return {field, json, [=](const Rec& r) { return lo.test(cmp(get(r), a)) && hi.test(cmp(get(r), b)); }};
  }

  std::mt19937_64 rng_;
};

TEST(PlanFilter, ScanningTheRangeThenApplyingTheResidualReturnsExactlyTheBruteForceResult) {
  auto s = EventSchema();
  FilterGen gen(31337);
  // A few hundred records with distinct keys, sorted by encoded key as a store keeps them.
  std::vector<std::pair<std::string, Value>> rows;
  std::vector<Rec> recs;
  std::set<std::string> keys;
  while (rows.size() < 300) {
    Rec r = gen.Record();
    Value v = ToValue(r);
    Result<std::string> key = EncodeKey(*s, v);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    if (!keys.insert(*key).second) continue;
    rows.emplace_back(*key, v);
    recs.push_back(r);
  }
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows[a].first < rows[b].first; });

  int with_residual = 0, without_residual = 0, nonempty = 0;
  for (int iteration = 0; iteration < 3000; ++iteration) {
    std::vector<Cond> conds = gen.Filter();
    std::string json = "{";
    for (size_t i = 0; i < conds.size(); ++i) {
      json += fmt::format("{}{}: {}", i ? ", " : "", JsonString(conds[i].field), conds[i].json);
    }
    json += "}";
    Filter filter = MustParse(*s, json);
    Result<QueryPlan> plan = PlanFilter(*s, filter);
    ASSERT_TRUE(plan.ok()) << json << ": " << plan.status().ToString();
    (plan->has_residual() ? with_residual : without_residual)++;

    std::set<size_t> expected, brute, scanned;
    for (size_t i = 0; i < recs.size(); ++i) {
      bool all = true;
      for (const Cond& c : conds) all = all && c.holds(recs[i]);
      if (all) expected.insert(i);
      if (Matches(*s, filter, rows[i].second)) brute.insert(i);
    }
    // The scan: binary-search the sorted keys for [start, end), then the residual.
    auto first = std::lower_bound(order.begin(), order.end(), plan->range.start,
                                  [&](size_t i, const std::string& k) { return rows[i].first < k; });
    for (auto it = first; it != order.end(); ++it) {
      if (!plan->range.end.empty() && rows[*it].first >= plan->range.end) break;
      ASSERT_TRUE(plan->range.Contains(rows[*it].first));
      if (Matches(*s, plan->residual, rows[*it].second)) scanned.insert(*it);
    }
    ASSERT_EQ(brute, expected) << "Matches disagrees with the reference for " << json;
    ASSERT_EQ(scanned, expected) << "plan + residual disagrees with brute force for " << json << "\nplan range ["
                                 << plan->range.start.size() << " bytes, " << plan->range.end.size()
                                 << " bytes), residual " << FilterToJson(*s, plan->residual);
    if (!expected.empty()) ++nonempty;

    // The canonical JSON plans the same.
    Filter again = MustParse(*s, FilterToJson(*s, filter));
    ASSERT_TRUE(SameFilter(filter, again)) << json;
  }
  EXPECT_GT(with_residual, 300);
  EXPECT_GT(without_residual, 300);
  EXPECT_GT(nonempty, 1000);
}

TEST(PlanFilter, KeyRangeOnTheLastKeyFieldCoversNoResidual) {
  auto s = EventSchema();
  for (const char* json : {R"({"user": "a", "ts": {"_gt": 1}})", R"({"user": "a", "ts": {"_lte": 1}})",
                           R"({"user": {"_prefix": "a"}})", R"({"user": {"_gte": "a", "_lt": "b"}})",
                           R"({"user": "a", "ts": 1})"}) {
    Result<QueryPlan> plan = PlanFilter(*s, MustParse(*s, json));
    ASSERT_TRUE(plan.ok());
    EXPECT_FALSE(plan->has_residual()) << json;
  }
}

}  // namespace
}  // namespace aquifer::keys
