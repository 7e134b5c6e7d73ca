#pragma once

// The MessageQueue conformance suite, run unchanged by every driver.
//
// A driver's test file instantiates it with a factory:
//
//   INSTANTIATE_TEST_SUITE_P(RocksDb, MessageQueueConformance,
//       ::testing::Values(MessageQueueFactory{"rocksdb", [](const std::string& dir, Clock* clock)
//           -> Result<std::shared_ptr<driver::MessageQueue>> { ... }}),
//       MessageQueueFactoryName);
//
// The factory is called with a scratch folder that lives for one test and the
// test's ManualClock. Calling it twice with the same folder must reach the
// same data (a restart): the tests destroy every handle of the first queue
// before making the second. Servers that keep their own state (Kafka, Pub/Sub,
// Postgres) should map the folder to a fresh namespace (topic prefix, schema)
// derived from it.
//
// Ack timeouts: each test advances the ManualClock past the ack timeout and
// then pulls with a real-time wait longer than the timeout, so a driver whose
// deadlines follow the injected clock redelivers at once and one whose broker
// keeps real time (Pub/Sub) redelivers within the wait. Deviations between
// drivers go through MessageQueueCapabilities only.

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/message_queue.h"

namespace aquifer::conformance {

struct MessageQueueFactory {
  std::string name;  // letters, digits and '_' (a gtest parameter name)
  std::function<Result<std::shared_ptr<driver::MessageQueue>>(const std::string& scratch_dir,
                                                              Clock* clock)>
      make;
  // The ack timeout the tests use; brokers with a minimum deadline (Pub/Sub: 10 s) raise it.
  int64_t ack_timeout_ms = 1000;
};

// gtest prints the parameter by its name.
inline void PrintTo(const MessageQueueFactory& factory, std::ostream* os) { *os << factory.name; }

std::string MessageQueueFactoryName(const ::testing::TestParamInfo<MessageQueueFactory>& info);

class MessageQueueConformance : public ::testing::TestWithParam<MessageQueueFactory> {
 protected:
  void SetUp() override;
  void TearDown() override;

  // Makes a queue on this test's folder (again after a restart).
  std::shared_ptr<driver::MessageQueue> Open();

  std::string dir_;
  ManualClock clock_;
};

}  // namespace aquifer::conformance
