#include "aquifer/drivers/redshift/warehouse.h"

#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/base/text.h"
#include "aquifer/drivers/postgres/warehouse.h"
#include "aquifer/drivers/redshift/jobs.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::redshift {
namespace {

using driver::InstanceInfo;
using driver::Job;
using driver::Record;
using nlohmann::json;
using postgres::Connection;
using postgres::Params;
using postgres::PgResult;
using postgres::PooledConnection;
using postgres::QuoteIdent;

// The PostgreSQL protocol carries at most 65535 parameters per statement.
constexpr size_t kMaxParams = 65535;

class RedshiftWarehouse final : public driver::WarehouseService {
 public:
  RedshiftWarehouse(const WarehouseOptions& options, Clock* clock)
      : options_(options), clock_(clock), pool_(options.connection.url, options.connection.pool_size),
        schema_(options.connection.schema),
        applied_(QuoteIdent(options.connection.schema) + ".redshift_applied") {
    if (options.s3) s3_.emplace(*options.s3);
  }

  Status Init() {
    if (options_.server) {
      server_ = *options_.server;
    } else {
      AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
      AQ_ASSIGN_OR_RETURN(PgResult version, conn->Exec("SELECT version()"));
      if (version.rows() != 1) return Internal("SELECT version() returned {} rows", version.rows());
      server_ = DetectServer(version.Bytes(0, 0));
    }
    use_copy_ = options_.ingest == Ingest::kCopy ||
                (options_.ingest == Ingest::kAuto && server_ == Server::kRedshift && s3_.has_value());
    if (use_copy_ && server_ != Server::kRedshift) {
      return InvalidArgument("config 'ingest' is copy, but the server is PostgreSQL, which cannot COPY from S3 "
                             "(use ingest = auto or insert)");
    }
    if (use_copy_ && !s3_) return InvalidArgument("config 'ingest' is copy, but no 's3_bucket' is configured");
    if (server_ == Server::kPostgres) {
      // Jobs, dry runs, paging, purge and reset: the Postgres warehouse's code
      // on the same schema and the same table names.
      postgres::WarehouseOptions pg;
      pg.connection = options_.connection;
      pg.limits = options_.limits;
      pg.applied_window_ms = options_.applied_window_ms;
      AQ_ASSIGN_OR_RETURN(pg_, postgres::MakeWarehouseService(pg, clock_));
    }
    if (server_ == Server::kRedshift || options_.portable_jobs) {
      jobs_ = std::make_unique<PortableJobs>(&pool_, schema_, server_, clock_,
                                             [this](Connection& conn, std::string_view sql) {
                                               return PurgeReferenced(conn, sql);
                                             });
      AQ_RETURN_IF_ERROR(jobs_->Init([this](const std::string& ddl) { return Ddl(ddl); }));
    }
    // The applied group ids (exactly once), in types both servers have; looked
    // up by (instance_id, group_id): an index on PostgreSQL, the sort key on Redshift.
    const std::string applied_ddl = fmt::format(
        "CREATE TABLE IF NOT EXISTS {} (instance_id CHAR(32) NOT NULL, group_id VARCHAR({}) NOT NULL, "
        "applied_ms BIGINT NOT NULL){}",
        applied_, 2 * driver::kMaxRecordGroupIdSize,
        server_ == Server::kRedshift ? " COMPOUND SORTKEY (instance_id, group_id)" : "");
    if (server_ == Server::kRedshift) return Ddl(applied_ddl);
    return Ddl(applied_ddl + "; CREATE INDEX IF NOT EXISTS redshift_applied_ids ON " + applied_ +
               " (instance_id, group_id)");
  }

  driver::WarehouseCapabilities capabilities() const override {
    return postgres::StoredRowsCapabilities(options_.limits);
  }

