#include "aquifer/drivers/redshift/dialect.h"

#include <chrono>

#include <fmt/format.h>

#include "aquifer/base/text.h"
#include "aquifer/drivers/postgres/pg.h"

namespace aquifer::drivers::redshift {
namespace {

using nlohmann::json;
using postgres::QuoteIdent;
using schema::Kind;
using schema::Logical;
using schema::Type;

// Redshift's widest VARCHAR and VARBYTE (bytes). Docs: "Character types"
// (VARCHAR up to 65535 bytes) and "VARBYTE type" (up to 1,024,000 bytes).
constexpr int kMaxVarchar = 65535;
constexpr int kMaxVarbyte = 1'024'000;
// Redshift's DECIMAL precision tops out at 38 ("Numeric types").
constexpr int kMaxDecimalPrecision = 38;

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool IsTimestamp(const Type& type) {
  return (type.kind == Kind::kLong || type.kind == Kind::kInt) && type.logical == Logical::kTimestampMillis;
}

bool IsBinary(const Type& type) {
  return (type.kind == Kind::kBytes || type.kind == Kind::kFixed) && type.logical != Logical::kDecimal;
}

}  // namespace

std::string_view ServerName(Server server) { return server == Server::kRedshift ? "redshift" : "postgres"; }

Server DetectServer(std::string_view version) {
  return version.find("Redshift") != std::string_view::npos ? Server::kRedshift : Server::kPostgres;
}

Status CheckLayout(const TableLayout& layout) {
  const std::string style = Lower(layout.diststyle);
  if (style != "auto" && style != "even" && style != "all" && style != "key") {
    return InvalidArgument("config 'diststyle': must be auto, even, all or key, got '{}'", layout.diststyle);
  }
  if (style == "key" && layout.distkey.empty()) {
    return InvalidArgument("config 'diststyle' is key but 'distkey' names no column");
  }
  if (!layout.distkey.empty() && style != "key") {
    return InvalidArgument("config 'distkey' needs 'diststyle' key (or unset), not '{}'", layout.diststyle);
  }
  return Status::OK();
}

bool IsSuper(const Type& type) { return type.kind == Kind::kArray || type.kind == Kind::kRecord; }

std::string ColumnType(const Type& type, Server server) {
  const bool rs = server == Server::kRedshift;
  switch (type.kind) {
    case Kind::kBoolean: return "BOOLEAN";
    case Kind::kInt: return type.logical == Logical::kTimestampMillis ? "TIMESTAMPTZ" : "INTEGER";
    case Kind::kLong: return type.logical == Logical::kTimestampMillis ? "TIMESTAMPTZ" : "BIGINT";
    case Kind::kFloat: return "REAL";
    case Kind::kDouble: return "DOUBLE PRECISION";
    case Kind::kString:
      if (type.logical == Logical::kUuid) return "CHAR(36)";
      return fmt::format("VARCHAR({})", kMaxVarchar);
    case Kind::kEnum: return fmt::format("VARCHAR({})", kMaxVarchar);
    case Kind::kBytes:
    case Kind::kFixed:
      if (type.logical == Logical::kDecimal) {
        if (type.precision >= 1 && type.precision <= kMaxDecimalPrecision) {
          return fmt::format("DECIMAL({},{})", type.precision, type.scale);
        }
        // Wider than Redshift's DECIMAL: the exact digits as text.
        return fmt::format("VARCHAR({})", kMaxVarchar);
      }
      return rs ? fmt::format("VARBYTE({})", kMaxVarbyte) : "BYTEA";
    case Kind::kArray:
    case Kind::kRecord: return rs ? "SUPER" : "JSONB";
  }
  return fmt::format("VARCHAR({})", kMaxVarchar);
}

std::string ColumnList(const schema::Schema& schema) {
  std::string columns;
  for (const schema::Field& field : schema.fields()) columns += QuoteIdent(field.name) + ", ";
  return columns + "__key, __timestamp";
}

Result<std::string> CreateTableSql(const std::string& table, const schema::Schema& schema, const TableLayout& layout,
                                   Server server) {
  AQ_RETURN_IF_ERROR(CheckLayout(layout));
  const bool rs = server == Server::kRedshift;
  std::string columns;
  for (const schema::Field& field : schema.fields()) {
    columns += fmt::format("{} {}{}, ", QuoteIdent(field.name), ColumnType(*field.type, server),
                           field.type->nullable ? "" : " NOT NULL");
  }
  columns += fmt::format("__key {} NOT NULL, __timestamp TIMESTAMPTZ NOT NULL",
                         rs ? fmt::format("VARBYTE({})", kMaxVarbyte) : "BYTEA");
  // A key column must exist and must not be SUPER (Redshift: "SUPER type"
  // limitations: a SUPER column can't be a distribution or sort key).
  auto check_key = [&](const std::string& name, std::string_view what) -> Status {
    if (name == "__timestamp") return Status::OK();
    if (name == "__key") {
      return InvalidArgument("config '{}': __key is VARBYTE, which Redshift does not {} on", what,
                             what == "distkey" ? "distribute" : "sort");
    }
    const int index = schema.FieldIndex(name);
    if (index < 0) return InvalidArgument("config '{}': the schema has no field '{}'", what, name);
    const Type& type = *schema.fields()[index].type;
    if (IsSuper(type) || IsBinary(type)) {
      return InvalidArgument("config '{}': field '{}' is stored as {}, which cannot be a {}", what, name,
                             ColumnType(type, Server::kRedshift), what);
    }
    return Status::OK();
  };
  if (!layout.distkey.empty()) AQ_RETURN_IF_ERROR(check_key(layout.distkey, "distkey"));
  for (const std::string& column : layout.sortkey) AQ_RETURN_IF_ERROR(check_key(column, "sortkey"));
  std::string sql = fmt::format("CREATE TABLE IF NOT EXISTS {} ({})", table, columns);
  if (rs) {
    // CREATE TABLE's table attributes, in the documented order:
    // [ DISTSTYLE { AUTO | EVEN | KEY | ALL } ] [ DISTKEY ( column_name ) ]
    // [ [ COMPOUND | INTERLEAVED ] SORTKEY ( column_name [,...]) ]
    std::string style = Lower(layout.diststyle);
    for (char& c : style) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    sql += " DISTSTYLE " + style;
    if (!layout.distkey.empty()) sql += fmt::format(" DISTKEY ({})", QuoteIdent(layout.distkey));
    if (!layout.sortkey.empty()) {
      std::string keys;
      for (const std::string& column : layout.sortkey) keys += (keys.empty() ? "" : ", ") + QuoteIdent(column);
      sql += fmt::format(" COMPOUND SORTKEY ({})", keys);
    }
  }
  return sql;
}

std::string Literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out.push_back('\'');
    out.push_back(c);
  }
  return out + "'";
}

