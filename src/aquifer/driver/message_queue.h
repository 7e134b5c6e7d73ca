#pragma once

// MessageQueue: durable topics with at-least-once delivery.
//
// Fits Kafka (topics, consumer groups, committed offsets), Pub/Sub (topics,
// subscriptions, ack deadlines, ordering keys), Postgres (a table per topic,
// SELECT ... FOR UPDATE SKIP LOCKED) and the embedded RocksDB queue.
//
// Delivery is pull-based: a Subscription hands out messages with Pull() and
// the consumer acks each one after handling it. A persistent subscription is
// named and shared by every consumer that opens the same name (competing
// consumers); its backlog survives while nobody is subscribed and across
// process restarts, and a message that is not acked within `ack_timeout_ms`
// of its delivery (consumer died, or was slow) is delivered again. An
// ephemeral subscription sees only messages published after it was opened,
// belongs to one consumer, and vanishes when closed.
//
// With an ordered subscription, messages that share an ordering key are
// delivered in publish order and never to two consumers at once: a message is
// not delivered while an earlier message with the same key is delivered and
// unacked, except within one Pull, which may return several messages of a key
// (in publish order) to the same consumer, as Pub/Sub and Kafka partitions do.
// Such a consumer handles them in order, and when one fails it nacks that one
// and every later message of its key from the batch.
//
// All methods are thread-safe. Subscriptions are used by one thread at a time.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::driver {

struct MessageQueueCapabilities {
  size_t max_message_size = 1 << 20;
  // Both required by the engine (per-table write order; write reports), so the
  // conformance suite asserts them; they are here to say so in one place.
  bool ordering_keys = true;
  bool ephemeral_subscriptions = true;
  // True when Publish returns only after the message is on stable storage
  // (fsync, replicated acks); false when a driver option relaxes it.
  bool durable_publish = true;
  // False when no other process can use the same queue (the embedded one
  // locks its files): what this process publishes only it can read.
  bool shared_between_processes = true;
  // True when a subscription hands out messages of different ordering keys
  // (and without a key) in publish order too, as far as nothing holds them
  // back; false when the queue is split into parts fetched independently
  // (Kafka with partitions > 1): then only the order per key is promised.
  bool publish_order_across_keys = true;
};

struct OutgoingMessage {
  std::string_view data;
  std::string_view ordering_key;  // empty: no ordering
};

struct Message {
  std::string data;
  std::string ordering_key;
  std::string ack_id;           // opaque handle for Ack/Nack
  int64_t publish_time_ms = 0;
  int32_t delivery_attempt = 1;  // 1 on first delivery, more on redelivery
};

struct SubscriptionOptions {
  std::string name;          // persistent: the shared name; ephemeral: a label
  bool persistent = true;
  bool ordered = false;      // reopening a persistent subscription with another value fails
  int64_t ack_timeout_ms = 30'000;
};

class Subscription {
 public:
  virtual ~Subscription() = default;
  Subscription() = default;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Waits up to `timeout_ms` for at least one message, then returns up to
  // `max_messages` (possibly none on timeout). Unavailable if the broker
  // cannot be reached.
  virtual Result<std::vector<Message>> Pull(size_t max_messages, int64_t timeout_ms) = 0;
  // Marks messages as handled; they are not delivered again. Acking an
  // unknown or already-acked id is not an error.
  virtual Status Ack(std::span<const std::string> ack_ids) = 0;
  // Hands messages back for redelivery as soon as possible.
  virtual Status Nack(std::span<const std::string> ack_ids) = 0;
  // Stops delivery. Unacked messages of a persistent subscription are
  // redelivered (to other consumers or after reopening) once their ack
  // timeout passes. Idempotent; the destructor closes too.
  virtual Status Close() = 0;
};

class MessageQueue {
 public:
  virtual ~MessageQueue() = default;
  MessageQueue() = default;
  MessageQueue(const MessageQueue&) = delete;
  MessageQueue& operator=(const MessageQueue&) = delete;

  virtual MessageQueueCapabilities capabilities() const = 0;
  // Creates the topic if needed. Idempotent.
  virtual Status RegisterTopic(std::string_view topic) = 0;
  // Returns once every message is durably accepted (see capabilities). All or
  // nothing is not promised across messages: on error some may be published.
  // InvalidArgument for a message over max_message_size (nothing published),
  // NotFound for an unregistered topic.
  virtual Status Publish(std::string_view topic, std::span<const OutgoingMessage> messages) = 0;
  // Opens a subscription on a registered topic.
  virtual Result<std::unique_ptr<Subscription>> Subscribe(std::string_view topic,
                                                          const SubscriptionOptions& options) = 0;
  // Drops every subscription and backlog; topics stay usable.
  virtual Status Reset() = 0;
};

}  // namespace aquifer::driver
