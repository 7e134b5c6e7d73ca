#include "fault_fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

namespace aquifer::testing {

using ::rocksdb::DirFsyncOptions;
using ::rocksdb::FileOptions;
using ::rocksdb::FSDirectory;
using ::rocksdb::FSRandomAccessFile;
using ::rocksdb::FSSequentialFile;
using ::rocksdb::FSWritableFile;
using ::rocksdb::IODebugContext;
using ::rocksdb::IOOptions;
using ::rocksdb::IOStatus;
using ::rocksdb::Slice;

// What the wrapper knows about one file written since the last Recover.
struct FileState {
  std::mutex mu;
  uint64_t size = 0;    // bytes appended (the file's length as the process sees it)
  uint64_t synced = 0;  // of those, bytes on stable storage
};

namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
std::string StripSlash(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

class FaultWritableFile final : public ::rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultWritableFile(std::unique_ptr<FSWritableFile> target, FaultFs* fs, std::string path,
                    std::shared_ptr<FileState> state)
      : FSWritableFileOwnerWrapper(std::move(target)),
        fs_(fs),
        path_(std::move(path)),
        state_(std::move(state)) {}

  IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override {
    return DoAppend(data, [&](const Slice& d) { return target()->Append(d, options, dbg); });
  }
  IOStatus Append(const Slice& data, const IOOptions& options,
                  const ::rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    return DoAppend(data, [&](const Slice& d) { return target()->Append(d, options, info, dbg); });
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kOpAppend, path_);
    if (!s.ok()) return s;
    s = target()->PositionedAppend(data, offset, options, dbg);
    if (s.ok()) {
      std::lock_guard lock(state_->mu);
      state_->size = std::max<uint64_t>(state_->size, offset + data.size());
    }
    return s;
  }
  IOStatus PositionedAppend(const Slice& data, uint64_t offset, const IOOptions& options,
                            const ::rocksdb::DataVerificationInfo&, IODebugContext* dbg) override {
    return PositionedAppend(data, offset, options, dbg);
  }
  IOStatus Truncate(uint64_t size, const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kOpOther, path_);
    if (!s.ok()) return s;
    s = target()->Truncate(size, options, dbg);
    if (s.ok()) {
      std::lock_guard lock(state_->mu);
      state_->size = size;
      state_->synced = std::min(state_->synced, size);
    }
    return s;
  }
  IOStatus Close(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kOpOther, path_);
    // The real file is closed whatever happens (no descriptor leaks); a
    // failed Close of a dead machine leaves its unsynced data to Recover().
    IOStatus closed = target()->Close(options, dbg);
    return s.ok() ? closed : s;
  }
  // The model decides what survives a cut, so the real fsync is skipped
  // unless asked for (it only costs time: the page cache is this "disk").
  IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override {
    return DoSync([&] { return fs_->real_sync() ? target()->Sync(options, dbg) : target()->Flush(options, dbg); });
  }
  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    return DoSync([&] { return fs_->real_sync() ? target()->Fsync(options, dbg) : target()->Flush(options, dbg); });
  }
  // sync_file_range starts writeback and promises nothing: not a sync.
  IOStatus RangeSync(uint64_t, uint64_t, const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kOpOther, path_);
    if (!s.ok()) return s;
    return target()->Flush(options, dbg);
  }
  IOStatus Flush(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kOpOther, path_);
    if (!s.ok()) return s;
    return target()->Flush(options, dbg);
  }

 private:
  template <typename F>
  IOStatus DoAppend(const Slice& data, F&& append) {
    bool short_write = false;
    IOStatus s = fs_->Check(kOpAppend, path_, &short_write);
    if (!s.ok()) {
      if (short_write && data.size() > 1) {
        Slice half(data.data(), data.size() / 2);
        if (append(half).ok()) {
          std::lock_guard lock(state_->mu);
          state_->size += half.size();
        }
      }
      return s;
    }
    s = append(data);
    if (s.ok()) {
      std::lock_guard lock(state_->mu);
      state_->size += data.size();
    }
    return s;
  }
  template <typename F>
  IOStatus DoSync(F&& sync) {
    IOStatus s = fs_->Check(kOpSync, path_);
    if (!s.ok()) return s;
    uint64_t size;
    {
      std::lock_guard lock(state_->mu);
      size = state_->size;
    }
    s = sync();
    if (s.ok()) {
      std::lock_guard lock(state_->mu);
      state_->synced = std::max(state_->synced, size);
    }
    return s;
  }

  FaultFs* fs_;
  std::string path_;
  std::shared_ptr<FileState> state_;
};

