#include "aquifer/drivers/duckdb/handles.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace aquifer::drivers::duckdb {
namespace {

using ::testing::HasSubstr;

class YieldingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(duckdb_open(nullptr, db_.out()), DuckDBError);
    ASSERT_NE(duckdb_connect(db_.get(), conn_.out()), DuckDBError);
  }
  Database db_;
  Connection conn_;
};

// A parallel aggregate: its tasks run on DuckDB's scheduler threads too, so
// the caller waits for them; the result is the complete one.
TEST_F(YieldingTest, ReturnsTheWholeResultOfAParallelQuery) {
  auto sum = QueryYielding(conn_.get(), "SELECT CAST(sum(i) AS BIGINT) FROM range(3000000) t(i)");
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  DataChunk chunk(duckdb_fetch_chunk(sum->ref()));
  ASSERT_TRUE(chunk);
  ASSERT_EQ(duckdb_data_chunk_get_size(chunk.get()), 1u);
  EXPECT_EQ(static_cast<const int64_t*>(duckdb_vector_get_data(duckdb_data_chunk_get_vector(chunk.get(), 0)))[0],
            int64_t{3000000} * 2999999 / 2);
}

TEST_F(YieldingTest, TransactionsCommitAndRollBack) {
  ASSERT_TRUE(ExecYielding(conn_.get(), "CREATE TABLE t (a BIGINT)").ok());
  ASSERT_TRUE(ExecYielding(conn_.get(), "BEGIN TRANSACTION").ok());
  ASSERT_TRUE(ExecYielding(conn_.get(), "INSERT INTO t VALUES (1), (2)").ok());
  ASSERT_TRUE(ExecYielding(conn_.get(), "ROLLBACK").ok());
  ASSERT_TRUE(ExecYielding(conn_.get(), "BEGIN TRANSACTION").ok());
  ASSERT_TRUE(ExecYielding(conn_.get(), "INSERT INTO t VALUES (3)").ok());
  ASSERT_TRUE(ExecYielding(conn_.get(), "COMMIT").ok());
  auto sum = QueryInt(conn_.get(), "SELECT CAST(sum(a) AS BIGINT) FROM t");
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  EXPECT_EQ(*sum, 3);
}

TEST_F(YieldingTest, ErrorsCarryTheCodeAndDuckDBsMessage) {
  Status parse = ExecYielding(conn_.get(), "SELEC 1", StatusCode::kInvalidArgument);
  EXPECT_EQ(parse.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(parse.message(), HasSubstr("syntax error"));
  Status missing = ExecYielding(conn_.get(), "INSERT INTO nowhere VALUES (1)", StatusCode::kFailedPrecondition);
  EXPECT_EQ(missing.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.message(), HasSubstr("nowhere"));
  // An error while executing (not while preparing).
  auto cast = QueryYielding(conn_.get(), "SELECT CAST('x' || i AS INTEGER) FROM range(3) t(i)");
  ASSERT_FALSE(cast.ok());
  EXPECT_EQ(cast.status().code(), StatusCode::kInternal);
  EXPECT_THAT(cast.status().message(), HasSubstr("Could not convert"));
}

}  // namespace
}  // namespace aquifer::drivers::duckdb
