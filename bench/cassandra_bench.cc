// cassandra_bench: the Cassandra LookupService and UsageService write paths
// against raw prepared-statement writes of the same rows through the same CQL
// client, in the same run (issue 14 item 4). Figures are printed, never
// asserted; the goal is driver ≥ 80% of raw.
//
// Workloads, run in alternating rounds so load on a shared machine hits both alike:
//   lookup/driver  LookupService::WriteRecords of 1000 records (~100 B Avro,
//                  fresh keys) with one record group: log + index + applied id,
//                  under the instance's write lease (3 LWTs per call)
//   lookup/raw     the same 1000 (ts, key, avro) rows as prepared INSERTs into a
//                  plain log table keyed like the driver's, in unlogged batches
//                  of the driver's size (64 rows / 32 KiB), one thread
//   usage/driver   UsageService::WriteUsage: one counter UPDATE of 8 columns
//   usage/raw      the same UPDATE, prepared once, executed with the same values
//                  through the same cql::Session type and pool size
//   reserve/driver UsageService::AddUsageWithin (a lightweight transaction,
//                  and two reads, per call; no raw twin: shown for scale)
// Each round: `threads` threads each write `ops` buckets (owners spread over
// 64 ids, hourly buckets). Reported: ops/s and per-call latency p50/p99/max.
//
// Usage: cassandra_bench [seconds=20] [threads=4]
// AQUIFER_TEST_CASSANDRA: the node (scripts/bench.sh starts one).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "aquifer/base/uuid.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/drivers/cassandra/lookup_service.h"
#include "aquifer/drivers/cassandra/options.h"
#include "aquifer/drivers/cassandra/testing.h"
#include "aquifer/drivers/cassandra/usage_service.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;

namespace cas = aquifer::drivers::cassandra;
namespace cql = aquifer::drivers::cassandra::cql;
using Clock = std::chrono::steady_clock;
using aquifer::driver::UsageCounters;
using aquifer::driver::UsagePeriod;
using aquifer::Status;

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_us;
  double seconds = 0;
  int64_t ops = 0;
};

// Runs `op(thread_idx, op_idx)` on `threads` threads, `ops` times each, into `stats`.
template <typename Op>
void Round(int threads, int ops, Stats* stats, Op op) {
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int thread_idx = 0; thread_idx < threads; ++thread_idx) {
    workers.emplace_back([&, thread_idx] {
      std::vector<double> mine;
      mine.reserve(ops);
      for (int op_idx = 0; op_idx < ops; ++op_idx) {
        const auto t0 = Clock::now();
        op(thread_idx, op_idx);
        mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      }
      std::lock_guard lock(stats->mu);
      stats->latencies_us.insert(stats->latencies_us.end(), mine.begin(), mine.end());
    });
  }
  for (auto& worker : workers) worker.join();
  stats->seconds += std::chrono::duration<double>(Clock::now() - start).count();
  stats->ops += static_cast<int64_t>(threads) * ops;
}

