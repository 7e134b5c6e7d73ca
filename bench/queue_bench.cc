// queue_bench: the embedded MessageQueue against raw RocksDB in the same run.
//
// Workloads (each runs for AQUIFER_BENCH_SECONDS, default 2; messages of 100 bytes):
//   publish/1xN      Publish of one message from N concurrent publishers (group commit)
//   publish/100x1    Publish of 100-message spans from one publisher
//   consume+ack/C    C competing consumers pulling up to 1000 and acking, over a backlog
//   raw/put/N        baseline: synced single Put from N threads on a raw RocksDB
//   raw/batch100     baseline: synced WriteBatch of 100 records on a raw RocksDB
// Then the ratios DESIGN.md tracks: durable acks (queue spans of 100) vs raw synced
// batches of 100 (target >= 60%), and single publishes vs raw synced puts.
// Data lives under AQUIFER_BENCH_DIR (default: a fresh folder in /tmp).

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "aquifer/drivers/rocksdb/queue.h"

namespace {

using aquifer::driver::MessageQueue;
using aquifer::driver::OutgoingMessage;
using Clock = std::chrono::steady_clock;

constexpr size_t kMessageBytes = 100;

double Seconds() {
  const char* s = getenv("AQUIFER_BENCH_SECONDS");
  return s ? atof(s) : 2.0;
}

struct Figures {
  double ops_per_s = 0;      // calls per second
  double records_per_s = 0;  // messages per second
  double p50_us = 0, p99_us = 0, max_us = 0;
};

// Runs `op` (which returns how many records it handled) from `threads`
// threads for the configured time and returns rates and call latencies.
template <typename Op>
Figures Run(int threads, Op op) {
  std::atomic<bool> stop{false};
  std::atomic<int> finished{0};  // workers that ran out of work
  std::atomic<int64_t> records{0};
  std::mutex mu;
  std::vector<double> latencies;
  std::vector<std::thread> workers;
  auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<double> mine;
      int64_t n = 0;
      uint64_t i = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        auto a = Clock::now();
        int64_t handled = op(t, i++);
        if (handled < 0) break;
        mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - a).count());
        n += handled;
      }
      records += n;
      std::lock_guard<std::mutex> lock(mu);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
      ++finished;
    });
  }
  auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(Seconds()));
  while (Clock::now() < end && finished.load() < threads) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (auto& w : workers) w.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  Figures f;
  f.ops_per_s = latencies.size() / elapsed;
  f.records_per_s = records.load() / elapsed;
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    f.p50_us = latencies[latencies.size() / 2];
    f.p99_us = latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
    f.max_us = latencies.back();
  }
  return f;
}

void Print(const std::string& name, const Figures& f) {
  printf("%-22s %12.0f %12.0f %10.2f %10.0f %10.0f %10.0f\n", name.c_str(), f.ops_per_s, f.records_per_s,
         f.records_per_s * kMessageBytes / 1e6, f.p50_us, f.p99_us, f.max_us);
  fflush(stdout);
}

std::string Payload(uint64_t i) {
  std::string s(kMessageBytes, 'x');
  std::string n = std::to_string(i);
  std::copy(n.begin(), n.end(), s.begin());
  return s;
}

std::shared_ptr<MessageQueue> OpenQueue(const std::string& dir) {
  aquifer::driver::DriverContext context;
  context.data_dir = dir;
  auto q = aquifer::drivers::rocksdb::OpenQueue({}, context);
  if (!q.ok()) {
    fprintf(stderr, "opening the queue: %s\n", q.status().ToString().c_str());
    exit(1);
  }
  if (!(*q)->RegisterTopic("bench").ok()) exit(1);
  return *q;
}

std::unique_ptr<rocksdb::DB> OpenRaw(const std::string& path) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_background_jobs = 2;  // as the queue
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(options, path, &raw);
  if (!s.ok()) {
    fprintf(stderr, "opening raw RocksDB: %s\n", s.ToString().c_str());
    exit(1);
  }
  return std::unique_ptr<rocksdb::DB>(raw);
}

std::string RawKey(int t, uint64_t i) {
  std::string k = "r" + std::to_string(t) + ":";
  for (int b = 7; b >= 0; --b) k.push_back(static_cast<char>((i >> (8 * b)) & 0xff));
  return k;
}

}  // namespace

