#include "aquifer/drivers/postgres/queue.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include <fmt/format.h>

namespace aquifer::drivers::postgres {
namespace {

using driver::Message;
using driver::OutgoingMessage;
using driver::SubscriptionOptions;

Status CheckName(std::string_view what, std::string_view name) {
  if (name.empty()) return InvalidArgument("{} name is empty", what);
  if (name.find('\0') != std::string_view::npos) return InvalidArgument("{} name '{}' contains a NUL byte", what, name);
  return Status::OK();
}

// Everything a queue and its subscriptions share; subscriptions hold it by
// shared_ptr, so they stay valid if the MessageQueue object goes first.
class QueueCore {
 public:
  QueueCore(const QueueOptions& options, Clock* clock)
      : options_(options),
        clock_(clock),
        pool_(options.connection.url, options.connection.pool_size),
        topics_(QuoteIdent(options.connection.schema) + ".mq_topic"),
        messages_(QuoteIdent(options.connection.schema) + ".mq_message"),
        subscriptions_(QuoteIdent(options.connection.schema) + ".mq_subscription"),
        deliveries_(QuoteIdent(options.connection.schema) + ".mq_delivery"),
        channel_(fmt::format("aquifer_mq_{:016x}", std::hash<std::string>()(options.connection.schema))) {}

  ~QueueCore() {
    stopping_ = true;
    if (listener_.joinable()) listener_.join();
  }

  Status Init() {
    AQ_RETURN_IF_ERROR(EnsureSchema(pool_, options_.connection.schema, fmt::format(R"sql(
      CREATE TABLE IF NOT EXISTS {0} (name text PRIMARY KEY);
      CREATE TABLE IF NOT EXISTS {1} (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic text NOT NULL,
        ordering_key bytea NOT NULL,
        data bytea NOT NULL,
        publish_time_ms bigint NOT NULL);
      CREATE INDEX IF NOT EXISTS mq_message_topic ON {1} (topic, seq);
      CREATE TABLE IF NOT EXISTS {2} (
        topic text NOT NULL,
        name text NOT NULL,
        persistent boolean NOT NULL,
        ordered boolean NOT NULL,
        last_seen_ms bigint NOT NULL,
        PRIMARY KEY (topic, name));
      CREATE TABLE IF NOT EXISTS {3} (
        topic text NOT NULL,
        subscription text NOT NULL,
        seq bigint NOT NULL,
        ordering_key bytea NOT NULL,
        deadline_ms bigint,               -- NULL: ready; else in flight until then
        attempt integer NOT NULL DEFAULT 0,
        PRIMARY KEY (topic, subscription, seq));
      CREATE INDEX IF NOT EXISTS mq_delivery_key ON {3} (topic, subscription, ordering_key, seq);
      CREATE INDEX IF NOT EXISTS mq_delivery_seq ON {3} (seq);
    )sql", topics_, messages_, subscriptions_, deliveries_)));
    listener_ = std::thread([this] { Listen(); });
    return Status::OK();
  }

  const QueueOptions& options() const { return options_; }
  Clock* clock() const { return clock_; }
  Pool& pool() { return pool_; }
  const std::string& topics() const { return topics_; }
  const std::string& messages() const { return messages_; }
  const std::string& subscriptions() const { return subscriptions_; }
  const std::string& deliveries() const { return deliveries_; }
  const std::string& channel() const { return channel_; }

  uint64_t generation() const {
    std::lock_guard<std::mutex> lock(mu_);
    return generation_;
  }
  // Wakes every waiting Pull of this process.
  void Wake() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++generation_;
    }
    changed_.notify_all();
  }
  // Waits until Wake() runs after `seen` was read, or `until` passes.
  void WaitForChange(uint64_t seen, std::chrono::steady_clock::time_point until) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_until(lock, until, [&] { return generation_ != seen || stopping_; });
  }

