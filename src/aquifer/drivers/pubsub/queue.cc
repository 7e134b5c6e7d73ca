#include "aquifer/drivers/pubsub/queue.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "aquifer/base/text.h"
#include "aquifer/base/uuid.h"
#include "google/pubsub/v1/pubsub.grpc.pb.h"

namespace aquifer::drivers::pubsub {
namespace {

namespace pb = ::google::pubsub::v1;
using driver::Message;
using driver::OutgoingMessage;
using driver::SubscriptionOptions;

constexpr size_t kMaxPublishMessages = 1000;        // per Publish call (service limit)
constexpr size_t kMaxPublishBytes = 9'000'000;      // per Publish call (limit 10 MB)
constexpr size_t kMaxAckIds = 500;                  // per Acknowledge / ModifyAckDeadline call
constexpr size_t kMaxOrderingKey = 1024;            // bytes (service limit)
constexpr int32_t kMaxDeliveryAttempts = 100;       // dead-letter policy (service maximum)
constexpr int64_t kEphemeralTtlSeconds = 24 * 3600; // shortest expiration policy allowed
constexpr int64_t kKeeperTickMs = 500;

// Resource ids allow letters, digits and - . _ ~ + %; we keep the first four for names and
// percent-escape the rest ('~' separates topic and subscription name).
std::string Escape(std::string_view name) {
  std::string out;
  for (unsigned char c : name) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '.' || c == '_';
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF): what the service's protobuf parser demands of a string field.
bool IsUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated sequence
    for (size_t j = 1; j <= n; ++j) {
      unsigned char d = static_cast<unsigned char>(s[i + j]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// Ordering keys are strings on the wire (UTF-8), Aquifer's are bytes (the engine's are
// 16-byte instance ids). A key that is not UTF-8, or starts with the marker, is sent as the
// marker plus its base64; received keys are decoded back, so every key round-trips.
constexpr std::string_view kBinaryKeyMarker = "~b64~";

std::string EncodeKey(std::string_view key) {
  if (IsUtf8(key) && !key.starts_with(kBinaryKeyMarker)) return std::string(key);
  return std::string(kBinaryKeyMarker) + Base64Encode(key);
}

std::string DecodeKey(const std::string& key) {
  std::string out;
  if (key.starts_with(kBinaryKeyMarker) && Base64Decode(std::string_view(key).substr(kBinaryKeyMarker.size()), &out)) {
    return out;
  }
  return key;
}

int64_t ToMillis(const ::google::protobuf::Timestamp& t) { return t.seconds() * 1000 + t.nanos() / 1'000'000; }

// A message a Subscription handed out and not yet acked, nacked or released.
struct Held {
  std::string message_id;
  int64_t deadline_us = 0;  // injected clock: released (redelivered) after this
  std::chrono::steady_clock::time_point lease_until;  // real time: when the service's lease ends
};

class PubSubQueue;

// The state of one Subscription object, shared with the queue's lease keeper.
struct SubState {
  std::string path;  // projects/<p>/subscriptions/<id>
  std::string topic;
  bool ephemeral = false;
  int64_t ack_timeout_ms = 0;
  int32_t lease_seconds = 10;  // what each ModifyAckDeadline extends a lease to
  std::mutex mu;
  bool closed = false;
  std::map<std::string, Held> held;  // by ack id
};

class PubSubQueue final : public driver::MessageQueue, public std::enable_shared_from_this<PubSubQueue> {
 public:
  PubSubQueue(QueueOptions options, Clock* clock)
      : options_(std::move(options)),
        clock_(clock != nullptr ? clock : Clock::System()),
        channel_(gcp::MakeChannel(options_.grpc)),
        publisher_(pb::Publisher::NewStub(channel_)),
        subscriber_(pb::Subscriber::NewStub(channel_)) {
    keeper_ = std::thread([this] { KeepLeases(); });
  }

  ~PubSubQueue() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    keeper_cv_.notify_all();
    keeper_.join();
  }

  driver::MessageQueueCapabilities capabilities() const override {
    driver::MessageQueueCapabilities c;
    c.max_message_size = options_.max_message_size;
    c.ordering_keys = true;
    c.ephemeral_subscriptions = true;
    c.durable_publish = true;
    c.shared_between_processes = true;
    // Pub/Sub orders messages per ordering key only.
    c.publish_order_across_keys = false;
    return c;
  }

  Status RegisterTopic(std::string_view topic) override { return CreateTopic(TopicPath(topic), topic); }

  Status Publish(std::string_view topic, std::span<const OutgoingMessage> messages) override {
    for (const auto& m : messages) {
      if (m.data.size() > options_.max_message_size) {
        return InvalidArgument("pubsub: a message of {} bytes is over max_message_size ({} bytes); nothing was published",
                               m.data.size(), options_.max_message_size);
      }
    }
    std::vector<std::string> keys;
    keys.reserve(messages.size());
    for (const auto& m : messages) {
      keys.push_back(EncodeKey(m.ordering_key));
      if (keys.back().size() > kMaxOrderingKey) {
        return InvalidArgument(
            "pubsub: an ordering key of {} bytes ({} as sent) is over Pub/Sub's limit of {} bytes; nothing was published",
            m.ordering_key.size(), keys.back().size(), kMaxOrderingKey);
      }
    }
    const std::string path = TopicPath(topic);
    size_t i = 0;
    while (i < messages.size()) {
      pb::PublishRequest request;
      request.set_topic(path);
      size_t bytes = 0;
      while (i < messages.size() && static_cast<size_t>(request.messages_size()) < kMaxPublishMessages) {
        size_t size = messages[i].data.size() + keys[i].size() + 64;
        if (request.messages_size() > 0 && bytes + size > kMaxPublishBytes) break;
        pb::PubsubMessage* m = request.add_messages();
        m->set_data(messages[i].data.data(), messages[i].data.size());
        if (!keys[i].empty()) m->set_ordering_key(std::move(keys[i]));
        bytes += size;
        ++i;
      }
      AQ_RETURN_IF_ERROR(PublishGrouped(&request, bytes, topic));
    }
    return Status::OK();
  }

  Result<std::unique_ptr<driver::Subscription>> Subscribe(std::string_view topic,
                                                          const SubscriptionOptions& options) override;

  Status Reset() override {
    const std::string parent = fmt::format("projects/{}", options_.grpc.project);
    const std::string mine = fmt::format("{}/subscriptions/{}", parent, options_.prefix);
    std::vector<std::string> doomed;
    std::string page;
    do {
      pb::ListSubscriptionsRequest request;
      request.set_project(parent);
      request.set_page_size(1000);
      request.set_page_token(page);
      pb::ListSubscriptionsResponse response;
      grpc::ClientContext context;
      AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
      grpc::Status s = subscriber_->ListSubscriptions(&context, request, &response);
      if (!s.ok()) return gcp::FromGrpc(s, "pubsub ListSubscriptions");
      for (const auto& sub : response.subscriptions()) {
        if (sub.name().starts_with(mine)) doomed.push_back(sub.name());
      }
      page = response.next_page_token();
    } while (!page.empty());
    for (const auto& name : doomed) AQ_RETURN_IF_ERROR(DeleteSubscription(name));
    return Status::OK();
  }

  // --- used by PubSubSubscription ---

  const QueueOptions& options() const { return options_; }
  Clock* clock() const { return clock_; }
  pb::Subscriber::Stub* subscriber() { return subscriber_.get(); }

  // ModifyAckDeadline (0: release for redelivery) in calls of at most kMaxAckIds ids.
  Status ModifyAckDeadline(const std::string& path, const std::vector<std::string>& ids, int32_t seconds) {
    for (size_t i = 0; i < ids.size(); i += kMaxAckIds) {
      pb::ModifyAckDeadlineRequest request;
      request.set_subscription(path);
      request.set_ack_deadline_seconds(seconds);
      for (size_t j = i; j < std::min(ids.size(), i + kMaxAckIds); ++j) request.add_ack_ids(ids[j]);
      ::google::protobuf::Empty empty;
      grpc::ClientContext context;
      AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
      grpc::Status s = subscriber_->ModifyAckDeadline(&context, request, &empty);
      if (!s.ok()) return gcp::FromGrpc(s, "pubsub ModifyAckDeadline");
    }
    return Status::OK();
  }

  Status Acknowledge(const std::string& path, const std::vector<std::string>& ids) {
    for (size_t i = 0; i < ids.size(); i += kMaxAckIds) {
      pb::AcknowledgeRequest request;
      request.set_subscription(path);
      for (size_t j = i; j < std::min(ids.size(), i + kMaxAckIds); ++j) request.add_ack_ids(ids[j]);
      ::google::protobuf::Empty empty;
      grpc::ClientContext context;
      AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
      grpc::Status s = subscriber_->Acknowledge(&context, request, &empty);
      if (!s.ok()) return gcp::FromGrpc(s, "pubsub Acknowledge");
    }
    return Status::OK();
  }

  Status DeleteSubscription(const std::string& path) {
    pb::DeleteSubscriptionRequest request;
    request.set_subscription(path);
    ::google::protobuf::Empty empty;
    grpc::ClientContext context;
    AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
    grpc::Status s = subscriber_->DeleteSubscription(&context, request, &empty);
    if (!s.ok() && s.error_code() != grpc::StatusCode::NOT_FOUND) return gcp::FromGrpc(s, "pubsub DeleteSubscription");
    return Status::OK();
  }

  // Delivery attempts counted here when the service reports none (no dead-letter policy).
  int32_t CountDelivery(const std::string& path, const std::string& message_id) {
    std::lock_guard<std::mutex> lock(mu_);
    return ++attempts_[path + '\n' + message_id];
  }
  void ForgetDelivery(const std::string& path, const std::string& message_id) {
    std::lock_guard<std::mutex> lock(mu_);
    attempts_.erase(path + '\n' + message_id);
  }

  void Track(const std::shared_ptr<SubState>& state) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.push_back(state);
  }

  // Releases what passed its ack timeout (by the injected clock) and extends the leases that
  // end within half a lease. Called by the keeper and at the start of every Pull.
  Status MaintainLeases(SubState* state) {
    std::vector<std::string> expired, extend;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      if (state->closed) return Status::OK();
      const int64_t now_us = clock_->MonotonicMicros();
      const auto now = std::chrono::steady_clock::now();
      const auto soon = now + std::chrono::seconds(state->lease_seconds) / 2;
      for (auto it = state->held.begin(); it != state->held.end();) {
        if (now_us >= it->second.deadline_us) {
          expired.push_back(it->first);
          it = state->held.erase(it);
          continue;
        }
        if (it->second.lease_until <= soon) {
          extend.push_back(it->first);
          it->second.lease_until = now + std::chrono::seconds(state->lease_seconds);
        }
        ++it;
      }
    }
    if (!expired.empty()) AQ_RETURN_IF_ERROR(ModifyAckDeadline(state->path, expired, 0));
    if (!extend.empty()) AQ_RETURN_IF_ERROR(ModifyAckDeadline(state->path, extend, state->lease_seconds));
    return Status::OK();
  }

