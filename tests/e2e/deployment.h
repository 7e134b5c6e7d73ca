#pragma once

// A multi-process deployment on Postgres (the queue and the lookup on Kafka if
// asked) for the e2e suites (gtest helpers):
//
//   OwnPostgres  a PostgreSQL server of the test's own, started and stopped
//                with scripts/peers/postgres (AQUIFER_PG_PEER_SCRIPT), which
//                the test may halt (immediate mode) and resume.
//   Deployment   a config file putting all four drivers on one Postgres (a
//                fresh schema per test), the catalog and the cursor/secret
//                keys shared by every process, and `aquifer serve --role ...`
//                processes started from it, each with a data dir of its own.
//
// The Postgres URL comes from AQUIFER_TEST_POSTGRES (make test starts the
// shared test server); unset, the suites fail saying how to start one.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.h"
#include "harness.h"

namespace aquifer::e2e {

inline const char kAdminSecretForDeployments[] = "aq_deployment_test_admin_secret_0123";

// Runs `command` through the shell; answers its stdout; fails the test (and
// answers nullopt) when it exits non-zero.
inline std::optional<std::string> RunCommand(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen failed: " << command;
    return std::nullopt;
  }
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  int status = ::pclose(pipe);
  if (status != 0) {
    ADD_FAILURE() << "`" << command << "` failed (status " << status << "): " << out;
    return std::nullopt;
  }
  return out;
}

// A Postgres server of this test's own (scripts/peers/postgres start/stop).
class OwnPostgres {
 public:
  OwnPostgres() {
    std::optional<std::string> exports = RunCommand("bash " + Script() + " start");
    if (!exports) return;
    for (const char* name : {"AQUIFER_TEST_POSTGRES", "AQUIFER_PEER_POSTGRES_DIR"}) {
      std::string prefix = std::string("export ") + name + "=";
      size_t at = exports->find(prefix);
      if (at == std::string::npos) continue;
      size_t end = exports->find('\n', at);
      std::string value = exports->substr(at + prefix.size(), end == std::string::npos ? end : end - at - prefix.size());
      if (std::string(name) == "AQUIFER_TEST_POSTGRES") {
        url_ = value;
      } else {
        dir_ = value;
      }
    }
    if (url_.empty() || dir_.empty()) ADD_FAILURE() << "no exports from the postgres script: " << *exports;
  }
  ~OwnPostgres() {
    if (!dir_.empty()) (void)RunCommand("bash " + Script() + " stop " + dir_ + " 2>&1");
  }
  OwnPostgres(const OwnPostgres&) = delete;
  OwnPostgres& operator=(const OwnPostgres&) = delete;

  bool ok() const { return !url_.empty() && !dir_.empty(); }
  const std::string& url() const { return url_; }
  // Stops the server hard (immediate mode: backends die, no checkpoint).
  bool Halt() { return RunCommand("bash " + Script() + " halt " + dir_ + " 2>&1").has_value(); }
  // Starts it again on the same port and data; returns once it answers queries.
  bool Resume() { return RunCommand("bash " + Script() + " resume " + dir_ + " 2>&1").has_value(); }

 private:
  static std::string Script() { return AQUIFER_PG_PEER_SCRIPT; }
  std::string url_, dir_;
};

// The server of AQUIFER_TEST_POSTGRES; fails the test when it is unset.
inline std::string TestPostgresUrl() {
  const char* url = std::getenv("AQUIFER_TEST_POSTGRES");
  if (url == nullptr || *url == '\0') {
    ADD_FAILURE() << "AQUIFER_TEST_POSTGRES is not set: this suite needs a real PostgreSQL server. "
                     "Run `make test`, or `eval \"$(bash scripts/peers/postgres start)\"` before ctest "
                     "(and `bash scripts/peers/postgres stop` after)";
    return "";
  }
  return url;
}

