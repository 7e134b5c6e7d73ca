#pragma once

// Schema → DuckDB columns, and decoded records → DuckDB data chunks (the
// appender's fast path). Internal to the duckdb driver.
//
// Type mapping (README.md has the table): boolean BOOLEAN, int INTEGER,
// long BIGINT, float FLOAT, double DOUBLE, string VARCHAR, bytes/fixed BLOB,
// enum VARCHAR (the symbol), decimal(p,s) DECIMAL(p,s) for p ≤ 38 and VARCHAR
// (the exact decimal text) above, uuid UUID, timestamp-millis TIMESTAMP_MS,
// array LIST, record STRUCT. Non-nullable top-level fields are NOT NULL.

#include <duckdb.h>

#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/schema/schema.h"
#include "aquifer/schema/value.h"

namespace aquifer::drivers::duckdb {

// The DuckDB type of a schema type, as SQL text: "BIGINT", "STRUCT(\"a\" INTEGER)".
std::string ColumnType(const schema::Type& type);

// `CREATE TABLE IF NOT EXISTS <table> (fields..., __key BLOB NOT NULL, __timestamp TIMESTAMP NOT NULL)`.
std::string CreateTableSql(const std::string& quoted_table, const schema::Schema& schema);

// Writes `value` (of `type`) into row `row` of `vector`, a vector whose
// logical type is ColumnType(type). Lists grow their child vector.
// InvalidArgument naming `path` when the value does not fit the type.
Status FillCell(duckdb_vector vector, const schema::Type& type, idx_t row,
                const schema::Value& value, const std::string& path);

// Sets row `row` of `vector` to NULL (structs: their children too).
void SetNull(duckdb_vector vector, const schema::Type& type, idx_t row);

// Decodes one Avro datum of the record type `root` (standard binary encoding,
// as schema::EncodeAvro writes it) straight into row `row` of `vectors`, one
// vector per top-level field whose logical type is ColumnType(field type): no
// intermediate schema::Value. It checks what schema::DecodeAvro checks
// (bounds, varints, union and enum indexes, int range, UTF-8, uuid text,
// decimal precision, no trailing bytes) and returns the same Corruption
// message ("path: what") for a malformed datum. On error the row (and, for
// lists, the child vectors) may be partly written: the caller discards the
// chunk.
Status AppendAvroRow(const schema::Type& root, std::string_view avro, const duckdb_vector* vectors, idx_t row);

// The exact decimal text of a big-endian two's-complement unscaled integer.
std::string DecimalText(std::string_view big_endian, int scale);

}  // namespace aquifer::drivers::duckdb
