// Limits at their edges (issue 11 item 5), against the real binary started
// with small limits so the edges are cheap to reach: the body limit
// (AQUIFER_SERVER_MAX_BODY_BYTES), records per write, record size and key size
// (the embedded lookup's max_records_in_batch, max_record_size, max_key_size),
// rows per read (limit 1..1000) and SQL result rows ([sql] max_result_rows).
// Each is tried at limit - 1, limit and limit + 1: the first two pass, the
// third is refused with the documented status (413 for the write limits,
// 400 for read limits, a failed job for SQL rows), and a refused write stores
// nothing (the log holds exactly the accepted records afterwards).

#include <memory>
#include <thread>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

constexpr size_t kBodyLimit = 8192;
constexpr size_t kRecordsLimit = 10;
constexpr size_t kRecordLimit = 512;
constexpr size_t kKeyLimit = 64;
constexpr int kSqlRowsLimit = 5;

// A table keyed by one string, with a string payload: the sizes of its
// records and keys grow one byte per character (ASCII).
json PadSchema() {
  return json::parse(R"({"type":"record","name":"pad","fields":[
      {"name":"id","type":"string"},{"name":"pad","type":"string"}]})");
}

class Limits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_env = {
        "AQUIFER_SERVER_MAX_BODY_BYTES=" + std::to_string(kBodyLimit),
        "AQUIFER_LOOKUP_MAX_RECORDS_IN_BATCH=" + std::to_string(kRecordsLimit),
        "AQUIFER_LOOKUP_MAX_RECORD_SIZE=" + std::to_string(kRecordLimit),
        "AQUIFER_LOOKUP_MAX_KEY_SIZE=" + std::to_string(kKeyLimit),
        "AQUIFER_SQL_MAX_RESULT_ROWS=" + std::to_string(kSqlRowsLimit),
    };
    server_ = new Server(options);
    try {
      server_->Start();
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(start_error_.empty()) << start_error_; }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "--- server output ---\n" << server_->OutputTail(3000) << "\n";
  }

  Client Admin() { return Client(*server_, server_->admin_secret()); }

  // A project with one PadSchema table; returns its path.
  std::string MakePadTable() {
    std::string p = UniqueName("p"), t = UniqueName("t");
    auto r = Admin().Post("/v1/projects", {{"name", p}});
    EXPECT_EQ(r.status, 201) << r.Describe();
    r = Admin().Post("/v1/projects/" + p + "/tables",
                     {{"name", t}, {"schema", PadSchema()}, {"key", json::array({"id"})}});
    EXPECT_EQ(r.status, 201) << r.Describe();
    project_ = p;
    table_ = t;
    return TablePath(p, t);
  }

  Response WriteNdjson(const std::string& path, const std::string& body) {
    return Admin().Request("POST", path + "/records?wait=log", body,
                           {{"Content-Type", "application/x-ndjson"}});
  }

  // The log must hold exactly `expected` records.
  void ExpectLogSize(size_t expected, const std::string& what) {
    auto c = Admin();
    std::string error;
    auto log = ReadWholeLog(c, project_, table_, &error);
    ASSERT_TRUE(error.empty()) << error;
    EXPECT_EQ(log.size(), expected) << what << ": " << json(log).dump().substr(0, 2000);
  }

  // 413 with the error shape and `too_large`.
  static void Expect413(const Response& r, const std::string& what) {
    EXPECT_EQ(r.status, 413) << what << ": " << r.Describe();
    EXPECT_TRUE(IsErrorBody(r)) << what;
    EXPECT_EQ(r.error_code(), "too_large") << what << ": " << r.Describe();
  }

  // Parses "takes N bytes" out of a too_large message.
  static size_t TakesBytes(const Response& r) {
    std::string message = r.is_json ? r.j()["error"].value("message", "") : "";
    size_t at = message.find("takes ");
    if (at == std::string::npos) return 0;
    return std::stoul(message.substr(at + 6));
  }

  static Server* server_;
  static std::string start_error_;
  std::string project_, table_;
};

