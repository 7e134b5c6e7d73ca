#pragma once

#include "aquifer/driver/registry.h"

namespace aquifer::drivers::bigtable {

// Registers "bigtable" for LookupService and UsageService (keys: lookup_service.h,
// usage_service.h, client.h). Called once from RegisterBuiltinDrivers.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::bigtable
