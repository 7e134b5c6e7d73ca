#include "aquifer/drivers/kafka/register.h"

namespace aquifer::drivers::kafka {

void Register(driver::Registry* registry) {
  (void)registry;  // the MessageQueue and LookupService factories land here
}

}  // namespace aquifer::drivers::kafka
