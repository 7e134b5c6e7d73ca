// Every route of DESIGN.md "HTTP API (v1, JSON)" against the real server:
// the happy path with exact shapes and status codes, then bad input (400 with
// a clear message, 413 for oversized bodies), checking after each rejected
// write that nothing of it was written.

#include <algorithm>
#include <set>
#include <thread>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

class Routes : public ServerSuite {
 protected:
  // Writes as the admin; answers the response.
  Response Write(const std::string& p, const std::string& t, const json& records,
                 const std::string& query = "") {
    return Admin().Post(TablePath(p, t) + "/records" + query, records);
  }

  // A sentinel write with wait=log, then the whole log must be exactly the
  // sentinels written so far (+ `also` other records): nothing of any
  // rejected write got in. DESIGN.md: "nothing of a rejected batch is written".
  void ExpectOnlySentinelsInLog(const std::string& p, const std::string& t, int* sentinels,
                                size_t also = 0) {
    auto c = Admin();
    auto r = c.Post(TablePath(p, t) + "/records?wait=log",
                    json::array({Event("sentinel", *sentinels, 0.5)}));
    ASSERT_EQ(r.status, 200) << "sentinel write: " << r.Describe();
    ++*sentinels;
    std::string error;
    auto log = ReadWholeLog(c, p, t, &error);
    ASSERT_TRUE(error.empty()) << error;
    size_t found = 0;
    for (const auto& rec : log) {
      if (rec.value("user", "") == "sentinel") ++found;
    }
    EXPECT_EQ(found, static_cast<size_t>(*sentinels)) << json(log).dump();
    EXPECT_EQ(log.size(), static_cast<size_t>(*sentinels) + also)
        << "the log holds records of a rejected write: " << json(log).dump().substr(0, 3000);
  }

  Response Query(const std::string& p, const std::string& t, const json& filter, int limit = 100) {
    std::string q = TablePath(p, t) + "/records?limit=" + std::to_string(limit);
    if (!filter.is_null()) q += "&filter=" + UrlEncode(filter.dump());
    return Admin().Get(q);
  }

  // Expects 400 with DESIGN.md's error body; `mentions` must appear in the message.
  void Expect400(const Response& r, const std::string& what, const std::string& mentions = "") {
    EXPECT_EQ(r.status, 400) << what << ": " << r.Describe();
    EXPECT_TRUE(IsErrorBody(r)) << what;
    if (!mentions.empty() && r.is_json) {
      std::string message = r.j().value("error", json::object()).value("message", "");
      EXPECT_NE(message.find(mentions), std::string::npos)
          << what << ": the message should name '" << mentions << "': " << r.Describe();
    }
  }

  // Polls a job until it leaves pending/running (20 s at most).
  json WaitJob(Client& c, const std::string& job_id) {
    json last;
    for (int i = 0; i < 400; ++i) {
      auto r = c.Get("/v1/jobs/" + job_id);
      if (r.status != 200 || !r.is_json) {
        ADD_FAILURE() << "job status: " << r.Describe();
        return last;
      }
      last = r.j();
      std::string status = last.value("status", "");
      if (status != "pending" && status != "running") return last;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "job did not finish: " << last.dump();
    return last;
  }
};

// --- Health, spec, metrics --------------------------------------------------------------

TEST_F(Routes, HealthzAnswers200WithoutASecret) {
  Client anon(*server_, "");
  auto r = anon.Get("/healthz");
  AQ_EXPECT_STATUS(r, 200);
}

TEST_F(Routes, OpenapiJsonParsesNeedsNoSecretAndListsEveryRoute) {
  Client anon(*server_, "");
  auto r = anon.Get("/openapi.json");
  AQ_ASSERT_STATUS(r, 200);
  ASSERT_TRUE(r.is_json) << "openapi.json does not parse: " << r.body.substr(0, 500);
  ASSERT_TRUE(r.j().is_object());
  EXPECT_TRUE(r.j().contains("openapi") || r.j().contains("swagger")) << r.body.substr(0, 500);
  ASSERT_TRUE(r.j().contains("paths") && r.j()["paths"].is_object()) << r.body.substr(0, 500);
  std::string paths;
  for (auto it = r.j()["paths"].begin(); it != r.j()["paths"].end(); ++it) paths += it.key() + "\n";
  for (const char* needle : {"/v1/projects", "/tables", "/records", "/log", "/v1/cursor", "/v1/subscribe",
                             "/v1/sql", "/v1/jobs/", "/rows", "/secrets", "/v1/usage", "/healthz", "/metrics"}) {
    EXPECT_NE(paths.find(needle), std::string::npos) << "openapi.json lacks a path with " << needle << ":\n" << paths;
  }
}

TEST_F(Routes, MetricsAnswersPrometheusText) {
  auto r = Admin().Get("/metrics");
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_NE(r.header("content-type").find("text/plain"), std::string::npos) << r.header("content-type");
  EXPECT_NE(r.body.find("# TYPE "), std::string::npos) << r.body.substr(0, 1000);
  // Every non-comment line is "name{labels} value".
  std::istringstream lines(r.body);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    ++samples;
    EXPECT_NE(line.rfind(' '), std::string::npos) << "not a sample line: " << line;
  }
  EXPECT_GT(samples, 0);
}

TEST_F(Routes, UnknownRouteAnswers404WithAnErrorBody) {
  auto r = Admin().Get("/v1/nope");
  AQ_EXPECT_STATUS(r, 404);
  EXPECT_TRUE(IsErrorBody(r));
}

// --- Projects and tables ----------------------------------------------------------------

TEST_F(Routes, CreateProjectAnswers201AndADuplicateAnswers409) {
  std::string name = UniqueName("proj");
  auto r = Admin().Post("/v1/projects", {{"name", name}});
  AQ_EXPECT_STATUS(r, 201);
  EXPECT_TRUE(r.is_json && r.j().is_object()) << r.Describe();
  auto again = Admin().Post("/v1/projects", {{"name", name}});
  AQ_EXPECT_STATUS(again, 409);
  EXPECT_TRUE(IsErrorBody(again));
}

TEST_F(Routes, NamesFollowTheRuleUpTo63Characters) {
  std::string longest = "a" + std::string(62, 'b');
  ASSERT_EQ(longest.size(), 63u);
  std::string p = UniqueName("n");
  p += std::string(63 - p.size(), 'x');
  AQ_EXPECT_STATUS(Admin().Post("/v1/projects", {{"name", p}}), 201);
  for (const std::string& bad : std::vector<std::string>{"", "Upper", "1abc", "_abc", "a-b", "a.b", "a b", "ab\u00e9", "a/b",
                                std::string("a") + std::string(63, 'b')}) {
    Expect400(Admin().Post("/v1/projects", {{"name", bad}}), "project name '" + bad + "'");
    Expect400(Admin().Post("/v1/projects/" + p + "/tables",
                           {{"name", bad}, {"schema", EventSchema()}, {"key", EventKey()}}),
              "table name '" + bad + "'");
  }
  AQ_EXPECT_STATUS(Admin().Post("/v1/projects/" + p + "/tables",
                                {{"name", longest}, {"schema", EventSchema()}, {"key", EventKey()}}),
                   201);
}

