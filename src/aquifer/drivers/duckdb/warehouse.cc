#include "aquifer/drivers/duckdb/warehouse.h"

#include <duckdb.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/driver/sql_text.h"
#include "aquifer/driver/store_metrics.h"
#include "aquifer/drivers/duckdb/cells.h"
#include "aquifer/drivers/duckdb/handles.h"
#include "aquifer/drivers/duckdb/plan.h"
#include "aquifer/drivers/duckdb/rows.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::duckdb {
namespace {

using driver::Column;
using driver::InstanceInfo;
using driver::Job;
using driver::JobOptions;
using driver::JobStatus;
using driver::QueryAnalysis;
using driver::RowPage;
using driver::WarehouseCapabilities;

// Job results live in this schema of the warehouse's own database, so they
// outlast the process: a table per done job ("__job_<hex id>", its rows in
// result order) and `results`, one row per done job (columns, row count,
// expiry) that says the table is complete.
constexpr const char* kJobsSchema = "__aquifer_jobs";
constexpr int32_t kMaxPageRows = 10'000;

std::string TableBaseName(const Uuid& instance_id) { return "i_" + instance_id.Hex(); }
// The instance's applied group ids (exactly-once writes): id (hex), applied_ms.
std::string AppliedTableName(const Uuid& instance_id) {
  return QuoteIdent(TableBaseName(instance_id) + "__applied");
}
constexpr int64_t kPruneIntervalMs = 60'000;

std::string HexOf(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}
std::string JobTableName(const Uuid& job_id) {
  return QuoteIdent(kJobsSchema) + "." + QuoteIdent("__job_" + job_id.Hex());
}
std::string ResultsTable() { return QuoteIdent(kJobsSchema) + ".results"; }

// Every row of a query whose columns are all VARCHAR (cast in the SQL), as text.
Result<std::vector<std::vector<std::string>>> QueryText(duckdb_connection conn, std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(QueryResult result, Query(conn, sql));
  const idx_t columns = duckdb_column_count(result.get());
  std::vector<std::vector<std::string>> rows;
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(result.ref()));
    if (!chunk) break;
    for (idx_t r = 0; r < duckdb_data_chunk_get_size(chunk.get()); ++r) {
      std::vector<std::string> row;
      for (idx_t c = 0; c < columns; ++c) {
        row.emplace_back(StringAt(duckdb_data_chunk_get_vector(chunk.get(), c), r));
      }
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

// A done job's entry in the results table.
struct StoredResult {
  std::vector<Column> columns;
  std::string select_list;  // reads the visible columns of its table
  int64_t rows = 0;
  int64_t bytes_scanned = 0;
  int64_t finished_ms = 0;
  int64_t expires_ms = 0;  // 0: never
  bool expired = false;    // its table was dropped
};

std::string ResultMeta(const StoredResult& stored) {
  nlohmann::json columns = nlohmann::json::array();
  for (const Column& column : stored.columns) columns.push_back({{"name", column.name}, {"type", column.type}});
  return nlohmann::json{{"columns", columns},           {"select", stored.select_list},
                        {"rows", stored.rows},           {"bytes_scanned", stored.bytes_scanned},
                        {"finished_ms", stored.finished_ms}}
      .dump();
}

Result<StoredResult> ParseResultMeta(std::string_view meta) {
  nlohmann::json parsed = nlohmann::json::parse(meta, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object() || !parsed["columns"].is_array()) {
    return Corruption("duckdb: a stored job result does not parse");
  }
  StoredResult stored;
  for (const auto& column : parsed["columns"]) {
    stored.columns.push_back(Column{column.value("name", ""), column.value("type", "")});
  }
  stored.select_list = parsed.value("select", "");
  stored.rows = parsed.value("rows", int64_t{0});
  stored.bytes_scanned = parsed.value("bytes_scanned", int64_t{0});
  stored.finished_ms = parsed.value("finished_ms", int64_t{0});
  return stored;
}

std::string_view StatementTypeName(duckdb_statement_type type) {
  switch (type) {
    case DUCKDB_STATEMENT_TYPE_SELECT: return "SELECT";
    case DUCKDB_STATEMENT_TYPE_INSERT: return "INSERT";
    case DUCKDB_STATEMENT_TYPE_UPDATE: return "UPDATE";
    case DUCKDB_STATEMENT_TYPE_DELETE: return "DELETE";
    case DUCKDB_STATEMENT_TYPE_CREATE: return "CREATE";
    case DUCKDB_STATEMENT_TYPE_DROP: return "DROP";
    case DUCKDB_STATEMENT_TYPE_COPY: return "COPY";
    case DUCKDB_STATEMENT_TYPE_ATTACH: return "ATTACH";
    case DUCKDB_STATEMENT_TYPE_DETACH: return "DETACH";
    case DUCKDB_STATEMENT_TYPE_PRAGMA: return "PRAGMA";
    case DUCKDB_STATEMENT_TYPE_EXPLAIN: return "EXPLAIN";
    case DUCKDB_STATEMENT_TYPE_SET: return "SET";
    case DUCKDB_STATEMENT_TYPE_LOAD: return "LOAD";
    case DUCKDB_STATEMENT_TYPE_EXPORT: return "EXPORT";
    case DUCKDB_STATEMENT_TYPE_TRANSACTION: return "TRANSACTION";
    case DUCKDB_STATEMENT_TYPE_CALL: return "CALL";
    default: return "non-SELECT";
  }
}

// Nominal width in bytes of one value of `type`, for the scan estimate:
// exact for fixed-width types; 16 bytes (DuckDB's string header) for
// VARCHAR/BLOB; a list counts as its header plus one element.
int64_t NominalWidth(duckdb_logical_type type) {
  switch (duckdb_get_type_id(type)) {
    case DUCKDB_TYPE_BOOLEAN:
    case DUCKDB_TYPE_TINYINT:
    case DUCKDB_TYPE_UTINYINT: return 1;
    case DUCKDB_TYPE_SMALLINT:
    case DUCKDB_TYPE_USMALLINT: return 2;
    case DUCKDB_TYPE_INTEGER:
    case DUCKDB_TYPE_UINTEGER:
    case DUCKDB_TYPE_FLOAT:
    case DUCKDB_TYPE_DATE: return 4;
    case DUCKDB_TYPE_BIGINT:
    case DUCKDB_TYPE_UBIGINT:
    case DUCKDB_TYPE_DOUBLE:
    case DUCKDB_TYPE_TIMESTAMP:
    case DUCKDB_TYPE_TIMESTAMP_S:
    case DUCKDB_TYPE_TIMESTAMP_MS:
    case DUCKDB_TYPE_TIMESTAMP_NS:
    case DUCKDB_TYPE_TIMESTAMP_TZ:
    case DUCKDB_TYPE_TIME: return 8;
    case DUCKDB_TYPE_DECIMAL: {
      const int width = duckdb_decimal_width(type);
      return width <= 4 ? 2 : width <= 9 ? 4 : width <= 18 ? 8 : 16;
    }
    case DUCKDB_TYPE_LIST: {
      LogicalType child(duckdb_list_type_child_type(type));
      return 16 + NominalWidth(child.get());
    }
    case DUCKDB_TYPE_STRUCT: {
      int64_t sum = 0;
      for (idx_t i = 0; i < duckdb_struct_type_child_count(type); ++i) {
        LogicalType child(duckdb_struct_type_child_type(type, i));
        sum += NominalWidth(child.get());
      }
      return std::max<int64_t>(sum, 1);
    }
    default: return 16;
  }
}

// The in-memory size of the first `count` values of `vector`, for
// JobLimits::max_result_bytes: NominalWidth per value, strings and blobs at
// their length plus 16, lists and arrays with their elements, structs as the
// sum of their fields. Values of other nested types (UNION) count 16 bytes.
int64_t VectorBytes(duckdb_vector vector, duckdb_logical_type type, idx_t count) {
  switch (duckdb_get_type_id(type)) {
    case DUCKDB_TYPE_VARCHAR:
    case DUCKDB_TYPE_BLOB:
    case DUCKDB_TYPE_BIT: {
      const auto* data = static_cast<duckdb_string_t*>(duckdb_vector_get_data(vector));
      uint64_t* validity = duckdb_vector_get_validity(vector);
      int64_t sum = 0;
      for (idx_t r = 0; r < count; ++r) {
        sum += 16;
        if (validity == nullptr || duckdb_validity_row_is_valid(validity, r)) sum += duckdb_string_t_length(data[r]);
      }
      return sum;
    }
    case DUCKDB_TYPE_LIST: {
      LogicalType child(duckdb_list_type_child_type(type));
      return 16 * static_cast<int64_t>(count) +
             VectorBytes(duckdb_list_vector_get_child(vector), child.get(), duckdb_list_vector_get_size(vector));
    }
    case DUCKDB_TYPE_MAP: {
      LogicalType key(duckdb_map_type_key_type(type));
      LogicalType value(duckdb_map_type_value_type(type));
      duckdb_vector entries = duckdb_list_vector_get_child(vector);
      const idx_t size = duckdb_list_vector_get_size(vector);
      return 16 * static_cast<int64_t>(count) + VectorBytes(duckdb_struct_vector_get_child(entries, 0), key.get(), size) +
             VectorBytes(duckdb_struct_vector_get_child(entries, 1), value.get(), size);
    }
    case DUCKDB_TYPE_ARRAY: {
      LogicalType child(duckdb_array_type_child_type(type));
      return VectorBytes(duckdb_array_vector_get_child(vector), child.get(), count * duckdb_array_type_array_size(type));
    }
    case DUCKDB_TYPE_STRUCT: {
      int64_t sum = 0;
      for (idx_t i = 0; i < duckdb_struct_type_child_count(type); ++i) {
        LogicalType child(duckdb_struct_type_child_type(type, i));
        sum += VectorBytes(duckdb_struct_vector_get_child(vector, i), child.get(), count);
      }
      return sum;
    }
    default:
      return NominalWidth(type) * static_cast<int64_t>(count);
  }
}

// A set of nonzero 64-bit fingerprints: open addressing, linear probing,
// backward-shift deletion (no tombstones), in one flat array kept at most
// half full. Fingerprints are hashes already, so their low bits index it.
class FingerprintSet {
 public:
  bool Contains(uint64_t fp) const {
    if (slots_.empty()) return false;
    for (size_t at = fp & mask(); slots_[at] != 0; at = (at + 1) & mask()) {
      if (slots_[at] == fp) return true;
    }
    return false;
  }
  // False when it was there already.
  bool Insert(uint64_t fp) {
    if (2 * (count_ + 1) > slots_.size()) Grow();
    size_t at = fp & mask();
    for (; slots_[at] != 0; at = (at + 1) & mask()) {
      if (slots_[at] == fp) return false;
    }
    slots_[at] = fp;
    ++count_;
    return true;
  }
  void Erase(uint64_t fp) {
    if (slots_.empty()) return;
    size_t at = fp & mask();
    for (; slots_[at] != fp; at = (at + 1) & mask()) {
      if (slots_[at] == 0) return;
    }
    // Shift back the entries of the run after the hole that may sit there.
    for (size_t next = (at + 1) & mask(); slots_[next] != 0; next = (next + 1) & mask()) {
      const size_t home = slots_[next] & mask();
      // Movable when its home is not within (at, next] cyclically.
      if (((next - home) & mask()) >= ((next - at) & mask())) {
        slots_[at] = slots_[next];
        at = next;
      }
    }
    slots_[at] = 0;
    --count_;
  }
  void Reserve(size_t n) {
    while (2 * n > slots_.size()) Grow();
  }

 private:
  size_t mask() const { return slots_.size() - 1; }
  void Grow() {
    std::vector<uint64_t> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : 2 * old.size(), 0);
    count_ = 0;
    for (uint64_t fp : old) {
      if (fp != 0) Insert(fp);
    }
  }
  std::vector<uint64_t> slots_;  // 0 = empty; the size a power of two
  size_t count_ = 0;
};

// Remembers fingerprints of the most recent records written to one instance:
// the set, and the same fingerprints in insertion order (a ring once full).
struct DedupWindow {
  FingerprintSet seen;
  std::vector<uint64_t> order;
  size_t oldest = 0;  // ring position of the oldest once `order` is full

