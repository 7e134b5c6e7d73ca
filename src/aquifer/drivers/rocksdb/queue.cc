#include "aquifer/drivers/rocksdb/queue.h"
#include "aquifer/drivers/rocksdb/rocksdb_handle.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string_view>
#include <utility>
#include <vector>

#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

namespace aquifer::drivers::rocksdb {
namespace {

using driver::Message;
using driver::MessageQueue;
using driver::MessageQueueCapabilities;
using driver::OutgoingMessage;
using driver::Subscription;
using driver::SubscriptionOptions;

// ---------------------------------------------------------------------------
// Key layout (README.md "Queue"). Topic and subscription names never contain
// NUL, so NUL separates them and prefixes never collide.
//   't' topic                      -> gc floor (8 BE): every seq below was trimmed
//   'm' topic 0 seq(8 BE)          -> message: publish_time_ms(8 BE) key_len(4 BE) key data
//   's' topic 0 name               -> persistent subscription: ordered(1) floor(8 BE)
//   'k' topic 0 name 0 seq(8 BE)   -> "acked" for a seq at or above the floor
constexpr char kTopicTag = 't';
constexpr char kMessageTag = 'm';
constexpr char kSubscriptionTag = 's';
constexpr char kAckTag = 'k';

void PutBE64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutBE32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetBE64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}
uint32_t GetBE32(std::string_view in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

std::string TopicKey(std::string_view topic) {
  std::string k(1, kTopicTag);
  k.append(topic);
  return k;
}
std::string MessagePrefix(std::string_view topic) {
  std::string k(1, kMessageTag);
  k.append(topic);
  k.push_back('\0');
  return k;
}
std::string MessageKey(std::string_view topic, uint64_t seq) {
  std::string k = MessagePrefix(topic);
  PutBE64(&k, seq);
  return k;
}
std::string SubscriptionKey(std::string_view topic, std::string_view name) {
  std::string k(1, kSubscriptionTag);
  k.append(topic);
  k.push_back('\0');
  k.append(name);
  return k;
}
std::string AckKey(std::string_view topic, std::string_view name, uint64_t seq) {
  std::string k(1, kAckTag);
  k.append(topic);
  k.push_back('\0');
  k.append(name);
  k.push_back('\0');
  PutBE64(&k, seq);
  return k;
}
std::string EncodeSubscription(bool ordered, uint64_t floor) {
  std::string v(1, ordered ? 1 : 0);
  PutBE64(&v, floor);
  return v;
}

struct StoredMessage {
  int64_t publish_time_ms = 0;
  std::string ordering_key;
  std::string data;
};

std::string EncodeMessage(int64_t publish_time_ms, const OutgoingMessage& m) {
  std::string v;
  v.reserve(12 + m.ordering_key.size() + m.data.size());
  PutBE64(&v, static_cast<uint64_t>(publish_time_ms));
  PutBE32(&v, static_cast<uint32_t>(m.ordering_key.size()));
  v.append(m.ordering_key);
  v.append(m.data);
  return v;
}

Result<StoredMessage> DecodeMessage(std::string_view v) {
  if (v.size() < 12) return Corruption("queue message of {} bytes is shorter than its header", v.size());
  StoredMessage m;
  m.publish_time_ms = static_cast<int64_t>(GetBE64(v));
  uint32_t key_len = GetBE32(v.substr(8));
  if (v.size() < 12 + static_cast<size_t>(key_len)) {
    return Corruption("queue message ordering key of {} bytes overruns its {}-byte record", key_len,
                      v.size());
  }
  m.ordering_key.assign(v.substr(12, key_len));
  m.data.assign(v.substr(12 + key_len));
  return m;
}

Status FromRocks(const ::rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsCorruption()) return Corruption("{}: {}", what, s.ToString());
  if (s.IsInvalidArgument()) return InvalidArgument("{}: {}", what, s.ToString());
  return Unavailable("{}: {}", what, s.ToString());
}

Status ValidateName(std::string_view kind, std::string_view name) {
  if (name.empty()) return InvalidArgument("{} name is empty", kind);
  if (name.find('\0') != std::string_view::npos) {
    return InvalidArgument("{} name contains a NUL byte", kind);
  }
  if (name.size() > 1024) return InvalidArgument("{} name is {} bytes, over the limit of 1024", kind, name.size());
  return Status::OK();
}

// ---------------------------------------------------------------------------

struct Options {
  std::string path;
  bool sync = true;
  size_t max_message_size = 1 << 20;
  int32_t max_delivery_attempts = 0;
  int64_t poll_interval_ms = 50;
  uint64_t gc_min_messages = 1024;
  size_t block_cache_size = kDefaultQueueBlockCacheSize;
};

// Read but unacked messages above the floor of one subscription.
struct Pending {
  std::string ordering_key;
  int64_t deadline_us = 0;
  int32_t attempts = 0;
  bool inflight = false;
};

struct Topic;

// Delivery state of one subscription. A persistent one is shared by every
// consumer that opens its name; an ephemeral one by its single consumer.
// Every seq below `cursor` is acked or in `pending`; floor = min(pending, cursor).
struct SubState {
  Topic* topic = nullptr;
  std::string name;
  bool persistent = true;
  bool ordered = false;

