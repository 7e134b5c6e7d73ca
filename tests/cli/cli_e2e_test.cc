// End-to-end test of the `aquifer` client commands: starts the real
// `aquifer serve --port 0 --data <tmp>` as a child, reads its URL and admin
// secret from its stdout, then runs the CLI binary as a user would (separate
// processes, AQUIFER_URL / AQUIFER_SECRET in the environment) and checks exit
// codes and output. A server that does not start is a failure with its output,
// never a skip.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#ifndef AQUIFER_BINARY
#error "AQUIFER_BINARY (the path of the aquifer executable) must be defined by the build"
#endif

namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "aquifer-cli-e2e-XXXXXX").string();
    char* made = mkdtemp(pattern.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Runs argv with stdout/stderr sent to files and the environment changed by
// `env` (an empty value unsets the variable). Returns the child's pid.
pid_t Spawn(const std::vector<std::string>& args, const std::vector<std::pair<std::string, std::string>>& env,
            int stdout_fd, int stderr_fd, const std::string& stdin_path = "/dev/null") {
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int in = open(stdin_path.c_str(), O_RDONLY);
    if (in >= 0) dup2(in, 0);
    dup2(stdout_fd, 1);
    dup2(stderr_fd, 2);
    for (const auto& [name, value] : env) {
      if (value.empty()) {
        unsetenv(name.c_str());
      } else {
        setenv(name.c_str(), value.c_str(), 1);
      }
    }
    std::vector<char*> argv;
    for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    std::fprintf(stderr, "exec %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  return pid;
}

// `aquifer serve` as a child process for the life of the object.
class Server {
 public:
  explicit Server(const fs::path& data_dir) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
    stderr_path_ = data_dir.string() + ".stderr";
    int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_ = Spawn({AQUIFER_BINARY, "serve", "--port", "0", "--data", data_dir.string()},
                 {{"AQUIFER_ADMIN_SECRET", ""}, {"AQUIFER_CONFIG", ""}, {"AQUIFER_PORT", ""},
                  {"AQUIFER_HOST", ""}, {"AQUIFER_DATA", ""}, {"AQUIFER_ROLE", ""}},
                 pipe_fds[1], err);
    close(pipe_fds[1]);
    close(err);
    out_fd_ = pipe_fds[0];
    // Read stdout until the listening line (and the admin secret, printed on a
    // fresh data dir) or the time limit.
    auto deadline = std::chrono::steady_clock::now() + 60s;
    std::string pending;
    while (url_.empty() || secret_.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) Fail("timed out after 60 s waiting for \"listening on\" and \"admin secret:\"");
      pollfd poll_fd{out_fd_, POLLIN, 0};
      if (poll(&poll_fd, 1, static_cast<int>(left.count())) <= 0) continue;
      char buffer[4096];
      ssize_t n = read(out_fd_, buffer, sizeof(buffer));
      if (n <= 0) Fail("the server exited before it was listening");
      pending.append(buffer, static_cast<size_t>(n));
      output_.append(buffer, static_cast<size_t>(n));
      size_t newline;
      while ((newline = pending.find('\n')) != std::string::npos) {
        std::string line = pending.substr(0, newline);
        pending.erase(0, newline + 1);
        if (size_t at = line.find("listening on "); at != std::string::npos) {
          url_ = line.substr(at + std::strlen("listening on "));
          while (!url_.empty() && (url_.back() == ' ' || url_.back() == '\r')) url_.pop_back();
        }
        if (size_t at = line.find("admin secret: "); at != std::string::npos) {
          secret_ = line.substr(at + std::strlen("admin secret: "));
          secret_ = secret_.substr(0, secret_.find(' '));
        }
      }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    drain_ = std::thread([fd = out_fd_] {
      char buffer[4096];
      while (read(fd, buffer, sizeof(buffer)) > 0) {
      }
    });
  }

  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      for (int waited_ms = 0; waited_ms < 10'000; waited_ms += 50) {
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = 0;
          break;
        }
        std::this_thread::sleep_for(50ms);
      }
      if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
    if (drain_.joinable()) drain_.join();
    if (out_fd_ >= 0) close(out_fd_);
  }

  const std::string& url() const { return url_; }
  const std::string& secret() const { return secret_; }

 private:
  [[noreturn]] void Fail(const std::string& why) {
    std::string message = "aquifer serve (" AQUIFER_BINARY "): " + why + "\n--- stdout ---\n" + output_ +
                          "\n--- stderr ---\n" + ReadFile(stderr_path_);
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
    throw std::runtime_error(message);
  }

  pid_t pid_ = 0;
  int out_fd_ = -1;
  std::string stderr_path_;
  std::string output_;
  std::string url_;
  std::string secret_;
  std::thread drain_;
};

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const CliResult& result) {
  return os << "exit " << result.exit_code << "\n--- stdout ---\n" << result.out << "--- stderr ---\n" << result.err;
}

