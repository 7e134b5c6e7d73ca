#pragma once

// Registry: builds a driver by name from a configuration section.
//
// Names map to factories, one map per interface. RegisterBuiltinDrivers()
// (aquifer/drivers/builtin.h) fills a registry with every driver compiled in,
// explicitly, once; there is no static self-registration (linkers drop it).
// An unknown name is an error that lists the names available.
//
// Drivers are returned as shared_ptr because one system may serve several
// interfaces from one connection or one open database (the embedded RocksDB
// serves lookup, usage and the queue; Postgres serves all four).
//
// Thread-safe after registration; register before use.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/driver/message_queue.h"
#include "aquifer/driver/types.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/driver/warehouse_service.h"

namespace aquifer::driver {

// What every factory gets besides its own config section.
struct DriverContext {
  std::string data_dir = "./data";  // embedded drivers keep their files under it
  Clock* clock = Clock::System();
};

template <typename Interface>
using Factory =
    std::function<Result<std::shared_ptr<Interface>>(const Config&, const DriverContext&)>;

class Registry {
 public:
  void Register(const std::string& name, Factory<MessageQueue> factory);
  void Register(const std::string& name, Factory<LookupService> factory);
  void Register(const std::string& name, Factory<WarehouseService> factory);
  void Register(const std::string& name, Factory<UsageService> factory);

  Result<std::shared_ptr<MessageQueue>> MakeMessageQueue(const std::string& name,
                                                         const Config& config,
                                                         const DriverContext& context) const;
  Result<std::shared_ptr<LookupService>> MakeLookupService(const std::string& name,
                                                           const Config& config,
                                                           const DriverContext& context) const;
  Result<std::shared_ptr<WarehouseService>> MakeWarehouseService(
      const std::string& name, const Config& config, const DriverContext& context) const;
  Result<std::shared_ptr<UsageService>> MakeUsageService(const std::string& name,
                                                         const Config& config,
                                                         const DriverContext& context) const;

  std::vector<std::string> MessageQueueNames() const;
  std::vector<std::string> LookupServiceNames() const;
  std::vector<std::string> WarehouseServiceNames() const;
  std::vector<std::string> UsageServiceNames() const;

 private:
  std::map<std::string, Factory<MessageQueue>> queues_;
  std::map<std::string, Factory<LookupService>> lookups_;
  std::map<std::string, Factory<WarehouseService>> warehouses_;
  std::map<std::string, Factory<UsageService>> usages_;
};

}  // namespace aquifer::driver
