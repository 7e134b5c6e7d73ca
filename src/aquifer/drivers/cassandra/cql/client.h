#pragma once

// A compact CQL client (native protocol v4, protocol.h) over blocking TCP
// sockets with timeouts: no C++ Cassandra driver is packaged here (DEPS.md),
// and the drivers need only a small part of one.
//
//   Session::Connect(options)  opens `pool_size` connections lazily to one
//                              node: STARTUP, then PLAIN authentication
//                              (AUTHENTICATE → AUTH_RESPONSE "\0user\0password")
//                              when the server asks for it.
//   Query / Prepare / Execute  one request, one response; Rows carry the
//                              server's paging_state when more pages follow
//                              (QueryOptions::page_size, paging_state), and
//                              QueryAll / ExecuteAll follow it to the end.
//   Batch                      LOGGED, UNLOGGED or COUNTER batches of
//                              prepared statements or query strings.
//
// Errors: the server's ERROR frames become Status through
// StatusFromServerError (protocol.h); a connection that fails (refused,
// reset, timed out, a malformed frame) gives Unavailable (Timeout for a read
// that timed out after the request was sent: it may have been applied) and is
// closed; the next request opens a fresh one, so a restarted node is picked up
// by itself. Requests are never retried silently except after UNPREPARED:
// the statement is prepared again on that connection and executed once more
// (a node restart or a schema change drops the server's prepared cache).
//
// Result metadata is asked for on every EXECUTE (no skip_metadata), so a
// prepared `SELECT *` returns the columns an ALTER TABLE added since.
//
// Thread safety: a Session is thread-safe; each request holds one pooled
// connection for its duration, and at most `pool_size` run at once (the rest
// wait for a connection).

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/drivers/cassandra/cql/protocol.h"

namespace aquifer::drivers::cassandra::cql {

struct ClientOptions {
  std::string host = "127.0.0.1";
  int port = 9042;
  std::string username, password;  // PLAIN authentication when the server asks; empty: none offered
  int pool_size = 4;
  int connect_timeout_ms = 5'000;
  int request_timeout_ms = 15'000;
  Consistency consistency = Consistency::kLocalQuorum;
  Consistency serial_consistency = Consistency::kSerial;
};

// "host:port" (port defaults to 9042) into options.
Status ParseContactPoint(std::string_view contact_point, ClientOptions* options);

struct QueryOptions {
  std::optional<Consistency> consistency;         // default: ClientOptions::consistency
  std::optional<Consistency> serial_consistency;  // lightweight transactions
  int32_t page_size = 0;                          // 0: the server's default (5000 rows per page)
  std::string paging_state;                       // from the previous page's metadata
  std::optional<int64_t> timestamp_us;            // the write's timestamp; default: the server's clock
};

struct PreparedStatement {
  std::string query;
  std::string id;
  std::vector<ColumnSpec> bind_columns;
};

enum class BatchType : uint8_t { kLogged = 0, kUnlogged = 1, kCounter = 2 };

struct BatchEntry {
  const PreparedStatement* prepared = nullptr;  // either a prepared statement...
  std::string query;                            // ...or a query string
  std::vector<Value> values;
};

class Connection;

class Session {
 public:
  // Checks that the node answers (opens one connection) and returns the session.
  static Result<std::unique_ptr<Session>> Connect(const ClientOptions& options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Result<Rows> Query(std::string_view cql, std::span<const Value> values = {}, const QueryOptions& options = {});
  // Every page (follows paging_state from options.paging_state on).
  Result<std::vector<Row>> QueryAll(std::string_view cql, std::span<const Value> values = {},
                                    QueryOptions options = {});
  // Prepares on the node (the server caches statements per node, so any
  // connection may execute it) and caches the result by query text.
  Result<std::shared_ptr<const PreparedStatement>> Prepare(std::string_view cql);
  Result<Rows> Execute(const PreparedStatement& statement, std::span<const Value> values,
                       const QueryOptions& options = {});
  Result<std::vector<Row>> ExecuteAll(const PreparedStatement& statement, std::span<const Value> values,
                                      QueryOptions options = {});
  // Unlogged and counter batches are atomic per partition only; logged ones
  // are applied eventually in full.
  Status Batch(BatchType type, std::span<const BatchEntry> entries, const QueryOptions& options = {});

  const ClientOptions& options() const { return options_; }
  // Connections opened so far (tests: reconnection).
  int64_t connections_opened() const;

 private:
  explicit Session(const ClientOptions& options);
  class Lease;
  Result<Lease> Acquire();
  void Release(std::unique_ptr<Connection> connection, bool broken);
  Result<std::string> CurrentId(const PreparedStatement& statement);
  Result<ResultBody> Run(Connection& connection, Opcode opcode, const std::string& body, std::string_view what);
  Result<Rows> RowsOf(ResultBody result, std::string_view what);

  const ClientOptions options_;
  mutable std::mutex mu_;
  std::condition_variable released_;
  std::vector<std::unique_ptr<Connection>> idle_;  // GUARDED_BY(mu_)
  int open_ = 0;                                   // GUARDED_BY(mu_): idle + leased
  int64_t opened_total_ = 0;                       // GUARDED_BY(mu_)
  // query text → statement; ids refreshed after UNPREPARED.
  std::unordered_map<std::string, std::shared_ptr<PreparedStatement>> prepared_;  // GUARDED_BY(mu_)
};

// The bytes of a [query_parameters] block (exposed for the fuzz target and tests).
std::string EncodeQueryParameters(std::span<const Value> values, const QueryOptions& options,
                                  const ClientOptions& defaults);

}  // namespace aquifer::drivers::cassandra::cql
