#pragma once

// Engine: the product behind the HTTP API, independent of HTTP.
//
// One Engine per process. It owns the catalog, the four drivers (built by name
// through the registry), the cursor codec, the usage meter, the subscription
// hub and, per role, the workers:
//
//   gateway role: Write() validates, encodes and publishes to the queue topic
//                 "writes"; reads, SQL and subscriptions are served here.
//   worker role:  consumes "writes" (persistent subscription "workers"),
//                 writes lookup (log+index) then warehouse, publishing a
//                 WriteReport to "write-reports" after each store.
//   every gateway listens to "write-reports" (ephemeral subscription): it
//                 completes `wait=` requests and wakes local subscribers.
//
// Every operation takes the caller's Principal (from Engine::Authenticate) and
// checks its grants in the catalog. All methods are thread-safe.
//
// Errors are Status codes the gateway maps to HTTP in one place:
//   InvalidArgument 400, Unauthenticated 401, PermissionDenied 403,
//   NotFound 404, AlreadyExists/FailedPrecondition/Aborted 409, TooLarge 413,
//   ResourceExhausted 429, Unavailable 503, Timeout 504, others 500.
// Operations that can reject individual records return them in `details`.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/registry.h"
#include "aquifer/engine/auth.h"
#include "aquifer/engine/catalog.h"
#include "aquifer/engine/sql.h"

namespace aquifer::engine {

enum class Role : uint8_t { kAll, kGateway, kWorker };

// Over-quota answers. A project's quotas count bytes per calendar month (UTC, the
// usage periods); ResourceExhausted for a quota carries the seconds until the
// month resets in its message, "...; retry after N s", which RetryAfterSeconds
// reads back (the gateway's Retry-After). Other ResourceExhausted: nullopt.
Status QuotaExhausted(std::string message, int64_t retry_after_s);
std::optional<int64_t> RetryAfterSeconds(const Status& status);
// The start of the calendar month (UTC) after the one containing `now_ms`: when
// monthly quotas reset.
int64_t QuotaResetMs(int64_t now_ms);

struct DriverChoice {
  std::string name = "embedded";
  driver::Config config;
};

struct EngineOptions {
  std::string data_dir = "./data";
  Role role = Role::kAll;
  // "sqlite" (file <data_dir>/catalog.db), "sqlite:<path>", a path, or a
  // Postgres URL ("postgres://..." or "postgresql://...", optionally with
  // ?schema=<name>, default schema "aquifer"; catalog_postgres.h) that
  // several processes share.
  std::string catalog = "sqlite";
  DriverChoice queue, lookup, warehouse, usage;
  // Where cursor.key and secret.key live when the keys below are empty ("":
  // data_dir) and the catalog is SQLite. Processes with separate data dirs
  // that share a deployment (one catalog, one queue) point this at one folder
  // ([server] keys_dir). A Postgres catalog keeps both keys itself.
  std::string keys_dir;
  // Signs cursors. When empty: generated once and kept in <keys_dir>/cursor.key
  // with a SQLite catalog, in the catalog's shared_keys table with a Postgres one.
  std::string cursor_key;
  // Keys the stored secret hashes (HMAC-SHA256). When empty: generated once
  // and kept in <keys_dir>/secret.key (0600) with a SQLite catalog, in the
  // catalog's shared_keys table with a Postgres one. A separate key from the
  // cursor key; every process of a deployment must share both.
  std::string secret_key;
  // Sets the admin secret (AQUIFER_ADMIN_SECRET); otherwise one is made on first start.
  std::optional<std::string> admin_secret;
  // Quotas every new project starts with (config [quotas]); unset = unlimited.
  Quotas default_quotas;
  int64_t wait_timeout_ms = 30'000;         // ?wait= gives up after this (Timeout)
  size_t max_body_bytes = 64 << 20;         // larger request bodies are TooLarge
  int64_t usage_flush_interval_ms = 1'000;  // meter → UsageService
  // An open ChangeFeed re-resolves its table, grants and project from the
  // catalog when this much time has passed since it last did (and at once
  // after a DeleteTable through this engine); between checks its reads do no
  // catalog work. 0: on every read.
  int64_t change_feed_recheck_ms = 30'000;
  int32_t worker_threads = 2;
  // A write message a worker claimed and did not ack (it died) goes to
  // another worker after this long; until then its table's later writes
  // wait behind it (one ordering key per table).
  int64_t worker_ack_timeout_ms = 30'000;
  // Role all: while writes trickle in, the warehouse's consumers start a
  // DuckDB write at most this often (worker.h), so its commits stop
  // delaying the queue's and the lookup service's fsyncs; a full pull or a
  // `wait=warehouse` writer goes at once. 0: a write per pull.
  int64_t warehouse_write_interval_ms = 200;
  SqlOptions sql;  // limits on SQL jobs ([sql] in aquifer.toml)
  // A write message still failing at this delivery attempt is dead-lettered
  // (topic "writes-dead"; see worker.h).
  int32_t max_delivery_attempts = 10;
  Clock* clock = Clock::System();