TEST_F(Routes, CreateTableAnswers201DescribeShowsItAndADuplicateAnswers409) {
  std::string p = MakeProject();
  std::string t = UniqueName("t");
  auto r = Admin().Post("/v1/projects/" + p + "/tables",
                        {{"name", t}, {"schema", EventSchema()}, {"key", EventKey()}});
  AQ_ASSERT_STATUS(r, 201);
  EXPECT_TRUE(r.is_json && r.j().is_object()) << r.Describe();
  auto d = Admin().Get(TablePath(p, t));
  AQ_ASSERT_STATUS(d, 200);
  ASSERT_TRUE(d.is_json && d.j().is_object()) << d.Describe();
  EXPECT_NE(d.body.find(t), std::string::npos) << d.Describe();
  EXPECT_NE(d.body.find("\"seq\""), std::string::npos) << "describe should show the schema: " << d.Describe();
  auto again = Admin().Post("/v1/projects/" + p + "/tables",
                            {{"name", t}, {"schema", EventSchema()}, {"key", EventKey()}});
  AQ_EXPECT_STATUS(again, 409);
  EXPECT_TRUE(IsErrorBody(again));
  AQ_EXPECT_STATUS(Admin().Post("/v1/projects/" + UniqueName("nope") + "/tables",
                                {{"name", UniqueName("t")}, {"schema", EventSchema()}, {"key", EventKey()}}),
                   404);
  AQ_EXPECT_STATUS(Admin().Get(TablePath(p, UniqueName("nope"))), 404);
}

TEST_F(Routes, DeleteTableRemovesItAndItsData) {
  std::string p = MakeProject();
  std::string t = MakeTable(p);
  AQ_ASSERT_STATUS(Write(p, t, json::array({Event("ada", 1, 1.0)}), "?wait=index"), 200);
  auto r = Admin().Delete(TablePath(p, t));
  EXPECT_TRUE(r.status == 200 || r.status == 204) << r.Describe();
  AQ_EXPECT_STATUS(Admin().Get(TablePath(p, t)), 404);
  AQ_EXPECT_STATUS(Admin().Get(TablePath(p, t) + "/records"), 404);
  AQ_EXPECT_STATUS(Admin().Get(TablePath(p, t) + "/log"), 404);
  AQ_EXPECT_STATUS(Write(p, t, json::array({Event("ada", 2, 1.0)})), 404);
  AQ_EXPECT_STATUS(Admin().Delete(TablePath(p, t)), 404);
  // A re-created table of the same name starts empty.
  AQ_ASSERT_STATUS(Admin().Post("/v1/projects/" + p + "/tables",
                                {{"name", t}, {"schema", EventSchema()}, {"key", EventKey()}}),
                   201);
  auto q = Admin().Get(TablePath(p, t) + "/records");
  AQ_ASSERT_STATUS(q, 200);
  EXPECT_EQ(q.j()["data"].size(), 0u) << q.Describe();
  auto l = Admin().Get(TablePath(p, t) + "/log");
  AQ_ASSERT_STATUS(l, 200);
  EXPECT_EQ(l.j()["data"].size(), 0u) << l.Describe();
}

TEST_F(Routes, BadTableDefinitionsAnswer400) {
  std::string p = MakeProject();
  auto create = [&](json body) { return Admin().Post("/v1/projects/" + p + "/tables", body); };
  Expect400(Admin().PostRaw("/v1/projects/" + p + "/tables", "{\"name\": "), "malformed JSON");
  Expect400(create({{"schema", EventSchema()}, {"key", EventKey()}}), "missing name", "name");
  Expect400(create({{"name", UniqueName("t")}, {"key", EventKey()}}), "missing schema", "schema");
  Expect400(create({{"name", UniqueName("t")}, {"schema", EventSchema()}}), "missing key", "key");
  Expect400(create({{"name", 5}, {"schema", EventSchema()}, {"key", EventKey()}}), "name of the wrong type");
  Expect400(create({{"name", UniqueName("t")}, {"schema", EventSchema()}, {"key", "user"}}),
            "key of the wrong type");
  Expect400(create({{"name", UniqueName("t")}, {"schema", EventSchema()}, {"key", {"nope"}}}),
            "unknown key field", "nope");
  Expect400(create({{"name", UniqueName("t")}, {"schema", EventSchema()}, {"key", {"note"}}}),
            "nullable key field", "note");
  Expect400(create({{"name", UniqueName("t")}, {"schema", json{{"type", "record"}, {"name", "x"},
                                                                {"fields", {{{"name", "a"}, {"type", "nope"}}}}}},
                    {"key", {"a"}}}),
            "bad schema type", "nope");
  Expect400(create({{"name", UniqueName("t")}, {"schema", EventSchema()}, {"key", EventKey()}, {"bogus", 1}}),
            "unknown field", "bogus");
  Expect400(create(json::array()), "not an object");
}

TEST_F(Routes, BadProjectBodiesAnswer400) {
  Expect400(Admin().PostRaw("/v1/projects", "{"), "malformed JSON");
  Expect400(Admin().PostRaw("/v1/projects", ""), "empty body");
  Expect400(Admin().Post("/v1/projects", json::object()), "missing name", "name");
  Expect400(Admin().Post("/v1/projects", {{"name", 7}}), "name of the wrong type");
  Expect400(Admin().Post("/v1/projects", {{"name", UniqueName("p")}, {"bogus", true}}), "unknown field", "bogus");
}

// --- Writes -----------------------------------------------------------------------------

TEST_F(Routes, WriteAnswers202WithWriteIdAndRecordCount) {
  std::string p = MakeProject(), t = MakeTable(p);
  auto r = Write(p, t, json::array({Event("ada", 1, 1.5), Event("ada", 2, 2.5), Event("bob", 1, 3.5)}));
  AQ_ASSERT_STATUS(r, 202);
  ASSERT_TRUE(r.is_json && r.j().is_object()) << r.Describe();
  ASSERT_TRUE(r.j().contains("write_id") && r.j()["write_id"].is_string()) << r.Describe();
  EXPECT_FALSE(r.j()["write_id"].get<std::string>().empty());
  ASSERT_TRUE(r.j().contains("records")) << r.Describe();
  EXPECT_EQ(r.j()["records"], 3) << r.Describe();
  // Two writes get two ids.
  auto r2 = Write(p, t, json::array({Event("ada", 3, 1.5)}));
  AQ_ASSERT_STATUS(r2, 202);
  EXPECT_NE(r2.j().value("write_id", ""), r.j().value("write_id", ""));
}

TEST_F(Routes, WriteWithWaitAnswers200AndTheStoreHasIt) {
  std::string p = MakeProject(), t = MakeTable(p);
  int64_t seq = 0;
  for (const std::string& wait : std::vector<std::string>{"log", "index", "warehouse", "index,warehouse", "log,index,warehouse"}) {
    ++seq;
    auto r = Write(p, t, json::array({Event("ada", seq, 1.0 * seq)}), "?wait=" + UrlEncode(wait));
    AQ_ASSERT_STATUS(r, 200) << " wait=" << wait;
    EXPECT_EQ(r.j().value("records", -1), 1) << r.Describe();
    EXPECT_TRUE(r.j().contains("write_id")) << r.Describe();
    if (wait.find("index") != std::string::npos) {
      auto q = Query(p, t, {{"user", "ada"}, {"seq", seq}});
      AQ_ASSERT_STATUS(q, 200);
      ASSERT_EQ(q.j()["data"].size(), 1u) << "wait=" << wait << " returned before the index had it: " << q.Describe();
      EXPECT_EQ(q.j()["data"][0]["value"], 1.0 * seq);
    }
    if (wait.find("log") != std::string::npos) {
      auto c = Admin();
      auto log = ReadWholeLog(c, p, t);
      EXPECT_EQ(log.size(), static_cast<size_t>(seq)) << "wait=log returned before the log had it";
    }
    if (wait.find("warehouse") != std::string::npos) {
      auto c = Admin();
      auto job = c.Post("/v1/sql", {{"query", "SELECT count(*) AS n FROM " + p + "." + t}, {"dry_run", false}});
      AQ_ASSERT_STATUS(job, 202);
      auto status = WaitJob(c, job.j().value("job_id", ""));
      ASSERT_EQ(status.value("status", ""), "done") << status.dump();
      auto rows = c.Get("/v1/jobs/" + job.j().value("job_id", "") + "/rows");
      AQ_ASSERT_STATUS(rows, 200);
      ASSERT_EQ(rows.j()["data"].size(), 1u) << rows.Describe();
      EXPECT_EQ(rows.j()["data"][0][0], seq) << "wait=warehouse returned before the warehouse had it: "
                                             << rows.Describe();
    }
  }
}

