// Beast TUs are heavy; keep Beast here, in wire.cc (HTTP only) and in server_test.cc.
// Boost 1.74 + g++ 12 + C++20: <utility> must come before asio's awaitable.hpp.
#include <utility>

#include "aquifer/gateway/server.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/base/thread.h"
#include "aquifer/gateway/errors.h"
#include "aquifer/gateway/wire.h"

namespace aquifer::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The WebSocket sessions' executor, socket, timer and coroutines, by their
// concrete types: every completion of a session (a write, a wake-up) is
// dispatched straight to its io_context, not through asio::any_io_executor's
// type erasure (a copy, a virtual call and an atomic per step). Each of the
// ws_threads runs an io_context of its own, so a session (on one of them) is
// serialized without a strand: no strand queue, lock and invoker per step.
using WsExecutor = asio::io_context::executor_type;
using WsSocket = asio::basic_stream_socket<tcp, WsExecutor>;
using WsTimer = asio::basic_waitable_timer<std::chrono::steady_clock,
                                           asio::wait_traits<std::chrono::steady_clock>, WsExecutor>;
template <typename T>
using WsAwaitable = awaitable<T, WsExecutor>;
constexpr asio::use_awaitable_t<WsExecutor> ws_awaitable;

// Runs `fn` (a blocking engine call) on `pool` and resumes the calling
// coroutine on its own executor with the result.
template <typename T, typename Executor = asio::any_io_executor, typename F>
awaitable<T, Executor> RunBlocking(asio::thread_pool& pool, F fn) {
  auto initiate = [&pool, fn = std::move(fn)](auto handler) mutable {
    asio::post(pool, [fn = std::move(fn), handler = std::move(handler)]() mutable {
      T result = fn();
      auto executor = asio::get_associated_executor(handler);
      asio::post(executor, [handler = std::move(handler), result = std::move(result)]() mutable {
        handler(std::move(result));
      });
    });
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<Executor>, void(T)>(
      std::move(initiate), asio::use_awaitable_t<Executor>{});
}

std::string HeaderString(const http::fields& fields, http::field name) {
  auto it = fields.find(name);
  return it == fields.end() ? std::string() : std::string(it->value());
}

std::string_view PathOf(std::string_view target) { return target.substr(0, target.find('?')); }

// Index reads of at most this many records are answered on the network
// thread when reads are local (Engine::LocalReads): a point lookup is a few
// microseconds of work, less than the two thread hand-offs of the pool.
constexpr int64_t kInlineReadLimit = 10;

bool ShortIndexRead(std::string_view target) {
  Result<Target> parsed = ParseTarget(target);
  if (!parsed.ok()) return true;  // answered with the error at once
  Result<int64_t> limit = QueryParams(std::move(parsed->query)).GetInt("limit", kMinLimit, kMaxLimit, kDefaultLimit);
  return !limit.ok() || *limit <= kInlineReadLimit;
}

}  // namespace

class WsSession;

struct Server::Impl {
  Impl(engine::Engine* engine_in, ServerOptions options_in)
      : engine(engine_in),
        options(std::move(options_in)),
        api(engine_in, &metrics, options.api),
        io_threads(options.io_threads > 0
                       ? options.io_threads
                       : std::max(1, static_cast<int>(std::thread::hardware_concurrency()))),
        ws_threads(options.ws_threads > 0 ? options.ws_threads : io_threads),
        ioc(io_threads),
        ws_lanes(MakeWsLanes(ws_threads)),
        pool(static_cast<size_t>(std::max(1, options.handler_threads))),
        feed_pool(static_cast<size_t>(std::max(1, options.feed_threads))),
        acceptor(ioc),
        local_reads(engine_in != nullptr && engine_in->LocalReads()) {}

  awaitable<void> Listen();
  awaitable<void> HttpSession(beast::tcp_stream stream);
  template <typename Executor = asio::any_io_executor, typename Stream>
  awaitable<bool, Executor> WriteResponse(Stream& stream, const HttpResponse& response,
                                          unsigned version, bool keep_alive);

  void Register(WsSession* session, std::weak_ptr<WsSession> handle) {
    std::lock_guard lock(sessions_mu);
    sessions.emplace(session, std::move(handle));
  }
  void Unregister(WsSession* session) {
    std::lock_guard lock(sessions_mu);
    sessions.erase(session);
  }

