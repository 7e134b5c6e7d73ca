// Several processes with the warehouse on ClickHouse (the server of
// AQUIFER_TEST_CLICKHOUSE, a database per test, dropped at the end) and the
// catalog, queue and lookup/usage services on Postgres (AQUIFER_TEST_POSTGRES):
// two gateways and two workers (`aquifer serve --role ...`).
//
//   - writes through gateway 1 with wait=index,warehouse are queried by SQL
//     on ClickHouse through gateway 2;
//   - a worker SIGKILLed in the middle of an ingest loses no acknowledged
//     write, and every acknowledged record is in the warehouse exactly once
//     (the driver's write groups).
#include <cstdlib>

#include "aquifer/base/uuid.h"
#include "aquifer/drivers/clickhouse/http.h"
#include "deployment.h"

namespace aquifer::e2e {
namespace {

class ClickHouseDeployment : public DeploymentTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(DeploymentTest::SetUp());
    const char* endpoint = std::getenv("AQUIFER_TEST_CLICKHOUSE");
    ASSERT_TRUE(endpoint != nullptr && *endpoint != '\0')
        << "AQUIFER_TEST_CLICKHOUSE is not set: start a server with `eval \"$(bash scripts/peers/clickhouse start)\"`";
    endpoint_ = endpoint;
    database_ = "e2e_" + aquifer::Uuid::Random().Hex().substr(0, 12);
  }
  void TearDown() override {
    DeploymentTest::TearDown();
    deployment_.reset();  // the processes stop before their database goes
    drivers::clickhouse::HttpClient http({.endpoint = endpoint_});
    (void)http.Query("DROP DATABASE IF EXISTS `" + database_ + "`");
  }

  Deployment& Deploy() {
    return MakeDeployment({.server_lines = {"worker_ack_timeout_ms = 3000"},
                           .warehouse_section = {"driver = \"clickhouse\"", "endpoint = \"" + endpoint_ + "\"",
                                                 "database = \"" + database_ + "\"",
                                                 // The killed worker's claims on its groups lapse in 10 s (default
                                                 // 60 s), so the surviving worker completes them within the test's
                                                 // patience.
                                                 "group_claim_ms = 10000"}});
  }

  std::string endpoint_, database_;
};

TEST_F(ClickHouseDeployment, WritesThroughOneGatewayAreQueriedThroughTheOther) {
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
  }
  EXPECT_EQ(WarehouseCounts(c2, p, t), json::array({kTotal, kTotal})) << "[rows, distinct seqs] in ClickHouse";
  for (Server* s : {&gw1, &gw2, &w1, &w2}) EXPECT_EQ(s->WaitForExit(0ms), -1) << s->OutputTail();
}

TEST_F(ClickHouseDeployment, AWorkerKilledMidIngestLosesNoAcknowledgedWriteAndStoresEachOnce) {
  // Two writers through gateway 1; every acknowledged record (and each table's last) in
  // ClickHouse exactly once.
  RunWorkerKillTest(Deploy(), {.before_kill = 400,
                               .after_kill = 400,
                               .patience = std::chrono::seconds(60),
                               .then = ExpectWarehouseHoldsEachOnce});
}

}  // namespace
}  // namespace aquifer::e2e
