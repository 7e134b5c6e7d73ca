#pragma once

// The SQL the Redshift warehouse sends, as pure functions of the schema and
// the options, so unit tests (dialect_test.cc) check it against Redshift's
// documented syntax without a server. Each function takes the server the
// driver detected (DetectServer) and leaves out what only Redshift accepts
// when it talks to PostgreSQL (the conformance suite's server):
//
// | Redshift                          | PostgreSQL                 |
// |-----------------------------------|----------------------------|
// | SUPER (records, arrays)           | jsonb                      |
// | VARBYTE(1024000) (bytes, fixed)   | bytea                      |
// | VARCHAR(65535) (strings, enums)   | varchar(65535)             |
// | CHAR(36) (uuid)                   | char(36)                   |
// | DISTSTYLE / DISTKEY / SORTKEY     | (left out)                 |
// | JSON_PARSE($n), FROM_HEX($n)      | CAST($n AS jsonb), decode($n, 'hex') |
// | COPY ... FROM 's3://...'          | (none: multi-row INSERT)   |

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "aquifer/base/status.h"
#include "aquifer/schema/schema.h"

namespace aquifer::drivers::redshift {

enum class Server { kRedshift, kPostgres };
std::string_view ServerName(Server server);

// From `SELECT version()`: Redshift answers "PostgreSQL 8.0.2 on i686-pc-linux-gnu,
// compiled by GCC ..., Redshift 1.0.NNNNN"; anything without "Redshift" is PostgreSQL.
Server DetectServer(std::string_view version);

// CREATE TABLE's distribution and sort clauses (Redshift only).
struct TableLayout {
  std::string diststyle = "auto";                  // auto | even | all | key
  std::string distkey;                             // a column; only with diststyle key
  std::vector<std::string> sortkey = {"__timestamp"};  // COMPOUND SORTKEY columns; empty: none
};

// Checks the layout's words (not the columns: CreateTableSql does, per schema).
Status CheckLayout(const TableLayout& layout);

std::string ColumnType(const schema::Type& type, Server server);
bool IsSuper(const schema::Type& type);  // stored as SUPER (jsonb on Postgres)

// CREATE TABLE IF NOT EXISTS <table> (<fields>, __key, __timestamp) [DISTSTYLE ...] [DISTKEY (...)] [COMPOUND SORTKEY (...)].
// InvalidArgument when a key names no column, or a SUPER column (Redshift
// cannot distribute or sort on SUPER).
Result<std::string> CreateTableSql(const std::string& table, const schema::Schema& schema,
                                   const TableLayout& layout, Server server);

// The quoted column list every write names: the fields, then __key, __timestamp.
std::string ColumnList(const schema::Schema& schema);

// How COPY authenticates to S3 (Redshift's authorization parameters): an
// IAM role when set, else the access key (and session token when set).
struct CopyAuthorization {
  std::string iam_role;
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;
};

// COPY <table> (<columns>) FROM 's3://<bucket>/<key>' <authorization>
//   FORMAT AS JSON 'auto ignorecase' [GZIP] TIMEFORMAT 'auto' REGION '<region>' ...
std::string CopySql(const std::string& table, const schema::Schema& schema, std::string_view bucket,
                    std::string_view key, const CopyAuthorization& auth, std::string_view region, bool gzip);

// A string literal: single quotes doubled (credentials, paths).
std::string Literal(std::string_view text);

// One record as what both write paths send: per column (fields, __key,
// __timestamp) the text the server reads, nullopt for NULL. Bytes as hex,
// timestamps as "YYYY-MM-DD HH:MI:SS.mmm+00", nested values as JSON text.
Result<std::vector<std::optional<std::string>>> RowValues(const schema::Schema& schema, const nlohmann::json& record,
                                                          std::string_view key, int64_t timestamp_ms);

// The same row as one line of the COPY file (JSON 'auto ignorecase'): an
// object keyed by column name; nested values as JSON (loaded into SUPER),
// everything else as RowValues' text (numbers as numbers).
std::string JsonLine(const schema::Schema& schema, const std::vector<std::optional<std::string>>& row);

// INSERT INTO <table> (<columns>) VALUES (<row 1>), ..., (<row n>) with
// parameters $1.. in row order, each wrapped as its column needs
// (JSON_PARSE / FROM_HEX on Redshift, casts on Postgres).
std::string InsertSql(const std::string& table, const schema::Schema& schema, size_t rows, Server server);

Result<std::string> TimestampText(int64_t ms);

}  // namespace aquifer::drivers::redshift
