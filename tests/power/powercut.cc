#include "powercut.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "powercut_hooks.h"

namespace aquifer::testing::powercut {
namespace {

// Journal record kinds.
enum Kind : uint32_t {
  kContent = 1,  // a write/truncate/punch: restore `saved` at off, then size old_size
  kSync = 2,     // fsync of inode `ino`
  kCreate = 3,   // new file `path`
  kMkdir = 4,    // new directory `path`
  kUnlink = 5,   // `path` removed; its inode kept as shadow/<seq>
  kRename = 6,   // `path` (inode ino) renamed to `path2`; a replaced path2 kept as shadow/<seq>
  kDirSync = 7,  // fsync of directory `path`
  kRmdir = 8,    // directory `path` removed
};

constexpr uint32_t kMagic = 0x41515043;  // "AQPC"

struct Header {
  uint32_t magic = kMagic;
  uint32_t kind = 0;
  uint64_t ino = 0;
  uint64_t off = 0;
  uint64_t len = 0;       // bytes written (kContent from a write)
  uint64_t old_size = 0;  // file size before (kContent)
  uint64_t saved_len = 0;
  uint64_t seq = 0;       // shadow name (kUnlink, kRename)
  uint32_t path_len = 0;
  uint32_t path2_len = 0;
  uint32_t flags = 0;     // kRename: 1 = the target existed
  uint32_t pad = 0;
};

struct Fd {
  std::string path;
  bool dir = false;
  ino_t ino = 0;
  dev_t dev = 0;
  int read_fd = -1;  // for reading old bytes when `fd` is write-only
};

struct Rule {
  uint32_t ops = 0;
  std::string substring;
  uint64_t remaining = 0;  // the call that makes it 0 fails
  int err = 0;
};

std::mutex mu;
std::unordered_map<int, Fd> fds;  // tracked descriptors, guarded by mu
std::string tracked_dir;          // absolute, no trailing slash
std::string shadow_dir;
int journal_fd = -1;
uint64_t next_seq = 0;
std::vector<Rule> rules;  // guarded by mu
std::atomic<uint64_t> countdown{0};
std::atomic<uint64_t> mutations{0};
std::atomic<uint64_t> injected{0};

std::string Normal(const std::string& path) {
  std::string out = std::filesystem::path(path).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string Resolve(int dirfd, const char* path) {
  if (path[0] == '/') return Normal(path);
  std::string base;
  if (dirfd == AT_FDCWD) {
    char buf[4096];
    if (::getcwd(buf, sizeof buf) == nullptr) return path;
    base = buf;
  } else {
    auto it = fds.find(dirfd);
    if (it != fds.end()) {
      base = it->second.path;
    } else {
      char buf[4096];
      ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(dirfd)).c_str(), buf, sizeof buf - 1);
      if (n <= 0) return path;
      base.assign(buf, static_cast<size_t>(n));
    }
  }
  return Normal(base + "/" + path);
}

bool Tracked(const std::string& abs) {
  return abs == tracked_dir ||
         (abs.size() > tracked_dir.size() && abs.compare(0, tracked_dir.size(), tracked_dir) == 0 &&
          abs[tracked_dir.size()] == '/');
}

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

void Append(const Header& h, const std::string& path, const std::string& path2, const std::string& saved) {
  std::string rec(reinterpret_cast<const char*>(&h), sizeof h);
  rec += path;
  rec += path2;
  rec += saved;
  size_t done = 0;
  while (done < rec.size()) {
    ssize_t n = aq_pc_real_write(journal_fd, rec.data() + done, rec.size() - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      std::fprintf(stderr, "powercut: journal write failed: %s\n", std::strerror(errno));
      std::abort();
    }
    done += static_cast<size_t>(n);
  }
}

void Journal(Kind kind, const std::string& path, const std::string& path2 = "", uint64_t ino = 0,
             uint64_t off = 0, uint64_t len = 0, uint64_t old_size = 0, const std::string& saved = "",
             uint64_t seq = 0, uint32_t flags = 0) {
  Header h;
  h.kind = kind;
  h.ino = ino;
  h.off = off;
  h.len = len;
  h.old_size = old_size;
  h.saved_len = saved.size();
  h.seq = seq;
  h.path_len = static_cast<uint32_t>(path.size());
  h.path2_len = static_cast<uint32_t>(path2.size());
  h.flags = flags;
  Append(h, path, path2, saved);
}

// Called under mu before every mutating call on a tracked path. Returns the
// errno to fail the call with, or 0 to go on. Kills the process when the
// countdown reaches zero.
int Mutate(uint32_t op, const std::string& path) {
  mutations.fetch_add(1, std::memory_order_relaxed);
  uint64_t left = countdown.load();
  if (left > 0 && countdown.fetch_sub(1) == 1) {
    ::kill(::getpid(), SIGKILL);
    for (;;) ::pause();
  }
  for (Rule& rule : rules) {
    if (rule.remaining == 0 || !(rule.ops & op) || path.find(rule.substring) == std::string::npos) continue;
    if (--rule.remaining == 0) {
      injected.fetch_add(1);
      return rule.err;
    }
  }
  return 0;
}

// Reads [off, off+n) of a tracked file (short at its end).
std::string ReadAt(int fd, Fd& f, uint64_t off, uint64_t n) {
  std::string out(n, '\0');
  int from = fd;
  for (int attempt = 0; attempt < 2; ++attempt) {
    size_t done = 0;
    bool bad = false;
    while (done < n) {
      ssize_t r = ::pread(from, out.data() + done, n - done, static_cast<off_t>(off + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        bad = true;
        break;
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    if (!bad) {
      out.resize(done);
      return out;
    }
    if (f.read_fd < 0) f.read_fd = aq_pc_real_open(f.path.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (f.read_fd < 0) break;
    from = f.read_fd;
  }
  std::fprintf(stderr, "powercut: cannot read old bytes of %s: %s\n", f.path.c_str(), std::strerror(errno));
  std::abort();
}

// The tracked descriptor `fd`, or null when it is no longer the file it was
// (closed behind the shim's back, e.g. by fclose, and the number reused).
Fd* Lookup(int fd, struct stat* st) {
  auto it = fds.find(fd);
  if (it == fds.end()) return nullptr;
  if (::fstat(fd, st) != 0 || st->st_ino != it->second.ino || st->st_dev != it->second.dev) {
    if (it->second.read_fd >= 0) aq_pc_real_close(it->second.read_fd);
    fds.erase(it);
    aq_pc_tracked_fd[fd] = 0;
    return nullptr;
  }
  return &it->second;
}

}  // namespace

void Activate(const std::string& dir, const std::string& journal, const std::string& shadow) {
  std::lock_guard lock(mu);
  tracked_dir = Normal(dir);
  shadow_dir = Normal(shadow);
  journal_fd = aq_pc_real_open(journal.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (journal_fd < 0) {
    std::fprintf(stderr, "powercut: cannot open %s: %s\n", journal.c_str(), std::strerror(errno));
    std::abort();
  }
  aq_pc_real_mkdir(shadow_dir.c_str(), 0700);
  aq_pc_active = 1;
}

void CutAfter(uint64_t n) { countdown.store(n); }

void FailNth(uint32_t ops, const std::string& path_substring, uint64_t nth, int err) {
  std::lock_guard lock(mu);
  rules.push_back({ops, path_substring, nth, err});
}

uint64_t Mutations() { return mutations.load(); }
uint64_t Injected() { return injected.load(); }

}  // namespace aquifer::testing::powercut

using namespace aquifer::testing::powercut;

extern "C" {

int aq_pc_open(int dirfd, const char* path, int flags, mode_t mode) {
  std::lock_guard lock(mu);
  const std::string abs = Resolve(dirfd, path);
  if (!Tracked(abs)) {
    return path[0] == '/' || dirfd == AT_FDCWD ? aq_pc_real_open(path, flags, mode)
                                               : aq_pc_real_openat(dirfd, path, flags, mode);
  }
  struct stat st;
  const bool exists = ::stat(abs.c_str(), &st) == 0;
  if ((flags & O_CREAT) && !exists) {
    if (int err = Mutate(kOpCreate, abs)) {
      errno = err;
      return -1;
    }
    Journal(kCreate, abs);
  } else if ((flags & O_TRUNC) && exists && S_ISREG(st.st_mode) && st.st_size > 0 &&
             (flags & O_ACCMODE) != O_RDONLY) {
    if (int err = Mutate(kOpTruncate, abs)) {
      errno = err;
      return -1;
    }
    Fd tmp{abs};
    int rfd = aq_pc_real_open(abs.c_str(), O_RDONLY | O_CLOEXEC, 0);
    std::string saved = ReadAt(rfd, tmp, 0, static_cast<uint64_t>(st.st_size));
    aq_pc_real_close(rfd);
    Journal(kContent, abs, "", st.st_ino, 0, 0, static_cast<uint64_t>(st.st_size), saved);
  }
  int fd = aq_pc_real_open(abs.c_str(), flags, mode);
  if (fd >= 0 && fd < AQ_PC_MAX_FD && ::fstat(fd, &st) == 0) {
    Fd& f = fds[fd];
    if (f.read_fd >= 0) aq_pc_real_close(f.read_fd);
    f = Fd{abs, S_ISDIR(st.st_mode), st.st_ino, st.st_dev, -1};
    aq_pc_tracked_fd[fd] = 1;
  }
  return fd;
}

ssize_t aq_pc_write(int fd, const void* buf, size_t n, off_t off, int positioned) {
  std::lock_guard lock(mu);
  struct stat st;
  Fd* f = Lookup(fd, &st);
  if (f == nullptr || f->dir || n == 0) {
    return positioned ? aq_pc_real_pwrite(fd, buf, n, off) : aq_pc_real_write(fd, buf, n);
  }
  if (int err = Mutate(kOpWrite, f->path)) {
    errno = err;
    return -1;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (!positioned) {
    int fl = ::fcntl(fd, F_GETFL);
    off = (fl & O_APPEND) ? static_cast<off_t>(size) : ::lseek(fd, 0, SEEK_CUR);
  }
  std::string saved;
  if (static_cast<uint64_t>(off) < size) {
    saved = ReadAt(fd, *f, static_cast<uint64_t>(off), std::min<uint64_t>(n, size - static_cast<uint64_t>(off)));
  }
  Journal(kContent, f->path, "", st.st_ino, static_cast<uint64_t>(off), n, size, saved);
  return positioned ? aq_pc_real_pwrite(fd, buf, n, off) : aq_pc_real_write(fd, buf, n);
}

int aq_pc_sync(int fd) {
  std::lock_guard lock(mu);
  struct stat st;
  Fd* f = Lookup(fd, &st);
  if (f == nullptr) return aq_pc_real_fsync(fd);
  if (int err = Mutate(f->dir ? kOpDirSync : kOpSync, f->path)) {
    errno = err;
    return -1;
  }
  if (f->dir) {
    Journal(kDirSync, f->path);
  } else {
    Journal(kSync, f->path, "", st.st_ino);
  }
  return 0;  // the journal is the disk: no real fsync needed
}

int aq_pc_truncate(int fd, off_t size) {
  std::lock_guard lock(mu);
  struct stat st;
  Fd* f = Lookup(fd, &st);
  if (f == nullptr) return aq_pc_real_ftruncate(fd, size);
  if (int err = Mutate(kOpTruncate, f->path)) {
    errno = err;
    return -1;
  }
  const uint64_t cur = static_cast<uint64_t>(st.st_size);
  std::string saved;
  if (static_cast<uint64_t>(size) < cur) saved = ReadAt(fd, *f, static_cast<uint64_t>(size), cur - static_cast<uint64_t>(size));
  Journal(kContent, f->path, "", st.st_ino, static_cast<uint64_t>(size), 0, cur, saved);
  return aq_pc_real_ftruncate(fd, size);
}

int aq_pc_fallocate(int fd, int mode, off_t off, off_t len) {
  std::lock_guard lock(mu);
  struct stat st;
  Fd* f = Lookup(fd, &st);
  auto real = [&] { return mode == -1 ? aq_pc_real_posix_fallocate(fd, off, len) : aq_pc_real_fallocate(fd, mode, off, len); };
  if (f == nullptr) return real();
  const uint64_t cur = static_cast<uint64_t>(st.st_size);
  const uint64_t end = static_cast<uint64_t>(off + len);
  const bool punch = mode != -1 && (mode & FALLOC_FL_PUNCH_HOLE);
  const bool grows = end > cur && (mode == -1 || !(mode & FALLOC_FL_KEEP_SIZE));
  if (!punch && !grows) return real();  // preallocation: contents and size unchanged
  if (int err = Mutate(kOpWrite, f->path)) {
    errno = err;
    return mode == -1 ? err : -1;
  }
  std::string saved;
  if (punch && static_cast<uint64_t>(off) < cur) {
    saved = ReadAt(fd, *f, static_cast<uint64_t>(off), std::min<uint64_t>(static_cast<uint64_t>(len), cur - static_cast<uint64_t>(off)));
  }
  Journal(kContent, f->path, "", st.st_ino, static_cast<uint64_t>(off), 0, cur, saved);
  return real();
}

void aq_pc_closed(int fd) {
  std::lock_guard lock(mu);
  auto it = fds.find(fd);
  if (it == fds.end()) return;
  if (it->second.read_fd >= 0) aq_pc_real_close(it->second.read_fd);
  fds.erase(it);
  aq_pc_tracked_fd[fd] = 0;
}

int aq_pc_rename(const char* from, const char* to) {
  std::lock_guard lock(mu);
  const std::string src = Resolve(AT_FDCWD, from), dst = Resolve(AT_FDCWD, to);
  if (!Tracked(src) && !Tracked(dst)) return aq_pc_real_rename(from, to);
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) return aq_pc_real_rename(from, to);  // fails as it should
  if (int err = Mutate(kOpRename, dst)) {
    errno = err;
    return -1;
  }
  struct stat old;
  const bool had_dst = ::lstat(dst.c_str(), &old) == 0 && !S_ISDIR(old.st_mode);
  const uint64_t seq = ++next_seq;
  if (had_dst) ::link(dst.c_str(), (shadow_dir + "/" + std::to_string(seq)).c_str());
  Journal(kRename, src, dst, st.st_ino, 0, 0, 0, "", seq, had_dst ? 1 : 0);
  int rc = aq_pc_real_rename(from, to);
  if (rc == 0) {
    for (auto& [fd, f] : fds) {
      if (f.path == src) f.path = dst;
    }
  }
  return rc;
}

int aq_pc_unlink(const char* path, int how) {
  std::lock_guard lock(mu);
  const std::string abs = Resolve(AT_FDCWD, path);
  auto real = [&] {
    return how == 0 ? aq_pc_real_unlink(path) : how == 1 ? aq_pc_real_remove(path) : aq_pc_real_rmdir(path);
  };
  if (!Tracked(abs)) return real();
  struct stat st;
  if (::lstat(abs.c_str(), &st) != 0) return real();
  if (int err = Mutate(kOpUnlink, abs)) {
    errno = err;
    return -1;
  }
  if (S_ISDIR(st.st_mode)) {
    Journal(kRmdir, abs);
  } else {
    const uint64_t seq = ++next_seq;
    ::link(abs.c_str(), (shadow_dir + "/" + std::to_string(seq)).c_str());
    Journal(kUnlink, abs, "", st.st_ino, 0, 0, 0, "", seq);
  }
  return real();
}

int aq_pc_mkdir(const char* path, mode_t mode) {
  std::lock_guard lock(mu);
  const std::string abs = Resolve(AT_FDCWD, path);
  struct stat st;
  if (!Tracked(abs) || ::lstat(abs.c_str(), &st) == 0) return aq_pc_real_mkdir(path, mode);
  if (int err = Mutate(kOpCreate, abs)) {
    errno = err;
    return -1;
  }
  Journal(kMkdir, abs);
  return aq_pc_real_mkdir(path, mode);
}

}  // extern "C"

// --- Recovery (in the parent; the shim is inactive there) ---------------------

namespace aquifer::testing::powercut {
namespace {

struct Record {
  Header h;
  std::string path, path2, saved;
  bool durable = false;
};

bool WriteAll(int fd, const std::string& data, uint64_t off) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Recovery Recover(const std::string& journal, const std::string& shadow, std::mt19937_64& rng, bool tear) {
  Recovery out;
  std::vector<Record> records;
  {
    int fd = ::open(journal.c_str(), O_RDONLY | O_CLOEXEC);
    std::string data;
    if (fd >= 0) {
      char buf[1 << 16];
      for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        data.append(buf, static_cast<size_t>(n));
      }
      ::close(fd);
    }
    size_t pos = 0;
    while (pos + sizeof(Header) <= data.size()) {
      Record r;
      std::memcpy(&r.h, data.data() + pos, sizeof(Header));
      if (r.h.magic != kMagic) {
        out.error = "damaged journal record at byte " + std::to_string(pos);
        return out;
      }
      const size_t body = size_t{r.h.path_len} + r.h.path2_len + r.h.saved_len;
      if (pos + sizeof(Header) + body > data.size()) break;  // cut mid-record: that call never ran
      const char* p = data.data() + pos + sizeof(Header);
      r.path.assign(p, r.h.path_len);
      r.path2.assign(p + r.h.path_len, r.h.path2_len);
      r.saved.assign(p + r.h.path_len + r.h.path2_len, r.h.saved_len);
      pos += sizeof(Header) + body;
      records.push_back(std::move(r));
    }
  }
  out.records = records.size();
  if (const char* dump = std::getenv("AQUIFER_POWERCUT_DUMP"); dump != nullptr && *dump != '\0') {
    static const char* kNames[] = {"?", "write", "sync", "create", "mkdir", "unlink", "rename", "dirsync", "rmdir"};
    for (const Record& r : records) {
      if (r.path.find(dump) == std::string::npos && r.path2.find(dump) == std::string::npos) continue;
      std::fprintf(stderr, "journal: %s %s%s%s ino=%llu off=%llu len=%llu old_size=%llu saved=%llu\n",
                   kNames[r.h.kind < 9 ? r.h.kind : 0], r.path.c_str(), r.path2.empty() ? "" : " -> ",
                   r.path2.c_str(), static_cast<unsigned long long>(r.h.ino),
                   static_cast<unsigned long long>(r.h.off), static_cast<unsigned long long>(r.h.len),
                   static_cast<unsigned long long>(r.h.old_size), static_cast<unsigned long long>(r.h.saved_len));
    }
  }

  // What was made durable by a later fsync of the file or of its directory.
  {
    std::set<uint64_t> synced_inodes;
    std::set<std::string> synced_dirs;
    for (size_t i = records.size(); i-- > 0;) {
      Record& r = records[i];
      switch (r.h.kind) {
        case kSync: synced_inodes.insert(r.h.ino); r.durable = true; break;
        case kDirSync: synced_dirs.insert(r.path); r.durable = true; break;
        case kContent: r.durable = synced_inodes.count(r.h.ino) > 0; break;
        case kRename:
          r.durable = synced_dirs.count(Parent(r.path)) > 0 && synced_dirs.count(Parent(r.path2)) > 0;
          break;
        default: r.durable = synced_dirs.count(Parent(r.path)) > 0; break;
      }
    }
  }

  // The write to tear: the newest undone write whose inode and path nothing
  // touched afterwards. That file keeps its unsynced writes up to it, in
  // order, and a sector-aligned prefix of it (a prefix of the file's write
  // stream; dropping the older ones while keeping part of the newest would
  // leave a hole of zeros, which ext4 in ordered mode does not produce).
  const Record* torn = nullptr;
  int torn_fd = -1;
  if (tear) {
    std::set<uint64_t> later_inodes;
    std::set<std::string> later_paths;
    for (size_t i = records.size(); i-- > 0;) {
      Record& r = records[i];
      if (r.h.kind == kContent && r.h.len > 0 && !r.durable && !later_inodes.count(r.h.ino) &&
          !later_paths.count(r.path)) {
        torn_fd = ::open(r.path.c_str(), O_WRONLY | O_CLOEXEC);  // follows the inode through undone renames
        if (torn_fd >= 0) torn = &r;
        break;
      }
      if (r.h.ino != 0) later_inodes.insert(r.h.ino);
      later_paths.insert(r.path);
      if (!r.path2.empty()) later_paths.insert(r.path2);
    }
    if (torn != nullptr) {
      for (Record& r : records) {
        if (r.h.kind == kContent && r.h.ino == torn->h.ino) r.durable = true;  // kept, not undone
      }
    }
  }

  auto shadow_path = [&](uint64_t seq) { return shadow + "/" + std::to_string(seq); };
  for (size_t i = records.size(); i-- > 0;) {
    const Record& r = records[i];
    if (r.durable) continue;
    ++out.undone;
    struct stat st;
    switch (r.h.kind) {
      case kContent: {
        int fd = ::open(r.path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) break;  // removed since; a later undone creation or a durable unlink
        if (!WriteAll(fd, r.saved, r.h.off) || ::ftruncate(fd, static_cast<off_t>(r.h.old_size)) != 0) {
          out.error = "cannot restore " + r.path + ": " + std::strerror(errno);
        }
        out.bytes_restored += r.saved.size();
        ::close(fd);
        break;
      }
      case kCreate:
        ++out.entries_undone;
        out.dropped.push_back("create " + r.path);
        if (::lstat(r.path.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) ::unlink(r.path.c_str());
        break;
      case kMkdir: {
        ++out.entries_undone;
        out.dropped.push_back("mkdir " + r.path);
        std::error_code ec;
        std::filesystem::remove_all(r.path, ec);
        break;
      }
      case kRmdir:
        ++out.entries_undone;
        out.dropped.push_back("rmdir " + r.path);
        ::mkdir(r.path.c_str(), 0755);
        break;
      case kUnlink:
        ++out.entries_undone;
        out.dropped.push_back("unlink " + r.path);
        if (::lstat(r.path.c_str(), &st) != 0) ::rename(shadow_path(r.h.seq).c_str(), r.path.c_str());
        break;
      case kRename:
        ++out.entries_undone;
        out.dropped.push_back("rename " + r.path);
        if (::lstat(r.path2.c_str(), &st) == 0 && st.st_ino == r.h.ino) {
          ::rename(r.path2.c_str(), r.path.c_str());
          if (r.h.flags & 1) ::rename(shadow_path(r.h.seq).c_str(), r.path2.c_str());
        }
        break;
      default: break;
    }
    if (!out.error.empty()) return out;
  }

  if (torn != nullptr) {
    // The file now holds everything up to and with the torn write; take back
    // the part of it after a sector boundary inside it (a write inside one
    // sector is atomic: kept whole).
    const uint64_t off = torn->h.off, end = off + torn->h.len;
    const uint64_t first = (off / 512 + 1) * 512;
    if (first < end) {
      const uint64_t choices = (end - 1 - first) / 512 + 1;  // boundaries strictly inside the write
      const uint64_t cut = first + 512 * std::uniform_int_distribution<uint64_t>(0, choices - 1)(rng);
      bool ok = true;
      if (cut - off < torn->saved.size()) ok = WriteAll(torn_fd, torn->saved.substr(cut - off), cut);
      const uint64_t size = std::max<uint64_t>(torn->h.old_size, cut);
      struct stat st;
      if (ok && ::fstat(torn_fd, &st) == 0 && static_cast<uint64_t>(st.st_size) > size) {
        ok = ::ftruncate(torn_fd, static_cast<off_t>(size)) == 0;
      }
      if (ok) out.torn_bytes = cut - off;
    }
  }
  if (torn_fd >= 0) ::close(torn_fd);

  ::unlink(journal.c_str());
  std::error_code ec;
  std::filesystem::remove_all(shadow, ec);
  return out;
}

}  // namespace aquifer::testing::powercut
