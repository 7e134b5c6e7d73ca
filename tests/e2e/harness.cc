#include <utility>  // first: Boost 1.74 Beast needs std::exchange declared (DEPS.md §6)

#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <future>
#include <random>
#include <regex>
#include <sstream>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

extern char** environ;

namespace aquifer::e2e {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// --- TempDir ------------------------------------------------------------------------------

TempDir::TempDir(std::string_view tag) {
  std::string base;
  if (const char* b = getenv("AQUIFER_BENCH_DIR"); b && *b) base = b;
  else if (const char* t = getenv("TMPDIR"); t && *t) base = t;
  else base = "/tmp";
  std::string templ = base + "/" + std::string(tag) + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!mkdtemp(buf.data())) {
    throw std::runtime_error("mkdtemp " + templ + ": " + std::strerror(errno));
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

// --- Server -------------------------------------------------------------------------------

#ifndef AQUIFER_BIN
#define AQUIFER_BIN ""
#endif

Server::Server(ServerOptions options) : options_(std::move(options)) {
  if (options_.binary.empty()) options_.binary = AQUIFER_BIN;
  if (options_.data_dir.empty()) {
    owned_dir_ = std::make_unique<TempDir>("aquifer-e2e");
    data_dir_ = owned_dir_->path() + "/data";
  } else {
    data_dir_ = options_.data_dir;
  }
  if (options_.admin_secret) admin_secret_ = *options_.admin_secret;
}

Server::~Server() {
  if (pid_ > 0) Kill();
  if (reader_.joinable()) reader_.join();
}

void Server::ReadOutput(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::lock_guard lock(mu_);
    output_.append(buf, static_cast<size_t>(n));
    cv_.notify_all();
  }
  ::close(fd);
  std::lock_guard lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

std::string Server::Output() const {
  std::lock_guard lock(mu_);
  return output_;
}

std::string Server::OutputTail(size_t n) const {
  std::lock_guard lock(mu_);
  return output_.size() <= n ? output_ : "..." + output_.substr(output_.size() - n);
}

void Server::Start() {
  if (pid_ > 0) throw std::runtime_error("Server::Start: already running");
  if (reader_.joinable()) reader_.join();
  if (options_.binary.empty() || !std::filesystem::exists(options_.binary)) {
    throw std::runtime_error("the aquifer binary '" + options_.binary +
                             "' does not exist (AQUIFER_BIN); build the `aquifer` target");
  }
  // Everything the child needs is built before fork (only async-signal-safe calls after).
  std::vector<std::string> args = {options_.binary, "serve", "--port", "0", "--data", data_dir_};
  for (const auto& a : options_.extra_args) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "AQUIFER_ADMIN_SECRET=", 21) != 0) env.emplace_back(*e);
  }
  if (options_.admin_secret) env.push_back("AQUIFER_ADMIN_SECRET=" + *options_.admin_secret);
  for (const auto& entry : options_.extra_env) env.push_back(entry);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + strerror(errno));
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    execve(argv[0], argv.data(), envp.data());
    const char msg[] = "execve failed\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  ::close(fds[1]);
  pid_ = pid;
  size_t start_offset;
  {
    std::lock_guard lock(mu_);
    eof_ = false;
    output_ += "\n----- start (pid " + std::to_string(pid) + ") -----\n";
    start_offset = start_offset_ = output_.size();
  }
  reader_ = std::thread([this, fd = fds[0]] { ReadOutput(fd); });

  const bool need_secret = admin_secret_.empty();
  static const std::regex listen_re(R"(listening on http://(\[[^\]]+\]|[^:/\s]+):(\d+))");
  static const std::regex secret_re(R"(admin secret: (\S+))");
  std::string host;
  int port = 0;
  std::string secret;
  std::string why;
  {
    std::unique_lock lock(mu_);
    auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
    for (;;) {
      std::string mine = output_.substr(start_offset);
      std::smatch m;
      if (port == 0 && std::regex_search(mine, m, listen_re)) {
        host = m[1];
        port = std::stoi(m[2]);
      }
      if (secret.empty() && std::regex_search(mine, m, secret_re)) secret = m[1];
      if (port != 0 && (!need_secret || !secret.empty())) break;
      if (eof_) {
        why = "the server exited before it was ready";
        break;
      }
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        why = port == 0 ? "no 'listening on http://HOST:PORT' line within the time limit"
                        : "no 'admin secret: <secret>' line on a fresh data dir within the time limit";
        break;
      }
    }
  }
  if (!why.empty()) {
    Kill();
    throw std::runtime_error("aquifer serve failed to start (" + options_.binary + " serve --port 0 --data " +
                             data_dir_ + "): " + why + "\n--- server output ---\n" + OutputTail(8000));
  }
  if (host == "0.0.0.0" || host == "*" || host.empty()) host = "127.0.0.1";
  if (host == "[::]") host = "::1";
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  host_ = host;
  port_ = port;
  if (need_secret) admin_secret_ = secret;
}