TEST_F(Routes, NdjsonWritesAreAcceptedLikeArrays) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::string body = Ndjson({Event("ada", 1, 1.0), Event("ada", 2, 2.0), Event("ada", 3, 3.0)});
  auto r = Admin().PostRaw(TablePath(p, t) + "/records?wait=index", body, "application/x-ndjson");
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.j().value("records", -1), 3);
  auto q = Query(p, t, {{"user", "ada"}});
  AQ_ASSERT_STATUS(q, 200);
  EXPECT_EQ(q.j()["data"].size(), 3u) << q.Describe();
}

TEST_F(Routes, ReadsHaveTheDesignShapeAndTimestamps) {
  std::string p = MakeProject(), t = MakeTable(p);
  int64_t before = NowMs();
  json with_items = Event("ada", 1, 1.25, "hello");
  with_items["items"] = json::array({{{"name", "pen"}, {"price", 2.5}}});
  AQ_ASSERT_STATUS(Write(p, t, json::array({with_items, Event("bob", 2, 2.0)}), "?wait=index"), 200);
  int64_t after = NowMs();
  for (const std::string& route : std::vector<std::string>{"/records", "/log"}) {
    auto r = Admin().Get(TablePath(p, t) + route);
    AQ_ASSERT_STATUS(r, 200);
    ASSERT_TRUE(r.is_json && r.j().is_object()) << r.Describe();
    for (const char* field : {"data", "next_cursor", "change_cursor"}) {
      EXPECT_TRUE(r.j().contains(field)) << route << " lacks \"" << field << "\": " << r.Describe();
    }
    ASSERT_TRUE(r.j()["data"].is_array());
    ASSERT_EQ(r.j()["data"].size(), 2u) << r.Describe();
    EXPECT_TRUE(r.j()["change_cursor"].is_string() && !r.j()["change_cursor"].get<std::string>().empty())
        << r.Describe();
    const json& ada = r.j()["data"][0];
    EXPECT_EQ(ada["user"], "ada");
    EXPECT_EQ(ada["seq"], 1);
    EXPECT_EQ(ada["value"], 1.25);
    EXPECT_EQ(ada["note"], "hello");
    EXPECT_EQ(ada["items"], json::array({{{"name", "pen"}, {"price", 2.5}}}));
    EXPECT_EQ(r.j()["data"][1]["note"], nullptr) << "a null nullable field is plain null";
    for (const auto& rec : r.j()["data"]) {
      ASSERT_TRUE(rec.contains("@timestamp") && rec["@timestamp"].is_number_integer()) << rec.dump();
      EXPECT_GE(rec["@timestamp"].get<int64_t>(), before - 1000);
      EXPECT_LE(rec["@timestamp"].get<int64_t>(), after + 1000);
      EXPECT_EQ(rec.size(), 6u) << "fields + @timestamp only: " << rec.dump();
    }
  }
}

TEST_F(Routes, OmittedFieldsWithDefaultsTakeTheirDefault) {
  std::string p = MakeProject(), t = MakeTable(p);
  AQ_ASSERT_STATUS(Write(p, t, json::array({{{"user", "ada"}, {"seq", 1}, {"value", 1.0}}}), "?wait=index"), 200);
  auto q = Query(p, t, {{"user", "ada"}});
  AQ_ASSERT_STATUS(q, 200);
  ASSERT_EQ(q.j()["data"].size(), 1u);
  EXPECT_EQ(q.j()["data"][0]["note"], nullptr);
  EXPECT_EQ(q.j()["data"][0]["items"], json::array());
}

TEST_F(Routes, AGivenTimestampIsKeptAndTheIndexKeepsTheHighestPerKey) {
  std::string p = MakeProject(), t = MakeTable(p);
  json newer = Event("ada", 1, 2.0);
  newer["@timestamp"] = 2'000'000'000'000;
  json older = Event("ada", 1, 1.0);
  older["@timestamp"] = 1'000'000'000'000;
  AQ_ASSERT_STATUS(Write(p, t, json::array({newer}), "?wait=index"), 200);
  AQ_ASSERT_STATUS(Write(p, t, json::array({older}), "?wait=index"), 200);
  auto q = Query(p, t, {{"user", "ada"}, {"seq", 1}});
  AQ_ASSERT_STATUS(q, 200);
  ASSERT_EQ(q.j()["data"].size(), 1u) << q.Describe();
  EXPECT_EQ(q.j()["data"][0]["value"], 2.0) << "the record with the highest timestamp wins";
  EXPECT_EQ(q.j()["data"][0]["@timestamp"], 2'000'000'000'000);
  // Without timestamps the later write wins.
  AQ_ASSERT_STATUS(Write(p, t, json::array({Event("bob", 1, 1.0)}), "?wait=index"), 200);
  AQ_ASSERT_STATUS(Write(p, t, json::array({Event("bob", 1, 9.0)}), "?wait=index"), 200);
  q = Query(p, t, {{"user", "bob"}, {"seq", 1}});
  AQ_ASSERT_STATUS(q, 200);
  ASSERT_EQ(q.j()["data"].size(), 1u) << q.Describe();
  EXPECT_EQ(q.j()["data"][0]["value"], 9.0);
  // The log keeps all three writes of ada+bob... in write order.
  auto c = Admin();
  auto log = ReadWholeLog(c, p, t);
  ASSERT_EQ(log.size(), 4u);
  EXPECT_EQ(log[0]["value"], 2.0);
  EXPECT_EQ(log[1]["value"], 1.0);
  EXPECT_EQ(log[1]["@timestamp"], 1'000'000'000'000);
  EXPECT_EQ(log[3]["value"], 9.0);
}

TEST_F(Routes, IdempotencyKeyMakesARetryNotWriteTwice) {
  std::string p = MakeProject(), t = MakeTable(p);
  auto c = Admin();
  std::string body = json::array({Event("ada", 1, 1.0), Event("ada", 2, 2.0)}).dump();
  Headers h = {{"Content-Type", "application/json"}, {"Idempotency-Key", UniqueName("k")}};
  auto a = c.Request("POST", TablePath(p, t) + "/records?wait=log", body, h);
  AQ_ASSERT_STATUS(a, 200);
  auto b = c.Request("POST", TablePath(p, t) + "/records?wait=log", body, h);
  EXPECT_TRUE(b.status == 200 || b.status == 202) << b.Describe();
  EXPECT_EQ(b.j().value("write_id", "x"), a.j().value("write_id", "y")) << "a retry answers the first write's id";
  AQ_ASSERT_STATUS(c.Post(TablePath(p, t) + "/records?wait=log", json::array({Event("zed", 1, 0.0)})), 200);
  auto log = ReadWholeLog(c, p, t);
  EXPECT_EQ(log.size(), 3u) << json(log).dump();
}

// --- Reads: index, log, cursors ---------------------------------------------------------