  // Subscription slots (ServerOptions::max_subscriptions[_per_secret]).
  // `secret` empty: the server-wide slot; else one of that secret's.
  Status AcquireSubscription(const std::string& secret) {
    std::lock_guard lock(sessions_mu);
    if (secret.empty()) {
      if (options.max_subscriptions > 0 && subscriptions >= options.max_subscriptions) {
        return ResourceExhausted(
            "the server holds its maximum of {} subscriptions (max_subscriptions); retry later",
            options.max_subscriptions);
      }
      ++subscriptions;
      return Status::OK();
    }
    int& held = subscriptions_per_secret[secret];
    if (options.max_subscriptions_per_secret > 0 && held >= options.max_subscriptions_per_secret) {
      if (held == 0) subscriptions_per_secret.erase(secret);
      return ResourceExhausted(
          "this secret holds its maximum of {} subscriptions (max_subscriptions_per_secret); close "
          "one first",
          options.max_subscriptions_per_secret);
    }
    ++held;
    return Status::OK();
  }
  void ReleaseSubscription(const std::string& secret) {
    std::lock_guard lock(sessions_mu);
    if (secret.empty()) {
      --subscriptions;
      return;
    }
    auto it = subscriptions_per_secret.find(secret);
    if (it != subscriptions_per_secret.end() && --it->second <= 0) subscriptions_per_secret.erase(it);
  }

  engine::Engine* engine;
  ServerOptions options;
  GatewayMetrics metrics;
  Api api;
  int io_threads;
  int ws_threads;
  std::atomic<uint16_t> bound_port{0};
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> requests_in_flight{0};
  bool started = false;
  bool stopped = false;

  // Destruction order matters: members are destroyed bottom-up, so the pool
  // (whose queued handlers hold strand executors) goes before the io_context.
  asio::io_context ioc;
  // WebSocket sessions after the upgrade (ServerOptions::ws_threads): their
  // wake-ups, reads and writes never queue in front of an HTTP request's
  // completion on `ioc`.
  // One lane per WebSocket thread: an io_context (concurrency hint 1) and
  // the tables of the sessions on it; sessions are dealt to the lanes in turn.
  //
  // The hub's wake-ups, one listener per table per WebSocket thread (not one
  // per session): the hub's callback, on the thread that applied the write,
  // posts one task to the thread's io_context (none while one is queued), and
  // that task marks every session of the table there and resumes those
  // waiting, each from a task of its own. With 1000 sessions on a table the
  // writer's thread did 1000 callbacks (a mutex, two atomics and a
  // cross-thread post that woke a WebSocket thread) for every write; now 2.
  // Touched only on the context's own thread, and by Stop after the threads
  // joined.
  struct WsTable {
    std::unique_ptr<engine::Listener> listener;
    std::vector<WsSession*> sessions;
  };
  struct WsLane {
    asio::io_context context{1};
    std::unordered_map<Uuid, WsTable, UuidHash> tables;
  };
  bool ws_closed = false;  // set by Stop after the WebSocket threads joined: every lane's tables cleared
  std::vector<std::unique_ptr<WsLane>> ws_lanes;
  std::atomic<size_t> next_ws_lane{0};
  static std::vector<std::unique_ptr<WsLane>> MakeWsLanes(int count) {
    std::vector<std::unique_ptr<WsLane>> out;
    for (int i = 0; i < count; ++i) out.push_back(std::make_unique<WsLane>());
    return out;
  }
  WsLane& LaneOf(const asio::io_context& context) {
    for (const auto& lane : ws_lanes) {
      if (&lane->context == &context) return *lane;
    }
    std::abort();  // every session's socket is made on a lane's context (MoveToSubscriptions)
  }
  void JoinTable(WsSession* session, WsLane& lane, const Uuid& instance);
  void LeaveTable(WsSession* session, WsLane& lane, const Uuid& instance);
  asio::thread_pool pool;
  asio::thread_pool feed_pool;  // WebSocket sessions' change reads (ServerOptions::feed_threads)
  tcp::acceptor acceptor;
  const bool local_reads;  // Engine::LocalReads(): short index reads run inline
  std::vector<std::thread> threads;
  std::vector<std::thread> ws_thread_list;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> ws_work;  // the lanes idle until Stop

  // The upgraded connection, moved onto a lane's io_context: the
  // socket's descriptor is duplicated onto a socket of it and the
  // original closed; if no descriptor is free for the duplicate, the original
  // is released from `ioc` and assigned instead. A session's socket is a
  // plain socket (no beast::tcp_stream: its per-operation timer bookkeeping
  // was unused, the WebSocket stream keeps its own timeouts).
  WsSocket MoveToSubscriptions(beast::tcp_stream& stream) {
    beast::error_code ec;
    tcp::socket& socket = stream.socket();
    WsLane& lane = *ws_lanes[next_ws_lane.fetch_add(1, std::memory_order_relaxed) % ws_lanes.size()];
    WsSocket moved(lane.context.get_executor());
    const tcp::endpoint local = socket.local_endpoint(ec);
    if (ec) return moved;  // not connected any more: the session ends at its first step
    if (const int fd = ::dup(socket.native_handle()); fd >= 0) {
      moved.assign(local.protocol(), fd, ec);
      if (!ec) {
        socket.close(ec);
        return moved;
      }
      ::close(fd);
    }
    const int fd = socket.release(ec);
    if (!ec) moved.assign(local.protocol(), fd, ec);
    if (ec && fd >= 0) ::close(fd);
    return moved;
  }

