#include "aquifer/schema/codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "aquifer/schema/testing_schemas.h"

namespace aquifer::schema {
namespace {

using ::testing::HasSubstr;

SchemaPtr MustParse(const std::string& json, const std::vector<std::string>& key = {"id"}) {
  auto schema = Schema::Parse(json, key);
  EXPECT_TRUE(schema.ok()) << schema.status().ToString();
  return schema.ok() ? *schema : nullptr;
}

SchemaPtr Rich() {
  static SchemaPtr schema = MustParse(testing::kRichSchemaJson);
  return schema;
}

// A one-field schema {"id": string, "v": <type>}.
SchemaPtr Single(const std::string& type) {
  return MustParse(R"({"type":"record","name":"R","fields":[{"name":"id","type":"string"},{"name":"v","type":)" +
                   type + "}]}");
}

// A complete record of the rich schema, in the canonical form WriteJson produces.
const std::string kRichRecord =
    R"({"id":"order-1","seq":-9223372036854775808,"small":-2147483648,"flag":true,"ratio":0.1,)"
    R"("price":12.5,"blob":"AGFiAP8=","hash":"3q2+7w==","color":"GREEN",)"
    R"("amount":"-12345678901234567890123456789012.3456","famount":"-0.05",)"
    R"("uid":"123e4567-e89b-12d3-a456-426614174000","ts":1700000000123,)"
    R"("items":[{"sku":"a","qty":1,"price":null},{"sku":"b\"\\\n\u0001","qty":2147483647,"price":-0.0}],)"
    R"("tags":["x",null,""],"note":null,"other_hash":"AAAAAA==",)"
    R"("first_item":{"sku":"f","qty":0,"price":1e+300},"n_color":"BLUE","n_amount":"99999999.99",)"
    R"("n_famount":"9999999999999999.99","n_uid":null,"n_ts":-1,"n_long":9223372036854775807,"n_int":null,)"
    R"("n_bool":false,"n_float":"NaN","n_double":"-Infinity","n_string":"h)" "\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c" R"(",)"
    R"("n_bytes":"","n_items":[],"n_matrix":[[1,2],[],[-3]]})";

std::string RoundTripJson(const Schema& schema, const std::string& json) {
  std::vector<FieldError> errors;
  auto value = ParseJsonRecord(schema, json, &errors);
  EXPECT_TRUE(value.ok()) << value.status().ToString();
  if (!value.ok()) return "";
  std::string avro;
  EXPECT_TRUE(EncodeAvro(schema, *value, &avro).ok());
  auto decoded = DecodeAvro(schema, avro);
  EXPECT_TRUE(decoded.ok()) << decoded.status().ToString();
  if (!decoded.ok()) return "";
  std::string out;
  WriteJson(schema, *decoded, &out);
  return out;
}

std::vector<FieldError> Errors(const Schema& schema, const std::string& json) {
  std::vector<FieldError> errors;
  auto value = ParseJsonRecord(schema, json, &errors);
  EXPECT_FALSE(value.ok()) << json;
  if (!value.ok()) EXPECT_EQ(value.status().code(), StatusCode::kInvalidArgument);
  return errors;
}

std::string FirstError(const Schema& schema, const std::string& json) {
  auto errors = Errors(schema, json);
  if (errors.empty()) return "<no error>";
  return errors[0].field.empty() ? errors[0].message : errors[0].field + ": " + errors[0].message;
}

TEST(Codec, RoundTripsEveryTypeThroughAvroAndBack) {
  EXPECT_EQ(RoundTripJson(*Rich(), kRichRecord), kRichRecord);
}

TEST(Codec, AvroToJsonAndJsonToAvroAgree) {
  auto avro = JsonToAvro(*Rich(), kRichRecord);
  ASSERT_TRUE(avro.ok()) << avro.status().ToString();
  auto json = AvroToJson(*Rich(), *avro);
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(*json, kRichRecord);
}

// AvroToJson writes the text straight from the Avro; it must say exactly
// what WriteJson says of the decoded Value, and fail where DecodeAvro fails,
// with the same message: for every rich record variant and every cut-off or
// damaged form of it.
TEST(Codec, AvroToJsonWritesWhatTheDecodedValueWritesAndFailsAlike) {
  std::vector<std::string> records = {kRichRecord, testing::RichRecordJson("2.5", R"("plain")"),
                                      testing::RichRecordJson("-0.0", R"("\u0001\"q\"")")};
  for (const std::string& json : records) {
    auto avro = JsonToAvro(*Rich(), json);
    ASSERT_TRUE(avro.ok()) << avro.status().ToString();
    std::vector<std::string> inputs = {*avro};
    for (size_t cut = 0; cut < avro->size(); ++cut) inputs.push_back(avro->substr(0, cut));
    for (size_t at = 0; at < avro->size(); ++at) {
      for (char bad : {'\xff', '\x80', '\x01'}) {
        std::string damaged = *avro;
        damaged[at] = bad;
        inputs.push_back(damaged);
      }
    }
    inputs.push_back(*avro + "x");
    for (const std::string& input : inputs) {
      auto direct = AvroToJson(*Rich(), input);
      auto value = DecodeAvro(*Rich(), input);
      ASSERT_EQ(direct.ok(), value.ok()) << direct.status().ToString() << " / " << value.status().ToString();
      if (value.ok()) {
        std::string written;
        WriteJson(*Rich(), *value, &written);
        EXPECT_EQ(*direct, written);
      } else {
        EXPECT_EQ(direct.status().ToString(), value.status().ToString());
      }
    }
  }
}

TEST(Codec, EncodesTheStandardAvroBinaryForm) {
  auto schema = MustParse(R"({"type":"record","name":"R","fields":[
      {"name":"id","type":"string"},{"name":"n","type":"long"},{"name":"o","type":["null","int"]},
      {"name":"a","type":{"type":"array","items":"int"}},{"name":"d","type":"double"},
      {"name":"f","type":"float"},{"name":"b","type":"boolean"}]})");
  auto avro = JsonToAvro(*schema, R"({"id":"ab","n":-65,"o":3,"a":[1,-1],"d":1.0,"f":-2.0,"b":true})");
  ASSERT_TRUE(avro.ok()) << avro.status().ToString();
  const std::string expected("\x04"
                             "ab"
                             "\x81\x01"
                             "\x02\x06"
                             "\x04\x02\x01\x00"
                             "\x00\x00\x00\x00\x00\x00\xf0\x3f"
                             "\x00\x00\x00\xc0"
                             "\x01",
                             24);
  EXPECT_EQ(*avro, expected);
}

