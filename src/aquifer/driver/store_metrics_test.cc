// StoreMetricsText: sources' gauges grouped by name under one HELP/TYPE, and
// a source gone with its registration.

#include "aquifer/driver/store_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace aquifer::driver {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

size_t Count(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}

TEST(StoreMetrics, GaugesOfOneNameShareOneHeaderAndGoWithTheirRegistration) {
  auto a = RegisterGaugeSource([](std::vector<Gauge>* out) {
    out->push_back({"test_store_bytes", "Bytes of a test store.", "db=\"a\"", 5});
  });
  auto b = RegisterGaugeSource([](std::vector<Gauge>* out) {
    out->push_back({"test_store_bytes", "Bytes of a test store.", "db=\"b\"", 7});
    out->push_back({"test_store_unlabelled", "No labels.", "", -3});
  });
  std::string text = StoreMetricsText();
  EXPECT_EQ(Count(text, "# TYPE test_store_bytes gauge\n"), 1u) << text;
  EXPECT_EQ(Count(text, "# HELP test_store_bytes Bytes of a test store.\n"), 1u) << text;
  EXPECT_THAT(text, HasSubstr("# TYPE test_store_bytes gauge\ntest_store_bytes{db=\"a\"} 5\n"
                              "test_store_bytes{db=\"b\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("\ntest_store_unlabelled -3\n"));
  b.reset();
  text = StoreMetricsText();
  EXPECT_THAT(text, HasSubstr("test_store_bytes{db=\"a\"} 5\n"));
  EXPECT_THAT(text, Not(HasSubstr("db=\"b\"")));
  EXPECT_THAT(text, Not(HasSubstr("test_store_unlabelled")));
  a.reset();
  EXPECT_THAT(StoreMetricsText(), Not(HasSubstr("test_store_bytes")));
}

}  // namespace
}  // namespace aquifer::driver