  // Idempotency-Key claims (README "Guarantees"). A claim is pending from
  // before the publish until the write is durable; a retry meeting a pending
  // claim waits up to `idempotency_wait_ms` for it to finish, then answers
  // Unavailable (503, retry). A pending claim whose process died is taken over
  // once its lease of `idempotency_lease_ms` has run out; the lease must
  // outlast the slowest queue publish, or a slow publish and a retry's
  // takeover may both write.
  int64_t idempotency_lease_ms = 30'000;
  int64_t idempotency_wait_ms = 5'000;
  // Expired claims (committed ones older than kIdempotencyKeyTtlMs, pending
  // ones past their lease) are deleted from the catalog this often, so the
  // table stays the size of one day of keyed writes.
  int64_t idempotency_purge_interval_ms = 10 * 60'000;
  // Retention (lookup_service.h, "Retention"): every instance with a
  // log/index/warehouse retention has its expired records deleted from the
  // stores this often (flush thread); reads hide them in between.
  int64_t retention_purge_interval_ms = 60'000;
  // Once the queue refuses writes (WriteHealth, health.h), writes are answered
  // Unavailable without publishing, except one every this many ms, which
  // probes whether the queue works again.
  int64_t write_path_probe_interval_ms = 1'000;

  // Tests only: decorates the message queue once built (driver/wrappers.h),
  // to inject faults. Unset in production.
  std::function<std::shared_ptr<driver::MessageQueue>(std::shared_ptr<driver::MessageQueue>)>
      wrap_queue;
  // Registers more drivers by name after the built-in ones (tests: wrappers
  // that inject faults). Unset in production.
  std::function<void(driver::Registry*)> register_drivers;
};

// One problem with one record of a write, or one field of it.
struct RecordError {
  int64_t record = 0;  // 0-based index in the request
  std::string field;   // path, e.g. "items[2].price"; empty for the whole record
  std::string message;
};

// Stores a write can wait for.
struct WaitFor {
  bool log = false;
  bool index = false;
  bool warehouse = false;
  bool any() const { return log || index || warehouse; }
};
// Parses "log", "index", "warehouse" or a comma-separated list ("index,warehouse").
Result<WaitFor> ParseWaitFor(std::string_view text);

struct WriteRequest {
  std::string_view project;
  std::string_view table;
  std::string_view body;               // a JSON array of records, or NDJSON
  WaitFor wait;
  std::string_view idempotency_key;    // empty: none
};

struct WriteAck {
  std::string write_id;  // base58
  int64_t records = 0;
  bool waited = false;   // true when `wait` was met (HTTP 200 instead of 202)
  bool replayed = false; // an idempotent retry of an earlier write: nothing written again
  // False when the queue acknowledged before stable storage (relaxed
  // durability, e.g. [queue] sync = false); see Engine::RelaxedDurability().
  bool durable = true;
};

// A page of records, already rendered as a JSON array: each record is an
// object of the schema's fields plus "@timestamp" (ms).
struct RecordPage {
  std::string data_json;     // "[{...},{...}]"
  std::string next_cursor;   // empty when the replay is exhausted
  std::string change_cursor; // set on a query's first page (index and log)
  bool residual = false;     // the filter needed a record-by-record scan
  int64_t count = 0;
  // The read stopped at `limit` or at the driver's scan budget, so more
  // records may follow right away: a change feed reads again without waiting.
  // False when the read reached the end of what is stored.
  bool more = false;
};

struct IndexQuery {
  std::string_view project;
  std::string_view table;
  std::string_view filter_json;  // empty: no filter
  int32_t limit = 100;           // 1..1000
};

struct LogQuery {
  std::string_view project;
  std::string_view table;
  int32_t limit = 100;
  int64_t from_ms = 0;           // skip records with an earlier timestamp
};

struct SqlAnalysis {
  std::vector<std::string> tables;  // "project.table", as the query names them
  int64_t bytes_scanned_estimate = 0;
};

struct JobRowsPage {
  std::string columns_json;  // [{"name":..,"type":..}, ...]
  std::string data_json;     // [[...], [...]]
  std::string next_cursor;   // empty when done
};

// The longest wait_ms POST /v1/sql accepts.
inline constexpr int64_t kMaxSqlWaitMs = 60'000;

// SubmitSqlAndWait's answer.
struct SqlAnswer {
  std::string job_id;
  bool finished = false;  // done or failed within the wait
  // {"job_id","status","error","bytes_scanned","rows"} as GET /v1/jobs/{id}
  // answers, plus "columns","data","next_cursor" (the first page, as GET
  // /v1/jobs/{id}/rows answers) when the job is done.
  std::string json;
};

// A subscriber's handle on the hub: the callback runs on a hub thread when
// new records may exist for the instance; it must not block (set a flag,
// post to an executor). Destroying the handle unsubscribes.
class Listener {
 public:
  virtual ~Listener() = default;
};

// An open subscription's read side (Engine::OpenChangeFeed): the change
// cursor's table, the principal's grants, the project and the combined
// filter are resolved once, so reading an idle feed does no catalog work.
// They are resolved again after EngineOptions::change_feed_recheck_ms, and
// at once after a DeleteTable through this engine: a deleted table (NotFound)
// or a lost grant (NotFound/PermissionDenied) ends the feed then. Not
// thread-safe (one reader at a time); must not outlive its Engine.
// The WebSocket "records" message of a page (DESIGN.md: subscribe):
// {"type":"records","data":[...],"cursor":"..."}.
std::string RecordsMessage(std::string_view data_json, std::string_view cursor);

// A change feed's page as the message a subscriber is sent. Feeds that share
// a page (same instance, position and filters) share one message: one render,
// one buffer, refcounted, whatever the number of subscribers.
struct ChangeBatch {
  int64_t count = 0;
  bool more = false;          // as RecordPage::more
  std::string next_cursor;    // the feed's new position
  std::shared_ptr<const std::string> message;  // RecordsMessage; null when count == 0
};

class ChangeFeed {
 public:
  virtual ~ChangeFeed() = default;
  virtual const Uuid& instance_id() const = 0;
  // Reads up to `limit` records after the feed's position and advances it.
  // next_cursor is the new position (the resume point to hand a client);
  // `more` says to read again without waiting for a notification.
  virtual Result<RecordPage> Read(int32_t limit) = 0;
  // The same read, answered as the records message (shared between feeds
  // at the same position). This default renders it from Read().
  virtual Result<ChangeBatch> ReadBatch(int32_t limit);
  // The same read when it needs no I/O and cannot block: another feed at the
  // same position (same instance, filters and limit) already read and
  // rendered the page since the last change notification, and no catalog
  // recheck or quota lookup is due. Advances the position like ReadBatch.
  // nullopt: call ReadBatch (on a thread that may block). This default: never.
  virtual std::optional<ChangeBatch> TryReadBatch(int32_t limit);
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  virtual ~Engine() = default;

