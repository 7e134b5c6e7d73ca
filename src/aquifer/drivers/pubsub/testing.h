#pragma once

// For tests only: the config of a Pub/Sub driver on the emulator that scripts/peers/pubsub
// started (its address in AQUIFER_TEST_PUBSUB), with an id prefix of its own so tests running
// in parallel never see each other's topics and subscriptions.

#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::pubsub::testing {

inline constexpr char kEmulatorVariable[] = "AQUIFER_TEST_PUBSUB";
inline constexpr char kProject[] = "aquifer-test";

// The prefix is "aqt-" plus `unique` (bytes outside [A-Za-z0-9_-] become '_') plus ".".
// Missing variable: FailedPrecondition saying how to start the emulator; tests must fail on
// it, never skip.
inline Result<driver::Config> TestConfig(std::string_view unique) {
  const char* host = std::getenv(kEmulatorVariable);
  if (host == nullptr || *host == '\0') {
    return FailedPrecondition(
        "{} is not set: the Pub/Sub suites need the Pub/Sub emulator. Run `make test`, or "
        "`eval \"$(scripts/peers/pubsub start)\"` before ctest",
        kEmulatorVariable);
  }
  std::string prefix = "aqt-";
  for (char c : unique) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    prefix.push_back(plain ? c : '_');
  }
  prefix.push_back('.');
  return driver::Config{{"endpoint", host},         {"emulator", "true"},
                        {"project", kProject},      {"prefix", prefix},
                        {"request_timeout_ms", "20000"}, {"poll_interval_ms", "20"}};
}

}  // namespace aquifer::drivers::pubsub::testing