struct DeploymentOptions {
  std::string postgres_url = {};  // DeploymentTest::MakeDeployment sets it to its server
  std::vector<std::string> server_lines = {};  // more `key = value` lines for [server]
  std::vector<std::string> queue_lines = {};   // more lines for [queue]
  // When set, [queue] is exactly these lines (another queue driver, e.g.
  // Kafka) instead of the Postgres driver's; queue_lines are not used then.
  std::vector<std::string> queue_section = {};
  // The same for [lookup], [warehouse] and [usage] (e.g. Cassandra).
  std::vector<std::string> lookup_section = {};
  std::vector<std::string> warehouse_section = {};
  std::vector<std::string> usage_section = {};
};

// One deployment: the config file every process reads, and its processes.
class Deployment {
 public:
  explicit Deployment(DeploymentOptions options)
      : options_(std::move(options)), dir_("aquifer-deploy"), schema_(UniqueName("e2e")) {
    config_path_ = dir_.path() + "/aquifer.toml";
    std::ofstream out(config_path_);
    out << ConfigText();
  }

  // The config file of the README's "Deploy on Postgres", for this test.
  std::string ConfigText() const {
    std::string text = "[server]\n";
    // The Postgres catalog (README "Deploy on Postgres"): it also keeps the
    // cursor and secret keys, so the processes share nothing else.
    const char* separator = options_.postgres_url.find('?') == std::string::npos ? "?" : "&";
    text += "catalog = \"" + options_.postgres_url + separator + "schema=" + schema_ + "_catalog\"\n";
    for (const auto& line : options_.server_lines) text += line + "\n";
    for (const char* section : {"queue", "lookup", "warehouse", "usage"}) {
      text += std::string("\n[") + section + "]\n";
      const std::vector<std::string>* own = std::string(section) == "queue"    ? &options_.queue_section
                                            : std::string(section) == "lookup" ? &options_.lookup_section
                                            : std::string(section) == "usage"  ? &options_.usage_section
                                                                               : &options_.warehouse_section;
      if (own != nullptr && !own->empty()) {
        for (const auto& line : *own) text += line + "\n";
        continue;
      }
      text += "driver = \"postgres\"\n";
      text += "url = \"" + options_.postgres_url + "\"\n";
      text += "schema = \"" + schema_ + "\"\n";
      if (std::string(section) == "queue") {
        for (const auto& line : options_.queue_lines) text += line + "\n";
      }
    }
    return text;
  }

  // Starts `aquifer serve --role <role> --config <file>` with a data dir of
  // its own; throws (gtest reports it) when it does not come up.
  Server& Start(const std::string& role) {
    ServerOptions server;
    server.data_dir = dir_.path() + "/" + role + std::to_string(servers_.size());
    server.admin_secret = kAdminSecretForDeployments;
    server.extra_args = {"--role", role, "--config", config_path_};
    servers_.push_back(std::make_unique<Server>(server));
    servers_.back()->Start();
    return *servers_.back();
  }

  const std::string& schema() const { return schema_; }
  const std::string& config_path() const { return config_path_; }
  std::string OutputTails(size_t n = 3000) const {
    std::string out;
    for (size_t i = 0; i < servers_.size(); ++i) {
      out += "--- process " + std::to_string(i) + " (" + servers_[i]->data_dir() + ") ---\n" +
             servers_[i]->OutputTail(n) + "\n";
    }
    return out;
  }

 private:
  DeploymentOptions options_;
  TempDir dir_;
  std::string schema_;
  std::string config_path_;
  std::vector<std::unique_ptr<Server>> servers_;
};

// The fixture of a deployment suite: the server of AQUIFER_TEST_POSTGRES (SetUp fails
// without it), the deployment MakeDeployment made, and its processes' output tails when
// the test failed.
class DeploymentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = TestPostgresUrl();
    ASSERT_FALSE(url_.empty());
  }
  void TearDown() override {
    if (HasFailure() && deployment_) std::cerr << deployment_->OutputTails();
  }

  // A deployment of `options` on that server (options.postgres_url is set here).
  Deployment& MakeDeployment(DeploymentOptions options) {
    options.postgres_url = url_;
    deployment_ = std::make_unique<Deployment>(std::move(options));
    return *deployment_;
  }

  std::string url_;
  std::unique_ptr<Deployment> deployment_;
};

