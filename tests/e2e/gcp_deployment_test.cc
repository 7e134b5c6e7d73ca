// Several processes on the Google Cloud drivers (issue 13): the queue on Pub/Sub, the lookup
// and usage services on Bigtable, the warehouse on BigQuery — the emulators that
// scripts/peers/{pubsub,bigtable,bigquery} started (AQUIFER_TEST_PUBSUB, AQUIFER_TEST_BIGTABLE,
// AQUIFER_TEST_BIGQUERY), with topics, a Bigtable instance and a dataset of each test's own —
// and the catalog on Postgres (AQUIFER_TEST_POSTGRES): two gateways and two workers
// (`aquifer serve --role ...`).
//
//   - writes through gateway 1 with wait=index,warehouse are read (index), replayed (log, in
//     write order, a page's cursor continued through the other gateway), queried (SQL on
//     BigQuery) and counted (usage on Bigtable) through gateway 2;
//   - a worker SIGKILLed in the middle of an ingest loses no acknowledged write: its Pub/Sub
//     leases end, the other worker gets the messages (and the Bigtable write lease after
//     lease_ms), and every acknowledged record is in the index, the log and the warehouse
//     exactly once.

#include "aquifer/drivers/bigquery/testing.h"
#include "aquifer/drivers/bigtable/testing.h"
#include "aquifer/drivers/pubsub/testing.h"
#include "deployment.h"

namespace aquifer::e2e {
namespace {

// `key = "value"` lines for a driver section, from a test config map.
std::vector<std::string> SectionLines(const std::string& driver, const driver::Config& config,
                                      const std::vector<std::string>& more = {}) {
  std::vector<std::string> lines = {"driver = \"" + driver + "\""};
  for (const auto& [key, value] : config) lines.push_back(key + " = \"" + value + "\"");
  lines.insert(lines.end(), more.begin(), more.end());
  return lines;
}

class GcpDeployment : public DeploymentTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DeploymentTest::SetUp());
    const std::string unique = UniqueName("g");
    auto pubsub = drivers::pubsub::testing::TestConfig(unique);
    auto bigtable = drivers::bigtable::testing::TestConfig(unique);
    auto bigquery = drivers::bigquery::testing::TestConfig(unique);
    for (const Status& status : {pubsub.status(), bigtable.status(), bigquery.status()}) {
      ASSERT_TRUE(status.ok()) << status.ToString();
    }
    pubsub_ = *pubsub;
    bigtable_ = *bigtable;
    bigquery_ = *bigquery;
  }
  Deployment& Deploy() {
    return MakeDeployment({
        // After a worker is killed, its Pub/Sub leases end (10 s, the service's shortest ack
        // deadline) and the survivor works off three tables' backlog through the emulators: on a
        // loaded machine that took longer than the default 30 s a `wait=` may wait.
        .server_lines = {"worker_ack_timeout_ms = 3000", "wait_timeout_ms = 120000"},
        .queue_section = SectionLines("pubsub", pubsub_),
        // A killed worker's instances pass on after 5 s.
        .lookup_section = SectionLines("bigtable", bigtable_, {"lease_ms = 5000"}),
        .warehouse_section = SectionLines("bigquery", bigquery_),
        .usage_section = SectionLines("bigtable", bigtable_)});
  }

  driver::Config pubsub_, bigtable_, bigquery_;
};

TEST_F(GcpDeployment, WritesThroughOneGatewayAreReadReplayedQueriedAndCountedThroughTheOther) {
  Deployment& d = Deploy();
  Server& gw1 = d.Start("gateway");
  Server& gw2 = d.Start("gateway");
  Server& w1 = d.Start("worker");
  Server& w2 = d.Start("worker");
  Client c1(gw1, kAdminSecretForDeployments), c2(gw2, kAdminSecretForDeployments);
  const std::string p = MakeProject(c1), t = MakeTable(c1, p);
  ASSERT_FALSE(HasFailure());

  constexpr int kBatches = 5, kPerBatch = 20, kTotal = kBatches * kPerBatch;
  for (int b = 0; b < kBatches; ++b) {
    auto r = c1.Post(TablePath(p, t) + "/records?wait=index,warehouse", EventBatch(b * kPerBatch, kPerBatch));
    AQ_ASSERT_STATUS(r, 200);
    auto q = c2.Get(TablePath(p, t) + "/records?limit=1&filter=" +
                    UrlEncode(json{{"user", "u"}, {"seq", (b + 1) * kPerBatch - 1}}.dump()));
    AQ_ASSERT_STATUS(q, 200);
    ASSERT_EQ(q.j()["data"].size(), 1u) << "wait=index answered before the index had the write: " << q.Describe();
  }
  std::string error;
  auto index = ReadAcross(c1, c2, p, t, "records", 30, &error);
  ASSERT_TRUE(error.empty()) << error;
  auto log = ReadAcross(c1, c2, p, t, "log", 30, &error);
  ASSERT_TRUE(error.empty()) << error;
  ExpectSeqsInOrder(index, log, kTotal);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(WarehouseCounts(c2, p, t), json::array({kTotal, kTotal})) << "[rows, distinct seqs] in BigQuery";

  // Usage went to Bigtable: this hour's bucket, and the same from a range read.
  Response usage;
  EXPECT_EQ(UsageWrites(c2, p, kTotal, &usage), std::make_pair(int64_t{kTotal}, int64_t{kTotal})) << usage.Describe();
  for (Server* s : {&gw1, &gw2, &w1, &w2}) EXPECT_EQ(s->WaitForExit(0ms), -1) << s->OutputTail();
}

TEST_F(GcpDeployment, AWorkerKilledMidIngestLosesNoAcknowledgedWriteAndTheOtherCarriesOn) {
  // Worker 2 gets what worker 1 held once its Pub/Sub leases end: a write that waits for
  // every store comes back 200 on each table. Pub/Sub orders per ordering key (table) only,
  // and the "last" write was acknowledged after the others of its table, so its report
  // means the rest were applied before it.
  RunWorkerKillTest(Deploy(), {.two_gateways = true,
                               .before_kill = 400,
                               .after_kill = 400,
                               .patience = std::chrono::seconds(60),
                               .then = ExpectWarehouseHoldsEachOnce});
}

}  // namespace
}  // namespace aquifer::e2e