class CliE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      server_.emplace(dir_.path() / "data");
    } catch (const std::exception& error) {
      FAIL() << error.what();
    }
  }

  // Runs `aquifer args...` against the server with the admin secret unless
  // `secret` is given; waits for it to exit.
  CliResult Cli(std::vector<std::string> args, std::optional<std::string> secret = std::nullopt,
                const std::string& stdin_path = "/dev/null") {
    fs::path out_path = dir_.path() / "cli.out";
    fs::path err_path = dir_.path() / "cli.err";
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    args.insert(args.begin(), AQUIFER_BINARY);
    pid_t pid = Spawn(args, {{"AQUIFER_URL", server_->url()}, {"AQUIFER_SECRET", secret.value_or(server_->secret())}},
                      out, err, stdin_path);
    close(out);
    close(err);
    int status = 0;
    waitpid(pid, &status, 0);
    CliResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.out = ReadFile(out_path);
    result.err = ReadFile(err_path);
    return result;
  }

  fs::path File(const std::string& name, const std::string& text) {
    fs::path path = dir_.path() / name;
    WriteFile(path, text);
    return path;
  }

  void CreateOrdersTable() {
    CliResult project = Cli({"project", "create", "shop"});
    ASSERT_EQ(project.exit_code, 0) << project;
    EXPECT_EQ(project.out, "created project shop\n");
    fs::path schema = File("orders.avsc", R"({
      "type": "record", "name": "Order",
      "fields": [
        {"name": "id", "type": "long"},
        {"name": "user", "type": "string"},
        {"name": "qty", "type": "int"},
        {"name": "price", "type": ["null", "double"]},
        {"name": "paid", "type": "boolean"},
        {"name": "note", "type": ["null", "string"], "default": null}
      ]})");
    CliResult table = Cli({"table", "create", "shop.orders", "--schema", schema.string(), "--key", "id"});
    ASSERT_EQ(table.exit_code, 0) << table;
    EXPECT_EQ(table.out, "created table shop.orders\n");
  }

  TempDir dir_;
  std::optional<Server> server_;
};

const char* kOrdersNdjson =
    R"({"id": 1, "user": "ada", "qty": 2, "price": 9.5, "paid": true}
{"id": 2, "user": "grace", "qty": 1, "price": null, "paid": false, "note": "gift"}

{"id": 3, "user": "ada", "qty": 5, "price": 1.25, "paid": true}
)";

// Quotes, an escaped quote, an embedded newline, an empty (null) price.
const char* kOrdersCsv =
    "id,user,qty,price,paid,note\r\n"
    "4,linus,3,2.5,true,\"plain, with comma\"\r\n"
    "5,ada,1,,false,\"two\nlines and \"\"quotes\"\"\"\r\n"
    "6,barbara,7,100,yes,\r\n";

