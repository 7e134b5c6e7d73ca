#include "aquifer/drivers/kafka/queue.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "aquifer/base/uuid.h"

namespace aquifer::drivers::kafka {
namespace {

using driver::Message;
using driver::OutgoingMessage;
using driver::SubscriptionOptions;
using Steady = std::chrono::steady_clock;

// Room a topic's max.message.bytes leaves beyond max_message_size for the
// record batch header, the key and the record framing.
constexpr size_t kBatchOverhead = 64 << 10;
constexpr size_t kMaxKeySize = 16 << 10;
// Each message carries its publishing process's sequence number, so a member
// merging several partitions hands out messages published in the same
// millisecond in publish order.
constexpr char kSequenceHeader[] = "aq.seq";
std::atomic<uint64_t> next_sequence{1};

struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const { rd_kafka_AdminOptions_destroy(o); }
};

Status CheckName(std::string_view what, std::string_view name) {
  if (name.empty()) return InvalidArgument("{} name is empty", what);
  return Status::OK();
}

std::string OrderedMetadata(bool ordered) { return ordered ? "aquifer:ordered=1" : "aquifer:ordered=0"; }

// ---------------------------------------------------------------------------
// Producer: one idempotent producer per queue object, with a thread serving
// its delivery reports. A Publish waits for the reports of its messages.

struct Delivery {
  std::mutex mu;
  std::condition_variable done;
  size_t pending = 0;
  rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::atomic<size_t> refs{0};  // one per message in librdkafka, one for the publisher
};

void Release(Delivery* delivery, size_t n = 1) {
  if (delivery->refs.fetch_sub(n) == n) delete delivery;
}

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void*) {
  auto* delivery = static_cast<Delivery*>(message->_private);
  if (delivery == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(delivery->mu);
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR && delivery->error == RD_KAFKA_RESP_ERR_NO_ERROR) {
      delivery->error = message->err;
    }
    --delivery->pending;
  }
  delivery->done.notify_all();
  Release(delivery);
}

