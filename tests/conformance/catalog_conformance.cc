#include "catalog_conformance.h"

#include <gmock/gmock.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "aquifer/engine/auth.h"
#include "aquifer/schema/schema.h"

namespace aquifer::conformance {

std::string CatalogFactoryName(const ::testing::TestParamInfo<CatalogFactory>& info) {
  return info.param.name;
}

std::unique_ptr<engine::Catalog> CatalogConformance::Open(const CatalogOpenOptions& options) {
  auto catalog = GetParam().open(scratch_.path(), options);
  EXPECT_TRUE(catalog.ok()) << "opening the " << GetParam().name
                            << " catalog: " << catalog.status().ToString();
  return catalog.ok() ? std::move(*catalog) : nullptr;
}

CatalogRows CatalogConformance::Query(const std::string& sql) {
  auto rows = GetParam().query(scratch_.path(), sql);
  EXPECT_TRUE(rows.ok()) << sql << ": " << rows.status().ToString();
  return rows.ok() ? *rows : CatalogRows{};
}

std::string CatalogConformance::One(const std::string& sql) {
  CatalogRows rows = Query(sql);
  return rows.empty() || rows[0].empty() ? "" : rows[0][0];
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(CatalogConformance);

namespace {

using engine::Catalog;
using engine::Grant;
using engine::HashSecret;
using engine::IdempotencyClaim;
using engine::JobTable;
using engine::kIdempotencyKeyTtlMs;
using engine::kSecretPrefix;
using engine::LegacySecretHash;
using engine::Permission;
using engine::PermissionName;
using engine::Principal;
using engine::ProjectNotFound;
using engine::Quotas;
using engine::SecretGrants;
using engine::SecretInfo;
using engine::TableNotFound;
using engine::TableSpec;
using ::testing::HasSubstr;
using ::testing::Not;
using ClaimState = IdempotencyClaim::State;

constexpr const char* kSchema = R"({"type":"record","name":"Event","fields":[
  {"name":"user","type":"string"},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
  {"name":"amount","type":["null","double"],"default":null}]})";

constexpr char kSecretKey[] = "0123456789abcdef0123456789abcdef";
constexpr char kOtherSecretKey[] = "fedcba9876543210fedcba9876543210";
constexpr int64_t kLeaseMs = 10'000;
constexpr int64_t kMsToMicros = 1000;  // ManualClock::Advance takes microseconds

TableSpec Spec(const std::string& name) {
  TableSpec spec;
  spec.name = name;
  spec.schema_json = kSchema;
  spec.key = {"user", "ts"};
  return spec;
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

CatalogOpenOptions WithClock(Clock* clock) {
  CatalogOpenOptions options;
  options.clock = clock;
  return options;
}

CatalogOpenOptions WithKey(const std::string& key) {
  CatalogOpenOptions options;
  options.secret_key = key;
  return options;
}

// Runs body(thread index) on `threads` threads released together.
template <typename Body>
void RunTogether(int threads, Body body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (int idx = 0; idx < threads; ++idx) {
    pool.emplace_back([&, idx] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      body(idx);
    });
  }
  while (ready.load() < threads) std::this_thread::yield();
  go.store(true);
  for (auto& thread : pool) thread.join();
}

// --- Migrations ------------------------------------------------------------------------------

TEST_P(CatalogConformance, ReopeningKeepsTheDataAndRecordsEachMigrationOnce) {
  {
    auto catalog = Open();
    ASSERT_NE(catalog, nullptr);
    ASSERT_TRUE(catalog->CreateProject("shop").ok());
  }
  for (int reopen = 0; reopen < 2; ++reopen) {
    auto catalog = Open();
    ASSERT_NE(catalog, nullptr);
    EXPECT_TRUE(catalog->GetProject("shop").ok());
  }
  EXPECT_EQ(One("SELECT COUNT(*) FROM schema_version"),
            One("SELECT COUNT(DISTINCT version) FROM schema_version"));
  EXPECT_EQ(One("SELECT COUNT(*) FROM schema_version WHERE version = 1"), "1");
  EXPECT_EQ(One("SELECT MAX(version) FROM schema_version"),
            std::to_string(GetParam().schema_version));
}

TEST_P(CatalogConformance, ADatabaseFromANewerBinaryIsFailedPrecondition) {
  ASSERT_NE(Open(), nullptr);
  Query(fmt::format(
      "INSERT INTO schema_version (version, description, applied_ms) VALUES ({}, 'future', 0)",
      GetParam().schema_version + 1));
  auto reopened = GetParam().open(scratch_.path(), {});
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), StatusCode::kFailedPrecondition) << reopened.status().ToString();
  EXPECT_THAT(reopened.status().message(), HasSubstr("newer"));
}

// Several processes starting at once on a fresh database: every open succeeds
// and each migration is applied (and recorded) once.
TEST_P(CatalogConformance, ProcessesOpeningAFreshDatabaseTogetherMigrateItOnce) {
  for (int round = 0; round < 3; ++round) {
    ScratchDir fresh;
    constexpr int kOpeners = 4;
    std::vector<Status> opened(kOpeners);
    std::vector<std::unique_ptr<Catalog>> catalogs(kOpeners);
    RunTogether(kOpeners, [&](int idx) {
      auto catalog = GetParam().open(fresh.path(), {});
      opened[idx] = catalog.status();
      if (catalog.ok()) catalogs[idx] = std::move(*catalog);
    });
    for (int idx = 0; idx < kOpeners; ++idx) {
      ASSERT_TRUE(opened[idx].ok()) << "opener " << idx << ": " << opened[idx].ToString();
    }
    auto rows = GetParam().query(fresh.path(), "SELECT version FROM schema_version ORDER BY version");
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    std::set<std::string> versions;
    for (const auto& row : *rows) versions.insert(row[0]);
    EXPECT_EQ(versions.size(), rows->size()) << "a migration was recorded twice";
    EXPECT_EQ(rows->back()[0], std::to_string(GetParam().schema_version));
    // All of them work on the one database.
    ASSERT_TRUE(catalogs[0]->CreateProject("shop").ok());
    for (auto& catalog : catalogs) EXPECT_TRUE(catalog->GetProject("shop").ok());
  }
}

// --- Projects --------------------------------------------------------------------------------

TEST_P(CatalogConformance, ProjectNamesMustMatchTheRuleAndTheErrorStatesIt) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
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

TEST_P(CatalogConformance, CreatingADuplicateProjectOrTableIsAlreadyExists) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  EXPECT_EQ(catalog->CreateProject("shop").status().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(catalog->CreateTable("shop", Spec("orders")).ok());
  auto again = catalog->CreateTable("shop", Spec("orders"));
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("shop.orders"));
  ASSERT_TRUE(catalog->CreateProject("other").ok());
  EXPECT_TRUE(catalog->CreateTable("other", Spec("orders")).ok());
}

