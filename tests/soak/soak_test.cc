// Crash soak of the whole server (issue 11, item 3): the real `aquifer serve`
// binary is SIGKILLed at random instants, and restarted on the same data dir,
// while two writers, a reader and a WebSocket subscriber run against it.
//
// Writers send batches of new keys (k unique across the run; every fourth
// batch with wait=index) and keep, per writer, the batches that got a 2xx in
// the order they were acknowledged. The reader pages the index and the log
// and checks what it is served (no 5xx but 503). The subscriber starts from
// the change cursor of a read made before the first write and, after every
// cut, resumes from the last cursor it received.
//
// Then, after a final write with wait=index,warehouse and the queue drained:
// - every acknowledged record is in the index (once: keys are unique), in the
//   log exactly once, and in the warehouse exactly once;
// - per writer, acknowledged batches appear in the log in acknowledgement order;
// - the subscriber saw every record of the log, in log order (repeats after a
//   resume are allowed, gaps are not).
//
// AQUIFER_SOAK_CYCLES (default 50; `make soak` runs 1000) and
// AQUIFER_SOAK_SEED change the run.

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

json SoakSchema() {
  return json::parse(R"({"type": "record", "name": "row", "fields": [
      {"name": "k", "type": "long"}, {"name": "w", "type": "long"}, {"name": "pad", "type": "string"}]})");
}

std::string Pad(int64_t k) { return std::string(static_cast<size_t>(8 + k % 40), static_cast<char>('a' + k % 26)); }

// Where the server is now (it moves to a new port at every restart).
struct Endpoint {
  std::mutex mu;
  std::string host;
  int port = 0;
  int generation = 0;
  std::pair<std::string, int> Get(int* gen = nullptr) {
    std::lock_guard lock(mu);
    if (gen) *gen = generation;
    return {host, port};
  }
};

