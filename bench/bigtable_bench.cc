// bigtable_bench: the Bigtable LookupService and UsageService write paths against raw gRPC
// calls of the same rows through the same client, in the same run (issue 13 item 7).
// Figures are printed, never asserted; the goal is driver >= 80% of raw.
//
// Workloads, in alternating rounds so load on a shared machine hits both alike:
//   lookup/driver  LookupService::WriteRecords of 1000 records (~100 B Avro, fresh keys)
//                  with one record group: read of the applied id and of the stored index
//                  rows, the log + index + applied rows in MutateRows, lease and commit
//                  (2 CheckAndMutateRow, 3 sequence reads)
//   lookup/raw     one MutateRows of the same 1000 log rows and 1000 index rows (same keys
//                  and cells), nothing read first
//   usage/driver   UsageService::WriteUsage: one ReadModifyWriteRow of 8 increments
//   usage/raw      the same ReadModifyWriteRow built by hand
// Usage rounds: `threads` threads x 200 calls. Reported: ops/s (records/s for lookup) and
// per-call latency p50/p99/max.
//
// Usage: bigtable_bench [seconds=10] [threads=4]
// AQUIFER_TEST_BIGTABLE: the emulator (scripts/bench.sh starts one). Only the emulator was
// measured: figures say how much the driver adds per call, not what the service does.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "aquifer/base/uuid.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/drivers/bigtable/client.h"
#include "aquifer/drivers/bigtable/lookup_service.h"
#include "aquifer/drivers/bigtable/testing.h"
#include "aquifer/drivers/bigtable/usage_service.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;

namespace bt = aquifer::drivers::bigtable;
using Clock = std::chrono::steady_clock;
using aquifer::Status;
using aquifer::driver::UsageCounters;
using aquifer::driver::UsagePeriod;

struct Stats {
  std::mutex mu;
  std::vector<double> latencies_us;
  double seconds = 0;
  int64_t ops = 0;
};

