// serve_bench: the serving side of the real server (`aquifer serve` as a child
// process) against baselines measured in the same run (DESIGN.md "Targets",
// issue 10 goals 2-5). Figures are printed, never asserted.
//
// Workloads (AQUIFER_BENCH_ONLY=latency,lookup,idle,memory,sql picks some; `latency1` alone
// runs only the 1-subscriber runs at 10,000/s, with and without a warehouse copy, twice;
// `fanout` alone runs only latency's 1-subscriber / 1000-subscriber / 1-subscriber
// runs at 1,000 records/s):
//   latency   write → subscriber: one writer paced at 10,000 records/s
//             (NDJSON batches of 10 every 1 ms, no wait), each record
//             carrying its send time; N WebSocket subscribers on the table
//             (on two client threads, epoll via Asio) take arrival - send
//             per record. Runs with 1, 1000, then 1 subscriber again, back to
//             back: the writer's request latency and achieved rate with 1000
//             subscribers against the 1-subscriber runs is "no slowdown of
//             the writers". Each run also prints the messages received (records
//             per message), the CPU of this client and of the server over the run
//             (they share the machine's cores: a client that cannot keep up
//             shows here), the bytes left unread in the client's sockets
//             (FIONREAD: the client's own backlog), and for 1000 subscribers the
//             p99 per second of the run and the sessions' counters.
//   lookup    index point lookups (GET records?filter={full key}&limit=1)
//             against GET /healthz on the same server, 4 keep-alive clients,
//             alternating 2 s rounds of each (5 pairs); the ratio is per pair
//             and its median is the figure.
//   idle      server resident size (VmRSS) with 0, 1000 and 10,000 idle
//             subscriptions (subscribed, caught up, nothing written); the
//             cost per subscription is the RSS delta over the count.
//   memory    ingest `records` (default 10 million) NDJSON records of ~100 B,
//             1000 per request, ?wait=index, 4 clients, sampling the server's
//             VmRSS every 2 s: flat, and under 512 MiB plus the configured
//             caches (DuckDB memory_limit, RocksDB block cache) is the goal.
//             DuckDB's memory_limit is 1 GiB, or AQUIFER_BENCH_DUCKDB_MEMORY_MIB
//             (`make bench` runs it again at 64 MiB, a limit the buffer pool
//             reaches within the run: then RSS itself must level off).
//   sql       the same SELECTs through the engine (POST /v1/sql with
//             wait_ms, which answers a small result's rows at once, then any
//             further pages: what the CLI and the Python client do; a server
//             without wait_ms is polled: GET /v1/jobs/{id}, GET rows) and directly
//             on DuckDB (the C API, on a copy of the server's warehouse file
//             made while the server was stopped, same physical table), 20
//             alternating runs each (AQUIFER_BENCH_SQL_ROUNDS); p50 of each and
//             the target 1.10x + 1 ms. Both sides keep their connection and
//             fetch every value (the direct side as text, the engine's client
//             parses the JSON); the direct side plans each run (duckdb_query).
//             "sel+write" writes one record (untimed) before each engine run,
//             so the engine's cached plan and statement are made again, as
//             under a steady ingest into the queried table.
//             Uses the memory run's table (or 200,000 records written here).
//
// Usage: serve_bench [seconds_per_run=10] [records=10000000]
// AQUIFER_BENCH_DIR: scratch dir; AQUIFER_BENCH_SERVER: another server binary.

#include <utility>  // first: Boost 1.74 Beast needs std::exchange declared

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <duckdb.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "bench_util.h"
#include "harness.h"

namespace {

using namespace aquifer::e2e;
using aquifer::bench::ProcessCpuSeconds;
using SteadyClock = std::chrono::steady_clock;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

constexpr int kClients = 4;
// The warehouse's DuckDB memory_limit, set by the bench (AQUIFER_WAREHOUSE_MEMORY_LIMIT)
// so the memory run knows the bound it is held to: 1 GiB (the driver's default), or
// AQUIFER_BENCH_DUCKDB_MEMORY_MIB (e.g. 64: the buffer pool reaches its limit within a
// 10 M-record run, so RSS itself must level off once every cache is full).
int64_t DuckDbMemoryLimit() {
  static const int64_t limit = [] {
    const char* mib = std::getenv("AQUIFER_BENCH_DUCKDB_MEMORY_MIB");
    const int64_t value = mib != nullptr ? std::atoll(mib) : 0;
    return value > 0 ? value << 20 : int64_t{1} << 30;
  }();
  return limit;
}

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// VmRSS of a process in KiB (-1 if unknown).
int64_t RssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

json BenchSchema() {
  return json::parse(R"({"type": "record", "name": "rec", "fields": [
      {"name": "user", "type": "string"}, {"name": "id", "type": "long"},
      {"name": "value", "type": "double"}, {"name": "payload", "type": "string"},
      {"name": "sent_us", "type": "long", "default": 0}]})");
}

// ~100 bytes of JSON per record.
void AppendRecord(std::string* out, const std::string& user, int64_t id, int64_t sent_us) {
  char buf[256];
  int n = std::snprintf(buf, sizeof buf,
                        R"({"user":"%s","id":%lld,"value":%lld.5,"payload":"%s","sent_us":%lld})"
                        "\n",
                        user.c_str(), static_cast<long long>(id), static_cast<long long>(id % 1000),
                        std::string(36, static_cast<char>('a' + id % 26)).c_str(),
                        static_cast<long long>(sent_us));
  out->append(buf, static_cast<size_t>(n));
}

int64_t MetricValue(const std::string& metrics, const std::string& sample) {
  size_t pos = 0;
  while ((pos = metrics.find(sample + " ", pos)) != std::string::npos) {
    if (pos == 0 || metrics[pos - 1] == '\n') return std::atoll(metrics.c_str() + pos + sample.size() + 1);
    pos += sample.size();
  }
  return -1;
}

// The sum of every sample of metric `name` (any labels), or -1 if none.
int64_t MetricSum(const std::string& metrics, const std::string& name) {
  int64_t sum = -1;
  size_t pos = 0;
  while ((pos = metrics.find(name, pos)) != std::string::npos) {
    const size_t end = pos + name.size();
    if ((pos == 0 || metrics[pos - 1] == '\n') && end < metrics.size() && (metrics[end] == ' ' || metrics[end] == '{')) {
      size_t value = metrics.find(' ', metrics[end] == '{' ? metrics.find('}', end) : end);
      if (value != std::string::npos) sum = std::max<int64_t>(sum, 0) + std::atoll(metrics.c_str() + value + 1);
    }
    pos = end;
  }
  return sum;
}

std::string MetricsText(const Server& server) {
  Client client(server, server.admin_secret());
  auto r = client.Get("/metrics");
  return r.status == 200 ? r.body : std::string();
}

