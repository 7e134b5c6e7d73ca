#pragma once

// GatewayMetrics: the gateway's own Prometheus counters, lock-free.
//
//   aquifer_http_requests_total{route,status}        counter
//   aquifer_http_request_duration_seconds{route}     histogram (kBucketBounds)
//   aquifer_ws_sessions                              gauge: open WebSocket sessions
//   aquifer_ws_batches_sent_total                    counter: record batches pushed
//   aquifer_ws_change_reads_total                    counter: change-feed reads by sessions
//   aquifer_ws_idle_waits_total                      counter: caught-up sessions starting to wait
//   aquifer_ws_wakeups_total                         counter: waits ended by a hub notification
//
// `route` is RouteSpec::label ("GET /v1/cursor") or "unmatched" for paths no
// route serves. Every member is thread-safe; Record() is a few relaxed atomic
// adds, cheap enough for every request.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "aquifer/gateway/router.h"

namespace aquifer::gateway {

class GatewayMetrics {
 public:
  // Upper bounds of the latency buckets, in seconds (+Inf is implied).
  static constexpr std::array<double, 14> kBucketBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30};

  // `route` null: a request no route matched.
  void Record(const RouteSpec* route, int http_status, int64_t duration_micros);
  void SessionOpened() { ws_sessions_.fetch_add(1, std::memory_order_relaxed); }
  void SessionClosed() { ws_sessions_.fetch_sub(1, std::memory_order_relaxed); }
  void BatchSent() { ws_batches_.fetch_add(1, std::memory_order_relaxed); }
  void ChangeRead() { ws_change_reads_.fetch_add(1, std::memory_order_relaxed); }
  void IdleWait() { ws_idle_waits_.fetch_add(1, std::memory_order_relaxed); }
  void Wakeup() { ws_wakeups_.fetch_add(1, std::memory_order_relaxed); }
  int64_t ws_sessions() const { return ws_sessions_.load(std::memory_order_relaxed); }
  uint64_t ws_change_reads() const { return ws_change_reads_.load(std::memory_order_relaxed); }
  uint64_t ws_idle_waits() const { return ws_idle_waits_.load(std::memory_order_relaxed); }
  uint64_t ws_wakeups() const { return ws_wakeups_.load(std::memory_order_relaxed); }

  // Prometheus text exposition format 0.0.4.
  std::string Text() const;

 private:
  static constexpr size_t kRouteSlots = 20;  // Routes() + "unmatched"
  static constexpr int kMinStatus = 100;
  static constexpr int kStatusSlots = 500;   // 100..599
  struct RouteCounters {
    std::array<std::atomic<uint64_t>, kStatusSlots> by_status{};
    std::array<std::atomic<uint64_t>, kBucketBounds.size() + 1> buckets{};
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_micros{0};
  };
  std::array<RouteCounters, kRouteSlots> routes_{};
  std::atomic<int64_t> ws_sessions_{0};
  std::atomic<uint64_t> ws_batches_{0};
  std::atomic<uint64_t> ws_change_reads_{0};
  std::atomic<uint64_t> ws_idle_waits_{0};
  std::atomic<uint64_t> ws_wakeups_{0};
};

}  // namespace aquifer::gateway
