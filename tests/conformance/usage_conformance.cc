#include "usage_conformance.h"

#include <atomic>
#include <thread>
#include <vector>

#include "aquifer/base/uuid.h"

namespace aquifer::conformance {

std::string UsageDriverFactoryName(const ::testing::TestParamInfo<UsageDriverFactory>& info) {
  return info.param.name;
}

void UsageConformance::SetUp() {
  auto made = GetParam().make(scratch_.path());
  ASSERT_TRUE(made.ok()) << "making usage driver " << GetParam().name << ": " << made.status().ToString();
  service_ = *made;
  ASSERT_NE(service_, nullptr);
}

void UsageConformance::TearDown() { service_.reset(); }

void UsageConformance::Reopen() {
  service_.reset();
  auto made = GetParam().make(scratch_.path());
  ASSERT_TRUE(made.ok()) << "reopening usage driver " << GetParam().name << ": " << made.status().ToString();
  service_ = *made;
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(UsageConformance);

namespace {

using driver::UsageBucket;
using driver::UsageCounters;
using driver::UsagePeriod;

constexpr int64_t kHourMs = 3'600'000;
// 2024-03-15 10:30:00 UTC; its hour starts at 10:00, its month on 2024-03-01.
constexpr int64_t kTime = 1'710'498'600'000;
constexpr int64_t kHourStart = 1'710'496'800'000;
constexpr int64_t kMonthStart = 1'709'251'200'000;

UsageCounters Counters(int64_t base) {
  UsageCounters c;
  c.read_ops = base;
  c.read_records = base + 1;
  c.read_bytes = base + 2;
  c.write_ops = base + 3;
  c.write_records = base + 4;
  c.write_bytes = base + 5;
  c.scan_ops = base + 6;
  c.scan_bytes = base + 7;
  return c;
}

UsageCounters Sum(UsageCounters a, const UsageCounters& b) {
  a += b;
  return a;
}

UsageCounters Read(driver::UsageService& service, const Uuid& owner, UsagePeriod period, int64_t time_ms) {
  auto read = service.ReadUsage(owner, period, time_ms);
  EXPECT_TRUE(read.ok()) << read.status().ToString();
  return read.ok() ? *read : UsageCounters{};
}

TEST_P(UsageConformance, CountersAddUpPerOwnerAndPeriod) {
  ASSERT_EQ(driver::PeriodStart(UsagePeriod::kHour, kTime), kHourStart);
  ASSERT_EQ(driver::PeriodStart(UsagePeriod::kMonth, kTime), kMonthStart);
  Uuid owner = Uuid::Random();
  Uuid other = Uuid::Random();
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kTime, Counters(1)).ok());
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kHourStart + 5, Counters(10)).ok());
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kHourStart + kHourMs, Counters(100)).ok());
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kMonth, kTime, Counters(1000)).ok());
  ASSERT_TRUE(service_->WriteUsage(other, UsagePeriod::kHour, kTime, Counters(7)).ok());

  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), Sum(Counters(1), Counters(10)));
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kHourStart + kHourMs - 1), Sum(Counters(1), Counters(10)));
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kHourStart + kHourMs), Counters(100));
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kMonthStart), Counters(1000));
  EXPECT_EQ(Read(*service_, other, UsagePeriod::kHour, kTime), Counters(7));
  EXPECT_EQ(Read(*service_, other, UsagePeriod::kMonth, kTime), UsageCounters{});
}

TEST_P(UsageConformance, MissingBucketsReadAsZeros) {
  EXPECT_EQ(Read(*service_, Uuid::Random(), UsagePeriod::kHour, kTime), UsageCounters{});
  EXPECT_EQ(Read(*service_, Uuid::Random(), UsagePeriod::kMonth, 0), UsageCounters{});
}

TEST_P(UsageConformance, ConcurrentAddsFromSeveralThreadsAreNotLost) {
  Uuid owner = Uuid::Random();
  constexpr int kThreads = 4, kAdds = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int add_idx = 0; add_idx < kAdds; ++add_idx) {
        UsagePeriod period = add_idx % 2 == 0 ? UsagePeriod::kHour : UsagePeriod::kMonth;
        if (!service_->WriteUsage(owner, period, kTime + thread_idx, Counters(1)).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(failures.load(), 0);
  UsageCounters expected;
  for (int add_idx = 0; add_idx < kThreads * kAdds / 2; ++add_idx) expected += Counters(1);
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), expected);
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kTime), expected);
}

