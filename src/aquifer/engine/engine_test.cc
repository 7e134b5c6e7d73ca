// Engine end to end, in one process on the embedded drivers (RocksDB queue
// and lookup, DuckDB warehouse, SQLite catalog) in a temporary data dir.

#include "aquifer/engine/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <functional>
#include <span>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/driver/wrappers.h"
#include "aquifer/drivers/builtin.h"
#include "aquifer/drivers/postgres/testing.h"
#include "aquifer/engine/catalog.h"

namespace aquifer::engine {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kAdminSecret[] = "admin-secret-for-engine-tests";
constexpr char kSchema[] = R"({"type":"record","name":"Event","fields":[
  {"name":"user","type":"string"},
  {"name":"n","type":"long"},
  {"name":"note","type":["null","string"],"default":null}]})";

std::string TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "aquifer-engine-XXXXXX").string();
  char* made = ::mkdtemp(pattern.data());
  EXPECT_NE(made, nullptr);
  return pattern;
}

// Counts an instance's write notifications. A write's notification comes
// after its `wait=` answer (the worker moves the hub's generation, answers the
// waiter, then notifies, which moves it again): a test that reads two feeds in
// one generation waits for it first (else a page is, rightly, not shared: slow
// runs under ASan read between the two).
class WriteNotifications {
 public:
  WriteNotifications(Engine& engine, const Uuid& instance_id)
      : listener_(engine.Listen(instance_id, [this] {
          std::lock_guard lock(mu_);
          ++count_;
          cv_.notify_all();
        })) {}
  // True once `n` writes have been notified (within 30 s).
  bool WaitFor(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return count_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
  std::unique_ptr<Listener> listener_;  // last: gone before the rest
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = TempDir(); }
  void TearDown() override {
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  EngineOptions Options(Role role = Role::kAll) {
    EngineOptions options;
    options.data_dir = dir_;
    options.role = role;
    options.admin_secret = kAdminSecret;
    options.wait_timeout_ms = 20'000;
    options.usage_flush_interval_ms = 50;
    options.worker_threads = 2;
    options.queue.config["poll_interval_ms"] = "5";
    return options;
  }

  void Open(EngineOptions options) {
    engine_.reset();
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    engine_ = std::move(*opened);
    ASSERT_TRUE(engine_->Start().ok());
    auto admin = engine_->Authenticate(kAdminSecret);
    ASSERT_TRUE(admin.ok()) << admin.status().ToString();
    admin_ = *admin;
  }

  // Project "p" with table "t" (key "user").
  void CreateProjectAndTable(std::string_view project = "p", std::string_view table = "t") {
    auto created = engine_->CreateProject(admin_, json{{"name", project}}.dump());
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    auto made = engine_->CreateTable(
        admin_, project,
        json{{"name", table}, {"schema", json::parse(kSchema)}, {"key", {"user"}}}.dump());
    ASSERT_TRUE(made.ok()) << made.status().ToString();
  }

  Principal Secret(std::string_view project, const json& grants) {
    auto minted = engine_->CreateSecret(admin_, project, grants.dump());
    EXPECT_TRUE(minted.ok()) << minted.status().ToString();
    if (!minted.ok()) return {};
    auto principal = engine_->Authenticate(json::parse(*minted)["secret"].get<std::string>());
    EXPECT_TRUE(principal.ok()) << principal.status().ToString();
    return principal.ok() ? *principal : Principal{};
  }

  Result<WriteAck> Write(std::string_view body, WaitFor wait = {.index = true},
                         std::string_view idempotency_key = "", const Principal* who = nullptr,
                         std::vector<RecordError>* details = nullptr) {
    WriteRequest request;
    request.project = "p";
    request.table = "t";
    request.body = body;
    request.wait = wait;
    request.idempotency_key = idempotency_key;
    return engine_->Write(who != nullptr ? *who : admin_, request, details);
  }

  json Index(std::string_view filter = "", int32_t limit = 100) {
    IndexQuery query{"p", "t", filter, limit};
    auto page = engine_->QueryIndex(admin_, query);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    return page.ok() ? json::parse(page->data_json) : json();
  }

  // Every record of the log of p.t, paging through cursors.
  json WholeLog() {
    json all = json::array();
    auto page = engine_->QueryLog(admin_, LogQuery{"p", "t", 1000, 0});
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) return all;
    for (auto& record : json::parse(page->data_json)) all.push_back(record);
    std::string next = page->next_cursor;
    while (!next.empty()) {
      auto more = engine_->ReadCursorJson(admin_, next, 1000);
      EXPECT_TRUE(more.ok()) << more.status().ToString();
      if (!more.ok()) break;
      json body = json::parse(*more);
      for (auto& record : body["data"]) all.push_back(record);
      next = body["next_cursor"].is_string() ? body["next_cursor"].get<std::string>() : "";
    }
    return all;
  }

  std::string dir_;
  std::unique_ptr<Engine> engine_;
  Principal admin_;
};

TEST_F(EngineTest, CreatesProjectAndTableAndDescribesThem) {
  Open(Options());
  auto project = engine_->CreateProject(admin_, R"({"name":"p"})");
  ASSERT_TRUE(project.ok()) << project.status().ToString();
  EXPECT_EQ(json::parse(*project)["name"], "p");
  auto table = engine_->CreateTable(admin_, "p",
                                    json{{"name", "t"}, {"schema", kSchema}, {"key", json::array({"user"})}}.dump());
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  json described = json::parse(*table);
  EXPECT_EQ(described["project"], "p");
  EXPECT_EQ(described["name"], "t");
  EXPECT_EQ(described["key"], json::array({"user"}));
  EXPECT_EQ(described["schema"]["fields"].size(), 3u);
  EXPECT_FALSE(described["instance_id"].get<std::string>().empty());

  auto again = engine_->DescribeTable(admin_, "p", "t");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(json::parse(*again)["instance_id"], described["instance_id"]);
  EXPECT_EQ(engine_->CreateTable(admin_, "p", json{{"name", "t"}, {"schema", kSchema}, {"key", json::array({"user"})}}.dump())
                .status()
                .code(),
            StatusCode::kAlreadyExists);
}

TEST_F(EngineTest, UnknownMembersInBodiesAreRejectedByName) {
  Open(Options());
  auto project = engine_->CreateProject(admin_, R"({"name":"p","colour":"red"})");
  EXPECT_EQ(project.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(project.status().message(), HasSubstr("'colour'"));
  ASSERT_TRUE(engine_->CreateProject(admin_, R"({"name":"p"})").ok());
  auto table = engine_->CreateTable(
      admin_, "p",
      json{{"name", "t"}, {"schema", kSchema}, {"key", json::array({"user"})}, {"use_lgo", true}}.dump());
  EXPECT_EQ(table.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(table.status().message(), HasSubstr("'use_lgo'"));
}

TEST_F(EngineTest, WriteWithWaitIndexThenQueryIndexSeesLatestRecordPerKey) {
  Open(Options());
  CreateProjectAndTable();
  auto ack = Write(R"([{"user":"a","n":1,"@timestamp":1000},
                       {"user":"a","n":2,"@timestamp":2000},
                       {"user":"b","n":3,"@timestamp":1500}])");
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_TRUE(ack->waited);
  EXPECT_EQ(ack->records, 3);
  EXPECT_FALSE(ack->write_id.empty());
  // An older version of "a" arriving later does not replace the newer one (NDJSON body).
  ASSERT_TRUE(Write("{\"user\":\"a\",\"n\":9,\"@timestamp\":500}\n").ok());

  json data = Index();
  ASSERT_EQ(data.size(), 2u) << data.dump();
  EXPECT_EQ(data[0]["user"], "a");
  EXPECT_EQ(data[0]["n"], 2);
  EXPECT_EQ(data[0]["@timestamp"], 2000);
  EXPECT_EQ(data[1]["user"], "b");
  EXPECT_EQ(data[1]["n"], 3);
  EXPECT_EQ(Index(R"({"user":"b"})").size(), 1u);
}

TEST_F(EngineTest, RecordsWithoutTimestampGetTheGatewayClock) {
  Open(Options());
  CreateProjectAndTable();
  const int64_t before = Clock::System()->NowMillis();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1}])").ok());
  json data = Index();
  ASSERT_EQ(data.size(), 1u);
  EXPECT_GE(data[0]["@timestamp"].get<int64_t>(), before);
  EXPECT_LE(data[0]["@timestamp"].get<int64_t>(), Clock::System()->NowMillis());
}

TEST_F(EngineTest, InvalidBatchListsEveryBadRecordAndWritesNothing) {
  Open(Options());
  CreateProjectAndTable();
  std::vector<RecordError> details;
  auto ack = Write(R"([{"user":"ok","n":1},
                       {"user":"x"},
                       {"user":"y","n":"seven"},
                       {"user":"z","n":3,"@timestamp":"yesterday"},
                       {"user":"w","n":4,"extra":true}])",
                   {.index = true}, "", nullptr, &details);
  ASSERT_EQ(ack.status().code(), StatusCode::kInvalidArgument) << ack.status().ToString();
  std::set<int64_t> bad_records;
  for (const auto& error : details) bad_records.insert(error.record);
  EXPECT_EQ(bad_records, (std::set<int64_t>{1, 2, 3, 4}));
  auto has = [&](int64_t record, std::string_view field) {
    return std::any_of(details.begin(), details.end(), [&](const RecordError& error) {
      return error.record == record && error.field == field && !error.message.empty();
    });
  };
  EXPECT_TRUE(has(1, "n"));
  EXPECT_TRUE(has(2, "n"));
  EXPECT_TRUE(has(3, "@timestamp"));
  EXPECT_TRUE(has(4, "extra"));

  // Nothing of the rejected batch reached the log: only the next write does.
  ASSERT_TRUE(Write(R"([{"user":"later","n":5}])", {.log = true}).ok());
  json log = WholeLog();
  ASSERT_EQ(log.size(), 1u) << log.dump();
  EXPECT_EQ(log[0]["user"], "later");
}

