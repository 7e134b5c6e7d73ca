// Faults: the Postgres server restarts in the middle of an ingest.
//
// The test runs its own server (scripts/peers/postgres start; other suites
// share the test peer), a gateway process and a worker process on it (all
// four drivers), and writers that keep writing while the server is halted
// hard (immediate mode: every session cut, as in a crash) and started again.
//
//   - while the server is down, writes answer 503 with a clear message and
//     Retry-After, within the request timeout (no hang, no crash);
//   - the processes reconnect by themselves: writes are acknowledged again,
//     and the worker applies them (a `wait=index,warehouse` write answers
//     200). The queue's listener LISTENing again is checked in the driver's
//     queue_test.cc (here the workers' short Pull timeouts would hide it);
//   - every write acknowledged before, during and after the restart is in the
//     index, the log and the warehouse exactly once (an unacknowledged one at
//     most once).
#include <atomic>
#include <mutex>
#include <thread>

#include "deployment.h"

namespace aquifer::e2e {
namespace {

struct Outcome {
  int64_t first_seq = 0;
  Response response;
  std::chrono::milliseconds took{0};
};

TEST(PostgresRestart, WritesAcknowledgedBeforeDuringAndAfterARestartAreStoredExactlyOnce) {
  OwnPostgres pg;
  ASSERT_TRUE(pg.ok()) << "could not start a Postgres server of this test's own";
  constexpr auto kRequestTimeout = 20s;
  Deployment d(DeploymentOptions{
      .postgres_url = pg.url(),
      .server_lines = {"request_timeout_ms = 20000", "wait_timeout_ms = 15000", "worker_ack_timeout_ms = 5000"},
      .queue_lines = {}});
  Server& gateway = d.Start("gateway");
  Server& worker = d.Start("worker");
  Client admin(gateway, kAdminSecretForDeployments);
  const std::string p = UniqueName("p"), t = UniqueName("t");
  AQ_ASSERT_STATUS(admin.Post("/v1/projects", {{"name", p}}), 201);
  AQ_ASSERT_STATUS(admin.Post("/v1/projects/" + p + "/tables",
                              {{"name", t}, {"schema", EventSchema()}, {"key", EventKey()}}),
                   201);

  // Two writers, batches of distinct seqs, no wait (202 = durable in the queue).
  constexpr int kPerBatch = 10;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> next_seq{0};
  std::mutex mu;
  std::vector<Outcome> outcomes;  // guarded by mu
  auto writer = [&] {
    Client c(gateway, kAdminSecretForDeployments);
    while (!stop.load()) {
      int64_t first = next_seq.fetch_add(kPerBatch);
      auto started = std::chrono::steady_clock::now();
      auto r = c.Request("POST", TablePath(p, t) + "/records", EventBatch(first, kPerBatch).dump(),
                         {{"Content-Type", "application/json"}}, kRequestTimeout + 10s);
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      {
        std::lock_guard lock(mu);
        outcomes.push_back({first, r, took});
      }
      // A refused write is retried after its Retry-After, as a client would (with new seqs).
      if (r.status == 503) std::this_thread::sleep_for(200ms);
    }
  };
  auto count = [&](int status) {
    std::lock_guard lock(mu);
    return std::count_if(outcomes.begin(), outcomes.end(),
                         [&](const Outcome& o) { return o.response.status == status; });
  };
  auto wait_for = [&](auto condition, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!condition() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    return condition();
  };
  std::thread writer1(writer), writer2(writer);

  // Before: writes are acknowledged.
  EXPECT_TRUE(wait_for([&] { return count(202) >= 20; }, 30s)) << "no ingest before the restart";
  const auto acked_before = count(202);

  // During: the server is down (halted hard, mid-ingest).
  ASSERT_TRUE(pg.Halt());
  EXPECT_TRUE(wait_for([&] { return count(503) >= 6; }, 30s))
      << "writes were not refused while the server was down";
  {
    // A write while down: 503 with a clear message and Retry-After.
    auto refused = admin.Request("POST", TablePath(p, t) + "/records?wait=index", EventBatch(-100, 1).dump(),
                                 {{"Content-Type", "application/json"}}, kRequestTimeout + 10s);
    AQ_EXPECT_STATUS(refused, 503);
    EXPECT_TRUE(IsErrorBody(refused));
    EXPECT_EQ(refused.header("retry-after"), "1") << refused.Describe();
    EXPECT_EQ(refused.error_code(), "unavailable") << refused.Describe();
    // /healthz says what is wrong, on both processes.
    for (Server* s : {&gateway, &worker}) {
      Client c(*s, "");
      auto health = c.Get("/healthz");
      AQ_EXPECT_STATUS(health, 503);
      EXPECT_EQ(health.j().value("status", ""), "unhealthy") << health.Describe();
    }
  }

  // After: the server is back; the processes reconnect by themselves.
  ASSERT_TRUE(pg.Resume());
  const auto acked_at_resume = count(202);
  size_t outcomes_at_resume;
  {
    std::lock_guard lock(mu);
    outcomes_at_resume = outcomes.size();
  }
  EXPECT_TRUE(wait_for([&] { return count(202) >= acked_at_resume + 20; }, 60s))
      << "writes were not acknowledged again after the server came back";
  stop = true;
  writer1.join();
  writer2.join();

  // The worker applies writes again: a write that waits for every store is
  // answered 200 (and everything queued before it on the table is applied).
  auto last = admin.Post(TablePath(p, t) + "/records?wait=index,warehouse", EventBatch(0, 1, "last"));
  AQ_ASSERT_STATUS(last, 200);

  // Every answer was an acknowledgement or a clear, quick 503; never a hang or a lost connection.
  std::set<int64_t> acked, maybe;
  {
    std::lock_guard lock(mu);
    for (const Outcome& o : outcomes) {
      const Response& r = o.response;
      EXPECT_LT(o.took, kRequestTimeout) << "a write took " << o.took.count() << " ms: " << r.Describe();
      if (r.status == 202) {
        for (int i = 0; i < kPerBatch; ++i) acked.insert(o.first_seq + i);
        continue;
      }
      for (int i = 0; i < kPerBatch; ++i) maybe.insert(o.first_seq + i);
      ASSERT_EQ(r.status, 503) << "a write during the restart answered " << r.Describe();
      EXPECT_EQ(r.header("retry-after"), "1") << r.Describe();
      EXPECT_TRUE(IsErrorBody(r));
      EXPECT_EQ(r.error_code(), "unavailable") << r.Describe();
    }
  }
  EXPECT_GT(acked_before, 0);
  EXPECT_GT(count(503), 0);
  {
    std::lock_guard lock(mu);
    auto first_refusal = std::find_if(outcomes.begin(), outcomes.end(),
                                      [](const Outcome& o) { return o.response.status == 503; });
    std::cerr << "acknowledged " << acked.size() << " records; "
              << std::count_if(outcomes.begin(), outcomes.end(),
                               [](const Outcome& o) { return o.response.status == 503; })
              << " writes answered 503, "
              << std::count_if(outcomes.begin() + static_cast<std::ptrdiff_t>(outcomes_at_resume), outcomes.end(),
                               [](const Outcome& o) { return o.response.status == 503; })
              << " of them after the server was back; the first: "
              << (first_refusal == outcomes.end() ? "none" : first_refusal->response.body) << "\n";
  }

  // Exactly once: acknowledged seqs once in the index, the log and the
  // warehouse; refused ones at most once (a publish may commit just before its
  // connection is cut).
  std::string error;
  auto index = ReadWholeIndex(admin, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  auto log = ReadWholeLog(admin, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  for (auto [what, records] : {std::pair{"index", &index}, {"log", &log}}) {
    std::map<int64_t, int> seen;
    for (const auto& rec : *records) {
      if (rec.value("user", "") == "u") ++seen[rec.value("seq", int64_t{-1})];
    }
    for (int64_t seq : acked) {
      EXPECT_EQ(seen[seq], 1) << "acknowledged seq " << seq << " in the " << what;
    }
    for (const auto& [seq, n] : seen) {
      EXPECT_LE(n, 1) << "seq " << seq << " in the " << what;
      EXPECT_TRUE(acked.count(seq) == 1 || maybe.count(seq) == 1) << "seq " << seq << " was never written";
    }
  }
  json rows = SqlRows(admin, "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM " + p + "." + t +
                                 " WHERE \"user\" = 'u'");
  ASSERT_EQ(rows.size(), 1u);
  const int64_t stored = rows[0][0].get<int64_t>();
  EXPECT_EQ(rows[0][1].get<int64_t>(), stored) << "the warehouse holds a record twice";
  // Every acknowledged one is there (seqs outside both sets are impossible: checked on the log).
  std::string in_list;
  for (int64_t seq : acked) in_list += (in_list.empty() ? "" : ",") + std::to_string(seq);
  json acked_rows = SqlRows(admin, "SELECT count(*) AS n FROM " + p + "." + t + " WHERE \"user\" = 'u' AND seq IN (" +
                                       in_list + ")");
  ASSERT_EQ(acked_rows.size(), 1u);
  EXPECT_EQ(acked_rows[0][0].get<int64_t>(), static_cast<int64_t>(acked.size()))
      << "acknowledged records missing from the warehouse";

  for (Server* s : {&gateway, &worker}) EXPECT_EQ(s->WaitForExit(0ms), -1) << "a process died: " << s->OutputTail();
  if (HasFailure()) std::cerr << d.OutputTails();
}

}  // namespace
}  // namespace aquifer::e2e