 private:
  // The listener: one connection LISTENing on the schema's channel. Every
  // notification (a publish, a nack, an ack that frees an ordering key, in
  // any process) wakes the waiting Pulls; they re-claim from the tables, so a
  // lost notification only costs a poll interval. Reconnects after failures.
  void Listen() {
    std::unique_ptr<Connection> conn;
    while (!stopping_) {
      if (conn == nullptr || conn->broken()) {
        conn.reset();
        auto opened = Connection::Open(pool_.conninfo());
        if (!opened.ok() || !(*opened)->ExecScript("LISTEN " + QuoteIdent(channel_)).ok()) {
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        conn = std::move(*opened);
        Wake();  // anything published while we were not listening
      }
      pollfd fd{PQsocket(conn->raw()), POLLIN, 0};
      if (fd.fd < 0) {
        conn.reset();
        continue;
      }
      int ready = poll(&fd, 1, 100);
      if (ready <= 0) continue;
      if (PQconsumeInput(conn->raw()) == 0) {
        conn.reset();
        continue;
      }
      bool any = false;
      while (PGnotify* notify = PQnotifies(conn->raw())) {
        any = true;
        PQfreemem(notify);
      }
      if (any) Wake();
    }
  }

  const QueueOptions options_;
  Clock* const clock_;
  Pool pool_;
  const std::string topics_, messages_, subscriptions_, deliveries_;  // quoted schema.table
  const std::string channel_;
  mutable std::mutex mu_;
  std::condition_variable changed_;
  uint64_t generation_ = 0;  // guarded by mu_
  std::atomic<bool> stopping_{false};
  std::thread listener_;
};

// Ack ids are "<seq>.<attempt>": an ack of an earlier delivery of a message
// that was redelivered since does not remove the later delivery.
std::string AckId(int64_t seq, int64_t attempt) { return fmt::format("{}.{}", seq, attempt); }

bool ParseAckId(std::string_view id, int64_t* seq, int64_t* attempt) {
  size_t dot = id.find('.');
  if (dot == std::string_view::npos) return false;
  auto parse = [](std::string_view text, int64_t* out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
    return ec == std::errc() && end == text.data() + text.size() && *out >= 0;
  };
  return parse(id.substr(0, dot), seq) && parse(id.substr(dot + 1), attempt);
}

class PgSubscription final : public driver::Subscription {
 public:
  PgSubscription(std::shared_ptr<QueueCore> core, std::string topic, std::string name, bool persistent, bool ordered,
                 int64_t ack_timeout_ms)
      : core_(std::move(core)), topic_(std::move(topic)), name_(std::move(name)), persistent_(persistent),
        ordered_(ordered), ack_timeout_ms_(ack_timeout_ms) {}

  ~PgSubscription() override { (void)Close(); }

  Result<std::vector<Message>> Pull(size_t max_messages, int64_t timeout_ms) override {
    if (closed_) return FailedPrecondition("pulling from subscription '{}' of '{}': closed", name_, topic_);
    if (max_messages == 0) return std::vector<Message>{};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0));
    while (true) {
      const uint64_t seen = core_->generation();
      AQ_ASSIGN_OR_RETURN(std::vector<Message> claimed, Claim(max_messages));
      auto now = std::chrono::steady_clock::now();
      if (!claimed.empty() || now >= deadline) return claimed;
      core_->WaitForChange(seen, std::min(deadline, now + std::chrono::milliseconds(core_->options().poll_interval_ms)));
    }
  }

