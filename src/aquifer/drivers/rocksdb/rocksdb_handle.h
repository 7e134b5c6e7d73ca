#pragma once

// RocksDbHandle: one open RocksDB database shared by every embedded service
// that uses the same path (lookup, usage and, if it wants, the queue).
//
// Rationale: RocksDB allows one open instance per directory per process (it
// holds a LOCK file), while the registry builds each interface separately. So
// the services do not open the database themselves; they ask Open(path),
// which returns the handle already open for that path if any service still
// holds it, and opens it otherwise. The process-wide cache keeps weak_ptrs:
// when the last service releases the handle the database closes, and a later
// Open reopens it (the close runs under the cache lock, so a concurrent Open
// of the same path waits for it instead of failing on the LOCK file).
//
// Column families are created on first use by name, so each service owns its
// families ("lookup_log", "usage", ...) without a central list; families that
// exist on disk are always opened.
//
// Thread-safe: db() and ColumnFamily() may be called from any thread.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/file_system.h>
#include <rocksdb/options.h>
#include <rocksdb/status.h>
#include <rocksdb/table.h>

#include "aquifer/base/status.h"
#include "aquifer/driver/store_metrics.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::rocksdb {

// Maps a RocksDB status to an Aquifer Status with context:
// IOError/Busy/TryAgain/ShutdownInProgress → Unavailable, TimedOut → Timeout,
// Corruption → Corruption, NotFound → NotFound, InvalidArgument →
// InvalidArgument, NotSupported → NotSupported, Aborted → Aborted,
// anything else → Internal. The message is "context: <rocksdb text>".
Status FromRocksStatus(const ::rocksdb::Status& status, std::string_view context);

// Turns RocksDB's per-thread perf counters off for the calling thread (once per
// thread; cheap after). RocksDB counts by default (PerfLevel kEnableCount):
// every key comparison of a memtable insert or a read then bumps a counter in
// a thread_local PerfContext, which from the shared library costs a TLS
// lookup and the thread_local's init check per comparison (~4% of the
// server's CPU while ingesting rewritten keys). Nothing here reads them.
void NoPerfCountersOnThisThread();

// The options every embedded database (lookup, usage, queue) is opened with,
// whatever its tuning: its files go through DatabaseEnv(), and stored data is
// checked, so damage is reported as Corruption instead of served:
// paranoid_checks, checksums verified on every read (RocksDB's default, kept),
// and WAL recovery that tolerates only an incomplete record at the end of a
// log (what a crash or power cut leaves) but fails the open on a checksum
// mismatch anywhere else (a damaged acknowledged write), where RocksDB's
// default point-in-time recovery would silently drop it and everything after.
void ApplyStorageOptions(::rocksdb::DBOptions* options);

// After a write fails with an I/O error (EIO, ENOSPC, a failed fsync) RocksDB
// refuses every later write until it resumes (on its own for some errors, or
// by DB::Resume). A writer keeps a WriteErrorState, calls NoteWriteError after
// each write and ResumeAfterWriteError before the next: OK when nothing failed
// or RocksDB resumed (it flushes what it holds and starts a new WAL; writes
// acknowledged before the error were synced and stay); otherwise Unavailable
// naming the original error and, when RocksDB cannot resume, telling the
// operator to fix the disk and restart the server.
struct WriteErrorState {
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::string cause;  // the error that stopped writes (guarded by mu)
};
void NoteWriteError(WriteErrorState* state, const ::rocksdb::Status& written);
Status ResumeAfterWriteError(::rocksdb::DB* db, WriteErrorState* state, std::string_view context);

// Tests only: every database opened afterwards in this process runs on `fs`
// (a fault-injecting wrapper, tests/power/fault_fs.h); nullptr restores the
// default file system. Never called in production.
void SetFileSystemForTesting(std::shared_ptr<::rocksdb::FileSystem> fs);
// The Env new databases are opened with: Env::Default(), or one over the
// file system given to SetFileSystemForTesting (kept alive for the process).
::rocksdb::Env* DatabaseEnv();

// The block cache of the lookup/usage database unless configured
// (`block_cache_size`), and of the queue's database.
inline constexpr size_t kDefaultLookupBlockCacheSize = size_t{64} << 20;
inline constexpr size_t kDefaultQueueBlockCacheSize = size_t{16} << 20;
inline constexpr size_t kMinBlockCacheSize = size_t{1} << 20;

