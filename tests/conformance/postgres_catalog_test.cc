// The Catalog conformance suite on the Postgres catalog
// (engine/catalog_postgres.h), against the real server that
// scripts/peers/postgres starts (AQUIFER_TEST_POSTGRES; without it every test
// fails and says how to start one). Each test's catalog lives in a Postgres
// schema named after its scratch directory; two catalogs on one place are two
// pools on one schema, as two processes of a deployment would be. Below the
// instantiation: what only the Postgres catalog does (URL parameters, shared
// keys, reconnecting, an Engine on it).

#include <libpq-fe.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "aquifer/drivers/postgres/testing.h"
#include "aquifer/engine/catalog_postgres.h"
#include "aquifer/engine/engine.h"
#include "catalog_conformance.h"

namespace aquifer::conformance {
namespace {

using ::testing::HasSubstr;

struct Place {
  std::string url;     // the server's URI, as AQUIFER_TEST_POSTGRES gives it
  std::string schema;  // this place's own schema
};

Result<Place> PlaceOf(const std::string& scratch_dir) {
  AQ_ASSIGN_OR_RETURN(driver::Config config, drivers::postgres::testing::TestConfig(
                                                 std::filesystem::path(scratch_dir).filename().string()));
  return Place{config.at("url"), config.at("schema")};
}

Result<std::unique_ptr<engine::Catalog>> OpenAt(const std::string& place,
                                                const CatalogOpenOptions& options) {
  AQ_ASSIGN_OR_RETURN(Place where, PlaceOf(place));
  engine::PostgresCatalogOptions postgres;
  postgres.clock = options.clock;
  postgres.secret_key = options.secret_key;
  postgres.schema = where.schema;
  postgres.pool_size = 4;
  return engine::OpenPostgresCatalog(where.url, postgres);
}

// Runs `sql` with text results on a connection of its own.
Result<CatalogRows> QueryServer(const std::string& url, const std::string& search_path,
                                const std::string& sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(conn);
    PQfinish(conn);
    return Unavailable("connecting to {}: {}", url, message);
  }
  CatalogRows rows;
  Status status;
  std::string full = search_path.empty() ? sql : "SET search_path TO \"" + search_path + "\"; " + sql;
  PGresult* result = PQexec(conn, full.c_str());
  ExecStatusType code = PQresultStatus(result);
  if (code != PGRES_TUPLES_OK && code != PGRES_COMMAND_OK) {
    status = InvalidArgument("{}: {}", sql, PQerrorMessage(conn));
  } else {
    for (int row = 0; row < PQntuples(result); ++row) {
      std::vector<std::string> cells;
      for (int col = 0; col < PQnfields(result); ++col) {
        cells.push_back(PQgetisnull(result, row, col) ? "NULL" : PQgetvalue(result, row, col));
      }
      rows.push_back(std::move(cells));
    }
  }
  PQclear(result);
  PQfinish(conn);
  if (!status.ok()) return status;
  return rows;
}

Result<CatalogRows> QueryAt(const std::string& place, const std::string& sql) {
  AQ_ASSIGN_OR_RETURN(Place where, PlaceOf(place));
  return QueryServer(where.url, where.schema, sql);
}

INSTANTIATE_TEST_SUITE_P(Postgres, CatalogConformance,
                         ::testing::Values(CatalogFactory{"postgres", OpenAt, QueryAt,
                                                          engine::PostgresCatalogSchemaVersion()}),
                         CatalogFactoryName);

// The same URL with `params` appended to its query.
std::string WithParams(const std::string& url, const std::string& params) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + params;
}

