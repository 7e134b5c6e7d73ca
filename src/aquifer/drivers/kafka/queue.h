#pragma once

// The Kafka MessageQueue: an Aquifer topic is a Kafka topic (topic_prefix +
// name) of `partitions` partitions, created by RegisterTopic (AdminClient).
//
// Publish produces every message (the ordering key as the Kafka message key,
// so one key stays in one partition and in order; no key: a random partition)
// through an idempotent producer with acks=all, and returns once the broker
// acknowledged every one of them (durable in Kafka's sense: written to every
// in-sync replica; the test broker also flushes each append, see
// scripts/peers/kafka), or after request_timeout_ms with Unavailable.
//
// A persistent subscription is a Kafka consumer group (topic + "/" + name).
// Each queue object runs one group member per subscription name: the local
// Subscription objects of that name share it and compete for its messages
// (as consumers of one name do), and several processes split the partitions
// between their members (Kafka rebalancing). The member keeps what it fetched
// in memory and hands it out under Aquifer's semantics:
//   - ack deadlines follow the injected clock: a message not acked within
//     ack_timeout_ms of its delivery is handed out again (delivery_attempt + 1);
//   - Nack hands a message back at once (a local redelivery: no seek);
//   - ordered: a message is not handed out while an earlier message of its
//     key is out and unacked (one Pull may return several of a key in order);
//   - the group's committed offset of a partition only ever moves past a
//     prefix of messages that were all acked, so whatever was not acked when a
//     member goes away (closed, crashed, or its partitions moved to another
//     member in a rebalance) is fetched again by the partition's next owner,
//     from the first unacked message on (at-least-once). The committed
//     offset's metadata carries the attempt counts of the first unacked
//     messages handed out, so the next owner's delivery_attempt counts on.
//   - After a rebalance the revoked partitions' unacked messages are dropped
//     from memory (their acks are ignored); until the old owner notices, the
//     new owner may run a message of a key while the old one still does.
// A group's `ordered` setting is kept in the metadata of its committed
// offsets (committed at the low watermark when the group is first made), so
// reopening a group with the other setting fails in any process.
//
// An ephemeral subscription is a consumer of its own, not in a group,
// assigned every partition at the high watermarks read when it opens (so it
// sees exactly what is published after Subscribe returns); it commits nothing.
//
// Reset deletes every consumer group under topic_prefix and every record of
// the prefix's topics (DeleteRecords up to the high watermark).
//
// Config keys: those of client.h, plus partitions (1: partitions of each
// topic the driver creates; more partitions spread one subscription over more
// processes, and then messages of different keys are not delivered in publish
// order); max_message_size (1 MiB; the topics are created with a
// max.message.bytes that fits it); compression (none, gzip, snappy, lz4,
// zstd: the producer's compression.type; "none"); linger_ms (5: how long the
// producer gathers messages into one request); session_timeout_ms (10000:
// how soon a member that stopped answering loses its partitions to the
// others); fetch_buffer_messages (200000) and fetch_buffer_bytes (64 MiB): a
// member pauses fetching while it holds this many unacked messages or bytes,
// and resumes below half of both.

#include <memory>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/message_queue.h"
#include "aquifer/drivers/kafka/client.h"

namespace aquifer::drivers::kafka {

struct QueueOptions {
  ClientOptions client;
  int partitions = 1;
  size_t max_message_size = 1 << 20;
  std::string compression = "none";
  int64_t linger_ms = 5;
  int64_t session_timeout_ms = 10'000;
  int64_t fetch_buffer_messages = 200'000;
  int64_t fetch_buffer_bytes = 64 << 20;
};

Result<QueueOptions> ParseQueueOptions(const driver::Config& config);

// Makes the producer and returns the queue; nothing waits for the broker
// until the first call that needs it. Ack deadlines and publish times follow `clock`.
Result<std::shared_ptr<driver::MessageQueue>> MakeMessageQueue(const QueueOptions& options, Clock* clock);

}  // namespace aquifer::drivers::kafka
