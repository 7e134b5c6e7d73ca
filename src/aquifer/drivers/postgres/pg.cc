#include "aquifer/drivers/postgres/pg.h"

#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace aquifer::drivers::postgres {
namespace {

constexpr size_t kMaxSqlInMessage = 120;

std::string ShortSql(std::string_view sql) {
  std::string out(sql.substr(0, kMaxSqlInMessage));
  for (char& c : out) {
    if (c == '\n') c = ' ';
  }
  if (sql.size() > kMaxSqlInMessage) out += "...";
  return out;
}

void PutBigEndian32(std::string* out, uint32_t value) {
  char buf[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16), static_cast<char>(value >> 8),
                 static_cast<char>(value)};
  out->append(buf, 4);
}

std::string TrimmedLibpqMessage(PGconn* conn) {
  std::string message = conn != nullptr ? PQerrorMessage(conn) : "out of memory";
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message;
}

}  // namespace

std::string QuoteIdent(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

Status StatusFromSqlState(std::string_view sqlstate, std::string_view context, std::string_view message) {
  std::string text = fmt::format("{}: {} (SQLSTATE {})", context, message, sqlstate);
  auto is = [&](std::string_view code) { return sqlstate == code; };
  auto in_class = [&](std::string_view cls) { return sqlstate.substr(0, 2) == cls; };
  StatusCode code = StatusCode::kInternal;
  if (in_class("08") || is("57P01") || is("57P02") || is("57P03") || is("53300")) {
    code = StatusCode::kUnavailable;
  } else if (is("23505")) {
    code = StatusCode::kAlreadyExists;
  } else if (is("42P01") || is("3F000")) {
    code = StatusCode::kNotFound;  // undefined table, undefined schema
  } else if (in_class("23") || in_class("22") || in_class("42")) {
    code = StatusCode::kInvalidArgument;
  } else if (is("40001") || is("40P01")) {
    code = StatusCode::kAborted;
  } else if (is("57014")) {
    code = StatusCode::kTimeout;
  } else if (in_class("53") || in_class("54")) {
    code = StatusCode::kResourceExhausted;
  } else if (is("XX001") || is("XX002")) {
    code = StatusCode::kCorruption;
  }
  return Status(code, std::move(text));
}

// ---- PgResult ------------------------------------------------------------------

PgResult& PgResult::operator=(PgResult&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = other.result_;
    other.result_ = nullptr;
  }
  return *this;
}

PgResult::~PgResult() {
  if (result_ != nullptr) PQclear(result_);
}

int PgResult::rows() const { return result_ == nullptr ? 0 : PQntuples(result_); }
int PgResult::columns() const { return result_ == nullptr ? 0 : PQnfields(result_); }
bool PgResult::IsNull(int row, int column) const { return PQgetisnull(result_, row, column) != 0; }

std::string_view PgResult::Bytes(int row, int column) const {
  return {PQgetvalue(result_, row, column), static_cast<size_t>(PQgetlength(result_, row, column))};
}

Result<int64_t> PgResult::Int(int row, int column) const {
  if (IsNull(row, column)) return Corruption("column {} of row {} is NULL, expected an integer", column, row);
  std::string_view bytes = Bytes(row, column);
  const char* p = bytes.data();
  switch (bytes.size()) {
    case 8: return static_cast<int64_t>(GetBigEndian64(p));
    case 4:
      return static_cast<int32_t>((uint32_t{static_cast<uint8_t>(p[0])} << 24) |
                                  (uint32_t{static_cast<uint8_t>(p[1])} << 16) |
                                  (uint32_t{static_cast<uint8_t>(p[2])} << 8) | uint32_t{static_cast<uint8_t>(p[3])});
    case 2: return static_cast<int16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
    default: return Corruption("column {} of row {} holds {} bytes, expected a binary integer", column, row, bytes.size());
  }
}

Result<bool> PgResult::Bool(int row, int column) const {
  std::string_view bytes = Bytes(row, column);
  if (IsNull(row, column) || bytes.size() != 1) return Corruption("column {} of row {} is not a boolean", column, row);
  return bytes[0] != 0;
}