class FaultDirectory final : public ::rocksdb::FSDirectoryWrapper {
 public:
  FaultDirectory(std::unique_ptr<FSDirectory> target, FaultFs* fs, std::string path)
      : FSDirectoryWrapper(std::move(target)), fs_(fs), path_(std::move(path)) {}

  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kOpOther, path_);
    if (!s.ok()) return s;
    if (fs_->real_sync()) s = FSDirectoryWrapper::Fsync(options, dbg);
    if (s.ok()) fs_->DirectorySynced(path_);
    return s;
  }
  IOStatus FsyncWithDirOptions(const IOOptions& options, IODebugContext* dbg,
                               const DirFsyncOptions& dir_options) override {
    IOStatus s = fs_->Check(kOpOther, path_);
    if (!s.ok()) return s;
    if (fs_->real_sync()) s = FSDirectoryWrapper::FsyncWithDirOptions(options, dbg, dir_options);
    if (s.ok()) fs_->DirectorySynced(path_);
    return s;
  }

 private:
  FaultFs* fs_;
  std::string path_;
};

class FaultRandomAccessFile final : public ::rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  FaultRandomAccessFile(std::unique_ptr<FSRandomAccessFile> target, FaultFs* fs, std::string path)
      : FSRandomAccessFileOwnerWrapper(std::move(target)), fs_(fs), path_(std::move(path)) {}

  IOStatus Read(uint64_t offset, size_t n, const IOOptions& options, Slice* result, char* scratch,
                IODebugContext* dbg) const override {
    IOStatus s = fs_->Check(kOpRead, path_);
    if (!s.ok()) return s;
    return target()->Read(offset, n, options, result, scratch, dbg);
  }
  IOStatus MultiRead(::rocksdb::FSReadRequest* reqs, size_t num_reqs, const IOOptions& options,
                     IODebugContext* dbg) override {
    IOStatus s = fs_->Check(kOpRead, path_);
    if (!s.ok()) return s;
    return target()->MultiRead(reqs, num_reqs, options, dbg);
  }

 private:
  FaultFs* fs_;
  std::string path_;
};

}  // namespace

FaultFs::FaultFs(std::shared_ptr<::rocksdb::FileSystem> base) : FileSystemWrapper(std::move(base)) {}
FaultFs::~FaultFs() = default;

void FaultFs::PowerCut() { powered_.store(false); }

IOStatus FaultFs::Check(uint32_t op, const std::string& path, bool* short_write) {
  if (op != kOpRead) {
    mutations_.fetch_add(1, std::memory_order_relaxed);
    uint64_t left = cut_countdown_.load();
    while (left > 0 && !cut_countdown_.compare_exchange_weak(left, left - 1)) {
    }
    if (left == 1) powered_.store(false);
  }
  if (!powered_.load()) return IOStatus::IOError("power is off (simulated power cut)", path);
  if (!has_rules_.load(std::memory_order_acquire)) return IOStatus::OK();
  std::lock_guard lock(mu_);
  for (Rule& rule : rules_) {
    if ((rule.ops & op) == 0 || rule.remaining == 0) continue;
    if (path.find(rule.path_substring) == std::string::npos) continue;
    if (rule.remaining > 0) --rule.remaining;
    injected_.fetch_add(1);
    if (short_write != nullptr) *short_write = rule.short_write;
    // Worded as RocksDB's POSIX file system words a failing call.
    const char* context = op == kOpSync     ? "While fsync"
                          : op == kOpAppend ? "While appending to file"
                          : op == kOpCreate ? "While open a file for appending"
                          : op == kOpRead   ? "While pread"
                                            : "While writing";
    const std::string where = std::string(context) + ": " + path;
    if (rule.kind == FaultKind::kNoSpace) {
      return IOStatus::NoSpace(where, "No space left on device (injected ENOSPC)");
    }
    return IOStatus::IOError(where, "Input/output error (injected EIO)");
  }
  return IOStatus::OK();
}