 private:
  std::string TopicPath(std::string_view topic) const {
    return fmt::format("projects/{}/topics/{}{}", options_.grpc.project, options_.prefix, Escape(topic));
  }

  Status CreateTopic(const std::string& path, std::string_view topic) {
    pb::Topic request;
    request.set_name(path);
    pb::Topic response;
    grpc::ClientContext context;
    AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
    grpc::Status s = publisher_->CreateTopic(&context, request, &response);
    if (s.ok() || s.error_code() == grpc::StatusCode::ALREADY_EXISTS) return Status::OK();
    return gcp::FromGrpc(s, fmt::format("pubsub CreateTopic {}", topic));
  }

  // Group commit: concurrent Publish calls on one topic share Publish calls. One caller at a
  // time per topic sends (the leader); the others queue their requests, and the leader sends
  // the queued ones in order, merged up to the request limits, and hands each its outcome. A
  // lone caller sends its own request at once.
  struct Pending {
    pb::PublishRequest* request;
    size_t bytes;
    bool done = false;
    Status status;
  };
  struct Lane {
    std::mutex mu;
    std::condition_variable cv;
    bool busy = false;
    std::deque<Pending*> queue;
  };

  Lane* LaneOf(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& lane = lanes_[path];
    if (!lane) lane = std::make_unique<Lane>();
    return lane.get();
  }

