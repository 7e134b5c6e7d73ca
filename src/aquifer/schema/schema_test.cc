#include "aquifer/schema/schema.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "aquifer/schema/testing_schemas.h"

namespace aquifer::schema {
namespace {

using ::testing::HasSubstr;

// A record named R with the given fields JSON.
std::string Record(const std::string& fields) {
  return R"({"type":"record","name":"R","fields":[)" + fields + "]}";
}

const std::string kId = R"({"name":"id","type":"string"})";

Status ParseError(const std::string& json, const std::vector<std::string>& key = {"id"}) {
  auto result = Schema::Parse(json, key);
  EXPECT_FALSE(result.ok()) << json;
  if (result.ok()) return Status::OK();
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  return result.status();
}

TEST(SchemaParse, AcceptsEveryTypeAndDescribesThem) {
  auto schema = Schema::Parse(testing::kRichSchemaJson, {"id", "seq"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  const auto& s = **schema;
  EXPECT_EQ(s.key().size(), 2u);
  EXPECT_EQ(s.key()[1].name, "seq");
  EXPECT_EQ(s.key()[1].field_index, 1);
  EXPECT_EQ(s.FindField("price")->type->Describe(), "double");
  EXPECT_EQ(s.FindField("hash")->type->Describe(), "fixed test.Hash[4]");
  EXPECT_EQ(s.FindField("color")->type->Describe(), "enum test.Color");
  EXPECT_EQ(s.FindField("amount")->type->Describe(), "decimal(38,4)");
  EXPECT_EQ(s.FindField("famount")->type->Describe(), "decimal(18,2)");
  EXPECT_EQ(s.FindField("uid")->type->Describe(), "uuid");
  EXPECT_EQ(s.FindField("ts")->type->Describe(), "timestamp-millis");
  EXPECT_EQ(s.FindField("items")->type->Describe(), "array<record test.Item>");
  EXPECT_EQ(s.FindField("tags")->type->Describe(), "array<null|string>");
  EXPECT_EQ(s.FindField("note")->type->Describe(), "null|string");
  const Type& first_item = *s.FindField("first_item")->type;
  EXPECT_TRUE(first_item.nullable);
  EXPECT_EQ(first_item.null_branch, 1);
  EXPECT_EQ(first_item.fields.size(), 3u);
  EXPECT_EQ(s.FindField("n_famount")->type->fixed_size, 8);
  EXPECT_EQ(s.FieldIndex("nope"), -1);
  EXPECT_EQ(s.FindField("nope"), nullptr);
  ASSERT_NE(s.FindField("n_long")->default_value, nullptr);
  EXPECT_EQ(*s.FindField("n_long")->default_value, Value{int64_t{7}});
}

TEST(SchemaParse, AvroJsonIsCanonicalAndParsesToItself) {
  auto schema = Schema::Parse(testing::kRichSchemaJson, {"id"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  auto again = Schema::Parse((*schema)->avro_json(), {"id"});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)->avro_json(), (*schema)->avro_json());
  EXPECT_THAT((*schema)->avro_json(), HasSubstr(R"("name":"test.Order")"));
  EXPECT_THAT((*schema)->avro_json(), HasSubstr(R"(["null","test.Hash"])"));
  EXPECT_THAT((*schema)->avro_json(), HasSubstr(R"("logicalType":"decimal")"));
}

TEST(SchemaParse, RejectsNullableKeyFieldNamingIt) {
  auto status = ParseError(Record(R"({"name":"id","type":["null","string"]})"));
  EXPECT_THAT(status.message(), HasSubstr("id: key field cannot be nullable"));
}

TEST(SchemaParse, RejectsNonPrimitiveKeyFieldsNamingThem) {
  for (const char* type : {R"("double")", R"("boolean")", R"({"type":"array","items":"int"})",
                           R"({"type":"enum","name":"E","symbols":["A"]})",
                           R"({"type":"bytes","logicalType":"decimal","precision":4})"}) {
    auto status = ParseError(Record(std::string(R"({"name":"id","type":)") + type + "}"));
    EXPECT_THAT(status.message(), HasSubstr("id: key field must be")) << type;
  }
}

TEST(SchemaParse, AcceptsEveryPrimitiveKeyType) {
  std::string fields = R"({"name":"a","type":"string"},{"name":"b","type":"bytes"},
      {"name":"c","type":{"type":"fixed","name":"F","size":2}},{"name":"d","type":"int"},
      {"name":"e","type":"long"},{"name":"f","type":{"type":"long","logicalType":"timestamp-millis"}},
      {"name":"g","type":{"type":"string","logicalType":"uuid"}})";
  auto schema = Schema::Parse(Record(fields), {"g", "f", "e", "d", "c", "b", "a"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  EXPECT_EQ((*schema)->key()[0].field_index, 6);
}

TEST(SchemaParse, RejectsUnknownKeyField) {
  auto status = ParseError(Record(kId), {"nope"});
  EXPECT_THAT(status.message(), HasSubstr("nope: key field is not a top-level field"));
}

TEST(SchemaParse, RejectsDuplicateKeyNames) {
  auto status = ParseError(Record(kId), {"id", "id"});
  EXPECT_THAT(status.message(), HasSubstr("id: key field listed twice"));
}

TEST(SchemaParse, RejectsEmptyKey) {
  auto status = ParseError(Record(kId), {});
  EXPECT_THAT(status.message(), HasSubstr("at least one key field"));
}

TEST(SchemaParse, RejectsDuplicateFieldNamesNamingThePath) {
  auto status = ParseError(Record(kId + R"(,{"name":"items","type":{"type":"array","items":
      {"type":"record","name":"Item","fields":[{"name":"x","type":"int"},{"name":"x","type":"long"}]}}})"));
  EXPECT_THAT(status.message(), HasSubstr("items[].x: duplicate field name"));
}

TEST(SchemaParse, RejectsBadTypeNamingThePath) {
  auto status = ParseError(Record(kId + R"(,{"name":"items","type":{"type":"array","items":
      {"type":"record","name":"Item","fields":[{"name":"price","type":"dubble"}]}}})"));
  EXPECT_THAT(status.message(), HasSubstr("items[].price: unknown type 'dubble'"));
  status = ParseError(Record(kId + R"(,{"name":"x","type":42})"));
  EXPECT_THAT(status.message(), HasSubstr("x: invalid type 42"));
  status = ParseError(Record(kId + R"(,{"name":"x"})"));
  EXPECT_THAT(status.message(), HasSubstr("x: field has no \"type\""));
  status = ParseError(Record(kId + R"(,{"name":"x","type":"null"})"));
  EXPECT_THAT(status.message(), HasSubstr("x: a field cannot be only null"));
  status = ParseError(Record(kId + R"(,{"name":"x","type":{"type":"map","values":"int"}})"));
  EXPECT_THAT(status.message(), HasSubstr("x: map types are not supported"));
}

TEST(SchemaParse, RejectsUnsupportedLogicalTypeNamingThePath) {
  auto status = ParseError(Record(kId + R"(,{"name":"items","type":{"type":"array","items":
      {"type":"record","name":"Item","fields":[{"name":"price","type":{"type":"int","logicalType":"date"}}]}}})"));
  EXPECT_THAT(status.message(), HasSubstr("items[].price: unsupported logical type 'date'"));
}

TEST(SchemaParse, RejectsLogicalTypeOnTheWrongBase) {
  auto status = ParseError(Record(kId + R"(,{"name":"u","type":{"type":"long","logicalType":"uuid"}})"));
  EXPECT_THAT(status.message(), HasSubstr("u: logical type 'uuid' must annotate string"));
  status = ParseError(Record(kId + R"(,{"name":"t","type":{"type":"int","logicalType":"timestamp-millis"}})"));
  EXPECT_THAT(status.message(), HasSubstr("t: logical type 'timestamp-millis' must annotate long"));
  status = ParseError(Record(kId + R"(,{"name":"d","type":{"type":"string","logicalType":"decimal","precision":3}})"));
  EXPECT_THAT(status.message(), HasSubstr("d: logical type 'decimal' must annotate bytes or fixed"));
}

TEST(SchemaParse, RejectsEnumsWithBadOrDuplicateSymbols) {
  auto status = ParseError(Record(kId + R"(,{"name":"c","type":{"type":"enum","name":"C","symbols":["A","B-1"]}})"));
  EXPECT_THAT(status.message(), HasSubstr("c: enum 'C' has invalid symbol \"B-1\""));
  status = ParseError(Record(kId + R"(,{"name":"c","type":{"type":"enum","name":"C","symbols":["A","A"]}})"));
  EXPECT_THAT(status.message(), HasSubstr("c: enum 'C' has duplicate symbol 'A'"));
  status = ParseError(Record(kId + R"(,{"name":"c","type":{"type":"enum","name":"C","symbols":[]}})"));
  EXPECT_THAT(status.message(), HasSubstr("c: enum 'C' needs a non-empty \"symbols\""));
  status = ParseError(Record(kId + R"(,{"name":"c","type":{"type":"enum","name":"C","symbols":["A",1]}})"));
  EXPECT_THAT(status.message(), HasSubstr("c: enum 'C' has invalid symbol 1"));
}

TEST(SchemaParse, RejectsFixedWithoutOrWithBadSize) {
  auto status = ParseError(Record(kId + R"(,{"name":"f","type":{"type":"fixed","name":"F"}})"));
  EXPECT_THAT(status.message(), HasSubstr("f: fixed 'F' needs an integer \"size\""));
  status = ParseError(Record(kId + R"(,{"name":"f","type":{"type":"fixed","name":"F","size":0}})"));
  EXPECT_THAT(status.message(), HasSubstr("f: fixed 'F' size 0 out of range"));
  status = ParseError(Record(kId + R"(,{"name":"f","type":{"type":"fixed","name":"F","size":"4"}})"));
  EXPECT_THAT(status.message(), HasSubstr("f: fixed 'F' needs an integer \"size\""));
}

TEST(SchemaParse, RejectsDecimalPrecisionAndScaleOutOfRange) {
  auto bytes_decimal = [](const std::string& attrs) {
    return Record(kId + R"(,{"name":"d","type":{"type":"bytes","logicalType":"decimal",)" + attrs + "}}");
  };
  EXPECT_THAT(ParseError(bytes_decimal(R"("precision":0)")).message(),
              HasSubstr("d: decimal precision 0 out of range 1..38 for bytes"));
  EXPECT_THAT(ParseError(bytes_decimal(R"("precision":39)")).message(),
              HasSubstr("d: decimal precision 39 out of range 1..38"));
  EXPECT_THAT(ParseError(bytes_decimal(R"("scale":2)")).message(),
              HasSubstr("d: decimal needs an integer \"precision\""));
  EXPECT_THAT(ParseError(bytes_decimal(R"("precision":5,"scale":6)")).message(),
              HasSubstr("d: decimal scale 6 out of range 0..5"));
  EXPECT_THAT(ParseError(bytes_decimal(R"("precision":5,"scale":-1)")).message(),
              HasSubstr("d: decimal scale -1 out of range"));
  EXPECT_TRUE(Schema::Parse(bytes_decimal(R"("precision":38,"scale":38)"), {"id"}).ok());
  // 4 bytes hold any 9-digit number (2^31 - 1 = 2147483647) but not every 10-digit one.
  auto fixed_decimal = [](int precision) {
    return Record(kId + R"(,{"name":"d","type":{"type":"fixed","name":"D","size":4,"logicalType":"decimal","precision":)" +
                  std::to_string(precision) + "}}");
  };
  EXPECT_TRUE(Schema::Parse(fixed_decimal(9), {"id"}).ok());
  EXPECT_THAT(ParseError(fixed_decimal(10)).message(),
              HasSubstr("d: decimal precision 10 out of range 1..9 for fixed(4)"));
}

TEST(SchemaParse, RejectsNamesBreakingAvroRules) {
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"1abc","type":"int"})")).message(),
              HasSubstr("1abc: invalid field name"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"a-b","type":"int"})")).message(),
              HasSubstr("a-b: invalid field name"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"","type":"int"})")).message(),
              HasSubstr("invalid field name"));
  EXPECT_THAT(ParseError(R"({"type":"record","name":"my-record","fields":[)" + kId + "]}").message(),
              HasSubstr("invalid record name 'my-record'"));
  EXPECT_THAT(ParseError(R"({"type":"record","name":"R","namespace":"a..b","fields":[)" + kId + "]}").message(),
              HasSubstr("invalid namespace 'a..b'"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"e","type":{"type":"enum","name":"9E","symbols":["A"]}})")).message(),
              HasSubstr("e: invalid enum name '9E'"));
}

