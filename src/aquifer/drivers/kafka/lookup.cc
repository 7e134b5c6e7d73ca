#include "aquifer/drivers/kafka/lookup.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include "aquifer/base/text.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/record_limits.h"
#include "aquifer/drivers/rocksdb/lookup_service.h"

namespace aquifer::drivers::kafka {
namespace {

using driver::InstanceInfo;
using driver::Record;
using SteadyClock = std::chrono::steady_clock;

// Message headers (README.md): the call a message came from, its record
// group, the group's last message, and a marker standing for a group of no
// records (log topic only; it carries no record).
constexpr char kCallHeader[] = "aq.c";
constexpr char kGroupHeader[] = "aq.g";
constexpr char kEndHeader[] = "aq.e";
constexpr char kMarkerHeader[] = "aq.m";
constexpr int32_t kPartition = 0;  // one partition per topic: one order, dense offsets
constexpr int64_t kRetentionUnknown = -2;

// The topic configs of an instance's log (compacted false) or index topic for
// a retention (0 = forever): the log is deleted by age only with a retention,
// the index is compacted and, with a retention, deleted by age too.
std::vector<std::pair<std::string, std::string>> TopicConfigs(bool compacted, int64_t retention_ms,
                                                              size_t message_max_bytes) {
  std::vector<std::pair<std::string, std::string>> configs = {
      {"max.message.bytes", std::to_string(message_max_bytes)}};
  if (compacted) {
    configs.emplace_back("cleanup.policy", retention_ms > 0 ? "compact,delete" : "compact");
    if (retention_ms > 0) configs.emplace_back("retention.ms", std::to_string(retention_ms));
  } else {
    configs.emplace_back("cleanup.policy", "delete");
    configs.emplace_back("retention.ms", retention_ms > 0 ? std::to_string(retention_ms) : "-1");
  }
  return configs;
}


// The index stream's instance in the local store: the id with every bit flipped.
Uuid IndexStoreId(const Uuid& id) {
  std::string bytes(id.AsBytes());
  for (char& c : bytes) c = static_cast<char>(~static_cast<unsigned char>(c));
  return *Uuid::FromBytes(bytes);
}

// A message as consumed from either topic.
struct Message {
  int64_t offset = 0;
  Record record;
  std::string call;
  std::optional<std::string> group;
  bool end = false;
  bool marker = false;
};

// One topic of an instance and how far the local store has applied it.
struct Stream {
  std::string topic;
  bool is_log = true;
  rd_kafka_queue_t* queue = nullptr;  // the partition's own queue while assigned to the consumer
  int64_t next = 0;                 // the next Kafka offset to apply
  std::vector<Message> run;         // an open record group: applied once its last message arrives
};

struct InstanceState {
  std::mutex mu;          // catch-up and apply of both streams
  std::mutex produce_mu;  // one call's messages enqueued together, calls in one order in both topics
  Stream log, index;
  // The topics were made (or found) by this process; cleared when they vanish.
  std::atomic<bool> log_created{false};
  std::atomic<bool> index_created{false};
  // The retention.ms last set on each topic by this process (kRetentionUnknown:
  // not yet, so the next EnsureTopics sets it); cleared with *_created.
  std::atomic<int64_t> log_retention_set{kRetentionUnknown};
  std::atomic<int64_t> index_retention_set{kRetentionUnknown};
};

// Counts the delivery reports of one WriteRecords call.
struct Delivery {
  std::mutex mu;
  std::condition_variable cv;
  size_t remaining = 0;
  rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR_NO_ERROR;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void*) {
  auto* delivery = static_cast<Delivery*>(message->_private);
  if (delivery == nullptr) return;
  std::lock_guard<std::mutex> lock(delivery->mu);
  if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR && delivery->error == RD_KAFKA_RESP_ERR_NO_ERROR) {
    delivery->error = message->err;
  }
  if (--delivery->remaining == 0) delivery->cv.notify_all();
}

std::atomic<uint64_t> store_counter{0};

class KafkaLookupService final : public driver::LookupService {
 public:
  explicit KafkaLookupService(LookupOptions options) : options_(std::move(options)) {}

  ~KafkaLookupService() override {
    {
      std::lock_guard<std::mutex> lock(map_mu_);
      for (auto& [id, state] : instances_) {
        StopStream(&state->log);
        StopStream(&state->index);
      }
      instances_.clear();
    }
    if (producer_ != nullptr) rd_kafka_flush(producer_, 5000);
    stop_polling_ = true;
    if (poller_.joinable()) poller_.join();
    if (consumer_ != nullptr) {
      // librdkafka 2.0.2's rd_kafka_destroy of a consumer that fetched a
      // topic since deleted can wait forever (README.md, "Known issues"): it
      // runs on a thread of its own, given 5 s, then left behind.
      auto done = std::make_shared<std::promise<void>>();
      std::future<void> finished = done->get_future();
      std::thread([consumer = consumer_, done] {
        // No group was joined: nothing to leave or commit.
        rd_kafka_destroy_flags(consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        done->set_value();
      }).detach();
      if (finished.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
        spdlog::warn("kafka lookup: the consumer did not close within 5 s (librdkafka 2.0.2 after a topic "
                     "deletion); leaving it behind");
      }
    }
    if (producer_ != nullptr) rd_kafka_destroy(producer_);
    store_.reset();
    if (!store_path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(store_path_, ec);
    }
  }

  Status Open();

  driver::LookupCapabilities capabilities() const override { return {options_.limits}; }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) {
      return InvalidArgument("registering instance {}: no schema", instance.instance_id.ToString());
    }
    auto state = State(instance);
    std::lock_guard<std::mutex> lock(state->produce_mu);
    return EnsureTopics(instance, state.get());
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    auto state = State(instance);
    std::scoped_lock lock(state->mu, state->produce_mu);
    StopStream(&state->log);
    StopStream(&state->index);
    AQ_RETURN_IF_ERROR(DeleteTopics({state->log.topic, state->index.topic}));
    AQ_RETURN_IF_ERROR(store_->RemoveInstance(LogStore(instance, true)));
    AQ_RETURN_IF_ERROR(store_->RemoveInstance(IndexStore(instance)));
    ResetStream(&state->log);
    ResetStream(&state->index);
    state->log_created = state->index_created = false;
    state->log_retention_set = state->index_retention_set = kRetentionUnknown;
    return Status::OK();
  }