std::string PgResult::ColumnName(int column) const { return PQfname(result_, column); }
unsigned PgResult::ColumnType(int column) const { return PQftype(result_, column); }
int PgResult::ColumnTypmod(int column) const { return PQfmod(result_, column); }

int64_t PgResult::AffectedRows() const {
  if (result_ == nullptr) return 0;
  const char* text = PQcmdTuples(result_);
  return text == nullptr || *text == '\0' ? 0 : std::strtoll(text, nullptr, 10);
}

// ---- Params ----------------------------------------------------------------------

Params& Params::Add(unsigned type_oid, std::string value, int format) {
  values_.push_back(std::make_unique<std::string>(std::move(value)));
  types_.push_back(type_oid);
  pointers_.push_back(values_.back()->data());
  lengths_.push_back(static_cast<int>(values_.back()->size()));
  formats_.push_back(format);
  return *this;
}

Params& Params::Int8(int64_t value) {
  std::string bytes;
  PutBigEndian64(&bytes, static_cast<uint64_t>(value));
  return Add(kInt8Oid, std::move(bytes), 1);
}

Params& Params::Int4(int32_t value) {
  std::string bytes;
  PutBigEndian32(&bytes, static_cast<uint32_t>(value));
  return Add(kInt4Oid, std::move(bytes), 1);
}

Params& Params::Int2(int16_t value) {
  std::string bytes = {static_cast<char>(static_cast<uint16_t>(value) >> 8), static_cast<char>(value & 0xFF)};
  return Add(kInt2Oid, std::move(bytes), 1);
}

Params& Params::Bool(bool value) { return Add(kBoolOid, std::string(1, value ? '\1' : '\0'), 1); }
Params& Params::Bytea(std::string_view value) { return Add(kByteaOid, std::string(value), 1); }
Params& Params::Text(std::string_view value) { return Add(kTextOid, std::string(value), 0); }
Params& Params::Untyped(std::string_view value) { return Add(0, std::string(value), 0); }
Params& Params::Uuid(const aquifer::Uuid& value) { return Add(kUuidOid, std::string(value.AsBytes()), 1); }

Params& Params::Null(unsigned type_oid) {
  Add(type_oid, std::string(), 1);
  pointers_.back() = nullptr;
  lengths_.back() = 0;
  return *this;
}

// Binary array: ndim(4) flags(4) element oid(4) [size(4) lower bound(4)] then
// per element length(4) and bytes.
Params& Params::Int8Array(const std::vector<int64_t>& values) {
  std::string bytes;
  bytes.reserve(20 + values.size() * 12);
  PutBigEndian32(&bytes, values.empty() ? 0 : 1);
  PutBigEndian32(&bytes, 0);
  PutBigEndian32(&bytes, kInt8Oid);
  if (!values.empty()) {
    PutBigEndian32(&bytes, static_cast<uint32_t>(values.size()));
    PutBigEndian32(&bytes, 1);
  }
  for (int64_t value : values) {
    PutBigEndian32(&bytes, 8);
    PutBigEndian64(&bytes, static_cast<uint64_t>(value));
  }
  return Add(kInt8ArrayOid, std::move(bytes), 1);
}

Params& Params::ByteaArray(const std::vector<std::string_view>& values) {
  size_t total = 20;
  for (std::string_view value : values) total += 4 + value.size();
  std::string bytes;
  bytes.reserve(total);
  PutBigEndian32(&bytes, values.empty() ? 0 : 1);
  PutBigEndian32(&bytes, 0);
  PutBigEndian32(&bytes, kByteaOid);
  if (!values.empty()) {
    PutBigEndian32(&bytes, static_cast<uint32_t>(values.size()));
    PutBigEndian32(&bytes, 1);
  }
  for (std::string_view value : values) {
    PutBigEndian32(&bytes, static_cast<uint32_t>(value.size()));
    bytes.append(value);
  }
  return Add(kByteaArrayOid, std::move(bytes), 1);
}

