#pragma once

// CheckSql: the lexical gate in front of the warehouse. It decides, without a
// catalog or a database, whether a user's SQL is one SELECT that reads only
// `project.table` names (or CTEs it declares), and where those names are, so
// the engine can check read access on each and rewrite it to the physical
// table. Kept in its own small module (no engine, no drivers) so that it can
// be fuzzed on its own.
//
// Accepted: exactly one statement (a trailing ';' allowed) that starts with
// SELECT, WITH ... SELECT, VALUES, a parenthesised SELECT, or DuckDB's
// FROM-first form (`FROM p.t SELECT ...`, `FROM p.t`), which is held to the same
// table-reference rules. Refused, each with a message naming what and the
// byte offset where:
//   - any other statement, or a statement keyword anywhere at statement level
//     (INSERT UPDATE DELETE MERGE CREATE DROP ALTER ATTACH DETACH COPY PRAGMA
//     INSTALL LOAD SET RESET CALL EXPORT IMPORT VACUUM CHECKPOINT USE BEGIN
//     COMMIT ROLLBACK SUMMARIZE DESCRIBE SHOW EXPLAIN ...);
//   - a table reference that is not project.table or a CTE name of the
//     statement: one-part and three-part names, string literals ('f.csv'),
//     table functions (read_csv(...)), parameters;
//   - deny-listed names anywhere (functions or identifiers): read_*, glob,
//     *_scan, duckdb_*, pragma_*, sqlite_*, pg_*, information_schema,
//     pg_catalog, current_setting, getenv, query, query_table, ...; and the
//     system catalogs or schemas (main, temp, system, memory ...) used as a
//     qualifier.
//
// Thread-safe (pure function).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"

namespace aquifer::sql {

// One `project.table` reference in the statement. `project` and `table` are
// the names as written with quoted identifiers unquoted ("a""b" -> a"b) and
// bare ones lower-cased (SQL folds unquoted identifiers).
struct SqlTableRef {
  std::string project;
  std::string table;
  size_t begin = 0, end = 0;  // byte range of the reference in the SQL text

  bool operator==(const SqlTableRef&) const = default;
};

// Lexical check and reference extraction; no catalog access. InvalidArgument
// with a message that says what was refused and where. References come in
// text order; a name used twice appears twice (with both ranges).
Result<std::vector<SqlTableRef>> CheckSql(std::string_view sql);

// Replaces each reference's byte range by replacements[i] (same length as
// `refs`, which must be CheckSql's answer for `sql`), right to left. A space
// is added where the replacement would fuse with a neighbouring token: the
// text `p.t"x"` becomes `"i_..." "x"`, not the single identifier `"i_...""x"`.
std::string RewriteTableRefs(std::string_view sql, const std::vector<SqlTableRef>& refs,
                             const std::vector<std::string>& replacements);

// The longest SQL text CheckSql accepts (bytes).
inline constexpr size_t kMaxSqlLength = 1 << 20;

}  // namespace aquifer::sql
