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
#include <vector>

#include "aquifer/engine/auth.h"
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

// Direct access to the SQLite file, bypassing the catalog.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
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

TEST(CatalogMigrations, ADatabaseFromANewerBinaryIsFailedPrecondition) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  ASSERT_NE(OpenOrDie(path), nullptr);
  {
    RawDb raw(path);
    raw.Exec(fmt::format(
        "INSERT INTO schema_version (version, description, applied_ms) VALUES ({}, 'future', 0)",
        SqliteCatalogSchemaVersion() + 1));
  }
  auto reopened = OpenSqliteCatalog(path);
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(reopened.status().message(), HasSubstr("newer"));
}

TEST(CatalogMigrations, AnInMemoryCatalogOpensAndIsPrivate) {
  auto first = OpenOrDie(":memory:");
  auto second = OpenOrDie(":memory:");
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first->CreateProject("shop").ok());
  EXPECT_EQ(second->GetProject("shop").status().code(), StatusCode::kNotFound);
}

// --- Projects --------------------------------------------------------------------------------

TEST(CatalogProjects, NamesMustMatchTheRuleAndTheErrorStatesIt) {
  auto catalog = OpenOrDie(":memory:");
  for (const std::string& bad : std::vector<std::string>{
           "", "Shop", "1shop", "_shop", "sh-op", "shop.x", "caf\xc3\xa9", std::string(64, 'a')}) {
    auto created = catalog->CreateProject(bad);
    ASSERT_FALSE(created.ok()) << bad;
    EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(created.status().message(), HasSubstr("[a-z][a-z0-9_]{0,62}"));
  }
  for (const std::string& good : std::vector<std::string>{"a", "shop_2", std::string(63, 'z')}) {
    EXPECT_TRUE(catalog->CreateProject(good).ok()) << good;
  }
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  auto table = catalog->CreateTable("shop", Spec("Orders"));
  EXPECT_EQ(table.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(table.status().message(), HasSubstr("invalid table name 'Orders'"));
}

TEST(CatalogProjects, CreatingADuplicateProjectOrTableIsAlreadyExists) {
  auto catalog = OpenOrDie(":memory:");
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  EXPECT_EQ(catalog->CreateProject("shop").status().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(catalog->CreateTable("shop", Spec("orders")).ok());
  auto again = catalog->CreateTable("shop", Spec("orders"));
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("shop.orders"));
  // The same table name in another project is a different table.
  ASSERT_TRUE(catalog->CreateProject("other").ok());
  EXPECT_TRUE(catalog->CreateTable("other", Spec("orders")).ok());
}

TEST(CatalogProjects, GetAndListAnswerWhatExistsByName) {
  auto catalog = OpenOrDie(":memory:");
  EXPECT_EQ(catalog->GetProject("nope").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(catalog->CreateProject("zeta").ok());
  auto alpha = catalog->CreateProject("alpha");
  ASSERT_TRUE(alpha.ok());
  auto got = catalog->GetProject("alpha");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->project_id, alpha->project_id);
  auto list = catalog->ListProjects();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "alpha");
  EXPECT_EQ((*list)[1].name, "zeta");
}