// ---- Connection --------------------------------------------------------------------

Connection::~Connection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& conninfo) {
  // connect_timeout first so a value in the URI (expanded from dbname) overrides it.
  const char* keywords[] = {"connect_timeout", "dbname", nullptr};
  const char* values[] = {"10", conninfo.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr || PQstatus(conn) != CONNECTION_OK) {
    std::string message = TrimmedLibpqMessage(conn);
    if (conn != nullptr) PQfinish(conn);
    return Unavailable("connecting to postgres: {}", message);
  }
  // Notices ("relation already exists, skipping") are not errors: keep them off stderr.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<Connection>(new Connection(conn));
}

bool Connection::broken() const { return PQstatus(conn_) != CONNECTION_OK; }

bool Connection::AliveWhileIdle() {
  if (broken()) return false;
  pollfd fd{PQsocket(conn_), POLLIN, 0};
  if (fd.fd < 0) return false;
  // Nothing to read: still open. Anything readable while idle is EOF or the
  // FATAL message a terminated backend sends before closing (libpq takes an
  // error outside a query for a notice and keeps the status OK until it
  // reads the EOF), or, rarely, a harmless message: the connection is given
  // up either way, which costs at most a reconnect.
  return poll(&fd, 1, 0) == 0;
}

bool Connection::in_transaction() const { return PQtransactionStatus(conn_) != PQTRANS_IDLE; }

Status Connection::ErrorFrom(PGresult* result, std::string_view sql) {
  std::string context = fmt::format("postgres: {}", ShortSql(sql));
  if (PQstatus(conn_) != CONNECTION_OK) {
    return Unavailable("{}: connection lost: {}", context, TrimmedLibpqMessage(conn_));
  }
  const char* sqlstate = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = result != nullptr ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string message = primary != nullptr ? primary : TrimmedLibpqMessage(conn_);
  if (sqlstate == nullptr) return Unavailable("{}: {}", context, message);
  return StatusFromSqlState(sqlstate, context, message);
}

Result<PgResult> Connection::Exec(std::string_view sql, const Params& params) {
  std::string text(sql);
  PgResult result(PQexecParams(conn_, text.c_str(), params.size(), params.types(), params.values(),
                               params.lengths(), params.formats(), /*resultFormat=*/1));
  ExecStatusType status = result.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return ErrorFrom(result.get(), sql);
  return result;
}

Status Connection::ExecScript(std::string_view sql) {
  std::string text(sql);
  PgResult result(PQexec(conn_, text.c_str()));
  ExecStatusType status = result.get() == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return ErrorFrom(result.get(), sql);
  return Status::OK();
}

Result<int64_t> Connection::CopyIn(std::string_view copy_sql, std::string_view data) {
  std::string text(copy_sql);
  PgResult started(PQexec(conn_, text.c_str()));
  if (started.get() == nullptr || PQresultStatus(started.get()) != PGRES_COPY_IN) {
    return ErrorFrom(started.get(), copy_sql);
  }
  // Chunks well below libpq's int length; PQputCopyData blocks until sent.
  constexpr size_t kChunk = 1 << 20;
  bool sent = true;
  for (size_t pos = 0; pos < data.size() && sent; pos += kChunk) {
    std::string_view chunk = data.substr(pos, kChunk);
    sent = PQputCopyData(conn_, chunk.data(), static_cast<int>(chunk.size())) == 1;
  }
  if (PQputCopyEnd(conn_, sent ? nullptr : "aquifer: sending COPY data failed") != 1) {
    return Unavailable("postgres: {}: ending COPY: {}", ShortSql(copy_sql), TrimmedLibpqMessage(conn_));
  }
  Status status;
  int64_t rows = 0;
  while (PGresult* raw = PQgetResult(conn_)) {
    PgResult result(raw);
    if (PQresultStatus(raw) == PGRES_COMMAND_OK) {
      rows = result.AffectedRows();
    } else if (status.ok()) {
      status = ErrorFrom(raw, copy_sql);
    }
  }
  if (!status.ok()) return status;
  return rows;
}