  std::mutex mu;
  uint64_t cursor = 0;                       // next seq never read
  uint64_t persisted_floor = 0;              // floor as last written
  std::set<uint64_t> acked_ahead;            // persisted acks at or above the floor
  std::map<uint64_t, Pending> pending;       // read, not acked
  std::map<std::string, std::set<uint64_t>, std::less<>> by_key;  // ordered: pending seqs per key
  size_t ready_count = 0;                    // pending entries not in flight
  int64_t next_expiry_us = std::numeric_limits<int64_t>::max();

  std::atomic<uint64_t> floor{0};  // read by GC without `mu`
  std::atomic<bool> dropped{false};

  uint64_t ComputeFloor() const {
    return pending.empty() ? cursor : std::min(pending.begin()->first, cursor);
  }
};

struct Topic {
  std::string name;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t change = 0;  // bumped (under mu) on anything a waiting Pull may want
  uint64_t next_seq = 0;
  std::map<uint64_t, uint64_t> in_progress;  // publishes being written: first seq -> end
  std::atomic<uint64_t> visible{0};          // every seq below is written (or failed)
  uint64_t gc_floor = 0;
  std::map<std::string, std::shared_ptr<SubState>, std::less<>> persistent;
  std::set<std::shared_ptr<SubState>> ephemeral;

  void Notify() {
    {
      std::lock_guard<std::mutex> lock(mu);
      ++change;
    }
    cv.notify_all();
  }
};

class RocksQueue;

class RocksSubscription final : public Subscription {
 public:
  RocksSubscription(std::shared_ptr<RocksQueue> queue, std::shared_ptr<SubState> state,
                    int64_t ack_timeout_ms)
      : queue_(std::move(queue)), state_(std::move(state)), ack_timeout_ms_(ack_timeout_ms) {}
  ~RocksSubscription() override { (void)Close(); }

  Result<std::vector<Message>> Pull(size_t max_messages, int64_t timeout_ms) override;
  Status Ack(std::span<const std::string> ack_ids) override;
  Status Nack(std::span<const std::string> ack_ids) override;
  Status Close() override;

 private:
  std::shared_ptr<RocksQueue> queue_;
  std::shared_ptr<SubState> state_;
  int64_t ack_timeout_ms_;
  bool closed_ = false;
};

class RocksQueue final : public MessageQueue, public std::enable_shared_from_this<RocksQueue> {
 public:
  RocksQueue(Options options, Clock* clock) : options_(std::move(options)), clock_(clock) {
    publish_options_.sync = options_.sync;
    state_options_.sync = false;  // acks and trims: losing them only means redelivery
  }
  ~RocksQueue() override {
    gauges_.reset();  // before the database closes
    if (db_) (void)db_->Close();
  }

  Status Open();

  MessageQueueCapabilities capabilities() const override {
    MessageQueueCapabilities caps;
    caps.max_message_size = options_.max_message_size;
    caps.ordering_keys = true;
    caps.ephemeral_subscriptions = true;
    caps.durable_publish = options_.sync;
    caps.shared_between_processes = false;  // RocksDB locks the folder to one process
    return caps;
  }
  Status RegisterTopic(std::string_view topic) override;
  Status Publish(std::string_view topic, std::span<const OutgoingMessage> messages) override;
  Result<std::unique_ptr<Subscription>> Subscribe(std::string_view topic,
                                                  const SubscriptionOptions& options) override;
  Status Reset() override;

  // Used by RocksSubscription.
  Result<std::vector<Message>> TryPull(SubState* st, size_t max_messages, int64_t ack_timeout_ms);
  Status Ack(SubState* st, std::span<const std::string> ack_ids);
  Status Nack(SubState* st, std::span<const std::string> ack_ids);
  void CloseEphemeral(const std::shared_ptr<SubState>& st);
  void MaybeCollectGarbage(Topic* topic);
  int64_t poll_interval_ms() const { return options_.poll_interval_ms; }