void FaultFs::Fail(uint32_t ops, std::string path_substring, FaultKind kind, int count,
                   bool short_write) {
  std::lock_guard lock(mu_);
  rules_.push_back(Rule{ops, std::move(path_substring), kind, count, short_write});
  has_rules_.store(true, std::memory_order_release);
}

void FaultFs::ClearFaults() {
  std::lock_guard lock(mu_);
  rules_.clear();
  has_rules_.store(false, std::memory_order_release);
}

std::shared_ptr<FileState> FaultFs::Track(const std::string& fname, bool new_entry) {
  std::lock_guard lock(mu_);
  auto state = std::make_shared<FileState>();
  files_[fname] = state;
  if (new_entry) new_entries_.insert(fname);
  return state;
}

void FaultFs::DirectorySynced(const std::string& dir) {
  std::string wanted = StripSlash(dir);
  std::lock_guard lock(mu_);
  for (auto it = new_entries_.begin(); it != new_entries_.end();) {
    if (DirName(*it) == wanted) {
      it = new_entries_.erase(it);
    } else {
      ++it;
    }
  }
}

IOStatus FaultFs::NewWritableFile(const std::string& fname, const FileOptions& options,
                                  std::unique_ptr<FSWritableFile>* result, IODebugContext* dbg) {
  IOStatus s = Check(kOpCreate, fname);
  if (!s.ok()) return s;
  bool existed = target()->FileExists(fname, IOOptions(), nullptr).ok();
  std::unique_ptr<FSWritableFile> file;
  s = target()->NewWritableFile(fname, options, &file, dbg);
  if (!s.ok()) return s;
  // A file truncated and rewritten in place: whatever it held is gone at once.
  *result = std::make_unique<FaultWritableFile>(std::move(file), this, fname, Track(fname, !existed));
  return s;
}

IOStatus FaultFs::ReopenWritableFile(const std::string& fname, const FileOptions& options,
                                     std::unique_ptr<FSWritableFile>* result, IODebugContext* dbg) {
  IOStatus s = Check(kOpCreate, fname);
  if (!s.ok()) return s;
  uint64_t size = 0;
  bool existed = target()->GetFileSize(fname, IOOptions(), &size, nullptr).ok();
  std::unique_ptr<FSWritableFile> file;
  s = target()->ReopenWritableFile(fname, options, &file, dbg);
  if (!s.ok()) return s;
  std::shared_ptr<FileState> state;
  {
    std::lock_guard lock(mu_);
    auto it = files_.find(fname);
    if (it != files_.end()) state = it->second;
  }
  if (!state) {
    state = Track(fname, !existed);
    state->size = state->synced = size;  // what was there before is durable
  }
  *result = std::make_unique<FaultWritableFile>(std::move(file), this, fname, std::move(state));
  return s;
}

IOStatus FaultFs::ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                    const FileOptions& options,
                                    std::unique_ptr<FSWritableFile>* result, IODebugContext* dbg) {
  // RocksDB recycles WAL files only when recycle_log_file_num > 0 (never here):
  // a rename plus a fresh file is the same for this model.
  IOStatus s = RenameFile(old_fname, fname, IOOptions(), dbg);
  if (!s.ok()) return s;
  return NewWritableFile(fname, options, result, dbg);
}