Status Connection::Begin() { return ExecScript("BEGIN"); }
Status Connection::Commit() { return ExecScript("COMMIT"); }

void Connection::Rollback() {
  if (!broken() && in_transaction()) (void)ExecScript("ROLLBACK");
}

// ---- Pool ----------------------------------------------------------------------------

PooledConnection::~PooledConnection() {
  if (conn_ != nullptr) pool_->Return(std::move(conn_));
}

Pool::Pool(std::string conninfo, size_t max_size, int64_t acquire_timeout_ms)
    : conninfo_(std::move(conninfo)), max_size_(max_size < 1 ? 1 : max_size), acquire_timeout_ms_(acquire_timeout_ms) {}

Pool::~Pool() = default;

size_t Pool::open_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

Result<PooledConnection> Pool::Acquire() {
  std::unique_lock<std::mutex> lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(acquire_timeout_ms_);
  while (true) {
    while (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      if (conn->AliveWhileIdle()) return PooledConnection(this, std::move(conn));
      --open_;  // dropped; a new one may be opened below
    }
    if (open_ < max_size_) {
      ++open_;
      lock.unlock();
      auto opened = Connection::Open(conninfo_);
      if (!opened.ok()) {
        lock.lock();
        --open_;
        returned_.notify_one();
        return std::move(opened).status();
      }
      return PooledConnection(this, std::move(*opened));
    }
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() && open_ >= max_size_) {
      return Unavailable("postgres: all {} pooled connections stayed busy for {} ms", max_size_, acquire_timeout_ms_);
    }
  }
}

void Pool::Return(std::unique_ptr<Connection> conn) {
  // A connection left inside a transaction (a caller returned early) is rolled
  // back; one that cannot be is dropped, so the next user reconnects.
  if (!conn->broken() && conn->in_transaction()) conn->Rollback();
  std::lock_guard<std::mutex> lock(mu_);
  if (conn->broken() || conn->in_transaction()) {
    --open_;
    // The server may have gone away for every session (a restart): drop the
    // idle connections it closed too.
    std::erase_if(idle_, [&](std::unique_ptr<Connection>& idle) {
      if (idle->AliveWhileIdle()) return false;
      --open_;
      return true;
    });
  } else {
    idle_.push_back(std::move(conn));
  }
  returned_.notify_one();
}

// ---- options and schema ------------------------------------------------------------------

Result<ConnectionOptions> ParseConnectionOptions(const driver::Config& config) {
  ConnectionOptions options;
  options.url = driver::ConfigString(config, "url", "");
  if (options.url.empty()) {
    return InvalidArgument("config 'url': a libpq connection string is required, e.g. postgresql://user@host:5432/db");
  }
  options.schema = driver::ConfigString(config, "schema", options.schema);
  if (options.schema.empty() || options.schema.size() > 63) {
    return InvalidArgument("config 'schema': '{}' must be 1 to 63 characters", options.schema);
  }
  AQ_ASSIGN_OR_RETURN(int64_t pool_size, driver::ConfigInt(config, "pool_size", static_cast<int64_t>(options.pool_size)));
  if (pool_size < 1 || pool_size > 1000) {
    return InvalidArgument("config 'pool_size': {} is outside 1..1000", pool_size);
  }
  options.pool_size = static_cast<size_t>(pool_size);
  return options;
}

Status EnsureSchema(Pool& pool, const std::string& schema, std::string_view ddl) {
  return InTransaction(pool, [&](Connection& conn) -> Status {
    Params params;
    params.Text("aquifer schema " + schema);
    AQ_RETURN_IF_ERROR(conn.Exec("SELECT pg_advisory_xact_lock(hashtext($1))", params).status());
    AQ_RETURN_IF_ERROR(conn.ExecScript("CREATE SCHEMA IF NOT EXISTS " + QuoteIdent(schema)));
    return conn.ExecScript(ddl);
  });
}

}  // namespace aquifer::drivers::postgres