  Status WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                      std::span<const driver::RecordGroup> groups) override;

  Result<driver::QueryCursors> Query(const InstanceInfo& instance, const driver::QueryRequest& request) override {
    if (instance.schema == nullptr) return InvalidArgument("querying {}: no schema", instance.instance_id.ToString());
    if (request.kind == driver::QueryKind::kIndex) {
      if (!instance.use_index) {
        return InvalidArgument("querying {}: the table has no index (use_index is off)",
                               instance.instance_id.ToString());
      }
      AQ_RETURN_IF_ERROR(CatchUp(instance, instance.use_log, true));
      AQ_ASSIGN_OR_RETURN(driver::QueryCursors index, store_->Query(IndexStore(instance), request));
      driver::QueryRequest log_request;
      log_request.kind = driver::QueryKind::kLog;
      AQ_ASSIGN_OR_RETURN(driver::QueryCursors log, store_->Query(LogStore(instance, true), log_request));
      return driver::QueryCursors{std::move(index.replay), std::move(log.change)};
    }
    if (!instance.use_log) {
      return InvalidArgument("querying {}: the table has no log (use_log is off)", instance.instance_id.ToString());
    }
    AQ_RETURN_IF_ERROR(CatchUp(instance, true, false));
    return store_->Query(LogStore(instance, true), request);
  }

  Result<driver::PeekCursors> Peek(const InstanceInfo& instance) override {
    if (!instance.use_log) {
      return InvalidArgument("peeking {}: the table has no log (use_log is off)", instance.instance_id.ToString());
    }
    AQ_RETURN_IF_ERROR(CatchUp(instance, true, false));
    return store_->Peek(LogStore(instance, true));
  }

  Result<driver::ReadResult> ReadCursor(const InstanceInfo& instance, std::string_view payload,
                                        const keys::Filter& filter, const driver::ReadOptions& options) override {
    AQ_RETURN_IF_ERROR(driver::CheckReadOptions(instance.instance_id, options));
    if (payload.empty()) return driver::ReadResult{};
    // The local store's payloads (drivers/rocksdb/README.md): kind 1 is an
    // index replay, read from the index stream's instance; the rest read the log.
    const bool index = payload[0] == 1;
    if (index ? instance.use_index : instance.use_log) AQ_RETURN_IF_ERROR(CatchUp(instance, !index, index));
    return store_->ReadCursor(index ? IndexStore(instance) : LogStore(instance, instance.use_log), payload, filter,
                              options);
  }

  // Retention: reads filter through the local store (it gets the instance's
  // retentions with each call); the purge deletes from the local store what
  // it applied so far, the broker deletes the topics' old segments itself
  // (retention.ms, set by EnsureTopics).
  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    if (instance.log_retention_ms <= 0 && instance.index_retention_ms <= 0) return int64_t{0};
    auto state = State(instance);
    std::lock_guard<std::mutex> lock(state->mu);  // not while a catch-up applies
    InstanceInfo log = LogStore(instance, true);
    log.index_retention_ms = 0;
    InstanceInfo index = IndexStore(instance);
    index.log_retention_ms = 0;
    int64_t purged = 0;
    if (log.log_retention_ms > 0) {
      AQ_ASSIGN_OR_RETURN(int64_t count, store_->PurgeExpired(log));
      purged += count;
    }
    if (index.index_retention_ms > 0) {
      AQ_ASSIGN_OR_RETURN(int64_t count, store_->PurgeExpired(index));
      purged += count;
    }
    return purged;
  }

  // What the local store holds once caught up with the topics.
  Result<driver::StoredRecords> CountStored(const InstanceInfo& instance) override {
    AQ_RETURN_IF_ERROR(CatchUp(instance, instance.use_log, instance.use_index));
    auto state = State(instance);
    std::lock_guard<std::mutex> lock(state->mu);
    AQ_ASSIGN_OR_RETURN(driver::StoredRecords log, store_->CountStored(LogStore(instance, true)));
    AQ_ASSIGN_OR_RETURN(driver::StoredRecords index, store_->CountStored(IndexStore(instance)));
    return driver::StoredRecords{log.log, index.index};
  }

  Status Reset() override {
    std::vector<std::shared_ptr<InstanceState>> states;
    {
      std::lock_guard<std::mutex> lock(map_mu_);
      for (auto& [id, state] : instances_) states.push_back(state);
      instances_.clear();
    }
    for (auto& state : states) {
      std::scoped_lock lock(state->mu, state->produce_mu);
      StopStream(&state->log);
      StopStream(&state->index);
    }
    AQ_ASSIGN_OR_RETURN(std::vector<std::string> topics, ListTopics());
    AQ_RETURN_IF_ERROR(DeleteTopics(topics));
    return store_->Reset();
  }

 private:
  std::string Topic(const InstanceInfo& instance, std::string_view suffix) const {
    return options_.client.topic_prefix + "lookup." + instance.instance_id.ToString() + std::string(suffix);
  }
  // The instances of the local store: the log stream under the instance's id
  // (use_index off), the index stream under IndexStoreId (use_log off).
  static InstanceInfo LogStore(const InstanceInfo& instance, bool use_log) {
    InstanceInfo local = instance;
    local.use_log = use_log;
    local.use_index = false;
    return local;
  }
  static InstanceInfo IndexStore(const InstanceInfo& instance) {
    InstanceInfo local = instance;
    local.instance_id = IndexStoreId(instance.instance_id);
    local.use_log = false;
    return local;
  }

  std::shared_ptr<InstanceState> State(const InstanceInfo& instance) {
    std::lock_guard<std::mutex> lock(map_mu_);
    auto& slot = instances_[instance.instance_id];
    if (slot == nullptr) {
      slot = std::make_shared<InstanceState>();
      slot->log.topic = Topic(instance, ".log");
      slot->log.is_log = true;
      slot->index.topic = Topic(instance, ".index");
      slot->index.is_log = false;
    }
    return slot;
  }

  // Unassigns the stream's partition from the consumer.
  void StopStream(Stream* stream) {
    if (stream->queue == nullptr) return;
    rd_kafka_topic_partition_list_t* partitions = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(partitions, stream->topic.c_str(), kPartition);
    if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer_, partitions)) rd_kafka_error_destroy(error);
    rd_kafka_topic_partition_list_destroy(partitions);
    rd_kafka_queue_destroy(stream->queue);
    stream->queue = nullptr;
  }
  void ResetStream(Stream* stream) {
    StopStream(stream);
    stream->next = 0;
    stream->run.clear();
  }

  Status EnsureTopics(const InstanceInfo& instance, InstanceState* state);
  // Creates each topic with `configs` (an existing one is left as it is).
  Status CreateTopics(const std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>& topics);
  // Sets a topic's configs (AlterConfigs: the whole set, the rest back to the broker's defaults).
  Status AlterTopicConfigs(const std::string& topic, const std::vector<std::pair<std::string, std::string>>& configs);
  Status DeleteTopics(const std::vector<std::string>& topics);
  Result<std::vector<std::string>> ListTopics();
  Result<int64_t> HighWatermark(const std::string& topic, int64_t timeout_ms);
  Status CatchUp(const InstanceInfo& instance, bool log, bool index);
  Status CatchUpStream(const InstanceInfo& instance, InstanceState* state, Stream* stream,
                       SteadyClock::time_point deadline);
  Status Apply(const InstanceInfo& instance, Stream* stream, std::vector<Message> messages);
  Status Produce(const std::string& topic, const Record* record, std::string_view call, const std::string* group,
                 bool end, Delivery* delivery);

  const LookupOptions options_;
  size_t message_max_bytes_ = 0;
  rd_kafka_t* producer_ = nullptr;
  rd_kafka_t* consumer_ = nullptr;
  KafkaPtr offsets_;  // end offsets and metadata
  std::atomic<bool> stop_polling_{false};
  std::thread poller_;  // serves the producer's delivery reports
  std::string store_path_;
  std::shared_ptr<driver::LookupService> store_;
  rocksdb::PositionedWriter* positioned_ = nullptr;  // store_, writing at Kafka offsets
  std::mutex map_mu_;
  std::unordered_map<Uuid, std::shared_ptr<InstanceState>, UuidHash> instances_;  // guarded by map_mu_
};