TEST(Codec, KeepsInt64ExtremesExact) {
  auto schema = Single(R"("long")");
  for (const char* n : {"-9223372036854775808", "9223372036854775807", "0", "-1", "4611686018427387904"}) {
    std::string json = std::string(R"({"id":"k","v":)") + n + "}";
    EXPECT_EQ(RoundTripJson(*schema, json), json);
  }
  auto value = ParseJsonRecord(*schema, R"({"id":"k","v":-9223372036854775808})");
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(std::get<int64_t>(std::get<Value::kRecordIndex>(value->v)[1].v), INT64_MIN);
}

TEST(Codec, RejectsIntegersOutOfRangeOrNotIntegral) {
  auto long_schema = Single(R"("long")");
  EXPECT_EQ(FirstError(*long_schema, R"({"id":"k","v":9223372036854775808})"),
            "v: 9223372036854775808 is out of range for long");
  EXPECT_EQ(FirstError(*long_schema, R"({"id":"k","v":-9223372036854775809})"),
            "v: -9223372036854775809 is out of range for long");
  EXPECT_EQ(FirstError(*long_schema, R"({"id":"k","v":1.5})"), "v: expected long, got non-integer number 1.5");
  EXPECT_EQ(FirstError(*long_schema, R"({"id":"k","v":1e3})"), "v: expected long, got non-integer number 1e3");
  EXPECT_EQ(FirstError(*long_schema, R"({"id":"k","v":"12"})"), "v: expected long, got string");
  auto int_schema = Single(R"("int")");
  EXPECT_EQ(FirstError(*int_schema, R"({"id":"k","v":2147483648})"), "v: 2147483648 is out of range for int");
  EXPECT_EQ(FirstError(*int_schema, R"({"id":"k","v":-2147483649})"), "v: -2147483649 is out of range for int");
  EXPECT_EQ(RoundTripJson(*int_schema, R"({"id":"k","v":-2147483648})"), R"({"id":"k","v":-2147483648})");
}