// Every record of a table's index (following next_cursor), as `c`.
inline std::vector<json> ReadWholeIndex(Client& c, const std::string& project, const std::string& table,
                                        std::string* error = nullptr) {
  std::vector<json> out;
  auto r = c.Get(TablePath(project, table) + "/records?limit=1000");
  for (int pages = 0; pages < 100000; ++pages) {
    if (r.status != 200 || !r.is_json || !r.j().contains("data")) {
      if (error) *error = r.Describe();
      return out;
    }
    for (const auto& rec : r.j()["data"]) out.push_back(rec);
    const auto& next = r.j().value("next_cursor", json());
    if (!next.is_string() || next.get<std::string>().empty()) break;
    r = c.Get("/v1/cursor?limit=1000&cursor=" + UrlEncode(next.get<std::string>()));
  }
  return out;
}

// Runs one SQL query as a job through `c` and answers its rows (the first
// page, up to 1000); fails the test on any error.
inline json SqlRows(Client& c, const std::string& query) {
  auto job = c.Post("/v1/sql", {{"query", query}});
  if (job.status != 200 && job.status != 201 && job.status != 202) {
    ADD_FAILURE() << "SQL " << query << ": " << job.Describe();
    return json::array();
  }
  std::string id = job.j().value("job_id", "");
  for (int i = 0; i < 1200; ++i) {
    auto state = c.Get("/v1/jobs/" + id);
    if (state.status != 200) {
      ADD_FAILURE() << "job " << id << ": " << state.Describe();
      return json::array();
    }
    std::string status = state.j().value("status", "");
    if (status == "done") break;
    if (status != "pending" && status != "running") {
      ADD_FAILURE() << "job " << id << " ended " << state.Describe();
      return json::array();
    }
    std::this_thread::sleep_for(50ms);
  }
  auto rows = c.Get("/v1/jobs/" + id + "/rows?limit=1000");
  if (rows.status != 200 || !rows.is_json || !rows.j().contains("data")) {
    ADD_FAILURE() << "job rows " << id << ": " << rows.Describe();
    return json::array();
  }
  return rows.j()["data"];
}

// `count` events of user `user` with seq first_seq, first_seq + 1, ...
inline json EventBatch(int64_t first_seq, int count, const std::string& user = "u") {
  json batch = json::array();
  for (int i = 0; i < count; ++i) batch.push_back(Event(user, first_seq + i, 0.5 * (first_seq + i)));
  return batch;
}

// A fresh project, and a fresh events table in it, made through `admin`.
inline std::string MakeProject(Client& admin) {
  std::string name = UniqueName("p");
  auto r = admin.Post("/v1/projects", {{"name", name}});
  EXPECT_EQ(r.status, 201) << r.Describe();
  return name;
}
inline std::string MakeTable(Client& admin, const std::string& project) {
  std::string name = UniqueName("t");
  auto r = admin.Post("/v1/projects/" + project + "/tables",
                      {{"name", name}, {"schema", EventSchema()}, {"key", EventKey()}});
  EXPECT_EQ(r.status, 201) << r.Describe();
  return name;
}

// `count` fresh events tables in `project`, made through `admin`.
inline std::vector<std::string> MakeTables(Client& admin, const std::string& project, int count) {
  std::vector<std::string> tables;
  for (int i = 0; i < count; ++i) tables.push_back(MakeTable(admin, project));
  return tables;
}

// The worker's aquifer_queue_processed_total (-1 when missing).
inline int64_t QueueProcessed(Server& worker) {
  Client c(worker, kAdminSecretForDeployments);
  auto m = c.Get("/metrics");
  const std::string name = "aquifer_queue_processed_total ";
  size_t at = m.body.find("\n" + name);
  return at == std::string::npos ? -1 : std::stoll(m.body.substr(at + 1 + name.size()));
}