  // Starts the role's background work (workers, report listener, usage flush).
  virtual Status Start() = 0;
  // Stops it; in-flight queue messages are left for redelivery. Idempotent.
  virtual void Stop() = 0;

  // The admin secret when this start created it (to print once), else empty.
  virtual std::optional<std::string> NewAdminSecret() const = 0;

  // Bearer secret → principal. Unauthenticated for a missing or unknown secret.
  virtual Result<Principal> Authenticate(std::string_view secret) = 0;

  // --- Projects, tables, secrets ------------------------------------------------------
  // Responses are JSON objects rendered by the engine.
  virtual Result<std::string> CreateProject(const Principal& who, std::string_view body_json) = 0;
  // body: {"name","schema","key",["use_log","use_index","use_warehouse", *_retention_ms]}
  virtual Result<std::string> CreateTable(const Principal& who, std::string_view project,
                                          std::string_view body_json) = 0;
  virtual Result<std::string> DescribeTable(const Principal& who, std::string_view project,
                                            std::string_view table) = 0;
  virtual Status DeleteTable(const Principal& who, std::string_view project,
                             std::string_view table) = 0;
  // {"project","tables":[<DescribeTable's object>...]}: the project's tables the
  // principal may read, by name (may be none). NotFound when the principal has no
  // grant in the project, or it does not exist: the same message either way.
  virtual Result<std::string> ListTablesJson(const Principal& who, std::string_view project) = 0;
  // body: {"read":[...],"write":[...],"manage":false} → {"secret": "..."}
  virtual Result<std::string> CreateSecret(const Principal& who, std::string_view project,
                                           std::string_view body_json) = 0;