TEST_F(CliE2eTest, WritesReadsReplaysAndQueriesATable) {
  ASSERT_NO_FATAL_FAILURE(CreateOrdersTable());

  CliResult describe = Cli({"table", "describe", "shop.orders", "--json"});
  ASSERT_EQ(describe.exit_code, 0) << describe;
  EXPECT_NE(describe.out.find("orders"), std::string::npos) << describe;

  fs::path ndjson = File("orders.ndjson", kOrdersNdjson);
  CliResult write_ndjson = Cli({"write", "shop.orders", ndjson.string(), "--wait", "index,warehouse"});
  ASSERT_EQ(write_ndjson.exit_code, 0) << write_ndjson;
  EXPECT_EQ(write_ndjson.out, "wrote 3 records to shop.orders\n");

  fs::path csv = File("orders.csv", kOrdersCsv);
  CliResult write_csv = Cli({"write", "shop.orders", csv.string(), "--wait", "index,warehouse", "--batch", "2"});
  ASSERT_EQ(write_csv.exit_code, 0) << write_csv;
  EXPECT_EQ(write_csv.out, "wrote 3 records to shop.orders\n");

  // A filtered read: ada's orders, as NDJSON with timestamps.
  CliResult read = Cli({"read", "shop.orders", "--filter", R"({"user": "ada"})", "--all"});
  ASSERT_EQ(read.exit_code, 0) << read;
  std::vector<std::string> lines = Lines(read.out);
  std::vector<int64_t> ids;
  for (const std::string& line : lines) {
    json record = json::parse(line);
    EXPECT_EQ(record["user"], "ada");
    EXPECT_TRUE(record.contains("@timestamp")) << line;
    ids.push_back(record["id"].get<int64_t>());
    if (record["id"] == 5) {
      EXPECT_EQ(record["note"], "two\nlines and \"quotes\"");
      EXPECT_TRUE(record["price"].is_null());
      EXPECT_EQ(record["paid"], false);
    }
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 3, 5})) << read;

  // Paging with --all at 2 records a page sees all six keys once.
  CliResult all = Cli({"read", "shop.orders", "--all", "--limit", "2"});
  ASSERT_EQ(all.exit_code, 0) << all;
  EXPECT_EQ(Lines(all.out).size(), 6u) << all;
  for (const std::string& line : Lines(all.out)) {
    json record = json::parse(line);
    if (record["id"] == 4) {
      EXPECT_EQ(record["note"], "plain, with comma");
      EXPECT_EQ(record["price"], 2.5);
    }
    if (record["id"] == 6) {
      EXPECT_TRUE(record["note"].is_null());
      EXPECT_EQ(record["paid"], true);
      EXPECT_EQ(record["qty"], 7);
    }
  }

  CliResult table = Cli({"read", "shop.orders", "--table", "--filter", R"({"id": 2})"});
  ASSERT_EQ(table.exit_code, 0) << table;
  EXPECT_NE(table.out.find("grace"), std::string::npos) << table;
  EXPECT_NE(table.out.find("@timestamp"), std::string::npos) << table;
  EXPECT_NE(table.out.find("(1 records)"), std::string::npos) << table;

  // The log replays in write order.
  CliResult log = Cli({"log", "shop.orders", "--all"});
  ASSERT_EQ(log.exit_code, 0) << log;
  std::vector<int64_t> log_ids;
  for (const std::string& line : Lines(log.out)) log_ids.push_back(json::parse(line)["id"].get<int64_t>());
  EXPECT_EQ(log_ids, (std::vector<int64_t>{1, 2, 3, 4, 5, 6})) << log;

  // Rerunning the same file sends the same Idempotency-Keys: nothing is logged twice.
  CliResult rerun = Cli({"write", "shop.orders", ndjson.string(), "--wait", "index"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun;
  CliResult log_again = Cli({"log", "shop.orders", "--all"});
  ASSERT_EQ(log_again.exit_code, 0) << log_again;
  EXPECT_EQ(Lines(log_again.out).size(), 6u) << log_again;

  // SQL: an aligned text table, JSON, and a dry run.
  CliResult sql = Cli({"sql", "SELECT user, count(*) AS n FROM shop.orders GROUP BY user ORDER BY user"});
  ASSERT_EQ(sql.exit_code, 0) << sql;
  std::vector<std::string> sql_lines = Lines(sql.out);
  ASSERT_GE(sql_lines.size(), 6u) << sql;
  EXPECT_EQ(sql_lines[0].substr(0, 4), "user") << sql;
  EXPECT_EQ(sql_lines[1].substr(0, 7), "-------") << sql;
  EXPECT_EQ(sql_lines[2], "ada      3") << sql;
  EXPECT_EQ(sql_lines[3], "barbara  1") << sql;
  EXPECT_NE(sql.out.find("(4 rows"), std::string::npos) << sql;

  CliResult sql_json = Cli({"sql", "SELECT count(*) AS n FROM shop.orders", "--json"});
  ASSERT_EQ(sql_json.exit_code, 0) << sql_json;
  json answer = json::parse(sql_json.out);
  ASSERT_EQ(answer["data"].size(), 1u) << sql_json;
  EXPECT_EQ(answer["data"][0][0], 6) << sql_json;

  CliResult dry = Cli({"sql", "SELECT * FROM shop.orders", "--dry-run"});
  ASSERT_EQ(dry.exit_code, 0) << dry;
  EXPECT_NE(dry.out.find("tables: shop.orders"), std::string::npos) << dry;
  EXPECT_NE(dry.out.find("bytes scanned (estimate): "), std::string::npos) << dry;

  CliResult usage = Cli({"usage"});
  EXPECT_EQ(usage.exit_code, 0) << usage;

  // Nothing failed, so there are no dead letters, and replaying none is fine.
  CliResult dead = Cli({"dead-letters", "list", "--json"});
  ASSERT_EQ(dead.exit_code, 0) << dead;
  EXPECT_EQ(json::parse(dead.out)["dead_letters"], json::array()) << dead;
  CliResult replay = Cli({"dead-letters", "replay", "--write-id", "x"});
  ASSERT_EQ(replay.exit_code, 0) << replay;
  EXPECT_EQ(replay.out, "replayed 0 dead letter(s)\n") << replay;
}

TEST_F(CliE2eTest, ScopedSecretReadsButCannotWrite) {
  ASSERT_NO_FATAL_FAILURE(CreateOrdersTable());
  fs::path ndjson = File("orders.ndjson", kOrdersNdjson);
  ASSERT_EQ(Cli({"write", "shop.orders", ndjson.string(), "--wait", "index"}).exit_code, 0);

  CliResult minted = Cli({"secret", "create", "shop", "--read", "orders"});
  ASSERT_EQ(minted.exit_code, 0) << minted;
  std::vector<std::string> minted_lines = Lines(minted.out);
  ASSERT_EQ(minted_lines.size(), 1u) << minted;
  std::string reader = minted_lines[0];

  CliResult read = Cli({"read", "shop.orders", "--filter", R"({"id": 1})"}, reader);
  ASSERT_EQ(read.exit_code, 0) << read;
  ASSERT_EQ(Lines(read.out).size(), 1u) << read;
  EXPECT_EQ(json::parse(Lines(read.out)[0])["user"], "ada");

  CliResult write = Cli({"write", "shop.orders", ndjson.string()}, reader);
  EXPECT_EQ(write.exit_code, 1) << write;
  EXPECT_TRUE(write.err.find("aquifer: 403") != std::string::npos ||
              write.err.find("aquifer: 404") != std::string::npos)
      << write;

  CliResult not_admin = Cli({"dead-letters", "list"}, reader);
  EXPECT_EQ(not_admin.exit_code, 1) << not_admin;
  EXPECT_NE(not_admin.err.find("aquifer: 403"), std::string::npos) << not_admin;

  CliResult no_secret = Cli({"read", "shop.orders"}, "not-a-secret");
  EXPECT_EQ(no_secret.exit_code, 1) << no_secret;
  EXPECT_NE(no_secret.err.find("aquifer: 401"), std::string::npos) << no_secret;
}

TEST_F(CliE2eTest, ErrorsHaveExitCodesAndServerMessages) {
  ASSERT_NO_FATAL_FAILURE(CreateOrdersTable());

  CliResult unknown = Cli({"read", "shop.nope"});
  EXPECT_EQ(unknown.exit_code, 1) << unknown;
  EXPECT_EQ(unknown.err.rfind("aquifer: 404 not_found: ", 0), 0u) << unknown;
  EXPECT_NE(unknown.err.find("nope"), std::string::npos) << unknown;

  // Bad records: every problem is named with its line in the file; nothing is written.
  fs::path bad = File("bad.ndjson",
                      "{\"id\": 10, \"user\": \"ok\", \"qty\": 1, \"price\": 1.0, \"paid\": true}\n"
                      "\n"
                      "{\"id\": 11, \"user\": \"x\", \"qty\": \"many\", \"price\": 1.0, \"paid\": true}\n");
  CliResult rejected = Cli({"write", "shop.orders", bad.string()});
  EXPECT_EQ(rejected.exit_code, 1) << rejected;
  EXPECT_NE(rejected.err.find("400 invalid_records"), std::string::npos) << rejected;
  EXPECT_NE(rejected.err.find(bad.string() + ":3: qty"), std::string::npos) << rejected;
  CliResult log = Cli({"log", "shop.orders"});
  ASSERT_EQ(log.exit_code, 0) << log;
  EXPECT_EQ(log.out, "") << log;

  CliResult bad_csv = Cli({"write", "shop.orders", File("short.csv", "id,user\n1\n").string()});
  EXPECT_EQ(bad_csv.exit_code, 2) << bad_csv;
  EXPECT_NE(bad_csv.err.find("line 2: 1 fields, but the header has 2"), std::string::npos) << bad_csv;

  CliResult usage = Cli({"read", "shop_orders"});
  EXPECT_EQ(usage.exit_code, 2) << usage;
  CliResult missing_arg = Cli({"table", "create", "shop.t"});
  EXPECT_EQ(missing_arg.exit_code, 2) << missing_arg;

  CliResult unreachable = Cli({"read", "shop.orders", "--url", "http://127.0.0.1:1"});
  EXPECT_EQ(unreachable.exit_code, 3) << unreachable;
  EXPECT_NE(unreachable.err.find("cannot reach http://127.0.0.1:1"), std::string::npos) << unreachable;

  CliResult deleted = Cli({"table", "delete", "shop.orders"});
  EXPECT_EQ(deleted.exit_code, 0) << deleted;
  CliResult gone = Cli({"table", "describe", "shop.orders"});
  EXPECT_EQ(gone.exit_code, 1) << gone;
  EXPECT_NE(gone.err.find("aquifer: 404"), std::string::npos) << gone;
}

TEST_F(CliE2eTest, SubscribePrintsNewRecordsAndExitsZeroOnCtrlC) {
  ASSERT_NO_FATAL_FAILURE(CreateOrdersTable());
  fs::path out_path = dir_.path() / "subscribe.out";
  fs::path err_path = dir_.path() / "subscribe.err";
  int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = Spawn({AQUIFER_BINARY, "subscribe", "shop.orders", "--filter", R"({"user": "ada"})"},
                    {{"AQUIFER_URL", server_->url()}, {"AQUIFER_SECRET", server_->secret()}}, out, err);
  close(out);
  close(err);
  // The subscription starts from the change cursor of a read made at startup;
  // give it a moment so the writes below come after it.
  std::this_thread::sleep_for(1500ms);
  fs::path ndjson = File("orders.ndjson", kOrdersNdjson);
  CliResult write = Cli({"write", "shop.orders", ndjson.string(), "--wait", "index"});
  ASSERT_EQ(write.exit_code, 0) << write;

  std::vector<std::string> lines;
  for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;) {
    lines = Lines(ReadFile(out_path));
    if (lines.size() >= 2) break;
    std::this_thread::sleep_for(50ms);
  }
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_EQ(lines.size(), 2u) << ReadFile(out_path) << "\n--- stderr ---\n" << ReadFile(err_path);
  EXPECT_EQ(json::parse(lines[0])["id"], 1);
  EXPECT_EQ(json::parse(lines[1])["id"], 3);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFile(err_path);
}

}  // namespace