  std::mutex sessions_mu;
  std::unordered_map<WsSession*, std::weak_ptr<WsSession>> sessions;  // GUARDED_BY(sessions_mu)
  int subscriptions = 0;                                               // GUARDED_BY(sessions_mu)
  std::unordered_map<std::string, int> subscriptions_per_secret;      // GUARDED_BY(sessions_mu)
};

// One WebSocket subscription. Lives on its connection's io_context (one
// thread); the coroutines Run() and ReadLoop() share it through shared_ptr.
// Members are touched only on that thread (the hub's wake-ups reach it
// through Server::Impl::JoinTable's task on the same thread).
class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(Server::Impl* server, WsSocket socket)
      : server_(server),
        ws_(std::move(socket)),
        timer_(ws_.get_executor()) {
    server_->metrics.SessionOpened();
  }
  ~WsSession() {
    server_->metrics.SessionClosed();
  }

  WsAwaitable<void> Run(http::request<http::string_body> upgrade);
  static WsAwaitable<void> ReadLoop(std::shared_ptr<WsSession> self);

  // On the session's thread: end the session (server stopping).
  void Shutdown() {
    if (!error_) error_ = Unavailable("the server is shutting down");
    going_away_ = true;
    WakeLater();
  }
  // On the session's thread: a write to its table was notified (JoinTable).
  void Notified() {
    notified_ = true;
    WakeLater();
  }
  // After the io threads joined: ends a Run still waiting (its frame holds the
  // session; the io_context would otherwise have destroyed its timer handler).
  void DropWaiter() { waiter_.reset(); }
  WsExecutor executor() { return ws_.get_executor(); }

 private:
  WsAwaitable<void> SendErrorAndClose(const Status& status);
  WsAwaitable<bool> Send(std::string message);
  WsAwaitable<bool> Send(std::shared_ptr<const std::string> message);  // kept alive by the coroutine
  // Before the handshake: answers `response` as HTTP (with the request
  // timeout, over a beast::tcp_stream made of the socket) and closes.
  WsAwaitable<void> Refuse(const HttpResponse& response, unsigned version);

  // The caught-up wait. Run suspends in WaitForWake until Wake (the hub's
  // wake-up, posted to the session's io_context: it resumes Run right there, no timer
  // cancel and no second hand-off), WakeLater (ReadLoop, Shutdown) or
  // `interval` after the wait began (the ws_poll_interval fallback). The poll
  // timer is armed once and left running across waits (re-armed when it fires
  // before the current wait's deadline), so a wait and a wake-up cost no timer
  // operation. All on the session's thread.
  struct Waiter {
    virtual ~Waiter() = default;
    virtual void Resume() = 0;
  };
  template <typename Handler>
  struct WaiterOf final : Waiter {
    explicit WaiterOf(Handler h) : handler(std::move(h)) {}
    void Resume() override { std::move(handler)(); }
    Handler handler;
  };
  WsAwaitable<void> WaitForWake(std::chrono::milliseconds interval) {
    return asio::async_initiate<const asio::use_awaitable_t<WsExecutor>, void()>(
        [this, interval](auto handler) {
          waiter_ = std::make_unique<WaiterOf<decltype(handler)>>(std::move(handler));
          wait_deadline_ = std::chrono::steady_clock::now() + interval;
          if (!timer_armed_ || timer_.expiry() > wait_deadline_) ArmTimer(wait_deadline_);
        },
        ws_awaitable);
  }
  void ArmTimer(std::chrono::steady_clock::time_point at) {
    timer_armed_ = true;
    const uint64_t arm = ++timer_arms_;
    timer_.expires_at(at);
    timer_.async_wait([weak = weak_from_this(), arm](const beast::error_code& ec) {
      std::shared_ptr<WsSession> self = weak.lock();
      if (self == nullptr || ec || arm != self->timer_arms_) return;  // cancelled or re-armed
      self->timer_armed_ = false;
      if (self->waiter_ == nullptr) return;  // the next wait arms it
      if (std::chrono::steady_clock::now() >= self->wait_deadline_) {
        self->Wake();
      } else {
        self->ArmTimer(self->wait_deadline_);
      }
    });
  }
  // On the session's thread, outside a coroutine of this session: resumes Run now.
  void Wake() {
    if (std::unique_ptr<Waiter> waiter = std::move(waiter_)) waiter->Resume();
  }
  // On the session's thread, from within a coroutine (ReadLoop) or Shutdown:
  // resumes Run from a task of its own.
  void WakeLater() {
    if (std::unique_ptr<Waiter> waiter = std::move(waiter_)) {
      asio::post(ws_.get_executor(), [waiter = std::move(waiter)] { waiter->Resume(); });
    }
  }

  Server::Impl* server_;
  websocket::stream<WsSocket> ws_;
  WsTimer timer_;  // the poll fallback of WaitForWake
  std::unique_ptr<Waiter> waiter_;  // Run, while it waits
  std::chrono::steady_clock::time_point wait_deadline_;
  bool timer_armed_ = false;
  uint64_t timer_arms_ = 0;
  bool notified_ = false;  // a write was notified since the last read began
  std::optional<Status> error_;  // set by ReadLoop or Shutdown: send it and close
  bool peer_closed_ = false;
  bool going_away_ = false;
};

