#pragma once

// AddUsageWithin by optimistic concurrency, for usage drivers whose storage has
// a conditional write but no read-check-write transaction (Cassandra's
// lightweight transactions, Bigtable's CheckAndMutateRow). Each round reads the
// bucket, checks the limit against plain + bounded counters, and writes the
// bounded counters plus the add IF the bucket's version is still the one read;
// a miss means another reserver got in between: wait a little, read again.

#include <functional>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/usage_service.h"

namespace aquifer::driver {

inline constexpr int kMaxBoundedAddAttempts = 200;

// `read` sets the bucket's plain and bounded counters (left zero: none yet) and
// keeps whatever version the driver conditions its write on; `write` writes
// `next` (bounded + counters) if that version still stands: true if applied,
// an error if it cannot tell (reported as is, never retried: a timed-out write
// may have been applied). Refused: the counters as read, added = false.
// Aborted "<context>: the bucket kept changing under 200 attempts" when every
// round missed.
Result<BoundedAdd> AddWithinOptimistically(const UsageCounters& counters, UsageField field, int64_t limit,
                                           std::string_view context,
                                           const std::function<Status(UsageCounters* plain, UsageCounters* bounded)>& read,
                                           const std::function<Result<bool>(const UsageCounters& next)>& write);

}  // namespace aquifer::driver
