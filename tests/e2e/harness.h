#pragma once

// End-to-end harness: runs the real `aquifer serve` binary as a child process
// and talks to it over HTTP and WebSocket, exactly as a client would.
//
//   Server   starts `aquifer serve --port 0 --data <dir>` (a fresh temp dir by
//            default), parses "listening on http://HOST:PORT" and, on a fresh
//            data dir, "admin secret: <secret>" from its output (with a time
//            limit; failure throws with the server's output), kills (SIGKILL)
//            and restarts it on the same data dir.
//   Client   HTTP/1.1 keep-alive client (Boost.Beast, async ops with a time
//            limit): each call answers status + headers + body + parsed JSON.
//   WsClient WebSocket client on its own I/O thread: messages are queued as
//            they arrive; Receive(timeout) pops one; Cut() drops the TCP
//            connection without a close frame.
//
// Nothing here depends on gtest: failures to start or connect throw
// std::runtime_error (gtest reports the message), so the bench uses it too.
// The server binary comes from the AQUIFER_BIN compile definition.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace aquifer::e2e {

using json = nlohmann::json;
using namespace std::chrono_literals;

// A fresh directory under $TMPDIR (or AQUIFER_BENCH_DIR when set); removed on destruction.
class TempDir {
 public:
  explicit TempDir(std::string_view tag = "aquifer-e2e");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct ServerOptions {
  std::string binary;                     // default: AQUIFER_BIN
  std::string data_dir;                   // default: a fresh temp dir owned by the Server
  std::optional<std::string> admin_secret;  // sets AQUIFER_ADMIN_SECRET
  std::vector<std::string> extra_args;
  std::vector<std::string> extra_env;     // "NAME=value" entries added to the child's environment
  std::chrono::milliseconds start_timeout = 30s;
};

class Server {
 public:
  explicit Server(ServerOptions options = {});
  ~Server();  // SIGKILLs the child if it still runs
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts the child and waits for its URL (and the admin secret on a fresh
  // data dir). Throws with the server's output if it exits or stays silent.
  void Start();
  // SIGKILL and reap.
  void Kill();
  // Waits up to `timeout` for the child to exit by itself, reaps it and
  // answers its wait status; -1 if it still runs (then it is left running).
  int WaitForExit(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL; answers the exit status.
  int Stop(std::chrono::milliseconds grace = 10s);
  void Restart() { Kill(); Start(); }
  bool running() const { return pid_ > 0; }
  // The child's process id while it runs (-1 otherwise), e.g. to read its /proc status.
  pid_t pid() const { return pid_; }

  const std::string& host() const { return host_; }
  int port() const { return port_; }
  std::string url() const { return "http://" + host_ + ":" + std::to_string(port_); }
  // The admin secret: AQUIFER_ADMIN_SECRET, or what the first start printed.
  const std::string& admin_secret() const { return admin_secret_; }
  const std::string& data_dir() const { return data_dir_; }
  // Everything the child printed on stdout and stderr, over every start.
  std::string Output() const;
  // The last `n` bytes of Output().
  std::string OutputTail(size_t n = 4000) const;

 private:
  void ReadOutput(int fd);

  ServerOptions options_;
  std::unique_ptr<TempDir> owned_dir_;
  std::string data_dir_;
  std::string host_;
  int port_ = 0;
  std::string admin_secret_;
  pid_t pid_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;       // all starts
  size_t start_offset_ = 0;  // where the current start's output begins
  bool eof_ = false;
};

struct Response {
  int status = 0;                             // 0: transport failure (see `error`)
  std::map<std::string, std::string> headers; // lower-case names
  std::string body;
  json body_json;                             // discarded value when the body is not JSON
  bool is_json = false;
  std::string error;                          // transport error, if any

  const json& j() const { return body_json; }
  std::string header(const std::string& name) const;
  // "HTTP 400 {...body...}" for assertion messages.
  std::string Describe() const;
  // error.code, or "" when absent.
  std::string error_code() const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

class Client {
 public:
  Client(std::string host, int port, std::string secret = "");
  Client(const Server& server, std::string secret);
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // One request; `secret` empty sends no Authorization header. Transport
  // errors answer status 0 (never throw), so a test can assert on them.
  Response Request(std::string_view method, std::string_view target, std::string_view body = {},
                   const Headers& headers = {}, std::chrono::milliseconds timeout = 60s);
  Response Get(std::string_view target) { return Request("GET", target); }
  Response Delete(std::string_view target) { return Request("DELETE", target); }
  Response Post(std::string_view target, const json& body) {
    return Request("POST", target, body.dump(), {{"Content-Type", "application/json"}});
  }
  Response PostRaw(std::string_view target, std::string_view body,
                   std::string_view content_type = "application/json") {
    return Request("POST", target, body, {{"Content-Type", std::string(content_type)}});
  }

  const std::string& secret() const { return secret_; }
  void set_secret(std::string secret) { secret_ = std::move(secret); }
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  // Drops the keep-alive connection (the next request reconnects).
  void Disconnect();

 private:
  struct Impl;
  std::string host_;
  int port_;
  std::string secret_;
  std::unique_ptr<Impl> impl_;
};

class WsClient {
 public:
  WsClient();
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Upgrades GET `target` (default /v1/subscribe); `secret` empty sends no
  // Authorization header. Answers "" on success, else the error (for a
  // refused upgrade: "HTTP <status> <body>").
  std::string Connect(const std::string& host, int port, const std::string& secret,
                      const std::string& target = "/v1/subscribe",
                      std::chrono::milliseconds timeout = 10s);
  // Sends one text message; false if the connection is gone.
  bool Send(const std::string& text);
  bool Send(const json& message) { return Send(message.dump()); }
  // The next message (parsed as JSON; a non-JSON message becomes
  // {"type":"<non-json>","text":...}; objects get "__received_us", the
  // arrival time in µs since the epoch), or nullopt after `timeout` or when
  // the connection is closed and nothing is queued.
  std::optional<json> Receive(std::chrono::milliseconds timeout);
  // Closes the TCP connection abruptly (no close frame): a cut mid-stream.
  void Cut();
  // Sends a close frame and waits briefly for the server's.
  void Close();
  bool closed() const;
  // Why the connection ended ("" while open).
  std::string close_reason() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// --- Helpers shared by the suites -------------------------------------------------------

// A unique lower-case name with `prefix` ("p_1a2b3c...") valid as a project or table name.
std::string UniqueName(std::string_view prefix);

// Percent-encodes a query parameter value.
std::string UrlEncode(std::string_view text);

// Records as NDJSON text.
std::string Ndjson(const std::vector<json>& records);

// Milliseconds / microseconds since the Unix epoch.
int64_t NowMs();
int64_t NowUs();

}  // namespace aquifer::e2e
