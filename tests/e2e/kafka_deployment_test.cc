// Several processes with the Kafka MessageQueue, and the Kafka LookupService
// or the Postgres one (the warehouse, usage and catalog on Postgres): gateway
// and worker processes (`aquifer serve --role ...`) whose writes travel
// through a real Kafka broker. The first two tests run twice: with the lookup
// on Postgres (`.../postgres_lookup`) and on Kafka (`.../kafka_lookup`: every
// gateway materialises the lookup topics the workers produce to).
//
//   - writes through gateway 1 (`wait=index`) are read (index, log; pages
//     continued through the other gateway with its cursors) and subscribed to
//     (a change cursor gateway 1 signed) through gateway 2; Kafka's own
//     console consumer (the org.apache.kafka.tools.consumer.ConsoleConsumer
//     class of the broker's jars) reads the write topic;
//   - a worker SIGKILLed in the middle of an ingest is replaced by the other
//     through a consumer-group rebalance: every acknowledged write is in the
//     index and the log exactly once;
//   - the broker killed (SIGKILL) during an ingest and started again: writes
//     answer 503 while it is down, no acknowledged write is lost or doubled,
//     and the processes recover without a restart.
//
// The broker of AQUIFER_TEST_KAFKA (make test starts it) serves the first
// two, each deployment under a topic prefix of its own; the third starts a
// broker of its own with scripts/peers/kafka and stops it at the end.
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "deployment.h"

namespace aquifer::e2e {
namespace {

std::string ExportedValue(const std::string& exports, const std::string& name) {
  std::string prefix = "export " + name + "=";
  size_t at = exports.find(prefix);
  if (at == std::string::npos) return "";
  size_t end = exports.find('\n', at);
  return exports.substr(at + prefix.size(), end == std::string::npos ? std::string::npos : end - at - prefix.size());
}

// A Kafka broker of this test's own (scripts/peers/kafka start/halt/resume/stop).
class OwnKafka {
 public:
  OwnKafka() {
    std::optional<std::string> exports = RunCommand("bash " + Script() + " start");
    if (!exports) return;
    brokers_ = ExportedValue(*exports, "AQUIFER_TEST_KAFKA");
    dir_ = ExportedValue(*exports, "AQUIFER_PEER_KAFKA_DIR");
    if (brokers_.empty() || dir_.empty()) ADD_FAILURE() << "no exports from the kafka script: " << *exports;
  }
  ~OwnKafka() {
    if (!dir_.empty()) (void)RunCommand("bash " + Script() + " stop " + dir_ + " 2>&1");
  }
  OwnKafka(const OwnKafka&) = delete;
  OwnKafka& operator=(const OwnKafka&) = delete;

  bool ok() const { return !brokers_.empty() && !dir_.empty(); }
  const std::string& brokers() const { return brokers_; }
  bool Halt() { return RunCommand("bash " + Script() + " halt " + dir_ + " 2>&1").has_value(); }
  bool Resume() { return RunCommand("bash " + Script() + " resume " + dir_ + " 2>&1").has_value(); }

 private:
  static std::string Script() { return AQUIFER_KAFKA_PEER_SCRIPT; }
  std::string brokers_, dir_;
};

std::string EnvOrFail(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    ADD_FAILURE() << name << " is not set: this suite needs a real Kafka broker (and PostgreSQL). Run `make test`, "
                  << "or `eval \"$(bash scripts/peers/kafka start)\"` and the same for postgres before ctest";
    return "";
  }
  return value;
}

class KafkaDeployment : public DeploymentTest {
 protected:
  // All drivers but the queue (and the lookup, with `lookup_on_kafka`) on
  // Postgres; the queue on `brokers` under a fresh prefix, two partitions per
  // topic (so two workers share the writes), a dead worker's partitions move
  // after 6 s; the lookup topics under the same prefix.
  Deployment& Deploy(const std::string& brokers, bool lookup_on_kafka = false) {
    prefix_ = UniqueName("e2e") + ".";
    std::vector<std::string> lookup;
    if (lookup_on_kafka) {
      lookup = {"driver = \"kafka\"", "brokers = \"" + brokers + "\"", "topic_prefix = \"" + prefix_ + "\"",
                "request_timeout_ms = 5000", "catchup_timeout_ms = 20000"};
    }
    return MakeDeployment({
        .server_lines = {"worker_ack_timeout_ms = 3000"},
        .queue_lines = {},
        .queue_section = {"driver = \"kafka\"", "brokers = \"" + brokers + "\"", "topic_prefix = \"" + prefix_ + "\"",
                          "partitions = 2", "session_timeout_ms = 6000", "request_timeout_ms = 5000"},
        .lookup_section = lookup});
  }