class Producer {
 public:
  static Result<std::shared_ptr<Producer>> Make(const QueueOptions& options) {
    const size_t max_bytes = options.max_message_size + kBatchOverhead;
    const int64_t timeout = options.client.request_timeout_ms;
    AQ_ASSIGN_OR_RETURN(ConfPtr conf, MakeConf(options.client, {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", std::to_string(options.linger_ms)},
        {"compression.type", options.compression},
        {"message.max.bytes", std::to_string(max_bytes)},
        {"batch.size", std::to_string(std::min<size_t>(max_bytes, 1'000'000))},
        {"message.timeout.ms", std::to_string(timeout)},
        {"request.timeout.ms", std::to_string(std::min<int64_t>(timeout, 30'000))},
    }));
    rd_kafka_conf_set_dr_msg_cb(conf.get(), OnDelivery);
    AQ_ASSIGN_OR_RETURN(KafkaPtr rk, MakeHandle(RD_KAFKA_PRODUCER, std::move(conf)));
    return std::make_shared<Producer>(std::move(rk));
  }

  explicit Producer(KafkaPtr rk) : rk_(std::move(rk)) {
    poller_ = std::thread([this] {
      while (!stopping_) rd_kafka_poll(rk_.get(), 50);
    });
  }

  ~Producer() {
    stopping_ = true;
    poller_.join();
    rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE);
    rd_kafka_flush(rk_.get(), 2'000);  // serves the remaining delivery reports
    rd_kafka_purge(rk_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk_.get(), 0);
  }

  rd_kafka_t* rk() const { return rk_.get(); }

 private:
  KafkaPtr rk_;
  std::atomic<bool> stopping_{false};
  std::thread poller_;
};

// ---------------------------------------------------------------------------
// Member: one Kafka consumer (a group member, or an ephemeral consumer with an
// assignment of its own) and what it fetched, handed out to the local
// Subscription objects that share it.

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

// A fetched message, held as librdkafka returned it (no copy: its payload and
// key stay in the fetch buffer until the message is acked or dropped).
struct Entry {
  enum State : uint8_t { kReady, kOut, kAcked };
  int64_t offset = 0;
  MessagePtr message;  // reset once acked
  int64_t publish_time_ms = 0;
  uint64_t sequence = 0;  // the publishing process's counter (header aq.seq): orders ties of publish_time_ms
  int64_t deadline_ms = 0;
  int32_t attempts = 0;
  State state = kReady;

  std::string_view key() const {
    return message == nullptr || message->key == nullptr
               ? std::string_view()
               : std::string_view(static_cast<const char*>(message->key), message->key_len);
  }
  size_t size() const { return message == nullptr ? 0 : message->len; }
};

// Delivery attempts survive a change of owner: the committed offset's metadata
// carries the attempt counts of the first kCarriedAttempts unacked messages at
// and after it that were handed out, as ";a=<offset - committed>:<attempts>,..."
// after the `ordered` setting; the partition's next owner (another member, or
// this process after a restart) reads them back on assignment and counts on.
// The metadata stays near kMaxCarriedMetadata bytes (brokers refuse a commit
// whose metadata exceeds offset.metadata.max.bytes, 4096 by default).
constexpr size_t kCarriedAttempts = 64;
constexpr size_t kMaxCarriedMetadata = 1024;

struct PartitionState {
  std::deque<Entry> entries;         // by offset; unacked ones, and acked ones behind an unacked one
  int64_t commit_offset = -1;        // next offset to read once everything before is acked
  bool dirty = false;                // commit_offset or the carried attempts not committed yet
  std::map<int64_t, int32_t> carried;  // attempts handed out by earlier owners, by offset (until fetched)

  // The entry at `offset`, or nullptr.
  Entry* Find(int64_t offset) {
    auto it = std::lower_bound(entries.begin(), entries.end(), offset,
                               [](const Entry& e, int64_t o) { return e.offset < o; });
    return it != entries.end() && it->offset == offset ? &*it : nullptr;
  }
};

std::string OrderedSetting(std::string_view metadata) { return std::string(metadata.substr(0, metadata.find(';'))); }

// The carried attempts of committed metadata, by offset (base: the committed offset).
std::map<int64_t, int32_t> ParseCarriedAttempts(std::string_view metadata, int64_t base) {
  std::map<int64_t, int32_t> carried;
  const size_t at = metadata.find(";a=");
  if (at == std::string_view::npos || base < 0) return carried;
  std::string_view rest = metadata.substr(at + 3);
  while (!rest.empty()) {
    const size_t comma = std::min(rest.find(','), rest.size());
    std::string_view pair = rest.substr(0, comma);
    rest = rest.substr(std::min(comma + 1, rest.size()));
    const size_t colon = pair.find(':');
    if (colon == std::string_view::npos) continue;
    int64_t delta = 0;
    int32_t attempts = 0;
    auto [d_end, d_ec] = std::from_chars(pair.data(), pair.data() + colon, delta);
    auto [a_end, a_ec] = std::from_chars(pair.data() + colon + 1, pair.data() + pair.size(), attempts);
    if (d_ec != std::errc() || a_ec != std::errc() || delta < 0 || attempts < 1) continue;
    carried[base + delta] = attempts;
  }
  return carried;
}

class Member {
 public:
  Member(const QueueOptions& options, Clock* clock, std::string topic, std::string kafka_topic, std::string group,
         bool persistent, bool ordered)
      : options_(options), clock_(clock), topic_(std::move(topic)), kafka_topic_(std::move(kafka_topic)),
        group_(std::move(group)), persistent_(persistent), ordered_(ordered) {}

  ~Member() {
    stopping_ = true;
    if (fetcher_.joinable()) fetcher_.join();
    if (rk_ != nullptr) {
      if (persistent_) CommitDirty(/*sync=*/true);
      rd_kafka_consumer_close(rk_.get());  // leaves the group at once (revoking: the callback commits)
      std::lock_guard<std::mutex> lock(mu_);
      parts_.clear();  // the held messages go before their handle
    }
  }

  bool ordered() const { return ordered_; }
  const std::string& topic() const { return topic_; }
  const std::string& group() const { return group_; }

  Status Start(int partitions) {
    const size_t fetch_bytes = std::max<size_t>(options_.max_message_size + kBatchOverhead, 1 << 20);
    std::vector<std::pair<std::string, std::string>> settings = {
        {"group.id", group_},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"enable.partition.eof", "false"},
        {"session.timeout.ms", std::to_string(options_.session_timeout_ms)},
        {"heartbeat.interval.ms", std::to_string(std::max<int64_t>(options_.session_timeout_ms / 3, 100))},
        {"fetch.wait.max.ms", "100"},
        {"max.partition.fetch.bytes", std::to_string(fetch_bytes)},
        {"fetch.max.bytes", std::to_string(std::max<size_t>(fetch_bytes, 50 << 20))},
        {"receive.message.max.bytes", std::to_string(std::max<size_t>(fetch_bytes, 50 << 20) + (1 << 20))},
        {"queued.max.messages.kbytes", "65536"},
    };
    AQ_ASSIGN_OR_RETURN(ConfPtr conf, MakeConf(options_.client, settings));
    if (persistent_) rd_kafka_conf_set_rebalance_cb(conf.get(), &Member::OnRebalance);
    rd_kafka_conf_set_opaque(conf.get(), this);
    AQ_ASSIGN_OR_RETURN(rk_, MakeHandle(RD_KAFKA_CONSUMER, std::move(conf)));
    rd_kafka_poll_set_consumer(rk_.get());
    const int timeout = static_cast<int>(options_.client.request_timeout_ms);
    if (persistent_) {
      AQ_RETURN_IF_ERROR(CheckOrMarkGroup(partitions, timeout));
      PartitionList topics(rd_kafka_topic_partition_list_new(1));
      rd_kafka_topic_partition_list_add(topics.get(), kafka_topic_.c_str(), RD_KAFKA_PARTITION_UA);
      rd_kafka_resp_err_t err = rd_kafka_subscribe(rk_.get(), topics.get());
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, Describe("subscribing"));
    } else {
      // Every partition from its high watermark: exactly what is published from now on.
      PartitionList assignment(rd_kafka_topic_partition_list_new(partitions));
      for (int p = 0; p < partitions; ++p) {
        auto marks = Watermarks(rk_.get(), options_.client, kafka_topic_, p);
        if (!marks.ok()) return marks.status().WithContext(Describe("opening"));
        rd_kafka_topic_partition_list_add(assignment.get(), kafka_topic_.c_str(), p)->offset = marks->second;
        parts_[p];
      }
      rd_kafka_resp_err_t err = rd_kafka_assign(rk_.get(), assignment.get());
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, Describe("assigning partitions to"));
      assigned_ = true;
    }
    fetcher_ = std::thread([this] { Fetch(); });
    if (persistent_) {
      // Joining the group takes a round or two; wait for the first assignment
      // so that Pull right after Subscribe finds the member fetching.
      std::unique_lock<std::mutex> lock(mu_);
      changed_.wait_for(lock, std::chrono::milliseconds(timeout), [&] { return assigned_; });
    }
    return Status::OK();
  }

