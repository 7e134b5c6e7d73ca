/* Between the interposed libc entry points (powercut_syms.c) and the shim's
   bookkeeping (powercut.cc). Internal to the power-cut shim. */
#pragma once

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AQ_PC_MAX_FD 65536

extern volatile int aq_pc_active;
extern unsigned char aq_pc_tracked_fd[AQ_PC_MAX_FD];

/* libc's own functions, bypassing the shim. */
int aq_pc_real_open(const char* path, int flags, mode_t mode);
int aq_pc_real_openat(int dirfd, const char* path, int flags, mode_t mode);
ssize_t aq_pc_real_pwrite(int fd, const void* buf, size_t n, off_t off);
ssize_t aq_pc_real_write(int fd, const void* buf, size_t n);
int aq_pc_real_fsync(int fd);
int aq_pc_real_close(int fd);
int aq_pc_real_ftruncate(int fd, off_t size);
int aq_pc_real_fallocate(int fd, int mode, off_t off, off_t len);
int aq_pc_real_posix_fallocate(int fd, off_t off, off_t len);
int aq_pc_real_rename(const char* from, const char* to);
int aq_pc_real_unlink(const char* path);
int aq_pc_real_remove(const char* path);
int aq_pc_real_mkdir(const char* path, mode_t mode);
int aq_pc_real_rmdir(const char* path);

/* The shim (called only while aq_pc_active). */
int aq_pc_open(int dirfd, const char* path, int flags, mode_t mode);
/* positioned = 0: write(2) at the file offset (or the end with O_APPEND). */
ssize_t aq_pc_write(int fd, const void* buf, size_t n, off_t off, int positioned);
int aq_pc_sync(int fd);
int aq_pc_truncate(int fd, off_t size);
/* mode -1: posix_fallocate. */
int aq_pc_fallocate(int fd, int mode, off_t off, off_t len);
void aq_pc_closed(int fd);
int aq_pc_rename(const char* from, const char* to);
/* how: 0 unlink, 1 remove (file or empty directory), 2 rmdir. */
int aq_pc_unlink(const char* path, int how);
int aq_pc_mkdir(const char* path, mode_t mode);

#ifdef __cplusplus
}
#endif