TEST(SchemaParse, RejectsReservedFieldNames) {
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"__offset","type":"long"})")).message(),
              HasSubstr("__offset: field names beginning \"__\" or \"@\" are reserved"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"@timestamp","type":"long"})")).message(),
              HasSubstr("@timestamp: field names beginning"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"n","type":{"type":"record","name":"N","fields":[{"name":"__x","type":"int"}]}})")).message(),
              HasSubstr("n.__x: field names beginning"));
}

TEST(SchemaParse, SupportsNamedTypeReferencesAfterTheirDefinition) {
  auto schema = Schema::Parse(
      R"({"type":"record","name":"R","namespace":"a.b","fields":[
        {"name":"id","type":"string"},
        {"name":"p","type":{"type":"record","name":"Point","fields":[{"name":"x","type":"int"}]}},
        {"name":"q","type":"Point"},
        {"name":"r","type":["null","a.b.Point"]},
        {"name":"s","type":{"type":"array","items":"Point"}},
        {"name":"t","type":{"type":"record","name":"T","namespace":"other","fields":[
          {"name":"c","type":{"type":"enum","name":"C","symbols":["X"]}},
          {"name":"d","type":"C"},
          {"name":"e","type":"a.b.Point"}]}},
        {"name":"u","type":"other.C"}]})",
      {"id"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  EXPECT_EQ((*schema)->FindField("q")->type->Describe(), "record a.b.Point");
  EXPECT_EQ((*schema)->FindField("r")->type->Describe(), "null|record a.b.Point");
  EXPECT_EQ((*schema)->FindField("u")->type->Describe(), "enum other.C");
  auto again = Schema::Parse((*schema)->avro_json(), {"id"});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
}

