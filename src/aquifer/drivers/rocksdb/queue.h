#pragma once

// The embedded MessageQueue: durable topics in a RocksDB database of its own
// (`<data_dir>/queue`, or the config key `path`).
//
// Config keys (all optional):
//   path                   database folder (default <data_dir>/queue)
//   sync                   fsync before Publish returns (default true; false keeps
//                          the WAL but skips the fsync, and capabilities() says so)
//   max_message_size       bytes of data per message (default 1 MiB)
//   max_delivery_attempts  after this many unacked deliveries a message moves to
//                          the topic "<topic>.dead" (default 0 = never)
//   poll_interval_ms       how often a blocked Pull rechecks without a signal (default 50)
//   gc_min_messages        trim a topic once this many messages are deletable (default 1024)
//
// Key layout, subscription state, redelivery, garbage collection and durability
// are described in README.md ("Queue").
//
// One process opens a database at a time (RocksDB's LOCK file); a second open
// of the same folder fails with Unavailable. Subscriptions keep the queue's
// internals alive; close them before reopening the same folder.

#include <memory>
#include <string>

#include "aquifer/base/status.h"
#include "aquifer/driver/message_queue.h"
#include "aquifer/driver/registry.h"

namespace aquifer::drivers::rocksdb {

// Opens (creating if needed) the queue database described by `config`.
Result<std::shared_ptr<driver::MessageQueue>> OpenQueue(const driver::Config& config,
                                                        const driver::DriverContext& context);

// Registers the MessageQueue factories "rocksdb" and "embedded".
void RegisterQueue(driver::Registry* registry);

}  // namespace aquifer::drivers::rocksdb
