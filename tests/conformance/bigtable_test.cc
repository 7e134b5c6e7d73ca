// The conformance suites on the Bigtable drivers, against the Cloud Bigtable emulator that
// scripts/peers/bigtable starts (AQUIFER_TEST_BIGTABLE; without it every test fails and says
// how to start one). Each test gets a Bigtable instance of its own, named after its scratch
// directory, so a reopen finds the same data and tests never meet; the emulator keeps
// everything in memory and is stopped at the end of the run.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/bigtable/register.h"
#include "aquifer/drivers/bigtable/testing.h"
#include "lookup_conformance.h"
#include "usage_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& BigtableRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::bigtable::Register(r);
    return r;
  }();
  return *registry;
}

Result<driver::Config> ConfigFor(const std::string& scratch_dir) {
  return drivers::bigtable::testing::TestConfig(std::filesystem::path(scratch_dir).filename().string());
}

INSTANTIATE_TEST_SUITE_P(
    Bigtable, UsageConformance,
    ::testing::Values(UsageDriverFactory{"bigtable", [](const std::string& dir) -> Result<std::shared_ptr<driver::UsageService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      return BigtableRegistry().MakeUsageService("bigtable", config, {});
    }}),
    UsageDriverFactoryName);

INSTANTIATE_TEST_SUITE_P(
    Bigtable, LookupConformance,
    ::testing::Values(LookupDriverFactory{"bigtable", [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::LookupService>> {
      AQ_ASSIGN_OR_RETURN(driver::Config config, ConfigFor(dir));
      driver::DriverContext context;
      context.clock = clock;
      return BigtableRegistry().MakeLookupService("bigtable", config, context);
    }}),
    LookupDriverFactoryName);

}  // namespace
}  // namespace aquifer::conformance