WsAwaitable<bool> WsSession::Send(std::string message) {
  co_return co_await Send(std::make_shared<const std::string>(std::move(message)));
}

WsAwaitable<bool> WsSession::Send(std::shared_ptr<const std::string> message) {
  beast::error_code ec;
  ws_.text(true);
  co_await ws_.async_write(asio::buffer(*message), asio::redirect_error(ws_awaitable, ec));
  co_return !ec;
}

WsAwaitable<void> WsSession::Refuse(const HttpResponse& response, unsigned version) {
  beast::basic_stream<tcp, WsExecutor> stream(std::move(ws_.next_layer()));
  co_await server_->WriteResponse<WsExecutor>(stream, response, version, false);
}

WsAwaitable<void> WsSession::SendErrorAndClose(const Status& status) {
  beast::error_code ec;
  if (!peer_closed_ && ws_.is_open()) {
    std::string error = ErrorJson(status);
    std::string message = "{\"type\":\"error\",\"error\":" +
                          error.substr(std::string_view("{\"error\":").size(),
                                       error.size() - std::string_view("{\"error\":").size() - 1) +
                          "}";
    if (co_await Send(std::move(message))) {
      websocket::close_code code = going_away_ ? websocket::close_code::going_away
                                   : HttpStatusFor(status.code()) >= 500
                                       ? websocket::close_code::internal_error
                                       : websocket::close_code::policy_error;
      co_await ws_.async_close(code, asio::redirect_error(ws_awaitable, ec));
    }
  }
}

WsAwaitable<void> WsSession::ReadLoop(std::shared_ptr<WsSession> self) {
  beast::flat_buffer buffer;
  while (true) {
    beast::error_code ec;
    buffer.clear();
    co_await self->ws_.async_read(buffer, asio::redirect_error(ws_awaitable, ec));
    if (ec) {
      self->peer_closed_ = ec == websocket::error::closed || !self->ws_.is_open();
      if (!self->error_) self->error_ = Aborted("the connection closed: {}", ec.message());
      self->WakeLater();
      co_return;
    }
    if (!self->error_) {
      self->error_ = InvalidArgument(
          "one subscription per WebSocket: after the subscribe message the server only sends; "
          "open another connection for another subscription");
    }
    self->WakeLater();
  }
}