  Result<std::vector<Message>> Pull(int64_t ack_timeout_ms, size_t max_messages, int64_t timeout_ms) {
    const auto deadline = Steady::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      std::vector<Message> out = Dispatch(ack_timeout_ms, max_messages);
      auto now = Steady::now();
      if (!out.empty()) return out;
      if (now >= deadline) {
        if (!fetch_error_.empty() && fetch_error_since_ != Steady::time_point{} &&
            now - fetch_error_since_ > std::chrono::milliseconds(options_.client.request_timeout_ms)) {
          return Unavailable("{}: {}", Describe("pulling from"), fetch_error_);
        }
        return out;
      }
      // Deadlines follow the injected clock, which moves without telling: look again soon.
      changed_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)));
    }
  }

  void Ack(std::span<const std::string> ids) { Settle(ids, /*ack=*/true); }
  void Nack(std::span<const std::string> ids) { Settle(ids, /*ack=*/false); }

 private:
  std::string Describe(std::string_view what) const {
    return fmt::format("{} {} subscription of '{}' (kafka topic '{}', {})", what,
                       persistent_ ? "persistent" : "ephemeral", topic_, kafka_topic_,
                       persistent_ ? "group '" + group_ + "'" : "no group");
  }

  // A new group records its `ordered` setting in committed offsets at the low
  // watermarks (where auto.offset.reset=earliest would start it anyway); an
  // existing one must have been made with the same setting.
  Status CheckOrMarkGroup(int partitions, int timeout) {
    PartitionList list(rd_kafka_topic_partition_list_new(partitions));
    for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list.get(), kafka_topic_.c_str(), p);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk_.get(), list.get(), timeout);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, Describe("reading the committed offsets of"));
    bool any = false;
    for (int i = 0; i < list->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = list->elems[i];
      if (tp.offset < 0) continue;
      any = true;
      std::string_view metadata(static_cast<const char*>(tp.metadata), tp.metadata_size);
      if (OrderedSetting(metadata) == OrderedMetadata(!ordered_)) {
        return FailedPrecondition("subscription '{}' of '{}' exists with ordered={}, asked for ordered={}",
                                  group_, topic_, !ordered_, ordered_);
      }
    }
    if (any) return Status::OK();
    PartitionList marks(rd_kafka_topic_partition_list_new(partitions));
    for (int p = 0; p < partitions; ++p) {
      auto watermarks = Watermarks(rk_.get(), options_.client, kafka_topic_, p);
      if (!watermarks.ok()) return watermarks.status().WithContext(Describe("creating"));
      AddCommit(marks.get(), p, watermarks->first, OrderedMetadata(ordered_));
    }
    err = rd_kafka_commit(rk_.get(), marks.get(), /*async=*/0);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, Describe("creating"));
    return Status::OK();
  }

  void AddCommit(rd_kafka_topic_partition_list_t* list, int32_t partition, int64_t offset,
                 const std::string& metadata) const {
    rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(list, kafka_topic_.c_str(), partition);
    tp->offset = offset;
    tp->metadata = malloc(metadata.size());  // freed by the list
    memcpy(tp->metadata, metadata.data(), metadata.size());
    tp->metadata_size = metadata.size();
  }

  // Under mu_: the offset to commit for a partition and its metadata (the
  // `ordered` setting, then the attempts of the first messages handed out at
  // and after it); offset -1 when there is nothing to commit.
  std::pair<int64_t, std::string> CommitPoint(const PartitionState& state) const {
    const int64_t base = state.commit_offset >= 0    ? state.commit_offset
                         : !state.entries.empty()    ? state.entries.front().offset
                                                     : -1;
    std::string metadata = OrderedMetadata(ordered_);
    if (base < 0) return {base, metadata};
    size_t carried = 0;
    const char* separator = ";a=";
    for (const Entry& entry : state.entries) {
      if (carried == kCarriedAttempts || metadata.size() > kMaxCarriedMetadata) break;
      if (entry.state == Entry::kAcked || entry.attempts == 0 || entry.offset < base) continue;
      metadata += separator;
      separator = ",";
      metadata += std::to_string(entry.offset - base);
      metadata += ':';
      metadata += std::to_string(entry.attempts);
      ++carried;
    }
    // Attempts of earlier owners not fetched again yet stay carried.
    for (const auto& [offset, attempts] : state.carried) {
      if (carried == kCarriedAttempts || metadata.size() > kMaxCarriedMetadata) break;
      if (offset < base) continue;
      metadata += separator;
      separator = ",";
      metadata += std::to_string(offset - base);
      metadata += ':';
      metadata += std::to_string(attempts);
      ++carried;
    }
    return {base, metadata};
  }

  // Commits the acked prefixes and carried attempts that moved since the last commit.
  void CommitDirty(bool sync) {
    PartitionList list(rd_kafka_topic_partition_list_new(4));
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [partition, state] : parts_) {
        if (!state.dirty) continue;
        state.dirty = false;
        auto [offset, metadata] = CommitPoint(state);
        if (offset >= 0) AddCommit(list.get(), partition, offset, metadata);
      }
    }
    if (list->cnt == 0) return;
    // A failed commit only means the next owner redelivers a little more.
    (void)rd_kafka_commit(rk_.get(), list.get(), sync ? 0 : 1);
  }

  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* partitions,
                          void* opaque) {
    auto* self = static_cast<Member*>(opaque);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      // The committed offsets' metadata carries the delivery attempts of the
      // earlier owners (CommitPoint). Failing to read them only restarts the count.
      PartitionList committed(rd_kafka_topic_partition_list_copy(partitions));
      rd_kafka_resp_err_t read =
          rd_kafka_committed(rk, committed.get(), static_cast<int>(self->options_.client.request_timeout_ms));
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        ++self->epoch_;
        self->parts_.clear();
        self->buffered_ = 0;
        self->buffered_bytes_ = 0;
        for (int i = 0; i < partitions->cnt; ++i) self->parts_[partitions->elems[i].partition];
        for (int i = 0; read == RD_KAFKA_RESP_ERR_NO_ERROR && i < committed->cnt; ++i) {
          const rd_kafka_topic_partition_t& tp = committed->elems[i];
          if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR || tp.metadata == nullptr) continue;
          self->parts_[tp.partition].carried = ParseCarriedAttempts(
              std::string_view(static_cast<const char*>(tp.metadata), tp.metadata_size), tp.offset);
        }
        self->assigned_ = true;
        self->paused_ = false;
      }
      rd_kafka_assign(rk, partitions);
    } else {
      // Revoked (eager protocol: everything): commit what was acked, forget the
      // rest; its next owner fetches it again from the committed offsets.
      self->CommitDirty(/*sync=*/true);
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        ++self->epoch_;
        self->parts_.clear();
        self->buffered_ = 0;
        self->buffered_bytes_ = 0;
        self->paused_ = false;
      }
      rd_kafka_assign(rk, nullptr);
    }
    self->changed_.notify_all();
  }

  // The fetcher thread: polls the consumer (which also runs the rebalance
  // callback), files messages, commits moved prefixes, pauses while full.
  void Fetch() {
    auto last_commit = Steady::now();
    std::vector<rd_kafka_message_t*> batch;
    while (!stopping_) {
      // What one fetch brought is filed at once, so a Pull sees it whole.
      batch.clear();
      for (rd_kafka_message_t* message = rd_kafka_consumer_poll(rk_.get(), 50); message != nullptr;
           message = batch.size() < 10'000 ? rd_kafka_consumer_poll(rk_.get(), 0) : nullptr) {
        batch.push_back(message);
      }
      if (!batch.empty()) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          for (rd_kafka_message_t* message : batch) File(MessagePtr(message));
        }
        changed_.notify_all();
      }
      if (persistent_ && Steady::now() - last_commit > std::chrono::milliseconds(20)) {
        CommitDirty(/*sync=*/false);
        last_commit = Steady::now();
      }
      Throttle();
    }
  }

  // Under mu_: keeps a fetched message (or notes its error).
  void File(MessagePtr message) {
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      if (fetch_error_.empty()) fetch_error_since_ = Steady::now();
      fetch_error_ = fmt::format("{} ({})", rd_kafka_message_errstr(message.get()), rd_kafka_err2name(message->err));
      return;
    }
    if (!fetch_error_.empty()) {
      fetch_error_.clear();
      fetch_error_since_ = {};
    }
    auto part = parts_.find(message->partition);
    if (part == parts_.end()) return;  // revoked meanwhile
    PartitionState& state = part->second;
    const int64_t offset = message->offset;
    // A partition's messages come in offset order; anything at or below what
    // is held already (a fetch repeated after a pause) is a duplicate.
    if (!state.entries.empty() && offset <= state.entries.back().offset) return;
    if (state.commit_offset >= 0 && offset < state.commit_offset) return;
    Entry& entry = state.entries.emplace_back();
    entry.offset = offset;
    if (!state.carried.empty()) {
      auto carried = state.carried.find(offset);
      if (carried != state.carried.end()) entry.attempts = carried->second;
      state.carried.erase(state.carried.begin(), state.carried.upper_bound(offset));
    }
    rd_kafka_timestamp_type_t type;
    entry.publish_time_ms = rd_kafka_message_timestamp(message.get(), &type);
    rd_kafka_headers_t* headers = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    if (rd_kafka_message_headers(message.get(), &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(headers, kSequenceHeader, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR && size == 8) {
      for (size_t b = 0; b < 8; ++b) entry.sequence = (entry.sequence << 8) | static_cast<const unsigned char*>(value)[b];
    }
    ++buffered_;
    buffered_bytes_ += message->len;
    entry.message = std::move(message);
  }

  void Throttle() {
    bool pause = false, resume = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const size_t limit = static_cast<size_t>(options_.fetch_buffer_messages);
      const size_t byte_limit = static_cast<size_t>(options_.fetch_buffer_bytes);
      if (!paused_ && (buffered_ >= limit || buffered_bytes_ >= byte_limit)) pause = paused_ = true;
      if (paused_ && buffered_ < limit / 2 && buffered_bytes_ < byte_limit / 2) {
        resume = true;
        paused_ = false;
      }
    }
    if (!pause && !resume) return;
    rd_kafka_topic_partition_list_t* assignment = nullptr;
    if (rd_kafka_assignment(rk_.get(), &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
    PartitionList owned(assignment);
    if (pause) rd_kafka_pause_partitions(rk_.get(), owned.get());
    if (resume) rd_kafka_resume_partitions(rk_.get(), owned.get());
  }

  // The ack id of a delivery: "<epoch>:<partition>:<offset>:<attempt>".
  std::string AckId(int32_t partition, int64_t offset, int32_t attempts) const {
    std::string id;
    const fmt::format_int parts[] = {fmt::format_int(epoch_), fmt::format_int(partition), fmt::format_int(offset),
                                     fmt::format_int(attempts)};
    for (const auto& part : parts) {
      if (!id.empty()) id += ':';
      id.append(part.data(), part.size());
    }
    return id;
  }

  // Under mu_: hands out up to `max` ready messages, oldest first (merged
  // across partitions by publish time and sequence), marking them out until now + ack timeout.
  std::vector<Message> Dispatch(int64_t ack_timeout_ms, size_t max) {
    std::vector<Message> out;
    if (max == 0 || buffered_ == 0) return out;
    out.reserve(std::min(max, buffered_));
    const int64_t now = clock_->NowMillis();
    std::set<std::string_view> blocked;  // ordered: keys with an earlier message out, or skipped
    using It = std::deque<Entry>::iterator;
    struct Cursor {
      int32_t partition;
      PartitionState* state;
      It it, end;
    };
    std::vector<Cursor> cursors;
    for (auto& [partition, state] : parts_) {
      if (!state.entries.empty()) cursors.push_back({partition, &state, state.entries.begin(), state.entries.end()});
    }
    while (out.size() < max) {
      // The cursor whose next entry was published first.
      Cursor* best = nullptr;
      for (Cursor& cursor : cursors) {
        if (cursor.it == cursor.end) continue;
        if (best == nullptr || std::tie(cursor.it->publish_time_ms, cursor.it->sequence) <
                                   std::tie(best->it->publish_time_ms, best->it->sequence)) {
          best = &cursor;
        }
      }
      if (best == nullptr) break;
      Entry& entry = *best->it;
      const size_t index = static_cast<size_t>(best->it - best->state->entries.begin());
      ++best->it;
      if (entry.state == Entry::kAcked) continue;
      const bool ready = entry.state == Entry::kReady || entry.deadline_ms <= now;
      const bool keyed = ordered_ && entry.message->key_len > 0;
      if (!ready) {
        if (keyed) blocked.insert(entry.key());
        continue;
      }
      if (keyed && blocked.count(entry.key()) != 0) continue;
      entry.state = Entry::kOut;
      entry.deadline_ms = now + ack_timeout_ms;
      ++entry.attempts;
      if (persistent_ && index < kCarriedAttempts) best->state->dirty = true;  // the count is carried
      Message& message = out.emplace_back();
      const rd_kafka_message_t* m = entry.message.get();
      if (m->payload != nullptr) message.data.assign(static_cast<const char*>(m->payload), m->len);
      message.ordering_key = entry.key();
      message.publish_time_ms = entry.publish_time_ms;
      message.delivery_attempt = entry.attempts;
      message.ack_id = AckId(best->partition, entry.offset, entry.attempts);
    }
    return out;
  }

  void Settle(std::span<const std::string> ids, bool ack) {
    bool changed = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const std::string& id : ids) {
        int64_t fields[4];
        std::string_view rest = id;
        bool ok = true;
        for (int i = 0; i < 4 && ok; ++i) {
          size_t colon = i < 3 ? rest.find(':') : rest.size();
          if (colon == std::string_view::npos) {
            ok = false;
            break;
          }
          auto [end, ec] = std::from_chars(rest.data(), rest.data() + colon, fields[i]);
          ok = ec == std::errc() && end == rest.data() + colon;
          rest = i < 3 ? rest.substr(colon + 1) : std::string_view();
        }
        if (!ok || static_cast<uint64_t>(fields[0]) != epoch_) continue;  // unknown, or before a rebalance
        auto part = parts_.find(static_cast<int32_t>(fields[1]));
        if (part == parts_.end()) continue;
        PartitionState& state = part->second;
        Entry* entry = state.Find(fields[2]);
        if (entry == nullptr) continue;
        if (entry->state == Entry::kAcked || entry->attempts != fields[3]) continue;  // a later delivery is out
        changed = true;
        if (!ack) {
          if (entry->state == Entry::kOut) entry->state = Entry::kReady;
          continue;
        }
        entry->state = Entry::kAcked;
        buffered_bytes_ -= std::min(buffered_bytes_, entry->size());
        entry->message.reset();
        --buffered_;
        while (!state.entries.empty() && state.entries.front().state == Entry::kAcked) {
          state.commit_offset = state.entries.front().offset + 1;
          state.dirty = persistent_;
          state.entries.pop_front();
        }
      }
    }
    if (changed) changed_.notify_all();
  }

  const QueueOptions options_;
  Clock* const clock_;
  const std::string topic_, kafka_topic_, group_;
  const bool persistent_, ordered_;
  KafkaPtr rk_;
  std::thread fetcher_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable changed_;
  std::map<int32_t, PartitionState> parts_;  // the assignment
  uint64_t epoch_ = 0;                       // bumped by every assignment change
  size_t buffered_ = 0;                      // unacked entries
  size_t buffered_bytes_ = 0;                // their data
  bool assigned_ = false;
  bool paused_ = false;
  std::string fetch_error_;
  Steady::time_point fetch_error_since_{};
};

