#pragma once

// The Postgres MessageQueue: durable topics in tables of the driver's schema.
//
//   mq_topic        (name)                                  registered topics
//   mq_message      (seq identity, topic, ordering_key, data, publish_time_ms)
//   mq_subscription (topic, name) → persistent, ordered, last_seen_ms
//   mq_delivery     (topic, subscription, seq) → ordering_key, deadline_ms, attempt
//
// Publish fans a message out into one delivery row per subscription, in the
// same transaction; consumers claim ready delivery rows with
// `FOR UPDATE SKIP LOCKED`, acks delete them, and LISTEN/NOTIFY wakes waiting
// consumers at once. README.md beside this file has the design.
//
// Config keys: url, schema, pool_size (pg.h); max_message_size (1 MiB);
// poll_interval_ms (100: how often a waiting Pull re-checks deadlines even
// without a notification); ephemeral_expiry_ms (24 h: an ephemeral
// subscription not pulled for that long is dropped with its backlog);
// unclaimed_retention_ms (7 days: a message no subscription holds, published
// while the topic had none, is deleted after that long; swept at most once a
// minute per topic by Publish).

#include <memory>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/message_queue.h"
#include "aquifer/drivers/postgres/pg.h"

namespace aquifer::drivers::postgres {

struct QueueOptions {
  ConnectionOptions connection;
  size_t max_message_size = 1 << 20;
  int64_t poll_interval_ms = 100;
  int64_t ephemeral_expiry_ms = 24 * 3'600'000LL;
  int64_t unclaimed_retention_ms = 7 * 24 * 3'600'000LL;
};

Result<QueueOptions> ParseQueueOptions(const driver::Config& config);

// Connects, creates the schema and tables if missing, starts the listener
// thread, and returns the queue. Deadlines and publish times follow `clock`.
Result<std::shared_ptr<driver::MessageQueue>> MakeMessageQueue(const QueueOptions& options, Clock* clock);

}  // namespace aquifer::drivers::postgres
