#include "aquifer/drivers/cassandra/options.h"

#include <fmt/format.h>

namespace aquifer::drivers::cassandra {

Result<Options> ParseOptions(const driver::Config& config) {
  Options options;
  AQ_RETURN_IF_ERROR(cql::ParseContactPoint(driver::ConfigString(config, "contact_point", "127.0.0.1:9042"),
                                            &options.client));
  options.keyspace = driver::ConfigString(config, "keyspace", options.keyspace);
  if (options.keyspace.empty() || options.keyspace.size() > 48 ||
      options.keyspace.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") !=
          std::string::npos) {
    return InvalidArgument("cassandra: keyspace '{}' must be 1 to 48 letters, digits or _", options.keyspace);
  }
  options.client.username = driver::ConfigString(config, "username", "");
  options.client.password = driver::ConfigString(config, "password", "");
  AQ_ASSIGN_OR_RETURN(options.client.consistency,
                      cql::ParseConsistency(driver::ConfigString(config, "consistency", "LOCAL_QUORUM")));
  AQ_ASSIGN_OR_RETURN(options.client.serial_consistency,
                      cql::ParseConsistency(driver::ConfigString(config, "serial_consistency", "SERIAL")));
  options.replication = driver::ConfigString(config, "replication", options.replication);
  AQ_ASSIGN_OR_RETURN(int64_t pool_size, driver::ConfigInt(config, "pool_size", 4));
  AQ_ASSIGN_OR_RETURN(int64_t connect_timeout, driver::ConfigInt(config, "connect_timeout_ms", 5'000));
  AQ_ASSIGN_OR_RETURN(int64_t request_timeout, driver::ConfigInt(config, "request_timeout_ms", 15'000));
  if (pool_size < 1 || pool_size > 256) return InvalidArgument("cassandra: pool_size {} outside [1, 256]", pool_size);
  if (connect_timeout < 1 || request_timeout < 1) return InvalidArgument("cassandra: timeouts must be positive");
  options.client.pool_size = static_cast<int>(pool_size);
  options.client.connect_timeout_ms = static_cast<int>(connect_timeout);
  options.client.request_timeout_ms = static_cast<int>(request_timeout);
  return options;
}

Result<std::unique_ptr<cql::Session>> ConnectAndEnsureKeyspace(const Options& options) {
  AQ_ASSIGN_OR_RETURN(std::unique_ptr<cql::Session> session, cql::Session::Connect(options.client));
  auto made = session->Query(
      fmt::format("CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}", options.keyspace, options.replication));
  if (!made.ok()) return made.status();
  return session;
}

}  // namespace aquifer::drivers::cassandra
