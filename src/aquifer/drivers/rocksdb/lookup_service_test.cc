// RocksDB-specific checks of the embedded lookup service: the shared handle,
// the on-disk layout after RemoveInstance, config parsing and error mapping.
// The behaviour every lookup driver shares is in tests/conformance.

#include "aquifer/drivers/rocksdb/lookup_service.h"

#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/table.h>
#include <rocksdb/table_properties.h>

#include "aquifer/base/clock.h"
#include "aquifer/driver/registry.h"
#include "aquifer/driver/store_metrics.h"
#include "aquifer/drivers/rocksdb/rocksdb_handle.h"
#include "aquifer/drivers/rocksdb/usage_service.h"
#include "aquifer/keys/filter.h"
#include "aquifer/keys/tuple.h"

namespace aquifer::drivers::rocksdb {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class TempDir {
 public:
  TempDir() {
    std::string base = std::filesystem::temp_directory_path() / "aquifer-lookup-test-XXXXXX";
    std::vector<char> buf(base.begin(), base.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

schema::SchemaPtr Schema() {
  auto parsed = schema::Schema::Parse(
      R"({"type":"record","name":"R","fields":[{"name":"id","type":"string"},{"name":"v","type":"long"}]})", {"id"});
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  return parsed.ok() ? *parsed : nullptr;
}

driver::InstanceInfo Instance() {
  driver::InstanceInfo instance;
  instance.instance_id = Uuid::Random();
  instance.schema = Schema();
  return instance;
}

driver::Record RecordFor(const std::string& id, int64_t ts) {
  driver::Record record;
  keys::AppendString(&record.key, id);
  record.avro = std::string("\x02", 1) + id.substr(0, 0);  // not decoded by these tests
  record.timestamp_ms = ts;
  return record;
}

int CountKeysWithPrefix(RocksDbHandle& handle, const std::string& family, std::string_view prefix) {
  auto cf = handle.ColumnFamily(family);
  EXPECT_TRUE(cf.ok());
  std::unique_ptr<::rocksdb::Iterator> it(handle.db()->NewIterator(::rocksdb::ReadOptions(), *cf));
  int count = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().ToStringView().starts_with(prefix)) ++count;
  }
  EXPECT_TRUE(it->status().ok());
  return count;
}

TEST(RocksDbHandle, OnePathIsOneDatabaseUntilTheLastUserLetsGo) {
  TempDir dir;
  auto first = RocksDbHandle::Open(dir.path());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = RocksDbHandle::Open(dir.path() + "/./");
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(first->get(), second->get());
  ASSERT_TRUE((*first)->ColumnFamily("extra").ok());
  first->reset();
  second->reset();
  // Closed now: RocksDB would refuse a second open of a locked directory.
  auto reopened = RocksDbHandle::Open(dir.path());
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  std::vector<std::string> families;
  ASSERT_TRUE(::rocksdb::DB::ListColumnFamilies(::rocksdb::DBOptions(), dir.path(), &families).ok());
  EXPECT_THAT(families, ::testing::Contains("extra"));
}

TEST(RocksDbLookup, LookupAndUsageShareTheDatabaseUnderTheDataDir) {
  TempDir dir;
  driver::Registry registry;
  RegisterLookupAndUsage(&registry);
  driver::DriverContext context;
  context.data_dir = dir.path();
  for (const char* name : {"rocksdb", "embedded"}) {
    auto lookup = registry.MakeLookupService(name, {}, context);
    ASSERT_TRUE(lookup.ok()) << lookup.status().ToString();
    auto usage = registry.MakeUsageService(name, {}, context);
    ASSERT_TRUE(usage.ok()) << usage.status().ToString();
    auto handle = RocksDbHandle::Open(dir.path() + "/lookup");
    ASSERT_TRUE(handle.ok()) << handle.status().ToString();
    std::vector<std::string> families;
    ASSERT_TRUE(::rocksdb::DB::ListColumnFamilies(::rocksdb::DBOptions(), dir.path() + "/lookup", &families).ok());
    EXPECT_THAT(families, ::testing::IsSupersetOf({kLogFamily, kIndexFamily, kMetaFamily, kUsageFamily}));
  }
}

TEST(RocksDbLookup, RemoveInstanceLeavesNoKeyOfTheInstanceInAnyFamily) {
  TempDir dir;
  LookupOptions options;
  options.path = dir.path();
  auto service = MakeLookupService(options);
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  driver::InstanceInfo doomed = Instance();
  driver::InstanceInfo kept = Instance();
  std::vector<driver::Record> records = {RecordFor("a", 1), RecordFor("b", 2), RecordFor("a", 3)};
  ASSERT_TRUE((*service)->WriteRecords(doomed, records, {}).ok());
  ASSERT_TRUE((*service)->WriteRecords(kept, records, {}).ok());
  auto handle = RocksDbHandle::Open(dir.path());
  ASSERT_TRUE(handle.ok());
  std::string doomed_prefix(doomed.instance_id.AsBytes());
  std::string kept_prefix(kept.instance_id.AsBytes());
  ASSERT_EQ(CountKeysWithPrefix(**handle, kLogFamily, doomed_prefix), 3);
  ASSERT_EQ(CountKeysWithPrefix(**handle, kIndexFamily, doomed_prefix), 2);
  ASSERT_EQ(CountKeysWithPrefix(**handle, kMetaFamily, doomed_prefix), 1);

  ASSERT_TRUE((*service)->RemoveInstance(doomed).ok());
  for (const char* family : {kLogFamily, kIndexFamily, kMetaFamily}) {
    EXPECT_EQ(CountKeysWithPrefix(**handle, family, doomed_prefix), 0) << family;
  }
  EXPECT_EQ(CountKeysWithPrefix(**handle, kLogFamily, kept_prefix), 3);
  EXPECT_EQ(CountKeysWithPrefix(**handle, kIndexFamily, kept_prefix), 2);
  EXPECT_EQ(CountKeysWithPrefix(**handle, kMetaFamily, kept_prefix), 1);
}

TEST(RocksDbLookup, AnInstanceIdOfAllOnesIsRemovedToo) {
  TempDir dir;
  LookupOptions options;
  options.path = dir.path();
  auto service = MakeLookupService(options);
  ASSERT_TRUE(service.ok());
  driver::InstanceInfo instance = Instance();
  instance.instance_id.bytes.fill(0xFF);  // no finite prefix successor
  ASSERT_TRUE((*service)->WriteRecords(instance, std::vector<driver::Record>{RecordFor("\xff\xff", 1)}, {}).ok());
  ASSERT_TRUE((*service)->RemoveInstance(instance).ok());
  auto handle = RocksDbHandle::Open(dir.path());
  ASSERT_TRUE(handle.ok());
  for (const char* family : {kLogFamily, kIndexFamily, kMetaFamily}) {
    EXPECT_EQ(CountKeysWithPrefix(**handle, family, instance.instance_id.AsBytes()), 0) << family;
  }
}

TEST(RocksDbLookup, ConfigSetsPathSyncAndLimits) {
  TempDir dir;
  driver::DriverContext context;
  context.data_dir = dir.path() + "/unused";
  driver::Config config = {{"path", dir.path() + "/custom"},
                           {"sync", "false"},
                           {"max_key_size", "10"},
                           {"max_record_size", "20"},
                           {"max_records_in_batch", "3"}};
  auto options = ParseLookupOptions(config, context);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_FALSE(options->sync);
  auto service = MakeLookupService(*options);
  ASSERT_TRUE(service.ok());
  driver::Limits limits = (*service)->capabilities().limits;
  EXPECT_EQ(limits.max_key_size, 10u);
  EXPECT_EQ(limits.max_record_size, 20u);
  EXPECT_EQ(limits.max_records_in_batch, 3u);
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/custom/CURRENT"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/unused"));

