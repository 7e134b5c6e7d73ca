// Kills a writer process (crash_writer) with SIGKILL at random moments, then
// reopens its stores and checks them against the writer's own record of what
// was acknowledged (STYLE.md "Crash tests"):
//  - every Publish that returned OK is delivered by a persistent subscription
//    (the parent's "verify" subscription, drained and acked after each kill;
//    it must also never see a message twice, since it closes cleanly);
//  - every WriteRecords that returned OK is in the lookup log (when the
//    embedded LookupService is compiled in);
//  - the child's own consumer loses nothing: each acknowledged publish was
//    either handled by it before a kill or is still delivered at the end.
//
// AQUIFER_CRASH_ROUNDS (default 30) and AQUIFER_CRASH_SEED change the run.

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "aquifer/drivers/rocksdb/queue.h"
#include "crash_common.h"

namespace aquifer::crash {
namespace {

struct AckRecord {
  std::set<int64_t> published;
  std::set<int64_t> written;
  std::set<int64_t> handled;
};

AckRecord ReadAckLog(const std::string& path) {
  AckRecord r;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no trailing newline: a torn line (cannot happen, but be safe)
    std::istringstream fields(line);
    char kind;
    int64_t first, count = 1;
    fields >> kind >> first;
    if (kind != 'c') fields >> count;
    auto& set = kind == 'q' ? r.published : kind == 'l' ? r.written : r.handled;
    for (int64_t id = first; id < first + count; ++id) set.insert(id);
  }
  return r;
}

std::shared_ptr<driver::MessageQueue> OpenQueue(const std::string& data_dir) {
  driver::DriverContext context;
  context.data_dir = data_dir;
  auto q = drivers::rocksdb::OpenQueue({}, context);
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  if (!q.ok()) return nullptr;
  EXPECT_TRUE((*q)->RegisterTopic(kTopic).ok());
  return *q;
}

// Drains a persistent subscription, acking everything; returns the ids seen.
std::vector<int64_t> Drain(driver::MessageQueue* q, const std::string& name) {
  driver::SubscriptionOptions options;
  options.name = name;
  auto sub = q->Subscribe(kTopic, options);
  EXPECT_TRUE(sub.ok()) << sub.status().ToString();
  std::vector<int64_t> ids;
  if (!sub.ok()) return ids;
  for (;;) {
    auto r = (*sub)->Pull(1000, 50);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || r->empty()) break;
    std::vector<std::string> acks;
    for (const auto& m : *r) {
      ids.push_back(std::stoll(m.data));
      acks.push_back(m.ack_id);
    }
    EXPECT_TRUE((*sub)->Ack(acks).ok());
  }
  return ids;
}

#if AQUIFER_CRASH_WITH_LOOKUP
std::set<std::string> LoggedKeys(const std::string& data_dir) {
  std::set<std::string> keys;
  driver::DriverContext context;
  context.data_dir = data_dir;
  auto options = drivers::rocksdb::ParseLookupOptions({}, context);
  EXPECT_TRUE(options.ok()) << options.status().ToString();
  auto lookup = drivers::rocksdb::MakeLookupService(*options);
  EXPECT_TRUE(lookup.ok()) << lookup.status().ToString();
  if (!lookup.ok()) return keys;
  const driver::InstanceInfo instance = CrashInstance();
  EXPECT_TRUE((*lookup)->RegisterInstance(instance).ok());
  driver::QueryRequest request;
  request.kind = driver::QueryKind::kLog;
  auto cursors = (*lookup)->Query(instance, request);
  EXPECT_TRUE(cursors.ok()) << cursors.status().ToString();
  if (!cursors.ok()) return keys;
  std::string payload = cursors->replay;
  driver::ReadOptions read;
  read.limit = 1000;
  read.scan_budget = 1'000'000;
  while (!payload.empty()) {
    auto page = (*lookup)->ReadCursor(instance, payload, keys::Filter{}, read);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) break;
    for (const auto& record : page->records) keys.insert(record.key);
    payload = page->next;
  }
  return keys;
}
#endif

template <typename Set>
std::string Examples(const Set& missing) {
  std::string s;
  int n = 0;
  for (const auto& id : missing) {
    if (n++ == 5) break;
    s += std::to_string(id) + " ";
  }
  return s;
}

