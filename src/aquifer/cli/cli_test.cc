// Unit tests of the client commands' pure pieces: PROJECT.TABLE parsing, CSV
// reading, typing CSV cells by schema, table rendering, error messages. The
// commands against a real server are in tests/cli/cli_e2e_test.cc.
#include <cstdio>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "aquifer/cli/client_http.h"
#include "aquifer/cli/client_text.h"

namespace aquifer::cli {
namespace {

using nlohmann::json;

// An InputReader over an in-memory string (fmemopen), closed with the test.
class StringInput {
 public:
  explicit StringInput(const std::string& text) : text_(text) {
    file_ = fmemopen(text_.empty() ? nullptr : text_.data(), text_.empty() ? 1 : text_.size(), "r");
    if (text_.empty()) std::fgetc(file_);  // an empty stream: consume the single byte fmemopen needs
  }
  ~StringInput() { std::fclose(file_); }
  std::FILE* file() { return file_; }

 private:
  std::string text_;
  std::FILE* file_;
};

struct CsvRow {
  std::vector<CsvCell> cells;
  int64_t line;
};

std::vector<CsvRow> ReadCsv(const std::string& text, std::string* error) {
  StringInput input(text);
  InputReader reader(input.file());
  CsvReader csv(&reader);
  std::vector<CsvRow> rows;
  CsvRow row;
  while (csv.Next(&row.cells, &row.line, error)) rows.push_back(row);
  return rows;
}

std::vector<std::string> Texts(const CsvRow& row) {
  std::vector<std::string> out;
  for (const CsvCell& cell : row.cells) out.push_back(cell.text);
  return out;
}

TEST(TableRefTest, ParsesProjectDotTable) {
  std::string error;
  auto ref = ParseTableRef("shop.orders_2", &error);
  ASSERT_TRUE(ref) << error;
  EXPECT_EQ(ref->project, "shop");
  EXPECT_EQ(ref->table, "orders_2");
  EXPECT_EQ(ref->ToString(), "shop.orders_2");
}

TEST(TableRefTest, RejectsMissingDotAndBadNames) {
  std::string error;
  EXPECT_FALSE(ParseTableRef("orders", &error));
  EXPECT_NE(error.find("PROJECT.TABLE"), std::string::npos) << error;
  EXPECT_FALSE(ParseTableRef("Shop.orders", &error));
  EXPECT_NE(error.find("project name 'Shop'"), std::string::npos) << error;
  EXPECT_FALSE(ParseTableRef("shop.", &error));
  EXPECT_FALSE(ParseTableRef("shop.1abc", &error));
  EXPECT_FALSE(ParseTableRef("shop.a.b", &error));
  EXPECT_FALSE(ParseTableRef(".orders", &error));
  EXPECT_FALSE(ParseTableRef("shop." + std::string(64, 'a'), &error));
  EXPECT_TRUE(ParseTableRef("shop." + std::string(63, 'a'), &error));
}

TEST(SplitListTest, SplitsOnCommasAndDropsBlanks) {
  EXPECT_EQ(SplitList("id, id2 ,,x"), (std::vector<std::string>{"id", "id2", "x"}));
  EXPECT_EQ(SplitList(""), std::vector<std::string>{});
  EXPECT_EQ(SplitList("*"), std::vector<std::string>{"*"});
}

TEST(UrlEncodeTest, EncodesReservedCharacters) {
  EXPECT_EQ(UrlEncode("{\"a\": 1}"), "%7B%22a%22%3A%201%7D");
  EXPECT_EQ(UrlEncode("abc-_.~9"), "abc-_.~9");
}

TEST(InputReaderTest, ReadsLinesWithAndWithoutCrlfAndCountsBytes) {
  StringInput input("a\r\nbb\n\nccc");
  InputReader reader(input.file());
  std::string line;
  std::vector<std::string> lines;
  while (reader.ReadLine(&line)) lines.push_back(line);
  EXPECT_EQ(lines, (std::vector<std::string>{"a", "bb", "", "ccc"}));
  EXPECT_EQ(reader.bytes_read(), 10u);
}

TEST(CsvReaderTest, SplitsSimpleRowsAndNumbersLines) {
  std::string error;
  auto rows = ReadCsv("id,name\n1,ada\n2,grace\n", &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(Texts(rows[0]), (std::vector<std::string>{"id", "name"}));
  EXPECT_EQ(Texts(rows[2]), (std::vector<std::string>{"2", "grace"}));
  EXPECT_EQ(rows[0].line, 1);
  EXPECT_EQ(rows[2].line, 3);
}

TEST(CsvReaderTest, HandlesQuotesEscapedQuotesAndSeparatorsInQuotes) {
  std::string error;
  auto rows = ReadCsv("a,b,c\n\"x, y\",\"say \"\"hi\"\"\",plain\n", &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(Texts(rows[1]), (std::vector<std::string>{"x, y", "say \"hi\"", "plain"}));
  EXPECT_TRUE(rows[1].cells[0].quoted);
  EXPECT_FALSE(rows[1].cells[2].quoted);
}

TEST(CsvReaderTest, KeepsEmbeddedNewlinesAndCountsTheirLines) {
  std::string error;
  auto rows = ReadCsv("id,note\r\n1,\"two\r\nlines\"\r\n2,after\r\n", &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1].cells[1].text, "two\r\nlines");
  EXPECT_EQ(rows[1].line, 2);
  EXPECT_EQ(rows[2].line, 4);  // the quoted newline moved the next record down a line
  EXPECT_EQ(Texts(rows[2]), (std::vector<std::string>{"2", "after"}));
}

TEST(CsvReaderTest, TellsEmptyUnquotedFromQuotedEmpty) {
  std::string error;
  auto rows = ReadCsv("a,b,c\n,\"\",\n", &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(rows.size(), 2u);
  ASSERT_EQ(rows[1].cells.size(), 3u);
  EXPECT_FALSE(rows[1].cells[0].quoted);
  EXPECT_TRUE(rows[1].cells[1].quoted);
  EXPECT_EQ(rows[1].cells[1].text, "");
  EXPECT_FALSE(rows[1].cells[2].quoted);
}

TEST(CsvReaderTest, SkipsBomAndBlankLinesAndReadsLastRowWithoutNewline) {
  std::string error;
  auto rows = ReadCsv("\xEF\xBB\xBFid\n\n1\n\n2", &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].cells[0].text, "id");
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_EQ(rows[2].line, 5);
  EXPECT_EQ(rows[2].cells[0].text, "2");
}

TEST(CsvReaderTest, ReportsUnterminatedQuoteWithItsLine) {
  std::string error;
  auto rows = ReadCsv("id,note\n1,ok\n2,\"never\nclosed\n", &error);
  EXPECT_EQ(rows.size(), 2u);
  EXPECT_EQ(error, "line 3: unterminated quoted field");
}

TEST(CsvReaderTest, ReportsTextAfterAClosingQuote) {
  std::string error;
  ReadCsv("a\n\"x\"y\n", &error);
  EXPECT_NE(error.find("line 2: unexpected character after a closing quote"), std::string::npos) << error;
}

TEST(CsvReaderTest, ReadsEmptyInputAsNoRows) {
  std::string error;
  EXPECT_TRUE(ReadCsv("", &error).empty());
  EXPECT_TRUE(error.empty());
}

const char* kSchema = R"({
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "user", "type": "string"},
    {"name": "qty", "type": "int"},
    {"name": "price", "type": ["null", "double"]},
    {"name": "paid", "type": "boolean"},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
    {"name": "prev", "type": ["null", "Status"]},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "ratio", "type": "float"}
  ]})";

