#include "aquifer/driver/registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace aquifer::driver {
namespace {

template <typename Interface>
std::vector<std::string> Names(const std::map<std::string, Factory<Interface>>& factories) {
  std::vector<std::string> names;
  for (const auto& [name, factory] : factories) names.push_back(name);
  return names;
}

template <typename Interface>
Result<std::shared_ptr<Interface>> Make(const std::map<std::string, Factory<Interface>>& factories,
                                        const char* kind, const std::string& name,
                                        const Config& config, const DriverContext& context) {
  auto it = factories.find(name);
  if (it == factories.end()) {
    return InvalidArgument("unknown {} driver '{}'; available: {}", kind, name,
                           fmt::join(Names(factories), ", "));
  }
  auto made = it->second(config, context);
  if (!made.ok()) return made.status().WithContext(fmt::format("starting {} driver '{}'", kind, name));
  return made;
}

}  // namespace

void Registry::Register(const std::string& name, Factory<MessageQueue> factory) {
  queues_[name] = std::move(factory);
}
void Registry::Register(const std::string& name, Factory<LookupService> factory) {
  lookups_[name] = std::move(factory);
}
void Registry::Register(const std::string& name, Factory<WarehouseService> factory) {
  warehouses_[name] = std::move(factory);
}
void Registry::Register(const std::string& name, Factory<UsageService> factory) {
  usages_[name] = std::move(factory);
}

Result<std::shared_ptr<MessageQueue>> Registry::MakeMessageQueue(
    const std::string& name, const Config& config, const DriverContext& context) const {
  return Make(queues_, "message queue", name, config, context);
}
Result<std::shared_ptr<LookupService>> Registry::MakeLookupService(
    const std::string& name, const Config& config, const DriverContext& context) const {
  return Make(lookups_, "lookup service", name, config, context);
}
Result<std::shared_ptr<WarehouseService>> Registry::MakeWarehouseService(
    const std::string& name, const Config& config, const DriverContext& context) const {
  return Make(warehouses_, "warehouse service", name, config, context);
}
Result<std::shared_ptr<UsageService>> Registry::MakeUsageService(
    const std::string& name, const Config& config, const DriverContext& context) const {
  return Make(usages_, "usage service", name, config, context);
}

std::vector<std::string> Registry::MessageQueueNames() const { return Names(queues_); }
std::vector<std::string> Registry::LookupServiceNames() const { return Names(lookups_); }
std::vector<std::string> Registry::WarehouseServiceNames() const { return Names(warehouses_); }
std::vector<std::string> Registry::UsageServiceNames() const { return Names(usages_); }

}  // namespace aquifer::driver