  std::vector<driver::Record> four(4, RecordFor("a", 1));
  Status status = (*service)->WriteRecords(Instance(), four, {});
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("4 records"));

  EXPECT_EQ(ParseLookupOptions({{"sync", "maybe"}}, context).status().code(), StatusCode::kInvalidArgument);
  auto zero = ParseLookupOptions({{"max_key_size", "0"}}, context);
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("max_key_size"));
  auto defaults = ParseLookupOptions({}, context);
  ASSERT_TRUE(defaults.ok());
  EXPECT_TRUE(defaults->sync);
  EXPECT_EQ(defaults->path, context.data_dir + "/lookup");
}

// RocksDB counts perf counters per thread by default (kEnableCount), a
// thread_local update on every key comparison; the drivers turn them off on
// the threads that write and read, and on RocksDB's flush and compaction
// threads through a listener (ApplyStorageOptions). Nothing reads them.
TEST(RocksDbLookup, ThreadsThatWriteCountNoRocksDbPerfCounters) {
  TempDir dir;
  driver::DriverContext context;
  context.data_dir = dir.path();
  auto options = ParseLookupOptions({}, context);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  auto service = MakeLookupService(*options);
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  driver::InstanceInfo instance = Instance();
  std::thread writer([&] {
    EXPECT_EQ(::rocksdb::GetPerfLevel(), ::rocksdb::PerfLevel::kEnableCount);  // RocksDB's default
    std::vector<driver::Record> records = {RecordFor("a", 1), RecordFor("b", 2)};
    ASSERT_TRUE((*service)->WriteRecords(instance, records, {}).ok());
    EXPECT_EQ(::rocksdb::GetPerfLevel(), ::rocksdb::PerfLevel::kDisable);
  });
  writer.join();

  ::rocksdb::DBOptions db_options;
  const size_t listeners = db_options.listeners.size();
  ApplyStorageOptions(&db_options);
  EXPECT_EQ(db_options.listeners.size(), listeners + 1);  // the one for flush and compaction threads
}