CsvSchema OrderSchema() {
  std::string error;
  auto schema = CsvSchema::FromAvro(json::parse(kSchema), &error);
  EXPECT_TRUE(schema) << error;
  return *schema;
}

TEST(CsvSchemaTest, ReadsFieldKindsAndNullability) {
  CsvSchema schema = OrderSchema();
  EXPECT_EQ(schema.Find("id")->kind, CellKind::kInteger);
  EXPECT_EQ(schema.Find("price")->kind, CellKind::kFloat);
  EXPECT_TRUE(schema.Find("price")->nullable);
  EXPECT_FALSE(schema.Find("user")->nullable);
  EXPECT_EQ(schema.Find("amount")->kind, CellKind::kDecimal);
  EXPECT_EQ(schema.Find("at")->kind, CellKind::kInteger);
  EXPECT_EQ(schema.Find("status")->kind, CellKind::kString);
  EXPECT_EQ(schema.Find("prev")->kind, CellKind::kString);  // a named type used by reference
  EXPECT_TRUE(schema.Find("prev")->nullable);
  EXPECT_EQ(schema.Find("tags")->kind, CellKind::kJson);
  EXPECT_EQ(schema.Find("@timestamp")->kind, CellKind::kInteger);
  EXPECT_FALSE(schema.Find("unknown"));
}

