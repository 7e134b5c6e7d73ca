#include "aquifer/drivers/rocksdb/usage_service.h"

#include <array>
#include <mutex>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "aquifer/base/text.h"
#include "aquifer/drivers/rocksdb/lookup_service.h"
#include "aquifer/drivers/rocksdb/rocksdb_handle.h"
#include "aquifer/keys/tuple.h"

namespace aquifer::drivers::rocksdb {
namespace {

using driver::UsageBucket;
using driver::UsageCounters;
using driver::UsagePeriod;

constexpr size_t kCounterCount = 8;
constexpr size_t kValueSize = kCounterCount * 8;
constexpr uint64_t kSignBit = uint64_t{1} << 63;

std::mutex& UsageMutex() {
  static std::mutex mu;
  return mu;
}


std::string OwnerPeriodPrefix(const Uuid& owner, UsagePeriod period) {
  std::string key(owner.AsBytes());
  key.push_back(static_cast<char>(period));
  return key;
}
// The start with its sign bit flipped, so byte order is numeric order for
// negative starts too.
std::string BucketKey(const Uuid& owner, UsagePeriod period, int64_t start_ms) {
  std::string key = OwnerPeriodPrefix(owner, period);
  PutBigEndian64(&key, static_cast<uint64_t>(start_ms) ^ kSignBit);
  return key;
}

std::array<int64_t*, kCounterCount> Fields(UsageCounters& c) {
  return {&c.read_ops, &c.read_records, &c.read_bytes, &c.write_ops,
          &c.write_records, &c.write_bytes, &c.scan_ops, &c.scan_bytes};
}

std::string EncodeCounters(UsageCounters counters) {
  std::string out;
  out.reserve(kValueSize);
  for (int64_t* field : Fields(counters)) PutBigEndian64(&out, static_cast<uint64_t>(*field));
  return out;
}
Result<UsageCounters> DecodeCounters(std::string_view value) {
  if (value.size() != kValueSize) return Corruption("usage value of {} bytes, expected {}", value.size(), kValueSize);
  UsageCounters counters;
  size_t pos = 0;
  for (int64_t* field : Fields(counters)) {
    *field = static_cast<int64_t>(GetBigEndian64(value.data() + pos));
    pos += 8;
  }
  return counters;
}

class RocksDbUsageService final : public driver::UsageService {
 public:
  RocksDbUsageService(std::shared_ptr<RocksDbHandle> handle, ::rocksdb::ColumnFamilyHandle* cf, bool sync)
      : handle_(std::move(handle)), db_(handle_->db()), cf_(cf) {
    write_options_.sync = sync;
  }

  Status WriteUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                    const UsageCounters& counters) override {
    AQ_RETURN_IF_ERROR(CheckPeriod(period));
    const std::string key = BucketKey(owner, period, driver::PeriodStart(period, time_ms));
    std::lock_guard<std::mutex> lock(UsageMutex());
    AQ_ASSIGN_OR_RETURN(UsageCounters total, Get(owner, key));
    total += counters;
    ::rocksdb::WriteBatch batch;
    ::rocksdb::Status status = batch.Put(cf_, key, EncodeCounters(total));
    if (status.ok()) status = db_->Write(write_options_, &batch);
    return FromRocksStatus(status, fmt::format("adding usage of {}", owner.ToString()));
  }

  // Check and add under the same lock as WriteUsage (the database belongs to
  // this process alone), so no add slips in between.
  Result<driver::BoundedAdd> AddUsageWithin(const Uuid& owner, UsagePeriod period, int64_t time_ms,
                                            const UsageCounters& counters, driver::UsageField field,
                                            int64_t limit) override {
    AQ_RETURN_IF_ERROR(CheckPeriod(period));
    const std::string key = BucketKey(owner, period, driver::PeriodStart(period, time_ms));
    std::lock_guard<std::mutex> lock(UsageMutex());
    driver::BoundedAdd result;
    AQ_ASSIGN_OR_RETURN(result.counters, Get(owner, key));
    if (driver::FieldOf(counters, field) > limit - driver::FieldOf(result.counters, field)) return result;
    result.counters += counters;
    ::rocksdb::WriteBatch batch;
    ::rocksdb::Status status = batch.Put(cf_, key, EncodeCounters(result.counters));
    if (status.ok()) status = db_->Write(write_options_, &batch);
    AQ_RETURN_IF_ERROR(FromRocksStatus(status, fmt::format("adding usage of {}", owner.ToString())));
    result.added = true;
    return result;
  }

  Result<UsageCounters> ReadUsage(const Uuid& owner, UsagePeriod period, int64_t time_ms) override {
    AQ_RETURN_IF_ERROR(CheckPeriod(period));
    return Get(owner, BucketKey(owner, period, driver::PeriodStart(period, time_ms)));
  }