  Status PublishGrouped(pb::PublishRequest* request, size_t bytes, std::string_view topic) {
    Lane* lane = LaneOf(request->topic());
    Pending mine{request, bytes, false, Status::OK()};
    std::unique_lock<std::mutex> lock(lane->mu);
    lane->queue.push_back(&mine);
    while (!mine.done) {
      if (lane->busy) {
        lane->cv.wait(lock);
        continue;
      }
      lane->busy = true;
      std::vector<Pending*> group;
      size_t count = 0, total = 0;
      while (!lane->queue.empty()) {
        Pending* next = lane->queue.front();
        size_t n = static_cast<size_t>(next->request->messages_size());
        if (!group.empty() && (count + n > kMaxPublishMessages || total + next->bytes > kMaxPublishBytes)) break;
        group.push_back(next);
        count += n;
        total += next->bytes;
        lane->queue.pop_front();
      }
      lock.unlock();
      Status s;
      if (group.size() == 1) {
        s = PublishBatch(*group[0]->request, topic);
      } else {
        pb::PublishRequest merged;
        merged.set_topic(request->topic());
        merged.mutable_messages()->Reserve(static_cast<int>(count));
        for (Pending* g : group) {
          for (auto& m : *g->request->mutable_messages()) *merged.add_messages() = std::move(m);
        }
        s = PublishBatch(merged, topic);
      }
      lock.lock();
      for (Pending* g : group) {
        g->status = s;
        g->done = true;
      }
      lane->busy = false;
      lane->cv.notify_all();
    }
    return mine.status;
  }

