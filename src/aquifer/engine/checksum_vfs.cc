#include "aquifer/engine/checksum_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <mutex>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace aquifer::engine {
namespace {

constexpr char kVfsName[] = "aquifer-checksum";
constexpr unsigned char kSqliteMagic[] = "SQLite format 3";  // 16 bytes with its NUL
constexpr int64_t kWalHeaderSize = 32;
constexpr int64_t kWalFrameHeaderSize = 24;
constexpr int64_t kNothingPending = std::numeric_limits<int64_t>::max();

thread_local std::string t_fault;

// --- CRC-32C ----------------------------------------------------------------------------------

std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    table[i] = crc;
  }
  return table;
}

uint32_t Crc32cPortable(const unsigned char* p, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = MakeCrcTable();
  crc = ~crc;
  while (n-- > 0) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(const unsigned char* p, size_t n,
                                                        uint32_t crc) {
  uint64_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}
#endif

// --- Helpers ----------------------------------------------------------------------------------

uint32_t GetBe32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void PutBe32(unsigned char* p, uint32_t v) {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

// The size of a database page (the header reads of 100 or 16 bytes are not).
bool IsPageSize(int amount) {
  return amount >= 512 && amount <= 65536 && (amount & (amount - 1)) == 0;
}

// A whole page of the main database file, at its place.
bool IsPage(int amount, sqlite3_int64 offset) {
  return IsPageSize(amount) && offset % amount == 0;
}

// The header of a database file with the checksum's reserved bytes.
bool HeaderReservesChecksum(const unsigned char* header) {
  return std::memcmp(header, kSqliteMagic, 16) == 0 && header[20] == kChecksumReserveBytes;
}

int Fault(std::string text) {
  sqlite3_log(SQLITE_IOERR_DATA, "%s", text.c_str());
  t_fault = std::move(text);
  return SQLITE_IOERR_DATA;
}

// --- Files ------------------------------------------------------------------------------------

struct File {
  sqlite3_file base;  // base.pMethods = &kMethods
  sqlite3_file* real;  // the unix VFS's file, in the memory right after this struct
  const char* path;
  bool wal;
  // Main database: the file's header on disk reserves the checksum bytes.
  // Sticky: SQLite never lowers a database's reserve.
  bool checksummed;
  // WAL: the lowest offset this handle wrote since its last sync. Frames from
  // there on may belong to its own unfinished transaction, whose checksums
  // SQLite rewrites at commit; they are not checked.
  int64_t pending_from;
};
static_assert(sizeof(File) % 8 == 0);

sqlite3_vfs* Real(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }
File* Of(sqlite3_file* file) { return reinterpret_cast<File*>(file); }

int RealRead(File* f, void* buffer, int amount, sqlite3_int64 offset) {
  return f->real->pMethods->xRead(f->real, buffer, amount, offset);
}

// Whether the main database file's header on disk reserves the checksum
// bytes. Once it does, without reading it again.
bool MainChecksummed(File* f) {
  if (f->checksummed) return true;
  unsigned char header[24];
  if (RealRead(f, header, sizeof header, 0) == SQLITE_OK && HeaderReservesChecksum(header)) {
    f->checksummed = true;
  }
  return f->checksummed;
}

int VerifyMainPage(File* f, const unsigned char* page, int amount, sqlite3_int64 offset) {
  const uint32_t pgno = static_cast<uint32_t>(offset / amount + 1);
  const unsigned char* trailer = page + amount - kChecksumReserveBytes;
  const uint32_t want = GetBe32(trailer + 4);
  const uint32_t got = Crc32c(page, amount - 4);
  if (want != got) {
    return Fault(fmt::format("page {} of {} (bytes {}..{}) fails its checksum (stored {:08x}, "
                             "computed {:08x}): the stored page is damaged",
                             pgno, f->path, offset, offset + amount - 1, want, got));
  }
  if (GetBe32(trailer) != pgno) {
    return Fault(fmt::format("page {} of {} holds page {} (its checksum is intact): a misplaced "
                             "write, the stored file is damaged",
                             pgno, f->path, GetBe32(trailer)));
  }
  return SQLITE_OK;
}

// SQLite's WAL checksum: pairs of 32-bit words, big- or little-endian as the
// WAL header says, accumulated into (s1, s2).
void WalChecksum(bool big_endian, const unsigned char* p, size_t n, uint32_t* s1, uint32_t* s2) {
  auto word = [big_endian](const unsigned char* w) {
    return big_endian ? GetBe32(w)
                      : (uint32_t{w[3]} << 24) | (uint32_t{w[2]} << 16) | (uint32_t{w[1]} << 8) | w[0];
  };
  for (size_t i = 0; i + 8 <= n; i += 8) {
    *s1 += word(p + i) + *s2;
    *s2 += word(p + i + 4) + *s1;
  }
}

// A page read from the WAL at `offset`: checks it against its frame header's
// checksum, chained from the previous frame's (or the WAL header's).
int VerifyWalPage(File* f, const unsigned char* page, int amount, sqlite3_int64 offset) {
  const int64_t frame_size = amount + kWalFrameHeaderSize;
  const int64_t first = kWalHeaderSize + kWalFrameHeaderSize;
  if (offset < first || (offset - first) % frame_size != 0 || offset >= f->pending_from) {
    return SQLITE_OK;  // not a frame's page, or one of this handle's unfinished transaction
  }
  unsigned char header[kWalHeaderSize];
  unsigned char frame[kWalFrameHeaderSize];
  if (RealRead(f, header, sizeof header, 0) != SQLITE_OK) return SQLITE_OK;
  const uint32_t magic = GetBe32(header);
  if ((magic & ~1u) != 0x377f0682u || GetBe32(header + 8) != static_cast<uint32_t>(amount)) {
    return SQLITE_OK;  // not a WAL of this page size: not ours to judge
  }
  const int64_t index = (offset - first) / frame_size;  // 0-based frame number
  const int64_t frame_at = offset - kWalFrameHeaderSize;
  int rc = RealRead(f, frame, sizeof frame, frame_at);
  if (rc != SQLITE_OK) return rc;
  unsigned char prior[8];
  if (index == 0) {
    std::memcpy(prior, header + 24, 8);
  } else {
    rc = RealRead(f, prior, sizeof prior, frame_at - frame_size + 16);
    if (rc != SQLITE_OK) return rc;
  }
  uint32_t s1 = GetBe32(prior), s2 = GetBe32(prior + 4);
  const bool big_endian = (magic & 1u) != 0;
  WalChecksum(big_endian, frame, 8, &s1, &s2);
  WalChecksum(big_endian, page, static_cast<size_t>(amount), &s1, &s2);
  const bool salt_ok = std::memcmp(frame + 8, header + 16, 8) == 0;
  if (!salt_ok || s1 != GetBe32(frame + 16) || s2 != GetBe32(frame + 20)) {
    return Fault(fmt::format("WAL frame {} (page {}) of {} (bytes {}..{}) fails its {}: the stored "
                             "frame is damaged",
                             index + 1, GetBe32(frame), f->path, frame_at, offset + amount - 1,
                             salt_ok ? "checksum" : "salt"));
  }
  return SQLITE_OK;
}

int Close(sqlite3_file* file) {
  File* f = Of(file);
  return f->real->pMethods->xClose(f->real);
}

int Read(sqlite3_file* file, void* buffer, int amount, sqlite3_int64 offset) {
  File* f = Of(file);
  int rc = RealRead(f, buffer, amount, offset);
  if (rc != SQLITE_OK) return rc;
  const auto* page = static_cast<const unsigned char*>(buffer);
  if (f->wal) return IsPageSize(amount) ? VerifyWalPage(f, page, amount, offset) : SQLITE_OK;
  if (!IsPage(amount, offset)) return SQLITE_OK;
  if (offset == 0 && HeaderReservesChecksum(page)) f->checksummed = true;
  if (!MainChecksummed(f)) return SQLITE_OK;
  return VerifyMainPage(f, page, amount, offset);
}

int Write(sqlite3_file* file, const void* buffer, int amount, sqlite3_int64 offset) {
  File* f = Of(file);
  if (f->wal) {
    if (offset >= kWalHeaderSize) f->pending_from = std::min<int64_t>(f->pending_from, offset);
    return f->real->pMethods->xWrite(f->real, buffer, amount, offset);
  }
  const auto* page = static_cast<const unsigned char*>(buffer);
  bool sum = false;
  if (IsPage(amount, offset)) {
    // Page 1 says itself (a new database's first write, or the checkpoint of a
    // VACUUM that added the reserve: page 1 is written first); any other page
    // follows the header on disk.
    if (offset == 0 && HeaderReservesChecksum(page)) f->checksummed = true;
    sum = MainChecksummed(f);
  }
  if (!sum) return f->real->pMethods->xWrite(f->real, buffer, amount, offset);
  thread_local std::vector<unsigned char> copy;
  copy.assign(page, page + amount);
  unsigned char* trailer = copy.data() + amount - kChecksumReserveBytes;
  PutBe32(trailer, static_cast<uint32_t>(offset / amount + 1));
  PutBe32(trailer + 4, Crc32c(copy.data(), amount - 4));
  return f->real->pMethods->xWrite(f->real, copy.data(), amount, offset);
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = Of(file);
  return f->real->pMethods->xTruncate(f->real, size);
}
int Sync(sqlite3_file* file, int flags) {
  File* f = Of(file);
  int rc = f->real->pMethods->xSync(f->real, flags);
  if (rc == SQLITE_OK && f->wal) f->pending_from = kNothingPending;
  return rc;
}
int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  return Of(file)->real->pMethods->xFileSize(Of(file)->real, size);
}
int Lock(sqlite3_file* file, int level) { return Of(file)->real->pMethods->xLock(Of(file)->real, level); }
int Unlock(sqlite3_file* file, int level) {
  return Of(file)->real->pMethods->xUnlock(Of(file)->real, level);
}
int CheckReservedLock(sqlite3_file* file, int* out) {
  return Of(file)->real->pMethods->xCheckReservedLock(Of(file)->real, out);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  File* f = Of(file);
  int rc = f->real->pMethods->xFileControl(f->real, op, arg);
  if (rc == SQLITE_OK && op == SQLITE_FCNTL_VFSNAME) {
    *static_cast<char**>(arg) = sqlite3_mprintf("%s/%z", kVfsName, *static_cast<char**>(arg));
  }
  return rc;
}
int SectorSize(sqlite3_file* file) { return Of(file)->real->pMethods->xSectorSize(Of(file)->real); }
int DeviceCharacteristics(sqlite3_file* file) {
  return Of(file)->real->pMethods->xDeviceCharacteristics(Of(file)->real);
}
int ShmMap(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  return Of(file)->real->pMethods->xShmMap(Of(file)->real, region, size, extend, out);
}
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  return Of(file)->real->pMethods->xShmLock(Of(file)->real, offset, n, flags);
}
void ShmBarrier(sqlite3_file* file) { Of(file)->real->pMethods->xShmBarrier(Of(file)->real); }
int ShmUnmap(sqlite3_file* file, int remove) {
  return Of(file)->real->pMethods->xShmUnmap(Of(file)->real, remove);
}

