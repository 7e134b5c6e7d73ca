#include "aquifer/drivers/duckdb/handles.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

namespace aquifer::drivers::duckdb {

Result<QueryResult> Query(duckdb_connection conn, std::string_view sql, StatusCode code) {
  QueryResult result;
  std::string text(sql);
  if (duckdb_query(conn, text.c_str(), result.out()) == DuckDBError) {
    const char* message = duckdb_result_error(result.get());
    return Status(code, message != nullptr ? message : "duckdb: unknown error");
  }
  return result;
}

Result<QueryResult> QueryYielding(duckdb_connection conn, std::string_view sql, StatusCode code) {
  auto fail = [&](const char* message) { return Status(code, message != nullptr ? message : "duckdb: unknown error"); };
  std::string text(sql);
  Prepared prepared;
  if (duckdb_prepare(conn, text.c_str(), prepared.out()) == DuckDBError) {
    return fail(duckdb_prepare_error(prepared.get()));
  }
  PendingResult pending;
  if (duckdb_pending_prepared(prepared.get(), pending.out()) == DuckDBError) {
    return fail(duckdb_pending_error(pending.get()));
  }
  auto nap = std::chrono::microseconds(0);
  while (true) {
    const duckdb_pending_state state = duckdb_pending_execute_task(pending.get());
    if (state == DUCKDB_PENDING_ERROR) return fail(duckdb_pending_error(pending.get()));
    if (duckdb_pending_execution_is_finished(state)) break;
    if (state != DUCKDB_PENDING_NO_TASKS_AVAILABLE) {
      nap = std::chrono::microseconds(0);  // progress: try the next task at once
      continue;
    }
    // Another thread runs the task: wait for it without polling.
    if (nap.count() == 0) {
      std::this_thread::yield();
      nap = std::chrono::microseconds(10);
    } else {
      std::this_thread::sleep_for(nap);
      nap = std::min(nap * 2, std::chrono::microseconds(100));
    }
  }
  QueryResult result;
  if (duckdb_execute_pending(pending.get(), result.out()) == DuckDBError) {
    return fail(duckdb_result_error(result.get()));
  }
  return result;
}

Status ExecYielding(duckdb_connection conn, std::string_view sql, StatusCode code) {
  AQ_ASSIGN_OR_RETURN(QueryResult result, QueryYielding(conn, sql, code));
  (void)result;
  return Status::OK();
}

Status Exec(duckdb_connection conn, std::string_view sql, StatusCode code) {
  AQ_ASSIGN_OR_RETURN(QueryResult result, Query(conn, sql, code));
  (void)result;
  return Status::OK();
}

Result<int64_t> QueryInt(duckdb_connection conn, std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(QueryResult result, Query(conn, sql));
  DataChunk chunk(duckdb_fetch_chunk(result.ref()));
  if (!chunk || duckdb_data_chunk_get_size(chunk.get()) == 0) return int64_t{0};
  LogicalType type(duckdb_column_logical_type(result.get(), 0));
  duckdb_vector vector = duckdb_data_chunk_get_vector(chunk.get(), 0);
  uint64_t* validity = duckdb_vector_get_validity(vector);
  if (validity != nullptr && !duckdb_validity_row_is_valid(validity, 0)) return int64_t{0};
  switch (duckdb_get_type_id(type.get())) {
    case DUCKDB_TYPE_BIGINT:
      return static_cast<const int64_t*>(duckdb_vector_get_data(vector))[0];
    case DUCKDB_TYPE_UBIGINT:
      return static_cast<int64_t>(static_cast<const uint64_t*>(duckdb_vector_get_data(vector))[0]);
    case DUCKDB_TYPE_INTEGER:
      return int64_t{static_cast<const int32_t*>(duckdb_vector_get_data(vector))[0]};
    case DUCKDB_TYPE_HUGEINT:
      return static_cast<int64_t>(static_cast<const duckdb_hugeint*>(duckdb_vector_get_data(vector))[0].lower);
    default:
      return Internal("duckdb: expected an integer result from: {}", sql);
  }
}

std::string_view StringAt(duckdb_vector vector, idx_t row) {
  auto* strings = static_cast<duckdb_string_t*>(duckdb_vector_get_data(vector));
  return {duckdb_string_t_data(&strings[row]), duckdb_string_t_length(strings[row])};
}

}  // namespace aquifer::drivers::duckdb
