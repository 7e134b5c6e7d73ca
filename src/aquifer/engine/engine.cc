// EngineImpl: Engine (engine.h) over the catalog, the four drivers and the
// engine's own parts (write_pipeline, worker, reads, subscriptions,
// usage_meter). README.md, "Engine", describes the whole; this file wires the
// parts together and holds the per-operation checks (authorization, limits,
// quotas, metering).

#include "aquifer/engine/engine.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "aquifer/base/base58.h"
#include "aquifer/base/logging.h"
#include "aquifer/base/text.h"
#include "aquifer/driver/cursor.h"
#include "aquifer/driver/store_metrics.h"
#include "aquifer/drivers/builtin.h"
#include "aquifer/engine/catalog_postgres.h"
#include "aquifer/engine/health.h"
#include "aquifer/engine/reads.h"
#include "aquifer/engine/sql.h"
#include "aquifer/engine/subscriptions.h"
#include "aquifer/engine/usage_meter.h"
#include "aquifer/engine/wire.h"
#include "aquifer/engine/worker.h"
#include "aquifer/engine/write_pipeline.h"
#include "aquifer/keys/filter.h"

namespace aquifer::engine {

Result<WaitFor> ParseWaitFor(std::string_view text) {
  WaitFor wait;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string_view store =
        text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!store.empty() && store.front() == ' ') store.remove_prefix(1);
    while (!store.empty() && store.back() == ' ') store.remove_suffix(1);
    if (store == "log") {
      wait.log = true;
    } else if (store == "index") {
      wait.index = true;
    } else if (store == "warehouse") {
      wait.warehouse = true;
    } else {
      return InvalidArgument("wait: unknown store '{}' (expected log, index or warehouse, or a "
                             "comma-separated list of them)",
                             store);
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return wait;
}

namespace {
constexpr std::string_view kRetryAfterMarker = "; retry after ";
}  // namespace

Status QuotaExhausted(std::string message, int64_t retry_after_s) {
  return Status(StatusCode::kResourceExhausted,
                fmt::format("{}{}{} s", message, kRetryAfterMarker, retry_after_s));
}

std::optional<int64_t> RetryAfterSeconds(const Status& status) {
  if (status.code() != StatusCode::kResourceExhausted) return std::nullopt;
  std::string_view message = status.message();
  if (!message.ends_with(" s")) return std::nullopt;
  size_t marker = message.rfind(kRetryAfterMarker);
  if (marker == std::string_view::npos) return std::nullopt;
  std::string_view digits = message.substr(marker + kRetryAfterMarker.size());
  digits.remove_suffix(2);
  if (digits.empty() || digits.size() > 12) return std::nullopt;
  int64_t seconds = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    seconds = seconds * 10 + (c - '0');
  }
  return seconds;
}

int64_t QuotaResetMs(int64_t now_ms) {
  const int64_t month_start = driver::PeriodStart(driver::UsagePeriod::kMonth, now_ms);
  // Every month is shorter than 32 days: this lands in the next one.
  return driver::PeriodStart(driver::UsagePeriod::kMonth, month_start + 32LL * 86'400'000);
}

namespace {

using json = nlohmann::json;
using driver::UsageCounters;
using driver::UsagePeriod;

constexpr std::string_view kCursorKeyFile = "cursor.key";
constexpr std::string_view kSecretKeyFile = "secret.key";
constexpr size_t kCursorKeyBytes = 32;

Result<std::string> RandomBytes(size_t size) {
  std::string bytes(size, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(size)) != 1) {
    return Internal("the CSPRNG (OpenSSL RAND_bytes) failed");
  }
  return bytes;
}

// A server key: <dir>/<file> (64 hex digits, mode 0600; dir is
// EngineOptions::keys_dir, default the data dir), created once with 32 random
// bytes. The cursor signing key (cursor.key) and the key of the
// stored secret hashes (secret.key) are two such keys. Every process of a
// deployment must share them. `what` names the key in messages.
// fsync of a directory: its entries (files and folders made in it) become
// durable. A file's own fsync does not promise that (POSIX; XFS and ext4
// without a journal do lose them).
Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Unavailable("opening the directory {} to sync it: {}", dir, std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int saved_errno = errno;
  ::close(fd);
  if (!ok) return Unavailable("syncing the directory {}: {}", dir, std::strerror(saved_errno));
  return Status::OK();
}

Result<std::string> LoadOrCreateKeyFile(const std::string& dir, std::string_view file,
                                        std::string_view what) {
  const std::string path = dir + "/" + std::string(file);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::ifstream in(path);
    if (in) {
      std::stringstream content;
      content << in.rdbuf();
      std::string text = content.str();
      while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
      std::string key;
      if (!HexDecode(text, &key) || key.size() < 16) {
        return Corruption("{} file {} is damaged (expected {} hex digits)", what, path,
                          kCursorKeyBytes * 2);
      }
      return key;
    }
    AQ_ASSIGN_OR_RETURN(std::string key, RandomBytes(kCursorKeyBytes));
    std::string text = HexEncode(key) + "\n";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) continue;  // another process made it first: read theirs
      return Unavailable("creating {} file {}: {}", what, path, std::strerror(errno));
    }
    bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
              ::fsync(fd) == 0;
    int saved_errno = errno;
    ::close(fd);
    if (!ok) {
      ::unlink(path.c_str());
      return Unavailable("writing {} file {}: {}", what, path, std::strerror(saved_errno));
    }
    return key;
  }
  return Unavailable("{} file {} appeared but cannot be read", what, path);
}

Result<json> ParseBody(std::string_view body, std::string_view what) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return InvalidArgument("{}: the body is not valid JSON", what);
  if (!parsed.is_object()) return InvalidArgument("{}: the body must be a JSON object", what);
  return parsed;
}

Status CheckMembers(const json& body, std::initializer_list<std::string_view> allowed,
                    std::string_view what) {
  std::vector<std::string> unknown;
  for (const auto& [name, value] : body.items()) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) unknown.push_back(name);
  }
  if (unknown.empty()) return Status::OK();
  std::string names;
  for (const auto& name : unknown) names += (names.empty() ? "'" : ", '") + name + "'";
  std::string known;
  for (const auto& name : allowed) known += (known.empty() ? "" : ", ") + std::string(name);
  return InvalidArgument("{}: unknown member{} {} (known: {})", what, unknown.size() > 1 ? "s" : "",
                         names, known);
}

json CountersJson(const UsageCounters& counters) {
  return json{{"read_ops", counters.read_ops},       {"read_records", counters.read_records},
              {"read_bytes", counters.read_bytes},   {"write_ops", counters.write_ops},
              {"write_records", counters.write_records}, {"write_bytes", counters.write_bytes},
              {"scan_ops", counters.scan_ops},       {"scan_bytes", counters.scan_bytes}};
}

json TableJson(const TableInfo& table) {
  const driver::InstanceInfo& instance = table.primary;
  json key = json::array();
  for (const auto& field : instance.schema->key()) key.push_back(field.name);
  return json{{"project", table.project},
              {"name", table.name},
              {"table_id", table.table_id.ToString()},
              {"instance_id", instance.instance_id.ToString()},
              {"key", key},
              {"schema", json::parse(instance.schema->avro_json(), nullptr, false)},
              {"use_log", instance.use_log},
              {"use_index", instance.use_index},
              {"use_warehouse", instance.use_warehouse},
              {"log_retention_ms", instance.log_retention_ms},
              {"index_retention_ms", instance.index_retention_ms},
              {"warehouse_retention_ms", instance.warehouse_retention_ms},
              {"created_ms", table.created_ms}};
}

driver::Limits MinLimits(const driver::Limits& a, const driver::Limits& b) {
  return {std::min(a.max_key_size, b.max_key_size), std::min(a.max_record_size, b.max_record_size),
          std::min(a.max_records_in_batch, b.max_records_in_batch)};
}

std::string StoresText(const WaitFor& wait) {
  std::string text;
  for (auto [wanted, name] : {std::pair{wait.log, "log"}, std::pair{wait.index, "index"},
                              std::pair{wait.warehouse, "warehouse"}}) {
    if (wanted) text += (text.empty() ? "" : ", ") + std::string(name);
  }
  return text;
}

enum class QuotaKind : uint8_t { kRead, kWrite, kScan };

// WriteHealth component of the message queue.
constexpr std::string_view kQueueComponent = "queue";
// Transient publish errors (Unavailable, Timeout...) in a row, with no
// success between, before the queue counts as refusing writes.
constexpr int kTransientPublishFailuresBeforeUnhealthy = 3;

// The test-only fault points of AQUIFER_TEST_FAULT (read once, in Engine::Open).
// exit_after_idempotency_claim: the process _exit()s right after a write
// claimed its Idempotency-Key, before publishing (tests/e2e/durability_test.cc).
struct TestFaults {
  bool exit_after_idempotency_claim = false;
};

Result<TestFaults> ReadTestFaults() {
  TestFaults faults;
  const char* text = std::getenv("AQUIFER_TEST_FAULT");
  if (text == nullptr || *text == '\0') return faults;
  if (std::string_view(text) == "exit_after_idempotency_claim") {
    faults.exit_after_idempotency_claim = true;
  } else {
    return InvalidArgument("AQUIFER_TEST_FAULT: unknown fault point '{}' (test-only; known: "
                           "exit_after_idempotency_claim)",
                           text);
  }
  AQ_LOG(Warn, "AQUIFER_TEST_FAULT={}: a test-only fault point is active; never set this in "
               "production",
         text);
  return faults;
}

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A random id for this process's Idempotency-Key claims.
std::string ProcessOwnerId() {
  return fmt::format("pid-{}-{}", ::getpid(), Uuid::Random().ToString());
}

// A table instance resolved for a read, with the project it bills.
struct ReadTarget {
  driver::InstanceInfo instance;
  ProjectInfo project;
};

}  // namespace

class EngineImpl final : public Engine {
 public:
  EngineImpl(EngineOptions options, std::unique_ptr<Catalog> catalog,
             std::shared_ptr<driver::MessageQueue> queue,
             std::shared_ptr<driver::LookupService> lookup,
             std::shared_ptr<driver::WarehouseService> warehouse,
             std::shared_ptr<driver::UsageService> usage, std::string cursor_key,
             std::optional<std::string> new_admin_secret, TestFaults faults)
      : options_(std::move(options)),
        faults_(faults),
        claim_owner_(ProcessOwnerId()),
        clock_(options_.clock != nullptr ? options_.clock : Clock::System()),
        catalog_(std::move(catalog)),
        queue_(std::move(queue)),
        lookup_(std::move(lookup)),
        warehouse_(std::move(warehouse)),
        usage_(std::move(usage)),
        cursors_(std::move(cursor_key)),
        sql_(catalog_.get(), warehouse_.get(), &cursors_, clock_, options_.sql),
        meter_(usage_, clock_),
        limits_(MinLimits(lookup_->capabilities().limits, warehouse_->capabilities().limits)),
        max_message_size_(queue_->capabilities().max_message_size),
        relaxed_durability_(RelaxedDurabilityOf(*queue_, options_.queue)),
        new_admin_secret_(std::move(new_admin_secret)) {}

  static std::optional<std::string> RelaxedDurabilityOf(const driver::MessageQueue& queue,
                                                        const DriverChoice& choice) {
    if (queue.capabilities().durable_publish) return std::nullopt;
    return fmt::format("relaxed durability: the message queue (driver '{}') acknowledges writes "
                       "before they reach stable storage ([queue] sync = false); an acknowledged "
                       "write survives a crash of the process, not of the machine",
                       choice.name);
  }

  ~EngineImpl() override { Stop(); }

  Status Start() override;
  void Stop() override;
  std::optional<std::string> NewAdminSecret() const override { return new_admin_secret_; }
  Result<Principal> Authenticate(std::string_view secret) override;

  Result<std::string> CreateProject(const Principal& who, std::string_view body_json) override;
  Result<std::string> CreateTable(const Principal& who, std::string_view project,
                                  std::string_view body_json) override;
  Result<std::string> DescribeTable(const Principal& who, std::string_view project,
                                    std::string_view table) override;
  Status DeleteTable(const Principal& who, std::string_view project,
                     std::string_view table) override;
  Result<std::string> CreateSecret(const Principal& who, std::string_view project,
                                   std::string_view body_json) override;

  Result<WriteAck> Write(const Principal& who, const WriteRequest& request,
                         std::vector<RecordError>* details) override;

  Result<RecordPage> QueryIndex(const Principal& who, const IndexQuery& query) override;
  bool LocalReads() const override {
    return lookup_->capabilities().local_reads && !IsPostgresCatalogUrl(options_.catalog);
  }
  Result<RecordPage> QueryLog(const Principal& who, const LogQuery& query) override;
  Result<std::string> ReadCursorJson(const Principal& who, std::string_view cursor,
                                     int32_t limit) override;

  Result<Uuid> CheckSubscription(const Principal& who, std::string_view cursor,
                                 std::string_view filter_json) override;
  Result<RecordPage> ReadChanges(const Principal& who, std::string_view cursor,
                                 std::string_view filter_json, int32_t limit) override;
  std::unique_ptr<Listener> Listen(const Uuid& instance_id,
                                   std::function<void()> on_change) override {
    return hub_.Listen(instance_id, std::move(on_change));
  }
  Result<std::unique_ptr<ChangeFeed>> OpenChangeFeed(const Principal& who, std::string_view cursor,
                                                     std::string_view filter_json) override;

