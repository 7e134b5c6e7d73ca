#pragma once

// The job lifecycle both SQL warehouses over libpq share: the Postgres
// warehouse (warehouse.cc) and the Redshift driver's portable jobs
// (../redshift/jobs.cc). What differs between them — how a job's query is
// checked, run, rendered and stored, and how the stored results are read and
// expired — is the caller's (JobRunner::Hooks); what is the same is here:
//
// - the jobs this process started (a map of states, each with its thread),
//   at most kMaxRunningJobs running at once, a job id used once;
// - a job's own connection (outside the pool, so a long query never holds a
//   pool slot), its cancel handle while it runs, the wall-clock timeout
//   (what is left of it for each statement) and the timeout's message;
// - Poll and the checks before a page is read, for jobs started here;
// - expired results dropped at most once a second (by the driver's clock);
// - StopAll: cancel (PQcancel, repeated: a cancel between two statements is
//   lost) until every job has finished, then join.
//
// Plus the small pieces both jobs' code uses: the first keyword, the trimmed
// statement, the caps of a cursor's fetch, the page tokens `o<offset>`, the
// stored columns' JSON.

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "aquifer/base/clock.h"
#include "aquifer/base/status.h"
#include "aquifer/driver/warehouse_service.h"
#include "aquifer/drivers/postgres/pg.h"

typedef struct pg_cancel PGcancel;

namespace aquifer::drivers::postgres {

// Jobs running at once, each on a connection of its own; more are refused
// with ResourceExhausted (the interface's "queue is full").
inline constexpr size_t kMaxRunningJobs = 16;
inline constexpr int32_t kMaxPageRows = 100'000;
// How often (by the driver's clock) expired results are deleted at most.
inline constexpr int64_t kExpireIntervalMs = 1000;

// A failed EXPLAIN: the server unreachable or timed out as it is, otherwise
// the query's fault (InvalidArgument with the server's message).
Status ExplainError(const Status& status);
// The bytes-scanned cap of a job against the dry run's estimate.
Status CheckScanCap(const driver::JobOptions& options, int64_t bytes_scanned_estimate);

// Fetches a job's cursor chunk by chunk into `out` (a row's JSON array text
// each). `fetch(chunk, out)` appends at most `chunk` rows and returns how many;
// `before_fetch` runs before each (the statement timeout). The caps stop the
// fetch as soon as the result has more rows or bytes than allowed (a row's
// size is its JSON text plus 16 bytes): nothing beyond the cap is materialised.
Status FetchCapped(const driver::JobOptions& options, const std::function<Status()>& before_fetch,
                   const std::function<Result<int64_t>(int64_t chunk, std::vector<std::string>* out)>& fetch,
                   std::vector<std::string>* out);

// The stored form of a result's columns (a JSON array of {name, type}) and back.
std::string StoredColumns(const std::vector<driver::Column>& columns);
Result<std::vector<driver::Column>> ParseStoredColumns(std::string_view text, const Uuid& job_id);
// A done job from the first row (row_count, bytes_scanned) of `found`; NotFound without one.
Result<driver::Job> StoredJob(const Uuid& job_id, const PgResult& found);
// Stores a done job's result: `store` in one transaction on `conn`, rolled back on an error.
Status StoreInTransaction(Connection& conn, const std::function<Status()>& store);

class JobRunner {
 public:
  struct Totals {
    int64_t rows = 0;
    int64_t bytes_scanned = 0;
  };
  struct Hooks {
    // Runs a job on its own connection (open, its cancel handle registered)
    // and stores its result: done once it returns OK. `remaining_ms()` is
    // what is left of the job's timeout (0: none), for statement_timeout.
    std::function<Result<Totals>(Connection& conn, const Uuid& job_id, const std::string& sql,
                                 const driver::JobOptions& options, const std::function<int64_t()>& remaining_ms)>
        run;
    // A done job not started here (any process sharing the database), or NotFound.
    std::function<Result<driver::Job>(const Uuid& job_id)> find_stored;
    // Deletes the stored results that expired by `now_ms` (every process's).
    std::function<Status(int64_t now_ms)> drop_expired;
    std::string name;  // for the log: "postgres warehouse"
  };

  JobRunner(std::string conninfo, Clock* clock, Hooks hooks);
  ~JobRunner();  // StopAll

  // Starts a job on a thread of its own (`sql` trimmed), after dropping the expired results.
  Result<driver::Job> Start(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options);
  // A job started here as it stands, else find_stored.
  Result<driver::Job> Poll(const Uuid& job_id);
  // Before a page of a job's rows is read: a job started here must be done,
  // `limit` in 1..kMaxPageRows; then the expired results are dropped.
  Status CheckReadable(const Uuid& job_id, int32_t limit);
  // Deletes expired results at most every kExpireIntervalMs. Best effort:
  // readers check the expiry themselves.
  void DropExpired();
  // Cancels every running job and waits for them; forgets them all.
  void StopAll();

 private:
  struct State {
    driver::Job job;
    PGcancel* cancel = nullptr;  // while the query runs; guarded by mu_
    bool finished = false;       // guarded by mu_
    std::thread thread;
  };
  void Run(std::shared_ptr<State> state, std::string sql, driver::JobOptions options);
  void Finish(const std::shared_ptr<State>& state, Status status, const Totals& totals);

  const std::string conninfo_;
  Clock* const clock_;
  const Hooks hooks_;
  std::mutex mu_;
  std::map<Uuid, std::shared_ptr<State>> jobs_;                    // guarded by mu_
  int64_t last_expire_ms_ = std::numeric_limits<int64_t>::min();  // guarded by mu_
};

}  // namespace aquifer::drivers::postgres
