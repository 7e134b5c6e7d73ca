// The MessageQueue conformance suite on the Pub/Sub driver, against the Pub/Sub emulator that
// scripts/peers/pubsub starts (AQUIFER_TEST_PUBSUB; without it every test fails and says how
// to start one). Each test gets an id prefix of its own, named after its scratch directory, so
// a reopen finds the same topics and subscriptions and parallel tests never meet.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/pubsub/register.h"
#include "aquifer/drivers/pubsub/testing.h"
#include "message_queue_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& PubSubRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::pubsub::Register(r);
    return r;
  }();
  return *registry;
}

// Pub/Sub's shortest ack deadline is 10 s: what a closed or crashed consumer held comes back
// when its lease ends, so the suite's ack timeout is 10 s (an expiry by the injected clock
// is released at once; see src/aquifer/drivers/pubsub/queue.h).
MessageQueueFactory PubSubQueue() {
  return MessageQueueFactory{
      "pubsub",
      [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::MessageQueue>> {
        AQ_ASSIGN_OR_RETURN(driver::Config config,
                            drivers::pubsub::testing::TestConfig(std::filesystem::path(dir).filename().string()));
        driver::DriverContext context;
        context.clock = clock;
        return PubSubRegistry().MakeMessageQueue("pubsub", config, context);
      },
      /*ack_timeout_ms=*/10'000};
}

INSTANTIATE_TEST_SUITE_P(PubSub, MessageQueueConformance, ::testing::Values(PubSubQueue()),
                         MessageQueueFactoryName);

}  // namespace
}  // namespace aquifer::conformance