Server* Limits::server_ = nullptr;
std::string Limits::start_error_;

std::string Record(const std::string& id, const std::string& pad) {
  return json{{"id", id}, {"pad", pad}}.dump();
}

TEST_F(Limits, BodySizeAtLimitMinusOneAndLimitIsAcceptedAndPlusOneIs413) {
  std::string path = MakePadTable();
  size_t accepted = 0;
  for (size_t size : {kBodyLimit - 1, kBodyLimit, kBodyLimit + 1}) {
    // One small record, then blank lines up to the exact size (blank lines are ignored).
    std::string body = Record("b" + std::to_string(size), "x") + "\n";
    ASSERT_LT(body.size(), size);
    body.append(size - body.size(), '\n');
    ASSERT_EQ(body.size(), size);
    auto r = WriteNdjson(path, body);
    if (size <= kBodyLimit) {
      EXPECT_EQ(r.status, 200) << "body of " << size << " bytes: " << r.Describe();
      ++accepted;
    } else {
      Expect413(r, "body of " + std::to_string(size) + " bytes");
      EXPECT_NE(r.body.find(std::to_string(kBodyLimit)), std::string::npos) << "names the limit: " << r.Describe();
    }
  }
  ExpectLogSize(accepted, "after the body-size edge");
}

TEST_F(Limits, RecordsPerWriteAtLimitMinusOneAndLimitAreAcceptedAndPlusOneIs413) {
  std::string path = MakePadTable();
  size_t accepted = 0;
  for (size_t count : {kRecordsLimit - 1, kRecordsLimit, kRecordsLimit + 1}) {
    std::string body;
    for (size_t i = 0; i < count; ++i) body += Record("n" + std::to_string(count) + "_" + std::to_string(i), "x") + "\n";
    ASSERT_LT(body.size(), kBodyLimit);
    auto r = WriteNdjson(path, body);
    if (count <= kRecordsLimit) {
      EXPECT_EQ(r.status, 200) << count << " records: " << r.Describe();
      if (r.status == 200) {
        EXPECT_EQ(r.j().value("records", -1), static_cast<int>(count));
      }
      accepted += count;
    } else {
      Expect413(r, std::to_string(count) + " records");
      EXPECT_NE(r.body.find(std::to_string(kRecordsLimit) + " records"), std::string::npos) << r.Describe();
    }
  }
  ExpectLogSize(accepted, "after the records-per-write edge");
}

TEST_F(Limits, RecordSizeAtLimitMinusOneAndLimitIsAcceptedAndPlusOneIs413) {
  std::string path = MakePadTable();
  // The encoded size of a record grows one byte per pad character (the
  // length prefix stays 2 bytes between 64 and 8191): learn the overhead from
  // an oversized record's message, then aim at the edges.
  const size_t probe = kRecordLimit + 40;
  auto r = WriteNdjson(path, Record("r", std::string(probe, 'p')) + "\n");
  Expect413(r, "a record far over the limit");
  size_t taken = TakesBytes(r);
  ASSERT_GT(taken, probe) << r.Describe();
  size_t overhead = taken - probe;
  size_t accepted = 0;
  for (size_t size : {kRecordLimit - 1, kRecordLimit, kRecordLimit + 1}) {
    auto w = WriteNdjson(path, Record("r", std::string(size - overhead, 'p')) + "\n");
    if (size <= kRecordLimit) {
      EXPECT_EQ(w.status, 200) << "record of " << size << " bytes: " << w.Describe();
      ++accepted;  // the same key each time: the log keeps every version
    } else {
      Expect413(w, "record of " + std::to_string(size) + " bytes");
      EXPECT_EQ(TakesBytes(w), size) << w.Describe();
    }
  }
  // A batch with one oversized record among good ones stores none of them.
  std::string mixed = Record("ok1", "x") + "\n" + Record("big", std::string(kRecordLimit + 1 - overhead, 'p')) +
                      "\n" + Record("ok2", "x") + "\n";
  Expect413(WriteNdjson(path, mixed), "a batch holding one record over the limit");
  ExpectLogSize(accepted, "after the record-size edge");
}

