// The authorization matrix of DESIGN.md "Catalog, auth, usage" and the status
// code rules: every route, cursor, job and subscription with no secret (401),
// a wrong secret (401), another project's secret (404, the same body as for a
// table that does not exist), a read-only secret writing or managing (403), a
// write-only secret reading (403), and SQL naming tables the secret may not
// read (404). No error body may carry record data.

#include <regex>
#include <thread>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

// Values that must never appear in an error body.
const char* const kSecretA = "secret_value_XYZ";
const char* const kSecretB = "b_secret_QQQ";

struct World {
  std::string a, a1, a2, victim;  // project A with tables a1, a2 and a deletable one
  std::string b, b1;              // project B
  std::string rw_a, ro_a1, wo_a1, mg_a, rw_b;
  std::string cursor_a1;          // a replay cursor on a1 (rw_a's)
  std::string change_a1;          // a change cursor on a1
  std::string job_rw_a;           // a done job of rw_a over a.a1
  std::string job_cursor;         // rw_a's job-rows cursor for that job
};

class Authorization : public ServerSuite {
 protected:
  void SetUp() override {
    ServerSuite::SetUp();
    if (HasFatalFailure()) return;
    if (!world_) {
      world_ = std::make_unique<World>();
      BuildWorld(*world_);
    }
    ASSERT_FALSE(world_->job_cursor.empty()) << "setting up the world failed";
    w = *world_;
  }

  void BuildWorld(World& x) {
    x.a = MakeProject("a");
    x.a1 = MakeTable(x.a, "a1");
    x.a2 = MakeTable(x.a, "a2");
    x.victim = MakeTable(x.a, "victim");
    x.b = MakeProject("b");
    x.b1 = MakeTable(x.b, "b1");
    auto admin = Admin();
    std::vector<json> rows;
    for (int i = 0; i < 5; ++i) rows.push_back(Event(kSecretA, i, 1.0, kSecretA));
    ASSERT_EQ(admin.Post(TablePath(x.a, x.a1) + "/records?wait=index,warehouse", rows).status, 200);
    ASSERT_EQ(admin.Post(TablePath(x.a, x.a2) + "/records?wait=index,warehouse",
                         json::array({Event(kSecretA, 1, 1.0, kSecretA)})).status, 200);
    ASSERT_EQ(admin.Post(TablePath(x.b, x.b1) + "/records?wait=index",
                         json::array({Event(kSecretB, 1, 1.0, kSecretB)})).status, 200);
    x.rw_a = MintSecret(x.a, {{"read", {"*"}}, {"write", {"*"}}});
    x.ro_a1 = MintSecret(x.a, {{"read", {x.a1}}});
    x.wo_a1 = MintSecret(x.a, {{"read", json::array()}, {"write", {x.a1}}});
    x.mg_a = MintSecret(x.a, {{"read", json::array()}, {"manage", true}});
    x.rw_b = MintSecret(x.b, {{"read", {"*"}}, {"write", {"*"}}});
    auto r = As(x.rw_a).Get(TablePath(x.a, x.a1) + "/records?limit=1");
    ASSERT_EQ(r.status, 200) << r.Describe();
    x.cursor_a1 = r.j().value("next_cursor", "");
    x.change_a1 = r.j().value("change_cursor", "");
    ASSERT_FALSE(x.cursor_a1.empty() || x.change_a1.empty()) << r.Describe();
    auto rw = As(x.rw_a);
    auto job = rw.Post("/v1/sql", {{"query", "SELECT seq FROM " + x.a + "." + x.a1 + " ORDER BY seq"}});
    ASSERT_EQ(job.status, 202) << job.Describe();
    x.job_rw_a = job.j().value("job_id", "");
    for (int i = 0; i < 400; ++i) {
      auto s = rw.Get("/v1/jobs/" + x.job_rw_a);
      ASSERT_EQ(s.status, 200) << s.Describe();
      if (s.j().value("status", "") == "done") break;
      ASSERT_NE(s.j().value("status", ""), "failed") << s.Describe();
      std::this_thread::sleep_for(50ms);
    }
    auto rows_page = rw.Get("/v1/jobs/" + x.job_rw_a + "/rows?limit=1");
    ASSERT_EQ(rows_page.status, 200) << rows_page.Describe();
    x.job_cursor = rows_page.j().value("next_cursor", "");
    ASSERT_FALSE(x.job_cursor.empty()) << rows_page.Describe();
  }