  void Add(uint64_t fp, size_t capacity) {
    if (capacity == 0 || !seen.Insert(fp)) return;
    if (order.size() < capacity) {
      order.push_back(fp);
      return;
    }
    seen.Erase(order[oldest]);
    order[oldest] = fp;
    oldest = (oldest + 1) % order.size();
  }
};

uint64_t Fingerprint(const driver::Record& record) {
  const uint64_t a = std::hash<std::string_view>{}(record.key);
  const uint64_t b = std::hash<std::string_view>{}(record.avro);
  uint64_t h = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  h ^= static_cast<uint64_t>(record.timestamp_ms) * 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h == 0 ? 1 : h;  // 0 marks an empty slot in FingerprintSet
}

struct JobState {
  Uuid id;
  std::string sql;
  JobOptions options;
  JobStatus status = JobStatus::kPending;
  std::string error;
  int64_t bytes_scanned = 0;
  int64_t rows = 0;
  bool dropped = false;  // forgotten by Reset while queued or running
  int64_t finished_ms = 0;  // clock time the job finished (done or failed)
  // RunJob's answer when done: result columns (hidden ones removed) and the
  // select list reading them; stored in the results table, not kept here.
  std::vector<Column> columns;
  std::string select_list;
};

Job Snapshot(const JobState& state) {
  Job job;
  job.job_id = state.id;
  job.status = state.status;
  job.error = state.error;
  job.bytes_scanned = state.bytes_scanned;
  job.rows = state.rows;
  return job;
}

class DuckDBWarehouse final : public driver::WarehouseService {
 public:
  DuckDBWarehouse(Clock* clock, int64_t dedup_window, int64_t max_queued_jobs, int64_t applied_window_ms)
      : clock_(clock),
        dedup_window_(dedup_window),
        max_queued_jobs_(max_queued_jobs),
        applied_window_ms_(applied_window_ms) {}

  ~DuckDBWarehouse() override {
    gauges_.reset();  // waits for a /metrics render using metrics_conn_
    {
      std::unique_lock lock(jobs_mu_);
      stopping_ = true;
      jobs_cv_.notify_all();
      watchdog_cv_.notify_all();
      InterruptUntilIdle(lock);
    }
    for (auto& thread : threads_) thread.join();
    // Connections close before the database (member order does the rest).
    slots_.clear();
  }

  Status Open(const std::string& path, int job_threads, const std::string& memory_limit,
              const std::string& max_temp_directory_size, const std::string& checkpoint_threshold) {
    Config config;
    if (duckdb_create_config(config.out()) == DuckDBError) return Internal("duckdb: cannot create a config");
    // Defence in depth: SQL reaching the driver is checked by the engine, but
    // no query may touch files, load extensions or change these settings.
    // Every setting is checked: a warehouse that silently kept external
    // access on would fail open.
    auto set = [&](const char* name, const std::string& value) -> Status {
      if (duckdb_set_config(config.get(), name, value.c_str()) == DuckDBError) {
        return InvalidArgument("duckdb: cannot set {} to '{}'", name, value);
      }
      return Status::OK();
    };
    AQ_RETURN_IF_ERROR(set("enable_external_access", "false"));
    AQ_RETURN_IF_ERROR(set("autoinstall_known_extensions", "false"));
    AQ_RETURN_IF_ERROR(set("autoload_known_extensions", "false"));
    if (!memory_limit.empty()) AQ_RETURN_IF_ERROR(set("memory_limit", memory_limit));
    if (!max_temp_directory_size.empty()) {
      AQ_RETURN_IF_ERROR(set("max_temp_directory_size", max_temp_directory_size));
    }
    if (!checkpoint_threshold.empty()) AQ_RETURN_IF_ERROR(set("checkpoint_threshold", checkpoint_threshold));
    char* error = nullptr;
    if (duckdb_open_ext(path == ":memory:" ? nullptr : path.c_str(), db_.out(), config.get(), &error) ==
        DuckDBError) {
      Status status = Unavailable("duckdb: cannot open {}: {}", path, error != nullptr ? error : "unknown error");
      duckdb_free(error);
      return status;
    }
    if (path != ":memory:") {
      db_dir_ = std::filesystem::absolute(path).parent_path().string();
      wal_path_ = path + ".wal";
    }
    AQ_ASSIGN_OR_RETURN(write_conn_, Connect());
    AQ_ASSIGN_OR_RETURN(read_conn_, Connect());
    AQ_ASSIGN_OR_RETURN(admin_conn_, Connect());
    AQ_ASSIGN_OR_RETURN(metrics_conn_, Connect());
    gauges_ = driver::RegisterGaugeSource([this](std::vector<driver::Gauge>* out) {
      // DuckDB's buffer manager: what its memory_limit bounds (a read of counters, no scan).
      std::lock_guard lock(metrics_mu_);
      auto used = QueryInt(metrics_conn_.get(), "SELECT sum(memory_usage_bytes)::BIGINT FROM duckdb_memory()");
      if (used.ok()) {
        out->push_back(driver::Gauge{"aquifer_duckdb_memory_bytes",
                                     "Memory DuckDB's buffer manager holds (duckdb_memory()), bounded by memory_limit.",
                                     "", *used});
      }
    });
    AQ_RETURN_IF_ERROR(LoadResults());
    // The database file (maybe just made) and its WAL are durable entries.
    AQ_RETURN_IF_ERROR(SyncWalEntry(/*force=*/true));
    AQ_RETURN_IF_ERROR(Exec(admin_conn_.get(), "SET lock_configuration = true"));
    for (int i = 0; i < job_threads; ++i) {
      auto slot = std::make_unique<Slot>();
      AQ_ASSIGN_OR_RETURN(slot->conn, Connect());
      AQ_ASSIGN_OR_RETURN(slot->append_conn, Connect());
      slots_.push_back(std::move(slot));
    }
    for (auto& slot : slots_) threads_.emplace_back([this, s = slot.get()] { WorkerLoop(s); });
    threads_.emplace_back([this] { WatchdogLoop(); });
    return Status::OK();
  }

  WarehouseCapabilities capabilities() const override {
    WarehouseCapabilities caps;
    caps.dry_run_bytes = true;
    caps.stores_rows = true;
    caps.dedups_retries = dedup_window_ > 0;
    return caps;
  }

  std::string TableName(const InstanceInfo& instance) const override {
    return QuoteIdent(TableBaseName(instance.instance_id));
  }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (!instance.schema) return InvalidArgument("duckdb: instance {} has no schema", instance.instance_id.ToString());
    std::lock_guard lock(write_mu_);
    VersionsMove moved{this, /*schema=*/true};
    NoteRetention(instance);
    AQ_RETURN_IF_ERROR(Exec(write_conn_.get(), CreateTableSql(TableName(instance), *instance.schema))
                           .WithContext("duckdb: register instance"));
    AQ_RETURN_IF_ERROR(Exec(write_conn_.get(), "CREATE TABLE IF NOT EXISTS " + AppliedTableName(instance.instance_id) +
                                                   " (id VARCHAR NOT NULL, applied_ms BIGINT NOT NULL)")
                           .WithContext("duckdb: register instance"));
    return SyncWalEntry();
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    std::lock_guard lock(write_mu_);
    VersionsMove moved{this, /*schema=*/true};
    dedup_.erase(instance.instance_id);
    pruned_ms_.erase(instance.instance_id);
    retention_ms_.erase(TableName(instance));
    AQ_RETURN_IF_ERROR(Exec(write_conn_.get(), "DROP TABLE IF EXISTS " + AppliedTableName(instance.instance_id))
                           .WithContext("duckdb: remove instance"));
    AQ_RETURN_IF_ERROR(Exec(write_conn_.get(), "DROP TABLE IF EXISTS " + TableName(instance))
                           .WithContext("duckdb: remove instance"));
    return SyncWalEntry();
  }