 private:
  std::shared_ptr<Topic> FindTopic(std::string_view name) const {
    std::shared_lock<std::shared_mutex> lock(topics_mu_);
    auto it = topics_.find(name);
    return it == topics_.end() ? nullptr : it->second;
  }
  void RemovePending(SubState* st, std::map<uint64_t, Pending>::iterator it);
  Status CommitAcks(SubState* st, const std::vector<uint64_t>& acked);
  Status DeadLetter(Topic* topic, const StoredMessage& m);

  const Options options_;
  Clock* const clock_;
  ::rocksdb::WriteOptions publish_options_;
  ::rocksdb::WriteOptions state_options_;
  std::unique_ptr<::rocksdb::DB> db_;
  std::unique_ptr<driver::GaugeRegistration> gauges_;
  WriteErrorState write_error_;  // an I/O error stopped RocksDB (ResumeAfterWriteError)

  mutable std::shared_mutex topics_mu_;
  std::map<std::string, std::shared_ptr<Topic>, std::less<>> topics_;
};

Status RocksQueue::Open() {
  ::rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.max_background_jobs = 2;
  ApplyStorageOptions(&db_options);  // checksums, and the test file system when one is set
  ::rocksdb::BlockBasedTableOptions table;
  std::shared_ptr<::rocksdb::Cache> cache = ApplyBlockCache(&table, options_.block_cache_size);
  db_options.table_factory.reset(::rocksdb::NewBlockBasedTableFactory(table));
  std::error_code ec;
  std::filesystem::create_directories(options_.path, ec);  // RocksDB makes only the last level
  if (ec) return Unavailable("creating the queue folder '{}': {}", options_.path, ec.message());
  ::rocksdb::DB* raw = nullptr;
  ::rocksdb::Status s = ::rocksdb::DB::Open(db_options, options_.path, &raw);
  if (!s.ok()) {
    return Unavailable("opening the queue database at '{}': {}", options_.path, s.ToString());
  }
  db_.reset(raw);
  gauges_ = RegisterDatabaseGauges(db_.get(), std::move(cache), "queue",
                                   [db = db_.get()] { return std::vector{db->DefaultColumnFamily()}; });

  std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(::rocksdb::ReadOptions()));
  // Topics and their next sequence numbers.
  for (it->Seek(std::string(1, kTopicTag)); it->Valid() && it->key()[0] == kTopicTag; it->Next()) {
    auto topic = std::make_shared<Topic>();
    topic->name = it->key().ToString().substr(1);
    if (it->value().size() != 8) return Corruption("queue topic '{}': bad record", topic->name);
    topic->gc_floor = GetBE64(it->value().ToStringView());
    topic->next_seq = topic->gc_floor;
    topics_.emplace(topic->name, topic);
  }
  AQ_RETURN_IF_ERROR(FromRocks(it->status(), "reading queue topics"));
  for (auto& [name, topic] : topics_) {
    std::string prefix = MessagePrefix(name);
    std::string last = prefix + std::string(8, '\xff');
    it->SeekForPrev(last);
    if (it->Valid() && it->key().starts_with(prefix) && it->key().size() == prefix.size() + 8) {
      uint64_t seq = GetBE64(it->key().ToStringView().substr(prefix.size()));
      topic->next_seq = std::max(topic->next_seq, seq + 1);
    }
    AQ_RETURN_IF_ERROR(FromRocks(it->status(), "reading queue messages"));
    topic->visible = topic->next_seq;
  }
  // Persistent subscriptions.
  for (it->Seek(std::string(1, kSubscriptionTag));
       it->Valid() && it->key()[0] == kSubscriptionTag; it->Next()) {
    std::string_view key = it->key().ToStringView().substr(1);
    size_t sep = key.find('\0');
    if (sep == std::string_view::npos || it->value().size() != 9) {
      return Corruption("queue subscription record '{}' is malformed", key);
    }
    auto topic_it = topics_.find(key.substr(0, sep));
    if (topic_it == topics_.end()) continue;
    auto st = std::make_shared<SubState>();
    st->topic = topic_it->second.get();
    st->name = std::string(key.substr(sep + 1));
    st->persistent = true;
    st->ordered = it->value()[0] != 0;
    uint64_t floor = GetBE64(it->value().ToStringView().substr(1));
    st->cursor = st->persisted_floor = floor;
    st->floor = floor;
    topic_it->second->persistent.emplace(st->name, st);
  }
  AQ_RETURN_IF_ERROR(FromRocks(it->status(), "reading queue subscriptions"));
  // Acks above each floor.
  for (it->Seek(std::string(1, kAckTag)); it->Valid() && it->key()[0] == kAckTag; it->Next()) {
    std::string_view key = it->key().ToStringView().substr(1);
    size_t sep = key.find('\0');
    if (sep == std::string_view::npos || key.size() < sep + 1 + 9) continue;
    std::string_view rest = key.substr(sep + 1);
    std::string_view name = rest.substr(0, rest.size() - 9);
    uint64_t seq = GetBE64(rest.substr(rest.size() - 8));
    auto topic_it = topics_.find(key.substr(0, sep));
    if (topic_it == topics_.end()) continue;
    auto sub_it = topic_it->second->persistent.find(name);
    if (sub_it == topic_it->second->persistent.end()) continue;
    if (seq >= sub_it->second->cursor) sub_it->second->acked_ahead.insert(seq);
  }
  return FromRocks(it->status(), "reading queue acks");
}

