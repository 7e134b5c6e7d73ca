// DuckDB 1.4.4: after a commit whose WAL write failed, the next string
// appended to the same table reads back as the reverted string and itself
// concatenated, in memory and in the WAL (tests/power/README.md, "a record
// twice in the warehouse"). Standalone, on DuckDB's C API only: pwrite and
// write are interposed to fail one WAL write with ENOSPC.
//
//   cc -O1 -o /tmp/duckdb_failed_commit tests/power/repro/duckdb_failed_commit.c \
//      -Ithird_party/duckdb/include -Lthird_party/duckdb/lib -lduckdb -ldl \
//      -Wl,-rpath,$PWD/third_party/duckdb/lib
//   /tmp/duckdb_failed_commit /tmp/x.duckdb 1         # id of length 80 instead of 40
//   HEAL=1 /tmp/duckdb_failed_commit /tmp/x.duckdb 1  # a CHECKPOINT after the failure: right
//
// The second argument is a bit mask of what happens before the failed commit:
// 1 a row inserted, 2 CHECKPOINT, 4 another row, 8 a row of another table in
// the failing transaction. The doubled string shows whenever a committed row
// precedes the failed one in the table's in-memory segment (1, 4, 5, 7, ...).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <duckdb.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail_next_wal_write = 0;
static int is_wal(int fd) {
  char link[64], buf[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, buf, sizeof buf - 1);
  if (n <= 0) return 0;
  buf[n] = 0;
  return n > 4 && strcmp(buf + n - 4, ".wal") == 0;
}
ssize_t pwrite(int fd, const void* b, size_t n, off_t off) {
  static ssize_t (*real)(int, const void*, size_t, off_t);
  if (!real) real = dlsym(RTLD_NEXT, "pwrite");
  if (fail_next_wal_write && is_wal(fd)) { fail_next_wal_write = 0; errno = ENOSPC; return -1; }
  return real(fd, b, n, off);
}
ssize_t pwrite64(int fd, const void* b, size_t n, off_t off) { return pwrite(fd, b, n, off); }
ssize_t write(int fd, const void* b, size_t n) {
  static ssize_t (*real)(int, const void*, size_t);
  if (!real) real = dlsym(RTLD_NEXT, "write");
  if (fail_next_wal_write && is_wal(fd)) { fail_next_wal_write = 0; errno = ENOSPC; return -1; }
  return real(fd, b, n);
}

static duckdb_connection c;
static void q(const char* sql) {
  duckdb_result r;
  if (duckdb_query(c, sql, &r) == DuckDBError) {
    printf("  %s\n    -> error: %s\n", sql, duckdb_result_error(&r));
  } else {
    idx_t rows = duckdb_row_count(&r), cols = duckdb_column_count(&r);
    if (cols > 0 && rows > 0 && strncmp(sql, "SELECT", 6) == 0) {
      printf("  %s\n", sql);
      for (idx_t i = 0; i < rows; ++i) {
        printf("    ");
        for (idx_t j = 0; j < cols; ++j) { char* v = duckdb_value_varchar(&r, j, i); printf("%s%s", j ? " | " : "", v ? v : "NULL"); duckdb_free(v); }
        printf("\n");
      }
    }
  }
  duckdb_destroy_result(&r);
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : "/tmp/duckdb_failed_commit.duckdb";
  char wal[4096]; snprintf(wal, sizeof wal, "%s.wal", path);
  unlink(path); unlink(wal);
  duckdb_database db;
  if (duckdb_open(path, &db) == DuckDBError) return 1;
  duckdb_connect(db, &c);
  const int variant = argc > 2 ? atoi(argv[2]) : 0;
  q("CREATE TABLE t (k BIGINT NOT NULL, pad VARCHAR NOT NULL)");
  q("CREATE TABLE applied (id VARCHAR NOT NULL, applied_ms BIGINT NOT NULL)");
  if (variant & 1) q("INSERT INTO applied VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1)");
  if (variant & 2) q("CHECKPOINT");
  if (variant & 4) q("INSERT INTO applied VALUES ('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 1)");
  printf("commit with a failing WAL write (ENOSPC):\n");
  q("BEGIN TRANSACTION");
  if (variant & 8) q("INSERT INTO t VALUES (1, 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')");
  q("INSERT INTO applied VALUES ('cefc088dc9789d4ae1d6f43826cea29d00000000', 2)");
  fail_next_wal_write = 1;
  q("COMMIT");
  q("ROLLBACK");
  if (getenv("HEAL")) { printf("heal: CHECKPOINT\n"); q("CHECKPOINT"); }
  printf("the retry:\n");
  q("BEGIN TRANSACTION");
  q("INSERT INTO applied VALUES ('cefc088dc9789d4ae1d6f43826cea29d00000000', 3), ('5161b4a5f74c5f6b0f2075ce7c44453600000000', 3)");
  q("COMMIT");
  printf("in memory:\n");
  q("SELECT rowid, id, length(id), applied_ms FROM applied ORDER BY rowid");
  duckdb_disconnect(&c);
  // Simulate a crash: no checkpoint at close. Copy the files before closing.
  char cmd[9000];
  snprintf(cmd, sizeof cmd, "rm -rf %s.crash && mkdir %s.crash && cp %s %s %s.crash/", path, path, path, wal, path);
  if (system(cmd) != 0) return 1;
  duckdb_close(&db);
  char copy[4200]; snprintf(copy, sizeof copy, "%s.crash/%s", path, strrchr(path, '/') + 1);
  if (duckdb_open(copy, &db) == DuckDBError) { printf("reopen failed\n"); return 1; }
  duckdb_connect(db, &c);
  printf("after replaying the WAL (as after a crash):\n");
  q("SELECT rowid, id, length(id), applied_ms FROM applied ORDER BY rowid");
  duckdb_disconnect(&c);
  duckdb_close(&db);
  return 0;
}