  struct Call {
    std::string what;
    std::string method;
    std::string target;
    std::string body;
  };

  // Every HTTP route of DESIGN.md that needs a secret, aimed at project A / table a1.
  std::vector<Call> EveryRoute() {
    std::string t = TablePath(w.a, w.a1);
    std::string rec = json::array({Event("intruder", 99, 0.0)}).dump();
    return {
        {"create project", "POST", "/v1/projects", json{{"name", UniqueName("x")}}.dump()},
        {"create table", "POST", "/v1/projects/" + w.a + "/tables",
         json{{"name", UniqueName("x")}, {"schema", EventSchema()}, {"key", EventKey()}}.dump()},
        {"describe table", "GET", t, ""},
        {"list tables", "GET", "/v1/projects/" + w.a + "/tables", ""},
        {"delete table", "DELETE", TablePath(w.a, w.victim), ""},
        {"write", "POST", t + "/records", rec},
        {"write wait=index", "POST", t + "/records?wait=index", rec},
        {"index query", "GET", t + "/records?filter=" + UrlEncode(R"({"seq": 1})"), ""},
        {"log", "GET", t + "/log", ""},
        {"cursor", "GET", "/v1/cursor?cursor=" + UrlEncode(w.cursor_a1), ""},
        {"change cursor", "GET", "/v1/cursor?cursor=" + UrlEncode(w.change_a1), ""},
        {"job-rows cursor", "GET", "/v1/cursor?cursor=" + UrlEncode(w.job_cursor), ""},
        {"sql dry run", "POST", "/v1/sql",
         json{{"query", "SELECT * FROM " + w.a + "." + w.a1}, {"dry_run", true}}.dump()},
        {"sql submit", "POST", "/v1/sql",
         json{{"query", "SELECT * FROM " + w.a + "." + w.a1}, {"dry_run", false}}.dump()},
        {"job status", "GET", "/v1/jobs/" + w.job_rw_a, ""},
        {"job rows", "GET", "/v1/jobs/" + w.job_rw_a + "/rows", ""},
        {"mint secret", "POST", "/v1/projects/" + w.a + "/secrets", json{{"read", {"*"}}}.dump()},
        {"usage", "GET", "/v1/usage", ""},
        {"metrics", "GET", "/metrics", ""},
    };
  }

  Response Do(Client& c, const Call& call) {
    return c.Request(call.method, call.target, call.body, {{"Content-Type", "application/json"}});
  }

  // An error body: DESIGN.md's shape and no record values.
  void ExpectCleanError(const Response& r, const std::string& what) {
    EXPECT_TRUE(IsErrorBody(r)) << what;
    EXPECT_EQ(r.body.find(kSecretA), std::string::npos) << what << " leaked a record: " << r.Describe();
    EXPECT_EQ(r.body.find(kSecretB), std::string::npos) << what << " leaked a record: " << r.Describe();
  }

  void Expect(const Response& r, int status, const std::string& what) {
    EXPECT_EQ(r.status, status) << what << ": " << r.Describe();
    if (r.status >= 400) ExpectCleanError(r, what);
  }

  // Replaces each name by a placeholder so two not-found bodies can be compared.
  static std::string Normalize(std::string body, const std::vector<std::string>& names) {
    for (const auto& n : names) {
      for (size_t pos; (pos = body.find(n)) != std::string::npos;) body.replace(pos, n.size(), "<NAME>");
    }
    return body;
  }