// A point read in a large store loads only the index and filter partitions
// it needs into the bounded cache: with whole per-file blocks (megabytes once
// a store holds millions of keys) a 64 MiB cache thrashed and index lookups
// after a long ingest fell to 2% of /healthz (README "Benchmarks").
TEST(RocksDbLookup, TableFilesGetPartitionedIndexAndFilterBlocks) {
  TempDir dir;
  ::rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(::rocksdb::NewBloomFilterPolicy(10));
  ApplyBlockCache(&table, kMinBlockCacheSize);
  ::rocksdb::Options options;
  options.create_if_missing = true;
  options.table_factory.reset(::rocksdb::NewBlockBasedTableFactory(table));
  ::rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(::rocksdb::DB::Open(options, dir.path() + "/db", &raw).ok());
  std::unique_ptr<::rocksdb::DB> db(raw);
  for (int i = 0; i < 50000; ++i) {
    ASSERT_TRUE(db->Put({}, fmt::format("key-{:08}", i), std::string(20, 'v')).ok());
  }
  ASSERT_TRUE(db->Flush({}).ok());
  ::rocksdb::TablePropertiesCollection files;
  ASSERT_TRUE(db->GetPropertiesOfAllTables(&files).ok());
  ASSERT_FALSE(files.empty());
  for (const auto& [name, properties] : files) {
    EXPECT_GT(properties->index_partitions, 1u) << name;  // 0 for a single-block index
    EXPECT_FALSE(properties->filter_policy_name.empty()) << name;
  }
  std::string value;
  EXPECT_TRUE(db->Get({}, "key-00012345", &value).ok());
  EXPECT_TRUE(db->Get({}, "key-99999999", &value).IsNotFound());
}

