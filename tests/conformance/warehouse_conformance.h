#pragma once

// The WarehouseService conformance suite: one value-parameterised gtest suite
// that every warehouse driver runs unchanged. A driver's test file only
// instantiates it with a factory:
//
//   INSTANTIATE_TEST_SUITE_P(DuckDB, WarehouseConformance,
//                            ::testing::Values(WarehouseDriverFactory{"duckdb", MakeDuckDB}),
//                            WarehouseDriverName);
//
// Deviations go through the driver's WarehouseCapabilities (stores_rows,
// dry_run_bytes, dedups_retries), never through the driver's name. The two
// SQL spellings that differ between backends are hooks below with defaults
// that fit DuckDB and BigQuery.
//
// Below the suite: helpers for a driver's own tests next to it
// (<system>_test.cc): its registry and factory, a job's rows, the rich record
// of every schema type, and test bodies that more than one driver runs.

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/registry.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/schema/schema.h"
#include "aquifer/schema/value.h"

namespace aquifer::conformance {

struct WarehouseDriverFactory {
  std::string name;
  // Opens the driver over `scratch_dir`, a fresh empty directory per test.
  // Called again with the same directory to check that data survives a
  // reopen; a networked driver derives its database/schema from the path.
  // The driver reads time (row age for retention, result expiry) from `clock`.
  std::function<Result<std::shared_ptr<driver::WarehouseService>>(const std::string& scratch_dir, Clock* clock)>
      make;
  // SQL for the number of elements of an array column.
  std::function<std::string(const std::string& column)> array_length = [](const std::string& column) {
    return "array_length(" + column + ")";
  };
  // SQL for a field of a nested-record column.
  std::function<std::string(const std::string& column, const std::string& field)> nested_field =
      [](const std::string& column, const std::string& field) { return column + "." + field; };
};

void PrintTo(const WarehouseDriverFactory& factory, std::ostream* os);

// For INSTANTIATE_TEST_SUITE_P: names each instantiation after the driver.
std::string WarehouseDriverName(const ::testing::TestParamInfo<WarehouseDriverFactory>& info);

class WarehouseConformance : public ::testing::TestWithParam<WarehouseDriverFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  std::string scratch_dir_;
  // The driver's clock, set to the real time at SetUp (the tests stamp rows
  // with it) and moved only by the tests.
  std::unique_ptr<ManualClock> clock_;
  std::shared_ptr<driver::WarehouseService> warehouse_;
};

// --- Helpers for a driver's own tests ---

// The registry holding what `Register` registers (a driver package's
// Register), made once per test program.
template <void (*Register)(driver::Registry*)>
const driver::Registry& RegistryOf() {
  static const driver::Registry* const registry = [] {
    auto* r = new driver::Registry();
    Register(r);
    return r;
  }();
  return *registry;
}

// The `make` of a networked driver's factory: opens the warehouse driver
// `driver` of `registry` (which outlives the factory) with the config
// `config_for` derives from the scratch directory, on the suite's clock.
decltype(WarehouseDriverFactory::make) MakeFromRegistry(
    const driver::Registry& registry, std::string driver,
    std::function<Result<driver::Config>(const std::string& scratch_dir)> config_for);

// Polls job `id` until it is done or failed (failing the test after 60 s).
driver::Job WaitForJob(driver::WarehouseService& warehouse, const Uuid& id);

// Runs `sql` as a job, expects it done, and answers the rows of its first
// page (up to 1000) as JSON arrays.
std::vector<nlohmann::json> RunJob(driver::WarehouseService& warehouse, const std::string& sql);

// A record of schema::testing::kRichSchemaJson (every schema type) parsed from
// `json` (schema::testing::RichRecordJson), with its Avro, key and timestamp
// 1700000000999, and an instance of that schema (not registered).
struct RichRecord {
  schema::SchemaPtr schema;
  schema::Value value;
  driver::Record record;
  driver::InstanceInfo instance;
};

// Fills `rich` from `json`; a fatal failure when it does not parse (call it
// in ASSERT_NO_FATAL_FAILURE).
void MakeRichRecord(const std::string& json, RichRecord* rich);

// MakeRichRecord, then registers the instance with `warehouse` and writes the
// record to it (fatal failures on an error).
void StoreRichRecord(driver::WarehouseService& warehouse, const std::string& json, RichRecord* rich);

// An instance of a schema of one long, `id`, the key (not registered).
driver::InstanceInfo IdInstance();
// Records of that schema with ids first .. first + count - 1, stamped
// 1'700'000'000'000 + id.
std::vector<driver::Record> IdRecords(int64_t first, int64_t count);

// Test bodies for drivers that store a record group once (WriteToWarehouse's
// `groups`), on a driver of a fresh database; each resets the driver at the end.
//
// An attempt cut off half way (here: its first 3 records of group G stored)
// is completed by the retry, which sends only what the table lacks.
void ExpectARetryCompletesAGroupStoredInPart(driver::WarehouseService& warehouse);
// Writes of one group at the same moment in one process (a redelivery racing
// the first attempt) store it once: the driver serialises an instance's
// grouped writes between the applied-groups check and the insert.
void ExpectConcurrentWritesOfOneGroupStoreItOnce(driver::WarehouseService& warehouse);

}  // namespace aquifer::conformance
