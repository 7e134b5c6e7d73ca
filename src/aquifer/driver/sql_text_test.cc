#include "aquifer/driver/sql_text.h"

#include <gtest/gtest.h>

namespace aquifer::driver {
namespace {

TEST(SqlText, FirstKeywordSkipsBlanksCommentsAndParentheses) {
  EXPECT_EQ(FirstKeyword("  select 1"), "SELECT");
  EXPECT_EQ(FirstKeyword("-- a note\n/* more */ ((With x AS (SELECT 1) SELECT * FROM x))"), "WITH");
  EXPECT_EQ(FirstKeyword("/* unterminated"), "");
  EXPECT_EQ(FirstKeyword("1 + 1"), "");
  // `#` is a comment only where the dialect says so.
  EXPECT_EQ(FirstKeyword("# note\ndelete from t", SqlComments::kHash), "DELETE");
  EXPECT_EQ(FirstKeyword("# note\ndelete from t"), "");
}

TEST(SqlText, ASecondStatementIsFoundOutsideQuotesAndComments) {
  EXPECT_FALSE(HasSecondStatement("SELECT 1"));
  EXPECT_FALSE(HasSecondStatement("SELECT 1;  ;\n"));
  EXPECT_TRUE(HasSecondStatement("SELECT 1; DROP TABLE t"));
  EXPECT_FALSE(HasSecondStatement("SELECT ';DROP TABLE t' AS a, `x;y`, \"p;q\""));
  EXPECT_FALSE(HasSecondStatement("SELECT 'it\\'s; fine'"));
  EXPECT_FALSE(HasSecondStatement("SELECT 1 -- ; DROP TABLE t"));
  EXPECT_FALSE(HasSecondStatement("SELECT 1 /* ; DROP TABLE t */"));
  EXPECT_TRUE(HasSecondStatement("SELECT 1 /* ; */; DROP TABLE t"));
  // In Postgres `#` is an operator, so what follows it still counts.
  EXPECT_TRUE(HasSecondStatement("SELECT 1 # 2; DROP TABLE t"));
  EXPECT_FALSE(HasSecondStatement("SELECT 1 # ; DROP TABLE t", SqlComments::kHash));
}

TEST(SqlText, TrimStatementDropsTrailingSemicolonsAndBlanks) {
  EXPECT_EQ(TrimStatement("SELECT 1 ; ;\n\t"), "SELECT 1");
  EXPECT_EQ(TrimStatement("SELECT ';'"), "SELECT ';'");
  EXPECT_EQ(TrimStatement(" ;"), "");
}

TEST(SqlText, CheckOneSelectNamesWhatItRefuses) {
  EXPECT_TRUE(CheckOneSelect("SELECT 1;").ok());
  EXPECT_TRUE(CheckOneSelect("(WITH a AS (SELECT 1) SELECT * FROM a)").ok());
  Status insert = CheckOneSelect("insert into t values (1)");
  EXPECT_EQ(insert.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(insert.message(), "only SELECT queries are allowed, not INSERT");
  EXPECT_EQ(CheckOneSelect("42").message(), "only SELECT queries are allowed, not this");
  Status script = CheckOneSelect("SELECT 1; SELECT 2");
  EXPECT_EQ(script.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(script.message(), "only one SELECT statement is allowed, not a script");
}

}  // namespace
}  // namespace aquifer::driver
