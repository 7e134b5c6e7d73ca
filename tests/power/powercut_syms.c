// The libc entry points the power-cut shim interposes (powercut.h). Linked
// into a test executable whose symbols are exported (ENABLE_EXPORTS), these
// definitions take the place of libc's for the executable and for every
// shared library it loads (libduckdb.so, libsqlite3.so, librocksdb.so), the
// same as an LD_PRELOAD library would. Until aq_pc_active is set they only
// forward to libc; once set (in a forked child), calls on tracked file
// descriptors and paths go through the C++ hooks in powercut.cc.
//
// C, not C++: glibc declares these functions noexcept in C++, and a
// definition must match its declaration.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "powercut_hooks.h"

volatile int aq_pc_active = 0;
unsigned char aq_pc_tracked_fd[AQ_PC_MAX_FD];

static void* Next(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == NULL) {
    fprintf(stderr, "powercut: no libc symbol %s\n", name);
    abort();
  }
  return f;
}

#define REAL(name, type) \
  static type real_##name; \
  if (real_##name == NULL) real_##name = (type)Next(#name)

static int TrackedFd(int fd) { return aq_pc_active && fd >= 0 && fd < AQ_PC_MAX_FD && aq_pc_tracked_fd[fd]; }

// --- real functions, for the C++ side -----------------------------------------

typedef int (*open_fn)(const char*, int, ...);
typedef ssize_t (*pwrite_fn)(int, const void*, size_t, off_t);
typedef ssize_t (*write_fn)(int, const void*, size_t);
typedef int (*fd_fn)(int);
typedef int (*ftruncate_fn)(int, off_t);
typedef int (*fallocate_fn)(int, int, off_t, off_t);
typedef int (*posix_fallocate_fn)(int, off_t, off_t);
typedef int (*rename_fn)(const char*, const char*);
typedef int (*path_fn)(const char*);
typedef int (*mkdir_fn)(const char*, mode_t);
typedef int (*openat_fn)(int, const char*, int, ...);
typedef int (*unlinkat_fn)(int, const char*, int);

int aq_pc_real_open(const char* path, int flags, mode_t mode) {
  REAL(open, open_fn);
  return real_open(path, flags, mode);
}
int aq_pc_real_openat(int dirfd, const char* path, int flags, mode_t mode) {
  REAL(openat, openat_fn);
  return real_openat(dirfd, path, flags, mode);
}
ssize_t aq_pc_real_pwrite(int fd, const void* buf, size_t n, off_t off) {
  REAL(pwrite, pwrite_fn);
  return real_pwrite(fd, buf, n, off);
}
ssize_t aq_pc_real_write(int fd, const void* buf, size_t n) {
  REAL(write, write_fn);
  return real_write(fd, buf, n);
}
int aq_pc_real_fsync(int fd) {
  REAL(fsync, fd_fn);
  return real_fsync(fd);
}
int aq_pc_real_close(int fd) {
  REAL(close, fd_fn);
  return real_close(fd);
}
int aq_pc_real_ftruncate(int fd, off_t size) {
  REAL(ftruncate, ftruncate_fn);
  return real_ftruncate(fd, size);
}
int aq_pc_real_fallocate(int fd, int mode, off_t off, off_t len) {
  REAL(fallocate, fallocate_fn);
  return real_fallocate(fd, mode, off, len);
}
int aq_pc_real_posix_fallocate(int fd, off_t off, off_t len) {
  REAL(posix_fallocate, posix_fallocate_fn);
  return real_posix_fallocate(fd, off, len);
}
int aq_pc_real_rename(const char* from, const char* to) {
  REAL(rename, rename_fn);
  return real_rename(from, to);
}
int aq_pc_real_unlink(const char* path) {
  REAL(unlink, path_fn);
  return real_unlink(path);
}
int aq_pc_real_remove(const char* path) {
  REAL(remove, path_fn);
  return real_remove(path);
}
int aq_pc_real_mkdir(const char* path, mode_t mode) {
  REAL(mkdir, mkdir_fn);
  return real_mkdir(path, mode);
}
int aq_pc_real_rmdir(const char* path) {
  REAL(rmdir, path_fn);
  return real_rmdir(path);
}

// --- interposed ---------------------------------------------------------------

static mode_t ModeArg(int flags, va_list ap) {
  if ((flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE) return (mode_t)va_arg(ap, int);
  return 0;
}

int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  if (aq_pc_active) return aq_pc_open(AT_FDCWD, path, flags, mode);
  return aq_pc_real_open(path, flags, mode);
}
int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  if (aq_pc_active) return aq_pc_open(AT_FDCWD, path, flags, mode);
  return aq_pc_real_open(path, flags, mode);
}
int __open_2(const char* path, int flags) { return open(path, flags); }
int __open64_2(const char* path, int flags) { return open(path, flags); }
int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  if (aq_pc_active) return aq_pc_open(dirfd, path, flags, mode);
  return aq_pc_real_openat(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = ModeArg(flags, ap);
  va_end(ap);
  if (aq_pc_active) return aq_pc_open(dirfd, path, flags, mode);
  return aq_pc_real_openat(dirfd, path, flags, mode);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  if (TrackedFd(fd)) return aq_pc_write(fd, buf, n, off, 1);
  return aq_pc_real_pwrite(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  if (TrackedFd(fd)) return aq_pc_write(fd, buf, n, off, 1);
  return aq_pc_real_pwrite(fd, buf, n, off);
}
ssize_t write(int fd, const void* buf, size_t n) {
  if (TrackedFd(fd)) return aq_pc_write(fd, buf, n, 0, 0);
  return aq_pc_real_write(fd, buf, n);
}
int fsync(int fd) {
  if (TrackedFd(fd)) return aq_pc_sync(fd);
  return aq_pc_real_fsync(fd);
}
int fdatasync(int fd) {
  if (TrackedFd(fd)) return aq_pc_sync(fd);
  REAL(fdatasync, fd_fn);
  return real_fdatasync(fd);
}
int ftruncate(int fd, off_t size) {
  if (TrackedFd(fd)) return aq_pc_truncate(fd, size);
  return aq_pc_real_ftruncate(fd, size);
}
int ftruncate64(int fd, off_t size) { return ftruncate(fd, size); }
int fallocate(int fd, int mode, off_t off, off_t len) {
  if (TrackedFd(fd)) return aq_pc_fallocate(fd, mode, off, len);
  return aq_pc_real_fallocate(fd, mode, off, len);
}
int fallocate64(int fd, int mode, off_t off, off_t len) { return fallocate(fd, mode, off, len); }
int posix_fallocate(int fd, off_t off, off_t len) {
  if (TrackedFd(fd)) return aq_pc_fallocate(fd, -1, off, len);
  return aq_pc_real_posix_fallocate(fd, off, len);
}
int posix_fallocate64(int fd, off_t off, off_t len) { return posix_fallocate(fd, off, len); }
int close(int fd) {
  if (TrackedFd(fd)) aq_pc_closed(fd);
  return aq_pc_real_close(fd);
}
int rename(const char* from, const char* to) {
  if (aq_pc_active) return aq_pc_rename(from, to);
  return aq_pc_real_rename(from, to);
}
int unlink(const char* path) {
  if (aq_pc_active) return aq_pc_unlink(path, 0);
  return aq_pc_real_unlink(path);
}
int remove(const char* path) {
  if (aq_pc_active) return aq_pc_unlink(path, 1);
  return aq_pc_real_remove(path);
}
int unlinkat(int dirfd, const char* path, int flags) {
  if (aq_pc_active && (dirfd == AT_FDCWD || path[0] == '/')) {
    return aq_pc_unlink(path, (flags & AT_REMOVEDIR) ? 2 : 0);
  }
  REAL(unlinkat, unlinkat_fn);
  return real_unlinkat(dirfd, path, flags);
}
int mkdir(const char* path, mode_t mode) {
  if (aq_pc_active) return aq_pc_mkdir(path, mode);
  return aq_pc_real_mkdir(path, mode);
}
int rmdir(const char* path) {
  if (aq_pc_active) return aq_pc_unlink(path, 2);
  return aq_pc_real_rmdir(path);
}