TEST(RocksDbLookup, BlockCacheSizeIsParsedAndHoldsThePinnedIndexAndFilterBlocks) {
  TempDir dir;
  driver::DriverContext context;
  context.data_dir = dir.path();
  auto defaults = ParseLookupOptions({}, context);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->block_cache_size, size_t{64} << 20);
  for (const char* bad : {"0", "1048575", "-5", "lots"}) {
    auto refused = ParseLookupOptions({{"block_cache_size", bad}}, context);
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(refused.status().message(), HasSubstr("block_cache_size")) << bad;
    auto usage = ParseUsageOptions({{"block_cache_size", bad}}, context);
    EXPECT_EQ(usage.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  auto usage = ParseUsageOptions({{"block_cache_size", "8388608"}}, context);
  ASSERT_TRUE(usage.ok()) << usage.status().ToString();
  EXPECT_EQ(usage->block_cache_size, size_t{8} << 20);

  auto options = ParseLookupOptions({{"path", dir.path() + "/sized"}, {"block_cache_size", "33554432"}}, context);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->block_cache_size, size_t{32} << 20);
  auto service = MakeLookupService(*options);
  ASSERT_TRUE(service.ok()) << service.status().ToString();
  std::string metrics = driver::StoreMetricsText();
  EXPECT_THAT(metrics, HasSubstr("aquifer_rocksdb_block_cache_capacity_bytes{db=\"sized\"} 33554432\n"));
  // Four families (default, log, index, meta; no usage here) of 64 MiB x 2 memtables.
  EXPECT_THAT(metrics, HasSubstr(fmt::format("aquifer_rocksdb_memtables_limit_bytes{{db=\"sized\"}} {}\n",
                                             int64_t{4} * 2 * (64 << 20))));

  // A flushed table file's index and filter blocks are in the cache (pinned: L0), not
  // in the table reader's own memory (which they outgrow with 5000 keys).
  std::vector<driver::Record> many;
  for (int i = 0; i < 5000; ++i) many.push_back(RecordFor("key" + std::to_string(i), i));
  ASSERT_TRUE((*service)->WriteRecords(Instance(), many, {}).ok());
  auto handle = RocksDbHandle::Open(dir.path() + "/sized");
  ASSERT_TRUE(handle.ok());
  ASSERT_TRUE((*handle)->db()->Flush(::rocksdb::FlushOptions(), *(*handle)->ColumnFamily(kIndexFamily)).ok());
  auto gauge = [&](const std::string& name) -> int64_t {
    std::string text = driver::StoreMetricsText();
    std::string prefix = name + "{db=\"sized\"} ";
    size_t at = text.find(prefix);
    return at == std::string::npos ? -1 : std::atoll(text.c_str() + at + prefix.size());
  };
  EXPECT_GT(gauge("aquifer_rocksdb_block_cache_pinned_bytes"), 0);
  EXPECT_GE(gauge("aquifer_rocksdb_block_cache_usage_bytes"), gauge("aquifer_rocksdb_block_cache_pinned_bytes"));
  EXPECT_GT(gauge("aquifer_rocksdb_block_cache_pinned_bytes"), gauge("aquifer_rocksdb_table_readers_bytes"));
  EXPECT_GT(gauge("aquifer_rocksdb_memtables_bytes"), 0);

  handle->reset();
  service->reset();
  EXPECT_THAT(driver::StoreMetricsText(), Not(HasSubstr("db=\"sized\""))) << "closed databases report nothing";
}

TEST(RocksDbLookup, DamagedStoredRowsAreCorruptionNotACrash) {
  TempDir dir;
  LookupOptions options;
  options.path = dir.path();
  auto service = MakeLookupService(options);
  ASSERT_TRUE(service.ok());
  driver::InstanceInfo instance = Instance();
  ASSERT_TRUE((*service)->WriteRecords(instance, std::vector<driver::Record>{RecordFor("a", 1)}, {}).ok());
  auto handle = RocksDbHandle::Open(dir.path());
  ASSERT_TRUE(handle.ok());
  std::string prefix(instance.instance_id.AsBytes());
  std::string index_key = prefix;
  keys::AppendString(&index_key, "a");
  ASSERT_TRUE((*handle)->db()->Put(::rocksdb::WriteOptions(), *(*handle)->ColumnFamily(kIndexFamily), index_key, "short").ok());
  auto cursors = (*service)->Query(instance, driver::QueryRequest{});
  ASSERT_TRUE(cursors.ok());
  auto page = (*service)->ReadCursor(instance, cursors->replay, {}, driver::ReadOptions{});
  EXPECT_EQ(page.status().code(), StatusCode::kCorruption) << page.status().ToString();
  // A damaged sequence is reported on the next write, which writes nothing.
  ASSERT_TRUE((*handle)->db()->Put(::rocksdb::WriteOptions(), *(*handle)->ColumnFamily(kMetaFamily), prefix + "s", "x").ok());
  EXPECT_EQ((*service)->WriteRecords(instance, std::vector<driver::Record>{RecordFor("b", 1)}, {}).code(),
            StatusCode::kCorruption);
}