TEST(CatalogProjects, DeletingAProjectCascadesAndReturnsItsInstances) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto catalog = OpenOrDie(path);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  ASSERT_TRUE(catalog->CreateProject("keep").ok());
  auto orders = catalog->CreateTable("shop", Spec("orders"));
  auto users = catalog->CreateTable("shop", Spec("users"));
  auto kept = catalog->CreateTable("keep", Spec("orders"));
  ASSERT_TRUE(orders.ok() && users.ok() && kept.ok());
  std::string secret = MintOrDie(*catalog, "shop", {.read = {"orders"}, .write = {"*"}});
  std::string keep_secret = MintOrDie(*catalog, "keep", {.manage = true});
  ASSERT_TRUE(
      catalog->ClaimIdempotencyKey(ResolveOrDie(*catalog, secret).secret_id, "k1", "w1", "me", 1000)
          .ok());

  auto removed = catalog->DeleteProject("shop");
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  std::vector<Uuid> removed_ids;
  for (const auto& instance : *removed) {
    removed_ids.push_back(instance.instance_id);
    EXPECT_EQ(instance.project, "shop");
    EXPECT_NE(instance.schema, nullptr);
  }
  EXPECT_THAT(removed_ids, ::testing::UnorderedElementsAre(orders->primary.instance_id,
                                                           users->primary.instance_id));

  EXPECT_EQ(catalog->GetProject("shop").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog->GetTable("shop", "orders").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog->GetInstance(orders->primary.instance_id).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(catalog->ResolveSecret(secret).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(catalog->DeleteProject("shop").status().code(), StatusCode::kNotFound);
  // The other project is untouched.
  EXPECT_TRUE(catalog->GetInstance(kept->primary.instance_id).ok());
  EXPECT_TRUE(catalog->ResolveSecret(keep_secret).ok());

  RawDb raw(path);
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM tables"), "1");
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM instances"), "1");
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM secrets"), "1");
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM grants"), "1");
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM idempotency_keys"), "0");
}

TEST(CatalogProjects, QuotasStartUnlimitedAndRoundTrip) {
  auto catalog = OpenOrDie(":memory:");
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  auto quotas = catalog->GetProjectQuotas("shop");
  ASSERT_TRUE(quotas.ok());
  EXPECT_EQ(*quotas, Quotas{});

  Quotas limits{.read_bytes = 1'000, .write_bytes = 0, .scan_bytes = std::nullopt};
  ASSERT_TRUE(catalog->SetProjectQuotas("shop", limits).ok());
  EXPECT_EQ(*catalog->GetProjectQuotas("shop"), limits);
  EXPECT_EQ(catalog->GetProject("shop")->quotas, limits);

  Status negative = catalog->SetProjectQuotas("shop", {.scan_bytes = -1});
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.message(), HasSubstr("scan quota"));
  EXPECT_EQ(*catalog->GetProjectQuotas("shop"), limits);
  EXPECT_EQ(catalog->SetProjectQuotas("nope", limits).code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog->GetProjectQuotas("nope").status().code(), StatusCode::kNotFound);
}

// --- Tables ----------------------------------------------------------------------------------

TEST(CatalogTables, CreateStoresTheCanonicalSchemaAndAPrimaryInstance) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto catalog = OpenOrDie(path);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  TableSpec spec = Spec("orders");
  spec.use_warehouse = false;
  spec.log_retention_ms = 86'400'000;
  auto created = catalog->CreateTable("shop", spec);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const auto& primary = created->primary;
  EXPECT_FALSE(primary.instance_id.IsNil());
  EXPECT_EQ(primary.project, "shop");
  EXPECT_EQ(primary.table, "orders");
  EXPECT_TRUE(primary.use_log);
  EXPECT_TRUE(primary.use_index);
  EXPECT_FALSE(primary.use_warehouse);
  EXPECT_EQ(primary.log_retention_ms, 86'400'000);
  auto expected = schema::Schema::Parse(kSchema, {"user", "ts"});
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(primary.schema->avro_json(), (*expected)->avro_json());
  ASSERT_EQ(primary.schema->key().size(), 2u);
  EXPECT_EQ(primary.schema->key()[1].name, "ts");

  auto got = catalog->GetTable("shop", "orders");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->table_id, created->table_id);
  EXPECT_EQ(got->primary.instance_id, primary.instance_id);
  // Hot lookups share the cached parse.
  EXPECT_EQ(got->primary.schema.get(), primary.schema.get());
  auto instance = catalog->GetInstance(primary.instance_id);
  ASSERT_TRUE(instance.ok());
  EXPECT_EQ(instance->schema.get(), primary.schema.get());
  EXPECT_EQ(instance->table, "orders");
  EXPECT_EQ(catalog->GetInstance(Uuid::Random()).status().code(), StatusCode::kNotFound);

  // After a reopen the schema is parsed from the stored canonical JSON.
  RawDb raw(path);
  EXPECT_EQ(raw.One("SELECT avro_json FROM instances"), (*expected)->avro_json());
  catalog.reset();
  catalog = OpenOrDie(path);
  auto reloaded = catalog->GetTable("shop", "orders");
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  EXPECT_EQ(reloaded->primary.schema->avro_json(), (*expected)->avro_json());
  EXPECT_FALSE(reloaded->primary.use_warehouse);
  EXPECT_EQ(reloaded->primary.log_retention_ms, 86'400'000);
}

TEST(CatalogTables, SchemaErrorsSurfaceWithTheFieldPath) {
  auto catalog = OpenOrDie(":memory:");
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  TableSpec spec = Spec("orders");
  spec.schema_json = R"({"type":"record","name":"R","fields":[
    {"name":"id","type":"string"},
    {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item",
      "fields":[{"name":"price","type":"dubble"}]}}}]})";
  spec.key = {"id"};
  auto bad_type = catalog->CreateTable("shop", spec);
  ASSERT_FALSE(bad_type.ok());
  EXPECT_EQ(bad_type.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_type.status().message(), HasSubstr("shop.orders"));
  EXPECT_THAT(bad_type.status().message(), HasSubstr("items[].price"));

  spec = Spec("orders");
  spec.key = {"amount"};
  auto bad_key = catalog->CreateTable("shop", spec);
  EXPECT_EQ(bad_key.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_key.status().message(), HasSubstr("amount"));

  spec = Spec("orders");
  spec.schema_json = "{not json";
  EXPECT_EQ(catalog->CreateTable("shop", spec).status().code(), StatusCode::kInvalidArgument);

  spec = Spec("orders");
  spec.use_log = spec.use_index = spec.use_warehouse = false;
  auto no_store = catalog->CreateTable("shop", spec);
  EXPECT_EQ(no_store.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(no_store.status().message(), HasSubstr("use_log"));

  spec = Spec("orders");
  spec.index_retention_ms = -5;
  auto negative = catalog->CreateTable("shop", spec);
  EXPECT_EQ(negative.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.status().message(), HasSubstr("index_retention_ms"));

  // Nothing of a rejected table was stored.
  EXPECT_TRUE(catalog->ListTables("shop")->empty());
  EXPECT_EQ(catalog->CreateTable("nope", Spec("orders")).status().code(), StatusCode::kNotFound);
}