Status RocksQueue::RegisterTopic(std::string_view topic) {
  AQ_RETURN_IF_ERROR(ValidateName("topic", topic));
  if (FindTopic(topic)) return Status::OK();
  std::unique_lock<std::shared_mutex> lock(topics_mu_);
  if (topics_.count(topic)) return Status::OK();
  std::string floor;
  PutBE64(&floor, 0);
  ::rocksdb::WriteOptions sync;
  sync.sync = options_.sync;
  AQ_RETURN_IF_ERROR(FromRocks(db_->Put(sync, TopicKey(topic), floor),
                               fmt::format("registering queue topic '{}'", topic)));
  auto t = std::make_shared<Topic>();
  t->name = std::string(topic);
  topics_.emplace(t->name, t);
  return Status::OK();
}

Status RocksQueue::Publish(std::string_view topic_name, std::span<const OutgoingMessage> messages) {
  NoPerfCountersOnThisThread();
  std::shared_ptr<Topic> topic = FindTopic(topic_name);
  if (!topic) return NotFound("queue topic '{}' is not registered", topic_name);
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].data.size() > options_.max_message_size) {
      return InvalidArgument(
          "message {} of {} to topic '{}' is {} bytes, over the limit of {} bytes; nothing was "
          "published",
          i, messages.size(), topic_name, messages[i].data.size(), options_.max_message_size);
    }
    if (messages[i].ordering_key.size() > 1024) {
      return InvalidArgument(
          "message {} of {} to topic '{}' has a {}-byte ordering key, over the limit of 1024 "
          "bytes; nothing was published",
          i, messages.size(), topic_name, messages[i].ordering_key.size());
    }
  }
  if (messages.empty()) return Status::OK();
  AQ_RETURN_IF_ERROR(ResumeAfterWriteError(
      db_.get(), &write_error_, fmt::format("publishing to queue topic '{}'", topic->name)));

  uint64_t first;
  {
    std::lock_guard<std::mutex> lock(topic->mu);
    first = topic->next_seq;
    topic->next_seq += messages.size();
    topic->in_progress.emplace(first, topic->next_seq);
  }
  // One WriteBatch per call; concurrent synced writers are grouped by RocksDB's
  // write thread into one WAL write and one fsync (group commit).
  ::rocksdb::WriteBatch batch;
  int64_t now = clock_->NowMillis();
  for (size_t i = 0; i < messages.size(); ++i) {
    batch.Put(MessageKey(topic->name, first + i), EncodeMessage(now, messages[i]));
  }
  ::rocksdb::Status s = db_->Write(publish_options_, &batch);
  NoteWriteError(&write_error_, s);
  uint64_t pending_garbage;
  {
    std::lock_guard<std::mutex> lock(topic->mu);
    topic->in_progress.erase(first);
    topic->visible = topic->in_progress.empty() ? topic->next_seq : topic->in_progress.begin()->first;
    ++topic->change;
    pending_garbage = topic->visible - topic->gc_floor;
  }
  topic->cv.notify_all();
  AQ_RETURN_IF_ERROR(FromRocks(s, fmt::format("publishing {} messages to queue topic '{}'",
                                              messages.size(), topic->name)));
  if (pending_garbage >= options_.gc_min_messages) MaybeCollectGarbage(topic.get());
  return Status::OK();
}

