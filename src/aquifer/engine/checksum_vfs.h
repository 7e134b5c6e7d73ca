#pragma once

// Page checksums for the SQLite catalog: a VFS shim over SQLite's default
// (unix) VFS. The system SQLite has no page checksums of its own; this adds
// them the way SQLite documents for its cksumvfs extension, with our own code.
//
// Every page of a database whose header reserves 8 bytes per page (header
// byte 20 = kChecksumReserveBytes) ends with [page number, 4 bytes][CRC-32C
// of the page up to there, 4 bytes], both big-endian. The shim fills them in
// on every full-page write to the main database file and checks them on
// every full-page read, answering SQLITE_IOERR_DATA on a mismatch (or a page
// found at another page's place). Pages read from the WAL are checked
// against the WAL frame's own checksum (SQLite's, chained from the previous
// frame), which SQLite itself verifies only when it rebuilds the WAL index
// after a crash; so a damaged frame is neither served nor copied into the
// main file by a checkpoint with a fresh checksum. A database without the 8
// reserved bytes (made before this shim) passes through unchecked, except for
// the WAL check. The catalog converts such files when it opens them
// (catalog.cc): reserve bytes set, then VACUUM.
//
// README.md, "Page checksums", has the details and the limits.

#include <cstddef>
#include <cstdint>
#include <string>

namespace aquifer::engine {

inline constexpr int kChecksumReserveBytes = 8;

// The name of the checksumming VFS, for sqlite3_open_v2. Registers it (not as
// the default VFS) on the first call; thread-safe.
const char* ChecksumVfsName();

// The description of the last checksum failure this thread met ("page 5 of
// /d/catalog.db (bytes 16384..20479) fails its checksum"), then forgets it;
// empty if none. SQLite runs a connection's I/O on the calling thread, so
// right after a call answered SQLITE_IOERR_DATA this names the page.
std::string TakeChecksumFault();

// CRC-32C (Castagnoli) of `size` bytes, continuing from `crc` (0 to start).
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace aquifer::engine
