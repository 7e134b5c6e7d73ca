// bigquery_bench: the BigQuery WarehouseService write path against raw
// tabledata.insertAll calls of the same rows into a table of the same
// columns, on the same server, in the same run (issue 13 item 7). Figures are
// printed, never asserted.
//
// Each batch is 1000 records of ~100 B Avro (fresh keys, rising timestamps).
// Per batch, in alternating order so load on a shared machine hits every
// workload alike:
//   driver/groups   WriteToWarehouse with one record group, as the worker
//                   passes one queued message (the applied-groups query, then
//                   insertAll)
//   driver/plain    WriteToWarehouse without groups (insertAll only)
//   raw             insertAll of the very rows the driver sends (the same
//                   JSON, insertIds, and 500-row requests), built before the
//                   clock starts, through the same libcurl client
// The loop runs until every workload has spent `seconds` writing.
//
// Usage: bigquery_bench [seconds=10]
// AQUIFER_TEST_BIGQUERY, AQUIFER_TEST_BIGQUERY_PROJECT: the emulator
// (scripts/bench.sh starts one with scripts/peers/bigquery).

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/text.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/bigquery/rest.h"
#include "aquifer/drivers/bigquery/warehouse.h"
#include "aquifer/schema/schema.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;
using aquifer::bench::Must;

namespace bq = aquifer::drivers::bigquery;
using aquifer::driver::Record;
using nlohmann::json;

constexpr int kBatchSize = 1000;
constexpr size_t kRequestRows = 500;

std::string IsoMillis(int64_t ms) {
  std::time_t t = ms / 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const char* endpoint = std::getenv("AQUIFER_TEST_BIGQUERY");
  const char* project = std::getenv("AQUIFER_TEST_BIGQUERY_PROJECT");
  if (endpoint == nullptr || project == nullptr) {
    Die("AQUIFER_TEST_BIGQUERY / AQUIFER_TEST_BIGQUERY_PROJECT are not set: eval \"$(scripts/peers/bigquery start)\"");
  }
  auto schema = Must(aquifer::schema::Schema::Parse(aquifer::bench::kWarehouseEventSchema, {"id"}), "schema");
  const std::string dataset = "bench_" + aquifer::Uuid::Random().Hex().substr(0, 12);
  aquifer::driver::Config config{{"endpoint", endpoint}, {"project", project}, {"dataset", dataset}};
  auto options = Must(bq::ParseWarehouseOptions(config), "options");
  auto warehouse = Must(bq::MakeWarehouseService(options, nullptr), "driver");
  aquifer::bench::DriverAgainstRaw run(*warehouse, schema, "raw insertAll");
  // The raw table: the same columns as the driver's (its schema, read back).
  bq::RestClient rest(options.rest);
  const std::string raw_table = "raw_events";
  {
    json table = Must(rest.Call("GET", fmt::format("/datasets/{}/tables/i_{}", dataset, run.plain.instance_id.Hex())),
                       "read the driver's table");
    json body = {{"tableReference", {{"projectId", project}, {"datasetId", dataset}, {"tableId", raw_table}}},
                 {"schema", table["schema"]}};
    Must(rest.Call("POST", fmt::format("/datasets/{}/tables", dataset), &body).status(), "create the raw table");
  }

  int64_t next_id = 0;
  int batch_no = 0;
  while (!run.Spent(seconds)) {
    // One batch of fresh records, and the insertAll bodies of the same rows.
    std::vector<Record> records;
    std::vector<json> bodies;
    json rows = json::array();
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    for (int i = 0; i < kBatchSize; ++i, ++next_id) {
      json row = aquifer::bench::WarehouseEvent(next_id);
      Record record = aquifer::bench::EventRecord(*schema, row, now + i);
      row["__key"] = aquifer::Base64Encode(record.key);
      row["__timestamp"] = IsoMillis(record.timestamp_ms);  // as the driver sends TIMESTAMPs
      rows.push_back({{"insertId", fmt::format("raw-{}", next_id)}, {"json", std::move(row)}});
      if (rows.size() == kRequestRows) {
        bodies.push_back({{"rows", std::move(rows)}});
        rows = json::array();
      }
      records.push_back(std::move(record));
    }
    if (!rows.empty()) bodies.push_back({{"rows", std::move(rows)}});
    run.RunBatch(batch_no, records, [&] {
      for (const json& body : bodies) {
        const std::string path = fmt::format("/datasets/{}/tables/{}/insertAll", dataset, raw_table);
        json answer = Must(rest.Call("POST", path, &body), "raw insertAll");
        if (!answer.value("insertErrors", json::array()).empty()) Die("raw insertAll: " + answer.dump());
      }
    });
    ++batch_no;
  }
  Must(warehouse->Reset(), "reset");
  (void)rest.Call("DELETE", fmt::format("/datasets/{}?deleteContents=true", dataset));

  run.Print("bigquery_bench", batch_no, kBatchSize, endpoint);
  return 0;
}