TEST(CsvSchemaTest, AcceptsSchemaAsObjectOrStringInDescription) {
  std::string error;
  EXPECT_TRUE(CsvSchema::FromDescription(json{{"schema", json::parse(kSchema)}}, &error)) << error;
  EXPECT_TRUE(CsvSchema::FromDescription(json{{"schema", std::string(kSchema)}}, &error)) << error;
  EXPECT_FALSE(CsvSchema::FromDescription(json{{"name", "t"}}, &error));
  EXPECT_FALSE(CsvSchema::FromDescription(json{{"schema", "{not json"}}, &error));
}

TEST(CsvSchemaTest, ConvertsCellsToTheSchemaTypes) {
  CsvSchema schema = OrderSchema();
  std::vector<std::string> header = {"id", "user", "qty", "price", "paid", "note", "amount",
                                     "at", "status", "tags", "ratio", "@timestamp"};
  std::vector<CsvCell> cells = {{"42", false},    {"ada", false},          {"-3", false},
                                {"9.5", false},   {"TRUE", false},         {"", false},
                                {"12.50", false}, {"1700000000000", false}, {"NEW", false},
                                {"[\"a\",\"b\"]", true}, {"NaN", false},   {"5", false}};
  json record = schema.ToRecord(header, cells);
  EXPECT_EQ(record, json::parse(R"({"id":42,"user":"ada","qty":-3,"price":9.5,"paid":true,"note":null,
    "amount":"12.50","at":1700000000000,"status":"NEW","tags":["a","b"],"ratio":"NaN","@timestamp":5})"));
}

TEST(CsvSchemaTest, EmptyCellsAreNullEmptyStringOrOmitted) {
  CsvSchema schema = OrderSchema();
  std::vector<std::string> header = {"id", "user", "price", "qty", "note"};
  json record = schema.ToRecord(header, {{"1", false}, {"", false}, {"", false}, {"", false}, {"", true}});
  // user: non-null string → ""; price: nullable → null; qty: omitted (default or
  // the server's "missing field"); note: quoted empty → "".
  EXPECT_EQ(record, json::parse(R"({"id":1,"user":"","price":null,"note":""})"));
}

