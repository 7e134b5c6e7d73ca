// The libpq layer against the real server from scripts/peers/postgres:
// binary parameters and results, the error mapping, and the pool's reconnect.

#include "aquifer/drivers/postgres/pg.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "aquifer/drivers/postgres/testing.h"

namespace aquifer::drivers::postgres {
namespace {

std::string ServerUrl() {
  auto config = testing::TestConfig("pg_test");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? config->at("url") : std::string();
}

TEST(PostgresStatus, SqlStatesMapToTheCallersDecision) {
  EXPECT_EQ(StatusFromSqlState("08006", "x", "m").code(), StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromSqlState("57P01", "x", "m").code(), StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromSqlState("53300", "x", "m").code(), StatusCode::kUnavailable);
  EXPECT_EQ(StatusFromSqlState("23505", "x", "m").code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(StatusFromSqlState("42P01", "x", "m").code(), StatusCode::kNotFound);
  EXPECT_EQ(StatusFromSqlState("23502", "x", "m").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusFromSqlState("42601", "x", "m").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusFromSqlState("22P02", "x", "m").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusFromSqlState("40001", "x", "m").code(), StatusCode::kAborted);
  EXPECT_EQ(StatusFromSqlState("40P01", "x", "m").code(), StatusCode::kAborted);
  EXPECT_EQ(StatusFromSqlState("57014", "x", "m").code(), StatusCode::kTimeout);
  EXPECT_EQ(StatusFromSqlState("53100", "x", "m").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusFromSqlState("XX001", "x", "m").code(), StatusCode::kCorruption);
  EXPECT_EQ(StatusFromSqlState("XX000", "x", "m").code(), StatusCode::kInternal);
  Status status = StatusFromSqlState("23505", "inserting", "duplicate key");
  EXPECT_EQ(status.message(), "inserting: duplicate key (SQLSTATE 23505)");
}

TEST(PostgresIdent, QuotingDoublesEmbeddedQuotes) {
  EXPECT_EQ(QuoteIdent("plain"), "\"plain\"");
  EXPECT_EQ(QuoteIdent("a\"b"), "\"a\"\"b\"");
}

TEST(PostgresConnection, AnUnreachableServerIsUnavailable) {
  // Port 1 on loopback: nothing listens there.
  auto conn = Connection::Open("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2");
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), StatusCode::kUnavailable) << conn.status().ToString();
  EXPECT_NE(conn.status().message().find("127.0.0.1"), std::string::npos) << conn.status().ToString();
}

TEST(PostgresConnection, BinaryParametersAndResultsRoundTrip) {
  auto conn = Connection::Open(ServerUrl());
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  const std::string bytes("\x00\x01\xff\x00z", 5);
  const Uuid id = Uuid::Random();
  Params params;
  params.Int8(-5'000'000'000).Bytea(bytes).Text("héllo").Uuid(id).Bool(true).Int4(-7).Int2(300);
  auto row = (*conn)->Exec("SELECT $1, $2, $3, $4, $5, $6, $7, $1 + 1", params);
  ASSERT_TRUE(row.ok()) << row.status().ToString();
  ASSERT_EQ(row->rows(), 1);
  EXPECT_EQ(*row->Int(0, 0), -5'000'000'000);
  EXPECT_EQ(row->Bytes(0, 1), bytes);
  EXPECT_EQ(row->Bytes(0, 2), "héllo");
  EXPECT_EQ(row->Bytes(0, 3), id.AsBytes());
  EXPECT_TRUE(*row->Bool(0, 4));
  EXPECT_EQ(*row->Int(0, 5), -7);
  EXPECT_EQ(*row->Int(0, 6), 300);
  EXPECT_EQ(*row->Int(0, 7), -4'999'999'999);

  std::vector<std::string_view> keys = {"", std::string_view("\0", 1), "b"};
  Params arrays;
  arrays.Int8Array({3, -1, 2}).ByteaArray(keys).Null(kInt8Oid);
  auto rows = (*conn)->Exec(
      "SELECT u.n, u.k, u.ord, $3::int8 IS NULL FROM unnest($1::int8[], $2::bytea[]) WITH ORDINALITY AS u(n, k, ord) "
      "ORDER BY u.ord", arrays);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->rows(), 3);
  EXPECT_EQ(*rows->Int(1, 0), -1);
  EXPECT_EQ(rows->Bytes(1, 1), std::string_view("\0", 1));
  EXPECT_EQ(rows->Bytes(0, 1), "");
  EXPECT_EQ(*rows->Int(2, 2), 3);
  EXPECT_TRUE(*rows->Bool(0, 3));

  Params empty;
  empty.Int8Array({}).ByteaArray({});
  auto none = (*conn)->Exec("SELECT * FROM unnest($1::int8[], $2::bytea[])", empty);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->rows(), 0);
}

TEST(PostgresConnection, ServerErrorsCarryTheRightCodeAndTheServersText) {
  auto conn = Connection::Open(ServerUrl());
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE((*conn)->ExecScript("CREATE TEMP TABLE t (k int PRIMARY KEY)").ok());
  ASSERT_TRUE((*conn)->ExecScript("INSERT INTO t VALUES (1)").ok());
  Status duplicate = (*conn)->ExecScript("INSERT INTO t VALUES (1)");
  EXPECT_EQ(duplicate.code(), StatusCode::kAlreadyExists) << duplicate.ToString();
  EXPECT_NE(duplicate.message().find("duplicate key"), std::string::npos) << duplicate.ToString();
  Status syntax = (*conn)->Exec("SELEC 1").status();
  EXPECT_EQ(syntax.code(), StatusCode::kInvalidArgument) << syntax.ToString();
  Status timeout = (*conn)->ExecScript("SET statement_timeout = 50; SELECT pg_sleep(5)");
  EXPECT_EQ(timeout.code(), StatusCode::kTimeout) << timeout.ToString();
  EXPECT_FALSE((*conn)->broken());
}

TEST(PostgresPool, ConnectionsAreReusedAndABrokenOneIsReplaced) {
  Pool pool(ServerUrl(), 2);
  int64_t first_pid = 0;
  {
    auto conn = pool.Acquire();
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    auto pid = (*conn)->Exec("SELECT pg_backend_pid()");
    ASSERT_TRUE(pid.ok());
    first_pid = *pid->Int(0, 0);
  }
  {
    auto conn = pool.Acquire();
    ASSERT_TRUE(conn.ok());
    auto pid = (*conn)->Exec("SELECT pg_backend_pid()");
    ASSERT_TRUE(pid.ok());
    EXPECT_EQ(*pid->Int(0, 0), first_pid) << "an idle connection is handed out again";
    // The server ends this session: the statement fails as Unavailable and
    // the connection is broken.
    Status killed = (*conn)->Exec("SELECT pg_terminate_backend(pg_backend_pid())").status();
    EXPECT_EQ(killed.code(), StatusCode::kUnavailable) << killed.ToString();
    EXPECT_TRUE((*conn)->broken());
  }
  EXPECT_EQ(pool.open_connections(), 0u) << "the broken connection was dropped";
  auto conn = pool.Acquire();
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  auto pid = (*conn)->Exec("SELECT pg_backend_pid()");
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  EXPECT_NE(*pid->Int(0, 0), first_pid);
}

// What a server restart does to a pool: every idle session is closed by the
// server while nobody uses it. The pool must hand out working connections
// afterwards, not one failure per stale connection.
TEST(PostgresPool, IdleConnectionsTheServerClosedAreReplacedBeforeUse) {
  Pool pool(ServerUrl(), 3);
  std::vector<int64_t> pids;
  {
    std::vector<PooledConnection> held;
    for (int i = 0; i < 3; ++i) {
      auto conn = pool.Acquire();
      ASSERT_TRUE(conn.ok()) << conn.status().ToString();
      auto pid = (*conn)->Exec("SELECT pg_backend_pid()");
      ASSERT_TRUE(pid.ok());
      pids.push_back(*pid->Int(0, 0));
      held.push_back(std::move(*conn));
    }
  }  // all three idle now
  ASSERT_EQ(pool.open_connections(), 3u);
  {
    auto killer = Connection::Open(ServerUrl());
    ASSERT_TRUE(killer.ok()) << killer.status().ToString();
    for (int64_t pid : pids) {
      auto done = (*killer)->Exec("SELECT pg_terminate_backend(" + std::to_string(pid) + ")");
      ASSERT_TRUE(done.ok()) << done.status().ToString();
    }
    // Wait (bounded) until the server has ended the three sessions.
    for (int i = 0; i < 500; ++i) {
      auto left = (*killer)->Exec("SELECT count(*) FROM pg_stat_activity WHERE pid IN (" + std::to_string(pids[0]) +
                                  "," + std::to_string(pids[1]) + "," + std::to_string(pids[2]) + ")");
      ASSERT_TRUE(left.ok());
      if (*left->Int(0, 0) == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // Every connection handed out now works: the closed ones were replaced.
  std::vector<PooledConnection> held;
  for (int i = 0; i < 3; ++i) {
    auto conn = pool.Acquire();
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    auto pid = (*conn)->Exec("SELECT pg_backend_pid()");
    ASSERT_TRUE(pid.ok()) << "statement " << i << " after the sessions were closed: " << pid.status().ToString();
    EXPECT_EQ(std::count(pids.begin(), pids.end(), *pid->Int(0, 0)), 0) << "a closed session was reused";
    held.push_back(std::move(*conn));
  }
}

TEST(PostgresPool, AConnectionReturnedInsideATransactionIsRolledBack) {
  Pool pool(ServerUrl(), 1);
  {
    auto conn = pool.Acquire();
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE((*conn)->Begin().ok());
    ASSERT_TRUE((*conn)->ExecScript("CREATE TEMP TABLE leftover (k int)").ok());
  }
  auto conn = pool.Acquire();
  ASSERT_TRUE(conn.ok());
  EXPECT_FALSE((*conn)->in_transaction());
  auto exists = (*conn)->Exec("SELECT to_regclass('pg_temp.leftover') IS NULL");
  ASSERT_TRUE(exists.ok()) << exists.status().ToString();
  EXPECT_TRUE(*exists->Bool(0, 0)) << "the abandoned transaction was rolled back";
}

TEST(PostgresPool, AcquireWaitsForAReturnAndTimesOutAsUnavailable) {
  Pool pool(ServerUrl(), 1, /*acquire_timeout_ms=*/200);
  auto held = pool.Acquire();
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  auto second = pool.Acquire();
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status().ToString();
}

TEST(PostgresOptions, UrlIsRequiredAndPoolSizeChecked) {
  EXPECT_EQ(ParseConnectionOptions({}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseConnectionOptions({{"url", "postgresql://x"}, {"pool_size", "0"}}).status().code(),
            StatusCode::kInvalidArgument);
  auto options = ParseConnectionOptions({{"url", "postgresql://x"}, {"schema", "s1"}, {"pool_size", "3"}});
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->schema, "s1");
  EXPECT_EQ(options->pool_size, 3u);
}

}  // namespace
}  // namespace aquifer::drivers::postgres