std::string CopySql(const std::string& table, const schema::Schema& schema, std::string_view bucket,
                    std::string_view key, const CopyAuthorization& auth, std::string_view region, bool gzip) {
  // COPY table_name [ column_list ] FROM data_source authorization
  //   [ [ FORMAT ] [ AS ] data_format ] [ parameter [ argument ] [, ... ] ]
  // authorization: IAM_ROLE 'arn' | ACCESS_KEY_ID '..' SECRET_ACCESS_KEY '..' [ SESSION_TOKEN '..' ]
  // data_format JSON 'auto ignorecase': the object's keys matched to column
  // names whatever their case; nested objects and arrays load into SUPER.
  std::string authorization;
  if (!auth.iam_role.empty()) {
    authorization = "IAM_ROLE " + Literal(auth.iam_role);
  } else {
    authorization = fmt::format("ACCESS_KEY_ID {} SECRET_ACCESS_KEY {}", Literal(auth.access_key_id),
                                Literal(auth.secret_access_key));
    if (!auth.session_token.empty()) authorization += " SESSION_TOKEN " + Literal(auth.session_token);
  }
  std::string sql = fmt::format("COPY {} ({}) FROM {} {} FORMAT AS JSON 'auto ignorecase'", table,
                                ColumnList(schema), Literal(fmt::format("s3://{}/{}", bucket, key)), authorization);
  if (gzip) sql += " GZIP";
  // TIMEFORMAT 'auto' reads "YYYY-MM-DD HH:MI:SS.mmm+00"; REGION names the
  // bucket's region when it differs from the cluster's; COMPUPDATE and
  // STATUPDATE OFF keep each small load from analysing the table.
  sql += " TIMEFORMAT 'auto'";
  if (!region.empty()) sql += " REGION " + Literal(region);
  sql += " COMPUPDATE OFF STATUPDATE OFF";
  return sql;
}

Result<std::string> TimestampText(int64_t ms) {
  // std::chrono's civil calendar covers years -32767..32767; Redshift and
  // Postgres read years 1..9999 AD here (no " BC" suffix).
  constexpr int64_t kMinMs = -62135596800000;   // 0001-01-01T00:00:00Z
  constexpr int64_t kMaxMs = 253402300799999;   // 9999-12-31T23:59:59.999Z
  if (ms < kMinMs || ms > kMaxMs) return InvalidArgument("timestamp {} ms is outside years 1..9999", ms);
  using namespace std::chrono;
  sys_time<milliseconds> tp{milliseconds(ms)};
  auto day = floor<days>(tp);
  year_month_day ymd{day};
  hh_mm_ss<milliseconds> time{tp - day};
  return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}+00", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), time.hours().count(),
                     time.minutes().count(), time.seconds().count(), time.subseconds().count());
}