TEST_F(Routes, IndexPagesThroughEveryRecordOnceInKeyOrder) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::vector<json> batch;
  for (int i = 24; i >= 0; --i) batch.push_back(Event("ada", i, i * 1.0));
  AQ_ASSERT_STATUS(Write(p, t, batch, "?wait=index"), 200);
  auto c = Admin();
  auto r = c.Get(TablePath(p, t) + "/records?limit=10");
  std::vector<int64_t> seen;
  int pages = 0;
  for (;;) {
    AQ_ASSERT_STATUS(r, 200);
    ++pages;
    EXPECT_LE(r.j()["data"].size(), 10u);
    for (const auto& rec : r.j()["data"]) seen.push_back(rec["seq"].get<int64_t>());
    auto next = r.j().value("next_cursor", json());
    if (!next.is_string() || next.get<std::string>().empty()) break;
    ASSERT_LT(pages, 10) << "paging does not end";
    r = c.Get("/v1/cursor?limit=10&cursor=" + UrlEncode(next.get<std::string>()));
  }
  std::vector<int64_t> want(25);
  for (int i = 0; i < 25; ++i) want[i] = i;
  EXPECT_EQ(seen, want);
  EXPECT_EQ(pages, 3);
  // Default limit is 100: 25 fit on one page.
  auto all = c.Get(TablePath(p, t) + "/records");
  AQ_ASSERT_STATUS(all, 200);
  EXPECT_EQ(all.j()["data"].size(), 25u);
}

TEST_F(Routes, FiltersSelectKeyRangesPrefixesAndResidualsCorrectly) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::vector<json> batch;
  for (const std::string& user : std::vector<std::string>{"ada", "adam", "bob"}) {
    for (int i = 0; i < 12; ++i) batch.push_back(Event(user, i, i * 10.0));
  }
  AQ_ASSERT_STATUS(Write(p, t, batch, "?wait=index"), 200);
  auto seqs = [](const Response& r) {
    std::vector<std::string> out;
    for (const auto& rec : r.j()["data"]) out.push_back(rec["user"].get<std::string>() + ":" + std::to_string(rec["seq"].get<int64_t>()));
    return out;
  };
  auto r = Query(p, t, {{"user", "ada"}, {"seq", {{"_gte", 5}, {"_lt", 9}}}});
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(seqs(r), (std::vector<std::string>{"ada:5", "ada:6", "ada:7", "ada:8"}));
  EXPECT_NE(r.j().value("residual", false), true) << "a key range needs no residual scan";
  r = Query(p, t, {{"user", {{"_prefix", "ada"}}}}, 1000);
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.j()["data"].size(), 24u) << r.Describe();
  r = Query(p, t, {{"user", {{"_eq", "bob"}}}, {"seq", {{"_gt", 10}}}});
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(seqs(r), (std::vector<std::string>{"bob:11"}));
  // A non-key condition is a residual filter, and the answer says so (never a silent empty answer).
  r = Query(p, t, {{"user", "ada"}, {"seq", 3}, {"value", 30.0}});
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(seqs(r), (std::vector<std::string>{"ada:3"}));
  r = Query(p, t, {{"value", {{"_gte", 100.0}}}}, 1000);
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(seqs(r), (std::vector<std::string>{"ada:10", "ada:11", "adam:10", "adam:11", "bob:10", "bob:11"}));
  EXPECT_EQ(r.j().value("residual", false), true) << "a residual scan must say \"residual\":true: " << r.Describe();
}

TEST_F(Routes, LogReplaysInWriteOrderFromATimestamp) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::vector<json> first, second;
  for (int i = 0; i < 5; ++i) {
    json e = Event("w", 100 - i, i);
    e["@timestamp"] = 1'500'000'000'000 + i;
    first.push_back(e);
  }
  for (int i = 0; i < 5; ++i) {
    json e = Event("w", 50 - i, 10 + i);
    e["@timestamp"] = 1'600'000'000'000 + i;
    second.push_back(e);
  }
  AQ_ASSERT_STATUS(Write(p, t, first), 202);
  AQ_ASSERT_STATUS(Write(p, t, second, "?wait=log"), 200);
  auto c = Admin();
  auto log = ReadWholeLog(c, p, t);
  ASSERT_EQ(log.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(log[i]["value"], i < 5 ? i : 5 + i) << "write order, not key order";
  auto r = c.Get(TablePath(p, t) + "/log?from=1600000000002");
  AQ_ASSERT_STATUS(r, 200);
  ASSERT_EQ(r.j()["data"].size(), 3u) << r.Describe();
  EXPECT_EQ(r.j()["data"][0]["value"], 12);
  r = c.Get(TablePath(p, t) + "/log?limit=4");
  AQ_ASSERT_STATUS(r, 200);
  ASSERT_EQ(r.j()["data"].size(), 4u);
  ASSERT_TRUE(r.j()["next_cursor"].is_string());
  auto next = c.Get("/v1/cursor?limit=4&cursor=" + UrlEncode(r.j()["next_cursor"].get<std::string>()));
  AQ_ASSERT_STATUS(next, 200);
  ASSERT_EQ(next.j()["data"].size(), 4u);
  EXPECT_EQ(next.j()["data"][0]["value"], 4);
}

