#pragma once

// The Postgres UsageService: one row per bucket in `<schema>.usage`, added to
// with INSERT ... ON CONFLICT DO UPDATE (atomic in the server, so concurrent
// writers in any number of processes never lose an increment).

#include <memory>

#include "aquifer/base/status.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/drivers/postgres/pg.h"

namespace aquifer::drivers::postgres {

// Connects, creates the schema and table if missing, and returns the service.
Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const ConnectionOptions& options);

}  // namespace aquifer::drivers::postgres