namespace {

// One value (the codec's JSON for it) as the text its column reads; nullopt for NULL.
Result<std::optional<std::string>> ValueText(const Type& type, const json& value) {
  if (value.is_null()) return std::optional<std::string>();
  switch (type.kind) {
    case Kind::kBoolean: return std::optional<std::string>(value.get<bool>() ? "true" : "false");
    case Kind::kInt:
    case Kind::kLong:
      if (type.logical == Logical::kTimestampMillis) {
        AQ_ASSIGN_OR_RETURN(std::string text, TimestampText(value.get<int64_t>()));
        return std::optional<std::string>(std::move(text));
      }
      return std::optional<std::string>(value.dump());
    case Kind::kFloat:
    case Kind::kDouble:  // NaN and ±Infinity come as strings both servers read as they are
      return std::optional<std::string>(value.is_string() ? value.get<std::string>() : value.dump());
    case Kind::kString:
    case Kind::kEnum: return std::optional<std::string>(value.get<std::string>());
    case Kind::kBytes:
    case Kind::kFixed: {
      if (type.logical == Logical::kDecimal) return std::optional<std::string>(value.get<std::string>());
      std::string raw;
      if (!Base64Decode(value.get<std::string>(), &raw)) return Internal("the codec wrote bytes that are not base64");
      return std::optional<std::string>(HexEncode(raw));
    }
    case Kind::kArray:
    case Kind::kRecord: return std::optional<std::string>(value.dump());
  }
  return Internal("unknown schema kind");
}

}  // namespace

Result<std::vector<std::optional<std::string>>> RowValues(const schema::Schema& schema, const json& record,
                                                          std::string_view key, int64_t timestamp_ms) {
  std::vector<std::optional<std::string>> row;
  row.reserve(schema.fields().size() + 2);
  for (const schema::Field& field : schema.fields()) {
    auto it = record.find(field.name);
    auto text = ValueText(*field.type, it == record.end() ? json() : *it);
    if (!text.ok()) return text.status().WithContext("field " + field.name);
    row.push_back(std::move(*text));
  }
  row.emplace_back(HexEncode(key));
  AQ_ASSIGN_OR_RETURN(std::string timestamp, TimestampText(timestamp_ms));
  row.emplace_back(std::move(timestamp));
  return row;
}

std::string JsonLine(const schema::Schema& schema, const std::vector<std::optional<std::string>>& row) {
  json line = json::object();
  const auto& fields = schema.fields();
  for (size_t i = 0; i < fields.size() && i < row.size(); ++i) {
    const Type& type = *fields[i].type;
    const std::optional<std::string>& value = row[i];
    if (!value) {
      line[fields[i].name] = nullptr;
    } else if (IsSuper(type)) {
      line[fields[i].name] = json::parse(*value, nullptr, false);
    } else if ((type.kind == Kind::kInt || type.kind == Kind::kLong) && !IsTimestamp(type)) {
      line[fields[i].name] = json::parse(*value, nullptr, false);
    } else if (type.kind == Kind::kBoolean) {
      line[fields[i].name] = *value == "true";
    } else {
      line[fields[i].name] = *value;
    }
  }
  if (row.size() == fields.size() + 2) {
    line["__key"] = *row[fields.size()];
    line["__timestamp"] = *row[fields.size() + 1];
  }
  return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string InsertSql(const std::string& table, const schema::Schema& schema, size_t rows, Server server) {
  const bool rs = server == Server::kRedshift;
  // Per column, how a text parameter becomes the column's value.
  std::vector<std::string> wrap;
  for (const schema::Field& field : schema.fields()) {
    const Type& type = *field.type;
    if (IsSuper(type)) {
      wrap.push_back(rs ? "JSON_PARSE(${})" : "CAST(${} AS jsonb)");
    } else if (IsBinary(type)) {
      wrap.push_back(rs ? "FROM_HEX(${})" : "decode(${}, 'hex')");
    } else {
      wrap.push_back("${}");
    }
  }
  wrap.push_back(rs ? "FROM_HEX(${})" : "decode(${}, 'hex')");
  wrap.push_back("${}");
  std::string sql = fmt::format("INSERT INTO {} ({}) VALUES ", table, ColumnList(schema));
  sql.reserve(sql.size() + rows * wrap.size() * 12);
  int param = 1;
  for (size_t row = 0; row < rows; ++row) {
    sql += row == 0 ? "(" : ", (";
    for (size_t column = 0; column < wrap.size(); ++column) {
      if (column > 0) sql += ", ";
      sql += fmt::format(fmt::runtime(wrap[column]), param++);
    }
    sql += ")";
  }
  return sql;
}

}  // namespace aquifer::drivers::redshift
