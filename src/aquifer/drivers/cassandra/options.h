#pragma once

// The configuration every Cassandra driver reads (README.md, "Configuration"),
// and the keyspace they share.

#include <memory>
#include <string>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"
#include "aquifer/drivers/cassandra/cql/client.h"

namespace aquifer::drivers::cassandra {

struct Options {
  cql::ClientOptions client;
  std::string keyspace = "aquifer";
  // Used only when the keyspace is missing: CREATE KEYSPACE ... WITH replication = <this>.
  std::string replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
};

// Keys: contact_point ("host:port", default 127.0.0.1:9042), keyspace
// (default "aquifer"; letters, digits and _), username, password,
// consistency (default LOCAL_QUORUM), serial_consistency (default SERIAL),
// replication (a CQL map, for a keyspace the driver creates), pool_size
// (default 4), connect_timeout_ms, request_timeout_ms.
Result<Options> ParseOptions(const driver::Config& config);

// Connects and creates the keyspace if it is missing.
Result<std::unique_ptr<cql::Session>> ConnectAndEnsureKeyspace(const Options& options);

}  // namespace aquifer::drivers::cassandra