  Status WriteToWarehouse(const InstanceInfo& instance, std::span<const driver::Record> records,
                          std::span<const driver::RecordGroup> groups) override {
    VersionsMove moved{this, /*schema=*/false, TableBaseName(instance.instance_id)};
    AQ_RETURN_IF_ERROR(WriteCommitted(instance, records, groups));
    return SyncWalEntry();
  }
  Result<QueryAnalysis> AnalyzeQuery(std::string_view sql) override {
    std::lock_guard lock(admin_mu_);
    return Analyze(admin_conn_.get(), sql);
  }
  Result<Job> StartQuery(const Uuid& job_id, std::string_view sql, const JobOptions& options) override;
  Result<Job> PollJob(const Uuid& job_id) override {
    ExpireResults();
    {
      std::lock_guard lock(jobs_mu_);
      auto it = jobs_.find(job_id);
      if (it != jobs_.end()) return Snapshot(*it->second);
    }
    // Done in an earlier run of this process: its stored result says so.
    AQ_ASSIGN_OR_RETURN(std::optional<StoredResult> stored, ReadStoredResult(job_id));
    if (!stored) return NotFound("duckdb: no job {}", job_id.ToString());
    Job job;
    job.job_id = job_id;
    job.status = JobStatus::kDone;
    job.rows = stored->rows;
    job.bytes_scanned = stored->bytes_scanned;
    return job;
  }
  Result<RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) override;
  Result<driver::SmallResult> RunSmall(std::string_view sql, const driver::SmallQueryLimits& limits) override;
  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    std::lock_guard lock(write_mu_);
    NoteRetention(instance);
    if (instance.warehouse_retention_ms <= 0) return int64_t{0};
    return DeleteExpired(TableName(instance), instance.warehouse_retention_ms, /*missing_ok=*/true);
  }
  Result<int64_t> CountStoredRows(const InstanceInfo& instance) override {
    std::lock_guard lock(write_mu_);
    AQ_ASSIGN_OR_RETURN(bool exists, TableExists(instance));
    if (!exists) return int64_t{0};
    AQ_ASSIGN_OR_RETURN(auto rows, QueryText(write_conn_.get(),
                                             "SELECT CAST(count(*) AS VARCHAR) FROM " + TableName(instance)));
    if (rows.size() != 1 || rows[0].size() != 1) return Internal("duckdb: counting rows returned no count");
    return std::stoll(rows[0][0]);
  }
  Status Reset() override;

 private:
  // Retention (README.md, "Retention"). Remembers the instance's retention
  // for the jobs that read its table. Requires write_mu_.
  void NoteRetention(const InstanceInfo& instance) {
    if (instance.warehouse_retention_ms > 0) {
      retention_ms_[TableName(instance)] = instance.warehouse_retention_ms;
    } else {
      retention_ms_.erase(TableName(instance));
    }
  }
  // Deletes the rows of `table` older than the retention; returns how many.
  // Requires write_mu_.
  Result<int64_t> DeleteExpired(const std::string& table, int64_t retention_ms, bool missing_ok) {
    // Moves the table's data version unless nothing was deleted (the purge
    // before every query of a table with a retention keeps its cached plans).
    VersionsMove moved{this, /*schema=*/false,
                       table.size() > 2 && table.front() == '"' ? table.substr(1, table.size() - 2) : table};
    const int64_t horizon = driver::RetentionHorizon(retention_ms, clock_->NowMillis());
    // __timestamp is in microseconds; a horizon outside the type's range keeps everything.
    if (horizon <= std::numeric_limits<int64_t>::min() / 1000) {
      moved.table.clear();
      return int64_t{0};
    }
    const int64_t micros = std::min(horizon, std::numeric_limits<int64_t>::max() / 1000) * 1000;
    RowChange rows{this, moved.table};
    QueryResult result;
    if (duckdb_query(write_conn_.get(),
                     fmt::format("DELETE FROM {} WHERE __timestamp < make_timestamp({})", table, micros).c_str(),
                     result.out()) == DuckDBError) {
      const char* error = duckdb_result_error(result.get());
      std::string message = error != nullptr ? error : "unknown error";
      if (missing_ok && message.find("does not exist") != std::string::npos) return int64_t{0};
      return Internal("duckdb: deleting expired rows of {}: {}", table, message);
    }
    const int64_t deleted = static_cast<int64_t>(duckdb_rows_changed(result.get()));
    if (deleted == 0) {
      moved.table.clear();
      rows.added = 0;
    }
    return deleted;
  }
  // Before a job runs: deletes the expired rows of every table with a
  // retention that its SQL names (the engine spells tables as TableName()),
  // so the job never reads an expired row, purged or not.
  Status PurgeReferenced(std::string_view sql) {
    std::lock_guard lock(write_mu_);
    for (const auto& [table, retention] : retention_ms_) {
      if (sql.find(table) == std::string_view::npos) continue;
      AQ_RETURN_IF_ERROR(DeleteExpired(table, retention, /*missing_ok=*/true).status());
    }
    return Status::OK();
  }
  Result<bool> TableExists(const InstanceInfo& instance) {
    AQ_ASSIGN_OR_RETURN(auto rows, QueryText(write_conn_.get(),
                                             fmt::format("SELECT table_name FROM duckdb_tables() WHERE schema_name = "
                                                         "'main' AND table_name = {}",
                                                         QuoteLiteral(TableBaseName(instance.instance_id)))));
    return !rows.empty();
  }

  struct Slot {
    Connection conn;
    // Appends the job's rows to its result table while `conn` streams them:
    // an appender flushing on `conn` itself would end the stream.
    Connection append_conn;
    std::shared_ptr<JobState> current;
    std::chrono::steady_clock::time_point deadline;
    bool timed_out = false;
  };

  Result<Connection> Connect() {
    Connection conn;
    if (duckdb_connect(db_.get(), conn.out()) == DuckDBError) return Internal("duckdb: cannot connect");
    return conn;
  }

  Result<QueryAnalysis> Analyze(duckdb_connection conn, std::string_view sql);
  // The checked plan's scans of a trimmed SELECT (statement checks, EXPLAIN),
  // from plans_ while the text's Stamp holds.
  Result<std::vector<PlanScan>> PlanOf(duckdb_connection conn, const std::string& sql);
  // The statement checks of a trimmed text: one statement, a SELECT, no parameters.
  Status CheckStatement(duckdb_connection conn, const std::string& sql);
  // A table's row count (RowCount) and column widths (while the schema
  // version holds), for the bytes-scanned estimate.
  struct TableStats {
    int64_t rows = 0;
    std::vector<std::pair<std::string, int64_t>> widths;  // lower-cased column name → nominal width
  };
  Result<TableStats> StatsOf(duckdb_connection conn, const std::string& table);
  void WorkerLoop(Slot* slot);
  void WatchdogLoop();
  // Runs one job on the slot's connections; fills status/error/rows/columns of `result`.
  void RunJob(Slot* slot, const JobState& job, JobState* result);
  // Drops the rows of done jobs whose result_ttl_ms has passed (called on
  // every job call: expiry needs no thread of its own).
  void ExpireResults();
  // Creates the results schema and table, drops the tables of jobs that
  // never finished (the process stopped under them) or expired, and
  // schedules the expiry of the stored results. Called by Open.
  Status LoadResults();
  // The stored result of a done job, nullopt when none is stored.
  Result<std::optional<StoredResult>> ReadStoredResult(const Uuid& job_id);

  // Which groups are new (false: applied before, or repeated in the call).
  // FailedPrecondition when the applied-id table is missing (register again).
  // Requires write_mu_.
  Result<std::vector<bool>> FreshGroups(const InstanceInfo& instance,
                                        std::span<const driver::RecordGroup> groups);
  // In the open transaction: records the fresh groups' ids, and now and then
  // deletes ids older than the window. Requires write_mu_.
  Status RecordApplied(const InstanceInfo& instance, std::span<const driver::RecordGroup> groups,
                       const std::vector<bool>& fresh, int64_t now_ms);

  Clock* clock_;
  const int64_t dedup_window_;
  const int64_t max_queued_jobs_;  // StartQuery refuses more waiting jobs (0: no bound)
  const int64_t applied_window_ms_;
  Database db_;  // declared first: destroyed last

  // DuckDB fsyncs its WAL at every commit but never the directory that holds
  // it, and each checkpoint removes the WAL, which the next commit makes
  // again: until that directory is synced, a power cut can take the new WAL
  // and every commit in it (found by tests/power/power_db_test.cc). So after
  // each commit, when the WAL is not the file last made durable (or is
  // gone), SyncWalEntry() syncs the directory: one stat per write, an fsync
  // per checkpoint. No-op for ":memory:".
  Status SyncWalEntry(bool force = false);

  // DuckDB 1.4.4 reverts the rows of a commit that failed (its WAL write or
  // fsync failed: EIO, ENOSPC) but not the bytes they added to the string
  // dictionary of the table's in-memory segment, so the next string appended
  // to that segment reads back as the reverted strings and itself
  // concatenated, in the table and in the WAL (an applied group id of 80 hex
  // digits instead of 40: the message was applied again after a restart; see
  // README, Durability). A CHECKPOINT rewrites every table from its rows and
  // drops the damaged segments. So a failed commit sets checkpoint_needed_,
  // and nothing is appended (writes, stored job results) until a CHECKPOINT
  // has succeeded: CheckpointIfNeeded() runs it first, and fails the write
  // (Unavailable, retried by the engine) when it cannot.
  std::atomic<bool> checkpoint_needed_{false};
  // Requires write_mu_.
  Status CheckpointIfNeeded();
  // A failed COMMIT (or auto-committed append): the status, after marking.
  Status CommitFailed(Status status) {
    checkpoint_needed_.store(true);
    return status;
  }
  Status WriteCommitted(const InstanceInfo& instance, std::span<const driver::Record> records,
                        std::span<const driver::RecordGroup> groups);
  std::string db_dir_;    // empty for ":memory:"
  std::string wal_path_;
  std::mutex wal_mu_;     // guards the three below
  bool wal_present_ = false;
  dev_t wal_dev_ = 0;
  ino_t wal_ino_ = 0;

  std::mutex write_mu_;  // guards write_conn_, dedup_ and pruned_ms_; serialises writes and DDL
  Connection write_conn_;
  std::unordered_map<Uuid, DedupWindow, UuidHash> dedup_;
  std::unordered_map<Uuid, int64_t, UuidHash> pruned_ms_;  // last prune of applied ids
  std::unordered_map<std::string, int64_t> retention_ms_;  // TableName → warehouse_retention_ms (> 0)

  std::mutex read_mu_;  // guards read_conn_ (job pages)
  Connection read_conn_;

  std::mutex admin_mu_;  // guards admin_conn_ (analysis, reset)
  Connection admin_conn_;

  std::mutex metrics_mu_;  // guards metrics_conn_ (the /metrics gauge)
  Connection metrics_conn_;
  std::unique_ptr<driver::GaugeRegistration> gauges_;  // released first in the destructor

  // The analysis cache and RunSmall's prepared statements (README.md, "Plan
  // cache"). A plan DuckDB makes depends on the schema and on the statistics
  // of the rows of the tables it reads (a filter the statistics rule out
  // becomes an empty result), so what is cached for a SQL text holds while
  // its Stamp holds: the schema version, which moves after every DDL on the
  // tables user SQL reads (register, remove, reset), and the data versions
  // of the tables the text names (every table user SQL may read is named in
  // it as "i_<hex>": the engine's rewrite), each moving after every change of
  // that table's rows (writes, retention deletes). Versions move after the
  // change has committed, and a stamp is read before the work it stamps, so
  // nothing computed across a change is used after it. Versions only grow:
  // the sum over the named tables moves whenever one of them does.
  static constexpr size_t kMaxCachedPlans = 512;
  struct Stamp {
    uint64_t schema = 0;
    uint64_t data = 0;  // sum of the named tables' data versions
    bool operator==(const Stamp&) const = default;
  };
  struct CachedPlan {
    Stamp stamp;
    std::vector<PlanScan> scans;
  };
  struct CachedStats {
    bool has_widths = false;
    uint64_t schema_version = 0;
    TableStats stats;  // its widths (the rows come from row_counts_)
  };
  // A table's row count as the driver tracks it, for the estimate: read once
  // from duckdb_tables().estimated_size, then moved by the rows each
  // committed append adds (exactly what estimated_size would say for these
  // append-only tables), so a write does not cost the next query a catalog
  // read. Unknown again (read afresh) after a write that failed or deleted
  // rows, and after every schema change. A count read while a change was
  // under way, or across the start of one, is not kept (writes are
  // serialised by write_mu_; `changes` moves when one begins).
  struct RowCount {
    bool known = false;
    bool changing = false;
    int64_t rows = 0;
    uint64_t changes = 0;
  };
  // The stamp of `sql` now.
  Stamp StampOf(std::string_view sql) {
    Stamp stamp;
    stamp.schema = schema_version_.load(std::memory_order_acquire);
    std::lock_guard lock(plan_mu_);
    if (table_versions_.empty()) return stamp;
    for (size_t at = sql.find("i_"); at != std::string_view::npos; at = sql.find("i_", at + 2)) {
      if (at + 34 > sql.size()) break;
      auto it = table_versions_.find(std::string(sql.substr(at, 34)));
      if (it != table_versions_.end()) stamp.data += it->second;
    }
    return stamp;
  }
  std::atomic<uint64_t> schema_version_{0};
  std::atomic<int64_t> plan_hits_{0}, plan_misses_{0};
  std::mutex plan_mu_;  // guards the four below
  std::unordered_map<std::string, uint64_t> table_versions_;  // table name (unquoted) → data version
  std::unordered_map<std::string, CachedPlan> plans_;         // trimmed physical SQL → its plan's scans
  std::unordered_map<std::string, CachedStats> stats_;        // table name (unquoted) → its widths
  std::unordered_map<std::string, RowCount> row_counts_;      // table name (unquoted) → its row count
  // Moves the schema version, or one table's data version, when it goes out
  // of scope (after the change, on every path).
  struct VersionsMove {
    DuckDBWarehouse* self;
    bool schema;
    std::string table = {};  // unquoted; for a data change (cleared: no change)
    ~VersionsMove() {
      if (schema) {
        {
          std::lock_guard lock(self->plan_mu_);
          for (auto& [name, count] : self->row_counts_) {
            ++count.changes;
            count.known = false;
          }
        }
        self->schema_version_.fetch_add(1, std::memory_order_acq_rel);
      } else if (!table.empty()) {
        std::lock_guard lock(self->plan_mu_);
        ++self->table_versions_[table];
      }
    }
  };

  // Marks a change of a table's rows under way (under write_mu_) and, when
  // it goes out of scope, moves the tracked count by `added` rows, or makes
  // it unknown (added < 0: a failed write, a delete).
  struct RowChange {
    DuckDBWarehouse* self;
    std::string table;  // unquoted
    int64_t added = -1;
    RowChange(DuckDBWarehouse* self_in, std::string table_in) : self(self_in), table(std::move(table_in)) {
      std::lock_guard lock(self->plan_mu_);
      RowCount& count = self->row_counts_[table];
      count.changing = true;
      ++count.changes;
    }
    RowChange(const RowChange&) = delete;
    RowChange& operator=(const RowChange&) = delete;
    ~RowChange() {
      std::lock_guard lock(self->plan_mu_);
      RowCount& count = self->row_counts_[table];
      count.changing = false;
      if (added >= 0 && count.known) {
        count.rows += added;
      } else {
        count.known = false;
      }
    }
  };

  std::mutex jobs_mu_;  // guards everything below
  // Interrupts every running job until all have returned. A job runs several
  // statements, and an interrupt that lands between two of them is lost, so
  // once is not enough. Requires `lock` on jobs_mu_.
  void InterruptUntilIdle(std::unique_lock<std::mutex>& lock) {
    auto busy = [&] {
      return std::any_of(slots_.begin(), slots_.end(),
                         [](const auto& slot) { return slot->current != nullptr; });
    };
    while (busy()) {
      for (auto& slot : slots_) {
        if (slot->current) duckdb_interrupt(slot->conn.get());
      }
      idle_cv_.wait_for(lock, std::chrono::milliseconds(10));
    }
  }

  // RunSmall: connections kept for reuse (guarded by small_mu_), and the runs
  // in flight with their deadlines (guarded by jobs_mu_; the watchdog
  // interrupts a run past its deadline like a job).
  struct SmallRun {
    duckdb_connection conn = nullptr;
    std::chrono::steady_clock::time_point deadline;
    bool timed_out = false;
  };
  // Each keeps up to kMaxStatementsPerConn prepared statements by SQL text.
  struct SmallStatement {
    Stamp stamp;  // of its text when it was prepared
    Prepared prepared;
    idx_t column_count = 0;
    std::vector<driver::Column> columns;  // the visible ones
    std::vector<idx_t> visible;           // their indexes in the result
  };
  struct SmallConn {
    Connection conn;  // declared first: closed after its statements
    std::unordered_map<std::string, std::unique_ptr<SmallStatement>> statements;
  };
  static constexpr size_t kMaxStatementsPerConn = 64;
  std::mutex small_mu_;
  std::vector<std::unique_ptr<SmallConn>> small_conns_;
  std::vector<SmallRun*> small_runs_;

  std::condition_variable jobs_cv_;      // work queued, or stopping
  std::condition_variable watchdog_cv_;  // a deadline changed, or stopping
  std::condition_variable idle_cv_;      // a worker finished a job
  bool stopping_ = false;
  std::deque<std::shared_ptr<JobState>> queue_;
  std::unordered_map<Uuid, std::shared_ptr<JobState>, UuidHash> jobs_;
  std::multimap<int64_t, Uuid> expiries_;  // done jobs by the clock time their rows expire
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::thread> threads_;
};