// Version 2: shared memory (WAL) but no xFetch, so SQLite never reads pages
// through mmap, past the checks.
const sqlite3_io_methods kMethods = {
    2,          Close,     Read,       Write,      Truncate, Sync,        FileSize,
    Lock,       Unlock,    CheckReservedLock,      FileControl, SectorSize, DeviceCharacteristics,
    ShmMap,     ShmLock,   ShmBarrier, ShmUnmap,   nullptr,  nullptr};

int Open(sqlite3_vfs* vfs, const char* path, sqlite3_file* file, int flags, int* out_flags) {
  sqlite3_vfs* real = Real(vfs);
  if ((flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) == 0) {
    return real->xOpen(real, path, file, flags, out_flags);  // journals, temp files: as they are
  }
  File* f = Of(file);
  std::memset(f, 0, sizeof(File));
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->path = path;
  f->pending_from = kNothingPending;
  int rc = real->xOpen(real, path, f->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    if (f->real->pMethods != nullptr) f->real->pMethods->xClose(f->real);
    f->base.pMethods = nullptr;
    return rc;
  }
  f->wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->base.pMethods = &kMethods;
  return SQLITE_OK;
}

int Delete(sqlite3_vfs* vfs, const char* path, int sync_dir) {
  return Real(vfs)->xDelete(Real(vfs), path, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* path, int flags, int* out) {
  return Real(vfs)->xAccess(Real(vfs), path, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* path, int n, char* out) {
  return Real(vfs)->xFullPathname(Real(vfs), path, n, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* path) { return Real(vfs)->xDlOpen(Real(vfs), path); }
void DlError(sqlite3_vfs* vfs, int n, char* out) { Real(vfs)->xDlError(Real(vfs), n, out); }
void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return Real(vfs)->xDlSym(Real(vfs), handle, symbol);
}
void DlClose(sqlite3_vfs* vfs, void* handle) { Real(vfs)->xDlClose(Real(vfs), handle); }
int Randomness(sqlite3_vfs* vfs, int n, char* out) { return Real(vfs)->xRandomness(Real(vfs), n, out); }
int Sleep(sqlite3_vfs* vfs, int micros) { return Real(vfs)->xSleep(Real(vfs), micros); }
int CurrentTime(sqlite3_vfs* vfs, double* out) { return Real(vfs)->xCurrentTime(Real(vfs), out); }
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  return Real(vfs)->xGetLastError(Real(vfs), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return Real(vfs)->xCurrentTimeInt64(Real(vfs), out);
}
int SetSystemCall(sqlite3_vfs* vfs, const char* name, sqlite3_syscall_ptr call) {
  return Real(vfs)->xSetSystemCall(Real(vfs), name, call);
}
sqlite3_syscall_ptr GetSystemCall(sqlite3_vfs* vfs, const char* name) {
  return Real(vfs)->xGetSystemCall(Real(vfs), name);
}
const char* NextSystemCall(sqlite3_vfs* vfs, const char* name) {
  return Real(vfs)->xNextSystemCall(Real(vfs), name);
}

}  // namespace

uint32_t Crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
  static const bool sse42 = __builtin_cpu_supports("sse4.2");
  if (sse42) return Crc32cSse42(p, size, crc);
#endif
  return Crc32cPortable(p, size, crc);
}