TEST_F(Routes, BackToBackWritesAreLoggedInTheOrderTheyWereAcknowledged) {
  std::string p = MakeProject(), t = MakeTable(p);
  auto c = Admin();
  constexpr int kWrites = 40;
  for (int i = 0; i < kWrites; ++i) {
    std::string wait = i + 1 == kWrites ? "?wait=log" : "";
    auto r = c.Post(TablePath(p, t) + "/records" + wait,
                    json::array({Event("w" + std::to_string(i % 4), i, i), Event("x", i, i)}));
    ASSERT_TRUE(r.status == 202 || r.status == 200) << r.Describe();
  }
  std::vector<json> log;
  for (int tries = 0; tries < 50 && log.size() < 2 * kWrites; ++tries) {
    log = ReadWholeLog(c, p, t);
    if (log.size() < 2 * kWrites) std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(log.size(), 2u * kWrites);
  std::vector<int64_t> order, want;
  for (const auto& rec : log) order.push_back(rec["seq"].get<int64_t>());
  for (int i = 0; i < kWrites; ++i) want.insert(want.end(), {i, i});
  EXPECT_EQ(order, want) << "DESIGN.md: the log replays in write order; a write acknowledged (202) before "
                            "the next was sent must come first";
}

TEST_F(Routes, LimitOutside1To1000Answers400) {
  std::string p = MakeProject(), t = MakeTable(p);
  AQ_ASSERT_STATUS(Write(p, t, json::array({Event("a", 1, 1), Event("a", 2, 2)}), "?wait=index"), 200);
  auto first = Admin().Get(TablePath(p, t) + "/records?limit=1");
  AQ_ASSERT_STATUS(first, 200);
  std::string cursor = first.j().value("next_cursor", "");
  ASSERT_FALSE(cursor.empty()) << first.Describe();
  AQ_EXPECT_STATUS(Admin().Get(TablePath(p, t) + "/records?limit=1000"), 200);
  for (const std::string& bad : std::vector<std::string>{"0", "5000", "1001", "abc", "-1", "", "1.5", "10abc"}) {
    Expect400(Admin().Get(TablePath(p, t) + "/records?limit=" + bad), "records limit=" + bad, "limit");
    Expect400(Admin().Get(TablePath(p, t) + "/log?limit=" + bad), "log limit=" + bad, "limit");
    Expect400(Admin().Get("/v1/cursor?limit=" + bad + "&cursor=" + UrlEncode(cursor)), "cursor limit=" + bad,
              "limit");
  }
  Expect400(Admin().Get(TablePath(p, t) + "/log?from=yesterday"), "log from=yesterday", "from");
}

TEST_F(Routes, BadFiltersAnswer400NamingTheProblem) {
  std::string p = MakeProject(), t = MakeTable(p);
  auto get = [&](const std::string& raw) {
    return Admin().Get(TablePath(p, t) + "/records?filter=" + UrlEncode(raw));
  };
  Expect400(get(R"({"bogus": 1})"), "unknown field", "bogus");
  Expect400(get(R"({"seq": "x"})"), "wrong type", "seq");
  Expect400(get(R"({"seq": {"_foo": 1}})"), "unknown op", "_foo");
  Expect400(get(R"({"user": {"_gt": 1}})"), "wrong type in an op", "user");
  Expect400(get(R"({"items": []})"), "array field", "items");
  Expect400(get(R"({"user": )"), "malformed JSON");
  Expect400(get(R"([1,2])"), "not an object");
}

TEST_F(Routes, BrokenCursorsAnswer400) {
  std::string p = MakeProject(), t = MakeTable(p);
  AQ_ASSERT_STATUS(Write(p, t, json::array({Event("a", 1, 1), Event("a", 2, 2), Event("a", 3, 3)}), "?wait=index"),
                   200);
  auto first = Admin().Get(TablePath(p, t) + "/records?limit=1");
  AQ_ASSERT_STATUS(first, 200);
  std::string cursor = first.j().value("next_cursor", "");
  ASSERT_GT(cursor.size(), 10u) << first.Describe();
  AQ_EXPECT_STATUS(Admin().Get("/v1/cursor?cursor=" + UrlEncode(cursor)), 200);
  const std::string base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  std::vector<std::pair<std::string, std::string>> broken = {
      {"garbage", "!!not-a-cursor!!"},
      {"short base58", "abc"},
      {"empty", ""},
      {"truncated", cursor.substr(0, cursor.size() - 3)},
      {"half", cursor.substr(0, cursor.size() / 2)},
      {"extended", cursor + "zz"},
  };
  // One character changed, at several positions (type byte, instance id, payload, signature).
  for (size_t pos : {size_t{0}, size_t{5}, cursor.size() / 2, cursor.size() - 2, cursor.size() - 1}) {
    std::string changed = cursor;
    size_t idx = base58.find(changed[pos]);
    changed[pos] = base58[(idx == std::string::npos ? 0 : idx + 1) % base58.size()];
    broken.push_back({"one character changed at " + std::to_string(pos), changed});
  }
  for (const auto& [what, bad] : broken) {
    auto r = Admin().Get("/v1/cursor?cursor=" + UrlEncode(bad));
    EXPECT_EQ(r.status, 400) << what << " (" << bad << "): " << r.Describe();
    EXPECT_TRUE(IsErrorBody(r)) << what;
    EXPECT_EQ(r.body.find("\"seq\""), std::string::npos) << what << " leaked records: " << r.Describe();
  }
  Expect400(Admin().Get("/v1/cursor"), "no cursor", "cursor");
  // The same on the WebSocket: a broken change cursor is an error message.
  WsClient ws;
  ASSERT_EQ(ws.Connect(server_->host(), server_->port(), server_->admin_secret()), "");
  ASSERT_TRUE(ws.Send(json{{"type", "subscribe"}, {"cursor", "!!garbage!!"}}));
  auto m = ws.Receive(10s);
  ASSERT_TRUE(m.has_value()) << "no answer to a broken cursor: " << ws.close_reason();
  EXPECT_EQ((*m)["type"], "error") << m->dump();
  EXPECT_TRUE((*m).contains("error") && (*m)["error"].is_object()) << m->dump();
}

// --- Rejected writes --------------------------------------------------------------------

TEST_F(Routes, AnInvalidBatchAnswers400ListingEveryBadRecordAndFieldAndWritesNothing) {
  std::string p = MakeProject(), t = MakeTable(p);
  json good0 = Event("ada", 1, 1.0);
  json bad1 = Event("ada", 2, 1.0);
  bad1["value"] = "not a number";
  json good2 = Event("ada", 3, 3.0);
  json bad3 = Event("ada", 4, 4.0);
  bad3.erase("seq");
  bad3["bogus"] = 1;
  json bad4 = Event("ada", 5, 5.0);
  bad4["items"] = json::array({{{"name", "a"}, {"price", 1.0}},
                               {{"name", "b"}, {"price", 2.0}},
                               {{"name", "c"}, {"price", "free"}}});
  json bad5 = Event("ada", 6, 6.0);
  bad5["@timestamp"] = "noon";
  json bad6 = Event("ada", 7, 7.0);
  bad6["note"] = json{{"string", "avro union wrapping"}};
  auto r = Write(p, t, json::array({good0, bad1, good2, bad3, bad4, bad5, bad6}));
  AQ_ASSERT_STATUS(r, 400);
  ASSERT_TRUE(IsErrorBody(r));
  EXPECT_EQ(r.error_code(), "invalid_records") << r.Describe();
  const json& details = r.j()["error"].value("details", json());
  ASSERT_TRUE(details.is_array()) << r.Describe();
  std::set<std::pair<int64_t, std::string>> got;
  for (const auto& d : details) {
    ASSERT_TRUE(d.contains("record") && d["record"].is_number_integer()) << d.dump();
    ASSERT_TRUE(d.contains("field") && d["field"].is_string()) << d.dump();
    EXPECT_TRUE(d.contains("message") && d["message"].is_string() && !d["message"].get<std::string>().empty())
        << d.dump();
    got.insert({d["record"].get<int64_t>(), d["field"].get<std::string>()});
  }
  std::set<std::pair<int64_t, std::string>> want = {
      {1, "value"}, {3, "seq"}, {3, "bogus"}, {4, "items[2].price"}, {5, "@timestamp"}, {6, "note"}};
  EXPECT_EQ(got, want) << r.Describe();
  int sentinels = 0;
  ExpectOnlySentinelsInLog(p, t, &sentinels);
}

TEST_F(Routes, MalformedOrWronglyShapedWriteBodiesAnswer400AndWriteNothing) {
  std::string p = MakeProject(), t = MakeTable(p);
  auto path = TablePath(p, t) + "/records";
  int sentinels = 0;
  Expect400(Admin().PostRaw(path, "[{\"user\":\"a\",\"seq\":1,\"value\":1.0}, {\"user\":"), "malformed JSON array");
  Expect400(Admin().PostRaw(path, Event("a", 1, 1).dump() + "\n{\"user\": \"b\",\n", "application/x-ndjson"),
            "malformed NDJSON line");
  Expect400(Admin().PostRaw(path, "42"), "a number");
  Expect400(Admin().PostRaw(path, "[1, 2]"), "records that are not objects");
  Expect400(Admin().PostRaw(path, "\"text\""), "a string");
  Expect400(Admin().Post(path, json::array({Event("a", 1, 1), {{"user", "b"}, {"seq", 1.5}, {"value", 1}}})),
            "a fractional long", "seq");
  Expect400(Admin().Post(path, json::array({{{"user", "b"}, {"value", 1}}})), "a missing key field", "seq");
  Expect400(Admin().Post(path, json::array({{{"user", nullptr}, {"seq", 1}, {"value", 1}}})), "a null key field",
            "user");
  Expect400(Admin().Post(path, json::array({{{"user", "b"}, {"seq", "9223372036854775808"}, {"value", 1}}})),
            "a long as a string", "seq");
  ExpectOnlySentinelsInLog(p, t, &sentinels);
}

TEST_F(Routes, AnEmptyBatchWritesNothing) {
  std::string p = MakeProject(), t = MakeTable(p);
  int sentinels = 0;
  for (const std::string& body : std::vector<std::string>{"[]", ""}) {
    auto r = Admin().PostRaw(TablePath(p, t) + "/records", body);
    // DESIGN.md is silent: either refused (400) or accepted as a count of 0.
    if (r.status == 202 || r.status == 200) {
      EXPECT_EQ(r.j().value("records", -1), 0) << r.Describe();
    } else {
      Expect400(r, "empty body '" + body + "'");
    }
  }
  ExpectOnlySentinelsInLog(p, t, &sentinels);
}

TEST_F(Routes, WaitBogusAnswers400AndWritesNothing) {
  std::string p = MakeProject(), t = MakeTable(p);
  int sentinels = 0;
  for (const std::string& wait : std::vector<std::string>{"bogus", "index,bogus", "INDEX", "index,,log", "log;index"}) {
    Expect400(Write(p, t, json::array({Event("x", 1, 1)}), "?wait=" + UrlEncode(wait)), "wait=" + wait, "wait");
  }
  ExpectOnlySentinelsInLog(p, t, &sentinels);
}

TEST_F(Routes, AnOversizedRecordIsRejectedAndNothingIsWritten) {
  std::string p = MakeProject(), t = MakeTable(p);
  int sentinels = 0;
  // Max record size (Avro) is 1 MiB in the embedded drivers; 1 MiB + 1 KiB of text is over it.
  json big = Event("big", 2, 1.0, std::string((1 << 20) + 1024, 'x'));
  auto r = Write(p, t, json::array({Event("big", 1, 1.0), big}));
  EXPECT_TRUE(r.status == 400 || r.status == 413) << r.Describe();
  EXPECT_TRUE(IsErrorBody(r));
  if (r.status == 400) {
    EXPECT_NE(r.body.find("\"record\":1"), std::string::npos) << "the details name record 1: " << r.Describe();
  }
  EXPECT_LT(r.body.size(), 10000u) << "the error echoes the record";
  ExpectOnlySentinelsInLog(p, t, &sentinels);
}

TEST_F(Routes, AnOversizedBodyAnswers413AndNothingIsWritten) {
  std::string p = MakeProject(), t = MakeTable(p);
  int sentinels = 0;
  // 9,000 valid records of ~8 KB: over the 64 MiB body limit, under the 10,000-record batch limit.
  std::string body;
  body.reserve(80 << 20);
  std::string filler(8000, 'y');
  for (int i = 0; i < 9000; ++i) {
    body += Event("huge", i, 1.0, filler).dump();
    body += '\n';
  }
  ASSERT_GT(body.size(), size_t{64} << 20);
  auto r = Admin().Request("POST", TablePath(p, t) + "/records", body,
                           {{"Content-Type", "application/x-ndjson"}});
  AQ_EXPECT_STATUS(r, 413);
  EXPECT_TRUE(IsErrorBody(r));
  ExpectOnlySentinelsInLog(p, t, &sentinels);
}

TEST_F(Routes, WritesToAMissingTableAnswer404) {
  std::string p = MakeProject();
  auto r = Write(p, UniqueName("nope"), json::array({Event("a", 1, 1)}));
  AQ_EXPECT_STATUS(r, 404);
  EXPECT_TRUE(IsErrorBody(r));
  AQ_EXPECT_STATUS(Write(UniqueName("nope"), "t", json::array({Event("a", 1, 1)})), 404);
}

// Retention through the HTTP API, by the server's own clock: a record whose
// @timestamp is past the table's retention is accepted but never served by
// the index, the log or SQL; one inside it is. (The drivers' suites move an
// injected clock across the horizon; here only the server's real clock.)
TEST_F(Routes, RecordsPastTheTablesRetentionAreNeverServed) {
  std::string p = MakeProject();
  std::string t = UniqueName("t");
  constexpr int64_t kHourMs = 3'600'000;
  AQ_ASSERT_STATUS(Admin().Post("/v1/projects/" + p + "/tables",
                                {{"name", t}, {"schema", EventSchema()}, {"key", EventKey()},
                                 {"log_retention_ms", kHourMs}, {"index_retention_ms", kHourMs},
                                 {"warehouse_retention_ms", kHourMs}}),
                   201);
  auto d = Admin().Get(TablePath(p, t));
  AQ_ASSERT_STATUS(d, 200);
  EXPECT_EQ(d.j().value("log_retention_ms", int64_t{0}), kHourMs) << d.Describe();
  const int64_t now = NowMs();
  json expired = Event("old", 1, 1.0);
  expired["@timestamp"] = now - 2 * kHourMs;
  json kept = Event("new", 2, 2.0);
  kept["@timestamp"] = now - kHourMs / 2;
  json unstamped = Event("now", 3, 3.0);
  AQ_ASSERT_STATUS(Write(p, t, json::array({expired, kept, unstamped}), "?wait=log,index,warehouse"), 200);

  auto q = Query(p, t, json());
  AQ_ASSERT_STATUS(q, 200);
  std::set<std::string> users;
  for (const auto& rec : q.j()["data"]) users.insert(rec.value("user", ""));
  EXPECT_EQ(users, (std::set<std::string>{"new", "now"})) << q.Describe();
  EXPECT_EQ(Query(p, t, {{"user", "old"}, {"seq", 1}}).j()["data"].size(), 0u);
  auto c = Admin();
  auto log = ReadWholeLog(c, p, t);
  ASSERT_EQ(log.size(), 2u) << json(log).dump();
  EXPECT_EQ(log[0].value("user", ""), "new");
  EXPECT_EQ(log[1].value("user", ""), "now");
  auto job = c.Post("/v1/sql", {{"query", "SELECT \"user\" FROM " + p + "." + t + " ORDER BY seq"}, {"dry_run", false}});
  AQ_ASSERT_STATUS(job, 202);
  std::string id = job.j().value("job_id", "");
  json status = WaitJob(c, id);
  ASSERT_EQ(status.value("status", ""), "done") << status.dump();
  auto rows = c.Get("/v1/jobs/" + id + "/rows");
  AQ_ASSERT_STATUS(rows, 200);
  EXPECT_EQ(rows.j()["data"], json::array({json::array({"new"}), json::array({"now"})})) << rows.Describe();
}

// --- SQL and jobs -----------------------------------------------------------------------

TEST_F(Routes, SqlDryRunJobStatusAndPagedRowsHaveTheDesignShapes) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::vector<json> batch;
  for (int i = 0; i < 30; ++i) batch.push_back(Event(i % 2 ? "odd" : "even", i, i));
  AQ_ASSERT_STATUS(Write(p, t, batch, "?wait=warehouse"), 200);
  auto c = Admin();
  std::string sql = "SELECT seq, value FROM " + p + "." + t + " ORDER BY seq";
  auto dry = c.Post("/v1/sql", {{"query", sql}, {"dry_run", true}});
  AQ_ASSERT_STATUS(dry, 200);
  EXPECT_EQ(dry.j().value("tables", json()), json::array({p + "." + t})) << dry.Describe();
  EXPECT_TRUE(dry.j().contains("bytes_scanned_estimate") && dry.j()["bytes_scanned_estimate"].is_number_integer())
      << dry.Describe();
  auto job = c.Post("/v1/sql", {{"query", sql}, {"dry_run", false}});
  AQ_ASSERT_STATUS(job, 202);
  std::string id = job.j().value("job_id", "");
  ASSERT_FALSE(id.empty()) << job.Describe();
  json status = WaitJob(c, id);
  for (const char* field : {"job_id", "status", "error", "bytes_scanned", "rows"}) {
    EXPECT_TRUE(status.contains(field)) << "job status lacks " << field << ": " << status.dump();
  }
  EXPECT_EQ(status.value("job_id", ""), id);
  ASSERT_EQ(status.value("status", ""), "done") << status.dump();
  EXPECT_EQ(status.value("rows", -1), 30) << status.dump();
  auto rows = c.Get("/v1/jobs/" + id + "/rows?limit=12");
  AQ_ASSERT_STATUS(rows, 200);
  for (const char* field : {"columns", "data", "next_cursor"}) {
    EXPECT_TRUE(rows.j().contains(field)) << "rows lack " << field << ": " << rows.Describe();
  }
  ASSERT_TRUE(rows.j()["columns"].is_array());
  ASSERT_EQ(rows.j()["columns"].size(), 2u) << rows.Describe();
  EXPECT_EQ(rows.j()["columns"][0].value("name", ""), "seq");
  EXPECT_EQ(rows.j()["columns"][1].value("name", ""), "value");
  std::vector<int64_t> seqs;
  for (const auto& row : rows.j()["data"]) seqs.push_back(row[0].get<int64_t>());
  EXPECT_EQ(seqs.size(), 12u);
  // Later pages: /v1/jobs/{id}/rows?cursor= and /v1/cursor both page job rows.
  std::string next = rows.j().value("next_cursor", "");
  ASSERT_FALSE(next.empty()) << rows.Describe();
  auto page2 = c.Get("/v1/jobs/" + id + "/rows?limit=12&cursor=" + UrlEncode(next));
  AQ_ASSERT_STATUS(page2, 200);
  for (const auto& row : page2.j()["data"]) seqs.push_back(row[0].get<int64_t>());
  next = page2.j().value("next_cursor", "");
  ASSERT_FALSE(next.empty()) << page2.Describe();
  auto page3 = c.Get("/v1/cursor?limit=12&cursor=" + UrlEncode(next));
  AQ_ASSERT_STATUS(page3, 200);
  EXPECT_TRUE(page3.j().contains("columns")) << page3.Describe();
  for (const auto& row : page3.j()["data"]) seqs.push_back(row[0].get<int64_t>());
  std::vector<int64_t> want(30);
  for (int i = 0; i < 30; ++i) want[i] = i;
  EXPECT_EQ(seqs, want);
  auto end = page3.j().value("next_cursor", json());
  EXPECT_TRUE(end.is_null() || (end.is_string() && end.get<std::string>().empty())) << page3.Describe();
  AQ_EXPECT_STATUS(c.Get("/v1/jobs/" + UniqueName("nojob")), 404);
  AQ_EXPECT_STATUS(c.Get("/v1/jobs/00000000-0000-4000-8000-000000000000"), 404);
}

