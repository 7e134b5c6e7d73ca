#include "aquifer/sql/sql_check.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aquifer::sql {
namespace {

using ::testing::HasSubstr;

struct Accepted {
  std::string sql;
  // Each reference as "project.table=<text at its byte range>".
  std::vector<std::string> refs;
};

std::vector<std::string> Describe(std::string_view sql, const std::vector<SqlTableRef>& refs) {
  std::vector<std::string> out;
  for (const SqlTableRef& ref : refs) {
    EXPECT_LE(ref.begin, ref.end);
    EXPECT_LE(ref.end, sql.size());
    out.push_back(ref.project + "." + ref.table + "=" + std::string(sql.substr(ref.begin, ref.end - ref.begin)));
  }
  return out;
}

TEST(CheckSql, AcceptsQueriesAndFindsEveryReference) {
  const std::vector<Accepted> cases = {
      {"SELECT * FROM shop.orders", {"shop.orders=shop.orders"}},
      {"select * from Shop.Orders;", {"shop.orders=Shop.Orders"}},
      {"SELECT 1", {}},
      {"SELECT a.x, b.y FROM p.a AS a JOIN p.b b ON a.id = b.id", {"p.a=p.a", "p.b=p.b"}},
      {"SELECT * FROM p.a LEFT OUTER JOIN p.b USING (k) CROSS JOIN p.c NATURAL JOIN p.d",
       {"p.a=p.a", "p.b=p.b", "p.c=p.c", "p.d=p.d"}},
      {"SELECT * FROM p.a ASOF JOIN p.b ON a.t >= b.t POSITIONAL JOIN p.c SEMI JOIN p.d ON true ANTI JOIN p.e ON true",
       {"p.a=p.a", "p.b=p.b", "p.c=p.c", "p.d=p.d", "p.e=p.e"}},
      {"SELECT * FROM p.a, p.b AS x(c1, c2), p.c WHERE f(1, 2) = 3 ORDER BY a, b",
       {"p.a=p.a", "p.b=p.b", "p.c=p.c"}},
      {"WITH recent AS (SELECT * FROM p.events WHERE ts > 5), top(u) AS MATERIALIZED (SELECT u FROM recent) "
       "SELECT * FROM recent JOIN top ON true",
       {"p.events=p.events"}},
      {"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r, p.t",
       {"p.t=p.t"}},
      {"SELECT * FROM (SELECT * FROM p.t) AS s, LATERAL (SELECT * FROM p.u WHERE u.k = s.k) l",
       {"p.t=p.t", "p.u=p.u"}},
      {"SELECT * FROM ((SELECT x FROM p.a) UNION (SELECT x FROM p.b)) AS u", {"p.a=p.a", "p.b=p.b"}},
      {"SELECT * FROM (p.a JOIN p.b ON a.k = b.k), p.c", {"p.a=p.a", "p.b=p.b", "p.c=p.c"}},
      {R"(SELECT * FROM "my proj"."Tab""le")", {"my proj.Tab\"le=\"my proj\".\"Tab\"\"le\""}},
      {R"(SELECT * FROM "p" . t)", {"p.t=\"p\" . t"}},
      {"SELECT * FROM p/* FROM x.y */.t -- , evil.t\n", {"p.t=p/* FROM x.y */.t"}},
      {"SELECT 'FROM x' AS s, E'it\\'s FROM y' , $$ FROM z $$, $q$ FROM w $q$ FROM p.t", {"p.t=p.t"}},
      {"SELECT '' FROM p.t WHERE s = 'a''b FROM c'", {"p.t=p.t"}},
      {"/* leading /* nested */ comment FROM x */ SELECT * FROM p.t", {"p.t=p.t"}},
      {"SELECT t.col, x.y.z FROM p.t AS t WHERE t.from_date > 0", {"p.t=p.t"}},
      {"SELECT sum(x) OVER (PARTITION BY k ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM p.t",
       {"p.t=p.t"}},
      {"SELECT a FROM p.t UNION SELECT a FROM p.u EXCEPT SELECT a FROM p.v INTERSECT SELECT a FROM p.w",
       {"p.t=p.t", "p.u=p.u", "p.v=p.v", "p.w=p.w"}},
      {"SELECT extract(year FROM ts), substring(s FROM 2 FOR 3), trim(BOTH 'x' FROM s) FROM p.t", {"p.t=p.t"}},
      {"SELECT * FROM p.t WHERE a IS DISTINCT FROM b AND c IS NOT DISTINCT FROM d", {"p.t=p.t"}},
      {"SELECT x FROM p.t WHERE x IN (SELECT y FROM p.u) AND EXISTS (FROM p.v)", {"p.t=p.t", "p.u=p.u", "p.v=p.v"}},
      {"FROM p.t", {"p.t=p.t"}},
      {"FROM p.t SELECT a, b", {"p.t=p.t"}},
      {"TABLE p.t", {"p.t=p.t"}},
      {"SELECT x FROM p.t UNION TABLE p.u", {"p.u=p.u", "p.t=p.t"}},
      {"(SELECT 1 FROM p.t)", {"p.t=p.t"}},
      {"VALUES (1, 'a'), (2, 'b')", {}},
      {"SELECT * FROM (VALUES (1), (2)) v(x), p.t", {"p.t=p.t"}},
      {"SELECT * FROM p.t CROSS JOIN unnest([1, 2, 3]) AS u(x)", {"p.t=p.t"}},
      {"SELECT * FROM range(3) r, p.t", {"p.t=p.t"}},
      {"SELECT 1 AS from, 2 AS table, t.update FROM p.t AS t", {"p.t=p.t"}},
      {"SELECT \"update\", \"set\" FROM p.t", {"p.t=p.t"}},
      {"SELECT * FROM (PIVOT p.t ON c USING sum(x))", {"p.t=p.t"}},
      {"SELECT * FROM p.t PIVOT (sum(x) FOR c IN ('a', 'b'))", {"p.t=p.t"}},
      {"SELECT CAST(ts AS TIMESTAMP WITH TIME ZONE), x::VARCHAR, [1, 2][1], {'a': 1} FROM p.t", {"p.t=p.t"}},
      {"SELECT * FROM p.t, p.t", {"p.t=p.t", "p.t=p.t"}},
      {"SELECT * FROM p.t WHERE s GLOB 'a*' AND s LIKE 'read_csv(%'", {"p.t=p.t"}},
      {"SELECT 1.5e3, .5, 0x1F, 1_000 FROM p.t", {"p.t=p.t"}},
      {"SELECT a$b FROM p.t", {"p.t=p.t"}},
      {"SELECT query_count, read_at FROM p.t", {"p.t=p.t"}},
      {"SELECT * FROM main_db.t", {"main_db.t=main_db.t"}},
      {"SELECT __key, __timestamp FROM p.t", {"p.t=p.t"}},
  };
  for (const Accepted& c : cases) {
    auto refs = CheckSql(c.sql);
    ASSERT_TRUE(refs.ok()) << c.sql << "\n" << refs.status().ToString();
    std::vector<std::string> got = Describe(c.sql, *refs);
    std::vector<std::string> want = c.refs;
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want) << c.sql;
  }
}