Status KafkaLookupService::Open() {
  // Room for the largest record with its key, timestamp and headers.
  message_max_bytes_ = std::max<size_t>(1'000'000, options_.limits.max_record_size + options_.limits.max_key_size + 65'536);
  const std::string max_bytes = std::to_string(message_max_bytes_);
  AQ_ASSIGN_OR_RETURN(ConfPtr producer_conf,
                      MakeConf(options_.client, {{"enable.idempotence", "true"},
                                                 {"acks", "all"},
                                                 {"linger.ms", "1"},
                                                 {"message.max.bytes", max_bytes},
                                                 {"batch.size", max_bytes},
                                                 {"message.timeout.ms", std::to_string(options_.client.request_timeout_ms)},
                                                 {"compression.type", options_.compression}}));
  rd_kafka_conf_set_dr_msg_cb(producer_conf.get(), OnDelivery);
  AQ_ASSIGN_OR_RETURN(KafkaPtr producer, MakeHandle(RD_KAFKA_PRODUCER, std::move(producer_conf)));
  producer_ = producer.release();
  poller_ = std::thread([this] {
    while (!stop_polling_) rd_kafka_poll(producer_, 50);
  });
  // Prefetch per started partition is bounded: instances are read on demand.
  // A consumer without a subscription (assign only: no group membership, no
  // commits; the group id is required by the API and never joined).
  AQ_ASSIGN_OR_RETURN(ConfPtr consumer_conf, MakeConf(options_.client, {{"group.id", options_.client.topic_prefix + "lookup"},
                                                                        {"enable.auto.commit", "false"},
                                                                        {"enable.auto.offset.store", "false"},
                                                                        // A position below the topic's start (the broker deleted
                                                                        // expired segments) continues from the oldest message kept.
                                                                        {"auto.offset.reset", "earliest"},
                                                                        {"partition.assignment.strategy", "cooperative-sticky"},
                                                                        {"fetch.message.max.bytes", max_bytes},
                                                                        {"fetch.wait.max.ms", "100"},
                                                                        {"queued.min.messages", "10000"},
                                                                        {"queued.max.messages.kbytes", "16384"}}));
  AQ_ASSIGN_OR_RETURN(KafkaPtr consumer, MakeHandle(RD_KAFKA_CONSUMER, std::move(consumer_conf)));
  consumer_ = consumer.release();
  // End offsets and metadata go through a handle of their own: on the
  // consumer's connection they would queue behind its long-polling fetches
  // (a broker answers one connection's requests in order), ~100 ms each.
  AQ_ASSIGN_OR_RETURN(ConfPtr offsets_conf, MakeConf(options_.client, {}));
  AQ_ASSIGN_OR_RETURN(offsets_, MakeHandle(RD_KAFKA_PRODUCER, std::move(offsets_conf)));

  // The local store: a fresh directory per service object (a cache of the
  // topics); directories left by processes that are gone are removed.
  std::error_code ec;
  std::filesystem::create_directories(options_.state_dir, ec);
  if (ec) return Unavailable("kafka lookup: creating state_dir {}: {}", options_.state_dir, ec.message());
  for (const auto& entry : std::filesystem::directory_iterator(options_.state_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("store-")) continue;
    pid_t pid = static_cast<pid_t>(std::atoll(name.c_str() + 6));
    if (pid > 0 && pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH) {
      std::filesystem::remove_all(entry.path(), ec);
    }
  }
  store_path_ = fmt::format("{}/store-{}-{}-{}", options_.state_dir, getpid(), store_counter.fetch_add(1),
                            Uuid::Random().ToString().substr(0, 8));
  rocksdb::LookupOptions store_options;
  store_options.path = store_path_;
  store_options.sync = false;  // a cache: the topics are the durable copy
  store_options.limits = options_.limits;
  store_options.applied_window_ms = options_.applied_window_ms;
  store_options.clock = options_.clock;
  AQ_ASSIGN_OR_RETURN(store_, rocksdb::MakeLookupService(store_options));
  positioned_ = dynamic_cast<rocksdb::PositionedWriter*>(store_.get());
  if (positioned_ == nullptr) return Internal("kafka lookup: the RocksDB store takes no offsets");
  return Status::OK();
}

// ---- admin ---------------------------------------------------------------------------

// Runs one admin request on the producer handle and returns its result event.
template <typename Call>
Result<rd_kafka_event_t*> RunAdmin(rd_kafka_t* rk, rd_kafka_admin_op_t op, int64_t timeout_ms, Call call) {
  char errstr[512];
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, op);
  rd_kafka_AdminOptions_set_request_timeout(options, static_cast<int>(timeout_ms), errstr, sizeof(errstr));
  rd_kafka_AdminOptions_set_operation_timeout(options, static_cast<int>(timeout_ms), errstr, sizeof(errstr));
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  call(options, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, static_cast<int>(timeout_ms + 2000));
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_queue_destroy(queue);
  if (event == nullptr) return Unavailable("kafka admin request timed out after {} ms", timeout_ms);
  if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    std::string message = rd_kafka_event_error_string(event);
    rd_kafka_event_destroy(event);
    return Unavailable("kafka admin request: {}", message);
  }
  return event;
}