  // Opens a WebSocket (header auth unless `secret_in_message`), subscribes to
  // `cursor`, and answers the first message (or nullopt).
  std::optional<json> Subscribe(WsClient& ws, const std::string& secret, const std::string& cursor,
                                bool secret_in_message = false, std::string* connect_error = nullptr) {
    std::string err = ws.Connect(server_->host(), server_->port(), secret_in_message ? "" : secret);
    if (connect_error) *connect_error = err;
    if (!err.empty()) return std::nullopt;
    json sub = {{"type", "subscribe"}, {"cursor", cursor}};
    if (secret_in_message) sub["secret"] = secret;
    if (!ws.Send(sub)) return std::nullopt;
    // Write something so a wrongly accepted subscription has records to leak.
    auto admin = Admin();
    admin.Post(TablePath(w.a, w.a1) + "/records?wait=log", json::array({Event(kSecretA, 1000, 1.0, kSecretA)}));
    return ws.Receive(5s);
  }

  // The subscription must be refused: an upgrade refused with `status`, or an
  // error message; never records.
  void ExpectSubscriptionRefused(const std::string& secret, const std::string& cursor, int status,
                                 const std::string& what, bool secret_in_message = false) {
    WsClient ws;
    std::string connect_error;
    auto m = Subscribe(ws, secret, cursor, secret_in_message, &connect_error);
    if (!connect_error.empty()) {
      EXPECT_EQ(connect_error.rfind("HTTP " + std::to_string(status), 0), 0u)
          << what << ": the upgrade was refused with " << connect_error;
      EXPECT_EQ(connect_error.find(kSecretA), std::string::npos) << what << " leaked: " << connect_error;
      return;
    }
    ASSERT_TRUE(m.has_value()) << what << ": no answer to subscribe (" << ws.close_reason() << ")";
    EXPECT_EQ((*m)["type"], "error") << what << ": " << m->dump();
    EXPECT_TRUE(m->contains("error") && (*m)["error"].is_object() && (*m)["error"].contains("code") &&
                (*m)["error"].contains("message"))
        << what << ": " << m->dump();
    EXPECT_EQ(m->dump().find(kSecretA), std::string::npos) << what << " leaked: " << m->dump();
    // Nothing else arrives (no records after the error).
    for (auto next = ws.Receive(1s); next; next = ws.Receive(500ms)) {
      EXPECT_NE((*next)["type"], "records") << what << " got records: " << next->dump();
    }
  }

  static std::unique_ptr<World> world_;
  World w;
};

std::unique_ptr<World> Authorization::world_;

TEST_F(Authorization, PublicRoutesNeedNoSecret) {
  Client anon(*server_, "");
  Expect(anon.Get("/healthz"), 200, "healthz");
  Expect(anon.Get("/openapi.json"), 200, "openapi.json");
}

TEST_F(Authorization, EveryRouteAnswers401WithoutASecret) {
  Client anon(*server_, "");
  for (const auto& call : EveryRoute()) Expect(Do(anon, call), 401, "no secret: " + call.what);
}

TEST_F(Authorization, EveryRouteAnswers401WithAWrongOrMalformedSecret) {
  Client wrong(*server_, "aq_" + std::string(44, 'W'));
  for (const auto& call : EveryRoute()) Expect(Do(wrong, call), 401, "wrong secret: " + call.what);
  // The admin secret, one character changed.
  std::string admin = server_->admin_secret();
  admin.back() = admin.back() == 'x' ? 'y' : 'x';
  Client almost(*server_, admin);
  for (const auto& call : EveryRoute()) Expect(Do(almost, call), 401, "admin secret off by one: " + call.what);
  Client raw(*server_, "");
  for (const std::string& header : std::vector<std::string>{"Basic " + server_->admin_secret(), server_->admin_secret(), "Bearer", "Bearer "}) {
    auto r = raw.Request("GET", TablePath(w.a, w.a1) + "/records", "", {{"Authorization", header}});
    Expect(r, 401, "Authorization: '" + header + "'");
  }
}

