// The Catalog conformance suite on the SQLite catalog (engine/catalog.cc): a
// file in the test's scratch directory; two catalogs on one place are two
// connections to one file (what two processes sharing it would have).
// SQLite-only behaviour (upgrading files from older schema versions, WAL,
// private in-memory catalogs) is tested in src/aquifer/engine/catalog_test.cc.

#include <sqlite3.h>

#include <string>

#include <gtest/gtest.h>

#include "aquifer/engine/catalog.h"
#include "aquifer/engine/checksum_vfs.h"
#include "catalog_conformance.h"

namespace aquifer::conformance {
namespace {

std::string CatalogFile(const std::string& place) { return place + "/catalog.db"; }

Result<CatalogRows> QueryFile(const std::string& place, const std::string& sql) {
  sqlite3* db = nullptr;
  // On the catalog's checksum VFS: a write here keeps the pages' checksums.
  if (sqlite3_open_v2(CatalogFile(place).c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      engine::ChecksumVfsName()) != SQLITE_OK) {
    std::string message = sqlite3_errmsg(db);
    sqlite3_close(db);
    return Unavailable("opening {}: {}", CatalogFile(place), message);
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* stmt = nullptr;
  CatalogRows rows;
  Status status;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    status = InvalidArgument("{}: {}", sql, sqlite3_errmsg(db));
  } else {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int col = 0; col < sqlite3_column_count(stmt); ++col) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
        row.push_back(text ? text : "NULL");
      }
      rows.push_back(std::move(row));
    }
    if (rc != SQLITE_DONE) status = Internal("{}: {}", sql, sqlite3_errmsg(db));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  if (!status.ok()) return status;
  return rows;
}

INSTANTIATE_TEST_SUITE_P(
    Sqlite, CatalogConformance,
    ::testing::Values(CatalogFactory{
        "sqlite",
        [](const std::string& place, const CatalogOpenOptions& options) {
          engine::SqliteCatalogOptions sqlite;
          sqlite.clock = options.clock;
          sqlite.secret_key = options.secret_key;
          return engine::OpenSqliteCatalog(CatalogFile(place), sqlite);
        },
        QueryFile, engine::SqliteCatalogSchemaVersion()}),
    CatalogFactoryName);

}  // namespace
}  // namespace aquifer::conformance