TEST(CsvSchemaTest, CellsThatDoNotConvertAreSentAsStringsForTheServerToName) {
  CsvSchema schema = OrderSchema();
  json record = schema.ToRecord({"id", "paid", "price", "tags", "extra"},
                                {{"1.5", false}, {"maybe", false}, {"abc", false}, {"[oops", false}, {"x", false}});
  EXPECT_EQ(record, json::parse(R"({"id":"1.5","paid":"maybe","price":"abc","tags":"[oops","extra":"x"})"));
}

TEST(ConvertCellTest, ParsesBooleansIntegersAndFloatsStrictly) {
  CsvColumnType boolean{CellKind::kBoolean, false};
  EXPECT_EQ(*ConvertCell({"yes", false}, boolean), json(true));
  EXPECT_EQ(*ConvertCell({"0", false}, boolean), json(false));
  EXPECT_EQ(*ConvertCell({"F", false}, boolean), json(false));
  CsvColumnType integer{CellKind::kInteger, false};
  EXPECT_EQ(*ConvertCell({"9223372036854775807", false}, integer), json(INT64_MAX));
  EXPECT_EQ(*ConvertCell({"9223372036854775808", false}, integer), json("9223372036854775808"));
  EXPECT_EQ(*ConvertCell({" 1", false}, integer), json(" 1"));
  EXPECT_EQ(*ConvertCell({"1e3", false}, integer), json("1e3"));
  CsvColumnType real{CellKind::kFloat, true};
  EXPECT_EQ(*ConvertCell({"+2.5", false}, real), json(2.5));
  EXPECT_EQ(*ConvertCell({"1e3", false}, real), json(1000.0));
  EXPECT_EQ(*ConvertCell({"-inf", false}, real), json("-Infinity"));
  EXPECT_EQ(*ConvertCell({"", false}, real), json(nullptr));
  EXPECT_FALSE(ConvertCell({"", false}, CsvColumnType{CellKind::kInteger, false}));
}

TEST(RenderTableTest, AlignsColumnsAndRightAlignsNumbers) {
  std::string table = RenderTable({"id", "name", "score"}, {{"1", "ada", "9.5"}, {"22", "grace", "10"}});
  EXPECT_EQ(table,
            "id  name   score\n"
            "--  -----  -----\n"
            " 1  ada      9.5\n"
            "22  grace     10\n");
}

TEST(RenderTableTest, TruncatesLongCellsByCodePoints) {
  std::string table = RenderTable({"note"}, {{"héllo wörld"}}, 6);
  EXPECT_EQ(table,
            "note\n"
            "------\n"
            "héllo\u2026\n");
}

TEST(RenderTableTest, RendersHeadersOnlyForNoRows) {
  EXPECT_EQ(RenderTable({"a", "bb"}, {}), "a  bb\n-  --\n");
}

TEST(RenderRecordsTest, UsesKeysInFirstAppearanceOrderWithTimestampLast) {
  std::vector<json> records = {json::parse(R"({"@timestamp":5,"id":1,"tags":["x"]})"),
                               json::parse(R"({"id":2,"note":"a\nb","@timestamp":6})")};
  EXPECT_EQ(RenderRecords(records),
            "id  tags   note  @timestamp\n"
            "--  -----  ----  ----------\n"
            " 1  [\"x\"]                 5\n"
            " 2         a b            6\n");
}

TEST(FormattingTest, HumanBytesThousandsAndProgress) {
  EXPECT_EQ(HumanBytes(12), "12 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(3u << 20), "3.0 MiB");
  EXPECT_EQ(WithThousands(1234567), "1,234,567");
  EXPECT_EQ(WithThousands(-1000), "-1,000");
  EXPECT_EQ(WithThousands(999), "999");
  EXPECT_EQ(ProgressLine(12345, 0.5, 50), "[############............]  50%  12,345 records  24,690 rec/s");
  EXPECT_EQ(ProgressLine(10, 0, -1), "10 records");
}

TEST(ErrorMessageTest, ShowsStatusCodeAndServerMessage) {
  HttpResponse response;
  response.status = 404;
  response.body = R"({"error":{"code":"not_found","message":"table 'p.t' not found"}})";
  EXPECT_EQ(ErrorMessage(response), "404 not_found: table 'p.t' not found");
  response.status = 502;
  response.body = "<html>bad gateway</html>\n";
  EXPECT_EQ(ErrorMessage(response), "502 <html>bad gateway</html>");
  response.status = 401;
  response.body.clear();
  EXPECT_EQ(ErrorMessage(response), "401 unauthenticated (give --secret or AQUIFER_SECRET)");
}

TEST(ServerClientTest, UnreachableServerIsExitThreeWithTheUrl) {
  ServerClient client(ServerOptions{"http://127.0.0.1:1", "", 2000});
  try {
    client.Send("GET", "/healthz");
    FAIL() << "no error";
  } catch (const CommandError& error) {
    EXPECT_EQ(error.exit_code(), kExitUnreachable);
    EXPECT_NE(std::string(error.what()).find("cannot reach http://127.0.0.1:1: "), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace aquifer::cli
