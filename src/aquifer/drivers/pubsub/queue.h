#pragma once

// The Pub/Sub MessageQueue (README.md): an Aquifer topic is the Pub/Sub topic
// `<prefix><topic>` of the configured project, created by RegisterTopic.
//
// Publish sends the messages in Publish calls of at most 1000 messages and ~9 MB (the
// ordering key as Pub/Sub's ordering_key; one that is not UTF-8 goes as "~b64~" + base64)
// and returns once the service answered every call with message ids: Pub/Sub acknowledges a
// publish only after storing it in several zones.
// Concurrent Publish calls on one topic share calls (group commit: while one call is out,
// the others' messages queue and go together in the next, in the order they came).
//
// A persistent subscription is the Pub/Sub subscription `<prefix><topic>~<name>` (created on
// first Subscribe with enable_message_ordering = options.ordered, never expiring; reopening it
// with another `ordered` fails with FailedPrecondition). Every Subscription object pulls from it
// with unary Pull calls (return_immediately, polled every poll_interval_ms while Pull waits),
// so consumers in any process compete for its messages and nothing is prefetched. An ephemeral
// subscription is a subscription of its own, `<prefix><topic>~~<label>-<random>`, deleted by
// Close; one left behind by a crashed process expires after a day without use (the shortest
// expiration policy Pub/Sub allows) and Reset deletes it.
//
// Ack deadlines follow the injected clock: the driver keeps the Pub/Sub lease of every message
// a Subscription holds extended (ModifyAckDeadline, from a background thread, so a worker may
// hold a batch for longer than the subscription's ack deadline) until it is acked, nacked
// (ModifyAckDeadline 0: redelivered at once), or its ack_timeout_ms passed by the clock (then
// released as by a Nack). What a closed or crashed consumer held comes back when its last
// lease ends (at most max(10 s, ack_timeout_ms) later). Delivery attempts are Pub/Sub's
// (subscriptions carry a dead-letter policy, which makes the service count them; the
// dead-letter topic `<prefix>~dead-letter` only receives a message after 100 attempts);
// where the service reports none, this process counts them.
//
// Config keys: those of gcp::ParseGrpcOptions (endpoint, project, emulator, token_env,
// request_timeout_ms; PUBSUB_EMULATOR_HOST selects the emulator), plus prefix ("aquifer-":
// the first characters of every topic and subscription id; must start with a letter),
// max_message_size (1 MiB, at most 10,000,000 minus 2048), poll_interval_ms (50: the longest
// pause between Pull calls while waiting), dead_letter_policy (true; false when the service
// account may not publish to the dead-letter topic: delivery attempts are then counted in
// process only).

#include <memory>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/message_queue.h"
#include "aquifer/drivers/gcp/grpc_client.h"

namespace aquifer::drivers::pubsub {

inline constexpr char kEmulatorVariable[] = "PUBSUB_EMULATOR_HOST";
inline constexpr char kServiceEndpoint[] = "pubsub.googleapis.com:443";

struct QueueOptions {
  gcp::GrpcOptions grpc;
  std::string prefix = "aquifer-";
  size_t max_message_size = 1 << 20;
  int64_t poll_interval_ms = 50;
  bool dead_letter_policy = true;
};

Result<QueueOptions> ParseQueueOptions(const driver::Config& config);

// Makes the channel and returns the queue; nothing waits for the service until the first
// call that needs it. Ack deadlines follow `clock`.
Result<std::shared_ptr<driver::MessageQueue>> MakeMessageQueue(const QueueOptions& options, Clock* clock);

}  // namespace aquifer::drivers::pubsub
