// Crash test for the whole server (STYLE.md "Crash tests", DESIGN.md "A write
// is accepted once it is durable in the queue"): a writer thread sends
// batches of 100 records (unique keys within a batch, a version that only
// grows) without `wait`; the test SIGKILLs the server at random moments and
// restarts it on the same data dir. The writer's independent record of every
// write that got 202 is then checked against the index (for each key, at
// least the highest acknowledged version, and a version that was sent) and
// the log (every acknowledged (key, version) present).
//
// AQUIFER_E2E_CRASH_ROUNDS (default 10) and AQUIFER_E2E_CRASH_SEED change the run.

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

constexpr int kKeys = 2000;
constexpr int kBatch = 100;

json CrashSchema() {
  return json::parse(R"({"type": "record", "name": "row", "fields": [
      {"name": "k", "type": "long"}, {"name": "version", "type": "long"}, {"name": "pad", "type": "string"}]})");
}

int EnvInt(const char* name, int fallback) {
  const char* v = getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

TEST(Crash, EveryAcknowledgedWriteSurvivesSigkillsAndRestarts) {
  const int rounds = EnvInt("AQUIFER_E2E_CRASH_ROUNDS", 10);
  const unsigned seed = static_cast<unsigned>(EnvInt("AQUIFER_E2E_CRASH_SEED", static_cast<int>(std::random_device{}())));
  std::cerr << "crash test: " << rounds << " rounds, seed " << seed << " (AQUIFER_E2E_CRASH_SEED)\n";
  std::mt19937 rng(seed);

  Server server;
  server.Start();
  const std::string secret = server.admin_secret();
  std::string p = UniqueName("crash"), t = "rows";
  {
    Client admin(server, secret);
    AQ_ASSERT_STATUS(admin.Post("/v1/projects", {{"name", p}}), 201);
    AQ_ASSERT_STATUS(admin.Post("/v1/projects/" + p + "/tables",
                                {{"name", t}, {"schema", CrashSchema()}, {"key", {"k"}}}),
                     201);
  }

  // The writer's record: (k, version) of every record of every 202'd write,
  // and every version ever sent per key (an unacknowledged write may still land).
  std::mutex mu;
  std::string host = server.host();
  int port = server.port();
  std::map<int64_t, int64_t> acked_latest;         // k → highest acknowledged version
  std::set<std::pair<int64_t, int64_t>> acked;     // (k, version)
  std::set<std::pair<int64_t, int64_t>> sent;      // (k, version), acknowledged or not
  std::atomic<bool> stop{false};
  std::atomic<int64_t> acked_writes{0}, failed_writes{0};
  std::string unexpected;  // a non-202 HTTP answer (not a transport error)

  std::thread writer([&] {
    std::mt19937 wrng(seed ^ 0x9e3779b9u);
    int64_t version = 0;
    std::string pad(60, 'p');
    std::optional<Client> c;
    int seen_port = 0;
    while (!stop) {
      {
        std::lock_guard lock(mu);
        if (port != seen_port) {
          c.emplace(host, port, secret);
          seen_port = port;
        }
      }
      // 100 distinct keys.
      std::set<int64_t> keys;
      while (keys.size() < kBatch) keys.insert(static_cast<int64_t>(wrng() % kKeys));
      std::vector<json> batch;
      std::vector<std::pair<int64_t, int64_t>> mine;
      ++version;
      for (int64_t k : keys) {
        batch.push_back({{"k", k}, {"version", version}, {"pad", pad}});
        mine.emplace_back(k, version);
      }
      {
        std::lock_guard lock(mu);
        sent.insert(mine.begin(), mine.end());
      }
      auto r = c->Post(TablePath(p, t) + "/records", batch);
      if (r.status == 202) {
        std::lock_guard lock(mu);
        for (auto& kv : mine) {
          acked.insert(kv);
          auto& latest = acked_latest[kv.first];
          latest = std::max(latest, kv.second);
        }
        ++acked_writes;
      } else {
        ++failed_writes;
        if (r.status != 0 && r.status != 503) {
          std::lock_guard lock(mu);
          if (unexpected.empty()) unexpected = r.Describe();
        }
        c->Disconnect();
        std::this_thread::sleep_for(10ms);
      }
    }
  });

  std::uniform_int_distribution<int> pause_ms(200, 1500);
  for (int round = 0; round < rounds; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    server.Kill();
    try {
      server.Start();
    } catch (const std::exception& e) {
      stop = true;
      writer.join();
      FAIL() << "restart " << round + 1 << " failed: " << e.what();
    }
    std::lock_guard lock(mu);
    host = server.host();
    port = server.port();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
  stop = true;
  writer.join();
  std::cerr << "acknowledged writes: " << acked_writes << ", failed (during kills): " << failed_writes
            << ", acknowledged records: " << acked.size() << "\n";
  EXPECT_TRUE(unexpected.empty()) << "a write answered neither 202 nor a transport error: " << unexpected;
  ASSERT_GT(acked_writes.load(), rounds) << "too few writes were acknowledged to test anything\n"
                                         << server.OutputTail();

  Client admin(server, secret);
  // Drain: a final write with wait=index (the queue is applied in order), then
  // poll the log until its size stops growing.
  auto fin = admin.Post(TablePath(p, t) + "/records?wait=index",
                        json::array({{{"k", kKeys + 1}, {"version", 0}, {"pad", ""}}}));
  AQ_ASSERT_STATUS(fin, 200) << "\n" << server.OutputTail();
  std::vector<json> log;
  size_t last_size = 0;
  for (int stable = 0, i = 0; stable < 3 && i < 60; ++i) {
    std::string error;
    log = ReadWholeLog(admin, p, t, &error);
    ASSERT_TRUE(error.empty()) << error;
    stable = log.size() == last_size ? stable + 1 : 0;
    last_size = log.size();
    if (stable < 3) std::this_thread::sleep_for(300ms);
  }

  // Log: every acknowledged (k, version) present; at least as many records as acknowledged.
  std::set<std::pair<int64_t, int64_t>> in_log;
  for (const auto& rec : log) in_log.insert({rec["k"].get<int64_t>(), rec["version"].get<int64_t>()});
  EXPECT_GE(log.size(), acked.size() + 1);
  std::vector<std::pair<int64_t, int64_t>> lost_log;
  for (const auto& kv : acked) {
    if (!in_log.count(kv)) lost_log.push_back(kv);
  }
  EXPECT_TRUE(lost_log.empty()) << lost_log.size() << " acknowledged records are missing from the log, e.g. k="
                                << lost_log[0].first << " version=" << lost_log[0].second;
  int never_sent = 0;
  for (const auto& kv : in_log) {
    if (kv.first <= kKeys && !sent.count(kv) && never_sent++ < 5) {
      ADD_FAILURE() << "the log holds a record never sent: k=" << kv.first << " version=" << kv.second;
    }
  }

  // Index: for each key, the latest record has a version >= the highest acknowledged
  // one and is a version that was sent for that key.
  std::map<int64_t, int64_t> index;
  auto r = admin.Get(TablePath(p, t) + "/records?limit=1000");
  for (int pages = 0; pages < 100; ++pages) {
    AQ_ASSERT_STATUS(r, 200);
    for (const auto& rec : r.j()["data"]) {
      int64_t k = rec["k"];
      EXPECT_FALSE(index.count(k)) << "the index returned key " << k << " twice";
      index[k] = rec["version"];
    }
    auto next = r.j().value("next_cursor", json());
    if (!next.is_string() || next.get<std::string>().empty()) break;
    r = admin.Get("/v1/cursor?limit=1000&cursor=" + UrlEncode(next.get<std::string>()));
  }
  int lost = 0, stale = 0, phantom = 0;
  for (const auto& [k, v] : acked_latest) {
    auto it = index.find(k);
    if (it == index.end()) {
      if (lost++ < 5) ADD_FAILURE() << "acknowledged key " << k << " (version " << v << ") is not in the index";
    } else if (it->second < v) {
      if (stale++ < 5)
        ADD_FAILURE() << "key " << k << ": the index has version " << it->second << ", acknowledged " << v;
    }
  }
  for (const auto& [k, v] : index) {
    if (k <= kKeys && !sent.count({k, v}) && phantom++ < 5) {
      ADD_FAILURE() << "key " << k << ": the index has version " << v << ", never sent";
    }
  }
  EXPECT_EQ(lost + stale + phantom, 0) << "keys lost " << lost << ", stale " << stale << ", phantom " << phantom;
  if (HasFailure()) std::cerr << "--- server output (tail) ---\n" << server.OutputTail(4000) << "\n";
}

}  // namespace
}  // namespace aquifer::e2e