TEST(CatalogTables, ListIsPerProjectAndDeleteReturnsTheRemovedInstances) {
  auto catalog = OpenOrDie(":memory:");
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  ASSERT_TRUE(catalog->CreateProject("other").ok());
  ASSERT_TRUE(catalog->CreateTable("shop", Spec("users")).ok());
  auto orders = catalog->CreateTable("shop", Spec("orders"));
  ASSERT_TRUE(orders.ok());
  ASSERT_TRUE(catalog->CreateTable("other", Spec("elsewhere")).ok());

  auto list = catalog->ListTables("shop");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "orders");
  EXPECT_EQ((*list)[1].name, "users");
  EXPECT_NE((*list)[0].primary.schema, nullptr);
  EXPECT_EQ(catalog->ListTables("nope").status().code(), StatusCode::kNotFound);

  auto removed = catalog->DeleteTable("shop", "orders");
  ASSERT_TRUE(removed.ok());
  ASSERT_EQ(removed->size(), 1u);
  EXPECT_EQ((*removed)[0].instance_id, orders->primary.instance_id);
  EXPECT_EQ((*removed)[0].table, "orders");
  EXPECT_EQ(catalog->GetTable("shop", "orders").status(), TableNotFound("shop", "orders"));
  EXPECT_EQ(catalog->GetInstance(orders->primary.instance_id).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(catalog->DeleteTable("shop", "orders").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog->DeleteTable("nope", "orders").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog->ListTables("shop")->size(), 1u);

  // A re-created table is a new table with a new instance.
  auto again = catalog->CreateTable("shop", Spec("orders"));
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->table_id, orders->table_id);
  EXPECT_NE(again->primary.instance_id, orders->primary.instance_id);
}

TEST(CatalogTables, DeletionsRecordPendingRemovalsUntilFinishedAcrossReopening) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto catalog = OpenOrDie(path);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  ASSERT_TRUE(catalog->CreateProject("gone").ok());
  auto users = catalog->CreateTable("shop", Spec("users"));
  auto orders = catalog->CreateTable("shop", Spec("orders"));
  auto other = catalog->CreateTable("gone", Spec("things"));
  ASSERT_TRUE(users.ok() && orders.ok() && other.ok());
  auto live = catalog->ListInstances();
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->size(), 3u);
  EXPECT_TRUE(catalog->ListPendingRemovals()->empty());

  ASSERT_TRUE(catalog->DeleteTable("shop", "orders").ok());
  ASSERT_TRUE(catalog->DeleteProject("gone").ok());
  EXPECT_EQ(catalog->ListInstances()->size(), 1u);
  catalog.reset();
  catalog = OpenOrDie(path);  // a crash before the stores' removal keeps the record
  auto pending = catalog->ListPendingRemovals();
  ASSERT_TRUE(pending.ok()) << pending.status().ToString();
  ASSERT_EQ(pending->size(), 2u);
  std::set<Uuid> ids{(*pending)[0].instance_id, (*pending)[1].instance_id};
  EXPECT_EQ(ids, (std::set<Uuid>{orders->primary.instance_id, other->primary.instance_id}));
  for (const auto& instance : *pending) {
    ASSERT_NE(instance.schema, nullptr);
    EXPECT_EQ(instance.schema->avro_json(), users->primary.schema->avro_json());
    EXPECT_TRUE(instance.table == "orders" || instance.table == "things");
  }

  ASSERT_TRUE(catalog->FinishRemoval(orders->primary.instance_id).ok());
  ASSERT_TRUE(catalog->FinishRemoval(orders->primary.instance_id).ok()) << "idempotent";
  ASSERT_EQ(catalog->ListPendingRemovals()->size(), 1u);
  // A worker that wrote after the deletion records it again.
  ASSERT_TRUE(catalog->AddPendingRemoval(orders->primary).ok());
  ASSERT_TRUE(catalog->AddPendingRemoval(orders->primary).ok()) << "idempotent";
  EXPECT_EQ(catalog->ListPendingRemovals()->size(), 2u);
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

TEST(CatalogSecrets, SecretsAuthenticateAfterReopeningWithTheSameKeyAndNotWithAnother) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  const std::string admin_secret = "an-operator-chosen-admin-secret";
  std::string minted;
  {
    auto catalog = OpenOrDie(path, WithKey(kSecretKey));
    ASSERT_TRUE(catalog->CreateProject("shop").ok());
    minted = MintOrDie(*catalog, "shop", {.read = {"*"}});
    ASSERT_TRUE(catalog->EnsureAdminSecret(admin_secret).ok());
  }
  {
    auto other = OpenOrDie(path, WithKey(kOtherSecretKey));
    for (const std::string& secret : {minted, admin_secret}) {
      EXPECT_EQ(other->ResolveSecret(secret).status().code(), StatusCode::kUnauthenticated);
    }
  }
  auto catalog = OpenOrDie(path, WithKey(kSecretKey));
  EXPECT_TRUE(ResolveOrDie(*catalog, admin_secret).is_admin);
  Principal reader = ResolveOrDie(*catalog, minted);
  EXPECT_FALSE(reader.is_admin);
  EXPECT_EQ(reader.grants.size(), 1u);
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

TEST(CatalogSecrets, MintedSecretsArePrefixedAndUnique) {
  auto catalog = OpenOrDie(":memory:");
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  std::string first = MintOrDie(*catalog, "shop", {.read = {"*"}});
  std::string second = MintOrDie(*catalog, "shop", {.read = {"*"}});
  EXPECT_TRUE(first.starts_with("aq_")) << first;
  EXPECT_GE(first.size(), 3u + 43u);  // 32 bytes are at least 43 base58 digits
  EXPECT_NE(first, second);
  EXPECT_NE(ResolveOrDie(*catalog, first).secret_id, ResolveOrDie(*catalog, second).secret_id);
}