TEST(Codec, ConvertsDecimalsExactly) {
  auto schema = Single(R"({"type":"bytes","logicalType":"decimal","precision":38,"scale":2})");
  auto value_bytes = [&](const std::string& v) {
    auto value = ParseJsonRecord(*schema, R"({"id":"k","v":)" + v + "}");
    EXPECT_TRUE(value.ok()) << v << ": " << value.status().ToString();
    return value.ok() ? std::get<Bytes>(std::get<Value::kRecordIndex>(value->v)[1].v).data : "";
  };
  EXPECT_EQ(value_bytes(R"("1.00")"), std::string("\x64", 1));
  EXPECT_EQ(value_bytes(R"("-1.28")"), std::string("\x80", 1));
  EXPECT_EQ(value_bytes(R"("1.28")"), std::string("\x00\x80", 2));
  EXPECT_EQ(value_bytes(R"("-1.29")"), std::string("\xff\x7f", 2));
  EXPECT_EQ(value_bytes(R"("0")"), std::string("\x00", 1));
  EXPECT_EQ(value_bytes("12.5"), value_bytes(R"("12.50")"));
  EXPECT_EQ(value_bytes("1.250e1"), value_bytes(R"("12.50")"));
  EXPECT_EQ(value_bytes(R"("1.230")"), value_bytes(R"("1.23")"));
  for (const char* text : {"\"-999999999999999999999999999999999999.99\"", "\"999999999999999999999999999999999999.99\"",
                           "\"-0.01\"", "\"0.00\"", "\"170141183460469231731687303715884105.72\""}) {
    std::string json = std::string(R"({"id":"k","v":)") + text + "}";
    EXPECT_EQ(RoundTripJson(*schema, json), json);
  }
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","v":-5})"), R"({"id":"k","v":"-5.00"})");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":"1.234"})"),
            "v: decimal(38,2): '1.234' has more than 2 digits after the decimal point");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":1.234})"),
            "v: decimal(38,2): '1.234' has more than 2 digits after the decimal point");
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":"1000000000000000000000000000000000000.00"})"),
              HasSubstr("v: decimal(38,2): '1000000000000000000000000000000000000.00' has more than 38 significant digits"));
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":"1e40"})"), HasSubstr("more than 38 significant digits"));
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":"12a"})"), HasSubstr("'12a' is not a decimal number"));
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":"."})"), HasSubstr("is not a decimal number"));
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":true})"), HasSubstr("v: expected decimal(38,2), got boolean"));
}

TEST(Codec, PadsAndSignExtendsFixedDecimals) {
  auto schema = Single(R"({"type":"fixed","name":"D","size":4,"logicalType":"decimal","precision":9,"scale":3})");
  auto value = ParseJsonRecord(*schema, R"({"id":"k","v":"-0.002"})");
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  EXPECT_EQ(std::get<Bytes>(std::get<Value::kRecordIndex>(value->v)[1].v).data, std::string("\xff\xff\xff\xfe", 4));
  value = ParseJsonRecord(*schema, R"({"id":"k","v":"0.002"})");
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(std::get<Bytes>(std::get<Value::kRecordIndex>(value->v)[1].v).data, std::string("\x00\x00\x00\x02", 4));
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","v":"-999999.999"})"), R"({"id":"k","v":"-999999.999"})");
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":"1000000.000"})"), HasSubstr("more than 9 significant digits"));
}

