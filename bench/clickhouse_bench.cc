// clickhouse_bench: the ClickHouse WarehouseService write path against a raw
// INSERT ... FORMAT JSONEachRow of the same rows into a table of the same
// columns and engine, on the same server, in the same run (issue 16 step 4).
// Figures are printed, never asserted (the goal: the driver at >= 80% of raw).
//
// Each batch is 10,000 records of ~100 B Avro (fresh keys, rising
// timestamps). Per batch, in alternating order so load on a shared machine
// hits every workload alike:
//   driver/groups   WriteToWarehouse with one record group, as the worker
//                   passes one queued message (the applied-groups query, then
//                   one INSERT)
//   driver/plain    WriteToWarehouse without groups (Avro decode, JSON, INSERT)
//   raw             one INSERT of the very JSONEachRow lines the driver sends,
//                   built before the clock starts, through the same libcurl client
// The loop runs until every workload has spent `seconds` writing.
//
// Usage: clickhouse_bench [seconds=10]
// AQUIFER_TEST_CLICKHOUSE: the server (scripts/bench.sh starts one with
// scripts/peers/clickhouse).

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/text.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/clickhouse/http.h"
#include "aquifer/drivers/clickhouse/warehouse.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;
using aquifer::bench::Must;

namespace ch = aquifer::drivers::clickhouse;
using Clock = std::chrono::steady_clock;
using aquifer::driver::Record;
using aquifer::driver::RecordGroup;
using nlohmann::json;

constexpr int kBatchSize = 10'000;

constexpr const char* kSchema = R"json({
  "type": "record", "name": "Event",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "username", "type": "string"},
    {"name": "amount", "type": "double"},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "tags", "type": {"type": "array", "items": "string"}}
  ]
})json";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

struct Workload {
  const char* name;
  Clock::duration spent{};
  int64_t records = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const char* endpoint = std::getenv("AQUIFER_TEST_CLICKHOUSE");
  if (endpoint == nullptr) Die("AQUIFER_TEST_CLICKHOUSE is not set: eval \"$(bash scripts/peers/clickhouse start)\"");
  auto schema = Must(aquifer::schema::Schema::Parse(kSchema, {"id"}), "schema");
  const std::string database = "bench_" + aquifer::Uuid::Random().Hex().substr(0, 12);
  aquifer::driver::Config config{{"endpoint", endpoint}, {"database", database}};
  auto options = Must(ch::ParseWarehouseOptions(config), "options");
  auto warehouse = Must(ch::MakeWarehouseService(options, nullptr), "driver");
  aquifer::driver::InstanceInfo grouped, plain;
  grouped.instance_id = aquifer::Uuid::Random();
  grouped.schema = schema;
  plain.instance_id = aquifer::Uuid::Random();
  plain.schema = schema;
  Must(warehouse->RegisterInstance(grouped), "register");
  Must(warehouse->RegisterInstance(plain), "register");
  // The raw table: the driver's columns and engine.
  ch::HttpClient http(options.http);
  const std::string raw_table = "`" + database + "`.`raw_events`";
  Must(http.Query("CREATE TABLE " + raw_table + " AS " + warehouse->TableName(plain)).status(), "create the raw table");

  Workload driver_groups{"driver/groups"}, driver_plain{"driver/plain"}, raw{"raw INSERT"};
  int64_t next_id = 0;
  int batch_no = 0;
  while (Seconds(driver_groups.spent) < seconds || Seconds(driver_plain.spent) < seconds ||
         Seconds(raw.spent) < seconds) {
    std::vector<Record> records;
    ch::Request insert;
    insert.sql = "INSERT INTO " + raw_table + " FORMAT JSONEachRow";
    insert.settings = {{"input_format_skip_unknown_fields", "0"}};
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    for (int i = 0; i < kBatchSize; ++i, ++next_id) {
      json j = {{"id", next_id}, {"username", fmt::format("user{}", next_id % 97)}, {"amount", next_id * 0.25},
                {"note", next_id % 3 == 0 ? json("n") : json()}, {"tags", {"a", "b"}}};
      auto value = Must(aquifer::schema::ParseJsonRecord(*schema, j.dump()), "record");
      Record record;
      record.timestamp_ms = now + i;
      Must(aquifer::schema::EncodeAvro(*schema, value, &record.avro), "encode");
      record.key = Must(aquifer::keys::EncodeKey(*schema, value), "key");
      json row = j;  // the driver's line: the fields, then the hidden columns
      row["__key"] = aquifer::HexEncode(record.key);
      row["__timestamp"] = record.timestamp_ms;
      row["__group"] = "u" + std::string(32, '0');  // as an ungrouped write's own group id
      row["__seq"] = i;
      insert.data += row.dump();
      insert.data.push_back('\n');
      records.push_back(std::move(record));
    }
    const std::vector<RecordGroup> groups{{fmt::format("message-{}", batch_no), records.size()}};
    auto run_driver_groups = [&] {
      auto start = Clock::now();
      Must(warehouse->WriteToWarehouse(grouped, records, groups), "driver write (groups)");
      driver_groups.spent += Clock::now() - start;
      driver_groups.records += kBatchSize;
    };
    auto run_driver_plain = [&] {
      auto start = Clock::now();
      Must(warehouse->WriteToWarehouse(plain, records, {}), "driver write");
      driver_plain.spent += Clock::now() - start;
      driver_plain.records += kBatchSize;
    };
    auto run_raw = [&] {
      auto start = Clock::now();
      Must(http.Call(insert).status(), "raw INSERT");
      raw.spent += Clock::now() - start;
      raw.records += kBatchSize;
    };
    switch (batch_no % 3) {
      case 0: run_driver_groups(); run_driver_plain(); run_raw(); break;
      case 1: run_driver_plain(); run_raw(); run_driver_groups(); break;
      default: run_raw(); run_driver_groups(); run_driver_plain(); break;
    }
    ++batch_no;
  }
  // Every workload stored every row it was given.
  for (const auto& [table, want] : {std::pair{warehouse->TableName(grouped), driver_groups.records},
                                    std::pair{warehouse->TableName(plain), driver_plain.records},
                                    std::pair{raw_table, raw.records}}) {
    std::string got = Must(http.Query("SELECT count() FROM " + table), "count");
    if (std::atoll(got.c_str()) != want) Die(fmt::format("{} holds {} rows, not {}", table, got, want));
  }
  Must(warehouse->Reset(), "reset");
  (void)http.Query("DROP DATABASE IF EXISTS `" + database + "`");

  auto rate = [](const Workload& w) { return w.records / Seconds(w.spent); };
  fmt::print("clickhouse_bench: {} batches of {} records, against {}\n", batch_no, kBatchSize, endpoint);
  fmt::print("{:<16} {:>12} {:>14} {:>10}\n", "workload", "records", "records/s", "vs raw");
  for (const Workload* w : {&driver_groups, &driver_plain, &raw}) {
    fmt::print("{:<16} {:>12} {:>14.0f} {:>9.0f}%\n", w->name, w->records, rate(*w), 100.0 * rate(*w) / rate(raw));
  }
  return 0;
}
