// The conformance suites instantiated for the embedded RocksDB system. Every
// driver is built through the registry by name, as the engine builds it, on a
// fresh scratch directory per test (DriverContext::data_dir). To add an
// interface (e.g. the MessageQueue), add one INSTANTIATE_TEST_SUITE_P below.

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/rocksdb/lookup_service.h"
#include "lookup_conformance.h"
#include "usage_conformance.h"

namespace aquifer::conformance {
namespace {

// The registry with every RocksDB-backed driver of this build.
const driver::Registry& RocksDbRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::rocksdb::RegisterLookupAndUsage(r);
    return r;
  }();
  return *registry;
}

driver::DriverContext ContextFor(const std::string& scratch_dir, Clock* clock = nullptr) {
  driver::DriverContext context;
  context.data_dir = scratch_dir;
  context.clock = clock;
  return context;
}

INSTANTIATE_TEST_SUITE_P(
    RocksDb, LookupConformance,
    ::testing::Values(LookupDriverFactory{"rocksdb", [](const std::string& dir, Clock* clock) {
      return RocksDbRegistry().MakeLookupService("rocksdb", {}, ContextFor(dir, clock));
    }}),
    LookupDriverFactoryName);

INSTANTIATE_TEST_SUITE_P(
    RocksDb, UsageConformance,
    ::testing::Values(UsageDriverFactory{"rocksdb", [](const std::string& dir) {
      return RocksDbRegistry().MakeUsageService("rocksdb", {}, ContextFor(dir));
    }}),
    UsageDriverFactoryName);

}  // namespace
}  // namespace aquifer::conformance
