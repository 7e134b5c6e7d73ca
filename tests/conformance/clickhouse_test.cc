// The warehouse conformance suite on the ClickHouse driver, against the
// server that scripts/peers/clickhouse starts (AQUIFER_TEST_CLICKHOUSE;
// without it every test fails and says how to start one). Each test gets a
// database of its own, named after its scratch directory, so a reopen finds
// the same data and parallel tests never meet.

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "aquifer/driver/registry.h"
#include "aquifer/drivers/clickhouse/warehouse.h"
#include "warehouse_conformance.h"

namespace aquifer::conformance {
namespace {

const driver::Registry& ClickHouseRegistry() {
  static const driver::Registry* registry = [] {
    auto* r = new driver::Registry();
    drivers::clickhouse::Register(r);
    return r;
  }();
  return *registry;
}

Result<driver::Config> TestConfig(const std::string& name) {
  const char* endpoint = std::getenv("AQUIFER_TEST_CLICKHOUSE");
  if (endpoint == nullptr || *endpoint == '\0') {
    return FailedPrecondition(
        "AQUIFER_TEST_CLICKHOUSE is not set: start a server with "
        "`eval \"$(bash scripts/peers/clickhouse start)\"` (and stop it with `bash scripts/peers/clickhouse stop`)");
  }
  std::string database = "t_";
  for (char c : name) database.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return driver::Config{{"endpoint", endpoint}, {"database", database}};
}

// ClickHouse 18.16 spells an array's length `length(a)` and a field of a
// named tuple `tupleElement(t, 'f')` (`t.f` is not known there).
WarehouseDriverFactory ClickHouseWarehouse() {
  WarehouseDriverFactory factory;
  factory.name = "clickhouse";
  factory.make = [](const std::string& dir, Clock* clock) -> Result<std::shared_ptr<driver::WarehouseService>> {
    AQ_ASSIGN_OR_RETURN(driver::Config config, TestConfig(std::filesystem::path(dir).filename().string()));
    driver::DriverContext context;
    context.clock = clock;
    return ClickHouseRegistry().MakeWarehouseService("clickhouse", config, context);
  };
  factory.array_length = [](const std::string& column) { return "length(" + column + ")"; };
  factory.nested_field = [](const std::string& column, const std::string& field) {
    return "tupleElement(" + column + ", '" + field + "')";
  };
  return factory;
}

INSTANTIATE_TEST_SUITE_P(ClickHouse, WarehouseConformance, ::testing::Values(ClickHouseWarehouse()),
                         WarehouseDriverName);

TEST(ClickHouseWarehouse, OptionsAreChecked) {
  using drivers::clickhouse::ParseWarehouseOptions;
  EXPECT_EQ(ParseWarehouseOptions({}).status().code(), StatusCode::kInvalidArgument) << "endpoint is required";
  EXPECT_EQ(ParseWarehouseOptions({{"endpoint", "ftp://x"}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseWarehouseOptions({{"endpoint", "http://127.0.0.1:1"}, {"database", "no-dashes"}}).status().code(),
            StatusCode::kInvalidArgument);
  auto parsed = ParseWarehouseOptions({{"endpoint", "http://127.0.0.1:1"}});
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->database, "aquifer");
  EXPECT_EQ(parsed->http.user, "default");
}

}  // namespace
}  // namespace aquifer::conformance
