#pragma once

// For tests only: the driver config for the emulator that scripts/peers/bigtable started
// (host:port in AQUIFER_TEST_BIGTABLE), with a Bigtable instance per test so tests never meet
// (the emulator makes instances on first use).

#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::bigtable::testing {

inline constexpr char kServerVariable[] = "AQUIFER_TEST_BIGTABLE";

// Missing variable: FailedPrecondition saying how to start the emulator; tests must fail on
// it, never skip.
inline Result<std::string> Endpoint() {
  const char* where = std::getenv(kServerVariable);
  if (where == nullptr || *where == '\0') {
    return FailedPrecondition(
        "{} is not set: the Bigtable suites need the emulator. Run `make test`, or "
        "`eval \"$(scripts/peers/bigtable start)\"` before ctest (and `scripts/peers/bigtable stop` after)",
        kServerVariable);
  }
  return std::string(where);
}

// "i" plus the hex of the last 16 bytes of `unique` (e.g. a scratch directory's name, the
// same on reopen).
inline std::string InstanceFor(std::string_view unique) {
  if (unique.size() > 16) unique = unique.substr(unique.size() - 16);
  std::string instance = "i";
  constexpr char kHex[] = "0123456789abcdef";
  for (char c : unique) {
    instance.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
    instance.push_back(kHex[static_cast<unsigned char>(c) & 0xF]);
  }
  return instance;
}

inline Result<driver::Config> TestConfig(std::string_view unique) {
  AQ_ASSIGN_OR_RETURN(std::string where, Endpoint());
  return driver::Config{{"endpoint", where}, {"emulator", "true"}, {"project", "test-proj"},
                        {"instance", InstanceFor(unique)}};
}

}  // namespace aquifer::drivers::bigtable::testing
