// e2e_bench: the whole server (`aquifer serve`, started as a child process on
// a scratch data dir) over HTTP and WebSocket, against baselines measured in
// the same run (DESIGN.md "Targets"). Figures are printed, never asserted.
//
// Workloads:
//   ingest/raw       the baseline: what `db_bench fillseq --sync=1
//                    --batch_size=1000` does, with the bench's data: a synced
//                    RocksDB WriteBatch of 1000 new keys with the records'
//                    JSON as values, from kClients threads, for the same
//                    duration as each HTTP run; measured before and after
//                    the HTTP runs (the ratio uses their mean); the one
//                    after waits until the last server, kept for the reads,
//                    is idle (its compactions would otherwise slow it)
//   ingest/<format>-<keys>  sustained HTTP ingest: kClients keep-alive clients
//                    each posting 1000 records of ~100 B per request with
//                    ?wait=index for `ingest_seconds`; format ndjson or a
//                    JSON array; keys new (every record a new key) or
//                    rewritten (each client cycles over 10 batches, the
//                    same 10,000 keys). The queue lag (aquifer_queue_lag,
//                    write messages published but not yet applied to every
//                    store) is sampled every 5 s and printed at the end of
//                    each run: flat means the workers keep up. Each shape
//                    runs on a fresh server with a fresh data dir (as each
//                    raw baseline gets a fresh DB), rewritten keys first;
//                    the read runs below use the last shape's server (after
//                    a new-key run: millions of keys, the case where lookups
//                    once collapsed to 2% of /healthz)
//   latency/sub      write → subscriber: one writer paced at 10,000 records/s
//                    (a batch of 10 every 1 ms, no wait), each record carrying
//                    its send time in µs; a WebSocket subscriber on the table
//                    measures arrival - send per record (p50/p99/max)
//   lookup/http      index point lookups: GET records?filter={full key}&limit=1
//                    from kClients keep-alive clients (requests/s), of 40,000
//                    keys the last ingest shape wrote (its oldest, for new keys)
//   lookup/healthz   GET /healthz on the same server, same clients (the trivial route),
//                    alternating with lookup/http in rounds of ~2 s
//   ingest/postgres  a second server with all four drivers on Postgres (catalog
//                    in SQLite): NDJSON batches, ?wait=index, kClients
//                    clients, sustained for `postgres_seconds`; then the queue
//                    backlog (aquifer_queue_lag, and warehouse rows behind the
//                    index) at the end and how long it takes to drain
//   ingest/kafka     the same with the queue on Kafka (AQUIFER_TEST_KAFKA, one
//                    partition) and the other stores embedded
//
// Usage: e2e_bench [ingest_seconds=30] [seconds_per_read_run=10] [postgres_seconds=30 (also kafka)]
// AQUIFER_E2E_BENCH_ONLY=postgres,kafka: only those second-server runs (no main server).
// AQUIFER_E2E_BENCH_INGEST=ndjson-new,array-rewrite,...: only those ingest runs on the main server.
// AQUIFER_TEST_POSTGRES: the server for ingest/postgres, AQUIFER_TEST_KAFKA the
// broker for ingest/kafka (scripts/bench.sh starts both).
// AQUIFER_BENCH_DIR: scratch dir (else $TMPDIR); the server binary is AQUIFER_BIN (compiled in)
// unless AQUIFER_BENCH_SERVER names another (to compare builds in the same conditions).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "bench_util.h"
#include "harness.h"

namespace {

using namespace aquifer::e2e;
using aquifer::bench::ProcessCpuSeconds;
using SteadyClock = std::chrono::steady_clock;

constexpr int kClients = 4;
constexpr int kBatch = 1000;

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

json BenchSchema() {
  return json::parse(R"({"type": "record", "name": "rec", "fields": [
      {"name": "user", "type": "string"}, {"name": "id", "type": "long"},
      {"name": "value", "type": "double"}, {"name": "payload", "type": "string"},
      {"name": "sent_us", "type": "long", "default": 0}]})");
}

// ~100 bytes of JSON per record (the latency run's records).
json BenchRecord(int client, int64_t id) {
  return {{"user", "user" + std::to_string(client)},
          {"id", id},
          {"value", static_cast<double>(id) * 0.5},
          {"payload", std::string(36, static_cast<char>('a' + id % 26))},
          {"sent_us", 0}};
}

