#pragma once

// For tests only: the config of a Kafka driver on the broker that
// scripts/peers/kafka started (its address in AQUIFER_TEST_KAFKA), with a
// topic prefix of its own so tests running in parallel never see each other.

#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::kafka::testing {

inline constexpr char kBrokerVariable[] = "AQUIFER_TEST_KAFKA";

// The topic prefix is "aqt-" plus `unique` (e.g. a scratch directory's name,
// the same on reopen; bytes outside [A-Za-z0-9_-] become '_') plus ".".
// Missing variable: FailedPrecondition saying how to start a broker; tests
// must fail on it, never skip.
inline Result<driver::Config> TestConfig(std::string_view unique) {
  const char* brokers = std::getenv(kBrokerVariable);
  if (brokers == nullptr || *brokers == '\0') {
    return FailedPrecondition(
        "{} is not set: the Kafka suites need a real broker. Run `make test`, or "
        "`eval \"$(scripts/peers/kafka start)\"` before ctest",
        kBrokerVariable);
  }
  std::string prefix = "aqt-";
  for (char c : unique) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    prefix.push_back(plain ? c : '_');
  }
  prefix.push_back('.');
  return driver::Config{{"brokers", brokers}, {"topic_prefix", prefix}, {"request_timeout_ms", "10000"}};
}

}  // namespace aquifer::drivers::kafka::testing