  Status Ack(std::span<const std::string> ack_ids) override {
    // Deleting the delivery is the ack; a message no subscription still holds
    // goes too. The message rows are locked first, so two subscriptions acking
    // the last deliveries of one message take turns, and the second sees the
    // first's delete (otherwise each would see the other's delivery and both
    // would leave the message behind).
    Status done = ForIds(ack_ids, fmt::format(
        "SELECT seq FROM {} WHERE seq = ANY($3::int8[]) ORDER BY seq FOR UPDATE", core_->messages()), fmt::format(R"sql(
        WITH acked AS (
          DELETE FROM {0} d USING unnest($3::int8[], $4::int8[]) AS a(seq, attempt)
          WHERE d.topic = $1 AND d.subscription = $2 AND d.seq = a.seq AND d.attempt = a.attempt
          RETURNING d.seq)
        DELETE FROM {1} m USING acked
        WHERE m.seq = acked.seq
          AND NOT EXISTS (SELECT 1 FROM {0} o WHERE o.seq = acked.seq AND o.subscription <> $2))sql",
        core_->deliveries(), core_->messages()), ordered_);
    return done.ok() ? done : done.WithContext(Describe("acking on"));
  }

  Status Nack(std::span<const std::string> ack_ids) override {
    Status done = ForIds(ack_ids, "", fmt::format(R"sql(
        UPDATE {0} d SET deadline_ms = NULL FROM unnest($3::int8[], $4::int8[]) AS a(seq, attempt)
        WHERE d.topic = $1 AND d.subscription = $2 AND d.seq = a.seq AND d.attempt = a.attempt)sql",
        core_->deliveries()), /*notify=*/true);
    return done.ok() ? done : done.WithContext(Describe("nacking on"));
  }

  Status Close() override {
    if (closed_) return Status::OK();
    closed_ = true;
    if (persistent_) return Status::OK();  // in-flight messages come back after their deadline
    Status done = InTransaction(core_->pool(), [&](Connection& conn) -> Status {
      Params params;
      params.Text(topic_).Text(name_);
      AQ_RETURN_IF_ERROR(conn.Exec(fmt::format("DELETE FROM {} WHERE topic = $1 AND name = $2", core_->subscriptions()),
                                   params).status());
      return DeleteDeliveries(conn, core_->deliveries(), core_->messages(), params);
    });
    return done.ok() ? done : done.WithContext(Describe("closing"));
  }

  // Deletes the deliveries of (topic $1, subscription $2) and the messages no
  // other subscription holds.
  static Status DeleteDeliveries(Connection& conn, const std::string& deliveries, const std::string& messages,
                                 const Params& params) {
    return conn.Exec(fmt::format(R"sql(
        WITH gone AS (DELETE FROM {0} WHERE topic = $1 AND subscription = $2 RETURNING seq)
        DELETE FROM {1} m USING gone
        WHERE m.seq = gone.seq AND NOT EXISTS (SELECT 1 FROM {0} o WHERE o.seq = gone.seq AND o.subscription <> $2))sql",
        deliveries, messages), params).status();
  }

 private:
  std::string Describe(std::string_view what) const {
    return fmt::format("{} subscription '{}' of topic '{}'", what, name_, topic_);
  }

  // Claims up to `max` ready deliveries in one statement: ready rows (never
  // delivered, nacked, or past their deadline), oldest first, skipping rows
  // another consumer is claiming. An ordered subscription only considers the
  // oldest delivery of each ordering key, so a key is never out at two
  // consumers and never overtaken.
  Result<std::vector<Message>> Claim(size_t max) {
    const int64_t now = core_->clock()->NowMillis();
    Params params;
    params.Text(topic_).Text(name_).Int8(now).Int8(now + ack_timeout_ms_).Int8(static_cast<int64_t>(max));
    std::string oldest_of_key = ordered_ ? fmt::format(R"sql(
            AND (d.ordering_key = ''::bytea OR NOT EXISTS (
              SELECT 1 FROM {} e WHERE e.topic = d.topic AND e.subscription = d.subscription
                AND e.ordering_key = d.ordering_key AND e.seq < d.seq)))sql", core_->deliveries())
                                         : std::string();
    std::string sql = fmt::format(R"sql(
        WITH claimed AS (
          SELECT d.seq FROM {0} d
          WHERE d.topic = $1 AND d.subscription = $2 AND (d.deadline_ms IS NULL OR d.deadline_ms <= $3) {2}
          ORDER BY d.seq LIMIT $5
          FOR UPDATE SKIP LOCKED)
        UPDATE {0} d SET deadline_ms = $4, attempt = d.attempt + 1
        FROM claimed, {1} m
        WHERE d.topic = $1 AND d.subscription = $2 AND d.seq = claimed.seq AND m.seq = d.seq
        RETURNING d.seq, d.attempt, m.ordering_key, m.data, m.publish_time_ms)sql",
        core_->deliveries(), core_->messages(), oldest_of_key);
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, core_->pool().Acquire());
    if (!persistent_) {
      // Liveness of an ephemeral subscription, for the expiry sweep.
      Params seen;
      seen.Text(topic_).Text(name_).Int8(now);
      auto touched = conn->Exec(fmt::format("UPDATE {} SET last_seen_ms = $3 WHERE topic = $1 AND name = $2",
                                            core_->subscriptions()), seen);
      if (!touched.ok()) return touched.status().WithContext(Describe("pulling from"));
    }
    auto rows = conn->Exec(sql, params);
    if (!rows.ok()) return rows.status().WithContext(Describe("pulling from"));
    std::vector<std::pair<int64_t, Message>> claimed;
    claimed.reserve(rows->rows());
    for (int row = 0; row < rows->rows(); ++row) {
      AQ_ASSIGN_OR_RETURN(int64_t seq, rows->Int(row, 0));
      AQ_ASSIGN_OR_RETURN(int64_t attempt, rows->Int(row, 1));
      Message message;
      message.ordering_key.assign(rows->Bytes(row, 2));
      message.data.assign(rows->Bytes(row, 3));
      AQ_ASSIGN_OR_RETURN(message.publish_time_ms, rows->Int(row, 4));
      message.delivery_attempt = static_cast<int32_t>(attempt);
      message.ack_id = AckId(seq, attempt);
      claimed.emplace_back(seq, std::move(message));
    }
    std::sort(claimed.begin(), claimed.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Message> out;
    out.reserve(claimed.size());
    for (auto& [seq, message] : claimed) out.push_back(std::move(message));
    return out;
  }

  // Runs `lock_sql` (if any) then `sql` in one transaction, both with $1
  // topic, $2 subscription, $3 seqs, $4 attempts over the well-formed ids
  // (others are ignored: unknown ids are not an error), then NOTIFYs when
  // other consumers may now have work.
  Status ForIds(std::span<const std::string> ack_ids, const std::string& lock_sql, const std::string& sql,
                bool notify) {
    std::vector<int64_t> seqs, attempts;
    for (const std::string& id : ack_ids) {
      int64_t seq = 0, attempt = 0;
      if (ParseAckId(id, &seq, &attempt)) {
        seqs.push_back(seq);
        attempts.push_back(attempt);
      }
    }
    if (seqs.empty()) return Status::OK();
    Params params;
    params.Text(topic_).Text(name_).Int8Array(seqs).Int8Array(attempts);
    return InTransaction(core_->pool(), [&](Connection& conn) -> Status {
      if (!lock_sql.empty()) AQ_RETURN_IF_ERROR(conn.Exec(lock_sql, params).status());
      AQ_RETURN_IF_ERROR(conn.Exec(sql, params).status());
      if (!notify) return Status::OK();
      Params channel;
      channel.Text(core_->channel()).Text(topic_);
      return conn.Exec("SELECT pg_notify($1, $2)", channel).status();
    });
  }

  std::shared_ptr<QueueCore> core_;
  const std::string topic_, name_;
  const bool persistent_, ordered_;
  const int64_t ack_timeout_ms_;
  bool closed_ = false;
};

