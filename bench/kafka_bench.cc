// kafka_bench: the Kafka MessageQueue's publish and consume rates next to a
// plain librdkafka producer and consumer with the same message sizes and
// settings, in the same run (issue 12 item 5). Figures are printed, never
// asserted (goal: at least 80% of raw).
//
//   publish/driver   MessageQueue::Publish of spans of 100 messages (returns
//                    once the broker acked all 100), one publisher
//   publish/raw      rd_kafka_producev of the same 100 messages, then wait
//                    for their 100 delivery reports; same producer settings
//                    (enable.idempotence, acks=all, linger.ms 5, no compression)
//   consume/driver   a persistent subscription draining a backlog: Pull(500),
//                    Ack (the group commits the acked prefix every 20 ms)
//   consume/raw      a consumer in a group draining the same backlog:
//                    rd_kafka_consumer_poll, an async commit every 20 ms
// Publish rounds alternate driver/raw so machine load hits both alike; each
// publishes for `seconds` in total. Each consume run drains a backlog
// of about 200 MB (2,000 to 500,000 messages) from a fresh topic; both clocks
// start at the first message.
//
// Usage: kafka_bench [seconds=10] [sizes=100,1000,100000]
// AQUIFER_TEST_KAFKA: the broker (scripts/bench.sh starts one).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "aquifer/base/uuid.h"
#include "aquifer/drivers/kafka/client.h"
#include "aquifer/drivers/kafka/queue.h"
#include "bench_util.h"

namespace {

using aquifer::bench::Die;
using aquifer::bench::Must;

namespace kq = aquifer::drivers::kafka;
using Steady = std::chrono::steady_clock;
constexpr int kSpan = 100;

double Seconds(Steady::duration d) { return std::chrono::duration<double>(d).count(); }

struct Raw {
  int pending = 0;
  rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR_NO_ERROR;
};

void OnRawDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void*) {
  auto* raw = static_cast<Raw*>(message->_private);
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) raw->error = message->err;
  --raw->pending;
}

kq::KafkaPtr RawProducer(const kq::ClientOptions& client) {
  auto conf = Must(kq::MakeConf(client, {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "5"},
                                         {"compression.type", "none"}, {"message.max.bytes", std::to_string((1 << 20) + (64 << 10))}}),
                   "raw producer config");
  rd_kafka_conf_set_dr_msg_cb(conf.get(), OnRawDelivery);
  return Must(kq::MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)), "raw producer");
}

// Produces `count` messages of `payload` and waits for every report (raw).
void RawPublish(rd_kafka_t* rk, const std::string& topic, const std::string& payload, int count, int key_base) {
  Raw raw;
  raw.pending = count;
  for (int i = 0; i < count; ++i) {
    std::string key = "k" + std::to_string((key_base + i) % 64);
    rd_kafka_resp_err_t err;
    while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()),
                                    RD_KAFKA_V_VALUE(const_cast<char*>(payload.data()), payload.size()),
                                    RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_OPAQUE(&raw), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 1);
    }
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) Die(fmt::format("raw produce: {}", rd_kafka_err2str(err)));
  }
  while (raw.pending > 0) rd_kafka_poll(rk, 1);
  if (raw.error != RD_KAFKA_RESP_ERR_NO_ERROR) Die(fmt::format("raw delivery: {}", rd_kafka_err2str(raw.error)));
}

void DriverPublish(aquifer::driver::MessageQueue* q, const std::string& topic, const std::string& payload, int count,
                   int key_base) {
  std::vector<std::string> keys;
  std::vector<aquifer::driver::OutgoingMessage> out;
  keys.reserve(count);
  for (int i = 0; i < count; ++i) keys.push_back("k" + std::to_string((key_base + i) % 64));
  for (int i = 0; i < count; ++i) out.push_back({payload, keys[i]});
  Must(q->Publish(topic, out), "driver publish");
}

