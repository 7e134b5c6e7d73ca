#include "aquifer/gateway/serve_config.h"

#include <gtest/gtest.h>

namespace aquifer::gateway {
namespace {

constexpr std::string_view kFile = R"(
[server]
port = 9000
host = "0.0.0.0"
data = "/srv/file-data"
public_metrics = true
handler_threads = 8

[queue]
driver = "kafka"
brokers = "k1:9092,k2:9092"
partitions = 12

[lookup]
driver = "postgres"
dsn = "host=db"
)";

TEST(ServeConfig, DefaultsWithoutAnySource) {
  Result<ServeConfig> config = LoadServeConfig({}, {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->engine.data_dir, "./data");
  EXPECT_EQ(config->server.port, 8080);
  EXPECT_EQ(config->server.host, "127.0.0.1");
  EXPECT_EQ(config->engine.role, engine::Role::kAll);
  EXPECT_EQ(config->engine.queue.name, "embedded");
  EXPECT_FALSE(config->engine.admin_secret.has_value());
  EXPECT_FALSE(config->server.api.public_metrics);
  EXPECT_EQ(config->server.max_body_bytes, config->engine.max_body_bytes);
}

TEST(ServeConfig, FileSetsServerKeysAndDriverSections) {
  Result<ServeConfig> config = LoadServeConfig({}, {}, kFile);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->server.port, 9000);
  EXPECT_EQ(config->server.host, "0.0.0.0");
  EXPECT_EQ(config->engine.data_dir, "/srv/file-data");
  EXPECT_TRUE(config->server.api.public_metrics);
  EXPECT_EQ(config->server.handler_threads, 8);
  EXPECT_EQ(config->engine.queue.name, "kafka");
  EXPECT_EQ(config->engine.queue.config.at("brokers"), "k1:9092,k2:9092");
  EXPECT_EQ(config->engine.queue.config.at("partitions"), "12");
  EXPECT_EQ(config->engine.queue.config.count("driver"), 0u);
  EXPECT_EQ(config->engine.lookup.name, "postgres");
  EXPECT_EQ(config->engine.warehouse.name, "embedded");
}

TEST(ServeConfig, FlagsBeatEnvironmentWhichBeatsTheFile) {
  std::map<std::string, std::string> env = {
      {"AQUIFER_PORT", "9100"},
      {"AQUIFER_DATA", "/srv/env-data"},
      {"AQUIFER_ROLE", "worker"},
      {"AQUIFER_QUEUE_BROKERS", "env:9092"},
      {"AQUIFER_WAREHOUSE_DRIVER", "mock"},
      {"AQUIFER_SERVER_HANDLER_THREADS", "16"},
      {"AQUIFER_ADMIN_SECRET", "a-long-operator-secret"},
      {"AQUIFER_LOG_LEVEL", "debug"},
  };
  ServeFlags flags;
  flags.port = 0;
  flags.role = "gateway";
  Result<ServeConfig> config = LoadServeConfig(flags, env, kFile);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->server.port, 0);                       // flag over env over file
  EXPECT_EQ(config->engine.data_dir, "/srv/env-data");     // env over file
  EXPECT_EQ(config->engine.role, engine::Role::kGateway);  // flag over env
  EXPECT_EQ(config->server.api.role, engine::Role::kGateway);
  EXPECT_EQ(config->server.host, "0.0.0.0");               // file over default
  EXPECT_EQ(config->server.handler_threads, 16);
  EXPECT_EQ(config->engine.queue.name, "kafka");
  EXPECT_EQ(config->engine.queue.config.at("brokers"), "env:9092");
  EXPECT_EQ(config->engine.queue.config.at("partitions"), "12");
  EXPECT_EQ(config->engine.warehouse.name, "mock");
  EXPECT_EQ(config->engine.admin_secret, "a-long-operator-secret");
}

TEST(ServeConfig, TheCatalogComesFromTheFlagTheEnvironmentOrTheFile) {
  Result<ServeConfig> defaults = LoadServeConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->engine.catalog, "sqlite");
  const std::string file = "[server]\ncatalog = \"postgres://file@db/aquifer\"\n";
  Result<ServeConfig> from_file = LoadServeConfig({}, {}, file);
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  EXPECT_EQ(from_file->engine.catalog, "postgres://file@db/aquifer");
  const std::map<std::string, std::string> env = {
      {"AQUIFER_CATALOG", "postgresql://env@db/aquifer?schema=env"}};
  Result<ServeConfig> from_env = LoadServeConfig({}, env, file);
  ASSERT_TRUE(from_env.ok()) << from_env.status().ToString();
  EXPECT_EQ(from_env->engine.catalog, "postgresql://env@db/aquifer?schema=env");
  ServeFlags flags;
  flags.catalog = "postgres://flag@db/aquifer";
  Result<ServeConfig> from_flag = LoadServeConfig(flags, env, file);
  ASSERT_TRUE(from_flag.ok()) << from_flag.status().ToString();
  EXPECT_EQ(from_flag->engine.catalog, "postgres://flag@db/aquifer");
}

