// The conformance suites on the Postgres drivers, against the real server
// that scripts/peers/postgres starts (AQUIFER_TEST_POSTGRES; without it every
// test fails and says how to start one). Each test gets a schema of its own,
// named after its scratch directory, so a reopen finds the same data and
// parallel tests never meet.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/postgres/register.h"
#include "aquifer/drivers/postgres/testing.h"
#include "lookup_conformance.h"
#include "message_queue_conformance.h"
#include "usage_conformance.h"
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& PostgresRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::postgres::Register(r);
    return r;
  }();
  return *registry;
}

Result<driver::Config> ConfigFor(const std::string& scratch_dir) {
  return drivers::postgres::testing::TestConfig(std::filesystem::path(scratch_dir).filename().string());
}

INSTANTIATE_TEST_SUITE_P(
    Postgres, UsageConformance,
    ::testing::Values(UsageDriverFactory{"postgres", [](const std::string& dir) -> Result<std::shared_ptr<driver::UsageService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      return PostgresRegistry().MakeUsageService("postgres", config, {});
    }}),
    UsageDriverFactoryName);

INSTANTIATE_TEST_SUITE_P(
    Postgres, LookupConformance,
    ::testing::Values(LookupDriverFactory{"postgres", [](const std::string& dir) -> Result<std::shared_ptr<driver::LookupService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      return PostgresRegistry().MakeLookupService("postgres", config, {});
    }}),
    LookupDriverFactoryName);

INSTANTIATE_TEST_SUITE_P(
    Postgres, MessageQueueConformance,
    ::testing::Values(MessageQueueFactory{
        "postgres", [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::MessageQueue>> {
          AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
          driver::DriverContext context;
          context.clock = clock;
          return PostgresRegistry().MakeMessageQueue("postgres", config, context);
        }}),
    MessageQueueFactoryName);

// Postgres spells an array's length `cardinality(a)` and a field of a jsonb
// record `(r->'f')`.
WarehouseDriverFactory PostgresWarehouse() {
  WarehouseDriverFactory factory;
  factory.name = "postgres";
  factory.make = [](const std::string& dir) -> Result<std::shared_ptr<driver::WarehouseService>> {
    AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
    return PostgresRegistry().MakeWarehouseService("postgres", config, {});
  };
  factory.array_length = [](const std::string& column) { return "cardinality(" + column + ")"; };
  factory.nested_field = [](const std::string& column, const std::string& field) {
    return "(" + column + "->'" + field + "')";
  };
  return factory;
}

INSTANTIATE_TEST_SUITE_P(Postgres, WarehouseConformance, ::testing::Values(PostgresWarehouse()), WarehouseDriverName);

}  // namespace
}  // namespace aquifer::conformance