TEST_P(CatalogConformance, GetAndListProjectsAnswerWhatExistsByName) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  EXPECT_EQ(catalog->GetProject("nope").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(catalog->CreateProject("zeta").ok());
  auto alpha = catalog->CreateProject("alpha");
  ASSERT_TRUE(alpha.ok());
  auto got = catalog->GetProject("alpha");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->project_id, alpha->project_id);
  EXPECT_EQ(got->created_ms, alpha->created_ms);
  auto list = catalog->ListProjects();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "alpha");
  EXPECT_EQ((*list)[1].name, "zeta");
}

TEST_P(CatalogConformance, DeletingAProjectCascadesAndReturnsItsInstances) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
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
  EXPECT_TRUE(catalog->GetInstance(kept->primary.instance_id).ok());
  EXPECT_TRUE(catalog->ResolveSecret(keep_secret).ok());

  EXPECT_EQ(One("SELECT COUNT(*) FROM tables"), "1");
  EXPECT_EQ(One("SELECT COUNT(*) FROM instances"), "1");
  EXPECT_EQ(One("SELECT COUNT(*) FROM secrets"), "1");
  EXPECT_EQ(One("SELECT COUNT(*) FROM grants"), "1");
  EXPECT_EQ(One("SELECT COUNT(*) FROM idempotency_keys"), "0");
}

TEST_P(CatalogConformance, QuotasStartUnlimitedAndRoundTrip) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  auto quotas = catalog->GetProjectQuotas("shop");
  ASSERT_TRUE(quotas.ok());
  EXPECT_EQ(*quotas, Quotas{});
  Quotas limits{.read_bytes = 1'000, .write_bytes = 0, .scan_bytes = std::nullopt};
  ASSERT_TRUE(catalog->SetProjectQuotas("shop", limits).ok());
  EXPECT_EQ(*catalog->GetProjectQuotas("shop"), limits);
  EXPECT_EQ(catalog->GetProject("shop")->quotas, limits);
  // Another process sees them.
  EXPECT_EQ(*Open()->GetProjectQuotas("shop"), limits);

  Status negative = catalog->SetProjectQuotas("shop", {.scan_bytes = -1});
  EXPECT_EQ(negative.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(negative.message(), HasSubstr("scan quota"));
  EXPECT_EQ(*catalog->GetProjectQuotas("shop"), limits);
  EXPECT_EQ(catalog->SetProjectQuotas("nope", limits).code(), StatusCode::kNotFound);
  EXPECT_EQ(catalog->GetProjectQuotas("nope").status().code(), StatusCode::kNotFound);
}

// --- Tables ----------------------------------------------------------------------------------

TEST_P(CatalogConformance, CreateTableStoresTheCanonicalSchemaAndAPrimaryInstance) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
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
  EXPECT_EQ(One("SELECT avro_json FROM instances"), (*expected)->avro_json());
  catalog.reset();
  catalog = Open();
  auto reloaded = catalog->GetTable("shop", "orders");
  ASSERT_TRUE(reloaded.ok()) << reloaded.status().ToString();
  EXPECT_EQ(reloaded->primary.schema->avro_json(), (*expected)->avro_json());
  EXPECT_FALSE(reloaded->primary.use_warehouse);
  EXPECT_EQ(reloaded->primary.log_retention_ms, 86'400'000);
  EXPECT_EQ(reloaded->primary.schema->key()[0].name, "user");
  EXPECT_EQ(catalog->GetInstance(primary.instance_id)->schema.get(),
            reloaded->primary.schema.get());
}

TEST_P(CatalogConformance, SchemaErrorsSurfaceWithTheFieldPath) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
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

TEST_P(CatalogConformance, ListTablesIsPerProjectAndDeleteReturnsTheRemovedInstances) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
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

  auto again = catalog->CreateTable("shop", Spec("orders"));
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->table_id, orders->table_id);
  EXPECT_NE(again->primary.instance_id, orders->primary.instance_id);
}

TEST_P(CatalogConformance, DeletionsRecordPendingRemovalsUntilFinishedAcrossReopening) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
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
  catalog = Open();  // a crash before the stores' removal keeps the record
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
  ASSERT_TRUE(catalog->AddPendingRemoval(orders->primary).ok());
  ASSERT_TRUE(catalog->AddPendingRemoval(orders->primary).ok()) << "idempotent";
  EXPECT_EQ(catalog->ListPendingRemovals()->size(), 2u);
}

// --- Secrets ---------------------------------------------------------------------------------

