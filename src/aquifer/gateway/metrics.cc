#include "aquifer/gateway/metrics.h"

#include <fmt/format.h>

namespace aquifer::gateway {

void GatewayMetrics::Record(const RouteSpec* route, int http_status, int64_t duration_micros) {
  static_assert(kRouteSlots >= 1);
  size_t slot = route == nullptr ? kRouteSlots - 1 : static_cast<size_t>(route->id);
  if (slot >= kRouteSlots) slot = kRouteSlots - 1;
  RouteCounters& counters = routes_[slot];
  int status_slot = http_status - kMinStatus;
  if (status_slot < 0 || status_slot >= kStatusSlots) status_slot = 500 - kMinStatus;
  counters.by_status[status_slot].fetch_add(1, std::memory_order_relaxed);
  if (duration_micros < 0) duration_micros = 0;
  double seconds = static_cast<double>(duration_micros) / 1e6;
  size_t bucket = 0;
  while (bucket < kBucketBounds.size() && seconds > kBucketBounds[bucket]) ++bucket;
  counters.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  counters.count.fetch_add(1, std::memory_order_relaxed);
  counters.sum_micros.fetch_add(static_cast<uint64_t>(duration_micros), std::memory_order_relaxed);
}

std::string GatewayMetrics::Text() const {
  static_assert(kRouteSlots == 20, "kRouteSlots must be Routes().size() + 1");
  auto label_of = [](size_t slot) -> std::string_view {
    return slot < Routes().size() ? Routes()[slot].label : std::string_view("unmatched");
  };
  std::string out;
  out += "# HELP aquifer_http_requests_total HTTP requests answered, by route and status.\n";
  out += "# TYPE aquifer_http_requests_total counter\n";
  for (size_t slot = 0; slot < kRouteSlots; ++slot) {
    for (int status_slot = 0; status_slot < kStatusSlots; ++status_slot) {
      uint64_t value = routes_[slot].by_status[status_slot].load(std::memory_order_relaxed);
      if (value == 0) continue;
      out += fmt::format("aquifer_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n",
                         label_of(slot), status_slot + kMinStatus, value);
    }
  }
  out += "# HELP aquifer_http_request_duration_seconds Time from a request's last byte to its "
         "answer, by route.\n";
  out += "# TYPE aquifer_http_request_duration_seconds histogram\n";
  for (size_t slot = 0; slot < kRouteSlots; ++slot) {
    const RouteCounters& counters = routes_[slot];
    uint64_t count = counters.count.load(std::memory_order_relaxed);
    if (count == 0) continue;
    uint64_t cumulative = 0;
    for (size_t bucket = 0; bucket <= kBucketBounds.size(); ++bucket) {
      cumulative += counters.buckets[bucket].load(std::memory_order_relaxed);
      std::string bound =
          bucket < kBucketBounds.size() ? fmt::format("{}", kBucketBounds[bucket]) : "+Inf";
      out += fmt::format(
          "aquifer_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
          label_of(slot), bound, cumulative);
    }
    out += fmt::format("aquifer_http_request_duration_seconds_sum{{route=\"{}\"}} {}\n",
                       label_of(slot),
                       static_cast<double>(counters.sum_micros.load(std::memory_order_relaxed)) / 1e6);
    out += fmt::format("aquifer_http_request_duration_seconds_count{{route=\"{}\"}} {}\n",
                       label_of(slot), count);
  }
  out += "# HELP aquifer_ws_sessions Open WebSocket sessions.\n";
  out += "# TYPE aquifer_ws_sessions gauge\n";
  out += fmt::format("aquifer_ws_sessions {}\n", ws_sessions_.load(std::memory_order_relaxed));
  out += "# HELP aquifer_ws_batches_sent_total Record batches pushed to subscribers.\n";
  out += "# TYPE aquifer_ws_batches_sent_total counter\n";
  out += fmt::format("aquifer_ws_batches_sent_total {}\n", ws_batches_.load(std::memory_order_relaxed));
  out += "# HELP aquifer_ws_change_reads_total Change-feed reads by WebSocket sessions.\n";
  out += "# TYPE aquifer_ws_change_reads_total counter\n";
  out += fmt::format("aquifer_ws_change_reads_total {}\n", ws_change_reads());
  out += "# HELP aquifer_ws_idle_waits_total Times a caught-up WebSocket session started to wait.\n";
  out += "# TYPE aquifer_ws_idle_waits_total counter\n";
  out += fmt::format("aquifer_ws_idle_waits_total {}\n", ws_idle_waits());
  out += "# HELP aquifer_ws_wakeups_total Waits ended by a change notification (not the fallback timer).\n";
  out += "# TYPE aquifer_ws_wakeups_total counter\n";
  out += fmt::format("aquifer_ws_wakeups_total {}\n", ws_wakeups());
  return out;
}

}  // namespace aquifer::gateway
