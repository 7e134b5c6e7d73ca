#include "aquifer/drivers/cassandra/register.h"

#include "aquifer/drivers/cassandra/lookup_service.h"
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
  registry->Register(
      "cassandra",
      driver::Factory<driver::LookupService>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::LookupService>> {
            AQ_ASSIGN_OR_RETURN(LookupOptions options, ParseLookupOptions(config));
            return MakeLookupService(options, context.clock);
          }));
}

}  // namespace aquifer::drivers::cassandra
