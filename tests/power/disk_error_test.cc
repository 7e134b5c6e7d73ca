// Disk errors on the write path (issue 11, item 2): the whole engine runs in
// this process on the embedded drivers, their RocksDB databases on FaultFs
// (fault_fs.h), which fails chosen calls with EIO or ENOSPC (optionally as a
// short write: half the data reaches the file first). For each fault site —
// the queue's WAL append and fsync (publish), the lookup database's writes
// (the worker's store write) — the engine must fail closed: writes answer
// Unavailable (503) naming the cause, Health() (/healthz) is unhealthy with
// the same cause, nothing that was not durable is acknowledged; and once the
// fault clears it must accept writes again, in the same process or, where
// RocksDB refuses to continue after the error, after the restart its
// message asks for. Afterwards a power cut (everything unsynced dropped)
// must keep every write that was acknowledged.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "aquifer/drivers/rocksdb/rocksdb_handle.h"
#include "aquifer/engine/engine.h"
#include "fault_fs.h"

namespace aquifer::engine {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using testing::FaultFs;
using testing::FaultKind;
using namespace std::chrono_literals;

constexpr char kAdminSecret[] = "admin-secret-for-disk-error-tests";
constexpr char kSchema[] = R"({"type":"record","name":"Event","fields":[
  {"name":"user","type":"string"}, {"name":"n","type":"long"}]})";

class DiskErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "aquifer-disk-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    fs_ = std::make_shared<FaultFs>();
    drivers::rocksdb::SetFileSystemForTesting(fs_);
  }
  void TearDown() override {
    fs_->ClearFaults();
    engine_.reset();
    drivers::rocksdb::SetFileSystemForTesting(nullptr);
    std::filesystem::remove_all(dir_);
  }

  void Open(bool create) {
    EngineOptions options;
    options.data_dir = dir_;
    options.admin_secret = kAdminSecret;
    options.wait_timeout_ms = 3'000;
    options.usage_flush_interval_ms = 50;
    options.write_path_probe_interval_ms = 20;
    options.queue.config["poll_interval_ms"] = "5";
    auto opened = Engine::Open(options);
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    engine_ = std::move(*opened);
    ASSERT_TRUE(engine_->Start().ok());
    auto admin = engine_->Authenticate(kAdminSecret);
    ASSERT_TRUE(admin.ok()) << admin.status().ToString();
    admin_ = *admin;
    if (!create) return;
    ASSERT_TRUE(engine_->CreateProject(admin_, R"({"name":"p"})").ok());
    auto table = engine_->CreateTable(
        admin_, "p", json{{"name", "t"}, {"schema", json::parse(kSchema)}, {"key", {"user", "n"}}}.dump());
    ASSERT_TRUE(table.ok()) << table.status().ToString();
  }

  // Writes record n; remembers it when acknowledged.
  Result<WriteAck> Write(int64_t n, WaitFor wait = {}) {
    WriteRequest request;
    request.project = "p";
    request.table = "t";
    std::string body = json::array({{{"user", "u"}, {"n", n}}}).dump();
    request.body = body;
    request.wait = wait;
    auto ack = engine_->Write(admin_, request, nullptr);
    if (ack.ok()) acked_.insert(n);
    return ack;
  }

  // The n of every record in the log (waits up to 10 s for `at_least`).
  std::set<int64_t> Logged(size_t at_least = 0) {
    std::set<int64_t> out;
    for (int i = 0; i < 200; ++i) {
      out.clear();
      auto page = engine_->QueryLog(admin_, LogQuery{"p", "t", 1000, 0});
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) return out;
      for (const auto& rec : json::parse(page->data_json)) out.insert(rec["n"].get<int64_t>());
      if (out.size() >= at_least) break;
      std::this_thread::sleep_for(50ms);
    }
    return out;
  }

  // With the fault gone: writes until one is acknowledged (the engine probes
  // the failed path every 20 ms). Returns the last refusal if none was.
  // Stops early at RocksDB's definitive refusal ("... then restart the server").
  Status WriteUntilAccepted(int64_t n, std::chrono::milliseconds patience = 15s) {
    auto deadline = std::chrono::steady_clock::now() + patience;
    Status last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto ack = Write(n, {.log = true});
      if (ack.ok()) return Status::OK();
      last = ack.status();
      if (last.message().find("then restart the server") != std::string::npos) break;
      std::this_thread::sleep_for(25ms);
    }
    return last;
  }

  // Checks the engine fails closed while the fault is on.
  void ExpectFailsClosed(const std::string& component, const std::string& cause, int64_t first_n) {
    int refused = 0;
    for (int i = 0; i < 6; ++i) {
      auto ack = Write(first_n + i);
      if (ack.ok()) continue;  // only a write the queue made durable may pass (a lookup fault)
      ++refused;
      EXPECT_EQ(ack.status().code(), StatusCode::kUnavailable) << ack.status().ToString();
    }
    // The worker notices a store fault on its own; give it a moment.
    Status health;
    for (int i = 0; i < 200; ++i) {
      health = engine_->Health();
      if (!health.ok()) break;
      std::this_thread::sleep_for(20ms);
    }
    ASSERT_EQ(health.code(), StatusCode::kUnavailable) << "healthy while the disk fails";
    EXPECT_THAT(health.message(), HasSubstr(component));
    EXPECT_THAT(health.message(), HasSubstr(cause));
    auto refused_now = Write(first_n + 100);
    ASSERT_FALSE(refused_now.ok()) << "a write was acknowledged while /healthz is unhealthy";
    EXPECT_EQ(refused_now.status().code(), StatusCode::kUnavailable);
    EXPECT_THAT(refused_now.status().message(), HasSubstr(cause));
    EXPECT_GT(fs_->injected(), 0u);
    (void)refused;
  }

  // Clears the fault; the engine must accept writes again, in this process
  // or after a restart that its message asked for. Returns true when it
  // recovered in place.
  bool ExpectRecovers(int64_t n) {
    fs_->ClearFaults();
    Status recovered = WriteUntilAccepted(n);
    if (recovered.ok()) {
      EXPECT_TRUE(engine_->Health().ok()) << engine_->Health().ToString();
      return true;
    }
    EXPECT_THAT(recovered.message(), HasSubstr("restart the server")) << "refuses writes after the fault "
                                                              "cleared without saying what to do: "
                                                           << recovered.ToString();
    engine_.reset();
    Open(/*create=*/false);
    EXPECT_TRUE(WriteUntilAccepted(n).ok());
    EXPECT_TRUE(engine_->Health().ok()) << engine_->Health().ToString();
    return false;
  }

  // Cuts the power, drops everything unsynced, reopens: every acknowledged
  // write is in the log.
  void ExpectAcknowledgedSurvivePowerCut() {
    fs_->PowerCut();
    engine_.reset();
    std::mt19937_64 rng(5);
    fs_->Recover(rng, /*tear=*/true);
    Open(/*create=*/false);
    std::set<int64_t> logged = Logged(acked_.size());
    for (int64_t n : acked_) EXPECT_TRUE(logged.count(n)) << "acknowledged write " << n << " was lost";
  }

  void Run(uint32_t ops, const std::string& where, FaultKind kind, bool short_write,
           const std::string& component, const std::string& cause) {
    Open(/*create=*/true);
    ASSERT_TRUE(Write(1, {.log = true}).ok());
    fs_->Fail(ops, where, kind, -1, short_write);
    ExpectFailsClosed(component, cause, 10);
    const bool in_place = ExpectRecovers(1000);
    std::printf("%s %s%s: recovered %s\n", where.c_str(), kind == FaultKind::kEio ? "EIO" : "ENOSPC",
                short_write ? " (short writes)" : "", in_place ? "in place" : "after a restart");
    ASSERT_TRUE(Write(1001, {.log = true}).ok());
    ExpectAcknowledgedSurvivePowerCut();
  }

  std::string dir_;
  std::shared_ptr<FaultFs> fs_;
  std::unique_ptr<Engine> engine_;
  Principal admin_;
  std::set<int64_t> acked_;
};

TEST_F(DiskErrors, EioOnTheQueueFsync) {
  Run(testing::kOpSync, "/queue/", FaultKind::kEio, false, "queue", "injected EIO");
}
TEST_F(DiskErrors, EioOnTheQueueWalAppend) {
  Run(testing::kOpAppend, "/queue/", FaultKind::kEio, false, "queue", "injected EIO");
}
TEST_F(DiskErrors, ShortWritesThenEnospcOnTheQueueWal) {
  Run(testing::kOpAppend, "/queue/", FaultKind::kNoSpace, true, "queue", "No space left");
}
TEST_F(DiskErrors, EnospcOnTheQueueFsync) {
  Run(testing::kOpSync, "/queue/", FaultKind::kNoSpace, false, "queue", "No space left");
}
TEST_F(DiskErrors, EioOnTheLookupFsync) {
  Run(testing::kOpSync, "/lookup/", FaultKind::kEio, false, "lookup", "injected EIO");
}
TEST_F(DiskErrors, ShortWritesThenEnospcOnTheLookupWal) {
  Run(testing::kOpAppend, "/lookup/", FaultKind::kNoSpace, true, "lookup", "No space left");
}

}  // namespace
}  // namespace aquifer::engine
