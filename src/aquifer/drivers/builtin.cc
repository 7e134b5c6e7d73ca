#include "aquifer/drivers/builtin.h"

#include "aquifer/drivers/bigquery/warehouse.h"
#include "aquifer/drivers/bigtable/register.h"
#include "aquifer/drivers/cassandra/register.h"
#include "aquifer/drivers/clickhouse/warehouse.h"
#include "aquifer/drivers/duckdb/warehouse.h"
#include "aquifer/drivers/kafka/register.h"
#include "aquifer/drivers/mock/warehouse.h"
#include "aquifer/drivers/postgres/register.h"
#include "aquifer/drivers/pubsub/register.h"
#include "aquifer/drivers/redshift/register.h"
#include "aquifer/drivers/rocksdb/lookup_service.h"
#include "aquifer/drivers/rocksdb/queue.h"

namespace aquifer::drivers {

void RegisterBuiltinDrivers(driver::Registry* registry) {
  rocksdb::RegisterLookupAndUsage(registry);
  rocksdb::RegisterQueue(registry);
  duckdb::Register(registry);
  mock::Register(registry);
  postgres::Register(registry);
  kafka::Register(registry);
  cassandra::Register(registry);
  pubsub::Register(registry);
  redshift::Register(registry);
  bigquery::Register(registry);
  bigtable::Register(registry);
  clickhouse::Register(registry);
}

}  // namespace aquifer::drivers
