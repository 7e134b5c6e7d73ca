#include "aquifer/drivers/rocksdb/rocksdb_handle.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include <rocksdb/cache.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/perf_level.h>
#include <rocksdb/table.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/write_batch.h>

#include "aquifer/base/logging.h"
#include "aquifer/drivers/rocksdb/lookup_service.h"
#include "aquifer/keys/tuple.h"

namespace aquifer::drivers::rocksdb {
namespace {

// The process-wide cache of open databases. Closing runs under the same lock
// (see the deleter in Open), so an Open never races a close of its path.
std::mutex& CacheMutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::weak_ptr<RocksDbHandle>>& Cache() {
  static auto* cache = new std::map<std::string, std::weak_ptr<RocksDbHandle>>();
  return *cache;
}

std::mutex& EnvMutex() {
  static std::mutex mu;
  return mu;
}
// The Env over the test file system; every one ever made stays alive, since a
// database opened on it may outlive the next SetFileSystemForTesting.
::rocksdb::Env* g_test_env = nullptr;
std::vector<std::unique_ptr<::rocksdb::Env>>& TestEnvs() {
  static auto* envs = new std::vector<std::unique_ptr<::rocksdb::Env>>();
  return *envs;
}

// RocksDB's own flush and compaction threads count perf counters too (a
// key comparison each per row they write); the first flush or compaction on
// each of them turns that off (NoPerfCountersOnThisThread).
class PerfCountersOff final : public ::rocksdb::EventListener {
 public:
  void OnFlushBegin(::rocksdb::DB* /*db*/, const ::rocksdb::FlushJobInfo& /*info*/) override {
    NoPerfCountersOnThisThread();
  }
  void OnCompactionBegin(::rocksdb::DB* /*db*/, const ::rocksdb::CompactionJobInfo& /*info*/) override {
    NoPerfCountersOnThisThread();
  }
  void OnSubcompactionBegin(const ::rocksdb::SubcompactionJobInfo& /*info*/) override {
    NoPerfCountersOnThisThread();
  }
};

}  // namespace

void ApplyStorageOptions(::rocksdb::DBOptions* options) {
  options->env = DatabaseEnv();
  options->paranoid_checks = true;
  options->wal_recovery_mode = ::rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  options->listeners.push_back(std::make_shared<PerfCountersOff>());
}

void NoteWriteError(WriteErrorState* state, const ::rocksdb::Status& written) {
  if (!written.IsIOError()) return;
  std::lock_guard<std::mutex> lock(state->mu);
  if (!state->failed.load(std::memory_order_relaxed)) state->cause = written.ToString();
  state->failed.store(true, std::memory_order_release);
}

Status ResumeAfterWriteError(::rocksdb::DB* db, WriteErrorState* state, std::string_view context) {
  if (!state->failed.load(std::memory_order_acquire)) return Status::OK();
  ::rocksdb::Status resumed = db->Resume();
  std::lock_guard<std::mutex> lock(state->mu);
  if (resumed.ok()) {
    if (state->failed.exchange(false)) {
      AQ_LOG(Info, "{}: rocksdb at '{}' writes again after an I/O error ({})", context,
             db->GetName(), state->cause);
    }
    return Status::OK();
  }
  if (resumed.IsBusy()) {  // RocksDB's own recovery (a full disk) is still running
    return Unavailable("{}: rocksdb at '{}' stopped writing after an I/O error ({}) and is "
                       "recovering; free disk space if the disk is full, and if writes have not resumed a "
                       "minute later, restart the server",
                       context, db->GetName(), state->cause);
  }
  return Unavailable(
      "{}: rocksdb at '{}' stopped writing after an I/O error ({}) and could not resume ({}); fix "
      "the disk (free space, check the kernel log for I/O errors), then restart the server. "
      "Writes acknowledged before the error are on disk",
      context, db->GetName(), state->cause, resumed.ToString());
}

void SetFileSystemForTesting(std::shared_ptr<::rocksdb::FileSystem> fs) {
  std::lock_guard<std::mutex> lock(EnvMutex());
  if (fs == nullptr) {
    g_test_env = nullptr;
    return;
  }
  TestEnvs().push_back(::rocksdb::NewCompositeEnv(fs));
  g_test_env = TestEnvs().back().get();
}

::rocksdb::Env* DatabaseEnv() {
  std::lock_guard<std::mutex> lock(EnvMutex());
  return g_test_env != nullptr ? g_test_env : ::rocksdb::Env::Default();
}

Status FromRocksStatus(const ::rocksdb::Status& status, std::string_view context) {
  using C = ::rocksdb::Status::Code;
  std::string message = fmt::format("{}: rocksdb: {}", context, status.ToString());
  switch (status.code()) {
    case C::kOk: return Status::OK();
    case C::kNotFound: return Status(StatusCode::kNotFound, std::move(message));
    case C::kCorruption: return Status(StatusCode::kCorruption, std::move(message));
    case C::kNotSupported: return Status(StatusCode::kNotSupported, std::move(message));
    case C::kInvalidArgument: return Status(StatusCode::kInvalidArgument, std::move(message));
    case C::kIOError:
    case C::kBusy:
    case C::kTryAgain:
    case C::kShutdownInProgress:
    case C::kIncomplete:
      return Status(StatusCode::kUnavailable, std::move(message));
    case C::kTimedOut: return Status(StatusCode::kTimeout, std::move(message));
    case C::kAborted: return Status(StatusCode::kAborted, std::move(message));
    default: return Status(StatusCode::kInternal, std::move(message));
  }
}

std::shared_ptr<::rocksdb::Cache> ApplyBlockCache(::rocksdb::BlockBasedTableOptions* table, size_t capacity) {
  // num_shard_bits -1: RocksDB picks (about 512 KiB per shard); high-priority pool 0.5.
  std::shared_ptr<::rocksdb::Cache> cache = ::rocksdb::NewLRUCache(capacity, -1, false, 0.5);
  table->block_cache = cache;
  table->cache_index_and_filter_blocks = true;
  table->cache_index_and_filter_blocks_with_high_priority = true;
  table->pin_l0_filter_and_index_blocks_in_cache = true;
  // Partitioned index and filters: a read loads the 4 KiB partitions it
  // needs, not a table file's whole index and filter (megabytes each once a
  // store holds millions of keys). Whole blocks thrashed the bounded cache
  // and every point read loaded them again.
  table->index_type = ::rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table->partition_filters = true;
  table->metadata_block_size = 4096;
  table->pin_top_level_index_and_filter = true;
  return cache;
}

Result<size_t> ParseBlockCacheSize(const driver::Config& config, size_t fallback) {
  AQ_ASSIGN_OR_RETURN(int64_t value, driver::ConfigInt(config, "block_cache_size", static_cast<int64_t>(fallback)));
  if (value < static_cast<int64_t>(kMinBlockCacheSize)) {
    return InvalidArgument("config 'block_cache_size': bytes of the RocksDB block cache, at least {} (1 MiB), got {}",
                           kMinBlockCacheSize, value);
  }
  return static_cast<size_t>(value);
}

std::unique_ptr<driver::GaugeRegistration> RegisterDatabaseGauges(
    ::rocksdb::DB* db, std::shared_ptr<::rocksdb::Cache> cache, std::string label,
    std::function<std::vector<::rocksdb::ColumnFamilyHandle*>()> families) {
  return driver::RegisterGaugeSource([db, cache = std::move(cache), labels = fmt::format("db=\"{}\"", label),
                                      families = std::move(families)](std::vector<driver::Gauge>* out) {
    auto add = [&](const char* name, const char* help, uint64_t value) {
      out->push_back(driver::Gauge{name, help, labels, static_cast<int64_t>(value)});
    };
    auto property = [&](const std::string& name) {
      uint64_t value = 0;
      return db->GetAggregatedIntProperty(name, &value) ? value : 0;
    };
    add("aquifer_rocksdb_block_cache_capacity_bytes", "Capacity of an embedded RocksDB database's block cache.",
        cache->GetCapacity());
    add("aquifer_rocksdb_block_cache_usage_bytes",
        "Bytes in an embedded RocksDB database's block cache (data, index and filter blocks).", cache->GetUsage());
    add("aquifer_rocksdb_block_cache_pinned_bytes",
        "Bytes of the block cache pinned (L0 index and filter blocks, blocks in use).", cache->GetPinnedUsage());
    add("aquifer_rocksdb_table_readers_bytes",
        "Memory of open table files outside the block cache (rocksdb.estimate-table-readers-mem).",
        property(::rocksdb::DB::Properties::kEstimateTableReadersMem));
    add("aquifer_rocksdb_memtables_bytes", "Memtables' current size, all families (rocksdb.cur-size-all-mem-tables).",
        property(::rocksdb::DB::Properties::kCurSizeAllMemTables));
    uint64_t limit = 0;
    for (::rocksdb::ColumnFamilyHandle* cf : families()) {
      ::rocksdb::ColumnFamilyOptions options = db->GetOptions(cf);
      limit += static_cast<uint64_t>(options.write_buffer_size) *
               static_cast<uint64_t>(std::max(options.max_write_buffer_number, 1));
    }
    add("aquifer_rocksdb_memtables_limit_bytes",
        "Most the memtables can hold: write_buffer_size x max_write_buffer_number, summed over families.", limit);
  });
}

Result<std::shared_ptr<RocksDbHandle>> RocksDbHandle::Open(const std::string& path,
                                                           const HandleOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Unavailable("opening rocksdb at '{}': creating the directory: {}", path, ec.message());
  std::string canonical = std::filesystem::weakly_canonical(path, ec).string();
  if (ec) return Unavailable("opening rocksdb at '{}': {}", path, ec.message());

  std::lock_guard<std::mutex> lock(CacheMutex());
  auto& cache = Cache();
  if (auto it = cache.find(canonical); it != cache.end()) {
    if (auto existing = it->second.lock()) return existing;
    cache.erase(it);
  }
  AQ_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbHandle> fresh, OpenNew(canonical, options));
  std::shared_ptr<RocksDbHandle> handle(fresh.release(), [](RocksDbHandle* h) {
    std::lock_guard<std::mutex> close_lock(CacheMutex());
    auto& entries = Cache();
    if (auto it = entries.find(h->path_); it != entries.end() && it->second.expired()) entries.erase(it);
    delete h;
  });
  cache[canonical] = handle;
  return handle;
}