  std::string TableName(const InstanceInfo& instance) const override {
    return postgres::InstanceTable(schema_, instance.instance_id);
  }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) return InvalidArgument("registering {}: no schema", instance.instance_id.ToString());
    AQ_ASSIGN_OR_RETURN(std::string ddl, CreateTableSql(TableName(instance), *instance.schema, options_.layout, server_));
    Status done = Ddl(ddl);
    if (!done.ok()) return done.WithContext(fmt::format("creating the warehouse table of {}", instance.instance_id.ToString()));
    return NoteRetention(instance);
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    {
      AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
      Status forgot = conn->ExecScript(fmt::format("DELETE FROM {} WHERE instance_id = '{}'", applied_,
                                                   instance.instance_id.Hex()));
      if (!forgot.ok()) return forgot.WithContext("forgetting the applied groups of " + instance.instance_id.ToString());
    }
    if (pg_) return pg_->RemoveInstance(instance);
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    return conn->ExecScript("DROP TABLE IF EXISTS " + TableName(instance));
  }

  Status WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                          std::span<const driver::RecordGroup> groups) override;

  Result<driver::QueryAnalysis> AnalyzeQuery(std::string_view sql) override {
    return jobs_ ? jobs_->Analyze(sql) : pg_->AnalyzeQuery(sql);
  }
  Result<Job> StartQuery(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) override {
    return jobs_ ? jobs_->Start(job_id, sql, options) : pg_->StartQuery(job_id, sql, options);
  }
  Result<Job> PollJob(const Uuid& job_id) override { return jobs_ ? jobs_->Poll(job_id) : pg_->PollJob(job_id); }
  Result<driver::RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) override {
    return jobs_ ? jobs_->ReadRows(job_id, page, limit) : pg_->ReadJobRows(job_id, page, limit);
  }

  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      retention_ms_[TableName(instance)] = instance.warehouse_retention_ms;
    }
    if (pg_) return pg_->PurgeExpired(instance);
    if (instance.warehouse_retention_ms <= 0) return int64_t{0};
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    return DeleteExpired(*conn, TableName(instance), instance.warehouse_retention_ms);
  }

  Result<int64_t> CountStoredRows(const InstanceInfo& instance) override {
    if (pg_) return pg_->CountStoredRows(instance);
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    auto rows = conn->Exec("SELECT count(*) FROM " + TableName(instance));
    if (!rows.ok() && rows.status().code() == StatusCode::kNotFound) return int64_t{0};
    if (!rows.ok()) return rows.status();
    return rows->Int(0, 0);
  }

  Status Reset() override {
    {
      AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
      Status forgot = conn->ExecScript("TRUNCATE " + applied_);
      if (!forgot.ok()) return forgot.WithContext("resetting the warehouse");
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      retention_ms_.clear();
    }
    if (jobs_) AQ_RETURN_IF_ERROR(jobs_->Reset());
    if (pg_) return pg_->Reset();
    AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
    AQ_ASSIGN_OR_RETURN(PgResult tables, conn->Exec(fmt::format(
        "SELECT tablename FROM pg_tables WHERE schemaname = {} AND tablename LIKE 'i!_%' ESCAPE '!'", Literal(schema_))));
    for (int row = 0; row < tables.rows(); ++row) {
      AQ_RETURN_IF_ERROR(conn->ExecScript("DROP TABLE IF EXISTS " + QuoteIdent(schema_) + "." +
                                          QuoteIdent(std::string(tables.Bytes(row, 0)))));
    }
    return Status::OK();
  }

 private:
  // Deletes the rows of `table` older than the retention (a missing table has none).
  Result<int64_t> DeleteExpired(Connection& conn, const std::string& table, int64_t retention_ms) {
    const int64_t horizon = driver::RetentionHorizon(retention_ms, clock_->NowMillis());
    auto deleted = conn.Exec(fmt::format("DELETE FROM {} WHERE __timestamp < TIMESTAMPTZ 'epoch' + {} * "
                                         "INTERVAL '1 millisecond'",
                                         table, horizon));
    if (!deleted.ok()) {
      if (deleted.status().code() == StatusCode::kNotFound) return int64_t{0};
      return deleted.status().WithContext("deleting the expired rows of " + table);
    }
    return deleted->AffectedRows();
  }
  // Portable jobs: before the job's transaction, the expired rows of every
  // table with a retention its SQL names are deleted, so it never reads one.
  Status PurgeReferenced(Connection& conn, std::string_view sql) {
    std::vector<std::pair<std::string, int64_t>> named;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [table, retention] : retention_ms_) {
        if (retention > 0 && sql.find(table) != std::string_view::npos) named.emplace_back(table, retention);
      }
    }
    for (const auto& [table, retention] : named) AQ_RETURN_IF_ERROR(DeleteExpired(conn, table, retention).status());
    return Status::OK();
  }

  // DDL: on PostgreSQL under the schema's advisory lock (postgres::EnsureSchema),
  // on Redshift (no advisory locks) in one transaction.
  Status Ddl(const std::string& sql) {
    if (server_ == Server::kPostgres) return postgres::EnsureSchema(pool_, schema_, sql);
    return postgres::InTransaction(pool_, [&](Connection& conn) -> Status {
      AQ_RETURN_IF_ERROR(conn.ExecScript("CREATE SCHEMA IF NOT EXISTS " + QuoteIdent(schema_)));
      return conn.ExecScript(sql);
    });
  }

  // The Postgres warehouse's jobs delete the expired rows of the tables they
  // read by the retention it last saw for them: tell it when it changes.
  Status NoteRetention(const InstanceInfo& instance) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto [it, fresh] = retention_ms_.emplace(TableName(instance), instance.warehouse_retention_ms);
      if (!fresh && it->second == instance.warehouse_retention_ms) return Status::OK();
      it->second = instance.warehouse_retention_ms;
    }
    if (pg_) return pg_->PurgeExpired(instance).status();
    return Status::OK();
  }

  // Inside the write's transaction: the ids of `groups` not applied before
  // (the first of repeated ids), recorded as applied now. A lock makes
  // concurrent writers of the instance take turns (Redshift has no ON
  // CONFLICT and enforces no unique key), so each id commits once.
  Result<std::set<std::string>> ClaimGroups(Connection& conn, const InstanceInfo& instance,
                                            std::span<const driver::RecordGroup> groups, int64_t now);
  Status InsertRows(Connection& conn, const InstanceInfo& instance,
                    const std::vector<const std::vector<std::optional<std::string>>*>& rows);
  Status CopyRows(Connection& conn, const InstanceInfo& instance,
                  const std::vector<const std::vector<std::optional<std::string>>*>& rows, std::string* staged_key);
  void PruneApplied(Connection& conn, int64_t now_ms);

  const WarehouseOptions options_;
  Clock* const clock_;
  postgres::Pool pool_;
  const std::string schema_;
  const std::string applied_;  // quoted schema.redshift_applied
  std::optional<S3Client> s3_;
  Server server_ = Server::kPostgres;
  bool use_copy_ = false;
  std::shared_ptr<driver::WarehouseService> pg_;  // on PostgreSQL only
  std::unique_ptr<PortableJobs> jobs_;             // on Redshift, or with jobs = portable
  std::mutex mu_;
  std::map<std::string, int64_t> retention_ms_;  // TableName → retention last told; guarded by mu_
  int64_t last_prune_ms_ = 0;                    // guarded by mu_
};