WsAwaitable<void> WsSession::Run(http::request<http::string_body> upgrade) {
  auto self = shared_from_this();
  beast::error_code ec;
  Server::Impl* server = server_;
  server->Register(this, weak_from_this());
  struct Unregister {
    Server::Impl* server;
    WsSession* session;
    ~Unregister() { server->Unregister(session); }
  } unregister{server, this};

  // The upgrade's Authorization header, when present, must be valid: a bad one
  // is answered 401 before the handshake, like any HTTP route.
  std::optional<engine::Principal> principal;
  std::string authorization = HeaderString(upgrade, http::field::authorization);
  if (!authorization.empty()) {
    Result<engine::Principal> who = co_await RunBlocking<Result<engine::Principal>, WsExecutor>(
        server->pool, [&] { return server->api.Authenticate(authorization); });
    if (!who.ok()) {
      HttpResponse response = ErrorResponse(who.status());
      response.route = &Route(RouteId::kSubscribe);
      server->metrics.Record(response.route, response.status, 0);
      co_await Refuse(response, upgrade.version());
      co_return;
    }
    principal = std::move(*who);
  }

  // The handshake's own headers, checked here so that a bad one gets the API's
  // JSON error shape (Beast would answer plain text): a missing or malformed
  // Sec-WebSocket-Key is 400, a Sec-WebSocket-Version other than 13 is 426.
  if (Status handshake = CheckWebSocketHandshake(upgrade); !handshake.ok()) {
    HttpResponse response = HandshakeErrorResponse(handshake);
    server->metrics.Record(response.route, response.status, 0);
    co_await Refuse(response, upgrade.version());
    co_return;
  }

  // Subscription slots: the server's, and the secret's when the upgrade
  // names it (else after the subscribe message). Refused before the
  // handshake: 429 with Retry-After.
  struct Slots {
    Server::Impl* server;
    std::vector<std::string> held;
    ~Slots() {
      for (const std::string& secret : held) server->ReleaseSubscription(secret);
    }
  } slots{server, {}};
  auto take_slot = [&](const std::string& secret) -> Status {
    Status status = server->AcquireSubscription(secret);
    if (status.ok()) slots.held.push_back(secret);
    return status;
  };
  {
    Status slot = take_slot("");
    if (slot.ok() && principal) slot = take_slot(principal->secret_id.ToString());
    if (!slot.ok()) {
      // Give back the server's slot before answering: a client that reads the
      // 429 and connects again at once must find it free.
      for (const std::string& secret : slots.held) server->ReleaseSubscription(secret);
      slots.held.clear();
      HttpResponse response = ErrorResponse(slot);
      response.route = &Route(RouteId::kSubscribe);
      server->metrics.Record(response.route, response.status, 0);
      co_await Refuse(response, upgrade.version());
      co_return;
    }
  }

  websocket::stream_base::timeout timeouts{};
  timeouts.handshake_timeout = std::chrono::seconds(30);
  timeouts.idle_timeout = server->options.idle_timeout;
  timeouts.keep_alive_pings = true;  // a ping at half the idle timeout; no answer → closed
  ws_.set_option(timeouts);
  ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
    response.set(http::field::server, "aquifer");
  }));
  ws_.read_message_max(server->options.max_ws_message_bytes);
  // Each message as one frame, written at once: Beast's default splits a
  // message into 4 KiB frames, each its own write (a send per frame: with 1000
  // subscribers, 18 sends for a page of 340 records). Clients see the same
  // messages either way (RFC 6455 §5.4).
  ws_.auto_fragment(false);
  co_await ws_.async_accept(upgrade, asio::redirect_error(ws_awaitable, ec));
  server->metrics.Record(&Route(RouteId::kSubscribe), ec ? 400 : 101, 0);
  if (ec) co_return;

  // The subscribe message.
  beast::flat_buffer buffer;
  co_await ws_.async_read(buffer, asio::redirect_error(ws_awaitable, ec));
  if (ec) co_return;
  std::string text = beast::buffers_to_string(buffer.data());
  buffer.consume(buffer.size());
  Result<SubscribeMessage> parsed = ParseSubscribeMessage(text);
  if (!parsed.ok()) {
    co_await SendErrorAndClose(parsed.status());
    co_return;
  }
  std::string cursor = std::move(parsed->cursor);
  std::string filter_json = std::move(parsed->filter_json);
  std::string secret = std::move(parsed->secret);
  if (!secret.empty()) {
    Result<engine::Principal> who = co_await RunBlocking<Result<engine::Principal>, WsExecutor>(
        server->pool, [&] { return server->engine->Authenticate(secret); });
    if (!who.ok()) {
      co_await SendErrorAndClose(who.status());
      co_return;
    }
    principal = std::move(*who);
  }
  if (!principal) {
    co_await SendErrorAndClose(Unauthenticated(
        "missing secret: send 'Authorization: Bearer <secret>' on the upgrade or \"secret\" in "
        "the subscribe message"));
    co_return;
  }
  // The secret came in the message (or replaced the header's): its slot now.
  if (std::string id = principal->secret_id.ToString(); slots.held.size() < 2 || slots.held[1] != id) {
    if (slots.held.size() == 2) {
      server->ReleaseSubscription(slots.held[1]);
      slots.held.pop_back();
    }
    if (Status slot = take_slot(id); !slot.ok()) {
      co_await SendErrorAndClose(slot);
      co_return;
    }
  }
  // The feed resolves the cursor's table, grants and filter once; its reads
  // then do no catalog work (the engine re-checks on an interval).
  using OpenedFeed = Result<std::unique_ptr<engine::ChangeFeed>>;
  OpenedFeed opened = co_await RunBlocking<OpenedFeed, WsExecutor>(server->pool, [&] {
    return server->engine->OpenChangeFeed(*principal, cursor, filter_json);
  });
  if (!opened.ok()) {
    co_await SendErrorAndClose(opened.status());
    co_return;
  }
  std::unique_ptr<engine::ChangeFeed> feed = std::move(*opened);
  engine::ChangeFeed* reader = feed.get();

  // The hub's wake-ups reach the session through its thread's listener of
  // the table (JoinTable: Notified, on this thread), until it leaves.
  Server::Impl::WsLane& lane = server->LaneOf(ws_.get_executor().context());
  const Uuid instance = reader->instance_id();
  server->JoinTable(this, lane, instance);
  struct Leave {
    Server::Impl* server;
    WsSession* session;
    Server::Impl::WsLane* lane;
    Uuid instance;
    bool joined = true;
    void Now() {
      if (std::exchange(joined, false)) server->LeaveTable(session, *lane, instance);
    }
    ~Leave() { Now(); }
  } leave{server, this, &lane, instance};
  asio::co_spawn(ws_.get_executor(), ReadLoop(self), asio::detached);

  // Read until caught up: a page that stopped at its limit or scan budget
  // (`more`: a selective filter may scan a full budget and match nothing), or
  // any page after a wake-up, is followed by the next read at once. A
  // caught-up session (its page, with records or not, reached the end) waits:
  // for the hub's wake-up, or ws_poll_interval as a fallback (notifications
  // are at-most-once).
  while (!error_ && !server->stopping.load()) {
    notified_ = false;
    // A page another session at this position already read is taken here, on
    // the session's thread; a read (I/O) goes to the feed pool.
    std::optional<engine::ChangeBatch> ready = reader->TryReadBatch(1000);
    Result<engine::ChangeBatch> page = engine::ChangeBatch{};
    if (ready) {
      page = std::move(*ready);
    } else {
      page = co_await RunBlocking<Result<engine::ChangeBatch>, WsExecutor>(
          server->feed_pool, [reader] { return reader->ReadBatch(1000); });
    }
    server->metrics.ChangeRead();
    if (error_) break;
    if (!page.ok()) {
      error_ = page.status();
      break;
    }
    if (page->count > 0) {
      // The message is shared with every session at the same position
      // (engine::ChangeBatch): written from the shared buffer, never copied.
      if (!co_await Send(std::move(page->message))) {
        peer_closed_ = true;
        break;
      }
      server->metrics.BatchSent();
    }
    // A page that reached the end of what was stored (no `more`) holds every
    // record notified before this round's notified_ reset (the hub notifies after
    // the write; a page shared from another session was read in the same hub
    // generation); one notified since set notified_. So without `more` or a
    // wake-up there is nothing to read, also after a page with records: wait
    // now rather than read an empty page first (with many subscribers that
    // read was half of every session's rounds).
    if (page->more || notified_) continue;
    server->metrics.IdleWait();
    co_await WaitForWake(server->options.ws_poll_interval);
    if (notified_) server->metrics.Wakeup();
  }
  leave.Now();
  timer_.cancel();
  if (server->stopping.load()) Shutdown();
  if (error_ && error_->code() != StatusCode::kAborted) {
    co_await SendErrorAndClose(*error_);
  } else if (!peer_closed_ && ws_.is_open()) {
    co_await ws_.async_close(websocket::close_code::normal, asio::redirect_error(ws_awaitable, ec));
  }
}

