#include "aquifer/driver/offset_lookup.h"

#include <gtest/gtest.h>

#include "aquifer/driver/bounded_add.h"
#include "aquifer/driver/record_limits.h"

namespace aquifer::driver {
namespace {

OffsetPayload Decoded(const std::string& bytes) {
  auto payload = DecodePayload(bytes);
  EXPECT_TRUE(payload.ok()) << payload.status().ToString();
  return payload.ok() ? *payload : OffsetPayload{};
}

TEST(OffsetLookup, LogSpanIsWhatThePayloadStillCoversBelowTheCommittedEnd) {
  LogSpan replay = LogSpanToRead(Decoded(LogPayload(3, 10, 0)), 7);
  EXPECT_EQ(replay.low, 3);
  EXPECT_EQ(replay.high, 7);
  replay = LogSpanToRead(Decoded(LogPayload(3, 10, 0)), 20);
  EXPECT_EQ(replay.high, 10);
  LogSpan rewind = LogSpanToRead(Decoded(RewindPayload(9)), 5);
  EXPECT_EQ(rewind.low, 0);
  EXPECT_EQ(rewind.high, 5);
  LogSpan change = LogSpanToRead(Decoded(ChangePayload(4, 0)), 12);
  EXPECT_EQ(change.low, 4);
  EXPECT_EQ(change.high, 12);
}

TEST(OffsetLookup, NextPayloadContinuesWhatIsLeft) {
  const OffsetPayload replay = Decoded(LogPayload(3, 10, 77));
  EXPECT_EQ(NextLogPayload(replay, 6, 10), LogPayload(6, 10, 77));
  EXPECT_EQ(NextLogPayload(replay, 10, 10), "");  // exhausted
  const OffsetPayload rewind = Decoded(RewindPayload(9));
  EXPECT_EQ(NextLogPayload(rewind, 0, 4), RewindPayload(4));
  EXPECT_EQ(NextLogPayload(rewind, 0, 0), "");
  const OffsetPayload change = Decoded(ChangePayload(5, 33));
  EXPECT_EQ(NextLogPayload(change, 8, 8), ChangePayload(8, 33));
  EXPECT_EQ(NextLogPayload(change, 2, 8), ChangePayload(5, 33));  // never behind where it started
}

TEST(OffsetLookup, PeekAndReadCheckTheInstance) {
  InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  int reads = 0;
  CommittedEnd end = [&]() -> Result<uint64_t> {
    ++reads;
    return uint64_t{4};
  };
  auto peek = PeekOffsetCursors(instance, end);
  ASSERT_TRUE(peek.ok()) << peek.status().ToString();
  EXPECT_EQ(peek->rewind, RewindPayload(4));
  EXPECT_EQ(peek->change, ChangePayload(4, 0));
  EXPECT_EQ(reads, 1);
  auto empty = PeekOffsetCursors(instance, [] { return Result<uint64_t>(uint64_t{0}); });
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->rewind, "");
  instance.use_log = false;
  auto no_log = PeekOffsetCursors(instance, end);
  ASSERT_FALSE(no_log.ok());
  EXPECT_EQ(no_log.status().message(),
            "peeking " + instance.instance_id.ToString() + ": the table has no log (use_log is off)");

