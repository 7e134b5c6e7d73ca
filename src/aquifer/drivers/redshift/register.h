#pragma once

#include "aquifer/driver/registry.h"

namespace aquifer::drivers::redshift {

// Registers the `redshift` WarehouseService factory.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::redshift