// The stores' memory as the server reports it (drivers' gauges; empty when the
// server has none): RocksDB block caches (all databases), table readers'
// memory outside them, memtables, DuckDB's buffer manager.
std::string StoreMemory(const std::string& metrics) {
  auto mib = [&](const char* name) { return static_cast<double>(MetricSum(metrics, name)) / (1 << 20); };
  if (MetricSum(metrics, "aquifer_rocksdb_block_cache_usage_bytes") < 0) return "";
  char text[256];
  std::snprintf(text, sizeof text,
                "RocksDB block caches %.0f MiB (pinned %.0f), table readers %.1f, memtables %.0f; DuckDB %.0f MiB",
                mib("aquifer_rocksdb_block_cache_usage_bytes"), mib("aquifer_rocksdb_block_cache_pinned_bytes"),
                mib("aquifer_rocksdb_table_readers_bytes"), mib("aquifer_rocksdb_memtables_bytes"),
                mib("aquifer_duckdb_memory_bytes"));
  return text;
}

// Bytes the stores' memory gauges report in use (caches, memtables, table
// readers, DuckDB's buffer pool), or -1 when the server exports none.
int64_t StoreBytes(const std::string& metrics) {
  if (MetricSum(metrics, "aquifer_rocksdb_block_cache_usage_bytes") < 0) return -1;
  int64_t total = 0;
  for (const char* name : {"aquifer_rocksdb_block_cache_usage_bytes", "aquifer_rocksdb_table_readers_bytes",
                           "aquifer_rocksdb_memtables_bytes", "aquifer_duckdb_memory_bytes"}) {
    total += std::max<int64_t>(0, MetricSum(metrics, name));
  }
  return total;
}

int64_t Metric(const Server& server, const std::string& sample) {
  Client client(server, server.admin_secret());
  auto r = client.Get("/metrics");
  return r.status == 200 ? MetricValue(r.body, sample) : -1;
}

// --- many WebSocket subscribers on one client thread ------------------------------------------

// N subscriptions on kThreads io_contexts (one thread each, the
// subscriptions spread round-robin): each connects, upgrades,
// sends its subscribe message and reads; a records message is scanned for
// "sent_us": values (no JSON parse: 1000 subscribers receive a lot) and each
// gives one latency sample, arrival - sent, in ms.
class Subscribers {
 public:
  Subscribers(const Server& server, std::string cursor) : server_(server), cursor_(std::move(cursor)) {}
  ~Subscribers() { Stop(); }