class KafkaSubscription final : public driver::Subscription {
 public:
  KafkaSubscription(std::shared_ptr<Member> member, int64_t ack_timeout_ms)
      : member_(std::move(member)), ack_timeout_ms_(ack_timeout_ms) {}
  ~KafkaSubscription() override { (void)Close(); }

  Result<std::vector<Message>> Pull(size_t max_messages, int64_t timeout_ms) override {
    if (member_ == nullptr) return FailedPrecondition("pulling from a closed kafka subscription");
    return member_->Pull(ack_timeout_ms_, max_messages, timeout_ms);
  }
  Status Ack(std::span<const std::string> ack_ids) override {
    if (member_ != nullptr) member_->Ack(ack_ids);
    return Status::OK();
  }
  Status Nack(std::span<const std::string> ack_ids) override {
    if (member_ != nullptr) member_->Nack(ack_ids);
    return Status::OK();
  }
  // The last local subscription of a member closes its consumer (committing
  // the acked prefixes and leaving the group); messages it had out stay out
  // until their deadline for the other local subscriptions.
  Status Close() override {
    member_.reset();
    return Status::OK();
  }

 private:
  std::shared_ptr<Member> member_;
  const int64_t ack_timeout_ms_;
};

// ---------------------------------------------------------------------------

struct TopicInfo {
  std::string kafka_name;
  int partitions = 0;
};

