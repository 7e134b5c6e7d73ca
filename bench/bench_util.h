#pragma once

// What every bench binary needs to stop on a failed setup step: Die prints the message after
// the program's name and exits 1; Must answers a Result's value or dies with `what` and the
// status (a Status alone: dies unless OK). Figures are printed, never asserted.
//
// Below: timed workloads, and the workloads and events of the warehouse benches that put a
// driver next to a raw write of the same rows (bigquery_bench, clickhouse_bench).

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/types.h>
#include <unistd.h>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"

namespace aquifer::bench {

[[noreturn]] inline void Die(const std::string& what) {
  fmt::print(stderr, "{}: {}\n", program_invocation_short_name, what);
  std::exit(1);
}

template <typename T>
T Must(Result<T> result, std::string_view what) {
  if (!result.ok()) Die(fmt::format("{}: {}", what, result.status().ToString()));
  return std::move(*result);
}

inline void Must(const Status& status, std::string_view what) {
  if (!status.ok()) Die(fmt::format("{}: {}", what, status.ToString()));
}

// CPU time (user + system) the process `pid` (0: this one) has used so far, in seconds,
// from /proc; -1 if unknown.
inline double ProcessCpuSeconds(pid_t pid) {
  const std::string path = pid == 0 ? std::string("/proc/self/stat") : "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return -1;
  char buf[2048] = {0};
  size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const char* p = std::strrchr(buf, ')');
  if (n == 0 || p == nullptr) return -1;
  unsigned long long utime = 0, stime = 0;
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A workload timed batch by batch (`batch_records` records each): its rate, and a row of
// rate, MB/s, seconds and batch p50 / p99 / max in ms, then `ratio`, its name padded to
// `name_width` columns.
struct BatchWorkload {
  BatchWorkload(std::string workload_name, size_t batch_records, int name_width)
      : name(std::move(workload_name)), batch_size(batch_records), width(name_width) {}
  std::string name;
  size_t batch_size;
  int width;
  std::vector<double> batch_ms;
  double seconds = 0;
  size_t records = 0, bytes = 0;

  void Add(std::chrono::steady_clock::duration d, size_t batch_bytes) {
    double s = std::chrono::duration<double>(d).count();
    batch_ms.push_back(s * 1e3);
    seconds += s;
    records += batch_size;
    bytes += batch_bytes;
  }
  double rate() const { return seconds > 0 ? records / seconds : 0; }
  void Print(const std::string& ratio) const {
    std::vector<double> sorted = batch_ms;
    std::sort(sorted.begin(), sorted.end());
    auto at = [&](double q) {
      return sorted.empty() ? 0.0 : sorted[std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()))];
    };
    fmt::print("{:<{}} {:>11.0f} {:>7.1f} {:>8.1f} {:>8.2f} {:>8.2f} {:>8.2f} {:>7}\n", name, width, rate(),
               seconds > 0 ? bytes / seconds / 1e6 : 0.0, seconds, at(0.5), at(0.99),
               sorted.empty() ? 0.0 : sorted.back(), ratio);
  }
};

// A workload timed by the batch: the time it spent writing and the records it wrote.
struct TimedWorkload {
  const char* name;
  std::chrono::steady_clock::duration spent{};
  int64_t records = 0;

  double seconds() const { return std::chrono::duration<double>(spent).count(); }
  double rate() const { return records / seconds(); }
  // Runs `write`, one batch of `batch_records` records, adding its time.
  template <typename Write>
  void Time(int64_t batch_records, Write&& write) {
    const auto start = std::chrono::steady_clock::now();
    write();
    spent += std::chrono::steady_clock::now() - start;
    records += batch_records;
  }
};

// Runs one batch of each workload, starting at the one `batch_no` picks and going round,
// so load on a shared machine hits every workload alike.
inline void RunInTurn(int batch_no, std::initializer_list<std::function<void()>> runs) {
  const std::vector<std::function<void()>> in_order(runs);
  for (size_t k = 0; k < in_order.size(); ++k) in_order[(batch_no + k) % in_order.size()]();
}

