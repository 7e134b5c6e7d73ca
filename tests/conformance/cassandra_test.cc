// The conformance suites on the Cassandra drivers, against the real node that
// scripts/peers/cassandra starts (AQUIFER_TEST_CASSANDRA; without it every
// test fails and says how to start one). Each test gets a keyspace of its
// own, named after its scratch directory, so a reopen finds the same data and
// tests never meet. Every keyspace a test made is dropped when the test ends
// (each table costs the node memory; left behind, a few dozen test keyspaces
// exhaust a 384 MiB heap).

#include <filesystem>
#include <mutex>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/cassandra/register.h"
#include "aquifer/drivers/cassandra/testing.h"
#include "lookup_conformance.h"
#include "usage_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& CassandraRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::cassandra::Register(r);
    return r;
  }();
  return *registry;
}

std::mutex keyspaces_mu;
std::set<std::string> keyspaces;  // made by the running test; guarded by keyspaces_mu

Result<driver::Config> ConfigFor(const std::string& scratch_dir) {
  auto config = drivers::cassandra::testing::TestConfig(std::filesystem::path(scratch_dir).filename().string());
  if (config.ok()) {
    std::lock_guard lock(keyspaces_mu);
    keyspaces.insert((*config)["keyspace"]);
  }
  return config;
}

// Runs after the fixture (and the drivers it held) is gone.
class DropTestKeyspaces : public ::testing::EmptyTestEventListener {
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::set<std::string> made;
    {
      std::lock_guard lock(keyspaces_mu);
      made.swap(keyspaces);
    }
    if (made.empty()) return;
    auto options = drivers::cassandra::testing::TestClientOptions();
    if (!options.ok()) return;
    auto session = drivers::cassandra::cql::Session::Connect(*options);
    ASSERT_TRUE(session.ok()) << session.status().ToString();
    for (const std::string& keyspace : made) {
      auto dropped = (*session)->Query("DROP KEYSPACE IF EXISTS " + keyspace);
      EXPECT_TRUE(dropped.ok()) << dropped.status().ToString();
    }
  }
};

const bool kDropListenerAdded = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new DropTestKeyspaces);
  return true;
}();

INSTANTIATE_TEST_SUITE_P(
    Cassandra, UsageConformance,
    ::testing::Values(UsageDriverFactory{"cassandra", [](const std::string& dir) -> Result<std::shared_ptr<driver::UsageService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      return CassandraRegistry().MakeUsageService("cassandra", config, {});
    }}),
    UsageDriverFactoryName);

INSTANTIATE_TEST_SUITE_P(
    Cassandra, LookupConformance,
    ::testing::Values(LookupDriverFactory{"cassandra", [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::LookupService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      driver::DriverContext context;
      context.clock = clock;
      return CassandraRegistry().MakeLookupService("cassandra", config, context);
    }}),
    LookupDriverFactoryName);

}  // namespace
}  // namespace aquifer::conformance
