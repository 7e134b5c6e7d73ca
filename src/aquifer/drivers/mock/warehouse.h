#pragma once

// The mock WarehouseService ("mock"): accepts and discards every write,
// analyses any single SELECT-looking statement as 0 bytes (listing the
// TableName()-shaped identifiers it mentions as its tables), and
// completes every job at once as done with zero rows. For deployments without
// a warehouse and for tests of the layers above. Unlike the reference
// system's mock it never panics: every method answers per the interface's
// contract (NotFound for unknown jobs, InvalidArgument for non-SELECT SQL and
// malformed page tokens). Thread-safe.

#include <memory>

#include "aquifer/driver/registry.h"
#include "aquifer/driver/warehouse_service.h"

namespace aquifer::drivers::mock {

std::shared_ptr<driver::WarehouseService> MakeWarehouse();

// Registers the WarehouseService factory "mock".
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::mock
