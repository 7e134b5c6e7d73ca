// The Redshift SQL the driver generates, checked against Redshift's documented
// syntax (no Redshift server runs here), and the Postgres variants the
// conformance suite runs. The documentation pages each check follows:
// - CREATE TABLE (docs.aws.amazon.com/redshift/latest/dg/r_CREATE_TABLE_NEW.html):
//   table attributes `DISTSTYLE { AUTO | EVEN | KEY | ALL }`, `DISTKEY ( column_name )`,
//   `[ COMPOUND | INTERLEAVED ] SORTKEY ( column_name [, ...] )`, after the column list.
// - SUPER type (r_SUPER_type.html): semistructured values; not a sort or distribution key.
// - VARBYTE type (r_VARBYTE_type.html): `varbyte [ (n) ]`, n up to 1,024,000; FROM_HEX
//   makes one from hex text. Character types: VARCHAR up to 65535 bytes. DECIMAL up to 38 digits.
// - COPY (r_COPY.html, copy-parameters-authorization.html, copy-parameters-data-format.html):
//   `COPY table [ (column_list) ] FROM 's3://bucket/key' authorization [ FORMAT [ AS ] ] JSON 'auto ignorecase'
//   [ GZIP ] ...`; authorization `IAM_ROLE 'arn'` or `ACCESS_KEY_ID '..' SECRET_ACCESS_KEY '..'
//   [ SESSION_TOKEN '..' ]`; `TIMEFORMAT 'auto'`, `REGION 'region'`, `COMPUPDATE OFF`, `STATUPDATE OFF`.
// - JSON_PARSE (JSON_PARSE.html): text → SUPER, for INSERT.
// - version() on Redshift: "PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC)
//   3.4.2 20041017 (Red Hat 3.4.2-6.fc3), Redshift 1.0.NNNNN" (r_VERSION.html).

#include "aquifer/drivers/redshift/dialect.h"

#include <gtest/gtest.h>

#include "aquifer/drivers/redshift/jobs.h"
#include "aquifer/drivers/redshift/warehouse.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/testing_schemas.h"