  std::string prefix_;
};

// The same tests with the lookup on Postgres (false) and on Kafka (true).
class KafkaDeploymentLookups : public KafkaDeployment, public ::testing::WithParamInterface<bool> {};

INSTANTIATE_TEST_SUITE_P(Lookup, KafkaDeploymentLookups, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "kafka_lookup" : "postgres_lookup";
                         });

TEST_P(KafkaDeploymentLookups, WritesThroughOneGatewayAreReadAndSubscribedThroughTheOtherAndKafkaToolsReadTheTopic) {
  const std::string brokers = EnvOrFail("AQUIFER_TEST_KAFKA");
  const std::string lib = EnvOrFail("AQUIFER_KAFKA_LIB");
  ASSERT_FALSE(brokers.empty() || lib.empty());
  Deployment& d = Deploy(brokers, GetParam());
  Server& gw1 = d.Start("gateway");
  Server& gw2 = d.Start("gateway");
  Server& w1 = d.Start("worker");
  Server& w2 = d.Start("worker");
  Client c1(gw1, kAdminSecretForDeployments), c2(gw2, kAdminSecretForDeployments);
  for (Server* server : {&gw1, &gw2, &w1, &w2}) {
    Client c(*server, "");
    auto health = c.Get("/healthz");
    AQ_EXPECT_STATUS(health, 200);
    EXPECT_EQ(health.j().value("status", ""), "ok") << health.Describe();
  }

  const std::string p = MakeProject(c1), t = MakeTable(c1, p);
  ASSERT_FALSE(HasFailure());
  auto empty = c1.Get(TablePath(p, t) + "/records?limit=1");
  AQ_ASSERT_STATUS(empty, 200);
  WsClient ws;
  ASSERT_EQ(ws.Connect(gw2.host(), gw2.port(), kAdminSecretForDeployments), "");
  ASSERT_TRUE(ws.Send(json{{"type", "subscribe"}, {"cursor", empty.j().value("change_cursor", "")}}));

  constexpr int kBatches = 8, kPerBatch = 25, kTotal = kBatches * kPerBatch;
  for (int b = 0; b < kBatches; ++b) {
    auto r = c1.Post(TablePath(p, t) + "/records?wait=index", EventBatch(b * kPerBatch, kPerBatch));
    AQ_ASSERT_STATUS(r, 200);
    auto q = c2.Get(TablePath(p, t) + "/records?limit=1&filter=" +
                    UrlEncode(json{{"user", "u"}, {"seq", (b + 1) * kPerBatch - 1}}.dump()));
    AQ_ASSERT_STATUS(q, 200);
    ASSERT_EQ(q.j()["data"].size(), 1u) << "wait=index through gateway 1 answered before the index had it: "
                                        << q.Describe();
  }
  std::string error;
  auto index = ReadWholeIndex(c2, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  auto log = ReadWholeLog(c2, p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(index.size(), static_cast<size_t>(kTotal));
  ASSERT_EQ(log.size(), static_cast<size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) EXPECT_EQ(log[i].value("seq", int64_t{-1}), i) << "log order at " << i;
  // Pages of 30: the first through gateway 1, the rest through gateway 2 on
  // the cursors gateway 1 signed (with the lookup on Kafka: offsets that both
  // gateways' state stores give alike).
  for (const char* what : {"log", "records"}) {
    auto across = ReadAcross(c1, c2, p, t, what, 30, &error);
    ASSERT_TRUE(error.empty()) << what << ": " << error;
    ASSERT_EQ(across.size(), static_cast<size_t>(kTotal)) << what;
    for (int i = 0; i < kTotal; ++i) EXPECT_EQ(across[i].value("seq", int64_t{-1}), i) << what << " at " << i;
  }

  std::vector<int64_t> streamed;
  while (streamed.size() < static_cast<size_t>(kTotal)) {
    auto m = ws.Receive(20s);
    ASSERT_TRUE(m.has_value()) << "the subscription on gateway 2 got " << streamed.size() << " of " << kTotal;
    if (m->value("type", "") != "records") continue;
    for (const auto& rec : (*m)["data"]) streamed.push_back(rec.value("seq", int64_t{-1}));
  }
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(streamed[i], i) << "subscription order at " << i;

  // Kafka's own console consumer reads the write topic: one record per
  // published write message (at least one per batch), keyed by the table's
  // instance (one key for the one table).
  const std::string topic = prefix_ + "writes";
  std::optional<std::string> consumed = RunCommand(
      "java -Xmx128m -cp '" + lib + "/*' -Dlog4j.configuration=file:/dev/null "
      "org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server " + brokers + " --topic " + topic +
      " --from-beginning --timeout-ms 15000 --property print.key=true --property key.separator='|KEY|' "
      "--property print.value=false --property line.separator='|END|' 2>/dev/null");
  ASSERT_TRUE(consumed.has_value());
  // The key is the instance id's 16 raw bytes, which may hold a newline: the
  // messages are split on a separator of our own.
  const std::string separator = "|END|";
  std::vector<std::string> keys;
  for (size_t at = 0; at < consumed->size();) {
    size_t end = consumed->find(separator, at);
    if (end == std::string::npos) break;  // the tool's closing message, if any, follows the last one
    std::string key = consumed->substr(at, end - at);
    if (!key.empty()) keys.push_back(key);
    at = end + separator.size();
  }
  EXPECT_GE(keys.size(), static_cast<size_t>(kBatches)) << "the console consumer read: " << *consumed;
  std::set<std::string> distinct(keys.begin(), keys.end());
  EXPECT_EQ(distinct.size(), 1u) << "one table, one ordering key: " << *consumed;
  EXPECT_NE(keys.empty() ? std::string("null") : keys[0], "null");
  for (Server* s : {&gw1, &gw2, &w1, &w2}) EXPECT_EQ(s->WaitForExit(0ms), -1) << s->OutputTail();
}

TEST_P(KafkaDeploymentLookups, AWorkerKilledMidIngestIsReplacedThroughARebalance) {
  const std::string brokers = EnvOrFail("AQUIFER_TEST_KAFKA");
  ASSERT_FALSE(brokers.empty());
  // Ten tables (ten ordering keys over two partitions), so both workers have partitions
  // with work. SIGKILL: no LeaveGroup; worker 1's partitions move after the session
  // timeout. Worker 2 owns every partition then: a write that waits for every store comes
  // back 200 on each table only once it applied what was queued before.
  RunWorkerKillTest(Deploy(brokers, GetParam()),
                    {.two_gateways = true, .tables = 10, .patience = std::chrono::seconds(60), .exact = false});
}

TEST_F(KafkaDeployment, TheBrokerKilledAndRestartedMidIngestLosesNoAcknowledgedWriteAndTheProcessesRecover) {
  OwnKafka kafka;
  ASSERT_TRUE(kafka.ok());
  Deployment& d = Deploy(kafka.brokers());
  Server& gw = d.Start("gateway");
  Server& w = d.Start("worker");
  Client admin(gw, kAdminSecretForDeployments);
  const std::string p = MakeProject(admin);
  std::vector<std::string> tables = {MakeTable(admin, p), MakeTable(admin, p)};
  ASSERT_FALSE(HasFailure());

  constexpr int kPerBatch = 10;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> next_seq{0};
  std::mutex mu;
  std::map<std::string, std::set<int64_t>> acked;
  std::map<int, int> statuses;
  std::atomic<size_t> acked_total{0};
  auto writer = [&](int which) {
    Client c(gw, kAdminSecretForDeployments);
    for (int n = 0; !stop.load(); ++n) {
      const std::string& t = tables[(n + which) % tables.size()];
      int64_t first = next_seq.fetch_add(kPerBatch);
      auto r = c.Post(TablePath(p, t) + "/records", EventBatch(first, kPerBatch));
      std::lock_guard lock(mu);
      ++statuses[r.status];
      if (r.status == 202) {
        for (int i = 0; i < kPerBatch; ++i) acked[t].insert(first + i);
        acked_total += kPerBatch;
      } else if (r.status != 503) {
        ADD_FAILURE() << "a write answered neither 202 nor 503: " << r.Describe();
      }
      if (r.status == 503) std::this_thread::sleep_for(100ms);
    }
  };
  std::thread writer1(writer, 0), writer2(writer, 1);
  auto wait_for_acks = [&](size_t n, std::chrono::seconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (acked_total.load() < n && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
    return acked_total.load() >= n;
  };
  EXPECT_TRUE(wait_for_acks(300, 60s)) << "the ingest did not start";

  ASSERT_TRUE(kafka.Halt());
  std::this_thread::sleep_for(3s);  // writes meet the dead broker
  const size_t acked_while_down = acked_total.load();
  ASSERT_TRUE(kafka.Resume());
  // The same processes recover by themselves: writes are acknowledged again.
  EXPECT_TRUE(wait_for_acks(acked_while_down + 300, 120s)) << "no write was acknowledged after the broker came back";
  stop = true;
  writer1.join();
  writer2.join();
  {
    std::lock_guard lock(mu);
    EXPECT_GT(statuses[503], 0) << "no write was refused while the broker was down";
  }
  for (const auto& t : tables) {
    auto r = admin.Post(TablePath(p, t) + "/records?wait=index", EventBatch(0, 1, "last"));
    AQ_ASSERT_STATUS(r, 200);
  }
  std::map<std::string, std::set<int64_t>> expected;
  {
    std::lock_guard lock(mu);
    expected = acked;
  }
  ExpectEachOnce(admin, p, expected, /*exact=*/false);
  for (Server* s : {&gw, &w}) EXPECT_EQ(s->WaitForExit(0ms), -1) << s->OutputTail();
}

}  // namespace
}  // namespace aquifer::e2e
