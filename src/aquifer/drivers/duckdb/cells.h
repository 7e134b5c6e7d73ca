#pragma once

// DuckDB result vectors → JSON values, for ReadJobRows. Internal.
//
// Encoding (kept consistent with aquifer/schema/codec.h's JSON conventions):
// integers up to 64 bits as JSON integers; HUGEINT/UHUGEINT as decimal
// strings; FLOAT/DOUBLE as numbers with "NaN"/"Infinity"/"-Infinity" strings;
// DECIMAL as an exact string ("12.50"); VARCHAR and ENUM as strings; BLOB as
// base64; UUID as 8-4-4-4-12; every TIMESTAMP kind as integer ms since the
// epoch (sub-millisecond parts floored); LIST/ARRAY as JSON arrays; STRUCT as
// objects; NULL as null. Other types (DATE, TIME, INTERVAL, MAP, UNION, BIT,
// ...) are cast to VARCHAR by the reading query and arrive as strings.

#include <duckdb.h>

#include <string>
#include <string_view>

namespace aquifer::drivers::duckdb {

// True when WriteCell encodes this type (recursively) without a VARCHAR cast.
bool NativelyEncoded(duckdb_logical_type type);

// Appends the JSON form of row `row` of `vector` (of logical type `type`).
void WriteCell(std::string* out, duckdb_vector vector, duckdb_logical_type type, idx_t row);


}  // namespace aquifer::drivers::duckdb