TEST_F(Authorization, AnotherProjectsSecretGets404LikeATableThatDoesNotExist) {
  auto b = As(w.rw_b);
  std::string ghost_p = UniqueName("ghost"), ghost_t = UniqueName("ghost");
  struct Pair {
    std::string what, method, real, ghost, body;
  };
  std::string rec = json::array({Event("intruder", 1, 0.0)}).dump();
  std::vector<Pair> pairs = {
      {"describe", "GET", TablePath(w.a, w.a1), TablePath(ghost_p, ghost_t), ""},
      {"delete", "DELETE", TablePath(w.a, w.victim), TablePath(ghost_p, ghost_t), ""},
      {"write", "POST", TablePath(w.a, w.a1) + "/records", TablePath(ghost_p, ghost_t) + "/records", rec},
      {"index query", "GET", TablePath(w.a, w.a1) + "/records", TablePath(ghost_p, ghost_t) + "/records", ""},
      {"log", "GET", TablePath(w.a, w.a1) + "/log", TablePath(ghost_p, ghost_t) + "/log", ""},
      {"create table", "POST", "/v1/projects/" + w.a + "/tables", "/v1/projects/" + ghost_p + "/tables",
       json{{"name", "zz"}, {"schema", EventSchema()}, {"key", EventKey()}}.dump()},
      {"mint secret", "POST", "/v1/projects/" + w.a + "/secrets", "/v1/projects/" + ghost_p + "/secrets",
       json{{"read", {"*"}}}.dump()},
      {"list tables", "GET", "/v1/projects/" + w.a + "/tables", "/v1/projects/" + ghost_p + "/tables", ""},
  };
  for (const auto& pr : pairs) {
    auto real = b.Request(pr.method, pr.real, pr.body, {{"Content-Type", "application/json"}});
    auto ghost = b.Request(pr.method, pr.ghost, pr.body, {{"Content-Type", "application/json"}});
    Expect(real, 404, "B's secret on A: " + pr.what);
    Expect(ghost, 404, "B's secret on a missing table: " + pr.what);
    EXPECT_EQ(Normalize(real.body, {w.a, w.a1, w.victim}), Normalize(ghost.body, {ghost_p, ghost_t}))
        << pr.what << ": the body tells an existing table from a missing one";
  }
  // The same holds for the admin asking about a missing table vs B asking about A's.
  auto admin_ghost = Admin().Get(TablePath(ghost_p, ghost_t));
  auto b_real = b.Get(TablePath(w.a, w.a1));
  EXPECT_EQ(Normalize(admin_ghost.body, {ghost_p, ghost_t}), Normalize(b_real.body, {w.a, w.a1}));
  // SQL naming A's table.
  for (bool dry : {true, false}) {
    auto real = b.Post("/v1/sql", {{"query", "SELECT * FROM " + w.a + "." + w.a1}, {"dry_run", dry}});
    auto ghost = b.Post("/v1/sql", {{"query", "SELECT * FROM " + ghost_p + "." + ghost_t}, {"dry_run", dry}});
    Expect(real, 404, "B's SQL on A's table");
    Expect(ghost, 404, "B's SQL on a missing table");
    EXPECT_EQ(Normalize(real.body, {w.a, w.a1}), Normalize(ghost.body, {ghost_p, ghost_t}));
    auto join = b.Post("/v1/sql", {{"query", "SELECT * FROM " + w.b + "." + w.b1 + " x JOIN " + w.a + "." + w.a1 +
                                                 " y ON x.seq = y.seq"},
                                   {"dry_run", dry}});
    Expect(join, 404, "B's SQL joining its table with A's");
  }
  // Cursors, change cursors and job cursors of A.
  Expect(b.Get("/v1/cursor?cursor=" + UrlEncode(w.cursor_a1)), 404, "B reads A's replay cursor");
  Expect(b.Get("/v1/cursor?cursor=" + UrlEncode(w.change_a1)), 404, "B reads A's change cursor");
  Expect(b.Get("/v1/cursor?cursor=" + UrlEncode(w.job_cursor)), 404, "B reads A's job cursor");
  // B's own table works, and its usage does not show A.
  Expect(b.Get(TablePath(w.b, w.b1) + "/records"), 200, "B reads its own table");
  auto usage = b.Get("/v1/usage");
  Expect(usage, 200, "B's usage");
  EXPECT_EQ(usage.body.find(w.a), std::string::npos) << "B's usage shows project A: " << usage.Describe();
  // The victim table was not deleted by anyone.
  Expect(Admin().Get(TablePath(w.a, w.victim)), 200, "the victim table still exists");
}

