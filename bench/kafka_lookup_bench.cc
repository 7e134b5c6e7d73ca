// kafka_lookup_bench: the Kafka LookupService's writes against plain
// librdkafka production of the same messages, and what a restart costs.
//
// Workloads, on the broker in AQUIFER_TEST_KAFKA (or argv[1]), in the same run:
//   write/driver   LookupService::WriteRecords, batches of 1000 records of
//                  ~100 B Avro with fresh keys, on an instance with log and
//                  index (two messages per record: the log and the compacted
//                  index topic), each call waiting for the broker's acks
//   write/raw      a plain librdkafka producer (enable.idempotence, acks=all,
//                  the same linger and batch settings) producing the same
//                  messages (key, timestamp ‖ Avro, to two topics made with
//                  the same configs) per batch and waiting for every delivery
//                  report; the two take turns (raw, driver, driver, raw)
//   rebuild        a new service object (a process start: empty state store)
//                  answering its first index query of the instance written
//                  above, i.e. replaying both topics into RocksDB; then the
//                  time to read the whole index page by page
// Prints records/s, per-batch p50/p99 and the driver/raw ratio.
//
// Usage: kafka_lookup_bench [brokers] [batches=100]

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <librdkafka/rdkafka.h>

#include "aquifer/base/uuid.h"
#include "aquifer/driver/lookup_service.h"
#include "aquifer/drivers/kafka/lookup.h"
#include "aquifer/keys/tuple.h"
#include "aquifer/schema/codec.h"
#include "aquifer/schema/schema.h"

