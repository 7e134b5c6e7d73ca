#pragma once

#include "aquifer/driver/registry.h"

namespace aquifer::drivers::cassandra {

// Registers "cassandra" for the interfaces this folder serves (UsageService, LookupService).
// The factories read the keys of options.h. Called once from RegisterBuiltinDrivers.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::cassandra
