#pragma once

#include "aquifer/driver/registry.h"

namespace aquifer::drivers::kafka {

// Registers "kafka" for every interface this folder serves. Each factory reads
// the client options of client.h (brokers, topic_prefix, ...) plus its own
// keys. Called once from RegisterBuiltinDrivers.
void Register(driver::Registry* registry);

}  // namespace aquifer::drivers::kafka
