// The MessageQueue conformance suite on the embedded RocksDB queue.

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/rocksdb/queue.h"
#include "message_queue_conformance.h"

namespace aquifer::conformance {
namespace {

Result<std::shared_ptr<driver::MessageQueue>> MakeRocksQueue(const std::string& dir, Clock* clock) {
  driver::Registry registry;
  drivers::rocksdb::RegisterQueue(&registry);
  driver::DriverContext context;
  context.data_dir = dir;
  context.clock = clock;
  // Small batches of trimming so garbage collection runs during the suite.
  return registry.MakeMessageQueue("embedded", {{"gc_min_messages", "16"}}, context);
}

INSTANTIATE_TEST_SUITE_P(RocksDb, MessageQueueConformance,
                         ::testing::Values(MessageQueueFactory{"rocksdb", MakeRocksQueue}),
                         MessageQueueFactoryName);

}  // namespace
}  // namespace aquifer::conformance
