#pragma once

// Move-only RAII owners of DuckDB C API handles, and small helpers that turn
// DuckDB's error reporting into Status. Internal to the duckdb driver.
//
// Thread-safety follows DuckDB's: a Database may be shared by any number of
// threads; a Connection (and everything created from it: results, prepared
// statements, appenders) must be used by one thread at a time.

#include <duckdb.h>

#include <string>
#include <string_view>
#include <utility>

#include "aquifer/base/status.h"

namespace aquifer::drivers::duckdb {

// Owns one handle of type H, destroyed with Destroy(&h).
template <typename H, void (*Destroy)(H*)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(H handle) : handle_(handle) {}
  ~Handle() { Reset(); }
  Handle(Handle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      Reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  H get() const { return handle_; }
  H* out() {  // for C functions that write a new handle
    Reset();
    return &handle_;
  }
  explicit operator bool() const { return handle_ != nullptr; }
  void Reset() {
    if (handle_ != nullptr) Destroy(&handle_);
    handle_ = nullptr;
  }

 private:
  H handle_ = nullptr;
};

inline void DestroyAppender(duckdb_appender* appender) { (void)duckdb_appender_destroy(appender); }

using Database = Handle<duckdb_database, duckdb_close>;
using Connection = Handle<duckdb_connection, duckdb_disconnect>;
using Prepared = Handle<duckdb_prepared_statement, duckdb_destroy_prepare>;
using PendingResult = Handle<duckdb_pending_result, duckdb_destroy_pending>;
using Extracted = Handle<duckdb_extracted_statements, duckdb_destroy_extracted>;
using LogicalType = Handle<duckdb_logical_type, duckdb_destroy_logical_type>;
using DataChunk = Handle<duckdb_data_chunk, duckdb_destroy_data_chunk>;
using Appender = Handle<duckdb_appender, DestroyAppender>;
using Config = Handle<duckdb_config, duckdb_destroy_config>;
using ErrorData = Handle<duckdb_error_data, duckdb_destroy_error_data>;

// duckdb_result is a struct, not a pointer: it is owned by value.
class QueryResult {
 public:
  QueryResult() = default;
  ~QueryResult() { Reset(); }
  QueryResult(QueryResult&& other) noexcept : result_(other.result_), live_(std::exchange(other.live_, false)) {}
  QueryResult& operator=(QueryResult&& other) noexcept {
    if (this != &other) {
      Reset();
      result_ = other.result_;
      live_ = std::exchange(other.live_, false);
    }
    return *this;
  }
  QueryResult(const QueryResult&) = delete;
  QueryResult& operator=(const QueryResult&) = delete;

  duckdb_result* out() {
    Reset();
    live_ = true;  // duckdb_query/execute_prepared must be destroyed even on error
    return &result_;
  }
  duckdb_result* get() { return &result_; }
  duckdb_result& ref() { return result_; }
  void Reset() {
    if (live_) duckdb_destroy_result(&result_);
    live_ = false;
  }

 private:
  duckdb_result result_{};
  bool live_ = false;
};

// Quotes an SQL identifier: "name" with embedded quotes doubled.
inline std::string QuoteIdent(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// Quotes an SQL string literal: 'text' with embedded quotes doubled.
inline std::string QuoteLiteral(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

// Runs a statement that returns nothing of interest.
// `code` is the StatusCode used for DuckDB errors.
Status Exec(duckdb_connection conn, std::string_view sql, StatusCode code = StatusCode::kInternal);

// Runs a query and returns its materialised result, or Status(code, DuckDB's message).
Result<QueryResult> Query(duckdb_connection conn, std::string_view sql,
                          StatusCode code = StatusCode::kInternal);

// Query / Exec for the write path: the same result, but while another thread
// runs the statement's task (DuckDB's scheduler threads compete with the
// caller for it; a COMMIT's WAL write and fsync are such a task) the caller
// sleeps in short steps (yield, then 10 µs doubling to 100 µs) instead of
// polling the task queue, which `duckdb_query` does at full speed: under CPU
// contention that polling was most of a warehouse write's CPU time
// (README.md, "Writes"). Adds at most ~100 µs of latency to a statement.
Result<QueryResult> QueryYielding(duckdb_connection conn, std::string_view sql,
                                  StatusCode code = StatusCode::kInternal);
Status ExecYielding(duckdb_connection conn, std::string_view sql, StatusCode code = StatusCode::kInternal);

// Reads one int64 scalar (first column of the first row; 0 when there is no row).
Result<int64_t> QueryInt(duckdb_connection conn, std::string_view sql);

// A VARCHAR cell of a fetched chunk's vector.
std::string_view StringAt(duckdb_vector vector, idx_t row);

}  // namespace aquifer::drivers::duckdb
