#pragma once

// The scans of a DuckDB physical plan (EXPLAIN (FORMAT JSON)), for the
// warehouse's second line of defence and its dry-run estimate. Internal.
//
// Fails closed: a plan that is not the JSON DuckDB writes (an array or object
// of operators, each an object with a string "name"), a "Table" or
// "Function" that is not a string, or a scan operator that names neither
// (so the check cannot tell what it reads) is an error, never an empty list.
// Table functions appear as a node with "Function" (a source, FROM range(3))
// or as INOUT_FUNCTION with "Name" (fed by rows, LATERAL generate_series(1, t.n)).

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"

namespace aquifer::drivers::duckdb {

// One leaf that reads rows: a table, or a table function.
struct PlanScan {
  std::string table;     // the scanned table's name; empty for a function scan
  std::string function;  // the table function's name, upper case (RANGE, UNNEST ...); empty for a table
  int64_t estimated_rows = 0;    // the plan's "Estimated Cardinality" (0 when absent)
  std::set<std::string> tokens;  // lower-cased identifiers of its projections and pushed-down filters
};

// Parses EXPLAIN (FORMAT JSON)'s physical_plan text. InvalidArgument when
// it cannot be read as a plan.
Result<std::vector<PlanScan>> ParsePlanScans(std::string_view plan_json);

// Table functions a warehouse query may scan: they generate rows and read
// no table, file or setting.
bool IsGeneratorFunction(std::string_view function);

}  // namespace aquifer::drivers::duckdb
