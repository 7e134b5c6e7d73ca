#pragma once

// The LookupService conformance suite: one value-parameterised gtest suite
// that every lookup driver runs unchanged. A driver's <system>_test.cc only
// instantiates it with a factory:
//
//   INSTANTIATE_TEST_SUITE_P(RocksDb, LookupConformance,
//       ::testing::Values(LookupDriverFactory{"rocksdb", [](const std::string& dir) {...}}),
//       LookupDriverFactoryName);
//
// Each test gets a fresh scratch directory (embedded drivers keep their files
// there; networked drivers may ignore it) and uses fresh random instance ids,
// so tests never see each other's data on a shared server. `make` may be
// called several times with the same directory: the reopen test destroys the
// driver and makes it again, and expects the data to be there.
//
// Deviations between drivers go through LookupCapabilities (the limits), never
// through the driver's name.
//
// `make` gets the fixture's ManualClock: the driver must read time (record
// age for retention, applied-id stamps) from it, so retention is tested by
// moving the clock, never by sleeping.

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"

namespace aquifer::conformance {

struct LookupDriverFactory {
  std::string name;  // a gtest-safe identifier: letters, digits, '_'
  std::function<Result<std::shared_ptr<driver::LookupService>>(const std::string& scratch_dir, Clock* clock)> make;
};

// Test names and failure messages show the factory's name.
inline void PrintTo(const LookupDriverFactory& factory, std::ostream* os) { *os << factory.name; }

std::string LookupDriverFactoryName(const ::testing::TestParamInfo<LookupDriverFactory>& info);

// Creates and removes a fresh temporary directory per test.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class LookupConformance : public ::testing::TestWithParam<LookupDriverFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Destroys the driver and makes a new one on the same scratch directory.
  void Reopen();

  ScratchDir scratch_;
  ManualClock clock_;  // the driver's clock; starts at a fixed instant
  std::shared_ptr<driver::LookupService> service_;
};

}  // namespace aquifer::conformance