// Ingest ids have kIdDigits digits (kIdBase + n), so a request body is a
// template whose ids are rewritten in place: the clients spend no time
// building JSON (they share the two cores with the server).
constexpr int64_t kIdBase = 100'000'000'000;
constexpr int kIdDigits = 12;
constexpr int kRewriteBatches = 10;  // rewritten keys: each client cycles over 10 batches

// One request's records of one user, in one format, with patchable ids.
struct Body {
  std::string text;
  std::vector<size_t> id_at;  // offset of each record's id digits in `text`
  std::vector<std::pair<size_t, size_t>> line;  // each record's JSON (offset, size), for the raw baseline

  // Sets record r's id to kIdBase + first + r.
  void SetIds(int64_t first) {
    char digits[kIdDigits + 1];
    for (size_t r = 0; r < id_at.size(); ++r) {
      std::snprintf(digits, sizeof digits, "%lld", static_cast<long long>(kIdBase + first + static_cast<int64_t>(r)));
      std::memcpy(text.data() + id_at[r], digits, kIdDigits);
    }
  }
  std::string_view Line(size_t r) const { return std::string_view(text).substr(line[r].first, line[r].second); }
};

Body MakeBody(const std::string& user, bool array) {
  Body body;
  if (array) body.text += '[';
  for (int r = 0; r < kBatch; ++r) {
    if (array && r > 0) body.text += ',';
    std::string head = R"({"user":")" + user + R"(","id":)";
    size_t begin = body.text.size();
    body.text += head;
    body.id_at.push_back(body.text.size());
    body.text += std::to_string(kIdBase);
    body.text += R"(,"value":)" + std::to_string(r) + R"(.5,"payload":")" +
                 std::string(36, static_cast<char>('a' + r % 26)) + R"(","sent_us":0})";
    body.line.emplace_back(begin, body.text.size() - begin);
    if (!array) body.text += '\n';
  }
  if (array) body.text += ']';
  return body;
}

struct Rate {
  double per_s = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  int64_t errors = 0;
  std::string first_error;
  std::string note;  // printed under the row
};

// One sample of the server's queue lag (write messages not yet applied to every store), or -1.
int64_t QueueLag(const Server& server) {
  Client client(server, server.admin_secret());
  auto r = client.Get("/metrics");
  if (r.status != 200) return -1;
  const std::string& text = r.body;
  size_t at = text.find("\naquifer_queue_lag ");
  if (at == std::string::npos) return -1;
  return std::atoll(text.c_str() + at + std::strlen("\naquifer_queue_lag "));
}

// Sustained HTTP ingest for `seconds`: kClients clients, 1000 records per request, wait=index.
Rate IngestHttp(const Server& server, const std::string& table_path, bool array, bool rewrite, double seconds,
                const std::string& user_prefix) {
  std::vector<std::thread> threads;
  std::vector<std::vector<double>> lat(kClients);
  std::atomic<int64_t> errors{0}, records{0};
  std::atomic<bool> done{false};
  std::string first_error;
  std::mutex mu;
  const std::string target = table_path + "/records?wait=index";
  const char* type = array ? "application/json" : "application/x-ndjson";
  const double cpu_start = ProcessCpuSeconds(server.pid());
  auto start = SteadyClock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Client client(server, server.admin_secret());
      Body body = MakeBody(user_prefix + std::to_string(c), array);
      for (int64_t i = 0; Seconds(SteadyClock::now() - start) < seconds; ++i) {
        body.SetIds((rewrite ? i % kRewriteBatches : i) * kBatch);
        auto t0 = SteadyClock::now();
        auto r = client.PostRaw(target, body.text, type);
        lat[c].push_back(Seconds(SteadyClock::now() - t0) * 1e3);
        if (r.status == 200) {
          records += kBatch;
        } else {
          ++errors;
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = r.Describe().substr(0, 300);
        }
      }
    });
  }
  std::vector<int64_t> lags;  // every 5 s, then at the end
  std::thread sampler([&] {
    auto next = start + std::chrono::seconds(5);
    while (!done) {
      std::this_thread::sleep_for(50ms);
      if (SteadyClock::now() >= next && !done) {
        lags.push_back(QueueLag(server));
        next += std::chrono::seconds(5);
      }
    }
  });
  for (auto& t : threads) t.join();
  double s = Seconds(SteadyClock::now() - start);
  done = true;
  sampler.join();
  lags.push_back(QueueLag(server));
  const double cpu_s = ProcessCpuSeconds(server.pid()) - cpu_start;
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  Rate out;
  out.per_s = records / s;
  out.p50_ms = Percentile(all, 0.5);
  out.p99_ms = Percentile(all, 0.99);
  out.max_ms = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  out.errors = errors;
  out.first_error = first_error;
  out.note = "queue lag (messages of 1000 records) every 5 s:";
  for (int64_t lag : lags) out.note += " " + std::to_string(lag);
  out.note += " (last: at the end)";
  if (cpu_start >= 0 && records > 0) {
    // The server's CPU per record: steadier than the rate on a shared machine (includes the
    // warehouse copy, which the writers do not wait for).
    char cpu[96];
    std::snprintf(cpu, sizeof cpu, "; server CPU %.2f us per record (%.2f cores)",
                  1e6 * cpu_s / static_cast<double>(records.load()), cpu_s / s);
    out.note += cpu;
  }
  return out;
}