TEST_F(Authorization, AReadOnlySecretCannotWriteOrManageAndSeesOnlyItsTable) {
  auto ro = As(w.ro_a1);
  Expect(ro.Get(TablePath(w.a, w.a1) + "/records"), 200, "read a1");
  Expect(ro.Get(TablePath(w.a, w.a1) + "/log"), 200, "log a1");
  Expect(ro.Get(TablePath(w.a, w.a1)), 200, "describe a1");
  Expect(ro.Get("/v1/cursor?cursor=" + UrlEncode(w.cursor_a1)), 200, "another secret's cursor on a readable table");
  Expect(ro.Post(TablePath(w.a, w.a1) + "/records", json::array({Event("ro", 1, 1)})), 403, "write a1");
  Expect(ro.Post(TablePath(w.a, w.a1) + "/records?wait=index", json::array({Event("ro", 1, 1)})), 403,
         "write a1 with wait");
  Expect(ro.Delete(TablePath(w.a, w.a1)), 403, "delete a1");
  Expect(ro.Post("/v1/projects/" + w.a + "/tables", {{"name", UniqueName("t")}, {"schema", EventSchema()},
                                                     {"key", EventKey()}}),
         403, "create a table in A");
  Expect(ro.Post("/v1/projects/" + w.a + "/secrets", {{"read", {w.a1}}}), 403, "mint a secret in A");
  Expect(ro.Post("/v1/projects", {{"name", UniqueName("p")}}), 403, "create a project");
  // a2 is invisible: 404 with the body of a missing table.
  std::string ghost = UniqueName("ghost");
  auto real = ro.Get(TablePath(w.a, w.a2) + "/records");
  auto missing = ro.Get(TablePath(w.a, ghost) + "/records");
  Expect(real, 404, "read a2");
  EXPECT_EQ(Normalize(real.body, {w.a2}), Normalize(missing.body, {ghost}));
  Expect(ro.Post(TablePath(w.a, w.a2) + "/records", json::array({Event("ro", 1, 1)})), 404, "write a2");
  Expect(ro.Get(TablePath(w.a, w.a2) + "/log"), 404, "log a2");
  Expect(ro.Get(TablePath(w.a, w.a2)), 404, "describe a2");
  // Listing A's tables shows a1 only.
  auto listed = ro.Get("/v1/projects/" + w.a + "/tables");
  Expect(listed, 200, "list A's tables");
  ASSERT_TRUE(listed.is_json) << listed.Describe();
  ASSERT_EQ(listed.j()["tables"].size(), 1u) << listed.Describe();
  EXPECT_EQ(listed.j()["tables"][0]["name"], w.a1);
  // SQL: a1 yes, a2 no (404, like a missing table), and not joined with a1 either.
  Expect(ro.Post("/v1/sql", {{"query", "SELECT count(*) FROM " + w.a + "." + w.a1}, {"dry_run", true}}), 200,
         "SQL on a1");
  Expect(ro.Post("/v1/sql", {{"query", "SELECT * FROM " + w.a + "." + w.a2}, {"dry_run", true}}), 404, "SQL on a2");
  Expect(ro.Post("/v1/sql", {{"query", "SELECT * FROM " + w.a + "." + w.a2}, {"dry_run", false}}), 404,
         "SQL job on a2");
  Expect(ro.Post("/v1/sql", {{"query", "SELECT * FROM " + w.a + "." + w.a1 + " WHERE seq IN (SELECT seq FROM " +
                                           w.a + "." + w.a2 + ")"}}),
         404, "SQL on a1 with a subquery on a2");
  // A cursor of a2 (obtained by rw_a) is not readable with ro_a1.
  auto a2page = As(w.rw_a).Get(TablePath(w.a, w.a2) + "/log?limit=1");
  ASSERT_EQ(a2page.status, 200) << a2page.Describe();
  std::string a2cursor = a2page.j().value("change_cursor", "");
  Expect(ro.Get("/v1/cursor?cursor=" + UrlEncode(a2cursor)), 404, "ro reads a2's change cursor");
  // The victim table was not deleted.
  Expect(Admin().Get(TablePath(w.a, w.victim)), 200, "the victim table still exists");
  Expect(Admin().Get(TablePath(w.a, w.a1)), 200, "a1 still exists");
}

