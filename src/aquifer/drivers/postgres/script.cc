#include "aquifer/drivers/postgres/script.h"

#include <libpq-fe.h>

#include <charconv>

#include <fmt/format.h>

#include "aquifer/base/text.h"

namespace aquifer::drivers::postgres {
namespace {

// The first line of the script, cut short, for error messages.
std::string ShortScript(std::string_view script) {
  while (!script.empty() && (script.front() == ' ' || script.front() == '\n')) script.remove_prefix(1);
  std::string_view head = script.substr(0, script.find('\n'));
  if (head.size() > 80) return std::string(head.substr(0, 80)) + "...";
  return std::string(head);
}

std::string LibpqMessage(PGconn* conn) {
  std::string message = PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message.empty() ? "connection lost" : message;
}

}  // namespace

std::string UuidLiteral(const aquifer::Uuid& value) { return fmt::format("'{}'::uuid", value.ToString()); }

std::string ByteaArrayLiteral(const std::vector<std::string_view>& values) {
  if (values.empty()) return "ARRAY[]::bytea[]";
  std::string out = "ARRAY[";
  for (size_t idx = 0; idx < values.size(); ++idx) {
    if (idx > 0) out += ',';
    out += "E'\\\\x";
    out += HexEncode(values[idx]);
    out += '\'';
  }
  out += "]::bytea[]";
  return out;
}

int ScriptRows::rows() const { return PQntuples(result_); }

std::string_view ScriptRows::Text(int row, int column) const {
  return std::string_view(PQgetvalue(result_, row, column), static_cast<size_t>(PQgetlength(result_, row, column)));
}

Result<int64_t> ScriptRows::Int(int row, int column) const {
  std::string_view text = Text(row, column);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return Corruption("column {} of row {} holds '{}', expected an integer", column, row, text.substr(0, 40));
  }
  return value;
}

Result<std::string> ScriptRows::HexBytes(int row, int column) const {
  std::string out;
  if (!HexDecode(Text(row, column), &out)) {
    return Corruption("column {} of row {} holds '{}', expected hex", column, row, Text(row, column).substr(0, 40));
  }
  return out;
}

Status RunScript(Connection& conn, std::string_view script, const ScriptHandlers& handlers) {
  PGconn* raw = conn.raw();
  const std::string text(script);
  if (PQsendQuery(raw, text.c_str()) != 1) {
    return Unavailable("postgres: {}: {}", ShortScript(script), LibpqMessage(raw));
  }
  Status status;
  if (handlers.after_send) status = handlers.after_send();
  int statement = 0;
  while (PGresult* result = PQgetResult(raw)) {
    PgResult owned(result);
    switch (PQresultStatus(result)) {
      case PGRES_COPY_IN: {
        // The COPY's own result follows once the data has ended.
        Result<std::string> data = status;
        if (status.ok()) {
          data = handlers.copy_data ? handlers.copy_data(statement)
                                    : Result<std::string>(Internal("the script has a COPY but no copy_data"));
        }
        bool sent = data.ok();
        if (sent) {
          constexpr size_t kChunk = 1 << 20;  // well below libpq's int lengths
          for (size_t pos = 0; pos < data->size() && sent; pos += kChunk) {
            std::string_view chunk = std::string_view(*data).substr(pos, kChunk);
            sent = PQputCopyData(raw, chunk.data(), static_cast<int>(chunk.size())) == 1;
          }
          if (!sent && status.ok()) {
            status = Unavailable("postgres: {}: sending COPY data: {}", ShortScript(script), LibpqMessage(raw));
          }
        } else if (status.ok()) {
          status = data.status();
        }
        // An error message instead of the end makes the server fail the COPY,
        // which aborts the transaction.
        if (PQputCopyEnd(raw, sent ? nullptr : "aquifer: the write was abandoned") != 1 && status.ok()) {
          status = Unavailable("postgres: {}: ending COPY: {}", ShortScript(script), LibpqMessage(raw));
        }
        break;
      }
      case PGRES_COMMAND_OK:
      case PGRES_TUPLES_OK:
        if (status.ok() && handlers.on_result) status = handlers.on_result(statement, ScriptRows(result));
        ++statement;
        break;
      default: {
        const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
        const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
        if (status.ok()) {
          // An abandoned COPY reports the client's message back: keep the handler's error instead.
          status = sqlstate == nullptr
                       ? Unavailable("postgres: {}: {}", ShortScript(script), LibpqMessage(raw))
                       : StatusFromSqlState(sqlstate, fmt::format("postgres: {}", ShortScript(script)),
                                            message != nullptr ? message : PQresultErrorMessage(result));
        }
        ++statement;
        break;
      }
    }
  }
  if (status.ok() && conn.broken()) {
    status = Unavailable("postgres: {}: {}", ShortScript(script), LibpqMessage(raw));
  }
  return status;
}

}  // namespace aquifer::drivers::postgres
