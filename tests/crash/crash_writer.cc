// crash_writer DATA_DIR ACK_LOG FIRST_ID
//
// The child of crash_test: publishes batches to the embedded queue from two
// threads (so synced writes share fsyncs), writes the same ids to the embedded
// LookupService when it is compiled in, consumes and acks the "consumer"
// subscription, and appends every acknowledged operation to ACK_LOG. Runs
// until it is killed; exits non-zero on any error.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "aquifer/drivers/rocksdb/queue.h"
#include "crash_common.h"

namespace aquifer::crash {
namespace {

int ack_fd = -1;

void Record(const std::string& line) {
  if (write(ack_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    perror("crash_writer: writing the ack log");
    _exit(3);
  }
}

[[noreturn]] void Fail(const Status& s, const char* what) {
  fprintf(stderr, "crash_writer: %s: %s\n", what, s.ToString().c_str());
  _exit(2);
}

int Main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: crash_writer DATA_DIR ACK_LOG FIRST_ID\n");
    return 1;
  }
  driver::DriverContext context;
  context.data_dir = argv[1];
  ack_fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (ack_fd < 0) {
    perror("crash_writer: opening the ack log");
    return 1;
  }
  std::atomic<int64_t> next_id{std::atoll(argv[3])};

  auto queue = drivers::rocksdb::OpenQueue({}, context);
  if (!queue.ok()) Fail(queue.status(), "opening the queue");
  if (Status s = (*queue)->RegisterTopic(kTopic); !s.ok()) Fail(s, "registering the topic");
#if AQUIFER_CRASH_WITH_LOOKUP
  auto lookup_options = drivers::rocksdb::ParseLookupOptions({}, context);
  if (!lookup_options.ok()) Fail(lookup_options.status(), "lookup options");
  auto lookup = drivers::rocksdb::MakeLookupService(*lookup_options);
  if (!lookup.ok()) Fail(lookup.status(), "opening the lookup service");
  const driver::InstanceInfo instance = CrashInstance();
  if (Status s = (*lookup)->RegisterInstance(instance); !s.ok()) Fail(s, "registering the instance");
#endif

  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(getpid() * 31 + t));
      for (;;) {
        int count = 1 + static_cast<int>(rng() % 20);
        int64_t first = next_id.fetch_add(count);
        std::vector<std::string> data;
        std::vector<driver::OutgoingMessage> out;
        for (int i = 0; i < count; ++i) data.push_back(std::to_string(first + i));
        for (const auto& d : data) out.push_back({d, ""});
        if (Status s = (*queue)->Publish(kTopic, out); !s.ok()) Fail(s, "publishing");
        Record("q " + std::to_string(first) + " " + std::to_string(count) + "\n");
#if AQUIFER_CRASH_WITH_LOOKUP
        std::vector<driver::Record> records;
        for (int i = 0; i < count; ++i) {
          driver::Record r;
          r.key = RecordKey(first + i);
          r.avro = data[i];
          r.timestamp_ms = first + i;
          records.push_back(std::move(r));
        }
        if (Status s = (*lookup)->WriteRecords(instance, records, {}); !s.ok()) Fail(s, "writing records");
        Record("l " + std::to_string(first) + " " + std::to_string(count) + "\n");
#endif
      }
    });
  }
  // A consumer whose acks must survive the kills without losing messages.
  driver::SubscriptionOptions options;
  options.name = kConsumerSubscription;
  options.ack_timeout_ms = 60'000;
  auto sub = (*queue)->Subscribe(kTopic, options);
  if (!sub.ok()) Fail(sub.status(), "subscribing");
  for (;;) {
    auto messages = (*sub)->Pull(50, 100);
    if (!messages.ok()) Fail(messages.status(), "pulling");
    // Recorded as handled before the ack, so every acked message is in the record.
    std::vector<std::string> ids;
    for (const auto& m : *messages) {
      Record("c " + m.data + "\n");
      ids.push_back(m.ack_id);
    }
    if (Status s = (*sub)->Ack(ids); !s.ok()) Fail(s, "acking");
  }
}

}  // namespace
}  // namespace aquifer::crash

int main(int argc, char** argv) { return aquifer::crash::Main(argc, argv); }
