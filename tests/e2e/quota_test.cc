// Project quotas against the real server: the admin reads and sets them with
// GET/PUT /v1/projects/{p}/quotas (and `aquifer project quota`), other secrets
// get 403/404, bad values 400; writes over the write quota answer 429 with
// Retry-After = the seconds until the month (UTC) resets, and write nothing.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fixtures.h"

namespace aquifer::e2e {
namespace {

class Quotas : public ServerSuite {
 protected:
  std::string QuotasPath(const std::string& p) { return "/v1/projects/" + p + "/quotas"; }
  Response Put(Client c, const std::string& p, std::string_view body) {
    return c.Request("PUT", QuotasPath(p), body, {{"Content-Type", "application/json"}});
  }
};

// Seconds from `now_ms` to the start of the next calendar month, UTC.
int64_t SecondsToNextMonth(int64_t now_ms) {
  using namespace std::chrono;
  auto days = floor<std::chrono::days>(sys_time<milliseconds>(milliseconds(now_ms)));
  year_month_day today{days};
  year_month next = year_month(today.year(), today.month()) + months(1);
  sys_days start{next / 1};
  return (duration_cast<milliseconds>(start.time_since_epoch()).count() - now_ms + 999) / 1000;
}

json NoQuotas(const std::string& p) {
  return {{"project", p}, {"read_bytes", nullptr}, {"write_bytes", nullptr}, {"scan_bytes", nullptr}};
}

TEST_F(Quotas, TheAdminReadsAndSetsQuotasAndOmittedLimitsKeepTheirValue) {
  std::string p = MakeProject();
  auto r = Admin().Get(QuotasPath(p));
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.j(), NoQuotas(p));
  r = Put(Admin(), p, R"({"write_bytes": 1000000, "scan_bytes": 0})");
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.j(), (json{{"project", p}, {"read_bytes", nullptr}, {"write_bytes", 1000000}, {"scan_bytes", 0}}));
  r = Put(Admin(), p, R"({"read_bytes": 5, "scan_bytes": null})");
  AQ_ASSERT_STATUS(r, 200);
  json expected = {{"project", p}, {"read_bytes", 5}, {"write_bytes", 1000000}, {"scan_bytes", nullptr}};
  EXPECT_EQ(r.j(), expected);
  r = Admin().Get(QuotasPath(p));
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.j(), expected);
}

TEST_F(Quotas, BadQuotaBodiesAnswer400AndChangeNothing) {
  std::string p = MakeProject();
  AQ_ASSERT_STATUS(Put(Admin(), p, R"({"write_bytes": 100})"), 200);
  for (const char* bad : {R"({"write_bytes": -1})", R"({"write_bytes": "100"})", R"({"write_bytes": 2.5})",
                          R"({"rows": 1})", R"({"write_bytes": 99999999999999999999})", "[]", "{", ""}) {
    auto r = Put(Admin(), p, bad);
    EXPECT_EQ(r.status, 400) << bad << ": " << r.Describe();
    EXPECT_TRUE(IsErrorBody(r)) << bad;
  }
  auto r = Admin().Get(QuotasPath(p));
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.j()["write_bytes"], 100);
}

TEST_F(Quotas, OnlyTheAdminMayReadOrSetQuotas) {
  std::string p = MakeProject(), t = MakeTable(p), other = MakeProject("other");
  std::string manager = MintSecret(p, {{"read", json::array()}, {"manage", true}});
  std::string reader = MintSecret(p, {{"read", {t}}});
  for (const std::string& secret : {manager, reader}) {
    auto get = As(secret).Get(QuotasPath(p));
    EXPECT_EQ(get.status, 403) << get.Describe();
    EXPECT_TRUE(IsErrorBody(get));
    auto put = Put(As(secret), p, R"({"write_bytes": null})");
    EXPECT_EQ(put.status, 403) << put.Describe();
    // A project the secret does not see answers like one that does not exist.
    EXPECT_EQ(As(secret).Get(QuotasPath(other)).status, 404);
    EXPECT_EQ(Put(As(secret), other, "{}").status, 404);
  }
  EXPECT_EQ(Admin().Get(QuotasPath(UniqueName("nope"))).status, 404);
  EXPECT_EQ(As("").Get(QuotasPath(p)).status, 401);
  EXPECT_EQ(As("aq_not_a_secret_at_all").Get(QuotasPath(p)).status, 401);
  EXPECT_EQ(Put(As(""), p, "{}").status, 401);
  EXPECT_EQ(Admin().Get(QuotasPath(p)).j(), NoQuotas(p));
}