  Result<SqlAnalysis> AnalyzeSql(const Principal& who, std::string_view sql) override;
  Result<std::string> SubmitSql(const Principal& who, std::string_view sql) override;
  Result<SqlAnswer> SubmitSqlAndWait(const Principal& who, std::string_view sql, int64_t wait_ms,
                                     int32_t limit) override;
  // Analyze, then the scan quota of every project the query reads.
  Result<std::pair<SqlAnalysisResult, std::vector<ProjectInfo>>> AnalyzeForSubmit(const Principal& who,
                                                                                  std::string_view sql);
  void ChargeScan(const Principal& who, const SqlAnalysisResult& analysis, const std::vector<ProjectInfo>& projects);
  Result<std::string> GetJobJson(const Principal& who, std::string_view job_id) override {
    return sql_.JobJson(who, job_id);
  }
  Result<JobRowsPage> ReadJobRows(const Principal& who, std::string_view job_id,
                                  std::string_view cursor, int32_t limit) override;

  Result<std::string> GetQuotasJson(const Principal& who, std::string_view project) override;
  Result<std::string> SetQuotas(const Principal& who, std::string_view project,
                                std::string_view body_json) override;

  Result<std::string> UsageJson(const Principal& who, int32_t hours) override;
  Result<std::string> ListTablesJson(const Principal& who, std::string_view project) override;
  Result<std::string> DeadLettersJson(const Principal& who, int32_t limit) override;
  Result<std::string> ReplayDeadLetters(const Principal& who, std::string_view body_json) override;
  Status Health() override;
  std::optional<std::string> RelaxedDurability() const override { return relaxed_durability_; }
  std::string MetricsText() override;

 private:
  Result<WriteAck> DoWrite(const Principal& who, const WriteRequest& request,
                           std::vector<RecordError>* details);
  // OK when writes may be published: the write path is healthy, or only the
  // queue failed and this write is the probe of this interval.
  Status CheckWritePath();
  // Records a publish's outcome in health_ (see kQueueComponent).
  void NotePublish(const Status& published);
  // Claims the request's Idempotency-Key for `write_id`: nullopt when this
  // request holds it (write, then commit or release), else the write id of
  // the earlier, durable write. Unavailable when another request's claim
  // stays unfinished for idempotency_wait_ms.
  Result<std::optional<std::string>> ClaimKey(const Principal& who, std::string_view key,
                                              const std::string& write_id);
  // Marks the claim done after a successful publish, retrying briefly; a
  // failure is logged (the write is durable either way).
  void CommitKey(const Principal& who, std::string_view key, const std::string& write_id);
  // ResourceExhausted when the project's monthly quota of `kind` is used up,
  // or would be by `extra_bytes` more.
  Status CheckQuota(const ProjectInfo& project, QuotaKind kind, int64_t extra_bytes);
  // The ResourceExhausted answer for `kind`, with the seconds until the quota resets.
  Status OverQuota(const ProjectInfo& project, QuotaKind kind, int64_t used, int64_t quota,
                   int64_t extra_bytes);
  // For a project with a write quota: charges `usage` to the project's month
  // in the shared UsageService if it fits the quota (one atomic check-and-add,
  // seen at once by every process), answering when it was charged; otherwise
  // ResourceExhausted and nothing charged.
  Result<int64_t> ReserveWrite(const ProjectInfo& project, const UsageCounters& usage);
  // Takes back a reservation whose write was not published (a failure is
  // logged and the give-back retried with the meter's flushes).
  void GiveBackWrite(const Uuid& project_id, int64_t reserved_at, const UsageCounters& usage);
  // OK for the admin; NotFound for a project the principal does not see; else PermissionDenied.
  Status CheckQuotaAdmin(const Principal& who, std::string_view project);
  void Meter(const Principal& who, const Uuid& project_id, const UsageCounters& counters);
  // Decodes a record cursor (not a job cursor) and checks read access on its instance.
  Result<ReadTarget> ResolveReadTarget(const Principal& who, const driver::Cursor& cursor);
  // Reads one page of a driver payload and wraps what follows in a cursor of the same kind.
  // The primary instance of a table the principal may read, within the read quota.
  Result<ReadTarget> ResolveReadTarget(const Principal& who, std::string_view project_name,
                                       std::string_view table_name) {
    AQ_RETURN_IF_ERROR(catalog_->Authorize(who, project_name, table_name, Permission::kRead));
    AQ_ASSIGN_OR_RETURN(TableInfo table, catalog_->GetTable(project_name, table_name));
    AQ_ASSIGN_OR_RETURN(ProjectInfo project, catalog_->GetProject(project_name));
    AQ_RETURN_IF_ERROR(CheckQuota(project, QuotaKind::kRead, 0));
    return ReadTarget{table.primary, std::move(project)};
  }

  // `next_driver`, when set, receives the driver's next payload.
  Result<RecordPage> ReadPage(const Principal& who, const ReadTarget& target,
                              const EnginePayload& payload, const keys::Filter& filter,
                              int32_t limit, std::string* next_driver = nullptr,
                              int64_t* read_bytes = nullptr);

  // Change pages shared between feeds (Feed::Read): feeds at the same position
  // of the same instance with the same filter read and render a page once per
  // hub generation, however many subscribers there are.
  struct SharedPage {
    RecordPage page;
    std::string next_driver;
    int64_t bytes = 0;
    // RecordsMessage(page.data_json, page.next_cursor), made by the first
    // reader when the page has records and a next cursor.
    std::shared_ptr<const std::string> message;
  };
  struct SharedSlot {
    uint64_t generation = 0;
    int64_t made_us = 0;  // engine monotonic clock
    std::shared_future<std::shared_ptr<const SharedPage>> page;
  };
  std::mutex shared_pages_mu_;
  std::unordered_map<std::string, SharedSlot> shared_pages_;  // guarded by shared_pages_mu_
  std::atomic<int64_t> shared_page_hits_{0};
  std::atomic<int64_t> shared_page_reads_{0};
  std::string EncodeCursor(const Uuid& instance_id, const EnginePayload& payload) const {
    return cursors_.Encode({CursorTypeFor(payload.kind), instance_id, EncodeEnginePayload(payload)});
  }
  // Decodes a change cursor the principal may read.
  Result<std::pair<ReadTarget, EnginePayload>> ResolveChangeCursor(const Principal& who,
                                                                   std::string_view cursor);
  // The cursor's own filter ANDed with a subscription's extra filter.
  static Result<keys::Filter> CombinedChangeFilter(const schema::Schema& schema,
                                                   const EnginePayload& payload,
                                                   std::string_view filter_json);
  class Feed;
  void FlushLoop();
  // Registers every catalog instance with the lookup and warehouse services again.
  void RegisterLiveInstances();
  // Removes the instance's data from both stores, then its pending removal.
  Status RemoveFromStores(const driver::InstanceInfo& instance);
  // One pass over the pending removals (start-up and every flush tick).
  void RetryPendingRemovals();
  // Deletes expired Idempotency-Key claims and the records of jobs finished
  // longer than job_history_ms ago from the catalog, at most once per
  // idempotency_purge_interval_ms (flush thread).
  void PurgeExpiredCatalogRows();
  // Deletes the expired records of every instance with a retention from the
  // lookup and warehouse stores, at most once per retention_purge_interval_ms
  // (flush thread).
  void PurgeExpiredRecords();
  Result<std::unique_ptr<driver::Subscription>> OpenDeadLetters();
  json DeadLetterJson(std::string_view data);

  const EngineOptions options_;
  const TestFaults faults_;
  const std::string claim_owner_;  // this process, in Idempotency-Key claims
  Clock* const clock_;
  std::unique_ptr<Catalog> catalog_;
  std::shared_ptr<driver::MessageQueue> queue_;
  std::shared_ptr<driver::LookupService> lookup_;
  std::shared_ptr<driver::WarehouseService> warehouse_;
  std::shared_ptr<driver::UsageService> usage_;
  driver::CursorCodec cursors_;
  SqlService sql_;
  UsageMeter meter_;
  SubscriptionHub hub_;
  WriteWaiters waiters_;
  EngineMetrics metrics_;
  WriteHealth health_;  // fails the write path closed (see health.h)
  const driver::Limits limits_;
  const size_t max_message_size_;
  const std::optional<std::string> relaxed_durability_;
  const std::optional<std::string> new_admin_secret_;
  std::atomic<int> publish_failures_{0};       // in a row, since the last success
  std::atomic<bool> queue_failed_{false};      // health_ holds kQueueComponent
  std::atomic<int64_t> next_queue_probe_ms_{0};  // steady clock
  std::atomic<int64_t> idempotency_waits_{0};    // retries that met an unfinished claim
  std::atomic<int64_t> idempotency_refusals_{0}; // ... and got Unavailable
  std::atomic<int64_t> idempotency_keys_purged_{0};
  std::atomic<int64_t> jobs_purged_{0};  // finished jobs' records deleted (job_history_ms)
  int64_t next_idempotency_purge_ms_ = 0;  // engine clock; the flush thread's only
  std::atomic<int64_t> retention_records_purged_{0};
  int64_t next_retention_purge_ms_ = 0;  // engine clock; the flush thread's only
  // Bumped by every catalog change made through this engine that can end a
  // change feed (DeleteTable): open feeds then re-resolve before their next read.
  std::atomic<uint64_t> catalog_epoch_{0};
  std::atomic<int64_t> change_feeds_{0};          // open ChangeFeeds
  std::atomic<int64_t> change_feed_checks_{0};    // catalog resolutions by ChangeFeeds

  std::mutex removals_mu_;      // one removal pass at a time
  std::mutex dead_letters_mu_;  // one listing or replay at a time
  std::mutex lifecycle_mu_;  // serialises Start and Stop
  bool started_ = false;     // guarded by lifecycle_mu_
  std::unique_ptr<WorkerPool> workers_;
  std::unique_ptr<ReportListener> reports_;
  std::thread flush_thread_;
  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  bool flush_stop_ = false;  // guarded by flush_mu_
};

