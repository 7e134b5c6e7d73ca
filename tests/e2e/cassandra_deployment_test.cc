// Several processes with the lookup and usage services on Cassandra (the node
// of AQUIFER_TEST_CASSANDRA, a keyspace per test, dropped at the end) and the
// catalog, queue and warehouse on Postgres (AQUIFER_TEST_POSTGRES): two
// gateways and two workers (`aquifer serve --role ...`).
//
//   - writes through gateway 1 with wait=index are read (index) and replayed
//     (log, in write order) through gateway 2, and usage is counted;
//   - a worker SIGKILLed in the middle of an ingest loses no acknowledged
//     write: the other takes over the instances it was writing (its write
//     lease expires after lease_ms), and every acknowledged record is in the
//     index and the log exactly once.

#include "aquifer/drivers/cassandra/testing.h"
#include "deployment.h"

namespace aquifer::e2e {
namespace {

namespace cassandra_testing = aquifer::drivers::cassandra::testing;

class CassandraDeployment : public DeploymentTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DeploymentTest::SetUp());
    auto contact = cassandra_testing::ContactPoint();
    ASSERT_TRUE(contact.ok()) << contact.status().ToString();
    contact_ = *contact;
    keyspace_ = cassandra_testing::KeyspaceFor(UniqueName("e2e"));
  }
  void TearDown() override {
    DeploymentTest::TearDown();
    deployment_.reset();  // the processes stop before their keyspace goes
    auto options = cassandra_testing::TestClientOptions();
    if (!options.ok()) return;
    auto session = drivers::cassandra::cql::Session::Connect(*options);
    if (session.ok()) (void)(*session)->Query("DROP KEYSPACE IF EXISTS " + keyspace_);
  }

  Deployment& Deploy() {
    std::vector<std::string> cassandra = {
        "driver = \"cassandra\"", "contact_point = \"" + contact_ + "\"", "keyspace = \"" + keyspace_ + "\"",
        "username = \"cassandra\"", "password = \"cassandra\"", "consistency = \"ONE\""};
    std::vector<std::string> lookup = cassandra;
    lookup.push_back("lease_ms = 5000");  // a killed worker's instances pass on after 5 s
    return MakeDeployment({.server_lines = {"worker_ack_timeout_ms = 3000"},
                           .queue_lines = {},
                           .queue_section = {},
                           .lookup_section = lookup,
                           .usage_section = cassandra});
  }

  std::string contact_, keyspace_;
};

TEST_F(CassandraDeployment, WritesThroughOneGatewayAreReadAndReplayedThroughTheOther) {
  Deployment& d = Deploy();
  Server& gw1 = d.Start("gateway");
  Server& gw2 = d.Start("gateway");
  Server& w1 = d.Start("worker");
  Server& w2 = d.Start("worker");
  Client c1(gw1, kAdminSecretForDeployments), c2(gw2, kAdminSecretForDeployments);
  const std::string p = MakeProject(c1), t = MakeTable(c1, p);
  ASSERT_FALSE(HasFailure());

  constexpr int kBatches = 6, kPerBatch = 25, kTotal = kBatches * kPerBatch;
  for (int b = 0; b < kBatches; ++b) {
    auto r = c1.Post(TablePath(p, t) + "/records?wait=index", EventBatch(b * kPerBatch, kPerBatch));
    AQ_ASSERT_STATUS(r, 200);
    auto q = c2.Get(TablePath(p, t) + "/records?limit=1&filter=" +
                    UrlEncode(json{{"user", "u"}, {"seq", (b + 1) * kPerBatch - 1}}.dump()));
    AQ_ASSERT_STATUS(q, 200);
    ASSERT_EQ(q.j()["data"].size(), 1u) << "wait=index answered before the index had the write: " << q.Describe();
  }
  std::string error;
  auto index = ReadWholeIndex(c2, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  auto log = ReadWholeLog(c2, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  ExpectSeqsInOrder(index, log, kTotal);
  ASSERT_FALSE(HasFailure());
  // Usage went to Cassandra's counters (each process flushes its meter every
  // second), read back through the other gateway: this hour's bucket, and the
  // same from a range read of the last hours.
  Response usage;
  EXPECT_EQ(UsageWrites(c2, p, kTotal, &usage), std::make_pair(int64_t{kTotal}, int64_t{kTotal})) << usage.Describe();
  for (Server* s : {&gw1, &gw2, &w1, &w2}) EXPECT_EQ(s->WaitForExit(0ms), -1) << s->OutputTail();
}

TEST_F(CassandraDeployment, AWorkerKilledMidIngestLosesNoAcknowledgedWriteAndTheOtherCarriesOn) {
  // Two writers through gateway 1; worker 1 dies mid-ingest (deployment.h). Worker 2 takes
  // over (after the ack timeout and, where worker 1 died inside a write, the lease): a write
  // waiting for the index comes back 200.
  RunWorkerKillTest(Deploy(), {.before_kill = 400, .after_kill = 400, .patience = std::chrono::seconds(60),
                               .wait = "index"});
}

}  // namespace
}  // namespace aquifer::e2e