// POST /v1/sql with wait_ms (an addition): the job's status and its first
// page in one answer; the job is recorded like any other, so its status and
// every page of its rows are read the usual ways.
TEST_F(Routes, SqlWithWaitMsAnswersTheJobAndItsFirstRowsAtOnce) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::vector<json> batch;
  for (int i = 0; i < 30; ++i) batch.push_back(Event(i % 2 ? "odd" : "even", i, i));
  AQ_ASSERT_STATUS(Write(p, t, batch, "?wait=warehouse"), 200);
  auto c = Admin();
  std::string sql = "SELECT seq, value FROM " + p + "." + t + " ORDER BY seq";
  auto answer = c.Post("/v1/sql", {{"query", sql}, {"wait_ms", 10000}, {"limit", 12}});
  AQ_ASSERT_STATUS(answer, 200);
  for (const char* field : {"job_id", "status", "error", "bytes_scanned", "rows", "columns", "data", "next_cursor"}) {
    EXPECT_TRUE(answer.j().contains(field)) << "answer lacks " << field << ": " << answer.Describe();
  }
  EXPECT_EQ(answer.j().value("status", ""), "done") << answer.Describe();
  EXPECT_EQ(answer.j().value("rows", -1), 30) << answer.Describe();
  ASSERT_EQ(answer.j()["columns"].size(), 2u) << answer.Describe();
  EXPECT_EQ(answer.j()["columns"][0].value("name", ""), "seq");
  std::vector<int64_t> seqs;
  for (const auto& row : answer.j()["data"]) seqs.push_back(row[0].get<int64_t>());
  EXPECT_EQ(seqs.size(), 12u);
  std::string id = answer.j().value("job_id", "");
  json status = WaitJob(c, id);  // GET /v1/jobs/{id}
  EXPECT_EQ(status.value("status", ""), "done") << status.dump();
  EXPECT_EQ(status.value("rows", -1), 30) << status.dump();
  std::string next = answer.j().value("next_cursor", "");
  ASSERT_FALSE(next.empty()) << answer.Describe();
  auto page2 = c.Get("/v1/jobs/" + id + "/rows?limit=12&cursor=" + UrlEncode(next));
  AQ_ASSERT_STATUS(page2, 200);
  for (const auto& row : page2.j()["data"]) seqs.push_back(row[0].get<int64_t>());
  auto page3 = c.Get("/v1/cursor?limit=12&cursor=" + UrlEncode(page2.j().value("next_cursor", "")));
  AQ_ASSERT_STATUS(page3, 200);
  for (const auto& row : page3.j()["data"]) seqs.push_back(row[0].get<int64_t>());
  std::vector<int64_t> want(30);
  for (int i = 0; i < 30; ++i) want[i] = i;
  EXPECT_EQ(seqs, want);
  auto whole = c.Get("/v1/jobs/" + id + "/rows?limit=1000");
  AQ_ASSERT_STATUS(whole, 200);
  EXPECT_EQ(whole.j()["data"].size(), 30u) << whole.Describe();

  // A run-time error: 200 with the failed job; its rows answer 409.
  auto failed = c.Post("/v1/sql", {{"query", "SELECT CAST(\"user\" AS INTEGER) AS n FROM " + p + "." + t},
                                   {"wait_ms", 10000}});
  AQ_ASSERT_STATUS(failed, 200);
  EXPECT_EQ(failed.j().value("status", ""), "failed") << failed.Describe();
  EXPECT_TRUE(failed.j()["error"].is_string()) << failed.Describe();
  EXPECT_FALSE(failed.j().contains("data")) << failed.Describe();
  AQ_EXPECT_STATUS(c.Get("/v1/jobs/" + failed.j().value("job_id", "") + "/rows"), 409);

  // wait_ms 0: 202 with the job's status at once (no inline run).
  auto later = c.Post("/v1/sql", {{"query", sql}, {"wait_ms", 0}});
  EXPECT_TRUE(later.status == 202 || later.status == 200) << later.Describe();
  EXPECT_TRUE(later.j().contains("status")) << later.Describe();
  EXPECT_EQ(WaitJob(c, later.j().value("job_id", "")).value("status", ""), "done");

  Expect400(c.Post("/v1/sql", {{"query", sql}, {"wait_ms", -1}}), "negative wait_ms", "wait_ms");
  Expect400(c.Post("/v1/sql", {{"query", sql}, {"wait_ms", 60001}}), "wait_ms over the maximum", "wait_ms");
  Expect400(c.Post("/v1/sql", {{"query", sql}, {"wait_ms", "5"}}), "wait_ms of the wrong type", "wait_ms");
  Expect400(c.Post("/v1/sql", {{"query", sql}, {"wait_ms", 5}, {"limit", 0}}), "limit 0", "limit");
  Expect400(c.Post("/v1/sql", {{"query", sql}, {"wait_ms", 5}, {"limit", 1001}}), "limit over 1000", "limit");
}

