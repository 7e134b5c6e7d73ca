#include "aquifer/engine/sql.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"

namespace aquifer::engine {
namespace {

// Beyond this many distinct tables a query is refused (the reference system
// allowed 5; joins across a handful of tables are the use case).
constexpr size_t kMaxTablesPerQuery = 16;
constexpr int32_t kMaxRowsPerPage = 1000;

// What a job the warehouse forgot says: this process started it, but the
// warehouse no longer knows it (it was reset under the job).
constexpr std::string_view kLostJobMessage =
    "the warehouse no longer knows this job (it was reset while the job was pending or running); "
    "submit the query again";
// A pending or running job nobody refreshed for job_lease_ms.
constexpr std::string_view kRunnerStoppedMessage =
    "the process running this job stopped; submit it again";
// Jobs still running when their SqlService closes.
constexpr std::string_view kShutDownMessage =
    "the server running this job shut down before it finished; submit it again";

driver::InstanceInfo InstanceOf(const JobTable& table) {
  driver::InstanceInfo instance;
  instance.instance_id = table.instance_id;
  instance.project = table.project;
  instance.table = table.table;
  return instance;
}

void ReplaceAll(std::string* text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  size_t pos = 0;
  while ((pos = text->find(from, pos)) != std::string::npos) {
    text->replace(pos, from.size(), to);
    pos += to.size();
  }
}

// Backend messages name physical tables; users know them as project.table.
std::string UserFacing(std::string message, const driver::WarehouseService& warehouse,
                       const std::vector<JobTable>& tables) {
  for (const JobTable& table : tables) {
    const std::string physical = warehouse.TableName(InstanceOf(table));
    const std::string name = table.project + "." + table.table;
    ReplaceAll(&message, physical, name);
    if (physical.size() > 2 && physical.front() == '"' && physical.back() == '"') {
      ReplaceAll(&message, std::string_view(physical).substr(1, physical.size() - 2), name);
    }
  }
  return message;
}

Result<Uuid> ParseJobId(std::string_view job_id) {
  Result<Uuid> id = Uuid::Parse(job_id);
  if (!id.ok()) return NotFound("job {} not found", job_id);
  return id;
}

bool Finished(driver::JobStatus status) {
  return status == driver::JobStatus::kDone || status == driver::JobStatus::kFailed;
}

}  // namespace

SqlService::SqlService(Catalog* catalog, driver::WarehouseService* warehouse,
                       const driver::CursorCodec* cursors, Clock* clock, SqlOptions options)
    : catalog_(catalog), warehouse_(warehouse), cursors_(cursors), clock_(clock), options_(std::move(options)) {
  const int64_t failed = FailStaleJobs();
  if (failed > 0) AQ_LOG(Info, "sql: {} jobs lost the process running them; marked failed", failed);
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
}

SqlService::~SqlService() {
  std::unordered_map<Uuid, LocalJob, UuidHash> local;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    stop_cv_.notify_all();
  }
  heartbeat_.join();
  SettleLocalJobs(std::nullopt);
  {
    std::lock_guard lock(mu_);
    local.swap(local_);
  }
  for (const auto& [job_id, job] : local) {
    JobUpdate update;
    update.status = driver::JobStatus::kFailed;
    update.error = std::string(kShutDownMessage);
    (void)catalog_->UpdateJob(job_id, update);  // best effort: else the lease fails it
  }
}