TEST(ServeConfig, IdempotencyClaimLeaseAndWaitAreServerKeys) {
  Result<ServeConfig> defaults = LoadServeConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->engine.idempotency_lease_ms, engine::EngineOptions{}.idempotency_lease_ms);
  Result<ServeConfig> config =
      LoadServeConfig({}, {{"AQUIFER_SERVER_IDEMPOTENCY_LEASE_MS", "1500"}},
                      "[server]\nidempotency_lease_ms = 9000\nidempotency_wait_ms = 250\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->engine.idempotency_lease_ms, 1500);  // env over file
  EXPECT_EQ(config->engine.idempotency_wait_ms, 250);
  Result<ServeConfig> zero = LoadServeConfig({}, {}, "[server]\nidempotency_lease_ms = 0\n");
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("idempotency_lease_ms"), std::string::npos);
}

TEST(ServeConfig, KeysDirAndWorkerAckTimeoutAreServerKeys) {
  Result<ServeConfig> defaults = LoadServeConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->engine.keys_dir, "");  // the data dir
  EXPECT_EQ(defaults->engine.worker_ack_timeout_ms, 30'000);
  Result<ServeConfig> config =
      LoadServeConfig({}, {{"AQUIFER_SERVER_KEYS_DIR", "/srv/keys"}},
                      "[server]\nkeys_dir = \"/etc/keys\"\nworker_ack_timeout_ms = 3000\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->engine.keys_dir, "/srv/keys");  // env over file
  EXPECT_EQ(config->engine.worker_ack_timeout_ms, 3000);
  Result<ServeConfig> tiny = LoadServeConfig({}, {}, "[server]\nworker_ack_timeout_ms = 5\n");
  ASSERT_FALSE(tiny.ok());
  EXPECT_NE(tiny.status().message().find("worker_ack_timeout_ms"), std::string::npos);
  Result<ServeConfig> empty = LoadServeConfig({}, {}, "[server]\nkeys_dir = \"\"\n");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("keys"), std::string::npos);
}