  // Opens `n` more subscriptions; answers once all are subscribed (handshake
  // and subscribe message written) or failed.
  void Open(int n) {
    if (threads_.empty()) {
      for (int t = 0; t < kThreads; ++t) {
        iocs_.push_back(std::make_unique<asio::io_context>(1));
        work_.emplace_back(asio::make_work_guard(*iocs_.back()));
      }
    }
    for (int i = 0; i < n; ++i) {
      auto sub = std::make_shared<Sub>(*iocs_[subs_.size() % iocs_.size()]);
      subs_.push_back(sub);
      Start(sub);
    }
    if (threads_.empty()) {
      for (auto& ioc : iocs_) threads_.emplace_back([&ioc] { ioc->run(); });
    }
    auto deadline = SteadyClock::now() + std::chrono::seconds(120);
    while (ready_.load() + failed_.load() < static_cast<int64_t>(subs_.size()) && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
  }
  void Stop() {
    if (threads_.empty()) return;
    for (auto& ioc : iocs_) ioc->stop();
    for (auto& thread : threads_) thread.join();
    threads_.clear();
    for (auto& sub : subs_) {
      beast::error_code ec;
      beast::get_lowest_layer(sub->ws).socket().close(ec);
    }
    work_.clear();
  }
  void set_recording(bool on) { recording_ = on; }
  int64_t ready() const { return ready_.load(); }
  int64_t failed() const { return failed_.load(); }
  int64_t records() const { return records_.load(); }
  int64_t messages() const { return messages_.load(); }
  std::string first_error() {
    std::lock_guard lock(mu_);
    return first_error_;
  }
  // Bytes the server has sent that sit unread in the client's receive buffers,
  // summed over every subscription (FIONREAD): the client's own backlog.
  int64_t UnreadBytes() {
    int64_t total = 0;
    for (auto& sub : subs_) {
      int n = 0;
      if (::ioctl(beast::get_lowest_layer(sub->ws).socket().native_handle(), FIONREAD, &n) == 0) total += n;
    }
    return total;
  }
  std::vector<double> TakeSamples() {
    std::lock_guard lock(mu_);
    return std::move(samples_);
  }
  // The send time (us) of each sample, in the same order.
  std::vector<int64_t> TakeSentTimes() {
    std::lock_guard lock(mu_);
    return std::move(sent_us_);
  }

 private:
  struct Sub {
    explicit Sub(asio::io_context& ioc) : ws(ioc) {}
    websocket::stream<beast::tcp_stream> ws;
    std::vector<char> raw;  // bytes received, not yet cut into frames: [0, filled)
    size_t filled = 0;
    std::string message;    // a fragmented message's frames so far
    std::string subscribe;
  };

  void Fail(const std::string& what) {
    ++failed_;
    std::lock_guard lock(mu_);
    if (first_error_.empty()) first_error_ = what;
  }

  void Start(const std::shared_ptr<Sub>& sub) {
    tcp::endpoint endpoint(asio::ip::make_address(server_.host()), static_cast<uint16_t>(server_.port()));
    beast::get_lowest_layer(sub->ws).async_connect(endpoint, [this, sub](beast::error_code ec) {
      if (ec) return Fail("connect: " + ec.message());
      beast::get_lowest_layer(sub->ws).socket().set_option(tcp::no_delay(true), ec);
      std::string secret = server_.admin_secret();
      sub->ws.set_option(websocket::stream_base::decorator([secret](websocket::request_type& req) {
        req.set(beast::http::field::authorization, "Bearer " + secret);
      }));
      std::string host = server_.host() + ":" + std::to_string(server_.port());
      sub->ws.async_handshake(host, "/v1/subscribe", [this, sub](beast::error_code ec) {
        if (ec) return Fail("handshake: " + ec.message());
        sub->subscribe = json{{"type", "subscribe"}, {"cursor", cursor_}}.dump();
        sub->ws.text(true);
        sub->ws.async_write(asio::buffer(sub->subscribe), [this, sub](beast::error_code ec, size_t) {
          if (ec) return Fail("subscribe: " + ec.message());
          ++ready_;
          Read(sub);
        });
      });
    });
  }

  // After the handshake the client reads the socket itself: one receive takes
  // whatever arrived (16 KiB at a time) and the server's frames are cut out
  // of it here (never masked; a fragmented message is put together from its
  // frames, as an older server sends them). Beast's read took ~2.75 receives
  // per message (its frame-header buffer, the payload, the next try) plus a
  // UTF-8 check: with 1000 subscribers the client, on the server's cores,
  // cost as much CPU per message as the server.
  void Read(const std::shared_ptr<Sub>& sub) {
    if (sub->raw.size() - sub->filled < kReadChunk) sub->raw.resize(sub->filled + kReadChunk);
    beast::get_lowest_layer(sub->ws).socket().async_read_some(
        asio::buffer(sub->raw.data() + sub->filled, sub->raw.size() - sub->filled),
        [this, sub](beast::error_code ec, size_t n) {
          if (ec) {
            if (ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor) Fail("read: " + ec.message());
            return;
          }
          const int64_t arrival = NowUs();
          sub->filled += n;
          size_t at = 0;
          while (sub->filled - at >= 2) {
            const auto* p = reinterpret_cast<const uint8_t*>(sub->raw.data() + at);
            const bool fin = (p[0] & 0x80) != 0;
            const int opcode = p[0] & 0x0f;
            uint64_t length = p[1] & 0x7f;
            size_t header = 2 + (length == 126 ? 2 : length == 127 ? 8 : 0) + ((p[1] & 0x80) != 0 ? 4 : 0);
            if (sub->filled - at < header) break;
            if (length >= 126) {
              const size_t bytes = length == 126 ? 2 : 8;
              length = 0;
              for (size_t i = 0; i < bytes; ++i) length = (length << 8) | p[2 + i];
            }
            if (sub->filled - at < header + length) break;
            std::string_view payload(sub->raw.data() + at + header, length);
            at += header + length;
            if (opcode == 0x8) return;  // the server closed
            if (opcode != 0x0 && opcode != 0x1) continue;  // ping/pong: nothing to do here
            if (fin && sub->message.empty()) {
              Received(payload, arrival);
            } else {
              sub->message.append(payload);
              if (fin) {
                Received(sub->message, arrival);
                sub->message.clear();
              }
            }
          }
          if (at > 0) {
            std::memmove(sub->raw.data(), sub->raw.data() + at, sub->filled - at);
            sub->filled -= at;
          }
          Read(sub);
        });
  }

  // One records message: a latency sample per record ("sent_us" scanned, no JSON parse).
  void Received(std::string_view text, int64_t arrival) {
    if (text.find("\"type\":\"records\"") == std::string_view::npos) {
      Fail("unexpected message: " + std::string(text.substr(0, 200)));
      return;
    }
    static constexpr std::string_view kTag = "\"sent_us\":";
    std::vector<double> local;
    std::vector<int64_t> local_sent;
    size_t pos = 0;
    int64_t n = 0;
    while ((pos = text.find(kTag, pos)) != std::string_view::npos) {
      pos += kTag.size();
      int64_t sent = std::strtoll(text.data() + pos, nullptr, 10);
      ++n;
      if (recording_ && sent > 0) {
        local.push_back(static_cast<double>(arrival - sent) / 1000.0);
        local_sent.push_back(sent);
      }
    }
    records_ += n;
    ++messages_;
    if (!local.empty()) {
      std::lock_guard lock(mu_);
      samples_.insert(samples_.end(), local.begin(), local.end());
      sent_us_.insert(sent_us_.end(), local_sent.begin(), local_sent.end());
    }
  }
  static constexpr size_t kReadChunk = 16 * 1024;

  // Client threads, each an epoll loop over its share of the subscriptions:
  // one thread reading 1000 sockets would itself be the bottleneck.
  static constexpr int kThreads = 2;

  const Server& server_;
  std::string cursor_;
  std::vector<std::unique_ptr<asio::io_context>> iocs_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::vector<std::shared_ptr<Sub>> subs_;
  std::atomic<int64_t> ready_{0}, failed_{0}, records_{0}, messages_{0};
  std::atomic<bool> recording_{false};
  std::mutex mu_;
  std::vector<double> samples_;
  std::vector<int64_t> sent_us_;
  std::string first_error_;
};

std::string ChangeCursor(const Server& server, const std::string& path) {
  Client admin(server, server.admin_secret());
  auto r = admin.Get(path + "/records?limit=1");
  return r.is_json ? r.j().value("change_cursor", "") : "";
}

// --- goal 2: write → subscriber --------------------------------------------------------------

struct LatencyRun {
  int subscribers = 0;
  int per_s = 0;
  std::vector<double> delivery_ms;
  std::vector<double> p99_by_second;  // delivery p99 of the records written in each second of the run
  std::vector<double> write_ms;
  double achieved_per_s = 0;
  int64_t sent = 0, delivered = 0, expected = 0, write_errors = 0, failed = 0;
  int64_t messages = 0;  // records messages the subscribers received
  // CPU (core-seconds) of this bench process (writer and subscriber threads) and of
  // the server from the first write to the last delivery, and that wall time:
  // with 1000 subscribers the client reads as much as the server sends, on the same cores.
  double client_cpu_s = 0, server_cpu_s = 0, wall_s = 0;
  // The client's unread bytes per subscription, sampled every 100 ms while writing
  // (Subscribers::UnreadBytes): what of the delivery latency is the client's.
  std::vector<double> unread_per_sub;
  std::string error;
};

LatencyRun WriteToSubscribers(const Server& server, const std::string& path, int subscribers, double seconds,
                              int per_s = 10'000) {
  LatencyRun out;
  out.per_s = per_s;
  out.subscribers = subscribers;
  std::string cursor = ChangeCursor(server, path);
  if (cursor.empty()) {
    out.error = "no change cursor";
    return out;
  }
  Subscribers subs(server, cursor);
  subs.Open(subscribers);
  out.failed = subs.failed();
  if (subs.failed() > 0) out.error = subs.first_error();
  std::this_thread::sleep_for(500ms);  // sessions read their (empty) first page and wait
  subs.set_recording(true);
  const int64_t records_before = subs.records();
  const int64_t messages_before = subs.messages();
  Client c(server, server.admin_secret());
  // Paced: every 1 ms, the records due by then (per_s / 1000 of them; catching up after a slow request).
  const double per_ms = per_s / 1000.0;
  static std::atomic<int64_t> id_base{0};
  int64_t next_id = 0;
  const int64_t base = id_base.fetch_add(1'000'000'000);
  const double client_cpu0 = ProcessCpuSeconds(0), server_cpu0 = ProcessCpuSeconds(server.pid());
  std::atomic<bool> writing{true};
  std::thread sampler([&] {
    while (writing.load()) {
      std::this_thread::sleep_for(100ms);
      out.unread_per_sub.push_back(static_cast<double>(subs.UnreadBytes()) / std::max<int64_t>(1, subs.ready()));
    }
  });
  auto start = SteadyClock::now();
  const int64_t start_us = NowUs();
  while (Seconds(SteadyClock::now() - start) < seconds) {
    const double elapsed_ms = std::floor(Seconds(SteadyClock::now() - start) * 1000.0);
    int64_t due = static_cast<int64_t>((elapsed_ms + 1) * per_ms);
    int64_t n = std::min<int64_t>(due - next_id, 1000);
    if (n <= 0) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(static_cast<int64_t>(elapsed_ms + 1) * 1000));
      continue;
    }
    std::string body;
    int64_t now = NowUs();
    for (int64_t i = 0; i < n; ++i) AppendRecord(&body, "lat", base + next_id + i, now);
    auto t0 = SteadyClock::now();
    auto resp = c.PostRaw(path + "/records", body, "application/x-ndjson");
    out.write_ms.push_back(Seconds(SteadyClock::now() - t0) * 1e3);
    if (resp.status != 202) {
      ++out.write_errors;
      if (out.error.empty()) out.error = "write: " + resp.Describe().substr(0, 300);
    } else {
      out.sent += n;
    }
    next_id += n;
  }
  out.achieved_per_s = static_cast<double>(out.sent) / Seconds(SteadyClock::now() - start);
  writing = false;
  sampler.join();
  out.expected = out.sent * subs.ready();
  // Until every subscriber has everything (or 20 s).
  auto drain = SteadyClock::now();
  while (subs.records() - records_before < out.expected && Seconds(SteadyClock::now() - drain) < 20) {
    std::this_thread::sleep_for(20ms);
  }
  out.delivered = subs.records() - records_before;
  out.messages = subs.messages() - messages_before;
  out.wall_s = Seconds(SteadyClock::now() - start);
  out.client_cpu_s = ProcessCpuSeconds(0) - client_cpu0;
  out.server_cpu_s = ProcessCpuSeconds(server.pid()) - server_cpu0;
  subs.Stop();
  out.delivery_ms = subs.TakeSamples();
  {
    const std::vector<int64_t> sent = subs.TakeSentTimes();
    std::vector<std::vector<double>> by_second;
    for (size_t i = 0; i < sent.size() && i < out.delivery_ms.size(); ++i) {
      const int64_t second = (sent[i] - start_us) / 1'000'000;
      if (second < 0) continue;
      if (static_cast<size_t>(second) >= by_second.size()) by_second.resize(static_cast<size_t>(second) + 1);
      by_second[static_cast<size_t>(second)].push_back(out.delivery_ms[i]);
    }
    for (const auto& bucket : by_second) out.p99_by_second.push_back(Percentile(bucket, 0.99));
  }
  if (out.error.empty() && !subs.first_error().empty()) out.error = subs.first_error();
  return out;
}