TEST_P(UsageConformance, RangeReadsAreAscendingAndHonourTheLimit) {
  Uuid owner = Uuid::Random();
  // Written out of order, with a gap at hour 3.
  for (int hour : {5, 0, 2, 4, 1, 6}) {
    ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kHourStart + hour * kHourMs + 17, Counters(hour)).ok());
  }
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kMonth, kTime, Counters(99)).ok());
  ASSERT_TRUE(service_->WriteUsage(Uuid::Random(), UsagePeriod::kHour, kHourStart + kHourMs, Counters(50)).ok());

  auto all = service_->ReadUsageRange(owner, UsagePeriod::kHour, kHourStart, kHourStart + 7 * kHourMs, 100);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 6u);
  std::vector<int> hours = {0, 1, 2, 4, 5, 6};
  for (size_t bucket_idx = 0; bucket_idx < hours.size(); ++bucket_idx) {
    EXPECT_EQ((*all)[bucket_idx].period_start_ms, kHourStart + hours[bucket_idx] * kHourMs);
    EXPECT_EQ((*all)[bucket_idx].counters, Counters(hours[bucket_idx]));
  }
  // [from, to) with a limit: starts at hour 1, excludes hour 6, stops after 3.
  auto window = service_->ReadUsageRange(owner, UsagePeriod::kHour, kHourStart + kHourMs,
                                         kHourStart + 6 * kHourMs, 3);
  ASSERT_TRUE(window.ok());
  ASSERT_EQ(window->size(), 3u);
  EXPECT_EQ((*window)[0].period_start_ms, kHourStart + kHourMs);
  EXPECT_EQ((*window)[2].period_start_ms, kHourStart + 4 * kHourMs);
  auto tail = service_->ReadUsageRange(owner, UsagePeriod::kHour, kHourStart + 4 * kHourMs + 1,
                                       kHourStart + 6 * kHourMs, 10);
  ASSERT_TRUE(tail.ok());
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ((*tail)[0].period_start_ms, kHourStart + 5 * kHourMs);

  auto months = service_->ReadUsageRange(owner, UsagePeriod::kMonth, 0, kTime, 10);
  ASSERT_TRUE(months.ok());
  ASSERT_EQ(months->size(), 1u);
  EXPECT_EQ((*months)[0].period_start_ms, kMonthStart);
  EXPECT_EQ((*months)[0].counters, Counters(99));

  auto none = service_->ReadUsageRange(owner, UsagePeriod::kHour, kHourStart + 7 * kHourMs, kHourStart, 10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(service_->ReadUsageRange(owner, UsagePeriod::kHour, 0, kTime, 0).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_P(UsageConformance, ClearingAnOwnerRemovesOnlyThatOwner) {
  Uuid owner = Uuid::Random();
  Uuid other = Uuid::Random();
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kTime, Counters(1)).ok());
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kMonth, kTime, Counters(2)).ok());
  ASSERT_TRUE(service_->WriteUsage(other, UsagePeriod::kHour, kTime, Counters(3)).ok());
  ASSERT_TRUE(service_->ClearUsage(owner).ok());
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), UsageCounters{});
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kTime), UsageCounters{});
  auto range = service_->ReadUsageRange(owner, UsagePeriod::kHour, 0, kTime + kHourMs, 10);
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->empty());
  EXPECT_EQ(Read(*service_, other, UsagePeriod::kHour, kTime), Counters(3));
  // Counting starts again from zero.
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kTime, Counters(5)).ok());
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), Counters(5));
}

TEST_P(UsageConformance, ResetDropsEveryOwner) {
  Uuid owner = Uuid::Random();
  Uuid other = Uuid::Random();
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kTime, Counters(1)).ok());
  ASSERT_TRUE(service_->WriteUsage(other, UsagePeriod::kMonth, kTime, Counters(2)).ok());
  ASSERT_TRUE(service_->Reset().ok());
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), UsageCounters{});
  EXPECT_EQ(Read(*service_, other, UsagePeriod::kMonth, kTime), UsageCounters{});
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kTime, Counters(4)).ok());
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), Counters(4));
}

TEST_P(UsageConformance, CountersSurviveReopening) {
  Uuid owner = Uuid::Random();
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kTime, Counters(6)).ok());
  Reopen();
  ASSERT_NE(service_, nullptr);
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), Counters(6));
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, kTime, Counters(1)).ok());
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), Sum(Counters(6), Counters(1)));
}

TEST_P(UsageConformance, BucketsBeforeTheEpochWorkAndSortBeforeLaterOnes) {
  Uuid owner = Uuid::Random();
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, -1, Counters(1)).ok());
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kHour, 1, Counters(2)).ok());
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, -kHourMs), Counters(1));
  auto range = service_->ReadUsageRange(owner, UsagePeriod::kHour, -10 * kHourMs, 10 * kHourMs, 10);
  ASSERT_TRUE(range.ok());
  ASSERT_EQ(range->size(), 2u);
  EXPECT_EQ((*range)[0].period_start_ms, -kHourMs);
  EXPECT_EQ((*range)[1].period_start_ms, 0);
}