Status KafkaLookupService::CreateTopics(
    const std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>& topics) {
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(options_.client.request_timeout_ms);
  for (const auto& [name, configs] : topics) {
    for (int attempt = 0;; ++attempt) {
      Status created = CreateTopic(producer_, options_.client, name, 1, configs);
      // A topic of the same name that is still being deleted answers with a
      // retriable error for a moment: try again until the request timeout.
      if (created.ok() || created.code() != StatusCode::kUnavailable || SteadyClock::now() >= deadline) {
        AQ_RETURN_IF_ERROR(created);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 * (attempt + 1), 500)));
    }
  }
  return Status::OK();
}

Status KafkaLookupService::AlterTopicConfigs(const std::string& topic,
                                             const std::vector<std::pair<std::string, std::string>>& configs) {
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(options_.client.request_timeout_ms);
  for (int attempt = 0;; ++attempt) {
    rd_kafka_ConfigResource_t* resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
    for (const auto& [key, value] : configs) rd_kafka_ConfigResource_set_config(resource, key.c_str(), value.c_str());
    auto event = RunAdmin(producer_, RD_KAFKA_ADMIN_OP_ALTERCONFIGS, options_.client.request_timeout_ms,
                          [&](rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
                            rd_kafka_AlterConfigs(producer_, &resource, 1, options, queue);
                          });
    rd_kafka_ConfigResource_destroy(resource);
    Status status = Status::OK();
    if (!event.ok()) {
      status = event.status();
    } else {
      size_t count = 0;
      const rd_kafka_ConfigResource_t** results =
          rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(*event), &count);
      for (size_t result_idx = 0; result_idx < count; ++result_idx) {
        rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(results[result_idx]);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
        const char* detail = rd_kafka_ConfigResource_error_string(results[result_idx]);
        status = Unavailable("kafka lookup: setting the configs of topic {}: {}", topic,
                             detail != nullptr ? detail : rd_kafka_err2str(err));
      }
      rd_kafka_event_destroy(*event);
    }
    // A topic just made may not be known to every broker yet: try again until the request timeout.
    if (status.ok() || SteadyClock::now() >= deadline) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 * (attempt + 1), 500)));
  }
}