Result<std::set<std::string>> RedshiftWarehouse::ClaimGroups(Connection& conn, const InstanceInfo& instance,
                                                             std::span<const driver::RecordGroup> groups,
                                                             int64_t now) {
  // Redshift: a table lock (it has no advisory locks); PostgreSQL: a
  // transaction-scoped advisory lock per instance, so writers of different
  // instances do not wait for each other.
  if (server_ == Server::kRedshift) {
    AQ_RETURN_IF_ERROR(conn.ExecScript("LOCK " + applied_));
  } else {
    AQ_RETURN_IF_ERROR(conn.ExecScript(fmt::format("SELECT pg_advisory_xact_lock(hashtext({}))",
                                                   Literal("aquifer redshift applied " + schema_ + " " +
                                                           instance.instance_id.Hex()))));
  }
  // Only hex digits reach the SQL text.
  std::string ids;
  for (const driver::RecordGroup& group : groups) ids += (ids.empty() ? "'" : ", '") + HexEncode(group.id) + "'";
  const std::string instance_hex = instance.instance_id.Hex();
  AQ_ASSIGN_OR_RETURN(PgResult seen, conn.Exec(fmt::format(
      "SELECT group_id FROM {} WHERE instance_id = '{}' AND group_id IN ({})", applied_, instance_hex, ids)));
  std::set<std::string> known;
  for (int row = 0; row < seen.rows(); ++row) known.emplace(seen.Bytes(row, 0));
  std::set<std::string> fresh;
  std::string values;
  for (const driver::RecordGroup& group : groups) {
    std::string hex = HexEncode(group.id);
    if (known.count(hex) > 0 || !fresh.insert(hex).second) continue;
    values += fmt::format("{}('{}', '{}', {})", values.empty() ? "" : ", ", instance_hex, hex, now);
  }
  if (!values.empty()) {
    AQ_RETURN_IF_ERROR(conn.ExecScript(
        fmt::format("INSERT INTO {} (instance_id, group_id, applied_ms) VALUES {}", applied_, values)));
  }
  return fresh;
}

