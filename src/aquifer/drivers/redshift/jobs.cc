#include "aquifer/drivers/redshift/jobs.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/base/text.h"
#include "aquifer/driver/sql_text.h"
#include "aquifer/driver/warehouse_jobs.h"

namespace aquifer::drivers::redshift {
namespace {

using driver::Job;
using driver::JobStatus;
using postgres::Connection;
using postgres::Params;
using postgres::PgResult;
using postgres::PooledConnection;
using postgres::QuoteIdent;

constexpr size_t kPartBytes = 60'000;  // under Redshift's VARCHAR(65535)
constexpr size_t kStoreBatchRows = 500;

// "YYYY-MM-DD HH:MM:SS[.fff][+HH[:MM]]" (the server's output in UTC) → ms since the epoch.
Result<int64_t> ParseTimestamp(std::string_view text) {
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (std::sscanf(std::string(text).c_str(), "%d-%d-%d %d:%d:%d", &year, &month, &day, &hour, &minute, &second) != 6) {
    return InvalidArgument("unreadable timestamp '{}'", text);
  }
  int64_t ms = 0;
  size_t pos = text.find(':');
  pos = pos == std::string_view::npos ? text.size() : text.find(':', pos + 1);
  pos = pos == std::string_view::npos ? text.size() : pos + 3;  // after the seconds
  if (pos < text.size() && text[pos] == '.') {
    int64_t scale = 100;
    for (++pos; pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])); ++pos) {
      ms += (text[pos] - '0') * scale;
      scale /= 10;
    }
  }
  int64_t offset_min = 0;
  if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos] == '-' ? -1 : 1;
    int oh = 0, om = 0;
    std::sscanf(std::string(text.substr(pos + 1)).c_str(), "%d:%d", &oh, &om);
    offset_min = sign * (oh * 60 + om);
  }
  using namespace std::chrono;
  const year_month_day ymd{std::chrono::year(year), std::chrono::month(static_cast<unsigned>(month)),
                           std::chrono::day(static_cast<unsigned>(day))};
  const int64_t days_since = sys_days(ymd).time_since_epoch().count();
  return ((days_since * 24 + hour) * 60 + minute - offset_min) * 60'000 + second * 1000 + ms;
}

// Splits `text` in parts of at most kPartBytes bytes, never inside a UTF-8 character.
std::vector<std::string_view> Parts(std::string_view text) {
  std::vector<std::string_view> parts;
  while (text.size() > kPartBytes) {
    size_t cut = kPartBytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    parts.push_back(text.substr(0, cut));
    text.remove_prefix(cut);
  }
  parts.push_back(text);
  return parts;
}

}  // namespace

