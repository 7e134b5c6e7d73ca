// Subscriptions over the WebSocket (DESIGN.md: `GET /v1/subscribe`): a change
// cursor resumes without gaps or repeats after the connection is cut
// mid-stream, records arrive in write order, and filters (in the message, or
// carried by the change cursor of a filtered query) only let matching records through.

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

class Subscription : public ServerSuite {
 protected:
  // The change cursor of a table's (optionally filtered) index query.
  std::string ChangeCursor(const std::string& p, const std::string& t, const json& filter = nullptr) {
    std::string q = TablePath(p, t) + "/records?limit=1";
    if (!filter.is_null()) q += "&filter=" + UrlEncode(filter.dump());
    auto r = Admin().Get(q);
    EXPECT_EQ(r.status, 200) << r.Describe();
    std::string c = r.is_json ? r.j().value("change_cursor", "") : "";
    EXPECT_FALSE(c.empty()) << r.Describe();
    return c;
  }

  // Connects and subscribes; fails the test on a refused upgrade.
  void Open(WsClient& ws, const std::string& cursor, const json& filter = nullptr) {
    ASSERT_EQ(ws.Connect(server_->host(), server_->port(), server_->admin_secret()), "");
    json sub = {{"type", "subscribe"}, {"cursor", cursor}};
    if (!filter.is_null()) sub["filter"] = filter;
    ASSERT_TRUE(ws.Send(sub));
  }

  // Checks one server message: {"type":"records","data":[...],"cursor":"..."}.
  static void CheckBatch(const json& m) {
    ASSERT_EQ(m.value("type", ""), "records") << m.dump().substr(0, 2000);
    ASSERT_TRUE(m.contains("data") && m["data"].is_array()) << m.dump().substr(0, 2000);
    ASSERT_TRUE(m.contains("cursor") && m["cursor"].is_string() && !m["cursor"].get<std::string>().empty())
        << m.dump().substr(0, 2000);
    for (const auto& rec : m["data"]) {
      ASSERT_TRUE(rec.contains("@timestamp") && rec["@timestamp"].is_number_integer()) << rec.dump();
    }
  }
};