Status RedshiftWarehouse::InsertRows(Connection& conn, const InstanceInfo& instance,
                                     const std::vector<const std::vector<std::optional<std::string>>*>& rows) {
  const size_t columns = instance.schema->fields().size() + 2;
  const size_t per_statement = std::max<size_t>(1, std::min(options_.insert_batch_rows, kMaxParams / columns));
  std::string sql;
  size_t sql_rows = 0;
  for (size_t first = 0; first < rows.size(); first += per_statement) {
    const size_t count = std::min(per_statement, rows.size() - first);
    if (count != sql_rows) {
      sql = InsertSql(TableName(instance), *instance.schema, count, server_);
      sql_rows = count;
    }
    Params params;
    for (size_t row = first; row < first + count; ++row) {
      for (const std::optional<std::string>& value : *rows[row]) {
        if (value) {
          params.Untyped(*value);
        } else {
          params.Null(0);
        }
      }
    }
    AQ_RETURN_IF_ERROR(conn.Exec(sql, params).status());
  }
  return Status::OK();
}

Status RedshiftWarehouse::CopyRows(Connection& conn, const InstanceInfo& instance,
                                   const std::vector<const std::vector<std::optional<std::string>>*>& rows,
                                   std::string* staged_key) {
  AQ_ASSIGN_OR_RETURN(std::string body, StagingBody(*instance.schema, rows, options_.s3_gzip));
  *staged_key = StagingKey(options_.s3_prefix, instance.instance_id, Uuid::Random(), options_.s3_gzip);
  Status put = s3_->PutObject(*staged_key, body);
  if (!put.ok()) return put.WithContext("staging the rows for COPY");
  return conn.ExecScript(CopySql(TableName(instance), *instance.schema, s3_->options().bucket, *staged_key,
                                 options_.copy_auth, s3_->options().region, options_.s3_gzip));
}