TEST_P(CatalogConformance, SecretsAreStoredOnlyAsTheirHmacUnderTheSecretKey) {
  auto catalog = Open(WithKey(kSecretKey));
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  ASSERT_TRUE(catalog->CreateTable("shop", Spec("orders")).ok());
  std::string minted = MintOrDie(*catalog, "shop", {.read = {"orders"}});
  const std::string admin_secret = "correct horse battery staple";
  ASSERT_TRUE(catalog->EnsureAdminSecret(admin_secret).ok());

  auto rows = Query("SELECT id, hash, is_admin, project_id, hash_kind FROM secrets ORDER BY is_admin");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0][1], HashSecret(kSecretKey, minted));
  EXPECT_EQ(rows[1][1], HashSecret(kSecretKey, admin_secret));
  EXPECT_EQ(rows[0][4], "hmac");
  EXPECT_EQ(rows[1][4], "hmac");
  for (const std::string& secret : {minted, admin_secret}) {
    const std::string body =
        secret.starts_with(kSecretPrefix) ? secret.substr(kSecretPrefix.size()) : secret;
    for (const auto& row : rows) {
      for (const auto& cell : row) {
        EXPECT_THAT(cell, Not(HasSubstr(body)));
        EXPECT_THAT(cell, Not(HasSubstr(LegacySecretHash(secret))));
      }
    }
  }
  EXPECT_EQ(LegacySecretHash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231, test case 2.
  EXPECT_EQ(HashSecret("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_NE(HashSecret(kSecretKey, "abc"), HashSecret(kOtherSecretKey, "abc"));
}

TEST_P(CatalogConformance, SecretsAuthenticateAfterReopeningWithTheSameKeyAndNotWithAnother) {
  const std::string admin_secret = "an-operator-chosen-admin-secret";
  std::string minted;
  {
    auto catalog = Open(WithKey(kSecretKey));
    ASSERT_NE(catalog, nullptr);
    ASSERT_TRUE(catalog->CreateProject("shop").ok());
    minted = MintOrDie(*catalog, "shop", {.read = {"*"}});
    ASSERT_TRUE(catalog->EnsureAdminSecret(admin_secret).ok());
  }
  {
    auto other = Open(WithKey(kOtherSecretKey));
    ASSERT_NE(other, nullptr);
    for (const std::string& secret : {minted, admin_secret}) {
      EXPECT_EQ(other->ResolveSecret(secret).status().code(), StatusCode::kUnauthenticated);
    }
  }
  auto catalog = Open(WithKey(kSecretKey));
  ASSERT_NE(catalog, nullptr);
  EXPECT_TRUE(ResolveOrDie(*catalog, admin_secret).is_admin);
  Principal reader = ResolveOrDie(*catalog, minted);
  EXPECT_FALSE(reader.is_admin);
  EXPECT_EQ(reader.grants.size(), 1u);
}

TEST_P(CatalogConformance, MintedSecretsArePrefixedAndUnique) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  std::string first = MintOrDie(*catalog, "shop", {.read = {"*"}});
  std::string second = MintOrDie(*catalog, "shop", {.read = {"*"}});
  EXPECT_TRUE(first.starts_with("aq_")) << first;
  EXPECT_GE(first.size(), 3u + 43u);
  EXPECT_NE(first, second);
  EXPECT_NE(ResolveOrDie(*catalog, first).secret_id, ResolveOrDie(*catalog, second).secret_id);
}

TEST_P(CatalogConformance, AWrongOrRevokedSecretIsUnauthenticated) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
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

  // Revoked through another process: this one stops accepting it at once.
  ASSERT_TRUE(Open()->DeleteSecret(principal.secret_id).ok());
  EXPECT_EQ(catalog->ResolveSecret(secret).status().code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(catalog->DeleteSecret(principal.secret_id).code(), StatusCode::kNotFound);
}

TEST_P(CatalogConformance, EnsureAdminSecretCreatesOnceOrInstallsTheGivenOne) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  auto created = catalog->EnsureAdminSecret(std::nullopt);
  ASSERT_TRUE(created.ok());
  ASSERT_TRUE(created->has_value());
  EXPECT_TRUE(ResolveOrDie(*catalog, **created).is_admin);
  catalog = Open();
  auto again = catalog->EnsureAdminSecret(std::nullopt);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
  EXPECT_TRUE(ResolveOrDie(*catalog, **created).is_admin);

  const std::string given = "operator-chosen-admin-secret";
  auto set = catalog->EnsureAdminSecret(given);
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->value_or(""), given);
  EXPECT_TRUE(ResolveOrDie(*catalog, given).is_admin);
  EXPECT_EQ(catalog->ResolveSecret(**created).status().code(), StatusCode::kUnauthenticated);
  Uuid id = ResolveOrDie(*catalog, given).secret_id;
  ASSERT_TRUE(catalog->EnsureAdminSecret(given).ok());
  EXPECT_EQ(ResolveOrDie(*catalog, given).secret_id, id);
  EXPECT_EQ(One("SELECT COUNT(*) FROM secrets WHERE is_admin"), "1");

  auto short_secret = catalog->EnsureAdminSecret(std::string("short"));
  EXPECT_EQ(short_secret.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ResolveOrDie(*catalog, given).is_admin);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  std::string project_secret = MintOrDie(*catalog, "shop", {.manage = true});
  EXPECT_EQ(catalog->EnsureAdminSecret(project_secret).status().code(), StatusCode::kAlreadyExists);
}

