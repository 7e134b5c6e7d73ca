#pragma once

// libpq underneath every Postgres driver: RAII results, typed parameters,
// a connection pool, and the one mapping from server errors to Status.
//
// Why raw libpq: binary parameters and results (bytea keys travel as raw
// bytes, integers as 8 big-endian bytes), COPY and LISTEN/NOTIFY all need it,
// and Debian's libpqxx is old (DEPS.md §3).
//
// Every statement goes through PQexecParams with explicit parameter types and
// binary results, so nothing is ever spliced into SQL text except identifiers
// quoted by QuoteIdent. Nothing here throws.
//
// Thread safety: a Pool is thread-safe; a Connection (and what it returns) is
// used by one thread at a time, which PooledConnection's ownership ensures.

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/text.h"  // PutBigEndian64, GetBigEndian64
#include "aquifer/base/uuid.h"
#include "aquifer/driver/types.h"

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace aquifer::drivers::postgres {

// Type OIDs of the parameters we send (pg_type.dat).
inline constexpr unsigned kBoolOid = 16;
inline constexpr unsigned kByteaOid = 17;
inline constexpr unsigned kInt8Oid = 20;
inline constexpr unsigned kInt2Oid = 21;
inline constexpr unsigned kInt4Oid = 23;
inline constexpr unsigned kTextOid = 25;
inline constexpr unsigned kUuidOid = 2950;
inline constexpr unsigned kByteaArrayOid = 1001;
inline constexpr unsigned kInt8ArrayOid = 1016;

// "name" → "\"name\"" with embedded quotes doubled: a safe SQL identifier.
std::string QuoteIdent(std::string_view name);

// Maps a failed result (or a connection without one) to a Status:
//   class 08, 57P01-57P03, 53300   → Unavailable (connection lost, server going down, too many connections)
//   23505                          → AlreadyExists (unique violation)
//   42P01, 3F000                   → NotFound (undefined table or schema)
//   other class 23, class 22, 42   → InvalidArgument (constraint, data or syntax/access error)
//   40001, 40P01                   → Aborted (serialization failure, deadlock: retry)
//   57014                          → Timeout (statement timeout or cancel)
//   class 53 (other), 54           → ResourceExhausted
//   XX001, XX002                   → Corruption
//   anything else                  → Internal
// The message is "<context>: <server message> (SQLSTATE xxxxx)".
Status StatusFromSqlState(std::string_view sqlstate, std::string_view context, std::string_view message);

// Owns one PGresult. Values are read in binary format: the accessors check
// the length of what the server sent and report Corruption on a mismatch.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* result) : result_(result) {}
  PgResult(PgResult&& other) noexcept : result_(other.result_) { other.result_ = nullptr; }
  PgResult& operator=(PgResult&& other) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult();

  int rows() const;
  int columns() const;
  bool IsNull(int row, int column) const;
  std::string_view Bytes(int row, int column) const;  // bytea, text: the raw value
  Result<int64_t> Int(int row, int column) const;     // int2, int4, int8
  Result<bool> Bool(int row, int column) const;
  std::string ColumnName(int column) const;
  unsigned ColumnType(int column) const;  // type OID
  int ColumnTypmod(int column) const;
  // Rows affected by an INSERT/UPDATE/DELETE (PQcmdTuples), 0 if none.
  int64_t AffectedRows() const;
  PGresult* get() const { return result_; }

 private:
  PGresult* result_ = nullptr;
};

// Parameters of one statement, each with its type OID. Integers, bytea and
// uuid go in binary; text goes as text.
class Params {
 public:
  Params& Int8(int64_t value);
  Params& Int4(int32_t value);
  Params& Int2(int16_t value);
  Params& Bool(bool value);
  Params& Bytea(std::string_view value);
  Params& Text(std::string_view value);
  // Text whose type the server infers from where $n stands (type OID 0), e.g.
  // an INSERT's column: one statement text serves every column type.
  Params& Untyped(std::string_view value);
  Params& Uuid(const aquifer::Uuid& value);
  Params& Null(unsigned type_oid);
  // One-dimensional arrays in Postgres' binary array format, for
  // `unnest($n::int8[], $m::bytea[])` batch statements.
  Params& Int8Array(const std::vector<int64_t>& values);
  Params& ByteaArray(const std::vector<std::string_view>& values);

