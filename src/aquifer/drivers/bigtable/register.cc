#include "aquifer/drivers/bigtable/register.h"

#include "aquifer/drivers/bigtable/lookup_service.h"
#include "aquifer/drivers/bigtable/usage_service.h"

namespace aquifer::drivers::bigtable {

void Register(driver::Registry* registry) {
  registry->Register(
      "bigtable",
      driver::Factory<driver::UsageService>(
          [](const driver::Config& config, const driver::DriverContext&) -> Result<std::shared_ptr<driver::UsageService>> {
            AQ_ASSIGN_OR_RETURN(UsageOptions options, ParseUsageOptions(config));
            return MakeUsageService(options);
          }));
  registry->Register(
      "bigtable",
      driver::Factory<driver::LookupService>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::LookupService>> {
            AQ_ASSIGN_OR_RETURN(LookupOptions options, ParseLookupOptions(config));
            return MakeLookupService(options, context.clock);
          }));
}

}  // namespace aquifer::drivers::bigtable