void PrintLatency(const LatencyRun& r) {
  std::printf("latency/sub x%-5d @%5d/s  delivery p50 %7.2f  p99 %7.2f  max %8.2f ms | writer %6.0f rec/s, request p50 "
              "%5.2f p99 %6.2f ms | delivered %lld/%lld%s\n",
              r.subscribers, r.per_s, Percentile(r.delivery_ms, 0.5), Percentile(r.delivery_ms, 0.99),
              r.delivery_ms.empty() ? 0.0 : *std::max_element(r.delivery_ms.begin(), r.delivery_ms.end()),
              r.achieved_per_s, Percentile(r.write_ms, 0.5), Percentile(r.write_ms, 0.99),
              static_cast<long long>(r.delivered), static_cast<long long>(r.expected),
              r.failed > 0 ? (" (" + std::to_string(r.failed) + " subscriptions failed)").c_str() : "");
  if (r.wall_s > 0) {
    std::printf("  over %.1f s (first write to last delivery): %lld messages (%.1f records each, %.0f/s); cpu: "
                "client %.2f cores (%.1f us per message), server %.2f cores\n",
                r.wall_s, static_cast<long long>(r.messages),
                r.messages > 0 ? static_cast<double>(r.delivered) / r.messages : 0.0, r.messages / r.wall_s,
                r.client_cpu_s / r.wall_s, r.messages > 0 ? r.client_cpu_s * 1e6 / r.messages : 0.0,
                r.server_cpu_s / r.wall_s);
    if (r.subscribers > 1) {
      std::printf("  delivery p99 of the records written in each second:");
      for (double p99 : r.p99_by_second) std::printf(" %.0f", p99);
      std::printf(" ms\n");
    }
    std::printf("  unread at the client per subscription (FIONREAD, every 100 ms while writing): p50 %.0f, max %.0f "
                "bytes\n",
                Percentile(r.unread_per_sub, 0.5),
                r.unread_per_sub.empty() ? 0.0 : *std::max_element(r.unread_per_sub.begin(), r.unread_per_sub.end()));
  }
  if (!r.error.empty()) std::printf("  error: %s\n", r.error.c_str());
}

// --- goal 3: lookups vs /healthz ---------------------------------------------------------------