  int size() const { return static_cast<int>(types_.size()); }
  const unsigned* types() const { return types_.data(); }
  const char* const* values() const { return pointers_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  Params& Add(unsigned type_oid, std::string value, int format);
  // Stable storage: values_ may reallocate, so pointers are rebuilt from it.
  std::vector<std::unique_ptr<std::string>> values_;
  std::vector<unsigned> types_;
  std::vector<const char*> pointers_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
};

// One libpq connection. Exec runs a statement (several, separated by ';',
// only when `params` is empty) and returns its result or the mapped error.
// After a connection-level failure broken() is true and the pool discards it.
class Connection {
 public:
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects with `conninfo` (a libpq URI or key=value string). Unavailable
  // when the server cannot be reached, with libpq's message.
  static Result<std::unique_ptr<Connection>> Open(const std::string& conninfo);

  Result<PgResult> Exec(std::string_view sql, const Params& params = Params());
  // Runs `sql` without parameters (may hold several statements); for DDL.
  Status ExecScript(std::string_view sql);
  // Runs `copy_sql` (a COPY ... FROM STDIN) and streams `data` (in the COPY
  // format it names) to the server; returns the number of rows copied.
  Result<int64_t> CopyIn(std::string_view copy_sql, std::string_view data);
  // BEGIN / COMMIT / ROLLBACK. Rollback is best effort (the pool discards a
  // connection whose rollback failed).
  Status Begin();
  Status Commit();
  void Rollback();

  bool broken() const;
  // For an idle connection: false when the server has closed it (a restart,
  // a terminated backend), found without a round trip: an idle session has
  // nothing to read, so a readable socket means EOF or a FATAL message.
  // Only for connections that do not LISTEN.
  bool AliveWhileIdle();
  // True while a transaction is open or failed (not idle).
  bool in_transaction() const;
  PGconn* raw() const { return conn_; }

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  Status ErrorFrom(PGresult* result, std::string_view sql);
  PGconn* conn_ = nullptr;
};

class Pool;

// A connection borrowed from a Pool; returns it on destruction (or discards it
// when broken or left inside a transaction).
class PooledConnection {
 public:
  PooledConnection(Pool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
  PooledConnection(PooledConnection&&) = default;
  PooledConnection& operator=(PooledConnection&&) = delete;
  ~PooledConnection();
  Connection* operator->() const { return conn_.get(); }
  Connection& operator*() const { return *conn_; }

 private:
  Pool* pool_;
  std::unique_ptr<Connection> conn_;
};

// A bounded pool of connections to one server. Acquire hands out an idle
// connection, opens a new one while fewer than `max_size` exist, or waits up
// to `acquire_timeout_ms` for one to come back (then Unavailable). Broken
// connections are dropped when returned, so the next Acquire reconnects; an
// idle connection the server closed meanwhile (AliveWhileIdle) is dropped
// before it is handed out, and when a connection comes back broken the idle
// ones are checked too, so after a server restart callers get fresh sessions
// instead of failing once per stale connection.
// Thread-safe; must outlive every PooledConnection it handed out.
class Pool {
 public:
  Pool(std::string conninfo, size_t max_size, int64_t acquire_timeout_ms = 30'000);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  Result<PooledConnection> Acquire();
  const std::string& conninfo() const { return conninfo_; }

  // Number of open connections (idle and lent), for tests.
  size_t open_connections() const;

 private:
  friend class PooledConnection;
  void Return(std::unique_ptr<Connection> conn);

  const std::string conninfo_;
  const size_t max_size_;
  const int64_t acquire_timeout_ms_;
  mutable std::mutex mu_;
  std::condition_variable returned_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by mu_
  size_t open_ = 0;                                // guarded by mu_
};

// Runs `body(conn)` inside BEGIN/COMMIT on a pooled connection; rolls back
// when the body fails.
template <typename Body>
Status InTransaction(Pool& pool, Body&& body) {
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool.Acquire());
  AQ_RETURN_IF_ERROR(conn->Begin());
  Status status = body(*conn);
  if (!status.ok()) {
    conn->Rollback();
    return status;
  }
  return conn->Commit();
}

// Options every Postgres driver reads from its config section:
//   url        libpq connection string or URI (required)
//   schema     Postgres schema holding the driver's tables (default "aquifer")
//   pool_size  connections per driver object (default 8)
struct ConnectionOptions {
  std::string url;
  std::string schema = "aquifer";
  size_t pool_size = 8;
};
Result<ConnectionOptions> ParseConnectionOptions(const driver::Config& config);

// Creates the schema (if missing) and runs `ddl` (CREATE ... IF NOT EXISTS
// statements) under a transaction-scoped advisory lock, so several processes
// starting at once do not race on the catalog.
Status EnsureSchema(Pool& pool, const std::string& schema, std::string_view ddl);


}  // namespace aquifer::drivers::postgres