Result<std::vector<bool>> DuckDBWarehouse::FreshGroups(const InstanceInfo& instance,
                                                       std::span<const driver::RecordGroup> groups) {
  std::string list;
  for (const auto& group : groups) {
    if (!list.empty()) list += ", ";
    list += QuoteLiteral(HexOf(group.id));
  }
  auto found = QueryYielding(write_conn_.get(), "SELECT id FROM " + AppliedTableName(instance.instance_id) +
                                            " WHERE id IN (" + list + ")");
  if (!found.ok()) {
    return FailedPrecondition("duckdb: reading the applied ids of {} (instance not registered?): {}",
                              TableName(instance), found.status().message());
  }
  std::unordered_set<std::string> applied;
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(found->ref()));
    if (!chunk) break;
    for (idx_t r = 0; r < duckdb_data_chunk_get_size(chunk.get()); ++r) {
      applied.emplace(StringAt(duckdb_data_chunk_get_vector(chunk.get(), 0), r));
    }
  }
  std::vector<bool> fresh(groups.size());
  for (size_t group_idx = 0; group_idx < groups.size(); ++group_idx) {
    // Inserting the id also marks a repeat within the call as applied.
    fresh[group_idx] = applied.insert(HexOf(groups[group_idx].id)).second;
  }
  return fresh;
}

Status DuckDBWarehouse::RecordApplied(const InstanceInfo& instance, std::span<const driver::RecordGroup> groups,
                                      const std::vector<bool>& fresh, int64_t now_ms) {
  const std::string table = AppliedTableName(instance.instance_id);
  std::string values;
  for (size_t group_idx = 0; group_idx < groups.size(); ++group_idx) {
    if (!fresh[group_idx]) continue;
    if (!values.empty()) values += ", ";
    values += fmt::format("({}, {})", QuoteLiteral(HexOf(groups[group_idx].id)), now_ms);
  }
  if (!values.empty()) {
    AQ_RETURN_IF_ERROR(ExecYielding(write_conn_.get(), "INSERT INTO " + table + " VALUES " + values)
                           .WithContext("duckdb: recording applied ids"));
  }
  int64_t& last = pruned_ms_[instance.instance_id];
  if (last == 0 || now_ms - last >= kPruneIntervalMs) {
    last = now_ms;
    AQ_RETURN_IF_ERROR(ExecYielding(write_conn_.get(), fmt::format("DELETE FROM {} WHERE applied_ms < {}", table,
                                                           now_ms - applied_window_ms_))
                           .WithContext("duckdb: pruning applied ids"));
  }
  return Status::OK();
}