TEST_F(EngineTest, MalformedAndEmptyBodiesAreInvalid) {
  Open(Options());
  CreateProjectAndTable();
  EXPECT_EQ(Write(R"([{"user":"a","n":1})").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Write("[]").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Write("  \n").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, IdempotentRetryIsWrittenOnce) {
  Open(Options());
  CreateProjectAndTable();
  auto first = Write(R"([{"user":"a","n":1}])", {.log = true}, "retry-key-1");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_FALSE(first->replayed);
  auto retry = Write(R"([{"user":"a","n":1}])", {.log = true}, "retry-key-1");
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_TRUE(retry->replayed);
  EXPECT_EQ(retry->write_id, first->write_id);
  auto other = Write(R"([{"user":"b","n":2}])", {.log = true}, "retry-key-2");
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->write_id, first->write_id);
  EXPECT_EQ(WholeLog().size(), 2u);
}

TEST_F(EngineTest, OversizedBodyBatchAndRecordAreTooLarge) {
  EngineOptions options = Options();
  options.max_body_bytes = 4096;
  options.lookup.config["max_record_size"] = "64";
  options.lookup.config["max_records_in_batch"] = "5";
  options.lookup.config["max_key_size"] = "32";
  Open(options);
  CreateProjectAndTable();

  auto body = Write(std::string(5000, ' '));
  EXPECT_EQ(body.status().code(), StatusCode::kTooLarge);
  EXPECT_THAT(body.status().message(), HasSubstr("5000 bytes"));

  std::string six = "[";
  for (int idx = 0; idx < 6; ++idx) six += fmt::format("{}{{\"user\":\"u{}\",\"n\":1}}", idx ? "," : "", idx);
  six += "]";
  auto batch = Write(six);
  EXPECT_EQ(batch.status().code(), StatusCode::kTooLarge);
  EXPECT_THAT(batch.status().message(), HasSubstr("6 records"));

  auto record = Write(json::array({{{"user", "a"}, {"n", 1}}, {{"user", "b"}, {"n", 1}, {"note", std::string(100, 'x')}}}).dump());
  EXPECT_EQ(record.status().code(), StatusCode::kTooLarge);
  EXPECT_THAT(record.status().message(), HasSubstr("record 1"));

  auto key = Write(json::array({{{"user", std::string(40, 'k')}, {"n", 1}}}).dump());
  EXPECT_EQ(key.status().code(), StatusCode::kTooLarge);
  EXPECT_THAT(key.status().message(), HasSubstr("key"));

  EXPECT_TRUE(Write(R"([{"user":"a","n":1}])").ok());
}

TEST_F(EngineTest, WriteLargerThanOneQueueMessageIsSplitAndWaitedForWhole) {
  EngineOptions options = Options();
  options.queue.config["max_message_size"] = "2048";
  Open(options);
  CreateProjectAndTable();
  json records = json::array();
  for (int n = 0; n < 300; ++n) {
    records.push_back({{"user", fmt::format("user-{:04}", n)}, {"n", n}, {"note", "padding-padding"}});
  }
  auto ack = Write(records.dump(), {.log = true, .index = true});
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_TRUE(ack->waited);
  EXPECT_EQ(Index("", 1000).size(), 300u);
  EXPECT_EQ(WholeLog().size(), 300u);
  EXPECT_THAT(engine_->MetricsText(), ::testing::ContainsRegex("aquifer_queue_published_total [2-9]"));
}

TEST_F(EngineTest, WaitTimesOutWithoutWorkersAndTheRecordLandsOnceAWorkerRuns) {
  EngineOptions gateway = Options(Role::kGateway);
  gateway.wait_timeout_ms = 300;
  Open(gateway);
  CreateProjectAndTable();
  auto ack = Write(R"([{"user":"a","n":42}])", {.index = true});
  ASSERT_EQ(ack.status().code(), StatusCode::kTimeout) << ack.status().ToString();
  EXPECT_THAT(ack.status().message(), HasSubstr("accepted"));
  EXPECT_TRUE(Index().empty());

  Open(Options(Role::kAll));  // the same data dir, now with workers
  json data;
  for (int attempt = 0; attempt < 200 && data.empty(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    data = Index();
  }
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0]["n"], 42);
}

TEST_F(EngineTest, LogReplayPagesThroughCursorsInWriteOrder) {
  Open(Options());
  CreateProjectAndTable();
  for (int batch = 0; batch < 5; ++batch) {
    json records = json::array();
    for (int idx = 0; idx < 5; ++idx) {
      int n = batch * 5 + idx;
      records.push_back({{"user", fmt::format("u{}", n % 3)}, {"n", n}, {"@timestamp", 1000 + n}});
    }
    ASSERT_TRUE(Write(records.dump(), {.log = true}).ok());
  }
  auto first = engine_->QueryLog(admin_, LogQuery{"p", "t", 10, 0});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->count, 10);
  EXPECT_FALSE(first->change_cursor.empty());
  std::vector<int64_t> seen;
  for (auto& record : json::parse(first->data_json)) seen.push_back(record["n"]);
  std::string next = first->next_cursor;
  int pages = 1;
  while (!next.empty()) {
    auto page = engine_->ReadCursorJson(admin_, next, 10);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    json body = json::parse(*page);
    for (auto& record : body["data"]) seen.push_back(record["n"]);
    next = body["next_cursor"].is_string() ? body["next_cursor"].get<std::string>() : "";
    ++pages;
  }
  std::vector<int64_t> expected(25);
  for (int n = 0; n < 25; ++n) expected[n] = n;
  EXPECT_EQ(seen, expected);
  EXPECT_GE(pages, 3);

  auto from = engine_->QueryLog(admin_, LogQuery{"p", "t", 100, 1020});
  ASSERT_TRUE(from.ok());
  EXPECT_EQ(from->count, 5);
  EXPECT_EQ(engine_->QueryLog(admin_, LogQuery{"p", "t", 0, 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->QueryLog(admin_, LogQuery{"p", "t", 1001, 0}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, ReadCursorRejectsGarbageForgedAndForeignCursors) {
  Open(Options());
  CreateProjectAndTable();
  CreateProjectAndTable("q", "t");
  for (int n = 0; n < 3; ++n) {
    ASSERT_TRUE(Write(json::array({{{"user", fmt::format("u{}", n)}, {"n", n}}}).dump()).ok());
  }
  auto page = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 1});
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->next_cursor.empty());
  const std::string cursor = page->next_cursor;
  EXPECT_TRUE(engine_->ReadCursorJson(admin_, cursor, 10).ok());

  EXPECT_EQ(engine_->ReadCursorJson(admin_, "not a cursor!", 10).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->ReadCursorJson(admin_, "", 10).status().code(), StatusCode::kInvalidArgument);
  std::string forged = cursor;
  forged[forged.size() / 2] = forged[forged.size() / 2] == 'A' ? 'B' : 'A';
  auto forged_read = engine_->ReadCursorJson(admin_, forged, 10);
  EXPECT_EQ(forged_read.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(forged_read.status().message(), HasSubstr("invalid cursor"));

  // A secret of another project may not learn the table exists.
  Principal other = Secret("q", {{"read", {"*"}}});
  auto foreign = engine_->ReadCursorJson(other, cursor, 10);
  EXPECT_EQ(foreign.status().code(), StatusCode::kNotFound) << foreign.status().ToString();
  Principal reader = Secret("p", {{"read", {"t"}}});
  EXPECT_TRUE(engine_->ReadCursorJson(reader, cursor, 10).ok());
}

TEST_F(EngineTest, ChangeCursorReturnsOnlyLaterWritesThatMatchItsFilter) {
  Open(Options());
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1},{"user":"b","n":2}])", {.log = true}).ok());
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", R"({"user":"a"})", 100});
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  ASSERT_EQ(query->count, 1);
  const std::string change = query->change_cursor;
  ASSERT_FALSE(change.empty());

  auto none = engine_->ReadChanges(admin_, change, "", 100);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->count, 0);
  EXPECT_FALSE(none->next_cursor.empty());

  ASSERT_TRUE(Write(R"([{"user":"a","n":10},{"user":"b","n":11},{"user":"a","n":20}])",
                    {.log = true})
                  .ok());
  auto changes = engine_->ReadChanges(admin_, change, "", 100);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  json data = json::parse(changes->data_json);
  ASSERT_EQ(data.size(), 2u) << data.dump();
  EXPECT_EQ(data[0]["n"], 10);
  EXPECT_EQ(data[1]["n"], 20);
  ASSERT_FALSE(changes->next_cursor.empty());

  auto filtered = engine_->ReadChanges(admin_, change, R"({"n":{"_gte":15}})", 100);
  ASSERT_TRUE(filtered.ok()) << filtered.status().ToString();
  data = json::parse(filtered->data_json);
  ASSERT_EQ(data.size(), 1u) << data.dump();
  EXPECT_EQ(data[0]["n"], 20);

  auto after = engine_->ReadChanges(admin_, changes->next_cursor, "", 100);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->count, 0);
  EXPECT_FALSE(after->next_cursor.empty());

  // A replay cursor is not a change cursor; a bad extra filter is refused.
  EXPECT_EQ(engine_->CheckSubscription(admin_, change, R"({"nope":1})").status().code(),
            StatusCode::kInvalidArgument);
  auto log = engine_->QueryLog(admin_, LogQuery{"p", "t", 1, 0});
  ASSERT_TRUE(log.ok());
  ASSERT_FALSE(log->next_cursor.empty());
  EXPECT_EQ(engine_->ReadChanges(admin_, log->next_cursor, "", 10).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, SubscriptionListenerIsCalledAfterAWrite) {
  Open(Options());
  CreateProjectAndTable();
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok());
  auto instance = engine_->CheckSubscription(admin_, query->change_cursor, "");
  ASSERT_TRUE(instance.ok()) << instance.status().ToString();

  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  auto listener = engine_->Listen(*instance, [&] {
    std::lock_guard lock(mu);
    ++calls;
    cv.notify_all();
  });
  ASSERT_TRUE(Write(R"([{"user":"a","n":1}])", {.log = true}).ok());
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return calls > 0; }));
  }
  auto changes = engine_->ReadChanges(admin_, query->change_cursor, "", 10);
  ASSERT_TRUE(changes.ok());
  EXPECT_EQ(changes->count, 1);

  listener.reset();  // no callbacks after the handle is gone
  int before;
  {
    std::lock_guard lock(mu);
    before = calls;
  }
  ASSERT_TRUE(Write(R"([{"user":"b","n":2}])", {.log = true}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::lock_guard lock(mu);
  EXPECT_EQ(calls, before);
}

// The value of an unlabelled metric in MetricsText(), or -1 when absent.
int64_t Metric(Engine& engine, const std::string& name) {
  std::string text = engine.MetricsText();
  size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + name.size() + 2));
}

