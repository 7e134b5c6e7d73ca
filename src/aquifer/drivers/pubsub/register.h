#pragma once

#include "aquifer/driver/registry.h"

namespace aquifer::drivers::pubsub {

// Registers "pubsub" (MessageQueue, queue.h). Called once from RegisterBuiltinDrivers.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::pubsub