Status DuckDBWarehouse::SyncWalEntry(bool force) {
  if (db_dir_.empty()) return Status::OK();
  struct stat st;
  const bool present = ::stat(wal_path_.c_str(), &st) == 0;
  std::lock_guard lock(wal_mu_);
  if (!force && present == wal_present_ && (!present || (st.st_dev == wal_dev_ && st.st_ino == wal_ino_))) {
    return Status::OK();
  }
  int fd = ::open(db_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Unavailable("duckdb: opening {} to sync it: {}", db_dir_, std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int saved_errno = errno;
  ::close(fd);
  if (!ok) return Unavailable("duckdb: syncing the directory {}: {}", db_dir_, std::strerror(saved_errno));
  wal_present_ = present;
  wal_dev_ = present ? st.st_dev : 0;
  wal_ino_ = present ? st.st_ino : 0;
  return Status::OK();
}

Status DuckDBWarehouse::CheckpointIfNeeded() {
  if (!checkpoint_needed_.load()) return Status::OK();
  if (Status status = Exec(write_conn_.get(), "CHECKPOINT"); !status.ok()) {
    return Unavailable("duckdb: a commit failed earlier and the checkpoint that must follow it failed: {}",
                       status.message());
  }
  checkpoint_needed_.store(false);
  AQ_LOG(Info, "duckdb: checkpointed after a failed commit");
  return SyncWalEntry();  // the checkpoint removed the WAL
}

Status DuckDBWarehouse::WriteCommitted(const InstanceInfo& instance,
                                       std::span<const driver::Record> records,
                                       std::span<const driver::RecordGroup> groups) {
  if (Status checked = driver::CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext("duckdb: writing to " + TableName(instance));
  }
  if (records.empty() && groups.empty()) return Status::OK();
  if (!instance.schema) return InvalidArgument("duckdb: instance {} has no schema", instance.instance_id.ToString());
  const schema::Schema& schema = *instance.schema;
  const int64_t now_ms = clock_->NowMillis();

  std::unique_lock lock(write_mu_);
  AQ_RETURN_IF_ERROR(CheckpointIfNeeded());
  NoteRetention(instance);
  // Exactly once: which records belong to groups not applied yet.
  std::vector<bool> fresh;
  std::vector<bool> record_fresh;
  if (!groups.empty()) {
    AQ_ASSIGN_OR_RETURN(fresh, FreshGroups(instance, groups));
    if (std::none_of(fresh.begin(), fresh.end(), [](bool f) { return f; })) return Status::OK();
    record_fresh.reserve(records.size());
    for (size_t group_idx = 0; group_idx < groups.size(); ++group_idx) {
      record_fresh.insert(record_fresh.end(), groups[group_idx].records, fresh[group_idx]);
    }
  }

  // Which records to append. They are decoded below straight into the
  // appender's chunk; a bad record rolls the whole batch back.
  std::vector<size_t> keep;
  std::vector<uint64_t> fingerprints;
  keep.reserve(records.size());
  // Fingerprints are the best effort for writes without group ids; with ids
  // the applied-id table is exact (and equal records of two writes are two rows).
  DedupWindow* window = dedup_window_ > 0 && groups.empty() ? &dedup_[instance.instance_id] : nullptr;
  FingerprintSet in_batch;
  if (window != nullptr) in_batch.Reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const driver::Record& record = records[i];
    if (!record_fresh.empty() && !record_fresh[i]) continue;
    if (instance.warehouse_retention_ms > 0 && record.timestamp_ms < now_ms - instance.warehouse_retention_ms) {
      continue;  // already expired
    }
    if (record.timestamp_ms > std::numeric_limits<int64_t>::max() / 1000 ||
        record.timestamp_ms < std::numeric_limits<int64_t>::min() / 1000) {
      return InvalidArgument("duckdb: record {}: timestamp {} out of range", i, record.timestamp_ms);
    }
    if (window != nullptr) {
      const uint64_t fp = Fingerprint(record);
      if (window->seen.Contains(fp) || !in_batch.Insert(fp)) continue;
      fingerprints.push_back(fp);
    }
    keep.push_back(i);
  }
  if (keep.empty()) {
    if (groups.empty()) return Status::OK();
    // Nothing to append (every record expired), but the groups are applied.
    AQ_RETURN_IF_ERROR(ExecYielding(write_conn_.get(), "BEGIN TRANSACTION"));
    if (Status status = RecordApplied(instance, groups, fresh, now_ms); !status.ok()) {
      (void)ExecYielding(write_conn_.get(), "ROLLBACK");
      return status;
    }
    if (Status status = ExecYielding(write_conn_.get(), "COMMIT"); !status.ok()) {
      (void)ExecYielding(write_conn_.get(), "ROLLBACK");
      return CommitFailed(status.WithContext("duckdb: commit"));
    }
    return Status::OK();
  }

  duckdb_connection conn = write_conn_.get();
  const std::string table = TableBaseName(instance.instance_id);
  Appender appender;
  if (duckdb_appender_create_ext(conn, nullptr, "main", table.c_str(), appender.out()) == DuckDBError) {
    const char* message = appender ? duckdb_appender_error(appender.get()) : nullptr;
    return NotFound("duckdb: cannot append to {} (instance not registered?): {}", TableName(instance),
                    message != nullptr ? message : "unknown error");
  }
  const size_t field_count = schema.fields().size();
  const idx_t column_count = duckdb_appender_column_count(appender.get());
  if (column_count != field_count + 2) {
    return FailedPrecondition("duckdb: table {} has {} columns, the schema needs {}", TableName(instance),
                              column_count, field_count + 2);
  }
  std::vector<LogicalType> owned_types;
  std::vector<duckdb_logical_type> types;
  for (idx_t c = 0; c < column_count; ++c) {
    owned_types.emplace_back(duckdb_appender_column_type(appender.get(), c));
    types.push_back(owned_types.back().get());
  }

  RowChange row_change{this, table};
  AQ_RETURN_IF_ERROR(ExecYielding(conn, "BEGIN TRANSACTION"));
  auto fail = [&](Status status) {
    appender.Reset();
    (void)ExecYielding(conn, "ROLLBACK");
    return status;
  };
  // One chunk, reset and refilled per duckdb_vector_size() rows; each record's
  // Avro is decoded straight into its vectors (AppendAvroRow).
  const idx_t chunk_capacity = duckdb_vector_size();
  DataChunk chunk(duckdb_create_data_chunk(types.data(), column_count));
  std::vector<duckdb_vector> vectors(column_count);
  for (size_t start = 0; start < keep.size(); start += chunk_capacity) {
    const size_t n = std::min<size_t>(chunk_capacity, keep.size() - start);
    if (start > 0) duckdb_data_chunk_reset(chunk.get());
    for (idx_t c = 0; c < column_count; ++c) vectors[c] = duckdb_data_chunk_get_vector(chunk.get(), c);
    duckdb_vector keys = vectors[field_count];
    auto* timestamps = static_cast<int64_t*>(duckdb_vector_get_data(vectors[field_count + 1]));
    for (size_t r = 0; r < n; ++r) {
      const size_t record_idx = keep[start + r];
      const driver::Record& record = records[record_idx];
      if (Status status = AppendAvroRow(schema.root(), record.avro, vectors.data(), r); !status.ok()) {
        return fail(status.WithContext(fmt::format("duckdb: record {}", record_idx)));
      }
      duckdb_vector_assign_string_element_len(keys, r, record.key.data(), record.key.size());
      timestamps[r] = record.timestamp_ms * 1000;  // TIMESTAMP is microseconds
    }
    duckdb_data_chunk_set_size(chunk.get(), n);
    if (duckdb_append_data_chunk(appender.get(), chunk.get()) == DuckDBError) {
      return fail(Internal("duckdb: append to {}: {}", TableName(instance), duckdb_appender_error(appender.get())));
    }
  }
  if (duckdb_appender_close(appender.get()) == DuckDBError) {
    return fail(Internal("duckdb: append to {}: {}", TableName(instance), duckdb_appender_error(appender.get())));
  }
  appender.Reset();
  if (!groups.empty()) {
    if (Status status = RecordApplied(instance, groups, fresh, now_ms); !status.ok()) return fail(status);
  }
  if (Status status = ExecYielding(conn, "COMMIT"); !status.ok()) {
    (void)ExecYielding(conn, "ROLLBACK");
    return CommitFailed(status.WithContext("duckdb: commit"));
  }
  row_change.added = static_cast<int64_t>(keep.size());
  if (window != nullptr) {
    for (uint64_t fp : fingerprints) window->Add(fp, static_cast<size_t>(dedup_window_));
  }
  return Status::OK();
}

Status DuckDBWarehouse::CheckStatement(duckdb_connection conn, const std::string& sql) {
  Extracted extracted;
  const idx_t count = duckdb_extract_statements(conn, sql.c_str(), extracted.out());
  if (count == 0) {
    const char* message = duckdb_extract_statements_error(extracted.get());
    return InvalidArgument("{}", message != nullptr ? message : "duckdb: no statement in query");
  }
  if (count > 1) return InvalidArgument("duckdb: expected one statement, got {}", count);
  Prepared prepared;
  if (duckdb_prepare_extracted_statement(conn, extracted.get(), 0, prepared.out()) == DuckDBError) {
    const char* message = duckdb_prepare_error(prepared.get());
    return InvalidArgument("{}", message != nullptr ? message : "duckdb: cannot prepare the query");
  }
  const duckdb_statement_type type = duckdb_prepared_statement_type(prepared.get());
  if (type != DUCKDB_STATEMENT_TYPE_SELECT) {
    return InvalidArgument("duckdb: only SELECT statements are accepted, got {}", StatementTypeName(type));
  }
  if (duckdb_nparams(prepared.get()) > 0) return InvalidArgument("duckdb: query parameters are not supported");
  return Status::OK();
}

Result<std::vector<PlanScan>> DuckDBWarehouse::PlanOf(duckdb_connection conn, const std::string& sql) {
  // The stamp before the work: a change that lands meanwhile moves it after
  // it commits, so what is stored below is never used past that change.
  const Stamp stamp = StampOf(sql);
  // Whether the statement checks passed for this text under this schema:
  // they depend on the text (and on the schema, for the prepare), not on the
  // rows, so after a write only the EXPLAIN runs again.
  bool checked = false;
  {
    std::lock_guard lock(plan_mu_);
    auto it = plans_.find(sql);
    if (it != plans_.end()) {
      if (it->second.stamp == stamp) {
        plan_hits_.fetch_add(1, std::memory_order_relaxed);
        return it->second.scans;
      }
      checked = it->second.stamp.schema == stamp.schema;
    }
  }
  if (!checked) AQ_RETURN_IF_ERROR(CheckStatement(conn, sql));
  AQ_ASSIGN_OR_RETURN(QueryResult plan, Query(conn, "EXPLAIN (FORMAT JSON) " + sql, StatusCode::kInvalidArgument));
  std::string plan_json;
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(plan.ref()));
    if (!chunk) break;
    const idx_t rows = duckdb_data_chunk_get_size(chunk.get());
    for (idx_t r = 0; r < rows; ++r) {
      if (StringAt(duckdb_data_chunk_get_vector(chunk.get(), 0), r) == "physical_plan") {
        plan_json = std::string(StringAt(duckdb_data_chunk_get_vector(chunk.get(), 1), r));
      }
    }
  }
  // Fail closed: a plan we cannot read is an error, never "reads no table".
  if (plan_json.empty()) return Internal("duckdb: EXPLAIN returned no physical plan for the query");
  Result<std::vector<PlanScan>> scans = ParsePlanScans(plan_json);
  if (!scans.ok()) return Internal("cannot check the query plan: {}", scans.status().message());
  plan_misses_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(plan_mu_);
  if (plans_.size() >= kMaxCachedPlans) plans_.clear();
  plans_.insert_or_assign(sql, CachedPlan{stamp, *scans});
  return scans;
}

Result<DuckDBWarehouse::TableStats> DuckDBWarehouse::StatsOf(duckdb_connection conn, const std::string& table) {
  const uint64_t schema_version = schema_version_.load(std::memory_order_acquire);
  CachedStats cached;
  bool rows_known = false;
  bool rows_keepable = false;  // no change under way when the count is read
  uint64_t changes = 0;
  {
    std::lock_guard lock(plan_mu_);
    auto it = stats_.find(table);
    if (it != stats_.end()) cached = it->second;
    RowCount& count = row_counts_[table];
    if (count.known) {
      cached.stats.rows = count.rows;
      rows_known = true;
    } else {
      rows_keepable = !count.changing;
      changes = count.changes;
    }
  }
  if (!rows_known) {
    // Row count from the catalog (exact for append-only tables), then moved
    // by the appends (RowCount).
    AQ_ASSIGN_OR_RETURN(cached.stats.rows,
                        QueryInt(conn, "SELECT coalesce(max(estimated_size), 0)::BIGINT FROM duckdb_tables() "
                                       "WHERE database_name = current_database() AND schema_name = 'main' "
                                       "AND table_name = " + QuoteLiteral(table)));
  }
  const bool widths_fresh = cached.has_widths && cached.schema_version == schema_version;
  if (!widths_fresh) {
    // Column widths from the types.
    cached.stats.widths.clear();
    cached.has_widths = false;
    Result<QueryResult> empty = Query(conn, "SELECT * FROM " + QuoteIdent(table) + " LIMIT 0");
    if (empty.ok()) {
      for (idx_t c = 0; c < duckdb_column_count(empty->get()); ++c) {
        std::string name = duckdb_column_name(empty->get(), c);
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
        LogicalType type(duckdb_column_logical_type(empty->get(), c));
        cached.stats.widths.emplace_back(std::move(name), NominalWidth(type.get()));
      }
      cached.has_widths = true;  // a failed read is asked again next time
    }
    cached.schema_version = schema_version;
  }
  std::lock_guard lock(plan_mu_);
  if (!rows_known && rows_keepable) {
    RowCount& count = row_counts_[table];
    if (!count.changing && count.changes == changes) {
      count.known = true;
      count.rows = cached.stats.rows;
    }
  }
  if (!widths_fresh) {
    if (stats_.size() >= kMaxCachedPlans) stats_.clear();
    stats_.insert_or_assign(table, cached);
  }
  return cached.stats;
}

Result<QueryAnalysis> DuckDBWarehouse::Analyze(duckdb_connection conn, std::string_view sql_in) {
  const std::string sql(driver::TrimStatement(sql_in));
  if (sql.empty()) return InvalidArgument("duckdb: empty query");
  AQ_ASSIGN_OR_RETURN(std::vector<PlanScan> scans, PlanOf(conn, sql));

  QueryAnalysis analysis;
  std::set<std::string> seen;
  std::map<std::string, TableStats> table_info;
  for (const PlanScan& scan : scans) {
    if (!scan.function.empty()) {
      // A table function: only row generators may run, and the rows they
      // generate count towards the estimate (8 bytes a row, one BIGINT).
      if (!IsGeneratorFunction(scan.function)) {
        return InvalidArgument("duckdb: the query scans the table function {}; only tables, range, "
                               "generate_series and unnest may be read",
                               scan.function);
      }
      const int64_t rows = std::clamp<int64_t>(scan.estimated_rows, 1, int64_t{1} << 56);
      analysis.bytes_scanned_estimate = std::min(analysis.bytes_scanned_estimate, int64_t{1} << 60) + rows * 8;
      continue;
    }
    if (seen.insert(scan.table).second) analysis.tables.push_back(QuoteIdent(scan.table));
    auto it = table_info.find(scan.table);
    if (it == table_info.end()) {
      AQ_ASSIGN_OR_RETURN(TableStats stats, StatsOf(conn, scan.table));
      it = table_info.emplace(scan.table, std::move(stats)).first;
    }
    int64_t row_width = 0;
    for (const auto& [name, width] : it->second.widths) {
      if (scan.tokens.contains(name)) row_width += width;
    }
    analysis.bytes_scanned_estimate += it->second.rows * row_width;
  }
  return analysis;
}