  Status PublishBatch(const pb::PublishRequest& request, std::string_view topic) {
    // Only UNAVAILABLE is retried (the call most likely never reached the service); a retry
    // after anything else could publish twice.
    for (int attempt = 1;; ++attempt) {
      pb::PublishResponse response;
      grpc::ClientContext context;
      AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
      grpc::Status s = publisher_->Publish(&context, request, &response);
      if (s.ok()) {
        if (response.message_ids_size() != request.messages_size()) {
          return Internal("pubsub Publish: {} message ids for {} messages", response.message_ids_size(),
                          request.messages_size());
        }
        return Status::OK();
      }
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        return NotFound("pubsub: topic '{}' is not registered ({})", topic, s.error_message());
      }
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE || attempt >= 4) {
        return gcp::FromGrpc(s, fmt::format("pubsub Publish to {}", topic));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
    }
  }

  void KeepLeases() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      keeper_cv_.wait_for(lock, std::chrono::milliseconds(kKeeperTickMs), [this] { return stopping_; });
      if (stopping_) break;
      std::vector<std::shared_ptr<SubState>> states;
      for (auto it = live_.begin(); it != live_.end();) {
        if (auto s = it->lock()) {
          states.push_back(std::move(s));
          ++it;
        } else {
          it = live_.erase(it);
        }
      }
      lock.unlock();
      // Errors are retried on the next tick; a lease that ends meanwhile is redelivered.
      for (const auto& s : states) (void)MaintainLeases(s.get());
      states.clear();
      lock.lock();
    }
  }

  Status EnsureDeadLetterTopic() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (dead_letter_ready_) return Status::OK();
    }
    AQ_RETURN_IF_ERROR(CreateTopic(DeadLetterTopic(), "dead-letter"));
    std::lock_guard<std::mutex> lock(mu_);
    dead_letter_ready_ = true;
    return Status::OK();
  }

 public:
  std::string DeadLetterTopic() const {
    return fmt::format("projects/{}/topics/{}~dead-letter", options_.grpc.project, options_.prefix);
  }
  Status PrepareDeadLetter() { return options_.dead_letter_policy ? EnsureDeadLetterTopic() : Status::OK(); }
  std::string SubscriptionPath(std::string_view topic, std::string_view id_tail) const {
    return fmt::format("projects/{}/subscriptions/{}{}~{}", options_.grpc.project, options_.prefix, Escape(topic),
                       id_tail);
  }
  std::string PathOfTopic(std::string_view topic) const { return TopicPath(topic); }

 private:
  QueueOptions options_;
  Clock* clock_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Publisher::Stub> publisher_;
  std::unique_ptr<pb::Subscriber::Stub> subscriber_;

  std::mutex mu_;
  std::condition_variable keeper_cv_;
  bool stopping_ = false;
  bool dead_letter_ready_ = false;
  std::vector<std::weak_ptr<SubState>> live_;
  std::map<std::string, int32_t> attempts_;
  std::map<std::string, std::unique_ptr<Lane>> lanes_;
  std::thread keeper_;
};

