#include "aquifer/drivers/duckdb/plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace aquifer::drivers::duckdb {
namespace {

using ::testing::HasSubstr;

TEST(ParsePlanScans, CollectsTableAndTableFunctionScans) {
  const char* plan = R"([{"name": "CROSS_PRODUCT", "children": [
      {"name": "SEQ_SCAN ", "children": [], "extra_info": {"Table": "i_1", "Projections": ["a", "B"],
       "Filters": "c>1", "Estimated Cardinality": "1000"}},
      {"name": "RANGE ", "children": [], "extra_info": {"Function": "range", "Estimated Cardinality": "1000000000"}},
      {"name": "CTE_SCAN", "children": [], "extra_info": {"CTE Index": "16"}},
      {"name": "DUMMY_SCAN", "children": [], "extra_info": {}},
      {"name": "INOUT_FUNCTION", "children": [{"name": "DELIM_SCAN", "extra_info": {}}],
       "extra_info": {"Name": "generate_series", "Estimated Cardinality": "632"}}], "extra_info": {}}])";
  auto scans = ParsePlanScans(plan);
  ASSERT_TRUE(scans.ok()) << scans.status().ToString();
  ASSERT_EQ(scans->size(), 3u);
  EXPECT_EQ((*scans)[2].function, "GENERATE_SERIES");
  EXPECT_EQ((*scans)[2].estimated_rows, 632);
  EXPECT_EQ((*scans)[0].table, "i_1");
  EXPECT_EQ((*scans)[0].estimated_rows, 1000);
  EXPECT_EQ((*scans)[0].tokens, (std::set<std::string>{"a", "b", "c", "1"}));
  EXPECT_EQ((*scans)[1].function, "RANGE");
  EXPECT_EQ((*scans)[1].estimated_rows, 1'000'000'000);
  EXPECT_TRUE(IsGeneratorFunction((*scans)[1].function));
  EXPECT_FALSE(IsGeneratorFunction("DUCKDB_TABLES"));
  EXPECT_FALSE(IsGeneratorFunction("READ_CSV"));
}

// Each of these once parsed to "no scans", which passed the check.
TEST(ParsePlanScans, FailsClosedOnPlansItCannotRead) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not readable JSON"},
      {"not json", "not readable JSON"},
      {"[{\"name\": \"SEQ_SCAN\"", "not readable JSON"},
      {"[]", "no operators"},
      {"42", "no operators"},
      {"[42]", "unexpected value"},
      {R"([{"children": []}])", "has no name"},
      {R"([{"name": "SEQ_SCAN", "extra_info": {"Table": 7}}])", "no readable table"},
      {R"([{"name": "X", "extra_info": {"Function": ["a"]}}])", "no readable function"},
      {R"([{"name": "X", "extra_info": "Table: t"}])", "unreadable details"},
      {R"([{"name": "X", "children": {"name": "SEQ_SCAN"}}])", "unreadable children"},
      {R"([{"name": "PROJECTION", "children": [{"name": "PARQUET_SCAN ", "extra_info": {}}]}])",
       "PARQUET_SCAN that names no table"},
      {R"([{"name": "INOUT_FUNCTION", "extra_info": {}}])", "INOUT_FUNCTION that names no function"},
  };
  for (const auto& [plan, message] : cases) {
    auto scans = ParsePlanScans(plan);
    ASSERT_FALSE(scans.ok()) << plan;
    EXPECT_EQ(scans.status().code(), StatusCode::kInvalidArgument) << plan;
    EXPECT_THAT(scans.status().message(), HasSubstr(message)) << plan;
  }
}

}  // namespace
}  // namespace aquifer::drivers::duckdb
