// SQLite-only behaviour of the catalog: upgrading files written by older
// schema versions, WAL, private in-memory catalogs, what the file holds. What
// every catalog backend must do is the conformance suite in
// tests/conformance/catalog_conformance.cc, run on SQLite and on Postgres.

#include "aquifer/engine/catalog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "aquifer/engine/auth.h"
#include "aquifer/engine/checksum_vfs.h"
#include "aquifer/schema/schema.h"

namespace aquifer::engine {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSchema = R"({"type":"record","name":"Event","fields":[
  {"name":"user","type":"string"},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":["null","double"],"default":null}]})";

TableSpec Spec(const std::string& name) {
  TableSpec spec;
  spec.name = name;
  spec.schema_json = kSchema;
  spec.key = {"user", "ts"};
  return spec;
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir()
      : path_(std::filesystem::temp_directory_path() /
              ("aquifer_catalog_test_" + Uuid::Random().Hex())) {
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// Direct access to the SQLite file, bypassing the catalog (on its checksum
// VFS, so that what it writes keeps the pages' checksums).
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                              ChecksumVfsName()),
              SQLITE_OK);
  }
  ~RawDb() { sqlite3_close(db_); }

  // Every row of `sql`, each cell as text ("NULL" for null).
  std::vector<std::vector<std::string>> Query(const std::string& sql) {
    std::vector<std::vector<std::string>> rows;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
    while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int col = 0; col < sqlite3_column_count(stmt); ++col) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, col));
        row.push_back(text ? text : "NULL");
      }
      rows.push_back(std::move(row));
    }
    sqlite3_finalize(stmt);
    return rows;
  }
  std::string One(const std::string& sql) {
    auto rows = Query(sql);
    return rows.empty() || rows[0].empty() ? "" : rows[0][0];
  }
  void Exec(const std::string& sql) {
    EXPECT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::unique_ptr<Catalog> OpenOrDie(const std::string& path,
                                   const SqliteCatalogOptions& options = {}) {
  auto catalog = OpenSqliteCatalog(path, options);
  EXPECT_TRUE(catalog.ok()) << catalog.status().ToString();
  return catalog.ok() ? std::move(*catalog) : nullptr;
}

Principal ResolveOrDie(Catalog& catalog, const std::string& secret) {
  auto principal = catalog.ResolveSecret(secret);
  EXPECT_TRUE(principal.ok()) << principal.status().ToString();
  return principal.ok() ? *principal : Principal{};
}

std::string MintOrDie(Catalog& catalog, const std::string& project, const SecretGrants& grants) {
  auto minted = catalog.MintSecret(project, grants);
  EXPECT_TRUE(minted.ok()) << minted.status().ToString();
  return minted.ok() ? minted->secret : "";
}

// --- Read cache ------------------------------------------------------------------------------

// Secrets, projects, tables and Authorize's lookups are cached per connection
// (catalog.cc, CacheFreshLocked). Two catalogs on one file are what two
// processes sharing it are: each must see the other's changes on its very
// next call, never a cached answer from before them.
TEST(CatalogCache, CachedSecretsTablesAndGrantsFollowChangesMadeThroughAnotherConnection) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto mine = OpenOrDie(path);
  auto other = OpenOrDie(path);
  ASSERT_NE(mine, nullptr);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(mine->CreateProject("shop").ok());
  ASSERT_TRUE(mine->CreateTable("shop", Spec("orders")).ok());
  const std::string secret = MintOrDie(*mine, "shop", {.read = {"orders"}});
  for (int warm = 0; warm < 2; ++warm) {  // the second round answers from the cache
    Principal reader = ResolveOrDie(*mine, secret);
    EXPECT_TRUE(mine->Authorize(reader, "shop", "orders", Permission::kRead).ok());
    EXPECT_TRUE(mine->GetTable("shop", "orders").ok());
    EXPECT_TRUE(mine->GetProject("shop").ok());
  }
  Principal reader = ResolveOrDie(*mine, secret);

  // Another process deletes the table, then the secret.
  ASSERT_TRUE(other->DeleteTable("shop", "orders").ok());
  EXPECT_EQ(mine->GetTable("shop", "orders").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(mine->Authorize(reader, "shop", "orders", Permission::kRead).code(), StatusCode::kNotFound);
  ASSERT_TRUE(other->DeleteSecret(reader.secret_id).ok());
  EXPECT_EQ(mine->ResolveSecret(secret).status().code(), StatusCode::kUnauthenticated);

  // ... and creates the table again: the new table id, not a cached one.
  auto recreated = other->CreateTable("shop", Spec("orders"));
  ASSERT_TRUE(recreated.ok()) << recreated.status().ToString();
  auto seen = mine->GetTable("shop", "orders");
  ASSERT_TRUE(seen.ok()) << seen.status().ToString();
  EXPECT_EQ(seen->table_id, recreated->table_id);

  // Changes through the same connection count too.
  ASSERT_TRUE(mine->DeleteTable("shop", "orders").ok());
  EXPECT_EQ(mine->GetTable("shop", "orders").status().code(), StatusCode::kNotFound);
}

// --- Migrations ------------------------------------------------------------------------------

TEST(CatalogMigrations, ReopeningAFileCatalogKeepsItsDataAndAppliesEachMigrationOnce) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  {
    auto catalog = OpenOrDie(path);
    ASSERT_NE(catalog, nullptr);
    ASSERT_TRUE(catalog->CreateProject("shop").ok());
  }
  for (int reopen = 0; reopen < 2; ++reopen) {
    auto catalog = OpenOrDie(path);
    ASSERT_NE(catalog, nullptr);
    EXPECT_TRUE(catalog->GetProject("shop").ok());
  }
  RawDb raw(path);
  // Each step recorded once (versions may have gaps: numbers are reserved per change).
  EXPECT_EQ(raw.One("SELECT COUNT(*) = COUNT(DISTINCT version) FROM schema_version"), "1");
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM schema_version WHERE version = 1"), "1");
  EXPECT_EQ(raw.One("SELECT MAX(version) FROM schema_version"),
            std::to_string(SqliteCatalogSchemaVersion()));
  EXPECT_EQ(raw.One("PRAGMA journal_mode"), "wal");
}

