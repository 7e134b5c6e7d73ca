#pragma once

// The Bigtable UsageService (README.md, "Usage"). Table `<table_prefix>usage`, a row per
// bucket: owner (16 bytes) · period (1 byte) · period start (8 bytes big-endian, sign bit
// flipped so buckets before the epoch sort first). Family `p`: the eight counters, added to by
// ReadModifyWriteRow increments (atomic, no read first). Family `b`: the bounded adds'
// counters and a version, changed only by CheckAndMutateRow conditioned on the version read.
// A bucket reads as the sum of both.

#include <memory>

#include "aquifer/base/status.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/drivers/bigtable/client.h"

namespace aquifer::drivers::bigtable {

struct UsageOptions {
  ClientOptions client;
  std::string table_prefix = "aquifer_";
};

Result<UsageOptions> ParseUsageOptions(const driver::Config& config);
Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const UsageOptions& options);

}  // namespace aquifer::drivers::bigtable