double RequestRate(const Server& server, const std::function<std::string(std::mt19937&)>& target, double seconds,
                   std::string* error) {
  std::vector<std::thread> threads;
  std::atomic<int64_t> ok{0};
  std::mutex mu;
  auto start = SteadyClock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937 rng(static_cast<unsigned>(c + 1 + start.time_since_epoch().count()));
      Client client(server, server.admin_secret());
      while (Seconds(SteadyClock::now() - start) < seconds) {
        auto r = client.Get(target(rng));
        if (r.status == 200) {
          ++ok;
        } else {
          std::lock_guard lock(mu);
          if (error->empty()) *error = r.Describe().substr(0, 300);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return static_cast<double>(ok) / Seconds(SteadyClock::now() - start);
}

void Lookups(const Server& server, const std::string& path) {
  // 10,000 keys to look up.
  Client admin(server, server.admin_secret());
  for (int b = 0; b < 10; ++b) {
    std::string body;
    for (int i = 0; i < 1000; ++i) AppendRecord(&body, "look", b * 1000 + i, 0);
    auto r = admin.PostRaw(path + "/records?wait=index", body, "application/x-ndjson");
    if (r.status != 200) std::printf("lookup: setup write failed: %s\n", r.Describe().c_str());
  }
  const std::string lookup_path = path + "/records?limit=1&filter=";
  auto lookup = [&](std::mt19937& rng) {
    json filter = {{"user", "look"}, {"id", static_cast<int64_t>(rng() % 10000)}};
    return lookup_path + UrlEncode(filter.dump());
  };
  auto healthz = [](std::mt19937&) { return std::string("/healthz"); };
  std::string error;
  RequestRate(server, lookup, 1, &error);  // warm-up
  std::vector<double> ratios, lookups, healths;
  for (int round = 0; round < 5; ++round) {
    double l = RequestRate(server, lookup, 2, &error);
    double h = RequestRate(server, healthz, 2, &error);
    lookups.push_back(l);
    healths.push_back(h);
    ratios.push_back(h > 0 ? l / h : 0);
  }
  std::printf("lookup/http    req/s per round:");
  for (double l : lookups) std::printf(" %.0f", l);
  std::printf("\nlookup/healthz req/s per round:");
  for (double h : healths) std::printf(" %.0f", h);
  std::printf("\nlookup/http vs /healthz: median of 5 pairs %.1f%% (min %.1f%%, max %.1f%%)   (target >= 50%%)\n",
              100 * Percentile(ratios, 0.5), 100 * *std::min_element(ratios.begin(), ratios.end()),
              100 * *std::max_element(ratios.begin(), ratios.end()));
  if (!error.empty()) std::printf("  first error: %s\n", error.c_str());
}

// --- goal 4: idle subscriptions, memory while ingesting ----------------------------------------

void IdleSubscriptions(const Server& server, const std::string& path) {
  std::string cursor = ChangeCursor(server, path);
  std::this_thread::sleep_for(1s);
  const int64_t before = RssKiB(server.pid());
  Subscribers subs(server, cursor);
  int open = 0;
  for (int target : {1000, 10000}) {
    subs.Open(target - open);
    open = target;
    // Until the server holds them all (and they read their first page).
    auto deadline = SteadyClock::now() + std::chrono::seconds(60);
    while (Metric(server, "aquifer_ws_sessions") < subs.ready() && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(100ms);
    }
    std::this_thread::sleep_for(2s);
    const int64_t sessions = Metric(server, "aquifer_ws_sessions");
    const int64_t rss = RssKiB(server.pid());
    std::printf("idle/subscriptions %6d: server RSS %7.1f MiB (before %7.1f MiB), %lld sessions; %.1f KiB per "
                "subscription   (target <= 64 KiB)%s\n",
                target, rss / 1024.0, before / 1024.0, static_cast<long long>(sessions),
                sessions > 0 ? static_cast<double>(rss - before) / static_cast<double>(sessions) : 0.0,
                subs.failed() > 0 ? (" " + std::to_string(subs.failed()) + " failed: " + subs.first_error()).c_str()
                                  : "");
  }
  subs.Stop();
}

// The memory the server's configuration lets its stores hold, in bytes:
// DuckDB's memory_limit (as the bench configures it) and, per RocksDB
// database under the data directory (its newest OPTIONS file: the options the
// server opened it with), every column family's memtables (write_buffer_size
// x max_write_buffer_number) plus the block cache RocksDB 7 makes when none is
// configured (8 MiB per database). `detail` says what it counted.
int64_t ConfiguredCacheBytes(const std::string& data_dir, int64_t duckdb_limit, const std::string& metrics,
                             std::string* detail) {
  int64_t total = duckdb_limit;
  *detail = "DuckDB memory_limit " + std::to_string(duckdb_limit >> 20) + " MiB";
  // A server that reports its RocksDB caches and memtable limits (/metrics): those.
  const int64_t caches = MetricSum(metrics, "aquifer_rocksdb_block_cache_capacity_bytes");
  const int64_t memtables = MetricSum(metrics, "aquifer_rocksdb_memtables_limit_bytes");
  if (caches >= 0 && memtables >= 0) {
    *detail += "; RocksDB (all databases, from /metrics): memtables up to " + std::to_string(memtables >> 20) +
               " MiB + block caches " + std::to_string(caches >> 20) + " MiB";
    return total + caches + memtables;
  }
  std::map<std::string, std::filesystem::path> newest;  // database dir -> newest OPTIONS file
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(data_dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("OPTIONS-", 0) != 0 || name.find(".dbtmp") != std::string::npos) continue;
    auto number = [](const std::filesystem::path& p) { return std::atoll(p.filename().string().c_str() + 8); };
    auto& slot = newest[it->path().parent_path().string()];
    if (slot.empty() || number(it->path()) > number(slot)) slot = it->path();
  }
  for (const auto& [dir, file] : newest) {
    std::ifstream in(file);
    std::string line;
    int64_t families = 0, memtables = 0, write_buffer = 0, buffers = 0;
    bool in_family = false;
    auto close_family = [&] {
      if (in_family) memtables += write_buffer * buffers;
      in_family = false;
    };
    while (std::getline(in, line)) {
      if (line.rfind("[", 0) == 0) {
        close_family();
        if (line.rfind("[CFOptions", 0) == 0) {
          in_family = true;
          ++families;
          write_buffer = 64 << 20;  // RocksDB's defaults, unless the file says otherwise
          buffers = 2;
        }
        continue;
      }
      if (!in_family) continue;
      auto value = [&](const char* key) -> int64_t {
        size_t at = line.find(key);
        return at == std::string::npos ? -1 : std::atoll(line.c_str() + at + std::strlen(key));
      };
      if (int64_t v = value(" write_buffer_size="); v >= 0) write_buffer = v;
      if (int64_t v = value(" max_write_buffer_number="); v >= 0) buffers = v;
    }
    close_family();
    const int64_t block_cache = 8 << 20;
    total += memtables + block_cache;
    *detail += "; RocksDB " + std::filesystem::relative(dir, data_dir).string() + ": " +
               std::to_string(families) + " families, memtables up to " + std::to_string(memtables >> 20) +
               " MiB + block cache 8 MiB";
  }
  return total;
}

// Ingests `records` records with wait=index and samples the server's RSS.
void MemoryIngest(const Server& server, const std::string& path, int64_t records) {
  std::atomic<int64_t> next{0}, written{0}, errors{0};
  std::string first_error;
  std::mutex mu;
  std::vector<std::thread> threads;
  auto start = SteadyClock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Client client(server, server.admin_secret());
      std::string user = "m" + std::to_string(c);
      std::string body;
      for (;;) {
        int64_t batch = next.fetch_add(1000);
        if (batch >= records) break;
        body.clear();
        for (int64_t i = 0; i < 1000 && batch + i < records; ++i) AppendRecord(&body, user, batch + i, 0);
        auto r = client.PostRaw(path + "/records?wait=index", body, "application/x-ndjson");
        if (r.status == 200) {
          written += std::min<int64_t>(1000, records - batch);
        } else {
          ++errors;
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = r.Describe().substr(0, 300);
        }
      }
    });
  }
  std::vector<std::pair<int64_t, int64_t>> samples;  // (records written, RSS KiB)
  std::vector<int64_t> outside;  // per sample: RSS minus what the stores' gauges hold (KiB)
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      samples.emplace_back(written.load(), RssKiB(server.pid()));
      if (int64_t held = StoreBytes(MetricsText(server)); held >= 0) {
        outside.push_back(samples.back().second - held / 1024);
      }
      if (samples.size() % 15 == 1) {  // every 30 s, so a long run shows its progress
        std::string stores = StoreMemory(MetricsText(server));
        std::printf("  memory/ingest: %lld records after %.0f s, server RSS %.0f MiB%s%s\n",
                    static_cast<long long>(samples.back().first), Seconds(SteadyClock::now() - start),
                    samples.back().second / 1024.0, stores.empty() ? "" : "; ", stores.c_str());
      }
      for (int i = 0; i < 20 && !done; ++i) std::this_thread::sleep_for(100ms);
    }
  });
  for (auto& t : threads) t.join();
  const double s = Seconds(SteadyClock::now() - start);
  done = true;
  sampler.join();
  samples.emplace_back(written.load(), RssKiB(server.pid()));
  int64_t max_rss = 0, min_rss = std::numeric_limits<int64_t>::max();
  for (auto& [n, rss] : samples) {
    max_rss = std::max(max_rss, rss);
    min_rss = std::min(min_rss, rss);
  }
  // Flat: the highest RSS of the last third of the run against that of the first third.
  const size_t third = std::max<size_t>(1, samples.size() / 3);
  int64_t first_max = 0, last_max = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (i < third) first_max = std::max(first_max, samples[i].second);
    if (i >= samples.size() - third) last_max = std::max(last_max, samples[i].second);
  }
  std::printf("memory/ingest: %lld records in %.0f s (%.0f rec/s, wait=index, %lld errors); server RSS (MiB) at "
              "each tenth of the run:",
              static_cast<long long>(written.load()), s, static_cast<double>(written.load()) / s,
              static_cast<long long>(errors.load()));
  for (int tenth = 1; tenth <= 10; ++tenth) {
    int64_t want = records * tenth / 10;
    auto it = std::find_if(samples.begin(), samples.end(), [&](auto& p) { return p.first >= want; });
    if (it == samples.end()) it = samples.end() - 1;
    std::printf(" %.0f", it->second / 1024.0);
  }
  std::printf("; max %.0f MiB   (target: flat, <= 512 MiB + configured caches)\n", max_rss / 1024.0);
  std::string detail;
  const std::string metrics = MetricsText(server);
  if (std::string stores = StoreMemory(metrics); !stores.empty()) {
    std::printf("memory/stores at the end: %s\n", stores.c_str());
  }
  const int64_t caches = ConfiguredCacheBytes(server.data_dir(), DuckDbMemoryLimit(), metrics, &detail);
  const double bound_mib = 512.0 + static_cast<double>(caches) / (1 << 20);
  const bool flat = last_max <= first_max + first_max / 10;
  std::printf("memory/bound: configured caches %.0f MiB (%s): bound %.0f MiB\n",
              static_cast<double>(caches) / (1 << 20), detail.c_str(), bound_mib);
  std::printf("memory/rss: min %.0f, max %.0f, last %.0f MiB over %zu samples: %s the bound; highest of the first "
              "third %.0f MiB, of the last third %.0f MiB: %s\n",
              min_rss / 1024.0, max_rss / 1024.0, samples.back().second / 1024.0, samples.size(),
              max_rss / 1024.0 <= bound_mib ? "under" : "OVER", first_max / 1024.0, last_max / 1024.0,
              flat ? "flat (within 10%)" : "GROWING (last third over the first by more than 10%)");
  // The peaks above follow the memtables filling and flushing (up to ~150 MiB here); the
  // medians of the same thirds show a trend under that swing.
  auto median = [&](size_t from, size_t to) {
    std::vector<int64_t> values;
    for (size_t i = from; i < to && i < samples.size(); ++i) values.push_back(samples[i].second);
    if (values.empty()) return int64_t{0};
    std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
    return values[values.size() / 2];
  };
  const int64_t first_median = median(0, third), last_median = median(samples.size() - third, samples.size());
  std::printf("memory/trend: median RSS of the first third %.0f MiB, of the last third %.0f MiB: %s\n",
              first_median / 1024.0, last_median / 1024.0,
              last_median <= first_median + first_median / 10 ? "level (within 10%)" : "rising (by more than 10%)");
  // The first third includes the caches and memtables filling from empty; once they are
  // full (a small DuckDB memory_limit gets there within the run), the middle and last
  // thirds show whether anything else keeps growing.
  const int64_t middle_median = median(third, samples.size() - third);
  std::printf("memory/steady: median RSS of the middle third %.0f MiB, of the last third %.0f MiB: %s\n",
              middle_median / 1024.0, last_median / 1024.0,
              last_median <= middle_median + middle_median / 10 ? "level (within 10%)" : "rising (by more than 10%)");
  // What the caches and memtables hold grows to their configured limits by
  // design; the rest of the process (sessions, buffers, queues, allocator
  // slack) is what must not grow with the records ingested.
  if (outside.size() >= 3) {
    const size_t part = outside.size() / 3;
    const int64_t early = *std::max_element(outside.begin(), outside.begin() + part);
    const int64_t late = *std::max_element(outside.end() - part, outside.end());
    std::printf("memory/outside the stores: RSS minus the block caches, memtables, table readers and DuckDB's "
                "buffer pool: highest of the first third %.0f MiB, of the last third %.0f MiB: %s\n",
                early / 1024.0, late / 1024.0,
                late <= early + early / 10 + 16 * 1024 ? "flat (within 10% + 16 MiB)" : "GROWING");
  }
  if (!first_error.empty()) std::printf("  first error: %s\n", first_error.c_str());
}