TEST(CatalogMigrations, AnInMemoryCatalogOpensAndIsPrivate) {
  auto first = OpenOrDie(":memory:");
  auto second = OpenOrDie(":memory:");
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first->CreateProject("shop").ok());
  EXPECT_EQ(second->GetProject("shop").status().code(), StatusCode::kNotFound);
}

// --- Secrets ---------------------------------------------------------------------------------

constexpr char kSecretKey[] = "0123456789abcdef0123456789abcdef";
constexpr char kOtherSecretKey[] = "fedcba9876543210fedcba9876543210";

SqliteCatalogOptions WithKey(const std::string& key) {
  SqliteCatalogOptions options;
  options.secret_key = key;
  return options;
}

TEST(CatalogSecrets, SecretsAreStoredOnlyAsTheirHmacUnderTheSecretKey) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto catalog = OpenOrDie(path, WithKey(kSecretKey));
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  ASSERT_TRUE(catalog->CreateTable("shop", Spec("orders")).ok());
  std::string minted = MintOrDie(*catalog, "shop", {.read = {"orders"}});
  // An operator-chosen admin secret: the one a plain hash would expose to guessing.
  const std::string admin_secret = "correct horse battery staple";
  ASSERT_TRUE(catalog->EnsureAdminSecret(admin_secret).ok());

  RawDb raw(path);
  auto rows = raw.Query("SELECT id, hash, is_admin, project_id, hash_kind FROM secrets ORDER BY is_admin");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][1], HashSecret(kSecretKey, minted));
  EXPECT_EQ(rows[1][1], HashSecret(kSecretKey, admin_secret));
  EXPECT_EQ(rows[0][4], "hmac");
  EXPECT_EQ(rows[1][4], "hmac");
  for (const std::string& secret : {minted, admin_secret}) {
    const std::string body = secret.starts_with(kSecretPrefix) ? secret.substr(kSecretPrefix.size()) : secret;
    for (const auto& row : rows) {
      for (const auto& cell : row) EXPECT_THAT(cell, Not(HasSubstr(body)));
    }
    // Neither the secret nor its plain SHA-256 is anywhere in the database file
    // or its write-ahead log: the file alone does not let anyone test guesses.
    for (const std::string& file : {path, path + "-wal"}) {
      const std::string bytes = ReadFileBytes(file);
      EXPECT_THAT(bytes, Not(HasSubstr(body))) << file;
      EXPECT_THAT(bytes, Not(HasSubstr(LegacySecretHash(secret)))) << file;
    }
  }
  EXPECT_EQ(LegacySecretHash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231, test case 2.
  EXPECT_EQ(HashSecret("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_NE(HashSecret(kSecretKey, "abc"), HashSecret(kOtherSecretKey, "abc"));
}

TEST(CatalogSecrets, ASecretStoredAsPlainSha256AuthenticatesOnceAndIsRewrittenAsHmac) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  const std::string admin_secret = "an-operator-chosen-admin-secret";
  std::string minted, minted_id, admin_id;
  {
    auto catalog = OpenOrDie(path, WithKey(kSecretKey));
    ASSERT_TRUE(catalog->CreateProject("shop").ok());
    minted = MintOrDie(*catalog, "shop", {.read = {"*"}});
    ASSERT_TRUE(catalog->EnsureAdminSecret(admin_secret).ok());
  }
  {
    // What migration 5 leaves of a file written before it: the plain SHA-256,
    // marked 'sha256' (the column's default).
    RawDb raw(path);
    EXPECT_EQ(raw.One("SELECT dflt_value FROM pragma_table_info('secrets') WHERE name = 'hash_kind'"),
              "'sha256'");
    for (const std::string& secret : {minted, admin_secret}) {
      raw.Exec(fmt::format("UPDATE secrets SET hash = '{}', hash_kind = 'sha256' WHERE hash = '{}'",
                           LegacySecretHash(secret), HashSecret(kSecretKey, secret)));
    }
    minted_id = raw.One("SELECT id FROM secrets WHERE is_admin = 0");
    admin_id = raw.One("SELECT id FROM secrets WHERE is_admin = 1");
    EXPECT_EQ(raw.One("SELECT COUNT(*) FROM secrets WHERE hash_kind = 'sha256'"), "2");
  }
  {
    auto catalog = OpenOrDie(path, WithKey(kSecretKey));
    Principal reader = ResolveOrDie(*catalog, minted);
    EXPECT_EQ(reader.secret_id.ToString(), minted_id);
    EXPECT_EQ(reader.grants.size(), 1u);
    // The admin secret given at start (AQUIFER_ADMIN_SECRET) is rewritten in place.
    auto ensured = catalog->EnsureAdminSecret(admin_secret);
    ASSERT_TRUE(ensured.ok()) << ensured.status().ToString();
    EXPECT_EQ(ResolveOrDie(*catalog, admin_secret).secret_id.ToString(), admin_id);
    RawDb raw(path);
    auto rows = raw.Query("SELECT id, hash, hash_kind FROM secrets ORDER BY is_admin");
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0], (std::vector<std::string>{minted_id, HashSecret(kSecretKey, minted), "hmac"}));
    EXPECT_EQ(rows[1], (std::vector<std::string>{admin_id, HashSecret(kSecretKey, admin_secret), "hmac"}));
    // Still authenticates, now through the HMAC.
    EXPECT_EQ(ResolveOrDie(*catalog, minted).secret_id.ToString(), minted_id);
  }
  // Rewritten: the plain hash no longer authenticates it under another key.
  auto other = OpenOrDie(path, WithKey(kOtherSecretKey));
  EXPECT_EQ(other->ResolveSecret(minted).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(other->ResolveSecret(admin_secret).status().code(), StatusCode::kUnauthenticated);
}