Status KafkaLookupService::DeleteTopics(const std::vector<std::string>& topics) {
  if (topics.empty()) return Status::OK();
  std::vector<rd_kafka_DeleteTopic_t*> doomed;
  for (const std::string& name : topics) doomed.push_back(rd_kafka_DeleteTopic_new(name.c_str()));
  auto event = RunAdmin(producer_, RD_KAFKA_ADMIN_OP_DELETETOPICS, options_.client.request_timeout_ms,
                        [&](rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
                          rd_kafka_DeleteTopics(producer_, doomed.data(), doomed.size(), options, queue);
                        });
  rd_kafka_DeleteTopic_destroy_array(doomed.data(), doomed.size());
  if (!event.ok()) return event.status();
  size_t count = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(*event), &count);
  Status status = Status::OK();
  for (size_t result_idx = 0; result_idx < count; ++result_idx) {
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[result_idx]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) continue;
    status = Unavailable("kafka lookup: deleting topic {}: {}", rd_kafka_topic_result_name(results[result_idx]),
                         rd_kafka_err2str(err));
  }
  rd_kafka_event_destroy(*event);
  return status;
}

Result<std::vector<std::string>> KafkaLookupService::ListTopics() {
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_resp_err_t err =
      rd_kafka_metadata(consumer_, 1, nullptr, &metadata, static_cast<int>(options_.catchup_timeout_ms));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Unavailable("kafka lookup: listing topics: {}", rd_kafka_err2str(err));
  std::vector<std::string> topics;
  for (int topic_idx = 0; topic_idx < metadata->topic_cnt; ++topic_idx) {
    std::string name = metadata->topics[topic_idx].topic;
    if (name.starts_with(options_.client.topic_prefix + "lookup.")) topics.push_back(std::move(name));
  }
  rd_kafka_metadata_destroy(metadata);
  return topics;
}

// Makes the topics the instance uses, and sets their retention.ms (and the
// index's cleanup.policy) from the instance's retentions the first time and
// whenever they change: a topic may have been made by another process, or
// with another retention.
Status KafkaLookupService::EnsureTopics(const InstanceInfo& instance, InstanceState* state) {
  const int64_t log_retention = std::max<int64_t>(instance.log_retention_ms, 0);
  const int64_t index_retention = std::max<int64_t>(instance.index_retention_ms, 0);
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> wanted;
  if (instance.use_log && !state->log_created) {
    wanted.emplace_back(state->log.topic, TopicConfigs(false, log_retention, message_max_bytes_));
  }
  if (instance.use_index && !state->index_created) {
    wanted.emplace_back(state->index.topic, TopicConfigs(true, index_retention, message_max_bytes_));
  }
  AQ_RETURN_IF_ERROR(CreateTopics(wanted));
  if (instance.use_log) state->log_created = true;
  if (instance.use_index) state->index_created = true;
  if (instance.use_log && state->log_retention_set != log_retention) {
    AQ_RETURN_IF_ERROR(AlterTopicConfigs(state->log.topic, TopicConfigs(false, log_retention, message_max_bytes_)));
    state->log_retention_set = log_retention;
  }
  if (instance.use_index && state->index_retention_set != index_retention) {
    AQ_RETURN_IF_ERROR(
        AlterTopicConfigs(state->index.topic, TopicConfigs(true, index_retention, message_max_bytes_)));
    state->index_retention_set = index_retention;
  }
  return Status::OK();
}

// ---- writes ----------------------------------------------------------------------------

Status KafkaLookupService::Produce(const std::string& topic, const Record* record, std::string_view call,
                                   const std::string* group, bool end, Delivery* delivery) {
  std::string value;
  if (record != nullptr) {
    value.reserve(8 + record->avro.size());
    PutBigEndian64(&value, static_cast<uint64_t>(record->timestamp_ms));
    value.append(record->avro);
  }
  rd_kafka_headers_t* headers = rd_kafka_headers_new(4);
  rd_kafka_header_add(headers, kCallHeader, -1, call.data(), static_cast<ssize_t>(call.size()));
  if (group != nullptr) rd_kafka_header_add(headers, kGroupHeader, -1, group->data(), static_cast<ssize_t>(group->size()));
  if (end) rd_kafka_header_add(headers, kEndHeader, -1, "", 0);
  if (record == nullptr) rd_kafka_header_add(headers, kMarkerHeader, -1, "", 0);
  const void* key = record != nullptr ? record->key.data() : nullptr;
  const size_t key_size = record != nullptr ? record->key.size() : 0;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(delivery->mu);
      ++delivery->remaining;
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(kPartition),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_size),
        RD_KAFKA_V_VALUE(value.data(), value.size()), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(delivery),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::OK();  // the headers belong to the message now
    {
      std::lock_guard<std::mutex> lock(delivery->mu);
      --delivery->remaining;
    }
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    rd_kafka_headers_destroy(headers);
    if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      return InvalidArgument("kafka lookup: a message of {} bytes for {} is over the producer's limit", value.size(),
                             topic);
    }
    return Unavailable("kafka lookup: producing to {}: {}", topic, rd_kafka_err2str(err));
  }
}