void Print(const char* name, Stats& stats, double baseline_ops_per_s) {
  std::sort(stats.latencies_us.begin(), stats.latencies_us.end());
  auto at = [&](double q) { return stats.latencies_us[static_cast<size_t>(q * (stats.latencies_us.size() - 1))]; };
  const double rate = stats.ops / stats.seconds;
  fmt::print("{:<16} {:>9} ops {:>9.0f} ops/s  p50 {:>7.0f} us  p99 {:>7.0f} us  max {:>8.0f} us", name, stats.ops, rate,
             at(0.5), at(0.99), stats.latencies_us.back());
  if (baseline_ops_per_s > 0) fmt::print("  {:>5.1f}% of raw", 100.0 * rate / baseline_ops_per_s);
  fmt::print("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 20;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 4;
  constexpr int kOpsPerRound = 200;
  auto config = cas::testing::TestConfig("bench_" + aquifer::Uuid::Random().ToString().substr(0, 8));
  if (!config.ok()) Die(config.status().ToString());
  (*config)["pool_size"] = std::to_string(threads);
  auto options = cas::ParseOptions(*config);
  if (!options.ok()) Die(options.status().ToString());
  fmt::print("cassandra_bench: node {}, keyspace {}, {} threads (pool of {}), consistency {}, {} s per workload\n",
             (*config)["contact_point"], options->keyspace, threads, threads,
             cql::ConsistencyName(options->client.consistency), seconds);

  auto service = cas::MakeUsageService(*options);
  if (!service.ok()) Die(service.status().ToString());
  auto session = cas::ConnectAndEnsureKeyspace(*options);
  if (!session.ok()) Die(session.status().ToString());
  auto made = (*session)->Query(fmt::format(
      "CREATE TABLE IF NOT EXISTS {}.raw_counters (owner uuid, period int, period_start bigint, read_ops counter, "
      "read_records counter, read_bytes counter, write_ops counter, write_records counter, write_bytes counter, "
      "scan_ops counter, scan_bytes counter, PRIMARY KEY ((owner, period), period_start))", options->keyspace));
  if (!made.ok()) Die(made.status().ToString());
  auto raw = (*session)->Prepare(fmt::format(
      "UPDATE {}.raw_counters SET read_ops = read_ops + ?, read_records = read_records + ?, read_bytes = read_bytes + ?, "
      "write_ops = write_ops + ?, write_records = write_records + ?, write_bytes = write_bytes + ?, "
      "scan_ops = scan_ops + ?, scan_bytes = scan_bytes + ? WHERE owner = ? AND period = ? AND period_start = ?",
      options->keyspace));
  if (!raw.ok()) Die(raw.status().ToString());

  std::vector<aquifer::Uuid> owners(64);
  for (auto& owner : owners) owner = aquifer::Uuid::Random();
  UsageCounters counters;
  counters.write_ops = 1, counters.write_records = 10, counters.write_bytes = 1000;
  constexpr int64_t kHourMs = 3'600'000;
  std::atomic<int> failures{0};
  Stats driver_stats, raw_stats, reserve_stats;
  while (driver_stats.seconds < seconds || raw_stats.seconds < seconds) {
    Round(threads, kOpsPerRound, &driver_stats, [&](int thread_idx, int op_idx) {
      const auto& owner = owners[(thread_idx * 7 + op_idx) % owners.size()];
      if (!(*service)->WriteUsage(owner, UsagePeriod::kHour, int64_t{op_idx % 24} * kHourMs, counters).ok()) ++failures;
    });
    Round(threads, kOpsPerRound, &raw_stats, [&](int thread_idx, int op_idx) {
      const auto& owner = owners[(thread_idx * 7 + op_idx) % owners.size()];
      std::vector<cql::Value> values = {counters.read_ops, counters.read_records, counters.read_bytes,
                                        counters.write_ops, counters.write_records, counters.write_bytes,
                                        counters.scan_ops, counters.scan_bytes,
                                        cql::Blob{std::string(reinterpret_cast<const char*>(owner.bytes.data()), 16)},
                                        int32_t{0}, int64_t{op_idx % 24} * kHourMs};
      if (!(*session)->Execute(**raw, values).ok()) ++failures;
    });
  }
  Round(threads, 50, &reserve_stats, [&](int thread_idx, int op_idx) {
    const auto& owner = owners[(thread_idx * 7 + op_idx) % owners.size()];
    if (!(*service)->AddUsageWithin(owner, UsagePeriod::kMonth, 0, counters, aquifer::driver::UsageField::kWriteBytes,
                                    int64_t{1} << 60).ok()) {
      ++failures;
    }
  });
  // ---- lookup: 1000-record batches, driver vs raw, alternating ----
  auto lookup_options = cas::ParseLookupOptions(*config);
  if (!lookup_options.ok()) Die(lookup_options.status().ToString());
  auto lookup = cas::MakeLookupService(*lookup_options, nullptr);
  if (!lookup.ok()) Die(lookup.status().ToString());
  auto schema = aquifer::schema::Schema::Parse(
      R"({"type": "record", "name": "r", "fields": [{"name": "k", "type": "string"}]})", {"k"});
  if (!schema.ok()) Die(schema.status().ToString());
  aquifer::driver::InstanceInfo instance;
  instance.instance_id = aquifer::Uuid::Random();
  instance.schema = *schema;
  if (!(*lookup)->RegisterInstance(instance).ok()) Die("registering the instance");
  made = (*session)->Query(fmt::format(
      "CREATE TABLE IF NOT EXISTS {}.raw_log (instance_id uuid, bucket bigint, log_offset bigint, ts bigint, key blob, "
      "avro blob, PRIMARY KEY ((instance_id, bucket), log_offset))", options->keyspace));
  if (!made.ok()) Die(made.status().ToString());
  auto raw_insert = (*session)->Prepare(fmt::format(
      "INSERT INTO {}.raw_log (instance_id, bucket, log_offset, ts, key, avro) VALUES (?, ?, ?, ?, ?, ?)", options->keyspace));
  if (!raw_insert.ok()) Die(raw_insert.status().ToString());
  constexpr int kBatch = 1000;
  int64_t next_key = 0, raw_offset = 0;
  auto make_batch = [&] {
    std::vector<aquifer::driver::Record> batch(kBatch);
    for (auto& record : batch) {
      aquifer::keys::AppendString(&record.key, fmt::format("key-{:012}", next_key++));
      record.avro = std::string(100, 'a');
      record.timestamp_ms = 1'700'000'000'000 + next_key;
    }
    return batch;
  };
  Stats lookup_driver, lookup_raw;
  int group_idx = 0;
  while (lookup_driver.seconds < seconds || lookup_raw.seconds < seconds) {
    auto batch = make_batch();
    std::vector<aquifer::driver::RecordGroup> groups = {{fmt::format("group-{}", group_idx++), batch.size()}};
    Round(1, 1, &lookup_driver, [&](int, int) {
      Status done = (*lookup)->WriteRecords(instance, batch, groups);
      if (!done.ok()) {
        fmt::print(stderr, "{}\n", done.ToString());
        ++failures;
      }
    });
    batch = make_batch();
    Round(1, 1, &lookup_raw, [&](int, int) {
      const cql::Value id = cql::Blob{std::string(reinterpret_cast<const char*>(instance.instance_id.bytes.data()), 16)};
      std::vector<cql::BatchEntry> entries;
      size_t bytes = 0;
      int64_t bucket = raw_offset / 4096;
      auto flush = [&] {
        if (!entries.empty() && !(*session)->Batch(cql::BatchType::kUnlogged, entries).ok()) ++failures;
        entries.clear();
        bytes = 0;
      };
      for (const auto& record : batch) {
        const int64_t offset = raw_offset++;
        const size_t size = record.key.size() + record.avro.size() + 64;
        if (offset / 4096 != bucket || entries.size() >= 64 || bytes + size > 32 * 1024) flush();
        bucket = offset / 4096;
        entries.push_back(cql::BatchEntry{raw_insert->get(), "",
                                          {id, bucket, offset, record.timestamp_ms, cql::Blob{record.key}, cql::Blob{record.avro}}});
        bytes += size;
      }
      flush();
    });
  }
  auto records_per_s = [](const Stats& stats) { return stats.ops * kBatch / stats.seconds; };
  std::sort(lookup_raw.latencies_us.begin(), lookup_raw.latencies_us.end());
  std::sort(lookup_driver.latencies_us.begin(), lookup_driver.latencies_us.end());
  fmt::print("lookup/raw       {:>6} batches of {} {:>9.0f} records/s  p50 {:>7.1f} ms  max {:>7.1f} ms\n", lookup_raw.ops, kBatch,
             records_per_s(lookup_raw), 0.001 * lookup_raw.latencies_us[lookup_raw.latencies_us.size() / 2],
             0.001 * *std::max_element(lookup_raw.latencies_us.begin(), lookup_raw.latencies_us.end()));
  fmt::print("lookup/driver    {:>6} batches of {} {:>9.0f} records/s  p50 {:>7.1f} ms  max {:>7.1f} ms  {:>5.1f}% of raw\n",
             lookup_driver.ops, kBatch, records_per_s(lookup_driver),
             0.001 * lookup_driver.latencies_us[lookup_driver.latencies_us.size() / 2],
             0.001 * *std::max_element(lookup_driver.latencies_us.begin(), lookup_driver.latencies_us.end()),
             100.0 * records_per_s(lookup_driver) / records_per_s(lookup_raw));

  const double raw_rate = raw_stats.ops / raw_stats.seconds;
  Print("usage/raw", raw_stats, 0);
  Print("usage/driver", driver_stats, raw_rate);
  Print("reserve/driver", reserve_stats, 0);
  (void)(*session)->Query("DROP KEYSPACE IF EXISTS " + options->keyspace);
  if (failures.load() > 0) Die(fmt::format("{} calls failed", failures.load()));
  return 0;
}