void Server::Impl::JoinTable(WsSession* session, WsLane& lane, const Uuid& instance) {
  WsTable& table = lane.tables[instance];
  table.sessions.push_back(session);
  if (table.listener != nullptr) return;
  // The hub's callback must not block and must not own anything on this
  // thread: it posts one task while none is queued. The task runs here and
  // finds the table's sessions at that time (a session that left is gone
  // from the list; one that joined since reads the table anyway).
  auto queued = std::make_shared<std::atomic<bool>>(false);
  table.listener = engine->Listen(instance, [this, queued, lane = &lane, instance] {
    if (queued->exchange(true)) return;
    asio::post(lane->context, [this, queued, lane, instance] {
      queued->store(false);
      if (ws_closed) return;
      auto it = lane->tables.find(instance);
      if (it == lane->tables.end()) return;
      for (WsSession* member : it->second.sessions) member->Notified();
    });
  });
}

void Server::Impl::LeaveTable(WsSession* session, WsLane& lane, const Uuid& instance) {
  if (ws_closed) return;  // Stop dropped every table (and its listener) already
  auto it = lane.tables.find(instance);
  if (it == lane.tables.end()) return;
  std::vector<WsSession*>& sessions = it->second.sessions;
  if (auto at = std::find(sessions.begin(), sessions.end(), session); at != sessions.end()) {
    *at = sessions.back();
    sessions.pop_back();
  }
  if (sessions.empty()) lane.tables.erase(it);  // and the hub's listener with it
}