Status KafkaLookupService::WriteRecords(const InstanceInfo& instance, std::span<const Record> records,
                                        std::span<const driver::RecordGroup> groups) {
  const std::string id = instance.instance_id.ToString();
  if (Status checked = driver::CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext(fmt::format("writing to {}", id));
  }
  AQ_RETURN_IF_ERROR(driver::CheckRecordLimits(instance.instance_id, records, options_.limits));
  if (!instance.use_log && !instance.use_index) return Status::OK();
  if (groups.empty() && records.empty()) return Status::OK();

  auto state = State(instance);
  const Uuid call_id = Uuid::Random();
  const std::string_view call = call_id.AsBytes();
  Delivery delivery;
  Status enqueued = Status::OK();
  {
    std::lock_guard<std::mutex> lock(state->produce_mu);
    AQ_RETURN_IF_ERROR(EnsureTopics(instance, state.get()));
    auto produce = [&](const Record* record, const std::string* group, bool end) -> Status {
      if (instance.use_log) AQ_RETURN_IF_ERROR(Produce(state->log.topic, record, call, group, end, &delivery));
      if (instance.use_index && record != nullptr) {
        AQ_RETURN_IF_ERROR(Produce(state->index.topic, record, call, group, end, &delivery));
      }
      return Status::OK();
    };
    if (groups.empty()) {
      for (const Record& record : records) {
        enqueued = produce(&record, nullptr, false);
        if (!enqueued.ok()) break;
      }
    } else {
      size_t begin = 0;
      for (const driver::RecordGroup& group : groups) {
        if (group.records == 0) {
          enqueued = produce(nullptr, &group.id, true);
        } else {
          for (size_t record_idx = begin; record_idx < begin + group.records && enqueued.ok(); ++record_idx) {
            enqueued = produce(&records[record_idx], &group.id, record_idx + 1 == begin + group.records);
          }
        }
        begin += group.records;
        if (!enqueued.ok()) break;
      }
    }
  }
  // Every enqueued message gets exactly one report within message.timeout.ms.
  std::unique_lock<std::mutex> lock(delivery.mu);
  delivery.cv.wait(lock, [&] { return delivery.remaining == 0; });
  if (!enqueued.ok()) return enqueued.WithContext(fmt::format("writing to {}", id));
  if (delivery.error != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (delivery.error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || delivery.error == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
      state->log_created = state->index_created = false;  // removed by another process: made again on retry
      state->log_retention_set = state->index_retention_set = kRetentionUnknown;
    }
    if (delivery.error == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      return InvalidArgument("writing to {}: the broker refused a message as too large: {}", id,
                             rd_kafka_err2str(delivery.error));
    }
    return Unavailable("writing to {}: the broker did not acknowledge every record: {}", id,
                       rd_kafka_err2str(delivery.error));
  }
  return Status::OK();
}

// ---- catching up -----------------------------------------------------------------------

Result<int64_t> KafkaLookupService::HighWatermark(const std::string& topic, int64_t timeout_ms) {
  auto unknown = [](rd_kafka_resp_err_t err) {
    return err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
  };
  const int timeout = static_cast<int>(std::max<int64_t>(timeout_ms, 1));
  int64_t low = 0, high = 0;
  rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(offsets_.get(), topic.c_str(), kPartition, &low, &high, timeout);
  if (unknown(err)) {
    // librdkafka answers "unknown" from its metadata cache, which may predate
    // the topic (made by another process, or made again after a removal):
    // ask the broker for the topic's metadata, then once more.
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(offsets_.get(), topic.c_str(), nullptr);
    if (rkt != nullptr) {
      const rd_kafka_metadata_t* metadata = nullptr;
      if (rd_kafka_metadata(offsets_.get(), 0, rkt, &metadata, timeout) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(metadata);
      }
      rd_kafka_topic_destroy(rkt);
    }
    err = rd_kafka_query_watermark_offsets(offsets_.get(), topic.c_str(), kPartition, &low, &high, timeout);
  }
  if (unknown(err)) return int64_t{0};  // never written, or removed
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Unavailable("kafka lookup: reading the end offset of {}: {}", topic, rd_kafka_err2str(err));
  }
  return high;
}

Status KafkaLookupService::CatchUp(const InstanceInfo& instance, bool log, bool index) {
  auto state = State(instance);
  const auto deadline = SteadyClock::now() + std::chrono::milliseconds(options_.catchup_timeout_ms);
  std::lock_guard<std::mutex> lock(state->mu);
  if (log) AQ_RETURN_IF_ERROR(CatchUpStream(instance, state.get(), &state->log, deadline));
  if (index) AQ_RETURN_IF_ERROR(CatchUpStream(instance, state.get(), &state->index, deadline));
  return Status::OK();
}