void SqlService::HeartbeatLoop() {
  const auto interval = std::chrono::milliseconds(std::max<int64_t>(options_.job_heartbeat_ms, 1));
  std::unique_lock lock(mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, interval, [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    Heartbeat();
    lock.lock();
  }
}

void SqlService::Heartbeat() {
  // Rows of inline jobs past result_ttl_ms leave the catalog (once a minute;
  // CatalogRows already answers "expired" for them before).
  if (options_.job.result_ttl_ms > 0) {
    const int64_t now = clock_->NowMillis();
    bool due = false;
    {
      std::lock_guard lock(mu_);
      if (now - last_result_expiry_ms_ >= 60'000) {
        last_result_expiry_ms_ = now;
        due = true;
      }
    }
    if (due) {
      Result<int64_t> expired = catalog_->ExpireJobResults(now - options_.job.result_ttl_ms);
      if (!expired.ok()) AQ_LOG(Warn, "sql: expiring inline job rows: {}", expired.status().ToString());
    }
  }
  std::vector<Uuid> jobs;
  {
    std::lock_guard lock(mu_);
    for (const auto& [job_id, job] : local_) jobs.push_back(job_id);
  }
  for (const Uuid& job_id : jobs) {
    Result<JobInfo> job = catalog_->GetJob(job_id);
    if (!job.ok()) {
      if (job.status().code() == StatusCode::kNotFound) ForgetLocal(job_id);
      continue;  // the catalog is unreachable: the next beat tries again
    }
    if (Finished(job->status)) {
      ForgetLocal(job_id);
      continue;
    }
    Result<JobInfo> settled = Reconcile(*std::move(job));
    if (!settled.ok() || Finished(settled->status)) continue;
    // Still pending or running here: the same status again refreshes updated_ms.
    JobUpdate update;
    update.status = settled->status;
    update.bytes_scanned = settled->bytes_scanned;
    update.rows = settled->rows;
    Status refreshed = catalog_->UpdateJob(job_id, update);
    if (refreshed.code() == StatusCode::kFailedPrecondition || refreshed.code() == StatusCode::kNotFound) {
      ForgetLocal(job_id);  // another process ended it (e.g. failed it as stale)
    }
  }
}

int64_t SqlService::FailStaleJobs() {
  if (options_.job_lease_ms <= 0) return 0;
  Result<int64_t> failed =
      catalog_->FailStaleJobs(clock_->NowMillis() - options_.job_lease_ms, kRunnerStoppedMessage);
  if (failed.ok()) return *failed;
  AQ_LOG(Warn, "sql: failing jobs that lost their process: {}", failed.status().ToString());
  return 0;
}

bool SqlService::IsLocal(const Uuid& job_id) {
  std::lock_guard lock(mu_);
  return local_.contains(job_id);
}

void SqlService::ForgetLocal(const Uuid& job_id) {
  std::lock_guard lock(mu_);
  local_.erase(job_id);
}

void SqlService::SettleLocalJobs(const std::optional<Uuid>& secret_id) {
  std::vector<Uuid> jobs;
  {
    std::lock_guard lock(mu_);
    for (const auto& [job_id, job] : local_) {
      if (!secret_id || job.secret_id == *secret_id) jobs.push_back(job_id);
    }
  }
  // The warehouse knows which jobs ended before anyone polled them.
  for (const Uuid& job_id : jobs) {
    Result<driver::Job> polled = warehouse_->PollJob(job_id);
    if (polled.ok() && !Finished(polled->status)) continue;
    Result<JobInfo> job = catalog_->GetJob(job_id);
    if (job.ok()) (void)Reconcile(*std::move(job));
  }
}

Result<SqlAnalysisResult> SqlService::Analyze(const Principal& who, std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(std::vector<SqlTableRef> refs, CheckSql(sql));

  SqlAnalysisResult result;
  std::vector<size_t> ref_table;  // refs[i] -> index into result.tables / resolved
  for (const SqlTableRef& ref : refs) {
    const std::string name = ref.project + "." + ref.table;
    auto seen = std::find(result.tables.begin(), result.tables.end(), name);
    ref_table.push_back(static_cast<size_t>(seen - result.tables.begin()));
    if (seen != result.tables.end()) continue;
    if (result.tables.size() == kMaxTablesPerQuery) {
      return InvalidArgument("the query reads more than {} tables (the {}th is {} at offset {})",
                             kMaxTablesPerQuery, kMaxTablesPerQuery + 1, name, ref.begin);
    }
    result.tables.push_back(name);
  }

  std::vector<std::string> physical_names;  // parallel to result.tables
  for (size_t i = 0; i < result.tables.size(); ++i) {
    const SqlTableRef& ref =
        refs[static_cast<size_t>(std::find(ref_table.begin(), ref_table.end(), i) - ref_table.begin())];
    const std::string& name = result.tables[i];
    // Read permission first: a table the principal may not see answers the
    // same NotFound as a table that does not exist.
    AQ_RETURN_IF_ERROR(catalog_->Authorize(who, ref.project, ref.table, Permission::kRead));
    Result<TableInfo> table = catalog_->GetTable(ref.project, ref.table);
    if (!table.ok()) {
      if (table.status().code() == StatusCode::kNotFound) return TableNotFound(ref.project, ref.table);
      return table.status();
    }
    if (!table->primary.use_warehouse) {
      return InvalidArgument("table {} keeps no warehouse copy (use_warehouse is off), so SQL cannot read it",
                             name);
    }
    result.resolved.push_back(JobTable{ref.project, ref.table, table->primary.instance_id});
    physical_names.push_back(warehouse_->TableName(table->primary));
  }

  std::vector<std::string> replacements;
  replacements.reserve(refs.size());
  for (size_t i = 0; i < refs.size(); ++i) replacements.push_back(physical_names[ref_table[i]]);
  result.physical_sql = sql::RewriteTableRefs(sql, refs, replacements);

  Result<driver::QueryAnalysis> analysis = warehouse_->AnalyzeQuery(result.physical_sql);
  if (!analysis.ok()) {
    const Status& status = analysis.status();
    std::string message = UserFacing(status.message(), *warehouse_, result.resolved);
    if (status.code() == StatusCode::kInvalidArgument) return InvalidArgument("{}", message);
    return Status(status.code(), "warehouse analysis failed: " + message);
  }
  // Second line of defence: whatever the lexical check missed, the backend's
  // own plan must read nothing but the tables we resolved and authorized.
  for (const std::string& scanned : analysis->tables) {
    if (std::find(physical_names.begin(), physical_names.end(), scanned) == physical_names.end()) {
      return InvalidArgument("query reads a table it does not name as project.table");
    }
  }
  result.bytes_scanned_estimate = analysis->bytes_scanned_estimate;
  return result;
}

Result<JobInfo> SqlService::Submit(const Principal& who, std::string_view sql) {
  AQ_ASSIGN_OR_RETURN(SqlAnalysisResult analysis, Analyze(who, sql));
  return Submit(who, sql, analysis);
}

namespace {

std::string ColumnsJson(const std::vector<driver::Column>& columns) {
  nlohmann::json out = nlohmann::json::array();
  for (const driver::Column& column : columns) out.push_back({{"name", column.name}, {"type", column.type}});
  return out.dump();
}

// Rows [begin, end) of `rows` as one JSON array, joined without re-parsing.
template <typename Rows>
std::string JoinRows(const Rows& rows, size_t begin, size_t end) {
  size_t total = 2;
  for (size_t i = begin; i < end; ++i) total += rows[i].size() + 1;
  std::string out;
  out.reserve(total);
  out.push_back('[');
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out.push_back(',');
    out += rows[i];
  }
  out.push_back(']');
  return out;
}

// The catalog's text of an inline job's rows: the columns' JSON on the first
// line, then one row (a JSON array, which holds no raw newline) per line.
std::string ResultText(const driver::SmallResult& result) {
  std::string text = ColumnsJson(result.columns);
  for (const std::string& row : result.rows) {
    text.push_back('\n');
    text += row;
  }
  return text;
}

// The page token of catalog rows: "c" and the decimal offset of the page's first row.
Result<int64_t> CatalogOffset(std::string_view page) {
  if (page.empty()) return int64_t{0};
  if (page.size() < 2 || page.size() > 20 || page[0] != 'c' ||
      !std::all_of(page.begin() + 1, page.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return InvalidArgument("the job cursor carries a malformed page");
  }
  return std::stoll(std::string(page.substr(1)));
}

}  // namespace

Result<SqlJobRows> SqlService::CatalogRows(const JobInfo& job, std::string_view page, int32_t limit) {
  AQ_ASSIGN_OR_RETURN(int64_t offset, CatalogOffset(page));
  auto expired = [&] {
    return FailedPrecondition("the rows of job {} expired {} ms after it finished (result_ttl_ms); "
                              "submit the query again",
                              job.job_id.ToString(), options_.job.result_ttl_ms);
  };
  if (options_.job.result_ttl_ms > 0 && clock_->NowMillis() - job.updated_ms >= options_.job.result_ttl_ms) {
    return expired();
  }
  AQ_ASSIGN_OR_RETURN(std::optional<std::string> text, catalog_->GetJobResult(job.job_id));
  if (!text) return expired();
  std::vector<std::string_view> lines;
  std::string_view rest(*text);
  while (true) {
    size_t newline = rest.find('\n');
    lines.push_back(rest.substr(0, newline));
    if (newline == std::string_view::npos) break;
    rest.remove_prefix(newline + 1);
  }
  const int64_t total = static_cast<int64_t>(lines.size()) - 1;
  if (offset > total) return InvalidArgument("the job cursor points beyond the result");
  const int64_t end = std::min<int64_t>(total, offset + limit);
  SqlJobRows rows;
  rows.columns_json = std::string(lines[0]);
  rows.data_json = JoinRows(lines, static_cast<size_t>(offset + 1), static_cast<size_t>(end + 1));
  if (end < total) {
    rows.next_cursor =
        cursors_->Encode(driver::Cursor{driver::CursorType::kJob, job.job_id, "c" + std::to_string(end)});
  }
  return rows;
}

Result<SqlWaited> SqlService::SubmitAndWait(const Principal& who, std::string_view sql,
                                            const SqlAnalysisResult& analysis, int64_t wait_ms, int32_t limit) {
  if (limit < 1 || limit > kMaxRowsPerPage) {
    return InvalidArgument("limit must be 1..{}, got {}", kMaxRowsPerPage, limit);
  }
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::milliseconds(std::max<int64_t>(wait_ms, 0));
  if (wait_ms > 0) {
    // A slot of the secret's job limit for the inline run: the catalog's
    // unfinished jobs (every process) plus this process's inline runs.
    bool slot = true;
    {
      std::lock_guard submit(submit_mu_);
      if (options_.max_jobs_per_secret > 0) {
        SettleLocalJobs(who.secret_id);
        Result<int64_t> busy = catalog_->CountUnfinishedJobs(who.secret_id);
        std::lock_guard lock(mu_);
        auto it = inline_runs_.find(who.secret_id);
        const int64_t running = it == inline_runs_.end() ? 0 : it->second;
        // At the limit (or unsure): the job path below gives the usual answer.
        slot = busy.ok() && *busy + running < options_.max_jobs_per_secret;
      }
      if (slot) {
        std::lock_guard lock(mu_);
        ++inline_runs_[who.secret_id];
      }
    }
    if (slot) {
      driver::SmallQueryLimits limits;
      limits.timeout_ms = options_.job.timeout_ms > 0 ? std::min(wait_ms, options_.job.timeout_ms) : wait_ms;
      limits.max_rows = options_.job.max_result_rows > 0 ? std::min(kInlineMaxRows, options_.job.max_result_rows)
                                                         : kInlineMaxRows;
      limits.max_bytes = options_.job.max_result_bytes > 0
                             ? std::min(kInlineMaxBytes, options_.job.max_result_bytes)
                             : kInlineMaxBytes;
      Result<driver::SmallResult> small = warehouse_->RunSmall(analysis.physical_sql, limits);
      {
        std::lock_guard lock(mu_);
        auto it = inline_runs_.find(who.secret_id);
        if (it != inline_runs_.end() && --it->second <= 0) inline_runs_.erase(it);
      }
      // A result (or a run-time error, which a job would fail with too) is
      // recorded as a finished job; anything else runs as a job below.
      if (small.ok() || small.status().code() == StatusCode::kInvalidArgument) {
        NewJob job;
        job.secret_id = who.secret_id;
        job.tables = analysis.resolved;
        job.sql = std::string(sql);
        job.sync = false;
        NewJob::Finished finished;
        finished.bytes_scanned = analysis.bytes_scanned_estimate;
        if (small.ok()) {
          finished.status = driver::JobStatus::kDone;
          finished.rows = static_cast<int64_t>(small->rows.size());
          finished.result = ResultText(*small);
        } else {
          finished.status = driver::JobStatus::kFailed;
          finished.error = UserFacing(std::string(small.status().message()), *warehouse_, analysis.resolved);
        }
        job.finished = std::move(finished);
        AQ_ASSIGN_OR_RETURN(JobInfo info, catalog_->CreateJob(job));
        SqlWaited out;
        out.inline_answer = true;
        if (small.ok()) {
          SqlJobRows rows;
          rows.columns_json = ColumnsJson(small->columns);
          const size_t end = std::min(small->rows.size(), static_cast<size_t>(limit));
          rows.data_json = JoinRows(small->rows, 0, end);
          if (end < small->rows.size()) {
            rows.next_cursor =
                cursors_->Encode(driver::Cursor{driver::CursorType::kJob, info.job_id, "c" + std::to_string(end)});
          }
          out.rows = std::move(rows);
        }
        out.job = std::move(info);
        return out;
      }
    }
  }
  AQ_ASSIGN_OR_RETURN(JobInfo info, Submit(who, sql, analysis));
  // Wait for the warehouse to finish it (1 ms, doubling to 20 ms between looks).
  auto pause = std::chrono::milliseconds(1);
  while (std::chrono::steady_clock::now() < deadline) {
    Result<driver::Job> polled = warehouse_->PollJob(info.job_id);
    if (!polled.ok() || Finished(polled->status)) break;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        pause, deadline - std::chrono::steady_clock::now()));
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
  SqlWaited out;
  AQ_ASSIGN_OR_RETURN(out.job, Reconcile(std::move(info)));
  if (out.job.status == driver::JobStatus::kDone) {
    AQ_ASSIGN_OR_RETURN(out.rows, RowsFromCursor(who, driver::Cursor{driver::CursorType::kJob, out.job.job_id, ""},
                                                 limit));
  }
  return out;
}