void Server::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
}

int Server::WaitForExit(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(20ms);
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return status;
}

int Server::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return status;
}

// --- Response -----------------------------------------------------------------------------

std::string Response::header(const std::string& name) const {
  std::string lower;
  for (char c : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  auto it = headers.find(lower);
  return it == headers.end() ? "" : it->second;
}

std::string Response::Describe() const {
  if (status == 0) return "transport error: " + error;
  std::string b = body.size() > 2000 ? body.substr(0, 2000) + "...(" + std::to_string(body.size()) + " bytes)" : body;
  return "HTTP " + std::to_string(status) + " " + b;
}

std::string Response::error_code() const {
  if (!is_json || !body_json.is_object()) return "";
  auto it = body_json.find("error");
  if (it == body_json.end() || !it->is_object()) return "";
  auto c = it->find("code");
  return c != it->end() && c->is_string() ? c->get<std::string>() : "";
}

// --- Client -------------------------------------------------------------------------------

struct Client::Impl {
  asio::io_context ioc{1};
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  // Runs the io_context until every started operation completed.
  void Run() {
    ioc.restart();
    ioc.run();
  }

  beast::error_code Connect(const std::string& host, int port, std::chrono::milliseconds timeout) {
    beast::error_code ec;
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return ec;
    stream.emplace(ioc);
    buffer.clear();
    stream->expires_after(timeout);
    stream->async_connect(results, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    Run();
    if (ec) {
      stream.reset();
      return ec;
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
    return {};
  }
};

Client::Client(std::string host, int port, std::string secret)
    : host_(std::move(host)), port_(port), secret_(std::move(secret)), impl_(std::make_unique<Impl>()) {}
Client::Client(const Server& server, std::string secret) : Client(server.host(), server.port(), std::move(secret)) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

void Client::Disconnect() { impl_->stream.reset(); }

Response Client::Request(std::string_view method, std::string_view target, std::string_view body,
                         const Headers& headers, std::chrono::milliseconds timeout) {
  http::request<http::string_body> req;
  req.method_string(beast::string_view(method.data(), method.size()));
  req.target(beast::string_view(target.data(), target.size()));
  req.version(11);
  req.set(http::field::host, host_ + ":" + std::to_string(port_));
  req.set(http::field::user_agent, "aquifer-e2e");
  if (!secret_.empty()) req.set(http::field::authorization, "Bearer " + secret_);
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = std::string(body);
  if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();
  req.keep_alive(true);

  Response out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    bool reused = impl_->stream.has_value();
    if (!reused) {
      if (auto ec = impl_->Connect(host_, port_, timeout)) {
        out.status = 0;
        out.error = "connect " + host_ + ":" + std::to_string(port_) + ": " + ec.message();
        return out;
      }
    }
    auto& stream = *impl_->stream;
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    parser.header_limit(1 << 20);
    beast::error_code wec, rec;
    bool wrote = false, read = false;
    size_t read_bytes_before = impl_->buffer.size();
    stream.expires_after(timeout);
    // Write and read at once: a server may answer (413) before reading the whole body.
    http::async_write(stream, req, [&](beast::error_code e, size_t) {
      wec = e;
      wrote = true;
    });
    http::async_read(stream, impl_->buffer, parser, [&](beast::error_code e, size_t) {
      rec = e;
      read = true;
      if (!wrote) {
        beast::error_code ignored;
        impl_->stream->socket().cancel(ignored);  // the answer came first: stop sending
      }
    });
    impl_->Run();
    (void)read_bytes_before;
    if (rec) {
      impl_->stream.reset();
      // A reused keep-alive connection the server had closed: retry once on a new one.
      bool stale = reused && !parser.got_some() &&
                   (rec == http::error::end_of_stream || rec == asio::error::connection_reset ||
                    rec == asio::error::eof || rec == asio::error::broken_pipe ||
                    wec == asio::error::broken_pipe || wec == asio::error::connection_reset);
      if (stale && attempt == 0) continue;
      out.status = 0;
      out.error = "read: " + rec.message() + (wec ? " (write: " + wec.message() + ")" : "");
      return out;
    }
    auto& res = parser.get();
    out.status = res.result_int();
    for (const auto& field : res) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.headers[name] = std::string(field.value());
    }
    out.body = std::move(res.body());
    if (wec || !wrote || !res.keep_alive()) impl_->stream.reset();
    break;
  }
  if (!out.body.empty()) {
    out.body_json = json::parse(out.body, nullptr, /*allow_exceptions=*/false);
    out.is_json = !out.body_json.is_discarded();
  }
  return out;
}

// --- WsClient -----------------------------------------------------------------------------

struct WsClient::Impl {
  asio::io_context ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::optional<websocket::stream<beast::tcp_stream>> ws;
  beast::flat_buffer buffer;
  std::thread thread;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::deque<json> queue;
  bool connected = false;
  bool closed = false;
  std::string reason;

  void MarkClosed(std::string why) {
    std::lock_guard lock(mu);
    if (!closed) {
      closed = true;
      reason = std::move(why);
    }
    cv.notify_all();
  }

  void DoRead() {
    ws->async_read(buffer, [this](beast::error_code ec, size_t) {
      if (ec) {
        std::string why = ec.message();
        if (ec == websocket::error::closed) {
          why = "closed by the server: code " + std::to_string(ws->reason().code) + " " +
                std::string(ws->reason().reason.c_str());
        }
        MarkClosed(why);
        return;
      }
      std::string text = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      json message = json::parse(text, nullptr, false);
      if (message.is_discarded()) message = json{{"type", "<non-json>"}, {"text", text}};
      if (message.is_object()) message["__received_us"] = NowUs();
      {
        std::lock_guard lock(mu);
        queue.push_back(std::move(message));
      }
      cv.notify_all();
      DoRead();
    });
  }
};

WsClient::WsClient() : impl_(std::make_unique<Impl>()) {}

WsClient::~WsClient() {
  if (impl_->thread.joinable()) {
    if (!closed()) Cut();
    impl_->guard.reset();
    impl_->ioc.stop();
    impl_->thread.join();
  }
}

std::string WsClient::Connect(const std::string& host, int port, const std::string& secret,
                              const std::string& target, std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  if (d.thread.joinable()) return "already connected";
  beast::error_code ec;
  tcp::resolver resolver(d.ioc);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return "resolve: " + ec.message();
  d.ws.emplace(d.ioc);
  auto& lowest = beast::get_lowest_layer(*d.ws);
  lowest.expires_after(timeout);
  lowest.async_connect(results, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
  d.ioc.restart();
  d.ioc.run();
  if (ec) return "connect: " + ec.message();
  lowest.socket().set_option(tcp::no_delay(true), ec);
  d.ws->set_option(websocket::stream_base::decorator([secret](websocket::request_type& req) {
    req.set(http::field::user_agent, "aquifer-e2e");
    if (!secret.empty()) req.set(http::field::authorization, "Bearer " + secret);
  }));
  websocket::response_type res;
  lowest.expires_after(timeout);
  d.ws->async_handshake(res, host + ":" + std::to_string(port), target, [&](beast::error_code e) { ec = e; });
  d.ioc.restart();
  d.ioc.run();
  if (ec) {
    std::string why = "handshake: " + ec.message();
    if (res.result_int() != 0) why = "HTTP " + std::to_string(res.result_int()) + " " + res.body();
    d.ws.reset();
    return why;
  }
  lowest.expires_never();
  d.ws->set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
  d.ws->read_message_max(256 << 20);
  d.connected = true;
  d.ioc.restart();
  d.guard.emplace(d.ioc.get_executor());
  asio::post(d.ioc, [&d] { d.DoRead(); });
  d.thread = std::thread([&d] { d.ioc.run(); });
  return "";
}

bool WsClient::Send(const std::string& text) {
  auto& d = *impl_;
  if (!d.thread.joinable() || closed()) return false;
  std::promise<beast::error_code> done;
  auto f = done.get_future();
  asio::post(d.ioc, [&] {
    if (closed()) {
      done.set_value(asio::error::not_connected);
      return;
    }
    d.ws->text(true);
    d.ws->async_write(asio::buffer(text), [&](beast::error_code ec, size_t) { done.set_value(ec); });
  });
  return !f.get();
}

std::optional<json> WsClient::Receive(std::chrono::milliseconds timeout) {
  auto& d = *impl_;
  std::unique_lock lock(d.mu);
  d.cv.wait_for(lock, timeout, [&] { return !d.queue.empty() || d.closed; });
  if (d.queue.empty()) return std::nullopt;
  json m = std::move(d.queue.front());
  d.queue.pop_front();
  return m;
}

void WsClient::Cut() {
  auto& d = *impl_;
  if (!d.thread.joinable()) return;
  std::promise<void> done;
  auto f = done.get_future();
  asio::post(d.ioc, [&] {
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(*d.ws).socket();
    sock.set_option(asio::socket_base::linger(true, 0), ec);  // RST, nothing flushed
    sock.close(ec);
    done.set_value();
  });
  f.wait();
  std::unique_lock lock(d.mu);
  d.cv.wait_for(lock, 5s, [&] { return d.closed; });
  if (!d.closed) {
    d.closed = true;
    d.reason = "cut by the client";
  }
}

void WsClient::Close() {
  auto& d = *impl_;
  if (!d.thread.joinable() || closed()) return;
  asio::post(d.ioc, [&d] {
    d.ws->async_close(websocket::close_code::normal, [](beast::error_code) {});
  });
  std::unique_lock lock(d.mu);
  if (!d.cv.wait_for(lock, 3s, [&] { return d.closed; })) {
    lock.unlock();
    Cut();
  }
}

bool WsClient::closed() const {
  std::lock_guard lock(impl_->mu);
  return impl_->closed;
}

std::string WsClient::close_reason() const {
  std::lock_guard lock(impl_->mu);
  return impl_->reason;
}

// --- Helpers ------------------------------------------------------------------------------

std::string UniqueName(std::string_view prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}() ^ (static_cast<uint64_t>(getpid()) << 20);
  std::ostringstream out;
  out << prefix << "_" << std::hex << ((salt + counter.fetch_add(1)) & 0xffffffffffULL);
  return out.str();
}

std::string UrlEncode(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string Ndjson(const std::vector<json>& records) {
  std::string out;
  for (const auto& r : records) {
    out += r.dump();
    out += '\n';
  }
  return out;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace aquifer::e2e