TEST(PostgresCatalog, TheSchemaComesFromTheUrlAndIsCreatedWithItsTables) {
  ScratchDir scratch;
  auto where = PlaceOf(scratch.path());
  ASSERT_TRUE(where.ok()) << where.status().ToString();
  auto catalog = engine::OpenPostgresCatalog(WithParams(where->url, "schema=" + where->schema),
                                             {});
  ASSERT_TRUE(catalog.ok()) << catalog.status().ToString();
  ASSERT_TRUE((*catalog)->CreateProject("shop").ok());
  auto rows = QueryServer(where->url, "",
                          "SELECT table_name FROM information_schema.tables WHERE table_schema = '" +
                              where->schema + "' ORDER BY table_name");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  std::vector<std::string> tables;
  for (const auto& row : *rows) tables.push_back(row[0]);
  EXPECT_THAT(tables, ::testing::IsSupersetOf({"projects", "tables", "instances", "secrets",
                                               "grants", "jobs", "idempotency_keys",
                                               "removed_instances", "schema_version",
                                               "shared_keys"}));
  auto names = QueryAt(scratch.path(), "SELECT name FROM projects");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (CatalogRows{{"shop"}}));

  for (const std::string& bad : std::vector<std::string>{"Caps", "with-dash", "", std::string(64, 'a')}) {
    auto refused = engine::OpenPostgresCatalog(WithParams(where->url, "schema=" + bad), {});
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(engine::OpenPostgresCatalog(WithParams(where->url, "pool_size=0"), {}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine::IsPostgresCatalogUrl("postgres://h/db"));
  EXPECT_TRUE(engine::IsPostgresCatalogUrl("postgresql://h/db"));
  EXPECT_FALSE(engine::IsPostgresCatalogUrl("sqlite:/tmp/c.db"));
}

TEST(PostgresCatalog, AnUnreachableServerIsUnavailableWithAClearMessage) {
  // Port 1 on loopback: nothing listens there.
  auto catalog = engine::OpenPostgresCatalog("postgresql://127.0.0.1:1/aquifer?connect_timeout=2", {});
  ASSERT_FALSE(catalog.ok());
  EXPECT_EQ(catalog.status().code(), StatusCode::kUnavailable) << catalog.status().ToString();
  EXPECT_THAT(catalog.status().message(), HasSubstr("Postgres catalog"));
  EXPECT_THAT(catalog.status().message(), HasSubstr("unreachable"));
}

// The server dropped every connection (what a restart does): the pooled
// connections are dead, the next calls find out, drop them and reconnect.
TEST(PostgresCatalog, DeadPooledConnectionsAreDroppedAndTheCatalogReconnects) {
  ScratchDir scratch;
  auto where = PlaceOf(scratch.path());
  ASSERT_TRUE(where.ok()) << where.status().ToString();
  const std::string app = "aquifer_catalog_" + std::filesystem::path(scratch.path()).filename().string();
  engine::PostgresCatalogOptions options;
  options.schema = where->schema;
  options.pool_size = 3;
  auto catalog = engine::OpenPostgresCatalog(WithParams(where->url, "application_name=" + app), options);
  ASSERT_TRUE(catalog.ok()) << catalog.status().ToString();
  ASSERT_TRUE((*catalog)->CreateProject("before").ok());
  // Fill the pool: three threads at once each hold a connection.
  std::vector<std::thread> threads;
  for (int idx = 0; idx < 3; ++idx) {
    threads.emplace_back([&] { EXPECT_TRUE((*catalog)->ListProjects().ok()); });
  }
  for (auto& thread : threads) thread.join();

  for (int kill = 0; kill < 2; ++kill) {
    auto killed = QueryServer(where->url, "",
                              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE application_name = '" + app + "'");
    ASSERT_TRUE(killed.ok()) << killed.status().ToString();
    ASSERT_FALSE(killed->empty()) << "the catalog had no open connection to kill";
    const std::string name = fmt::format("after{}", kill);
    auto created = (*catalog)->CreateProject(name);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    for (int call = 0; call < 5; ++call) {
      auto got = (*catalog)->GetProject(name);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(got->project_id, created->project_id);
    }
  }
  EXPECT_EQ((*catalog)->ListProjects()->size(), 3u);
}

// Every process of a deployment must hash secrets and sign cursors with the
// same keys: without explicit ones they are made once in the catalog.
TEST(PostgresCatalog, SharedKeysAreMadeOnceAndEveryProcessAgrees) {
  ScratchDir scratch;
  constexpr int kProcesses = 4;
  std::vector<std::unique_ptr<engine::Catalog>> catalogs(kProcesses);
  std::vector<std::string> cursor_keys(kProcesses);
  std::vector<Status> errors(kProcesses);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int idx = 0; idx < kProcesses; ++idx) {
    threads.emplace_back([&, idx] {
      while (!go.load()) std::this_thread::yield();
      CatalogOpenOptions options;
      options.secret_key = "";  // from the catalog
      auto catalog = OpenAt(scratch.path(), options);
      if (!catalog.ok()) {
        errors[idx] = catalog.status();
        return;
      }
      auto key = engine::PostgresSharedKey(**catalog, "cursor_key");
      if (!key.ok()) errors[idx] = key.status();
      else cursor_keys[idx] = *key;
      catalogs[idx] = std::move(*catalog);
    });
  }
  go.store(true);
  for (auto& thread : threads) thread.join();
  for (int idx = 0; idx < kProcesses; ++idx) {
    ASSERT_TRUE(errors[idx].ok()) << errors[idx].ToString();
    EXPECT_EQ(cursor_keys[idx].size(), 32u);
    EXPECT_EQ(cursor_keys[idx], cursor_keys[0]);
  }
  // The secret key is shared too: a secret minted in one resolves in all.
  ASSERT_TRUE(catalogs[0]->CreateProject("shop").ok());
  auto minted = catalogs[0]->MintSecret("shop", {.read = {"*"}});
  ASSERT_TRUE(minted.ok());
  for (auto& catalog : catalogs) EXPECT_TRUE(catalog->ResolveSecret(minted->secret).ok());
  auto keys = QueryAt(scratch.path(), "SELECT name FROM shared_keys ORDER BY name");
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(*keys, (CatalogRows{{"cursor_key"}, {"secret_key"}}));
  // A catalog opened with an explicit key ignores the stored one.
  CatalogOpenOptions other;
  other.secret_key = "fedcba9876543210fedcba9876543210";
  auto explicit_key = OpenAt(scratch.path(), other);
  ASSERT_TRUE(explicit_key.ok());
  EXPECT_EQ((*explicit_key)->ResolveSecret(minted->secret).status().code(),
            StatusCode::kUnauthenticated);

  auto sqlite = engine::OpenSqliteCatalog(":memory:");
  ASSERT_TRUE(sqlite.ok());
  EXPECT_EQ(engine::PostgresSharedKey(**sqlite, "cursor_key").status().code(),
            StatusCode::kInvalidArgument);
}

// An Engine on the Postgres catalog (embedded drivers): `catalog` set to the
// URL is all it takes; a second engine with another data directory (another
// machine) shares projects, secrets and keys through the catalog alone.
TEST(PostgresCatalogEngine, AnEngineWritesAndReadsWithItsCatalogInPostgres) {
  ScratchDir scratch, first_dir, second_dir;
  auto where = PlaceOf(scratch.path());
  ASSERT_TRUE(where.ok()) << where.status().ToString();
  auto options_for = [&](const std::string& dir) {
    engine::EngineOptions options;
    options.data_dir = dir;
    options.catalog = WithParams(where->url, "schema=" + where->schema);
    options.wait_timeout_ms = 20'000;
    options.worker_threads = 1;
    options.usage_flush_interval_ms = 50;
    options.queue.config["poll_interval_ms"] = "5";
    return options;
  };
  auto first = engine::Engine::Open(options_for(first_dir.path()));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  ASSERT_TRUE((*first)->Start().ok());
  std::optional<std::string> admin_secret = (*first)->NewAdminSecret();
  ASSERT_TRUE(admin_secret.has_value()) << "the first start makes the admin secret";
  auto admin = (*first)->Authenticate(*admin_secret);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  ASSERT_TRUE((*first)->CreateProject(*admin, R"({"name":"p"})").ok());
  auto table = (*first)->CreateTable(*admin, "p", R"({"name":"t","key":["user"],"schema":
      {"type":"record","name":"R","fields":[{"name":"user","type":"string"},{"name":"n","type":"long"}]}})");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  auto reader = (*first)->CreateSecret(*admin, "p", R"({"read":["t"]})");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();

  engine::WriteRequest request;
  request.project = "p";
  request.table = "t";
  request.body = R"([{"user":"ann","n":1},{"user":"bob","n":2}])";
  request.wait.index = true;
  auto ack = (*first)->Write(*admin, request, nullptr);
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_TRUE(ack->waited);
  auto page = (*first)->QueryIndex(*admin, {"p", "t", R"({"user":"bob"})", 10});
  ASSERT_TRUE(page.ok()) << page.status().ToString();
  auto rows = nlohmann::json::parse(page->data_json);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["n"], 2);

  // Another process elsewhere: no admin secret of its own, the same secrets.
  auto second = engine::Engine::Open(options_for(second_dir.path()));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_FALSE((*second)->NewAdminSecret().has_value());
  EXPECT_TRUE((*second)->Authenticate(*admin_secret).ok());
  const std::string reader_secret = nlohmann::json::parse(*reader)["secret"].get<std::string>();
  auto principal = (*second)->Authenticate(reader_secret);
  ASSERT_TRUE(principal.ok()) << principal.status().ToString();
  EXPECT_TRUE((*second)->DescribeTable(*principal, "p", "t").ok());
  // Nothing a second process needs lives in the first one's files.
  for (const auto& dir : {first_dir.path(), second_dir.path()}) {
    EXPECT_FALSE(std::filesystem::exists(dir + "/secret.key")) << dir;
    EXPECT_FALSE(std::filesystem::exists(dir + "/cursor.key")) << dir;
    EXPECT_FALSE(std::filesystem::exists(dir + "/catalog.db")) << dir;
  }
  (*second)->Stop();
  (*first)->Stop();
}

}  // namespace
}  // namespace aquifer::conformance