TEST_F(EngineTest, AChangeFeedAsksTheCatalogOnlyWhenItOpensUntilARecheckIsDue) {
  EngineOptions options = Options();
  options.change_feed_recheck_ms = 3'600'000;
  Open(options);
  CreateProjectAndTable();
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  Principal reader = Secret("p", {{"read", {"t"}}});
  EXPECT_EQ(engine_->OpenChangeFeed(reader, query->change_cursor, R"({"nope":1})").status().code(),
            StatusCode::kInvalidArgument);
  auto opened = engine_->OpenChangeFeed(reader, query->change_cursor, R"({"n":{"_gte":10}})");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  ChangeFeed& feed = **opened;
  EXPECT_EQ(Metric(*engine_, "aquifer_change_feeds"), 1);
  const int64_t checks = Metric(*engine_, "aquifer_change_feed_checks_total");
  ASSERT_GE(checks, 1);

  auto caught_up = feed.Read(100);
  ASSERT_TRUE(caught_up.ok()) << caught_up.status().ToString();
  EXPECT_EQ(caught_up->count, 0);
  EXPECT_FALSE(caught_up->more);
  EXPECT_FALSE(caught_up->next_cursor.empty());

  ASSERT_TRUE(Write(R"([{"user":"a","n":1},{"user":"b","n":12},{"user":"c","n":13},{"user":"d","n":14}])",
                    {.log = true})
                  .ok());
  // A page that stops at its limit says so; the next one reaches the end.
  auto first = feed.Read(2);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_EQ(first->count, 2) << first->data_json;
  EXPECT_EQ(json::parse(first->data_json)[0]["n"], 12);
  EXPECT_EQ(json::parse(first->data_json)[1]["n"], 13);
  EXPECT_TRUE(first->more);
  auto second = feed.Read(2);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ASSERT_EQ(second->count, 1) << second->data_json;
  EXPECT_EQ(json::parse(second->data_json)[0]["n"], 14);
  EXPECT_FALSE(second->more);
  // The feed's position is the last page's cursor: ReadChanges from it sees nothing new.
  auto after = engine_->ReadChanges(reader, second->next_cursor, "", 100);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->count, 0);
  auto idle = feed.Read(100);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->count, 0);
  EXPECT_EQ(idle->next_cursor, second->next_cursor);
  EXPECT_EQ(Metric(*engine_, "aquifer_change_feed_checks_total"), checks)
      << "reads of an open feed went to the catalog";

  // A deleted table ends the feed on its next read, recheck due or not.
  ASSERT_TRUE(engine_->DeleteTable(admin_, "p", "t").ok());
  EXPECT_EQ(feed.Read(100).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Metric(*engine_, "aquifer_change_feed_checks_total"), checks + 1);
  opened->reset();
  EXPECT_EQ(Metric(*engine_, "aquifer_change_feeds"), 0);
}

// Subscribers at the same position share one read and render of each page
// (Feed::SharedRead), and a write after it is never hidden by the shared page.
TEST_F(EngineTest, ChangeFeedsAtTheSamePositionShareOnePageAndStillSeeEveryWrite) {
  Open(Options());
  CreateProjectAndTable();
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  Principal reader = Secret("p", {{"read", {"t"}}});
  auto a = engine_->OpenChangeFeed(admin_, query->change_cursor, "");
  auto b = engine_->OpenChangeFeed(reader, query->change_cursor, "");
  auto filtered = engine_->OpenChangeFeed(admin_, query->change_cursor, R"({"n":{"_gte":2}})");
  ASSERT_TRUE(a.ok() && b.ok() && filtered.ok());
  for (auto* feed : {&*a, &*b, &*filtered}) ASSERT_EQ((**feed).Read(100)->count, 0);

  for (int round = 1; round <= 3; ++round) {
    ASSERT_TRUE(Write(R"([{"user":"a","n":)" + std::to_string(round) + "}]", {.log = true}).ok());
    const int64_t shared = Metric(*engine_, "aquifer_change_pages_shared_total");
    auto from_a = (*a)->Read(100);
    auto from_b = (*b)->Read(100);
    auto from_filtered = (*filtered)->Read(100);
    ASSERT_TRUE(from_a.ok() && from_b.ok() && from_filtered.ok());
    ASSERT_EQ(from_a->count, 1) << "round " << round << ": " << from_a->data_json;
    EXPECT_EQ(json::parse(from_a->data_json)[0]["n"], round);
    EXPECT_EQ(from_b->data_json, from_a->data_json);
    EXPECT_EQ(from_b->next_cursor, from_a->next_cursor);
    // b took a's page; the filtered feed, reading other records, read its own.
    EXPECT_EQ(Metric(*engine_, "aquifer_change_pages_shared_total"), shared + 1);
    EXPECT_EQ(from_filtered->count, round >= 2 ? 1 : 0) << from_filtered->data_json;
  }
}

// ReadBatch answers the records message itself: feeds at one position share
// one buffer (one render for every subscriber), and it is exactly the message
// a Read of the same page renders, with the same cursor and position.
TEST_F(EngineTest, ChangeFeedsAtTheSamePositionShareOneRecordsMessage) {
  Open(Options());
  CreateProjectAndTable();
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  Principal reader = Secret("p", {{"read", {"t"}}});
  auto a = engine_->OpenChangeFeed(admin_, query->change_cursor, "");
  auto b = engine_->OpenChangeFeed(reader, query->change_cursor, "");
  // "{}" filters nothing but is another filter text: this feed reads its own pages.
  auto plain = engine_->OpenChangeFeed(admin_, query->change_cursor, "{}");
  auto filtered = engine_->OpenChangeFeed(admin_, query->change_cursor, R"({"n":{"_gte":2}})");
  ASSERT_TRUE(a.ok() && b.ok() && plain.ok() && filtered.ok()) << plain.status().ToString();
  auto empty = (*a)->ReadBatch(100);
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->count, 0);
  EXPECT_EQ(empty->message, nullptr);
  EXPECT_FALSE(empty->next_cursor.empty());
  for (auto* feed : {&*b, &*plain, &*filtered}) ASSERT_EQ((**feed).Read(100)->count, 0);

  // Each round waits for its write's notification (WriteNotifications), so a
  // and b read in one generation of the hub.
  WriteNotifications notified(*engine_, (*a)->instance_id());
  for (int round = 1; round <= 3; ++round) {
    ASSERT_TRUE(Write(R"([{"user":"a","n":)" + std::to_string(round) + R"(},{"user":"b","n":)" +
                          std::to_string(round + 10) + "}]",
                      {.log = true})
                    .ok());
    ASSERT_TRUE(notified.WaitFor(round)) << "round " << round << ": the write was not notified";
    const int64_t shared = Metric(*engine_, "aquifer_change_pages_shared_total");
    auto from_a = (*a)->ReadBatch(100);
    auto from_b = (*b)->ReadBatch(100);
    auto from_filtered = (*filtered)->ReadBatch(100);
    ASSERT_TRUE(from_a.ok() && from_b.ok() && from_filtered.ok());
    ASSERT_EQ(from_a->count, 2) << "round " << round;
    ASSERT_NE(from_a->message, nullptr);
    EXPECT_EQ(from_b->message.get(), from_a->message.get()) << "b rendered its own message";
    EXPECT_EQ(from_b->next_cursor, from_a->next_cursor);
    EXPECT_EQ(Metric(*engine_, "aquifer_change_pages_shared_total"), shared + 1);
    // The same page read alone renders the same message.
    const int64_t reads = Metric(*engine_, "aquifer_change_pages_read_total");
    auto page = (*plain)->Read(100);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_EQ(Metric(*engine_, "aquifer_change_pages_read_total"), reads + 1);
    EXPECT_EQ(page->next_cursor, from_a->next_cursor);
    EXPECT_EQ(*from_a->message, RecordsMessage(page->data_json, page->next_cursor));
    json message = json::parse(*from_a->message);
    EXPECT_EQ(message["type"], "records");
    EXPECT_EQ(message["data"][0]["n"], round);
    EXPECT_EQ(message["data"][1]["n"], round + 10);
    EXPECT_EQ(message["cursor"], from_a->next_cursor);
    // The filtered feed, reading other records, has a message of its own.
    ASSERT_NE(from_filtered->message, nullptr);
    EXPECT_NE(from_filtered->message.get(), from_a->message.get());
    EXPECT_EQ(json::parse(*from_filtered->message)["data"].size(), round >= 2 ? 2u : 1u);
    // Each feed moved on: nothing new at the next read.
    EXPECT_EQ((*a)->ReadBatch(100)->count, 0);
    EXPECT_EQ((*b)->ReadBatch(100)->count, 0);
  }
}