Result<std::unique_ptr<Subscription>> RocksQueue::Subscribe(std::string_view topic_name,
                                                            const SubscriptionOptions& options) {
  std::shared_ptr<Topic> topic = FindTopic(topic_name);
  if (!topic) return NotFound("queue topic '{}' is not registered", topic_name);
  if (options.ack_timeout_ms <= 0) {
    return InvalidArgument("subscription '{}': ack_timeout_ms must be positive, got {}",
                           options.name, options.ack_timeout_ms);
  }
  std::shared_ptr<SubState> st;
  if (options.persistent) {
    AQ_RETURN_IF_ERROR(ValidateName("subscription", options.name));
    std::lock_guard<std::mutex> lock(topic->mu);
    auto it = topic->persistent.find(options.name);
    if (it != topic->persistent.end()) {
      if (it->second->ordered != options.ordered) {
        return InvalidArgument(
            "persistent subscription '{}' on topic '{}' exists with ordered={}; it cannot be "
            "reopened with ordered={}",
            options.name, topic->name, it->second->ordered, options.ordered);
      }
      st = it->second;
    } else {
      st = std::make_shared<SubState>();
      st->topic = topic.get();
      st->name = options.name;
      st->persistent = true;
      st->ordered = options.ordered;
      st->cursor = st->persisted_floor = topic->gc_floor;
      st->floor = topic->gc_floor;
      ::rocksdb::WriteOptions sync;
      sync.sync = options_.sync;
      AQ_RETURN_IF_ERROR(FromRocks(
          db_->Put(sync, SubscriptionKey(topic->name, st->name),
                   EncodeSubscription(st->ordered, st->persisted_floor)),
          fmt::format("creating subscription '{}' on queue topic '{}'", st->name, topic->name)));
      topic->persistent.emplace(st->name, st);
    }
  } else {
    st = std::make_shared<SubState>();
    st->topic = topic.get();
    st->name = options.name;
    st->persistent = false;
    st->ordered = options.ordered;
    std::lock_guard<std::mutex> lock(topic->mu);
    st->cursor = st->persisted_floor = topic->next_seq;  // starts at "now"
    st->floor = st->cursor;
    topic->ephemeral.insert(st);
  }
  return std::unique_ptr<Subscription>(
      new RocksSubscription(shared_from_this(), std::move(st), options.ack_timeout_ms));
}

Status RocksQueue::Reset() {
  std::unique_lock<std::shared_mutex> lock(topics_mu_);
  ::rocksdb::WriteBatch batch;
  for (char tag : {kMessageTag, kSubscriptionTag, kAckTag}) {
    batch.DeleteRange(std::string(1, tag), std::string(1, static_cast<char>(tag + 1)));
  }
  std::vector<std::unique_lock<std::mutex>> topic_locks;
  for (auto& [name, topic] : topics_) {
    std::unique_lock<std::mutex> topic_lock(topic->mu);
    // Let publishes in flight land first, so the range delete covers them.
    topic->cv.wait(topic_lock, [&topic = topic] { return topic->in_progress.empty(); });
    for (auto& [sub_name, st] : topic->persistent) st->dropped = true;
    for (auto& st : topic->ephemeral) st->dropped = true;
    topic->persistent.clear();
    topic->ephemeral.clear();
    std::string floor;
    PutBE64(&floor, topic->next_seq);
    batch.Put(TopicKey(name), floor);
    topic_locks.push_back(std::move(topic_lock));
  }
  ::rocksdb::WriteOptions sync;
  sync.sync = true;
  Status s = FromRocks(db_->Write(sync, &batch), "resetting the queue");
  for (auto& [name, topic] : topics_) {
    if (s.ok()) topic->gc_floor = topic->next_seq;
    ++topic->change;
  }
  topic_locks.clear();
  for (auto& [name, topic] : topics_) topic->cv.notify_all();
  return s;
}

void RocksQueue::RemovePending(SubState* st, std::map<uint64_t, Pending>::iterator it) {
  if (!it->second.inflight) --st->ready_count;
  if (st->ordered && !it->second.ordering_key.empty()) {
    auto key_it = st->by_key.find(it->second.ordering_key);
    if (key_it != st->by_key.end()) {
      key_it->second.erase(it->first);
      if (key_it->second.empty()) st->by_key.erase(key_it);
    }
  }
  st->pending.erase(it);
}

// Called with st->mu held, after `acked` left `pending`.
Status RocksQueue::CommitAcks(SubState* st, const std::vector<uint64_t>& acked) {
  uint64_t floor = st->ComputeFloor();
  if (!st->persistent) {
    st->floor = floor;
    return Status::OK();
  }
  ::rocksdb::WriteBatch batch;
  for (uint64_t seq : acked) {
    if (seq >= floor && st->acked_ahead.insert(seq).second) {
      batch.Put(AckKey(st->topic->name, st->name, seq), "");
    }
  }
  while (!st->acked_ahead.empty() && *st->acked_ahead.begin() < floor) {
    batch.Delete(AckKey(st->topic->name, st->name, *st->acked_ahead.begin()));
    st->acked_ahead.erase(st->acked_ahead.begin());
  }
  if (floor != st->persisted_floor) {
    batch.Put(SubscriptionKey(st->topic->name, st->name), EncodeSubscription(st->ordered, floor));
  }
  if (batch.Count() > 0) {
    AQ_RETURN_IF_ERROR(FromRocks(db_->Write(state_options_, &batch),
                                 fmt::format("saving acks of subscription '{}' on topic '{}'",
                                             st->name, st->topic->name)));
  }
  st->persisted_floor = floor;
  st->floor = floor;
  return Status::OK();
}

