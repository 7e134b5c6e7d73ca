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

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/warehouse_service.h"

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

}  // namespace aquifer::conformance
