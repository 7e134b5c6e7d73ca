#include "aquifer/drivers/pubsub/register.h"

#include "aquifer/drivers/pubsub/queue.h"

namespace aquifer::drivers::pubsub {

void Register(driver::Registry* registry) {
  registry->Register(
      "pubsub",
      driver::Factory<driver::MessageQueue>(
          [](const driver::Config& config,
             const driver::DriverContext& context) -> Result<std::shared_ptr<driver::MessageQueue>> {
            AQ_ASSIGN_OR_RETURN(QueueOptions options, ParseQueueOptions(config));
            return MakeMessageQueue(options, context.clock);
          }));
}

}  // namespace aquifer::drivers::pubsub
