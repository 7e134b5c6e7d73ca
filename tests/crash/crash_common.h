#pragma once

// Shared by crash_writer (the child) and crash_test (the parent): names, and
// the lookup store when the embedded LookupService is compiled in.

#include <string>

#include "aquifer/base/uuid.h"
#include "aquifer/driver/types.h"

#if __has_include("aquifer/drivers/rocksdb/lookup_service.h")
#include "aquifer/drivers/rocksdb/lookup_service.h"
#include "aquifer/schema/schema.h"
#define AQUIFER_CRASH_WITH_LOOKUP 1
#else
#define AQUIFER_CRASH_WITH_LOOKUP 0
#endif

namespace aquifer::crash {

inline constexpr char kTopic[] = "writes";
inline constexpr char kVerifySubscription[] = "verify";     // drained by the parent
inline constexpr char kConsumerSubscription[] = "consumer";  // consumed and acked by the child

// The acknowledgement record, one line per acknowledged operation, appended
// with one write() each (a SIGKILL cannot lose or tear a completed write()):
//   "q <first> <count>"  Publish of ids first..first+count-1 returned OK
//   "l <first> <count>"  WriteRecords of the same ids returned OK
//   "c <id>"             the child's consumer acked message <id>

#if AQUIFER_CRASH_WITH_LOOKUP
inline driver::InstanceInfo CrashInstance() {
  driver::InstanceInfo info;
  info.instance_id = Uuid::FromBytes(std::string(16, '\x42')).value();
  info.project = "crash";
  info.table = "writes";
  info.schema =
      schema::Schema::Parse(R"({"type":"record","name":"w","fields":[{"name":"id","type":"long"}]})",
                            {"id"})
          .value();
  return info;
}
inline std::string RecordKey(int64_t id) { return "k" + std::to_string(id); }
#endif

}  // namespace aquifer::crash
