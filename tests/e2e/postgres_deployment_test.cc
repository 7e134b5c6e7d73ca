// Several processes on one Postgres (README "Deploy on Postgres"): two
// gateway processes and two worker processes (`aquifer serve --role ...`)
// with all four drivers on the server of AQUIFER_TEST_POSTGRES (a fresh
// schema per test), one catalog and one pair of cursor/secret keys.
//
//   - writes through gateway 1 are read (index), replayed (log), subscribed
//     to (a WebSocket opened before the writes) and queried with SQL through
//     gateway 2, and the other way round; `wait=index` answers 200 although
//     no gateway indexes anything (a worker process did, and reported it);
//   - a worker SIGKILLed in the middle of an ingest loses no acknowledged
//     write: the other worker carries on, and every acknowledged record is
//     in the index, the log and the warehouse exactly once.
#include <map>

#include "deployment.h"

namespace aquifer::e2e {
namespace {

class PostgresDeployment : public DeploymentTest {
 protected:
  // A deployment with the worker ack timeout shortened (a dead worker's claim
  // passes to the other worker after 3 s instead of 30 s).
  Deployment& Deploy() {
    return MakeDeployment({.server_lines = {"worker_ack_timeout_ms = 3000"}, .queue_lines = {}});
  }
};

TEST_F(PostgresDeployment, WritesThroughOneGatewayAreReadReplayedSubscribedAndQueriedThroughTheOther) {
  Deployment& d = Deploy();
  Server& gw1 = d.Start("gateway");
  Server& gw2 = d.Start("gateway");
  Server& w1 = d.Start("worker");
  Server& w2 = d.Start("worker");
  Client c1(gw1, kAdminSecretForDeployments), c2(gw2, kAdminSecretForDeployments);

  // Health per role: every process answers /healthz and names its role.
  for (auto [server, role] : {std::pair{&gw1, "gateway"}, {&gw2, "gateway"}, {&w1, "worker"}, {&w2, "worker"}}) {
    Client c(*server, "");
    auto health = c.Get("/healthz");
    AQ_EXPECT_STATUS(health, 200);
    EXPECT_EQ(health.j().value("role", ""), role) << health.Describe();
    EXPECT_EQ(health.j().value("status", ""), "ok") << health.Describe();
  }
  // A worker process serves no API routes, and says where to go.
  {
    Client cw(w1, kAdminSecretForDeployments);
    auto refused = cw.Post("/v1/projects", {{"name", UniqueName("p")}});
    AQ_EXPECT_STATUS(refused, 404);
    EXPECT_NE(refused.body.find("gateway"), std::string::npos) << refused.Describe();
    AQ_EXPECT_STATUS(cw.Get("/metrics"), 200);
  }

  const std::string p = MakeProject(c1), t = MakeTable(c1, p);
  ASSERT_FALSE(HasFailure());
  // The table made through gateway 1 is there for gateway 2 (one catalog).
  AQ_ASSERT_STATUS(c2.Get(TablePath(p, t)), 200);

  // A secret minted through gateway 1 works on gateway 2 (one secret key).
  auto minted = c1.Post("/v1/projects/" + p + "/secrets", {{"read", json::array({t})}});
  AQ_ASSERT_STATUS(minted, 201);
  Client reader2(gw2, minted.j().value("secret", ""));
  AQ_ASSERT_STATUS(reader2.Get(TablePath(p, t) + "/records"), 200);

  // A subscription through gateway 2, opened before anything is written, on
  // a change cursor that gateway 1 signed (one cursor key).
  auto empty = c1.Get(TablePath(p, t) + "/records?limit=1");
  AQ_ASSERT_STATUS(empty, 200);
  ASSERT_TRUE(empty.j()["data"].empty()) << empty.Describe();
  WsClient ws;
  ASSERT_EQ(ws.Connect(gw2.host(), gw2.port(), kAdminSecretForDeployments), "");
  ASSERT_TRUE(ws.Send(json{{"type", "subscribe"}, {"cursor", empty.j().value("change_cursor", "")}}));

  // Writes through gateway 1: wait=index (no gateway indexes: a worker
  // process did, and its report reached gateway 1), then wait=warehouse too.
  constexpr int kBatches = 8, kPerBatch = 25, kTotal = kBatches * kPerBatch;
  for (int b = 0; b < kBatches; ++b) {
    std::string wait = b < kBatches / 2 ? "index" : "index,warehouse";
    auto r = c1.Post(TablePath(p, t) + "/records?wait=" + wait, EventBatch(b * kPerBatch, kPerBatch));
    AQ_ASSERT_STATUS(r, 200);
    // The index has it now, as gateway 2 reads it.
    auto q = c2.Get(TablePath(p, t) + "/records?limit=1&filter=" +
                    UrlEncode(json{{"user", "u"}, {"seq", (b + 1) * kPerBatch - 1}}.dump()));
    AQ_ASSERT_STATUS(q, 200);
    ASSERT_EQ(q.j()["data"].size(), 1u) << "wait=" << wait << " through gateway 1 answered before "
                                        << "the index had the write: " << q.Describe();
  }

  // Index and log through gateway 2: every record once, the log in write order.
  std::string error;
  auto index = ReadWholeIndex(c2, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  auto log = ReadWholeLog(c2, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  ExpectSeqsInOrder(index, log, kTotal);
  ASSERT_FALSE(HasFailure());

  // The subscription on gateway 2 got every record once, in write order.
  std::vector<int64_t> streamed;
  while (streamed.size() < static_cast<size_t>(kTotal)) {
    auto m = ws.Receive(20s);
    ASSERT_TRUE(m.has_value()) << "the subscription on gateway 2 got " << streamed.size() << " of "
                               << kTotal << " records (" << ws.close_reason() << ")";
    if (m->value("type", "") != "records") continue;
    for (const auto& rec : (*m)["data"]) streamed.push_back(rec.value("seq", int64_t{-1}));
  }
  ASSERT_EQ(streamed.size(), static_cast<size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(streamed[i], i) << "subscription order at " << i;

  // SQL through gateway 2 sees every record once (the last write waited for the warehouse).
  json rows = SqlRows(c2, "SELECT count(*) AS n, count(DISTINCT seq) AS d, min(seq) AS lo, max(seq) AS hi FROM " +
                              p + "." + t);
  ASSERT_EQ(rows.size(), 1u) << rows.dump();
  EXPECT_EQ(rows[0], json::array({kTotal, kTotal, 0, kTotal - 1})) << rows.dump();

  // And the other way round: written through gateway 2, read through gateway 1.
  auto back = c2.Post(TablePath(p, t) + "/records?wait=index", EventBatch(0, 1, "back"));
  AQ_ASSERT_STATUS(back, 200);
  auto seen = c1.Get(TablePath(p, t) + "/records?filter=" + UrlEncode(json{{"user", "back"}}.dump()));
  AQ_ASSERT_STATUS(seen, 200);
  EXPECT_EQ(seen.j()["data"].size(), 1u) << seen.Describe();

  // Every process is still up.
  for (Server* s : {&gw1, &gw2, &w1, &w2}) EXPECT_EQ(s->WaitForExit(0ms), -1) << s->OutputTail();
}

TEST_F(PostgresDeployment, AWorkerKilledMidIngestLosesNoAcknowledgedWriteAndTheOtherCarriesOn) {
  // Several tables (one ordering key each), so both workers have work; writers through both
  // gateways; worker 1 dies mid-ingest (deployment.h). The surviving worker takes over what
  // worker 1 held (after the ack timeout) and everything after. The reports of the last
  // write came from worker 2 (worker 1 is dead), so it applied everything queued before it
  // on each table: every acknowledged record is in the index, the log and the warehouse
  // exactly once.
  RunWorkerKillTest(
      Deploy(), {.two_gateways = true,
                 .then = [](Client& reader, const std::string& p,
                            const std::map<std::string, std::set<int64_t>>& all_acked) {
                   for (const auto& [t, expected] : all_acked) {
                     json rows = SqlRows(reader, "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM " + p + "." +
                                                     t + " WHERE \"user\" = 'u'");
                     ASSERT_EQ(rows.size(), 1u);
                     EXPECT_EQ(rows[0], json::array({expected.size(), expected.size()}))
                         << "warehouse of " << t << ": [rows, distinct seqs] against " << expected.size()
                         << " acknowledged";
                   }
                 }});
}

}  // namespace
}  // namespace aquifer::e2e
