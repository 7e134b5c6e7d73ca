#pragma once

// For tests only: the config of a Postgres driver on the server that
// scripts/peers/postgres started (its URI in AQUIFER_TEST_POSTGRES), in a
// schema of its own so tests running in parallel never see each other.

#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::postgres::testing {

inline constexpr char kServerVariable[] = "AQUIFER_TEST_POSTGRES";

// The schema name is "test_" plus the hex of `unique` (e.g. a scratch
// directory's name, the same on reopen), truncated to Postgres' 63 bytes.
// Missing variable: FailedPrecondition saying how to start a server; tests
// must fail on it, never skip.
inline Result<driver::Config> TestConfig(std::string_view unique) {
  const char* url = std::getenv(kServerVariable);
  if (url == nullptr || *url == '\0') {
    return FailedPrecondition(
        "{} is not set: the Postgres suites need a real server. Run `make test`, or "
        "`eval \"$(scripts/peers/postgres start)\"` before ctest",
        kServerVariable);
  }
  std::string schema = "test_";
  constexpr char kHex[] = "0123456789abcdef";
  for (char c : unique) {
    if (schema.size() + 2 > 63) break;
    schema.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
    schema.push_back(kHex[static_cast<unsigned char>(c) & 0xF]);
  }
  return driver::Config{{"url", url}, {"schema", schema}, {"pool_size", "8"}};
}

}  // namespace aquifer::drivers::postgres::testing
