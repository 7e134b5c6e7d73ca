// The warehouse conformance suite on the BigQuery driver, against the
// emulator that scripts/peers/bigquery starts (AQUIFER_TEST_BIGQUERY; without
// it every test fails and says how to start one). Each test gets a dataset of
// its own, named after its scratch directory, so a reopen finds the same
// data and parallel tests never meet.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/bigquery/testing.h"
#include "aquifer/drivers/bigquery/warehouse.h"
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& BigQueryRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::bigquery::Register(r);
    return r;
  }();
  return *registry;
}

// BigQuery spells an array's length `ARRAY_LENGTH(a)` and a field of a record
// `r.f`: the suite's defaults.
WarehouseDriverFactory BigQueryWarehouse() {
  WarehouseDriverFactory factory;
  factory.name = "bigquery";
  factory.make = [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::WarehouseService>> {
    AQ_ASSIGN_OR_RETURN(driver::Config config,
                        drivers::bigquery::testing::TestConfig(std::filesystem::path(dir).filename().string()));
    driver::DriverContext context;
    context.clock = clock;
    return BigQueryRegistry().MakeWarehouseService("bigquery", config, context);
  };
  return factory;
}

INSTANTIATE_TEST_SUITE_P(BigQuery, WarehouseConformance, ::testing::Values(BigQueryWarehouse()), WarehouseDriverName);

}  // namespace
}  // namespace aquifer::conformance