Result<JobInfo> SqlService::Submit(const Principal& who, std::string_view sql, const SqlAnalysisResult& analysis) {
  NewJob job;
  job.secret_id = who.secret_id;
  job.tables = analysis.resolved;
  job.sql = std::string(sql);
  JobInfo info;
  {
    // Counted in the catalog, in the transaction that creates the job, so
    // every process's jobs count and processes submitting together for one
    // secret never exceed the limit.
    std::lock_guard submit(submit_mu_);
    job.max_unfinished = std::max(options_.max_jobs_per_secret, 0);
    if (job.max_unfinished > 0) SettleLocalJobs(who.secret_id);
    Result<JobInfo> created = catalog_->CreateJob(job);
    if (created.status().code() == StatusCode::kResourceExhausted && FailStaleJobs() > 0) {
      created = catalog_->CreateJob(job);
    }
    if (created.status().code() == StatusCode::kResourceExhausted) {
      return Status(StatusCode::kResourceExhausted,
                    created.status().message() + " ([sql] max_jobs_per_secret); wait for one to finish");
    }
    AQ_ASSIGN_OR_RETURN(info, std::move(created));
  }
  driver::JobOptions options;
  static_cast<driver::JobLimits&>(options) = options_.job;
  Result<driver::Job> started = warehouse_->StartQuery(info.job_id, analysis.physical_sql, options);
  if (!started.ok()) {
    const std::string message =
        "the warehouse did not start the job: " + UserFacing(started.status().message(), *warehouse_, info.tables);
    JobUpdate update;
    update.status = driver::JobStatus::kFailed;
    update.error = message;
    (void)catalog_->UpdateJob(info.job_id, update);  // best effort: the error below is what the caller sees
    return Status(started.status().code(), message);
  }
  std::lock_guard lock(mu_);
  local_.emplace(info.job_id, LocalJob{info.secret_id, info.tables});
  return info;
}

