// clickhouse_bench: the ClickHouse WarehouseService write path against a raw
// INSERT ... FORMAT JSONEachRow of the same rows into a table of the same
// columns and engine, on the same server, in the same run (issue 16 step 4).
// Figures are printed, never asserted (the goal: the driver at >= 80% of raw).
//
// Two shapes of call, each on instances of its own, records of ~100 B Avro
// (fresh keys, rising timestamps):
//   10,000 records as one message   a worker's call with one queued message
//   100,000 records as 100 messages a paced warehouse pull of 100 messages of
//                                   1,000 records (the worker takes up to 256)
// Per batch, in alternating order so load on a shared machine hits every
// workload alike:
//   driver/groups   WriteToWarehouse with the batch's groups (claims, then the
//                   streamed INSERT, then the check for racing writers)
//   driver/plain    WriteToWarehouse without groups (Avro decode, JSON, INSERT)
//   raw             one INSERT of the very JSONEachRow lines the driver sends,
//                   built before the clock starts, through the same libcurl client
// Each shape runs until every workload has spent `seconds` writing.
//
// Usage: clickhouse_bench [seconds=10]
// AQUIFER_TEST_CLICKHOUSE: the server (scripts/bench.sh starts one with
// scripts/peers/clickhouse).

#include <chrono>
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
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;
using aquifer::bench::Must;

namespace ch = aquifer::drivers::clickhouse;
using aquifer::driver::Record;
using nlohmann::json;

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const char* endpoint = std::getenv("AQUIFER_TEST_CLICKHOUSE");
  if (endpoint == nullptr) Die("AQUIFER_TEST_CLICKHOUSE is not set: eval \"$(bash scripts/peers/clickhouse start)\"");
  auto schema = Must(aquifer::schema::Schema::Parse(aquifer::bench::kWarehouseEventSchema, {"id"}), "schema");
  const std::string database = "bench_" + aquifer::Uuid::Random().Hex().substr(0, 12);
  aquifer::driver::Config config{{"endpoint", endpoint}, {"database", database}};
  auto options = Must(ch::ParseWarehouseOptions(config), "options");
  auto warehouse = Must(ch::MakeWarehouseService(options, nullptr), "driver");
  ch::HttpClient http(options.http);
  int64_t next_id = 0;
  struct Shape {
    int batch_size;
    size_t messages;
  };
  for (const Shape shape : {Shape{10'000, 1}, Shape{100'000, 100}}) {
    aquifer::bench::DriverAgainstRaw run(*warehouse, schema, "raw INSERT");
    // The raw table: the driver's columns and engine.
    const std::string raw_table = fmt::format("`{}`.`raw_events_{}`", database, shape.messages);
    Must(http.Query("CREATE TABLE " + raw_table + " AS " + warehouse->TableName(run.plain)).status(),
         "create the raw table");
    int batch_no = 0;
    while (!run.Spent(seconds)) {
      std::vector<Record> records;
      ch::Request insert;
      insert.sql = "INSERT INTO " + raw_table + " FORMAT JSONEachRow";
      insert.settings = {{"input_format_skip_unknown_fields", "0"}};
      const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
      for (int i = 0; i < shape.batch_size; ++i, ++next_id) {
        json row = aquifer::bench::WarehouseEvent(next_id);
        Record record = aquifer::bench::EventRecord(*schema, row, now + i);
        // The driver's line: the fields, then the hidden columns.
        row["__key"] = aquifer::HexEncode(record.key);
        row["__timestamp"] = record.timestamp_ms;
        row["__group"] = "u" + std::string(32, '0');  // as an ungrouped write's own group id
        row["__seq"] = i;
        insert.data += row.dump();
        insert.data.push_back('\n');
        records.push_back(std::move(record));
      }
      run.RunBatch(batch_no, records, [&] { Must(http.Call(insert).status(), "raw INSERT"); }, shape.messages);
      ++batch_no;
    }
    // Every workload stored every row it was given.
    for (const auto& [table, want] : {std::pair{warehouse->TableName(run.grouped), run.driver_groups.records},
                                      std::pair{warehouse->TableName(run.plain), run.driver_plain.records},
                                      std::pair{raw_table, run.raw.records}}) {
      std::string got = Must(http.Query("SELECT count() FROM " + table), "count");
      if (std::atoll(got.c_str()) != want) Die(fmt::format("{} holds {} rows, not {}", table, got, want));
    }
    run.Print(fmt::format("clickhouse_bench, {} message(s) per call", shape.messages), batch_no, shape.batch_size,
              endpoint);
  }
  Must(warehouse->Reset(), "reset");
  (void)http.Query("DROP DATABASE IF EXISTS `" + database + "`");

  return 0;
}