TEST_F(Subscription, ACutSubscriptionResumedFromItsLastCursorGetsEveryRecordOnceInWriteOrder) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::string cursor = ChangeCursor(p, t);
  constexpr int kBatches = 20, kPerBatch = 25, kTotal = kBatches * kPerBatch;

  WsClient ws;
  Open(ws, cursor);
  ASSERT_FALSE(HasFatalFailure());

  // A writer sends the batches one after another (write order = seq order).
  std::atomic<int> acked_batches{0};
  std::atomic<bool> write_failed{false};
  std::string write_error;
  std::thread writer([&] {
    Client c(*server_, server_->admin_secret());
    for (int b = 0; b < kBatches; ++b) {
      std::vector<json> batch;
      for (int i = 0; i < kPerBatch; ++i) batch.push_back(Event("u" + std::to_string(b % 3), b * kPerBatch + i, b));
      auto r = c.Post(TablePath(p, t) + "/records", batch);
      if (r.status != 202) {
        write_error = r.Describe();
        write_failed = true;
        return;
      }
      ++acked_batches;
      std::this_thread::sleep_for(30ms);
    }
  });

  std::vector<int64_t> seen;
  std::string last_cursor = cursor;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  // Phase 1: receive some, then cut while records are still flowing.
  while (seen.size() < 100 && std::chrono::steady_clock::now() < deadline) {
    auto m = ws.Receive(200ms);
    if (!m) {
      ASSERT_FALSE(ws.closed()) << "the server closed the subscription: " << ws.close_reason();
      continue;
    }
    CheckBatch(*m);
    ASSERT_FALSE(HasFatalFailure());
    for (const auto& rec : (*m)["data"]) seen.push_back(rec["seq"].get<int64_t>());
    last_cursor = (*m)["cursor"];
  }
  ASSERT_GE(seen.size(), 100u) << "the subscription delivered too little before the cut";
  EXPECT_LT(acked_batches.load(), kBatches) << "the cut should come mid-stream (the writer had finished)";
  ws.Cut();
  size_t before_cut = seen.size();

  std::this_thread::sleep_for(300ms);  // more writes land while disconnected
  WsClient again;
  Open(again, last_cursor);
  ASSERT_FALSE(HasFatalFailure());
  deadline = std::chrono::steady_clock::now() + 30s;
  while (seen.size() < static_cast<size_t>(kTotal) && std::chrono::steady_clock::now() < deadline) {
    auto m = again.Receive(200ms);
    if (!m) {
      ASSERT_FALSE(again.closed()) << "the server closed the resumed subscription: " << again.close_reason();
      continue;
    }
    CheckBatch(*m);
    ASSERT_FALSE(HasFatalFailure());
    for (const auto& rec : (*m)["data"]) seen.push_back(rec["seq"].get<int64_t>());
  }
  writer.join();
  ASSERT_FALSE(write_failed.load()) << write_error;
  // Nothing more (no repeats) arrives.
  for (auto m = again.Receive(1s); m; m = again.Receive(300ms)) {
    if ((*m)["type"] == "records") {
      for (const auto& rec : (*m)["data"]) seen.push_back(rec["seq"].get<int64_t>());
    }
  }
  std::vector<int64_t> want(kTotal);
  for (int i = 0; i < kTotal; ++i) want[i] = i;
  std::map<int64_t, int> counts;
  for (auto s : seen) ++counts[s];
  std::vector<int64_t> missing, repeated;
  for (int i = 0; i < kTotal; ++i) {
    if (counts[i] == 0) missing.push_back(i);
    if (counts[i] > 1) repeated.push_back(i);
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " records missed, first " << (missing.empty() ? -1 : missing[0]);
  EXPECT_TRUE(repeated.empty()) << repeated.size() << " records repeated, first "
                                << (repeated.empty() ? -1 : repeated[0]) << " (cut after " << before_cut << ")";
  EXPECT_EQ(seen, want) << "every record exactly once, in write order";
}

TEST_F(Subscription, AFilteredSubscriptionOnlyReceivesMatchingRecords) {
  std::string p = MakeProject(), t = MakeTable(p);
  WsClient ws;
  Open(ws, ChangeCursor(p, t), json{{"user", "ada"}, {"seq", {{"_lt", 1000}}}});
  ASSERT_FALSE(HasFatalFailure());
  auto c = Admin();
  int want_ada = 0;
  for (int b = 0; b < 5; ++b) {
    std::vector<json> batch;
    for (int i = 0; i < 20; ++i) {
      int64_t seq = b * 20 + i;
      std::string user = i % 3 == 0 ? "ada" : (i % 3 == 1 ? "bob" : "adam");
      if (user == "ada") ++want_ada;
      batch.push_back(Event(user, seq, 1.0));
    }
    batch.push_back(Event("ada", 5000 + b, 1.0));  // a key outside the filter's range
    AQ_ASSERT_STATUS(c.Post(TablePath(p, t) + "/records", batch), 202);
  }
  // A last matching record marks the end.
  AQ_ASSERT_STATUS(c.Post(TablePath(p, t) + "/records", json::array({Event("ada", 999, 2.0)})), 202);
  ++want_ada;
  // Every matching record, in write order (ada seq 0, 3, 6, ..., then 999).
  std::vector<int64_t> want;
  for (int64_t seq = 0; seq < 100; ++seq) {
    if (seq % 20 % 3 == 0) want.push_back(seq);
  }
  want.push_back(999);
  ASSERT_EQ(want.size(), static_cast<size_t>(want_ada));
  std::vector<int64_t> got;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (got.size() < want.size() && std::chrono::steady_clock::now() < deadline) {
    auto m = ws.Receive(200ms);
    if (!m) {
      ASSERT_FALSE(ws.closed()) << ws.close_reason();
      continue;
    }
    CheckBatch(*m);
    ASSERT_FALSE(HasFatalFailure());
    for (const auto& rec : (*m)["data"]) {
      EXPECT_EQ(rec["user"], "ada") << "a record outside the filter: " << rec.dump();
      EXPECT_LT(rec["seq"].get<int64_t>(), 1000) << "a record outside the filter: " << rec.dump();
      got.push_back(rec["seq"].get<int64_t>());
    }
  }
  for (auto m = ws.Receive(500ms); m; m = ws.Receive(300ms)) {  // nothing more may come
    for (const auto& rec : m->value("data", json::array())) {
      ADD_FAILURE() << "an extra record: " << rec.dump();
    }
  }
  std::vector<int64_t> sorted = got;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, want) << "matching records missed or repeated";
  EXPECT_EQ(got, want) << "matching records out of write order";
}