TEST(CatalogSecrets, ParseSecretGrantsReadsTheHttpBody) {
  auto parsed = ParseSecretGrants(R"({"read":["t1","*"],"write":["t2"],"manage":false})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->read, (std::vector<std::string>{"t1", "*"}));
  EXPECT_EQ(parsed->write, (std::vector<std::string>{"t2"}));
  EXPECT_FALSE(parsed->manage);
  auto only_manage = ParseSecretGrants(R"({"manage":true})");
  ASSERT_TRUE(only_manage.ok());
  EXPECT_TRUE(only_manage->manage);
  EXPECT_TRUE(only_manage->read.empty());

  EXPECT_THAT(ParseSecretGrants(R"({"reed":["t1"]})").status().message(), HasSubstr("reed"));
  EXPECT_THAT(ParseSecretGrants(R"({"read":"t1"})").status().message(), HasSubstr("read"));
  EXPECT_THAT(ParseSecretGrants(R"({"write":["ok","Bad"]})").status().message(),
              HasSubstr("write[1]"));
  EXPECT_EQ(ParseSecretGrants(R"({"manage":"yes"})").status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSecretGrants("[1]").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseSecretGrants("{").status().code(), StatusCode::kInvalidArgument);
}

constexpr int64_t kMsToMicrosForJobs = 1000;  // ManualClock::Advance takes microseconds

// The process running a job refreshes it with the same status (a heartbeat);
// jobs nobody refreshed for a lease are failed in bulk; the unfinished ones of
// a secret are counted across processes.
TEST(CatalogJobs, HeartbeatsRefreshUpdatedMsAndStaleJobsFailAndUnfinishedOnesCount) {
  ManualClock clock;
  auto catalog = OpenOrDie(":memory:", {.clock = &clock});
  const Uuid alice = Uuid::Random(), bob = Uuid::Random();
  auto make = [&](const Uuid& secret) {
    auto job = catalog->CreateJob({.secret_id = secret, .tables = {}, .sql = "SELECT 1"});
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    return job.ok() ? job->job_id : Uuid{};
  };
  const Uuid running = make(alice), pending = make(alice), done = make(alice), fresh = make(alice), other = make(bob);
  ASSERT_TRUE(catalog->UpdateJob(running, {.status = driver::JobStatus::kRunning}).ok());
  ASSERT_TRUE(catalog->UpdateJob(done, {.status = driver::JobStatus::kDone, .rows = 1}).ok());
  EXPECT_EQ(*catalog->CountUnfinishedJobs(alice), 3);
  EXPECT_EQ(*catalog->CountUnfinishedJobs(bob), 1);
  EXPECT_EQ(*catalog->CountUnfinishedJobs(Uuid::Random()), 0);

  const int64_t created = catalog->GetJob(running)->updated_ms;
  clock.Advance(10'000 * kMsToMicrosForJobs);
  // running -> running is a heartbeat: allowed, and it moves updated_ms.
  ASSERT_TRUE(catalog->UpdateJob(running, {.status = driver::JobStatus::kRunning, .bytes_scanned = 8}).ok());
  ASSERT_TRUE(catalog->UpdateJob(fresh, {.status = driver::JobStatus::kPending}).ok());
  auto beat = catalog->GetJob(running);
  ASSERT_TRUE(beat.ok());
  EXPECT_EQ(beat->status, driver::JobStatus::kRunning);
  EXPECT_EQ(beat->updated_ms, created + 10'000);
  EXPECT_EQ(beat->bytes_scanned, 8);

  // Not refreshed since before now - 5 s: `pending` (and bob's job); the others beat.
  auto failed = catalog->FailStaleJobs(clock.NowMillis() - 5'000, "the process stopped");
  ASSERT_TRUE(failed.ok()) << failed.status().ToString();
  EXPECT_EQ(*failed, 2);
  EXPECT_EQ(catalog->GetJob(pending)->status, driver::JobStatus::kFailed);
  EXPECT_EQ(catalog->GetJob(pending)->error, "the process stopped");
  EXPECT_EQ(catalog->GetJob(other)->status, driver::JobStatus::kFailed);
  EXPECT_EQ(catalog->GetJob(running)->status, driver::JobStatus::kRunning);
  EXPECT_EQ(catalog->GetJob(fresh)->status, driver::JobStatus::kPending);
  EXPECT_EQ(catalog->GetJob(done)->status, driver::JobStatus::kDone) << "finished jobs never change";
  EXPECT_EQ(*catalog->CountUnfinishedJobs(alice), 2);
  EXPECT_EQ(*catalog->CountUnfinishedJobs(bob), 0);
  // A stale job's runner that comes back cannot revive it.
  EXPECT_EQ(catalog->UpdateJob(pending, {.status = driver::JobStatus::kRunning}).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(*catalog->FailStaleJobs(clock.NowMillis() - 5'000, "again"), 0);
}

// --- Idempotency keys ------------------------------------------------------------------------

using ClaimState = IdempotencyClaim::State;
constexpr int64_t kLeaseMs = 10'000;

TEST(CatalogIdempotency, ClaimsOfTheFirstSchemaVersionCountAsCommitted) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  Uuid secret;
  {
    auto catalog = OpenOrDie(path);
    ASSERT_TRUE(catalog->CreateProject("shop").ok());
    secret = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;
  }
  {
    // A row as version 1 wrote it: no state, owner or lease.
    RawDb raw(path);
    raw.Exec("DELETE FROM schema_version WHERE version >= 2");
    raw.Exec("ALTER TABLE secrets DROP COLUMN hash_kind");  // added by migration 5
    raw.Exec("DROP INDEX jobs_with_result");                // added by migration 7
    raw.Exec("ALTER TABLE jobs DROP COLUMN result_text");   // added by migration 7
    raw.Exec("CREATE TABLE old_keys AS SELECT secret_id, idem_key, write_id, created_ms FROM "
             "idempotency_keys");
    raw.Exec("DROP TABLE idempotency_keys");
    raw.Exec("CREATE TABLE idempotency_keys (secret_id TEXT NOT NULL REFERENCES secrets(id) ON "
             "DELETE CASCADE, idem_key TEXT NOT NULL, write_id TEXT NOT NULL, created_ms BIGINT "
             "NOT NULL, PRIMARY KEY (secret_id, idem_key))");
    raw.Exec("DROP TABLE old_keys");
    raw.Exec(fmt::format("INSERT INTO idempotency_keys VALUES ('{}', 'req-1', 'w-old', {})",
                         secret.ToString(), Clock::System()->NowMillis()));
  }
  auto catalog = OpenOrDie(path);
  auto claim = catalog->ClaimIdempotencyKey(secret, "req-1", "w-new", "o", kLeaseMs);
  ASSERT_TRUE(claim.ok()) << claim.status().ToString();
  EXPECT_EQ(claim->state, ClaimState::kCommitted);
  EXPECT_EQ(claim->write_id, "w-old");
}

// --- Page checksums (checksum_vfs.h) ----------------------------------------------------------

constexpr uint64_t kPageSize = 4096;

std::vector<uint64_t> Occurrences(const std::string& bytes, const std::string& needle) {
  std::vector<uint64_t> found;
  for (size_t at = bytes.find(needle); at != std::string::npos; at = bytes.find(needle, at + 1)) {
    found.push_back(at);
  }
  return found;
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file.is_open()) << path;
  file.seekg(static_cast<std::streamoff>(offset));
  char byte = 0;
  ASSERT_TRUE(file.get(byte)) << path << " has no byte " << offset;
  byte = static_cast<char>(byte ^ 0x10);
  file.seekp(static_cast<std::streamoff>(offset));
  file.put(byte);
  ASSERT_TRUE(file.good());
}

int HeaderReserve(const std::string& path) {
  std::string bytes = ReadFileBytes(path);
  return bytes.size() > 20 ? static_cast<unsigned char>(bytes[20]) : -1;
}

// The project names the catalog on `path` lists, or the error of its open or of the listing.
Result<std::vector<std::string>> ProjectNames(const std::string& path,
                                              std::unique_ptr<Catalog>* kept = nullptr) {
  AQ_ASSIGN_OR_RETURN(auto catalog, OpenSqliteCatalog(path));
  AQ_ASSIGN_OR_RETURN(auto projects, catalog->ListProjects());
  std::vector<std::string> names;
  for (const auto& project : projects) names.push_back(project.name);
  if (kept != nullptr) *kept = std::move(catalog);
  return names;
}

// A catalog closed cleanly: everything checkpointed into the main file.
void MakeCatalog(const std::string& path, const std::string& project,
                 const SqliteCatalogOptions& options = {}) {
  auto catalog = OpenOrDie(path, options);
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject(project).ok());
  ASSERT_TRUE(catalog->CreateTable(project, Spec("orders")).ok());
  MintOrDie(*catalog, project, {.read = {"orders"}});
}

// A byte flipped inside a row (a project's name) of a page in the main file:
// the read fails as Corruption naming the file and the checksum; nothing is
// listed, and from then on the catalog answers nothing (fails closed).
// Before page checksums the flipped name was listed as data.
TEST(CatalogChecksums, AFlippedByteInsideARowIsDetectedNeverServed) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  MakeCatalog(path, "canary_project");
  ASSERT_FALSE(std::filesystem::exists(path + "-wal") && std::filesystem::file_size(path + "-wal") > 0)
      << "expected the rows in the main file";
  EXPECT_EQ(HeaderReserve(path), kChecksumReserveBytes);
  auto at = Occurrences(ReadFileBytes(path), "canary_project");
  ASSERT_FALSE(at.empty());
  for (uint64_t offset : at) FlipByte(path, offset + 2);  // "canary" -> "ca~ary"

  std::unique_ptr<Catalog> catalog;
  auto names = ProjectNames(path, &catalog);
  ASSERT_FALSE(names.ok()) << "served a damaged row: " << ::testing::PrintToString(*names);
  EXPECT_EQ(names.status().code(), StatusCode::kCorruption) << names.status().ToString();
  EXPECT_THAT(names.status().message(), HasSubstr("checksum"));
  EXPECT_THAT(names.status().message(), HasSubstr(path));
  if (catalog == nullptr) catalog = OpenOrDie(path);  // the open itself may have met the page
  if (catalog != nullptr) {
    // Once damage is seen, nothing more is served, cached or not.
    (void)catalog->ListProjects();
    EXPECT_EQ(catalog->ListInstances().status().code(), StatusCode::kCorruption);
    EXPECT_EQ(catalog->CreateProject("another").status().code(), StatusCode::kCorruption);
  }
}

// The checksum's own 8 bytes at the end of the page: a flipped byte of the
// CRC, or of the page number it stores (covered by the CRC), is detected too;
// and an intact page at another page's place (a misdirected write) is named.
TEST(CatalogChecksums, AFlippedByteInThePageTrailerOrAMisplacedPageIsDetected) {
  TempDir dir;
  const std::string pristine = dir.File("pristine.db");
  MakeCatalog(pristine, "canary_project");
  auto at = Occurrences(ReadFileBytes(pristine), "canary_project");
  ASSERT_FALSE(at.empty());
  const uint64_t page_end = (at[0] / kPageSize + 1) * kPageSize;
  for (auto [name, offset, says] : {std::tuple{"crc.db", page_end - 1, "checksum"},
                                    std::tuple{"pgno.db", page_end - 5, "checksum"},
                                    std::tuple{"moved.db", uint64_t{0}, "holds page"}}) {
    const std::string path = dir.File(name);
    std::filesystem::copy_file(pristine, path);
    if (offset != 0) {
      FlipByte(path, offset);
    } else {  // the page before, copied over the page of the row
      std::string bytes = ReadFileBytes(path);
      ASSERT_GE(page_end, 3 * kPageSize);
      bytes.replace(page_end - kPageSize, kPageSize, bytes.substr(page_end - 2 * kPageSize, kPageSize));
      std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    }
    auto names = ProjectNames(path);
    ASSERT_FALSE(names.ok()) << name << ": " << ::testing::PrintToString(*names);
    EXPECT_EQ(names.status().code(), StatusCode::kCorruption) << names.status().ToString();
    EXPECT_THAT(names.status().message(), HasSubstr(says));
    EXPECT_THAT(names.status().message(), HasSubstr(path));
  }
}

// Rows not yet checkpointed live in the WAL; SQLite checks a frame's
// checksum only when it rebuilds the WAL index after a crash. A frame
// damaged while the catalog is open is detected by the VFS (its SQLite
// checksum, chained from the previous frame), not served by another
// connection nor copied into the main file by a checkpoint.
TEST(CatalogChecksums, AFlippedByteInAWalFrameIsDetectedNeverServed) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto writer = OpenOrDie(path);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->CreateProject("canary_project").ok());
  ASSERT_TRUE(writer->CreateProject("plain_project").ok());
  {  // an intact WAL reads right through a second connection
    auto names = ProjectNames(path);
    ASSERT_TRUE(names.ok()) << names.status().ToString();
    EXPECT_EQ(names->size(), 2u);
  }
  auto at = Occurrences(ReadFileBytes(path + "-wal"), "canary_project");
  ASSERT_FALSE(at.empty()) << "expected the row in the WAL";
  for (uint64_t offset : at) FlipByte(path + "-wal", offset + 2);
  auto names = ProjectNames(path);
  ASSERT_FALSE(names.ok()) << "served a damaged row: " << ::testing::PrintToString(*names);
  EXPECT_EQ(names.status().code(), StatusCode::kCorruption) << names.status().ToString();
  EXPECT_THAT(names.status().message(), HasSubstr("WAL frame"));
  EXPECT_THAT(names.status().message(), HasSubstr("checksum"));
}

// A catalog made before page checksums (no reserved bytes) is converted when
// opened: every row kept, the pages checksummed from then on.
TEST(CatalogChecksums, AFileMadeWithoutChecksumsIsConvertedKeepingEveryRow) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  SqliteCatalogOptions old;
  old.page_checksums = false;
  std::string secret;
  Uuid table_id;
  {
    auto catalog = OpenOrDie(path, old);
    ASSERT_NE(catalog, nullptr);
    ASSERT_TRUE(catalog->EnsureAdminSecret(std::string(40, 'a')).ok());
    ASSERT_TRUE(catalog->CreateProject("canary_project").ok());
    auto table = catalog->CreateTable("canary_project", Spec("orders"));
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    table_id = table->table_id;
    for (int i = 0; i < 200; ++i) {  // a few pages of rows
      ASSERT_TRUE(catalog->CreateProject("p" + std::to_string(i)).ok());
    }
    secret = MintOrDie(*catalog, "canary_project", {.read = {"orders"}});
  }
  ASSERT_EQ(HeaderReserve(path), 0) << "the old layout reserves nothing";
  {
    auto catalog = OpenOrDie(path);
    ASSERT_NE(catalog, nullptr);
    auto table = catalog->GetTable("canary_project", "orders");
    ASSERT_TRUE(table.ok()) << table.status().ToString();
    EXPECT_EQ(table->table_id, table_id);
    EXPECT_EQ(table->primary.schema->key().size(), 2u);
    Principal reader = ResolveOrDie(*catalog, secret);
    EXPECT_TRUE(catalog->Authorize(reader, "canary_project", "orders", Permission::kRead).ok());
    EXPECT_EQ(catalog->Authorize(reader, "canary_project", "orders", Permission::kWrite).code(),
              StatusCode::kPermissionDenied);
    EXPECT_TRUE(ResolveOrDie(*catalog, std::string(40, 'a')).is_admin);
    auto projects = catalog->ListProjects();
    ASSERT_TRUE(projects.ok());
    EXPECT_EQ(projects->size(), 201u);
  }
  EXPECT_EQ(HeaderReserve(path), kChecksumReserveBytes);
  {
    RawDb raw(path);
    EXPECT_EQ(raw.One("PRAGMA integrity_check"), "ok");
  }
  {  // reopened: the same rows, no second conversion needed
    auto names = ProjectNames(path);
    ASSERT_TRUE(names.ok()) << names.status().ToString();
    EXPECT_EQ(names->size(), 201u);
  }
  // ... and checked from then on.
  for (uint64_t offset : Occurrences(ReadFileBytes(path), "canary_project")) {
    FlipByte(path, offset + 2);
  }
  auto names = ProjectNames(path);
  ASSERT_FALSE(names.ok()) << "served a damaged row";
  EXPECT_EQ(names.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(names.status().message(), HasSubstr("checksum"));
}

// The checksum: CRC-32C (the standard check value of "123456789").
TEST(CatalogChecksums, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c("56789", 5, Crc32c("1234", 4)), 0xE3069283u);
}

}  // namespace
}  // namespace aquifer::engine
