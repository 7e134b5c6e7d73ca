// The warehouse conformance suite over the DuckDB driver (a fresh directory
// per test), plus DuckDB-specific checks of the documented result encoding.

#include "aquifer/drivers/duckdb/warehouse.h"

#include <nlohmann/json.hpp>

#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

Result<std::shared_ptr<driver::WarehouseService>> MakeDuckDB(const std::string& scratch_dir) {
  driver::DriverContext context;
  context.data_dir = scratch_dir;
  return drivers::duckdb::OpenWarehouse({}, context);
}

INSTANTIATE_TEST_SUITE_P(DuckDB, WarehouseConformance,
                         ::testing::Values(WarehouseDriverFactory{"duckdb", MakeDuckDB}), WarehouseDriverName);

}  // namespace
}  // namespace aquifer::conformance