UsageCounters WriteBytes(int64_t bytes) {
  UsageCounters c;
  c.write_ops = 1;
  c.write_bytes = bytes;
  return c;
}

UsageCounters Negated(UsageCounters c) {
  UsageCounters negated;
  negated += c;
  for (int64_t* field : {&negated.read_ops, &negated.read_records, &negated.read_bytes, &negated.write_ops,
                         &negated.write_records, &negated.write_bytes, &negated.scan_ops, &negated.scan_bytes}) {
    *field = -*field;
  }
  return negated;
}

TEST_P(UsageConformance, ABoundedAddStopsAtTheLimitAndARefusedOneChangesNothing) {
  using driver::UsageField;
  Uuid owner = Uuid::Random();
  // On a missing bucket: an add larger than the limit is refused and creates nothing.
  auto added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime, WriteBytes(11), UsageField::kWriteBytes, 10);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_FALSE(added->added);
  EXPECT_EQ(added->counters, UsageCounters{});
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kTime), UsageCounters{});
  auto range = service_->ReadUsageRange(owner, UsagePeriod::kMonth, 0, kTime + 1, 10);
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->empty());

  // Up to the limit exactly; every counter is added, the answer is the bucket after the add.
  added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime, WriteBytes(6), UsageField::kWriteBytes, 10);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_TRUE(added->added);
  EXPECT_EQ(added->counters, WriteBytes(6));
  added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kMonthStart, WriteBytes(4), UsageField::kWriteBytes, 10);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_TRUE(added->added);
  EXPECT_EQ(added->counters, Sum(WriteBytes(6), WriteBytes(4)));
  // One byte over: refused, the bucket as it was.
  added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime, WriteBytes(1), UsageField::kWriteBytes, 10);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_FALSE(added->added);
  EXPECT_EQ(added->counters, Sum(WriteBytes(6), WriteBytes(4)));
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kTime), Sum(WriteBytes(6), WriteBytes(4)));
  // The limit is on the named field only, and on this bucket only (not the hour, not another owner).
  added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime, Counters(100), UsageField::kReadBytes, 102);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_TRUE(added->added);
  EXPECT_EQ(added->counters, Sum(Sum(WriteBytes(6), WriteBytes(4)), Counters(100)));
  added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime, Counters(0), UsageField::kScanBytes, 106);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_FALSE(added->added);  // scan_bytes 107 + 7 > 106
  added = service_->AddUsageWithin(owner, UsagePeriod::kHour, kTime, WriteBytes(10), UsageField::kWriteBytes, 10);
  ASSERT_TRUE(added.ok() && added->added);
  added = service_->AddUsageWithin(Uuid::Random(), UsagePeriod::kMonth, kTime, WriteBytes(10), UsageField::kWriteBytes, 10);
  ASSERT_TRUE(added.ok() && added->added);
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kHour, kTime), WriteBytes(10));

  // A negative add gives bytes back, and makes room under the limit again.
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kMonth, kTime, Negated(Counters(100))).ok());
  ASSERT_TRUE(service_->WriteUsage(owner, UsagePeriod::kMonth, kTime, Negated(WriteBytes(4))).ok());
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kTime), WriteBytes(6));
  added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime, WriteBytes(4), UsageField::kWriteBytes, 10);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_TRUE(added->added);
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kTime), Sum(WriteBytes(6), WriteBytes(4)));
  EXPECT_FALSE(service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime, WriteBytes(1), UsageField::kWriteBytes, 10)
                   .value_or({})
                   .added);
}

TEST_P(UsageConformance, ConcurrentBoundedAddsNeverTogetherPassTheLimit) {
  Uuid owner = Uuid::Random();
  constexpr int kThreads = 6, kAdds = 20;
  constexpr int64_t kBytes = 3, kLimit = 100;  // 33 adds fit: 99 bytes
  std::atomic<int> failures{0}, accepted{0};
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int add_idx = 0; add_idx < kAdds; ++add_idx) {
        auto added = service_->AddUsageWithin(owner, UsagePeriod::kMonth, kTime + thread_idx, WriteBytes(kBytes),
                                              driver::UsageField::kWriteBytes, kLimit);
        if (!added.ok()) {
          ++failures;
        } else if (added->added) {
          ++accepted;
          if (added->counters.write_bytes > kLimit) ++failures;
        }
        // Plain adds to other counters of the same bucket interleave and are never lost.
        UsageCounters reads;
        reads.read_ops = 1;
        if (!service_->WriteUsage(owner, UsagePeriod::kMonth, kTime, reads).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(accepted.load(), 33);
  UsageCounters expected;
  expected.write_ops = 33;
  expected.write_bytes = 99;
  expected.read_ops = kThreads * kAdds;
  EXPECT_EQ(Read(*service_, owner, UsagePeriod::kMonth, kTime), expected);
}

}  // namespace
}  // namespace aquifer::conformance
