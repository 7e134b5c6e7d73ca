// The conformance suites on the Kafka drivers, against the real broker that
// scripts/peers/kafka starts (AQUIFER_TEST_KAFKA; without it every test fails
// and says how to start one). Each test gets a topic prefix of its own, named
// after its scratch directory, so a reopen finds the same topics and groups
// and parallel tests never meet.

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/kafka/register.h"
#include "aquifer/drivers/kafka/testing.h"
#include "message_queue_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& KafkaRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::kafka::Register(r);
    return r;
  }();
  return *registry;
}

MessageQueueFactory KafkaQueue(std::string name, int partitions) {
  return MessageQueueFactory{
      std::move(name), [partitions](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::MessageQueue>> {
        AQ_ASSIGN_OR_RETURN(driver::Config config,
                            drivers::kafka::testing::TestConfig(std::filesystem::path(dir).filename().string()));
        config["partitions"] = std::to_string(partitions);
        driver::DriverContext context;
        context.clock = clock;
        return KafkaRegistry().MakeMessageQueue("kafka", config, context);
      }};
}

// One partition per topic (the driver's default), and three: then messages of
// different keys sit in different partitions, fetched independently, so they
// are not always handed out in publish order (capabilities()
// .publish_order_across_keys is false and the suite checks only the order per
// key). Members in several processes splitting the partitions are tested in
// src/aquifer/drivers/kafka/queue_test.cc.
INSTANTIATE_TEST_SUITE_P(Kafka, MessageQueueConformance,
                         ::testing::Values(KafkaQueue("kafka", 1), KafkaQueue("kafka_3_partitions", 3)),
                         MessageQueueFactoryName);

}  // namespace
}  // namespace aquifer::conformance