class PgMessageQueue final : public driver::MessageQueue {
 public:
  explicit PgMessageQueue(std::shared_ptr<QueueCore> core) : core_(std::move(core)) {}

  driver::MessageQueueCapabilities capabilities() const override {
    driver::MessageQueueCapabilities caps;
    caps.max_message_size = core_->options().max_message_size;
    return caps;
  }

  Status RegisterTopic(std::string_view topic) override {
    AQ_RETURN_IF_ERROR(CheckName("topic", topic));
    Params params;
    params.Text(topic);
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, core_->pool().Acquire());
    auto done = conn->Exec(fmt::format("INSERT INTO {} (name) VALUES ($1) ON CONFLICT DO NOTHING", core_->topics()),
                           params);
    if (!done.ok()) return done.status().WithContext(fmt::format("registering topic '{}'", topic));
    return Status::OK();
  }

  Status Publish(std::string_view topic, std::span<const OutgoingMessage> messages) override {
    const size_t limit = core_->options().max_message_size;
    for (size_t message_idx = 0; message_idx < messages.size(); ++message_idx) {
      if (messages[message_idx].data.size() > limit) {
        return InvalidArgument("publishing to '{}': message {} of {} bytes exceeds the limit of {} bytes", topic,
                               message_idx, messages[message_idx].data.size(), limit);
      }
    }
    if (messages.empty()) return Status::OK();
    std::vector<std::string_view> keys, data;
    for (const OutgoingMessage& message : messages) {
      keys.push_back(message.ordering_key);
      data.push_back(message.data);
    }
    Status done = InTransaction(core_->pool(), [&](Connection& conn) -> Status {
      // The topic row in share mode: publishes run side by side, a new
      // subscription (which locks it exclusively to copy the backlog) waits.
      Params name;
      name.Text(topic);
      AQ_ASSIGN_OR_RETURN(PgResult found, conn.Exec(fmt::format("SELECT 1 FROM {} WHERE name = $1 FOR SHARE",
                                                                core_->topics()), name));
      if (found.rows() == 0) return NotFound("topic '{}' is not registered", topic);
      Params rows;
      rows.Text(topic).Int8(core_->clock()->NowMillis()).ByteaArray(keys).ByteaArray(data);
      AQ_RETURN_IF_ERROR(conn.Exec(fmt::format(R"sql(
          WITH published AS (
            INSERT INTO {0} (topic, ordering_key, data, publish_time_ms)
            SELECT $1, u.ordering_key, u.data, $2
            FROM unnest($3::bytea[], $4::bytea[]) WITH ORDINALITY AS u(ordering_key, data, ord)
            ORDER BY u.ord
            RETURNING seq, ordering_key)
          INSERT INTO {1} (topic, subscription, seq, ordering_key)
          SELECT $1, s.name, p.seq, p.ordering_key FROM published p CROSS JOIN {2} s WHERE s.topic = $1)sql",
          core_->messages(), core_->deliveries(), core_->subscriptions()), rows).status());
      Params channel;
      channel.Text(core_->channel()).Text(topic);
      return conn.Exec("SELECT pg_notify($1, $2)", channel).status();
    });
    if (done.code() == StatusCode::kNotFound) return done;
    if (!done.ok()) return done.WithContext(fmt::format("publishing to '{}'", topic));
    return SweepUnclaimed(topic);
  }

  Result<std::unique_ptr<driver::Subscription>> Subscribe(std::string_view topic,
                                                          const SubscriptionOptions& options) override {
    AQ_RETURN_IF_ERROR(CheckName("subscription", options.name));
    if (options.ack_timeout_ms < 1) {
      return InvalidArgument("subscribing to '{}': ack timeout {} ms must be positive", topic, options.ack_timeout_ms);
    }
    // Ephemeral subscriptions are one consumer each: a unique name under the label.
    const std::string name =
        options.persistent ? options.name : fmt::format("{}/ephemeral/{}", options.name, Uuid::Random().ToString());
    const int64_t now = core_->clock()->NowMillis();
    Status done = InTransaction(core_->pool(), [&](Connection& conn) -> Status {
      Params topic_name;
      topic_name.Text(topic);
      AQ_ASSIGN_OR_RETURN(PgResult found, conn.Exec(fmt::format("SELECT 1 FROM {} WHERE name = $1 FOR UPDATE",
                                                                core_->topics()), topic_name));
      if (found.rows() == 0) return NotFound("subscribing to '{}': topic is not registered", topic);
      // Ephemeral subscriptions of consumers that stopped pulling long ago (a
      // process that died without Close) go, with their backlog.
      Params expired;
      expired.Text(topic).Int8(now - core_->options().ephemeral_expiry_ms);
      AQ_ASSIGN_OR_RETURN(PgResult stale, conn.Exec(fmt::format(
          "DELETE FROM {} WHERE topic = $1 AND NOT persistent AND last_seen_ms < $2 RETURNING name",
          core_->subscriptions()), expired));
      for (int row = 0; row < stale.rows(); ++row) {
        Params gone;
        gone.Text(topic).Text(stale.Bytes(row, 0));
        AQ_RETURN_IF_ERROR(PgSubscription::DeleteDeliveries(conn, core_->deliveries(), core_->messages(), gone));
      }
      Params sub;
      sub.Text(topic).Text(name).Bool(options.persistent).Bool(options.ordered).Int8(now);
      AQ_ASSIGN_OR_RETURN(PgResult existing, conn.Exec(fmt::format(
          "SELECT ordered FROM {} WHERE topic = $1 AND name = $2", core_->subscriptions()), sub));
      if (existing.rows() > 0) {
        AQ_ASSIGN_OR_RETURN(bool ordered, existing.Bool(0, 0));
        if (ordered != options.ordered) {
          return FailedPrecondition("subscription '{}' of '{}' exists with ordered={}, asked for ordered={}",
                                    name, topic, ordered, options.ordered);
        }
        return Status::OK();
      }
      AQ_RETURN_IF_ERROR(conn.Exec(fmt::format(
          "INSERT INTO {} (topic, name, persistent, ordered, last_seen_ms) VALUES ($1, $2, $3, $4, $5)",
          core_->subscriptions()), sub).status());
      if (options.persistent) {
        // A new persistent subscription starts at the oldest retained message.
        Params backlog;
        backlog.Text(topic).Text(name);
        AQ_RETURN_IF_ERROR(conn.Exec(fmt::format(
            "INSERT INTO {} (topic, subscription, seq, ordering_key) "
            "SELECT $1, $2, m.seq, m.ordering_key FROM {} m WHERE m.topic = $1",
            core_->deliveries(), core_->messages()), backlog).status());
      }
      return Status::OK();
    });
    if (!done.ok()) {
      if (done.code() == StatusCode::kNotFound || done.code() == StatusCode::kFailedPrecondition) return done;
      return done.WithContext(fmt::format("subscribing '{}' to '{}'", options.name, topic));
    }
    return std::unique_ptr<driver::Subscription>(std::make_unique<PgSubscription>(
        core_, std::string(topic), name, options.persistent, options.ordered, options.ack_timeout_ms));
  }

  Status Reset() override {
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, core_->pool().Acquire());
    Status done = conn->ExecScript(fmt::format("TRUNCATE {}, {}, {}", core_->deliveries(), core_->subscriptions(),
                                               core_->messages()));
    return done.ok() ? done : done.WithContext("resetting the queue");
  }

 private:
  // Deletes the topic's messages that no subscription holds and that are
  // older than unclaimed_retention_ms (published while the topic had no
  // subscription, e.g. write reports while no gateway runs), at most once a
  // minute per topic and queue object. A failed sweep is retried next time
  // and never fails the publish that triggered it.
  Status SweepUnclaimed(std::string_view topic) {
    constexpr int64_t kSweepIntervalMs = 60'000;
    const int64_t now = core_->clock()->NowMillis();
    {
      std::lock_guard<std::mutex> lock(sweep_mu_);
      int64_t& last = last_sweep_ms_[std::string(topic)];
      if (last != 0 && now - last < kSweepIntervalMs) return Status::OK();
      last = now;
    }
    Params params;
    params.Text(topic).Int8(now - core_->options().unclaimed_retention_ms);
    auto conn = core_->pool().Acquire();
    if (!conn.ok()) return Status::OK();
    (void)(*conn)->Exec(fmt::format(
        "DELETE FROM {0} m WHERE m.topic = $1 AND m.publish_time_ms < $2 "
        "AND NOT EXISTS (SELECT 1 FROM {1} d WHERE d.seq = m.seq)", core_->messages(), core_->deliveries()), params);
    return Status::OK();
  }

  std::shared_ptr<QueueCore> core_;
  std::mutex sweep_mu_;
  std::map<std::string, int64_t> last_sweep_ms_;  // guarded by sweep_mu_
};

}  // namespace

