// RocksDB-specific checks of the embedded usage service: the stored layout.
// The behaviour every usage driver shares is in tests/conformance.

#include "aquifer/drivers/rocksdb/usage_service.h"

#include <filesystem>
#include <memory>

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "aquifer/drivers/rocksdb/lookup_service.h"
#include "aquifer/drivers/rocksdb/rocksdb_handle.h"

namespace aquifer::drivers::rocksdb {
namespace {

TEST(RocksDbUsage, BucketsAreStoredAsOwnerPeriodStartAndEightCounters) {
  std::string dir = std::filesystem::temp_directory_path() / ("aquifer-usage-test-" + Uuid::Random().Hex());
  {
    UsageOptions options;
    options.path = dir;
    auto service = MakeUsageService(options);
    ASSERT_TRUE(service.ok()) << service.status().ToString();
    Uuid owner = Uuid::Random();
    driver::UsageCounters counters;
    counters.read_ops = 1;
    counters.scan_bytes = -2;
    ASSERT_TRUE((*service)->WriteUsage(owner, driver::UsagePeriod::kMonth, 1'710'498'600'000, counters).ok());

    auto handle = RocksDbHandle::Open(dir);
    ASSERT_TRUE(handle.ok());
    std::unique_ptr<::rocksdb::Iterator> it(
        (*handle)->db()->NewIterator(::rocksdb::ReadOptions(), *(*handle)->ColumnFamily(kUsageFamily)));
    it->SeekToFirst();
    ASSERT_TRUE(it->Valid());
    std::string expected_key(owner.AsBytes());
    expected_key.push_back(static_cast<char>(driver::UsagePeriod::kMonth));
    // 2024-03-01T00:00Z = 1709251200000 = 0x0000018DF74F8400, sign bit flipped.
    expected_key += std::string("\x80\x00\x01\x8d\xf7\x4f\x84\x00", 8);
    EXPECT_EQ(it->key().ToString(), expected_key);
    std::string value = it->value().ToString();
    ASSERT_EQ(value.size(), 64u);
    EXPECT_EQ(value.substr(0, 8), std::string("\0\0\0\0\0\0\0\x01", 8));
    EXPECT_EQ(value.substr(56, 8), std::string("\xff\xff\xff\xff\xff\xff\xff\xfe", 8));
    it->Next();
    EXPECT_FALSE(it->Valid());

    // A damaged value is reported, not misread.
    ASSERT_TRUE((*handle)->db()->Put(::rocksdb::WriteOptions(), *(*handle)->ColumnFamily(kUsageFamily),
                                     expected_key, "short").ok());
    EXPECT_EQ((*service)->ReadUsage(owner, driver::UsagePeriod::kMonth, 1'710'498'600'000).status().code(),
              StatusCode::kCorruption);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace aquifer::drivers::rocksdb