Status RocksQueue::DeadLetter(Topic* topic, const StoredMessage& m) {
  std::string dead = topic->name + ".dead";
  AQ_RETURN_IF_ERROR(RegisterTopic(dead));
  OutgoingMessage out{m.data, m.ordering_key};
  return Publish(dead, std::span<const OutgoingMessage>(&out, 1));
}

Result<std::vector<Message>> RocksQueue::TryPull(SubState* st, size_t max_messages,
                                                 int64_t ack_timeout_ms) {
  NoPerfCountersOnThisThread();
  std::lock_guard<std::mutex> lock(st->mu);
  if (st->dropped) {
    return FailedPrecondition("subscription '{}' on topic '{}' was dropped by Reset", st->name,
                              st->topic->name);
  }
  std::vector<Message> out;
  std::vector<uint64_t> acked;  // dead-lettered
  const int64_t now = clock_->MonotonicMicros();
  const int64_t deadline = now + ack_timeout_ms * 1000;

  // In-flight messages whose ack deadline passed become ready again.
  if (now >= st->next_expiry_us) {
    st->next_expiry_us = std::numeric_limits<int64_t>::max();
    for (auto& [seq, p] : st->pending) {
      if (!p.inflight) continue;
      if (p.deadline_us <= now) {
        p.inflight = false;
        ++st->ready_count;
      } else {
        st->next_expiry_us = std::min(st->next_expiry_us, p.deadline_us);
      }
    }
  }
  // Messages handed out by this Pull: later messages of a key may join the
  // same batch behind them (one consumer, in order), as Pub/Sub does.
  std::set<uint64_t> delivered_now;
  auto deliver = [&](uint64_t seq, Pending& p, StoredMessage&& m) {
    delivered_now.insert(seq);
    if (!p.inflight) --st->ready_count;
    p.inflight = true;
    ++p.attempts;
    p.deadline_us = deadline;
    st->next_expiry_us = std::min(st->next_expiry_us, deadline);
    Message msg;
    msg.data = std::move(m.data);
    msg.ordering_key = std::move(m.ordering_key);
    msg.ack_id = fmt::format("{}.{}", seq, p.attempts);
    msg.publish_time_ms = m.publish_time_ms;
    msg.delivery_attempt = p.attempts;
    out.push_back(std::move(msg));
  };
  // Eligible under ordering: every earlier pending message of its key was
  // handed out in this same Pull (so the batch holds the key's messages in order).
  auto first_of_key = [&](uint64_t seq, const Pending& p) {
    if (!st->ordered || p.ordering_key.empty()) return true;
    auto key_it = st->by_key.find(p.ordering_key);
    if (key_it == st->by_key.end()) return true;
    for (uint64_t earlier : key_it->second) {
      if (earlier >= seq) return true;
      if (!delivered_now.count(earlier)) return false;
    }
    return true;
  };

  // 1. Redeliveries (nacked, timed out, or held back by ordering), oldest first.
  if (st->ready_count > 0) {
    for (auto it = st->pending.begin(); it != st->pending.end() && out.size() < max_messages;) {
      auto cur = it++;
      uint64_t seq = cur->first;
      Pending& p = cur->second;
      if (p.inflight || !first_of_key(seq, p)) continue;
      std::string value;
      ::rocksdb::Status s = db_->Get(::rocksdb::ReadOptions(), MessageKey(st->topic->name, seq), &value);
      if (s.IsNotFound()) {  // trimmed or reset underneath: nothing to deliver
        RemovePending(st, cur);
        continue;
      }
      AQ_RETURN_IF_ERROR(FromRocks(s, "reading a queue message"));
      AQ_ASSIGN_OR_RETURN(StoredMessage m, DecodeMessage(value));
      if (options_.max_delivery_attempts > 0 && p.attempts >= options_.max_delivery_attempts) {
        AQ_RETURN_IF_ERROR(DeadLetter(st->topic, m));
        RemovePending(st, cur);
        acked.push_back(seq);
        continue;
      }
      deliver(seq, p, std::move(m));
    }
  }

  // 2. Messages never read by this subscription, up to what is fully written.
  constexpr size_t kMaxPending = 100'000;  // bounds memory when keys are held back
  const uint64_t visible = st->topic->visible.load();
  if (out.size() < max_messages && st->cursor < visible && st->pending.size() < kMaxPending) {
    std::string lower = MessageKey(st->topic->name, st->cursor);
    std::string upper = MessageKey(st->topic->name, visible);
    ::rocksdb::Slice upper_slice(upper);
    ::rocksdb::ReadOptions read_options;
    read_options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<::rocksdb::Iterator> it(db_->NewIterator(read_options));
    const size_t prefix_size = lower.size() - 8;
    for (it->Seek(lower); it->Valid(); it->Next()) {
      if (out.size() >= max_messages || st->pending.size() >= kMaxPending) break;
      uint64_t seq = GetBE64(it->key().ToStringView().substr(prefix_size));
      st->cursor = seq + 1;
      if (st->acked_ahead.count(seq)) continue;
      AQ_ASSIGN_OR_RETURN(StoredMessage m, DecodeMessage(it->value().ToStringView()));
      auto [pit, inserted] = st->pending.emplace(seq, Pending{m.ordering_key, 0, 0, false});
      ++st->ready_count;
      if (st->ordered && !m.ordering_key.empty()) {
        auto& seqs = st->by_key[m.ordering_key];
        seqs.insert(seq);
        if (!first_of_key(seq, pit->second)) continue;  // held back behind an earlier message of its key
      }
      deliver(seq, pit->second, std::move(m));
    }
    AQ_RETURN_IF_ERROR(FromRocks(it->status(), "reading queue messages"));
    if (!it->Valid()) st->cursor = visible;  // everything up to `visible` was read
  }
  if (!acked.empty() || st->ComputeFloor() != st->persisted_floor) {
    AQ_RETURN_IF_ERROR(CommitAcks(st, acked));
  }
  return out;
}