// Index rows are merged into the index, not read before the write: the latest
// row per key (timestamp, then offset) wins across batches, also for a key
// rewritten more often than the memtable keeps operands, after a flush, and
// after a reopen where the database was opened first by another of its users
// (the handle, as the usage service opens it), not by the lookup service.
TEST(RocksDbLookup, TheIndexKeepsTheLatestRowPerKeyThroughMergesFlushesAndReopens) {
  TempDir dir;
  driver::InstanceInfo instance = Instance();
  auto index_rows = [&](driver::LookupService& service) {
    std::vector<std::string> rows;
    auto cursors = service.Query(instance, driver::QueryRequest{});
    EXPECT_TRUE(cursors.ok()) << cursors.status().ToString();
    if (!cursors.ok()) return rows;
    driver::ReadOptions read;
    read.limit = 1000;
    auto page = service.ReadCursor(instance, cursors->replay, {}, read);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) return rows;
    for (const auto& record : page->records) {
      std::string id = "?";
      for (const char* candidate : {"a", "b", "c", "h"}) {
        std::string key;
        keys::AppendString(&key, candidate);
        if (key == record.key) id = candidate;
      }
      rows.push_back(fmt::format("{}@{}#{}", id, record.timestamp_ms, record.offset));
    }
    return rows;
  };
  // The same rows through point lookups (a filter on every key field: one
  // Get folding the key's operands), which never have a next page.
  auto point_rows = [&](driver::LookupService& service) {
    std::vector<std::string> rows;
    for (const char* id : {"a", "b", "c", "h", "missing"}) {
      auto filter = keys::ParseFilter(*instance.schema, fmt::format(R"({{"id":"{}"}})", id));
      EXPECT_TRUE(filter.ok()) << filter.status().ToString();
      if (!filter.ok()) return rows;
      driver::QueryRequest request;
      request.filter = *filter;
      auto cursors = service.Query(instance, request);
      EXPECT_TRUE(cursors.ok()) << cursors.status().ToString();
      if (!cursors.ok()) return rows;
      driver::ReadOptions read;
      read.limit = 1;
      auto page = service.ReadCursor(instance, cursors->replay, *filter, read);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) return rows;
      EXPECT_TRUE(page->next.empty()) << id;
      EXPECT_LE(page->records.size(), 1u);
      for (const auto& record : page->records) {
        std::string key;
        keys::AppendString(&key, id);
        EXPECT_EQ(record.key, key);
        rows.push_back(fmt::format("{}@{}#{}", id, record.timestamp_ms, record.offset));
      }
    }
    return rows;
  };
  std::vector<std::string> expected;
  {
    LookupOptions options;
    options.path = dir.path();
    auto service = MakeLookupService(options);
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    auto write = [&](std::vector<driver::Record> batch) {
      Status written = (*service)->WriteRecords(instance, batch, {});
      ASSERT_TRUE(written.ok()) << written.ToString();
    };
    write({RecordFor("a", 10)});                    // offset 0
    write({RecordFor("a", 5)});                     // 1: older, loses
    write({RecordFor("b", 7), RecordFor("c", 1)});  // 2, 3
    write({RecordFor("b", 7)});                     // 4: same time, later offset wins
    // A hot key: newer rows (5..104), then older ones (105..144); some of
    // these writes fold the key's operands (read, then Put the winner).
    for (int round = 0; round < 100; ++round) write({RecordFor("h", 1000 + round)});
    for (int round = 0; round < 40; ++round) write({RecordFor("h", 500 + round)});
    write({RecordFor("h", 1050), RecordFor("c", 0)});  // 145, 146: both older
    expected = {"a@10#0", "b@7#4", "c@1#3", "h@1099#104"};
    EXPECT_EQ(index_rows(**service), expected);
    EXPECT_EQ(point_rows(**service), expected);
    auto handle = RocksDbHandle::Open(dir.path());
    ASSERT_TRUE(handle.ok());
    auto index = (*handle)->ColumnFamily(kIndexFamily);
    ASSERT_TRUE(index.ok());
    ASSERT_TRUE((*handle)->db()->Flush(::rocksdb::FlushOptions(), *index).ok());
    write({RecordFor("a", 9)});   // 147: older than the flushed row
    write({RecordFor("c", 2)});   // 148: newer
    expected = {"a@10#0", "b@7#4", "c@2#148", "h@1099#104"};
    EXPECT_EQ(index_rows(**service), expected);
    EXPECT_EQ(point_rows(**service), expected);
  }
  auto first = RocksDbHandle::Open(dir.path());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  LookupOptions options;
  options.path = dir.path();
  auto reopened = MakeLookupService(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(index_rows(**reopened), expected);
  EXPECT_EQ(point_rows(**reopened), expected);
}