// TryReadBatch (what a WebSocket session asks on its own strand) takes the
// page another feed at its position read since the last notification, without
// a read, and moves the feed on exactly as ReadBatch would; before that read,
// or once a write has been notified, it answers nothing (then the caller reads).
TEST_F(EngineTest, AChangeFeedTakesAPageAlreadyReadAtItsPositionWithoutAReadOfItsOwn) {
  EngineOptions options = Options();
  options.change_feed_recheck_ms = 3'600'000;  // no recheck due during the test
  Open(options);
  CreateProjectAndTable();
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  auto a = engine_->OpenChangeFeed(admin_, query->change_cursor, "");
  auto b = engine_->OpenChangeFeed(admin_, query->change_cursor, "");
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ((*a)->ReadBatch(100)->count, 0);
  ASSERT_EQ((*b)->ReadBatch(100)->count, 0);
  // Each round waits for its write's notification (WriteNotifications).
  WriteNotifications notified(*engine_, (*a)->instance_id());
  for (int round = 1; round <= 3; ++round) {
    ASSERT_TRUE(Write(R"([{"user":"a","n":)" + std::to_string(round) + R"(},{"user":"b","n":)" +
                          std::to_string(round + 10) + "}]",
                      {.log = true})
                    .ok());
    ASSERT_TRUE(notified.WaitFor(round)) << "round " << round << ": the write was not notified";
    EXPECT_FALSE((*b)->TryReadBatch(100).has_value()) << "round " << round << ": nothing was read since the write";
    const int64_t reads = Metric(*engine_, "aquifer_change_pages_read_total");
    auto from_a = (*a)->ReadBatch(100);
    ASSERT_TRUE(from_a.ok()) << from_a.status().ToString();
    ASSERT_EQ(from_a->count, 2) << "round " << round;
    std::optional<ChangeBatch> taken = (*b)->TryReadBatch(100);
    ASSERT_TRUE(taken.has_value()) << "round " << round << ": the page read at b's position was not taken";
    EXPECT_EQ(taken->count, 2);
    EXPECT_EQ(taken->message.get(), from_a->message.get());
    EXPECT_EQ(taken->next_cursor, from_a->next_cursor);
    EXPECT_EQ(Metric(*engine_, "aquifer_change_pages_read_total"), reads + 1) << "b read the page itself";
    // Both moved past the page: nothing new for either.
    EXPECT_EQ((*a)->ReadBatch(100)->count, 0);
    EXPECT_EQ((*b)->ReadBatch(100)->count, 0) << "round " << round << ": b got the page again";
  }
}

TEST_F(EngineTest, AChangeFeedRechecksTheCatalogWhenItsIntervalHasPassed) {
  EngineOptions options = Options();
  options.change_feed_recheck_ms = 0;  // due on every read
  Open(options);
  CreateProjectAndTable();
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok()) << query.status().ToString();
  auto opened = engine_->OpenChangeFeed(admin_, query->change_cursor, "");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const int64_t checks = Metric(*engine_, "aquifer_change_feed_checks_total");
  for (int read = 1; read <= 3; ++read) {
    ASSERT_TRUE((*opened)->Read(10).ok());
    EXPECT_EQ(Metric(*engine_, "aquifer_change_feed_checks_total"), checks + read);
  }
}

TEST_F(EngineTest, DeletingATableWakesTheListenersOfItsInstance) {
  Open(Options());
  CreateProjectAndTable();
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok());
  auto instance = engine_->CheckSubscription(admin_, query->change_cursor, "");
  ASSERT_TRUE(instance.ok()) << instance.status().ToString();
  std::atomic<int> calls{0};
  auto listener = engine_->Listen(*instance, [&] { ++calls; });
  ASSERT_TRUE(engine_->DeleteTable(admin_, "p", "t").ok());
  EXPECT_EQ(calls.load(), 1);  // on the deleting thread, before DeleteTable returns
}