Result<std::unique_ptr<RocksDbHandle>> RocksDbHandle::OpenNew(const std::string& path,
                                                              const HandleOptions& options) {
  std::unique_ptr<RocksDbHandle> handle(new RocksDbHandle());
  handle->path_ = path;

  ::rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  ApplyStorageOptions(&db_options);
  db_options.IncreaseParallelism(options.parallelism);
  db_options.write_buffer_size = options.write_buffer_size;
  ::rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(::rocksdb::NewBloomFilterPolicy(10));
  handle->block_cache_ = ApplyBlockCache(&table, options.block_cache_size);
  db_options.table_factory.reset(::rocksdb::NewBlockBasedTableFactory(table));
  // A whole-key bloom filter in the memtable makes point misses (new keys
  // looked up before an index insert) cheap.
  db_options.memtable_whole_key_filtering = true;
  db_options.memtable_prefix_bloom_size_ratio = 0.02;
  handle->cf_options_ = ::rocksdb::ColumnFamilyOptions(db_options);

  std::vector<std::string> names;
  ::rocksdb::Status listed = ::rocksdb::DB::ListColumnFamilies(db_options, path, &names);
  if (!listed.ok() || names.empty()) names = {::rocksdb::kDefaultColumnFamilyName};
  std::vector<::rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) descriptors.emplace_back(name, handle->FamilyOptions(name));

  std::vector<::rocksdb::ColumnFamilyHandle*> opened;
  ::rocksdb::Status status =
      ::rocksdb::DB::Open(::rocksdb::DBOptions(db_options), path, descriptors, &opened, &handle->db_);
  if (!status.ok()) return FromRocksStatus(status, fmt::format("opening rocksdb at '{}'", path));
  for (auto* cf : opened) handle->families_[cf->GetName()] = cf;
  RocksDbHandle* self = handle.get();
  handle->gauges_ = RegisterDatabaseGauges(
      handle->db_, handle->block_cache_, std::filesystem::path(path).filename().string(), [self] {
        std::lock_guard<std::mutex> lock(self->mu_);
        std::vector<::rocksdb::ColumnFamilyHandle*> families;
        for (auto& [name, cf] : self->families_) families.push_back(cf);
        return families;
      });
  return handle;
}

