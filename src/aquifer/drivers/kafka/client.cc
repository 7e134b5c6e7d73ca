#include "aquifer/drivers/kafka/client.h"

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "aquifer/base/logging.h"

namespace aquifer::drivers::kafka {
namespace {

constexpr std::string_view kPassthrough = "librdkafka.";

bool TopicChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
}

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct NewTopicDeleter {
  void operator()(rd_kafka_NewTopic_t* t) const { rd_kafka_NewTopic_destroy(t); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};

// librdkafka's log lines go to Aquifer's log (stderr by default) as warnings
// (its errors: a broker down, a failed connect; those also reach the caller as
// Status) or debug lines.
void LogLine(const rd_kafka_t* rk, int level, const char* facility, const char* line) {
  if (level <= 4) {
    AQ_LOG(Warn, "kafka {} {}: {}", rd_kafka_name(rk), facility, line);
  } else {
    AQ_LOG(Debug, "kafka {} {}: {}", rd_kafka_name(rk), facility, line);
  }
}

}  // namespace

Result<ClientOptions> ParseClientOptions(const driver::Config& config) {
  ClientOptions options;
  options.brokers = driver::ConfigString(config, "brokers", "");
  if (options.brokers.empty()) {
    return InvalidArgument("config 'brokers': the Kafka bootstrap servers are required, e.g. \"kafka1:9092,kafka2:9092\"");
  }
  options.topic_prefix = driver::ConfigString(config, "topic_prefix", options.topic_prefix);
  for (char c : options.topic_prefix) {
    if (!TopicChar(c) && c != '_') {
      return InvalidArgument("config 'topic_prefix': '{}' may hold only letters, digits, '.', '_' and '-'",
                             options.topic_prefix);
    }
  }
  if (options.topic_prefix.size() > 100) {
    return InvalidArgument("config 'topic_prefix': '{}' is longer than 100 characters", options.topic_prefix);
  }
  options.client_id = driver::ConfigString(config, "client_id", options.client_id);
  AQ_ASSIGN_OR_RETURN(options.request_timeout_ms,
                      driver::ConfigInt(config, "request_timeout_ms", options.request_timeout_ms));
  if (options.request_timeout_ms < 100 || options.request_timeout_ms > 600'000) {
    return InvalidArgument("config 'request_timeout_ms': {} is outside 100..600000", options.request_timeout_ms);
  }
  AQ_ASSIGN_OR_RETURN(int64_t replication, driver::ConfigInt(config, "replication_factor", options.replication_factor));
  if (replication != -1 && (replication < 1 || replication > 100)) {
    return InvalidArgument("config 'replication_factor': {} must be -1 (the broker's default) or 1..100", replication);
  }
  options.replication_factor = static_cast<int32_t>(replication);
  for (const auto& [key, value] : config) {
    if (key.starts_with(kPassthrough) && key.size() > kPassthrough.size()) {
      options.librdkafka[key.substr(kPassthrough.size())] = value;
    }
  }
  return options;
}

Result<ConfPtr> MakeConf(const ClientOptions& options,
                         const std::vector<std::pair<std::string, std::string>>& settings) {
  ConfPtr conf(rd_kafka_conf_new());
  std::vector<std::pair<std::string, std::string>> all = {
      {"bootstrap.servers", options.brokers},
      {"client.id", options.client_id},
      {"socket.timeout.ms", std::to_string(std::max<int64_t>(options.request_timeout_ms, 10))},
      {"broker.address.family", "v4"},
      {"log_level", "4"},  // warnings and errors (LogLine)
  };
  all.insert(all.end(), settings.begin(), settings.end());
  for (const auto& [key, value] : options.librdkafka) all.emplace_back(key, value);
  rd_kafka_conf_set_log_cb(conf.get(), LogLine);
  char error[512];
  for (const auto& [key, value] : all) {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), error, sizeof(error)) != RD_KAFKA_CONF_OK) {
      return InvalidArgument("kafka client property '{}' = '{}': {}", key, value, error);
    }
  }
  return conf;
}

Result<KafkaPtr> MakeHandle(rd_kafka_type_t type, ConfPtr conf) {
  char error[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), error, sizeof(error));
  if (rk == nullptr) {
    return InvalidArgument("making a kafka {}: {}", type == RD_KAFKA_PRODUCER ? "producer" : "consumer", error);
  }
  (void)conf.release();  // rd_kafka_new owns it now
  return KafkaPtr(rk);
}

Result<std::string> KafkaTopicName(const ClientOptions& options, std::string_view name) {
  if (name.empty()) return InvalidArgument("topic name is empty");
  std::string out = options.topic_prefix;
  for (char c : name) {
    if (TopicChar(c)) {
      out.push_back(c);
    } else {
      out += fmt::format("_{:02x}", static_cast<unsigned char>(c));
    }
  }
  if (out.size() > 249) {
    return InvalidArgument("topic '{}' makes the Kafka topic name '{}' of {} characters (Kafka allows 249)", name, out,
                           out.size());
  }
  return out;
}