std::string TakeChecksumFault() { return std::exchange(t_fault, std::string()); }

const char* ChecksumVfsName() {
  static std::once_flag once;
  static sqlite3_vfs vfs;
  std::call_once(once, [] {
    sqlite3_initialize();
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    vfs = sqlite3_vfs{};
    vfs.iVersion = std::min(real->iVersion, 3);
    vfs.szOsFile = static_cast<int>(sizeof(File)) + real->szOsFile;
    vfs.mxPathname = real->mxPathname;
    vfs.zName = kVfsName;
    vfs.pAppData = real;
    vfs.xOpen = Open;
    vfs.xDelete = Delete;
    vfs.xAccess = Access;
    vfs.xFullPathname = FullPathname;
    vfs.xDlOpen = DlOpen;
    vfs.xDlError = DlError;
    vfs.xDlSym = DlSym;
    vfs.xDlClose = DlClose;
    vfs.xRandomness = Randomness;
    vfs.xSleep = Sleep;
    vfs.xCurrentTime = CurrentTime;
    vfs.xGetLastError = GetLastError;
    vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    vfs.xSetSystemCall = SetSystemCall;
    vfs.xGetSystemCall = GetSystemCall;
    vfs.xNextSystemCall = NextSystemCall;
    sqlite3_vfs_register(&vfs, /*makeDflt=*/0);
  });
  return kVfsName;
}

}  // namespace aquifer::engine
