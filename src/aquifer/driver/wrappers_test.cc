#include "aquifer/driver/wrappers.h"

#include <gtest/gtest.h>

namespace aquifer::driver {
namespace {

// A usage service that records calls, to check the wrapper forwards them.
class CountingUsage final : public UsageService {
 public:
  Status WriteUsage(const Uuid&, UsagePeriod, int64_t time_ms, const UsageCounters& c) override {
    last_time = time_ms;
    total += c;
    return Status::OK();
  }
  Result<BoundedAdd> AddUsageWithin(const Uuid&, UsagePeriod, int64_t time_ms, const UsageCounters& c,
                                    UsageField field, int64_t limit) override {
    last_time = time_ms;
    BoundedAdd result;
    result.added = FieldOf(total, field) + FieldOf(c, field) <= limit;
    if (result.added) total += c;
    result.counters = total;
    return result;
  }
  Result<UsageCounters> ReadUsage(const Uuid&, UsagePeriod, int64_t) override { return total; }
  Result<std::vector<UsageBucket>> ReadUsageRange(const Uuid&, UsagePeriod, int64_t, int64_t,
                                                  int32_t) override {
    return std::vector<UsageBucket>{};
  }
  Status ClearUsage(const Uuid&) override { return Unavailable("cleared"); }
  Status Reset() override { return Status::OK(); }

  int64_t last_time = 0;
  UsageCounters total;
};

// A decorator that overrides one method: fails every write, forwards the rest.
class FailingWrites final : public UsageServiceWrapper {
 public:
  using UsageServiceWrapper::UsageServiceWrapper;
  Status WriteUsage(const Uuid&, UsagePeriod, int64_t, const UsageCounters&) override {
    return Unavailable("injected");
  }
};

TEST(UsageServiceWrapper, ForwardsEveryCallToItsTarget) {
  auto target = std::make_shared<CountingUsage>();
  UsageServiceWrapper wrapper(target);
  UsageCounters add;
  add.write_records = 3;
  ASSERT_TRUE(wrapper.WriteUsage(Uuid::Random(), UsagePeriod::kHour, 42, add).ok());
  EXPECT_EQ(target->last_time, 42);
  EXPECT_EQ(wrapper.ReadUsage(Uuid(), UsagePeriod::kHour, 0)->write_records, 3);
  auto bounded = wrapper.AddUsageWithin(Uuid(), UsagePeriod::kMonth, 43, add, UsageField::kWriteBytes, 0);
  ASSERT_TRUE(bounded.ok());
  EXPECT_TRUE(bounded->added);
  EXPECT_EQ(bounded->counters.write_records, 6);
  EXPECT_EQ(target->last_time, 43);
  EXPECT_EQ(wrapper.ClearUsage(Uuid()).message(), "cleared");
}

TEST(UsageServiceWrapper, ADecoratorOverridesOnlyWhatItNeeds) {
  auto target = std::make_shared<CountingUsage>();
  FailingWrites wrapper(target);
  UsageCounters add;
  add.read_ops = 1;
  EXPECT_EQ(wrapper.WriteUsage(Uuid(), UsagePeriod::kMonth, 1, add).code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(target->total.read_ops, 0);
  EXPECT_TRUE(wrapper.Reset().ok());
}

TEST(PeriodStart, HoursAndCalendarMonthsInUtc) {
  // 2024-02-29T13:45:10.123Z
  int64_t t = 1709214310123;
  EXPECT_EQ(PeriodStart(UsagePeriod::kHour, t), 1709211600000);   // 13:00
  EXPECT_EQ(PeriodStart(UsagePeriod::kMonth, t), 1706745600000);  // 2024-02-01
  EXPECT_EQ(PeriodStart(UsagePeriod::kMonth, 1706745600000), 1706745600000);
  EXPECT_EQ(PeriodStart(UsagePeriod::kHour, -1), -3600000);
}

}  // namespace
}  // namespace aquifer::driver