TEST(ServeConfig, SqlSectionSetsTheJobLimits) {
  Result<ServeConfig> defaults = LoadServeConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->engine.sql.job.timeout_ms, 300'000);
  EXPECT_EQ(defaults->engine.sql.job.max_result_rows, 1'000'000);
  EXPECT_EQ(defaults->engine.sql.job.max_result_bytes, int64_t{256} << 20);
  EXPECT_EQ(defaults->engine.sql.job.result_ttl_ms, 3'600'000);
  EXPECT_EQ(defaults->engine.sql.max_jobs_per_secret, 4);
  EXPECT_EQ(defaults->engine.sql.job_heartbeat_ms, 5'000);
  EXPECT_EQ(defaults->engine.sql.job_lease_ms, 15'000);

  Result<ServeConfig> config = LoadServeConfig(
      {}, {{"AQUIFER_SQL_MAX_JOBS_PER_SECRET", "2"}},
      "[sql]\ntimeout_ms = 1000\nmax_result_rows = 10\nmax_result_bytes = 4096\nresult_ttl_ms = 60000\n"
      "max_jobs_per_secret = 9\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->engine.sql.job.timeout_ms, 1000);
  EXPECT_EQ(config->engine.sql.job.max_result_rows, 10);
  EXPECT_EQ(config->engine.sql.job.max_result_bytes, 4096);
  EXPECT_EQ(config->engine.sql.job.result_ttl_ms, 60000);
  EXPECT_EQ(config->engine.sql.max_jobs_per_secret, 2);  // environment over file

  Result<ServeConfig> beats = LoadServeConfig({}, {}, "[sql]\njob_heartbeat_ms = 1000\njob_lease_ms = 4000\n");
  ASSERT_TRUE(beats.ok()) << beats.status().ToString();
  EXPECT_EQ(beats->engine.sql.job_heartbeat_ms, 1000);
  EXPECT_EQ(beats->engine.sql.job_lease_ms, 4000);
  Result<ServeConfig> short_lease = LoadServeConfig({}, {}, "[sql]\njob_heartbeat_ms = 1000\njob_lease_ms = 1000\n");
  ASSERT_FALSE(short_lease.ok());
  EXPECT_NE(short_lease.status().message().find("job_lease_ms (1000) must be longer than job_heartbeat_ms"),
            std::string::npos);

  Result<ServeConfig> bad = LoadServeConfig({}, {}, "[sql]\nmax_rows = 1\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("[sql] max_rows: unknown key; [sql] takes timeout_ms"), std::string::npos);
  Result<ServeConfig> negative = LoadServeConfig({}, {{"AQUIFER_SQL_TIMEOUT_MS", "-1"}});
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("AQUIFER_SQL_TIMEOUT_MS"), std::string::npos);
}

TEST(ServeConfig, MistakesNameTheKeyAndItsSource) {
  auto error = [](const ServeFlags& flags, std::map<std::string, std::string> env,
                  std::optional<std::string_view> file) {
    Result<ServeConfig> config = LoadServeConfig(flags, env, file);
    EXPECT_FALSE(config.ok());
    return config.status().message();
  };
  EXPECT_NE(error({}, {}, "[server]\nprot = 1\n").find("[server] prot: unknown key"), std::string::npos);
  EXPECT_NE(error({}, {}, "[cache]\nsize = 1\n").find("unknown section 'cache'"), std::string::npos);
  EXPECT_NE(error({}, {}, "[server]\nport = \"http\"\n").find("[server] port: expected an integer"),
            std::string::npos);
  EXPECT_NE(error({}, {}, "[server\n").find("line 1"), std::string::npos);
  EXPECT_NE(error({}, {{"AQUIFER_PORT", "70000"}}, std::nullopt).find("AQUIFER_PORT"), std::string::npos);
  EXPECT_NE(error({}, {{"AQUIFER_SERVER_NOPE", "1"}}, std::nullopt).find("AQUIFER_SERVER_NOPE"),
            std::string::npos);
  ServeFlags bad_role;
  bad_role.role = "leader";
  EXPECT_NE(error(bad_role, {}, std::nullopt).find("--role: role must be gateway, worker or all"),
            std::string::npos);
  ServeFlags missing;
  missing.config = "/nonexistent/aquifer.toml";
  EXPECT_NE(error(missing, {}, std::nullopt).find("cannot read config file /nonexistent/aquifer.toml"),
            std::string::npos);
}

TEST(ServeConfig, QuotasSectionSetsTheDefaultQuotasOfNewProjects) {
  Result<ServeConfig> none = LoadServeConfig({}, {}, "[server]\nport = 1\n");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->engine.default_quotas, engine::Quotas{});

  Result<ServeConfig> config =
      LoadServeConfig({}, {}, "[quotas]\nwrite_bytes = 1000000\nscan_bytes = 0\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_FALSE(config->engine.default_quotas.read_bytes.has_value());
  EXPECT_EQ(config->engine.default_quotas.write_bytes, 1000000);
  EXPECT_EQ(config->engine.default_quotas.scan_bytes, 0);

  Result<ServeConfig> negative = LoadServeConfig({}, {}, "[quotas]\nread_bytes = -1\n");
  ASSERT_FALSE(negative.ok());
  EXPECT_NE(negative.status().message().find("[quotas] read_bytes: expected an integer from 0"),
            std::string::npos)
      << negative.status().message();
  Result<ServeConfig> unknown = LoadServeConfig({}, {}, "[quotas]\nrows = 5\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("[quotas] rows: unknown key"), std::string::npos)
      << unknown.status().message();
}

TEST(ServeConfig, SubscriptionAndRateLimitsHaveDefaultsAndTakeFileAndEnvironment) {
  Result<ServeConfig> defaults = LoadServeConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_EQ(defaults->server.max_subscriptions, 10'000);
  EXPECT_EQ(defaults->server.max_subscriptions_per_secret, 100);
  EXPECT_EQ(defaults->server.api.rate_limit_per_secret, 0);
  EXPECT_EQ(defaults->server.api.rate_limit_burst, 0);

  Result<ServeConfig> file = LoadServeConfig(
      {}, {}, "[server]\nmax_subscriptions = 5\nmax_subscriptions_per_secret = 2\n"
              "rate_limit_per_secret = 0.5\nrate_limit_burst = 7\n");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->server.max_subscriptions, 5);
  EXPECT_EQ(file->server.max_subscriptions_per_secret, 2);
  EXPECT_DOUBLE_EQ(file->server.api.rate_limit_per_secret, 0.5);
  EXPECT_EQ(file->server.api.rate_limit_burst, 7);

  Result<ServeConfig> env = LoadServeConfig(
      {}, {{"AQUIFER_SERVER_RATE_LIMIT_PER_SECRET", "100"}, {"AQUIFER_SERVER_MAX_SUBSCRIPTIONS", "0"}});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_DOUBLE_EQ(env->server.api.rate_limit_per_secret, 100);
  EXPECT_EQ(env->server.max_subscriptions, 0);

  for (const char* bad : {"fast", "-1", "1e9", "2x"}) {
    Result<ServeConfig> refused = LoadServeConfig({}, {{"AQUIFER_SERVER_RATE_LIMIT_PER_SECRET", bad}});
    EXPECT_FALSE(refused.ok()) << bad;
    if (!refused.ok()) {
      EXPECT_NE(refused.status().message().find("AQUIFER_SERVER_RATE_LIMIT_PER_SECRET"), std::string::npos)
          << refused.status().ToString();
    }
  }
}

}  // namespace
}  // namespace aquifer::gateway