  Result<std::vector<UsageBucket>> ReadUsageRange(const Uuid& owner, UsagePeriod period, int64_t from_ms,
                                                  int64_t to_ms, int32_t limit) override {
    AQ_RETURN_IF_ERROR(CheckPeriod(period));
    if (limit < 1) return InvalidArgument("reading usage of {}: limit {} must be positive", owner.ToString(), limit);
    std::vector<UsageBucket> buckets;
    if (from_ms >= to_ms) return buckets;
    std::string lower = BucketKey(owner, period, from_ms);
    std::string upper = BucketKey(owner, period, to_ms);
    ::rocksdb::Slice upper_slice(upper);
    ::rocksdb::ReadOptions read_options;
    read_options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options, cf_));
    const std::string prefix = OwnerPeriodPrefix(owner, period);
    for (it->Seek(lower); it->Valid() && static_cast<int32_t>(buckets.size()) < limit; it->Next()) {
      std::string_view key(it->key().data(), it->key().size());
      if (key.size() != prefix.size() + 8 || !key.starts_with(prefix)) {
        return Corruption("reading usage of {}: unexpected key of {} bytes", owner.ToString(), key.size());
      }
      UsageBucket bucket;
      bucket.period_start_ms = static_cast<int64_t>(GetBigEndian64(key.data() + prefix.size()) ^ kSignBit);
      auto counters = DecodeCounters(std::string_view(it->value().data(), it->value().size()));
      if (!counters.ok()) return counters.status().WithContext(fmt::format("reading usage of {}", owner.ToString()));
      bucket.counters = *counters;
      buckets.push_back(bucket);
    }
    if (!it->status().ok()) return FromRocksStatus(it->status(), fmt::format("reading usage of {}", owner.ToString()));
    return buckets;
  }

  Status ClearUsage(const Uuid& owner) override {
    std::lock_guard<std::mutex> lock(UsageMutex());
    ::rocksdb::WriteBatch batch;
    AQ_RETURN_IF_ERROR(AddDeletePrefix(db_, cf_, owner.AsBytes(), &batch));
    return FromRocksStatus(db_->Write(write_options_, &batch), fmt::format("clearing usage of {}", owner.ToString()));
  }

  Status Reset() override {
    std::lock_guard<std::mutex> lock(UsageMutex());
    ::rocksdb::WriteBatch batch;
    AQ_RETURN_IF_ERROR(AddDeletePrefix(db_, cf_, "", &batch));
    AQ_RETURN_IF_ERROR(FromRocksStatus(db_->Write(write_options_, &batch), "resetting usage"));
    return CompactPrefix(db_, cf_, "");
  }

 private:
  static Status CheckPeriod(UsagePeriod period) {
    if (period != UsagePeriod::kHour && period != UsagePeriod::kMonth) {
      return InvalidArgument("unknown usage period {}", static_cast<int>(period));
    }
    return Status::OK();
  }

  Result<UsageCounters> Get(const Uuid& owner, const std::string& key) {
    std::string value;
    ::rocksdb::Status status = db_->Get(::rocksdb::ReadOptions(), cf_, key, &value);
    if (status.IsNotFound()) return UsageCounters{};
    if (!status.ok()) return FromRocksStatus(status, fmt::format("reading usage of {}", owner.ToString()));
    auto counters = DecodeCounters(value);
    if (!counters.ok()) return counters.status().WithContext(fmt::format("reading usage of {}", owner.ToString()));
    return counters;
  }

  const std::shared_ptr<RocksDbHandle> handle_;
  ::rocksdb::DB* const db_;
  ::rocksdb::ColumnFamilyHandle* const cf_;
  ::rocksdb::WriteOptions write_options_;
};

}  // namespace

Result<UsageOptions> ParseUsageOptions(const driver::Config& config, const driver::DriverContext& context) {
  UsageOptions options;
  options.path = driver::ConfigString(config, "path", context.data_dir + "/lookup");
  AQ_ASSIGN_OR_RETURN(options.sync, driver::ConfigBool(config, "sync", true));
  AQ_ASSIGN_OR_RETURN(options.block_cache_size, ParseBlockCacheSize(config, kDefaultLookupBlockCacheSize));
  return options;
}

Result<std::shared_ptr<driver::UsageService>> MakeUsageService(const UsageOptions& options) {
  if (options.path.empty()) return InvalidArgument("rocksdb usage service: empty path");
  AQ_ASSIGN_OR_RETURN(std::shared_ptr<RocksDbHandle> handle, RocksDbHandle::Open(options.path, HandleOptions{.block_cache_size = options.block_cache_size}));
  AQ_ASSIGN_OR_RETURN(auto* cf, handle->ColumnFamily(kUsageFamily));
  return std::shared_ptr<driver::UsageService>(
      std::make_shared<RocksDbUsageService>(std::move(handle), cf, options.sync));
}

}  // namespace aquifer::drivers::rocksdb