TEST(Soak, EveryAcknowledgedWriteOnceInEveryStoreAfterManySigkills) {
  const int cycles = EnvInt("AQUIFER_SOAK_CYCLES", 50);
  const unsigned seed =
      static_cast<unsigned>(EnvInt("AQUIFER_SOAK_SEED", static_cast<int>(std::random_device{}())));
  std::cerr << "soak: " << cycles << " SIGKILL cycles, seed " << seed << " (AQUIFER_SOAK_SEED)\n";
  std::mt19937 rng(seed);

  Server server;
  server.Start();
  const std::string secret = server.admin_secret();
  const std::string p = UniqueName("soak"), t = "rows";
  std::string start_cursor;
  {
    Client admin(server, secret);
    AQ_ASSERT_STATUS(admin.Post("/v1/projects", {{"name", p}}), 201);
    AQ_ASSERT_STATUS(admin.Post("/v1/projects/" + p + "/tables",
                                {{"name", t}, {"schema", SoakSchema()}, {"key", {"k"}}}),
                     201);
    auto r = admin.Get(TablePath(p, t) + "/records?limit=1");
    AQ_ASSERT_STATUS(r, 200);
    start_cursor = r.j().value("change_cursor", "");
    ASSERT_FALSE(start_cursor.empty()) << r.Describe();
  }

  Endpoint endpoint;
  endpoint.host = server.host();
  endpoint.port = server.port();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> next_k{1};
  std::mutex mu;
  std::string unexpected;  // the first answer that is neither a 2xx, a 503 nor a transport error
  auto note_unexpected = [&](const std::string& what) {
    std::lock_guard lock(mu);
    if (unexpected.empty()) unexpected = what;
  };

  constexpr int kWriters = 2;
  std::vector<std::vector<std::vector<int64_t>>> acked(kWriters);  // per writer, batches in ack order
  std::set<int64_t> sent;
  std::atomic<int64_t> acked_writes{0}, failed_writes{0}, reads{0}, read_failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      std::mt19937 wrng(seed + 17 * w);
      std::optional<Client> c;
      int seen_gen = -1;
      for (int64_t n = 0; !stop; ++n) {
        int gen;
        auto [host, port] = endpoint.Get(&gen);
        if (gen != seen_gen) {
          c.emplace(host, port, secret);
          seen_gen = gen;
        }
        const int size = 1 + static_cast<int>(wrng() % 20);
        const int64_t first = next_k.fetch_add(size);
        std::vector<json> batch;
        std::vector<int64_t> ks;
        for (int64_t k = first; k < first + size; ++k) {
          batch.push_back({{"k", k}, {"w", w}, {"pad", Pad(k)}});
          ks.push_back(k);
        }
        {
          std::lock_guard lock(mu);
          sent.insert(ks.begin(), ks.end());
        }
        const bool wait = n % 4 == 0;
        auto r = c->Post(TablePath(p, t) + "/records" + (wait ? "?wait=index" : ""), batch);
        if (r.status == 202 || r.status == 200) {
          std::lock_guard lock(mu);
          acked[w].push_back(std::move(ks));
          ++acked_writes;
        } else {
          ++failed_writes;
          // 504: accepted but not applied in time: not counted as acknowledged.
          if (r.status != 0 && r.status != 503 && r.status != 504) note_unexpected("write: " + r.Describe());
          c->Disconnect();
          std::this_thread::sleep_for(5ms);
        }
      }
    });
  }
  threads.emplace_back([&] {  // reader
    std::optional<Client> c;
    int seen_gen = -1;
    std::mt19937 rrng(seed + 99);
    while (!stop) {
      int gen;
      auto [host, port] = endpoint.Get(&gen);
      if (gen != seen_gen) {
        c.emplace(host, port, secret);
        seen_gen = gen;
      }
      const bool log = rrng() % 2;
      auto r = c->Get(TablePath(p, t) + (log ? "/log?limit=200" : "/records?limit=200"));
      ++reads;
      if (r.status == 200) {
        for (const auto& rec : r.j().value("data", json::array())) {
          int64_t k = rec.value("k", int64_t{-1});
          if (rec.value("pad", "") != Pad(k)) note_unexpected("read served a damaged record: " + rec.dump());
        }
      } else {
        ++read_failures;
        if (r.status != 0 && r.status != 503) note_unexpected("read: " + r.Describe());
        c->Disconnect();
        std::this_thread::sleep_for(5ms);
      }
    }
  });
  std::vector<int64_t> seen;  // the subscriber's records, in arrival order (repeats kept)
  std::atomic<int> resumes{0};
  std::string last_cursor = start_cursor;
  std::mutex sub_mu;  // guards seen and last_cursor
  std::atomic<bool> stop_subscriber{false};
  std::thread subscriber([&] {
    while (!stop_subscriber) {
      auto [host, port] = endpoint.Get();
      WsClient ws;
      std::string cursor;
      {
        std::lock_guard lock(sub_mu);
        cursor = last_cursor;
      }
      if (!ws.Connect(host, port, secret, "/v1/subscribe", 2s).empty() ||
          !ws.Send(json{{"type", "subscribe"}, {"cursor", cursor}})) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      ++resumes;
      while (!stop_subscriber) {
        auto m = ws.Receive(200ms);
        if (!m) {
          if (ws.closed()) break;
          continue;
        }
        if (m->value("type", "") != "records") {
          if (m->value("type", "") == "error") note_unexpected("subscription: " + m->dump());
          continue;
        }
        std::lock_guard lock(sub_mu);
        for (const auto& rec : (*m)["data"]) seen.push_back(rec.value("k", int64_t{-1}));
        last_cursor = (*m)["cursor"].get<std::string>();
      }
    }
  });

  std::uniform_int_distribution<int> pause_ms(30, 400);
  for (int cycle = 0; cycle < cycles; ++cycle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    server.Kill();
    try {
      server.Start();
    } catch (const std::exception& e) {
      stop = stop_subscriber = true;
      for (auto& th : threads) th.join();
      subscriber.join();
      FAIL() << "restart " << cycle + 1 << " failed: " << e.what();
    }
    std::lock_guard lock(endpoint.mu);
    endpoint.host = server.host();
    endpoint.port = server.port();
    ++endpoint.generation;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
  stop = true;
  for (auto& th : threads) th.join();

  size_t acked_records = 0;
  for (const auto& batches : acked) {
    for (const auto& b : batches) acked_records += b.size();
  }
  std::cerr << "soak: " << cycles << " kills; writes acknowledged " << acked_writes << " ("
            << acked_records << " records), failed " << failed_writes << "; reads " << reads
            << " (failed " << read_failures << ")\n";
  EXPECT_TRUE(unexpected.empty()) << unexpected;
  ASSERT_GT(acked_writes.load(), cycles / 2) << "too few writes acknowledged to test anything\n"
                                             << server.OutputTail();

  Client admin(server, secret);
  auto fin = admin.Post(TablePath(p, t) + "/records?wait=index,warehouse",
                        json::array({{{"k", 0}, {"w", -1}, {"pad", Pad(0)}}}));
  AQ_ASSERT_STATUS(fin, 200) << "\n" << server.OutputTail();
  // The queue is applied in order per table, but redeliveries of older
  // messages may still be on their way: read until the log stops growing.
  std::vector<json> log;
  size_t last_size = 0;
  for (int stable = 0, i = 0; stable < 3 && i < 100; ++i) {
    std::string error;
    log = ReadWholeLog(admin, p, t, &error);
    ASSERT_TRUE(error.empty()) << error;
    stable = log.size() == last_size ? stable + 1 : 0;
    last_size = log.size();
    if (stable < 3) std::this_thread::sleep_for(300ms);
  }

  // Log: every acknowledged record exactly once, acknowledged batches of one
  // writer in acknowledgement order, nothing never sent.
  std::map<int64_t, size_t> position;  // k → index in the log
  int dupes = 0, phantoms = 0;
  for (size_t i = 0; i < log.size(); ++i) {
    int64_t k = log[i].value("k", int64_t{-1});
    if (!position.emplace(k, i).second && dupes++ < 5) ADD_FAILURE() << "k=" << k << " is logged twice";
    if (k != 0 && !sent.count(k) && phantoms++ < 5) ADD_FAILURE() << "the log holds k=" << k << ", never sent";
  }
  int lost = 0, disorder = 0;
  for (int w = 0; w < kWriters; ++w) {
    size_t previous_last = 0;
    bool have_previous = false;
    for (const auto& batch : acked[w]) {
      size_t lo = SIZE_MAX, hi = 0;
      for (int64_t k : batch) {
        auto it = position.find(k);
        if (it == position.end()) {
          if (lost++ < 5) ADD_FAILURE() << "acknowledged k=" << k << " is not in the log";
          continue;
        }
        lo = std::min(lo, it->second);
        hi = std::max(hi, it->second);
      }
      if (lo == SIZE_MAX) continue;
      if (have_previous && lo < previous_last && disorder++ < 5) {
        ADD_FAILURE() << "writer " << w << ": batch starting k=" << batch[0]
                      << " is logged before an earlier acknowledged batch";
      }
      previous_last = hi;
      have_previous = true;
    }
  }

  // Index: every acknowledged key.
  std::set<int64_t> index;
  {
    auto r = admin.Get(TablePath(p, t) + "/records?limit=1000");
    for (int pages = 0; pages < 100000; ++pages) {
      AQ_ASSERT_STATUS(r, 200);
      for (const auto& rec : r.j()["data"]) {
        int64_t k = rec["k"];
        EXPECT_TRUE(index.insert(k).second) << "the index returned k=" << k << " twice";
      }
      auto next = r.j().value("next_cursor", json());
      if (!next.is_string() || next.get<std::string>().empty()) break;
      r = admin.Get("/v1/cursor?limit=1000&cursor=" + UrlEncode(next.get<std::string>()));
    }
  }
  int missing_index = 0;
  for (const auto& batches : acked) {
    for (const auto& b : batches) {
      for (int64_t k : b) {
        if (!index.count(k) && missing_index++ < 5) ADD_FAILURE() << "acknowledged k=" << k << " is not in the index";
      }
    }
  }
  EXPECT_EQ(index.size(), position.size()) << "the index and the log hold different keys";

  // Warehouse: every acknowledged key exactly once.
  std::map<int64_t, int> warehouse;
  {
    auto job = admin.Post("/v1/sql", {{"query", "SELECT k FROM " + p + "." + t}});
    AQ_ASSERT_STATUS(job, 202);
    const std::string id = job.j().value("job_id", "");
    json status;
    for (int i = 0; i < 1200; ++i) {
      auto r = admin.Get("/v1/jobs/" + id);
      AQ_ASSERT_STATUS(r, 200);
      status = r.j();
      if (status.value("status", "") != "pending" && status.value("status", "") != "running") break;
      std::this_thread::sleep_for(50ms);
    }
    ASSERT_EQ(status.value("status", ""), "done") << status.dump();
    auto r = admin.Get("/v1/jobs/" + id + "/rows?limit=1000");
    for (int pages = 0; pages < 100000; ++pages) {
      AQ_ASSERT_STATUS(r, 200);
      for (const auto& row : r.j()["data"]) ++warehouse[row[0].get<int64_t>()];
      auto next = r.j().value("next_cursor", json());
      if (!next.is_string() || next.get<std::string>().empty()) break;
      r = admin.Get("/v1/jobs/" + id + "/rows?limit=1000&cursor=" + UrlEncode(next.get<std::string>()));
    }
  }
  int missing_warehouse = 0, twice_warehouse = 0;
  for (const auto& batches : acked) {
    for (const auto& b : batches) {
      for (int64_t k : b) {
        auto it = warehouse.find(k);
        if (it == warehouse.end()) {
          if (missing_warehouse++ < 5) ADD_FAILURE() << "acknowledged k=" << k << " is not in the warehouse";
        } else if (it->second != 1 && twice_warehouse++ < 5) {
          ADD_FAILURE() << "acknowledged k=" << k << " is " << it->second << " times in the warehouse";
        }
      }
    }
  }
  EXPECT_EQ(warehouse.size(), position.size()) << "the warehouse and the log hold different keys";

  // Subscriber: catches up with the whole log, in log order, with no gap.
  size_t covered = 0;
  for (int i = 0; i < 300; ++i) {
    {
      std::lock_guard lock(sub_mu);
      std::set<int64_t> distinct(seen.begin(), seen.end());
      covered = 0;
      for (const auto& [k, pos] : position) covered += distinct.count(k);
    }
    if (covered == position.size()) break;
    std::this_thread::sleep_for(100ms);
  }
  stop_subscriber = true;
  subscriber.join();
  EXPECT_EQ(covered, position.size()) << "the subscriber missed log records (a gap after a resume)";
  // First arrivals in log order: each new record is the next of the log.
  {
    std::set<int64_t> got;
    size_t expected_pos = 0;
    int out_of_order = 0;
    for (int64_t k : seen) {
      if (!got.insert(k).second) continue;
      auto it = position.find(k);
      if (it == position.end()) {
        ADD_FAILURE() << "the subscriber got k=" << k << ", not in the log";
        continue;
      }
      if (it->second != expected_pos && out_of_order++ < 5) {
        ADD_FAILURE() << "the subscriber got k=" << k << " (log position " << it->second
                      << ") where log position " << expected_pos << " was due";
      }
      expected_pos = it->second + 1;
    }
    std::cerr << "soak: log " << log.size() << " records, index " << index.size() << ", warehouse "
              << warehouse.size() << "; subscriber resumed " << resumes << " times, got " << seen.size()
              << " records (" << got.size() << " distinct)\n";
  }
  EXPECT_EQ(dupes + phantoms + lost + disorder + missing_index + missing_warehouse + twice_warehouse, 0);
  if (HasFailure()) std::cerr << "--- server output (tail) ---\n" << server.OutputTail(4000) << "\n";
}

}  // namespace
}  // namespace aquifer::e2e