TEST_F(Quotas, WritesOverTheWriteQuotaAnswer429UntilTheMonthResetsAndWriteNothing) {
  std::string p = MakeProject(), t = MakeTable(p);
  std::string writer = MintSecret(p, {{"read", {"*"}}, {"write", {"*"}}});
  AQ_ASSERT_STATUS(Put(Admin(), p, R"({"write_bytes": 300})"), 200);

  int accepted = 0;
  Response refused;
  int64_t refused_at_ms = 0;
  for (int seq = 0; seq < 200; ++seq) {
    auto r = As(writer).Post(TablePath(p, t) + "/records?wait=index", json::array({Event("u", seq, 1.5)}));
    if (r.status == 429) {
      refused = r;
      refused_at_ms = NowMs();
      break;
    }
    AQ_ASSERT_STATUS(r, 200);
    ++accepted;
  }
  AQ_ASSERT_STATUS(refused, 429);
  EXPECT_GT(accepted, 0);
  EXPECT_EQ(refused.error_code(), "resource_exhausted") << refused.Describe();
  EXPECT_NE(refused.body.find("write quota"), std::string::npos) << refused.Describe();
  const std::string retry_after = refused.header("retry-after");
  ASSERT_FALSE(retry_after.empty()) << refused.Describe();
  const int64_t expected = SecondsToNextMonth(refused_at_ms);
  EXPECT_NEAR(static_cast<double>(std::stoll(retry_after)), static_cast<double>(expected), 5.0)
      << "Retry-After must be the seconds until the next month starts (UTC)";

  // Still refused on retry, for anyone writing to the project; nothing of it was stored.
  AQ_EXPECT_STATUS(Admin().Post(TablePath(p, t) + "/records?wait=index", json::array({Event("admin", 1, 1)})),
                   429);
  std::string error;
  auto log = ReadWholeLog(*std::make_unique<Client>(Admin()), p, t, &error);
  ASSERT_TRUE(error.empty()) << error;
  EXPECT_EQ(log.size(), static_cast<size_t>(accepted)) << json(log).dump().substr(0, 2000);
  for (const json& record : log) EXPECT_EQ(record["user"], "u");
  auto index = Admin().Get(TablePath(p, t) + "/records?limit=1000");
  AQ_ASSERT_STATUS(index, 200);
  EXPECT_EQ(index.j()["data"].size(), static_cast<size_t>(accepted));

  // Reads have no quota here; lifting the write quota lets writes through again.
  AQ_EXPECT_STATUS(As(writer).Get(TablePath(p, t) + "/records"), 200);
  AQ_ASSERT_STATUS(Put(Admin(), p, R"({"write_bytes": null})"), 200);
  AQ_EXPECT_STATUS(As(writer).Post(TablePath(p, t) + "/records?wait=index", json::array({Event("u", 999, 1)})),
                   200);
}

// Runs the `aquifer` CLI with the server's URL and `secret`; answers its output and exit code.
std::pair<std::string, int> RunCli(const Server& server, const std::string& secret, const std::string& args) {
  std::string command = "AQUIFER_URL='" + server.url() + "' AQUIFER_SECRET='" + secret + "' '" +
                        std::string(AQUIFER_BIN) + "' " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {"popen failed", -1};
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  int status = ::pclose(pipe);
  return {output, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

TEST_F(Quotas, TheCliShowsAndSetsQuotas) {
  std::string p = MakeProject();
  auto [set, set_code] = RunCli(*server_, server_->admin_secret(), "project quota " + p + " --write-bytes 1000000");
  EXPECT_EQ(set_code, 0) << set;
  EXPECT_NE(set.find("write_bytes  1000000"), std::string::npos) << set;
  EXPECT_NE(set.find("read_bytes   unlimited"), std::string::npos) << set;
  auto r = Admin().Get(QuotasPath(p));
  AQ_ASSERT_STATUS(r, 200);
  EXPECT_EQ(r.j()["write_bytes"], 1000000);

  auto [cleared, cleared_code] =
      RunCli(*server_, server_->admin_secret(), "project quota " + p + " --write-bytes none --scan-bytes 7 --json");
  EXPECT_EQ(cleared_code, 0) << cleared;
  EXPECT_EQ(json::parse(cleared, nullptr, false),
            (json{{"project", p}, {"read_bytes", nullptr}, {"write_bytes", nullptr}, {"scan_bytes", 7}}))
      << cleared;
  auto [shown, shown_code] = RunCli(*server_, server_->admin_secret(), "project quota " + p);
  EXPECT_EQ(shown_code, 0) << shown;
  EXPECT_NE(shown.find("scan_bytes   7"), std::string::npos) << shown;

  auto [bad, bad_code] = RunCli(*server_, server_->admin_secret(), "project quota " + p + " --read-bytes lots");
  EXPECT_EQ(bad_code, 2) << bad;
  EXPECT_NE(bad.find("--read-bytes"), std::string::npos) << bad;
  EXPECT_EQ(RunCli(*server_, server_->admin_secret(), "project quota " + p + " --read-bytes=-5").second, 2);

  // `aquifer write` over the quota fails at once: a Retry-After of days is not slept.
  std::string t = MakeTable(p);
  AQ_ASSERT_STATUS(Put(Admin(), p, R"({"write_bytes": 0})"), 200);
  TempDir files("aquifer-quota-cli");
  const std::string input = files.path() + "/events.ndjson";
  {
    FILE* out = std::fopen(input.c_str(), "w");
    ASSERT_NE(out, nullptr);
    std::string text = Ndjson({Event("u", 1, 1.0)});
    std::fwrite(text.data(), 1, text.size(), out);
    std::fclose(out);
  }
  auto [refused, refused_code] =
      RunCli(*server_, server_->admin_secret(), "write " + p + "." + t + " '" + input + "' --no-progress");
  EXPECT_EQ(refused_code, 1) << refused;
  EXPECT_NE(refused.find("429"), std::string::npos) << refused;
  EXPECT_NE(refused.find("write quota"), std::string::npos) << refused;
  AQ_ASSERT_STATUS(Put(Admin(), p, R"({"write_bytes": null, "scan_bytes": 7})"), 200);

  std::string manager = MintSecret(p, {{"read", json::array()}, {"manage", true}});
  auto [denied, denied_code] = RunCli(*server_, manager, "project quota " + p + " --write-bytes 1");
  EXPECT_NE(denied_code, 0) << denied;
  EXPECT_EQ(Admin().Get(QuotasPath(p)).j()["scan_bytes"], 7);
}

}  // namespace
}  // namespace aquifer::e2e
