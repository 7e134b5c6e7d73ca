#include "aquifer/drivers/kafka/register.h"

#include "aquifer/drivers/kafka/queue.h"
#include "aquifer/drivers/kafka/lookup.h"

namespace aquifer::drivers::kafka {

void Register(driver::Registry* registry) {
  registry->Register(
      "kafka",
      driver::Factory<driver::MessageQueue>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::MessageQueue>> {
            AQ_ASSIGN_OR_RETURN(QueueOptions options, ParseQueueOptions(config));
            return MakeMessageQueue(options, context.clock);
          }));
  RegisterLookup(registry);
}

}  // namespace aquifer::drivers::kafka