// --- Lifecycle ------------------------------------------------------------------------------

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  std::error_code error;
  const bool created_data_dir = std::filesystem::create_directories(options.data_dir, error);
  if (error) {
    return Unavailable("creating the data directory {}: {}", options.data_dir, error.message());
  }
  // Directories whose new entries must be durable before Open returns.
  std::set<std::string> dirs_to_sync = {options.data_dir};
  if (created_data_dir) {
    dirs_to_sync.insert(std::filesystem::absolute(options.data_dir).parent_path().string());
  }
  Clock* clock = options.clock != nullptr ? options.clock : Clock::System();

  const std::string keys_dir = options.keys_dir.empty() ? options.data_dir : options.keys_dir;
  if (keys_dir != options.data_dir && !IsPostgresCatalogUrl(options.catalog)) {
    if (std::filesystem::create_directories(keys_dir, error)) {
      dirs_to_sync.insert(std::filesystem::absolute(keys_dir).parent_path().string());
    }
    if (error) return Unavailable("creating the keys directory {}: {}", keys_dir, error.message());
    dirs_to_sync.insert(keys_dir);
  }
  // The catalog: SQLite (a file in data_dir, or a path) or Postgres (a URL),
  // and the key of the stored secret hashes: given, or kept where every
  // process sharing the catalog finds it (secret.key beside a SQLite file;
  // the shared_keys table of a Postgres catalog).
  std::string catalog_name = options.catalog;
  const bool postgres_catalog = IsPostgresCatalogUrl(options.catalog);
  Result<std::unique_ptr<Catalog>> catalog = Internal("no catalog opened");
  if (postgres_catalog) {
    PostgresCatalogOptions catalog_options;
    catalog_options.clock = clock;
    catalog_options.secret_key = options.secret_key;
    catalog_name = "postgres";
    catalog = OpenPostgresCatalog(options.catalog, catalog_options);
  } else {
    std::string catalog_path = options.catalog;
    if (catalog_path.empty() || catalog_path == "sqlite") {
      catalog_path = options.data_dir + "/catalog.db";
    } else if (catalog_path.starts_with("sqlite:")) {
      catalog_path = catalog_path.substr(7);
    }
    catalog_name = catalog_path;
    dirs_to_sync.insert(std::filesystem::absolute(catalog_path).parent_path().string());
    SqliteCatalogOptions catalog_options;
    catalog_options.clock = clock;
    catalog_options.secret_key = options.secret_key;
    if (catalog_options.secret_key.empty()) {
      AQ_ASSIGN_OR_RETURN(catalog_options.secret_key,
                          LoadOrCreateKeyFile(keys_dir, kSecretKeyFile, "secret key"));
    }
    catalog = OpenSqliteCatalog(catalog_path, catalog_options);
  }
  if (!catalog.ok()) return catalog.status().WithContext("opening the catalog " + catalog_name);

  driver::Registry registry;
  drivers::RegisterBuiltinDrivers(&registry);
  AQ_ASSIGN_OR_RETURN(TestFaults faults, ReadTestFaults());
  if (options.register_drivers) options.register_drivers(&registry);
  driver::DriverContext context{options.data_dir, clock};
  auto queue = registry.MakeMessageQueue(options.queue.name, options.queue.config, context);
  if (!queue.ok()) return queue.status().WithContext("opening the message queue");
  if (options.wrap_queue) *queue = options.wrap_queue(std::move(*queue));
  if (auto relaxed = EngineImpl::RelaxedDurabilityOf(**queue, options.queue)) {
    AQ_LOG(Warn, "{}", *relaxed);
  }
  if (options.idempotency_lease_ms <= 0 || options.idempotency_wait_ms < 0) {
    return InvalidArgument("idempotency_lease_ms must be > 0 and idempotency_wait_ms >= 0");
  }
  auto lookup = registry.MakeLookupService(options.lookup.name, options.lookup.config, context);
  if (!lookup.ok()) return lookup.status().WithContext("opening the lookup service");
  auto warehouse =
      registry.MakeWarehouseService(options.warehouse.name, options.warehouse.config, context);
  if (!warehouse.ok()) return warehouse.status().WithContext("opening the warehouse service");
  auto usage = registry.MakeUsageService(options.usage.name, options.usage.config, context);
  if (!usage.ok()) return usage.status().WithContext("opening the usage service");

  std::string cursor_key = options.cursor_key;
  if (cursor_key.empty() && postgres_catalog) {
    auto shared = PostgresSharedKey(**catalog, "cursor_key");
    if (!shared.ok()) return shared.status().WithContext("loading the cursor key from the catalog");
    cursor_key = *std::move(shared);
  } else if (cursor_key.empty()) {
    AQ_ASSIGN_OR_RETURN(cursor_key, LoadOrCreateKeyFile(keys_dir, kCursorKeyFile, "cursor key"));
  }
  auto admin = (*catalog)->EnsureAdminSecret(options.admin_secret);
  if (!admin.ok()) return admin.status().WithContext("setting up the admin secret");
  std::optional<std::string> new_admin_secret;
  if (!options.admin_secret.has_value()) new_admin_secret = *admin;

  // Topics, and the workers' persistent subscription before anything is
  // published: a queue may trim messages no subscription is waiting for.
  for (std::string_view topic : {kWritesTopic, kWriteReportsTopic, kDeadLettersTopic}) {
    Status registered = (*queue)->RegisterTopic(topic);
    if (!registered.ok()) return registered.WithContext("registering queue topics");
  }
  {
    for (std::string_view name : {kWorkersSubscription, kWarehouseWorkersSubscription}) {
      driver::SubscriptionOptions workers;
      workers.name = std::string(name);
      workers.persistent = true;
      workers.ordered = true;
      auto subscription = (*queue)->Subscribe(kWritesTopic, workers);
      if (!subscription.ok()) {
        return subscription.status().WithContext("creating the workers' subscription");
      }
      (void)(*subscription)->Close();
    }
    // Dead letters wait for an operator: a persistent subscription keeps them.
    driver::SubscriptionOptions operators;
    operators.name = std::string(kOperatorsSubscription);
    operators.persistent = true;
    auto dead = (*queue)->Subscribe(kDeadLettersTopic, operators);
    if (!dead.ok()) return dead.status().WithContext("creating the dead-letter subscription");
    (void)(*dead)->Close();
  }

  // What this open created (the catalog file, the drivers' databases and
  // folders, the key files) is durable before the first write is
  // acknowledged: without this a power cut could take the queue's folder,
  // and every write it held, with it (tests/power/power_db_test.cc).
  for (const std::string& dir : dirs_to_sync) {
    if (Status synced = SyncDirectory(dir); !synced.ok()) return synced.WithContext("opening the engine");
  }

  return std::unique_ptr<Engine>(new EngineImpl(
      options, std::move(*catalog), std::move(*queue), std::move(*lookup), std::move(*warehouse),
      std::move(*usage), std::move(cursor_key), std::move(new_admin_secret), faults));
}