Result<Job> DuckDBWarehouse::StartQuery(const Uuid& job_id, std::string_view sql, const JobOptions& options) {
  ExpireResults();
  auto state = std::make_shared<JobState>();
  state->id = job_id;
  state->sql = std::string(sql);
  state->options = options;
  {
    std::lock_guard lock(jobs_mu_);
    if (stopping_) return Unavailable("duckdb: shutting down");
    if (jobs_.contains(job_id)) return AlreadyExists("duckdb: job {} exists", job_id.ToString());
    if (max_queued_jobs_ > 0 && static_cast<int64_t>(queue_.size()) >= max_queued_jobs_) {
      return ResourceExhausted("duckdb: {} jobs are already waiting to run (max_queued_jobs); retry later",
                               queue_.size());
    }
    jobs_.emplace(job_id, state);
    queue_.push_back(state);
  }
  jobs_cv_.notify_one();
  std::lock_guard lock(jobs_mu_);
  return Snapshot(*state);
}

void DuckDBWarehouse::WorkerLoop(Slot* slot) {
  while (true) {
    std::shared_ptr<JobState> job;
    {
      std::unique_lock lock(jobs_mu_);
      jobs_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      if (job->dropped) continue;
      job->status = JobStatus::kRunning;
      slot->current = job;
      slot->timed_out = false;
      slot->deadline = job->options.timeout_ms > 0
                           ? std::chrono::steady_clock::now() + std::chrono::milliseconds(job->options.timeout_ms)
                           : std::chrono::steady_clock::time_point::max();
    }
    watchdog_cv_.notify_all();

    JobState result;
    RunJob(slot, *job, &result);
    const int64_t finished_ms = clock_->NowMillis();
    int64_t expires_ms = 0;
    if (result.status == JobStatus::kDone && job->options.result_ttl_ms > 0) {
      expires_ms = finished_ms + std::min(job->options.result_ttl_ms, int64_t{1} << 50);
    }
    if (result.status == JobStatus::kDone) {
      // Stored before the job reads as done: a done job always has its rows.
      StoredResult stored;
      stored.columns = result.columns;
      stored.select_list = result.select_list;
      stored.rows = result.rows;
      stored.bytes_scanned = result.bytes_scanned;
      stored.finished_ms = finished_ms;
      Status recorded;
      {
        // Under write_mu_, as appends are: none after a failed commit before its checkpoint.
        std::lock_guard write_lock(write_mu_);
        recorded = CheckpointIfNeeded();
        if (recorded.ok()) {
          recorded = Exec(slot->conn.get(), fmt::format("INSERT INTO {} (job_id, expires_ms, expired, meta) "
                                                        "VALUES ({}, {}, false, {})",
                                                        ResultsTable(), QuoteLiteral(job->id.Hex()), expires_ms,
                                                        QuoteLiteral(ResultMeta(stored))));
          if (!recorded.ok()) (void)CommitFailed(recorded);
        }
      }
      if (recorded.ok()) recorded = SyncWalEntry();
      if (!recorded.ok()) {
        (void)Exec(slot->conn.get(), "DROP TABLE IF EXISTS " + JobTableName(job->id));
        result.status = JobStatus::kFailed;
        result.error = "duckdb: cannot store the job's result: " + std::string(recorded.message());
      }
    }

    bool drop_table = false;
    {
      std::lock_guard lock(jobs_mu_);
      if (slot->timed_out && result.status != JobStatus::kDone) {
        result.status = JobStatus::kFailed;
        result.error = fmt::format("query exceeded its timeout of {} ms ({})", job->options.timeout_ms, result.error);
      }
      slot->current.reset();
      if (job->dropped || stopping_) {
        drop_table = result.status == JobStatus::kDone;
      } else {
        job->status = result.status;
        job->error = std::move(result.error);
        job->rows = result.rows;
        job->bytes_scanned = result.bytes_scanned;
        job->finished_ms = finished_ms;
        job->sql.clear();
        job->sql.shrink_to_fit();
        if (job->status == JobStatus::kDone && expires_ms > 0) expiries_.emplace(expires_ms, job->id);
      }
    }
    idle_cv_.notify_all();
    if (drop_table) {
      (void)Exec(slot->conn.get(), fmt::format("DELETE FROM {} WHERE job_id = {}", ResultsTable(),
                                               QuoteLiteral(job->id.Hex())));
      (void)Exec(slot->conn.get(), "DROP TABLE IF EXISTS " + JobTableName(job->id));
    }
  }
}

void DuckDBWarehouse::RunJob(Slot* slot, const JobState& job, JobState* result) {
  duckdb_connection conn = slot->conn.get();
  auto failed = [&](const Status& status) {
    result->status = JobStatus::kFailed;
    result->error = status.message();
  };
  if (Status purged = PurgeReferenced(job.sql); !purged.ok()) return failed(purged);
  Result<QueryAnalysis> analysis = Analyze(conn, job.sql);
  if (!analysis.ok()) return failed(analysis.status());
  result->bytes_scanned = analysis->bytes_scanned_estimate;
  if (job.options.max_bytes_scanned > 0 && analysis->bytes_scanned_estimate > job.options.max_bytes_scanned) {
    return failed(ResourceExhausted("query would scan about {} bytes, over the limit of {}",
                                    analysis->bytes_scanned_estimate, job.options.max_bytes_scanned));
  }
  const std::string table = JobTableName(job.id);
  const std::string sql(driver::TrimStatement(job.sql));
  auto failed_and_dropped = [&](const Status& status) {
    (void)Exec(conn, "DROP TABLE IF EXISTS " + table);
    failed(status);
  };
  // The result table takes the query's column types from a LIMIT 0 run (it
  // plans the query and generates nothing). The newline ends a trailing --
  // comment of the user's text.
  if (Status status = Exec(conn, "CREATE TABLE " + table + " AS SELECT * FROM (" + sql + "\n) AS __aquifer_result LIMIT 0",
                           StatusCode::kInvalidArgument);
      !status.ok()) {
    return failed_and_dropped(status);
  }
  // Then the query streams, chunk by chunk, into that table, and stops at
  // the first chunk that takes the result over a limit: rows past the caps
  // are never fetched, let alone kept.
  Prepared prepared;
  if (duckdb_prepare(conn, sql.c_str(), prepared.out()) == DuckDBError) {
    const char* message = duckdb_prepare_error(prepared.get());
    return failed_and_dropped(InvalidArgument("{}", message != nullptr ? message : "duckdb: cannot prepare the query"));
  }
  QueryResult stream;
  if (duckdb_execute_prepared_streaming(prepared.get(), stream.out()) == DuckDBError) {
    const char* message = duckdb_result_error(stream.get());
    return failed_and_dropped(InvalidArgument("{}", message != nullptr ? message : "duckdb: the query failed"));
  }
  const std::string base = "__job_" + job.id.Hex();
  Appender appender;
  if (duckdb_appender_create_ext(slot->append_conn.get(), nullptr, kJobsSchema, base.c_str(), appender.out()) ==
      DuckDBError) {
    const char* message = appender ? duckdb_appender_error(appender.get()) : nullptr;
    return failed_and_dropped(Internal("duckdb: cannot write the job's result: {}",
                                       message != nullptr ? message : "unknown error"));
  }
  const idx_t column_count = duckdb_column_count(stream.get());
  std::vector<LogicalType> types;
  for (idx_t c = 0; c < column_count; ++c) types.emplace_back(duckdb_column_logical_type(stream.get(), c));
  const int64_t max_rows = job.options.max_result_rows;
  const int64_t max_bytes = job.options.max_result_bytes;
  int64_t rows = 0;
  int64_t bytes = 0;
  auto stop = [&](const Status& status) {
    appender.Reset();
    stream.Reset();
    failed_and_dropped(status);
  };
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(stream.ref()));
    if (!chunk) {
      if (const char* message = duckdb_result_error(stream.get()); message != nullptr) {
        return stop(InvalidArgument("{}", message));
      }
      break;
    }
    const idx_t n = duckdb_data_chunk_get_size(chunk.get());
    rows += static_cast<int64_t>(n);
    if (max_rows > 0 && rows > max_rows) {
      return stop(ResourceExhausted("result exceeds {} rows; add LIMIT or aggregate (max_result_rows)", max_rows));
    }
    for (idx_t c = 0; c < column_count; ++c) {
      bytes += VectorBytes(duckdb_data_chunk_get_vector(chunk.get(), c), types[c].get(), n);
    }
    if (max_bytes > 0 && bytes > max_bytes) {
      return stop(ResourceExhausted("result exceeds {} bytes; select fewer columns or add LIMIT (max_result_bytes)",
                                    max_bytes));
    }
    if (duckdb_append_data_chunk(appender.get(), chunk.get()) == DuckDBError) {
      return stop(Internal("duckdb: cannot write the job's result: {}", duckdb_appender_error(appender.get())));
    }
  }
  if (duckdb_appender_close(appender.get()) == DuckDBError) {
    return stop(Internal("duckdb: cannot write the job's result: {}", duckdb_appender_error(appender.get())));
  }
  appender.Reset();
  stream.Reset();
  // Column names and types: DuckDB's own type names from the catalog, the
  // logical types to decide which columns need a VARCHAR cast.
  Result<QueryResult> names = Query(conn, fmt::format(
      "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() AND "
      "schema_name = '{}' AND table_name = {} ORDER BY column_index", kJobsSchema, QuoteLiteral("__job_" + job.id.Hex())));
  Result<QueryResult> probe = Query(conn, "SELECT * FROM " + table + " LIMIT 0");
  if (!names.ok()) return failed(names.status());
  if (!probe.ok()) return failed(probe.status());
  std::vector<std::string> type_names;
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(names->ref()));
    if (!chunk) break;
    for (idx_t r = 0; r < duckdb_data_chunk_get_size(chunk.get()); ++r) {
      type_names.emplace_back(StringAt(duckdb_data_chunk_get_vector(chunk.get(), 1), r));
    }
  }
  std::string select;
  for (idx_t c = 0; c < duckdb_column_count(probe->get()); ++c) {
    const std::string name = duckdb_column_name(probe->get(), c);
    if (name.starts_with("__")) continue;  // hidden columns
    LogicalType type(duckdb_column_logical_type(probe->get(), c));
    if (!select.empty()) select += ", ";
    select += NativelyEncoded(type.get()) ? QuoteIdent(name) : "CAST(" + QuoteIdent(name) + " AS VARCHAR)";
    result->columns.push_back(Column{name, c < type_names.size() ? type_names[c] : "UNKNOWN"});
  }
  result->select_list = select;
  result->rows = rows;
  result->status = JobStatus::kDone;
}

