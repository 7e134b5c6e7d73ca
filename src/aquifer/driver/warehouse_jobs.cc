#include "aquifer/driver/warehouse_jobs.h"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "aquifer/driver/types.h"

namespace aquifer::driver {

int64_t ExpiresMs(int64_t finished_ms, int64_t result_ttl_ms) {
  return result_ttl_ms > 0 ? finished_ms + std::min(result_ttl_ms, int64_t{1} << 50) : 0;
}

Status ResultExpired(const Uuid& job_id, int64_t finished_ms, int64_t expires_ms) {
  return FailedPrecondition("the rows of job {} expired {} ms after it finished (result_ttl_ms)", job_id.ToString(),
                            expires_ms - finished_ms);
}

Result<int64_t> ParsePageToken(std::string_view page, int64_t total, const Uuid& job_id) {
  int64_t offset = 0;
  if (!page.empty()) {
    auto [end, ec] = page.size() > 1 ? std::from_chars(page.data() + 1, page.data() + page.size(), offset)
                                     : std::from_chars_result{page.data(), std::errc::invalid_argument};
    if (page[0] != 'o' || ec != std::errc() || end != page.data() + page.size() || offset < 0 || offset > total) {
      return InvalidArgument("malformed page token for job {}", job_id.ToString());
    }
  }
  return offset;
}

std::string PageToken(int64_t offset) { return fmt::format("o{}", offset); }

void RetentionByTable::Note(const std::string& table, int64_t retention_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (retention_ms > 0) {
    retention_ms_[table] = retention_ms;
  } else {
    retention_ms_.erase(table);
  }
}

std::vector<std::pair<std::string, int64_t>> RetentionByTable::NamedIn(std::string_view sql) const {
  std::vector<std::pair<std::string, int64_t>> named;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [table, retention] : retention_ms_) {
    if (sql.find(table) != std::string_view::npos) named.emplace_back(table, retention);
  }
  return named;
}

std::string RetentionByTable::ReadThrough(
    const std::string& sql, char quote, int64_t now_ms,
    const std::function<std::string(const std::string& table, int64_t horizon_ms)>& wrap) const {
  const std::vector<std::pair<std::string, int64_t>> named = NamedIn(sql);
  if (named.empty()) return sql;
  std::string out;
  size_t pos = 0;
  while (pos < sql.size()) {
    bool replaced = false;
    if (sql[pos] == quote) {
      for (const auto& [table, retention] : named) {
        if (sql.compare(pos, table.size(), table) == 0) {
          out += wrap(table, RetentionHorizon(retention, now_ms));
          pos += table.size();
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out.push_back(sql[pos++]);
  }
  return out;
}

std::shared_ptr<std::mutex> InstanceLocks::Of(const Uuid& instance_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = locks_[instance_id];
  if (slot == nullptr) slot = std::make_shared<std::mutex>();
  return slot;
}

Status LocalJobs::Launch(const std::shared_ptr<LocalJob>& job, std::function<void()> run) {
  std::lock_guard<std::mutex> lock(mu_);
  if (jobs_.count(job->job.job_id) > 0) return AlreadyExists("job {} already exists", job->job.job_id.ToString());
  size_t running = 0;
  for (const auto& [id, other] : jobs_) {
    running += other->finished ? 0 : 1;
    // A finished job's thread only returns from its end: joined here, so
    // threads do not pile up over a long run.
    if (other->finished && other->thread.joinable()) other->thread.join();
  }
  if (running >= max_running_) {
    return ResourceExhausted("{} warehouse jobs are running, the most this driver runs at once; retry later", running);
  }
  jobs_[job->job.job_id] = job;
  job->thread = std::thread(std::move(run));
  return Status::OK();
}

std::shared_ptr<LocalJob> LocalJobs::Find(const Uuid& job_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<LocalJob>> LocalJobs::Unfinished() {
  std::vector<std::shared_ptr<LocalJob>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, job] : jobs_) {
    if (!job->finished) out.push_back(job);
  }
  return out;
}

void LocalJobs::StopAll() {
  std::map<Uuid, std::shared_ptr<LocalJob>> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs.swap(jobs_);
    for (auto& [id, job] : jobs) job->stop = true;
  }
  for (auto& [id, job] : jobs) {
    if (job->thread.joinable()) job->thread.join();
  }
}

}  // namespace aquifer::driver
