#pragma once

// The Postgres catalog: the Catalog interface (catalog.h) on a Postgres
// database that several Aquifer processes share. Same semantics and error
// codes as the SQLite catalog; what differs is how they hold across processes:
//
//   - every mutation is one transaction on a pooled libpq connection
//     (drivers/postgres/pg.h); serialization failures, deadlocks and the
//     losers of a race (a unique or foreign key violation, a failed
//     compare-and-set) run the transaction again, a bounded number of times;
//   - two processes claiming one Idempotency-Key: the primary key lets one
//     insert win, the other re-reads and answers kPending; a lease takeover is
//     an UPDATE conditioned on the owner and write id it read (compare-and-set);
//   - two CreateTable/CreateProject of one name: one wins, the other answers
//     AlreadyExists; DeleteProject locks the project row, so a table created
//     meanwhile is either deleted (and recorded as a pending removal) or not;
//   - a connection lost (server restart) is dropped from the pool and the
//     transaction runs again on a new one unless its COMMIT was already sent;
//     an unreachable server is Unavailable, naming the catalog.
//
// Schema migrations are versioned (table schema_version in the catalog's
// Postgres schema) and applied under a transaction-scoped advisory lock, so
// several processes starting together apply each step once. A database
// migrated by a newer binary is FailedPrecondition.
//
// Shared keys: the key of the stored secret hashes and the cursor signing key
// must be the same in every process of a deployment. With a Postgres catalog
// they live in its `shared_keys` table (created once with random bytes,
// atomically: the first process to start makes them, the others read them)
// unless the options/EngineOptions name them explicitly.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/engine/catalog.h"

namespace aquifer::engine {

struct PostgresCatalogOptions {
  Clock* clock = Clock::System();
  // The Postgres schema holding the catalog's tables (created if missing). A
  // `schema=` parameter in the URL's query overrides it.
  std::string schema = "aquifer";
  // The key of the stored secret hashes. Empty: the shared key "secret_key"
  // of the catalog's shared_keys table (created on first use).
  std::string secret_key = {};
  size_t pool_size = 8;     // a `pool_size=` URL parameter overrides it
  int max_attempts = 8;     // per transaction, counting retries after conflicts
};

// True for "postgres://..." and "postgresql://..." (what Engine::Open routes here).
bool IsPostgresCatalogUrl(std::string_view url);

// Opens the catalog at `url` (a libpq URI; the query parameters `schema` and
// `pool_size` are Aquifer's and are removed before libpq sees the URI) and
// brings its schema up to date. Unavailable when the server cannot be reached.
Result<std::unique_ptr<Catalog>> OpenPostgresCatalog(const std::string& url,
                                                     const PostgresCatalogOptions& options);

// The shared key `name` of a Postgres catalog (32 random bytes, made by the
// first process that asks, the same for every process after that).
// InvalidArgument when `catalog` is not a Postgres catalog.
Result<std::string> PostgresSharedKey(Catalog& catalog, std::string_view name);

// The schema version this binary's Postgres catalog migrates to.
int PostgresCatalogSchemaVersion();

}  // namespace aquifer::engine