Status RedshiftWarehouse::WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                                           std::span<const driver::RecordGroup> groups) {
  const std::string what = fmt::format("writing to {}", instance.instance_id.ToString());
  if (instance.schema == nullptr) return InvalidArgument("{}: no schema", what);
  if (Status checked = driver::CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext(what);
  }
  AQ_RETURN_IF_ERROR(NoteRetention(instance));
  const int64_t now = clock_->NowMillis();
  // Every record is converted before anything is sent: a bad one rejects the
  // batch, naming it. rows[i] is empty when record i has expired.
  std::vector<std::optional<std::vector<std::optional<std::string>>>> rows(records.size());
  for (size_t record_idx = 0; record_idx < records.size(); ++record_idx) {
    const Record& record = records[record_idx];
    if (instance.warehouse_retention_ms > 0 && record.timestamp_ms < now - instance.warehouse_retention_ms) continue;
    auto text = schema::AvroToJson(*instance.schema, record.avro);
    if (!text.ok()) return text.status().WithContext(fmt::format("{}: record {}", what, record_idx));
    json value = json::parse(*text, nullptr, false);
    if (!value.is_object()) return Internal("{}: record {}: the codec wrote no JSON object", what, record_idx);
    auto row = RowValues(*instance.schema, value, record.key, record.timestamp_ms);
    if (!row.ok()) return row.status().WithContext(fmt::format("{}: record {}", what, record_idx));
    rows[record_idx] = std::move(*row);
  }
  AQ_ASSIGN_OR_RETURN(PooledConnection conn, pool_.Acquire());
  std::string staged_key;
  Status done = [&]() -> Status {
    AQ_RETURN_IF_ERROR(conn->Begin());
    std::vector<const std::vector<std::optional<std::string>>*> chosen;
    if (groups.empty()) {
      for (const auto& row : rows) {
        if (row) chosen.push_back(&*row);
      }
    } else {
      AQ_ASSIGN_OR_RETURN(std::set<std::string> fresh, ClaimGroups(*conn, instance, groups, now));
      size_t begin = 0;
      for (const driver::RecordGroup& group : groups) {
        if (fresh.erase(HexEncode(group.id)) > 0) {
          for (size_t record_idx = begin; record_idx < begin + group.records; ++record_idx) {
            if (rows[record_idx]) chosen.push_back(&*rows[record_idx]);
          }
        }
        begin += group.records;
      }
    }
    if (!chosen.empty()) {
      AQ_RETURN_IF_ERROR(use_copy_ ? CopyRows(*conn, instance, chosen, &staged_key) : InsertRows(*conn, instance, chosen));
    }
    return conn->Commit();
  }();
  if (!done.ok()) conn->Rollback();
  if (!staged_key.empty()) {
    // The loaded (or abandoned) staging file is not needed any more.
    Status removed = s3_->DeleteObject(staged_key);
    if (!removed.ok()) AQ_LOG(Warn, "redshift warehouse: deleting the staging object: {}", removed.ToString());
  }
  if (!done.ok()) return done.WithContext(what);
  if (!groups.empty()) PruneApplied(*conn, now);
  return Status::OK();
}

void RedshiftWarehouse::PruneApplied(Connection& conn, int64_t now_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (last_prune_ms_ != 0 && now_ms - last_prune_ms_ < 60'000) return;
    last_prune_ms_ = now_ms;
  }
  (void)conn.ExecScript(
      fmt::format("DELETE FROM {} WHERE applied_ms < {}", applied_, now_ms - options_.applied_window_ms));
}

std::vector<std::string> SplitList(std::string_view text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string item(text.substr(pos, end - pos));
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(std::move(item));
    pos = end + 1;
  }
  return out;
}

}  // namespace

std::string StagingKey(std::string_view prefix, const Uuid& instance_id, const Uuid& batch_id, bool gzip) {
  return fmt::format("{}{}/{}.json{}", prefix, instance_id.Hex(), batch_id.Hex(), gzip ? ".gz" : "");
}