TEST(CatalogSecrets, AWrongOrRevokedSecretIsUnauthenticated) {
  auto catalog = OpenOrDie(":memory:");
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  std::string secret = MintOrDie(*catalog, "shop", {.manage = true});
  EXPECT_EQ(catalog->ResolveSecret("aq_wrong").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(catalog->ResolveSecret("").status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(catalog->ResolveSecret(secret + "x").status().code(), StatusCode::kUnauthenticated);
  Principal principal = ResolveOrDie(*catalog, secret);
  EXPECT_FALSE(principal.is_admin);
  ASSERT_EQ(principal.grants.size(), 1u);
  EXPECT_EQ(principal.grants[0].permission, Permission::kManage);
  EXPECT_EQ(principal.grants[0].table, "*");

  ASSERT_TRUE(catalog->DeleteSecret(principal.secret_id).ok());
  EXPECT_EQ(catalog->ResolveSecret(secret).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(catalog->DeleteSecret(principal.secret_id).code(), StatusCode::kNotFound);
}

TEST(CatalogSecrets, EnsureAdminSecretCreatesOnceOrInstallsTheGivenOne) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto catalog = OpenOrDie(path);
  auto created = catalog->EnsureAdminSecret(std::nullopt);
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(created->has_value());
  EXPECT_TRUE(ResolveOrDie(*catalog, **created).is_admin);
  // A second start (after a reopen) finds it and cannot show it again.
  catalog = OpenOrDie(path);
  auto again = catalog->EnsureAdminSecret(std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  EXPECT_TRUE(ResolveOrDie(*catalog, **created).is_admin);

  // AQUIFER_ADMIN_SECRET replaces it.
  const std::string given = "operator-chosen-admin-secret";
  auto set = catalog->EnsureAdminSecret(given);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->value_or(""), given);
  EXPECT_TRUE(ResolveOrDie(*catalog, given).is_admin);
  EXPECT_EQ(catalog->ResolveSecret(**created).status().code(), StatusCode::kUnauthenticated);
  // Setting the same one again changes nothing.
  Uuid id = ResolveOrDie(*catalog, given).secret_id;
  ASSERT_TRUE(catalog->EnsureAdminSecret(given).ok());
  EXPECT_EQ(ResolveOrDie(*catalog, given).secret_id, id);
  RawDb raw(path);
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM secrets WHERE is_admin = 1"), "1");

  auto short_secret = catalog->EnsureAdminSecret(std::string("short"));
  EXPECT_EQ(short_secret.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ResolveOrDie(*catalog, given).is_admin);
}

TEST(CatalogSecrets, MintingChecksTheGrantList) {
  auto catalog = OpenOrDie(":memory:");
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  ASSERT_TRUE(catalog->CreateTable("shop", Spec("orders")).ok());
  EXPECT_EQ(catalog->MintSecret("shop", {}).status().code(), StatusCode::kInvalidArgument);
  auto missing = catalog->MintSecret("shop", {.read = {"orders", "ghost"}});
  EXPECT_EQ(missing.status(), TableNotFound("shop", "ghost"));
  EXPECT_EQ(catalog->MintSecret("shop", {.write = {"Bad"}}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->MintSecret("nope", {.read = {"*"}}).status().code(), StatusCode::kNotFound);

  // Duplicates collapse; the listing shows the grants but never a plaintext.
  std::string secret = MintOrDie(*catalog, "shop", {.read = {"orders", "orders", "*"},
                                                    .write = {"orders"}});
  auto secrets = catalog->ListSecrets("shop");
  ASSERT_TRUE(secrets.ok());
  ASSERT_EQ(secrets->size(), 1u);
  const SecretInfo& info = (*secrets)[0];
  EXPECT_EQ(info.secret_id, ResolveOrDie(*catalog, secret).secret_id);
  ASSERT_EQ(info.grants.size(), 3u);
  std::vector<std::string> described;
  for (const Grant& grant : info.grants) {
    described.push_back(std::string(PermissionName(grant.permission)) + ":" + grant.table);
  }
  EXPECT_THAT(described,
              ::testing::UnorderedElementsAre("read:*", "read:orders", "write:orders"));
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

// --- Authorization ---------------------------------------------------------------------------

// Projects shop (orders, users; later also returns) and other (stock), and a
// secret of each kind the matrix covers, resolved before `returns` exists.
class CatalogAuthorization : public ::testing::Test {
 protected:
  void SetUp() override {
    catalog_ = OpenOrDie(":memory:");
    ASSERT_TRUE(catalog_->CreateProject("shop").ok());
    ASSERT_TRUE(catalog_->CreateProject("other").ok());
    ASSERT_TRUE(catalog_->CreateTable("shop", Spec("orders")).ok());
    ASSERT_TRUE(catalog_->CreateTable("shop", Spec("users")).ok());
    ASSERT_TRUE(catalog_->CreateTable("other", Spec("stock")).ok());
    auto admin = catalog_->EnsureAdminSecret(std::nullopt);
    ASSERT_TRUE(admin.ok() && admin->has_value());
    principals_["admin"] = ResolveOrDie(*catalog_, **admin);
    Add("manage", "shop", {.manage = true});
    Add("read_orders", "shop", {.read = {"orders"}});
    Add("read_star", "shop", {.read = {"*"}});
    Add("write_users", "shop", {.write = {"users"}});
    Add("other_manage", "other", {.manage = true});
    ASSERT_TRUE(catalog_->CreateTable("shop", Spec("returns")).ok());
  }

  void Add(const std::string& who, const std::string& project, const SecretGrants& grants) {
    principals_[who] = ResolveOrDie(*catalog_, MintOrDie(*catalog_, project, grants));
  }

  Status Check(const std::string& who, const std::string& project, const std::string& table,
               Permission permission) {
    return catalog_->Authorize(principals_.at(who), project, table, permission);
  }

  std::unique_ptr<Catalog> catalog_;
  std::map<std::string, Principal> principals_;
};

// Expected outcome per permission, as a 3-letter code: read, write, manage.
// 'y' = OK, 'n' = NotFound, 'd' = PermissionDenied.
struct MatrixRow {
  const char* who;
  const char* project;
  const char* table;  // "" = the project itself
  const char* expected;
};

TEST_F(CatalogAuthorization, TheMatrixOfPrincipalsTargetsAndPermissionsHolds) {
  const MatrixRow rows[] = {
      {"admin", "shop", "orders", "yyy"},
      {"admin", "shop", "returns", "yyy"},
      {"admin", "shop", "", "yyy"},
      {"admin", "other", "stock", "yyy"},
      {"admin", "shop", "ghost", "nnn"},
      {"admin", "ghost", "", "nnn"},

      {"manage", "shop", "orders", "yyy"},
      {"manage", "shop", "returns", "yyy"},  // created after the secret
      {"manage", "shop", "", "yyy"},
      {"manage", "shop", "ghost", "nnn"},
      {"manage", "other", "stock", "nnn"},
      {"manage", "other", "", "nnn"},

      {"read_orders", "shop", "orders", "ydd"},
      {"read_orders", "shop", "users", "nnn"},
      {"read_orders", "shop", "returns", "nnn"},
      {"read_orders", "shop", "", "ddd"},  // sees the project, holds no project-level grant
      {"read_orders", "other", "stock", "nnn"},
      {"read_orders", "other", "", "nnn"},

      {"read_star", "shop", "orders", "ydd"},
      {"read_star", "shop", "returns", "ydd"},  // "*" covers tables created later
      {"read_star", "shop", "", "ydd"},
      {"read_star", "shop", "ghost", "nnn"},
      {"read_star", "other", "stock", "nnn"},

      {"write_users", "shop", "users", "dyd"},
      {"write_users", "shop", "orders", "nnn"},
      {"write_users", "shop", "", "ddd"},

      {"other_manage", "other", "stock", "yyy"},
      {"other_manage", "other", "", "yyy"},
      {"other_manage", "shop", "orders", "nnn"},
      {"other_manage", "shop", "", "nnn"},
  };
  const Permission permissions[] = {Permission::kRead, Permission::kWrite, Permission::kManage};
  for (const MatrixRow& row : rows) {
    for (int idx = 0; idx < 3; ++idx) {
      Status status = Check(row.who, row.project, row.table, permissions[idx]);
      StatusCode expected = row.expected[idx] == 'y'   ? StatusCode::kOk
                            : row.expected[idx] == 'n' ? StatusCode::kNotFound
                                                       : StatusCode::kPermissionDenied;
      EXPECT_EQ(status.code(), expected)
          << row.who << " " << PermissionName(permissions[idx]) << " " << row.project << "."
          << row.table << ": " << status.ToString();
    }
  }
}

TEST_F(CatalogAuthorization, AnInvisibleTableAnswersExactlyLikeAMissingOne) {
  // read_orders cannot see shop.users; after users is deleted the answer must not change.
  Status invisible = Check("read_orders", "shop", "users", Permission::kRead);
  Status invisible_project = Check("other_manage", "shop", "users", Permission::kRead);
  EXPECT_EQ(invisible, TableNotFound("shop", "users"));
  EXPECT_EQ(invisible_project, invisible);
  ASSERT_TRUE(catalog_->DeleteTable("shop", "users").ok());
  EXPECT_EQ(Check("read_orders", "shop", "users", Permission::kRead), invisible);
  EXPECT_EQ(Check("admin", "shop", "users", Permission::kRead), invisible);
  EXPECT_EQ(catalog_->GetTable("shop", "users").status(), invisible);

  // Likewise for a project the secret cannot see, at project level.
  Status hidden_project = Check("other_manage", "shop", "", Permission::kRead);
  EXPECT_EQ(hidden_project, ProjectNotFound("shop"));
  EXPECT_EQ(Check("other_manage", "nosuch", "", Permission::kRead), ProjectNotFound("nosuch"));
  EXPECT_EQ(catalog_->GetProject("nosuch").status(), ProjectNotFound("nosuch"));
}

TEST_F(CatalogAuthorization, PermissionDeniedNamesTheTargetTheSecretCanSee) {
  Status denied = Check("read_orders", "shop", "orders", Permission::kWrite);
  EXPECT_EQ(denied.code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), HasSubstr("write"));
  EXPECT_THAT(denied.message(), HasSubstr("shop.orders"));
}

TEST_F(CatalogAuthorization, AStarGrantResolvedEarlierCoversATableCreatedLater) {
  Principal early = principals_.at("read_star");
  ASSERT_TRUE(catalog_->CreateTable("shop", Spec("refunds")).ok());
  EXPECT_TRUE(catalog_->Authorize(early, "shop", "refunds", Permission::kRead).ok());
  EXPECT_EQ(catalog_->Authorize(principals_.at("read_orders"), "shop", "refunds",
                                Permission::kRead)
                .code(),
            StatusCode::kNotFound);
}

TEST_F(CatalogAuthorization, ATableGrantDoesNotCarryOverToARecreatedTable) {
  ASSERT_TRUE(catalog_->DeleteTable("shop", "orders").ok());
  ASSERT_TRUE(catalog_->CreateTable("shop", Spec("orders")).ok());
  // Resolved again: the grant on the old table went with it.
  Principal fresh = principals_.at("read_orders");
  auto secrets = catalog_->ListSecrets("shop");
  ASSERT_TRUE(secrets.ok());
  for (const SecretInfo& info : *secrets) {
    if (info.secret_id == fresh.secret_id) fresh.grants = info.grants;
  }
  EXPECT_TRUE(fresh.grants.empty());
  EXPECT_EQ(catalog_->Authorize(fresh, "shop", "orders", Permission::kRead).code(),
            StatusCode::kNotFound);
  // A stale principal's grant names the old table id, which no longer matches.
  EXPECT_EQ(Check("read_orders", "shop", "orders", Permission::kRead).code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(Check("read_star", "shop", "orders", Permission::kRead).ok());
}

// --- Jobs ------------------------------------------------------------------------------------

TEST_F(CatalogAuthorization, OnlyTheSubmitterWhileItCanReadAndTheAdminSeeAJob) {
  auto orders = catalog_->GetTable("shop", "orders");
  ASSERT_TRUE(orders.ok());
  const Principal& submitter = principals_.at("read_orders");
  auto job = catalog_->CreateJob({.secret_id = submitter.secret_id,
                                  .tables = {{"shop", "orders", orders->primary.instance_id}},
                                  .sql = "SELECT COUNT(*) FROM shop.orders"});
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->status, driver::JobStatus::kPending);

  auto stored = catalog_->GetJob(job->job_id);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->secret_id, submitter.secret_id);
  EXPECT_EQ(stored->sql, "SELECT COUNT(*) FROM shop.orders");
  ASSERT_EQ(stored->tables.size(), 1u);
  EXPECT_EQ(stored->tables[0], (JobTable{"shop", "orders", orders->primary.instance_id}));

  EXPECT_TRUE(catalog_->CanReadJob(submitter, *stored).ok());
  EXPECT_TRUE(catalog_->CanReadJob(principals_.at("admin"), *stored).ok());
  Status unknown = catalog_->GetJob(Uuid::Random()).status();
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound);
  for (const char* other : {"read_star", "manage", "other_manage", "write_users"}) {
    Status status = catalog_->CanReadJob(principals_.at(other), *stored);
    EXPECT_EQ(status.code(), StatusCode::kNotFound) << other;
    EXPECT_EQ(status.message(), fmt::format("job {} not found", job->job_id.ToString()));
  }
  // Once the submitter may no longer read a table of the job, it loses the job too.
  ASSERT_TRUE(catalog_->DeleteTable("shop", "orders").ok());
  EXPECT_EQ(catalog_->CanReadJob(submitter, *stored).code(), StatusCode::kNotFound);
  EXPECT_TRUE(catalog_->CanReadJob(principals_.at("admin"), *stored).ok());
}

TEST_F(CatalogAuthorization, JobStatusMovesForwardAndFinishedJobsAreFrozen) {
  auto job = catalog_->CreateJob(
      {.secret_id = principals_.at("admin").secret_id, .tables = {}, .sql = "SELECT 1"});
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(catalog_->UpdateJob(job->job_id, {.status = driver::JobStatus::kRunning}).ok());
  EXPECT_EQ(catalog_->UpdateJob(job->job_id, {.status = driver::JobStatus::kPending}).code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(catalog_
                  ->UpdateJob(job->job_id, {.status = driver::JobStatus::kDone,
                                            .bytes_scanned = 4096,
                                            .rows = 1})
                  .ok());
  auto done = catalog_->GetJob(job->job_id);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->status, driver::JobStatus::kDone);
  EXPECT_EQ(done->bytes_scanned, 4096);
  EXPECT_EQ(done->rows, 1);
  EXPECT_TRUE(done->tables.empty());
  EXPECT_EQ(catalog_
                ->UpdateJob(job->job_id,
                            {.status = driver::JobStatus::kFailed, .error = "too late"})
                .code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(catalog_->UpdateJob(Uuid::Random(), {.status = driver::JobStatus::kRunning}).code(),
            StatusCode::kNotFound);

  auto failing = catalog_->CreateJob(
      {.secret_id = principals_.at("admin").secret_id, .tables = {}, .sql = "SELECT x"});
  ASSERT_TRUE(failing.ok());
  ASSERT_TRUE(catalog_
                  ->UpdateJob(failing->job_id, {.status = driver::JobStatus::kFailed,
                                                .error = "column x not found"})
                  .ok());
  EXPECT_EQ(catalog_->GetJob(failing->job_id)->error, "column x not found");
  EXPECT_EQ(catalog_->CreateJob({.secret_id = Uuid::Random(), .tables = {}, .sql = ""})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
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
constexpr int64_t kMsToMicros = 1000;  // ManualClock::Advance takes microseconds

// Claims and commits `key` as write `write_id`; answers the claim's state before committing.
ClaimState ClaimAndCommit(Catalog& catalog, const Uuid& secret, std::string_view key,
                          std::string_view write_id) {
  auto claim = catalog.ClaimIdempotencyKey(secret, key, write_id, "owner-a", kLeaseMs);
  EXPECT_TRUE(claim.ok()) << claim.status().ToString();
  if (!claim.ok()) return ClaimState::kPending;
  if (claim->state == ClaimState::kClaimed) {
    Status committed = catalog.CommitIdempotencyKey(secret, key, write_id);
    EXPECT_TRUE(committed.ok()) << committed.ToString();
  }
  return claim->state;
}

TEST(CatalogIdempotency, ACommittedKeyTakesEffectOncePerSecretForADay) {
  ManualClock clock;
  auto catalog = OpenOrDie(":memory:", {.clock = &clock});
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  Uuid alice = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;
  Uuid bob = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;

  EXPECT_EQ(ClaimAndCommit(*catalog, alice, "req-1", "w1"), ClaimState::kClaimed);
  clock.Advance(3'600'000'000LL);  // an hour later
  auto retry = catalog->ClaimIdempotencyKey(alice, "req-1", "w2", "owner-b", kLeaseMs);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->state, ClaimState::kCommitted);
  EXPECT_EQ(retry->write_id, "w1");
  // Keys are per secret.
  EXPECT_EQ(ClaimAndCommit(*catalog, bob, "req-1", "w3"), ClaimState::kClaimed);

  // After 24 hours the key is forgotten: the retry is a new write.
  clock.Advance(kIdempotencyKeyTtlMs * kMsToMicros);
  auto late = catalog->ClaimIdempotencyKey(alice, "req-1", "w4", "owner-b", kLeaseMs);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->state, ClaimState::kClaimed);
  EXPECT_EQ(late->write_id, "w4");
  ASSERT_TRUE(catalog->CommitIdempotencyKey(alice, "req-1", "w4").ok());
  EXPECT_TRUE(catalog->CommitIdempotencyKey(alice, "req-1", "w4").ok()) << "commit is idempotent";
  auto again = catalog->ClaimIdempotencyKey(alice, "req-1", "w5", "owner-b", kLeaseMs);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state, ClaimState::kCommitted);
  EXPECT_EQ(again->write_id, "w4");

  EXPECT_EQ(catalog->ClaimIdempotencyKey(alice, "", "w", "o", kLeaseMs).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->ClaimIdempotencyKey(alice, std::string(256, 'k'), "w", "o", kLeaseMs)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->ClaimIdempotencyKey(alice, "req-2", "w", "o", 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->ClaimIdempotencyKey(Uuid::Random(), "req-9", "w", "o", kLeaseMs).status().code(),
            StatusCode::kNotFound);
}

TEST(CatalogIdempotency, APendingClaimIsNeverAnsweredAsDoneAndIsReleasedWhenItsWriteFails) {
  ManualClock clock;
  auto catalog = OpenOrDie(":memory:", {.clock = &clock});
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  Uuid alice = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;

  auto first = catalog->ClaimIdempotencyKey(alice, "req-1", "w1", "owner-a", kLeaseMs);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->state, ClaimState::kClaimed);
  // A retry while the first is still publishing: pending, never committed.
  clock.Advance((kLeaseMs - 1) * kMsToMicros);
  auto retry = catalog->ClaimIdempotencyKey(alice, "req-1", "w2", "owner-b", kLeaseMs);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->state, ClaimState::kPending);
  EXPECT_EQ(retry->write_id, "w1");
  EXPECT_EQ(retry->lease_expires_ms, clock.NowMillis() + 1);

  // Releasing with another write id, or committing another write id, changes nothing.
  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w2").ok());
  EXPECT_EQ(catalog->CommitIdempotencyKey(alice, "req-1", "w2").code(), StatusCode::kAborted);
  EXPECT_EQ(catalog->ClaimIdempotencyKey(alice, "req-1", "w3", "owner-b", kLeaseMs)->state,
            ClaimState::kPending);

  // The first publish failed: released, and the retry claims it.
  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w1").ok());
  auto after = catalog->ClaimIdempotencyKey(alice, "req-1", "w4", "owner-b", kLeaseMs);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state, ClaimState::kClaimed);
  EXPECT_EQ(after->write_id, "w4");
  // The first request's late commit must not take the key back.
  EXPECT_EQ(catalog->CommitIdempotencyKey(alice, "req-1", "w1").code(), StatusCode::kAborted);
  ASSERT_TRUE(catalog->CommitIdempotencyKey(alice, "req-1", "w4").ok());
  // A committed claim is not released by a stray release.
  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w4").ok());
  auto done = catalog->ClaimIdempotencyKey(alice, "req-1", "w5", "owner-c", kLeaseMs);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state, ClaimState::kCommitted);
  EXPECT_EQ(done->write_id, "w4");
}