Result<Message> DecodeMessage(const rd_kafka_message_t* m) {
  Message message;
  message.offset = m->offset;
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const void* value = nullptr;
    size_t size = 0;
    if (rd_kafka_header_get_last(headers, kCallHeader, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      message.call.assign(static_cast<const char*>(value), size);
    }
    if (rd_kafka_header_get_last(headers, kGroupHeader, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      message.group.emplace(static_cast<const char*>(value), size);
    }
    message.end = rd_kafka_header_get_last(headers, kEndHeader, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
    message.marker = rd_kafka_header_get_last(headers, kMarkerHeader, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  if (message.marker) return message;
  if (m->len < 8 || m->key_len == 0) {
    return Corruption("message at offset {} of {}: value of {} bytes, key of {} bytes", m->offset,
                      rd_kafka_topic_name(m->rkt), m->len, m->key_len);
  }
  const char* payload = static_cast<const char*>(m->payload);
  message.record.key.assign(static_cast<const char*>(m->key), m->key_len);
  message.record.timestamp_ms = static_cast<int64_t>(GetBigEndian64(payload));
  message.record.avro.assign(payload + 8, m->len - 8);
  return message;
}

Status KafkaLookupService::CatchUpStream(const InstanceInfo& instance, InstanceState* state, Stream* stream,
                                         SteadyClock::time_point deadline) {
  auto remaining_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  };
  AQ_ASSIGN_OR_RETURN(int64_t high, HighWatermark(stream->topic, remaining_ms()));
  if (high < stream->next) {
    // The topic was removed (and maybe made again) by another process: start over.
    ResetStream(stream);
    (stream->is_log ? state->log_created : state->index_created) = false;
    (stream->is_log ? state->log_retention_set : state->index_retention_set) = kRetentionUnknown;
    AQ_RETURN_IF_ERROR(store_->RemoveInstance(stream->is_log ? LogStore(instance, true) : IndexStore(instance)));
  }
  if (high <= stream->next) return Status::OK();
  if (stream->queue == nullptr) {
    // The partition's messages go to a queue of its own (not the consumer's
    // main queue), so each stream is read on its own. The consumer has no
    // subscription: assignments are incremental, one partition per stream.
    rd_kafka_queue_t* queue = rd_kafka_queue_get_partition(consumer_, stream->topic.c_str(), kPartition);
    if (queue == nullptr) return Unavailable("kafka lookup: no queue for {}", stream->topic);
    rd_kafka_queue_forward(queue, nullptr);
    rd_kafka_topic_partition_list_t* partitions = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(partitions, stream->topic.c_str(), kPartition)->offset =
        stream->next == 0 ? RD_KAFKA_OFFSET_BEGINNING : stream->next;
    rd_kafka_error_t* error = rd_kafka_incremental_assign(consumer_, partitions);
    rd_kafka_topic_partition_list_destroy(partitions);
    if (error != nullptr) {
      Status status = Unavailable("kafka lookup: consuming {}: {}", stream->topic, rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
      rd_kafka_queue_destroy(queue);
      return status;
    }
    stream->queue = queue;
  }
  // What one consume call delivered: decoded messages at or above `next`.
  struct Consumed {
    Stream* stream;
    std::vector<Message> messages;
    Status status = Status::OK();
  };
  auto on_message = [](rd_kafka_message_t* m, void* opaque) {
    auto* consumed = static_cast<Consumed*>(opaque);
    if (!consumed->status.ok()) return;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        consumed->status = Unavailable("kafka lookup: consuming {}: {}", consumed->stream->topic,
                                       rd_kafka_message_errstr(m));
      }
      return;
    }
    if (m->offset < consumed->stream->next) return;
    auto decoded = DecodeMessage(m);
    if (!decoded.ok()) {
      consumed->status = decoded.status();
      return;
    }
    consumed->stream->next = m->offset + 1;
    consumed->messages.push_back(std::move(*decoded));
  };
  while (stream->next < high) {
    const int64_t wait_ms = remaining_ms();
    if (wait_ms <= 0) {
      return Unavailable("kafka lookup: {} is applied up to offset {} of {}, not caught up within {} ms",
                         stream->topic, stream->next, high, options_.catchup_timeout_ms);
    }
    // Returns as soon as one or more messages are there (a batch call would
    // wait for a full batch).
    Consumed consumed{stream, {}, Status::OK()};
    if (rd_kafka_consume_callback_queue(stream->queue, static_cast<int>(std::min<int64_t>(wait_ms, 200)), on_message,
                                        &consumed) < 0) {
      return Unavailable("kafka lookup: consuming {}: {}", stream->topic, rd_kafka_err2str(rd_kafka_last_error()));
    }
    std::vector<Message> messages = std::move(consumed.messages);
    Status status = consumed.status;
    Status applied = Apply(instance, stream, std::move(messages));
    if (!applied.ok()) {
      // The store may hold part of the batch: rebuild this stream from the start next time.
      ResetStream(stream);
      Status removed = store_->RemoveInstance(stream->is_log ? LogStore(instance, true) : IndexStore(instance));
      return removed.ok() ? applied : removed;
    }
    if (!status.ok()) return status;
  }
  return Status::OK();
}

// Applies consumed messages to the local store in order. Records without a
// group are applied as they come. A group's messages (one call, one group id,
// consecutive) are applied together, as one group of the local store (which
// skips a group id it already applied), once the message marked as the
// group's last arrives; until then they wait in stream->run. A group cut off
// by a message of another call is incomplete (its writer failed midway; the
// redelivery writes it whole): the log drops it, the index applies its
// records without the group (compaction may have removed the last message of
// a complete group there).
Status KafkaLookupService::Apply(const InstanceInfo& instance, Stream* stream, std::vector<Message> messages) {
  if (messages.empty()) return Status::OK();
  const InstanceInfo local = stream->is_log ? LogStore(instance, true) : IndexStore(instance);
  const size_t limit = options_.limits.max_records_in_batch;
  std::vector<Record> records;
  std::vector<int64_t> offsets;  // the Kafka offset of each record: its offset in the store too
  std::vector<driver::RecordGroup> groups;
  bool grouped = false;
  int64_t upto = 0;  // one past the last message that the pending records account for
  // Writes the pending records at their Kafka offsets and moves the store's
  // sequence to `next` (at least `upto`): offsets are the topic's, the same
  // in every process however much of the topic it read.
  auto flush = [&](int64_t next) -> Status {
    if (records.empty() && groups.empty() && next <= upto) return Status::OK();  // nothing pending
    next = std::max(next, upto);
    Status status = positioned_->WriteRecordsAt(
        local, records, grouped ? std::span<const driver::RecordGroup>(groups) : std::span<const driver::RecordGroup>(),
        offsets, next);
    records.clear();
    offsets.clear();
    groups.clear();
    return status;
  };
  auto add_plain = [&](Message&& message) -> Status {
    if (grouped || records.size() >= limit) AQ_RETURN_IF_ERROR(flush(upto));
    grouped = false;
    records.push_back(std::move(message.record));
    offsets.push_back(message.offset);
    upto = message.offset + 1;
    return Status::OK();
  };
  auto close_run = [&](bool complete) -> Status {
    std::vector<Message> run = std::move(stream->run);
    stream->run.clear();
    if (run.empty()) return Status::OK();
    if (complete) {
      size_t count = 0;
      for (const Message& message : run) count += message.marker ? 0 : 1;
      if (!grouped || records.size() + count > limit) AQ_RETURN_IF_ERROR(flush(upto));
      grouped = true;
      groups.push_back({*run.front().group, count});
      for (Message& message : run) {
        if (message.marker) continue;
        records.push_back(std::move(message.record));
        offsets.push_back(message.offset);
      }
      upto = run.back().offset + 1;
    } else if (!stream->is_log) {
      for (Message& message : run) {
        if (!message.marker) AQ_RETURN_IF_ERROR(add_plain(std::move(message)));
      }
    }
    return Status::OK();
  };
  for (Message& message : messages) {
    if (!message.group) {
      AQ_RETURN_IF_ERROR(close_run(false));
      if (!message.marker) AQ_RETURN_IF_ERROR(add_plain(std::move(message)));
      continue;
    }
    if (!stream->run.empty() &&
        (stream->run.front().call != message.call || *stream->run.front().group != *message.group)) {
      AQ_RETURN_IF_ERROR(close_run(false));
    }
    const bool end = message.end;
    stream->run.push_back(std::move(message));
    if (end) AQ_RETURN_IF_ERROR(close_run(true));
  }
  // The sequence stops below a group still open at the end of the topic (its
  // records take their offsets when its last message arrives).
  return flush(stream->run.empty() ? stream->next : stream->run.front().offset);
}

}  // namespace

Result<LookupOptions> ParseLookupOptions(const driver::Config& config, const driver::DriverContext& context) {
  LookupOptions options;
  AQ_ASSIGN_OR_RETURN(options.client, ParseClientOptions(config));
  options.state_dir = driver::ConfigString(config, "state_dir", context.data_dir + "/kafka-lookup");
  auto positive = [&](const char* name, int64_t fallback, int64_t* out) -> Status {
    AQ_ASSIGN_OR_RETURN(int64_t value, driver::ConfigInt(config, name, fallback));
    if (value < 1) return InvalidArgument("kafka lookup: config '{}': must be positive, got {}", name, value);
    *out = value;
    return Status::OK();
  };
  AQ_RETURN_IF_ERROR(positive("catchup_timeout_ms", options.catchup_timeout_ms, &options.catchup_timeout_ms));
  AQ_RETURN_IF_ERROR(positive("applied_window_ms", options.applied_window_ms, &options.applied_window_ms));
  int64_t value = 0;
  AQ_RETURN_IF_ERROR(positive("max_key_size", static_cast<int64_t>(options.limits.max_key_size), &value));
  options.limits.max_key_size = static_cast<size_t>(value);
  AQ_RETURN_IF_ERROR(positive("max_record_size", static_cast<int64_t>(options.limits.max_record_size), &value));
  options.limits.max_record_size = static_cast<size_t>(value);
  AQ_RETURN_IF_ERROR(
      positive("max_records_in_batch", static_cast<int64_t>(options.limits.max_records_in_batch), &value));
  options.limits.max_records_in_batch = static_cast<size_t>(value);
  options.compression = driver::ConfigString(config, "compression", options.compression);
  if (context.clock != nullptr) options.clock = context.clock;
  return options;
}

Result<std::shared_ptr<driver::LookupService>> MakeLookupService(const LookupOptions& options) {
  auto service = std::make_shared<KafkaLookupService>(options);
  AQ_RETURN_IF_ERROR(service->Open());
  return std::shared_ptr<driver::LookupService>(std::move(service));
}

void RegisterLookup(driver::Registry* registry) {
  registry->Register("kafka", driver::Factory<driver::LookupService>(
                                  [](const driver::Config& config, const driver::DriverContext& context)
                                      -> Result<std::shared_ptr<driver::LookupService>> {
                                    AQ_ASSIGN_OR_RETURN(LookupOptions options, ParseLookupOptions(config, context));
                                    return MakeLookupService(options);
                                  }));
}

}  // namespace aquifer::drivers::kafka
