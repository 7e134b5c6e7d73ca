#include "aquifer/driver/warehouse_jobs.h"

#include <condition_variable>

#include <gtest/gtest.h>

namespace aquifer::driver {
namespace {

TEST(WarehouseJobs, PageTokensNameAnOffsetWithinTheRows) {
  const Uuid id = Uuid::Random();
  EXPECT_EQ(ParsePageToken("", 10, id).value_or(-1), 0);
  EXPECT_EQ(ParsePageToken(PageToken(7), 10, id).value_or(-1), 7);
  EXPECT_EQ(ParsePageToken("o10", 10, id).value_or(-1), 10);
  for (std::string_view bad : {"o11", "o-1", "o", "x3", "o3x", "3"}) {
    EXPECT_EQ(ParsePageToken(bad, 10, id).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(WarehouseJobs, ResultsExpireTheirTtlAfterTheyFinish) {
  EXPECT_EQ(ExpiresMs(1000, 0), 0) << "no ttl: never";
  EXPECT_EQ(ExpiresMs(1000, 500), 1500);
  EXPECT_GT(ExpiresMs(1000, INT64_MAX), 1000) << "no overflow";
  Status expired = ResultExpired(Uuid::Random(), 1000, 1500);
  EXPECT_EQ(expired.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(expired.message().find("expired 500 ms after it finished"), std::string::npos) << expired.ToString();
}

TEST(WarehouseJobs, TablesWithARetentionAreReadThroughIt) {
  RetentionByTable retention;
  retention.Note("`d`.`a`", 1000);
  retention.Note("`d`.`b`", 0);  // none
  auto wrap = [](const std::string& table, int64_t horizon) { return "(" + table + " >= " + std::to_string(horizon) + ")"; };
  EXPECT_EQ(retention.ReadThrough("SELECT * FROM `d`.`a` JOIN `d`.`b` ON 1", '`', 5000, wrap),
            "SELECT * FROM (`d`.`a` >= 4000) JOIN `d`.`b` ON 1");
  EXPECT_EQ(retention.NamedIn("SELECT 1 FROM `d`.`a`").size(), 1u);
  retention.Note("`d`.`a`", -1);  // forgotten
  EXPECT_EQ(retention.ReadThrough("SELECT * FROM `d`.`a`", '`', 5000, wrap), "SELECT * FROM `d`.`a`");
}

TEST(WarehouseJobs, LocalJobsRunAtMostTheirCapAndStopTogether) {
  LocalJobs jobs(2);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto job_with_id = [](const Uuid& id) {
    auto job = std::make_shared<LocalJob>();
    job->job.job_id = id;
    return job;
  };
  std::vector<std::shared_ptr<LocalJob>> started;
  for (int i = 0; i < 2; ++i) {
    auto job = job_with_id(Uuid::Random());
    ASSERT_TRUE(jobs.Launch(job, [&, job] {
                  std::unique_lock<std::mutex> lock(mu);
                  cv.wait(lock, [&] { return release || job->stop.load(); });
                }).ok());
    started.push_back(job);
  }
  EXPECT_EQ(jobs.Launch(job_with_id(started[0]->job.job_id), [] {}).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(jobs.Launch(job_with_id(Uuid::Random()), [] {}).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(jobs.Unfinished().size(), 2u);
  EXPECT_EQ(jobs.Find(started[1]->job.job_id), started[1]);
  {
    std::lock_guard<std::mutex> lock(jobs.mu());
    started[0]->finished = true;  // as a job's end marks it
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  // A finished job frees its place (its thread is joined).
  EXPECT_TRUE(jobs.Launch(job_with_id(Uuid::Random()), [] {}).ok());
  jobs.StopAll();
  EXPECT_TRUE(started[1]->stop.load());
  EXPECT_EQ(jobs.Find(started[1]->job.job_id), nullptr);
}

}  // namespace
}  // namespace aquifer::driver