Result<QueueOptions> ParseQueueOptions(const driver::Config& config) {
  QueueOptions options;
  AQ_ASSIGN_OR_RETURN(options.connection, ParseConnectionOptions(config));
  AQ_ASSIGN_OR_RETURN(int64_t max_message_size,
                      driver::ConfigInt(config, "max_message_size", static_cast<int64_t>(options.max_message_size)));
  // bytea values are at most 1 GB; stay well below.
  if (max_message_size < 1 || max_message_size > (256 << 20)) {
    return InvalidArgument("config 'max_message_size': {} is outside 1..268435456", max_message_size);
  }
  options.max_message_size = static_cast<size_t>(max_message_size);
  AQ_ASSIGN_OR_RETURN(options.poll_interval_ms, driver::ConfigInt(config, "poll_interval_ms", options.poll_interval_ms));
  if (options.poll_interval_ms < 1) {
    return InvalidArgument("config 'poll_interval_ms': {} must be positive", options.poll_interval_ms);
  }
  AQ_ASSIGN_OR_RETURN(options.unclaimed_retention_ms,
                      driver::ConfigInt(config, "unclaimed_retention_ms", options.unclaimed_retention_ms));
  if (options.unclaimed_retention_ms < 1) {
    return InvalidArgument("config 'unclaimed_retention_ms': {} must be positive", options.unclaimed_retention_ms);
  }
  AQ_ASSIGN_OR_RETURN(options.ephemeral_expiry_ms,
                      driver::ConfigInt(config, "ephemeral_expiry_ms", options.ephemeral_expiry_ms));
  if (options.ephemeral_expiry_ms < 1) {
    return InvalidArgument("config 'ephemeral_expiry_ms': {} must be positive", options.ephemeral_expiry_ms);
  }
  return options;
}

Result<std::shared_ptr<driver::MessageQueue>> MakeMessageQueue(const QueueOptions& options, Clock* clock) {
  auto core = std::make_shared<QueueCore>(options, clock != nullptr ? clock : Clock::System());
  Status init = core->Init();
  if (!init.ok()) return init.WithContext("postgres message queue");
  return std::shared_ptr<driver::MessageQueue>(std::make_shared<PgMessageQueue>(std::move(core)));
}

}  // namespace aquifer::drivers::postgres
