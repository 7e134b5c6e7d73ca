#include "aquifer/drivers/cassandra/register.h"

#include "aquifer/drivers/cassandra/options.h"
#include "aquifer/drivers/cassandra/usage_service.h"

namespace aquifer::drivers::cassandra {

void Register(driver::Registry* registry) {
  registry->Register(
      "cassandra",
      driver::Factory<driver::UsageService>(
          [](const driver::Config& config, const driver::DriverContext&) -> Result<std::shared_ptr<driver::UsageService>> {
            AQ_ASSIGN_OR_RETURN(Options options, ParseOptions(config));
            return MakeUsageService(options);
          }));
}

}  // namespace aquifer::drivers::cassandra