TEST_F(Limits, KeySizeAtLimitMinusOneAndLimitIsAcceptedAndPlusOneIs413) {
  std::string path = MakePadTable();
  const size_t probe = kKeyLimit + 20;
  auto r = WriteNdjson(path, Record(std::string(probe, 'k'), "x") + "\n");
  Expect413(r, "a key far over the limit");
  size_t taken = TakesBytes(r);
  ASSERT_GT(taken, probe) << r.Describe();
  size_t overhead = taken - probe;
  size_t accepted = 0;
  for (size_t size : {kKeyLimit - 1, kKeyLimit, kKeyLimit + 1}) {
    auto w = WriteNdjson(path, Record(std::string(size - overhead, 'k'), "x") + "\n");
    if (size <= kKeyLimit) {
      EXPECT_EQ(w.status, 200) << "key of " << size << " bytes: " << w.Describe();
      ++accepted;
    } else {
      Expect413(w, "key of " + std::to_string(size) + " bytes");
      EXPECT_EQ(TakesBytes(w), size) << w.Describe();
    }
  }
  ExpectLogSize(accepted, "after the key-size edge");
}

TEST_F(Limits, RowsPerReadAre1To1000) {
  std::string path = MakePadTable();
  ASSERT_EQ(WriteNdjson(path, Record("a", "x") + "\n").status, 200);
  for (const char* route : {"/records", "/log"}) {
    for (int limit : {999, 1000}) {
      auto r = Admin().Get(path + route + "?limit=" + std::to_string(limit));
      EXPECT_EQ(r.status, 200) << route << " limit=" << limit << ": " << r.Describe();
    }
    auto r = Admin().Get(path + std::string(route) + "?limit=1001");
    EXPECT_EQ(r.status, 400) << route << " limit=1001: " << r.Describe();
    EXPECT_TRUE(IsErrorBody(r));
    EXPECT_NE(r.body.find("limit"), std::string::npos) << r.Describe();
    r = Admin().Get(path + std::string(route) + "?limit=0");
    EXPECT_EQ(r.status, 400) << route << " limit=0: " << r.Describe();
    r = Admin().Get(path + std::string(route) + "?limit=1");
    EXPECT_EQ(r.status, 200) << route << " limit=1: " << r.Describe();
  }
}

TEST_F(Limits, SqlResultRowsAtLimitMinusOneAndLimitSucceedAndPlusOneFailsTheJob) {
  std::string path = MakePadTable();
  std::string body;
  for (int i = 0; i < kSqlRowsLimit + 1; ++i) body += Record("s" + std::to_string(i), "x") + "\n";
  auto w = Admin().Request("POST", path + "/records?wait=warehouse", body,
                           {{"Content-Type", "application/x-ndjson"}});
  ASSERT_EQ(w.status, 200) << w.Describe();
  for (int rows : {kSqlRowsLimit - 1, kSqlRowsLimit, kSqlRowsLimit + 1}) {
    auto c = Admin();
    auto r = c.Post("/v1/sql", {{"query", "SELECT id FROM " + project_ + "." + table_ + " LIMIT " +
                                              std::to_string(rows)}});
    ASSERT_EQ(r.status, 202) << r.Describe();
    std::string id = r.j().value("job_id", "");
    json job;
    for (int i = 0; i < 600; ++i) {
      auto s = c.Get("/v1/jobs/" + id);
      ASSERT_EQ(s.status, 200) << s.Describe();
      job = s.j();
      if (job.value("status", "") != "pending" && job.value("status", "") != "running") break;
      std::this_thread::sleep_for(50ms);
    }
    if (rows <= kSqlRowsLimit) {
      EXPECT_EQ(job.value("status", ""), "done") << rows << " rows: " << job.dump();
      auto page = c.Get("/v1/jobs/" + id + "/rows");
      ASSERT_EQ(page.status, 200) << page.Describe();
      EXPECT_EQ(page.j()["data"].size(), static_cast<size_t>(rows));
    } else {
      EXPECT_EQ(job.value("status", ""), "failed") << rows << " rows: " << job.dump();
      EXPECT_NE(job.dump().find(std::to_string(kSqlRowsLimit) + " rows"), std::string::npos) << job.dump();
      auto page = c.Get("/v1/jobs/" + id + "/rows");
      EXPECT_EQ(page.status, 409) << page.Describe();
    }
  }
}