TEST_P(CatalogConformance, MintingChecksTheGrantList) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  ASSERT_TRUE(catalog->CreateTable("shop", Spec("orders")).ok());
  EXPECT_EQ(catalog->MintSecret("shop", {}).status().code(), StatusCode::kInvalidArgument);
  auto missing = catalog->MintSecret("shop", {.read = {"orders", "ghost"}});
  EXPECT_EQ(missing.status(), TableNotFound("shop", "ghost"));
  EXPECT_EQ(catalog->MintSecret("shop", {.write = {"Bad"}}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(catalog->MintSecret("nope", {.read = {"*"}}).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(One("SELECT COUNT(*) FROM secrets"), "0") << "a refused mint stores nothing";

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
  EXPECT_EQ(catalog->ListSecrets("nope").status().code(), StatusCode::kNotFound);
}

// --- Authorization ---------------------------------------------------------------------------

// Projects shop (orders, users; later also returns) and other (stock), and a
// secret of each kind the matrix covers, resolved before `returns` exists.
struct World {
  std::unique_ptr<Catalog> catalog;
  std::map<std::string, Principal> principals;

  void Add(const std::string& who, const std::string& project, const SecretGrants& grants) {
    principals[who] = ResolveOrDie(*catalog, MintOrDie(*catalog, project, grants));
  }
  Status Check(const std::string& who, const std::string& project, const std::string& table,
               Permission permission) {
    return catalog->Authorize(principals.at(who), project, table, permission);
  }
};

void Build(World* world, std::unique_ptr<Catalog> catalog) {
  ASSERT_NE(catalog, nullptr);
  world->catalog = std::move(catalog);
  Catalog& c = *world->catalog;
  ASSERT_TRUE(c.CreateProject("shop").ok());
  ASSERT_TRUE(c.CreateProject("other").ok());
  ASSERT_TRUE(c.CreateTable("shop", Spec("orders")).ok());
  ASSERT_TRUE(c.CreateTable("shop", Spec("users")).ok());
  ASSERT_TRUE(c.CreateTable("other", Spec("stock")).ok());
  auto admin = c.EnsureAdminSecret(std::nullopt);
  ASSERT_TRUE(admin.ok() && admin->has_value());
  world->principals["admin"] = ResolveOrDie(c, **admin);
  world->Add("manage", "shop", {.manage = true});
  world->Add("read_orders", "shop", {.read = {"orders"}});
  world->Add("read_star", "shop", {.read = {"*"}});
  world->Add("write_users", "shop", {.write = {"users"}});
  world->Add("other_manage", "other", {.manage = true});
  ASSERT_TRUE(c.CreateTable("shop", Spec("returns")).ok());
}

struct MatrixRow {
  const char* who;
  const char* project;
  const char* table;
  const char* expected;  // read, write, manage: y = OK, n = NotFound, d = PermissionDenied
};

TEST_P(CatalogConformance, TheAuthorizationMatrixHolds) {
  World w;
  Build(&w, Open());
  if (HasFatalFailure()) return;
  const MatrixRow rows[] = {
      {"admin", "shop", "orders", "yyy"},        {"admin", "shop", "returns", "yyy"},
      {"admin", "shop", "", "yyy"},              {"admin", "other", "stock", "yyy"},
      {"admin", "shop", "ghost", "nnn"},         {"admin", "ghost", "", "nnn"},
      {"manage", "shop", "orders", "yyy"},       {"manage", "shop", "returns", "yyy"},
      {"manage", "shop", "", "yyy"},             {"manage", "shop", "ghost", "nnn"},
      {"manage", "other", "stock", "nnn"},       {"manage", "other", "", "nnn"},
      {"read_orders", "shop", "orders", "ydd"},  {"read_orders", "shop", "users", "nnn"},
      {"read_orders", "shop", "returns", "nnn"}, {"read_orders", "shop", "", "ddd"},
      {"read_orders", "other", "stock", "nnn"},  {"read_orders", "other", "", "nnn"},
      {"read_star", "shop", "orders", "ydd"},    {"read_star", "shop", "returns", "ydd"},
      {"read_star", "shop", "", "ydd"},          {"read_star", "shop", "ghost", "nnn"},
      {"read_star", "other", "stock", "nnn"},    {"write_users", "shop", "users", "dyd"},
      {"write_users", "shop", "orders", "nnn"},  {"write_users", "shop", "", "ddd"},
      {"other_manage", "other", "stock", "yyy"}, {"other_manage", "other", "", "yyy"},
      {"other_manage", "shop", "orders", "nnn"}, {"other_manage", "shop", "", "nnn"},
  };
  const Permission permissions[] = {Permission::kRead, Permission::kWrite, Permission::kManage};
  for (const MatrixRow& row : rows) {
    for (int idx = 0; idx < 3; ++idx) {
      Status status = w.Check(row.who, row.project, row.table, permissions[idx]);
      StatusCode expected = row.expected[idx] == 'y'   ? StatusCode::kOk
                            : row.expected[idx] == 'n' ? StatusCode::kNotFound
                                                       : StatusCode::kPermissionDenied;
      EXPECT_EQ(status.code(), expected)
          << row.who << " " << PermissionName(permissions[idx]) << " " << row.project << "."
          << row.table << ": " << status.ToString();
    }
  }
}

TEST_P(CatalogConformance, AnInvisibleTableAnswersExactlyLikeAMissingOne) {
  World w;
  Build(&w, Open());
  if (HasFatalFailure()) return;
  Status invisible = w.Check("read_orders", "shop", "users", Permission::kRead);
  Status invisible_project = w.Check("other_manage", "shop", "users", Permission::kRead);
  EXPECT_EQ(invisible, TableNotFound("shop", "users"));
  EXPECT_EQ(invisible_project, invisible);
  ASSERT_TRUE(w.catalog->DeleteTable("shop", "users").ok());
  EXPECT_EQ(w.Check("read_orders", "shop", "users", Permission::kRead), invisible);
  EXPECT_EQ(w.Check("admin", "shop", "users", Permission::kRead), invisible);
  EXPECT_EQ(w.catalog->GetTable("shop", "users").status(), invisible);
  EXPECT_EQ(w.Check("other_manage", "shop", "", Permission::kRead), ProjectNotFound("shop"));
  EXPECT_EQ(w.Check("other_manage", "nosuch", "", Permission::kRead), ProjectNotFound("nosuch"));
  EXPECT_EQ(w.catalog->GetProject("nosuch").status(), ProjectNotFound("nosuch"));
  Status denied = w.Check("read_orders", "shop", "orders", Permission::kWrite);
  EXPECT_EQ(denied.code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.message(), HasSubstr("write"));
  EXPECT_THAT(denied.message(), HasSubstr("shop.orders"));
}

TEST_P(CatalogConformance, StarGrantsCoverLaterTablesAndTableGrantsDieWithTheirTable) {
  World w;
  Build(&w, Open());
  if (HasFatalFailure()) return;
  Principal early = w.principals.at("read_star");
  ASSERT_TRUE(w.catalog->CreateTable("shop", Spec("refunds")).ok());
  EXPECT_TRUE(w.catalog->Authorize(early, "shop", "refunds", Permission::kRead).ok());
  EXPECT_EQ(w.Check("read_orders", "shop", "refunds", Permission::kRead).code(),
            StatusCode::kNotFound);

  ASSERT_TRUE(w.catalog->DeleteTable("shop", "orders").ok());
  ASSERT_TRUE(w.catalog->CreateTable("shop", Spec("orders")).ok());
  Principal fresh = w.principals.at("read_orders");
  auto secrets = w.catalog->ListSecrets("shop");
  ASSERT_TRUE(secrets.ok());
  for (const SecretInfo& info : *secrets) {
    if (info.secret_id == fresh.secret_id) fresh.grants = info.grants;
  }
  EXPECT_TRUE(fresh.grants.empty());
  EXPECT_EQ(w.catalog->Authorize(fresh, "shop", "orders", Permission::kRead).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(w.Check("read_orders", "shop", "orders", Permission::kRead).code(),
            StatusCode::kNotFound);
  EXPECT_TRUE(w.Check("read_star", "shop", "orders", Permission::kRead).ok());
}

// --- Jobs ------------------------------------------------------------------------------------

TEST_P(CatalogConformance, OnlyTheSubmitterWhileItCanReadAndTheAdminSeeAJob) {
  World w;
  Build(&w, Open());
  if (HasFatalFailure()) return;
  auto orders = w.catalog->GetTable("shop", "orders");
  ASSERT_TRUE(orders.ok());
  const Principal& submitter = w.principals.at("read_orders");
  auto job = w.catalog->CreateJob({.secret_id = submitter.secret_id,
                                   .tables = {{"shop", "orders", orders->primary.instance_id}},
                                   .sql = "SELECT COUNT(*) FROM shop.orders"});
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->status, driver::JobStatus::kPending);

  // Any process polls it.
  auto stored = Open()->GetJob(job->job_id);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->secret_id, submitter.secret_id);
  EXPECT_EQ(stored->sql, "SELECT COUNT(*) FROM shop.orders");
  EXPECT_EQ(stored->created_ms, job->created_ms);
  ASSERT_EQ(stored->tables.size(), 1u);
  EXPECT_EQ(stored->tables[0], (JobTable{"shop", "orders", orders->primary.instance_id}));

  EXPECT_TRUE(w.catalog->CanReadJob(submitter, *stored).ok());
  EXPECT_TRUE(w.catalog->CanReadJob(w.principals.at("admin"), *stored).ok());
  EXPECT_EQ(w.catalog->GetJob(Uuid::Random()).status().code(), StatusCode::kNotFound);
  for (const char* other : {"read_star", "manage", "other_manage", "write_users"}) {
    Status status = w.catalog->CanReadJob(w.principals.at(other), *stored);
    EXPECT_EQ(status.code(), StatusCode::kNotFound) << other;
    EXPECT_EQ(status.message(), fmt::format("job {} not found", job->job_id.ToString()));
  }
  ASSERT_TRUE(w.catalog->DeleteTable("shop", "orders").ok());
  EXPECT_EQ(w.catalog->CanReadJob(submitter, *stored).code(), StatusCode::kNotFound);
  EXPECT_TRUE(w.catalog->CanReadJob(w.principals.at("admin"), *stored).ok());
}

TEST_P(CatalogConformance, JobStatusMovesForwardAndFinishedJobsAreFrozen) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  const Uuid secret = Uuid::Random();
  auto job = catalog->CreateJob({.secret_id = secret, .tables = {}, .sql = "SELECT 1"});
  ASSERT_TRUE(job.ok());
  ASSERT_TRUE(catalog->UpdateJob(job->job_id, {.status = driver::JobStatus::kRunning}).ok());
  EXPECT_EQ(catalog->UpdateJob(job->job_id, {.status = driver::JobStatus::kPending}).code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(catalog
                  ->UpdateJob(job->job_id, {.status = driver::JobStatus::kDone,
                                            .bytes_scanned = 4096,
                                            .rows = 1})
                  .ok());
  auto done = catalog->GetJob(job->job_id);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->status, driver::JobStatus::kDone);
  EXPECT_EQ(done->bytes_scanned, 4096);
  EXPECT_EQ(done->rows, 1);
  EXPECT_TRUE(done->tables.empty());
  EXPECT_EQ(catalog
                ->UpdateJob(job->job_id,
                            {.status = driver::JobStatus::kFailed, .error = "too late"})
                .code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(catalog->UpdateJob(Uuid::Random(), {.status = driver::JobStatus::kRunning}).code(),
            StatusCode::kNotFound);
  EXPECT_EQ(catalog->UpdateJob(job->job_id, {.status = driver::JobStatus::kDone, .rows = -1})
                .code(),
            StatusCode::kInvalidArgument);

  auto failing = catalog->CreateJob({.secret_id = secret, .tables = {}, .sql = "SELECT x"});
  ASSERT_TRUE(failing.ok());
  ASSERT_TRUE(catalog
                  ->UpdateJob(failing->job_id, {.status = driver::JobStatus::kFailed,
                                                .error = "column x not found"})
                  .ok());
  EXPECT_EQ(catalog->GetJob(failing->job_id)->error, "column x not found");
  EXPECT_EQ(catalog->CreateJob({.secret_id = Uuid::Random(), .tables = {}, .sql = ""})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

// A running job's runner reports "running" again as a heartbeat: accepted,
// and updated_ms moves, so a poller in any process sees the job is alive.
TEST_P(CatalogConformance, RunningAgainIsAHeartbeatThatRefreshesUpdatedMs) {
  ManualClock clock;
  auto catalog = Open(WithClock(&clock));
  ASSERT_NE(catalog, nullptr);
  auto job = catalog->CreateJob({.secret_id = Uuid::Random(), .tables = {}, .sql = "SELECT 1"});
  ASSERT_TRUE(job.ok());
  clock.Advance(1'000 * kMsToMicros);
  ASSERT_TRUE(catalog->UpdateJob(job->job_id, {.status = driver::JobStatus::kRunning}).ok());
  const int64_t started = clock.NowMillis();
  EXPECT_EQ(catalog->GetJob(job->job_id)->updated_ms, started);
  clock.Advance(5'000 * kMsToMicros);
  Status beat = catalog->UpdateJob(job->job_id, {.status = driver::JobStatus::kRunning,
                                                 .bytes_scanned = 10});
  ASSERT_TRUE(beat.ok()) << beat.ToString();
  auto polled = Open(WithClock(&clock))->GetJob(job->job_id);
  ASSERT_TRUE(polled.ok());
  EXPECT_EQ(polled->status, driver::JobStatus::kRunning);
  EXPECT_EQ(polled->updated_ms, started + 5'000);
  EXPECT_EQ(polled->created_ms, job->created_ms);
  EXPECT_EQ(polled->bytes_scanned, 10);
}

// PurgeFinishedJobs deletes done and failed jobs that finished before the
// cutoff (then unknown: NotFound, their tables gone with them), and never a
// pending or running job, however old.
TEST_P(CatalogConformance, PurgeFinishedJobsDeletesOnlyJobsThatEndedBeforeTheCutoff) {
  ManualClock clock;
  auto catalog = Open(WithClock(&clock));
  ASSERT_NE(catalog, nullptr);
  const Uuid secret = Uuid::Random();
  auto make = [&](driver::JobStatus status) {
    auto job = catalog->CreateJob({.secret_id = secret,
                                   .tables = {{.project = "p", .table = "t", .instance_id = Uuid::Random()}},
                                   .sql = "SELECT 1"});
    EXPECT_TRUE(job.ok()) << job.status().ToString();
    if (status != driver::JobStatus::kPending) {
      EXPECT_TRUE(catalog->UpdateJob(job->job_id, {.status = status, .error = "e"}).ok());
    }
    return job->job_id;
  };
  const int64_t ended = clock.NowMillis();
  const Uuid old_done = make(driver::JobStatus::kDone);
  const Uuid old_failed = make(driver::JobStatus::kFailed);
  const Uuid old_pending = make(driver::JobStatus::kPending);
  const Uuid old_running = make(driver::JobStatus::kRunning);
  clock.Advance(10'000 * kMsToMicros);
  const Uuid new_done = make(driver::JobStatus::kDone);

  EXPECT_EQ(*catalog->PurgeFinishedJobs(ended), 0);  // "before": the old ones ended at `ended`
  auto purged = catalog->PurgeFinishedJobs(ended + 1);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_EQ(*purged, 2);
  auto other = Open(WithClock(&clock));  // another process sees the same
  for (const Uuid& gone : {old_done, old_failed}) {
    EXPECT_EQ(other->GetJob(gone).status().code(), StatusCode::kNotFound);
  }
  for (const Uuid& kept : {old_pending, old_running, new_done}) {
    auto job = other->GetJob(kept);
    ASSERT_TRUE(job.ok()) << job.status().ToString();
    EXPECT_EQ(job->tables.size(), 1u);
  }
  EXPECT_EQ(*catalog->PurgeFinishedJobs(ended + 1), 0);
  EXPECT_EQ(*catalog->CountUnfinishedJobs(secret), 2);
}

// Jobs answered inline (POST /v1/sql with wait_ms) are recorded finished,
// with their rows, in one commit that need not be synced; every process sees
// them; their rows expire while the job stays done.
TEST_P(CatalogConformance, FinishedJobsKeepTheirRowsForEveryProcessUntilExpired) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  const Uuid secret = Uuid::Random();
  engine::NewJob done{.secret_id = secret, .tables = {}, .sql = "SELECT 1", .max_unfinished = 1};
  done.finished = engine::NewJob::Finished{.status = driver::JobStatus::kDone, .bytes_scanned = 7, .rows = 2,
                                   .result = "[{\"name\":\"a\",\"type\":\"INTEGER\"}]\n[1]\n[2]"};
  done.sync = false;
  auto created = catalog->CreateJob(done);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->status, driver::JobStatus::kDone);
  EXPECT_TRUE(created->result_in_catalog);
  // Finished jobs do not count against the limit, and do not need a slot.
  EXPECT_EQ(*catalog->CountUnfinishedJobs(secret), 0);
  ASSERT_TRUE(catalog->CreateJob(done).ok());
  engine::NewJob failed = done;
  failed.finished = engine::NewJob::Finished{.status = driver::JobStatus::kFailed, .error = "boom", .result = "ignored"};
  auto failed_job = catalog->CreateJob(failed);
  ASSERT_TRUE(failed_job.ok()) << failed_job.status().ToString();
  EXPECT_FALSE(failed_job->result_in_catalog);
  auto pending = catalog->CreateJob({.secret_id = secret, .tables = {}, .sql = "SELECT 2"});
  ASSERT_TRUE(pending.ok());
  EXPECT_FALSE(pending->result_in_catalog);

  auto other = Open();  // another process
  auto seen = other->GetJob(created->job_id);
  ASSERT_TRUE(seen.ok()) << seen.status().ToString();
  EXPECT_EQ(seen->status, driver::JobStatus::kDone);
  EXPECT_EQ(seen->rows, 2);
  EXPECT_EQ(seen->bytes_scanned, 7);
  EXPECT_TRUE(seen->result_in_catalog);
  auto text = other->GetJobResult(created->job_id);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  ASSERT_TRUE(text->has_value());
  EXPECT_EQ(**text, done.finished->result);
  auto failed_seen = other->GetJob(failed_job->job_id);
  ASSERT_TRUE(failed_seen.ok());
  EXPECT_EQ(failed_seen->status, driver::JobStatus::kFailed);
  EXPECT_EQ(failed_seen->error, "boom");
  EXPECT_FALSE(failed_seen->result_in_catalog);
  EXPECT_EQ(other->GetJobResult(failed_job->job_id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(other->GetJobResult(pending->job_id).status().code(), StatusCode::kNotFound);
  // A finished job does not change.
  EXPECT_EQ(other->UpdateJob(created->job_id, {.status = driver::JobStatus::kRunning}).code(),
            StatusCode::kFailedPrecondition);

  // Nothing finished before this instant: nothing expires.
  EXPECT_EQ(*catalog->ExpireJobResults(created->updated_ms), 0);
  auto expired = catalog->ExpireJobResults(created->updated_ms + 1'000'000);
  ASSERT_TRUE(expired.ok()) << expired.status().ToString();
  EXPECT_EQ(*expired, 2);
  auto gone = other->GetJobResult(created->job_id);
  ASSERT_TRUE(gone.ok()) << gone.status().ToString();
  EXPECT_FALSE(gone->has_value());
  EXPECT_EQ(other->GetJob(created->job_id)->status, driver::JobStatus::kDone);
  EXPECT_EQ(*catalog->ExpireJobResults(created->updated_ms + 1'000'000), 0);
}

TEST_P(CatalogConformance, CountUnfinishedJobsCountsPendingAndRunningJobsOfOneSecret) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  const Uuid alice = Uuid::Random();
  const Uuid bob = Uuid::Random();
  std::vector<Uuid> jobs;
  for (int idx = 0; idx < 3; ++idx) {
    auto job = catalog->CreateJob({.secret_id = alice, .tables = {}, .sql = "SELECT 1"});
    ASSERT_TRUE(job.ok());
    jobs.push_back(job->job_id);
  }
  ASSERT_TRUE(catalog->CreateJob({.secret_id = bob, .tables = {}, .sql = "SELECT 2"}).ok());
  EXPECT_EQ(*catalog->CountUnfinishedJobs(alice), 3);
  ASSERT_TRUE(catalog->UpdateJob(jobs[0], {.status = driver::JobStatus::kRunning}).ok());
  EXPECT_EQ(*catalog->CountUnfinishedJobs(alice), 3);
  ASSERT_TRUE(catalog->UpdateJob(jobs[0], {.status = driver::JobStatus::kDone}).ok());
  ASSERT_TRUE(catalog->UpdateJob(jobs[1], {.status = driver::JobStatus::kFailed, .error = "x"}).ok());
  // Seen from another process too.
  EXPECT_EQ(*Open()->CountUnfinishedJobs(alice), 1);
  EXPECT_EQ(*catalog->CountUnfinishedJobs(bob), 1);
  EXPECT_EQ(*catalog->CountUnfinishedJobs(Uuid::Random()), 0);
}

// Two processes (two catalog objects on one database), three threads each,
// submit jobs for one secret at the same moment with a limit of 2 unfinished:
// exactly 2 are created, every other answer is ResourceExhausted; a finished
// job makes room again.
TEST_P(CatalogConformance, RacingJobSubmissionsAcrossProcessesNeverExceedTheLimit) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kRounds = 10;
  constexpr int kRacers = 6;
  for (int round = 0; round < kRounds; ++round) {
    const Uuid secret = Uuid::Random();
    std::vector<Result<engine::JobInfo>> jobs(kRacers, Internal("not run"));
    RunTogether(kRacers, [&](int idx) {
      Catalog& catalog = idx % 2 == 0 ? *a : *b;
      jobs[idx] = catalog.CreateJob({.secret_id = secret, .tables = {}, .sql = "SELECT 1", .max_unfinished = 2});
    });
    std::vector<Uuid> created;
    for (const auto& job : jobs) {
      if (job.ok()) {
        created.push_back(job->job_id);
      } else {
        EXPECT_EQ(job.status().code(), StatusCode::kResourceExhausted) << job.status().ToString();
        EXPECT_THAT(job.status().message(), HasSubstr("2 SQL jobs pending or running"));
      }
    }
    ASSERT_EQ(created.size(), 2u) << "round " << round;
    EXPECT_EQ(*a->CountUnfinishedJobs(secret), 2);
    ASSERT_TRUE(b->UpdateJob(created[0], {.status = driver::JobStatus::kDone}).ok());
    EXPECT_TRUE(a->CreateJob({.secret_id = secret, .tables = {}, .sql = "SELECT 2", .max_unfinished = 2}).ok());
    EXPECT_EQ(a->CreateJob({.secret_id = secret, .tables = {}, .sql = "SELECT 3", .max_unfinished = 2})
                  .status()
                  .code(),
              StatusCode::kResourceExhausted);
  }
}

// --- Idempotency keys ------------------------------------------------------------------------

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

TEST_P(CatalogConformance, ACommittedKeyTakesEffectOncePerSecretForADay) {
  ManualClock clock;
  auto catalog = Open(WithClock(&clock));
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  Uuid alice = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;
  Uuid bob = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;

  EXPECT_EQ(ClaimAndCommit(*catalog, alice, "req-1", "w1"), ClaimState::kClaimed);
  clock.Advance(3'600'000'000LL);
  auto retry = catalog->ClaimIdempotencyKey(alice, "req-1", "w2", "owner-b", kLeaseMs);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->state, ClaimState::kCommitted);
  EXPECT_EQ(retry->write_id, "w1");
  EXPECT_EQ(ClaimAndCommit(*catalog, bob, "req-1", "w3"), ClaimState::kClaimed);

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

  // Any bytes make a key, up to the limit.
  EXPECT_EQ(ClaimAndCommit(*catalog, alice, std::string("k\0\xff\x01", 4), "w6"),
            ClaimState::kClaimed);
  EXPECT_EQ(ClaimAndCommit(*catalog, alice, std::string("k\0\xff\x01", 4), "w7"),
            ClaimState::kCommitted);
  EXPECT_EQ(ClaimAndCommit(*catalog, alice, std::string(255, 'k'), "w8"), ClaimState::kClaimed);
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

TEST_P(CatalogConformance, APendingClaimIsNeverAnsweredAsDoneAndIsReleasedWhenItsWriteFails) {
  ManualClock clock;
  auto catalog = Open(WithClock(&clock));
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  Uuid alice = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;

  auto first = catalog->ClaimIdempotencyKey(alice, "req-1", "w1", "owner-a", kLeaseMs);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->state, ClaimState::kClaimed);
  clock.Advance((kLeaseMs - 1) * kMsToMicros);
  auto retry = catalog->ClaimIdempotencyKey(alice, "req-1", "w2", "owner-b", kLeaseMs);
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->state, ClaimState::kPending);
  EXPECT_EQ(retry->write_id, "w1");
  EXPECT_EQ(retry->lease_expires_ms, clock.NowMillis() + 1);

  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w2").ok());
  EXPECT_EQ(catalog->CommitIdempotencyKey(alice, "req-1", "w2").code(), StatusCode::kAborted);
  EXPECT_EQ(catalog->ClaimIdempotencyKey(alice, "req-1", "w3", "owner-b", kLeaseMs)->state,
            ClaimState::kPending);

  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w1").ok());
  auto after = catalog->ClaimIdempotencyKey(alice, "req-1", "w4", "owner-b", kLeaseMs);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->state, ClaimState::kClaimed);
  EXPECT_EQ(after->write_id, "w4");
  EXPECT_EQ(catalog->CommitIdempotencyKey(alice, "req-1", "w1").code(), StatusCode::kAborted);
  ASSERT_TRUE(catalog->CommitIdempotencyKey(alice, "req-1", "w4").ok());
  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w4").ok());
  auto done = catalog->ClaimIdempotencyKey(alice, "req-1", "w5", "owner-c", kLeaseMs);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state, ClaimState::kCommitted);
  EXPECT_EQ(done->write_id, "w4");
}

TEST_P(CatalogConformance, AClaimLeftByADeadProcessIsTakenOverOnceItsLeaseRunsOut) {
  ManualClock clock;
  auto catalog = Open(WithClock(&clock));
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  Uuid alice = ResolveOrDie(*catalog, MintOrDie(*catalog, "shop", {.write = {"*"}})).secret_id;

  ASSERT_EQ(catalog->ClaimIdempotencyKey(alice, "req-1", "w1", "owner-a", kLeaseMs)->state,
            ClaimState::kClaimed);
  clock.Advance(kLeaseMs * kMsToMicros);
  auto takeover = catalog->ClaimIdempotencyKey(alice, "req-1", "w2", "owner-b", kLeaseMs);
  ASSERT_TRUE(takeover.ok());
  EXPECT_EQ(takeover->state, ClaimState::kClaimed);
  EXPECT_EQ(takeover->write_id, "w2");
  auto third = catalog->ClaimIdempotencyKey(alice, "req-1", "w3", "owner-c", kLeaseMs);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->state, ClaimState::kPending);
  EXPECT_EQ(third->write_id, "w2");
  EXPECT_EQ(catalog->CommitIdempotencyKey(alice, "req-1", "w1").code(), StatusCode::kAborted);
  ASSERT_TRUE(catalog->ReleaseIdempotencyKey(alice, "req-1", "w1").ok());
  ASSERT_TRUE(catalog->CommitIdempotencyKey(alice, "req-1", "w2").ok());
  clock.Advance(kLeaseMs * 100 * kMsToMicros);
  auto replay = catalog->ClaimIdempotencyKey(alice, "req-1", "w4", "owner-c", kLeaseMs);
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->state, ClaimState::kCommitted);
  EXPECT_EQ(replay->write_id, "w2");
}