TEST(SchemaParse, RejectsUnknownAndForwardTypeNames) {
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"q","type":"Point"},
      {"name":"p","type":{"type":"record","name":"Point","fields":[{"name":"x","type":"int"}]}})")).message(),
              HasSubstr("q: unknown type 'Point'"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"p","type":{"type":"record","name":"Point","fields":[{"name":"x","type":"int"}]}},
      {"name":"q","type":{"type":"enum","name":"Point","symbols":["A"]}})")).message(),
              HasSubstr("q: type 'Point' is defined twice"));
}

TEST(SchemaParse, RejectsRecursiveTypes) {
  auto status = ParseError(Record(kId + R"(,{"name":"n","type":{"type":"record","name":"Node","fields":[
      {"name":"next","type":["null","Node"]}]}})"));
  EXPECT_THAT(status.message(), HasSubstr("n.next: recursive type 'Node' is not supported"));
}

TEST(SchemaParse, RejectsTopLevelThatIsNotARecord) {
  EXPECT_THAT(ParseError(R"("string")").message(), HasSubstr("top-level schema must be a record"));
  EXPECT_THAT(ParseError(R"({"type":"enum","name":"E","symbols":["A"]})").message(),
              HasSubstr("top-level schema must be a record"));
  EXPECT_THAT(ParseError(R"(["null",{"type":"record","name":"R","fields":[]}])").message(),
              HasSubstr("top-level schema must be a record"));
  EXPECT_THAT(ParseError(R"({"type":"record","name":"R","fields":[)").message(),
              HasSubstr("not valid JSON"));
  EXPECT_THAT(ParseError(R"({"type":"record","name":"R","fields":[]})").message(),
              HasSubstr("record 'R' has no fields"));
}