Status KafkaError(rd_kafka_resp_err_t err, std::string_view what) {
  const std::string text = fmt::format("{}: {} ({})", what, rd_kafka_err2str(err), rd_kafka_err2name(err));
  switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
      return Status::OK();
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
      return Status(StatusCode::kUnavailable, text);
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
      return Status(StatusCode::kInvalidArgument, text);
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return Status(StatusCode::kNotFound, text);
    default:
      return Status(StatusCode::kInternal, text);
  }
}

Status CreateTopic(rd_kafka_t* rk, const ClientOptions& options, const std::string& topic, int partitions,
                   const std::vector<std::pair<std::string, std::string>>& configs) {
  const std::string what = fmt::format("creating kafka topic '{}'", topic);
  char error[512];
  std::unique_ptr<rd_kafka_NewTopic_t, NewTopicDeleter> new_topic(
      rd_kafka_NewTopic_new(topic.c_str(), partitions, options.replication_factor, error, sizeof(error)));
  if (new_topic == nullptr) return InvalidArgument("{}: {}", what, error);
  for (const auto& [key, value] : configs) {
    rd_kafka_resp_err_t err = rd_kafka_NewTopic_set_config(new_topic.get(), key.c_str(), value.c_str());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, fmt::format("{}: config '{}'", what, key));
  }
  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> admin_options(
      rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS));
  const int timeout = static_cast<int>(options.request_timeout_ms);
  if (rd_kafka_AdminOptions_set_request_timeout(admin_options.get(), timeout, error, sizeof(error)) ||
      rd_kafka_AdminOptions_set_operation_timeout(admin_options.get(), timeout, error, sizeof(error))) {
    return Internal("{}: {}", what, error);
  }
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> queue(rd_kafka_queue_new(rk));
  rd_kafka_NewTopic_t* topics[] = {new_topic.get()};
  rd_kafka_CreateTopics(rk, topics, 1, admin_options.get(), queue.get());
  // The request timeout bounds the answer; a little more for the local queue.
  std::unique_ptr<rd_kafka_event_t, EventDeleter> event(rd_kafka_queue_poll(queue.get(), timeout + 2'000));
  if (event == nullptr) return Unavailable("{}: no answer from the brokers within {} ms", what, timeout);
  if (rd_kafka_event_error(event.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return KafkaError(rd_kafka_event_error(event.get()), what);
  }
  const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event.get());
  size_t count = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &count);
  for (size_t i = 0; i < count; ++i) {
    rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) continue;
    const char* detail = rd_kafka_topic_result_error_string(results[i]);
    Status status = KafkaError(err, what);
    return Status(status.code() == StatusCode::kNotFound ? StatusCode::kInternal : status.code(),
                  fmt::format("{}{}{}", status.message(), detail ? ": " : "", detail ? detail : ""));
  }
  return Status::OK();
}

Result<std::pair<int64_t, int64_t>> Watermarks(rd_kafka_t* rk, const ClientOptions& options, const std::string& topic,
                                               int32_t partition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.request_timeout_ms);
  while (true) {
    int64_t low = 0, high = 0;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high,
                                                               static_cast<int>(std::max<int64_t>(left.count(), 1)));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return std::make_pair(low, high);
    const bool settling = err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                          err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                          err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
    if (!settling || std::chrono::steady_clock::now() + std::chrono::milliseconds(50) >= deadline) {
      return KafkaError(err, fmt::format("reading the offsets of kafka topic '{}' partition {}", topic, partition));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<int> PartitionCount(rd_kafka_t* rk, const ClientOptions& options, const std::string& topic) {
  rd_kafka_topic_t* handle = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (handle == nullptr) return Internal("kafka topic handle for '{}': {}", topic, rd_kafka_err2str(rd_kafka_last_error()));
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, 0, handle, &metadata, static_cast<int>(options.request_timeout_ms));
  rd_kafka_topic_destroy(handle);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return KafkaError(err, fmt::format("reading the metadata of kafka topic '{}'", topic));
  }
  int partitions = -1;
  rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  int leaderless = -1;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    if (topic == metadata->topics[i].topic) {
      topic_err = metadata->topics[i].err;
      partitions = metadata->topics[i].partition_cnt;
      for (int p = 0; p < partitions; ++p) {
        if (metadata->topics[i].partitions[p].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
            metadata->topics[i].partitions[p].leader < 0) {
          leaderless = metadata->topics[i].partitions[p].id;
        }
      }
    }
  }
  rd_kafka_metadata_destroy(metadata);
  if (topic_err != RD_KAFKA_RESP_ERR_NO_ERROR || partitions <= 0) {
    return KafkaError(topic_err == RD_KAFKA_RESP_ERR_NO_ERROR ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART : topic_err,
                      fmt::format("kafka topic '{}'", topic));
  }
  if (leaderless >= 0) return Unavailable("kafka topic '{}': partition {} has no leader yet", topic, leaderless);
  return partitions;
}

}  // namespace aquifer::drivers::kafka
