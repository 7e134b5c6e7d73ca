#pragma once

// One write transaction in one round trip: several statements sent as one
// simple-protocol query. The server runs them as one implicit transaction
// (all or nothing, one durable commit at the end), and a `COPY ... FROM STDIN`
// among them takes its rows from the client when the server reaches it, after
// the results of the statements before it have arrived. So a write can read
// what an earlier statement returned (applied group ids, the next offset) and
// choose the rows it streams, without a BEGIN/COMMIT or a round trip per
// statement. The write paths of the lookup service and the warehouse use it.
//
// The simple protocol has no parameters and answers in text: every value in
// the script is an integer, a uuid or hex bytes rendered by the functions
// below (nothing a caller passes can break out of a literal), identifiers go
// through QuoteIdent, and bulk data travels in the COPY.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/drivers/postgres/pg.h"

namespace aquifer::drivers::postgres {

// Literals for script text: '<uuid>'::uuid, E'\\x<hex>'::bytea and
// ARRAY[E'\\x..', ...]::bytea[] (an empty array when `values` is empty).
std::string UuidLiteral(const aquifer::Uuid& value);
std::string ByteaArrayLiteral(const std::vector<std::string_view>& values);

// One row of a statement's result (text format, as the simple protocol sends it).
class ScriptRows {
 public:
  explicit ScriptRows(const PGresult* result) : result_(result) {}
  int rows() const;
  std::string_view Text(int row, int column) const;
  Result<int64_t> Int(int row, int column) const;
  // A column the statement rendered as encode(x, 'hex').
  Result<std::string> HexBytes(int row, int column) const;

 private:
  const PGresult* result_;
};

struct ScriptHandlers {
  // Called once the script is sent, before any result is read: client work
  // that overlaps the server's (an error aborts the COPY that follows).
  std::function<Status()> after_send;
  // Called with each statement's result, by index in the script (0-based).
  std::function<Status(int statement, const ScriptRows& rows)> on_result;
  // Called when the server is ready for the rows of the COPY at `statement`:
  // the data to send (in the format the COPY names). An error aborts the
  // COPY, which rolls the whole transaction back.
  std::function<Result<std::string>(int statement)> copy_data;
};

// Runs `script` on `conn` (which must be idle: no open transaction). When a
// handler fails, the COPY that follows is aborted so nothing commits; the
// scripts that use handlers therefore end with, or contain after every
// result they read, a COPY. Returns the first error: the server's (mapped as
// StatusFromSqlState does), a handler's, or Unavailable when the connection
// fails.
Status RunScript(Connection& conn, std::string_view script, const ScriptHandlers& handlers);

}  // namespace aquifer::drivers::postgres
