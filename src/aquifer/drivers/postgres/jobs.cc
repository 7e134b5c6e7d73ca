#include "aquifer/drivers/postgres/jobs.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/driver/sql_text.h"

namespace aquifer::drivers::postgres {

using driver::Job;
using driver::JobStatus;

Status ExplainError(const Status& status) {
  if (status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kTimeout) return status;
  return InvalidArgument("{}", status.message());
}

Status CheckScanCap(const driver::JobOptions& options, int64_t bytes_scanned_estimate) {
  if (options.max_bytes_scanned > 0 && bytes_scanned_estimate > options.max_bytes_scanned) {
    return ResourceExhausted("the query would scan about {} bytes, over the job's cap of {}", bytes_scanned_estimate,
                             options.max_bytes_scanned);
  }
  return Status::OK();
}

Status FetchCapped(const driver::JobOptions& options, const std::function<Status()>& before_fetch,
                   const std::function<Result<int64_t>(int64_t chunk, std::vector<std::string>* out)>& fetch,
                   std::vector<std::string>* out) {
  constexpr int64_t kChunkRows = 1000;
  int64_t bytes = 0;
  while (true) {
    int64_t chunk = kChunkRows;
    if (options.max_result_rows > 0) {
      chunk = std::min<int64_t>(chunk, options.max_result_rows + 1 - static_cast<int64_t>(out->size()));
    }
    AQ_RETURN_IF_ERROR(before_fetch());
    const size_t first = out->size();
    AQ_ASSIGN_OR_RETURN(int64_t fetched, fetch(chunk, out));
    for (size_t row = first; row < out->size(); ++row) bytes += static_cast<int64_t>((*out)[row].size()) + 16;
    if (options.max_result_rows > 0 && static_cast<int64_t>(out->size()) > options.max_result_rows) {
      return ResourceExhausted("result exceeds {} rows; add LIMIT", options.max_result_rows);
    }
    if (options.max_result_bytes > 0 && bytes > options.max_result_bytes) {
      return ResourceExhausted("result exceeds {} bytes; add LIMIT or select fewer columns", options.max_result_bytes);
    }
    if (fetched < chunk) return Status::OK();
  }
}

std::string StoredColumns(const std::vector<driver::Column>& columns) {
  nlohmann::json names = nlohmann::json::array();
  for (const driver::Column& column : columns) names.push_back({{"name", column.name}, {"type", column.type}});
  return names.dump();
}

Result<std::vector<driver::Column>> ParseStoredColumns(std::string_view text, const Uuid& job_id) {
  nlohmann::json columns = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!columns.is_array()) return Corruption("the stored columns of job {} do not parse", job_id.ToString());
  std::vector<driver::Column> out;
  for (const auto& column : columns) out.push_back({column.value("name", ""), column.value("type", "")});
  return out;
}

Result<Job> StoredJob(const Uuid& job_id, const PgResult& found) {
  if (found.rows() == 0) return NotFound("job {} not found", job_id.ToString());
  Job job;
  job.job_id = job_id;
  job.status = JobStatus::kDone;
  AQ_ASSIGN_OR_RETURN(job.rows, found.Int(0, 0));
  AQ_ASSIGN_OR_RETURN(job.bytes_scanned, found.Int(0, 1));
  return job;
}

Status StoreInTransaction(Connection& conn, const std::function<Status()>& store) {
  Status stored = [&]() -> Status {
    AQ_RETURN_IF_ERROR(conn.Begin());
    AQ_RETURN_IF_ERROR(store());
    return conn.Commit();
  }();
  if (!stored.ok()) {
    conn.Rollback();
    return stored.WithContext("storing the job's result");
  }
  return Status::OK();
}

JobRunner::JobRunner(std::string conninfo, Clock* clock, Hooks hooks)
    : conninfo_(std::move(conninfo)), clock_(clock), hooks_(std::move(hooks)) {}

JobRunner::~JobRunner() { StopAll(); }