TEST_F(Subscription, AChangeCursorCarriesItsQuerysFilter) {
  std::string p = MakeProject(), t = MakeTable(p);
  WsClient ws;
  Open(ws, ChangeCursor(p, t, json{{"user", "bob"}}));  // no filter in the message
  ASSERT_FALSE(HasFatalFailure());
  auto c = Admin();
  AQ_ASSERT_STATUS(c.Post(TablePath(p, t) + "/records",
                          json::array({Event("ada", 1, 1), Event("bob", 1, 1), Event("carl", 1, 1)})),
                   202);
  AQ_ASSERT_STATUS(c.Post(TablePath(p, t) + "/records", json::array({Event("ada", 2, 1), Event("bob", 2, 1)})), 202);
  std::vector<std::string> got;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (got.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto m = ws.Receive(200ms);
    if (!m) {
      ASSERT_FALSE(ws.closed()) << ws.close_reason();
      continue;
    }
    CheckBatch(*m);
    for (const auto& rec : (*m)["data"]) got.push_back(rec["user"].get<std::string>() + ":" + rec["seq"].dump());
  }
  for (auto m = ws.Receive(700ms); m; m = ws.Receive(300ms)) {
    for (const auto& rec : (*m).value("data", json::array())) got.push_back(rec["user"].get<std::string>() + ":" + rec["seq"].dump());
  }
  EXPECT_EQ(got, (std::vector<std::string>{"bob:1", "bob:2"}));
}

TEST_F(Subscription, BadSubscribeMessagesAnswerAnErrorMessage) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::string cursor = ChangeCursor(p, t);
  for (const auto& [what, message] : std::vector<std::pair<std::string, std::string>>{
           {"unknown filter field", json{{"type", "subscribe"}, {"cursor", cursor}, {"filter", {{"bogus", 1}}}}.dump()},
           {"filter of the wrong type", json{{"type", "subscribe"}, {"cursor", cursor}, {"filter", {{"seq", "x"}}}}.dump()},
           {"no cursor", json{{"type", "subscribe"}}.dump()},
           {"a broken cursor", json{{"type", "subscribe"}, {"cursor", cursor.substr(0, cursor.size() - 2)}}.dump()},
           {"not JSON", std::string("{\"type\": ")},
           {"unknown type", json{{"type", "nope"}, {"cursor", cursor}}.dump()},
       }) {
    WsClient ws;
    ASSERT_EQ(ws.Connect(server_->host(), server_->port(), server_->admin_secret()), "");
    ASSERT_TRUE(ws.Send(message));
    auto m = ws.Receive(10s);
    ASSERT_TRUE(m.has_value()) << what << ": no answer (" << ws.close_reason() << ")";
    EXPECT_EQ((*m)["type"], "error") << what << ": " << m->dump();
    EXPECT_TRUE((*m).contains("error") && (*m)["error"].is_object() && (*m)["error"].contains("message"))
        << what << ": " << m->dump();
  }
}

}  // namespace
}  // namespace aquifer::e2e