TEST_P(CatalogConformance, PurgeRemovesOldCommittedKeysAndExpiredPendingClaims) {
  ManualClock clock;
  auto catalog = Open(WithClock(&clock));
  ASSERT_NE(catalog, nullptr);
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
  clock.Advance(1'000'000);
  EXPECT_EQ(*catalog->PurgeIdempotencyKeys(), 3);
  EXPECT_EQ(catalog->ClaimIdempotencyKey(secret, "new", "w4", "o", kLeaseMs)->write_id, "w3");
  EXPECT_EQ(catalog->ClaimIdempotencyKey(secret, "live", "w7", "o", kLeaseMs)->state,
            ClaimState::kPending);
}

// --- Concurrency: threads of one process, and "processes" (catalog objects on one database) --

TEST_P(CatalogConformance, FourThreadsCreateTablesAndResolveSecretsWithoutErrors) {
  auto catalog = Open();
  ASSERT_NE(catalog, nullptr);
  ASSERT_TRUE(catalog->CreateProject("shop").ok());
  const std::string secret = MintOrDie(*catalog, "shop", {.read = {"*"}});
  constexpr int kThreads = 4;
  constexpr int kTablesPerThread = 10;
  std::atomic<int> errors{0};
  std::vector<std::string> first_error(kThreads);
  RunTogether(kThreads, [&](int thread_idx) {
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
      if (claimed.ok() && claimed->state != ClaimState::kClaimed) {
        fail(Internal("key {} was not free", name));
      }
    }
  });
  EXPECT_EQ(errors.load(), 0) << ::testing::PrintToString(first_error);
  EXPECT_EQ(catalog->ListTables("shop")->size(), size_t{kThreads * kTablesPerThread});
}

