#pragma once

// Pieces the warehouse drivers over a remote server (Postgres, Redshift,
// BigQuery, ClickHouse) share: result expiry and page tokens, the retention
// of the tables a job reads, a mutex per instance for grouped writes, and the
// jobs a driver runs on threads of its own.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "aquifer/base/status.h"
#include "aquifer/base/uuid.h"
#include "aquifer/driver/warehouse_service.h"

namespace aquifer::driver {

// When a result finished at `finished_ms` expires (0: never).
int64_t ExpiresMs(int64_t finished_ms, int64_t result_ttl_ms);
// FailedPrecondition "the rows of job <id> expired <ttl> ms after it finished".
Status ResultExpired(const Uuid& job_id, int64_t finished_ms, int64_t expires_ms);
// The offset a page token `o<offset>` names ("" = 0), within 0..total;
// InvalidArgument "malformed page token" otherwise.
Result<int64_t> ParsePageToken(std::string_view page, int64_t total, const Uuid& job_id);
std::string PageToken(int64_t offset);

// The retention of each instance table a driver registered or wrote, by its
// TableName() (how the engine spells it in SQL), so jobs never read an
// expired row.
class RetentionByTable {
 public:
  // Remembers `table`'s retention; <= 0 forgets it.
  void Note(const std::string& table, int64_t retention_ms);
  // The remembered tables `sql` names, with their retention.
  std::vector<std::pair<std::string, int64_t>> NamedIn(std::string_view sql) const;
  // `sql` with every remembered table name (where `quote`, the name's first
  // character, starts) replaced by `wrap(table, horizon_ms)`.
  std::string ReadThrough(const std::string& sql, char quote, int64_t now_ms,
                          const std::function<std::string(const std::string& table, int64_t horizon_ms)>& wrap) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, int64_t> retention_ms_;  // guarded by mu_
};

// One mutex per instance: a driver holds it over a grouped write between
// reading what is stored and storing the rest.
class InstanceLocks {
 public:
  std::shared_ptr<std::mutex> Of(const Uuid& instance_id);

 private:
  std::mutex mu_;
  std::map<Uuid, std::shared_ptr<std::mutex>> locks_;  // guarded by mu_
};

// A job this driver runs on a thread of its own.
struct LocalJob {
  Job job;
  std::string sql;
  JobOptions options;
  int64_t finished_ms = 0;        // by the driver's clock, once done; guarded by LocalJobs::mu()
  std::atomic<bool> stop{false};  // ends the job's requests (the driver going away)
  bool finished = false;          // guarded by LocalJobs::mu()
  std::thread thread;
};

// The jobs of one driver: at most `max_running` run at once (more are
// refused with ResourceExhausted, the interface's "queue is full"); a
// finished job's thread is joined when the next one starts.
class LocalJobs {
 public:
  explicit LocalJobs(size_t max_running) : max_running_(max_running) {}
  ~LocalJobs() { StopAll(); }
  LocalJobs(const LocalJobs&) = delete;
  LocalJobs& operator=(const LocalJobs&) = delete;

  // Guards each job's `job`, `finished_ms` and `finished`.
  std::mutex& mu() { return mu_; }
  // AlreadyExists when the id is taken here, ResourceExhausted when full;
  // else keeps the job and runs `run` on its thread.
  Status Launch(const std::shared_ptr<LocalJob>& job, std::function<void()> run);
  std::shared_ptr<LocalJob> Find(const Uuid& job_id);
  // The jobs not finished yet.
  std::vector<std::shared_ptr<LocalJob>> Unfinished();
  // Sets every job's stop flag, joins their threads and forgets them.
  void StopAll();

 private:
  const size_t max_running_;
  std::mutex mu_;
  std::map<Uuid, std::shared_ptr<LocalJob>> jobs_;  // guarded by mu_
};

}  // namespace aquifer::driver
