#include "aquifer/drivers/redshift/register.h"

#include "aquifer/drivers/redshift/warehouse.h"

namespace aquifer::drivers::redshift {

void Register(driver::Registry* registry) {
  registry->Register(
      "redshift",
      driver::Factory<driver::WarehouseService>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::WarehouseService>> {
            AQ_ASSIGN_OR_RETURN(WarehouseOptions options, ParseWarehouseOptions(config));
            return MakeWarehouseService(options, context.clock);
          }));
}

}  // namespace aquifer::drivers::redshift
