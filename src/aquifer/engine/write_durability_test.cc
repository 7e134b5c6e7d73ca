// What a write's 2xx promises (README "Guarantees"), in one process on the
// embedded drivers with a fault-injecting queue wrapper in front of the
// queue: Idempotency-Key claims that become final only once the publish
// succeeded, a write path that refuses writes while the queue does (and says
// so in Health()), and relaxed durability reported on every write answer.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "aquifer/driver/wrappers.h"
#include "aquifer/engine/engine.h"
#include "aquifer/engine/wire.h"

namespace aquifer::engine {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr char kAdminSecret[] = "admin-secret-for-durability-tests";
constexpr char kSchema[] = R"({"type":"record","name":"Event","fields":[
  {"name":"user","type":"string"}, {"name":"n","type":"long"}]})";
constexpr char kRecord[] = R"([{"user":"a","n":1}])";
// Generous bounds for a loaded machine; a correct run never gets near them.
constexpr auto kPatience = 60s;

// Shared by the test and the queue wrapper: which publishes to "writes" to
// hold or fail. Write reports pass through untouched.
struct QueueFaults {
  std::mutex mu;
  std::condition_variable cv;
  bool hold_next = false;                // the next publish waits for Release()
  bool holding = false;                  // a publish is waiting now
  std::optional<Status> release_with;    // set by Release()
  Status fail_all = Status::OK();        // not OK: every publish fails with it
  int publishes = 0;                     // publishes to "writes" attempted

  void Release(Status status) {
    std::lock_guard lock(mu);
    if (!holding) return;
    release_with = std::move(status);
    cv.notify_all();
  }
  bool WaitUntilHolding() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, kPatience, [&] { return holding; });
  }
};

class FaultyQueue final : public driver::MessageQueueWrapper {
 public:
  FaultyQueue(std::shared_ptr<driver::MessageQueue> target, std::shared_ptr<QueueFaults> faults)
      : MessageQueueWrapper(std::move(target)), faults_(std::move(faults)) {}

  Status Publish(std::string_view topic,
                 std::span<const driver::OutgoingMessage> messages) override {
    if (topic != kWritesTopic) return MessageQueueWrapper::Publish(topic, messages);
    std::unique_lock lock(faults_->mu);
    ++faults_->publishes;
    if (faults_->hold_next) {
      faults_->hold_next = false;
      faults_->holding = true;
      faults_->cv.notify_all();
      faults_->cv.wait(lock, [&] { return faults_->release_with.has_value(); });
      Status outcome = *std::exchange(faults_->release_with, std::nullopt);
      faults_->holding = false;
      if (!outcome.ok()) return outcome;
    } else if (!faults_->fail_all.ok()) {
      return faults_->fail_all;
    }
    lock.unlock();
    return MessageQueueWrapper::Publish(topic, messages);
  }

 private:
  std::shared_ptr<QueueFaults> faults_;
};

class WriteDurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "aquifer-durability-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    faults_->Release(Unavailable("test over"));  // never leave a writer blocked
    for (auto& thread : threads_) thread.join();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  EngineOptions Options() {
    EngineOptions options;
    options.data_dir = dir_;
    options.admin_secret = kAdminSecret;
    options.wait_timeout_ms = 30'000;
    options.usage_flush_interval_ms = 50;
    options.queue.config["poll_interval_ms"] = "5";
    options.wrap_queue = [faults = faults_](std::shared_ptr<driver::MessageQueue> queue) {
      return std::make_shared<FaultyQueue>(std::move(queue), faults);
    };
    return options;
  }

  void Open(const EngineOptions& options) {
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    engine_ = std::move(*opened);
    ASSERT_TRUE(engine_->Start().ok());
    auto admin = engine_->Authenticate(kAdminSecret);
    ASSERT_TRUE(admin.ok()) << admin.status().ToString();
    admin_ = *admin;
    ASSERT_TRUE(engine_->CreateProject(admin_, R"({"name":"p"})").ok());
    auto table = engine_->CreateTable(
        admin_, "p", json{{"name", "t"}, {"schema", json::parse(kSchema)}, {"key", {"user"}}}.dump());
    ASSERT_TRUE(table.ok()) << table.status().ToString();
  }

  Result<WriteAck> Write(std::string_view key, WaitFor wait = {}) {
    WriteRequest request;
    request.project = "p";
    request.table = "t";
    request.body = kRecord;
    request.wait = wait;
    request.idempotency_key = key;
    return engine_->Write(admin_, request, nullptr);
  }

  // Starts a write on its own thread; its answer lands in the returned slot
  // (owned by the fixture, so it outlives a test body that ends early).
  std::optional<Result<WriteAck>>& WriteInBackground(std::string_view key, WaitFor wait = {}) {
    std::optional<Result<WriteAck>>* answer = &answers_.emplace_back();
    threads_.emplace_back([this, key = std::string(key), answer, wait] {
      *answer = Write(key, wait);
    });
    return *answer;
  }

  void JoinWriters() {
    for (auto& thread : threads_) thread.join();
    threads_.clear();
  }

  size_t LogSize() {
    auto page = engine_->QueryLog(admin_, LogQuery{"p", "t", 1000, 0});
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    return page.ok() ? json::parse(page->data_json).size() : 0;
  }

  int64_t Metric(std::string_view name) {
    std::string text = engine_->MetricsText();
    std::string prefix = std::string(name) + " ";
    size_t at = text.find("\n" + prefix);
    if (at == std::string::npos) return -1;
    return std::atoll(text.c_str() + at + 1 + prefix.size());
  }

  int Publishes() {
    std::lock_guard lock(faults_->mu);
    return faults_->publishes;
  }

  std::string dir_;
  std::shared_ptr<QueueFaults> faults_ = std::make_shared<QueueFaults>();
  std::unique_ptr<Engine> engine_;
  Principal admin_;
  std::vector<std::thread> threads_;
  std::list<std::optional<Result<WriteAck>>> answers_;
};