TEST_F(Routes, ARunTimeSqlErrorFailsTheJobAndItsRowsAnswer409) {
  std::string p = MakeProject(), t = MakeTable(p);
  AQ_ASSERT_STATUS(Write(p, t, json::array({Event("ada", 1, 1)}), "?wait=warehouse"), 200);
  auto c = Admin();
  auto job = c.Post("/v1/sql", {{"query", "SELECT CAST(\"user\" AS INTEGER) AS n FROM " + p + "." + t},
                                {"dry_run", false}});
  AQ_ASSERT_STATUS(job, 202) << "a conversion error only shows at run time";
  std::string id = job.j().value("job_id", "");
  json status = WaitJob(c, id);
  EXPECT_EQ(status.value("status", ""), "failed") << status.dump();
  EXPECT_TRUE(status.value("error", json()).is_string() && !status["error"].get<std::string>().empty())
      << status.dump();
  auto rows = c.Get("/v1/jobs/" + id + "/rows");
  AQ_EXPECT_STATUS(rows, 409);
  EXPECT_TRUE(IsErrorBody(rows));
}

TEST_F(Routes, BadAndForbiddenSqlAnswers400AtSubmission) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::string pt = p + "." + t;
  auto c = Admin();
  Expect400(c.PostRaw("/v1/sql", "{\"query\": "), "malformed JSON");
  Expect400(c.Post("/v1/sql", json::object()), "missing query", "query");
  Expect400(c.Post("/v1/sql", {{"query", 5}}), "query of the wrong type");
  Expect400(c.Post("/v1/sql", {{"query", "SELECT 1"}, {"dry_run", "yes"}}), "dry_run of the wrong type");
  Expect400(c.Post("/v1/sql", {{"query", "SELECT 1"}, {"bogus", 1}}), "unknown field", "bogus");
  for (const std::string& q : std::vector<std::string>{
           std::string("SELEC * FROM ") + pt,
           std::string("SELECT * FROM ") + t,  // not project.table
           "SELECT * FROM " + pt + "; SELECT 1",
           "DROP TABLE " + pt,
           "DELETE FROM " + pt,
           "INSERT INTO " + pt + " VALUES (1)",
           "UPDATE " + pt + " SET value = 0",
           "CREATE TABLE x AS SELECT * FROM " + pt,
           std::string("ATTACH '/tmp/x.db' AS x"),
           "COPY (SELECT * FROM " + pt + ") TO '/tmp/aquifer-e2e-copy.csv'",
           std::string("SELECT * FROM read_csv('/etc/passwd')"),
           std::string("SELECT * FROM read_csv_auto('/etc/passwd')"),
           std::string("SELECT * FROM '/etc/passwd'"),
           std::string("SELECT * FROM read_parquet('x.parquet')"),
           std::string("SELECT * FROM glob('/*')"),
           std::string("PRAGMA database_list"),
           std::string("INSTALL httpfs"),
           std::string("LOAD httpfs"),
           std::string("SET threads = 1"),
           std::string("SELECT * FROM information_schema.tables"),
           std::string("SELECT * FROM duckdb_tables()"),
           std::string("SELECT * FROM pg_catalog.pg_tables"),
           std::string("SELECT * FROM sqlite_master"),
           std::string("SELECT getenv('HOME')"),
           std::string("SELECT current_setting('threads')"),
           "SELECT * FROM " + pt + " WHERE seq IN (SELECT count(*) FROM duckdb_tables())",
           "WITH x AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM x",
       }) {
    for (bool dry : {true, false}) {
      auto r = c.Post("/v1/sql", {{"query", q}, {"dry_run", dry}});
      EXPECT_EQ(r.status, 400) << (dry ? "dry run: " : "submit: ") << q << "\n" << r.Describe();
      EXPECT_TRUE(IsErrorBody(r)) << q;
      EXPECT_EQ(r.body.find("root:"), std::string::npos) << "file contents leaked: " << r.Describe();
    }
  }
  AQ_EXPECT_STATUS(c.Post("/v1/sql", {{"query", "SELECT * FROM " + p + "." + UniqueName("nope")}}), 404);
  AQ_EXPECT_STATUS(c.Post("/v1/sql", {{"query", "SELECT * FROM " + UniqueName("nope") + ".t"}}), 404);
  // A CTE named like a table is fine.
  auto ok = c.Post("/v1/sql", {{"query", "WITH x AS (SELECT seq FROM " + pt + ") SELECT count(*) FROM x"},
                               {"dry_run", true}});
  AQ_EXPECT_STATUS(ok, 200);
}

