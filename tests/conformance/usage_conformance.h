#pragma once

// The UsageService conformance suite, run unchanged by every usage driver.
// A driver's <system>_test.cc instantiates it with a factory:
//
//   INSTANTIATE_TEST_SUITE_P(RocksDb, UsageConformance,
//       ::testing::Values(UsageDriverFactory{"rocksdb", [](const std::string& dir) {...}}),
//       UsageDriverFactoryName);
//
// Each test gets a fresh scratch directory and uses random owner ids.

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/base/status.h"
#include "aquifer/driver/usage_service.h"
#include "lookup_conformance.h"  // ScratchDir

namespace aquifer::conformance {

struct UsageDriverFactory {
  std::string name;  // a gtest-safe identifier
  std::function<Result<std::shared_ptr<driver::UsageService>>(const std::string& scratch_dir)> make;
};

// Test names and failure messages show the factory's name.
inline void PrintTo(const UsageDriverFactory& factory, std::ostream* os) { *os << factory.name; }

std::string UsageDriverFactoryName(const ::testing::TestParamInfo<UsageDriverFactory>& info);

class UsageConformance : public ::testing::TestWithParam<UsageDriverFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;
  void Reopen();

  ScratchDir scratch_;
  std::shared_ptr<driver::UsageService> service_;
};

}  // namespace aquifer::conformance