namespace aquifer::drivers::redshift {
namespace {

std::shared_ptr<const schema::Schema> Small() {
  auto parsed = schema::Schema::Parse(R"json({"type": "record", "name": "R", "fields": [
      {"name": "id", "type": "string"},
      {"name": "n", "type": ["null", "long"]},
      {"name": "Tags", "type": {"type": "array", "items": "string"}},
      {"name": "blob", "type": "bytes"},
      {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})json",
                                      {"id"});
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return *parsed;
}

TEST(RedshiftDialect, DetectsRedshiftFromItsVersionString) {
  EXPECT_EQ(DetectServer("PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 "
                         "(Red Hat 3.4.2-6.fc3), Redshift 1.0.77467"),
            Server::kRedshift);
  EXPECT_EQ(DetectServer("PostgreSQL 15.14 (Debian 15.14-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc"),
            Server::kPostgres);
}

TEST(RedshiftDialect, CreateTableHasDistAndSortKeysOnRedshiftOnly) {
  auto schema = Small();
  TableLayout layout;
  layout.diststyle = "key";
  layout.distkey = "id";
  layout.sortkey = {"__timestamp", "at"};
  auto redshift = CreateTableSql("\"s\".\"i_1\"", *schema, layout, Server::kRedshift);
  ASSERT_TRUE(redshift.ok()) << redshift.status().ToString();
  EXPECT_EQ(*redshift,
            "CREATE TABLE IF NOT EXISTS \"s\".\"i_1\" (\"id\" VARCHAR(65535) NOT NULL, \"n\" BIGINT, "
            "\"Tags\" SUPER NOT NULL, \"blob\" VARBYTE(1024000) NOT NULL, \"at\" TIMESTAMPTZ NOT NULL, "
            "__key VARBYTE(1024000) NOT NULL, __timestamp TIMESTAMPTZ NOT NULL) "
            "DISTSTYLE KEY DISTKEY (\"id\") COMPOUND SORTKEY (\"__timestamp\", \"at\")");
  auto postgres = CreateTableSql("\"s\".\"i_1\"", *schema, layout, Server::kPostgres);
  ASSERT_TRUE(postgres.ok()) << postgres.status().ToString();
  EXPECT_EQ(*postgres,
            "CREATE TABLE IF NOT EXISTS \"s\".\"i_1\" (\"id\" VARCHAR(65535) NOT NULL, \"n\" BIGINT, "
            "\"Tags\" JSONB NOT NULL, \"blob\" BYTEA NOT NULL, \"at\" TIMESTAMPTZ NOT NULL, "
            "__key BYTEA NOT NULL, __timestamp TIMESTAMPTZ NOT NULL)");
  // The defaults: DISTSTYLE AUTO, sorted by the record timestamp.
  auto defaults = CreateTableSql("t", *schema, TableLayout{}, Server::kRedshift);
  ASSERT_TRUE(defaults.ok());
  EXPECT_TRUE(defaults->ends_with(") DISTSTYLE AUTO COMPOUND SORTKEY (\"__timestamp\")")) << *defaults;
}

TEST(RedshiftDialect, KeysMustNameAColumnRedshiftCanDistributeAndSortOn) {
  auto schema = Small();
  TableLayout layout;
  layout.sortkey = {"missing"};
  EXPECT_EQ(CreateTableSql("t", *schema, layout, Server::kRedshift).status().code(), StatusCode::kInvalidArgument);
  layout.sortkey = {"Tags"};  // SUPER
  auto super = CreateTableSql("t", *schema, layout, Server::kRedshift);
  EXPECT_EQ(super.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(super.status().message().find("SUPER"), std::string::npos) << super.status().ToString();
  layout.sortkey = {};
  layout.diststyle = "key";
  layout.distkey = "blob";  // VARBYTE
  EXPECT_EQ(CreateTableSql("t", *schema, layout, Server::kRedshift).status().code(), StatusCode::kInvalidArgument);
  layout.distkey = "";
  EXPECT_EQ(CheckLayout(layout).code(), StatusCode::kInvalidArgument);  // KEY without a column
  layout.diststyle = "round-robin";
  EXPECT_EQ(CheckLayout(layout).code(), StatusCode::kInvalidArgument);
}

TEST(RedshiftDialect, EverySchemaTypeHasARedshiftColumnType) {
  auto schema = schema::Schema::Parse(schema::testing::kRichSchemaJson, {"id"});
  ASSERT_TRUE(schema.ok());
  std::map<std::string, std::string> type_of;
  for (const schema::Field& field : (*schema)->fields()) type_of[field.name] = ColumnType(*field.type, Server::kRedshift);
  EXPECT_EQ(type_of["seq"], "BIGINT");
  EXPECT_EQ(type_of["small"], "INTEGER");
  EXPECT_EQ(type_of["flag"], "BOOLEAN");
  EXPECT_EQ(type_of["ratio"], "REAL");
  EXPECT_EQ(type_of["price"], "DOUBLE PRECISION");
  EXPECT_EQ(type_of["hash"], "VARBYTE(1024000)");
  EXPECT_EQ(type_of["color"], "VARCHAR(65535)");
  EXPECT_EQ(type_of["amount"], "DECIMAL(38,4)");
  EXPECT_EQ(type_of["famount"], "DECIMAL(18,2)");
  EXPECT_EQ(type_of["uid"], "CHAR(36)");
  EXPECT_EQ(type_of["ts"], "TIMESTAMPTZ");
  EXPECT_EQ(type_of["items"], "SUPER");
  EXPECT_EQ(type_of["tags"], "SUPER");
  EXPECT_EQ(type_of["first_item"], "SUPER");
  EXPECT_EQ(type_of["n_matrix"], "SUPER");
}

TEST(RedshiftDialect, CopyFromS3AsJsonWithEitherAuthorization) {
  auto schema = Small();
  CopyAuthorization role;
  role.iam_role = "arn:aws:iam::123456789012:role/Loader";
  EXPECT_EQ(CopySql("\"s\".\"i_1\"", *schema, "bkt", "aquifer/x/y.json", role, "eu-west-1", /*gzip=*/false),
            "COPY \"s\".\"i_1\" (\"id\", \"n\", \"Tags\", \"blob\", \"at\", __key, __timestamp) "
            "FROM 's3://bkt/aquifer/x/y.json' IAM_ROLE 'arn:aws:iam::123456789012:role/Loader' "
            "FORMAT AS JSON 'auto ignorecase' TIMEFORMAT 'auto' REGION 'eu-west-1' COMPUPDATE OFF STATUPDATE OFF");
  CopyAuthorization keys;
  keys.access_key_id = "AKIAEXAMPLE";
  keys.secret_access_key = "se'cret";
  keys.session_token = "tok";
  EXPECT_EQ(CopySql("t", *schema, "bkt", "k.json.gz", keys, "", /*gzip=*/true),
            "COPY t (\"id\", \"n\", \"Tags\", \"blob\", \"at\", __key, __timestamp) FROM 's3://bkt/k.json.gz' "
            "ACCESS_KEY_ID 'AKIAEXAMPLE' SECRET_ACCESS_KEY 'se''cret' SESSION_TOKEN 'tok' "
            "FORMAT AS JSON 'auto ignorecase' GZIP TIMEFORMAT 'auto' COMPUPDATE OFF STATUPDATE OFF");
}

TEST(RedshiftDialect, MultiRowInsertWrapsSuperAndBytesPerServer) {
  auto schema = Small();
  EXPECT_EQ(InsertSql("t", *schema, 2, Server::kRedshift),
            "INSERT INTO t (\"id\", \"n\", \"Tags\", \"blob\", \"at\", __key, __timestamp) VALUES "
            "($1, $2, JSON_PARSE($3), FROM_HEX($4), $5, FROM_HEX($6), $7), "
            "($8, $9, JSON_PARSE($10), FROM_HEX($11), $12, FROM_HEX($13), $14)");
  EXPECT_EQ(InsertSql("t", *schema, 1, Server::kPostgres),
            "INSERT INTO t (\"id\", \"n\", \"Tags\", \"blob\", \"at\", __key, __timestamp) VALUES "
            "($1, $2, CAST($3 AS jsonb), decode($4, 'hex'), $5, decode($6, 'hex'), $7)");
}

TEST(RedshiftDialect, RowValuesAndTheCopyFileLine) {
  auto schema = Small();
  auto record = nlohmann::json::parse(
      R"({"id": "a'b", "n": null, "Tags": ["x", "y\"z"], "blob": "AAEC/w==", "at": 1700000000123})");
  auto row = RowValues(*schema, record, std::string("\x01\xff", 2), -1);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  ASSERT_EQ(row->size(), 7u);
  EXPECT_EQ((*row)[0], "a'b");
  EXPECT_FALSE((*row)[1].has_value());
  EXPECT_EQ((*row)[2], R"(["x","y\"z"])");
  EXPECT_EQ((*row)[3], "000102ff");
  EXPECT_EQ((*row)[4], "2023-11-14 22:13:20.123+00");
  EXPECT_EQ((*row)[5], "01ff");
  EXPECT_EQ((*row)[6], "1969-12-31 23:59:59.999+00");
  // Keys sorted by nlohmann's object order; nested values stay JSON (loaded into SUPER).
  EXPECT_EQ(JsonLine(*schema, *row),
            R"({"Tags":["x","y\"z"],"__key":"01ff","__timestamp":"1969-12-31 23:59:59.999+00",)"
            R"("at":"2023-11-14 22:13:20.123+00","blob":"000102ff","id":"a'b","n":null})"
            "\n");
  EXPECT_EQ(TimestampText(-62135596800001).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*TimestampText(-62135596800000), "0001-01-01 00:00:00.000+00");
}