Result<Job> JobRunner::Start(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) {
  auto state = std::make_shared<State>();
  state->job.job_id = job_id;
  DropExpired();
  std::lock_guard<std::mutex> lock(mu_);
  if (jobs_.count(job_id) > 0) return AlreadyExists("job {} already exists", job_id.ToString());
  size_t running = 0;
  for (const auto& [id, other] : jobs_) running += other->finished ? 0 : 1;
  if (running >= kMaxRunningJobs) {
    return ResourceExhausted("{} warehouse jobs are running, the most this server runs at once; retry later", running);
  }
  jobs_[job_id] = state;
  state->thread = std::thread([this, state, text = std::string(driver::TrimStatement(sql)), options] { Run(state, text, options); });
  return state->job;
}

void JobRunner::Finish(const std::shared_ptr<State>& state, Status status, const Totals& totals) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state->cancel != nullptr) {
    PQfreeCancel(state->cancel);
    state->cancel = nullptr;
  }
  state->finished = true;
  state->job.status = status.ok() ? JobStatus::kDone : JobStatus::kFailed;
  if (status.ok()) {
    state->job.rows = totals.rows;
    state->job.bytes_scanned = totals.bytes_scanned;
  } else {
    state->job.error = status.message();
  }
}

void JobRunner::Run(std::shared_ptr<State> state, std::string sql, driver::JobOptions options) {
  auto opened = Connection::Open(conninfo_);
  if (!opened.ok()) return Finish(state, opened.status(), Totals());
  Connection& conn = **opened;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state->finished) return;  // stopped before it started
    state->job.status = JobStatus::kRunning;
    state->cancel = PQgetCancel(conn.raw());
  }
  const auto started = std::chrono::steady_clock::now();
  // statement_timeout counts per statement; the job's timeout is wall time
  // from its start, so each statement gets what is left (0 = no limit).
  auto remaining_ms = [&]() -> int64_t {
    if (options.timeout_ms <= 0) return 0;
    auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    return std::max<int64_t>(1, options.timeout_ms - spent.count());
  };
  Result<Totals> totals = hooks_.run(conn, state->job.job_id, sql, options, remaining_ms);
  Status status = totals.status();
  if (status.code() == StatusCode::kTimeout && options.timeout_ms > 0) {
    status = Timeout("query exceeded its timeout of {} ms", options.timeout_ms);
  }
  Finish(state, status, totals.ok() ? *totals : Totals{});
}

Result<Job> JobRunner::Poll(const Uuid& job_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end()) return it->second->job;
  }
  // Not started here: done by any process sharing the database, or unknown.
  return hooks_.find_stored(job_id);
}

Status JobRunner::CheckReadable(const Uuid& job_id, int32_t limit) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job_id);
    if (it != jobs_.end() && it->second->job.status != JobStatus::kDone) {
      const Job& job = it->second->job;
      return FailedPrecondition("job {} is {}{}", job_id.ToString(), driver::JobStatusName(job.status),
                                job.error.empty() ? "" : ": " + job.error);
    }
  }
  if (limit < 1 || limit > kMaxPageRows) return InvalidArgument("limit {} is outside 1..{}", limit, kMaxPageRows);
  DropExpired();
  return Status::OK();
}

void JobRunner::DropExpired() {
  const int64_t now = clock_->NowMillis();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // (last_expire_ms_ starts at the minimum: compare without subtracting from it)
    if (now >= last_expire_ms_ && now < last_expire_ms_ + kExpireIntervalMs &&
        last_expire_ms_ != std::numeric_limits<int64_t>::min()) {
      return;
    }
    last_expire_ms_ = now;
  }
  Status dropped = hooks_.drop_expired(now);
  if (!dropped.ok()) AQ_LOG(Warn, "{}: deleting expired job results: {}", hooks_.name, dropped.ToString());
}

void JobRunner::StopAll() {
  std::map<Uuid, std::shared_ptr<State>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs.swap(jobs_);
  }
  // A cancel that lands between two statements of a job is lost, so cancel
  // until the job has finished.
  for (auto& [id, state] : jobs) {
    while (true) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (state->finished) break;
        if (state->cancel != nullptr) {
          char message[256];
          PQcancel(state->cancel, message, sizeof(message));
        } else if (state->job.status == JobStatus::kPending) {
          state->finished = true;
          state->job.status = JobStatus::kFailed;
          state->job.error = "stopped";
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (state->thread.joinable()) state->thread.join();
  }
}

}  // namespace aquifer::drivers::postgres
