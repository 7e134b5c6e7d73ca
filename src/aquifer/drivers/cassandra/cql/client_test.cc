// The CQL client against the real node of scripts/peers/cassandra
// (AQUIFER_TEST_CASSANDRA; without it every test fails saying how to start
// one). Each test works in tables of its own in one keyspace per run.

#include "aquifer/drivers/cassandra/cql/client.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "aquifer/base/uuid.h"
#include "aquifer/drivers/cassandra/testing.h"

namespace aquifer::drivers::cassandra::cql {
namespace {

class CqlClient : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    keyspace_ = new std::string("cql_" + Uuid::Random().ToString().substr(0, 8));
  }
  static void TearDownTestSuite() {
    auto options = testing::TestClientOptions();
    if (options.ok()) {
      auto session = Session::Connect(*options);
      if (session.ok()) (void)(*session)->Query("DROP KEYSPACE IF EXISTS " + *keyspace_);
    }
    delete keyspace_;
  }

  void SetUp() override {
    auto options = testing::TestClientOptions();
    ASSERT_TRUE(options.ok()) << options.status().ToString();
    options_ = *options;
    auto session = Session::Connect(options_);
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    session_ = std::move(*session);
    auto made = session_->Query("CREATE KEYSPACE IF NOT EXISTS " + *keyspace_ +
                                " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}");
    ASSERT_TRUE(made.ok()) << made.status().ToString();
  }

  std::string Table(std::string_view name) { return *keyspace_ + "." + std::string(name); }

  void Run(const std::string& cql) {
    auto done = session_->Query(cql);
    ASSERT_TRUE(done.ok()) << cql << ": " << done.status().ToString();
  }

  static std::string* keyspace_;
  ClientOptions options_;
  std::unique_ptr<Session> session_;
};
std::string* CqlClient::keyspace_ = nullptr;

TEST_F(CqlClient, PlainAuthenticationRefusesABadPassword) {
  ClientOptions bad = options_;
  bad.password = "not-the-password";
  auto session = Session::Connect(bad);
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(session.status().code(), StatusCode::kUnauthenticated) << session.status().ToString();
  EXPECT_NE(session.status().message().find("BadCredentials"), std::string::npos) << session.status().ToString();

  ClientOptions none = options_;
  none.username.clear();
  auto anonymous = Session::Connect(none);
  EXPECT_EQ(anonymous.status().code(), StatusCode::kUnauthenticated) << anonymous.status().ToString();
}

TEST_F(CqlClient, ANodeThatIsNotThereIsUnavailable) {
  ClientOptions nowhere = options_;
  nowhere.port = 1;  // nothing listens on port 1 here
  auto session = Session::Connect(nowhere);
  EXPECT_EQ(session.status().code(), StatusCode::kUnavailable) << session.status().ToString();
}

TEST_F(CqlClient, EveryBoundTypeRoundTrips) {
  Run("CREATE TABLE " + Table("types") +
      " (k text PRIMARY KEY, b blob, big bigint, i int, flag boolean, note text)");
  Run("CREATE TABLE " + Table("hits") + " (k text PRIMARY KEY, n counter)");
  auto insert = session_->Prepare("INSERT INTO " + Table("types") + " (k, b, big, i, flag, note) VALUES (?, ?, ?, ?, ?, ?)");
  ASSERT_TRUE(insert.ok()) << insert.status().ToString();
  EXPECT_EQ((*insert)->bind_columns.size(), 6u);
  const std::string blob("\0\x01\xff\x80zz", 6);
  std::vector<Value> values = {std::string("a"), Blob{blob}, int64_t{-9'000'000'000'000'000'000},
                               int32_t{-7}, true, Null{}};
  ASSERT_TRUE(session_->Execute(**insert, values).ok());
  auto rows = session_->Query("SELECT b, big, i, flag, note FROM " + Table("types") + " WHERE k = ?",
                              std::vector<Value>{std::string("a")});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->rows.size(), 1u);
  const Row& row = rows->rows[0];
  EXPECT_EQ(rows->metadata.columns[0].type, TypeId::kBlob);
  EXPECT_EQ(rows->metadata.columns[1].type, TypeId::kBigint);
  EXPECT_EQ(*row[0], blob);
  EXPECT_EQ(*DecodeBigint(*row[1]), -9'000'000'000'000'000'000);
  EXPECT_EQ(*DecodeInt(*row[2]), -7);
  EXPECT_TRUE(*DecodeBoolean(*row[3]));
  EXPECT_FALSE(row[4].has_value());

  auto add = session_->Prepare("UPDATE " + Table("hits") + " SET n = n + ? WHERE k = ?");
  ASSERT_TRUE(add.ok()) << add.status().ToString();
  for (int64_t delta : {5, -2, 40}) {
    ASSERT_TRUE(session_->Execute(**add, std::vector<Value>{delta, std::string("x")}).ok());
  }
  auto hits = session_->Query("SELECT n FROM " + Table("hits") + " WHERE k = 'x'");
  ASSERT_TRUE(hits.ok());
  ASSERT_EQ(hits->rows.size(), 1u);
  EXPECT_EQ(hits->metadata.columns[0].type, TypeId::kCounter);
  EXPECT_EQ(*DecodeBigint(*hits->rows[0][0]), 43);
}