// The baseline: synced WriteBatches of 1000 new keys (db_bench fillseq --sync=1 --batch_size=1000),
// key user/id, value the record's JSON, from kClients threads for `seconds`.
Rate IngestRaw(const std::string& dir, double seconds) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  auto st = rocksdb::DB::Open(options, dir, &raw);
  Rate out;
  if (!st.ok()) {
    out.first_error = st.ToString();
    return out;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::vector<std::thread> threads;
  std::vector<std::vector<double>> lat(kClients);
  std::atomic<int64_t> records{0}, errors{0};
  auto start = SteadyClock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      const std::string user = "raw" + std::to_string(c);
      Body body = MakeBody(user, false);
      std::string key;
      for (int64_t i = 0; Seconds(SteadyClock::now() - start) < seconds; ++i) {
        body.SetIds(i * kBatch);
        auto t0 = SteadyClock::now();
        rocksdb::WriteBatch wb;
        for (size_t r = 0; r < body.id_at.size(); ++r) {
          key.assign(user).append("/").append(body.text, body.id_at[r], kIdDigits);
          wb.Put(key, rocksdb::Slice(body.Line(r).data(), body.Line(r).size()));
        }
        if (db->Write(wo, &wb).ok()) records += kBatch;
        else ++errors;
        lat[c].push_back(Seconds(SteadyClock::now() - t0) * 1e3);
      }
    });
  }
  for (auto& t : threads) t.join();
  double s = Seconds(SteadyClock::now() - start);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  out.per_s = records / s;
  out.p50_ms = Percentile(all, 0.5);
  out.p99_ms = Percentile(all, 0.99);
  out.max_ms = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  out.errors = errors;
  return out;
}

struct Latency {
  std::vector<double> ms;
  int64_t sent = 0, received = 0, write_errors = 0;
  double achieved_per_s = 0;
  std::string error;
};

