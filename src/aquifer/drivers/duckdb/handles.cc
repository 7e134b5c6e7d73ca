#include "aquifer/drivers/duckdb/handles.h"

#include <string>

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