TEST(Codec, RoundTripsNanAndInfinities) {
  auto schema = MustParse(R"({"type":"record","name":"R","fields":[{"name":"id","type":"string"},
      {"name":"f","type":"float"},{"name":"d","type":"double"}]})");
  for (const char* special : {"\"NaN\"", "\"Infinity\"", "\"-Infinity\""}) {
    std::string json = std::string(R"({"id":"k","f":)") + special + R"(,"d":)" + special + "}";
    EXPECT_EQ(RoundTripJson(*schema, json), json);
  }
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","f":-0.0,"d":5e-324})"), R"({"id":"k","f":-0.0,"d":5e-324})");
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","f":3,"d":1.7976931348623157e308})"),
            R"({"id":"k","f":3.0,"d":1.7976931348623157e+308})");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","f":1e39,"d":0})"), "f: 1e+39 is out of range for float");
  // Found by avro_decode_fuzz: the shortest text of -FLT_MAX is just beyond it as a double.
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","f":-3.4028235e+38,"d":0.0})"),
            R"({"id":"k","f":-3.4028235e+38,"d":0.0})");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","f":3.4028236e+38,"d":0})"), "f: 3.4028236e+38 is out of range for float");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","f":0,"d":"nan"})"), "d: expected double, got string");
}

TEST(Codec, KeepsBytesWithNulExactly) {
  auto schema = Single(R"("bytes")");
  auto value = ParseJsonRecord(*schema, R"({"id":"k","v":"AAEAAgA="})");
  ASSERT_TRUE(value.ok());
  EXPECT_EQ(std::get<Bytes>(std::get<Value::kRecordIndex>(value->v)[1].v).data, std::string("\0\1\0\2\0", 5));
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","v":"AAEAAgA="})"), R"({"id":"k","v":"AAEAAgA="})");
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","v":"AAEAAgA"})"), R"({"id":"k","v":"AAEAAgA="})");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":"A*=="})"), "v: invalid base64");
  auto strings = Single(R"("string")");
  EXPECT_EQ(RoundTripJson(*strings, R"({"id":"k","v":"a\u0000b"})"), R"({"id":"k","v":"a\u0000b"})");
  EXPECT_EQ(RoundTripJson(*strings, R"({"id":"k","v":"\u00e9\ud83d\ude00"})"),
            "{\"id\":\"k\",\"v\":\"\xc3\xa9\xf0\x9f\x98\x80\"}");
}

TEST(Codec, ReportsEveryFieldErrorWithItsPath) {
  std::string json = kRichRecord;
  json.replace(json.find(R"("price":null)"), 12, R"("price":"cheap")");
  json.replace(json.find(R"("color":"GREEN")"), 15, R"("color":"PINK")");
  json.replace(json.find(R"("uid":"123e4567)"), 15, R"("uid":"xyz4567)");
  auto errors = Errors(*Rich(), json);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].field, "color");
  EXPECT_EQ(errors[0].message, "\"PINK\" is not a symbol of enum test.Color");
  EXPECT_EQ(errors[1].field, "uid");
  EXPECT_EQ(errors[2].field, "items[0].price");
  EXPECT_EQ(errors[2].message, "expected null|double, got string");
  auto status = ParseJsonRecord(*Rich(), json).status();
  EXPECT_EQ(status.message(), "color: \"PINK\" is not a symbol of enum test.Color (and 2 more errors)");
}

TEST(Codec, NamesTheArrayIndexInNestedErrors) {
  auto schema = Single(R"({"type":"array","items":{"type":"record","name":"I","fields":[{"name":"price","type":"double"}]}})");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":[{"price":1},{"price":2},{"price":3},{"price":"x"}]})"),
            "v[3].price: expected double, got string");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":[{"price":1,"extra":2}]})"), "v[0].extra: unknown field");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":[{}]})"), "v[0].price: missing required field (double)");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":[null]})"), "v[0]: expected record I, got null");
}

TEST(Codec, RejectsUnknownDuplicateAndMissingFields) {
  auto schema = Single(R"("int")");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":1,"w":2})"), "w: unknown field");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":1,"v":2})"), "v: field given twice");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k"})"), "v: missing required field (int)");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":null})"), "v: expected int, got null");
  auto errors = Errors(*schema, R"({"w":1})");
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[1].field, "id");
  EXPECT_EQ(errors[2].field, "v");
}

TEST(Codec, SkipsIgnoredTopLevelFields) {
  auto schema = Single(R"("int")");
  auto value = ParseJsonRecord(*schema, R"({"@timestamp":"x","id":"k","v":1})", nullptr, {"@timestamp"});
  EXPECT_TRUE(value.ok()) << value.status().ToString();
}