template <typename Executor, typename Stream>
awaitable<bool, Executor> Server::Impl::WriteResponse(Stream& stream, const HttpResponse& response,
                                                      unsigned version, bool keep_alive) {
  http::response<http::string_body> message{static_cast<http::status>(response.status), version};
  message.set(http::field::server, "aquifer");
  if (response.status != 204 && response.status != 304) {
    message.set(http::field::content_type, response.content_type);
    message.body() = response.body;
  }
  for (const auto& [name, value] : response.headers) message.set(name, value);
  message.keep_alive(keep_alive);
  message.prepare_payload();
  beast::error_code ec;
  stream.expires_after(options.request_timeout);
  co_await http::async_write(stream, message,
                             asio::redirect_error(asio::use_awaitable_t<Executor>{}, ec));
  co_return !ec;
}

awaitable<void> Server::Impl::HttpSession(beast::tcp_stream stream) {
  beast::flat_buffer buffer;
  beast::error_code ec;
  auto answer_and_close = [&](int status, const Status& error, unsigned version) -> awaitable<void> {
    HttpResponse response = ErrorResponse(error);
    response.status = status;
    metrics.Record(nullptr, status, 0);
    co_await WriteResponse(stream, response, version, /*keep_alive=*/false);
  };
  while (!stopping.load(std::memory_order_relaxed)) {
    WireParser parser;
    ConfigureParser(parser, options.max_header_bytes, options.max_body_bytes);
    stream.expires_after(options.idle_timeout);
    co_await http::async_read_header(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
    if (ec == http::error::header_limit) {
      co_await answer_and_close(
          431, TooLarge("request headers over {} bytes", options.max_header_bytes), 11);
      break;
    }
    if (ec == http::error::body_limit) {  // Content-Length over the limit, seen with the header
      co_await answer_and_close(
          413, TooLarge("request body over the limit of {} bytes", options.max_body_bytes), 11);
      break;
    }
    if (ec) {
      bool quiet = ec == http::error::end_of_stream || ec == asio::error::eof ||
                   ec == beast::error::timeout || ec == asio::error::connection_reset ||
                   ec == asio::error::operation_aborted || buffer.size() == 0;
      if (!quiet) co_await answer_and_close(400, InvalidArgument("bad HTTP request: {}", ec.message()), 11);
      break;
    }
    int64_t started_us = NowMicros();
    const auto& header = parser.get();
    unsigned version = header.version();
    if (IsSubscribeUpgrade(header, options.api.role)) {
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
      if (ec) break;
      // The session runs on its lane's io_context from here; this coroutine ends.
      auto session = std::make_shared<WsSession>(this, MoveToSubscriptions(stream));
      asio::co_spawn(
          session->executor(),
          [session, upgrade = parser.release()]() mutable -> WsAwaitable<void> {
            co_await session->Run(std::move(upgrade));
          },
          asio::detached);
      co_return;
    }
    requests_in_flight.fetch_add(1);
    struct InFlight {
      std::atomic<int64_t>* counter;
      ~InFlight() { counter->fetch_sub(1); }
    } in_flight{&requests_in_flight};
    if (auto length = parser.content_length(); length && *length > options.max_body_bytes) {
      co_await answer_and_close(
          413, TooLarge("request body of {} bytes is over the limit of {} bytes", *length,
                        options.max_body_bytes), version);
      break;
    }
    if (beast::iequals(HeaderString(header, http::field::expect), "100-continue")) {
      http::response<http::empty_body> go_on{http::status::continue_, version};
      co_await http::async_write(stream, go_on, asio::redirect_error(use_awaitable, ec));
      if (ec) break;
    }
    stream.expires_after(options.request_timeout);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
    if (ec == http::error::body_limit) {
      co_await answer_and_close(
          413, TooLarge("request body over the limit of {} bytes", options.max_body_bytes), version);
      break;
    }
    if (ec) {
      if (ec != beast::error::timeout && ec != http::error::end_of_stream) {
        co_await answer_and_close(400, InvalidArgument("bad HTTP request: {}", ec.message()), version);
      }
      break;
    }
    WireRequest message = parser.release();
    bool keep_alive = message.keep_alive();
    HttpRequest request = ToHttpRequest(std::move(message));

    // Answers that need no engine call run inline, and so do short index
    // reads when every read is local (no network, no waiting on another
    // system: a point lookup costs less than the hand-offs); the rest on the
    // pool (a plain GET of /v1/subscribe authenticates: 401 before 426).
    RouteMatch match = MatchRoute(request.method, PathOf(request.target));
    bool inline_answer = match.route == nullptr || match.route->id == RouteId::kOpenApi ||
                         (local_reads && match.route->id == RouteId::kQueryIndex &&
                          options.api.role != engine::Role::kWorker && ShortIndexRead(request.target));
    HttpResponse response;
    if (inline_answer) {
      response = api.Handle(request);
    } else {
      response = co_await RunBlocking<HttpResponse>(pool, [&] { return api.Handle(request); });
    }
    metrics.Record(response.route, response.status, NowMicros() - started_us);
    if (stopping.load(std::memory_order_relaxed)) keep_alive = false;
    if (!co_await WriteResponse(stream, response, version, keep_alive) || !keep_alive) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

awaitable<void> Server::Impl::Listen() {
  while (!stopping.load()) {
    beast::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::make_strand(ioc),
                                                        asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      AQ_LOG(Warn, "gateway: accept failed: {}", ec.message());
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto executor = socket.get_executor();
    asio::co_spawn(executor, HttpSession(beast::tcp_stream(std::move(socket))), asio::detached);
  }
}

Server::Server(engine::Engine* engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {}

Server::~Server() { Stop(); }

Status Server::Start() {
  Impl& impl = *impl_;
  if (impl.started) return FailedPrecondition("the server was already started");
  beast::error_code ec;
  asio::ip::address address = asio::ip::make_address(impl.options.host, ec);
  if (ec) {
    return InvalidArgument("bad listen address '{}': {} (use an IP address such as 127.0.0.1 or 0.0.0.0)",
                           impl.options.host, ec.message());
  }
  tcp::endpoint endpoint(address, impl.options.port);
  impl.acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl.acceptor.bind(endpoint, ec);
  if (!ec) impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Unavailable("cannot listen on {}:{}: {}", impl.options.host, impl.options.port, ec.message());
  }
  impl.bound_port = impl.acceptor.local_endpoint().port();
  impl.started = true;
  asio::co_spawn(impl.ioc, impl.Listen(), asio::detached);
  for (int thread_idx = 0; thread_idx < impl.io_threads; ++thread_idx) {
    impl.threads.emplace_back([&impl] {
      NameThisThread("aq-http");
      impl.ioc.run();
    });
  }
  for (const auto& lane : impl.ws_lanes) {
    impl.ws_work.push_back(asio::make_work_guard(lane->context));
    impl.ws_thread_list.emplace_back([context = &lane->context] {
      NameThisThread("aq-ws");
      context->run();
    });
  }
  return Status::OK();
}

void Server::Stop() {
  Impl& impl = *impl_;
  if (!impl.started || impl.stopped) return;
  impl.stopped = true;
  impl.stopping = true;
  asio::post(impl.ioc, [&impl] {
    beast::error_code ec;
    impl.acceptor.close(ec);
  });
  {
    std::lock_guard lock(impl.sessions_mu);
    for (auto& [raw, weak] : impl.sessions) {
      if (std::shared_ptr<WsSession> session = weak.lock()) {
        asio::post(session->executor(), [session] { session->Shutdown(); });
      }
    }
  }
  auto deadline = std::chrono::steady_clock::now() + impl.options.drain_timeout;
  while (std::chrono::steady_clock::now() < deadline &&
         (impl.requests_in_flight.load() > 0 || impl.metrics.ws_sessions() > 0)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  impl.ioc.stop();
  for (const auto& lane : impl.ws_lanes) lane->context.stop();
  for (std::thread& thread : impl.threads) thread.join();
  impl.threads.clear();
  for (std::thread& thread : impl.ws_thread_list) thread.join();
  impl.ws_thread_list.clear();
  {
    // No session runs now: drop the hub's listeners before the io_context goes,
    // and the waits of sessions still open (outside the lock: ending a Run
    // unregisters it).
    std::vector<std::shared_ptr<WsSession>> open;
    {
      std::lock_guard lock(impl.sessions_mu);
      for (auto& [raw, weak] : impl.sessions) {
        if (std::shared_ptr<WsSession> session = weak.lock()) {
          open.push_back(std::move(session));
        }
      }
    }
    impl.ws_closed = true;
    for (const auto& lane : impl.ws_lanes) lane->tables.clear();
    for (const std::shared_ptr<WsSession>& session : open) session->DropWaiter();
  }
  impl.pool.stop();
  impl.pool.join();
  impl.feed_pool.stop();
  impl.feed_pool.join();
}

uint16_t Server::port() const { return impl_->bound_port.load(); }

GatewayMetrics& Server::metrics() { return impl_->metrics; }

}  // namespace aquifer::gateway