Status EngineImpl::Start() {
  std::lock_guard lock(lifecycle_mu_);
  if (started_) return Status::OK();
  RegisterLiveInstances();
  RetryPendingRemovals();
  if (options_.role != Role::kWorker) {
    reports_ = std::make_unique<ReportListener>(queue_.get(), &waiters_, &hub_, &metrics_);
    Status started = reports_->Start();
    if (!started.ok()) {
      reports_.reset();
      return started.WithContext("starting the report listener");
    }
  }
  if (options_.role != Role::kGateway) {
    WorkerDeps deps{queue_.get(), catalog_.get(), lookup_.get(), warehouse_.get(), &metrics_,
                    limits_.max_records_in_batch, &health_,
                    std::max(options_.max_delivery_attempts, 1), clock_,
                    /*storage_retry_ms=*/5'000, options_.worker_ack_timeout_ms};
    if (options_.role == Role::kAll) {  // this process's waiters hear of writes without the queue
      deps.waiters = &waiters_;
      deps.hub = &hub_;
    }
    deps.warehouse_write_interval_ms = options_.warehouse_write_interval_ms;
    workers_ = std::make_unique<WorkerPool>(deps);
    Status started = workers_->Start(options_.worker_threads);
    if (!started.ok()) {
      workers_.reset();
      if (reports_) reports_->Stop();
      reports_.reset();
      return started;
    }
  }
  {
    std::lock_guard flush_lock(flush_mu_);
    flush_stop_ = false;
  }
  flush_thread_ = std::thread([this] { FlushLoop(); });
  started_ = true;
  return Status::OK();
}

void EngineImpl::Stop() {
  std::lock_guard lock(lifecycle_mu_);
  if (!started_) return;
  if (workers_) workers_->Stop();
  workers_.reset();
  if (reports_) reports_->Stop();
  reports_.reset();
  {
    std::lock_guard flush_lock(flush_mu_);
    flush_stop_ = true;
  }
  flush_cv_.notify_all();
  flush_thread_.join();
  started_ = false;
}

void EngineImpl::RegisterLiveInstances() {
  // Idempotent calls: they repair an instance whose registration never
  // happened (the process died between the catalog commit and
  // RegisterInstance) or predates what a driver now stores per instance.
  auto instances = catalog_->ListInstances();
  if (!instances.ok()) {
    AQ_LOG(Warn, "start: listing instances to register them again failed: {}",
           instances.status().ToString());
    return;
  }
  for (const auto& instance : *instances) {
    Status registered = lookup_->RegisterInstance(instance);
    if (registered.ok() && instance.use_warehouse) registered = warehouse_->RegisterInstance(instance);
    if (!registered.ok()) {
      AQ_LOG(Warn, "start: registering instance {} ({}.{}) again failed (the workers retry on "
                   "their first write): {}",
             instance.instance_id.ToString(), instance.project, instance.table, registered.ToString());
    }
  }
}

Status EngineImpl::RemoveFromStores(const driver::InstanceInfo& instance) {
  Status lookup = lookup_->RemoveInstance(instance);
  Status warehouse = warehouse_->RemoveInstance(instance);
  if (lookup.ok() && warehouse.ok()) return catalog_->FinishRemoval(instance.instance_id);
  metrics_.removal_failures.fetch_add(1, std::memory_order_relaxed);
  return Unavailable("removing instance {} of {}.{}: lookup service: {}; warehouse: {}",
                     instance.instance_id.ToString(), instance.project, instance.table,
                     lookup.ToString(), warehouse.ToString());
}

void EngineImpl::RetryPendingRemovals() {
  std::unique_lock lock(removals_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another thread is at it
  auto pending = catalog_->ListPendingRemovals();
  if (!pending.ok()) {
    AQ_LOG(Warn, "listing pending instance removals failed: {}", pending.status().ToString());
    return;
  }
  int64_t left = 0;
  for (const auto& instance : *pending) {
    Status removed = RemoveFromStores(instance);
    if (removed.ok()) {
      AQ_LOG(Info, "finished removing instance {} of deleted table {}.{}",
             instance.instance_id.ToString(), instance.project, instance.table);
    } else {
      ++left;
      AQ_LOG(Warn, "pending removal not finished yet, retrying later: {}", removed.ToString());
    }
  }
  metrics_.removals_pending.store(left, std::memory_order_relaxed);
}

void EngineImpl::FlushLoop() {
  const auto interval = std::chrono::milliseconds(std::max<int64_t>(options_.usage_flush_interval_ms, 1));
  std::unique_lock lock(flush_mu_);
  while (true) {
    bool stop = flush_cv_.wait_for(lock, interval, [&] { return flush_stop_; });
    lock.unlock();
    (void)meter_.Flush();  // errors are logged and the buckets retried
    RetryPendingRemovals();
    PurgeExpiredCatalogRows();
    PurgeExpiredRecords();
    lock.lock();
    if (stop) return;
  }
}

void EngineImpl::PurgeExpiredCatalogRows() {
  const int64_t now = clock_->NowMillis();
  if (now < next_idempotency_purge_ms_) return;  // only the flush thread calls this
  next_idempotency_purge_ms_ = now + std::max<int64_t>(options_.idempotency_purge_interval_ms, 1);
  auto purged = catalog_->PurgeIdempotencyKeys();
  if (!purged.ok()) {
    AQ_LOG(Warn, "purging expired Idempotency-Keys failed (retried in {} ms): {}",
           options_.idempotency_purge_interval_ms, purged.status().ToString());
    return;
  }
  idempotency_keys_purged_.fetch_add(*purged, std::memory_order_relaxed);
  if (*purged > 0) AQ_LOG(Debug, "purged {} expired Idempotency-Keys", *purged);
  // Finished jobs' records, on the same schedule.
  const int64_t history_ms = std::max(options_.sql.job_history_ms, options_.sql.job.result_ttl_ms);
  auto jobs = catalog_->PurgeFinishedJobs(now - history_ms);
  if (!jobs.ok()) {
    AQ_LOG(Warn, "purging finished SQL jobs failed (retried in {} ms): {}",
           options_.idempotency_purge_interval_ms, jobs.status().ToString());
    return;
  }
  jobs_purged_.fetch_add(*jobs, std::memory_order_relaxed);
  if (*jobs > 0) AQ_LOG(Debug, "purged {} finished SQL jobs", *jobs);
}

void EngineImpl::PurgeExpiredRecords() {
  const int64_t now = clock_->NowMillis();
  if (now < next_retention_purge_ms_) return;  // only the flush thread calls this
  next_retention_purge_ms_ = now + std::max<int64_t>(options_.retention_purge_interval_ms, 1);
  auto instances = catalog_->ListInstances();
  if (!instances.ok()) {
    AQ_LOG(Warn, "retention: listing instances failed (retried in {} ms): {}", options_.retention_purge_interval_ms,
           instances.status().ToString());
    return;
  }
  for (const auto& instance : *instances) {
    int64_t purged = 0;
    if (instance.log_retention_ms > 0 || instance.index_retention_ms > 0) {
      auto done = lookup_->PurgeExpired(instance);
      if (done.ok()) {
        purged += *done;
      } else {
        AQ_LOG(Warn, "retention: purging the log and index of {}.{} failed (retried in {} ms): {}", instance.project,
               instance.table, options_.retention_purge_interval_ms, done.status().ToString());
      }
    }
    if (instance.use_warehouse && instance.warehouse_retention_ms > 0) {
      auto done = warehouse_->PurgeExpired(instance);
      if (done.ok()) {
        purged += *done;
      } else {
        AQ_LOG(Warn, "retention: purging the warehouse table of {}.{} failed (retried in {} ms): {}",
               instance.project, instance.table, options_.retention_purge_interval_ms, done.status().ToString());
      }
    }
    if (purged > 0) {
      retention_records_purged_.fetch_add(purged, std::memory_order_relaxed);
      AQ_LOG(Debug, "retention: purged {} expired records of {}.{}", purged, instance.project, instance.table);
    }
  }
}

Result<Principal> EngineImpl::Authenticate(std::string_view secret) {
  if (secret.empty()) return Unauthenticated("a secret is required (Authorization: Bearer <secret>)");
  return catalog_->ResolveSecret(secret);
}

// --- Projects, tables, secrets ----------------------------------------------------------------

Result<std::string> EngineImpl::CreateProject(const Principal& who, std::string_view body_json) {
  if (!who.is_admin) return PermissionDenied("only the admin secret may create projects");
  AQ_ASSIGN_OR_RETURN(json body, ParseBody(body_json, "create project"));
  AQ_RETURN_IF_ERROR(CheckMembers(body, {"name"}, "create project"));
  if (!body.contains("name") || !body["name"].is_string()) {
    return InvalidArgument("create project: \"name\" must be a string");
  }
  AQ_ASSIGN_OR_RETURN(ProjectInfo project, catalog_->CreateProject(body["name"].get<std::string>()));
  if (options_.default_quotas != Quotas{}) {
    Status quotas = catalog_->SetProjectQuotas(project.name, options_.default_quotas);
    if (!quotas.ok()) {
      return quotas.WithContext(fmt::format("project '{}' was created, but setting its default "
                                            "quotas failed (set them with PUT .../quotas)",
                                            project.name));
    }
  }
  return json{{"name", project.name},
              {"project_id", project.project_id.ToString()},
              {"created_ms", project.created_ms}}
      .dump();
}

Result<std::string> EngineImpl::CreateTable(const Principal& who, std::string_view project,
                                            std::string_view body_json) {
  AQ_RETURN_IF_ERROR(catalog_->Authorize(who, project, "", Permission::kManage));
  constexpr std::string_view kWhat = "create table";
  AQ_ASSIGN_OR_RETURN(json body, ParseBody(body_json, kWhat));
  AQ_RETURN_IF_ERROR(CheckMembers(body,
                                  {"name", "schema", "key", "use_log", "use_index", "use_warehouse",
                                   "log_retention_ms", "index_retention_ms",
                                   "warehouse_retention_ms"},
                                  kWhat));
  TableSpec spec;
  if (!body.contains("name") || !body["name"].is_string()) {
    return InvalidArgument("create table: \"name\" must be a string");
  }
  spec.name = body["name"].get<std::string>();
  if (!body.contains("schema")) return InvalidArgument("create table: \"schema\" is required");
  if (body["schema"].is_string()) {
    spec.schema_json = body["schema"].get<std::string>();
  } else if (body["schema"].is_object()) {
    spec.schema_json = body["schema"].dump();
  } else {
    return InvalidArgument("create table: \"schema\" must be an Avro record schema (object or string)");
  }
  if (!body.contains("key")) return InvalidArgument("create table: \"key\" is required");
  if (!body["key"].is_array()) {
    return InvalidArgument("create table: \"key\" must be an array of field names, e.g. [\"id\"]");
  }
  for (const auto& field : body["key"]) {
    if (!field.is_string()) return InvalidArgument("create table: \"key\" must list field names");
    spec.key.push_back(field.get<std::string>());
  }
  for (auto [name, flag] : {std::pair{"use_log", &spec.use_log}, std::pair{"use_index", &spec.use_index},
                            std::pair{"use_warehouse", &spec.use_warehouse}}) {
    if (!body.contains(name)) continue;
    if (!body[name].is_boolean()) return InvalidArgument("create table: \"{}\" must be a boolean", name);
    *flag = body[name].get<bool>();
  }
  for (auto [name, retention] :
       {std::pair{"log_retention_ms", &spec.log_retention_ms},
        std::pair{"index_retention_ms", &spec.index_retention_ms},
        std::pair{"warehouse_retention_ms", &spec.warehouse_retention_ms}}) {
    if (!body.contains(name)) continue;
    if (!body[name].is_number_integer()) {
      return InvalidArgument("create table: \"{}\" must be an integer (ms; 0 = forever)", name);
    }
    *retention = body[name].get<int64_t>();
  }
  AQ_ASSIGN_OR_RETURN(TableInfo table, catalog_->CreateTable(project, spec));
  Status registered = lookup_->RegisterInstance(table.primary);
  if (registered.ok() && table.primary.use_warehouse) {
    registered = warehouse_->RegisterInstance(table.primary);
  }
  if (!registered.ok()) {
    // Undo, so a retry can create the table again.
    auto removed = catalog_->DeleteTable(project, table.name);
    (void)lookup_->RemoveInstance(table.primary);
    if (!removed.ok()) {
      AQ_LOG(Error, "create table {}.{}: undoing the catalog entry failed: {}", project, table.name,
             removed.status().ToString());
    }
    return registered.WithContext(fmt::format("creating table '{}.{}' in the stores", project, table.name));
  }
  return TableJson(table).dump();
}

Result<std::string> EngineImpl::DescribeTable(const Principal& who, std::string_view project,
                                              std::string_view table) {
  AQ_RETURN_IF_ERROR(catalog_->Authorize(who, project, table, Permission::kRead));
  AQ_ASSIGN_OR_RETURN(TableInfo info, catalog_->GetTable(project, table));
  return TableJson(info).dump();
}

Status EngineImpl::DeleteTable(const Principal& who, std::string_view project,
                               std::string_view table) {
  AQ_RETURN_IF_ERROR(catalog_->Authorize(who, project, table, Permission::kManage));
  // The catalog deletion records each instance as a pending removal in the
  // same transaction; workers drop its queued records from now on (and a
  // worker whose write lands after the removal below removes it again).
  AQ_ASSIGN_OR_RETURN(auto instances, catalog_->DeleteTable(project, table));
  // Open change feeds of the table must notice now: they re-resolve (and
  // find it gone) on their next read, which the notification triggers.
  catalog_epoch_.fetch_add(1, std::memory_order_release);
  for (const auto& instance : instances) hub_.Notify(instance.instance_id);
  for (const auto& instance : instances) {
    Status removed;
    {
      std::lock_guard lock(removals_mu_);
      removed = RemoveFromStores(instance);
    }
    if (!removed.ok()) {
      metrics_.removals_pending.fetch_add(1, std::memory_order_relaxed);
      AQ_LOG(Error, "delete table {}.{}: {}; the table is deleted and the removal of its data is "
                    "retried in the background",
             project, table, removed.ToString());
    }
  }
  return Status::OK();
}

// --- Dead letters -----------------------------------------------------------------------------

Result<std::unique_ptr<driver::Subscription>> EngineImpl::OpenDeadLetters() {
  driver::SubscriptionOptions options;
  options.name = std::string(kOperatorsSubscription);
  options.persistent = true;
  options.ack_timeout_ms = 30'000;
  return queue_->Subscribe(kDeadLettersTopic, options);
}

Result<std::string> EngineImpl::DeadLettersJson(const Principal& who, int32_t limit) {
  if (!who.is_admin) return PermissionDenied("only the admin secret may list dead letters");
  AQ_RETURN_IF_ERROR(CheckReadLimit(limit));
  std::lock_guard lock(dead_letters_mu_);
  AQ_ASSIGN_OR_RETURN(auto subscription, OpenDeadLetters());
  json out{{"dead_letters", json::array()}};
  std::vector<std::string> ack_ids;
  Status status;
  while (ack_ids.size() < static_cast<size_t>(limit)) {
    auto pulled = subscription->Pull(static_cast<size_t>(limit) - ack_ids.size(), 50);
    if (!pulled.ok()) {
      status = pulled.status();
      break;
    }
    if (pulled->empty()) break;
    for (const auto& message : *pulled) {
      ack_ids.push_back(message.ack_id);
      out["dead_letters"].push_back(DeadLetterJson(message.data));
    }
  }
  // Listing leaves them in place.
  if (!ack_ids.empty()) (void)subscription->Nack(ack_ids);
  AQ_RETURN_IF_ERROR(status.WithContext("listing dead letters"));
  return out.dump();
}

json EngineImpl::DeadLetterJson(std::string_view data) {
  auto letter = DecodeDeadLetter(data);
  if (!letter.ok()) return json{{"error", letter.status().ToString()}};
  json out{{"store", letter->store},
           {"reason", letter->reason},
           {"attempts", letter->attempts},
           {"dead_ms", letter->dead_ms}};
  auto message = DecodeWriteMessage(letter->data);
  if (!message.ok()) {
    out["error"] = message.status().ToString();
    return out;
  }
  out["write_id"] = Base58Encode(message->write_id);
  out["part"] = message->part;
  out["parts"] = message->parts;
  out["instance_id"] = message->instance_id.ToString();
  out["records"] = message->records.size();
  auto instance = catalog_->GetInstance(message->instance_id);
  if (instance.ok()) {
    out["project"] = instance->project;
    out["table"] = instance->table;
  }
  return out;
}

Result<std::string> EngineImpl::ReplayDeadLetters(const Principal& who, std::string_view body_json) {
  if (!who.is_admin) return PermissionDenied("only the admin secret may replay dead letters");
  std::set<std::string> wanted;  // base58 write ids; empty: all
  if (!body_json.empty()) {
    AQ_ASSIGN_OR_RETURN(json body, ParseBody(body_json, "replay dead letters"));
    AQ_RETURN_IF_ERROR(CheckMembers(body, {"write_ids"}, "replay dead letters"));
    if (body.contains("write_ids")) {
      if (!body["write_ids"].is_array()) {
        return InvalidArgument("replay dead letters: \"write_ids\" must be an array of write ids");
      }
      for (const auto& id : body["write_ids"]) {
        if (!id.is_string()) {
          return InvalidArgument("replay dead letters: \"write_ids\" must list write ids (strings)");
        }
        wanted.insert(id.get<std::string>());
      }
    }
  }
  std::lock_guard lock(dead_letters_mu_);
  AQ_ASSIGN_OR_RETURN(auto subscription, OpenDeadLetters());
  int64_t replayed = 0;
  std::vector<std::string> kept;
  Status status;
  while (status.ok()) {
    auto pulled = subscription->Pull(64, 50);
    if (!pulled.ok()) {
      status = pulled.status();
      break;
    }
    if (pulled->empty()) break;
    for (const auto& message : *pulled) {
      if (!status.ok()) {
        kept.push_back(message.ack_id);
        continue;
      }
      auto letter = DecodeDeadLetter(message.data);
      bool replay = letter.ok();
      if (replay && !wanted.empty()) {
        auto original = DecodeWriteMessage(letter->data);
        replay = original.ok() && wanted.contains(Base58Encode(original->write_id));
      }
      if (!replay) {
        kept.push_back(message.ack_id);
        continue;
      }
      driver::OutgoingMessage outgoing{letter->data, letter->ordering_key};
      status = queue_->Publish(kWritesTopic, std::span(&outgoing, 1));
      if (!status.ok()) {
        kept.push_back(message.ack_id);
        continue;
      }
      std::string ack_id = message.ack_id;
      (void)subscription->Ack(std::span(&ack_id, 1));  // a lost ack only replays it again
      ++replayed;
      AQ_LOG(Info, "replayed a dead letter ({} from the {}: {})",
             letter->data.size() >= 17 ? HexEncode(std::string_view(letter->data).substr(1, 16)) : "?",
             letter->store, letter->reason);
    }
  }
  if (!kept.empty()) (void)subscription->Nack(kept);
  AQ_RETURN_IF_ERROR(status.WithContext(fmt::format("replaying dead letters ({} replayed)", replayed)));
  return json{{"replayed", replayed}}.dump();
}

Result<std::string> EngineImpl::CreateSecret(const Principal& who, std::string_view project,
                                             std::string_view body_json) {
  AQ_RETURN_IF_ERROR(catalog_->Authorize(who, project, "", Permission::kManage));
  AQ_ASSIGN_OR_RETURN(SecretGrants grants, ParseSecretGrants(body_json));
  AQ_ASSIGN_OR_RETURN(MintedSecret minted, catalog_->MintSecret(project, grants));
  return json{{"secret", minted.secret}, {"secret_id", minted.secret_id.ToString()}}.dump();
}

// --- Writes -----------------------------------------------------------------------------------

Result<WriteAck> EngineImpl::Write(const Principal& who, const WriteRequest& request,
                                   std::vector<RecordError>* details) {
  std::vector<RecordError> local_details;
  auto ack = DoWrite(who, request, details != nullptr ? details : &local_details);
  if (!ack.ok() && ack.status().code() != StatusCode::kTimeout) {
    metrics_.writes_rejected.fetch_add(1, std::memory_order_relaxed);
  }
  return ack;
}

Result<WriteAck> EngineImpl::DoWrite(const Principal& who, const WriteRequest& request,
                                     std::vector<RecordError>* details) {
  AQ_RETURN_IF_ERROR(catalog_->Authorize(who, request.project, request.table, Permission::kWrite));
  if (request.body.size() > options_.max_body_bytes) {
    return TooLarge("the request body takes {} bytes, over the limit of {} bytes",
                    request.body.size(), options_.max_body_bytes);
  }
  AQ_ASSIGN_OR_RETURN(TableInfo table, catalog_->GetTable(request.project, request.table));
  const driver::InstanceInfo& instance = table.primary;
  for (auto [wanted, kept, store] :
       {std::tuple{request.wait.log, instance.use_log, "log"},
        std::tuple{request.wait.index, instance.use_index, "index"},
        std::tuple{request.wait.warehouse, instance.use_warehouse, "warehouse"}}) {
    if (wanted && !kept) {
      return InvalidArgument("wait={}: table '{}.{}' keeps no {}", store, table.project, table.name,
                             store);
    }
  }

  std::vector<std::string_view> texts;
  AQ_RETURN_IF_ERROR(SplitRecords(request.body, &texts));
  if (texts.empty()) return InvalidArgument("the request holds no records");
  if (texts.size() > limits_.max_records_in_batch) {
    return TooLarge("the request holds {} records, over the limit of {} records per write",
                    texts.size(), limits_.max_records_in_batch);
  }
  PreparedBatch batch;
  AQ_RETURN_IF_ERROR(
      PrepareRecords(*instance.schema, limits_, texts, clock_->NowMillis(), &batch, details));
  const auto record_count = static_cast<int64_t>(batch.records.size());

  AQ_ASSIGN_OR_RETURN(ProjectInfo project, catalog_->GetProject(request.project));

  AQ_ASSIGN_OR_RETURN(std::string write_id, RandomBytes(kWriteIdSize));
  WriteAck ack;
  ack.write_id = Base58Encode(write_id);
  ack.records = record_count;
  AQ_ASSIGN_OR_RETURN(auto messages, SplitIntoMessages(write_id, instance.instance_id,
                                                       std::move(batch.records), max_message_size_));

  ack.durable = !relaxed_durability_.has_value();
  // A write path that refuses writes answers before anything is claimed.
  AQ_RETURN_IF_ERROR(CheckWritePath());

  // Idempotency: the claim is pending until the publish succeeded, so a
  // concurrent retry never answers success for a write that may still fail;
  // a failed publish releases it (see ClaimKey and catalog.h).
  const bool idempotent = !request.idempotency_key.empty();
  if (idempotent) {
    AQ_ASSIGN_OR_RETURN(auto earlier, ClaimKey(who, request.idempotency_key, ack.write_id));
    if (earlier.has_value()) {
      ack.write_id = *earlier;
      ack.replayed = true;
      return ack;
    }
    if (faults_.exit_after_idempotency_claim) {
      std::fprintf(stderr, "aquifer: AQUIFER_TEST_FAULT=exit_after_idempotency_claim: exiting after "
                           "claiming Idempotency-Key for write %s, before publishing\n",
                   ack.write_id.c_str());
      std::fflush(stderr);
      ::_exit(86);
    }
  }

  auto release_claim = [&](std::string_view why) {
    if (!idempotent) return;
    Status released =
        catalog_->ReleaseIdempotencyKey(who.secret_id, request.idempotency_key, ack.write_id);
    if (!released.ok()) {
      AQ_LOG(Error, "write {}: releasing Idempotency-Key after {}: {} (a retry waits for the "
                    "claim's lease of {} ms to run out)",
             ack.write_id, why, released.ToString(), options_.idempotency_lease_ms);
    }
  };
  UsageCounters usage;
  usage.write_ops = 1;
  usage.write_records = record_count;
  usage.write_bytes = batch.avro_bytes;
  // A write quota holds across every process sharing the usage service: the
  // write is charged to the project's month before it is published, in one
  // atomic check-and-add, and given back if the publish fails. No lock, and
  // nothing at all for a project without a write quota. (After the claim, so
  // a replayed write is not charged again.)
  std::optional<int64_t> reserved_at;
  if (project.quotas.write_bytes.has_value()) {
    auto reserved = ReserveWrite(project, usage);
    if (!reserved.ok()) {
      release_claim("a quota refusal");
      return reserved.status();
    }
    reserved_at = *reserved;
  }

  uint8_t wanted = static_cast<uint8_t>((request.wait.log ? kStoreLog : 0) |
                                        (request.wait.index ? kStoreIndex : 0) |
                                        (request.wait.warehouse ? kStoreWarehouse : 0));
  std::shared_ptr<WriteWaiters::Waiter> waiter;
  if (request.wait.any()) {
    waiter = waiters_.Register(write_id, static_cast<uint32_t>(messages.size()), wanted);
  }
  std::vector<std::string> encoded;
  encoded.reserve(messages.size());
  for (const auto& message : messages) encoded.push_back(EncodeWriteMessage(message));
  std::vector<driver::OutgoingMessage> outgoing;
  outgoing.reserve(encoded.size());
  // The instance id orders the queue: writes to one table reach its log in the
  // order they were acknowledged, however many workers share the load.
  const std::string ordering_key(instance.instance_id.AsBytes());
  for (const auto& data : encoded) outgoing.push_back({data, ordering_key});
  Status published = queue_->Publish(kWritesTopic, outgoing);
  NotePublish(published);
  if (!published.ok()) {
    if (waiter) waiters_.Unregister(write_id);
    if (reserved_at.has_value()) GiveBackWrite(project.project_id, *reserved_at, usage);
    release_claim("a failed publish");
    return Unavailable("the write queue did not accept the write ({}); nothing was acknowledged, "
                       "retry later",
                       published.ToString());
  }
  if (idempotent) CommitKey(who, request.idempotency_key, ack.write_id);
  metrics_.writes.fetch_add(1, std::memory_order_relaxed);
  metrics_.records_accepted.fetch_add(record_count, std::memory_order_relaxed);
  metrics_.messages_published.fetch_add(static_cast<int64_t>(messages.size()),
                                        std::memory_order_relaxed);
  if (reserved_at.has_value()) {
    // The project's month is charged already (the reservation): meter the rest.
    meter_.Record(who.secret_id, usage);
    meter_.RecordBucket(project.project_id, UsagePeriod::kHour, *reserved_at, usage);
  } else {
    Meter(who, project.project_id, usage);
  }

  if (waiter) {
    bool met = waiters_.Wait(waiter.get(), std::chrono::milliseconds(options_.wait_timeout_ms));
    waiters_.Unregister(write_id);
    if (!met) {
      metrics_.wait_timeouts.fetch_add(1, std::memory_order_relaxed);
      return Timeout("write {} ({} records) was accepted but had not reached the {} after {} ms; "
                     "it stays queued and will be applied",
                     ack.write_id, record_count, StoresText(request.wait), options_.wait_timeout_ms);
    }
    ack.waited = true;
  }
  return ack;
}

Status EngineImpl::CheckWritePath() {
  Status healthy = health_.Check();
  if (healthy.ok()) return healthy;
  if (queue_failed_.load(std::memory_order_relaxed) && health_.CheckIgnoring(kQueueComponent).ok()) {
    // Only the queue is failing: one write per interval goes through as a probe.
    const int64_t now = SteadyMillis();
    int64_t next = next_queue_probe_ms_.load(std::memory_order_relaxed);
    if (now >= next && next_queue_probe_ms_.compare_exchange_strong(
                           next, now + options_.write_path_probe_interval_ms)) {
      return Status::OK();
    }
  }
  return healthy;
}

void EngineImpl::NotePublish(const Status& published) {
  if (published.ok()) {
    if (publish_failures_.load(std::memory_order_relaxed) != 0) publish_failures_.store(0);
    if (queue_failed_.load(std::memory_order_relaxed) && queue_failed_.exchange(false)) {
      health_.Clear(kQueueComponent);
      AQ_LOG(Info, "the message queue accepts writes again; writes are acknowledged again");
    }
    return;
  }
  switch (published.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kTooLarge:
      return;  // this write's own fault, not the queue's
    case StatusCode::kUnavailable:
    case StatusCode::kTimeout:
    case StatusCode::kAborted:
    case StatusCode::kResourceExhausted:
      // Transient unless it keeps happening.
      if (publish_failures_.fetch_add(1) + 1 < kTransientPublishFailuresBeforeUnhealthy) return;
      break;
    default:  // Corruption, Internal, NotFound (topic gone)...: the queue is broken
      break;
  }
  next_queue_probe_ms_.store(SteadyMillis() + options_.write_path_probe_interval_ms);
  health_.Fail(kQueueComponent, published);
  if (!queue_failed_.exchange(true)) {
    AQ_LOG(Error, "the message queue refuses writes ({}); writes are answered 503 until it "
                  "accepts one again (probed every {} ms)",
           published.ToString(), options_.write_path_probe_interval_ms);
  }
}

Result<std::optional<std::string>> EngineImpl::ClaimKey(const Principal& who, std::string_view key,
                                                        const std::string& write_id) {
  const int64_t deadline = SteadyMillis() + options_.idempotency_wait_ms;
  auto pause = std::chrono::milliseconds(5);
  bool waited = false;
  while (true) {
    auto claim = catalog_->ClaimIdempotencyKey(who.secret_id, key, write_id, claim_owner_,
                                               options_.idempotency_lease_ms);
    int64_t lease_left_ms = 0;
    if (claim.ok()) {
      switch (claim->state) {
        case IdempotencyClaim::State::kClaimed:
          return std::optional<std::string>();
        case IdempotencyClaim::State::kCommitted:
          return std::optional<std::string>(claim->write_id);
        case IdempotencyClaim::State::kPending:
          lease_left_ms = std::max<int64_t>(claim->lease_expires_ms - clock_->NowMillis(), 0);
          break;
      }
    } else if (claim.status().code() != StatusCode::kAborted) {
      return claim.status();  // Aborted: a concurrent takeover; look again
    }
    if (!waited) {
      waited = true;
      idempotency_waits_.fetch_add(1, std::memory_order_relaxed);
    }
    const int64_t now = SteadyMillis();
    if (now >= deadline) {
      idempotency_refusals_.fetch_add(1, std::memory_order_relaxed);
      return Unavailable(
          "an earlier request with this Idempotency-Key is still in progress; retry. Nothing is "
          "acknowledged until it finishes{}",
          lease_left_ms > 0
              ? fmt::format(" (if its process died, the key is free again in {} ms)", lease_left_ms)
              : std::string());
    }
    std::this_thread::sleep_for(std::min(pause, std::chrono::milliseconds(deadline - now)));
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

void EngineImpl::CommitKey(const Principal& who, std::string_view key, const std::string& write_id) {
  Status committed;
  for (int attempt = 0; attempt < 4; ++attempt) {
    committed = catalog_->CommitIdempotencyKey(who.secret_id, key, write_id);
    if (committed.ok() || committed.code() == StatusCode::kAborted) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10) * (1 << attempt));
  }
  if (!committed.ok()) {
    // The write is durable, so it is acknowledged; only the key does not say so.
    AQ_LOG(Error, "write {} is durable in the queue, but marking its Idempotency-Key done failed: "
                  "{}; a retry with this key after the claim's lease ({} ms) may write it again",
           write_id, committed.ToString(), options_.idempotency_lease_ms);
  }
}

// --- Usage and quotas -------------------------------------------------------------------------

void EngineImpl::Meter(const Principal& who, const Uuid& project_id, const UsageCounters& counters) {
  meter_.Record(who.secret_id, counters);
  meter_.Record(project_id, counters);
}

Status EngineImpl::CheckQuota(const ProjectInfo& project, QuotaKind kind, int64_t extra_bytes) {
  const std::optional<int64_t>& quota = kind == QuotaKind::kRead    ? project.quotas.read_bytes
                                        : kind == QuotaKind::kWrite ? project.quotas.write_bytes
                                                                    : project.quotas.scan_bytes;
  if (!quota.has_value()) return Status::OK();
  AQ_ASSIGN_OR_RETURN(UsageCounters month, meter_.Current(project.project_id, UsagePeriod::kMonth));
  const int64_t used = kind == QuotaKind::kRead    ? month.read_bytes
                       : kind == QuotaKind::kWrite ? month.write_bytes
                                                   : month.scan_bytes;
  if (used < *quota && used + extra_bytes <= *quota) return Status::OK();
  return OverQuota(project, kind, used, *quota, extra_bytes);
}

Status EngineImpl::OverQuota(const ProjectInfo& project, QuotaKind kind, int64_t used,
                             int64_t quota, int64_t extra_bytes) {
  const int64_t now = clock_->NowMillis();
  const int64_t retry_after_s = (QuotaResetMs(now) - now + 999) / 1000;
  const char* name = kind == QuotaKind::kRead ? "read" : kind == QuotaKind::kWrite ? "write" : "scan";
  return QuotaExhausted(
      fmt::format("project '{}' is over its monthly {} quota: {} of {} bytes used{}; the quota "
                  "resets at the start of next month (UTC)",
                  project.name, name, used, quota,
                  extra_bytes > 0 ? fmt::format(", this request needs {} more", extra_bytes)
                                  : std::string()),
      retry_after_s);
}

Result<int64_t> EngineImpl::ReserveWrite(const ProjectInfo& project, const UsageCounters& usage) {
  const int64_t quota = *project.quotas.write_bytes;
  const int64_t now = clock_->NowMillis();
  // Writes this process metered before the quota was set (and give-backs still
  // to be retried) are not stored yet: the limit leaves room for them.
  const int64_t unflushed =
      meter_.Unflushed(project.project_id, UsagePeriod::kMonth, now).write_bytes;
  int64_t limit = 0;
  if (__builtin_sub_overflow(quota, unflushed, &limit)) {
    limit = unflushed < 0 ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
  }
  auto added = usage_->AddUsageWithin(project.project_id, UsagePeriod::kMonth, now, usage,
                                      driver::UsageField::kWriteBytes, limit);
  if (!added.ok()) {
    return added.status().WithContext(
        fmt::format("checking the write quota of project '{}'", project.name));
  }
  if (added->added) return now;
  return OverQuota(project, QuotaKind::kWrite, added->counters.write_bytes + unflushed, quota,
                   usage.write_bytes);
}

void EngineImpl::GiveBackWrite(const Uuid& project_id, int64_t reserved_at,
                               const UsageCounters& usage) {
  UsageCounters back;
  back.write_ops = -usage.write_ops;
  back.write_records = -usage.write_records;
  back.write_bytes = -usage.write_bytes;
  Status given = usage_->WriteUsage(project_id, UsagePeriod::kMonth, reserved_at, back);
  if (given.ok()) return;
  AQ_LOG(Warn, "giving back the write quota reserved for an unpublished write of project {} "
               "failed ({}); retried with the next usage flush",
         project_id.ToString(), given.ToString());
  meter_.RecordBucket(project_id, UsagePeriod::kMonth, reserved_at, back);
}

namespace {

json QuotasJson(std::string_view project, const Quotas& quotas) {
  auto limit = [](const std::optional<int64_t>& value) { return value ? json(*value) : json(nullptr); };
  return json{{"project", project},
              {"read_bytes", limit(quotas.read_bytes)},
              {"write_bytes", limit(quotas.write_bytes)},
              {"scan_bytes", limit(quotas.scan_bytes)}};
}

}  // namespace

Status EngineImpl::CheckQuotaAdmin(const Principal& who, std::string_view project) {
  if (who.is_admin) return Status::OK();
  // What the secret does not see answers like a missing project; what it sees, 403.
  Status visible = catalog_->Authorize(who, project, "", Permission::kManage);
  if (visible.code() == StatusCode::kNotFound) return visible;
  return PermissionDenied("only the admin secret may read or set the quotas of project '{}'",
                          project);
}

Result<std::string> EngineImpl::GetQuotasJson(const Principal& who, std::string_view project) {
  AQ_RETURN_IF_ERROR(CheckQuotaAdmin(who, project));
  AQ_ASSIGN_OR_RETURN(Quotas quotas, catalog_->GetProjectQuotas(project));
  return QuotasJson(project, quotas).dump();
}

Result<std::string> EngineImpl::SetQuotas(const Principal& who, std::string_view project,
                                          std::string_view body_json) {
  AQ_RETURN_IF_ERROR(CheckQuotaAdmin(who, project));
  constexpr std::string_view kWhat = "set quotas";
  constexpr int64_t kMaxQuota = std::numeric_limits<int64_t>::max();
  AQ_ASSIGN_OR_RETURN(json body, ParseBody(body_json, kWhat));
  AQ_RETURN_IF_ERROR(CheckMembers(body, {"read_bytes", "write_bytes", "scan_bytes"}, kWhat));
  AQ_ASSIGN_OR_RETURN(Quotas quotas, catalog_->GetProjectQuotas(project));
  for (auto [name, limit] : {std::pair{"read_bytes", &quotas.read_bytes},
                             std::pair{"write_bytes", &quotas.write_bytes},
                             std::pair{"scan_bytes", &quotas.scan_bytes}}) {
    if (!body.contains(name)) continue;
    const json& value = body[name];
    if (value.is_null()) {
      limit->reset();
    } else if (value.is_number_integer() &&
               (value.is_number_unsigned()
                    ? value.get<uint64_t>() <= static_cast<uint64_t>(kMaxQuota)
                    : value.get<int64_t>() >= 0)) {
      *limit = value.get<int64_t>();
    } else {
      return InvalidArgument("{}: \"{}\" must be a number of bytes from 0 to {}, or null for "
                             "unlimited; got {}",
                             kWhat, name, kMaxQuota, value.dump());
    }
  }
  AQ_RETURN_IF_ERROR(catalog_->SetProjectQuotas(project, quotas));
  return QuotasJson(project, quotas).dump();
}

Result<std::string> EngineImpl::ListTablesJson(const Principal& who, std::string_view project) {
  auto hidden = [&] { return NotFound("project '{}' not found", project); };
  if (!who.is_admin && std::none_of(who.grants.begin(), who.grants.end(),
                                    [&](const auto& grant) { return grant.project == project; })) {
    return hidden();
  }
  Result<std::vector<TableInfo>> tables = catalog_->ListTables(project);
  if (!tables.ok()) {
    if (tables.status().code() == StatusCode::kNotFound) return hidden();
    return tables.status();
  }
  std::sort(tables->begin(), tables->end(),
            [](const TableInfo& a, const TableInfo& b) { return a.name < b.name; });
  json out{{"project", std::string(project)}, {"tables", json::array()}};
  for (const TableInfo& table : *tables) {
    Status readable = catalog_->Authorize(who, project, table.name, Permission::kRead);
    if (readable.ok()) {
      out["tables"].push_back(TableJson(table));
    } else if (readable.code() != StatusCode::kNotFound &&
               readable.code() != StatusCode::kPermissionDenied) {
      return readable;
    }
  }
  if (who.is_admin && tables->empty()) AQ_RETURN_IF_ERROR(catalog_->GetProject(project).status());
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::string> EngineImpl::UsageJson(const Principal& who, int32_t hours) {
  std::vector<ProjectInfo> projects;
  if (who.is_admin) {
    AQ_ASSIGN_OR_RETURN(projects, catalog_->ListProjects());
  } else {
    std::set<std::string> names;
    for (const auto& grant : who.grants) names.insert(grant.project);
    for (const auto& name : names) {
      auto project = catalog_->GetProject(name);
      if (project.ok()) projects.push_back(std::move(*project));
    }
  }
  auto periods = [&](const Uuid& owner) -> Result<json> {
    AQ_ASSIGN_OR_RETURN(UsageCounters hour, meter_.Current(owner, UsagePeriod::kHour));
    AQ_ASSIGN_OR_RETURN(UsageCounters month, meter_.Current(owner, UsagePeriod::kMonth));
    const int64_t now = clock_->NowMillis();
    return json{{"hour", CountersJson(hour)},
                {"hour_start_ms", driver::PeriodStart(UsagePeriod::kHour, now)},
                {"month", CountersJson(month)},
                {"month_start_ms", driver::PeriodStart(UsagePeriod::kMonth, now)}};
  };
  json out{{"projects", json::array()}};
  for (const auto& project : projects) {
    AQ_ASSIGN_OR_RETURN(json usage, periods(project.project_id));
    usage["project"] = project.name;
    json quotas = json::object();
    if (project.quotas.read_bytes) quotas["read_bytes"] = *project.quotas.read_bytes;
    if (project.quotas.write_bytes) quotas["write_bytes"] = *project.quotas.write_bytes;
    if (project.quotas.scan_bytes) quotas["scan_bytes"] = *project.quotas.scan_bytes;
    usage["quotas"] = quotas;
    if (hours > 0) {
      // Stored hourly buckets, then the current hour as the meter sees it (pending included).
      const int64_t hour_ms = 3'600'000;
      const int64_t current = driver::PeriodStart(UsagePeriod::kHour, clock_->NowMillis());
      const int64_t first = current - (hours - 1) * hour_ms;
      AQ_ASSIGN_OR_RETURN(std::vector<driver::UsageBucket> stored,
                          usage_->ReadUsageRange(project.project_id, UsagePeriod::kHour, first,
                                                 current, hours));
      json series = json::array();
      size_t next = 0;
      for (int64_t start = first; start < current; start += hour_ms) {
        UsageCounters counters;
        while (next < stored.size() && stored[next].period_start_ms < start) ++next;
        if (next < stored.size() && stored[next].period_start_ms == start) counters = stored[next].counters;
        json bucket = CountersJson(counters);
        bucket["start_ms"] = start;
        series.push_back(std::move(bucket));
      }
      json now_bucket = usage["hour"];
      now_bucket["start_ms"] = current;
      series.push_back(std::move(now_bucket));
      usage["hours"] = std::move(series);
    }
    out["projects"].push_back(std::move(usage));
  }
  AQ_ASSIGN_OR_RETURN(out["secret"], periods(who.secret_id));
  return out.dump();
}

// --- Reads ------------------------------------------------------------------------------------

Result<RecordPage> EngineImpl::ReadPage(const Principal& who, const ReadTarget& target,
                                        const EnginePayload& payload, const keys::Filter& filter,
                                        int32_t limit, std::string* next_driver,
                                        int64_t* read_bytes) {
  RecordPage page;
  if (payload.driver.empty()) {
    page.data_json = "[]";
    return page;
  }
  driver::ReadOptions read_options;
  read_options.limit = limit;
  read_options.from_timestamp_ms = payload.from_ms;
  AQ_ASSIGN_OR_RETURN(driver::ReadResult result,
                      lookup_->ReadCursor(target.instance, payload.driver, filter, read_options));
  int64_t bytes = 0;
  AQ_RETURN_IF_ERROR(RenderRecords(*target.instance.schema, result.records, &page.data_json, &bytes));
  page.count = static_cast<int64_t>(result.records.size());
  page.residual = result.residual;
  page.more = !result.next.empty() &&
              (page.count >= limit || result.scanned >= read_options.scan_budget);
  if (!result.next.empty()) {
    EnginePayload next = payload;
    next.driver = std::move(result.next);
    page.next_cursor = EncodeCursor(target.instance.instance_id, next);
    if (next_driver != nullptr) *next_driver = std::move(next.driver);
  }
  metrics_.reads.fetch_add(1, std::memory_order_relaxed);
  metrics_.records_read.fetch_add(page.count, std::memory_order_relaxed);
  UsageCounters usage;
  usage.read_ops = 1;
  usage.read_records = page.count;
  usage.read_bytes = bytes;
  Meter(who, target.project.project_id, usage);
  if (read_bytes != nullptr) *read_bytes = bytes;
  return page;
}

Result<RecordPage> EngineImpl::QueryIndex(const Principal& who, const IndexQuery& query) {
  AQ_RETURN_IF_ERROR(CheckReadLimit(query.limit));
  AQ_ASSIGN_OR_RETURN(ReadTarget target, ResolveReadTarget(who, query.project, query.table));
  const schema::Schema& schema = *target.instance.schema;
  AQ_ASSIGN_OR_RETURN(keys::Filter filter, keys::ParseFilter(schema, query.filter_json));
  std::string filter_json = filter.empty() ? std::string() : keys::FilterToJson(schema, filter);
  driver::QueryRequest request;
  request.kind = driver::QueryKind::kIndex;
  request.filter = filter;
  AQ_ASSIGN_OR_RETURN(driver::QueryCursors cursors, lookup_->Query(target.instance, request));
  AQ_ASSIGN_OR_RETURN(
      RecordPage page,
      ReadPage(who, target, {PayloadKind::kIndexReplay, 0, filter_json, std::move(cursors.replay)},
               filter, query.limit));
  if (target.instance.use_log) {
    page.change_cursor = EncodeCursor(target.instance.instance_id,
                                      {PayloadKind::kChange, 0, filter_json, std::move(cursors.change)});
  }
  return page;
}

Result<RecordPage> EngineImpl::QueryLog(const Principal& who, const LogQuery& query) {
  AQ_RETURN_IF_ERROR(CheckReadLimit(query.limit));
  AQ_ASSIGN_OR_RETURN(ReadTarget target, ResolveReadTarget(who, query.project, query.table));
  driver::QueryRequest request;
  request.kind = driver::QueryKind::kLog;
  request.from_timestamp_ms = query.from_ms;
  AQ_ASSIGN_OR_RETURN(driver::QueryCursors cursors, lookup_->Query(target.instance, request));
  AQ_ASSIGN_OR_RETURN(RecordPage page,
                      ReadPage(who, target,
                               {PayloadKind::kLogReplay, query.from_ms, "", std::move(cursors.replay)},
                               request.filter, query.limit));
  page.change_cursor = EncodeCursor(target.instance.instance_id,
                                    {PayloadKind::kChange, 0, "", std::move(cursors.change)});
  return page;
}

Result<ReadTarget> EngineImpl::ResolveReadTarget(const Principal& who, const driver::Cursor& cursor) {
  auto instance = catalog_->GetInstance(cursor.id);
  if (!instance.ok()) {
    if (instance.status().code() == StatusCode::kNotFound) {
      return NotFound("the cursor's table no longer exists");
    }
    return instance.status();
  }
  AQ_RETURN_IF_ERROR(catalog_->Authorize(who, instance->project, instance->table, Permission::kRead));
  AQ_ASSIGN_OR_RETURN(ProjectInfo project, catalog_->GetProject(instance->project));
  AQ_RETURN_IF_ERROR(CheckQuota(project, QuotaKind::kRead, 0));
  return ReadTarget{std::move(*instance), std::move(project)};
}

Result<std::string> EngineImpl::ReadCursorJson(const Principal& who, std::string_view text,
                                               int32_t limit) {
  AQ_RETURN_IF_ERROR(CheckReadLimit(limit));
  AQ_ASSIGN_OR_RETURN(driver::Cursor cursor, cursors_.Decode(text));
  if (cursor.type == driver::CursorType::kJob) {
    AQ_ASSIGN_OR_RETURN(SqlJobRows rows, sql_.RowsFromCursor(who, cursor, limit));
    std::string out = "{\"columns\":" + (rows.columns_json.empty() ? "[]" : rows.columns_json) +
                      ",\"data\":" + (rows.data_json.empty() ? "[]" : rows.data_json) +
                      ",\"next_cursor\":";
    out += rows.next_cursor.empty() ? "null" : "\"" + rows.next_cursor + "\"";
    out += "}";
    return out;
  }
  AQ_ASSIGN_OR_RETURN(EnginePayload payload, DecodeEnginePayload(cursor.type, cursor.payload));
  AQ_ASSIGN_OR_RETURN(ReadTarget target, ResolveReadTarget(who, cursor));
  auto filter = keys::ParseFilter(*target.instance.schema, payload.filter_json);
  if (!filter.ok()) return Internal("a signed cursor carries a bad filter: {}", filter.status().message());
  AQ_ASSIGN_OR_RETURN(RecordPage page, ReadPage(who, target, payload, *filter, limit));
  if (payload.kind == PayloadKind::kChange && page.next_cursor.empty()) {
    page.next_cursor = std::string(text);  // a change feed always has a resume point
  }
  return RecordPageJson(page);
}

// --- Subscriptions ----------------------------------------------------------------------------

Result<std::pair<ReadTarget, EnginePayload>> EngineImpl::ResolveChangeCursor(const Principal& who,
                                                                            std::string_view text) {
  AQ_ASSIGN_OR_RETURN(driver::Cursor cursor, cursors_.Decode(text));
  if (cursor.type != driver::CursorType::kLog) {
    return InvalidArgument("not a change cursor: subscribe with the change_cursor of a query");
  }
  AQ_ASSIGN_OR_RETURN(EnginePayload payload, DecodeEnginePayload(cursor.type, cursor.payload));
  if (payload.kind != PayloadKind::kChange) {
    return InvalidArgument("not a change cursor: subscribe with the change_cursor of a query");
  }
  AQ_ASSIGN_OR_RETURN(ReadTarget target, ResolveReadTarget(who, cursor));
  return std::pair{std::move(target), std::move(payload)};
}

Result<Uuid> EngineImpl::CheckSubscription(const Principal& who, std::string_view cursor,
                                           std::string_view filter_json) {
  AQ_ASSIGN_OR_RETURN(auto resolved, ResolveChangeCursor(who, cursor));
  AQ_RETURN_IF_ERROR(keys::ParseFilter(*resolved.first.instance.schema, filter_json));
  return resolved.first.instance.instance_id;
}

Result<keys::Filter> EngineImpl::CombinedChangeFilter(const schema::Schema& schema,
                                                      const EnginePayload& payload,
                                                      std::string_view filter_json) {
  auto own = keys::ParseFilter(schema, payload.filter_json);
  if (!own.ok()) return Internal("a signed cursor carries a bad filter: {}", own.status().message());
  AQ_ASSIGN_OR_RETURN(keys::Filter extra, keys::ParseFilter(schema, filter_json));
  // Both filters must hold: the conditions of one field are ANDed like any others.
  keys::Filter combined = std::move(*own);
  for (auto& field : extra.fields) combined.fields.push_back(std::move(field));
  return combined;
}

Result<RecordPage> EngineImpl::ReadChanges(const Principal& who, std::string_view cursor,
                                           std::string_view filter_json, int32_t limit) {
  AQ_RETURN_IF_ERROR(CheckReadLimit(limit));
  AQ_ASSIGN_OR_RETURN(auto resolved, ResolveChangeCursor(who, cursor));
  auto& [target, payload] = resolved;
  AQ_ASSIGN_OR_RETURN(keys::Filter combined,
                      CombinedChangeFilter(*target.instance.schema, payload, filter_json));
  AQ_ASSIGN_OR_RETURN(RecordPage page, ReadPage(who, target, payload, combined, limit));
  if (page.next_cursor.empty()) page.next_cursor = std::string(cursor);
  return page;
}

// A change feed with its catalog lookups cached (engine.h, ChangeFeed). The
// catalog is consulted when the feed opens, when change_feed_recheck_ms has
// passed since the last time (engine clock, monotonic), and when the
// engine's catalog epoch moved (a local DeleteTable). Between those, a read
// is the quota check on the cached project plus the driver read.
class EngineImpl::Feed final : public ChangeFeed {
 public:
  Feed(EngineImpl* engine, Principal who, std::string cursor, EnginePayload payload,
       ReadTarget target, keys::Filter filter, uint64_t epoch)
      : engine_(engine),
        who_(std::move(who)),
        cursor_(std::move(cursor)),
        payload_(std::move(payload)),
        target_(std::move(target)),
        filter_(std::move(filter)),
        epoch_(epoch),
        checked_us_(engine->clock_->MonotonicMicros()) {
    engine_->change_feeds_.fetch_add(1, std::memory_order_relaxed);
  }
  ~Feed() override { engine_->change_feeds_.fetch_sub(1, std::memory_order_relaxed); }

  const Uuid& instance_id() const override { return target_.instance.instance_id; }
  void set_filter_key(std::string key) { filter_key_ = std::move(key); }

  Result<RecordPage> Read(int32_t limit) override {
    AQ_ASSIGN_OR_RETURN(Shared shared, ReadShared(limit));
    RecordPage page = shared.page != nullptr ? shared.page->page : std::move(shared.own);
    if (page.next_cursor.empty()) page.next_cursor = cursor_;
    return page;
  }

  Result<ChangeBatch> ReadBatch(int32_t limit) override {
    AQ_ASSIGN_OR_RETURN(Shared shared, ReadShared(limit));
    return ToBatch(shared);
  }

  std::optional<ChangeBatch> TryReadBatch(int32_t limit) override {
    if (!CheckReadLimit(limit).ok() || payload_.driver.empty()) return std::nullopt;
    const uint64_t epoch = engine_->catalog_epoch_.load(std::memory_order_acquire);
    const int64_t now_us = engine_->clock_->MonotonicMicros();
    if (epoch != epoch_ || now_us - checked_us_ >= engine_->options_.change_feed_recheck_ms * 1000 ||
        target_.project.quotas.read_bytes.has_value()) {  // the quota check may read the usage store
      return std::nullopt;
    }
    EngineImpl& engine = *engine_;
    const std::string key = SharedKey(limit);
    const uint64_t generation = engine.hub_.generation();
    std::shared_ptr<const SharedPage> hit;
    {
      std::lock_guard lock(engine.shared_pages_mu_);
      auto it = engine.shared_pages_.find(key);
      if (it == engine.shared_pages_.end() || it->second.generation != generation ||
          now_us - it->second.made_us >= kSharedPageMicros ||
          it->second.page.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        return std::nullopt;
      }
      hit = it->second.page.get();
    }
    if (hit == nullptr) return std::nullopt;  // the first reader failed: read alone
    Shared shared;
    std::string next_driver;
    TakeShared(std::move(hit), &shared, &next_driver);
    Advance(shared, std::move(next_driver));
    return ToBatch(shared);
  }

 private:
  // A read's answer: the shared page, or (no position to share yet, or the
  // first reader failed) a page read alone.
  struct Shared {
    std::shared_ptr<const SharedPage> page;
    RecordPage own;
  };

  ChangeBatch ToBatch(const Shared& shared) const {
    const RecordPage& page = shared.page != nullptr ? shared.page->page : shared.own;
    ChangeBatch batch;
    batch.count = page.count;
    batch.more = page.more;
    batch.next_cursor = page.next_cursor.empty() ? cursor_ : page.next_cursor;
    if (batch.count > 0) {
      batch.message = shared.page != nullptr && shared.page->message != nullptr
                          ? shared.page->message
                          : std::make_shared<const std::string>(
                                RecordsMessage(page.data_json, batch.next_cursor));
    }
    return batch;
  }

  // The feed's new position after `shared`.
  void Advance(const Shared& shared, std::string next_driver) {
    const RecordPage& page = shared.page != nullptr ? shared.page->page : shared.own;
    if (!page.next_cursor.empty()) {
      cursor_ = page.next_cursor;
      payload_.driver = std::move(next_driver);
    }
  }

  // The shared-page key of the feed's position: instance, limit, start, filters, driver position.
  std::string SharedKey(int32_t limit) const {
    std::string key = target_.instance.instance_id.ToString();
    key += '|';
    key += std::to_string(limit);
    key += '|';
    key += std::to_string(payload_.from_ms);
    key += '|';
    key += filter_key_;
    key += '|';
    key += payload_.driver;
    return key;
  }

  // Takes another feed's page: metered and counted as this feed's read.
  void TakeShared(std::shared_ptr<const SharedPage> hit, Shared* out, std::string* next_driver) {
    EngineImpl& engine = *engine_;
    engine.shared_page_hits_.fetch_add(1, std::memory_order_relaxed);
    engine.metrics_.reads.fetch_add(1, std::memory_order_relaxed);
    engine.metrics_.records_read.fetch_add(hit->page.count, std::memory_order_relaxed);
    UsageCounters usage;
    usage.read_ops = 1;
    usage.read_records = hit->page.count;
    usage.read_bytes = hit->bytes;
    engine.Meter(who_, target_.project.project_id, usage);
    *next_driver = hit->next_driver;
    out->page = std::move(hit);
  }

  Result<Shared> ReadShared(int32_t limit) {
    AQ_RETURN_IF_ERROR(CheckReadLimit(limit));
    const uint64_t epoch = engine_->catalog_epoch_.load(std::memory_order_acquire);
    const int64_t now_us = engine_->clock_->MonotonicMicros();
    if (epoch != epoch_ ||
        now_us - checked_us_ >= engine_->options_.change_feed_recheck_ms * 1000) {
      AQ_RETURN_IF_ERROR(Recheck(epoch, now_us));
    } else {
      AQ_RETURN_IF_ERROR(engine_->CheckQuota(target_.project, QuotaKind::kRead, 0));
    }
    std::string next_driver;
    AQ_ASSIGN_OR_RETURN(Shared shared, SharedRead(limit, &next_driver));
    Advance(shared, std::move(next_driver));
    return shared;
  }

  // Resolves the instance, the grants and the project again (and the read quota).
  Status Recheck(uint64_t epoch, int64_t now_us) {
    engine_->change_feed_checks_.fetch_add(1, std::memory_order_relaxed);
    AQ_ASSIGN_OR_RETURN(driver::Cursor cursor, engine_->cursors_.Decode(cursor_));
    AQ_ASSIGN_OR_RETURN(ReadTarget target, engine_->ResolveReadTarget(who_, cursor));
    target_ = std::move(target);
    epoch_ = epoch;
    checked_us_ = now_us;
    return Status::OK();
  }

  // The page after the feed's position. Feeds at the same position with the
  // same filter share one read: the first reads and renders, the others (in
  // the same hub generation, within kSharedPageMicros) take its page. Each
  // feed still checks its quota and is metered for what it reads. A page read
  // in generation g holds every change notified before g, so a later reader
  // in the same generation would read the same records (or, racing a write
  // whose notification is on its way, fewer: that notification then wakes it
  // again). The age limit bounds what a missed notification (they are
  // at-most-once) can hold back.
  Result<Shared> SharedRead(int32_t limit, std::string* next_driver) {
    Shared out;
    if (payload_.driver.empty()) {
      AQ_ASSIGN_OR_RETURN(out.own, engine_->ReadPage(who_, target_, payload_, filter_, limit, next_driver));
      return out;
    }
    EngineImpl& engine = *engine_;
    const std::string key = SharedKey(limit);
    const uint64_t generation = engine.hub_.generation();
    const int64_t now_us = engine.clock_->MonotonicMicros();
    std::shared_future<std::shared_ptr<const SharedPage>> shared;
    std::promise<std::shared_ptr<const SharedPage>> mine;
    {
      std::lock_guard lock(engine.shared_pages_mu_);
      auto it = engine.shared_pages_.find(key);
      if (it != engine.shared_pages_.end() && it->second.generation == generation &&
          now_us - it->second.made_us < kSharedPageMicros) {
        shared = it->second.page;
      } else {
        if (engine.shared_pages_.size() >= 256) {
          std::erase_if(engine.shared_pages_, [&](const auto& entry) {
            return entry.second.generation != generation || now_us - entry.second.made_us >= kSharedPageMicros;
          });
        }
        engine.shared_pages_[key] = SharedSlot{generation, now_us, mine.get_future().share()};
      }
    }
    if (shared.valid()) {
      std::shared_ptr<const SharedPage> hit = shared.get();
      if (hit != nullptr) {
        TakeShared(std::move(hit), &out, next_driver);
        return out;
      }
      // The first reader failed: read alone (and get its error, if it persists).
      AQ_ASSIGN_OR_RETURN(out.own, engine.ReadPage(who_, target_, payload_, filter_, limit, next_driver));
      return out;
    }
    engine.shared_page_reads_.fetch_add(1, std::memory_order_relaxed);
    auto result = std::make_shared<SharedPage>();
    Result<RecordPage> page =
        engine.ReadPage(who_, target_, payload_, filter_, limit, &result->next_driver, &result->bytes);
    if (!page.ok()) {
      mine.set_value(nullptr);
      std::lock_guard lock(engine.shared_pages_mu_);
      engine.shared_pages_.erase(key);
      return page.status();
    }
    result->page = std::move(*page);
    if (result->page.count > 0 && !result->page.next_cursor.empty()) {
      result->message = std::make_shared<const std::string>(
          RecordsMessage(result->page.data_json, result->page.next_cursor));
    }
    *next_driver = result->next_driver;
    out.page = result;
    mine.set_value(std::move(result));
    return out;
  }
  static constexpr int64_t kSharedPageMicros = 200'000;

  EngineImpl* const engine_;
  const Principal who_;
  std::string filter_key_;  // the cursor's filter and the feed's own, as given
  std::string cursor_;  // the position: a signed change cursor
  EnginePayload payload_;
  ReadTarget target_;
  keys::Filter filter_;
  uint64_t epoch_;
  int64_t checked_us_;
};

std::string RecordsMessage(std::string_view data_json, std::string_view cursor) {
  std::string message;
  message.reserve(data_json.size() + cursor.size() + 48);
  message += "{\"type\":\"records\",\"data\":";
  message += data_json;
  message += ",\"cursor\":\"";
  message += cursor;  // base58: nothing to escape
  message += "\"}";
  return message;
}

Result<ChangeBatch> ChangeFeed::ReadBatch(int32_t limit) {
  AQ_ASSIGN_OR_RETURN(RecordPage page, Read(limit));
  ChangeBatch batch;
  batch.count = page.count;
  batch.more = page.more;
  batch.next_cursor = std::move(page.next_cursor);
  if (batch.count > 0) {
    batch.message = std::make_shared<const std::string>(RecordsMessage(page.data_json, batch.next_cursor));
  }
  return batch;
}

std::optional<ChangeBatch> ChangeFeed::TryReadBatch(int32_t) { return std::nullopt; }

Result<std::unique_ptr<ChangeFeed>> EngineImpl::OpenChangeFeed(const Principal& who,
                                                               std::string_view cursor,
                                                               std::string_view filter_json) {
  const uint64_t epoch = catalog_epoch_.load(std::memory_order_acquire);
  change_feed_checks_.fetch_add(1, std::memory_order_relaxed);
  AQ_ASSIGN_OR_RETURN(auto resolved, ResolveChangeCursor(who, cursor));
  auto& [target, payload] = resolved;
  AQ_ASSIGN_OR_RETURN(keys::Filter combined,
                      CombinedChangeFilter(*target.instance.schema, payload, filter_json));
  std::string filter_key = payload.filter_json;
  filter_key += '\x01';
  filter_key += filter_json;
  auto feed = std::make_unique<Feed>(this, who, std::string(cursor), std::move(payload), std::move(target),
                                     std::move(combined), epoch);
  feed->set_filter_key(std::move(filter_key));
  return std::unique_ptr<ChangeFeed>(std::move(feed));
}

// --- SQL --------------------------------------------------------------------------------------

Result<SqlAnalysis> EngineImpl::AnalyzeSql(const Principal& who, std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(SqlAnalysisResult analysis, sql_.Analyze(who, sql));
  return SqlAnalysis{std::move(analysis.tables), analysis.bytes_scanned_estimate};
}

Result<std::pair<SqlAnalysisResult, std::vector<ProjectInfo>>> EngineImpl::AnalyzeForSubmit(
    const Principal& who, std::string_view sql) {
  // Scan usage is charged from the estimate, to every project the query reads;
  // the quota check comes first so an over-quota project starts nothing.
  AQ_ASSIGN_OR_RETURN(SqlAnalysisResult analysis, sql_.Analyze(who, sql));
  std::vector<ProjectInfo> projects;
  std::set<std::string> seen;
  for (const auto& table : analysis.resolved) {
    if (!seen.insert(table.project).second) continue;
    AQ_ASSIGN_OR_RETURN(ProjectInfo project, catalog_->GetProject(table.project));
    AQ_RETURN_IF_ERROR(CheckQuota(project, QuotaKind::kScan, analysis.bytes_scanned_estimate));
    projects.push_back(std::move(project));
  }
  return std::pair{std::move(analysis), std::move(projects)};
}

void EngineImpl::ChargeScan(const Principal& who, const SqlAnalysisResult& analysis,
                            const std::vector<ProjectInfo>& projects) {
  metrics_.sql_jobs.fetch_add(1, std::memory_order_relaxed);
  UsageCounters usage;
  usage.scan_ops = 1;
  usage.scan_bytes = analysis.bytes_scanned_estimate;
  meter_.Record(who.secret_id, usage);
  for (const auto& project : projects) meter_.Record(project.project_id, usage);
}

Result<std::string> EngineImpl::SubmitSql(const Principal& who, std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(auto analyzed, AnalyzeForSubmit(who, sql));
  AQ_ASSIGN_OR_RETURN(JobInfo job, sql_.Submit(who, sql, analyzed.first));
  ChargeScan(who, analyzed.first, analyzed.second);
  return job.job_id.ToString();
}

Result<SqlAnswer> EngineImpl::SubmitSqlAndWait(const Principal& who, std::string_view sql, int64_t wait_ms,
                                               int32_t limit) {
  AQ_RETURN_IF_ERROR(CheckReadLimit(limit));
  if (wait_ms < 0 || wait_ms > kMaxSqlWaitMs) {
    return InvalidArgument("wait_ms must be 0..{}, got {}", kMaxSqlWaitMs, wait_ms);
  }
  AQ_ASSIGN_OR_RETURN(auto analyzed, AnalyzeForSubmit(who, sql));
  AQ_ASSIGN_OR_RETURN(SqlWaited waited, sql_.SubmitAndWait(who, sql, analyzed.first, wait_ms, limit));
  ChargeScan(who, analyzed.first, analyzed.second);
  SqlAnswer answer;
  answer.job_id = waited.job.job_id.ToString();
  answer.finished = waited.job.status == driver::JobStatus::kDone || waited.job.status == driver::JobStatus::kFailed;
  std::string out = JobInfoJson(waited.job);
  if (waited.rows) {
    out.pop_back();  // the closing brace: the first page's members follow
    out += ",\"columns\":";
    out += waited.rows->columns_json.empty() ? "[]" : waited.rows->columns_json;
    out += ",\"data\":";
    out += waited.rows->data_json.empty() ? "[]" : waited.rows->data_json;
    out += ",\"next_cursor\":";
    out += waited.rows->next_cursor.empty() ? "null" : "\"" + waited.rows->next_cursor + "\"";  // base58
    out += "}";
  }
  answer.json = std::move(out);
  return answer;
}

Result<JobRowsPage> EngineImpl::ReadJobRows(const Principal& who, std::string_view job_id,
                                            std::string_view cursor, int32_t limit) {
  AQ_RETURN_IF_ERROR(CheckReadLimit(limit));
  AQ_ASSIGN_OR_RETURN(SqlJobRows rows, sql_.Rows(who, job_id, cursor, limit));
  return JobRowsPage{std::move(rows.columns_json), std::move(rows.data_json),
                     std::move(rows.next_cursor)};
}

// --- Health and metrics -----------------------------------------------------------------------

Status EngineImpl::Health() {
  AQ_RETURN_IF_ERROR(health_.Check());
  auto projects = catalog_->ListProjects();
  if (!projects.ok()) return Unavailable("catalog: {}", projects.status().ToString());
  Status topic = queue_->RegisterTopic(kWritesTopic);
  if (!topic.ok()) return Unavailable("message queue: {}", topic.ToString());
  auto usage = usage_->ReadUsage(Uuid{}, UsagePeriod::kHour, clock_->NowMillis());
  if (!usage.ok()) return Unavailable("usage service: {}", usage.status().ToString());
  auto analysis = warehouse_->AnalyzeQuery("SELECT 1");
  if (!analysis.ok() && analysis.status().code() == StatusCode::kUnavailable) {
    return Unavailable("warehouse: {}", analysis.status().ToString());
  }
  return Status::OK();
}

std::string EngineImpl::MetricsText() {
  std::string out;
  auto metric = [&](std::string_view name, std::string_view type, std::string_view help,
                    int64_t value) {
    fmt::format_to(std::back_inserter(out), "# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help,
                   type, value);
  };
  auto load = [](const std::atomic<int64_t>& counter) {
    return counter.load(std::memory_order_relaxed);
  };
  metric("aquifer_writes_total", "counter", "Write requests accepted (durable in the queue).",
         load(metrics_.writes));
  metric("aquifer_writes_rejected_total", "counter",
         "Write requests refused (bad input, size, quota, permission, queue errors).",
         load(metrics_.writes_rejected));
  metric("aquifer_records_accepted_total", "counter", "Records in accepted write requests.",
         load(metrics_.records_accepted));
  out += "# HELP aquifer_records_written_total Records written to each store by this process's "
         "workers.\n# TYPE aquifer_records_written_total counter\n";
  fmt::format_to(std::back_inserter(out),
                 "aquifer_records_written_total{{store=\"log\"}} {}\n"
                 "aquifer_records_written_total{{store=\"index\"}} {}\n"
                 "aquifer_records_written_total{{store=\"warehouse\"}} {}\n",
                 load(metrics_.records_log), load(metrics_.records_index),
                 load(metrics_.records_warehouse));
  const int64_t published = load(metrics_.messages_published);
  const int64_t processed = metrics_.MessagesProcessed();
  metric("aquifer_queue_published_total", "counter",
         "Write messages this process published to the queue.", published);
  metric("aquifer_queue_processed_total", "counter",
         "Write messages this process's workers finished (acked).", processed);
  metric("aquifer_queue_lag", "gauge",
         "Published minus processed write messages (meaningful when one process runs both roles).",
         std::max<int64_t>(published - processed, 0));
  out += fmt::format(
      "# HELP aquifer_store_lag Published write messages not yet applied by each store's workers "
      "(meaningful when one process runs both roles).\n"
      "# TYPE aquifer_store_lag gauge\n"
      "aquifer_store_lag{{store=\"lookup\"}} {}\n"
      "aquifer_store_lag{{store=\"warehouse\"}} {}\n",
      std::max<int64_t>(published - load(metrics_.messages_processed_lookup), 0),
      std::max<int64_t>(published - load(metrics_.messages_processed_warehouse), 0));
  metric("aquifer_worker_errors_total", "counter", "Errors seen by workers (retried or dropped).",
         load(metrics_.worker_errors));
  metric("aquifer_messages_dropped_total", "counter",
         "Write messages dropped because their table was deleted.",
         load(metrics_.messages_dropped));
  metric("aquifer_messages_dead_lettered_total", "counter",
         "Write messages a worker could not apply, published to \"writes-dead\" (listed and "
         "replayed at /v1/admin/dead-letters).",
         load(metrics_.messages_dead_lettered));
  metric("aquifer_store_failures_total", "counter",
         "Store writes that failed with damaged storage (corruption, failed sync); the write "
         "path fails closed until the store works again.",
         load(metrics_.store_failures));
  metric("aquifer_store_outage_retries_total", "counter",
         "Store writes that failed because the store was unavailable or timed out; retried "
         "until it is back, never dead-lettered.",
         load(metrics_.store_outage_retries));
  metric("aquifer_instances_reregistered_total", "counter",
         "Instances a worker registered with a store again (it did not know them).",
         load(metrics_.instances_reregistered));
  metric("aquifer_instance_removal_failures_total", "counter",
         "Removals of a deleted table's data from the stores that failed (retried in the "
         "background).",
         load(metrics_.removal_failures));
  metric("aquifer_instance_removals_pending", "gauge",
         "Deleted instances whose data is still to be removed from the stores.",
         load(metrics_.removals_pending));
  metric("aquifer_write_reports_total", "counter", "Write reports received by this gateway.",
         load(metrics_.reports_received));
  metric("aquifer_wait_timeouts_total", "counter", "Writes whose wait= timed out.",
         load(metrics_.wait_timeouts));
  metric("aquifer_idempotency_keys_purged_total", "counter",
         "Idempotency-Key claims deleted from the catalog after they expired (committed claims "
         "older than 24 h, pending claims past their lease).",
         load(idempotency_keys_purged_));
  metric("aquifer_jobs_purged_total", "counter",
         "Records of finished SQL jobs deleted from the catalog ([sql] job_history_ms after they finished).",
         load(jobs_purged_));
  metric("aquifer_retention_records_purged_total", "counter",
         "Expired log records, index rows and warehouse rows deleted by the retention purge.",
         load(retention_records_purged_));
  metric("aquifer_idempotency_waits_total", "counter",
         "Writes whose Idempotency-Key was held by an unfinished request.", load(idempotency_waits_));
  metric("aquifer_idempotency_in_progress_total", "counter",
         "Writes answered 503 because their Idempotency-Key stayed held by an unfinished request.",
         load(idempotency_refusals_));
  metric("aquifer_write_path_healthy", "gauge",
         "1 while writes are acknowledged, 0 while the queue or a store refuses them.",
         health_.Check().ok() ? 1 : 0);
  metric("aquifer_write_waiters", "gauge", "Write requests waiting for their stores.",
         static_cast<int64_t>(waiters_.size()));
  metric("aquifer_reads_total", "counter", "Record pages read (index, log, cursor, changes).",
         load(metrics_.reads));
  metric("aquifer_records_read_total", "counter", "Records returned by reads.",
         load(metrics_.records_read));
  metric("aquifer_sql_jobs_total", "counter", "SQL jobs started.", load(metrics_.sql_jobs));
  metric("aquifer_subscription_listeners", "gauge", "Local subscription listeners.",
         hub_.listeners());
  metric("aquifer_subscription_notifications_total", "counter",
         "Listener callbacks run by the hub.", hub_.notifications());
  metric("aquifer_change_pages_read_total", "counter",
         "Change-feed pages read from the lookup service and rendered (shared by the feeds at the same position).",
         load(shared_page_reads_));
  metric("aquifer_change_pages_shared_total", "counter",
         "Change-feed reads answered with a page another feed at the same position had just read.",
         load(shared_page_hits_));
  metric("aquifer_change_feeds", "gauge", "Open change feeds (subscriptions reading changes).",
         load(change_feeds_));
  metric("aquifer_change_feed_checks_total", "counter",
         "Catalog resolutions by change feeds (on open, on a recheck, after a local table delete).",
         load(change_feed_checks_));
  metric("aquifer_usage_flush_errors_total", "counter",
         "Usage buckets whose flush failed (kept and retried).", meter_.flush_errors());
  metric("aquifer_usage_pending_buckets", "gauge", "Usage buckets not yet flushed.",
         static_cast<int64_t>(meter_.pending()));
  out += driver::StoreMetricsText();  // the stores' own gauges (RocksDB caches and memtables)
  return out;
}

}  // namespace aquifer::engine