TEST(CheckSql, ReferencesComeInTextOrderWithExactRanges) {
  const std::string sql = "SELECT * FROM a.b JOIN \"C\".d ON true";
  auto refs = CheckSql(sql);
  ASSERT_TRUE(refs.ok()) << refs.status().ToString();
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0], (SqlTableRef{"a", "b", 14, 17}));
  EXPECT_EQ((*refs)[1], (SqlTableRef{"C", "d", 23, 28}));
}

struct Refused {
  std::string sql;
  std::string message;  // a fragment of the error message
};

TEST(CheckSql, RefusesWhatIsNotASingleSafeSelect) {
  const std::vector<Refused> cases = {
      {"", "empty"},
      {"  -- only a comment\n", "empty"},
      {"INSERT INTO p.t VALUES (1)", "only a single SELECT"},
      {"DELETE FROM p.t", "only a single SELECT"},
      {"UPDATE p.t SET x = 1", "only a single SELECT"},
      {"CREATE TABLE x AS SELECT 1", "only a single SELECT"},
      {"DROP TABLE p.t", "only a single SELECT"},
      {"ATTACH 'other.db' AS o", "only a single SELECT"},
      {"COPY p.t TO 'out.csv'", "only a single SELECT"},
      {"PRAGMA database_list", "only a single SELECT"},
      {"INSTALL httpfs", "only a single SELECT"},
      {"LOAD httpfs", "only a single SELECT"},
      {"SET enable_external_access = true", "only a single SELECT"},
      {"CALL duckdb_tables()", "only a single SELECT"},
      {"EXPORT DATABASE 'x'", "only a single SELECT"},
      {"SUMMARIZE p.t", "only a single SELECT"},
      {"DESCRIBE p.t", "only a single SELECT"},
      {"SHOW TABLES", "only a single SELECT"},
      {"EXPLAIN SELECT 1", "only a single SELECT"},
      {"BEGIN", "only a single SELECT"},
      {"PIVOT p.t ON c", "only a single SELECT"},
      {"SELECT 1; SELECT 2", "only one statement"},
      {"SELECT 1; DROP TABLE x", "only one statement"},
      {"SELECT (1;)", "';' inside brackets"},
      {"WITH x AS (DELETE FROM p.t RETURNING *) SELECT * FROM x", "'delete' is not allowed"},
      {"SELECT * FROM (DESCRIBE p.t)", "'describe' is not allowed"},
      {"SELECT * FROM (SHOW TABLES)", "'show' is not allowed"},
      {"SELECT * FROM (SUMMARIZE p.t)", "'summarize' is not allowed"},
      {"SELECT * INTO newtable FROM p.t", "'into' is not allowed"},
      {"SELECT * FROM p.t FOR UPDATE", "'update' is not allowed"},
      {"SELECT * FROM orders", "table 'orders' must be named project.table (offset 14)"},
      {"SELECT * FROM \"orders\"", "must be named project.table"},
      {"SELECT * FROM i_0123456789abcdef0123456789abcdef", "must be named project.table"},
      {"SELECT * FROM a.b.c", "three-part names are not allowed"},
      {"SELECT * FROM p.t, other", "table 'other' must be named project.table"},
      {"SELECT * FROM p.t JOIN other ON true", "table 'other' must be named project.table"},
      {"WITH x AS (SELECT 1) SELECT * FROM (SELECT * FROM y)", "table 'y'"},
      {"WITH x AS (SELECT * FROM x) SELECT * FROM x", "table 'x' must be named project.table (offset 25)"},
      {"WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", "table 'b' must be named"},
      {"WITH RECURSIVE duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT * FROM duckdb_tables",
       "may not be named 'duckdb_tables'"},
      {"WITH \"pg_class\" AS (SELECT 1) SELECT * FROM pg_class", "may not be named"},
      {"SELECT * FROM (WITH x AS (SELECT 1) SELECT 1) s, x", "table 'x' must be named"},
      {"SELECT * FROM 'data.csv'", "file access is not allowed"},
      {"FROM 'data.parquet'", "file access is not allowed"},
      {"SELECT * FROM p.t JOIN 'x.csv' ON true", "file access is not allowed"},
      {"SELECT * FROM read_csv('x.csv')", "table functions are not allowed: read_csv"},
      {"SELECT * FROM read_text('/etc/passwd')", "table functions are not allowed: read_text"},
      {"SELECT * FROM glob('*')", "table functions are not allowed: glob"},
      {"SELECT * FROM duckdb_tables()", "table functions are not allowed: duckdb_tables"},
      {"SELECT * FROM p.t(1)", "table functions are not allowed: p.t"},
      {"SELECT * FROM p.t, LATERAL parquet_scan('x')", "table functions are not allowed: parquet_scan"},
      {"SELECT * FROM information_schema.tables", "'information_schema'"},
      {"SELECT * FROM pg_catalog.pg_class", "'pg_catalog'"},
      {"SELECT * FROM main.i_0123456789abcdef0123456789abcdef", "'main' is a system schema"},
      {"SELECT * FROM __aquifer_jobs.x", "system schema"},
      {"SELECT * FROM duckdb_tables", "must be named project.table"},
      {"SELECT * FROM sqlite_master", "must be named project.table"},
      {"SELECT current_setting('threads')", "function 'current_setting' is not allowed"},
      {"SELECT getenv('HOME')", "function 'getenv' is not allowed"},
      {"SELECT * FROM p.t WHERE x IN (SELECT * FROM query('SELECT 1'))", "table functions are not allowed: query"},
      {"SELECT \"READ_CSV\"('x')", "function '\"READ_CSV\"' is not allowed"},
      {"SELECT main.duckdb_tables()", "'main' is not allowed as a qualifier"},
      {"SELECT x.read_csv('f') FROM p.t x", "function 'read_csv' is not allowed"},
      {"SELECT pg_sleep(10)", "function 'pg_sleep' is not allowed"},
      {"SELECT json_execute_serialized_sql('x')", "not allowed"},
      {"SELECT 1 FROM p.t WHERE 1 = (SELECT count(*) FROM information_schema.columns)", "'information_schema'"},
      {"SELECT * FROM $1", "parameters are not supported"},
      {"SELECT ? FROM p.t", "parameters are not supported"},
      {"SELECT $name FROM p.t", "parameters are not supported"},
      {"SELECT 'unterminated", "unterminated string"},
      {"SELECT \"unterminated", "unterminated quoted identifier"},
      {"SELECT $$ unterminated", "unterminated dollar-quoted string"},
      {"SELECT /* /* */ unterminated", "unterminated comment"},
      {"SELECT `x` FROM p.t", "unexpected character '`'"},
      {std::string("SELECT 1 FROM p.t\0 ; DROP", 25), "control character 0x00"},
      {"SELECT (1", "never closed"},
      {"SELECT 1)", "unmatched ')'"},
      {"SELECT [1)", "does not close"},
      {"SELECT * FROM", "expected a table name at the end"},
      {"SELECT * FROM p.", "expected a name after '.'"},
      {"SELECT * FROM p.*", "expected a name after '.'"},
      {"SELECT * FROM 42", "expected a table name at offset 14"},
      {"SELECT * FROM (p.t JOIN)", "expected a table name at offset 23, found ')'"},
      {"WITH SELECT 1", "incomplete WITH"},
      {"WITH x AS SELECT 1", "expected '(' after AS"},
      {"WITH x AS (SELECT 1)", "must be followed by a SELECT"},
      {std::string(kMaxSqlLength + 1, ' '), "at most"},
      {std::string(300, '(') + "SELECT 1" + std::string(300, ')'), "more than 256 deep"},
  };
  for (const Refused& c : cases) {
    auto refs = CheckSql(c.sql);
    ASSERT_FALSE(refs.ok()) << c.sql.substr(0, 200);
    EXPECT_EQ(refs.status().code(), StatusCode::kInvalidArgument) << c.sql.substr(0, 200);
    EXPECT_THAT(refs.status().message(), HasSubstr(c.message)) << c.sql.substr(0, 200);
  }
}