IOStatus FaultFs::NewRandomAccessFile(const std::string& fname, const FileOptions& options,
                                      std::unique_ptr<FSRandomAccessFile>* result,
                                      IODebugContext* dbg) {
  IOStatus s = Check(kOpRead, fname);
  if (!s.ok()) return s;
  std::unique_ptr<FSRandomAccessFile> file;
  s = target()->NewRandomAccessFile(fname, options, &file, dbg);
  if (!s.ok()) return s;
  *result = std::make_unique<FaultRandomAccessFile>(std::move(file), this, fname);
  return s;
}

IOStatus FaultFs::NewSequentialFile(const std::string& fname, const FileOptions& options,
                                    std::unique_ptr<FSSequentialFile>* result, IODebugContext* dbg) {
  IOStatus s = Check(kOpRead, fname);
  if (!s.ok()) return s;
  return target()->NewSequentialFile(fname, options, result, dbg);
}

IOStatus FaultFs::NewDirectory(const std::string& name, const IOOptions& options,
                               std::unique_ptr<FSDirectory>* result, IODebugContext* dbg) {
  std::unique_ptr<FSDirectory> dir;
  IOStatus s = target()->NewDirectory(name, options, &dir, dbg);
  if (!s.ok()) return s;
  *result = std::make_unique<FaultDirectory>(std::move(dir), this, StripSlash(name));
  return s;
}

IOStatus FaultFs::RenameFile(const std::string& src, const std::string& target_name,
                             const IOOptions& options, IODebugContext* dbg) {
  IOStatus s = Check(kOpOther, src);
  if (!s.ok()) return s;
  s = target()->RenameFile(src, target_name, options, dbg);
  if (!s.ok()) return s;
  std::lock_guard lock(mu_);
  // The rename itself is durable (see the model in fault_fs.h); the data keeps its state.
  new_entries_.erase(src);
  new_entries_.erase(target_name);
  if (auto it = files_.find(src); it != files_.end()) {
    files_[target_name] = it->second;
    files_.erase(it);
  } else {
    files_.erase(target_name);
  }
  return s;
}

IOStatus FaultFs::DeleteFile(const std::string& fname, const IOOptions& options,
                             IODebugContext* dbg) {
  IOStatus s = Check(kOpOther, fname);
  if (!s.ok()) return s;
  s = target()->DeleteFile(fname, options, dbg);
  if (!s.ok()) return s;
  std::lock_guard lock(mu_);
  files_.erase(fname);
  new_entries_.erase(fname);
  return s;
}

FaultFs::Loss FaultFs::Recover(std::mt19937_64& rng, bool tear) {
  Loss loss;
  std::lock_guard lock(mu_);
  for (const std::string& path : new_entries_) {
    if (::unlink(path.c_str()) == 0) ++loss.entries_dropped;
    files_.erase(path);
  }
  for (auto& [path, state] : files_) {
    std::lock_guard file_lock(state->mu);
    if (state->size <= state->synced) continue;
    uint64_t unsynced = state->size - state->synced;
    uint64_t kept = 0;
    if (tear) kept = std::uniform_int_distribution<uint64_t>(0, unsynced)(rng);
    if (::truncate(path.c_str(), static_cast<off_t>(state->synced + kept)) == 0) {
      ++loss.files_truncated;
      loss.bytes_dropped += unsynced - kept;
    }
  }
  files_.clear();
  new_entries_.clear();
  cut_countdown_.store(0);
  powered_.store(true);
  return loss;
}

bool FlipByte(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return false;
  unsigned char byte = 0;
  bool ok = ::pread(fd, &byte, 1, static_cast<off_t>(offset)) == 1;
  if (ok) {
    byte ^= 0x10;
    ok = ::pwrite(fd, &byte, 1, static_cast<off_t>(offset)) == 1;
  }
  ::close(fd);
  return ok;
}

}  // namespace aquifer::testing