TEST_F(CqlClient, PagingWalksThousandsOfRowsInClusteringOrder) {
  Run("CREATE TABLE " + Table("paged") + " (p int, c int, v text, PRIMARY KEY (p, c))");
  auto insert = session_->Prepare("INSERT INTO " + Table("paged") + " (p, c, v) VALUES (?, ?, ?)");
  ASSERT_TRUE(insert.ok()) << insert.status().ToString();
  constexpr int kRows = 3'000;
  for (int first = 0; first < kRows; first += 100) {  // unlogged batches within one partition
    std::vector<BatchEntry> batch;
    for (int c = first; c < first + 100; ++c) {
      batch.push_back(BatchEntry{insert->get(), "", {int32_t{1}, int32_t{c}, "v" + std::to_string(c)}});
    }
    Status done = session_->Batch(BatchType::kUnlogged, batch);
    ASSERT_TRUE(done.ok()) << done.ToString();
  }
  auto select = session_->Prepare("SELECT c, v FROM " + Table("paged") + " WHERE p = ?");
  ASSERT_TRUE(select.ok());
  QueryOptions options;
  options.page_size = 700;
  int pages = 0;
  std::vector<int32_t> seen;
  for (;;) {
    auto page = session_->Execute(**select, std::vector<Value>{int32_t{1}}, options);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    ++pages;
    EXPECT_LE(page->rows.size(), 700u);
    for (const Row& row : page->rows) seen.push_back(*DecodeInt(*row[0]));
    if (!page->metadata.paging_state) break;
    options.paging_state = *page->metadata.paging_state;
  }
  EXPECT_EQ(pages, 5);  // 4 full pages and one of 200
  ASSERT_EQ(seen.size(), static_cast<size_t>(kRows));
  for (int c = 0; c < kRows; ++c) ASSERT_EQ(seen[c], c);

  // QueryAll follows the paging state by itself (simple statements page too).
  QueryOptions small;
  small.page_size = 1'000;
  auto all = session_->QueryAll("SELECT c FROM " + Table("paged") + " WHERE p = 1", {}, small);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->size(), static_cast<size_t>(kRows));
}

TEST_F(CqlClient, PreparedStatementsFollowASchemaChange) {
  Run("CREATE TABLE " + Table("altered") + " (k int PRIMARY KEY, a text)");
  auto select = session_->Prepare("SELECT * FROM " + Table("altered") + " WHERE k = ?");
  auto insert = session_->Prepare("INSERT INTO " + Table("altered") + " (k, a) VALUES (?, ?)");
  ASSERT_TRUE(select.ok() && insert.ok());
  ASSERT_TRUE(session_->Execute(**insert, std::vector<Value>{int32_t{1}, std::string("one")}).ok());
  Run("ALTER TABLE " + Table("altered") + " ADD b bigint");
  Run("UPDATE " + Table("altered") + " SET b = 99 WHERE k = 1");
  // The prepared INSERT still runs, and the prepared SELECT * returns the new column.
  ASSERT_TRUE(session_->Execute(**insert, std::vector<Value>{int32_t{2}, std::string("two")}).ok());
  auto rows = session_->Execute(**select, std::vector<Value>{int32_t{1}});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->rows.size(), 1u);
  std::vector<std::string> names;
  for (const ColumnSpec& column : rows->metadata.columns) names.push_back(column.name);
  EXPECT_EQ(names, (std::vector<std::string>{"k", "a", "b"}));
  EXPECT_EQ(*DecodeBigint(*rows->rows[0][2]), 99);

  // Dropped and made again: the node forgot the prepared statements on it
  // (UNPREPARED); the client prepares again and the call succeeds.
  Run("DROP TABLE " + Table("altered"));
  Run("CREATE TABLE " + Table("altered") + " (k int PRIMARY KEY, a text)");
  ASSERT_TRUE(session_->Execute(**insert, std::vector<Value>{int32_t{3}, std::string("three")}).ok());
  auto again = session_->Execute(**select, std::vector<Value>{int32_t{3}});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ASSERT_EQ(again->rows.size(), 1u);
  EXPECT_EQ(*again->rows[0][1], "three");
}

TEST_F(CqlClient, AnUnknownStatementIdIsPreparedAgainFromItsText) {
  Run("CREATE TABLE " + Table("forgotten") + " (k int PRIMARY KEY)");
  PreparedStatement stale;
  stale.query = "SELECT k FROM " + Table("forgotten") + " WHERE k = ?";
  stale.id = std::string(16, '\x42');  // an id this node never made: it answers UNPREPARED
  auto rows = session_->Execute(stale, std::vector<Value>{int32_t{1}});
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_TRUE(rows->rows.empty());
}