TEST_F(EngineTest, ReadOnlySecretCannotWriteAndOtherProjectsSecretSeesNotFound) {
  Open(Options());
  CreateProjectAndTable();
  CreateProjectAndTable("q", "t");
  Principal reader = Secret("p", {{"read", {"t"}}});
  auto write = Write(R"([{"user":"a","n":1}])", {}, "", &reader);
  EXPECT_EQ(write.status().code(), StatusCode::kPermissionDenied) << write.status().ToString();
  EXPECT_TRUE(engine_->QueryIndex(reader, IndexQuery{"p", "t", "", 10}).ok());
  EXPECT_EQ(engine_->DeleteTable(reader, "p", "t").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(engine_->CreateProject(reader, R"({"name":"r"})").status().code(),
            StatusCode::kPermissionDenied);

  Principal stranger = Secret("q", {{"read", {"*"}}, {"write", {"*"}}});
  EXPECT_EQ(Write(R"([{"user":"a","n":1}])", {}, "", &stranger).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(engine_->QueryIndex(stranger, IndexQuery{"p", "t", "", 10}).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(engine_->DescribeTable(stranger, "p", "t").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(engine_->CreateSecret(stranger, "p", R"({"read":["*"]})").status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(engine_->Authenticate("aq_not-a-real-secret").status().code(),
            StatusCode::kUnauthenticated);
  EXPECT_EQ(engine_->Authenticate("").status().code(), StatusCode::kUnauthenticated);

  Principal writer = Secret("p", {{"read", json::array()}, {"write", {"t"}}});
  EXPECT_TRUE(Write(R"([{"user":"a","n":1}])", {}, "", &writer).ok());
}

TEST_F(EngineTest, DeletedTableIsGoneAndItsDataRemoved) {
  Open(Options());
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1}])").ok());
  auto query = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 10});
  ASSERT_TRUE(query.ok());
  ASSERT_TRUE(engine_->DeleteTable(admin_, "p", "t").ok());
  EXPECT_EQ(engine_->DescribeTable(admin_, "p", "t").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(engine_->ReadChanges(admin_, query->change_cursor, "", 10).status().code(),
            StatusCode::kNotFound);
  // A new table of the same name starts empty.
  auto made = engine_->CreateTable(admin_, "p",
                                   json{{"name", "t"}, {"schema", kSchema}, {"key", json::array({"user"})}}.dump());
  ASSERT_TRUE(made.ok());
  EXPECT_TRUE(Index().empty());
}

TEST_F(EngineTest, SqlJobRunsAndPagesItsRows) {
  Open(Options());
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1},{"user":"b","n":2},{"user":"c","n":3}])",
                    {.warehouse = true})
                  .ok());
  auto analysis = engine_->AnalyzeSql(admin_, "SELECT user, n FROM p.t ORDER BY n");
  ASSERT_TRUE(analysis.ok()) << analysis.status().ToString();
  EXPECT_EQ(analysis->tables, std::vector<std::string>{"p.t"});
  auto job = engine_->SubmitSql(admin_, "SELECT user, n FROM p.t ORDER BY n");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  json status;
  for (int attempt = 0; attempt < 200; ++attempt) {
    auto polled = engine_->GetJobJson(admin_, *job);
    ASSERT_TRUE(polled.ok()) << polled.status().ToString();
    status = json::parse(*polled);
    if (status["status"] == "done" || status["status"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_EQ(status["status"], "done") << status.dump();
  auto rows = engine_->ReadJobRows(admin_, *job, "", 2);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  json data = json::parse(rows->data_json);
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[0][1], 1);
  ASSERT_FALSE(rows->next_cursor.empty());
  auto rest = engine_->ReadCursorJson(admin_, rows->next_cursor, 10);
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(json::parse(*rest)["data"].size(), 1u);

  Principal stranger = Secret("p", {{"read", json::array()}, {"write", {"t"}}});
  EXPECT_EQ(engine_->GetJobJson(stranger, *job).status().code(), StatusCode::kNotFound);
}

TEST_F(EngineTest, UsageGrowsWithWritesAndReadsAndAWriteQuotaIsEnforced) {
  Open(Options());
  CreateProjectAndTable();
  Principal writer = Secret("p", {{"read", {"*"}}, {"write", {"*"}}});
  ASSERT_TRUE(Write(R"([{"user":"a","n":1},{"user":"b","n":2}])", {.index = true}, "", &writer).ok());
  ASSERT_TRUE(engine_->QueryIndex(writer, IndexQuery{"p", "t", "", 10}).ok());

  auto usage = engine_->UsageJson(writer);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  json body = json::parse(*usage);
  ASSERT_EQ(body["projects"].size(), 1u);
  EXPECT_EQ(body["projects"][0]["project"], "p");
  EXPECT_EQ(body["projects"][0]["month"]["write_records"], 2);
  EXPECT_EQ(body["projects"][0]["hour"]["write_ops"], 1);
  EXPECT_EQ(body["projects"][0]["month"]["read_records"], 2);
  EXPECT_GT(body["secret"]["month"]["write_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(body["secret"]["month"]["read_ops"], 1);

  // The counters survive a flush to the usage service (not counted twice).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  body = json::parse(*engine_->UsageJson(writer));
  EXPECT_EQ(body["projects"][0]["month"]["write_records"], 2);

  // A second connection to the catalog sets the quota (no engine API for it).
  auto catalog = OpenSqliteCatalog(dir_ + "/catalog.db");
  ASSERT_TRUE(catalog.ok()) << catalog.status().ToString();
  const int64_t used = body["projects"][0]["month"]["write_bytes"];
  Quotas quotas;
  quotas.write_bytes = used + 20;
  ASSERT_TRUE((*catalog)->SetProjectQuotas("p", quotas).ok());
  Status refused;
  for (int attempt = 0; attempt < 10 && refused.ok(); ++attempt) {
    refused = Write(R"([{"user":"c","n":3}])", {}, "", &writer).status();
  }
  EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused.ToString();
  EXPECT_THAT(refused.message(), HasSubstr("retry after"));
  EXPECT_THAT(engine_->MetricsText(), HasSubstr("aquifer_writes_total"));
}

int64_t UtcMs(int year, unsigned month, unsigned day, int64_t ms_into_day = 0) {
  using namespace std::chrono;
  sys_days date{std::chrono::year(year) / std::chrono::month(month) / std::chrono::day(day)};
  return duration_cast<milliseconds>(date.time_since_epoch()).count() + ms_into_day;
}

TEST(QuotaReset, IsTheStartOfTheNextCalendarMonthInUtc) {
  constexpr int64_t kDayMs = 86'400'000;
  EXPECT_EQ(QuotaResetMs(UtcMs(2026, 12, 31, kDayMs - 1)), UtcMs(2027, 1, 1));
  EXPECT_EQ(QuotaResetMs(UtcMs(2026, 12, 1)), UtcMs(2027, 1, 1));
  EXPECT_EQ(QuotaResetMs(UtcMs(2027, 1, 1)), UtcMs(2027, 2, 1));
  EXPECT_EQ(QuotaResetMs(UtcMs(2028, 2, 29, 1)), UtcMs(2028, 3, 1));  // leap February
  EXPECT_EQ(QuotaResetMs(UtcMs(2027, 2, 28, kDayMs - 1)), UtcMs(2027, 3, 1));
  EXPECT_EQ(QuotaResetMs(UtcMs(2026, 1, 31, 12 * 3'600'000)), UtcMs(2026, 2, 1));
}

TEST_F(EngineTest, AWriteOverQuotaAnswersTheSecondsUntilTheMonthResetsAndTheNewMonthWritesAgain) {
  ManualClock clock(UtcMs(2026, 12, 31, 86'400'000 - 30'000));  // 30 s before the new year
  EngineOptions options = Options();
  options.clock = &clock;
  Open(options);
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1}])", {}).ok());
  const int64_t one_write = json::parse(*engine_->UsageJson(admin_))["projects"][0]["month"]["write_bytes"];
  ASSERT_GT(one_write, 0);
  auto set = engine_->SetQuotas(admin_, "p", json{{"write_bytes", one_write}}.dump());
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(json::parse(*set)["write_bytes"], one_write);

  // December's quota is used up: refused, retry when January starts, nothing written.
  auto refused = Write(R"([{"user":"b","n":2}])", {});
  ASSERT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status().ToString();
  EXPECT_EQ(RetryAfterSeconds(refused.status()), 30) << refused.status().ToString();
  clock.Advance(29'500'000);
  refused = Write(R"([{"user":"b","n":2}])", {});
  EXPECT_EQ(RetryAfterSeconds(refused.status()), 1) << refused.status().ToString();  // rounds up

  // January 1st, 00:00:00.000: a new month, a new quota.
  clock.Advance(500'000);
  ASSERT_TRUE(Write(R"([{"user":"c","n":3}])", {}).ok());
  refused = Write(R"([{"user":"d","n":4}])", {});
  ASSERT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status().ToString();
  EXPECT_EQ(RetryAfterSeconds(refused.status()), 31 * 86'400);  // until February 1st
  ASSERT_TRUE(Write(R"([{"user":"c","n":5}])", {.index = true}).status().code() ==
              StatusCode::kResourceExhausted);

  // Lifting the quota lets writes through again; the refused ones were never written.
  ASSERT_TRUE(engine_->SetQuotas(admin_, "p", R"({"write_bytes":null})").ok());
  ASSERT_TRUE(Write(R"([{"user":"e","n":6}])", {.index = true}).ok());
  json index = Index();
  std::vector<std::string> users;
  for (const json& record : index) users.push_back(record["user"]);
  EXPECT_EQ(users, (std::vector<std::string>{"a", "c", "e"}));
  EXPECT_EQ(index[1]["n"], 3);  // the refused {"user":"c","n":5} changed nothing
  // (The manual clock's jumps may redeliver a message in flight: the log is
  // at-least-once, so look for the refused records rather than count.)
  for (const json& record : WholeLog()) {
    EXPECT_TRUE(record["user"] == "a" || (record["user"] == "c" && record["n"] == 3) ||
                record["user"] == "e")
        << record.dump();
  }
  engine_.reset();  // its threads read `clock`, which ends with this scope
}

// Expired Idempotency-Key claims leave the catalog on their own: the flush
// thread purges them every idempotency_purge_interval_ms (engine clock).
TEST_F(EngineTest, ExpiredIdempotencyKeysArePurgedInTheBackground) {
  ManualClock clock(UtcMs(2026, 6, 1));
  EngineOptions options = Options();
  options.clock = &clock;
  options.idempotency_purge_interval_ms = 60'000;
  Open(options);
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1}])", {.index = true}, "key-1").ok());
  ASSERT_TRUE(Write(R"([{"user":"b","n":2}])", {.index = true}, "key-2").ok());
  auto replayed = Write(R"([{"user":"a","n":1}])", {}, "key-1");
  ASSERT_TRUE(replayed.ok() && replayed->replayed) << replayed.status().ToString();
  // Young claims stay, however many purge passes run.
  clock.Advance(23LL * 3'600'000'000);  // micros
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // several flush ticks
  EXPECT_EQ(Metric(*engine_, "aquifer_idempotency_keys_purged_total"), 0);
  clock.Advance(2LL * 3'600'000'000);  // 25 h after the writes: both expired
  bool purged = false;
  for (int tick = 0; tick < 3000 && !purged; ++tick) {
    purged = Metric(*engine_, "aquifer_idempotency_keys_purged_total") == 2;
    if (!purged) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(purged) << engine_->MetricsText();
  auto again = Write(R"([{"user":"a","n":3}])", {.index = true}, "key-1");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->replayed);
  engine_.reset();  // its threads read `clock`, which ends with this scope
}

// Retention: the flush thread deletes expired records from the lookup and
// warehouse stores every retention_purge_interval_ms (engine clock), and
// reads hide them before that.
TEST_F(EngineTest, ExpiredRecordsAreHiddenAndPurgedFromEveryStoreInTheBackground) {
  ManualClock clock(UtcMs(2026, 6, 1));
  EngineOptions options = Options();
  options.clock = &clock;
  options.retention_purge_interval_ms = 60'000;
  Open(options);
  ASSERT_TRUE(engine_->CreateProject(admin_, json{{"name", "p"}}.dump()).ok());
  constexpr int64_t kHourMs = 3'600'000;
  auto made = engine_->CreateTable(admin_, "p",
                                   json{{"name", "t"}, {"schema", json::parse(kSchema)}, {"key", {"user"}},
                                        {"log_retention_ms", kHourMs}, {"index_retention_ms", kHourMs},
                                        {"warehouse_retention_ms", kHourMs}}
                                       .dump());
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1},{"user":"b","n":2},{"user":"c","n":3}])",
                    {.log = true, .index = true, .warehouse = true})
                  .ok());
  EXPECT_EQ(Index().size(), 3u);
  // Young records stay, however many purge passes run.
  clock.Advance(kHourMs / 2 * 1000);  // micros
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // several flush ticks
  EXPECT_EQ(Metric(*engine_, "aquifer_retention_records_purged_total"), 0);
  EXPECT_EQ(WholeLog().size(), 3u);
  clock.Advance(kHourMs * 1000);  // 90 min after the write: all expired
  EXPECT_EQ(Index().size(), 0u) << "hidden at once";
  EXPECT_EQ(WholeLog().size(), 0u);
  bool purged = false;
  for (int tick = 0; tick < 3000 && !purged; ++tick) {
    purged = Metric(*engine_, "aquifer_retention_records_purged_total") == 9;  // 3 log, 3 index, 3 warehouse
    if (!purged) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(purged) << engine_->MetricsText();
  engine_.reset();  // its threads read `clock`, which ends with this scope
}

TEST_F(EngineTest, ConcurrentWritesNeverGoPastTheWriteQuota) {
  Open(Options());
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"x","n":0}])", {}).ok());
  const int64_t one_write = json::parse(*engine_->UsageJson(admin_))["projects"][0]["month"]["write_bytes"];
  ASSERT_TRUE(engine_->SetQuotas(admin_, "p", json{{"write_bytes", one_write * 6}}.dump()).ok());
  std::atomic<int> accepted{0}, refused{0};
  std::vector<std::thread> writers;
  for (int thread = 0; thread < 8; ++thread) {
    writers.emplace_back([&, thread] {
      for (int attempt = 0; attempt < 4; ++attempt) {
        auto ack = Write(json::array({{{"user", "x"}, {"n", thread * 4 + attempt}}}).dump(), {});
        if (ack.ok()) {
          ++accepted;
        } else if (ack.status().code() == StatusCode::kResourceExhausted) {
          ++refused;
        } else {
          ADD_FAILURE() << ack.status().ToString();
        }
      }
    });
  }
  for (auto& writer : writers) writer.join();
  // Same-size records (n < 64: one varint byte): exactly five more fit, whatever the interleaving.
  EXPECT_EQ(accepted.load(), 5);
  EXPECT_EQ(refused.load(), 8 * 4 - 5);
  const int64_t used = json::parse(*engine_->UsageJson(admin_))["projects"][0]["month"]["write_bytes"];
  EXPECT_LE(used, one_write * 6);
}

