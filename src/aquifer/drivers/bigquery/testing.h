#pragma once

// For tests only: the config of a BigQuery driver on the emulator that
// scripts/peers/bigquery started (its endpoint in AQUIFER_TEST_BIGQUERY, its
// project in AQUIFER_TEST_BIGQUERY_PROJECT), in a dataset of its own so
// tests running in parallel never see each other.

#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::bigquery::testing {

inline constexpr char kServerVariable[] = "AQUIFER_TEST_BIGQUERY";
inline constexpr char kProjectVariable[] = "AQUIFER_TEST_BIGQUERY_PROJECT";

// The dataset is "test_" plus the hex of `unique` (e.g. a scratch
// directory's name, the same on reopen). Missing variable:
// FailedPrecondition saying how to start the emulator; tests must fail on
// it, never skip. bqemulator answers every dry run with 0 bytes, so the
// suite runs with dry_run_bytes=false (README.md, "The emulator").
inline Result<driver::Config> TestConfig(std::string_view unique) {
  const char* endpoint = std::getenv(kServerVariable);
  const char* project = std::getenv(kProjectVariable);
  if (endpoint == nullptr || *endpoint == '\0' || project == nullptr || *project == '\0') {
    return FailedPrecondition(
        "{} and {} are not set: the BigQuery suites need the emulator. Run `make test`, or "
        "`eval \"$(scripts/peers/bigquery start)\"` before ctest",
        kServerVariable, kProjectVariable);
  }
  std::string dataset = "test_";
  constexpr char kHex[] = "0123456789abcdef";
  for (char c : unique) {
    dataset.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
    dataset.push_back(kHex[static_cast<unsigned char>(c) & 0xF]);
  }
  return driver::Config{{"endpoint", endpoint}, {"project", project}, {"dataset", dataset},
                        {"dry_run_bytes", "false"}, {"poll_interval_ms", "20"}};
}

}  // namespace aquifer::drivers::bigquery::testing
