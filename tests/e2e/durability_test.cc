// What a 2xx write answer promises (README "Guarantees"), against the real
// binary: an Idempotency-Key whose first request died between claiming the key
// and publishing is written by the retry (never answered "replayed" with
// nothing written), and relaxed queue durability is visible at start-up, on
// /healthz and on every write answer.

#include <sys/wait.h>

#include <thread>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

constexpr char kSecret[] = "durability-e2e-admin-secret-0123456789";

std::vector<json> Records(int count) {
  std::vector<json> records;
  for (int idx = 0; idx < count; ++idx) records.push_back(Event("user-" + std::to_string(idx), idx, idx * 1.5));
  return records;
}

void MakeTable(Client& admin, const std::string& project, const std::string& table) {
  AQ_ASSERT_STATUS(admin.Post("/v1/projects", {{"name", project}}), 201);
  AQ_ASSERT_STATUS(admin.Post("/v1/projects/" + project + "/tables",
                              {{"name", table}, {"schema", EventSchema()}, {"key", EventKey()}}),
                   201);
}

TEST(Durability, AWriteKilledBetweenItsIdempotencyClaimAndItsPublishIsWrittenByTheRetry) {
  TempDir dir("aquifer-e2e-claim");
  const std::string data = dir.path() + "/data";
  const std::string project = UniqueName("claim"), table = "events";
  const std::string key = UniqueName("key");
  const std::string body = Ndjson(Records(3));
  const Headers headers = {{"Content-Type", "application/x-ndjson"}, {"Idempotency-Key", key}};
  // Both processes give claims a 1 s lease, so the dead one's claim expires quickly.
  const std::string lease = "AQUIFER_SERVER_IDEMPOTENCY_LEASE_MS=1000";

  ServerOptions dying;
  dying.data_dir = data;
  dying.admin_secret = kSecret;
  dying.extra_env = {"AQUIFER_TEST_FAULT=exit_after_idempotency_claim", lease};
  Server first(dying);
  first.Start();
  {
    Client admin(first, kSecret);
    MakeTable(admin, project, table);
    // The process exits after claiming the key, before publishing: no answer.
    auto lost = admin.Request("POST", TablePath(project, table) + "/records", body, headers, 30s);
    EXPECT_NE(lost.status / 100, 2) << "the fault point did not fire: " << lost.Describe();
  }
  int status = first.WaitForExit(30s);
  ASSERT_NE(status, -1) << "the server did not exit at the fault point\n" << first.OutputTail();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 86) << "wait status " << status;
  EXPECT_NE(first.Output().find("exit_after_idempotency_claim"), std::string::npos);

  ServerOptions healthy;
  healthy.data_dir = data;
  healthy.admin_secret = kSecret;
  healthy.extra_env = {lease};
  Server second(healthy);
  second.Start();
  Client client(second, kSecret);
  // The retry: written and acknowledged (200 with wait=log), or 503 while the
  // dead claim's lease still runs, never 202 "replayed" for nothing written.
  Response retry;
  for (int attempt = 0; attempt < 100; ++attempt) {
    retry = client.Request("POST", TablePath(project, table) + "/records?wait=log", body, headers);
    if (retry.status != 503) break;
    std::this_thread::sleep_for(200ms);
  }
  AQ_ASSERT_STATUS(retry, 200) << "\n" << second.OutputTail();
  EXPECT_FALSE(retry.j().contains("replayed")) << retry.Describe();
  std::string error;
  std::vector<json> log = ReadWholeLog(client, project, table, &error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(log.size(), 3u);

  // From now on the key stands for that write.
  auto replay = client.Request("POST", TablePath(project, table) + "/records", body, headers);
  AQ_ASSERT_STATUS(replay, 202);
  EXPECT_EQ(replay.j().value("replayed", false), true) << replay.Describe();
  EXPECT_EQ(replay.j()["write_id"], retry.j()["write_id"]);
  EXPECT_EQ(ReadWholeLog(client, project, table).size(), 3u);
}

TEST(Durability, RelaxedQueueDurabilityIsAnnouncedOnHealthzAndOnEveryWriteAnswer) {
  ServerOptions options;
  options.admin_secret = kSecret;
  options.extra_env = {"AQUIFER_QUEUE_SYNC=false"};
  Server server(options);
  server.Start();
  EXPECT_NE(server.Output().find("relaxed durability"), std::string::npos)
      << "no start-up warning\n" << server.OutputTail();

  Client anon(server, "");
  auto health = anon.Get("/healthz");
  AQ_ASSERT_STATUS(health, 200);
  EXPECT_EQ(health.j()["status"], "ok");
  EXPECT_EQ(health.j()["durability"], "relaxed");
  ASSERT_TRUE(health.j()["warnings"].is_array()) << health.Describe();
  ASSERT_EQ(health.j()["warnings"].size(), 1u) << health.Describe();
  EXPECT_NE(health.j()["warnings"][0].get<std::string>().find("sync = false"), std::string::npos);

  Client admin(server, kSecret);
  const std::string project = UniqueName("relaxed"), table = "events";
  MakeTable(admin, project, table);
  auto accepted = admin.PostRaw(TablePath(project, table) + "/records", Ndjson(Records(2)),
                                "application/x-ndjson");
  AQ_ASSERT_STATUS(accepted, 202);
  EXPECT_EQ(accepted.header("Aquifer-Durability"), "relaxed");
  EXPECT_EQ(accepted.j().value("durable", true), false) << accepted.Describe();
  auto applied = admin.PostRaw(TablePath(project, table) + "/records?wait=index",
                               Ndjson(Records(2)), "application/x-ndjson");
  AQ_ASSERT_STATUS(applied, 200);
  EXPECT_EQ(applied.header("Aquifer-Durability"), "relaxed");
  EXPECT_EQ(applied.j().value("durable", true), false) << applied.Describe();
}

TEST(Durability, DurableWritesSayNothingExtraButHealthzNamesTheMode) {
  ServerOptions options;
  options.admin_secret = kSecret;
  options.extra_env = {"AQUIFER_QUEUE_SYNC=true"};
  Server server(options);
  server.Start();
  EXPECT_EQ(server.Output().find("relaxed durability"), std::string::npos);
  Client anon(server, "");
  auto health = anon.Get("/healthz");
  AQ_ASSERT_STATUS(health, 200);
  EXPECT_EQ(health.j()["durability"], "durable");
  EXPECT_FALSE(health.j().contains("warnings")) << health.Describe();

  Client admin(server, kSecret);
  const std::string project = UniqueName("durable"), table = "events";
  MakeTable(admin, project, table);
  auto accepted = admin.PostRaw(TablePath(project, table) + "/records", Ndjson(Records(2)),
                                "application/x-ndjson");
  AQ_ASSERT_STATUS(accepted, 202);
  EXPECT_EQ(accepted.header("Aquifer-Durability"), "");
  EXPECT_FALSE(accepted.j().contains("durable")) << accepted.Describe();
}

}  // namespace
}  // namespace aquifer::e2e