TEST_P(CatalogConformance, TwoProcessesWriteTogetherWithoutErrors) {
  auto first = Open();
  auto second = Open();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  std::atomic<int> errors{0};
  std::string first_error;
  RunTogether(2, [&](int idx) {
    Catalog* catalog = idx == 0 ? first.get() : second.get();
    for (int n = 0; n < 20; ++n) {
      auto created = catalog->CreateProject(fmt::format("{}{}", idx == 0 ? "a" : "b", n));
      if (!created.ok() && errors.fetch_add(1) == 0) first_error = created.status().ToString();
    }
  });
  EXPECT_EQ(errors.load(), 0) << first_error;
  EXPECT_EQ(first->ListProjects()->size(), 40u);
  EXPECT_EQ(second->ListProjects()->size(), 40u);
}

// Two processes (two catalog objects on one database), two threads each,
// claim one Idempotency-Key at the same moment: exactly one holds it, every
// other answer is kPending naming the winner's write.
TEST_P(CatalogConformance, RacingClaimsOfOneKeyAcrossProcessesHaveExactlyOneWinner) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->CreateProject("shop").ok());
  Uuid secret = ResolveOrDie(*a, MintOrDie(*a, "shop", {.write = {"*"}})).secret_id;
  constexpr int kRounds = 15;
  constexpr int kRacers = 4;
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = fmt::format("race-{}", round);
    std::vector<Result<IdempotencyClaim>> claims(kRacers, Internal("not run"));
    RunTogether(kRacers, [&](int idx) {
      Catalog& catalog = idx % 2 == 0 ? *a : *b;
      claims[idx] = catalog.ClaimIdempotencyKey(secret, key, fmt::format("w{}-{}", round, idx),
                                                fmt::format("owner-{}", idx), 60'000);
    });
    int claimed = 0;
    std::string winner;
    for (const auto& claim : claims) {
      ASSERT_TRUE(claim.ok()) << claim.status().ToString();
      if (claim->state == ClaimState::kClaimed) {
        ++claimed;
        winner = claim->write_id;
      }
    }
    ASSERT_EQ(claimed, 1) << "round " << round;
    for (const auto& claim : claims) {
      if (claim->state != ClaimState::kClaimed) {
        EXPECT_EQ(claim->state, ClaimState::kPending);
        EXPECT_EQ(claim->write_id, winner);
      }
    }
  }
}