// Lexer corners, each cut into tokens as DuckDB 1.4.4's lexer (libpg_query's
// scan.l) cuts it; what the checker sees must be what DuckDB parses.
TEST(CheckSql, TokenizesLexerCornersAsDuckDB) {
  const std::vector<Accepted> accepted = {
      // U&'...' is one string token; UESCAPE 'c' after it belongs to it.
      {"SELECT U&'d\\0061t FROM x.y' FROM p.t", {"p.t=p.t"}},
      {"SELECT U&'a''b FROM x.y' UESCAPE '!' FROM p.t", {"p.t=p.t"}},
      {"SELECT u&'a' -- c\n uescape\n'#' FROM p.t", {"p.t=p.t"}},
      // Dollar quotes end at the first identical delimiter; other tags inside are text.
      {"SELECT $a$ $b$ FROM x.y $b$ $a$ FROM p.t", {"p.t=p.t"}},
      {"SELECT $tag$ $tagx$ FROM x.y $x$ $tag$ FROM p.t", {"p.t=p.t"}},
      {"SELECT $$$$, a$$b FROM p.t", {"p.t=p.t"}},
      // Nested comments, and comment starts that look like operators.
      {"SELECT 1 /**/ FROM p.t", {"p.t=p.t"}},
      {"SELECT 1 /*/ FROM x.y */ FROM p.t", {"p.t=p.t"}},
      {"SELECT 1 /* a /* b /* c */ FROM x.y */ FROM z.w */ FROM p.t", {"p.t=p.t"}},
      {"SELECT 2*/*x*/3 FROM p.t", {"p.t=p.t"}},
      {"SELECT 1 +-- FROM x.y\n FROM p.t", {"p.t=p.t"}},
      // E'' strings take backslash escapes; standard strings do not.
      {"SELECT E'\\\\' FROM p.t", {"p.t=p.t"}},
      {"SELECT E'\\' FROM x.y' FROM p.t", {"p.t=p.t"}},
      {"SELECT e'a''b\\'c' FROM p.t", {"p.t=p.t"}},
      {"SELECT '\\' FROM p.t", {"p.t=p.t"}},
      {"SELECT b'01', x'ff', n'z' FROM p.t", {"p.t=p.t"}},
      // Numbers: no hex literal at the lexer; 0x1f is 0 then the identifier x1f.
      {"SELECT 0x1f, 1_000, 1.5e-3, 1..2 FROM p.t", {"p.t=p.t"}},
  };
  for (const Accepted& c : accepted) {
    auto refs = CheckSql(c.sql);
    ASSERT_TRUE(refs.ok()) << c.sql << "\n" << refs.status().ToString();
    EXPECT_EQ(Describe(c.sql, *refs), c.refs) << c.sql;
  }
  const std::vector<Refused> refused = {
      // A U&"..." identifier is one token (DuckDB's), refused wherever it is:
      // read as u & "..." it hid a table name behind a CTE called u.
      {"WITH u AS (SELECT 1) SELECT * FROM U&\"i_0123456789abcdef0123456789abcdef\"",
       "Unicode-escaped identifiers are not supported"},
      {"WITH u AS (SELECT 1) SELECT * FROM u&\"p\".u&\"t\"", "Unicode-escaped identifiers are not supported"},
      {"SELECT U&\"a\" FROM p.t", "Unicode-escaped identifiers are not supported: U&\"a\" at offset 7"},
      {"SELECT U&\"a\\0062\" UESCAPE '\\' FROM p.t", "Unicode-escaped identifiers"},
      {"SELECT U&\"a", "unterminated quoted identifier"},
      {"SELECT U&'a", "unterminated string"},
      // 0begin is the number 0 and the keyword BEGIN, not one number token.
      {"SELECT 0begin", "'begin' is not allowed"},
      {"SELECT $a$ x $A$", "unterminated dollar-quoted string"},
      {"SELECT E'\\'", "unterminated string"},
      {"SELECT /* /* */", "unterminated comment"},
  };
  for (const Refused& c : refused) {
    auto refs = CheckSql(c.sql);
    ASSERT_FALSE(refs.ok()) << c.sql;
    EXPECT_EQ(refs.status().code(), StatusCode::kInvalidArgument) << c.sql;
    EXPECT_THAT(refs.status().message(), HasSubstr(c.message)) << c.sql;
  }
}