namespace {

using Clock = std::chrono::steady_clock;
using aquifer::driver::Record;

constexpr int kBatchSize = 1000;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::string Percentiles(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  if (ms.empty()) return "-";
  return fmt::format("p50 {:.1f} ms  p99 {:.1f} ms", ms[ms.size() / 2],
                     ms[std::min(ms.size() - 1, ms.size() * 99 / 100)]);
}

std::vector<Record> MakeBatch(const aquifer::schema::Schema& schema, int batch_idx) {
  std::vector<Record> batch;
  for (int row = 0; row < kBatchSize; ++row) {
    const int64_t id = int64_t{batch_idx} * kBatchSize + row;
    auto value = aquifer::schema::ParseJsonRecord(
        schema, fmt::format(R"({{"id": {}, "name": "user-{:08d}", "payload": "{}"}})", id, id, std::string(60, 'x')));
    Record record;
    (void)aquifer::schema::EncodeAvro(schema, *value, &record.avro);
    record.key = *aquifer::keys::EncodeKey(schema, *value);
    record.timestamp_ms = 1'700'000'000'000 + id;
    batch.push_back(std::move(record));
  }
  return batch;
}

std::string PutFixed64(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, value >>= 8) out[i] = static_cast<char>(value & 0xFF);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("AQUIFER_TEST_KAFKA");
  std::string brokers = argc > 1 ? argv[1] : (env != nullptr ? env : "");
  if (brokers.empty()) {
    fmt::print(stderr, "kafka_lookup_bench: no broker (argv[1] or AQUIFER_TEST_KAFKA)\n");
    return 2;
  }
  const int batches = argc > 2 ? std::atoi(argv[2]) : 100;
  auto schema = *aquifer::schema::Schema::Parse(R"json({"type": "record", "name": "U", "fields": [
      {"name": "id", "type": "long"}, {"name": "name", "type": "string"}, {"name": "payload", "type": "string"}]})json",
                                                {"id"});
  std::vector<std::vector<Record>> data;
  for (int batch_idx = 0; batch_idx < batches; ++batch_idx) data.push_back(MakeBatch(*schema, batch_idx));
  const std::string run = aquifer::Uuid::Random().ToString().substr(0, 8);
  const std::string dir = (std::filesystem::temp_directory_path() / ("kafka-lookup-bench-" + run)).string();

  aquifer::driver::Config config{{"brokers", brokers}, {"topic_prefix", "aquifer.bench." + run + "."}};
  aquifer::driver::DriverContext context;
  context.data_dir = dir;
  auto options = aquifer::drivers::kafka::ParseLookupOptions(config, context);
  if (!options.ok()) {
    fmt::print(stderr, "{}\n", options.status().ToString());
    return 1;
  }
  auto service = aquifer::drivers::kafka::MakeLookupService(*options);
  if (!service.ok()) {
    fmt::print(stderr, "{}\n", service.status().ToString());
    return 1;
  }
  aquifer::driver::InstanceInfo instance;
  instance.instance_id = aquifer::Uuid::Random();
  instance.project = "bench";
  instance.table = "users";
  instance.schema = schema;
  if (auto st = (*service)->RegisterInstance(instance); !st.ok()) {
    fmt::print(stderr, "{}\n", st.ToString());
    return 1;
  }

  // The raw producer writes to the topics of a second instance: made by the
  // driver with the same configs (cleanup policies, sizes), nothing else.
  aquifer::driver::InstanceInfo raw_instance = instance;
  raw_instance.instance_id = aquifer::Uuid::Random();
  if (auto st = (*service)->RegisterInstance(raw_instance); !st.ok()) {
    fmt::print(stderr, "{}\n", st.ToString());
    return 1;
  }
  const std::string raw_prefix = "aquifer.bench." + run + ".lookup." + raw_instance.instance_id.ToString();
  const std::string raw_log = raw_prefix + ".log", raw_index = raw_prefix + ".index";
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"bootstrap.servers", brokers}, {"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "1"},
           {"message.max.bytes", "1114112"}, {"batch.size", "1114112"}, {"broker.address.family", "v4"}}) {
    rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr));
  }
  // Delivery reports counted by a callback; the batch waits for all of them
  // (rd_kafka_flush was seen to add ~7 ms per call here).
  static std::atomic<int64_t> delivered{0}, failed{0};
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err) failed++;
    delivered++;
  });
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  int64_t enqueued = 0;

  // Both writers take turns (raw, driver, driver, raw: half the batches each
  // time) so neither gets the quieter half of the run.
  std::vector<double> driver_ms, raw_ms;
  double driver_s = 0, raw_s = 0;
  auto write_driver = [&](size_t from, size_t to) -> bool {
    auto start = Clock::now();
    for (size_t batch_idx = from; batch_idx < to; ++batch_idx) {
      auto t0 = Clock::now();
      auto st = (*service)->WriteRecords(instance, data[batch_idx], {});
      if (!st.ok()) {
        fmt::print(stderr, "write: {}\n", st.ToString());
        return false;
      }
      driver_ms.push_back(Ms(Clock::now() - t0));
    }
    driver_s += Ms(Clock::now() - start) / 1000;
    return true;
  };
  auto write_raw = [&](size_t from, size_t to) {
    auto start = Clock::now();
    for (size_t batch_idx = from; batch_idx < to; ++batch_idx) {
      auto t0 = Clock::now();
      for (const Record& record : data[batch_idx]) {
        std::string value = PutFixed64(static_cast<uint64_t>(record.timestamp_ms)) + record.avro;
        for (const std::string* topic : {&raw_log, &raw_index}) {
          while (rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic->c_str()), RD_KAFKA_V_PARTITION(0),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_KEY(record.key.data(), record.key.size()),
                                   RD_KAFKA_V_VALUE(value.data(), value.size()),
                                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(producer, 1);
          }
          ++enqueued;
        }
      }
      while (delivered.load() < enqueued) rd_kafka_poll(producer, 10);
      raw_ms.push_back(Ms(Clock::now() - t0));
    }
    raw_s += Ms(Clock::now() - start) / 1000;
  };
  const size_t half = data.size() / 2;
  write_raw(0, half);
  if (!write_driver(0, half) || !write_driver(half, data.size())) return 1;
  write_raw(half, data.size());
  rd_kafka_destroy(producer);
  if (failed.load() != 0) {
    fmt::print(stderr, "raw: {} messages failed\n", failed.load());
    return 1;
  }

  const double records = static_cast<double>(batches) * kBatchSize;
  fmt::print("kafka_lookup_bench: {} batches of {} records (~{} B Avro), broker {}\n", batches, kBatchSize,
             data[0][0].avro.size(), brokers);
  fmt::print("  write/driver  {:>9.0f} records/s  {}\n", records / driver_s, Percentiles(driver_ms));
  fmt::print("  write/raw     {:>9.0f} records/s  {}\n",
             records / raw_s, Percentiles(raw_ms));
  fmt::print("  driver/raw    {:>9.0f} %\n", 100.0 * raw_s / driver_s);

  // ---- rebuild: a new service object (an empty state store) reads the instance
  service->reset();
  auto restarted = aquifer::drivers::kafka::MakeLookupService(*options);
  if (!restarted.ok()) {
    fmt::print(stderr, "{}\n", restarted.status().ToString());
    return 1;
  }
  auto start = Clock::now();
  auto cursors = (*restarted)->Query(instance, aquifer::driver::QueryRequest{});
  if (!cursors.ok()) {
    fmt::print(stderr, "rebuild: {}\n", cursors.status().ToString());
    return 1;
  }
  const double rebuild_ms = Ms(Clock::now() - start);
  start = Clock::now();
  size_t read = 0;
  std::string payload = cursors->replay;
  while (!payload.empty()) {
    auto page = (*restarted)->ReadCursor(instance, payload, {}, aquifer::driver::ReadOptions{.limit = 1000});
    if (!page.ok()) {
      fmt::print(stderr, "read: {}\n", page.status().ToString());
      return 1;
    }
    read += page->records.size();
    payload = page->next;
  }
  const double read_ms = Ms(Clock::now() - start);
  fmt::print("  rebuild       {:>9.0f} ms for {:.0f} records ({:.0f} log + {:.0f} index messages: {:.0f} messages/s)\n",
             rebuild_ms, records, records, records, 2 * records / (rebuild_ms / 1000));
  fmt::print("  index read    {:>9.0f} ms for {} records after the rebuild\n", read_ms, read);
  (void)(*restarted)->RemoveInstance(instance);
  (void)(*restarted)->RemoveInstance(raw_instance);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return read == static_cast<size_t>(records) ? 0 : 1;
}
