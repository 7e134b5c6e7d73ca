#pragma once

// The embedded UsageService: counters in the "usage" column family of the
// shared lookup database (see lookup_service.h and README.md).
//
// Increments are read-modify-write in a single WriteBatch under one
// process-wide mutex (shared by every usage service object, so two objects on
// one path cannot interleave either), so concurrent writers never lose an
// increment. Usage is flushed in batches by the engine, so one lock is cheap.

#include <memory>
#include <string>

#include "aquifer/base/status.h"
#include "aquifer/driver/registry.h"
#include "aquifer/driver/usage_service.h"

namespace aquifer::drivers::rocksdb {

struct UsageOptions {
  std::string path;  // the database directory; default <data_dir>/lookup (shared with lookup)
  bool sync = true;
  size_t block_cache_size = size_t{64} << 20;  // used when usage opens the database first
};

Result<UsageOptions> ParseUsageOptions(const driver::Config& config,
                                       const driver::DriverContext& context);

Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const UsageOptions& options);

}  // namespace aquifer::drivers::rocksdb
