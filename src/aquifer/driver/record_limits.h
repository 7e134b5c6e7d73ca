#pragma once

// The checks every lookup driver runs on a write before storing anything,
// and on a read's options before reading.

#include <functional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/types.h"

namespace aquifer::driver {

// At most max_records_in_batch records, every key non-empty and within
// max_key_size, every Avro record within max_record_size. InvalidArgument
// naming `instance` (its id), the record index and the sizes; OK otherwise.
Status CheckRecordLimits(const Uuid& instance, std::span<const Record> records, const Limits& limits);
// A write's checks before anything is stored: CheckRecordGroups (its error in
// the context "writing to <instance id>"), then CheckRecordLimits.
Status CheckWrite(const InstanceInfo& instance, std::span<const Record> records, std::span<const RecordGroup> groups,
                  const Limits& limits);
// Exactly once: the records of the groups whose id is not in `applied` (the
// ids already applied), in order, into `kept`, and those ids into `fresh_ids`.
// A group id repeated within the call is kept once (the first); `applied`
// gets every id of the call.
void KeepNewGroups(std::span<const Record> records, std::span<const RecordGroup> groups,
                   std::set<std::string, std::less<>>* applied, std::vector<const Record*>* kept,
                   std::vector<std::string>* fresh_ids);
// A limit within 1..1000 and a positive scan budget; InvalidArgument naming
// `instance` otherwise.
Status CheckReadOptions(const Uuid& instance, const ReadOptions& options);
// ConfigInt within 1..max: InvalidArgument "config '<key>': <value> is outside
// 1..<max>" otherwise.
Result<int64_t> ConfigIntWithin(const Config& config, const std::string& key, int64_t fallback, int64_t max);
// Sets `limits` from a driver's config (max_key_size, max_record_size,
// max_records_in_batch; unset: as they are), each within 1 and the same field
// of `maxima` (ConfigIntWithin's InvalidArgument otherwise; nothing changed).
Status ConfigureLimits(const Config& config, const Limits& maxima, Limits* limits);

}  // namespace aquifer::driver
