#include "aquifer/drivers/mock/warehouse.h"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <string>
#include <unordered_map>

namespace aquifer::drivers::mock {
namespace {

using driver::InstanceInfo;
using driver::Job;
using driver::JobOptions;
using driver::JobStatus;
using driver::QueryAnalysis;
using driver::RowPage;
using driver::WarehouseCapabilities;

// "SELECT-looking": after leading blanks, comments and parentheses, the first
// word is SELECT, WITH, VALUES or FROM (DuckDB's FROM-first form); and there
// is no second statement after a semicolon.
Status CheckSelect(std::string_view sql) {
  size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c)) || c == '(') {
      ++i;
    } else if (sql.substr(i, 2) == "--") {
      const size_t nl = sql.find('\n', i);
      i = nl == std::string_view::npos ? sql.size() : nl + 1;
    } else if (sql.substr(i, 2) == "/*") {
      const size_t end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else {
      break;
    }
  }
  std::string word;
  while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i]))) {
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i++])));
  }
  if (word.empty()) return InvalidArgument("mock: empty or unparsable query");
  if (word != "SELECT" && word != "WITH" && word != "VALUES" && word != "FROM") {
    return InvalidArgument("mock: only SELECT statements are accepted, got {}", word);
  }
  // A semicolon followed by anything but blanks is a second statement
  // (semicolons inside string literals are skipped).
  bool in_string = false;
  for (size_t j = i; j < sql.size(); ++j) {
    const char c = sql[j];
    if (c == '\'') in_string = !in_string;
    if (c == ';' && !in_string) {
      for (size_t k = j + 1; k < sql.size(); ++k) {
        if (!std::isspace(static_cast<unsigned char>(sql[k])) && sql[k] != ';') {
          return InvalidArgument("mock: expected one statement");
        }
      }
      break;
    }
  }
  return Status::OK();
}

class MockWarehouse final : public driver::WarehouseService {
 public:
  WarehouseCapabilities capabilities() const override {
    WarehouseCapabilities caps;
    caps.dry_run_bytes = false;
    caps.stores_rows = false;
    caps.dedups_retries = false;
    return caps;
  }

  Status RegisterInstance(const InstanceInfo& instance) override { return Status::OK(); }
  Status RemoveInstance(const InstanceInfo& instance) override { return Status::OK(); }
  std::string TableName(const InstanceInfo& instance) const override {
    return "\"i_" + instance.instance_id.Hex() + "\"";
  }
  // Rows are discarded, so there is nothing to write once: only the groups are checked.
  Status WriteToWarehouse(const InstanceInfo& instance, std::span<const driver::Record> records,
                          std::span<const driver::RecordGroup> groups) override {
    return driver::CheckRecordGroups(records.size(), groups);
  }

  Result<QueryAnalysis> AnalyzeQuery(std::string_view sql) override {
    AQ_RETURN_IF_ERROR(CheckSelect(sql));
    QueryAnalysis analysis;
    // Tables are the identifiers TableName() spells, listed once each in order of appearance.
    for (size_t at = sql.find("\"i_"); at != std::string_view::npos; at = sql.find("\"i_", at + 1)) {
      std::string_view candidate = sql.substr(at, 36);
      if (candidate.size() == 36 && candidate.back() == '"' &&
          std::all_of(candidate.begin() + 3, candidate.end() - 1,
                      [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }) &&
          std::find(analysis.tables.begin(), analysis.tables.end(), candidate) == analysis.tables.end()) {
        analysis.tables.emplace_back(candidate);
      }
    }
    return analysis;
  }

  Result<Job> StartQuery(const Uuid& job_id, std::string_view sql, const JobOptions& options) override {
    Job job;
    job.job_id = job_id;
    if (Status status = CheckSelect(sql); status.ok()) {
      job.status = JobStatus::kDone;
    } else {
      job.status = JobStatus::kFailed;
      job.error = status.message();
    }
    std::lock_guard lock(mu_);
    if (!jobs_.emplace(job_id, job).second) return AlreadyExists("mock: job {} exists", job_id.ToString());
    return job;
  }

  Result<Job> PollJob(const Uuid& job_id) override {
    std::lock_guard lock(mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return NotFound("mock: no job {}", job_id.ToString());
    return it->second;
  }

  Result<RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) override {
    if (limit < 1) return InvalidArgument("mock: limit must be at least 1, got {}", limit);
    std::lock_guard lock(mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) return NotFound("mock: no job {}", job_id.ToString());
    if (it->second.status != JobStatus::kDone) {
      return FailedPrecondition("mock: job {} failed: {}", job_id.ToString(), it->second.error);
    }
    if (!page.empty()) return InvalidArgument("mock: malformed page token");  // no page ever has a next
    return RowPage{};
  }

  // It keeps no rows, so nothing ever expires or is held.
  Result<int64_t> PurgeExpired(const InstanceInfo&) override { return int64_t{0}; }
  Result<int64_t> CountStoredRows(const InstanceInfo&) override { return int64_t{0}; }

  Status Reset() override {
    std::lock_guard lock(mu_);
    jobs_.clear();
    return Status::OK();
  }

 private:
  std::mutex mu_;
  std::unordered_map<Uuid, Job, UuidHash> jobs_;
};

}  // namespace

std::shared_ptr<driver::WarehouseService> MakeWarehouse() { return std::make_shared<MockWarehouse>(); }

void Register(driver::Registry* registry) {
  registry->Register("mock", driver::Factory<driver::WarehouseService>(
                                 [](const driver::Config&, const driver::DriverContext&)
                                     -> Result<std::shared_ptr<driver::WarehouseService>> { return MakeWarehouse(); }));
}

}  // namespace aquifer::drivers::mock