Result<std::string> StagingBody(const schema::Schema& schema,
                                const std::vector<const std::vector<std::optional<std::string>>*>& rows, bool gzip) {
  std::string body;
  for (const auto* row : rows) body += JsonLine(schema, *row);
  if (!gzip) return body;
  return Gzip(body);
}

Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config) {
  WarehouseOptions options;
  AQ_ASSIGN_OR_RETURN(options.connection, postgres::ParseConnectionOptions(config));
  AQ_ASSIGN_OR_RETURN(options.applied_window_ms,
                      driver::ConfigInt(config, "applied_window_ms", options.applied_window_ms));
  if (options.applied_window_ms < 1) {
    return InvalidArgument("config 'applied_window_ms': must be positive, got {}", options.applied_window_ms);
  }
  const std::string server = driver::ConfigString(config, "server", "auto");
  if (server == "redshift") {
    options.server = Server::kRedshift;
  } else if (server == "postgres") {
    options.server = Server::kPostgres;
  } else if (server != "auto") {
    return InvalidArgument("config 'server': must be auto, redshift or postgres, got '{}'", server);
  }
  options.layout.diststyle = driver::ConfigString(config, "diststyle", options.layout.diststyle);
  options.layout.distkey = driver::ConfigString(config, "distkey", "");
  if (!options.layout.distkey.empty() && config.count("diststyle") == 0) options.layout.diststyle = "key";
  if (config.count("sortkey") > 0) options.layout.sortkey = SplitList(config.at("sortkey"));
  AQ_RETURN_IF_ERROR(CheckLayout(options.layout));
  const std::string jobs = driver::ConfigString(config, "jobs", "auto");
  if (jobs == "portable") {
    options.portable_jobs = true;
  } else if (jobs != "auto") {
    return InvalidArgument("config 'jobs': must be auto or portable, got '{}'", jobs);
  }
  const std::string ingest = driver::ConfigString(config, "ingest", "auto");
  if (ingest == "copy") {
    options.ingest = Ingest::kCopy;
  } else if (ingest == "insert") {
    options.ingest = Ingest::kInsert;
  } else if (ingest != "auto") {
    return InvalidArgument("config 'ingest': must be auto, copy or insert, got '{}'", ingest);
  }
  const std::string bucket = driver::ConfigString(config, "s3_bucket", "");
  if (!bucket.empty()) {
    S3Options s3;
    s3.bucket = bucket;
    s3.region = driver::ConfigString(config, "s3_region", s3.region);
    s3.endpoint = driver::ConfigString(config, "s3_endpoint", fmt::format("https://s3.{}.amazonaws.com", s3.region));
    s3.access_key_id = driver::ConfigString(config, "s3_access_key_id", "");
    s3.secret_access_key = driver::ConfigString(config, "s3_secret_access_key", "");
    s3.session_token = driver::ConfigString(config, "s3_session_token", "");
    if (s3.access_key_id.empty() || s3.secret_access_key.empty()) {
      return InvalidArgument("config 's3_bucket' is set: 's3_access_key_id' and 's3_secret_access_key' are required "
                             "(the upload is signed with them)");
    }
    options.copy_auth.access_key_id = s3.access_key_id;
    options.copy_auth.secret_access_key = s3.secret_access_key;
    options.copy_auth.session_token = s3.session_token;
    options.s3 = std::move(s3);
  }
  options.copy_auth.iam_role = driver::ConfigString(config, "iam_role", "");
  AQ_ASSIGN_OR_RETURN(options.s3_gzip, driver::ConfigBool(config, "s3_gzip", options.s3_gzip));
  options.s3_prefix = driver::ConfigString(config, "s3_prefix", options.s3_prefix);
  AQ_ASSIGN_OR_RETURN(int64_t batch, driver::ConfigInt(config, "insert_batch_rows",
                                                       static_cast<int64_t>(options.insert_batch_rows)));
  if (batch < 1 || batch > 100'000) return InvalidArgument("config 'insert_batch_rows': {} is outside 1..100000", batch);
  options.insert_batch_rows = static_cast<size_t>(batch);
  return options;
}

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock) {
  auto service = std::make_shared<RedshiftWarehouse>(options, clock != nullptr ? clock : Clock::System());
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("redshift warehouse service");
  return std::shared_ptr<driver::WarehouseService>(std::move(service));
}

}  // namespace aquifer::drivers::redshift