// Applied group ids live in lookup_meta under the instance prefix, and ids
// older than applied_window_ms are pruned by a later write.
TEST(RocksDbLookup, AppliedGroupIdsExpireAfterTheWindow) {
  TempDir dir;
  ManualClock clock;
  LookupOptions options;
  options.path = dir.path();
  options.clock = &clock;
  options.applied_window_ms = 3'600'000;
  auto service = MakeLookupService(options);
  ASSERT_TRUE(service.ok());
  driver::InstanceInfo instance = Instance();
  std::vector<driver::Record> batch{RecordFor("a", 1)};
  std::vector<driver::RecordGroup> g{{"G", 1}}, h{{"H", 1}};
  ASSERT_TRUE((*service)->WriteRecords(instance, batch, g).ok());
  auto handle = RocksDbHandle::Open(dir.path());
  ASSERT_TRUE(handle.ok());
  const std::string prefix(instance.instance_id.AsBytes());
  auto applied = [&](const std::string& id) {
    std::string value;
    return (*handle)->db()->Get(::rocksdb::ReadOptions(), *(*handle)->ColumnFamily(kMetaFamily),
                                prefix + "a" + id, &value).ok();
  };
  EXPECT_TRUE(applied("G"));
  clock.Advance(30LL * 60 * 1'000'000);  // within the window: still applied
  ASSERT_TRUE((*service)->WriteRecords(instance, batch, h).ok());
  ASSERT_TRUE((*service)->WriteRecords(instance, batch, g).ok());
  EXPECT_TRUE(applied("G"));
  clock.Advance(2LL * 60 * 60 * 1'000'000);  // G and H are past the window
  std::vector<driver::RecordGroup> k{{"K", 1}};
  ASSERT_TRUE((*service)->WriteRecords(instance, batch, k).ok());
  EXPECT_FALSE(applied("G"));
  EXPECT_FALSE(applied("H"));
  EXPECT_TRUE(applied("K"));
  ASSERT_TRUE((*service)->WriteRecords(instance, batch, g).ok());  // forgotten: written again
  auto cursors = (*service)->Query(instance, driver::QueryRequest{driver::QueryKind::kLog});
  ASSERT_TRUE(cursors.ok());
  auto page = (*service)->ReadCursor(instance, cursors->replay, {}, driver::ReadOptions{});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  EXPECT_EQ(page->records.size(), 4u);  // G, H, K, G again
  EXPECT_EQ(ParseLookupOptions({{"applied_window_ms", "0"}}, {}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(RocksDbStatus, MapsRocksDbCodesToTheCallersDecision) {
  struct Case {
    ::rocksdb::Status in;
    StatusCode out;
  };
  for (const Case& c : {Case{::rocksdb::Status::IOError("disk"), StatusCode::kUnavailable},
                        Case{::rocksdb::Status::Busy(), StatusCode::kUnavailable},
                        Case{::rocksdb::Status::TryAgain(), StatusCode::kUnavailable},
                        Case{::rocksdb::Status::TimedOut(), StatusCode::kTimeout},
                        Case{::rocksdb::Status::Corruption("bad block"), StatusCode::kCorruption},
                        Case{::rocksdb::Status::NotFound(), StatusCode::kNotFound},
                        Case{::rocksdb::Status::InvalidArgument("x"), StatusCode::kInvalidArgument},
                        Case{::rocksdb::Status::NotSupported(), StatusCode::kNotSupported},
                        Case{::rocksdb::Status::Aborted(), StatusCode::kAborted}}) {
    Status mapped = FromRocksStatus(c.in, "writing things");
    EXPECT_EQ(mapped.code(), c.out) << c.in.ToString();
    EXPECT_THAT(mapped.message(), HasSubstr("writing things"));
    EXPECT_THAT(mapped.message(), HasSubstr(c.in.ToString()));
  }
  EXPECT_TRUE(FromRocksStatus(::rocksdb::Status::OK(), "x").ok());
}

}  // namespace
}  // namespace aquifer::drivers::rocksdb