// Tuning shared by every user of a handle; only the first Open of a path applies it.
struct HandleOptions {
  size_t write_buffer_size = 64 << 20;
  int parallelism = 2;
  size_t block_cache_size = kDefaultLookupBlockCacheSize;
};

// Puts a database's table files' memory under one sized LRU block cache
// (returned): data blocks and the index and filter blocks, which RocksDB
// otherwise keeps outside any cache for every open table file (memory that
// grows with the data without bound). Index and filter blocks go in with high
// priority (half the cache is kept for them) and those of L0 files stay
// pinned, so a point lookup in fresh data never reads its filter from disk.
// Index and filters are partitioned (4 KiB partitions under a pinned top
// level): a read loads only the partitions it needs, so the cache holds a
// large store's working set instead of thrashing on whole per-file blocks.
std::shared_ptr<::rocksdb::Cache> ApplyBlockCache(::rocksdb::BlockBasedTableOptions* table, size_t capacity);

// Reads config key `block_cache_size` (bytes, at least kMinBlockCacheSize),
// `fallback` when absent.
Result<size_t> ParseBlockCacheSize(const driver::Config& config, size_t fallback);

// Registers the /metrics gauges of an open database, labelled db="<label>":
// its block cache's capacity, usage and pinned bytes, its table readers'
// memory outside the cache, its memtables' current size and their limit
// (write_buffer_size x max_write_buffer_number per family). `families`
// answers the open column families. The registration must be destroyed
// before the database closes.
std::unique_ptr<driver::GaugeRegistration> RegisterDatabaseGauges(
    ::rocksdb::DB* db, std::shared_ptr<::rocksdb::Cache> cache, std::string label,
    std::function<std::vector<::rocksdb::ColumnFamilyHandle*>()> families);

class RocksDbHandle {
 public:
  // Opens (creating directories and the database if missing) or returns the
  // handle already open for `path`. Paths are compared after canonicalisation.
  static Result<std::shared_ptr<RocksDbHandle>> Open(const std::string& path,
                                                     const HandleOptions& options = {});

  ~RocksDbHandle();
  RocksDbHandle(const RocksDbHandle&) = delete;
  RocksDbHandle& operator=(const RocksDbHandle&) = delete;

  ::rocksdb::DB* db() const { return db_; }
  const std::string& path() const { return path_; }

  // The column family `name`, created if missing. The pointer lives as long
  // as the handle.
  Result<::rocksdb::ColumnFamilyHandle*> ColumnFamily(const std::string& name);

 private:
  RocksDbHandle() = default;
  // cf_options_ plus the tuning of family `name` (TuneFamily in lookup_service.cc).
  ::rocksdb::ColumnFamilyOptions FamilyOptions(const std::string& name) const;
  static Result<std::unique_ptr<RocksDbHandle>> OpenNew(const std::string& path,
                                                        const HandleOptions& options);

  std::string path_;
  ::rocksdb::DB* db_ = nullptr;
  std::shared_ptr<::rocksdb::Cache> block_cache_;
  std::unique_ptr<driver::GaugeRegistration> gauges_;  // released before db_ closes
  ::rocksdb::ColumnFamilyOptions cf_options_;
  std::mutex mu_;
  std::map<std::string, ::rocksdb::ColumnFamilyHandle*> families_;  // guarded by mu_
};

// Deletes every key of `cf` that starts with `prefix` (the whole family when
// `prefix` is empty), as range tombstones added to `batch`. Reads the family
// to bound the range when `prefix` has no finite successor.
Status AddDeletePrefix(::rocksdb::DB* db, ::rocksdb::ColumnFamilyHandle* cf,
                       std::string_view prefix, ::rocksdb::WriteBatch* batch);

// Asks RocksDB to compact [prefix, successor) of `cf` so deleted data leaves
// the disk soon; a hint, errors are returned but harmless to ignore.
Status CompactPrefix(::rocksdb::DB* db, ::rocksdb::ColumnFamilyHandle* cf, std::string_view prefix);

}  // namespace aquifer::drivers::rocksdb