// --- Limits added with this suite: subscriptions per secret and per server,
// requests per second per secret ([server] max_subscriptions,
// max_subscriptions_per_secret, rate_limit_per_secret, rate_limit_burst).

constexpr int kServerSubscriptions = 3;
constexpr int kSecretSubscriptions = 2;
constexpr int kBurst = 20;

class NewLimits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ServerOptions options;
    options.extra_env = {
        "AQUIFER_SERVER_MAX_SUBSCRIPTIONS=" + std::to_string(kServerSubscriptions),
        "AQUIFER_SERVER_MAX_SUBSCRIPTIONS_PER_SECRET=" + std::to_string(kSecretSubscriptions),
        // One request per 100 s once the burst is spent: no refill while a test runs.
        "AQUIFER_SERVER_RATE_LIMIT_PER_SECRET=0.01",
        "AQUIFER_SERVER_RATE_LIMIT_BURST=" + std::to_string(kBurst),
    };
    server_ = new Server(options);
    try {
      server_->Start();
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(start_error_.empty()) << start_error_; }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "--- server output ---\n" << server_->OutputTail(3000) << "\n";
  }

  // A project, a table and `count` secrets reading it (admin requests: 2 + count).
  std::vector<std::string> Setup(int count) {
    Client admin(*server_, server_->admin_secret());
    project_ = UniqueName("p");
    table_ = UniqueName("t");
    EXPECT_EQ(admin.Post("/v1/projects", {{"name", project_}}).status, 201);
    EXPECT_EQ(admin.Post("/v1/projects/" + project_ + "/tables",
                         {{"name", table_}, {"schema", PadSchema()}, {"key", json::array({"id"})}})
                  .status,
              201);
    std::vector<std::string> secrets;
    for (int i = 0; i < count; ++i) {
      auto r = admin.Post("/v1/projects/" + project_ + "/secrets", {{"read", json::array({"*"})}});
      EXPECT_EQ(r.status, 201) << r.Describe();
      secrets.push_back(r.is_json ? r.j().value("secret", "") : "");
    }
    return secrets;
  }

  // A change cursor of the table, read as `secret` (one request).
  std::string ChangeCursor(const std::string& secret) {
    auto r = Client(*server_, secret).Get(TablePath(project_, table_) + "/records?limit=1");
    EXPECT_EQ(r.status, 200) << r.Describe();
    return r.is_json && r.j()["change_cursor"].is_string() ? r.j()["change_cursor"].get<std::string>() : "";
  }

  // Opens a subscription with the secret in the Authorization header: "" or
  // the refused upgrade ("HTTP 429 ...").
  std::string Open(WsClient& ws, const std::string& secret, const std::string& cursor) {
    std::string error = ws.Connect(server_->host(), server_->port(), secret);
    if (error.empty()) {
      EXPECT_TRUE(ws.Send(json{{"type", "subscribe"}, {"cursor", cursor}}));
    }
    return error;
  }

  // Open, retried while refused with 429 (a closed session frees its slots
  // once the server has seen the close), for up to 10 s.
  std::unique_ptr<WsClient> OpenWithin10s(const std::string& secret, const std::string& cursor,
                                          std::string* error) {
    for (int i = 0; i < 100; ++i) {
      auto ws = std::make_unique<WsClient>();
      *error = Open(*ws, secret, cursor);
      if (error->rfind("HTTP 429", 0) != 0) return ws;
      std::this_thread::sleep_for(100ms);
    }
    return nullptr;
  }

  static Server* server_;
  static std::string start_error_;
  std::string project_, table_;
};

Server* NewLimits::server_ = nullptr;
std::string NewLimits::start_error_;