class PubSubSubscription final : public driver::Subscription {
 public:
  PubSubSubscription(std::shared_ptr<PubSubQueue> queue, std::shared_ptr<SubState> state)
      : queue_(std::move(queue)), state_(std::move(state)) {}
  ~PubSubSubscription() override { (void)Close(); }

  Result<std::vector<Message>> Pull(size_t max_messages, int64_t timeout_ms) override {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->closed) return FailedPrecondition("pubsub: Pull on a closed subscription");
    }
    // A failed release or extension is not this Pull's failure: the lease then simply ends
    // on its own (redelivery a little later); an unreachable service shows in the Pull below.
    (void)queue_->MaintainLeases(state_.get());
    std::vector<Message> out;
    if (max_messages == 0) return out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
    int64_t pause_ms = 5;
    for (;;) {
      pb::PullRequest request;
      request.set_subscription(state_->path);
      request.set_return_immediately(true);
      request.set_max_messages(static_cast<int32_t>(std::min<size_t>(max_messages, 1000)));
      pb::PullResponse response;
      grpc::ClientContext context;
      AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, queue_->options().grpc));
      grpc::Status s = queue_->subscriber()->Pull(&context, request, &response);
      if (!s.ok()) {
        if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
          return NotFound("pubsub: subscription {} no longer exists (deleted by Reset?)", state_->path);
        }
        return gcp::FromGrpc(s, "pubsub Pull");
      }
      if (response.received_messages_size() > 0) {
        Take(response, &out);
        return out;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return out;
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(pause_ms, left.count())));
      pause_ms = std::min<int64_t>(pause_ms * 2, queue_->options().poll_interval_ms);
    }
  }

  Status Ack(std::span<const std::string> ack_ids) override {
    std::vector<std::string> ids = Release(ack_ids, /*acked=*/true);
    if (ids.empty()) return Status::OK();
    return queue_->Acknowledge(state_->path, ids);
  }

  Status Nack(std::span<const std::string> ack_ids) override {
    std::vector<std::string> ids = Release(ack_ids, /*acked=*/false);
    if (ids.empty()) return Status::OK();
    return queue_->ModifyAckDeadline(state_->path, ids, 0);
  }

  Status Close() override {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->closed) return Status::OK();
      state_->closed = true;
      // Persistent: the leases are no longer extended, so what was held comes back when they end.
      state_->held.clear();
    }
    if (state_->ephemeral) return queue_->DeleteSubscription(state_->path);
    return Status::OK();
  }

 private:
  // Turns a Pull response into messages and holds them. Within one response the messages of
  // an ordering key are put in the order of their delivery attempts (most first): a server
  // that keeps per-key order delivers a key's earlier messages at least as often as its later
  // ones, so this changes nothing there, and it mends the emulator's answer after a Nack,
  // which returns the nacked message behind the later ones of its key.
  void Take(const pb::PullResponse& response, std::vector<Message>* out) {
    const int64_t now_us = queue_->clock()->MonotonicMicros();
    const auto lease_until = std::chrono::steady_clock::now() + std::chrono::seconds(state_->lease_seconds);
    std::vector<Message> batch;
    std::lock_guard<std::mutex> lock(state_->mu);
    for (const auto& r : response.received_messages()) {
      Message m;
      m.data = r.message().data();
      m.ordering_key = DecodeKey(r.message().ordering_key());
      m.ack_id = r.ack_id();
      m.publish_time_ms = ToMillis(r.message().publish_time());
      int32_t counted = queue_->CountDelivery(state_->path, r.message().message_id());
      m.delivery_attempt = r.delivery_attempt() > 0 ? r.delivery_attempt() : counted;
      state_->held[m.ack_id] = Held{r.message().message_id(), now_us + state_->ack_timeout_ms * 1000, lease_until};
      batch.push_back(std::move(m));
    }
    std::map<std::string, std::vector<size_t>> by_key;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].ordering_key.empty()) by_key[batch[i].ordering_key].push_back(i);
    }
    for (auto& [key, positions] : by_key) {
      if (positions.size() < 2) continue;
      std::vector<Message> ms;
      for (size_t p : positions) ms.push_back(std::move(batch[p]));
      std::stable_sort(ms.begin(), ms.end(),
                       [](const Message& a, const Message& b) { return a.delivery_attempt > b.delivery_attempt; });
      for (size_t j = 0; j < positions.size(); ++j) batch[positions[j]] = std::move(ms[j]);
    }
    for (auto& m : batch) out->push_back(std::move(m));
  }

  // Removes the ids this subscription holds and returns them; others (unknown, already
  // acked, released after their ack timeout) are left out.
  std::vector<std::string> Release(std::span<const std::string> ack_ids, bool acked) {
    std::vector<std::string> ids;
    std::vector<std::string> message_ids;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      for (const auto& id : ack_ids) {
        auto it = state_->held.find(id);
        if (it == state_->held.end()) continue;
        ids.push_back(id);
        message_ids.push_back(it->second.message_id);
        state_->held.erase(it);
      }
    }
    if (acked) {
      for (const auto& mid : message_ids) queue_->ForgetDelivery(state_->path, mid);
    }
    return ids;
  }

  std::shared_ptr<PubSubQueue> queue_;
  std::shared_ptr<SubState> state_;
};