TEST(CrashTest, EveryAcknowledgedWriteSurvivesSigkillAtRandomMoments) {
  const int rounds = getenv("AQUIFER_CRASH_ROUNDS") ? atoi(getenv("AQUIFER_CRASH_ROUNDS")) : 30;
  const unsigned seed = getenv("AQUIFER_CRASH_SEED") ? static_cast<unsigned>(atoll(getenv("AQUIFER_CRASH_SEED")))
                                                     : std::random_device()();
  std::mt19937 rng(seed);
  std::string tmpl = ::testing::TempDir() + "aquifer-crash-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string dir = tmpl;
  const std::string data_dir = dir + "/data";
  const std::string ack_log = dir + "/acks.log";
  std::filesystem::create_directories(data_dir);
  std::cout << "seed " << seed << ", " << rounds << " rounds, lookup writes "
            << (AQUIFER_CRASH_WITH_LOOKUP ? "on" : "off (no embedded LookupService in this build)")
            << ", folder " << dir << std::endl;

  {  // Create both subscriptions before anything is published.
    auto q = OpenQueue(data_dir);
    ASSERT_NE(q, nullptr);
    for (const char* name : {kVerifySubscription, kConsumerSubscription}) {
      driver::SubscriptionOptions options;
      options.name = name;
      ASSERT_TRUE(q->Subscribe(kTopic, options).ok());
    }
  }

  std::set<int64_t> verified;  // delivered to "verify"
  size_t duplicates = 0;
  for (int round = 0; round < rounds; ++round) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::string first = std::to_string(int64_t{round} * 10'000'000);
      execl(AQUIFER_CRASH_WRITER, "crash_writer", data_dir.c_str(), ack_log.c_str(), first.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    int delay_ms = 20 + static_cast<int>(rng() % 281);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, WNOHANG), 0)
        << "round " << round << ": the writer exited on its own with status " << status;
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;

    AckRecord acked = ReadAckLog(ack_log);
    {
      auto q = OpenQueue(data_dir);
      ASSERT_NE(q, nullptr);
      for (int64_t id : Drain(q.get(), kVerifySubscription)) {
        if (!verified.insert(id).second) ++duplicates;
      }
    }
    std::set<int64_t> lost;
    for (int64_t id : acked.published) {
      if (!verified.count(id)) lost.insert(id);
    }
    ASSERT_TRUE(lost.empty()) << "round " << round << ": " << lost.size()
                              << " acknowledged publishes were lost, e.g. " << Examples(lost);
#if AQUIFER_CRASH_WITH_LOOKUP
    std::set<std::string> logged = LoggedKeys(data_dir);
    std::set<int64_t> unlogged;
    for (int64_t id : acked.written) {
      if (!logged.count(RecordKey(id))) unlogged.insert(id);
    }
    ASSERT_TRUE(unlogged.empty()) << "round " << round << ": " << unlogged.size()
                                  << " acknowledged record writes were lost, e.g. " << Examples(unlogged);
#endif
    std::cout << "round " << round << ": killed after " << delay_ms << " ms; acknowledged so far: "
              << acked.published.size() << " publishes, " << acked.written.size()
              << " record writes, " << acked.handled.size() << " consumed" << std::endl;
  }
  EXPECT_EQ(duplicates, 0u) << "the verify subscription acked cleanly, yet saw messages again";

  // The child's consumer: whatever it did not handle before a kill is still there.
  AckRecord acked = ReadAckLog(ack_log);
  EXPECT_GT(acked.published.size(), 0u) << "the writer never got a publish acknowledged";
  auto q = OpenQueue(data_dir);
  ASSERT_NE(q, nullptr);
  std::set<int64_t> remaining;
  for (int64_t id : Drain(q.get(), kConsumerSubscription)) remaining.insert(id);
  std::set<int64_t> lost;
  for (int64_t id : acked.published) {
    if (!acked.handled.count(id) && !remaining.count(id)) lost.insert(id);
  }
  EXPECT_TRUE(lost.empty()) << lost.size() << " acknowledged publishes never reached the consumer, e.g. "
                            << Examples(lost);
  std::cout << "done: " << acked.published.size() << " acknowledged publishes verified over " << rounds
            << " kills; consumer handled " << acked.handled.size() << ", " << remaining.size()
            << " left for it" << std::endl;
  q.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace aquifer::crash