class KafkaMessageQueue final : public driver::MessageQueue {
 public:
  KafkaMessageQueue(const QueueOptions& options, Clock* clock, std::shared_ptr<Producer> producer)
      : options_(options), clock_(clock), producer_(std::move(producer)) {}

  driver::MessageQueueCapabilities capabilities() const override {
    driver::MessageQueueCapabilities caps;
    caps.max_message_size = options_.max_message_size;
    caps.durable_publish = true;
    caps.shared_between_processes = true;
    // Partitions are fetched independently: with several, only the order per key holds.
    caps.publish_order_across_keys = options_.partitions == 1;
    return caps;
  }

  Status RegisterTopic(std::string_view topic) override {
    AQ_RETURN_IF_ERROR(CheckName("topic", topic));
    AQ_ASSIGN_OR_RETURN(std::string name, KafkaTopicName(options_.client, topic));
    auto producer = CurrentProducer();
    AQ_RETURN_IF_ERROR(CreateTopic(producer->rk(), options_.client, name, options_.partitions,
                                   {{"max.message.bytes", std::to_string(options_.max_message_size + kBatchOverhead)}}));
    // The topic exists once its metadata says so (leaders elected).
    const auto deadline = Steady::now() + std::chrono::milliseconds(options_.client.request_timeout_ms);
    while (true) {
      auto found = Lookup(topic, producer.get());
      if (found.ok()) return Status::OK();
      if (Steady::now() >= deadline) return Unavailable("registering topic '{}': {}", topic, found.status().message());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  Status Publish(std::string_view topic, std::span<const OutgoingMessage> messages) override {
    const size_t limit = options_.max_message_size;
    for (size_t i = 0; i < messages.size(); ++i) {
      if (messages[i].data.size() > limit) {
        return InvalidArgument("publishing to '{}': message {} of {} bytes exceeds the limit of {} bytes", topic, i,
                               messages[i].data.size(), limit);
      }
      if (messages[i].ordering_key.size() > kMaxKeySize) {
        return InvalidArgument("publishing to '{}': the ordering key of message {} has {} bytes, over the limit of {}",
                               topic, i, messages[i].ordering_key.size(), kMaxKeySize);
      }
    }
    auto producer = CurrentProducer();
    AQ_ASSIGN_OR_RETURN(TopicInfo info, Lookup(topic, producer.get()));
    if (messages.empty()) return Status::OK();
    const int64_t wait_ms = options_.client.request_timeout_ms;
    const auto deadline = Steady::now() + std::chrono::milliseconds(wait_ms + 2'000);
    auto* delivery = new Delivery();
    delivery->refs = messages.size() + 1;
    delivery->pending = messages.size();
    rd_kafka_resp_err_t refused = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (size_t i = 0; i < messages.size(); ++i) {
      const OutgoingMessage& m = messages[i];
      rd_kafka_resp_err_t err;
      while (true) {
        const uint64_t sequence = next_sequence.fetch_add(1);
        unsigned char bytes[8];
        for (int b = 0; b < 8; ++b) bytes[b] = static_cast<unsigned char>(sequence >> (56 - 8 * b));
        err = rd_kafka_producev(
            producer->rk(), RD_KAFKA_V_TOPIC(info.kafka_name.c_str()),
            RD_KAFKA_V_VALUE(const_cast<char*>(m.data.data()), m.data.size()),
            RD_KAFKA_V_KEY(m.ordering_key.empty() ? nullptr : m.ordering_key.data(), m.ordering_key.size()),
            RD_KAFKA_V_HEADER(kSequenceHeader, bytes, sizeof(bytes)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(delivery), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || Steady::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        refused = err;
        const size_t never_sent = messages.size() - i;
        {
          std::lock_guard<std::mutex> lock(delivery->mu);
          delivery->pending -= never_sent;
        }
        Release(delivery, never_sent);
        break;
      }
    }
    rd_kafka_resp_err_t error;
    bool all_reported;
    {
      std::unique_lock<std::mutex> lock(delivery->mu);
      all_reported = delivery->done.wait_until(lock, deadline, [&] { return delivery->pending == 0; });
      error = delivery->error;
    }
    Release(delivery);
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR) error = refused;
    if (error == RD_KAFKA_RESP_ERR_NO_ERROR && all_reported) return Status::OK();
    if (rd_kafka_fatal_error(producer->rk(), nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) ReplaceProducer(producer);
    if (!all_reported || error == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT || error == RD_KAFKA_RESP_ERR__TIMED_OUT) {
      return Unavailable("publishing to '{}': the kafka brokers ({}) did not acknowledge within {} ms{}", topic,
                         options_.client.brokers, wait_ms,
                         error != RD_KAFKA_RESP_ERR_NO_ERROR ? fmt::format(" ({})", rd_kafka_err2name(error)) : "");
    }
    if (error == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
      return InvalidArgument("publishing to '{}': kafka refused a message as too large (limit {} bytes): {}", topic,
                             limit, rd_kafka_err2str(error));
    }
    if (error == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || error == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      std::lock_guard<std::mutex> lock(mu_);
      topics_.erase(std::string(topic));
    }
    return KafkaError(error, fmt::format("publishing to '{}'", topic));
  }

  Result<std::unique_ptr<driver::Subscription>> Subscribe(std::string_view topic,
                                                          const SubscriptionOptions& options) override {
    AQ_RETURN_IF_ERROR(CheckName("subscription", options.name));
    if (options.ack_timeout_ms < 1) {
      return InvalidArgument("subscribing to '{}': ack timeout {} ms must be positive", topic, options.ack_timeout_ms);
    }
    auto producer = CurrentProducer();
    auto found = Lookup(topic, producer.get());
    if (!found.ok()) {
      if (found.status().code() == StatusCode::kNotFound) return NotFound("subscribing to '{}': topic is not registered", topic);
      return found.status();
    }
    const TopicInfo info = *found;
    if (!options.persistent) {
      auto member = std::make_shared<Member>(
          options_, clock_, std::string(topic), info.kafka_name,
          fmt::format("{}ephemeral/{}", options_.client.topic_prefix, Uuid::Random().ToString()), false,
          options.ordered);
      AQ_RETURN_IF_ERROR(member->Start(info.partitions));
      return std::unique_ptr<driver::Subscription>(
          std::make_unique<KafkaSubscription>(std::move(member), options.ack_timeout_ms));
    }
    const std::string group = info.kafka_name + "/" + options.name;
    std::lock_guard<std::mutex> subscribing(subscribe_mu_);  // one member per group in this process
    std::shared_ptr<Member> member;
    {
      std::lock_guard<std::mutex> lock(mu_);
      member = members_[group].lock();
    }
    if (member != nullptr) {
      if (member->ordered() != options.ordered) {
        return FailedPrecondition("subscription '{}' of '{}' exists with ordered={}, asked for ordered={}",
                                  options.name, topic, member->ordered(), options.ordered);
      }
    } else {
      member = std::make_shared<Member>(options_, clock_, std::string(topic), info.kafka_name, group, true,
                                        options.ordered);
      Status started = member->Start(info.partitions);
      if (!started.ok()) return started;
      std::lock_guard<std::mutex> lock(mu_);
      members_[group] = member;
    }
    return std::unique_ptr<driver::Subscription>(
        std::make_unique<KafkaSubscription>(std::move(member), options.ack_timeout_ms));
  }

  Status Reset() override {
    auto producer = CurrentProducer();
    rd_kafka_t* rk = producer->rk();
    const int timeout = static_cast<int>(options_.client.request_timeout_ms);
    const std::string& prefix = options_.client.topic_prefix;
    std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> admin(
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_ANY));
    char error[512];
    rd_kafka_AdminOptions_set_request_timeout(admin.get(), timeout, error, sizeof(error));
    std::unique_ptr<rd_kafka_queue_t, QueueDeleter> queue(rd_kafka_queue_new(rk));

    // The groups of this prefix.
    rd_kafka_ListConsumerGroups(rk, admin.get(), queue.get());
    std::unique_ptr<rd_kafka_event_t, EventDeleter> listed(rd_kafka_queue_poll(queue.get(), timeout + 2'000));
    if (listed == nullptr) return Unavailable("resetting the queue: listing consumer groups timed out");
    if (rd_kafka_event_error(listed.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaError(rd_kafka_event_error(listed.get()), "resetting the queue: listing consumer groups");
    }
    size_t count = 0;
    const rd_kafka_ConsumerGroupListing_t** groups =
        rd_kafka_ListConsumerGroups_result_valid(rd_kafka_event_ListConsumerGroups_result(listed.get()), &count);
    std::vector<rd_kafka_DeleteGroup_t*> doomed;
    for (size_t i = 0; i < count; ++i) {
      std::string_view id = rd_kafka_ConsumerGroupListing_group_id(groups[i]);
      if (id.starts_with(prefix)) doomed.push_back(rd_kafka_DeleteGroup_new(std::string(id).c_str()));
    }
    listed.reset();
    if (!doomed.empty()) {
      rd_kafka_DeleteGroups(rk, doomed.data(), doomed.size(), admin.get(), queue.get());
      rd_kafka_DeleteGroup_destroy_array(doomed.data(), doomed.size());
      std::unique_ptr<rd_kafka_event_t, EventDeleter> deleted(rd_kafka_queue_poll(queue.get(), timeout + 2'000));
      if (deleted == nullptr) return Unavailable("resetting the queue: deleting consumer groups timed out");
      if (rd_kafka_event_error(deleted.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return KafkaError(rd_kafka_event_error(deleted.get()), "resetting the queue: deleting consumer groups");
      }
      size_t n = 0;
      const rd_kafka_group_result_t** results =
          rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(deleted.get()), &n);
      for (size_t i = 0; i < n; ++i) {
        const rd_kafka_error_t* err = rd_kafka_group_result_error(results[i]);
        if (err != nullptr && rd_kafka_error_code(err) != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
          return Status(StatusCode::kFailedPrecondition,
                        fmt::format("resetting the queue: deleting consumer group '{}': {} (close its subscriptions first)",
                                    rd_kafka_group_result_name(results[i]), rd_kafka_error_string(err)));
        }
      }
    }

    // Every record of this prefix's topics.
    const rd_kafka_metadata_t* metadata = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &metadata, timeout);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, "resetting the queue: reading the topics");
    PartitionList offsets(rd_kafka_topic_partition_list_new(16));
    for (int t = 0; t < metadata->topic_cnt; ++t) {
      std::string_view name = metadata->topics[t].topic;
      if (!name.starts_with(prefix)) continue;
      for (int p = 0; p < metadata->topics[t].partition_cnt; ++p) {
        rd_kafka_topic_partition_list_add(offsets.get(), metadata->topics[t].topic,
                                          metadata->topics[t].partitions[p].id)->offset = RD_KAFKA_OFFSET_END;
      }
    }
    rd_kafka_metadata_destroy(metadata);
    if (offsets->cnt == 0) return Status::OK();
    rd_kafka_DeleteRecords_t* records = rd_kafka_DeleteRecords_new(offsets.get());
    std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> delete_options(
        rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DELETERECORDS));
    rd_kafka_AdminOptions_set_request_timeout(delete_options.get(), timeout, error, sizeof(error));
    rd_kafka_AdminOptions_set_operation_timeout(delete_options.get(), timeout, error, sizeof(error));
    rd_kafka_DeleteRecords(rk, &records, 1, delete_options.get(), queue.get());
    rd_kafka_DeleteRecords_destroy(records);
    std::unique_ptr<rd_kafka_event_t, EventDeleter> done(rd_kafka_queue_poll(queue.get(), timeout + 2'000));
    if (done == nullptr) return Unavailable("resetting the queue: deleting records timed out");
    if (rd_kafka_event_error(done.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return KafkaError(rd_kafka_event_error(done.get()), "resetting the queue: deleting records");
    }
    const rd_kafka_topic_partition_list_t* result =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(done.get()));
    for (int i = 0; result != nullptr && i < result->cnt; ++i) {
      if (result->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return KafkaError(result->elems[i].err, fmt::format("resetting the queue: deleting the records of '{}' [{}]",
                                                            result->elems[i].topic, result->elems[i].partition));
      }
    }
    return Status::OK();
  }

 private:
  std::shared_ptr<Producer> CurrentProducer() {
    std::lock_guard<std::mutex> lock(mu_);
    return producer_;
  }

  // An idempotent producer that hit a fatal error (e.g. its sequence numbers
  // no longer line up after the broker lost state) cannot produce again:
  // the next publishes get a new one.
  void ReplaceProducer(const std::shared_ptr<Producer>& failed) {
    auto fresh = Producer::Make(options_);
    if (!fresh.ok()) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (producer_ == failed) producer_ = std::move(*fresh);
  }

  Result<TopicInfo> Lookup(std::string_view topic, Producer* producer) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = topics_.find(std::string(topic));
      if (it != topics_.end()) return it->second;
    }
    AQ_ASSIGN_OR_RETURN(std::string name, KafkaTopicName(options_.client, topic));
    auto partitions = PartitionCount(producer->rk(), options_.client, name);
    if (!partitions.ok()) {
      if (partitions.status().code() == StatusCode::kNotFound) return NotFound("topic '{}' is not registered", topic);
      return partitions.status();
    }
    TopicInfo info{name, *partitions};
    std::lock_guard<std::mutex> lock(mu_);
    topics_[std::string(topic)] = info;
    return info;
  }

  const QueueOptions options_;
  Clock* const clock_;
  std::mutex subscribe_mu_;
  std::mutex mu_;
  std::shared_ptr<Producer> producer_;                    // guarded by mu_
  std::map<std::string, TopicInfo> topics_;               // guarded by mu_
  std::map<std::string, std::weak_ptr<Member>> members_;  // by group id; guarded by mu_
};

}  // namespace

Result<QueueOptions> ParseQueueOptions(const driver::Config& config) {
  QueueOptions options;
  AQ_ASSIGN_OR_RETURN(options.client, ParseClientOptions(config));
  AQ_ASSIGN_OR_RETURN(int64_t partitions, driver::ConfigInt(config, "partitions", options.partitions));
  if (partitions < 1 || partitions > 10'000) return InvalidArgument("config 'partitions': {} is outside 1..10000", partitions);
  options.partitions = static_cast<int>(partitions);
  AQ_ASSIGN_OR_RETURN(int64_t max_message_size,
                      driver::ConfigInt(config, "max_message_size", static_cast<int64_t>(options.max_message_size)));
  if (max_message_size < 1 || max_message_size > (64 << 20)) {
    return InvalidArgument("config 'max_message_size': {} is outside 1..67108864", max_message_size);
  }
  options.max_message_size = static_cast<size_t>(max_message_size);
  options.compression = driver::ConfigString(config, "compression", options.compression);
  static const std::set<std::string> kCodecs = {"none", "gzip", "snappy", "lz4", "zstd"};
  if (kCodecs.count(options.compression) == 0) {
    return InvalidArgument("config 'compression': '{}' is not one of none, gzip, snappy, lz4, zstd", options.compression);
  }
  AQ_ASSIGN_OR_RETURN(options.linger_ms, driver::ConfigInt(config, "linger_ms", options.linger_ms));
  if (options.linger_ms < 0 || options.linger_ms > 10'000) {
    return InvalidArgument("config 'linger_ms': {} is outside 0..10000", options.linger_ms);
  }
  AQ_ASSIGN_OR_RETURN(options.session_timeout_ms,
                      driver::ConfigInt(config, "session_timeout_ms", options.session_timeout_ms));
  if (options.session_timeout_ms < 1'000 || options.session_timeout_ms > 300'000) {
    return InvalidArgument("config 'session_timeout_ms': {} is outside 1000..300000", options.session_timeout_ms);
  }
  AQ_ASSIGN_OR_RETURN(options.fetch_buffer_messages,
                      driver::ConfigInt(config, "fetch_buffer_messages", options.fetch_buffer_messages));
  if (options.fetch_buffer_messages < 10) {
    return InvalidArgument("config 'fetch_buffer_messages': {} must be at least 10", options.fetch_buffer_messages);
  }
  AQ_ASSIGN_OR_RETURN(options.fetch_buffer_bytes,
                      driver::ConfigInt(config, "fetch_buffer_bytes", options.fetch_buffer_bytes));
  if (options.fetch_buffer_bytes < (1 << 20)) {
    return InvalidArgument("config 'fetch_buffer_bytes': {} must be at least 1048576", options.fetch_buffer_bytes);
  }
  return options;
}

Result<std::shared_ptr<driver::MessageQueue>> MakeMessageQueue(const QueueOptions& options, Clock* clock) {
  auto producer = Producer::Make(options);
  if (!producer.ok()) return producer.status().WithContext("kafka message queue");
  return std::shared_ptr<driver::MessageQueue>(
      std::make_shared<KafkaMessageQueue>(options, clock != nullptr ? clock : Clock::System(), std::move(*producer)));
}

}  // namespace aquifer::drivers::kafka