TEST_F(CqlClient, ServerErrorsMapToStatusCodesWithTheServersMessage) {
  auto syntax = session_->Query("SELEKT nothing");
  EXPECT_EQ(syntax.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(syntax.status().message().find("SyntaxError"), std::string::npos) << syntax.status().ToString();

  auto invalid = session_->Query("SELECT * FROM " + Table("no_such_table"));
  EXPECT_EQ(invalid.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(invalid.status().message().find("Invalid"), std::string::npos) << invalid.status().ToString();
  EXPECT_NE(invalid.status().message().find("no_such_table"), std::string::npos) << invalid.status().ToString();

  auto bad_prepare = session_->Prepare("INSERT INTO " + Table("no_such_table") + " (k) VALUES (?)");
  EXPECT_EQ(bad_prepare.status().code(), StatusCode::kInvalidArgument) << bad_prepare.status().ToString();

  Run("CREATE TABLE " + Table("twice") + " (k int PRIMARY KEY)");
  auto exists = session_->Query("CREATE TABLE " + Table("twice") + " (k int PRIMARY KEY)");
  EXPECT_EQ(exists.status().code(), StatusCode::kAlreadyExists) << exists.status().ToString();

  // A bound value of the wrong type: the server refuses it.
  auto typed = session_->Prepare("SELECT k FROM " + Table("twice") + " WHERE k = ?");
  ASSERT_TRUE(typed.ok());
  auto wrong = session_->Execute(**typed, std::vector<Value>{int64_t{1}});
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument) << wrong.status().ToString();
  auto count = session_->Execute(**typed, std::vector<Value>{});
  EXPECT_EQ(count.status().code(), StatusCode::kInvalidArgument) << count.status().ToString();

  // Three replicas wanted, one node alive: QUORUM cannot be reached.
  const std::string wide = *keyspace_ + "_rf3";
  Run("CREATE KEYSPACE IF NOT EXISTS " + wide +
      " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 3}");
  Run("CREATE TABLE IF NOT EXISTS " + wide + ".t (k int PRIMARY KEY)");
  QueryOptions quorum;
  quorum.consistency = Consistency::kQuorum;
  auto unavailable = session_->Query("INSERT INTO " + wide + ".t (k) VALUES (1)", {}, quorum);
  EXPECT_EQ(unavailable.status().code(), StatusCode::kUnavailable) << unavailable.status().ToString();
  EXPECT_NE(unavailable.status().message().find("Unavailable"), std::string::npos) << unavailable.status().ToString();
  Run("DROP KEYSPACE " + wide);

  // The connection that carried each error is still good.
  EXPECT_TRUE(session_->Query("SELECT release_version FROM system.local").ok());
}

TEST_F(CqlClient, LightweightTransactionsReportWhetherTheyApplied) {
  Run("CREATE TABLE " + Table("lwt") + " (k int PRIMARY KEY, v bigint)");
  auto insert = session_->Prepare("INSERT INTO " + Table("lwt") + " (k, v) VALUES (?, ?) IF NOT EXISTS");
  ASSERT_TRUE(insert.ok());
  auto first = session_->Execute(**insert, std::vector<Value>{int32_t{1}, int64_t{10}});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->metadata.columns[0].name, "[applied]");
  EXPECT_TRUE(*DecodeBoolean(*first->rows[0][0]));
  auto second = session_->Execute(**insert, std::vector<Value>{int32_t{1}, int64_t{20}});
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*DecodeBoolean(*second->rows[0][0]));
}

TEST_F(CqlClient, ConcurrentRequestsShareThePool) {
  Run("CREATE TABLE " + Table("shared") + " (k int PRIMARY KEY, n counter)");
  auto add = session_->Prepare("UPDATE " + Table("shared") + " SET n = n + 1 WHERE k = 0");
  ASSERT_TRUE(add.ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int thread_idx = 0; thread_idx < 8; ++thread_idx) {
    threads.emplace_back([&] {
      for (int add_idx = 0; add_idx < 50; ++add_idx) {
        if (!session_->Execute(**add, {}).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(session_->connections_opened(), options_.pool_size);
  auto rows = session_->Query("SELECT n FROM " + Table("shared") + " WHERE k = 0");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(*DecodeBigint(*rows->rows[0][0]), 400);
}

TEST(CqlProtocol, ConsistencyNamesParse) {
  EXPECT_EQ(*ParseConsistency("local_quorum"), Consistency::kLocalQuorum);
  EXPECT_EQ(*ParseConsistency("ONE"), Consistency::kOne);
  auto bad = ParseConsistency("MOST");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("LOCAL_QUORUM"), std::string::npos);
}

TEST(CqlProtocol, TruncatedAndHostileBodiesAreCorruptionNotCrashes) {
  BodyWriter rows;
  rows.Int(2).Int(0).Int(1000000).Int(2000000000);  // kind rows, flags, a million columns, no specs
  EXPECT_EQ(DecodeResult(rows.data()).status().code(), StatusCode::kCorruption);
  BodyWriter header;
  header.Byte(0x84).Byte(0).Short(0).Byte(0x08).Int(-5);
  EXPECT_EQ(DecodeHeader(header.data()).status().code(), StatusCode::kCorruption);
  BodyWriter error;
  error.Int(0x2500).String("unprepared");  // the id is missing
  EXPECT_EQ(DecodeError(error.data()).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace aquifer::drivers::cassandra::cql
