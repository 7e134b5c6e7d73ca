#pragma once

// What every Kafka driver of this folder shares: the client options read from
// the driver config, librdkafka configuration and handles, the mapping of
// Aquifer names to Kafka topic names, librdkafka errors as Status, and topic
// creation through the AdminClient API.
//
// Config keys (every Kafka driver): brokers (required: bootstrap servers,
// "host:port[,host:port...]"); topic_prefix ("aquifer.": every Kafka topic
// and consumer group this driver makes starts with it, so several deployments
// or test runs share a cluster); client_id ("aquifer"); request_timeout_ms
// (10000: the bound on every wait for the broker: metadata, topic creation,
// delivery of a publish; past it, Unavailable); replication_factor (-1: the
// broker's default.replication.factor); and `librdkafka.<property>` for any
// librdkafka property (e.g. `librdkafka.security.protocol = "ssl"`), applied
// after the driver's own settings.

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/driver/types.h"

namespace aquifer::drivers::kafka {

struct ClientOptions {
  std::string brokers;
  std::string topic_prefix = "aquifer.";
  std::string client_id = "aquifer";
  int64_t request_timeout_ms = 10'000;
  int32_t replication_factor = -1;
  std::map<std::string, std::string> librdkafka;  // `librdkafka.<property>` keys, prefix removed
};

Result<ClientOptions> ParseClientOptions(const driver::Config& config);

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

// A librdkafka configuration: bootstrap servers, client id, timeouts, then
// `settings` (the caller's: producer or consumer properties), then the
// `librdkafka.*` passthrough of `options`. InvalidArgument names a property
// librdkafka refused.
Result<ConfPtr> MakeConf(const ClientOptions& options,
                         const std::vector<std::pair<std::string, std::string>>& settings);

// Creates a producer (RD_KAFKA_PRODUCER) or consumer handle; takes `conf`.
Result<KafkaPtr> MakeHandle(rd_kafka_type_t type, ConfPtr conf);

// The Kafka topic (or group id component) of an Aquifer name: topic_prefix,
// then the name with every byte outside [A-Za-z0-9.-] written as `_` and two
// hex digits (so distinct names stay distinct). InvalidArgument when empty or
// longer than Kafka's 249 characters.
Result<std::string> KafkaTopicName(const ClientOptions& options, std::string_view name);

// A librdkafka error as a Status: broker unreachable and timeouts →
// Unavailable; message too large → InvalidArgument; unknown topic →
// NotFound; anything else → Internal. The message names `what` and the error.
Status KafkaError(rd_kafka_resp_err_t err, std::string_view what);

// Creates `topic` (a Kafka name) with `partitions` partitions and the topic
// `configs` through the AdminClient API on `rk` (any handle), waiting up to
// request_timeout_ms. An existing topic is not an error (its partitions and
// configs are left as they are).
Status CreateTopic(rd_kafka_t* rk, const ClientOptions& options, const std::string& topic, int partitions,
                   const std::vector<std::pair<std::string, std::string>>& configs);

// The partition count of `topic` from the cluster's metadata, or NotFound if
// the topic does not exist; Unavailable if the broker does not answer within
// request_timeout_ms or a partition has no leader yet (a topic just created).
Result<int> PartitionCount(rd_kafka_t* rk, const ClientOptions& options, const std::string& topic);

// The low and high watermarks of one partition, retrying while its leader
// settles (a topic just created) up to request_timeout_ms.
Result<std::pair<int64_t, int64_t>> Watermarks(rd_kafka_t* rk, const ClientOptions& options, const std::string& topic,
                                               int32_t partition);

}  // namespace aquifer::drivers::kafka
