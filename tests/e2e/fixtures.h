#pragma once

// gtest helpers shared by the e2e suites: one server per suite, projects and
// tables made through the API, and assertion helpers for DESIGN.md's shapes.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "harness.h"

namespace aquifer::e2e {

// The schema most suites use: key (user, seq), a nullable field with a
// default, and an array of records (for "items[2].price" error paths).
inline json EventSchema() {
  return json::parse(R"({
    "type": "record", "name": "event",
    "fields": [
      {"name": "user",  "type": "string"},
      {"name": "seq",   "type": "long"},
      {"name": "value", "type": "double"},
      {"name": "note",  "type": ["null", "string"], "default": null},
      {"name": "items", "type": {"type": "array", "items": {
          "type": "record", "name": "item",
          "fields": [{"name": "name", "type": "string"}, {"name": "price", "type": "double"}]}},
       "default": []}
    ]})");
}

inline json EventKey() { return json::array({"user", "seq"}); }

inline json Event(const std::string& user, int64_t seq, double value, json note = nullptr) {
  return json{{"user", user}, {"seq", seq}, {"value", value}, {"note", note}, {"items", json::array()}};
}

inline std::string TablePath(const std::string& project, const std::string& table) {
  return "/v1/projects/" + project + "/tables/" + table;
}

// Fails the test (not throw) when a call answers something unexpected.
#define AQ_EXPECT_STATUS(resp, code) EXPECT_EQ((resp).status, (code)) << (resp).Describe()
#define AQ_ASSERT_STATUS(resp, code) ASSERT_EQ((resp).status, (code)) << (resp).Describe()

// Checks DESIGN.md's error shape {"error":{"code","message"}} with a non-empty message.
inline ::testing::AssertionResult IsErrorBody(const Response& r) {
  if (!r.is_json || !r.j().is_object()) return ::testing::AssertionFailure() << "not a JSON object: " << r.Describe();
  auto e = r.j().find("error");
  if (e == r.j().end() || !e->is_object()) return ::testing::AssertionFailure() << "no error object: " << r.Describe();
  if (!e->contains("code") || !(*e)["code"].is_string() || (*e)["code"].get<std::string>().empty())
    return ::testing::AssertionFailure() << "error.code missing: " << r.Describe();
  if (!e->contains("message") || !(*e)["message"].is_string() || (*e)["message"].get<std::string>().empty())
    return ::testing::AssertionFailure() << "error.message missing or empty: " << r.Describe();
  return ::testing::AssertionSuccess();
}

// Starts one server for a whole suite (the binary is slow to start only once).
class ServerSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new Server();
    try {
      server_->Start();
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    ASSERT_FALSE(server_->admin_secret().empty()) << "no admin secret\n" << server_->OutputTail();
  }
  void TearDown() override {
    if (HasFailure() && server_) {
      std::cerr << "--- server output (tail) ---\n" << server_->OutputTail(3000) << "\n";
    }
  }

  Client Admin() { return Client(*server_, server_->admin_secret()); }
  Client As(const std::string& secret) { return Client(*server_, secret); }

  // Creates a project as the admin; asserts 201.
  std::string MakeProject(const std::string& prefix = "p") {
    std::string name = UniqueName(prefix);
    auto r = Admin().Post("/v1/projects", {{"name", name}});
    EXPECT_EQ(r.status, 201) << "create project " << name << ": " << r.Describe();
    return name;
  }
  // Creates an `event` table; asserts 201.
  std::string MakeTable(const std::string& project, const std::string& prefix = "t",
                        json schema = EventSchema(), json key = EventKey()) {
    std::string name = UniqueName(prefix);
    auto r = Admin().Post("/v1/projects/" + project + "/tables",
                          {{"name", name}, {"schema", schema}, {"key", key}});
    EXPECT_EQ(r.status, 201) << "create table " << project << "." << name << ": " << r.Describe();
    return name;
  }
  // Mints a secret for `project` as the admin.
  std::string MintSecret(const std::string& project, json grants) {
    auto r = Admin().Post("/v1/projects/" + project + "/secrets", grants);
    EXPECT_EQ(r.status, 201) << "mint secret " << grants.dump() << ": " << r.Describe();
    if (!r.is_json || !r.j().contains("secret") || !r.j()["secret"].is_string()) return "";
    return r.j()["secret"].get<std::string>();
  }

  static Server* server_;
  static std::string start_error_;
};

inline Server* ServerSuite::server_ = nullptr;
inline std::string ServerSuite::start_error_;

// Reads the whole log of a table (following next_cursor) as the given client.
inline std::vector<json> ReadWholeLog(Client& c, const std::string& project, const std::string& table,
                                      std::string* error = nullptr) {
  std::vector<json> out;
  auto r = c.Get(TablePath(project, table) + "/log?limit=1000");
  for (int pages = 0; pages < 100000; ++pages) {
    if (r.status != 200 || !r.is_json || !r.j().contains("data")) {
      if (error) *error = r.Describe();
      return out;
    }
    for (const auto& rec : r.j()["data"]) out.push_back(rec);
    const auto& next = r.j().value("next_cursor", json());
    if (!next.is_string() || next.get<std::string>().empty()) break;
    r = c.Get("/v1/cursor?limit=1000&cursor=" + UrlEncode(next.get<std::string>()));
  }
  return out;
}

}  // namespace aquifer::e2e