Result<std::unique_ptr<driver::Subscription>> PubSubQueue::Subscribe(std::string_view topic,
                                                                     const SubscriptionOptions& options) {
  if (options.ack_timeout_ms <= 0) return InvalidArgument("pubsub: ack_timeout_ms must be positive");
  if (options.persistent && options.name.empty()) {
    return InvalidArgument("pubsub: a persistent subscription needs a name");
  }
  AQ_RETURN_IF_ERROR(PrepareDeadLetter());
  auto state = std::make_shared<SubState>();
  state->topic = std::string(topic);
  state->ephemeral = !options.persistent;
  state->ack_timeout_ms = options.ack_timeout_ms;
  state->lease_seconds =
      static_cast<int32_t>(std::clamp<int64_t>((options.ack_timeout_ms + 999) / 1000, 10, 600));
  state->path = options.persistent
                    ? SubscriptionPath(topic, Escape(options.name))
                    : SubscriptionPath(topic, fmt::format("~{}-{}", Escape(options.name), Uuid::Random().Hex()));

  pb::Subscription request;
  request.set_name(state->path);
  request.set_topic(TopicPath(topic));
  request.set_ack_deadline_seconds(state->lease_seconds);
  request.set_enable_message_ordering(options.ordered);
  if (options.persistent) {
    request.mutable_expiration_policy();  // present without a ttl: never expires
  } else {
    request.mutable_expiration_policy()->mutable_ttl()->set_seconds(kEphemeralTtlSeconds);
  }
  if (options_.dead_letter_policy) {
    request.mutable_dead_letter_policy()->set_dead_letter_topic(DeadLetterTopic());
    request.mutable_dead_letter_policy()->set_max_delivery_attempts(kMaxDeliveryAttempts);
  }
  pb::Subscription response;
  grpc::ClientContext context;
  AQ_RETURN_IF_ERROR(gcp::PrepareContext(&context, options_.grpc));
  grpc::Status s = subscriber_->CreateSubscription(&context, request, &response);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
    return NotFound("pubsub: topic '{}' is not registered ({})", topic, s.error_message());
  }
  if (s.error_code() == grpc::StatusCode::ALREADY_EXISTS && options.persistent) {
    pb::GetSubscriptionRequest get;
    get.set_subscription(state->path);
    grpc::ClientContext get_context;
    AQ_RETURN_IF_ERROR(gcp::PrepareContext(&get_context, options_.grpc));
    s = subscriber_->GetSubscription(&get_context, get, &response);
    if (!s.ok()) return gcp::FromGrpc(s, "pubsub GetSubscription");
    if (response.topic() != request.topic()) {
      return FailedPrecondition("pubsub: subscription '{}' exists on another topic ({})", options.name,
                                response.topic());
    }
    if (response.enable_message_ordering() != options.ordered) {
      return FailedPrecondition("pubsub: subscription '{}' of topic '{}' exists with ordered = {}; cannot reopen it with {}",
                                options.name, topic, response.enable_message_ordering(), options.ordered);
    }
  } else if (!s.ok()) {
    return gcp::FromGrpc(s, fmt::format("pubsub CreateSubscription {} on {}", options.name, topic));
  }
  Track(state);
  return std::unique_ptr<driver::Subscription>(new PubSubSubscription(shared_from_this(), std::move(state)));
}

}  // namespace