// Every page of a table's log (or index: `what` = "records") through
// `first`, then after the first page through `rest`: a cursor one gateway
// signed is continued through another.
inline std::vector<json> ReadAcross(Client& first, Client& rest, const std::string& project, const std::string& table,
                                    const std::string& what, int page_size, std::string* error) {
  std::vector<json> out;
  auto r = first.Get(TablePath(project, table) + "/" + what + "?limit=" + std::to_string(page_size));
  for (int pages = 0; pages < 100000; ++pages) {
    if (r.status != 200 || !r.is_json || !r.j().contains("data")) {
      *error = r.Describe();
      return out;
    }
    for (const auto& rec : r.j()["data"]) out.push_back(rec);
    const auto& next = r.j().value("next_cursor", json());
    if (!next.is_string() || next.get<std::string>().empty()) break;
    r = rest.Get("/v1/cursor?limit=" + std::to_string(page_size) + "&cursor=" + UrlEncode(next.get<std::string>()));
  }
  return out;
}

// Every acknowledged seq (of user "u") of each table is in its index and its
// log exactly once, as `reader` reads them. Writes refused with 503 may still
// have reached the queue (README "Guarantees"): unless `exact`, the index and
// log may hold more than the acknowledged seqs (each once), never fewer.
inline void ExpectEachOnce(Client& reader, const std::string& p, const std::map<std::string, std::set<int64_t>>& acked,
                           bool exact) {
  for (const auto& [t, expected] : acked) {
    std::string error;
    auto index = ReadWholeIndex(reader, p, t, &error);
    ASSERT_TRUE(error.empty()) << error;
    auto log = ReadWholeLog(reader, p, t, &error);
    ASSERT_TRUE(error.empty()) << error;
    std::multiset<int64_t> index_seqs, log_seqs;
    for (const auto& rec : index) if (rec.value("user", "") == "u") index_seqs.insert(rec.value("seq", int64_t{-1}));
    for (const auto& rec : log) if (rec.value("user", "") == "u") log_seqs.insert(rec.value("seq", int64_t{-1}));
    const std::multiset<int64_t> want(expected.begin(), expected.end());
    if (exact) {
      EXPECT_EQ(index_seqs, want) << "index of " << t;
      EXPECT_EQ(log_seqs, want) << "log of " << t;
      continue;
    }
    std::vector<int64_t> missing, doubled;
    for (int64_t seq : expected) {
      if (index_seqs.count(seq) == 0 || log_seqs.count(seq) == 0) missing.push_back(seq);
      if (index_seqs.count(seq) > 1 || log_seqs.count(seq) > 1) doubled.push_back(seq);
    }
    EXPECT_TRUE(missing.empty()) << missing.size() << " acknowledged records missing from " << t << ", first "
                                 << missing.front();
    EXPECT_TRUE(doubled.empty()) << doubled.size() << " acknowledged records twice in " << t << ", first "
                                 << doubled.front();
    EXPECT_GE(index_seqs.size(), want.size());
  }
}

// The `seq` values of records, as a multiset.
inline std::multiset<int64_t> Seqs(const std::vector<json>& records) {
  std::multiset<int64_t> out;
  for (const auto& rec : records) out.insert(rec.value("seq", int64_t{-1}));
  return out;
}

// The worker-kill scenario every deployment suite runs: one writer thread per
// gateway posts batches of distinct seqs (user "u", no wait: 202 = durable in
// the queue) round robin over `tables`; once both workers have applied writes
// and `before_kill` records are acknowledged, `victim` is SIGKILLed, and the
// ingest goes on until `after_kill` more are. Fails the test on any refused
// write or when a worker never applied one; answers the acknowledged seqs per
// table (the caller checks where they landed).
struct WorkerKill {
  std::vector<Server*> gateways;
  Server* victim = nullptr;
  Server* survivor = nullptr;
  std::string project;
  std::vector<std::string> tables;
  size_t before_kill = 600;
  size_t after_kill = 600;
  std::chrono::seconds patience{30};  // for each of the two phases
};