void DuckDBWarehouse::ExpireResults() {
  const int64_t now = clock_->NowMillis();
  std::vector<Uuid> drops;
  {
    std::lock_guard lock(jobs_mu_);
    while (!expiries_.empty() && expiries_.begin()->first <= now) {
      drops.push_back(expiries_.begin()->second);
      expiries_.erase(expiries_.begin());
    }
  }
  if (drops.empty()) return;
  std::lock_guard lock(admin_mu_);
  for (const Uuid& id : drops) {
    // Marked first: a reader then answers "expired", never a missing table.
    (void)Exec(admin_conn_.get(), fmt::format("UPDATE {} SET expired = true WHERE job_id = {}", ResultsTable(),
                                              QuoteLiteral(id.Hex())));
    (void)Exec(admin_conn_.get(), "DROP TABLE IF EXISTS " + JobTableName(id));
  }
}

Status DuckDBWarehouse::LoadResults() {
  duckdb_connection conn = admin_conn_.get();
  AQ_RETURN_IF_ERROR(Exec(conn, fmt::format("CREATE SCHEMA IF NOT EXISTS {}", QuoteIdent(kJobsSchema))));
  AQ_RETURN_IF_ERROR(Exec(conn, "CREATE TABLE IF NOT EXISTS " + ResultsTable() +
                                    " (job_id VARCHAR PRIMARY KEY, expires_ms BIGINT NOT NULL, "
                                    "expired BOOLEAN NOT NULL, meta VARCHAR NOT NULL)"));
  // Tables without a stored result were being written when the process
  // stopped; expired ones may have outlived a crash between mark and drop.
  AQ_ASSIGN_OR_RETURN(auto orphans,
                      QueryText(conn, fmt::format("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                                  "current_database() AND schema_name = '{0}' AND table_name LIKE "
                                                  "'\\_\\_job\\_%' ESCAPE '\\' AND substr(table_name, 7) NOT IN "
                                                  "(SELECT job_id FROM {1} WHERE NOT expired)",
                                                  kJobsSchema, ResultsTable())));
  for (const auto& row : orphans) {
    AQ_RETURN_IF_ERROR(Exec(conn, "DROP TABLE IF EXISTS " + QuoteIdent(kJobsSchema) + "." + QuoteIdent(row[0])));
  }
  AQ_ASSIGN_OR_RETURN(auto pending, QueryText(conn, "SELECT job_id, CAST(expires_ms AS VARCHAR) FROM " +
                                                        ResultsTable() + " WHERE NOT expired AND expires_ms > 0"));
  std::lock_guard lock(jobs_mu_);
  for (const auto& row : pending) {
    Result<Uuid> id = Uuid::Parse(row[0]);
    if (!id.ok()) continue;
    expiries_.emplace(std::stoll(row[1]), *id);
  }
  return Status::OK();
}

Result<std::optional<StoredResult>> DuckDBWarehouse::ReadStoredResult(const Uuid& job_id) {
  std::lock_guard lock(read_mu_);
  AQ_ASSIGN_OR_RETURN(auto rows, QueryText(read_conn_.get(),
                                           fmt::format("SELECT meta, CAST(expires_ms AS VARCHAR), CAST(expired AS "
                                                       "VARCHAR) FROM {} WHERE job_id = {}",
                                                       ResultsTable(), QuoteLiteral(job_id.Hex()))));
  if (rows.empty()) return std::optional<StoredResult>();
  AQ_ASSIGN_OR_RETURN(StoredResult stored, ParseResultMeta(rows[0][0]));
  stored.expires_ms = std::stoll(rows[0][1]);
  stored.expired = rows[0][2] == "true";
  return std::optional<StoredResult>(std::move(stored));
}

void DuckDBWarehouse::WatchdogLoop() {
  std::unique_lock lock(jobs_mu_);
  while (!stopping_) {
    auto next = std::chrono::steady_clock::time_point::max();
    const auto now = std::chrono::steady_clock::now();
    for (SmallRun* run : small_runs_) {
      if (run->timed_out || run->deadline <= now) {
        run->timed_out = true;
        duckdb_interrupt(run->conn);
        next = std::min(next, now + std::chrono::milliseconds(50));
      } else {
        next = std::min(next, run->deadline);
      }
    }
    for (auto& slot : slots_) {
      if (!slot->current) continue;
      if (slot->timed_out || slot->deadline <= now) {
        // Again every 50 ms until the job returns: an interrupt between two of
        // its statements is lost.
        slot->timed_out = true;
        duckdb_interrupt(slot->conn.get());
        next = std::min(next, now + std::chrono::milliseconds(50));
      } else {
        next = std::min(next, slot->deadline);
      }
    }
    if (next == std::chrono::steady_clock::time_point::max()) {
      watchdog_cv_.wait(lock);
    } else {
      watchdog_cv_.wait_until(lock, next);
    }
  }
}

namespace {

// DuckDB's name of a result column's type, as duckdb_columns() spells it for
// a job's result table; empty for the types RunSmall leaves to jobs (nested,
// enums, aliases, and those WriteCell does not encode).
std::string SmallTypeName(duckdb_logical_type type) {
  if (char* alias = duckdb_logical_type_get_alias(type); alias != nullptr) {
    duckdb_free(alias);
    return {};
  }
  if (!NativelyEncoded(type)) return {};
  switch (duckdb_get_type_id(type)) {
    case DUCKDB_TYPE_BOOLEAN: return "BOOLEAN";
    case DUCKDB_TYPE_TINYINT: return "TINYINT";
    case DUCKDB_TYPE_SMALLINT: return "SMALLINT";
    case DUCKDB_TYPE_INTEGER: return "INTEGER";
    case DUCKDB_TYPE_BIGINT: return "BIGINT";
    case DUCKDB_TYPE_UTINYINT: return "UTINYINT";
    case DUCKDB_TYPE_USMALLINT: return "USMALLINT";
    case DUCKDB_TYPE_UINTEGER: return "UINTEGER";
    case DUCKDB_TYPE_UBIGINT: return "UBIGINT";
    case DUCKDB_TYPE_HUGEINT: return "HUGEINT";
    case DUCKDB_TYPE_UHUGEINT: return "UHUGEINT";
    case DUCKDB_TYPE_FLOAT: return "FLOAT";
    case DUCKDB_TYPE_DOUBLE: return "DOUBLE";
    case DUCKDB_TYPE_VARCHAR: return "VARCHAR";
    case DUCKDB_TYPE_BLOB: return "BLOB";
    case DUCKDB_TYPE_UUID: return "UUID";
    case DUCKDB_TYPE_TIMESTAMP: return "TIMESTAMP";
    case DUCKDB_TYPE_TIMESTAMP_S: return "TIMESTAMP_S";
    case DUCKDB_TYPE_TIMESTAMP_MS: return "TIMESTAMP_MS";
    case DUCKDB_TYPE_TIMESTAMP_NS: return "TIMESTAMP_NS";
    case DUCKDB_TYPE_TIMESTAMP_TZ: return "TIMESTAMP WITH TIME ZONE";
    case DUCKDB_TYPE_DECIMAL:
      return fmt::format("DECIMAL({},{})", duckdb_decimal_width(type), duckdb_decimal_scale(type));
    default: return {};
  }
}

}  // namespace

Result<driver::SmallResult> DuckDBWarehouse::RunSmall(std::string_view sql_in,
                                                      const driver::SmallQueryLimits& limits) {
  AQ_RETURN_IF_ERROR(PurgeReferenced(sql_in));
  std::unique_ptr<SmallConn> small;
  {
    std::lock_guard lock(small_mu_);
    if (!small_conns_.empty()) {
      small = std::move(small_conns_.back());
      small_conns_.pop_back();
    }
  }
  if (!small) {
    small = std::make_unique<SmallConn>();
    AQ_ASSIGN_OR_RETURN(small->conn, Connect());
  }
  const std::string sql(driver::TrimStatement(sql_in));
  // A statement prepared on this connection is reused while the stamp of
  // its text holds: DuckDB 1.4.4 keeps a prepared plan made from the
  // statistics of the time (rows written later can be missed), and rebinds
  // on schema changes only (tests/conformance/duckdb_test.cc, DuckDBCaches).
  const Stamp stamp = StampOf(sql);
  if (small->statements.size() >= kMaxStatementsPerConn) small->statements.clear();
  // The statement leaves the connection's cache while it runs and goes back
  // only when the run succeeded (after an error or an interrupt the next run
  // prepares afresh).
  std::unique_ptr<SmallStatement> statement;
  if (auto it = small->statements.find(sql); it != small->statements.end()) {
    if (it->second->stamp == stamp) statement = std::move(it->second);
    small->statements.erase(it);
  }
  struct GiveBack {
    DuckDBWarehouse* self;
    std::unique_ptr<SmallConn>* small;
    const std::string* sql;
    std::unique_ptr<SmallStatement>* statement;
    bool keep_statement = false;
    ~GiveBack() {
      if (keep_statement && *statement) (*small)->statements.emplace(*sql, std::move(*statement));
      statement->reset();  // before its connection may close
      std::lock_guard lock(self->small_mu_);
      if (self->small_conns_.size() < 8) self->small_conns_.push_back(std::move(*small));
    }
  } give_back{this, &small, &sql, &statement};
  duckdb_connection conn = small->conn.get();

  if (!statement) {
    auto fresh = std::make_unique<SmallStatement>();
    fresh->stamp = stamp;
    if (duckdb_prepare(conn, sql.c_str(), fresh->prepared.out()) == DuckDBError) {
      const char* message = duckdb_prepare_error(fresh->prepared.get());
      return InvalidArgument("{}", message != nullptr ? message : "duckdb: cannot prepare the query");
    }
    fresh->column_count = duckdb_prepared_statement_column_count(fresh->prepared.get());
    for (idx_t c = 0; c < fresh->column_count; ++c) {
      const char* raw_name = duckdb_prepared_statement_column_name(fresh->prepared.get(), c);
      std::string name = raw_name != nullptr ? raw_name : "";
      if (raw_name != nullptr) duckdb_free(const_cast<char*>(raw_name));
      if (name.starts_with("__")) continue;  // hidden, as in a job's result
      LogicalType type(duckdb_prepared_statement_column_logical_type(fresh->prepared.get(), c));
      std::string type_name = SmallTypeName(type.get());
      if (type_name.empty()) return NotSupported("duckdb: a result column's type needs a job");
      for (const driver::Column& seen : fresh->columns) {
        if (seen.name == name) return NotSupported("duckdb: duplicate result column names need a job");
      }
      fresh->columns.push_back(driver::Column{std::move(name), std::move(type_name)});
      fresh->visible.push_back(c);
    }
    statement = std::move(fresh);
  }
  duckdb_prepared_statement prepared = statement->prepared.get();
  const idx_t column_count = statement->column_count;
  const std::vector<idx_t>& visible = statement->visible;
  driver::SmallResult result;
  result.columns = statement->columns;

  SmallRun run;
  run.conn = conn;
  run.deadline = limits.timeout_ms > 0 ? std::chrono::steady_clock::now() + std::chrono::milliseconds(limits.timeout_ms)
                                       : std::chrono::steady_clock::time_point::max();
  {
    std::lock_guard lock(jobs_mu_);
    if (stopping_) return Unavailable("duckdb: shutting down");
    small_runs_.push_back(&run);
  }
  watchdog_cv_.notify_all();
  struct Unregister {
    DuckDBWarehouse* self;
    SmallRun* run;
    ~Unregister() {
      std::lock_guard lock(self->jobs_mu_);
      std::erase(self->small_runs_, run);
    }
  } unregister{this, &run};
  auto timed_out = [&] {
    std::lock_guard lock(jobs_mu_);
    return run.timed_out;
  };

  QueryResult stream;
  if (duckdb_execute_prepared_streaming(prepared, stream.out()) == DuckDBError) {
    if (timed_out()) return Timeout("duckdb: the query took over {} ms", limits.timeout_ms);
    const char* message = duckdb_result_error(stream.get());
    return InvalidArgument("{}", message != nullptr ? message : "duckdb: the query failed");
  }
  std::vector<LogicalType> types;
  for (idx_t c = 0; c < duckdb_column_count(stream.get()); ++c) {
    types.emplace_back(duckdb_column_logical_type(stream.get(), c));
  }
  if (types.size() != column_count) return NotSupported("duckdb: the result's columns changed");
  int64_t rows = 0;
  int64_t bytes = 0;
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(stream.ref()));
    if (!chunk) {
      if (const char* message = duckdb_result_error(stream.get()); message != nullptr) {
        if (timed_out()) return Timeout("duckdb: the query took over {} ms", limits.timeout_ms);
        return InvalidArgument("{}", message);
      }
      break;
    }
    const idx_t n = duckdb_data_chunk_get_size(chunk.get());
    rows += static_cast<int64_t>(n);
    if (limits.max_rows > 0 && rows > limits.max_rows) {
      return TooLarge("duckdb: the result has over {} rows", limits.max_rows);
    }
    for (idx_t c = 0; c < column_count; ++c) {
      bytes += VectorBytes(duckdb_data_chunk_get_vector(chunk.get(), c), types[c].get(), n);
    }
    if (limits.max_bytes > 0 && bytes > limits.max_bytes) {
      return TooLarge("duckdb: the result has over {} bytes", limits.max_bytes);
    }
    for (idx_t r = 0; r < n; ++r) {
      std::string row = "[";
      for (size_t v = 0; v < visible.size(); ++v) {
        if (v > 0) row += ',';
        const idx_t c = visible[v];
        WriteCell(&row, duckdb_data_chunk_get_vector(chunk.get(), c), types[c].get(), r);
      }
      row += ']';
      result.rows.push_back(std::move(row));
    }
  }
  if (timed_out()) return Timeout("duckdb: the query took over {} ms", limits.timeout_ms);
  give_back.keep_statement = true;
  return result;
}

