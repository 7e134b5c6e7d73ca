#pragma once

// FaultFs: a rocksdb::FileSystem wrapper that simulates a machine losing power
// and a disk failing, for the power-loss and disk-error suites
// (RocksDB's own utilities/fault_injection_fs is not installed; this is the
// small part of it those suites need).
//
// Model of a power cut. Every file written through the wrapper remembers how
// many bytes were appended and how many of those were synced (Sync/Fsync;
// Flush and RangeSync promise nothing). A file created since its directory was
// last fsynced has a directory entry that is not durable. PowerCut() stops all
// I/O through the wrapper (every later call fails with IOError "power is off"),
// and Recover() — once the databases are closed — applies the loss to the real
// files: unsynced new entries are deleted, and every other file keeps its
// synced bytes plus, with a torn tail, a random prefix of its unsynced bytes
// (the last page written only in part; cut at any byte). Renames are taken as
// durable at once (RocksDB syncs a file's data before renaming it into place
// and the directory after); deletions too.
//
// Faults on a chosen call: Fail() makes calls of the given kinds on paths
// containing a substring fail with EIO or ENOSPC, optionally as short writes
// (half of the data reaches the file before the error), for a number of calls
// or until ClearFaults(). CutAfter(n) cuts the power at the n-th mutating call
// from now (that call fails), which puts cuts at random points of a workload.
//
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <rocksdb/file_system.h>

namespace aquifer::testing {

// Kinds of calls Fail() can target (a bit mask).
enum FaultOp : uint32_t {
  kOpAppend = 1,      // Append / PositionedAppend
  kOpSync = 2,        // Sync / Fsync
  kOpCreate = 4,      // NewWritableFile
  kOpOther = 8,       // Truncate, Close, Rename, Delete, directory Fsync
  kOpRead = 16,       // reads of an open random-access or sequential file
  kOpAllWrites = kOpAppend | kOpSync | kOpCreate | kOpOther,
};

enum class FaultKind { kEio, kNoSpace };

struct FileState;

class FaultFs final : public ::rocksdb::FileSystemWrapper {
 public:
  explicit FaultFs(std::shared_ptr<::rocksdb::FileSystem> base = ::rocksdb::FileSystem::Default());
  ~FaultFs() override;

  static const char* kClassName() { return "AquiferFaultFs"; }
  const char* Name() const override { return kClassName(); }

  // --- power ---------------------------------------------------------------
  void PowerCut();
  bool powered() const { return powered_.load(); }
  // Cuts the power at the n-th mutating call from now (n >= 1); 0 disarms.
  void CutAfter(uint64_t n) { cut_countdown_.store(n); }
  struct Loss {
    int files_truncated = 0;
    int entries_dropped = 0;
    uint64_t bytes_dropped = 0;
  };
  // After PowerCut() and after every database on the wrapper was closed:
  // drops what was not durable (see the model above), forgets all tracked
  // state and turns the power back on. `tear` keeps a random prefix of each
  // file's unsynced bytes instead of none.
  Loss Recover(std::mt19937_64& rng, bool tear);

  // Whether Sync/Fsync and directory fsyncs reach the disk (default false:
  // the model above decides what a cut keeps, and real fsyncs only cost time).
  void set_real_sync(bool on) { real_sync_.store(on); }
  bool real_sync() const { return real_sync_.load(std::memory_order_relaxed); }

  // --- injected errors -----------------------------------------------------
  // The next `count` calls (-1: every call until ClearFaults) of kinds `ops`
  // on a path containing `path_substring` fail with `kind`. `short_write`:
  // an Append writes the first half of its data before failing.
  void Fail(uint32_t ops, std::string path_substring, FaultKind kind, int count = -1,
            bool short_write = false);
  void ClearFaults();
  // Calls failed by Fail() so far.
  uint64_t injected() const { return injected_.load(); }
  // Mutating calls seen so far (Append, Sync, create, ...).
  uint64_t mutations() const { return mutations_.load(); }

  // --- FileSystem ----------------------------------------------------------
  ::rocksdb::IOStatus NewWritableFile(const std::string& fname, const ::rocksdb::FileOptions& options,
                                      std::unique_ptr<::rocksdb::FSWritableFile>* result,
                                      ::rocksdb::IODebugContext* dbg) override;
  ::rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                         const ::rocksdb::FileOptions& options,
                                         std::unique_ptr<::rocksdb::FSWritableFile>* result,
                                         ::rocksdb::IODebugContext* dbg) override;
  ::rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                        const ::rocksdb::FileOptions& options,
                                        std::unique_ptr<::rocksdb::FSWritableFile>* result,
                                        ::rocksdb::IODebugContext* dbg) override;
  ::rocksdb::IOStatus NewRandomAccessFile(const std::string& fname,
                                          const ::rocksdb::FileOptions& options,
                                          std::unique_ptr<::rocksdb::FSRandomAccessFile>* result,
                                          ::rocksdb::IODebugContext* dbg) override;
  ::rocksdb::IOStatus NewSequentialFile(const std::string& fname,
                                        const ::rocksdb::FileOptions& options,
                                        std::unique_ptr<::rocksdb::FSSequentialFile>* result,
                                        ::rocksdb::IODebugContext* dbg) override;
  ::rocksdb::IOStatus NewDirectory(const std::string& name, const ::rocksdb::IOOptions& options,
                                   std::unique_ptr<::rocksdb::FSDirectory>* result,
                                   ::rocksdb::IODebugContext* dbg) override;
  ::rocksdb::IOStatus RenameFile(const std::string& src, const std::string& target,
                                 const ::rocksdb::IOOptions& options,
                                 ::rocksdb::IODebugContext* dbg) override;
  ::rocksdb::IOStatus DeleteFile(const std::string& fname, const ::rocksdb::IOOptions& options,
                                 ::rocksdb::IODebugContext* dbg) override;

  // Used by the file wrappers: checks the power and the armed faults for a
  // call of kind `op` on `path`. OK to proceed; otherwise the error to return
  // (`short_write` set when an Append should write half first).
  ::rocksdb::IOStatus Check(uint32_t op, const std::string& path, bool* short_write = nullptr);
  void DirectorySynced(const std::string& dir);

 private:
  std::shared_ptr<FileState> Track(const std::string& fname, bool new_entry);

  std::atomic<bool> powered_{true};
  std::atomic<bool> real_sync_{false};
  std::atomic<uint64_t> cut_countdown_{0};
  std::atomic<uint64_t> injected_{0};
  std::atomic<uint64_t> mutations_{0};

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<FileState>> files_;  // written since the last Recover
  std::set<std::string> new_entries_;                        // created, directory not synced since
  struct Rule {
    uint32_t ops = 0;
    std::string path_substring;
    FaultKind kind = FaultKind::kEio;
    int remaining = -1;
    bool short_write = false;
  };
  std::vector<Rule> rules_;
  std::atomic<bool> has_rules_{false};
};

// Flips one bit of the byte at `offset` of the file at `path` (a test of
// checksums); returns false if the file is shorter.
bool FlipByte(const std::string& path, uint64_t offset);

}  // namespace aquifer::testing