TEST_F(EngineTest, QuotasAreReadAndSetByTheAdminOnlyAndBadValuesAreRefused) {
  Open(Options());
  CreateProjectAndTable();
  CreateProjectAndTable("other", "t");
  auto read = engine_->GetQuotasJson(admin_, "p");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(json::parse(*read), (json{{"project", "p"}, {"read_bytes", nullptr},
                                      {"write_bytes", nullptr}, {"scan_bytes", nullptr}}));
  auto set = engine_->SetQuotas(admin_, "p", R"({"write_bytes":1000,"scan_bytes":0})");
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  set = engine_->SetQuotas(admin_, "p", R"({"read_bytes":7})");  // the others keep their value
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(json::parse(*engine_->GetQuotasJson(admin_, "p")),
            (json{{"project", "p"}, {"read_bytes", 7}, {"write_bytes", 1000}, {"scan_bytes", 0}}));
  EXPECT_EQ(json::parse(*engine_->UsageJson(admin_))["projects"][1]["quotas"]["write_bytes"], 1000);

  for (const char* bad : {R"({"write_bytes":-1})", R"({"write_bytes":"1000"})", R"({"write_bytes":1.5})",
                          R"({"write_bytes":true})", R"({"rows":5})", R"({"write_bytes":18446744073709551615})",
                          R"([1])", "{"}) {
    auto refused = engine_->SetQuotas(admin_, "p", bad);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(json::parse(*engine_->GetQuotasJson(admin_, "p"))["write_bytes"], 1000);
  EXPECT_EQ(engine_->GetQuotasJson(admin_, "nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(engine_->SetQuotas(admin_, "nope", "{}").status().code(), StatusCode::kNotFound);

  // A manager of p sees p but may not touch its quotas; p's secrets do not see "other".
  Principal manager = Secret("p", {{"manage", true}});
  EXPECT_EQ(engine_->GetQuotasJson(manager, "p").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(engine_->SetQuotas(manager, "p", R"({"write_bytes":null})").status().code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(engine_->SetQuotas(manager, "other", "{}").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(json::parse(*engine_->GetQuotasJson(admin_, "p"))["write_bytes"], 1000);
}

TEST_F(EngineTest, NewProjectsStartWithTheConfiguredDefaultQuotas) {
  EngineOptions options = Options();
  options.default_quotas.write_bytes = 5000;
  Open(options);
  CreateProjectAndTable();
  EXPECT_EQ(json::parse(*engine_->GetQuotasJson(admin_, "p")),
            (json{{"project", "p"}, {"read_bytes", nullptr}, {"write_bytes", 5000},
                  {"scan_bytes", nullptr}}));
}

TEST_F(EngineTest, RestartKeepsDataAdminSecretAndCursors) {
  EngineOptions options = Options();
  options.admin_secret.reset();
  {
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    engine_ = std::move(*opened);
  }
  std::optional<std::string> admin_secret = engine_->NewAdminSecret();
  ASSERT_TRUE(admin_secret.has_value());
  ASSERT_TRUE(engine_->Start().ok());
  admin_ = *engine_->Authenticate(*admin_secret);
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1},{"user":"b","n":2}])").ok());
  auto page = engine_->QueryIndex(admin_, IndexQuery{"p", "t", "", 1});
  ASSERT_TRUE(page.ok());
  const std::string next = page->next_cursor, change = page->change_cursor;
  ASSERT_FALSE(next.empty());
  engine_->Stop();
  engine_.reset();

  auto reopened = Engine::Open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  engine_ = std::move(*reopened);
  EXPECT_FALSE(engine_->NewAdminSecret().has_value());
  ASSERT_TRUE(engine_->Start().ok());
  auto admin = engine_->Authenticate(*admin_secret);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  admin_ = *admin;
  EXPECT_EQ(Index().size(), 2u);
  auto rest = engine_->ReadCursorJson(admin_, next, 10);
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(json::parse(*rest)["data"].size(), 1u);
  ASSERT_TRUE(Write(R"([{"user":"c","n":3}])", {.log = true}).ok());
  auto changes = engine_->ReadChanges(admin_, change, "", 10);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  EXPECT_EQ(changes->count, 1);
  for (const char* key_file : {"/cursor.key", "/secret.key"}) {
    auto mode = std::filesystem::status(dir_ + key_file).permissions();
    EXPECT_EQ(mode & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << key_file;
  }
  auto read_key = [&](const char* key_file) {
    std::ifstream in(dir_ + key_file);
    std::string text;
    in >> text;
    return text;
  };
  EXPECT_EQ(read_key("/secret.key").size(), 64u);
  EXPECT_NE(read_key("/secret.key"), read_key("/cursor.key")) << "two separate keys";
}

// Polls the job through `engine` until it is done or failed (10 s at most).
json WaitForSqlJob(Engine& engine, const Principal& who, const std::string& job_id) {
  json status;
  for (int attempt = 0; attempt < 400; ++attempt) {
    auto polled = engine.GetJobJson(who, job_id);
    EXPECT_TRUE(polled.ok()) << polled.status().ToString();
    if (!polled.ok()) break;
    status = json::parse(*polled);
    if (status["status"] == "done" || status["status"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return status;
}

// The job's status is in the catalog and its rows in the warehouse's own
// database file: both outlive the engine; the rows still expire on time.
TEST_F(EngineTest, ASqlJobAndItsRowsSurviveARestartAndTheRowsStillExpire) {
  ManualClock clock(Clock::System()->NowMillis());
  EngineOptions options = Options();
  options.clock = &clock;
  options.sql.job.result_ttl_ms = 60'000;
  Open(options);
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1},{"user":"b","n":2},{"user":"c","n":3}])", {.warehouse = true}).ok());
  auto job = engine_->SubmitSql(admin_, "SELECT user, n FROM p.t ORDER BY n");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_EQ(WaitForSqlJob(*engine_, admin_, *job)["status"], "done");
  auto first = engine_->ReadJobRows(admin_, *job, "", 2);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_FALSE(first->next_cursor.empty());
  engine_->Stop();
  engine_.reset();

  Open(options);
  auto polled = engine_->GetJobJson(admin_, *job);
  ASSERT_TRUE(polled.ok()) << polled.status().ToString();
  EXPECT_EQ(json::parse(*polled)["status"], "done");
  EXPECT_EQ(json::parse(*polled)["rows"], 3);
  auto again = engine_->ReadJobRows(admin_, *job, "", 2);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(json::parse(again->data_json), json::parse(R"([["a",1],["b",2]])"));
  EXPECT_EQ(json::parse(again->columns_json)[0]["name"], "user");
  auto rest = engine_->ReadCursorJson(admin_, first->next_cursor, 10);  // a cursor of the first run
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(json::parse(*rest)["data"], json::parse(R"([["c",3]])"));
  EXPECT_EQ(engine_->ReadJobRows(admin_, *job, "garbage", 2).status().code(), StatusCode::kInvalidArgument);

  clock.Advance(int64_t{60'001} * 1000);
  auto expired = engine_->ReadJobRows(admin_, *job, "", 2);
  EXPECT_EQ(expired.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(expired.status().message(), HasSubstr("expired"));
  polled = engine_->GetJobJson(admin_, *job);
  ASSERT_TRUE(polled.ok());
  EXPECT_EQ(json::parse(*polled)["status"], "done");
  engine_.reset();  // before its clock goes
}

// A finished job's record leaves the catalog job_history_ms after it ended
// (the flush thread, every idempotency_purge_interval_ms), not before; an
// unfinished one never does.
TEST_F(EngineTest, FinishedJobsAreForgottenAfterJobHistoryMs) {
  ManualClock clock(Clock::System()->NowMillis());
  EngineOptions options = Options();
  options.clock = &clock;
  options.idempotency_purge_interval_ms = 60'000;
  options.sql.job.result_ttl_ms = 60'000;
  options.sql.job_history_ms = 3'600'000;
  Open(options);
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1}])", {.warehouse = true}).ok());
  auto job = engine_->SubmitSql(admin_, "SELECT user, n FROM p.t");
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  ASSERT_EQ(WaitForSqlJob(*engine_, admin_, *job)["status"], "done");

  clock.Advance(int64_t{3'500'000} * 1000);  // within the history: kept
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // several flush ticks
  EXPECT_TRUE(engine_->GetJobJson(admin_, *job).ok());
  EXPECT_EQ(Metric(*engine_, "aquifer_jobs_purged_total"), 0);
  clock.Advance(int64_t{200'000} * 1000);  // past it
  bool purged = false;
  for (int tick = 0; tick < 3000 && !purged; ++tick) {
    purged = Metric(*engine_, "aquifer_jobs_purged_total") == 1;
    if (!purged) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(purged) << engine_->MetricsText();
  EXPECT_EQ(engine_->GetJobJson(admin_, *job).status().code(), StatusCode::kNotFound);
  engine_.reset();  // before its clock goes
}

// Two engines (two processes, as far as jobs go) sharing one catalog and one
// Postgres warehouse: a job submitted through one is polled and paged through
// the other, also once the first is gone.
TEST(EngineOnPostgres, ASqlJobSubmittedThroughOneEngineIsPolledAndPagedThroughAnother) {
  const std::string shared = TempDir(), dir_a = TempDir(), dir_b = TempDir();
  auto warehouse = drivers::postgres::testing::TestConfig(std::filesystem::path(shared).filename().string());
  ASSERT_TRUE(warehouse.ok()) << warehouse.status().ToString();
  auto options = [&](const std::string& dir) {
    EngineOptions options;
    options.data_dir = dir;
    options.catalog = shared + "/catalog.db";
    options.cursor_key = "cursor-key-shared-by-both-engines";
    options.secret_key = "secret-key-shared-by-both-engines";
    options.admin_secret = kAdminSecret;
    options.worker_threads = 1;
    options.queue.config["poll_interval_ms"] = "5";
    options.warehouse = DriverChoice{"postgres", *warehouse};
    options.sql.job_heartbeat_ms = 50;
    return options;
  };
  auto opened_a = Engine::Open(options(dir_a));
  ASSERT_TRUE(opened_a.ok()) << opened_a.status().ToString();
  std::unique_ptr<Engine> a = std::move(*opened_a);
  ASSERT_TRUE(a->Start().ok());
  auto opened_b = Engine::Open(options(dir_b));
  ASSERT_TRUE(opened_b.ok()) << opened_b.status().ToString();
  std::unique_ptr<Engine> b = std::move(*opened_b);
  ASSERT_TRUE(b->Start().ok());
  Principal admin = *a->Authenticate(kAdminSecret);

  ASSERT_TRUE(a->CreateProject(admin, json{{"name", "p"}}.dump()).ok());
  ASSERT_TRUE(a->CreateTable(admin, "p", json{{"name", "t"}, {"schema", json::parse(kSchema)}, {"key", {"user"}}}.dump())
                  .ok());
  WriteRequest request;
  request.project = "p";
  request.table = "t";
  request.body = R"([{"user":"a","n":1},{"user":"b","n":2},{"user":"c","n":3},{"user":"d","n":4}])";
  request.wait = {.warehouse = true};
  auto written = a->Write(admin, request, nullptr);
  ASSERT_TRUE(written.ok()) << written.status().ToString();

  auto job = a->SubmitSql(admin, "SELECT n FROM p.t ORDER BY n");  // not `user`: Postgres reads it as CURRENT_USER
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  // Polled only through b: a's heartbeat brings the catalog up to date.
  ASSERT_EQ(WaitForSqlJob(*b, admin, *job)["status"], "done");
  auto first = b->ReadJobRows(admin, *job, "", 3);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(json::parse(first->data_json), json::parse("[[1],[2],[3]]"));
  ASSERT_FALSE(first->next_cursor.empty());
  auto rest = a->ReadCursorJson(admin, first->next_cursor, 10);  // b's cursor read through a
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(json::parse(*rest)["data"], json::parse("[[4]]"));

  a->Stop();
  a.reset();  // the engine that ran it is gone
  auto polled = b->GetJobJson(admin, *job);
  ASSERT_TRUE(polled.ok()) << polled.status().ToString();
  EXPECT_EQ(json::parse(*polled)["status"], "done");
  auto again = b->ReadJobRows(admin, *job, "", 10);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(json::parse(again->data_json).size(), 4u);
  EXPECT_EQ(b->ReadJobRows(admin, *job, "not-a-cursor", 2).status().code(), StatusCode::kInvalidArgument);
  b->Stop();
  b.reset();
  for (const std::string& dir : {shared, dir_a, dir_b}) std::filesystem::remove_all(dir);
}

TEST_F(EngineTest, ACatalogWithoutItsSecretKeyAuthenticatesNoSecret) {
  EngineOptions options = Options();
  options.admin_secret.reset();
  std::string admin_secret, reader_secret;
  {
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    engine_ = std::move(*opened);
    ASSERT_TRUE(engine_->NewAdminSecret().has_value());
    admin_secret = *engine_->NewAdminSecret();
    ASSERT_TRUE(engine_->Start().ok());
    admin_ = *engine_->Authenticate(admin_secret);
    CreateProjectAndTable();
    auto minted = engine_->CreateSecret(admin_, "p", R"({"read":["*"]})");
    ASSERT_TRUE(minted.ok()) << minted.status().ToString();
    reader_secret = json::parse(*minted)["secret"];
    engine_.reset();
  }
  // The same data dir with its key: both still authenticate.
  {
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    EXPECT_TRUE((*opened)->Authenticate(admin_secret).ok());
    EXPECT_TRUE((*opened)->Authenticate(reader_secret).ok());
  }
  // The catalog without secret.key (copied elsewhere, or the key lost): a new
  // key is made and no stored secret authenticates.
  ASSERT_TRUE(std::filesystem::remove(dir_ + "/secret.key"));
  auto opened = Engine::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ((*opened)->Authenticate(admin_secret).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ((*opened)->Authenticate(reader_secret).status().code(), StatusCode::kUnauthenticated);
}

TEST_F(EngineTest, HealthIsOkAndWaitOptionsParse) {
  Open(Options());
  EXPECT_TRUE(engine_->Health().ok());
  auto wait = ParseWaitFor("index,warehouse");
  ASSERT_TRUE(wait.ok());
  EXPECT_TRUE(wait->index && wait->warehouse && !wait->log);
  EXPECT_FALSE(ParseWaitFor("disk").ok());
  EXPECT_FALSE(ParseWaitFor("").ok());
}

// --- Issue 8: re-registration, deletion under writes, dead letters --------------------------

// A DuckDB warehouse whose RemoveInstance fails `remove_failures` times and
// whose writes fail while `fail_writes` is set. Tests keep a pointer to it.
class FlakyWarehouse : public driver::WarehouseServiceWrapper {
 public:
  using WarehouseServiceWrapper::WarehouseServiceWrapper;
  Status RemoveInstance(const driver::InstanceInfo& instance) override {
    if (remove_failures.fetch_sub(1) > 0) return Unavailable("injected: warehouse unreachable");
    Status removed = WarehouseServiceWrapper::RemoveInstance(instance);
    if (removed.ok()) ++removes;
    return removed;
  }
  Status WriteToWarehouse(const driver::InstanceInfo& instance, std::span<const driver::Record> records,
                          std::span<const driver::RecordGroup> groups) override {
    if (fail_writes) return Status(fail_code.load(), "injected: warehouse write failed");
    return WarehouseServiceWrapper::WriteToWarehouse(instance, records, groups);
  }
  std::atomic<int> remove_failures{0};
  std::atomic<int> removes{0};
  std::atomic<bool> fail_writes{false};
  std::atomic<StatusCode> fail_code{StatusCode::kInternal};
};

int64_t MetricValue(const std::string& text, const std::string& name) {
  size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stoll(text.substr(at + name.size() + 2));
}

class EngineIssue8Test : public EngineTest {
 protected:
  // Options whose warehouse is a FlakyWarehouse over DuckDB, kept in flaky_.
  EngineOptions FlakyOptions() {
    EngineOptions options = Options();
    options.warehouse.name = "flaky";
    options.register_drivers = [this](driver::Registry* registry) {
      registry->Register("flaky", driver::Factory<driver::WarehouseService>(
                                      [this](const driver::Config& config, const driver::DriverContext& context)
                                          -> Result<std::shared_ptr<driver::WarehouseService>> {
                                        driver::Registry builtin;
                                        drivers::RegisterBuiltinDrivers(&builtin);
                                        AQ_ASSIGN_OR_RETURN(auto duckdb,
                                                            builtin.MakeWarehouseService("duckdb", config, context));
                                        flaky_ = std::make_shared<FlakyWarehouse>(duckdb);
                                        return std::shared_ptr<driver::WarehouseService>(flaky_);
                                      }));
    };
    return options;
  }
  driver::InstanceInfo Instance(std::string_view table = "t") {
    auto described = engine_->DescribeTable(admin_, "p", table);
    EXPECT_TRUE(described.ok()) << described.status().ToString();
    driver::InstanceInfo instance;
    if (!described.ok()) return instance;
    instance.instance_id = *Uuid::Parse(json::parse(*described)["instance_id"].get<std::string>());
    return instance;
  }
  // count(*) of p.t in the warehouse through a SQL job, or -1.
  int64_t WarehouseCount() {
    auto job = engine_->SubmitSql(admin_, "SELECT count(*) AS c FROM p.t");
    if (!job.ok()) return -1;
    for (int poll = 0; poll < 500; ++poll) {
      auto rows = engine_->ReadJobRows(admin_, *job, "", 10);
      if (rows.ok()) return json::parse(rows->data_json)[0][0].get<int64_t>();
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  bool WaitFor(const std::function<bool()>& done, int seconds = 30) {
    for (int attempt = 0; attempt < seconds * 100; ++attempt) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }
  // Opens the embedded stores of dir_ directly (the engine must be closed).
  void OpenStores(std::shared_ptr<driver::LookupService>* lookup,
                  std::shared_ptr<driver::WarehouseService>* warehouse) {
    driver::Registry registry;
    drivers::RegisterBuiltinDrivers(&registry);
    driver::DriverContext context{dir_, Clock::System()};
    auto made_lookup = registry.MakeLookupService("embedded", {}, context);
    auto made_warehouse = registry.MakeWarehouseService("duckdb", {}, context);
    ASSERT_TRUE(made_lookup.ok() && made_warehouse.ok());
    *lookup = *made_lookup;
    *warehouse = *made_warehouse;
  }
  // How many tables of the warehouse belong to the instance (its rows and its applied ids).
  int64_t WarehouseTables(driver::WarehouseService& warehouse, const Uuid& instance_id) {
    int64_t tables = 0;
    for (const std::string suffix : {"", "__applied"}) {
      auto analysis = warehouse.AnalyzeQuery("SELECT * FROM \"i_" + instance_id.Hex() + suffix + "\"");
      if (analysis.ok()) ++tables;
    }
    return tables;
  }

  std::shared_ptr<FlakyWarehouse> flaky_;
};

// Item 2: a table whose instance the warehouse lost (or never got: the
// process died between the catalog commit and RegisterInstance) is
// registered again when the engine starts.
TEST_F(EngineIssue8Test, StartRegistersEveryInstanceAgain) {
  Open(Options());
  CreateProjectAndTable();
  driver::InstanceInfo instance = Instance();
  engine_.reset();
  {
    std::shared_ptr<driver::LookupService> lookup;
    std::shared_ptr<driver::WarehouseService> warehouse;
    OpenStores(&lookup, &warehouse);
    ASSERT_TRUE(warehouse->RemoveInstance(instance).ok());
    ASSERT_EQ(WarehouseTables(*warehouse, instance.instance_id), 0);
  }
  Open(Options());
  auto analysis = engine_->AnalyzeSql(admin_, "SELECT n FROM p.t");
  EXPECT_TRUE(analysis.ok()) << analysis.status().ToString();
}

// Item 5: deleting a table while writers keep writing to it leaves nothing
// of it in the log, the index or the warehouse.
TEST_F(EngineIssue8Test, DeletingATableUnderConcurrentWritesLeavesNothingBehind) {
  Open(Options());
  CreateProjectAndTable();
  driver::InstanceInfo instance = Instance();
  std::atomic<int> accepted{0};
  std::atomic<bool> deleted{false};
  std::vector<std::thread> writers;
  for (int writer_idx = 0; writer_idx < 3; ++writer_idx) {
    writers.emplace_back([&, writer_idx] {
      for (int n = 0; n < 2000; ++n) {
        std::string body = fmt::format(R"([{{"user":"w{}-{}","n":{}}},{{"user":"x{}","n":{}}}])",
                                       writer_idx, n, n, n % 7, n);
        auto ack = Write(body, {});
        if (!ack.ok()) {
          EXPECT_EQ(ack.status().code(), StatusCode::kNotFound) << ack.status().ToString();
          return;
        }
        ++accepted;
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return accepted >= 60; }));
  ASSERT_TRUE(engine_->DeleteTable(admin_, "p", "t").ok());
  deleted = true;
  for (auto& writer : writers) writer.join();
  // Every accepted message is handled (written then removed, or dropped).
  ASSERT_TRUE(WaitFor([&] {
    std::string metrics = engine_->MetricsText();
    return MetricValue(metrics, "aquifer_queue_processed_total") ==
               MetricValue(metrics, "aquifer_queue_published_total") &&
           MetricValue(metrics, "aquifer_instance_removals_pending") == 0;
  }));
  engine_.reset();

  std::shared_ptr<driver::LookupService> lookup;
  std::shared_ptr<driver::WarehouseService> warehouse;
  OpenStores(&lookup, &warehouse);
  auto catalog = OpenSqliteCatalog(dir_ + "/catalog.db");
  ASSERT_TRUE(catalog.ok());
  auto schema = schema::Schema::Parse(kSchema, {"user"});
  ASSERT_TRUE(schema.ok());
  instance.schema = *schema;
  for (auto kind : {driver::QueryKind::kLog, driver::QueryKind::kIndex}) {
    driver::QueryRequest request;
    request.kind = kind;
    auto cursors = lookup->Query(instance, request);
    ASSERT_TRUE(cursors.ok()) << cursors.status().ToString();
    driver::ReadOptions read_options;
    read_options.limit = 1000;
    auto read = lookup->ReadCursor(instance, cursors->replay, {}, read_options);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_TRUE(read->records.empty()) << read->records.size() << " records of the deleted table left";
  }
  EXPECT_EQ(WarehouseTables(*warehouse, instance.instance_id), 0);
  EXPECT_TRUE((*catalog)->ListPendingRemovals()->empty());
}

// Item 5: a removal that fails is finished later in the background, and the
// DELETE still succeeds (the table is gone from the catalog at once).
TEST_F(EngineIssue8Test, AFailedRemovalIsFinishedInTheBackground) {
  Open(FlakyOptions());
  CreateProjectAndTable();
  ASSERT_TRUE(Write(R"([{"user":"a","n":1}])", {.index = true, .warehouse = true}).ok());
  driver::InstanceInfo instance = Instance();
  flaky_->remove_failures = 3;
  ASSERT_TRUE(engine_->DeleteTable(admin_, "p", "t").ok());
  EXPECT_EQ(engine_->DescribeTable(admin_, "p", "t").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(WaitFor([&] { return flaky_->removes >= 1; }));
  ASSERT_TRUE(WaitFor([&] {
    return MetricValue(engine_->MetricsText(), "aquifer_instance_removals_pending") == 0;
  }));
  EXPECT_GE(MetricValue(engine_->MetricsText(), "aquifer_instance_removal_failures_total"), 3);
  EXPECT_EQ(WarehouseTables(*flaky_, instance.instance_id), 0);
}

// Item 2: a write the warehouse keeps refusing is dead-lettered; an operator
// lists it (listing keeps it) and replays it, and it lands once everywhere.
TEST_F(EngineIssue8Test, DeadLettersAreListedAndReplayedOnce) {
  EngineOptions options = FlakyOptions();
  options.max_delivery_attempts = 2;
  Open(options);
  CreateProjectAndTable();
  flaky_->fail_writes = true;
  auto ack = Write(R"([{"user":"a","n":1},{"user":"b","n":2}])", {});
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  json listed;
  ASSERT_TRUE(WaitFor([&] {
    auto text = engine_->DeadLettersJson(admin_, 100);
    if (!text.ok()) return false;
    listed = json::parse(*text);
    return listed["dead_letters"].size() == 1;
  }));
  const json& letter = listed["dead_letters"][0];
  EXPECT_EQ(letter["write_id"], ack->write_id);
  EXPECT_EQ(letter["project"], "p");
  EXPECT_EQ(letter["table"], "t");
  EXPECT_EQ(letter["store"], "warehouse");
  EXPECT_EQ(letter["records"], 2);
  EXPECT_EQ(letter["attempts"], 2);
  EXPECT_THAT(letter["reason"].get<std::string>(), HasSubstr("warehouse write failed"));
  EXPECT_EQ(json::parse(*engine_->DeadLettersJson(admin_, 100))["dead_letters"].size(), 1u)
      << "listing leaves the dead letters in place";
  EXPECT_THAT(engine_->MetricsText(), HasSubstr("aquifer_messages_dead_lettered_total 1"));
  Principal writer = Secret("p", {{"read", {"t"}}, {"write", {"t"}}, {"manage", true}});
  EXPECT_EQ(engine_->DeadLettersJson(writer, 10).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(engine_->ReplayDeadLetters(writer, "").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(engine_->ReplayDeadLetters(admin_, R"({"write_ids":"x"})").status().code(),
            StatusCode::kInvalidArgument);
  // A filter naming another write replays nothing.
  EXPECT_EQ(json::parse(*engine_->ReplayDeadLetters(admin_, R"({"write_ids":["nope"]})"))["replayed"], 0);

  flaky_->fail_writes = false;
  auto replayed = engine_->ReplayDeadLetters(admin_, "");
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(json::parse(*replayed)["replayed"], 1);
  EXPECT_TRUE(json::parse(*engine_->DeadLettersJson(admin_, 100))["dead_letters"].empty());
  ASSERT_TRUE(WaitFor([&] { return WarehouseCount() == 2; }));
  EXPECT_EQ(WholeLog().size(), 2u) << "the lookup had applied it before: not logged again";
}

// An outage (Unavailable, Timeout) of a store is retried however long it
// lasts: far past max_delivery_attempts nothing is dead-lettered, and the
// write lands once the store is back.
TEST_F(EngineIssue8Test, StoreOutagesAreRetriedNeverDeadLettered) {
  EngineOptions options = FlakyOptions();
  options.max_delivery_attempts = 2;
  Open(options);
  CreateProjectAndTable();
  flaky_->fail_code = StatusCode::kUnavailable;
  flaky_->fail_writes = true;
  auto ack = Write(R"([{"user":"a","n":1},{"user":"b","n":2}])", {});
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  // Past the attempt limit (2) with each outage code: 7 deliveries.
  ASSERT_TRUE(WaitFor([&] {
    return MetricValue(engine_->MetricsText(), "aquifer_store_outage_retries_total") >= 4;
  }));
  flaky_->fail_code = StatusCode::kTimeout;
  ASSERT_TRUE(WaitFor([&] {
    return MetricValue(engine_->MetricsText(), "aquifer_store_outage_retries_total") >= 7;
  }));
  EXPECT_EQ(MetricValue(engine_->MetricsText(), "aquifer_messages_dead_lettered_total"), 0);
  EXPECT_TRUE(json::parse(*engine_->DeadLettersJson(admin_, 100))["dead_letters"].empty());
  flaky_->fail_writes = false;
  ASSERT_TRUE(WaitFor([&] { return WarehouseCount() == 2; }));
  EXPECT_EQ(WholeLog().size(), 2u);
  EXPECT_EQ(MetricValue(engine_->MetricsText(), "aquifer_messages_dead_lettered_total"), 0);
}

}  // namespace
}  // namespace aquifer::engine
