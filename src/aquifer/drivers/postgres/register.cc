#include "aquifer/drivers/postgres/register.h"

#include "aquifer/drivers/postgres/lookup_service.h"
#include "aquifer/drivers/postgres/pg.h"
#include "aquifer/drivers/postgres/queue.h"
#include "aquifer/drivers/postgres/usage_service.h"
#include "aquifer/drivers/postgres/warehouse.h"

namespace aquifer::drivers::postgres {

void Register(driver::Registry* registry) {
  registry->Register(
      "postgres",
      driver::Factory<driver::UsageService>(
          [](const driver::Config& config, const driver::DriverContext&) -> Result<std::shared_ptr<driver::UsageService>> {
            AQ_ASSIGN_OR_RETURN(ConnectionOptions options, ParseConnectionOptions(config));
            return MakeUsageService(options);
          }));
  registry->Register(
      "postgres",
      driver::Factory<driver::MessageQueue>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::MessageQueue>> {
            AQ_ASSIGN_OR_RETURN(QueueOptions options, ParseQueueOptions(config));
            return MakeMessageQueue(options, context.clock);
          }));
  registry->Register(
      "postgres",
      driver::Factory<driver::WarehouseService>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::WarehouseService>> {
            AQ_ASSIGN_OR_RETURN(WarehouseOptions options, ParseWarehouseOptions(config));
            return MakeWarehouseService(options, context.clock);
          }));
  registry->Register(
      "postgres",
      driver::Factory<driver::LookupService>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::LookupService>> {
            AQ_ASSIGN_OR_RETURN(LookupOptions options, ParseLookupOptions(config));
            return MakeLookupService(options, context.clock);
          }));
}

}  // namespace aquifer::drivers::postgres