namespace {

// Loads a job the principal may read, or the NotFound an unknown id gets.
Result<JobInfo> ReadableJob(Catalog* catalog, const Principal& who, const Uuid& job_id) {
  AQ_ASSIGN_OR_RETURN(JobInfo job, catalog->GetJob(job_id));
  AQ_RETURN_IF_ERROR(catalog->CanReadJob(who, job));
  return job;
}

}  // namespace

Result<JobInfo> SqlService::Reconcile(JobInfo job) {
  if (Finished(job.status)) {
    ForgetLocal(job.job_id);
    return job;
  }
  JobUpdate update;
  Result<driver::Job> polled = warehouse_->PollJob(job.job_id);
  if (polled.ok()) {
    update.status = polled->status;
    update.error = polled->status == driver::JobStatus::kFailed ? UserFacing(polled->error, *warehouse_, job.tables)
                                                                 : std::string();
    update.bytes_scanned = polled->bytes_scanned;
    update.rows = polled->rows;
  } else if (polled.status().code() == StatusCode::kNotFound) {
    // Not running here and not done in the warehouse. Started here: the
    // warehouse forgot it. Else another process runs it, while its lease holds.
    update.status = driver::JobStatus::kFailed;
    update.bytes_scanned = job.bytes_scanned;
    update.rows = job.rows;
    if (IsLocal(job.job_id)) {
      update.error = std::string(kLostJobMessage);
    } else if (options_.job_lease_ms > 0 && clock_->NowMillis() - job.updated_ms >= options_.job_lease_ms) {
      update.error = std::string(kRunnerStoppedMessage);
    } else {
      return job;
    }
  } else {
    return polled.status().WithContext("polling the warehouse job");
  }
  if (update.status == job.status && update.error == job.error && update.bytes_scanned == job.bytes_scanned &&
      update.rows == job.rows) {
    return job;
  }
  Status updated = catalog_->UpdateJob(job.job_id, update);
  if (updated.code() == StatusCode::kFailedPrecondition) {
    // Another poller finished it (or moved it on) first; its record wins.
    ForgetLocal(job.job_id);
    return catalog_->GetJob(job.job_id);
  }
  AQ_RETURN_IF_ERROR(updated);
  if (Finished(update.status)) ForgetLocal(job.job_id);
  job.status = update.status;
  job.error = update.error;
  job.bytes_scanned = update.bytes_scanned;
  job.rows = update.rows;
  return job;
}