TEST(RedshiftDialect, OptionsParseAndCheck) {
  driver::Config config{{"url", "postgresql://x@127.0.0.1:1/db"}, {"distkey", "id"}, {"sortkey", "__timestamp, at"}};
  auto options = ParseWarehouseOptions(config);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->layout.diststyle, "key");
  EXPECT_EQ(options->layout.sortkey, (std::vector<std::string>{"__timestamp", "at"}));
  EXPECT_FALSE(options->s3.has_value());
  config["s3_bucket"] = "b";
  EXPECT_EQ(ParseWarehouseOptions(config).status().code(), StatusCode::kInvalidArgument);  // no keys
  config["s3_access_key_id"] = "k";
  config["s3_secret_access_key"] = "s";
  options = ParseWarehouseOptions(config);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->s3->endpoint, "https://s3.us-east-1.amazonaws.com");
  EXPECT_EQ(options->copy_auth.access_key_id, "k");
  config["ingest"] = "sometimes";
  EXPECT_EQ(ParseWarehouseOptions(config).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(StagingKey("p/", Uuid(), Uuid()), "p/00000000000000000000000000000000/00000000000000000000000000000000.json");
}

}  // namespace
}  // namespace aquifer::drivers::redshift

namespace aquifer::drivers::redshift {
namespace {

// EXPLAIN's text plan: Redshift's example from its EXPLAIN page ("XN" nodes)
// and PostgreSQL's, with a join, an alias, quoting and a modifying node.
TEST(RedshiftJobs, ExplainTextGivesTheScannedRelationsAndAByteEstimate) {
  ExplainSummary redshift = ParseExplain({
      "XN Hash Join DS_DIST_NONE  (cost=112.50..14142.59 rows=170771 width=84)",
      "  Hash Cond: (\"outer\".venueid = \"inner\".venueid)",
      "  ->  XN Seq Scan on event  (cost=0.00..87.98 rows=8798 width=17)",
      "  ->  XN Hash  (cost=90.00..90.00 rows=9000 width=67)",
      "        ->  XN Seq Scan on venue  (cost=0.00..90.00 rows=9000 width=67)"});
  EXPECT_EQ(redshift.relations, (std::vector<std::string>{"event", "venue"}));
  EXPECT_EQ(redshift.bytes, 8798 * 17 + 9000 * 67);
  EXPECT_FALSE(redshift.modifies);
  ExplainSummary postgres = ParseExplain({
      "Nested Loop  (cost=0.00..3.30 rows=4 width=8)",
      "  ->  Seq Scan on i_0123 a  (cost=0.00..1.05 rows=5 width=4)",
      "  ->  Index Scan using k on \"Mixed Case\" b  (cost=0.14..0.40 rows=1 width=4)",
      "  ->  Seq Scan on i_0123 c  (cost=0.00..1.05 rows=5 width=4)"});
  EXPECT_EQ(postgres.relations, (std::vector<std::string>{"i_0123", "Mixed Case"}));
  EXPECT_EQ(postgres.bytes, 5 * 4 + 1 * 4 + 5 * 4);
  EXPECT_TRUE(ParseExplain({"Insert on t  (cost=0.00..0.01 rows=0 width=0)", "  ->  Result  (cost=0.00..0.01 rows=1 width=4)"})
                  .modifies);
  EXPECT_TRUE(ParseExplain({"XN Delete on t (cost=0.00..0.01 rows=0 width=0)"}).modifies);
  // count(*): the scan returns no column (width 0) but reads its rows.
  EXPECT_EQ(ParseExplain({"XN Aggregate  (cost=0.10..0.10 rows=1 width=8)",
                          "  ->  XN Seq Scan on t  (cost=0.00..0.08 rows=8 width=0)"}).bytes, 8);
}

TEST(RedshiftJobs, ValuesRenderAsTheCodecsJson) {
  EXPECT_EQ(*RenderValue(20, std::string_view("-9007199254740993")), "-9007199254740993");
  EXPECT_EQ(*RenderValue(16, std::string_view("t")), "true");
  EXPECT_EQ(*RenderValue(701, std::string_view("NaN")), "\"NaN\"");
  EXPECT_EQ(*RenderValue(1700, std::string_view("-12345.6789")), "-12345.6789");
  EXPECT_EQ(*RenderValue(17, std::string_view("\\x000102ff")), "\"AAEC/w==\"");  // PostgreSQL bytea
  EXPECT_EQ(*RenderValue(6551, std::string_view("000102ff")), "\"AAEC/w==\"");    // Redshift VARBYTE
  EXPECT_EQ(*RenderValue(1184, std::string_view("2023-11-14 22:13:20.123+00")), "1700000000123");
  EXPECT_EQ(*RenderValue(1184, std::string_view("1969-12-31 23:59:59.999+00")), "-1");
  EXPECT_EQ(*RenderValue(1184, std::string_view("2023-11-14 23:13:20+01")), "1700000000000");
  EXPECT_EQ(*RenderValue(4000, std::string_view("{\"a\":[1,null]}")), "{\"a\":[1,null]}");  // SUPER
  EXPECT_EQ(*RenderValue(1043, std::string_view("a\"b\n")), "\"a\\\"b\\n\"");
  EXPECT_EQ(*RenderValue(23, std::nullopt), "null");
}

}  // namespace
}  // namespace aquifer::drivers::redshift