  // --- Quotas (admin only) ----------------------------------------------------------------
  // {"project","read_bytes","write_bytes","scan_bytes"}: monthly byte limits, null when
  // unlimited. A non-admin gets NotFound for a project it does not see, else PermissionDenied.
  virtual Result<std::string> GetQuotasJson(const Principal& who, std::string_view project) = 0;
  // body: any of "read_bytes", "write_bytes", "scan_bytes", each a non-negative integer or
  // null (unlimited); omitted ones keep their value. Answers the quotas as now set.
  // InvalidArgument for other fields or values.
  virtual Result<std::string> SetQuotas(const Principal& who, std::string_view project,
                                        std::string_view body_json) = 0;

  // --- Writes -----------------------------------------------------------------------------
  // InvalidArgument with every bad record in `details` (nothing written);
  // TooLarge for a body, batch or record over the limits; ResourceExhausted
  // over quota; Unavailable when the queue cannot take it; Timeout when `wait`
  // was not met in time (the write is still accepted and will be applied).
  virtual Result<WriteAck> Write(const Principal& who, const WriteRequest& request,
                                 std::vector<RecordError>* details) = 0;

  // --- Reads ------------------------------------------------------------------------------
  virtual Result<RecordPage> QueryIndex(const Principal& who, const IndexQuery& query) = 0;
  // True when a read needs no network round trip: the lookup driver reads
  // locally (LookupCapabilities::local_reads) and the catalog is SQLite. The
  // gateway then answers short index reads on its network threads.
  virtual bool LocalReads() const = 0;
  virtual Result<RecordPage> QueryLog(const Principal& who, const LogQuery& query) = 0;
  // GET /v1/cursor: the full JSON response body for any cursor kind, checked
  // against the principal's grants: records {"data","next_cursor","residual"};
  // job rows {"columns","data","next_cursor"}. InvalidArgument for a broken cursor.
  virtual Result<std::string> ReadCursorJson(const Principal& who, std::string_view cursor,
                                             int32_t limit) = 0;

