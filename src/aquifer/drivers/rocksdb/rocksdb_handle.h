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

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/status.h>

#include "aquifer/base/status.h"

namespace aquifer::drivers::rocksdb {

// Maps a RocksDB status to an Aquifer Status with context:
// IOError/Busy/TryAgain/ShutdownInProgress → Unavailable, TimedOut → Timeout,
// Corruption → Corruption, NotFound → NotFound, InvalidArgument →
// InvalidArgument, NotSupported → NotSupported, Aborted → Aborted,
// anything else → Internal. The message is "context: <rocksdb text>".
Status FromRocksStatus(const ::rocksdb::Status& status, std::string_view context);

// Tuning shared by every user of a handle; only the first Open of a path applies it.
struct HandleOptions {
  size_t write_buffer_size = 64 << 20;
  int parallelism = 2;
};

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
  static Result<std::unique_ptr<RocksDbHandle>> OpenNew(const std::string& path,
                                                        const HandleOptions& options);

  std::string path_;
  ::rocksdb::DB* db_ = nullptr;
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
