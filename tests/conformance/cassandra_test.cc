// The conformance suites on the Cassandra drivers, against the real node that
// scripts/peers/cassandra starts (AQUIFER_TEST_CASSANDRA; without it every
// test fails and says how to start one). Each test gets a keyspace of its
// own, named after its scratch directory, so a reopen finds the same data and
// tests never meet.

#include <filesystem>
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

Result<driver::Config> ConfigFor(const std::string& scratch_dir) {
  return drivers::cassandra::testing::TestConfig(std::filesystem::path(scratch_dir).filename().string());
}

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