// --- goal 5: SQL through the engine vs DuckDB ---------------------------------------------------

// One query through the engine as a client (the CLI, the Python client) runs
// it: POST /v1/sql with wait_ms, which answers a finished job's first page;
// then every further page. A server without wait_ms (an older build, 400) or
// a job still running after it: poll the job, then read every page. Answers
// ms, or -1.
double SqlThroughEngine(Client& client, const std::string& sql, int64_t* rows, std::string* error) {
  auto t0 = SteadyClock::now();
  auto answered = client.Post("/v1/sql", {{"query", sql}, {"wait_ms", 10000}, {"limit", 1000}});
  if (answered.status == 200 && answered.is_json && answered.j().value("status", "") == "done" &&
      answered.j().contains("data")) {
    *rows = static_cast<int64_t>(answered.j()["data"].size());
    std::string job = answered.j().value("job_id", "");
    std::string cursor = answered.j()["next_cursor"].is_string() ? answered.j()["next_cursor"].get<std::string>() : "";
    while (!cursor.empty()) {
      auto page = client.Get("/v1/jobs/" + job + "/rows?limit=1000&cursor=" + cursor);
      if (page.status != 200) {
        *error = page.Describe().substr(0, 300);
        return -1;
      }
      *rows += static_cast<int64_t>(page.j()["data"].size());
      cursor = page.j()["next_cursor"].is_string() ? page.j()["next_cursor"].get<std::string>() : "";
    }
    return Seconds(SteadyClock::now() - t0) * 1e3;
  }
  std::string job;
  if ((answered.status == 200 || answered.status == 202) && answered.is_json) {
    job = answered.j().value("job_id", "");  // still running after wait_ms
  } else if (answered.status == 400) {
    auto submitted = client.Post("/v1/sql", {{"query", sql}});  // a server without wait_ms
    if (submitted.status != 202) {
      *error = submitted.Describe().substr(0, 300);
      return -1;
    }
    job = submitted.j().value("job_id", "");
  } else {
    *error = answered.Describe().substr(0, 300);
    return -1;
  }
  for (;;) {
    auto status = client.Get("/v1/jobs/" + job);
    std::string state = status.is_json ? status.j().value("status", "") : "";
    if (state == "done") break;
    if (state != "pending" && state != "running") {
      *error = status.Describe().substr(0, 300);
      return -1;
    }
    std::this_thread::sleep_for(200us);
  }
  *rows = 0;
  std::string cursor;
  do {
    auto page = client.Get("/v1/jobs/" + job + "/rows?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor));
    if (page.status != 200) {
      *error = page.Describe().substr(0, 300);
      return -1;
    }
    *rows += static_cast<int64_t>(page.j()["data"].size());
    cursor = page.j()["next_cursor"].is_string() ? page.j()["next_cursor"].get<std::string>() : "";
  } while (!cursor.empty());
  return Seconds(SteadyClock::now() - t0) * 1e3;
}

// The same query run directly on DuckDB, every value of every row fetched. Answers ms, or -1.
double SqlDirect(duckdb_connection conn, const std::string& sql, int64_t* rows, std::string* error) {
  auto t0 = SteadyClock::now();
  duckdb_result result;
  if (duckdb_query(conn, sql.c_str(), &result) != DuckDBSuccess) {
    *error = duckdb_result_error(&result);
    duckdb_destroy_result(&result);
    return -1;
  }
  idx_t n = duckdb_row_count(&result), cols = duckdb_column_count(&result);
  size_t bytes = 0;
  for (idx_t r = 0; r < n; ++r) {
    for (idx_t c = 0; c < cols; ++c) {
      char* v = duckdb_value_varchar(&result, c, r);
      if (v != nullptr) bytes += std::strlen(v);
      duckdb_free(v);
    }
  }
  duckdb_destroy_result(&result);
  *rows = static_cast<int64_t>(n) + static_cast<int64_t>(bytes * 0);
  return Seconds(SteadyClock::now() - t0) * 1e3;
}

void Sql(Server& server, const std::string& scratch, const std::string& project, const std::string& table) {
  // The warehouse must hold everything the index does, then a stopped server's file is copied.
  auto deadline = SteadyClock::now() + std::chrono::seconds(300);
  while (SteadyClock::now() < deadline &&
         Metric(server, "aquifer_records_written_total{store=\"warehouse\"}") <
             Metric(server, "aquifer_records_written_total{store=\"index\"}")) {
    std::this_thread::sleep_for(100ms);
  }
  server.Stop();
  std::string warehouse_file;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(server.data_dir())) {
    if (entry.path().extension() == ".duckdb") warehouse_file = entry.path().string();
  }
  if (warehouse_file.empty()) {
    std::printf("sql: FAILED: no .duckdb file under %s\n", server.data_dir().c_str());
    return;
  }
  const std::string copy = scratch + "/direct.duckdb";
  std::filesystem::copy_file(warehouse_file, copy, std::filesystem::copy_options::overwrite_existing);
  if (std::filesystem::exists(warehouse_file + ".wal")) {
    std::filesystem::copy_file(warehouse_file + ".wal", copy + ".wal",
                               std::filesystem::copy_options::overwrite_existing);
  }
  try {
    server.Start();
  } catch (const std::exception& e) {
    std::printf("sql: FAILED to restart the server: %s\n", std::string(e.what()).substr(0, 300).c_str());
    return;
  }
  duckdb_database db;
  duckdb_connection conn;
  if (duckdb_open(copy.c_str(), &db) != DuckDBSuccess || duckdb_connect(db, &conn) != DuckDBSuccess) {
    std::printf("sql: FAILED to open the copy %s\n", copy.c_str());
    return;
  }
  // The physical table: the one with the schema's columns and the most rows.
  std::string physical;
  {
    duckdb_result result;
    if (duckdb_query(conn,
                     "SELECT table_schema || '.' || table_name FROM information_schema.columns "
                     "WHERE column_name = 'payload' ORDER BY 1",
                     &result) == DuckDBSuccess) {
      int64_t best = -1;
      for (idx_t r = 0; r < duckdb_row_count(&result); ++r) {
        char* name = duckdb_value_varchar(&result, 0, r);
        duckdb_result count;
        std::string q = "SELECT count(*) FROM " + std::string(name);
        if (duckdb_query(conn, q.c_str(), &count) == DuckDBSuccess) {
          int64_t n = duckdb_value_int64(&count, 0, 0);
          if (n > best) {
            best = n;
            physical = name;
          }
        }
        duckdb_destroy_result(&count);
        duckdb_free(name);
      }
    }
    duckdb_destroy_result(&result);
  }
  if (physical.empty()) {
    std::printf("sql: FAILED: no warehouse table in the copy\n");
    duckdb_disconnect(&conn);
    duckdb_close(&db);
    return;
  }
  const std::string logical = project + "." + table;
  struct Query {
    const char* name;
    std::string sql;  // with {T} for the table
    // One record written to the table (wait=warehouse, not timed) before each engine run: the
    // warehouse's plan cache must plan again (the rows it planned on changed), as under ingest.
    bool write_before = false;
  };
  std::vector<Query> queries = {
      {"aggregate", "SELECT user, count(*) AS n, avg(value) AS v FROM {T} GROUP BY user ORDER BY user"},
      {"selective", "SELECT id, value, payload FROM {T} WHERE id = 4242"},
      {"rows-1000", "SELECT user, id, value FROM {T} WHERE id < 250 ORDER BY user, id"},
      {"sel+write", "SELECT id, value, payload FROM {T} WHERE id = 4242", true},
  };
  auto with = [](std::string sql, const std::string& t) {
    sql.replace(sql.find("{T}"), 3, t);
    return sql;
  };
  Client client(server, server.admin_secret());
  // AQUIFER_BENCH_SQL_ROUNDS: alternating runs per query after one warm-up (default 20; more
  // for a steadier p50 on a loaded machine, or to profile the server).
  int rounds = 20;
  if (const char* env = std::getenv("AQUIFER_BENCH_SQL_ROUNDS"); env != nullptr && std::atoi(env) > 0) {
    rounds = std::atoi(env);
  }
  for (const auto& q : queries) {
    std::vector<double> engine_ms, direct_ms;
    int64_t engine_rows = 0, direct_rows = 0;
    std::string error;
    for (int i = 0; i <= rounds; ++i) {
      if (q.write_before) {
        std::string body;
        AppendRecord(&body, "w", 100'000'000 + i, 0);
        auto w = client.PostRaw("/v1/projects/" + project + "/tables/" + table + "/records?wait=warehouse", body,
                                "application/x-ndjson");
        if (w.status != 200 && error.empty()) error = "write before the query: " + w.Describe().substr(0, 300);
      }
      double e = SqlThroughEngine(client, with(q.sql, logical), &engine_rows, &error);
      double d = SqlDirect(conn, with(q.sql, physical), &direct_rows, &error);
      if (i == 0) continue;  // warm-up
      if (e >= 0) engine_ms.push_back(e);
      if (d >= 0) direct_ms.push_back(d);
    }
    double pe = Percentile(engine_ms, 0.5), pd = Percentile(direct_ms, 0.5);
    std::printf("sql/%-10s engine p50 %8.2f ms (p99 %8.2f, %lld rows) | DuckDB p50 %8.2f ms (%lld rows) | "
                "engine = %.2fx + %.2f ms over 1.10x; target p50 <= %.2f ms: %s\n",
                q.name, pe, Percentile(engine_ms, 0.99), static_cast<long long>(engine_rows), pd,
                static_cast<long long>(direct_rows), pd > 0 ? pe / pd : 0.0, pe - 1.10 * pd, 1.10 * pd + 1.0,
                pe <= 1.10 * pd + 1.0 ? "met" : "NOT met");
    if (!error.empty()) std::printf("  error: %s\n", error.c_str());
  }
  duckdb_disconnect(&conn);
  duckdb_close(&db);
}