int main() {
  std::string dir;
  if (const char* d = getenv("AQUIFER_BENCH_DIR")) {
    dir = d;
  } else {
    char tmpl[] = "/tmp/aquifer-queue-bench-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    dir = tmpl;
  }
  printf("queue_bench: embedded queue (RocksDB %s), sync=true, %zu-byte messages, %.1f s per workload, %u cores, dir %s\n",
         ROCKSDB_NAMESPACE::GetRocksVersionAsString().c_str(), kMessageBytes, Seconds(),
         std::thread::hardware_concurrency(), dir.c_str());
  printf("%-22s %12s %12s %10s %10s %10s %10s\n", "workload", "calls/s", "msgs/s", "MB/s", "p50 us", "p99 us",
         "max us");

  std::vector<int> publishers = {1, 4, 16};
  std::vector<Figures> queue_single, raw_single;
  Figures queue_batch, raw_batch;
  {
    auto q = OpenQueue(dir + "/q");
    // A subscription so the backlog is kept for the consume workload.
    aquifer::driver::SubscriptionOptions options;
    options.name = "bench";
    auto sub = q->Subscribe("bench", options).value();
    for (int n : publishers) {
      Figures f = Run(n, [&](int t, uint64_t i) -> int64_t {
        std::string data = Payload(i);
        OutgoingMessage m{data, ""};
        return q->Publish("bench", std::span<const OutgoingMessage>(&m, 1)).ok() ? 1 : -1;
      });
      queue_single.push_back(f);
      Print("publish/1x" + std::to_string(n), f);
    }
    queue_batch = Run(1, [&](int, uint64_t i) -> int64_t {
      std::vector<std::string> data;
      std::vector<OutgoingMessage> out;
      for (int j = 0; j < 100; ++j) data.push_back(Payload(i * 100 + j));
      for (const auto& d : data) out.push_back({d, ""});
      return q->Publish("bench", out).ok() ? 100 : -1;
    });
    Print("publish/100x1", queue_batch);
    sub.reset();
    for (int consumers : {1, 4}) {
      // A fresh backlog of 300k messages for each run (spans of 1000).
      for (uint64_t i = 0; i < 300; ++i) {
        std::vector<std::string> data;
        std::vector<OutgoingMessage> out;
        for (int j = 0; j < 1000; ++j) data.push_back(Payload(i * 1000 + j));
        for (const auto& d : data) out.push_back({d, ""});
        if (!q->Publish("bench", out).ok()) return 1;
      }
      std::vector<std::unique_ptr<aquifer::driver::Subscription>> subs;
      for (int c = 0; c < consumers; ++c) subs.push_back(q->Subscribe("bench", options).value());
      Figures f = Run(consumers, [&](int t, uint64_t) -> int64_t {
        auto r = subs[t]->Pull(1000, 100);
        if (!r.ok() || r->empty()) return -1;  // backlog drained
        std::vector<std::string> ids;
        for (const auto& m : *r) ids.push_back(m.ack_id);
        return subs[t]->Ack(ids).ok() ? static_cast<int64_t>(r->size()) : -1;
      });
      Print("consume+ack/" + std::to_string(consumers), f);
    }
  }
  {
    auto db = OpenRaw(dir + "/raw");
    rocksdb::WriteOptions sync;
    sync.sync = true;
    for (int n : publishers) {
      Figures f = Run(n, [&](int t, uint64_t i) -> int64_t {
        return db->Put(sync, RawKey(t, i), Payload(i)).ok() ? 1 : -1;
      });
      raw_single.push_back(f);
      Print("raw/put/" + std::to_string(n), f);
    }
    raw_batch = Run(1, [&](int t, uint64_t i) -> int64_t {
      rocksdb::WriteBatch batch;
      for (int j = 0; j < 100; ++j) batch.Put(RawKey(t, i * 100 + j), Payload(i * 100 + j));
      return db->Write(sync, &batch).ok() ? 100 : -1;
    });
    Print("raw/batch100", raw_batch);
  }
  printf("\nratios (queue / raw RocksDB, same run):\n");
  printf("  durable acks, spans of 100 vs synced WriteBatch of 100: %5.1f%%  (DESIGN.md target >= 60%%)\n",
         100.0 * queue_batch.records_per_s / raw_batch.records_per_s);
  for (size_t i = 0; i < publishers.size(); ++i) {
    printf("  single publishes, %2d publishers vs %2d threads of synced Put: %5.1f%%\n", publishers[i],
           publishers[i], 100.0 * queue_single[i].records_per_s / raw_single[i].records_per_s);
  }
  if (!getenv("AQUIFER_BENCH_DIR")) std::filesystem::remove_all(dir);
  return 0;
}