  PayloadRead fail = [](const OffsetPayload&) -> Result<ReadResult> { return Internal("not to be read"); };
  auto nothing = ReadOffsetCursor(instance, "", ReadOptions{}, fail, fail);
  ASSERT_TRUE(nothing.ok());
  EXPECT_EQ(nothing->next, "");
  auto no_schema = ReadOffsetCursor(instance, ChangePayload(0, 0), ReadOptions{}, fail, fail);
  ASSERT_FALSE(no_schema.ok());
  EXPECT_EQ(no_schema.status().message(), "reading " + instance.instance_id.ToString() + ": no schema");
  ReadOptions bad;
  bad.limit = 0;
  EXPECT_EQ(ReadOffsetCursor(instance, ChangePayload(0, 0), bad, fail, fail).status().code(),
            StatusCode::kInvalidArgument);
  auto no_query = QueryOffsetCursors(instance, QueryRequest{}, end);
  ASSERT_FALSE(no_query.ok());
  EXPECT_EQ(no_query.status().message(), "querying " + instance.instance_id.ToString() + ": no schema");
}

TEST(RecordLimits, ConfigureLimitsKeepsUnsetKeysAndBoundsSetOnes) {
  Limits limits;
  // Defaults: 1024 bytes per key, 1 MiB per record, 10,000 records per batch.
  const Limits maxima{.max_key_size = 2000, .max_record_size = 1000, .max_records_in_batch = 10'000};
  ASSERT_TRUE(ConfigureLimits({{"max_record_size", "500"}}, maxima, &limits).ok());
  EXPECT_EQ(limits.max_key_size, Limits{}.max_key_size);
  EXPECT_EQ(limits.max_record_size, 500u);
  Status over = ConfigureLimits({{"max_key_size", "2001"}}, maxima, &limits);
  EXPECT_EQ(over.message(), "config 'max_key_size': 2001 is outside 1..2000");
  Status zero = ConfigureLimits({{"max_records_in_batch", "0"}}, maxima, &limits);
  EXPECT_EQ(zero.message(), "config 'max_records_in_batch': 0 is outside 1..10000");
}

TEST(RecordLimits, KeepNewGroupsSkipsAppliedAndRepeatedIds) {
  std::vector<Record> records(5);
  for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) records[record_idx].key = std::to_string(record_idx);
  const std::vector<RecordGroup> groups = {{"a", 2}, {"b", 1}, {"a", 1}, {"c", 1}};
  std::set<std::string, std::less<>> applied = {"b"};
  std::vector<const Record*> kept;
  std::vector<std::string> fresh;
  KeepNewGroups(records, groups, &applied, &kept, &fresh);
  EXPECT_EQ(fresh, (std::vector<std::string>{"a", "c"}));
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0]->key, "0");
  EXPECT_EQ(kept[1]->key, "1");
  EXPECT_EQ(kept[2]->key, "4");
  InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  Status bad = CheckWrite(instance, records, std::vector<RecordGroup>{{"a", 4}}, Limits{});
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.ToString().find("writing to " + instance.instance_id.ToString()), std::string::npos) << bad.ToString();
}

TEST(BoundedAdd, RetriesAMissAndRefusesPastTheLimit) {
  UsageCounters stored;  // the bucket's bounded counters
  int version = 0, misses = 2;
  int read_version = -1;
  auto read = [&](UsageCounters* plain, UsageCounters* bounded) -> Status {
    plain->write_bytes = 10;
    *bounded = stored;
    read_version = version;
    return Status::OK();
  };
  auto write = [&](const UsageCounters& next) -> Result<bool> {
    if (misses > 0) {  // another reserver got in between
      --misses;
      ++version;
      return false;
    }
    if (read_version != version) return false;
    stored = next;
    ++version;
    return true;
  };
  UsageCounters add;
  add.write_bytes = 5;
  auto added = AddWithinOptimistically(add, UsageField::kWriteBytes, 15, "ctx", read, write);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_TRUE(added->added);
  EXPECT_EQ(added->counters.write_bytes, 15);
  EXPECT_EQ(stored.write_bytes, 5);
  auto refused = AddWithinOptimistically(add, UsageField::kWriteBytes, 15, "ctx", read, write);
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(refused->added);
  EXPECT_EQ(refused->counters.write_bytes, 15);
  EXPECT_EQ(stored.write_bytes, 5);
  auto never = AddWithinOptimistically(add, UsageField::kWriteBytes, 100, "ctx", read,
                                       [](const UsageCounters&) -> Result<bool> { return false; });
  ASSERT_FALSE(never.ok());
  EXPECT_EQ(never.status().code(), StatusCode::kAborted);
  EXPECT_EQ(never.status().message(), "ctx: the bucket kept changing under 200 attempts");
}

}  // namespace
}  // namespace aquifer::driver