ExplainSummary ParseExplain(const std::vector<std::string>& lines) {
  // "XN Seq Scan on event  (cost=0.00..87.98 rows=8798 width=17)" (Redshift),
  // "Seq Scan on i_ab a  (cost=0.00..1.12 rows=4 width=44)", "Index Scan using k on t  (...)".
  static const std::regex scan(R"((Scan|Scan using \S+) on ("[^"]+"|[A-Za-z0-9_$.]+)[^(]*\(cost=[0-9.]+\.\.[0-9.]+ rows=([0-9]+) width=([0-9]+)\))");
  static const std::regex modify(R"(^\s*(->\s*)?(XN\s+)?(Insert|Update|Delete|Merge)\b)");
  ExplainSummary summary;
  std::set<std::string> seen;
  for (const std::string& line : lines) {
    if (std::regex_search(line, modify)) summary.modifies = true;
    std::smatch match;
    if (!std::regex_search(line, match, scan)) continue;
    std::string relation = match[2].str();
    if (relation.size() >= 2 && relation.front() == '"') relation = relation.substr(1, relation.size() - 2);
    if (seen.insert(relation).second) summary.relations.push_back(relation);
    // A scan that returns no column (count(*)) still reads its rows: at least a byte each.
    summary.bytes += std::stoll(match[3].str()) * std::max<int64_t>(1, std::stoll(match[4].str()));
  }
  return summary;
}

std::string TypeName(unsigned oid) {
  switch (oid) {
    case 16: return "boolean";
    case 17: return "bytea";
    case 20: return "bigint";
    case 21: return "smallint";
    case 23: return "integer";
    case 25: return "text";
    case 114: return "json";
    case 700: return "real";
    case 701: return "double precision";
    case 1042: return "character";
    case 1043: return "character varying";
    case 1082: return "date";
    case 1114: return "timestamp without time zone";
    case 1184: return "timestamp with time zone";
    case 1700: return "numeric";
    case 3802: return "jsonb";
    case 4000: return "super";    // Redshift
    case 6551: return "varbyte";  // Redshift
    default: return fmt::format("oid {}", oid);
  }
}

Result<std::string> RenderValue(unsigned oid, std::optional<std::string_view> text) {
  if (!text) return std::string("null");
  const std::string_view value = *text;
  switch (oid) {
    case 16: return std::string(value == "t" || value == "true" ? "true" : "false");
    case 20:
    case 21:
    case 23:
    case 26: return std::string(value);
    case 700:
    case 701:
    case 1700:
      if (value == "NaN" || value == "Infinity" || value == "-Infinity") return nlohmann::json(value).dump();
      return std::string(value);
    case 114:
    case 3802:
    case 4000: return std::string(value);
    case 17:
    case 6551: {  // PostgreSQL prints bytea as \x<hex>, Redshift VARBYTE as <hex>
      std::string_view hex = value.starts_with("\\x") ? value.substr(2) : value;
      std::string raw;
      if (!HexDecode(hex, &raw)) return Internal("unreadable binary value from the server");
      return nlohmann::json(Base64Encode(raw)).dump();
    }
    case 1114:
    case 1184: {
      AQ_ASSIGN_OR_RETURN(int64_t ms, ParseTimestamp(value));
      return std::to_string(ms);
    }
    default: return nlohmann::json(std::string(value)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
}

PortableJobs::PortableJobs(postgres::Pool* pool, std::string schema, Server server, Clock* clock, Purge purge)
    : pool_(pool), schema_(std::move(schema)), server_(server), clock_(clock), purge_(std::move(purge)),
      results_(QuoteIdent(schema_) + ".redshift_job_results"), rows_(QuoteIdent(schema_) + ".redshift_job_rows"),
      runner_(pool_->conninfo(), clock_,
              {.run = [this](Connection& conn, const Uuid& job_id, const std::string& sql,
                             const driver::JobOptions& options, const std::function<int64_t()>& remaining_ms) {
                 return Run(conn, job_id, sql, options, remaining_ms);
               },
               .find_stored = [this](const Uuid& job_id) { return FindStored(job_id); },
               .drop_expired = [this](int64_t now_ms) { return DropExpired(now_ms); },
               .name = "redshift warehouse"}) {}

PortableJobs::~PortableJobs() { runner_.StopAll(); }

Status PortableJobs::Init(const std::function<Status(const std::string&)>& ddl) {
  const bool rs = server_ == Server::kRedshift;
  AQ_RETURN_IF_ERROR(ddl(fmt::format(
      "CREATE TABLE IF NOT EXISTS {} (job_id CHAR(32) NOT NULL, columns VARCHAR(65535) NOT NULL, "
      "row_count BIGINT NOT NULL, bytes_scanned BIGINT NOT NULL, finished_ms BIGINT NOT NULL, "
      "expires_ms BIGINT NOT NULL){}",
      results_, rs ? " SORTKEY (job_id)" : "")));
  // Pages are read by (job_id, row_no): an index on PostgreSQL, the sort key on Redshift.
  const std::string rows_ddl = fmt::format("CREATE TABLE IF NOT EXISTS {} (job_id CHAR(32) NOT NULL, row_no BIGINT NOT NULL, "
                                           "part INTEGER NOT NULL, chunk VARCHAR(65535) NOT NULL){}",
                                           rows_, rs ? " COMPOUND SORTKEY (job_id, row_no)" : "");
  if (rs) return ddl(rows_ddl);
  return ddl(rows_ddl + "; CREATE INDEX IF NOT EXISTS redshift_job_rows_page ON " + rows_ + " (job_id, row_no, part); " +
             "CREATE INDEX IF NOT EXISTS redshift_job_results_id ON " + results_ + " (job_id)");
}

Result<driver::QueryAnalysis> PortableJobs::AnalyzeOn(Connection& conn, std::string_view sql) {
  AQ_RETURN_IF_ERROR(driver::CheckOneSelect(sql));
  auto plan = conn.Exec("EXPLAIN " + std::string(sql));
  if (!plan.ok()) return postgres::ExplainError(plan.status());
  std::vector<std::string> lines;
  for (int row = 0; row < plan->rows(); ++row) lines.emplace_back(plan->Bytes(row, 0));
  ExplainSummary summary = ParseExplain(lines);
  if (summary.modifies) return InvalidArgument("only read-only SELECT queries are allowed; this one modifies data");
  driver::QueryAnalysis analysis;
  analysis.bytes_scanned_estimate = summary.bytes;
  for (const std::string& relation : summary.relations) {
    // EXPLAIN names a relation without its schema: ours when it is one of our tables.
    size_t dot = relation.find('.');
    analysis.tables.push_back(dot == std::string::npos ? QuoteIdent(schema_) + "." + QuoteIdent(relation)
                                                       : QuoteIdent(relation.substr(0, dot)) + "." +
                                                             QuoteIdent(relation.substr(dot + 1)));
  }
  return analysis;
}

Result<driver::QueryAnalysis> PortableJobs::Analyze(std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_->Acquire());
  return AnalyzeOn(*conn, driver::TrimStatement(sql));
}

Result<Job> PortableJobs::Start(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) {
  return runner_.Start(job_id, sql, options);
}

Result<postgres::JobRunner::Totals> PortableJobs::Run(Connection& conn, const Uuid& job_id, const std::string& sql,
                                                      const driver::JobOptions& options,
                                                      const std::function<int64_t()>& remaining_ms) {
  auto limit_time = [&]() { return conn.ExecScript(fmt::format("SET statement_timeout TO {}", remaining_ms())); };
  AQ_RETURN_IF_ERROR(limit_time());
  if (purge_) AQ_RETURN_IF_ERROR(purge_(conn, sql));
  AQ_RETURN_IF_ERROR(conn.ExecScript("SET timezone TO 'UTC'"));
  AQ_RETURN_IF_ERROR(conn.ExecScript("BEGIN READ ONLY"));
  AQ_RETURN_IF_ERROR(limit_time());
  AQ_ASSIGN_OR_RETURN(driver::QueryAnalysis analysis, AnalyzeOn(conn, sql));
  AQ_RETURN_IF_ERROR(postgres::CheckScanCap(options, analysis.bytes_scanned_estimate));
  AQ_RETURN_IF_ERROR(limit_time());
  AQ_RETURN_IF_ERROR(conn.ExecScript("DECLARE aquifer_job CURSOR FOR " + sql));
  std::vector<driver::Column> columns;
  std::vector<int> visible;
  std::vector<unsigned> oids;
  bool shaped = false;
  std::vector<std::string> out;
  auto fetch = [&](int64_t chunk, std::vector<std::string>* rows_out) -> Result<int64_t> {
    // Text format (the simple protocol): every type renders, Redshift's too.
    PGresult* raw = PQexec(conn.raw(), fmt::format("FETCH FORWARD {} FROM aquifer_job", chunk).c_str());
    PgResult rows(raw);
    if (raw == nullptr || PQresultStatus(raw) != PGRES_TUPLES_OK) {
      const char* state_code = raw != nullptr ? PQresultErrorField(raw, PG_DIAG_SQLSTATE) : nullptr;
      return postgres::StatusFromSqlState(state_code != nullptr ? state_code : "", "running the job",
                                          raw != nullptr ? PQresultErrorMessage(raw) : PQerrorMessage(conn.raw()));
    }
    if (!shaped) {
      shaped = true;
      for (int column = 0; column < rows.columns(); ++column) {
        std::string name = rows.ColumnName(column);
        if (name.starts_with("__")) continue;
        visible.push_back(column);
        oids.push_back(rows.ColumnType(column));
        columns.push_back({name, TypeName(rows.ColumnType(column))});
      }
    }
    for (int row = 0; row < rows.rows(); ++row) {
      std::string line = "[";
      for (size_t i = 0; i < visible.size(); ++i) {
        if (i > 0) line.push_back(',');
        const int column = visible[i];
        std::optional<std::string_view> text;
        if (!rows.IsNull(row, column)) text = rows.Bytes(row, column);
        AQ_ASSIGN_OR_RETURN(std::string value, RenderValue(oids[i], text));
        line += value;
      }
      line.push_back(']');
      rows_out->push_back(std::move(line));
    }
    return rows.rows();
  };
  AQ_RETURN_IF_ERROR(postgres::FetchCapped(options, limit_time, fetch, &out));
  AQ_RETURN_IF_ERROR(conn.ExecScript("CLOSE aquifer_job; COMMIT"));
  AQ_RETURN_IF_ERROR(conn.ExecScript("SET statement_timeout TO 0"));
  AQ_RETURN_IF_ERROR(Store(conn, job_id, columns, out, analysis.bytes_scanned_estimate,
                           options.result_ttl_ms));
  return postgres::JobRunner::Totals{static_cast<int64_t>(out.size()), analysis.bytes_scanned_estimate};
}

Status PortableJobs::Store(Connection& conn, const Uuid& job_id, const std::vector<driver::Column>& columns,
                           const std::vector<std::string>& rows, int64_t bytes_scanned, int64_t result_ttl_ms) {
  const int64_t finished_ms = clock_->NowMillis();
  const int64_t expires_ms = driver::ExpiresMs(finished_ms, result_ttl_ms);
  const std::string id = job_id.Hex();
  return postgres::StoreInTransaction(conn, [&]() -> Status {
    std::string sql;
    Params params;
    size_t pending = 0;
    auto flush = [&]() -> Status {
      if (pending == 0) return Status::OK();
      Status done = conn.Exec(fmt::format("INSERT INTO {} (job_id, row_no, part, chunk) VALUES {}", rows_, sql), params)
                        .status();
      sql.clear();
      params = Params();
      pending = 0;
      return done;
    };
    for (size_t row_no = 0; row_no < rows.size(); ++row_no) {
      std::vector<std::string_view> parts = Parts(rows[row_no]);
      for (size_t part = 0; part < parts.size(); ++part) {
        sql += fmt::format("{}('{}', {}, {}, ${})", pending == 0 ? "" : ", ", id, row_no, part, params.size() + 1);
        params.Untyped(parts[part]);
        if (++pending >= kStoreBatchRows) AQ_RETURN_IF_ERROR(flush());
      }
    }
    AQ_RETURN_IF_ERROR(flush());
    Params result;
    result.Untyped(postgres::StoredColumns(columns));
    AQ_RETURN_IF_ERROR(conn.Exec(fmt::format("INSERT INTO {} (job_id, columns, row_count, bytes_scanned, finished_ms, "
                                             "expires_ms) VALUES ('{}', $1, {}, {}, {}, {})",
                                             results_, id, rows.size(), bytes_scanned, finished_ms, expires_ms),
                                 result)
                           .status());
    return Status::OK();
  });
}

Result<Job> PortableJobs::Poll(const Uuid& job_id) { return runner_.Poll(job_id); }

Result<Job> PortableJobs::FindStored(const Uuid& job_id) {
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_->Acquire());
  AQ_ASSIGN_OR_RETURN(PgResult found, conn->Exec(fmt::format("SELECT row_count, bytes_scanned FROM {} WHERE job_id = '{}'",
                                                             results_, job_id.Hex())));
  return postgres::StoredJob(job_id, found);
}

Result<driver::RowPage> PortableJobs::ReadRows(const Uuid& job_id, std::string_view page, int32_t limit) {
  AQ_RETURN_IF_ERROR(runner_.CheckReadable(job_id, limit));
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_->Acquire());
  const std::string id = job_id.Hex();
  AQ_ASSIGN_OR_RETURN(PgResult found, conn->Exec(fmt::format(
      "SELECT columns, row_count, finished_ms, expires_ms FROM {} WHERE job_id = '{}'", results_, id)));
  if (found.rows() == 0) return NotFound("job {} not found", job_id.ToString());
  // Binary results (PQexecParams asks for them): the integers are 8 big-endian bytes.
  AQ_ASSIGN_OR_RETURN(int64_t total, found.Int(0, 1));
  AQ_ASSIGN_OR_RETURN(int64_t finished_ms, found.Int(0, 2));
  AQ_ASSIGN_OR_RETURN(int64_t expires_ms, found.Int(0, 3));
  if (expires_ms > 0 && clock_->NowMillis() >= expires_ms) return driver::ResultExpired(job_id, finished_ms, expires_ms);
  AQ_ASSIGN_OR_RETURN(int64_t offset, driver::ParsePageToken(page, total, job_id));
  driver::RowPage out;
  AQ_ASSIGN_OR_RETURN(out.columns, postgres::ParseStoredColumns(found.Bytes(0, 0), job_id));
  const int64_t stop = std::min<int64_t>(total, offset + limit);
  if (offset < stop) {
    AQ_ASSIGN_OR_RETURN(PgResult rows, conn->Exec(fmt::format(
        "SELECT row_no, chunk FROM {} WHERE job_id = '{}' AND row_no >= {} AND row_no < {} ORDER BY row_no, part",
        rows_, id, offset, stop)));
    int64_t current = -1;
    for (int row = 0; row < rows.rows(); ++row) {
      AQ_ASSIGN_OR_RETURN(int64_t row_no, rows.Int(row, 0));
      if (row_no != current) {
        out.rows.emplace_back();
        current = row_no;
      }
      out.rows.back() += rows.Bytes(row, 1);
    }
    if (static_cast<int64_t>(out.rows.size()) != stop - offset) return driver::ResultExpired(job_id, finished_ms, expires_ms);  // deleted under us
  }
  if (stop < total) out.next = driver::PageToken(stop);
  return out;
}

Status PortableJobs::DropExpired(int64_t now_ms) {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return Status::OK();  // best effort: the next call tries again
  return (*conn)->ExecScript(fmt::format(
      "DELETE FROM {} WHERE job_id IN (SELECT job_id FROM {} WHERE expires_ms > 0 AND expires_ms <= {})", rows_,
      results_, now_ms));
}

Status PortableJobs::Reset() {
  runner_.StopAll();
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_->Acquire());
  return conn->ExecScript(fmt::format("TRUNCATE {}; TRUNCATE {}", results_, rows_));
}

}  // namespace aquifer::drivers::redshift