// The three workloads of a warehouse bench (bigquery_bench, clickhouse_bench): the driver
// writing each batch with one record group, as the worker passes one queued message
// (driver/groups), and without groups (driver/plain), next to a raw write of the same rows.
struct DriverAgainstRaw {
  // Registers the instances of `schema` the driver workloads write to; dies on an error.
  DriverAgainstRaw(driver::WarehouseService& service, const schema::SchemaPtr& schema, const char* raw_name)
      : warehouse(service), raw{raw_name} {
    grouped.instance_id = Uuid::Random();
    grouped.schema = schema;
    plain.instance_id = Uuid::Random();
    plain.schema = schema;
    Must(warehouse.RegisterInstance(grouped), "register");
    Must(warehouse.RegisterInstance(plain), "register");
  }

  // Whether every workload has spent `seconds` writing.
  bool Spent(double seconds) const {
    return driver_groups.seconds() >= seconds && driver_plain.seconds() >= seconds && raw.seconds() >= seconds;
  }

  // Batch `batch_no` through the three workloads in turn: `records` in
  // `messages` groups of equal size ("message-<batch_no>-<m>", as a worker
  // passes that many queued messages in one call), `records` without groups,
  // and `raw_write` of the same rows.
  void RunBatch(int batch_no, const std::vector<driver::Record>& records, const std::function<void()>& raw_write,
                size_t messages = 1) {
    std::vector<driver::RecordGroup> groups;
    for (size_t m = 0; m < messages; ++m) {
      groups.push_back({fmt::format("message-{}-{}", batch_no, m),
                        records.size() * (m + 1) / messages - records.size() * m / messages});
    }
    const auto batch = static_cast<int64_t>(records.size());
    RunInTurn(batch_no, {[&] {
                           driver_groups.Time(batch, [&] {
                             Must(warehouse.WriteToWarehouse(grouped, records, groups), "driver write (groups)");
                           });
                         },
                         [&] {
                           driver_plain.Time(batch, [&] {
                             Must(warehouse.WriteToWarehouse(plain, records, {}), "driver write");
                           });
                         },
                         [&] { raw.Time(batch, raw_write); }});
  }

  // The table of records, records/s and the share of the raw rate, after a line naming the run.
  void Print(std::string_view bench, int batches, int batch_size, std::string_view endpoint) const {
    fmt::print("{}: {} batches of {} records, against {}\n", bench, batches, batch_size, endpoint);
    fmt::print("{:<16} {:>12} {:>14} {:>10}\n", "workload", "records", "records/s", "vs raw");
    for (const TimedWorkload* w : {&driver_groups, &driver_plain, &raw}) {
      fmt::print("{:<16} {:>12} {:>14.0f} {:>9.0f}%\n", w->name, w->records, w->rate(), 100.0 * w->rate() / raw.rate());
    }
  }

  driver::WarehouseService& warehouse;
  driver::InstanceInfo grouped, plain;
  TimedWorkload driver_groups{"driver/groups"}, driver_plain{"driver/plain"}, raw;
};

// The warehouse benches' records: ~100 B of Avro each.
inline constexpr const char* kWarehouseEventSchema = R"json({
  "type": "record", "name": "Event",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "username", "type": "string"},
    {"name": "amount", "type": "double"},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "tags", "type": {"type": "array", "items": "string"}}
  ]
})json";

// Event `id` of kWarehouseEventSchema, as JSON.
inline nlohmann::json WarehouseEvent(int64_t id) {
  using nlohmann::json;
  return {{"id", id}, {"username", fmt::format("user{}", id % 97)}, {"amount", id * 0.25},
          {"note", id % 3 == 0 ? json("n") : json()}, {"tags", {"a", "b"}}};
}

// The record of `event` (its Avro and key) stamped `timestamp_ms`; dies when `event` does not fit `schema`.
inline driver::Record EventRecord(const schema::Schema& schema, const nlohmann::json& event, int64_t timestamp_ms) {
  auto value = Must(schema::ParseJsonRecord(schema, event.dump()), "record");
  driver::Record record;
  record.timestamp_ms = timestamp_ms;
  Must(schema::EncodeAvro(schema, value, &record.avro), "encode");
  record.key = Must(keys::EncodeKey(schema, value), "key");
  return record;
}

}  // namespace aquifer::bench