// Drains `count` messages through a persistent driver subscription.
double DriverConsume(aquifer::driver::MessageQueue* q, const std::string& topic, int count) {
  auto sub = Must(q->Subscribe(topic, {.name = "bench", .persistent = true, .ordered = false, .ack_timeout_ms = 60'000}),
                  "driver subscribe");
  // The clock starts at the first message, as for the raw consumer.
  Steady::time_point start{};
  const auto began = Steady::now();
  int got = 0;
  while (got < count) {
    auto batch = Must(sub->Pull(500, 1'000), "driver pull");
    if (got == 0 && !batch.empty()) start = Steady::now();
    std::vector<std::string> ids;
    for (auto& m : batch) ids.push_back(std::move(m.ack_id));
    Must(sub->Ack(ids), "driver ack");
    got += static_cast<int>(batch.size());
    if (Seconds(Steady::now() - began) > 300) Die("driver consume stalled");
  }
  double seconds = Seconds(Steady::now() - start);
  (void)sub->Close();
  return got / seconds;
}

double RawConsume(const kq::ClientOptions& client, const std::string& topic, int count) {
  auto conf = Must(kq::MakeConf(client, {{"group.id", topic + "/raw"}, {"enable.auto.commit", "false"},
                                         {"auto.offset.reset", "earliest"}, {"fetch.wait.max.ms", "100"},
                                         {"max.partition.fetch.bytes", std::to_string((1 << 20) + (64 << 10))}}),
                   "raw consumer config");
  auto rk = Must(kq::MakeHandle(RD_KAFKA_CONSUMER, std::move(conf)), "raw consumer");
  rd_kafka_poll_set_consumer(rk.get());
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk.get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);
  // The clock starts at the first message (so the group join is not timed).
  Steady::time_point start{};
  int got = 0;
  auto last_commit = Steady::now();
  while (got < count) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk.get(), 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (got == 0) start = Steady::now();
      ++got;
    }
    rd_kafka_message_destroy(m);
    if (Steady::now() - last_commit > std::chrono::milliseconds(20)) {
      rd_kafka_commit(rk.get(), nullptr, 1);
      last_commit = Steady::now();
    }
  }
  double seconds = Seconds(Steady::now() - start);
  rd_kafka_commit(rk.get(), nullptr, 0);
  rd_kafka_consumer_close(rk.get());
  return got / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 10;
  std::vector<size_t> sizes = {100, 1000, 100'000};
  if (argc > 2) {
    sizes.clear();
    std::string list = argv[2];
    for (size_t at = 0; at < list.size();) {
      size_t end = list.find(',', at);
      if (end == std::string::npos) end = list.size();
      sizes.push_back(std::stoul(list.substr(at, end - at)));
      at = end + 1;
    }
  }
  const char* brokers = std::getenv("AQUIFER_TEST_KAFKA");
  if (brokers == nullptr || *brokers == '\0') Die("AQUIFER_TEST_KAFKA is not set (scripts/bench.sh starts a broker)");
  const std::string prefix = "bench-" + aquifer::Uuid::Random().ToString().substr(0, 8) + ".";
  aquifer::driver::Config config = {{"brokers", brokers}, {"topic_prefix", prefix}, {"compression", "none"},
                                    {"linger_ms", "5"}, {"partitions", "1"}};
  auto options = Must(kq::ParseQueueOptions(config), "options");
  auto queue = Must(kq::MakeMessageQueue(options, nullptr), "queue");
  auto raw = RawProducer(options.client);

  fmt::print("Kafka MessageQueue vs plain librdkafka, same broker, same settings (idempotent, acks=all, linger 5 ms,\n"
             "no compression, 1 partition), spans of {} messages per publish, {} s of publishing per figure\n\n",
             kSpan, seconds);
  fmt::print("| {:<9} | {:>8} | {:>14} | {:>14} | {:>6} |\n", "workload", "size (B)", "driver msg/s", "raw msg/s", "ratio");
  fmt::print("|{:-<11}|{:-<10}|{:-<16}|{:-<16}|{:-<8}|\n", "", "", "", "", "");
  int topic_no = 0;
  for (size_t size : sizes) {
    const std::string payload(size, 'x');
    const std::string name = "publish" + std::to_string(topic_no++);
    Must(queue->RegisterTopic(name), "register");
    const std::string kafka_name = prefix + name;
    // Warm both paths (connections, producer ids, metadata).
    DriverPublish(queue.get(), name, payload, kSpan, 0);
    RawPublish(raw.get(), kafka_name, payload, kSpan, 0);
    double driver_time = 0, raw_time = 0;
    int64_t driver_count = 0, raw_count = 0;
    while (driver_time < seconds || raw_time < seconds) {
      for (int round = 0; round < 10; ++round) {
        auto t0 = Steady::now();
        DriverPublish(queue.get(), name, payload, kSpan, round);
        driver_time += Seconds(Steady::now() - t0);
        driver_count += kSpan;
        t0 = Steady::now();
        RawPublish(raw.get(), kafka_name, payload, kSpan, round);
        raw_time += Seconds(Steady::now() - t0);
        raw_count += kSpan;
      }
    }
    const double driver_rate = driver_count / driver_time, raw_rate = raw_count / raw_time;
    fmt::print("| {:<9} | {:>8} | {:>14.0f} | {:>14.0f} | {:>5.0f}% |\n", "publish", size, driver_rate, raw_rate,
               100 * driver_rate / raw_rate);
    std::fflush(stdout);

    // Consume: a backlog of about 200 MB (2,000 to 500,000 messages), so
    // what one fetch brings is a small part of it.
    const int backlog = static_cast<int>(std::clamp<double>(2e8 / static_cast<double>(size), 2'000, 500'000));
    const std::string consume_name = "consume" + std::to_string(topic_no++);
    Must(queue->RegisterTopic(consume_name), "register");
    for (int done = 0; done < backlog; done += 1000) {
      RawPublish(raw.get(), prefix + consume_name, payload, std::min(1000, backlog - done), done);
    }
    const double raw_consume = RawConsume(options.client, prefix + consume_name, backlog);
    const double driver_consume = DriverConsume(queue.get(), consume_name, backlog);
    fmt::print("| {:<9} | {:>8} | {:>14.0f} | {:>14.0f} | {:>5.0f}% |\n", "consume", size, driver_consume, raw_consume,
               100 * driver_consume / raw_consume);
    std::fflush(stdout);
  }
  return 0;
}