Result<std::string> SqlService::JobJson(const Principal& who, std::string_view job_id) {
  AQ_ASSIGN_OR_RETURN(Uuid id, ParseJobId(job_id));
  AQ_ASSIGN_OR_RETURN(JobInfo job, ReadableJob(catalog_, who, id));
  AQ_ASSIGN_OR_RETURN(job, Reconcile(std::move(job)));
  return JobInfoJson(job);
}

std::string JobInfoJson(const JobInfo& job) {
  nlohmann::json out = {
      {"job_id", job.job_id.ToString()},
      {"status", std::string(driver::JobStatusName(job.status))},
      {"error", nullptr},
      {"bytes_scanned", job.bytes_scanned},
      {"rows", job.rows},
  };
  if (job.status == driver::JobStatus::kFailed) out["error"] = job.error;
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<SqlJobRows> SqlService::Rows(const Principal& who, std::string_view job_id, std::string_view cursor,
                                    int32_t limit) {
  AQ_ASSIGN_OR_RETURN(Uuid id, ParseJobId(job_id));
  driver::Cursor decoded;
  decoded.type = driver::CursorType::kJob;
  decoded.id = id;
  if (!cursor.empty()) {
    AQ_ASSIGN_OR_RETURN(decoded, cursors_->Decode(cursor));
    if (decoded.type != driver::CursorType::kJob || decoded.id != id) {
      return InvalidArgument("the cursor does not page the rows of job {}", id.ToString());
    }
    if (decoded.payload.empty()) return InvalidArgument("the job cursor carries no page");
  }
  return RowsFromCursor(who, decoded, limit);
}

Result<SqlJobRows> SqlService::RowsFromCursor(const Principal& who, const driver::Cursor& cursor, int32_t limit) {
  if (cursor.type != driver::CursorType::kJob) return InvalidArgument("the cursor does not page job rows");
  if (limit < 1 || limit > kMaxRowsPerPage) {
    return InvalidArgument("limit must be 1..{}, got {}", kMaxRowsPerPage, limit);
  }
  AQ_ASSIGN_OR_RETURN(JobInfo job, ReadableJob(catalog_, who, cursor.id));
  AQ_ASSIGN_OR_RETURN(job, Reconcile(std::move(job)));
  switch (job.status) {
    case driver::JobStatus::kPending:
    case driver::JobStatus::kRunning:
      return FailedPrecondition("job {} is still running", job.job_id.ToString());
    case driver::JobStatus::kFailed:
      return FailedPrecondition("job failed: {}", job.error);
    case driver::JobStatus::kDone:
      break;
  }
  if (job.result_in_catalog) return CatalogRows(job, cursor.payload, limit);
  Result<driver::RowPage> page = warehouse_->ReadJobRows(job.job_id, cursor.payload, limit);
  if (!page.ok()) {
    if (page.status().code() == StatusCode::kFailedPrecondition) {
      return FailedPrecondition("{}", UserFacing(page.status().message(), *warehouse_, job.tables));
    }
    if (page.status().code() == StatusCode::kNotFound) {
      return FailedPrecondition("the warehouse no longer holds the results of job {}; "
                                "submit the query again",
                                job.job_id.ToString());
    }
    return page.status().WithContext(fmt::format("reading the rows of job {}", job.job_id.ToString()));
  }

  SqlJobRows rows;
  nlohmann::json columns = nlohmann::json::array();
  for (const driver::Column& column : page->columns) {
    columns.push_back({{"name", column.name}, {"type", column.type}});
  }
  rows.columns_json = columns.dump();
  // Rows arrive as JSON arrays already; join them without re-parsing.
  size_t total = 2;
  for (const std::string& row : page->rows) total += row.size() + 1;
  rows.data_json.reserve(total);
  rows.data_json.push_back('[');
  for (size_t i = 0; i < page->rows.size(); ++i) {
    if (i > 0) rows.data_json.push_back(',');
    rows.data_json += page->rows[i];
  }
  rows.data_json.push_back(']');
  if (!page->next.empty()) {
    rows.next_cursor = cursors_->Encode(driver::Cursor{driver::CursorType::kJob, job.job_id, page->next});
  }
  return rows;
}

}  // namespace aquifer::engine