// --- Idempotency-Key: a claim is final only once the publish succeeded ----------------------

TEST_F(WriteDurabilityTest, ARetryDuringAnUnfinishedWriteIsNotAcknowledgedAndAFailedWriteLeavesTheKeyFree) {
  EngineOptions options = Options();
  options.idempotency_wait_ms = 100;
  Open(options);
  faults_->hold_next = true;
  auto& first = WriteInBackground("key-1");
  ASSERT_TRUE(faults_->WaitUntilHolding());

  // The first request is still publishing: the retry must not be told it is done.
  auto retry = Write("key-1");
  ASSERT_FALSE(retry.ok()) << "a retry got 2xx (replayed=" << retry->replayed
                           << ") while the first write was still unpublished";
  EXPECT_EQ(retry.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(retry.status().message(), HasSubstr("still in progress"));

  faults_->Release(Unavailable("injected publish failure"));
  JoinWriters();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status().code(), StatusCode::kUnavailable);

  // The failed write released its claim: the next retry writes, once.
  auto again = Write("key-1", {.log = true});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->replayed);
  auto replay = Write("key-1", {.log = true});
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->write_id, again->write_id);
  EXPECT_EQ(LogSize(), 1u);
  EXPECT_EQ(Metric("aquifer_idempotency_in_progress_total"), 1);
}