bool Wanted(const char* name) {
  const char* only = std::getenv("AQUIFER_BENCH_ONLY");
  if (only == nullptr || *only == 0) return true;
  std::string list = std::string(",") + only + ",";
  return list.find(std::string(",") + name + ",") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // figures appear as they are measured
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
  const int64_t records = argc > 2 ? std::atoll(argv[2]) : 10'000'000;
  TempDir scratch("serve-bench");
  ServerOptions options;
  options.data_dir = scratch.path() + "/server";
  if (const char* bin = std::getenv("AQUIFER_BENCH_SERVER"); bin != nullptr && *bin != 0) options.binary = bin;
  options.start_timeout = std::chrono::seconds(600);  // a restart on 10 M records replays and opens a lot
  options.extra_env = {"AQUIFER_SERVER_MAX_SUBSCRIPTIONS=20000", "AQUIFER_SERVER_MAX_SUBSCRIPTIONS_PER_SECRET=20000",
                       "AQUIFER_WAREHOUSE_MEMORY_LIMIT=" + std::to_string(DuckDbMemoryLimit() >> 20) + "MiB"};
  std::printf("serve_bench: server %s; %.0f s per latency run, %lld records for the memory run\n",
              options.binary.empty() ? AQUIFER_BIN : options.binary.c_str(), seconds,
              static_cast<long long>(records));
  std::printf("load average at the start: %s\n", LoadAverage().c_str());
  Server server(options);
  try {
    server.Start();
  } catch (const std::exception& e) {
    std::printf("serve_bench: FAILED to start the server: %s\n", e.what());
    return 1;
  }
  Client admin(server, server.admin_secret());
  const std::string project = "bench";
  if (admin.Post("/v1/projects", {{"name", project}}).status != 201) {
    std::printf("serve_bench: FAILED to create the project\n");
    return 1;
  }
  for (const char* table : {"latency", "lookup", "idle", "mem"}) {
    auto r = admin.Post("/v1/projects/" + project + "/tables",
                        {{"name", table}, {"schema", BenchSchema()}, {"key", {"user", "id"}}});
    if (r.status != 201) {
      std::printf("serve_bench: FAILED to create table %s: %s\n", table, r.Describe().c_str());
      return 1;
    }
  }
  {  // the same table without a warehouse copy: what the warehouse write adds to the latency
    auto r = admin.Post("/v1/projects/" + project + "/tables", {{"name", "latency_nowh"},
                                                                {"schema", BenchSchema()},
                                                                {"key", {"user", "id"}},
                                                                {"use_warehouse", false}});
    if (r.status != 201) std::printf("serve_bench: create table latency_nowh: %s\n", r.Describe().c_str());
  }
  auto path = [&](const std::string& table) { return "/v1/projects/" + project + "/tables/" + table; };

  if (Wanted("latency1") && !Wanted("latency")) {
    // Only the single-subscriber runs (goal 2's first half), each table twice: a quick A/B.
    std::printf("\n-- write -> 1 subscriber at 10,000 records/s (load %s)\n", LoadAverage().c_str());
    for (int round = 0; round < 2; ++round) {
      PrintLatency(WriteToSubscribers(server, path("latency"), 1, seconds));
      std::printf("without a warehouse copy (use_warehouse false):\n");
      PrintLatency(WriteToSubscribers(server, path("latency_nowh"), 1, seconds));
    }
    std::printf("  load %s; targets: p50 <= 1 ms, p99 <= 5 ms\n", LoadAverage().c_str());
  }
  const bool fanout_only = !Wanted("latency") && Wanted("fanout");
  if (Wanted("latency") || fanout_only) {
    std::printf("\n-- write -> subscriber at 10,000 records/s (load %s)\n", LoadAverage().c_str());
    if (!fanout_only) PrintLatency(WriteToSubscribers(server, path("latency"), 1, seconds));
    // 1000 subscribers at 10,000 records/s is 10 million records (~1 GB of JSON) a second to
    // deliver: more than this bench's client thread (and the 2 cores it shares) can read. The
    // fan-out runs at 1,000 records/s, with the same writer and 1 subscriber as its baseline.
    auto pages = [&] {
      return std::pair{Metric(server, "aquifer_change_pages_read_total"),
                       Metric(server, "aquifer_change_pages_shared_total")};
    };
    // The sessions' loop: change reads per batch sent, waits, wake-ups.
    auto session_counts = [&] {
      std::vector<int64_t> v;
      for (const char* name : {"aquifer_ws_change_reads_total", "aquifer_ws_batches_sent_total",
                               "aquifer_ws_idle_waits_total", "aquifer_ws_wakeups_total"}) {
        v.push_back(Metric(server, name));
      }
      return v;
    };
    PrintLatency(WriteToSubscribers(server, path("latency"), 1, seconds, 1000));
    auto [read0, shared0] = pages();
    const std::vector<int64_t> sessions0 = session_counts();
    PrintLatency(WriteToSubscribers(server, path("latency"), 1000, seconds, 1000));
    auto [read1, shared1] = pages();
    const std::vector<int64_t> sessions1 = session_counts();
    if (sessions1[0] >= 0) {
      std::printf("  sessions: %lld change reads, %lld batches sent, %lld idle waits, %lld wake-ups (aquifer_ws_*_total)\n",
                  static_cast<long long>(sessions1[0] - sessions0[0]), static_cast<long long>(sessions1[1] - sessions0[1]),
                  static_cast<long long>(sessions1[2] - sessions0[2]), static_cast<long long>(sessions1[3] - sessions0[3]));
    }
    if (read1 >= 0) {
      std::printf("  change pages read and rendered: %lld, shared: %lld (aquifer_change_pages_*_total)\n",
                  static_cast<long long>(read1 - read0), static_cast<long long>(shared1 - shared0));
    }
    PrintLatency(WriteToSubscribers(server, path("latency"), 1, seconds, 1000));
    if (!fanout_only) {
      PrintLatency(WriteToSubscribers(server, path("latency"), 1, seconds));
      std::printf("without a warehouse copy (use_warehouse false):\n");
      PrintLatency(WriteToSubscribers(server, path("latency_nowh"), 1, seconds));
    }
    std::printf("  targets: 1 subscriber at 10,000/s p50 <= 1 ms, p99 <= 5 ms; 1000 subscribers p99 <= 50 ms, "
                "writer as with 1\n");
  }
  if (Wanted("lookup")) {
    std::printf("\n-- index point lookups vs /healthz (load %s)\n", LoadAverage().c_str());
    Lookups(server, path("lookup"));
  }
  if (Wanted("idle")) {
    std::printf("\n-- idle subscriptions (load %s)\n", LoadAverage().c_str());
    IdleSubscriptions(server, path("idle"));
  }
  int64_t mem_records = 200'000;
  if (Wanted("memory")) {
    mem_records = records;
    std::printf("\n-- memory while ingesting (load %s; DuckDB memory_limit %lld MiB, RocksDB as the server opens it)\n",
                LoadAverage().c_str(), static_cast<long long>(DuckDbMemoryLimit() >> 20));
    MemoryIngest(server, path("mem"), records);
  } else if (Wanted("sql")) {
    MemoryIngest(server, path("mem"), mem_records);
  }
  if (Wanted("sql")) {
    std::printf("\n-- SQL through the engine vs DuckDB directly, %lld rows (load %s)\n",
                static_cast<long long>(mem_records), LoadAverage().c_str());
    Sql(server, scratch.path(), project, "mem");
  }
  std::printf("\nload average at the end: %s\n", LoadAverage().c_str());
  if (server.running()) server.Stop();
  return 0;
}
