#pragma once

// Plain-text checks the SQL warehouse drivers run on a query before handing it
// to their server: which statement it is, whether it is one statement, and the
// statement without its trailing semicolons. They look at the text only
// (quotes and comments aside); the server still parses the query.

#include <string>
#include <string_view>

#include "aquifer/base/status.h"

namespace aquifer::driver {

// Which comments a dialect has besides `--` and `/* */`.
enum class SqlComments {
  kStandard,  // Postgres, ClickHouse, DuckDB (in Postgres `#` is an operator)
  kHash,      // BigQuery also takes `#` to the end of the line
};

// The first keyword, skipping whitespace, comments and opening parentheses;
// upper case ("" when the text starts with anything else).
std::string FirstKeyword(std::string_view sql, SqlComments comments = SqlComments::kStandard);
// True when a `;` outside quotes and comments is followed by more than
// whitespace and semicolons: a script of several statements.
bool HasSecondStatement(std::string_view sql, SqlComments comments = SqlComments::kStandard);
// The statement without trailing semicolons and whitespace, so it can be
// wrapped (a subquery, EXPLAIN, CREATE TABLE AS) and stay one statement.
std::string_view TrimStatement(std::string_view sql);
// OK when the text is one statement that starts with SELECT or WITH;
// InvalidArgument "only SELECT queries are allowed, not <KEYWORD>" or "only
// one SELECT statement is allowed, not a script" otherwise.
Status CheckOneSelect(std::string_view sql, SqlComments comments = SqlComments::kStandard);

}  // namespace aquifer::driver