// A claim whose owner died: processes retrying it at once after its lease ran
// out take it over exactly once (the takeover is a compare-and-set).
TEST_P(CatalogConformance, RacingTakeoversOfAnExpiredClaimHaveExactlyOneWinner) {
  ManualClock clock;
  auto a = Open(WithClock(&clock));
  auto b = Open(WithClock(&clock));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->CreateProject("shop").ok());
  Uuid secret = ResolveOrDie(*a, MintOrDie(*a, "shop", {.write = {"*"}})).secret_id;
  constexpr int kRounds = 15;
  constexpr int kRacers = 4;
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = fmt::format("takeover-{}", round);
    ASSERT_EQ(a->ClaimIdempotencyKey(secret, key, "dead-write", "dead-owner", 1'000)->state,
              ClaimState::kClaimed);
    clock.Advance(2'000 * kMsToMicros);
    std::vector<Result<IdempotencyClaim>> claims(kRacers, Internal("not run"));
    RunTogether(kRacers, [&](int idx) {
      Catalog& catalog = idx % 2 == 0 ? *a : *b;
      claims[idx] = catalog.ClaimIdempotencyKey(secret, key, fmt::format("w{}-{}", round, idx),
                                                fmt::format("owner-{}", idx), 60'000);
    });
    int claimed = 0;
    std::string winner;
    for (const auto& claim : claims) {
      ASSERT_TRUE(claim.ok()) << claim.status().ToString();
      if (claim->state == ClaimState::kClaimed) {
        ++claimed;
        winner = claim->write_id;
      }
    }
    ASSERT_EQ(claimed, 1) << "round " << round;
    for (const auto& claim : claims) {
      if (claim->state != ClaimState::kClaimed) {
        EXPECT_EQ(claim->state, ClaimState::kPending);
        EXPECT_EQ(claim->write_id, winner);
      }
    }
    EXPECT_EQ(a->CommitIdempotencyKey(secret, key, "dead-write").code(), StatusCode::kAborted);
    EXPECT_TRUE(b->CommitIdempotencyKey(secret, key, winner).ok());
  }
}

// CreateTable and CreateProject of one name from several processes at once:
// one succeeds, the others answer AlreadyExists (never another error).
TEST_P(CatalogConformance, RacingCreatesOfOneNameAcrossProcessesHaveExactlyOneWinner) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kRounds = 10;
  constexpr int kRacers = 4;
  for (int round = 0; round < kRounds; ++round) {
    const std::string project = fmt::format("p{}", round);
    std::vector<Status> projects(kRacers), tables(kRacers);
    RunTogether(kRacers, [&](int idx) {
      Catalog& catalog = idx % 2 == 0 ? *a : *b;
      projects[idx] = catalog.CreateProject(project).status();
    });
    RunTogether(kRacers, [&](int idx) {
      Catalog& catalog = idx % 2 == 0 ? *a : *b;
      tables[idx] = catalog.CreateTable(project, Spec("orders")).status();
    });
    for (const auto* results : {&projects, &tables}) {
      int ok = 0;
      for (const Status& status : *results) {
        if (status.ok()) {
          ++ok;
        } else {
          EXPECT_EQ(status.code(), StatusCode::kAlreadyExists) << status.ToString();
          EXPECT_THAT(status.message(), HasSubstr("already exists"));
        }
      }
      EXPECT_EQ(ok, 1) << "round " << round;
    }
  }
  EXPECT_EQ(a->ListProjects()->size(), size_t{kRounds});
  EXPECT_EQ(One("SELECT COUNT(*) FROM tables"), std::to_string(kRounds));
  EXPECT_EQ(One("SELECT COUNT(*) FROM instances"), std::to_string(kRounds));
}