Latency WriteToSubscriber(const Server& server, const std::string& project, const std::string& table,
                          double seconds) {
  Latency out;
  Client admin(server, server.admin_secret());
  std::string path = "/v1/projects/" + project + "/tables/" + table;
  auto first = admin.Get(path + "/records?limit=1");
  std::string cursor = first.is_json ? first.j().value("change_cursor", "") : "";
  if (first.status != 200 || cursor.empty()) {
    out.error = "no change cursor: " + first.Describe();
    return out;
  }
  WsClient ws;
  if (auto e = ws.Connect(server.host(), server.port(), server.admin_secret()); !e.empty()) {
    out.error = "subscribe: " + e;
    return out;
  }
  ws.Send(json{{"type", "subscribe"}, {"cursor", cursor}});
  std::atomic<bool> writing{true};
  std::atomic<int64_t> sent{0};
  std::thread writer([&] {
    Client c(server, server.admin_secret());
    constexpr int kPerMs = 10;  // 10,000 records/s
    auto start = SteadyClock::now();
    int64_t next_id = 0;
    while (Seconds(SteadyClock::now() - start) < seconds) {
      // Everything due by now (catching up if a request took longer than 1 ms).
      int64_t due = static_cast<int64_t>(Seconds(SteadyClock::now() - start) * 1000.0) * kPerMs + kPerMs;
      int64_t n = std::min<int64_t>(due - next_id, 1000);
      if (n <= 0) {
        std::this_thread::sleep_until(start + std::chrono::microseconds((next_id / kPerMs) * 1000));
        continue;
      }
      std::string body;
      int64_t now = NowUs();
      for (int64_t i = 0; i < n; ++i) {
        json r = BenchRecord(9, next_id + i);
        r["sent_us"] = now;
        body += r.dump();
        body += '\n';
      }
      auto resp = c.PostRaw(path + "/records", body, "application/x-ndjson");
      if (resp.status == 202) {
        next_id += n;
        sent += n;
      } else {
        ++out.write_errors;
        if (out.error.empty()) out.error = "write: " + resp.Describe().substr(0, 300);
        next_id += n;
      }
    }
    out.achieved_per_s = sent / Seconds(SteadyClock::now() - start);
    writing = false;
  });
  auto idle_since = SteadyClock::now();
  while (writing || Seconds(SteadyClock::now() - idle_since) < 3.0) {
    auto m = ws.Receive(100ms);
    if (!m) {
      if (ws.closed()) {
        if (out.error.empty()) out.error = "subscription closed: " + ws.close_reason();
        break;
      }
      if (!writing && out.received >= sent) break;
      continue;
    }
    idle_since = SteadyClock::now();
    if (m->value("type", "") != "records") {
      if (out.error.empty()) out.error = "subscription: " + m->dump().substr(0, 300);
      continue;
    }
    int64_t arrival = m->value("__received_us", NowUs());
    for (const auto& rec : (*m)["data"]) {
      out.ms.push_back(static_cast<double>(arrival - rec.value("sent_us", arrival)) / 1000.0);
      ++out.received;
    }
  }
  writer.join();
  out.sent = sent;
  return out;
}

