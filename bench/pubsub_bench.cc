// pubsub_bench: the Pub/Sub MessageQueue's publish rate next to raw gRPC Publish calls of
// the same batches, on the same channel settings, in the same run (issue 13 item 7). Figures
// are printed, never asserted (goal: at least 80% of raw).
//
//   publish/driver   MessageQueue::Publish of spans of 100 messages (89 of 100 kB: one call's worth) with ordering keys
//                    (returns once the service answered with their message ids)
//   publish/raw      one google.pubsub.v1.Publisher/Publish call carrying the same 100
//                    messages, on a channel of its own
// Rounds alternate driver/raw so machine load hits both alike; each side publishes for
// `seconds` in total per size. Against the Pub/Sub emulator (Java), not the real service.
//
// Usage: pubsub_bench [seconds=5] [sizes=100,1000,100000]
// AQUIFER_TEST_PUBSUB: the emulator (scripts/bench.sh starts one).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <grpcpp/grpcpp.h>

#include "aquifer/base/clock.h"
#include "aquifer/base/uuid.h"
#include "aquifer/drivers/pubsub/queue.h"
#include "aquifer/drivers/pubsub/testing.h"
#include "google/pubsub/v1/pubsub.grpc.pb.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;
using aquifer::bench::Must;

namespace pb = ::google::pubsub::v1;
namespace ps = aquifer::drivers::pubsub;
using Steady = std::chrono::steady_clock;
constexpr int kMaxSpan = 100;
// Spans are cut to what fits one Publish call (the service takes 10 MB per request; the
// driver splits at ~9 MB), so both sides make one call per span: 89 messages of 100 kB.
int SpanFor(size_t size) { return static_cast<int>(std::min<size_t>(kMaxSpan, 9'000'000 / (size + 64 + 3))); }

double Seconds(Steady::duration d) { return std::chrono::duration<double>(d).count(); }

void RawPublish(pb::Publisher::Stub* stub, const std::string& topic, const std::string& payload, int key_base) {
  const int kSpan = SpanFor(payload.size());
  pb::PublishRequest request;
  request.set_topic(topic);
  for (int i = 0; i < kSpan; ++i) {
    pb::PubsubMessage* m = request.add_messages();
    m->set_data(payload);
    m->set_ordering_key("k" + std::to_string((key_base + i) % 64));
  }
  pb::PublishResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status s = stub->Publish(&context, request, &response);
  if (!s.ok()) Die(fmt::format("raw publish: {}", s.error_message()));
  if (response.message_ids_size() != kSpan) Die("raw publish: missing message ids");
}

void DriverPublish(aquifer::driver::MessageQueue* q, const std::string& topic, const std::string& payload,
                   int key_base) {
  const int kSpan = SpanFor(payload.size());
  std::vector<std::string> keys;
  std::vector<aquifer::driver::OutgoingMessage> out;
  keys.reserve(kSpan);
  for (int i = 0; i < kSpan; ++i) keys.push_back("k" + std::to_string((key_base + i) % 64));
  for (int i = 0; i < kSpan; ++i) out.push_back({payload, keys[i]});
  Must(q->Publish(topic, out), "driver publish");
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 5;
  std::vector<size_t> sizes = {100, 1000, 100000};
  if (argc > 2) {
    sizes.clear();
    std::string list = argv[2];
    for (size_t pos = 0; pos < list.size();) {
      size_t comma = list.find(',', pos);
      if (comma == std::string::npos) comma = list.size();
      sizes.push_back(std::stoul(list.substr(pos, comma - pos)));
      pos = comma + 1;
    }
  }
  const std::string unique = "bench-" + aquifer::Uuid::Random().Hex().substr(0, 8);
  auto config = Must(ps::testing::TestConfig(unique), "config");
  auto options = Must(ps::ParseQueueOptions(config), "options");
  auto queue = Must(ps::MakeMessageQueue(options, aquifer::Clock::System()), "queue");
  auto raw_channel = grpc::CreateChannel(config.at("endpoint"), grpc::InsecureChannelCredentials());
  auto raw = pb::Publisher::NewStub(raw_channel);

  fmt::print("Pub/Sub MessageQueue vs raw gRPC Publish, Pub/Sub emulator, spans of up to {} messages (one call each) with ordering keys,\n"
             "{} s per side and size, rounds alternating\n\n",
             kMaxSpan, seconds);
  fmt::print("| {:<9} | {:>8} | {:>14} | {:>14} | {:>6} |\n", "workload", "size (B)", "driver msg/s", "raw msg/s", "ratio");
  fmt::print("|{:-<11}|{:-<10}|{:-<16}|{:-<16}|{:-<8}|\n", "", "", "", "", "");
  for (size_t size : sizes) {
    const std::string name = "bench" + std::to_string(size);
    Must(queue->RegisterTopic(name), "register topic");
    const std::string topic_path =
        fmt::format("projects/{}/topics/{}{}", options.grpc.project, options.prefix, name);
    const std::string payload(size, 'x');
    // Warm both paths up (connections, the emulator's JIT).
    DriverPublish(queue.get(), name, payload, 0);
    RawPublish(raw.get(), topic_path, payload, 0);
    double driver_time = 0, raw_time = 0;
    long driver_count = 0, raw_count = 0;
    int round = 0;
    while (driver_time < seconds || raw_time < seconds) {
      auto t0 = Steady::now();
      if (round % 2 == 0) {
        DriverPublish(queue.get(), name, payload, round);
        driver_time += Seconds(Steady::now() - t0);
        driver_count += SpanFor(size);
      } else {
        RawPublish(raw.get(), topic_path, payload, round);
        raw_time += Seconds(Steady::now() - t0);
        raw_count += SpanFor(size);
      }
      ++round;
    }
    double driver_rate = driver_count / driver_time, raw_rate = raw_count / raw_time;
    fmt::print("| {:<9} | {:>8} | {:>14.0f} | {:>14.0f} | {:>5.0f}% |\n", "publish", size, driver_rate, raw_rate,
               100 * driver_rate / raw_rate);
  }
  return 0;
}