// Processes starting together on a fresh catalog: one admin secret is made,
// and exactly one of them is told its plaintext.
TEST_P(CatalogConformance, RacingFirstStartsMakeOneAdminSecret) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kRacers = 4;
  std::vector<Result<std::optional<std::string>>> answers(kRacers, Internal("not run"));
  RunTogether(kRacers, [&](int idx) {
    answers[idx] = (idx % 2 == 0 ? *a : *b).EnsureAdminSecret(std::nullopt);
  });
  int told = 0;
  for (const auto& answer : answers) {
    ASSERT_TRUE(answer.ok()) << answer.status().ToString();
    if (answer->has_value()) {
      ++told;
      EXPECT_TRUE(ResolveOrDie(*b, **answer).is_admin);
    }
  }
  EXPECT_EQ(told, 1);
  EXPECT_EQ(One("SELECT COUNT(*) FROM secrets WHERE is_admin"), "1");
}

// DeleteProject racing CreateTable in that project: every table the catalog
// ever acknowledged is either still there or recorded as a pending removal.
TEST_P(CatalogConformance, ATableCreatedWhileItsProjectIsDeletedIsNeverLost) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (int round = 0; round < 10; ++round) {
    const std::string project = fmt::format("p{}", round);
    ASSERT_TRUE(a->CreateProject(project).ok());
    std::vector<Uuid> acknowledged;
    std::mutex mu;
    RunTogether(3, [&](int idx) {
      if (idx == 0) {
        Result<std::vector<driver::InstanceInfo>> removed = a->DeleteProject(project);
        EXPECT_TRUE(removed.ok()) << removed.status().ToString();
        return;
      }
      for (int n = 0; n < 3; ++n) {
        auto table = b->CreateTable(project, Spec(fmt::format("t{}_{}", idx, n)));
        if (table.ok()) {
          std::lock_guard lock(mu);
          acknowledged.push_back(table->primary.instance_id);
        } else {
          EXPECT_EQ(table.status().code(), StatusCode::kNotFound) << table.status().ToString();
        }
      }
    });
    auto pending = a->ListPendingRemovals();
    ASSERT_TRUE(pending.ok());
    std::set<Uuid> removed;
    for (const auto& instance : *pending) removed.insert(instance.instance_id);
    for (const Uuid& id : acknowledged) {
      EXPECT_TRUE(removed.contains(id) || a->GetInstance(id).ok())
          << "instance " << id.ToString() << " vanished without a pending removal";
    }
  }
}

}  // namespace
}  // namespace aquifer::conformance