Rate Requests(const Server& server, const std::function<std::string(std::mt19937&)>& target, double seconds) {
  std::vector<std::thread> threads;
  std::atomic<int64_t> ok{0}, errors{0};
  std::vector<std::vector<double>> lat(kClients);
  std::string first_error;
  std::mutex mu;
  auto start = SteadyClock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 rng(c + 1);
      Client client(server, server.admin_secret());
      while (Seconds(SteadyClock::now() - start) < seconds) {
        std::string t = target(rng);
        auto t0 = SteadyClock::now();
        auto r = client.Get(t);
        lat[c].push_back(Seconds(SteadyClock::now() - t0) * 1e3);
        if (r.status == 200) {
          ++ok;
        } else {
          ++errors;
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = r.Describe().substr(0, 300);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  double s = Seconds(SteadyClock::now() - start);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  Rate out;
  out.per_s = ok / s;
  out.p50_ms = Percentile(all, 0.5);
  out.p99_ms = Percentile(all, 0.99);
  out.max_ms = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  out.errors = errors;
  out.first_error = first_error;
  return out;
}

// The value of one unlabelled (or exactly labelled) sample of GET /metrics; -1 if absent.
int64_t MetricValue(const std::string& metrics, const std::string& sample) {
  size_t pos = 0;
  while ((pos = metrics.find(sample + " ", pos)) != std::string::npos) {
    if (pos == 0 || metrics[pos - 1] == '\n') return std::atoll(metrics.c_str() + pos + sample.size() + 1);
    pos += sample.size();
  }
  return -1;
}

struct Backlog {
  int64_t lag = -1, index = -1, warehouse = -1;
};
Backlog ReadBacklog(Client& client) {
  auto r = client.Get("/metrics");
  Backlog b;
  if (r.status != 200) return b;
  b.lag = MetricValue(r.body, "aquifer_queue_lag");
  b.index = MetricValue(r.body, "aquifer_records_written_total{store=\"index\"}");
  b.warehouse = MetricValue(r.body, "aquifer_records_written_total{store=\"warehouse\"}");
  return b;
}

// Sustained ingest with wait=index into a second server whose drivers are set
// by `env` ("AQUIFER_<SERVICE>_<KEY>=value"), then the backlog at the end and
// how long the workers take to drain it. `name` labels the row.
void IngestOnDrivers(const char* name, const std::string& data_dir, const std::vector<std::string>& env,
                     double seconds) {
  ServerOptions options;
  options.data_dir = data_dir;
  options.extra_env = env;
  Server server(options);
  try {
    server.Start();
  } catch (const std::exception& e) {
    std::printf("%s: FAILED to start the server: %s\n", name, e.what());
    return;
  }
  Client admin(server, server.admin_secret());
  const std::string path = "/v1/projects/pgbench/tables/ingest";
  if (auto r = admin.Post("/v1/projects", {{"name", "pgbench"}}); r.status != 201) {
    std::printf("%s: FAILED to create a project: %s\n", name, r.Describe().c_str());
    return;
  }
  if (auto r = admin.Post("/v1/projects/pgbench/tables", {{"name", "ingest"}, {"schema", BenchSchema()}, {"key", {"user", "id"}}});
      r.status != 201) {
    std::printf("%s: FAILED to create a table: %s\n", name, r.Describe().c_str());
    return;
  }
  std::vector<std::thread> threads;
  std::vector<std::vector<double>> lat(kClients);
  std::atomic<int64_t> errors{0}, records{0};
  std::string first_error;
  std::mutex mu;
  auto start = SteadyClock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Client client(server, server.admin_secret());
      for (int64_t batch = 0; Seconds(SteadyClock::now() - start) < seconds; ++batch) {
        std::string body;
        for (int r = 0; r < kBatch; ++r) {
          body += BenchRecord(c, batch * kBatch + r).dump();
          body += '\n';
        }
        auto t0 = SteadyClock::now();
        auto resp = client.PostRaw(path + "/records?wait=index", body, "application/x-ndjson");
        lat[c].push_back(Seconds(SteadyClock::now() - t0) * 1e3);
        if (resp.status == 200) {
          records += kBatch;
        } else {
          ++errors;
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = resp.Describe().substr(0, 300);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  const double s = Seconds(SteadyClock::now() - start);
  Backlog at_end = ReadBacklog(admin);
  // Then until the workers have caught up (the warehouse write follows the index write).
  auto drain_start = SteadyClock::now();
  Backlog now = at_end;
  while (Seconds(SteadyClock::now() - drain_start) < 300 && (now.lag != 0 || now.warehouse < now.index)) {
    std::this_thread::sleep_for(100ms);
    now = ReadBacklog(admin);
  }
  const double drain_s = Seconds(SteadyClock::now() - drain_start);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  Rate rate;
  rate.per_s = records / s;
  rate.p50_ms = Percentile(all, 0.5);
  rate.p99_ms = Percentile(all, 0.99);
  rate.max_ms = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
  rate.errors = errors;
  rate.first_error = first_error;
  std::printf("%-22s %12.0f %-10s %9.2f %9.2f %9.2f %7lld\n", name, rate.per_s, "records/s", rate.p50_ms,
              rate.p99_ms, rate.max_ms, static_cast<long long>(rate.errors));
  if (!rate.first_error.empty()) std::printf("  first error: %s\n", rate.first_error.c_str());
  std::printf("  %lld records in %.1f s, %d clients; backlog at the end: queue lag %lld messages, "
              "warehouse %lld records behind the index; drained in %.1f s%s\n",
              static_cast<long long>(records.load()), s, kClients, static_cast<long long>(at_end.lag),
              static_cast<long long>(at_end.index - at_end.warehouse), drain_s,
              now.lag == 0 && now.warehouse >= now.index ? "" : " (NOT drained after 300 s)");
  server.Stop();
}

// ingest/postgres: all four drivers on Postgres (catalog in SQLite).
void IngestPostgres(const std::string& scratch, double seconds) {
  const char* url = std::getenv("AQUIFER_TEST_POSTGRES");
  if (url == nullptr || *url == '\0') {
    std::printf("ingest/postgres: not run: AQUIFER_TEST_POSTGRES is not set (`make bench` starts a server)\n");
    return;
  }
  std::vector<std::string> env;
  for (const char* service : {"QUEUE", "LOOKUP", "WAREHOUSE", "USAGE"}) {
    env.push_back(std::string("AQUIFER_") + service + "_DRIVER=postgres");
    env.push_back(std::string("AQUIFER_") + service + "_URL=" + url);
  }
  IngestOnDrivers("ingest/postgres", scratch + "/server-postgres", env, seconds);
}

// ingest/kafka: the queue on the Kafka broker (one partition, the driver's
// defaults, a topic prefix of its own), the other stores embedded.
void IngestKafka(const std::string& scratch, double seconds) {
  const char* brokers = std::getenv("AQUIFER_TEST_KAFKA");
  if (brokers == nullptr || *brokers == '\0') {
    std::printf("ingest/kafka: not run: AQUIFER_TEST_KAFKA is not set (`make bench` starts a broker)\n");
    return;
  }
  char prefix[64];
  std::snprintf(prefix, sizeof prefix, "e2e-bench-%d-%lld.", static_cast<int>(getpid()),
                static_cast<long long>(NowUs()));
  IngestOnDrivers("ingest/kafka", scratch + "/server-kafka",
                  {"AQUIFER_QUEUE_DRIVER=kafka", std::string("AQUIFER_QUEUE_BROKERS=") + brokers,
                   std::string("AQUIFER_QUEUE_TOPIC_PREFIX=") + prefix},
                  seconds);
}

void PrintRow(const char* name, const Rate& r, const char* unit) {
  std::printf("%-22s %12.0f %-10s %9.2f %9.2f %9.2f %7lld\n", name, r.per_s, unit, r.p50_ms, r.p99_ms, r.max_ms,
              static_cast<long long>(r.errors));
  if (!r.note.empty()) std::printf("  %s\n", r.note.c_str());
  if (!r.first_error.empty()) std::printf("  first error: %s\n", r.first_error.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  double ingest_seconds = argc > 1 ? std::atof(argv[1]) : 30.0;
  double read_seconds = argc > 2 ? std::atof(argv[2]) : 10.0;
  double postgres_seconds = argc > 3 ? std::atof(argv[3]) : 30.0;
  TempDir scratch("e2e-bench");
  std::printf("e2e_bench: server %s, scratch %s\n",
              std::getenv("AQUIFER_BENCH_SERVER") != nullptr ? std::getenv("AQUIFER_BENCH_SERVER") : AQUIFER_BIN,
              scratch.path().c_str());
  std::printf("config: %d clients, %d records (~100 B) per request, ingest %.0f s per run, reads %.0f s per run, "
              "latency at 10,000 records/s for %.0f s\n",
              kClients, kBatch, ingest_seconds, read_seconds, read_seconds);
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char load[64] = {0};
    if (std::fgets(load, sizeof load, f) != nullptr) std::printf("load average at the start: %s", load);
    std::fclose(f);
  }

  // AQUIFER_E2E_BENCH_ONLY=postgres,kafka: only those runs on a second server.
  if (const char* only = std::getenv("AQUIFER_E2E_BENCH_ONLY"); only != nullptr && *only != 0) {
    const std::string runs = only;
    if (runs.find("postgres") != std::string::npos) IngestPostgres(scratch.path(), postgres_seconds);
    if (runs.find("kafka") != std::string::npos) IngestKafka(scratch.path(), postgres_seconds);
    return 0;
  }

  // Each ingest shape runs on a fresh server with a fresh data dir, as each raw
  // baseline writes to a fresh DB: a shape run after the others would write into a
  // store already holding tens of millions of records. The rewritten-key shapes
  // run first and the new-key shapes last, and the read runs (lookups, /healthz,
  // latency) use the last shape's server: after a new-key run it holds millions of
  // keys (~6-7 M after 30 s), and the lookups read the oldest 40,000 of them (the
  // collapse to 2% of /healthz once seen after long ingests was the index and
  // filter blocks of millions of keys thrashing the block cache, which these
  // reads still meet). With no shape picked, the reads get a fresh server.
  const std::string project = "bench";
  const std::string table_path = "/v1/projects/" + project + "/tables/ingest";
  int server_count = 0;
  auto start_server = [&]() -> std::unique_ptr<Server> {
    ServerOptions options;
    options.data_dir = scratch.path() + "/server" + std::to_string(++server_count);
    // AQUIFER_BENCH_SERVER: another server binary (e.g. a copy built before a change, to compare).
    if (const char* bin = std::getenv("AQUIFER_BENCH_SERVER"); bin != nullptr && *bin != 0) options.binary = bin;
    auto server = std::make_unique<Server>(options);
    try {
      server->Start();
    } catch (const std::exception& e) {
      std::printf("e2e_bench: FAILED to start the server: %s\n", e.what());
      return nullptr;
    }
    Client admin(*server, server->admin_secret());
    if (auto r = admin.Post("/v1/projects", {{"name", project}}); r.status != 201) {
      std::printf("e2e_bench: FAILED to create a project: %s\n", r.Describe().c_str());
      return nullptr;
    }
    for (const char* name : {"ingest", "latency"}) {
      auto r = admin.Post("/v1/projects/" + project + "/tables",
                          {{"name", name}, {"schema", BenchSchema()}, {"key", {"user", "id"}}});
      if (r.status != 201) {
        std::printf("e2e_bench: FAILED to create table %s: %s\n", name, r.Describe().c_str());
        return nullptr;
      }
    }
    return server;
  };

  std::printf("\n%-22s %12s %-10s %9s %9s %9s %7s\n", "workload", "rate", "unit", "p50 ms", "p99 ms", "max ms",
              "errors");
  Rate raw1 = IngestRaw(scratch.path() + "/raw1", ingest_seconds);
  PrintRow("ingest/raw", raw1, "records/s");
  struct Run {
    const char* name;
    bool array, rewrite;
    const char* users;
    Rate rate;
  };
  std::vector<Run> runs = {{"ingest/ndjson-rewrite", false, true, "r"},
                           {"ingest/array-rewrite", true, true, "r"},
                           {"ingest/ndjson-new", false, false, "n"},
                           {"ingest/array-new", true, false, "a"}};
  // AQUIFER_E2E_BENCH_INGEST=ndjson-rewrite,array-new: only those ingest runs (e.g. under perf).
  const char* picked = std::getenv("AQUIFER_E2E_BENCH_INGEST");
  std::unique_ptr<Server> last;   // the last shape's server, kept for the read runs
  std::string lookup_users = "r";  // the user prefix of the keys the lookups read
  for (auto& run : runs) {
    if (picked != nullptr && *picked != 0 &&
        std::string(picked).find(std::string(run.name).substr(std::strlen("ingest/"))) == std::string::npos) {
      continue;
    }
    if (last != nullptr) {  // the previous shape's server: stopped, its data dir removed
      const std::string dir = last->data_dir();
      last->Stop();
      last.reset();
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
    last = start_server();
    if (last == nullptr) return 1;
    run.rate = IngestHttp(*last, table_path, run.array, run.rewrite, ingest_seconds, run.users);
    PrintRow(run.name, run.rate, "records/s");
    lookup_users = run.users;
  }
  // The after-baseline measures RocksDB alone, as the first did: the last
  // shape's server (kept for the reads) first finishes its flushes and
  // compactions (its CPU under 0.05 cores over a second; at most 120 s).
  if (last != nullptr) {
    const auto wait_start = SteadyClock::now();
    double busy = 1;
    while (busy > 0.05 && Seconds(SteadyClock::now() - wait_start) < 120) {
      const double cpu0 = ProcessCpuSeconds(last->pid());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      busy = ProcessCpuSeconds(last->pid()) - cpu0;
    }
    std::printf("  (the last server idle after %.0f s: %.2f cores over the last second)\n",
                Seconds(SteadyClock::now() - wait_start), busy);
  }
  Rate raw2 = IngestRaw(scratch.path() + "/raw2", ingest_seconds);
  PrintRow("ingest/raw", raw2, "records/s");
  double raw_mean = (raw1.per_s + raw2.per_s) / 2;

  // The read runs: on the last shape's server (see above), or a fresh one.
  if (last == nullptr) last = start_server();
  if (last == nullptr) return 1;
  Server& server = *last;

  // Point lookups of keys the last shape wrote (its users, ids kIdBase + [0, 10,000): every key
  // of a rewrite run, the first 10 requests of each client of a new-key run).
  // Lookups and /healthz alternate in rounds of about 2 s (as serve_bench
  // does), so load that comes and goes on the machine hits both alike; each
  // row is the mean rate and the median of the rounds' p50/p99, and the ratio
  // the median of the rounds' ratios.
  std::string lookup_path = table_path + "/records?limit=1&filter=";
  auto lookup_target = [&](std::mt19937& rng) {
    json filter = {{"user", lookup_users + std::to_string(rng() % kClients)},
                   {"id", kIdBase + static_cast<int64_t>(rng() % (kRewriteBatches * kBatch))}};
    return lookup_path + UrlEncode(filter.dump());
  };
  auto healthz_target = [](std::mt19937&) { return std::string("/healthz"); };
  const int rounds = std::max(1, static_cast<int>(std::lround(read_seconds / 2)));
  std::vector<Rate> lookups, healths;
  std::vector<double> lookup_ratios;
  for (int round = 0; round < rounds; ++round) {
    lookups.push_back(Requests(server, lookup_target, read_seconds / rounds));
    healths.push_back(Requests(server, healthz_target, read_seconds / rounds));
    lookup_ratios.push_back(healths.back().per_s > 0 ? lookups.back().per_s / healths.back().per_s : 0);
  }
  auto combine = [](const std::vector<Rate>& parts) {
    Rate out;
    std::vector<double> p50, p99;
    for (const Rate& part : parts) {
      out.per_s += part.per_s / static_cast<double>(parts.size());
      p50.push_back(part.p50_ms);
      p99.push_back(part.p99_ms);
      out.max_ms = std::max(out.max_ms, part.max_ms);
      out.errors += part.errors;
      if (out.first_error.empty()) out.first_error = part.first_error;
    }
    out.p50_ms = Percentile(p50, 0.5);
    out.p99_ms = Percentile(p99, 0.5);
    return out;
  };
  Rate lookup = combine(lookups);
  PrintRow("lookup/http", lookup, "req/s");
  Rate healthz = combine(healths);
  PrintRow("lookup/healthz", healthz, "req/s");

  Latency lat = WriteToSubscriber(server, project, "latency", read_seconds);
  std::printf("%-22s %12.0f %-10s %9.2f %9.2f %9.2f %7lld\n", "latency/sub", lat.achieved_per_s, "records/s",
              Percentile(lat.ms, 0.5), Percentile(lat.ms, 0.99),
              lat.ms.empty() ? 0.0 : *std::max_element(lat.ms.begin(), lat.ms.end()),
              static_cast<long long>(lat.write_errors));
  std::printf("  sent %lld, received %lld", static_cast<long long>(lat.sent), static_cast<long long>(lat.received));
  if (lat.ms.size() >= 10) {  // a growing backlog shows as a rising latency over the run
    size_t tenth = lat.ms.size() / 10;
    std::vector<double> head(lat.ms.begin(), lat.ms.begin() + tenth), tail(lat.ms.end() - tenth, lat.ms.end());
    std::printf("; p50 of the first / last 10%% of records: %.2f / %.2f ms", Percentile(head, 0.5),
                Percentile(tail, 0.5));
  }
  std::printf("\n");
  if (!lat.error.empty()) std::printf("  error: %s\n", lat.error.c_str());

  std::printf("\nratios (DESIGN.md targets):\n");
  for (const auto& run : runs) {
    std::printf("  %-22s / raw WriteBatch  %6.1f%%   (target >= 50%%)\n", run.name,
                raw_mean > 0 ? 100.0 * run.rate.per_s / raw_mean : 0.0);
  }
  std::printf("  lookup http/healthz                    %6.1f%%   (target >= 50%%; median of %d alternating rounds)\n",
              100.0 * Percentile(lookup_ratios, 0.5), rounds);
  std::printf("  write->subscriber p50 / p99            %.2f / %.2f ms   (target <= 1 / 5 ms)\n",
              Percentile(lat.ms, 0.5), Percentile(lat.ms, 0.99));
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char load[64] = {0};
    if (std::fgets(load, sizeof load, f) != nullptr) std::printf("load average at the end: %s", load);
    std::fclose(f);
  }
  server.Stop();

  std::printf("\n");
  IngestPostgres(scratch.path(), postgres_seconds);
  IngestKafka(scratch.path(), postgres_seconds);
  return 0;
}
