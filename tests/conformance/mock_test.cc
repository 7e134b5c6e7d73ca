// The warehouse conformance suite over the mock driver, which stores nothing.

#include "aquifer/drivers/mock/warehouse.h"

#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

Result<std::shared_ptr<driver::WarehouseService>> MakeMock(const std::string&, Clock*) {
  driver::Registry registry;
  drivers::mock::Register(&registry);
  return registry.MakeWarehouseService("mock", {}, {});
}

INSTANTIATE_TEST_SUITE_P(Mock, WarehouseConformance,
                         ::testing::Values(WarehouseDriverFactory{"mock", MakeMock}), WarehouseDriverName);

}  // namespace
}  // namespace aquifer::conformance