Result<RowPage> DuckDBWarehouse::ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) {
  if (limit < 1) return InvalidArgument("duckdb: limit must be at least 1, got {}", limit);
  limit = std::min(limit, kMaxPageRows);
  ExpireResults();
  {
    std::lock_guard lock(jobs_mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end()) {
      const JobState& job = *it->second;
      if (job.status == JobStatus::kFailed) {
        return FailedPrecondition("duckdb: job {} failed: {}", job_id.ToString(), job.error);
      }
      if (job.status != JobStatus::kDone) {
        return FailedPrecondition("duckdb: job {} is {}", job_id.ToString(), driver::JobStatusName(job.status));
      }
    }
  }
  AQ_ASSIGN_OR_RETURN(std::optional<StoredResult> stored, ReadStoredResult(job_id));
  if (!stored) return NotFound("duckdb: no job {}", job_id.ToString());
  auto expired = [&] {
    return FailedPrecondition("duckdb: the rows of job {} expired {} ms after it finished (result_ttl_ms); "
                              "submit the query again",
                              job_id.ToString(), stored->expires_ms - stored->finished_ms);
  };
  if (stored->expired || (stored->expires_ms > 0 && clock_->NowMillis() >= stored->expires_ms)) return expired();
  std::vector<Column> columns = std::move(stored->columns);
  const std::string select = std::move(stored->select_list);
  const int64_t total = stored->rows;
  // Page token: "r" and the decimal row offset of the page's first row.
  int64_t offset = 0;
  if (!page.empty()) {
    if (page.size() < 2 || page.size() > 20 || page[0] != 'r' ||
        !std::all_of(page.begin() + 1, page.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return InvalidArgument("duckdb: malformed page token");
    }
    offset = std::stoll(std::string(page.substr(1)));
    if (offset > total) return InvalidArgument("duckdb: page token beyond the result");
  }
  RowPage result;
  result.columns = std::move(columns);
  const int64_t end = std::min<int64_t>(total, offset + limit);
  if (offset < end && !select.empty()) {
    // Result tables are written once in result order, so row ids 0..n-1 are that order.
    const std::string sql = fmt::format("SELECT {} FROM {} WHERE rowid >= {} AND rowid < {} ORDER BY rowid",
                                        select, JobTableName(job_id), offset, end);
    std::lock_guard lock(read_mu_);
    Result<QueryResult> read = Query(read_conn_.get(), sql);
    if (!read.ok()) {
      Result<std::optional<StoredResult>> again = ReadStoredResult(job_id);
      if (again.ok() && (!*again || (*again)->expired)) return expired();  // dropped meanwhile
      return read.status();
    }
    QueryResult rows = std::move(read).value();
    const idx_t column_count = duckdb_column_count(rows.get());
    std::vector<LogicalType> types;
    for (idx_t c = 0; c < column_count; ++c) types.emplace_back(duckdb_column_logical_type(rows.get(), c));
    while (true) {
      DataChunk chunk(duckdb_fetch_chunk(rows.ref()));
      if (!chunk) break;
      const idx_t n = duckdb_data_chunk_get_size(chunk.get());
      for (idx_t r = 0; r < n; ++r) {
        std::string row = "[";
        for (idx_t c = 0; c < column_count; ++c) {
          if (c > 0) row += ',';
          WriteCell(&row, duckdb_data_chunk_get_vector(chunk.get(), c), types[c].get(), r);
        }
        row += ']';
        result.rows.push_back(std::move(row));
      }
    }
    if (static_cast<int64_t>(result.rows.size()) != end - offset) {
      return Internal("duckdb: job {} returned {} rows for a page of {}", job_id.ToString(), result.rows.size(),
                      end - offset);
    }
  } else if (offset < end) {
    result.rows.assign(end - offset, "[]");  // every column was hidden
  }
  if (end < total) result.next = "r" + std::to_string(end);
  return result;
}

Status DuckDBWarehouse::Reset() {
  {
    std::unique_lock lock(jobs_mu_);
    for (auto& [id, job] : jobs_) job->dropped = true;
    jobs_.clear();
    queue_.clear();
    expiries_.clear();
    InterruptUntilIdle(lock);
  }
  std::lock_guard write_lock(write_mu_);
  VersionsMove moved{this, /*schema=*/true};
  dedup_.clear();
  pruned_ms_.clear();
  std::lock_guard admin_lock(admin_mu_);
  std::vector<std::string> drops;
  // Every stored result goes too, of this run's jobs and of earlier ones.
  AQ_RETURN_IF_ERROR(Exec(admin_conn_.get(), "DELETE FROM " + ResultsTable()).WithContext("duckdb: reset"));
  AQ_ASSIGN_OR_RETURN(auto job_tables,
                      QueryText(admin_conn_.get(), fmt::format("SELECT table_name FROM duckdb_tables() WHERE "
                                                               "database_name = current_database() AND "
                                                               "schema_name = '{}' AND table_name <> 'results'",
                                                               kJobsSchema)));
  for (const auto& row : job_tables) {
    drops.push_back("DROP TABLE IF EXISTS " + QuoteIdent(kJobsSchema) + "." + QuoteIdent(row[0]));
  }
  AQ_ASSIGN_OR_RETURN(QueryResult tables,
                      Query(admin_conn_.get(), "SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                               "current_database() AND schema_name = 'main' AND "
                                               "table_name LIKE 'i\\_%' ESCAPE '\\'"));
  while (true) {
    DataChunk chunk(duckdb_fetch_chunk(tables.ref()));
    if (!chunk) break;
    for (idx_t r = 0; r < duckdb_data_chunk_get_size(chunk.get()); ++r) {
      drops.push_back("DROP TABLE IF EXISTS " +
                      QuoteIdent(StringAt(duckdb_data_chunk_get_vector(chunk.get(), 0), r)));
    }
  }
  for (const std::string& drop : drops) AQ_RETURN_IF_ERROR(Exec(admin_conn_.get(), drop).WithContext("duckdb: reset"));
  return Status::OK();
}

}  // namespace

Result<std::shared_ptr<driver::WarehouseService>> OpenWarehouse(const driver::Config& config,
                                                                const driver::DriverContext& context) {
  std::string path = driver::ConfigString(config, "path", "");
  if (path.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(context.data_dir, ec);
    if (ec) return Unavailable("duckdb: cannot create {}: {}", context.data_dir, ec.message());
    path = (std::filesystem::path(context.data_dir) / "warehouse.duckdb").string();
  }
  AQ_ASSIGN_OR_RETURN(int64_t threads, driver::ConfigInt(config, "job_threads", 2));
  AQ_ASSIGN_OR_RETURN(int64_t window, driver::ConfigInt(config, "dedup_window", 100'000));
  AQ_ASSIGN_OR_RETURN(int64_t max_queued, driver::ConfigInt(config, "max_queued_jobs", 256));
  AQ_ASSIGN_OR_RETURN(int64_t applied_window,
                      driver::ConfigInt(config, "applied_window_ms", driver::kDefaultAppliedWindowMs));
  if (applied_window < 1) return InvalidArgument("duckdb: applied_window_ms must be positive, got {}", applied_window);
  if (threads < 1 || threads > 64) return InvalidArgument("duckdb: job_threads must be 1..64, got {}", threads);
  if (window < 0) return InvalidArgument("duckdb: dedup_window must be >= 0, got {}", window);
  if (max_queued < 0) return InvalidArgument("duckdb: max_queued_jobs must be >= 0, got {}", max_queued);
  auto warehouse = std::make_shared<DuckDBWarehouse>(context.clock != nullptr ? context.clock : Clock::System(), window,
                                                     max_queued, applied_window);
  AQ_RETURN_IF_ERROR(warehouse->Open(path, static_cast<int>(threads), driver::ConfigString(config, "memory_limit", "1GiB"),
                                     driver::ConfigString(config, "max_temp_directory_size", ""),
                                     driver::ConfigString(config, "checkpoint_threshold", "")));
  return std::shared_ptr<driver::WarehouseService>(std::move(warehouse));
}

void Register(driver::Registry* registry) {
  driver::Factory<driver::WarehouseService> factory = [](const driver::Config& config,
                                                         const driver::DriverContext& context) {
    return OpenWarehouse(config, context);
  };
  registry->Register("duckdb", factory);
  registry->Register("embedded", factory);
}

}  // namespace aquifer::drivers::duckdb