TEST_F(Authorization, AWriteOnlySecretCannotRead) {
  auto wo = As(w.wo_a1);
  Expect(wo.Post(TablePath(w.a, w.a1) + "/records", json::array({Event("wo", 1, 1)})), 202, "write a1");
  Expect(wo.Get(TablePath(w.a, w.a1) + "/records"), 403, "index query on a1");
  Expect(wo.Get(TablePath(w.a, w.a1) + "/records?filter=" + UrlEncode(R"({"seq":1})")), 403, "filtered query");
  Expect(wo.Get(TablePath(w.a, w.a1) + "/log"), 403, "log of a1");
  Expect(wo.Get("/v1/cursor?cursor=" + UrlEncode(w.cursor_a1)), 403, "a replay cursor of a1");
  Expect(wo.Get("/v1/cursor?cursor=" + UrlEncode(w.change_a1)), 403, "a change cursor of a1");
  for (bool dry : {true, false}) {
    auto r = wo.Post("/v1/sql", {{"query", "SELECT * FROM " + w.a + "." + w.a1}, {"dry_run", dry}});
    EXPECT_TRUE(r.status == 403 || r.status == 404) << "SQL by a write-only secret: " << r.Describe();
    ExpectCleanError(r, "SQL by a write-only secret");
  }
  Expect(wo.Post(TablePath(w.a, w.a2) + "/records", json::array({Event("wo", 1, 1)})), 404, "write a2");
  Expect(wo.Post("/v1/projects/" + w.a + "/secrets", {{"read", {"*"}}}), 403, "mint a secret");
  auto listed = wo.Get("/v1/projects/" + w.a + "/tables");
  Expect(listed, 200, "list A's tables");
  EXPECT_EQ(listed.j()["tables"], json::array()) << "a write-only secret lists a table it may not read";
}

TEST_F(Authorization, AManageSecretManagesItsProjectOnly) {
  auto mg = As(w.mg_a);
  std::string t = UniqueName("m");
  Expect(mg.Post("/v1/projects/" + w.a + "/tables", {{"name", t}, {"schema", EventSchema()}, {"key", EventKey()}}),
         201, "create a table in A");
  auto minted = mg.Post("/v1/projects/" + w.a + "/secrets", {{"read", {t}}});
  Expect(minted, 201, "mint a secret in A");
  Expect(mg.Post(TablePath(w.a, t) + "/records?wait=index", json::array({Event("m", 1, 1)})), 200,
         "manage implies write");
  Expect(mg.Get(TablePath(w.a, t) + "/records"), 200, "manage implies read");
  auto del = mg.Delete(TablePath(w.a, t));
  EXPECT_TRUE(del.status == 200 || del.status == 204) << del.Describe();
  Expect(mg.Post("/v1/projects/" + w.b + "/tables", {{"name", t}, {"schema", EventSchema()}, {"key", EventKey()}}),
         404, "create a table in B");
  Expect(mg.Post("/v1/projects/" + w.b + "/secrets", {{"read", {"*"}}}), 404, "mint a secret in B");
  Expect(mg.Post("/v1/projects", {{"name", UniqueName("p")}}), 403, "create a project");
  // A secret with read "*" sees tables created after it was minted.
  auto rw = As(w.rw_a);
  std::string later = MakeTable(w.a, "later");
  Expect(rw.Get(TablePath(w.a, later) + "/records"), 200, "\"*\" covers a table created later");
  // A table-scoped read does not carry over to a re-created table of the same name.
  std::string scoped = MintSecret(w.a, {{"read", {later}}});
  Expect(As(scoped).Get(TablePath(w.a, later) + "/records"), 200, "scoped read");
  ASSERT_TRUE(Admin().Delete(TablePath(w.a, later)).status / 100 == 2);
  ASSERT_EQ(Admin().Post("/v1/projects/" + w.a + "/tables",
                         {{"name", later}, {"schema", EventSchema()}, {"key", EventKey()}}).status, 201);
  Expect(As(scoped).Get(TablePath(w.a, later) + "/records"), 404, "a re-created table is not the granted one");
}

