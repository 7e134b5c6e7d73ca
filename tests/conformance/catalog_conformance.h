#pragma once

// The Catalog conformance suite (engine/catalog.h), run unchanged by every
// catalog backend. A backend's <system>_catalog_test.cc instantiates it:
//
//   INSTANTIATE_TEST_SUITE_P(Sqlite, CatalogConformance,
//       ::testing::Values(CatalogFactory{"sqlite", open, query, version}), CatalogFactoryName);
//
// Each test gets a fresh scratch directory; the factory maps it to a database
// of its own (a file in it, or a Postgres schema named after it). Opening the
// same place twice gives two catalog objects on one database: a reopen after
// a restart, or another process of the same deployment.

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/engine/catalog.h"
#include "lookup_conformance.h"  // ScratchDir

namespace aquifer::conformance {

struct CatalogOpenOptions {
  Clock* clock = Clock::System();
  std::string secret_key = "0123456789abcdef0123456789abcdef";
};

using CatalogRows = std::vector<std::vector<std::string>>;

struct CatalogFactory {
  std::string name;  // a gtest-safe identifier
  std::function<Result<std::unique_ptr<engine::Catalog>>(const std::string& place,
                                                         const CatalogOpenOptions& options)>
      open;
  // Runs `sql` on the database at `place`, bypassing the catalog, with the
  // catalog's tables unqualified (the same text works on every backend if it
  // sticks to SQL both speak); every row, each cell as text ("NULL" for null).
  std::function<Result<CatalogRows>(const std::string& place, const std::string& sql)> query;
  // The schema version this binary migrates the backend to.
  int schema_version = 0;
};

inline void PrintTo(const CatalogFactory& factory, std::ostream* os) { *os << factory.name; }

std::string CatalogFactoryName(const ::testing::TestParamInfo<CatalogFactory>& info);

class CatalogConformance : public ::testing::TestWithParam<CatalogFactory> {
 protected:
  // Opens (another) catalog on this test's database; fails the test on error.
  std::unique_ptr<engine::Catalog> Open(const CatalogOpenOptions& options = {});
  // The rows of `sql` on this test's database.
  CatalogRows Query(const std::string& sql);
  // The first cell of `sql`'s first row, "" when there is none.
  std::string One(const std::string& sql);

  ScratchDir scratch_;
};

}  // namespace aquifer::conformance
