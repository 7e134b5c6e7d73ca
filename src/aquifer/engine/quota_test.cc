// Quotas across processes: two Engines (as two processes would) share one
// SQLite catalog file and one Postgres usage service (the server of
// scripts/peers/postgres, AQUIFER_TEST_POSTGRES). Each has its own data dir,
// queue, lookup and warehouse. Usage flushes are far apart, so whatever one
// engine sees of the other's writes it sees through the shared counters.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "aquifer/driver/registry.h"
#include "aquifer/driver/usage_service.h"
#include "aquifer/driver/wrappers.h"
#include "aquifer/drivers/builtin.h"
#include "aquifer/drivers/postgres/testing.h"
#include "aquifer/engine/engine.h"
#include "aquifer/engine/wire.h"

namespace aquifer::engine {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kAdminSecret[] = "admin-secret-for-quota-tests";
constexpr char kSchema[] = R"({"type":"record","name":"Event","fields":[
  {"name":"user","type":"string"},{"name":"n","type":"long"}]})";

int64_t UtcMs(int year, unsigned month, unsigned day, int64_t ms_into_day = 0) {
  using namespace std::chrono;
  sys_days date{std::chrono::year(year) / std::chrono::month(month) / std::chrono::day(day)};
  return duration_cast<milliseconds>(date.time_since_epoch()).count() + ms_into_day;
}

// One record of a fixed size: n < 64 is one varint byte.
std::string OneRecord(int n) { return json::array({{{"user", "x"}, {"n", n % 64}}}).dump(); }

// Counts the calls a request makes to the usage service.
class CountingUsage final : public driver::UsageServiceWrapper {
 public:
  using UsageServiceWrapper::UsageServiceWrapper;
  Status WriteUsage(const Uuid& owner, driver::UsagePeriod period, int64_t time_ms,
                    const driver::UsageCounters& counters) override {
    ++writes;
    return UsageServiceWrapper::WriteUsage(owner, period, time_ms, counters);
  }
  Result<driver::BoundedAdd> AddUsageWithin(const Uuid& owner, driver::UsagePeriod period, int64_t time_ms,
                                            const driver::UsageCounters& counters, driver::UsageField field,
                                            int64_t limit) override {
    ++bounded_adds;
    return UsageServiceWrapper::AddUsageWithin(owner, period, time_ms, counters, field, limit);
  }
  Result<driver::UsageCounters> ReadUsage(const Uuid& owner, driver::UsagePeriod period,
                                          int64_t time_ms) override {
    ++reads;
    return UsageServiceWrapper::ReadUsage(owner, period, time_ms);
  }
  std::atomic<int> writes{0}, bounded_adds{0}, reads{0};
};

// Fails every publish to the writes topic while `fail` is set.
class FailingQueue final : public driver::MessageQueueWrapper {
 public:
  FailingQueue(std::shared_ptr<driver::MessageQueue> target, std::shared_ptr<std::atomic<bool>> fail)
      : MessageQueueWrapper(std::move(target)), fail_(std::move(fail)) {}
  Status Publish(std::string_view topic, std::span<const driver::OutgoingMessage> messages) override {
    if (topic == kWritesTopic && fail_->load()) return Unavailable("injected publish failure");
    return MessageQueueWrapper::Publish(topic, messages);
  }

 private:
  std::shared_ptr<std::atomic<bool>> fail_;
};

class SharedQuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "aquifer-quota-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    auto config = drivers::postgres::testing::TestConfig(std::filesystem::path(dir_).filename().string());
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    usage_config_ = *config;
  }
  void TearDown() override {
    engines_.clear();
    std::filesystem::remove_all(dir_);
  }

  // Engine `index` of the deployment: its own data dir, the shared catalog,
  // keys and usage service.
  EngineOptions Options(int index) {
    EngineOptions options;
    options.data_dir = dir_ + "/process-" + std::to_string(index);
    options.catalog = dir_ + "/catalog.db";
    options.cursor_key = "cursor-key-shared-by-every-process";
    options.secret_key = "secret-key-shared-by-every-process";
    options.admin_secret = kAdminSecret;
    options.role = index == 0 ? Role::kAll : Role::kGateway;
    options.usage = DriverChoice{"postgres", usage_config_};
    options.usage_flush_interval_ms = 600'000;  // never within a test: no help from flushes
    options.queue.config["poll_interval_ms"] = "5";
    options.worker_threads = 1;
    options.write_path_probe_interval_ms = 10;
    options.clock = &clock_;
    if (index == 0) {
      // Engine 0's usage service and queue are watched (counting) and can fail (publishes).
      options.usage.name = "counting";
      options.register_drivers = [this](driver::Registry* registry) {
        registry->Register("counting", driver::Factory<driver::UsageService>(
                                           [this](const driver::Config& config, const driver::DriverContext& context)
                                               -> Result<std::shared_ptr<driver::UsageService>> {
                                             driver::Registry builtin;
                                             drivers::RegisterBuiltinDrivers(&builtin);
                                             AQ_ASSIGN_OR_RETURN(auto postgres,
                                                                 builtin.MakeUsageService("postgres", config, context));
                                             counting_ = std::make_shared<CountingUsage>(postgres);
                                             return std::shared_ptr<driver::UsageService>(counting_);
                                           }));
      };
      options.wrap_queue = [fail = fail_publish_](std::shared_ptr<driver::MessageQueue> queue) {
        return std::make_shared<FailingQueue>(std::move(queue), fail);
      };
    }
    return options;
  }

  void Open(const EngineOptions& options) {
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    ASSERT_TRUE((*opened)->Start().ok());
    engines_.push_back(std::move(*opened));
  }

  // Engine 0 (all roles) makes projects "p" (for the quota) and "sizer" (to
  // measure one record's bytes without a quota); engine 1 is a second gateway.
  void OpenBoth() {
    ASSERT_NO_FATAL_FAILURE(Open(Options(0)));
    ASSERT_NO_FATAL_FAILURE(Open(Options(1)));
    auto admin = engines_[0]->Authenticate(kAdminSecret);
    ASSERT_TRUE(admin.ok()) << admin.status().ToString();
    admin_ = *admin;
    ASSERT_TRUE(engines_[1]->Authenticate(kAdminSecret).ok());
    for (std::string_view project : {"p", "sizer"}) {
      ASSERT_TRUE(engines_[0]->CreateProject(admin_, json{{"name", project}}.dump()).ok());
      auto table = engines_[0]->CreateTable(
          admin_, project, json{{"name", "t"}, {"schema", json::parse(kSchema)}, {"key", {"user"}}}.dump());
      ASSERT_TRUE(table.ok()) << table.status().ToString();
    }
    // The size of one record, from a project without a quota.
    ASSERT_TRUE(Write(*engines_[0], OneRecord(0), "sizer").ok());
    one_write_ = MonthWriteBytes(*engines_[0], "sizer");
    ASSERT_GT(one_write_, 0);
  }

  Result<WriteAck> Write(Engine& engine, const std::string& body, std::string_view project = "p") {
    WriteRequest request;
    request.project = project;
    request.table = "t";
    request.body = body;
    return engine.Write(admin_, request, nullptr);
  }

  // The project's write bytes this month as `engine` reports them (GET /usage).
  int64_t MonthWriteBytes(Engine& engine, std::string_view project) {
    auto usage = engine.UsageJson(admin_);
    EXPECT_TRUE(usage.ok()) << usage.status().ToString();
    if (!usage.ok()) return -1;
    const json body = json::parse(*usage);
    for (const json& entry : body["projects"]) {
      if (entry["project"] == std::string(project)) return entry["month"]["write_bytes"];
    }
    ADD_FAILURE() << "no project " << project << " in " << *usage;
    return -1;
  }

  void SetWriteQuota(int64_t bytes) {
    auto set = engines_[0]->SetQuotas(admin_, "p", json{{"write_bytes", bytes}}.dump());
    ASSERT_TRUE(set.ok()) << set.status().ToString();
  }

  // 30 s before 2027: a refusal's Retry-After is exactly 30.
  ManualClock clock_{UtcMs(2026, 12, 31, 86'400'000 - 30'000)};
  std::string dir_;
  driver::Config usage_config_;
  std::vector<std::unique_ptr<Engine>> engines_;  // destroyed before clock_
  Principal admin_;
  int64_t one_write_ = 0;
  std::shared_ptr<CountingUsage> counting_;  // engine 0's usage service
  std::shared_ptr<std::atomic<bool>> fail_publish_ = std::make_shared<std::atomic<bool>>(false);
};

TEST_F(SharedQuotaTest, OneEngineSeesTheOthersWritesAtOnceAndRefusesWithTheTimeUntilTheReset) {
  OpenBoth();
  SetWriteQuota(3 * one_write_);
  ASSERT_TRUE(Write(*engines_[0], OneRecord(1)).ok());
  ASSERT_TRUE(Write(*engines_[0], OneRecord(2)).ok());
  // No flush has run: engine 1 still sees engine 0's two writes.
  EXPECT_EQ(MonthWriteBytes(*engines_[1], "p"), 2 * one_write_);
  ASSERT_TRUE(Write(*engines_[1], OneRecord(3)).ok());
  EXPECT_EQ(MonthWriteBytes(*engines_[0], "p"), 3 * one_write_);
  for (auto* engine : {engines_[0].get(), engines_[1].get()}) {
    auto refused = Write(*engine, OneRecord(4));
    ASSERT_EQ(refused.status().code(), StatusCode::kResourceExhausted) << refused.status().ToString();
    EXPECT_EQ(RetryAfterSeconds(refused.status()), 30) << refused.status().ToString();
    EXPECT_THAT(refused.status().message(),
                HasSubstr(fmt::format("{} of {} bytes used", 3 * one_write_, 3 * one_write_)));
  }
  // The next month starts a new quota, in both.
  clock_.Advance(30'000'000);  // µs
  auto january = Write(*engines_[1], OneRecord(5));
  ASSERT_TRUE(january.ok()) << january.status().ToString();
  EXPECT_EQ(MonthWriteBytes(*engines_[0], "p"), one_write_);
}

TEST_F(SharedQuotaTest, ConcurrentWritersInTwoEnginesNeverTogetherPassTheWriteQuota) {
  OpenBoth();
  constexpr int kFits = 10;
  SetWriteQuota(kFits * one_write_);
  constexpr int kThreadsPerEngine = 3, kAttempts = 6;  // 36 attempts for 10 places
  std::atomic<int> accepted{0}, refused{0};
  std::atomic<int> accepted_by[2] = {0, 0};
  std::vector<std::thread> writers;
  for (int engine_idx = 0; engine_idx < 2; ++engine_idx) {
    for (int thread_idx = 0; thread_idx < kThreadsPerEngine; ++thread_idx) {
      writers.emplace_back([&, engine_idx, thread_idx] {
        for (int attempt = 0; attempt < kAttempts; ++attempt) {
          auto ack = Write(*engines_[engine_idx], OneRecord(thread_idx * kAttempts + attempt));
          if (ack.ok()) {
            ++accepted;
            ++accepted_by[engine_idx];
          } else if (ack.status().code() == StatusCode::kResourceExhausted) {
            ++refused;
            EXPECT_EQ(RetryAfterSeconds(ack.status()), 30) << ack.status().ToString();
          } else {
            ADD_FAILURE() << ack.status().ToString();
          }
        }
      });
    }
  }
  for (auto& writer : writers) writer.join();
  EXPECT_EQ(accepted.load(), kFits);
  EXPECT_EQ(refused.load(), 2 * kThreadsPerEngine * kAttempts - kFits);
  // Both engines, and the shared counter itself, agree on the bytes used.
  EXPECT_EQ(MonthWriteBytes(*engines_[0], "p"), kFits * one_write_);
  EXPECT_EQ(MonthWriteBytes(*engines_[1], "p"), kFits * one_write_);
  // After both have flushed (Close), nothing is counted twice.
  engines_.clear();
  ASSERT_NO_FATAL_FAILURE(Open(Options(0)));
  auto admin = engines_[0]->Authenticate(kAdminSecret);
  ASSERT_TRUE(admin.ok()) << admin.status().ToString();
  admin_ = *admin;
  auto project = [&]() -> json {
    auto usage = engines_[0]->UsageJson(admin_);
    EXPECT_TRUE(usage.ok()) << usage.status().ToString();
    const json body = json::parse(*usage);
    for (const json& entry : body["projects"]) {
      if (entry["project"] == "p") return entry;
    }
    return json();
  }();
  EXPECT_EQ(project["month"]["write_bytes"], kFits * one_write_) << project.dump();
  EXPECT_EQ(project["month"]["write_records"], kFits) << project.dump();
  EXPECT_EQ(project["month"]["write_ops"], kFits) << project.dump();
  EXPECT_EQ(project["hour"]["write_records"], kFits) << project.dump();
}

TEST_F(SharedQuotaTest, AWriteWithoutAQuotaCostsNoUsageCallAndOneWithAQuotaOneBoundedAdd) {
  OpenBoth();
  ASSERT_NE(counting_, nullptr);
  const int reads = counting_->reads, writes = counting_->writes;
  for (int n = 0; n < 5; ++n) ASSERT_TRUE(Write(*engines_[0], OneRecord(n), "sizer").ok());
  EXPECT_EQ(counting_->reads, reads);  // metered in memory only, until the next flush
  EXPECT_EQ(counting_->writes, writes);
  EXPECT_EQ(counting_->bounded_adds, 0);
  SetWriteQuota(100 * one_write_);
  for (int n = 0; n < 5; ++n) ASSERT_TRUE(Write(*engines_[0], OneRecord(n)).ok());
  EXPECT_EQ(counting_->bounded_adds, 5);  // the reservation is the whole quota check
  EXPECT_EQ(counting_->reads, reads);
  EXPECT_EQ(counting_->writes, writes);
}

TEST_F(SharedQuotaTest, AWriteWhosePublishFailsGivesItsReservedBytesBack) {
  OpenBoth();
  SetWriteQuota(2 * one_write_);
  ASSERT_TRUE(Write(*engines_[0], OneRecord(1)).ok());
  fail_publish_->store(true);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto failed = Write(*engines_[0], OneRecord(2));
    ASSERT_EQ(failed.status().code(), StatusCode::kUnavailable) << failed.status().ToString();
  }
  // Nothing was written, so nothing stays charged: both engines see one write.
  EXPECT_EQ(MonthWriteBytes(*engines_[0], "p"), one_write_);
  EXPECT_EQ(MonthWriteBytes(*engines_[1], "p"), one_write_);
  fail_publish_->store(false);
  // The write path probes the queue once per interval; give it the time it needs.
  Status written;
  for (int attempt = 0; attempt < 300; ++attempt) {
    written = Write(*engines_[0], OneRecord(3)).status();
    if (written.code() != StatusCode::kUnavailable) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(written.ok()) << written.ToString();
  EXPECT_EQ(Write(*engines_[1], OneRecord(4)).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(MonthWriteBytes(*engines_[1], "p"), 2 * one_write_);
}

}  // namespace
}  // namespace aquifer::engine