Result<QueueOptions> ParseQueueOptions(const driver::Config& config) {
  QueueOptions options;
  AQ_ASSIGN_OR_RETURN(options.grpc, gcp::ParseGrpcOptions(config, "pubsub", kServiceEndpoint, kEmulatorVariable));
  options.prefix = driver::ConfigString(config, "prefix", options.prefix);
  if (options.prefix.empty() || !((options.prefix[0] >= 'a' && options.prefix[0] <= 'z') ||
                                  (options.prefix[0] >= 'A' && options.prefix[0] <= 'Z'))) {
    return InvalidArgument("pubsub: prefix '{}' must start with a letter (Pub/Sub resource ids do)", options.prefix);
  }
  if (options.prefix.starts_with("goog")) return InvalidArgument("pubsub: prefix must not start with 'goog'");
  if (Escape(options.prefix) != options.prefix) {
    return InvalidArgument("pubsub: prefix '{}' may hold only letters, digits, '-', '.' and '_'", options.prefix);
  }
  AQ_ASSIGN_OR_RETURN(int64_t max_size, driver::ConfigInt(config, "max_message_size", 1 << 20));
  if (max_size < 1 || max_size > 10'000'000 - 2048) {
    return InvalidArgument("pubsub: max_message_size must be between 1 and {} bytes", 10'000'000 - 2048);
  }
  options.max_message_size = static_cast<size_t>(max_size);
  AQ_ASSIGN_OR_RETURN(options.poll_interval_ms, driver::ConfigInt(config, "poll_interval_ms", 50));
  if (options.poll_interval_ms < 1) return InvalidArgument("pubsub: poll_interval_ms must be positive");
  AQ_ASSIGN_OR_RETURN(options.dead_letter_policy, driver::ConfigBool(config, "dead_letter_policy", true));
  return options;
}

Result<std::shared_ptr<driver::MessageQueue>> MakeMessageQueue(const QueueOptions& options, Clock* clock) {
  return std::shared_ptr<driver::MessageQueue>(std::make_shared<PubSubQueue>(options, clock));
}

}  // namespace aquifer::drivers::pubsub
