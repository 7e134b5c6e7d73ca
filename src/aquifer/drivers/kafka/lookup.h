#pragma once

// The LookupService on Kafka (registered as lookup "kafka").
//
// Per instance, two single-partition topics hold everything:
//   <topic_prefix>lookup.<instance id>.log    the log: one message per record written
//                                      (key = tuple key, value = timestamp ‖ Avro);
//   <topic_prefix>lookup.<instance id>.index  the index: compacted (cleanup.policy=compact),
//                                      keyed by the tuple key, same value.
// With a log_retention_ms / index_retention_ms the topics get retention.ms
// (the index cleanup.policy=compact,delete), set at RegisterInstance and on
// every change; reads hide expired records through the state store and
// PurgeExpired purges this process's store (README.md, "Retention").
// Every process materialises the topics it reads into a local RocksDB state
// store (the embedded RocksDB LookupService, drivers/rocksdb, run without
// fsync), as a Kafka Streams state store is materialised from its changelog;
// reads, filters, paging and cursor payloads are that store's. The store is a
// cache: it lives in a fresh directory per service object and is rebuilt from
// the topics, instance by instance, on first use after a start.
//
// Consistency: every read first asks the broker for the topic's high
// watermark and waits (catchup_timeout_ms, then Unavailable) until the local
// store has applied everything below it, so a write acknowledged by any
// process is seen by every later read of any process. Writes produce with
// enable.idempotence and acks=all and return once the broker acknowledged
// every message. See README.md beside this file for the design, message
// headers, exactly-once and what a restart costs.
//
// Config keys: the client keys of client.h (brokers, topic_prefix,
// client_id, request_timeout_ms: also the bound on a write's acknowledgement
// and on admin requests, replication_factor, librdkafka.<property>), and
// state_dir ("<data_dir>/kafka-lookup"), catchup_timeout_ms (10000),
// compression ("none"), max_key_size, max_record_size, max_records_in_batch,
// applied_window_ms (as for rocksdb).

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/registry.h"
#include "aquifer/driver/types.h"
#include "aquifer/drivers/kafka/client.h"

namespace aquifer::drivers::kafka {

struct LookupOptions {
  ClientOptions client;
  std::string state_dir;  // a fresh store directory is made under it per service object
  int64_t catchup_timeout_ms = 10'000;
  std::string compression = "none";
  driver::Limits limits;
  int64_t applied_window_ms = driver::kDefaultAppliedWindowMs;
  Clock* clock = Clock::System();
};

Result<LookupOptions> ParseLookupOptions(const driver::Config& config, const driver::DriverContext& context);

Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options);

// Registers the name "kafka" for LookupService (called from Register, register.h).
void RegisterLookup(driver::Registry* registry);

}  // namespace aquifer::drivers::kafka