TEST(CatalogIdempotency, AClaimLeftByADeadProcessIsTakenOverOnceItsLeaseRunsOut) {
  ManualClock clock;
  auto catalog = OpenOrDie(":memory:", {.clock = &clock});
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  Uuid alice = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;

  // owner-a claims and dies before publishing.
  ASSERT_EQ(catalog->ClaimIdempotencyKey(alice, "req-1", "w1", "owner-a", kLeaseMs)->state,
            ClaimState::kClaimed);
  clock.Advance(kLeaseMs * kMsToMicros);
  auto takeover = catalog->ClaimIdempotencyKey(alice, "req-1", "w2", "owner-b", kLeaseMs);
  ASSERT_TRUE(takeover.ok());
  EXPECT_EQ(takeover->state, ClaimState::kClaimed);
  EXPECT_EQ(takeover->write_id, "w2");
  // The new claim has a fresh lease: another retry now waits for owner-b.
  auto third = catalog->ClaimIdempotencyKey(alice, "req-1", "w3", "owner-c", kLeaseMs);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->state, ClaimState::kPending);
  EXPECT_EQ(third->write_id, "w2");
  // owner-a's claim is gone: its commit or release cannot touch owner-b's.
  EXPECT_EQ(catalog->CommitIdempotencyKey(alice, "req-1", "w1").code(), StatusCode::kAborted);
  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w1").ok());
  ASSERT_TRUE(catalog->CommitIdempotencyKey(alice, "req-1", "w2").ok());
  // Committed claims have no lease: much later (within the day) still answered.
  clock.Advance(kLeaseMs * 100 * kMsToMicros);
  auto replay = catalog->ClaimIdempotencyKey(alice, "req-1", "w4", "owner-c", kLeaseMs);
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->state, ClaimState::kCommitted);
  EXPECT_EQ(replay->write_id, "w2");
}