TEST(Codec, AppliesDefaultsAndNullsForOmittedFields) {
  auto schema = MustParse(R"({"type":"record","name":"R","fields":[{"name":"id","type":"string"},
      {"name":"a","type":["null","int"]},{"name":"b","type":["long","null"],"default":7},
      {"name":"c","type":{"type":"array","items":"string"},"default":["x"]},
      {"name":"d","type":{"type":"enum","name":"E","symbols":["P","Q"]},"default":"Q"},
      {"name":"e","type":{"type":"bytes","logicalType":"decimal","precision":4,"scale":1},"default":"\u0001"}]})");
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k"})"), R"({"id":"k","a":null,"b":7,"c":["x"],"d":"Q","e":"0.1"})");
}

TEST(Codec, RejectsMalformedJson) {
  auto schema = Single(R"("int")");
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":1)"), HasSubstr("malformed JSON"));
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":1} x)"), HasSubstr("malformed JSON"));
  EXPECT_THAT(FirstError(*schema, R"({"id":"k","v":})"), HasSubstr("malformed JSON"));
  EXPECT_THAT(FirstError(*schema, ""), HasSubstr("malformed JSON"));
  EXPECT_EQ(FirstError(*schema, "[1]"), "expected a JSON object, got array");
  EXPECT_THAT(FirstError(*schema, "\"\xff\""), HasSubstr("malformed JSON"));
}

TEST(Codec, ValidatesUuidsAndFixedSizes) {
  auto schema = Single(R"({"type":"string","logicalType":"uuid"})");
  EXPECT_EQ(RoundTripJson(*schema, R"({"id":"k","v":"123E4567-E89B-12D3-A456-426614174000"})"),
            R"({"id":"k","v":"123e4567-e89b-12d3-a456-426614174000"})");
  EXPECT_EQ(FirstError(*schema, R"({"id":"k","v":"123e4567e89b12d3a456426614174000"})"),
            "v: invalid uuid \"123e4567e89b12d3a456426614174000\"");
  auto fixed = Single(R"({"type":"fixed","name":"F","size":2})");
  EXPECT_EQ(FirstError(*fixed, R"({"id":"k","v":"AAAA"})"), "v: expected 2 bytes for fixed F[2], got 3");
}

TEST(Codec, EncodeRejectsValuesThatDoNotMatchNamingThePath) {
  auto schema = Single(R"({"type":"array","items":{"type":"record","name":"I","fields":[{"name":"price","type":"double"}]}})");
  auto value = ParseJsonRecord(*schema, R"({"id":"k","v":[{"price":1},{"price":2}]})");
  ASSERT_TRUE(value.ok());
  auto& items = std::get<Value::kArrayIndex>(std::get<Value::kRecordIndex>(value->v)[1].v);
  std::get<Value::kRecordIndex>(items[1].v)[0].v = std::string("x");
  std::string out = "prefix";
  Status status = EncodeAvro(*schema, *value, &out);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "v[1].price: expected double, got string value");
  EXPECT_EQ(out, "prefix");
}

TEST(AvroDecode, GivesCorruptionForEveryTruncatedPrefix) {
  auto avro = JsonToAvro(*Rich(), kRichRecord);
  ASSERT_TRUE(avro.ok());
  for (size_t len = 0; len < avro->size(); ++len) {
    auto decoded = DecodeAvro(*Rich(), std::string_view(*avro).substr(0, len));
    ASSERT_FALSE(decoded.ok()) << "prefix of " << len << " bytes decoded";
    EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  }
  EXPECT_TRUE(DecodeAvro(*Rich(), *avro).ok());
}