bool ParseAckId(std::string_view id, uint64_t* seq, int32_t* attempt) {
  size_t dot = id.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == id.size()) return false;
  uint64_t s = 0;
  for (char c : id.substr(0, dot)) {
    if (c < '0' || c > '9') return false;
    s = s * 10 + static_cast<uint64_t>(c - '0');
  }
  int64_t a = 0;
  for (char c : id.substr(dot + 1)) {
    if (c < '0' || c > '9' || a > std::numeric_limits<int32_t>::max() / 10) return false;
    a = a * 10 + (c - '0');
  }
  *seq = s;
  *attempt = static_cast<int32_t>(a);
  return true;
}

Status RocksQueue::Ack(SubState* st, std::span<const std::string> ack_ids) {
  NoPerfCountersOnThisThread();
  uint64_t old_floor;
  uint64_t new_floor;
  {
    std::lock_guard<std::mutex> lock(st->mu);
    if (st->dropped) return Status::OK();
    std::vector<uint64_t> acked;
    for (const std::string& id : ack_ids) {
      uint64_t seq;
      int32_t attempt;
      if (!ParseAckId(id, &seq, &attempt)) continue;
      auto it = st->pending.find(seq);
      if (it == st->pending.end()) continue;
      // A late ack of an earlier delivery while a later one is in flight would
      // let the next message of its key start concurrently: ignore it.
      if (it->second.inflight && it->second.attempts != attempt) continue;
      RemovePending(st, it);
      acked.push_back(seq);
    }
    if (acked.empty()) return Status::OK();
    old_floor = st->persisted_floor;
    AQ_RETURN_IF_ERROR(CommitAcks(st, acked));
    new_floor = st->persisted_floor;
  }
  st->topic->Notify();  // an ack may release held-back messages of a key
  if (new_floor != old_floor) MaybeCollectGarbage(st->topic);
  return Status::OK();
}

Status RocksQueue::Nack(SubState* st, std::span<const std::string> ack_ids) {
  {
    std::lock_guard<std::mutex> lock(st->mu);
    if (st->dropped) return Status::OK();
    for (const std::string& id : ack_ids) {
      uint64_t seq;
      int32_t attempt;
      if (!ParseAckId(id, &seq, &attempt)) continue;
      auto it = st->pending.find(seq);
      if (it == st->pending.end() || !it->second.inflight || it->second.attempts != attempt) continue;
      it->second.inflight = false;
      ++st->ready_count;
    }
  }
  st->topic->Notify();
  return Status::OK();
}

void RocksQueue::CloseEphemeral(const std::shared_ptr<SubState>& st) {
  {
    std::lock_guard<std::mutex> lock(st->topic->mu);
    st->topic->ephemeral.erase(st);
  }
  MaybeCollectGarbage(st->topic);
}

// Trims messages every subscription has acked (below the minimum floor), and
// with no subscription at all, everything fully written. Runs inline after
// acks, closes and publishes once gc_min_messages are deletable.
void RocksQueue::MaybeCollectGarbage(Topic* topic) {
  std::lock_guard<std::mutex> lock(topic->mu);
  uint64_t target = topic->visible.load();
  for (auto& [name, st] : topic->persistent) target = std::min(target, st->floor.load());
  for (auto& st : topic->ephemeral) target = std::min(target, st->floor.load());
  if (target <= topic->gc_floor || target - topic->gc_floor < options_.gc_min_messages) return;
  ::rocksdb::WriteBatch batch;
  batch.DeleteRange(MessageKey(topic->name, topic->gc_floor), MessageKey(topic->name, target));
  std::string floor;
  PutBE64(&floor, target);
  batch.Put(TopicKey(topic->name), floor);
  if (db_->Write(state_options_, &batch).ok()) topic->gc_floor = target;
}

