#pragma once

#include "aquifer/driver/registry.h"

namespace aquifer::drivers::postgres {

// Registers "postgres" for every interface this folder serves (MessageQueue,
// LookupService, WarehouseService, UsageService). Each factory reads the connection options of pg.h
// (url, schema, pool_size) plus its own keys. Called once from RegisterBuiltinDrivers.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::postgres
