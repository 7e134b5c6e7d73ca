#pragma once

#include "aquifer/driver/registry.h"

namespace aquifer::drivers {

// Registers every driver compiled into this build, once, explicitly.
// Names: MessageQueue "rocksdb"/"embedded"; LookupService and UsageService
// "rocksdb"/"embedded"; WarehouseService "duckdb"/"embedded", "mock"; and
// "postgres" for all four; "kafka" for those drivers/kafka serves.
void RegisterBuiltinDrivers(driver::Registry* registry);

}  // namespace aquifer::drivers
