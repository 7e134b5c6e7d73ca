#include "aquifer/driver/bounded_add.h"

#include <chrono>
#include <thread>

namespace aquifer::driver {

Result<BoundedAdd> AddWithinOptimistically(const UsageCounters& counters, UsageField field, int64_t limit,
                                           std::string_view context,
                                           const std::function<Status(UsageCounters* plain, UsageCounters* bounded)>& read,
                                           const std::function<Result<bool>(const UsageCounters& next)>& write) {
  for (int attempt = 0; attempt < kMaxBoundedAddAttempts; ++attempt) {
    UsageCounters plain, bounded;
    AQ_RETURN_IF_ERROR(read(&plain, &bounded));
    BoundedAdd result;
    result.counters = plain;
    result.counters += bounded;
    if (FieldOf(result.counters, field) > limit - FieldOf(counters, field)) return result;

    UsageCounters next = bounded;
    next += counters;
    AQ_ASSIGN_OR_RETURN(bool applied, write(next));
    if (applied) {
      result.added = true;
      result.counters += counters;
      return result;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200 * (1 + attempt % 8)));
  }
  return Aborted("{}: the bucket kept changing under {} attempts", context, kMaxBoundedAddAttempts);
}

}  // namespace aquifer::driver