TEST(CheckSql, ReferenceTextParsesBackToTheSameReference) {
  const std::string sql = R"(SELECT * FROM "A b" /* c */ . "x""y" JOIN q.r ON true)";
  auto refs = CheckSql(sql);
  ASSERT_TRUE(refs.ok()) << refs.status().ToString();
  for (const SqlTableRef& ref : *refs) {
    const std::string again = "SELECT * FROM " + sql.substr(ref.begin, ref.end - ref.begin);
    auto back = CheckSql(again);
    ASSERT_TRUE(back.ok()) << again;
    ASSERT_EQ(back->size(), 1u);
    EXPECT_EQ((*back)[0].project, ref.project);
    EXPECT_EQ((*back)[0].table, ref.table);
  }
}

TEST(RewriteTableRefs, ReplacesRightToLeftWithoutFusingTokens) {
  const std::string sql = R"(SELECT * FROM p.t"x", q.r'' , "a"."b"y WHERE 1)";
  auto refs = CheckSql(sql);
  ASSERT_TRUE(refs.ok()) << refs.status().ToString();
  ASSERT_EQ(refs->size(), 3u);
  const std::string out = RewriteTableRefs(sql, *refs, {"\"i_1\"", "\"i_2\"", "\"i_3\""});
  EXPECT_EQ(out, R"(SELECT * FROM "i_1" "x", "i_2" '' , "i_3" y WHERE 1)");
  auto again = CheckSql(out);
  EXPECT_FALSE(again.ok());  // one-part names now
  EXPECT_THAT(again.status().message(), HasSubstr("table '\"i_1\"'"));
}

}  // namespace
}  // namespace aquifer::sql
