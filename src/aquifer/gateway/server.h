#pragma once

// Server: HTTP/1.1 and WebSocket on one port, over an Engine.
//
// Boost.Beast/Asio with C++20 coroutines. One io_context runs on
// `io_threads` threads; every connection is a coroutine on its own strand.
// An upgraded WebSocket connection moves to one of `ws_threads` io_contexts
// (one thread each), so fan-out work never delays HTTP answers.
// Engine calls block (a `wait=index` write may wait seconds), so requests run
// them on a separate pool of `handler_threads` and the connection coroutine
// resumes on its strand when the answer is ready: a slow call never stalls
// the network threads or other connections.
//
// HTTP: keep-alive, TCP_NODELAY, `Expect: 100-continue`, header limit
// (431), body limit = max_body_bytes (413, checked against Content-Length
// before reading), an idle timeout between requests and a timeout for
// reading one request and writing its answer. Api (api.h) does the routing.
//
// WebSocket (GET /v1/subscribe): see README.md, "WebSocket". One
// subscription per socket; at most one outstanding write per session (a
// slow client only slows itself); the engine's change hub only flags the
// session and cancels its wait. A session reads page after page until caught
// up (no sleep between pages; a page that reached the end is caught up) and
// only then waits (ws_poll_interval fallback). A message is one frame.
// Those reads run on their own pool (feed_threads), not the handler pool.
//
// Lifecycle: construct, Start() (binds; port() is then the real port, also
// for port 0), Stop() (stops accepting, closes WebSocket sessions with
// "going away", lets requests in flight finish for up to `drain_timeout`,
// then stops the threads). The destructor calls Stop(). Start and Stop are
// called from one thread; port() and metrics() from any.
//
// This is the only translation unit that includes Beast (with server_test.cc).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "aquifer/base/status.h"
#include "aquifer/engine/engine.h"
#include "aquifer/gateway/api.h"
#include "aquifer/gateway/metrics.h"

namespace aquifer::gateway {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;                  // 0: any free port (see Server::port())
  int io_threads = 0;                    // 0: std::thread::hardware_concurrency()
  // WebSocket sessions run on io_contexts of their own after the upgrade (one
  // per thread, sessions dealt in turn): a thousand subscribers' wake-ups and
  // writes never queue in front of an HTTP request (a writer) on the io
  // threads. 0: as many as io_threads.
  int ws_threads = 0;
  int handler_threads = 64;              // pool for blocking engine calls
  // A separate pool for the subscriptions' change reads: however many
  // subscribers wake at once, their reads queue here, never in front of an
  // HTTP request (a writer) on the handler pool.
  int feed_threads = 8;
  size_t max_body_bytes = 64 << 20;      // EngineOptions::max_body_bytes
  size_t max_header_bytes = 16 << 10;    // request line + headers
  size_t max_ws_message_bytes = 1 << 20; // client → server WebSocket messages
  std::chrono::milliseconds idle_timeout{60'000};      // keep-alive between requests
  std::chrono::milliseconds request_timeout{300'000};  // read one request / write one answer
  std::chrono::milliseconds drain_timeout{5'000};      // Stop(): requests in flight
  // A caught-up subscription waits for a change notification (from write
  // reports) and re-reads after this long without one: notifications are
  // at-most-once, and reports of other gateways' workers may be missed.
  std::chrono::milliseconds ws_poll_interval{30'000};
  // Open WebSocket subscriptions: on the whole server, and per secret (0: no
  // limit). One more answers 429 (Retry-After: 60) before the handshake, or,
  // when the secret comes in the subscribe message, an error message with
  // code resource_exhausted and close code 1008.
  int max_subscriptions = 10'000;
  int max_subscriptions_per_secret = 100;
  ApiOptions api;
};

class Server {
 public:
  // `engine` outlives the server.
  Server(engine::Engine* engine, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and starts the threads. InvalidArgument for a bad host,
  // Unavailable when the address cannot be bound (in use, no permission).
  Status Start();
  void Stop();

  uint16_t port() const;
  GatewayMetrics& metrics();

  struct Impl;  // defined in server.cc; public so the WebSocket session can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace aquifer::gateway
