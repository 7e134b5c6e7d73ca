#pragma once

// The Cassandra UsageService (README.md, "Usage"): plain adds go to counter
// columns (`usage_counters`, commutative: concurrent writers in any process
// never lose an increment, no read before write); bounded adds (quota
// reservations) go to a regular table (`usage_bounded`) changed only by
// lightweight transactions, because Cassandra allows no conditions on counter
// tables. A bucket reads as the sum of its two rows.

#include <memory>

#include "aquifer/base/status.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/drivers/cassandra/options.h"

namespace aquifer::drivers::cassandra {

// Connects, creates the keyspace and tables if missing, and returns the service.
Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const Options& options);

}  // namespace aquifer::drivers::cassandra