// --- Secrets and usage ------------------------------------------------------------------

TEST_F(Routes, MintingASecretAnswers201WithTheSecretAndItWorks) {
  std::string p = MakeProject(), t = MakeTable(p);
  auto r = Admin().Post("/v1/projects/" + p + "/secrets", {{"read", {t}}, {"write", {t}}});
  AQ_ASSERT_STATUS(r, 201);
  ASSERT_TRUE(r.j().contains("secret") && r.j()["secret"].is_string()) << r.Describe();
  std::string secret = r.j()["secret"];
  auto w = As(secret).Post(TablePath(p, t) + "/records?wait=index", json::array({Event("a", 1, 1)}));
  AQ_EXPECT_STATUS(w, 200);
  AQ_EXPECT_STATUS(As(secret).Get(TablePath(p, t) + "/records"), 200);
  // write and manage may be omitted.
  AQ_EXPECT_STATUS(Admin().Post("/v1/projects/" + p + "/secrets", {{"read", {"*"}}}), 201);
  Expect400(Admin().Post("/v1/projects/" + p + "/secrets", {{"read", "*"}}), "read of the wrong type");
  Expect400(Admin().Post("/v1/projects/" + p + "/secrets", {{"read", {"*"}}, {"manage", "yes"}}),
            "manage of the wrong type");
  Expect400(Admin().Post("/v1/projects/" + p + "/secrets", {{"read", {"Bad Name"}}}), "bad table name");
  Expect400(Admin().Post("/v1/projects/" + p + "/secrets", {{"read", {"*"}}, {"bogus", 1}}), "unknown field",
            "bogus");
  Expect400(Admin().PostRaw("/v1/projects/" + p + "/secrets", "{"), "malformed JSON");
  AQ_EXPECT_STATUS(Admin().Post("/v1/projects/" + p + "/secrets", {{"read", {UniqueName("nope")}}}), 404);
}

TEST_F(Routes, UsageAnswersTheCallersProjects) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::string secret = MintSecret(p, {{"read", {"*"}}, {"write", {"*"}}});
  AQ_ASSERT_STATUS(As(secret).Post(TablePath(p, t) + "/records?wait=index", json::array({Event("a", 1, 1)})), 200);
  AQ_ASSERT_STATUS(As(secret).Get(TablePath(p, t) + "/records"), 200);
  Response r;
  for (int i = 0; i < 50; ++i) {
    r = As(secret).Get("/v1/usage");
    if (r.status == 200 && r.body.find(p) != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  AQ_ASSERT_STATUS(r, 200);
  ASSERT_TRUE(r.is_json && r.j().is_object()) << r.Describe();
  EXPECT_NE(r.body.find(p), std::string::npos) << "usage does not mention the caller's project: " << r.Describe();
  AQ_EXPECT_STATUS(Admin().Get("/v1/usage"), 200);
}

// --- Startup ----------------------------------------------------------------------------

TEST(RoutesStartup, AquiferAdminSecretSetsTheAdminSecretAndNoneIsPrinted) {
  ServerOptions options;
  options.admin_secret = "e2e-admin-secret-0123456789";
  Server server(options);
  server.Start();
  EXPECT_EQ(server.Output().find("admin secret:"), std::string::npos) << server.Output();
  Client admin(server, *options.admin_secret);
  AQ_EXPECT_STATUS(admin.Post("/v1/projects", {{"name", UniqueName("p")}}), 201);
  Client wrong(server, "e2e-admin-secret-0123456780");
  AQ_EXPECT_STATUS(wrong.Post("/v1/projects", {{"name", UniqueName("p")}}), 401);
}

TEST(RoutesStartup, TheAdminSecretIsPrintedOnceAndSurvivesARestart) {
  Server server;
  server.Start();
  std::string secret = server.admin_secret();
  ASSERT_FALSE(secret.empty());
  std::string p = UniqueName("p");
  AQ_ASSERT_STATUS(Client(server, secret).Post("/v1/projects", {{"name", p}}), 201);
  size_t before = server.Output().size();
  server.Kill();
  server.Start();
  EXPECT_EQ(server.Output().substr(before).find("admin secret:"), std::string::npos)
      << "the secret is printed only on a fresh data dir: " << server.Output().substr(before);
  AQ_EXPECT_STATUS(Client(server, secret).Post("/v1/projects", {{"name", p}}), 409)
      << "the project and the secret survive a restart";
}

}  // namespace
}  // namespace aquifer::e2e