TEST(CatalogIdempotency, PurgeRemovesOldCommittedKeysAndExpiredPendingClaims) {
  ManualClock clock;
  auto catalog = OpenOrDie(":memory:", {.clock = &clock});
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  Uuid secret = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;
  ClaimAndCommit(*catalog, secret, "old-1", "w1");
  ClaimAndCommit(*catalog, secret, "old-2", "w2");
  clock.Advance(kIdempotencyKeyTtlMs * kMsToMicros - 1'000'000);
  ClaimAndCommit(*catalog, secret, "new", "w3");
  ASSERT_EQ(catalog->ClaimIdempotencyKey(secret, "stuck", "w9", "dead", 500)->state,
            ClaimState::kClaimed);
  ASSERT_EQ(catalog->ClaimIdempotencyKey(secret, "live", "w8", "alive", kLeaseMs)->state,
            ClaimState::kClaimed);
  EXPECT_EQ(*catalog->PurgeIdempotencyKeys(), 0);
  clock.Advance(1'000'000);  // one second: old-1, old-2 and the stuck claim are due
  EXPECT_EQ(*catalog->PurgeIdempotencyKeys(), 3);
  EXPECT_EQ(catalog->ClaimIdempotencyKey(secret, "new", "w4", "o", kLeaseMs)->write_id, "w3");
  EXPECT_EQ(catalog->ClaimIdempotencyKey(secret, "live", "w7", "o", kLeaseMs)->state,
            ClaimState::kPending);
}

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