// ---------------------------------------------------------------------------

Result<std::vector<Message>> RocksSubscription::Pull(size_t max_messages, int64_t timeout_ms) {
  if (closed_) return FailedPrecondition("subscription '{}' is closed", state_->name);
  if (max_messages == 0) return std::vector<Message>();
  Topic* topic = state_->topic;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
  for (;;) {
    uint64_t seen;
    {
      std::lock_guard<std::mutex> lock(topic->mu);
      seen = topic->change;
    }
    AQ_ASSIGN_OR_RETURN(std::vector<Message> messages,
                        queue_->TryPull(state_.get(), max_messages, ack_timeout_ms_));
    auto now = std::chrono::steady_clock::now();
    if (!messages.empty() || now >= deadline) return messages;
    // Woken by publishes, acks and nacks in this process; the poll interval
    // catches ack deadlines passing on the injected clock.
    auto wake = std::min(deadline, now + std::chrono::milliseconds(queue_->poll_interval_ms()));
    std::unique_lock<std::mutex> lock(topic->mu);
    topic->cv.wait_until(lock, wake, [&] { return topic->change != seen; });
  }
}

Status RocksSubscription::Ack(std::span<const std::string> ack_ids) {
  if (closed_) return FailedPrecondition("subscription '{}' is closed", state_->name);
  return queue_->Ack(state_.get(), ack_ids);
}

Status RocksSubscription::Nack(std::span<const std::string> ack_ids) {
  if (closed_) return FailedPrecondition("subscription '{}' is closed", state_->name);
  return queue_->Nack(state_.get(), ack_ids);
}

Status RocksSubscription::Close() {
  if (closed_) return Status::OK();
  closed_ = true;
  // Persistent: in-flight messages stay in flight until their ack deadline,
  // then go to the other consumers. Ephemeral: the state goes away.
  if (!state_->persistent) queue_->CloseEphemeral(state_);
  return Status::OK();
}

}  // namespace

Result<std::shared_ptr<MessageQueue>> OpenQueue(const driver::Config& config,
                                                const driver::DriverContext& context) {
  Options options;
  options.path = driver::ConfigString(config, "path", context.data_dir + "/queue");
  AQ_ASSIGN_OR_RETURN(options.sync, driver::ConfigBool(config, "sync", true));
  AQ_ASSIGN_OR_RETURN(int64_t max_size, driver::ConfigInt(config, "max_message_size", 1 << 20));
  AQ_ASSIGN_OR_RETURN(int64_t attempts, driver::ConfigInt(config, "max_delivery_attempts", 0));
  AQ_ASSIGN_OR_RETURN(options.poll_interval_ms, driver::ConfigInt(config, "poll_interval_ms", 50));
  AQ_ASSIGN_OR_RETURN(int64_t gc_min, driver::ConfigInt(config, "gc_min_messages", 1024));
  AQ_ASSIGN_OR_RETURN(options.block_cache_size, ParseBlockCacheSize(config, kDefaultQueueBlockCacheSize));
  if (max_size <= 0) return InvalidArgument("queue config max_message_size must be positive, got {}", max_size);
  if (attempts < 0) return InvalidArgument("queue config max_delivery_attempts must be >= 0, got {}", attempts);
  if (options.poll_interval_ms <= 0) {
    return InvalidArgument("queue config poll_interval_ms must be positive, got {}", options.poll_interval_ms);
  }
  if (gc_min <= 0) return InvalidArgument("queue config gc_min_messages must be positive, got {}", gc_min);
  options.max_message_size = static_cast<size_t>(max_size);
  options.max_delivery_attempts = static_cast<int32_t>(std::min<int64_t>(attempts, 1 << 30));
  options.gc_min_messages = static_cast<uint64_t>(gc_min);
  auto queue = std::make_shared<RocksQueue>(std::move(options), context.clock ? context.clock : Clock::System());
  AQ_RETURN_IF_ERROR(queue->Open());
  return std::shared_ptr<MessageQueue>(std::move(queue));
}

void RegisterQueue(driver::Registry* registry) {
  for (const char* name : {"rocksdb", "embedded"}) {
    registry->Register(name, driver::Factory<driver::MessageQueue>(OpenQueue));
  }
}

}  // namespace aquifer::drivers::rocksdb