TEST_F(NewLimits, RequestsPerSecretAreLimitedTo429WithRetryAfterAndOtherSecretsAreNot) {
  std::vector<std::string> secrets = Setup(2);
  Client a(*server_, secrets[0]);
  // The burst: requests 1 .. kBurst pass (kBurst - 1 and kBurst among them).
  for (int i = 1; i <= kBurst; ++i) {
    auto r = a.Get("/v1/usage");
    ASSERT_EQ(r.status, 200) << "request " << i << " of a burst of " << kBurst << ": " << r.Describe();
  }
  // kBurst + 1: refused, with the seconds until a token is back (1 per 100 s).
  auto over = a.Get("/v1/usage");
  EXPECT_EQ(over.status, 429) << over.Describe();
  EXPECT_TRUE(IsErrorBody(over));
  EXPECT_EQ(over.error_code(), "resource_exhausted") << over.Describe();
  std::string retry_after = over.header("Retry-After");
  ASSERT_FALSE(retry_after.empty()) << over.Describe();
  EXPECT_GE(std::stoll(retry_after), 1) << retry_after;
  EXPECT_LE(std::stoll(retry_after), 100) << retry_after;
  // Another secret is not affected.
  auto b = Client(*server_, secrets[1]).Get("/v1/usage");
  EXPECT_EQ(b.status, 200) << "another secret: " << b.Describe();
  // No secret: 401 comes first, not 429.
  EXPECT_EQ(Client(*server_, "").Get("/v1/usage").status, 401);
}

TEST_F(NewLimits, SubscriptionsPerSecretAndPerServerAreLimited) {
  std::vector<std::string> secrets = Setup(3);
  std::string c0 = ChangeCursor(secrets[0]), c1 = ChangeCursor(secrets[1]), c2 = ChangeCursor(secrets[2]);
  ASSERT_FALSE(c0.empty() || c1.empty() || c2.empty());
  // Per secret (limit 2): the first (limit - 1) and second (limit) open, the third is 429.
  WsClient a1, a2, a3;
  EXPECT_EQ(Open(a1, secrets[0], c0), "");
  EXPECT_EQ(Open(a2, secrets[0], c0), "");
  std::string refused = Open(a3, secrets[0], c0);
  EXPECT_EQ(refused.rfind("HTTP 429", 0), 0u) << refused;
  EXPECT_NE(refused.find("max_subscriptions_per_secret"), std::string::npos) << refused;
  // The same secret in the subscribe message (no header): an error message.
  {
    WsClient ws;
    ASSERT_EQ(ws.Connect(server_->host(), server_->port(), ""), "");
    ASSERT_TRUE(ws.Send(json{{"type", "subscribe"}, {"cursor", c0}, {"secret", secrets[0]}}));
    auto m = ws.Receive(10s);
    ASSERT_TRUE(m.has_value()) << ws.close_reason();
    EXPECT_EQ((*m)["type"], "error") << m->dump();
    EXPECT_EQ((*m)["error"].value("code", ""), "resource_exhausted") << m->dump();
  }
  // Per server (limit 3): a third subscription of another secret is the limit;
  // a fourth of a third secret is 429.
  // (The refused session above frees its server slot when it has closed:
  // retried for up to 10 s.)
  std::string opened;
  auto b1 = OpenWithin10s(secrets[1], c1, &opened);
  EXPECT_EQ(opened, "");
  WsClient c1ws;
  refused = Open(c1ws, secrets[2], c2);
  EXPECT_EQ(refused.rfind("HTTP 429", 0), 0u) << refused;
  EXPECT_NE(refused.find("max_subscriptions"), std::string::npos) << refused;
  // Closing one frees its slots: the third secret gets in (the server sees
  // the close soon after; retried for up to 10 s).
  a1.Close();
  auto c2ws = OpenWithin10s(secrets[2], c2, &opened);
  EXPECT_EQ(opened, "") << "a closed subscription did not free its slot";
}

}  // namespace
}  // namespace aquifer::e2e