// --- Concurrency -----------------------------------------------------------------------------

TEST(CatalogConcurrency, FourThreadsCreateTablesAndResolveSecretsWithoutErrors) {
  TempDir dir;
  auto catalog = OpenOrDie(dir.File("catalog.db"));
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  const std::string secret = MintOrDie(*catalog, "shop", {.read = {"*"}});
  constexpr int kThreads = 4;
  constexpr int kTablesPerThread = 25;
  std::atomic<int> errors{0};
  std::vector<std::string> first_error(kThreads);
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      auto fail = [&](const Status& status) {
        if (errors.fetch_add(1) == 0) first_error[thread_idx] = status.ToString();
      };
      for (int table_idx = 0; table_idx < kTablesPerThread; ++table_idx) {
        const std::string name = fmt::format("t{}_{}", thread_idx, table_idx);
        auto created = catalog->CreateTable("shop", Spec(name));
        if (!created.ok()) fail(created.status());
        auto principal = catalog->ResolveSecret(secret);
        if (!principal.ok()) {
          fail(principal.status());
          continue;
        }
        Status allowed = catalog->Authorize(*principal, "shop", name, Permission::kRead);
        if (!allowed.ok()) fail(allowed);
        auto got = catalog->GetTable("shop", name);
        if (!got.ok()) fail(got.status());
        auto claimed = catalog->ClaimIdempotencyKey(principal->secret_id, name, name, "me", 60'000);
        if (!claimed.ok()) fail(claimed.status());
        if (claimed.ok() && claimed->state != IdempotencyClaim::State::kClaimed) {
          fail(Internal("key {} was not free", name));
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0) << ::testing::PrintToString(first_error);
  EXPECT_EQ(catalog->ListTables("shop")->size(), size_t{kThreads * kTablesPerThread});
}

TEST(CatalogConcurrency, TwoConnectionsToOneFileWaitForEachOtherInsteadOfFailing) {
  TempDir dir;
  const std::string path = dir.File("catalog.db");
  auto first = OpenOrDie(path);
  auto second = OpenOrDie(path);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::atomic<int> errors{0};
  std::string first_error;
  auto work = [&](Catalog* catalog, const std::string& prefix) {
    for (int idx = 0; idx < 30; ++idx) {
      auto created = catalog->CreateProject(fmt::format("{}{}", prefix, idx));
      if (!created.ok() && errors.fetch_add(1) == 0) first_error = created.status().ToString();
    }
  };
  std::thread a(work, first.get(), "a");
  std::thread b(work, second.get(), "b");
  a.join();
  b.join();
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_EQ(first->ListProjects()->size(), 60u);
  EXPECT_EQ(second->ListProjects()->size(), 60u);
}

}  // namespace
}  // namespace aquifer::engine