TEST_F(Authorization, JobsAndTheirRowsAreOnlyTheSubmittersAndTheAdmins) {
  std::string ghost = "00000000-0000-4000-8000-000000000000";
  Expect(As(w.rw_a).Get("/v1/jobs/" + w.job_rw_a), 200, "the submitter's job");
  Expect(As(w.rw_a).Get("/v1/jobs/" + w.job_rw_a + "/rows"), 200, "the submitter's rows");
  Expect(Admin().Get("/v1/jobs/" + w.job_rw_a), 200, "the admin sees every job");
  for (const auto& [who, secret] : std::vector<std::pair<std::string, std::string>>{
           {"another project's secret", w.rw_b},
           {"a secret that may read the same table", w.ro_a1},
           {"a manage secret of the project", w.mg_a},
           {"a write-only secret", w.wo_a1}}) {
    auto c = As(secret);
    auto status = c.Get("/v1/jobs/" + w.job_rw_a);
    auto rows = c.Get("/v1/jobs/" + w.job_rw_a + "/rows");
    auto cursor = c.Get("/v1/cursor?cursor=" + UrlEncode(w.job_cursor));
    auto missing = c.Get("/v1/jobs/" + ghost);
    Expect(status, 404, who + ": job status");
    Expect(rows, 404, who + ": job rows");
    Expect(cursor, 404, who + ": job-rows cursor");
    Expect(missing, 404, who + ": a missing job");
    EXPECT_EQ(Normalize(status.body, {w.job_rw_a}), Normalize(missing.body, {ghost}))
        << who << ": another's job and a missing job must look the same";
  }
}

TEST_F(Authorization, SubscriptionsCheckTheSecretOnTheUpgradeOrInTheMessage) {
  ExpectSubscriptionRefused("", w.change_a1, 401, "no secret");
  ExpectSubscriptionRefused("aq_" + std::string(44, 'W'), w.change_a1, 401, "a wrong secret");
  ExpectSubscriptionRefused("aq_" + std::string(44, 'W'), w.change_a1, 401, "a wrong secret in the message", true);
  ExpectSubscriptionRefused(w.rw_b, w.change_a1, 404, "another project's secret");
  ExpectSubscriptionRefused(w.wo_a1, w.change_a1, 403, "a write-only secret");
  ExpectSubscriptionRefused(w.ro_a1, w.cursor_a1, 400, "a replay cursor is not a change cursor");
  // A secret in the subscribe message (browsers) works like the header.
  for (bool in_message : {false, true}) {
    WsClient ws;
    auto first = Subscribe(ws, w.ro_a1, w.change_a1, in_message);
    ASSERT_TRUE(first.has_value()) << (in_message ? "secret in message" : "header") << ": no records ("
                                   << ws.close_reason() << ")";
    EXPECT_EQ((*first)["type"], "records") << first->dump();
  }
}

}  // namespace
}  // namespace aquifer::e2e