TEST(SchemaParse, RejectsUnionsOtherThanNullPlusOneType) {
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"u","type":["int","string"]})")).message(),
              HasSubstr("u: unsupported union"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"u","type":["null","int","string"]})")).message(),
              HasSubstr("u: unsupported union"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"u","type":["null"]})")).message(),
              HasSubstr("u: unsupported union"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"u","type":["null","null"]})")).message(),
              HasSubstr("u: union has \"null\" twice"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"u","type":{"type":"array","items":["null",["null","int"]]}})")).message(),
              HasSubstr("u[]: nested unions are not supported"));
}

TEST(SchemaParse, ValidatesDefaultsAgainstTheFieldType) {
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"n","type":"int","default":"x"})")).message(),
              HasSubstr("n: default \"x\" does not match type int"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"n","type":"int","default":3000000000})")).message(),
              HasSubstr("n: default 3000000000 does not match type int"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"n","type":["null","int"],"default":5})")).message(),
              HasSubstr("n: default 5 must be null"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"n","type":["int","null"],"default":null})")).message(),
              HasSubstr("n: default null must match the first branch"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"c","type":{"type":"enum","name":"C","symbols":["A"]},"default":"B"})")).message(),
              HasSubstr("c: default \"B\" does not match type enum C"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"f","type":{"type":"fixed","name":"F","size":2},"default":"abc"})")).message(),
              HasSubstr("f: default has 3 bytes"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"a","type":{"type":"array","items":"long"},"default":[1,"x"]})")).message(),
              HasSubstr("a[1]: default \"x\" does not match type long"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"r","type":{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]},"default":{}})")).message(),
              HasSubstr("r: default has no value for field 'x'"));
  EXPECT_THAT(ParseError(Record(kId + R"(,{"name":"u","type":{"type":"string","logicalType":"uuid"},"default":"nope"})")).message(),
              HasSubstr("u: default \"nope\" does not match type uuid"));

  auto schema = Schema::Parse(Record(kId + R"(,
      {"name":"a","type":["int","null"],"default":5},
      {"name":"b","type":{"type":"record","name":"P","fields":[{"name":"x","type":"int"},{"name":"y","type":"int","default":2}]},"default":{"x":1}},
      {"name":"c","type":"bytes","default":"\u00ff\u0000"},
      {"name":"d","type":{"type":"string","logicalType":"uuid"},"default":"123e4567-e89b-12d3-a456-426614174000"},
      {"name":"e","type":"float","default":1.5})"),
      {"id"});
  ASSERT_TRUE(schema.ok()) << schema.status().ToString();
  Value b;
  auto& record = b.v.emplace<Value::kRecordIndex>();
  record.push_back(Value{int64_t{1}});
  record.push_back(Value{int64_t{2}});
  EXPECT_EQ(*(*schema)->FindField("b")->default_value, b);
  EXPECT_EQ(*(*schema)->FindField("c")->default_value, Value{Bytes{std::string("\xff\x00", 2)}});
  EXPECT_EQ(*(*schema)->FindField("e")->default_value, Value{1.5f});
}

TEST(SchemaParse, RejectsSchemasNestedTooDeeply) {
  std::string deep = Record(kId + R"(,{"name":"a","type":)");
  std::string type = "\"int\"";
  for (int depth = 0; depth < 100; ++depth) type = R"({"type":"array","items":)" + type + "}";
  auto status = ParseError(Record(kId + R"(,{"name":"a","type":)" + type + "}"));
  EXPECT_THAT(status.message(), HasSubstr("nested"));
}

}  // namespace
}  // namespace aquifer::schema