inline std::map<std::string, std::set<int64_t>> IngestWhileKillingAWorker(const WorkerKill& scenario) {
  constexpr int kPerBatch = 20;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> next_seq{0};
  std::mutex mu;
  std::map<std::string, std::set<int64_t>> acked;  // guarded by mu
  std::vector<std::string> refusals;               // guarded by mu
  auto writer = [&](Server* gateway, size_t which) {
    Client c(*gateway, kAdminSecretForDeployments);
    for (size_t n = 0; !stop.load(); ++n) {
      const std::string& t = scenario.tables[(n + which) % scenario.tables.size()];
      int64_t first = next_seq.fetch_add(kPerBatch);
      auto r = c.Post(TablePath(scenario.project, t) + "/records", EventBatch(first, kPerBatch));
      std::lock_guard lock(mu);
      if (r.status == 202) {
        for (int i = 0; i < kPerBatch; ++i) acked[t].insert(first + i);
      } else {
        refusals.push_back(r.Describe());
      }
    }
  };
  auto acked_count = [&] {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (const auto& [t, seqs] : acked) n += seqs.size();
    return n;
  };
  std::vector<std::thread> writers;
  for (size_t g = 0; g < scenario.gateways.size(); ++g) writers.emplace_back(writer, scenario.gateways[g], g);

  // Both workers are applying writes when the victim dies.
  auto deadline = std::chrono::steady_clock::now() + scenario.patience;
  while ((QueueProcessed(*scenario.victim) <= 0 || QueueProcessed(*scenario.survivor) <= 0 ||
          acked_count() < scenario.before_kill) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(QueueProcessed(*scenario.victim), 0) << "the worker to kill never applied a write";
  EXPECT_GT(QueueProcessed(*scenario.survivor), 0) << "the surviving worker never applied a write";
  scenario.victim->Kill();
  const size_t acked_at_kill = acked_count();
  deadline = std::chrono::steady_clock::now() + scenario.patience;
  while (acked_count() < acked_at_kill + scenario.after_kill && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  for (auto& w : writers) w.join();
  std::lock_guard lock(mu);
  EXPECT_TRUE(refusals.empty()) << refusals.size() << " writes refused, first: " << refusals.front();
  size_t total = 0;
  for (const auto& [t, seqs] : acked) total += seqs.size();
  EXPECT_GT(total, acked_at_kill) << "no write was acknowledged after the worker died";
  return acked;
}

// After IngestWhileKillingAWorker: one record of user "last" (seq 0) written with
// `?wait=<wait>` to each table comes back 200 once the surviving worker applied what was
// queued on that table before it (its report can only come from that worker).
inline void WriteLastAndWait(Client& c, const std::string& project, const std::vector<std::string>& tables,
                             const std::string& wait) {
  for (const auto& t : tables) {
    auto r = c.Post(TablePath(project, t) + "/records?wait=" + wait, EventBatch(0, 1, "last"));
    EXPECT_EQ(r.status, 200) << "the last write to " << t << ": " << r.Describe();
  }
}

// [rows, distinct seqs] of a table, through SQL on the warehouse.
inline json WarehouseCounts(Client& c, const std::string& p, const std::string& t) {
  json rows = SqlRows(c, "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM " + p + "." + t);
  EXPECT_EQ(rows.size(), 1u) << rows.dump();
  return rows.empty() ? json() : rows[0];
}

// After IngestWhileKillingAWorker and WriteLastAndWait(..., "index,warehouse"): the
// warehouse holds every acknowledged record of each table and its "last" record, each
// once, as `reader` queries it.
inline void ExpectWarehouseHoldsEachOnce(Client& reader, const std::string& p,
                                         const std::map<std::string, std::set<int64_t>>& acked) {
  for (const auto& [t, seqs] : acked) {
    std::set<int64_t> with_last = seqs;
    with_last.insert(0);  // the "last" record's seq
    EXPECT_EQ(WarehouseCounts(reader, p, t), json::array({seqs.size() + 1, with_last.size()}))
        << "warehouse of " << t << ": [rows, distinct seqs] against " << seqs.size() << " acknowledged + 1";
  }
}

// The worker-kill test as every deployment suite runs it, on `d`: gateway 1 (and gateway 2,
// with `two_gateways`) and workers 1 and 2 start, `tables` tables of a fresh project are made,
// IngestWhileKillingAWorker writes through each gateway (twice through gateway 1 when it is
// alone) and kills worker 1, WriteLastAndWait(`wait`) comes back 200 on each table once
// worker 2 applied what was queued before, and ExpectEachOnce(`exact`) finds every
// acknowledged record in the index and the log, as the last gateway reads them; `then`
// checks more through that reader (e.g. the warehouse). The gateways and worker 2 are still
// up at the end. Stops at the first step that failed the test.
struct WorkerKillTest {
  bool two_gateways = false;
  int tables = 3;
  size_t before_kill = 600;
  size_t after_kill = 600;
  std::chrono::seconds patience{30};
  std::string wait = "index,warehouse";
  bool exact = true;
  std::function<void(Client& reader, const std::string& project,
                     const std::map<std::string, std::set<int64_t>>& acked)>
      then = {};
};

inline void RunWorkerKillTest(Deployment& d, const WorkerKillTest& test) {
  Server& gw1 = d.Start("gateway");
  Server* gw2 = test.two_gateways ? &d.Start("gateway") : nullptr;
  Server& w1 = d.Start("worker");
  Server& w2 = d.Start("worker");
  Client admin(gw1, kAdminSecretForDeployments);
  const std::string p = MakeProject(admin);
  const std::vector<std::string> tables = MakeTables(admin, p, test.tables);
  if (::testing::Test::HasFailure()) return;
  const std::map<std::string, std::set<int64_t>> acked = IngestWhileKillingAWorker(
      {.gateways = {&gw1, gw2 != nullptr ? gw2 : &gw1}, .victim = &w1, .survivor = &w2, .project = p,
       .tables = tables, .before_kill = test.before_kill, .after_kill = test.after_kill, .patience = test.patience});
  if (::testing::Test::HasFailure()) return;
  WriteLastAndWait(admin, p, tables, test.wait);
  if (::testing::Test::HasFailure()) return;
  Client reader(gw2 != nullptr ? *gw2 : gw1, kAdminSecretForDeployments);
  ExpectEachOnce(reader, p, acked, test.exact);
  if (test.then) test.then(reader, p, acked);
  for (Server* s : {&gw1, gw2, &w2}) {
    if (s == nullptr) continue;
    EXPECT_EQ(s->WaitForExit(std::chrono::milliseconds(0)), -1) << s->OutputTail();
  }
}

// `project`'s write_records in this hour's usage bucket and in the newest bucket of a
// two-hour range read, polled through `c` until both reach `want` (each process flushes its
// meter every second) or about 20 s pass. Answers the last pair read; `last` the response.
inline std::pair<int64_t, int64_t> UsageWrites(Client& c, const std::string& project, int64_t want,
                                               Response* last) {
  int64_t hour_writes = -1, range_writes = -1;
  for (int attempt = 0; attempt < 100 && (hour_writes < want || range_writes < want); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    *last = c.Get("/v1/usage?hours=2");
    if (last->status != 200 || !last->is_json) break;
    for (const json& entry : last->j()["projects"]) {
      if (entry.value("project", "") != project) continue;
      hour_writes = entry["hour"].value("write_records", int64_t{0});
      range_writes = entry["hours"].back().value("write_records", int64_t{0});
    }
  }
  return {hour_writes, range_writes};
}

// The index and the log of a table written with seqs 0 .. total - 1 (user "u", keys in seq
// order): each holds every record once, the log in write order, the index in key order.
inline void ExpectSeqsInOrder(const std::vector<json>& index, const std::vector<json>& log, int total) {
  ASSERT_EQ(index.size(), static_cast<size_t>(total));
  ASSERT_EQ(log.size(), static_cast<size_t>(total));
  for (int i = 0; i < total; ++i) {
    EXPECT_EQ(log[i].value("seq", int64_t{-1}), i) << "the log is not in write order at " << i;
    EXPECT_EQ(index[i].value("seq", int64_t{-1}), i) << "the index (key order) at " << i;
  }
}

}  // namespace aquifer::e2e
