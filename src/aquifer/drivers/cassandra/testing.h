#pragma once

// For tests only: the CQL client options and driver config for the node that
// scripts/peers/cassandra started (its host:port in AQUIFER_TEST_CASSANDRA;
// the peer enables PasswordAuthenticator with the default superuser
// cassandra/cassandra), and a keyspace name per test so tests never meet.

#include <cstdlib>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"
#include "aquifer/drivers/cassandra/cql/client.h"

namespace aquifer::drivers::cassandra::testing {

inline constexpr char kServerVariable[] = "AQUIFER_TEST_CASSANDRA";

// Missing variable: FailedPrecondition saying how to start a node; tests must
// fail on it, never skip.
inline Result<std::string> ContactPoint() {
  const char* where = std::getenv(kServerVariable);
  if (where == nullptr || *where == '\0') {
    return FailedPrecondition(
        "{} is not set: the Cassandra suites need a real node. Run `make test`, or "
        "`eval \"$(scripts/peers/cassandra start)\"` before ctest (and `scripts/peers/cassandra stop` after)",
        kServerVariable);
  }
  return std::string(where);
}

inline Result<cql::ClientOptions> TestClientOptions() {
  AQ_ASSIGN_OR_RETURN(std::string where, ContactPoint());
  cql::ClientOptions options;
  AQ_RETURN_IF_ERROR(cql::ParseContactPoint(where, &options));
  options.username = "cassandra";
  options.password = "cassandra";
  options.consistency = cql::Consistency::kOne;
  return options;
}

// "t_" plus the hex of `unique` (e.g. a scratch directory's name, the same on
// reopen), cut to Cassandra's 48 characters.
inline std::string KeyspaceFor(std::string_view unique) {
  std::string keyspace = "t_";
  constexpr char kHex[] = "0123456789abcdef";
  for (char c : unique) {
    if (keyspace.size() + 2 > 48) break;
    keyspace.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
    keyspace.push_back(kHex[static_cast<unsigned char>(c) & 0xF]);
  }
  return keyspace;
}

inline Result<driver::Config> TestConfig(std::string_view unique) {
  AQ_ASSIGN_OR_RETURN(std::string where, ContactPoint());
  return driver::Config{{"contact_point", where},  {"keyspace", KeyspaceFor(unique)},
                        {"username", "cassandra"}, {"password", "cassandra"},
                        {"consistency", "ONE"},    {"pool_size", "8"}};
}

}  // namespace aquifer::drivers::cassandra::testing