TEST_F(WriteDurabilityTest, ARetryWaitingForAnUnfinishedWriteWritesItselfWhenThatWriteFails) {
  EngineOptions options = Options();
  options.idempotency_wait_ms = 120'000;
  Open(options);
  faults_->hold_next = true;
  auto& first = WriteInBackground("key-2");
  ASSERT_TRUE(faults_->WaitUntilHolding());
  auto& retry = WriteInBackground("key-2", {.log = true});
  // The retry has met the unfinished claim and is waiting for it.
  auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (Metric("aquifer_idempotency_waits_total") < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(Metric("aquifer_idempotency_waits_total"), 1);

  faults_->Release(Unavailable("injected publish failure"));
  JoinWriters();
  ASSERT_TRUE(first.has_value() && retry.has_value());
  EXPECT_EQ(first->status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(retry->ok()) << retry->status().ToString();
  EXPECT_FALSE((*retry)->replayed) << "the retry was answered with a write that never happened";
  EXPECT_TRUE((*retry)->waited);
  EXPECT_EQ(LogSize(), 1u);
}

TEST_F(WriteDurabilityTest, ARetryWaitingForAnUnfinishedWriteIsAnsweredWithItOnceItIsDurable) {
  EngineOptions options = Options();
  options.idempotency_wait_ms = 120'000;
  Open(options);
  faults_->hold_next = true;
  auto& first = WriteInBackground("key-3", {.log = true});
  ASSERT_TRUE(faults_->WaitUntilHolding());
  auto& retry = WriteInBackground("key-3");
  auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (Metric("aquifer_idempotency_waits_total") < 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(Metric("aquifer_idempotency_waits_total"), 1);

  faults_->Release(Status::OK());
  JoinWriters();
  ASSERT_TRUE(first.has_value() && retry.has_value());
  ASSERT_TRUE(first->ok()) << first->status().ToString();
  ASSERT_TRUE(retry->ok()) << retry->status().ToString();
  EXPECT_TRUE((*retry)->replayed);
  EXPECT_EQ((*retry)->write_id, (*first)->write_id);
  EXPECT_EQ(LogSize(), 1u);
}

TEST_F(WriteDurabilityTest, AClaimWhoseLeaseRanOutIsTakenOverByARetry) {
  EngineOptions options = Options();
  options.idempotency_lease_ms = 300;
  options.idempotency_wait_ms = 120'000;
  Open(options);
  // A publish that outlives its lease (the stand-in for a dead process): the
  // retry takes the claim over and writes; the late original commit is lost.
  faults_->hold_next = true;
  auto& first = WriteInBackground("key-4");
  ASSERT_TRUE(faults_->WaitUntilHolding());
  auto retry = Write("key-4", {.log = true});
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_FALSE(retry->replayed);
  faults_->Release(Unavailable("injected publish failure"));
  JoinWriters();
  EXPECT_EQ(first->status().code(), StatusCode::kUnavailable);
  auto replay = Write("key-4");
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_TRUE(replay->replayed);
  EXPECT_EQ(replay->write_id, retry->write_id);
  EXPECT_EQ(LogSize(), 1u);
}

// --- The write path fails closed while the queue refuses writes -----------------------------

TEST_F(WriteDurabilityTest, AQueueThatRefusesWritesMakesWritesAndHealthUnavailableUntilItRecovers) {
  EngineOptions options = Options();
  options.write_path_probe_interval_ms = 0;  // every write probes
  Open(options);
  ASSERT_TRUE(engine_->Health().ok());
  faults_->fail_all = Corruption("injected: queue log damaged");
  auto refused = Write("");
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  Status health = engine_->Health();
  EXPECT_EQ(health.code(), StatusCode::kUnavailable);
  EXPECT_THAT(health.message(), HasSubstr("queue"));
  EXPECT_THAT(health.message(), HasSubstr("injected: queue log damaged"));
  EXPECT_EQ(Metric("aquifer_write_path_healthy"), 0);

  faults_->fail_all = Status::OK();
  auto accepted = Write("", {.log = true});
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_TRUE(engine_->Health().ok()) << engine_->Health().ToString();
  EXPECT_EQ(Metric("aquifer_write_path_healthy"), 1);
  EXPECT_EQ(LogSize(), 1u);
}

TEST_F(WriteDurabilityTest, BetweenProbesAFailedQueueIsNotAskedAndWritesAreRefused) {
  EngineOptions options = Options();
  options.write_path_probe_interval_ms = 3'600'000;
  Open(options);
  faults_->fail_all = Corruption("injected: queue log damaged");
  EXPECT_EQ(Write("").status().code(), StatusCode::kUnavailable);
  const int publishes = Publishes();
  faults_->fail_all = Status::OK();
  auto refused = Write("key-5");
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("injected: queue log damaged"));
  EXPECT_EQ(Publishes(), publishes) << "a write was published while the write path was failed";
  // Nothing was claimed: the key is free for a later retry.
  EXPECT_EQ(engine_->Health().code(), StatusCode::kUnavailable);
}

TEST_F(WriteDurabilityTest, TransientPublishErrorsCountOnlyWhenTheyRepeat) {
  EngineOptions options = Options();
  options.write_path_probe_interval_ms = 0;
  Open(options);
  faults_->fail_all = Unavailable("injected: broker busy");
  EXPECT_EQ(Write("").status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(engine_->Health().ok()) << "one transient error is not a failing queue";
  EXPECT_EQ(Write("").status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(Write("").status().code(), StatusCode::kUnavailable);
  Status health = engine_->Health();
  EXPECT_EQ(health.code(), StatusCode::kUnavailable);
  EXPECT_THAT(health.message(), HasSubstr("injected: broker busy"));
}

// --- Relaxed durability is visible ----------------------------------------------------------

TEST_F(WriteDurabilityTest, RelaxedQueueDurabilityIsReportedOnEveryWriteAnswer) {
  EngineOptions options = Options();
  options.queue.config["sync"] = "false";
  Open(options);
  ASSERT_TRUE(engine_->RelaxedDurability().has_value());
  EXPECT_THAT(*engine_->RelaxedDurability(), HasSubstr("sync = false"));
  auto ack = Write("key-6");
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_FALSE(ack->durable);
  auto replay = Write("key-6");
  ASSERT_TRUE(replay.ok()) << replay.status().ToString();
  EXPECT_FALSE(replay->durable);
}

TEST_F(WriteDurabilityTest, DurableByDefault) {
  Open(Options());
  EXPECT_FALSE(engine_->RelaxedDurability().has_value());
  auto ack = Write("");
  ASSERT_TRUE(ack.ok()) << ack.status().ToString();
  EXPECT_TRUE(ack->durable);
}

}  // namespace
}  // namespace aquifer::engine
