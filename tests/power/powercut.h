#pragma once

// The power-cut shim: a simulated disk under DuckDB, SQLite and everything
// else that writes a data directory through libc, for the power-loss suite
// (issue 11, item 1). RocksDB has its own FileSystem hook (fault_fs.h); DuckDB
// ships as a prebuilt library with no such hook, so this layer sits one level
// lower, on the libc calls themselves (powercut_syms.c interposes open,
// pwrite, write, fsync, fdatasync, ftruncate, fallocate, rename, unlink,
// remove, mkdir, rmdir and close; a test executable linking it exports them,
// which has the effect of an LD_PRELOAD library without the exec).
//
// Model. The page cache is the disk's volatile cache; a SIGKILL of the
// process that wrote is the power cut (the kernel keeps what the process
// wrote, the shim's journal says what a machine would have lost). In the
// process under test (a forked child), Activate() starts an undo journal of
// every change to a file under the tracked directory:
// - before a write, truncation or hole punch: the file's inode, size and the
//   bytes about to be overwritten; an fsync/fdatasync of the file marks all
//   earlier changes of that inode durable (the real fsync is skipped: the
//   journal decides, and real syncs only cost time);
// - before a creation, mkdir, unlink (the file is kept by a hard link in the
//   shadow directory), rename (a replaced target is kept the same way) or
//   rmdir: the entry; an fsync of the parent directory marks earlier entry
//   changes there durable (both directories for a rename).
// After the child died, Recover() undoes, newest first, every change not made
// durable, so every file is back at its last synced contents and every
// directory at its last synced entries. With `tear`, the file of the newest
// undone write instead keeps its unsynced writes up to that one, in order,
// and of that one a random whole number of 512-byte sectors from its start
// (a torn last page; a write within one sector is atomic).
//
// Faults: CutAfter(n) SIGKILLs the process at the n-th mutating call from
// now (before it happens), which puts cuts at random points of the I/O
// stream (between a write and its fsync, inside a checkpoint, ...). FailNth
// makes the n-th matching call fail with an errno without doing anything.
//
// Not modelled: writes through mmap (none of the three libraries writes
// data files that way; SQLite's -shm index is rebuilt after a crash),
// fopen/fwrite streams (libc calls its internal write) and dup'ed
// descriptors. Reordering inside one file beyond the torn last write (any
// subset of unsynced sectors surviving) is not modelled either.

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace aquifer::testing::powercut {

// Kinds of calls (bit mask) for FailNth.
enum Op : uint32_t {
  kOpWrite = 1,     // write, pwrite, fallocate/hole punch
  kOpSync = 2,      // fsync/fdatasync of a file
  kOpCreate = 4,    // open with O_CREAT of a new file, mkdir
  kOpTruncate = 8,  // ftruncate, O_TRUNC
  kOpRename = 16,
  kOpUnlink = 32,   // unlink, remove, rmdir
  kOpDirSync = 64,  // fsync of a directory
};

// In the process to be cut, before it opens anything under `dir`: tracks
// every file under `dir` (absolute), journals to `journal` (outside `dir`),
// keeps unlinked and replaced files in `shadow` (a directory outside `dir` on
// the same file system). Once per process.
void Activate(const std::string& dir, const std::string& journal, const std::string& shadow);

// SIGKILL at the n-th mutating call from now, before it happens; 0 disarms.
void CutAfter(uint64_t n);
// The nth (1-based, counted from now) call of a kind in `ops` on a path
// containing `path_substring` fails with `err` and does nothing.
void FailNth(uint32_t ops, const std::string& path_substring, uint64_t nth, int err);
uint64_t Mutations();  // mutating calls on tracked files so far
uint64_t Injected();   // calls failed by FailNth so far

struct Recovery {
  uint64_t records = 0;         // journal records read
  uint64_t undone = 0;          // changes rolled back (not durable)
  uint64_t bytes_restored = 0;  // bytes of file contents put back
  uint64_t entries_undone = 0;  // creations, unlinks, renames, mkdirs rolled back
  uint64_t torn_bytes = 0;      // bytes of the torn last write kept (0: no tear)
  std::vector<std::string> dropped;  // entries rolled back ("create x", "mkdir y", ...)
  std::string error;            // empty when the journal was applied
};

// In the parent, after the child died: rolls everything under the tracked
// directory back to its durable state (see the model above), then removes
// the journal and empties `shadow`.
Recovery Recover(const std::string& journal, const std::string& shadow, std::mt19937_64& rng,
                 bool tear);

}  // namespace aquifer::testing::powercut