::rocksdb::ColumnFamilyOptions RocksDbHandle::FamilyOptions(const std::string& name) const {
  ::rocksdb::ColumnFamilyOptions options = cf_options_;
  // Applied on every open, whichever service opens the database first: a
  // family written with merge operands cannot be read without its operator.
  TuneLookupFamily(name, &options);
  return options;
}

RocksDbHandle::~RocksDbHandle() {
  gauges_.reset();  // waits for a /metrics render reading this database
  if (db_ == nullptr) return;
  for (auto& [name, cf] : families_) {
    (void)db_->DestroyColumnFamilyHandle(cf);
  }
  families_.clear();
  (void)db_->Close();
  delete db_;
}

Result<::rocksdb::ColumnFamilyHandle*> RocksDbHandle::ColumnFamily(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = families_.find(name); it != families_.end()) return it->second;
  ::rocksdb::ColumnFamilyHandle* cf = nullptr;
  ::rocksdb::Status status = db_->CreateColumnFamily(FamilyOptions(name), name, &cf);
  if (!status.ok()) {
    return FromRocksStatus(status, fmt::format("creating column family '{}' in '{}'", name, path_));
  }
  families_[name] = cf;
  return cf;
}

Status AddDeletePrefix(::rocksdb::DB* db, ::rocksdb::ColumnFamilyHandle* cf,
                       std::string_view prefix, ::rocksdb::WriteBatch* batch) {
  std::string end = keys::PrefixSuccessor(prefix);
  if (end.empty()) {
    // No finite successor (empty or all-0xFF prefix): the keys with this
    // prefix are the greatest of the family, so bound the range just past the last key.
    std::unique_ptr<::rocksdb::Iterator> it(db->NewIterator(::rocksdb::ReadOptions(), cf));
    it->SeekToLast();
    if (!it->status().ok()) return FromRocksStatus(it->status(), "finding the last key to delete");
    if (!it->Valid() || !it->key().starts_with(::rocksdb::Slice(prefix.data(), prefix.size()))) {
      return Status::OK();
    }
    end = it->key().ToString();
    end.push_back('\0');
  }
  ::rocksdb::Status status = batch->DeleteRange(
      cf, ::rocksdb::Slice(prefix.data(), prefix.size()), ::rocksdb::Slice(end));
  return FromRocksStatus(status, "adding a range deletion");
}

Status CompactPrefix(::rocksdb::DB* db, ::rocksdb::ColumnFamilyHandle* cf, std::string_view prefix) {
  std::string end = keys::PrefixSuccessor(prefix);
  ::rocksdb::Slice begin_slice(prefix.data(), prefix.size());
  ::rocksdb::Slice end_slice(end);
  ::rocksdb::CompactRangeOptions options;
  options.exclusive_manual_compaction = false;
  ::rocksdb::Status status = db->CompactRange(options, cf, prefix.empty() ? nullptr : &begin_slice,
                                              end.empty() ? nullptr : &end_slice);
  return FromRocksStatus(status, "compacting a deleted range");
}

void NoPerfCountersOnThisThread() {
  thread_local const bool disabled = [] {
    ::rocksdb::SetPerfLevel(::rocksdb::PerfLevel::kDisable);
    return true;
  }();
  (void)disabled;
}

}  // namespace aquifer::drivers::rocksdb