  // --- Subscriptions ----------------------------------------------------------------------
  // Checks that `cursor` is a change cursor the principal may read, and that
  // `filter_json` (may be empty) is valid for its table; returns the instance.
  virtual Result<Uuid> CheckSubscription(const Principal& who, std::string_view cursor,
                                         std::string_view filter_json) = 0;
  // Reads the next batch of a change cursor, applying `filter_json` on top of
  // the cursor's own filter. next_cursor is always set (resume point).
  virtual Result<RecordPage> ReadChanges(const Principal& who, std::string_view cursor,
                                         std::string_view filter_json, int32_t limit) = 0;
  virtual std::unique_ptr<Listener> Listen(const Uuid& instance_id,
                                           std::function<void()> on_change) = 0;
  // CheckSubscription, then a feed that reads from `cursor` on with
  // `filter_json` ANDed to the cursor's own filter (see ChangeFeed).
  virtual Result<std::unique_ptr<ChangeFeed>> OpenChangeFeed(const Principal& who,
                                                             std::string_view cursor,
                                                             std::string_view filter_json) = 0;

  // --- SQL --------------------------------------------------------------------------------
  // Dry run: InvalidArgument for anything but one SELECT over project.table
  // names; NotFound for tables the principal may not see.
  virtual Result<SqlAnalysis> AnalyzeSql(const Principal& who, std::string_view sql) = 0;
  // Starts a job; returns its id (string form of the UUID).
  virtual Result<std::string> SubmitSql(const Principal& who, std::string_view sql) = 0;
  // SubmitSql, then up to `wait_ms` for the job to finish, answering its
  // status and, when done, the first `limit` rows (SqlService::SubmitAndWait:
  // small results are run at once, without a warehouse job). The job is
  // recorded either way: GET /v1/jobs/{id} and its rows work as for any job.
  virtual Result<SqlAnswer> SubmitSqlAndWait(const Principal& who, std::string_view sql, int64_t wait_ms,
                                             int32_t limit) = 0;
  // {"job_id","status","error","bytes_scanned","rows"}
  virtual Result<std::string> GetJobJson(const Principal& who, std::string_view job_id) = 0;
  // FailedPrecondition (409) while the job is not done or when it failed.
  virtual Result<JobRowsPage> ReadJobRows(const Principal& who, std::string_view job_id,
                                          std::string_view cursor, int32_t limit) = 0;

  // --- Usage ------------------------------------------------------------------------------
  // {"projects":[{"project","hour":{...},"month":{...}}], "secret":{...}} for the caller.
  // hours > 0 adds "hours":[{"start_ms", counters...}] to each project: the last
  // `hours` hourly buckets (UTC), oldest first, the current one included, zeros
  // for hours without usage.
  virtual Result<std::string> UsageJson(const Principal& who, int32_t hours = 0) = 0;

  // --- Dead letters (admin only) ----------------------------------------------------------
  // Write messages the workers gave up on (worker.h): {"dead_letters":[{"write_id",
  // "part","parts","project","table","instance_id","records","store","reason",
  // "attempts","dead_ms"}]}, at most `limit` (1..1000), oldest first.
  virtual Result<std::string> DeadLettersJson(const Principal& who, int32_t limit) = 0;
  // Publishes dead letters to "writes" again and removes them from the list:
  // every one, or those whose write id is in body {"write_ids":[...]} (empty
  // body: all). The stores skip what they had applied. → {"replayed": n}
  virtual Result<std::string> ReplayDeadLetters(const Principal& who,
                                                std::string_view body_json) = 0;

  // --- Health and metrics -----------------------------------------------------------------
  // OK, or Unavailable naming the cause: first the write path (WriteHealth:
  // the queue or a store refusing writes, in which case writes are refused
  // too), then a probe of every store.
  virtual Status Health() = 0;
  // nullopt when an acknowledged write is on stable storage. Otherwise why
  // not: the queue acknowledges publishes before they reach stable storage
  // (e.g. [queue] sync = false), so a 2xx write survives a crash of the
  // process but not of the machine. Logged at Open, shown on /healthz and on
  // every write answer.
  virtual std::optional<std::string> RelaxedDurability() const = 0;
  // Prometheus text exposition of the engine's counters (the gateway adds its own).
  virtual std::string MetricsText() = 0;
};

}  // namespace aquifer::engine