template <typename Op>
void Round(int threads, int ops, int64_t units_per_op, Stats* stats, Op op) {
  std::vector<std::thread> workers;
  const auto start = Clock::now();
  for (int thread_idx = 0; thread_idx < threads; ++thread_idx) {
    workers.emplace_back([&, thread_idx] {
      std::vector<double> mine;
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
  stats->ops += static_cast<int64_t>(threads) * ops * units_per_op;
}

void Print(const char* name, const char* unit, Stats& stats, double baseline) {
  std::sort(stats.latencies_us.begin(), stats.latencies_us.end());
  auto at = [&](double q) { return stats.latencies_us[static_cast<size_t>(q * (stats.latencies_us.size() - 1))]; };
  const double rate = stats.ops / stats.seconds;
  fmt::print("{:<14} {:>9} {} {:>9.0f} {}/s  p50 {:>7.0f} us  p99 {:>7.0f} us  max {:>8.0f} us", name, stats.ops, unit,
             rate, unit, at(0.5), at(0.99), stats.latencies_us.back());
  if (baseline > 0) fmt::print("  {:>5.1f}% of raw", 100.0 * rate / baseline);
  fmt::print("\n");
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10;
  const int threads = argc > 2 ? std::atoi(argv[2]) : 4;
  auto config = bt::testing::TestConfig("bench_" + aquifer::Uuid::Random().ToString().substr(0, 8));
  if (!config.ok()) Die(config.status().ToString());
  fmt::print("bigtable_bench: emulator {}, instance {}, {} threads for usage, {} s per workload\n", (*config)["endpoint"],
             (*config)["instance"], threads, seconds);
  std::atomic<int> failures{0};

  // ---- usage ----
  auto usage_options = bt::ParseUsageOptions(*config);
  if (!usage_options.ok()) Die(usage_options.status().ToString());
  auto usage = bt::MakeUsageService(*usage_options);
  if (!usage.ok()) Die(usage.status().ToString());
  bt::Client raw(usage_options->client);
  const std::string usage_table = raw.TablePath(usage_options->table_prefix + "usage");
  std::vector<aquifer::Uuid> owners(64);
  for (auto& owner : owners) owner = aquifer::Uuid::Random();
  UsageCounters counters;
  counters.write_ops = 1, counters.write_records = 10, counters.write_bytes = 1000;
  const int64_t values[8] = {0, 0, 0, 1, 10, 1000, 0, 0};
  const char* names[8] = {"read_ops", "read_records", "read_bytes", "write_ops", "write_records", "write_bytes", "scan_ops", "scan_bytes"};
  constexpr int64_t kHourMs = 3'600'000;
  Stats usage_driver, usage_raw;
  while (usage_driver.seconds < seconds || usage_raw.seconds < seconds) {
    Round(threads, 200, 1, &usage_driver, [&](int thread_idx, int op_idx) {
      const auto& owner = owners[(thread_idx * 7 + op_idx) % owners.size()];
      if (!(*usage)->WriteUsage(owner, UsagePeriod::kHour, int64_t{op_idx % 24} * kHourMs, counters).ok()) ++failures;
    });
    Round(threads, 200, 1, &usage_raw, [&](int thread_idx, int op_idx) {
      const auto& owner = owners[(thread_idx * 7 + op_idx) % owners.size()];
      bt::v2::ReadModifyWriteRowRequest request;
      request.set_table_name(usage_table);
      // Another key space than the driver's rows (a 'r' period byte), same shape.
      request.set_row_key(std::string(reinterpret_cast<const char*>(owner.bytes.data()), 16) + 'r' +
                          bt::EncodeInt64(int64_t{op_idx % 24} * kHourMs));
      for (int field_idx = 0; field_idx < 8; ++field_idx) {
        auto* rule = request.add_rules();
        rule->set_family_name("p");
        rule->set_column_qualifier(names[field_idx]);
        rule->set_increment_amount(values[field_idx]);
      }
      if (!raw.ReadModifyWriteRow(std::move(request)).ok()) ++failures;
    });
  }

  // ---- lookup: 1000-record batches, driver vs raw MutateRows, alternating ----
  auto lookup_options = bt::ParseLookupOptions(*config);
  if (!lookup_options.ok()) Die(lookup_options.status().ToString());
  auto lookup = bt::MakeLookupService(*lookup_options, nullptr);
  if (!lookup.ok()) Die(lookup.status().ToString());
  const std::string lookup_table = raw.TablePath(lookup_options->table_prefix + "lookup");
  auto schema = aquifer::schema::Schema::Parse(R"({"type": "record", "name": "r", "fields": [{"name": "k", "type": "string"}]})", {"k"});
  if (!schema.ok()) Die(schema.status().ToString());
  aquifer::driver::InstanceInfo instance;
  instance.instance_id = aquifer::Uuid::Random();
  instance.schema = *schema;
  if (!(*lookup)->RegisterInstance(instance).ok()) Die("registering the instance");
  const aquifer::Uuid raw_instance = aquifer::Uuid::Random();
  const std::string raw_prefix(reinterpret_cast<const char*>(raw_instance.bytes.data()), 16);
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
    Round(1, 1, kBatch, &lookup_driver, [&](int, int) {
      Status done = (*lookup)->WriteRecords(instance, batch, groups);
      if (!done.ok()) {
        fmt::print(stderr, "{}\n", done.ToString());
        ++failures;
      }
    });
    Round(1, 1, kBatch, &lookup_raw, [&](int, int) {
      std::vector<bt::v2::MutateRowsRequest::Entry> entries;
      entries.reserve(2 * batch.size());
      for (const auto& record : batch) {
        auto& log = entries.emplace_back();
        log.set_row_key(raw_prefix + 'l' + bt::EncodeInt64(raw_offset));
        bt::AddSetCell(log.mutable_mutations(), "d", "t", bt::EncodeInt64(record.timestamp_ms));
        bt::AddSetCell(log.mutable_mutations(), "d", "k", record.key);
        bt::AddSetCell(log.mutable_mutations(), "d", "v", record.avro);
        auto& index = entries.emplace_back();
        index.set_row_key(raw_prefix + 'x' + record.key);
        bt::AddSetCell(index.mutable_mutations(), "d", "t", bt::EncodeInt64(record.timestamp_ms));
        bt::AddSetCell(index.mutable_mutations(), "d", "o", bt::EncodeInt64(raw_offset));
        bt::AddSetCell(index.mutable_mutations(), "d", "v", record.avro);
        ++raw_offset;
      }
      if (!raw.MutateRows(lookup_table, std::move(entries)).ok()) ++failures;
    });
  }
  if (failures.load() > 0) Die(fmt::format("{} calls failed", failures.load()));
  const double usage_raw_rate = usage_raw.ops / usage_raw.seconds;
  const double lookup_raw_rate = lookup_raw.ops / lookup_raw.seconds;
  Print("usage/raw", "ops", usage_raw, 0);
  Print("usage/driver", "ops", usage_driver, usage_raw_rate);
  Print("lookup/raw", "recs", lookup_raw, 0);
  Print("lookup/driver", "recs", lookup_driver, lookup_raw_rate);
  return 0;
}