TEST(AvroDecode, RejectsTrailingBytes) {
  auto avro = JsonToAvro(*Rich(), kRichRecord);
  ASSERT_TRUE(avro.ok());
  auto decoded = DecodeAvro(*Rich(), *avro + "x");
  EXPECT_EQ(decoded.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(decoded.status().message(), HasSubstr("1 trailing bytes"));
}

TEST(AvroDecode, RejectsBadIndexesLengthsAndVarints) {
  auto nullable = Single(R"(["null","int"])");
  EXPECT_THAT(DecodeAvro(*nullable, std::string("\x02k\x04", 3)).status().message(), HasSubstr("v: union index 2 out of range"));
  EXPECT_THAT(DecodeAvro(*nullable, std::string("\x02k\x01", 3)).status().message(), HasSubstr("v: union index -1 out of range"));
  auto enums = Single(R"({"type":"enum","name":"E","symbols":["A","B"]})");
  EXPECT_THAT(DecodeAvro(*enums, std::string("\x02k\x04", 3)).status().message(), HasSubstr("v: enum index 2 out of range"));
  EXPECT_THAT(DecodeAvro(*enums, std::string("\x02k\x01", 3)).status().message(), HasSubstr("v: enum index -1 out of range"));
  auto strings = Single(R"("string")");
  EXPECT_THAT(DecodeAvro(*strings, std::string("\x02k\x01", 3)).status().message(), HasSubstr("v: negative length -1"));
  EXPECT_THAT(DecodeAvro(*strings, std::string("\x02k\xfe\xff\xff\xff\x0f", 7)).status().message(),
              HasSubstr("v: length 2147483647 exceeds the 0 bytes left"));
  EXPECT_THAT(DecodeAvro(*strings, std::string("\x02k\x02\xff", 4)).status().message(), HasSubstr("not valid UTF-8"));
  EXPECT_THAT(DecodeAvro(*strings, std::string("\x02k\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 12)).status().message(),
              HasSubstr("varint overflows 64 bits"));
  EXPECT_THAT(DecodeAvro(*strings, std::string("\x02k\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 13)).status().message(),
              HasSubstr("varint"));
  auto arrays = Single(R"({"type":"array","items":"long"})");
  EXPECT_THAT(DecodeAvro(*arrays, std::string("\x02k\xfe\xff\xff\xff\x0f\x02", 8)).status().message(),
              HasSubstr("v: array block count 2147483647 exceeds the input"));
  EXPECT_THAT(DecodeAvro(*arrays, std::string("\x02k\x01\x7f", 4)).status().message(),
              HasSubstr("array block size -64 exceeds"));
  auto ints = Single(R"("int")");
  EXPECT_THAT(DecodeAvro(*ints, std::string("\x02k\x80\x80\x80\x80\x10", 7)).status().message(),
              HasSubstr("v: 2147483648 is out of range for int"));
  auto bools = Single(R"("boolean")");
  EXPECT_THAT(DecodeAvro(*bools, std::string("\x02k\x02", 3)).status().message(), HasSubstr("invalid boolean byte 2"));
  auto uuids = Single(R"({"type":"string","logicalType":"uuid"})");
  EXPECT_THAT(DecodeAvro(*uuids, std::string("\x02k\x02x", 4)).status().message(), HasSubstr("invalid uuid"));
  auto decimals = Single(R"({"type":"bytes","logicalType":"decimal","precision":2})");
  EXPECT_THAT(DecodeAvro(*decimals, std::string("\x02k\x02\x64", 4)).status().message(),
              HasSubstr("decimal has 3 digits, more than the precision 2"));
  EXPECT_THAT(DecodeAvro(*decimals, std::string("\x02k\x00", 3)).status().message(), HasSubstr("empty decimal"));
}

TEST(AvroDecode, ReadsNegativeBlockCountsWithByteSizes) {
  auto arrays = Single(R"({"type":"array","items":"long"})");
  // Block of -2 items (byte size 2): 1, 2; then a block of 1 item: 3; then end.
  auto json = AvroToJson(*arrays, std::string("\x02k\x03\x04\x02\x04\x02\x06\x00", 9));
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  EXPECT_EQ(*json, R"({"id":"k","v":[1,2,3]})");
}

TEST(AvroDecode, NormalisesNonMinimalDecimalBytes) {
  auto decimals = Single(R"({"type":"bytes","logicalType":"decimal","precision":5,"scale":1})");
  auto value = DecodeAvro(*decimals, std::string("\x02k\x06\xff\xff\x85", 6));
  ASSERT_TRUE(value.ok()) << value.status().ToString();
  EXPECT_EQ(std::get<Bytes>(std::get<Value::kRecordIndex>(value->v)[1].v).data, std::string("\x85", 1));
  std::string json;
  WriteJson(*decimals, *value, &json);
  EXPECT_EQ(json, R"({"id":"k","v":"-12.3"})");
}

}  // namespace
}  // namespace aquifer::schema
