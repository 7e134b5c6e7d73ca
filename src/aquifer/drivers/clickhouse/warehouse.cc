#include "aquifer/drivers/clickhouse/warehouse.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/base/text.h"
#include "aquifer/driver/record_limits.h"
#include "aquifer/driver/sql_text.h"
#include "aquifer/driver/warehouse_jobs.h"
#include "aquifer/schema/codec.h"

namespace aquifer::drivers::clickhouse {
namespace {

using driver::InstanceInfo;
using driver::Job;
using driver::JobStatus;
using driver::Record;
using nlohmann::json;
using schema::Kind;
using schema::Type;

constexpr int32_t kMaxPageRows = 100'000;
constexpr size_t kMaxRunningJobs = 16;
// One INSERT stays within ClickHouse's squashed block (min_insert_block_size_rows
// = 1,048,576 rows, 256 MiB), so it lands as one part: all or nothing.
constexpr size_t kInsertRows = 1'000'000;
constexpr size_t kInsertBytes = size_t{128} << 20;
// A write of this many records or more converts them on a thread of its own.
constexpr size_t kConvertOnThreadFrom = 512;
// The settings of every read: bare 64-bit integers in JSON.
const std::map<std::string, std::string> kReadSettings = {{"output_format_json_quote_64bit_integers", "0"}};

std::string Quote(std::string_view name) {
  std::string out = "`";
  for (char c : name) {
    if (c == '`' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "`";
}

std::string Literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "'";
}

std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// ---- schema → table -------------------------------------------------------------------

bool IsScalar(const Type& type) { return type.kind != Kind::kArray && type.kind != Kind::kRecord; }

// A value ClickHouse 18.16 cannot hold in its own types (Nullable(Array),
// Nullable(Tuple), named tuples inside arrays): JSON text in a String.
bool AsJson(const Type& type, bool in_array) {
  if (IsScalar(type)) return false;
  if (type.nullable) return true;
  if (type.kind == Kind::kRecord) return in_array;
  return AsJson(*type.items, /*in_array=*/true);
}

std::string ColumnType(const Type& type, bool in_array = false) {
  if (AsJson(type, in_array)) return type.nullable ? "Nullable(String)" : "String";
  std::string base;
  switch (type.kind) {
    case Kind::kBoolean: base = "UInt8"; break;
    case Kind::kInt: base = "Int32"; break;
    case Kind::kLong: base = "Int64"; break;
    case Kind::kFloat: base = "Float32"; break;
    case Kind::kDouble: base = "Float64"; break;
    case Kind::kString:
    case Kind::kEnum:
    case Kind::kBytes:  // base64, as the codec's JSON spells bytes
    case Kind::kFixed: base = "String"; break;  // decimals: their exact text
    case Kind::kArray: return "Array(" + ColumnType(*type.items, true) + ")";
    case Kind::kRecord: {
      std::string inner;
      for (const schema::Field& field : type.fields) {
        inner += (inner.empty() ? "" : ", ") + Quote(field.name) + " " + ColumnType(*field.type);
      }
      return "Tuple(" + inner + ")";
    }
  }
  return type.nullable ? "Nullable(" + base + ")" : base;
}

// The codec's JSON of a value → JSONEachRow's JSON for the column ColumnType made.
json RowValue(const Type& type, const json& value, bool in_array = false) {
  if (value.is_null()) return json();
  if (AsJson(type, in_array)) return json(Dump(value));
  switch (type.kind) {
    case Kind::kBoolean: return json(value.is_boolean() && value.get<bool>() ? 1 : 0);
    case Kind::kArray: {
      json out = json::array();
      for (const json& item : value) out.push_back(RowValue(*type.items, item, true));
      return out;
    }
    case Kind::kRecord: {
      json out = json::array();
      for (const schema::Field& field : type.fields) {
        auto it = value.find(field.name);
        out.push_back(RowValue(*field.type, it == value.end() ? json() : *it));
      }
      return out;
    }
    default: return value;
  }
}

// ---- SQL checks ------------------------------------------------------------------------


// The top-level words of `sql` (outside quotes, comments and parentheses):
// each word's [begin, end) and upper-cased text, plus the top-level commas.
struct Token {
  size_t begin, end;
  std::string text;  // upper-cased word, "," or "" for anything else at depth 0
};

std::vector<Token> TopLevelTokens(std::string_view sql) {
  std::vector<Token> out;
  int depth = 0;
  size_t pos = 0;
  while (pos < sql.size()) {
    const char c = sql[pos];
    if (c == '\'' || c == '"' || c == '`') {
      const size_t begin = pos++;
      while (pos < sql.size() && sql[pos] != c) pos += sql[pos] == '\\' ? 2 : 1;
      ++pos;
      if (depth == 0) out.push_back({begin, std::min(pos, sql.size()), ""});
    } else if (sql.substr(pos, 2) == "--") {
      size_t end = sql.find('\n', pos);
      pos = end == std::string_view::npos ? sql.size() : end + 1;
    } else if (sql.substr(pos, 2) == "/*") {
      size_t end = sql.find("*/", pos + 2);
      pos = end == std::string_view::npos ? sql.size() : end + 2;
    } else if (c == '(') {
      if (depth == 0) out.push_back({pos, pos + 1, "("});
      ++depth;
      ++pos;
    } else if (c == ')') {
      --depth;
      ++pos;
      if (depth == 0 && !out.empty()) out.back().end = pos;  // "(" token spans the group
    } else if (depth > 0 || std::isspace(static_cast<unsigned char>(c))) {
      ++pos;
    } else if (c == ',') {
      out.push_back({pos, pos + 1, ","});
      ++pos;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') {
      const size_t begin = pos;
      std::string word;
      while (pos < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[pos])) || sql[pos] == '_')) {
        word.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(sql[pos++]))));
      }
      out.push_back({begin, pos, word});
    } else {
      out.push_back({pos, pos + 1, std::string(1, c)});
      ++pos;
    }
  }
  return out;
}

// FORMAT JSONCompact's answer.
Result<json> ParseCompact(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) return Internal("clickhouse: the answer is not JSON: {}", body.substr(0, 200));
  return parsed;
}

// The first column's strings of a FORMAT JSONCompact answer that are `size`
// characters of `alphabet` (names safe to splice into a statement); none
// when the request failed.
std::vector<std::string> FirstColumn(const Result<std::string>& body, std::string_view alphabet, size_t size) {
  std::vector<std::string> out;
  if (!body.ok()) return out;
  auto answer = ParseCompact(*body);
  if (!answer.ok()) return out;
  for (const json& row : answer->value("data", json::array())) {
    if (!row.is_array() || row.empty() || !row[0].is_string()) continue;
    const std::string& text = row[0].get_ref<const std::string&>();
    if (text.size() == size && text.find_first_not_of(alphabet) == std::string::npos) out.push_back(text);
  }
  return out;
}

int64_t AsInt(const json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_unsigned()) return static_cast<int64_t>(value.get<uint64_t>());
  if (value.is_number_float()) return static_cast<int64_t>(value.get<double>());
  if (value.is_string()) return std::strtoll(value.get<std::string>().c_str(), nullptr, 10);
  return 0;
}


// ---- results → JSON rows ---------------------------------------------------------------

// The top-level comma-separated parts of a type's argument list ("a String, b Array(Int32)").
std::vector<std::string_view> TypeArguments(std::string_view args) {
  std::vector<std::string_view> out;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == '(') ++depth;
    if (args[i] == ')') --depth;
    if (args[i] == ',' && depth == 0) {
      out.push_back(args.substr(start, i - start));
      start = i + 1;
    }
  }
  out.push_back(args.substr(start));
  for (std::string_view& part : out) {
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
  }
  return out;
}

// A cell of FORMAT JSONCompact as the row's JSON: a named Tuple (a record)
// becomes an object of its fields, inside arrays and nullables too; the rest
// is as ClickHouse wrote it.
json CellValue(std::string_view type, const json& value) {
  if (value.is_null()) return value;
  auto unwrap = [&](std::string_view prefix) -> std::optional<std::string_view> {
    if (type.starts_with(prefix) && type.ends_with(")")) {
      return type.substr(prefix.size(), type.size() - prefix.size() - 1);
    }
    return std::nullopt;
  };
  if (auto inner = unwrap("Nullable(")) return CellValue(*inner, value);
  if (auto inner = unwrap("Array(")) {
    if (!value.is_array()) return value;
    json out = json::array();
    for (const json& item : value) out.push_back(CellValue(*inner, item));
    return out;
  }
  if (auto inner = unwrap("Tuple(")) {
    const std::vector<std::string_view> parts = TypeArguments(*inner);
    if (!value.is_array() || value.size() != parts.size()) return value;
    json object = json::object();
    json array = json::array();
    bool named = true;
    for (size_t i = 0; i < parts.size(); ++i) {
      // "name Type" (named) or "Type"; a space inside parentheses does not count.
      int depth = 0;
      size_t space = std::string_view::npos;
      for (size_t c = 0; c < parts[i].size(); ++c) {
        if (parts[i][c] == '(') ++depth;
        if (parts[i][c] == ')') --depth;
        if (parts[i][c] == ' ' && depth == 0) {
          space = c;
          break;
        }
      }
      std::string_view field_type = space == std::string_view::npos ? parts[i] : parts[i].substr(space + 1);
      json converted = CellValue(field_type, value[i]);
      if (space == std::string_view::npos) {
        named = false;
      } else {
        std::string_view name = parts[i].substr(0, space);
        if (name.size() >= 2 && name.front() == '`' && name.back() == '`') name = name.substr(1, name.size() - 2);
        object[std::string(name)] = converted;
      }
      array.push_back(std::move(converted));
    }
    return named ? object : array;
  }
  return value;
}

// The visible columns (not `__`) and rows of a FORMAT JSONCompact answer.
void CompactRows(const json& answer, std::vector<driver::Column>* columns, std::vector<std::string>* rows,
                 int64_t* bytes = nullptr) {
  std::vector<bool> visible;
  std::vector<std::string> types;
  for (const json& column : answer.value("meta", json::array())) {
    const std::string name = column.value("name", "");
    visible.push_back(!name.starts_with("__"));
    types.push_back(column.value("type", ""));
    if (visible.back()) columns->push_back({name, types.back()});
  }
  for (const json& row : answer.value("data", json::array())) {
    json values = json::array();
    for (size_t i = 0; i < row.size() && i < visible.size(); ++i) {
      if (visible[i]) values.push_back(CellValue(types[i], row[i]));
    }
    rows->push_back(Dump(values));
    if (bytes != nullptr) *bytes += static_cast<int64_t>(rows->back().size()) + 16;
  }
}

// ---- writes ----------------------------------------------------------------------------

// `,"__key":"<hex>","__timestamp":N,"__group":"<id>","__seq":N}`: the end of
// a row whose fields are already in `line` (without its closing brace).
void AppendHiddenColumns(const driver::Record& record, std::string_view group, uint32_t seq, std::string* line) {
  static constexpr char kHex[] = "0123456789abcdef";
  char digits[24];
  line->append(R"(,"__key":")");
  for (unsigned char c : record.key) {
    line->push_back(kHex[c >> 4]);
    line->push_back(kHex[c & 15]);
  }
  line->append(R"(","__timestamp":)");
  line->append(digits, std::to_chars(digits, digits + sizeof digits, record.timestamp_ms).ptr);
  line->append(R"(,"__group":")");
  line->append(group);
  line->append(R"(","__seq":)");
  line->append(digits, std::to_chars(digits, digits + sizeof digits, seq).ptr);
  line->push_back('}');
}

// A write's JSONEachRow lines, filled in order by one thread (Publish) and
// read by another (WaitFor) as they come.
class LineFeed {
 public:
  explicit LineFeed(size_t records) : lines(records) {}

  std::vector<std::string> lines;  // "" for a record not to store; lines[i] is the reader's once WaitFor(i)

  // Lines [0, done) are final; `status` is the failure at line done - 1, if any.
  void Publish(size_t done, Status status) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = done;
      if (!status.ok() && error_.ok()) error_ = std::move(status);
    }
    cv_.notify_all();
  }
  // True once line `idx` is final; false when its conversion failed.
  bool WaitFor(size_t idx) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !error_.ok() || done_ > idx; });
    return error_.ok() || done_ > idx + 1;
  }
  Status error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t done_ = 0;  // guarded by mu_
  Status error_;     // guarded by mu_
};

// ---- jobs ------------------------------------------------------------------------------

using JobState = driver::LocalJob;

class ChWarehouse final : public driver::WarehouseService {
 public:
  ChWarehouse(const WarehouseOptions& options, Clock* clock) : options_(options), clock_(clock), http_(options.http) {
    heartbeat_ = std::thread([this] { Heartbeats(); });
  }
  ~ChWarehouse() override {
    {
      std::lock_guard<std::mutex> lock(beat_mu_);
      closing_ = true;
    }
    beat_cv_.notify_all();
    heartbeat_.join();
    StopJobs();
  }

  Status Init() {
    AQ_RETURN_IF_ERROR(http_.Query("CREATE DATABASE IF NOT EXISTS " + Quote(options_.database)).status());
    // Claims on write groups (README.md, "Exactly once"), one partition a
    // day so the old ones go by DROP PARTITION.
    AQ_RETURN_IF_ERROR(http_.Query("CREATE TABLE IF NOT EXISTS " + GroupsTable() +
                                   " (instance String, group_id String, writer String, attempt String, at_ms Int64) ENGINE = "
                                   "MergeTree PARTITION BY toYYYYMMDD(toDateTime(intDiv(at_ms, 1000))) "
                                   "ORDER BY (instance, group_id) SETTINGS index_granularity = 256")
                           .status());
    return http_.Query("CREATE TABLE IF NOT EXISTS " + JobsTable() +
                       " (job_id String, version Int64, status UInt8, error String, rows Int64, bytes Int64, "
                       "finished_ms Int64, ttl_ms Int64, beat_ms Int64) ENGINE = MergeTree ORDER BY job_id")
        .status();
  }

  driver::WarehouseCapabilities capabilities() const override {
    driver::WarehouseCapabilities caps;
    caps.limits = options_.limits;
    caps.dry_run_bytes = true;
    caps.stores_rows = true;
    caps.dedups_retries = false;  // 18.16 has no insert deduplication for MergeTree (README.md)
    return caps;
  }

  std::string TableName(const InstanceInfo& instance) const override {
    return Quote(options_.database) + "." + Quote("i_" + instance.instance_id.Hex());
  }

  Status RegisterInstance(const InstanceInfo& instance) override {
    if (instance.schema == nullptr) return InvalidArgument("registering {}: no schema", instance.instance_id.ToString());
    std::string columns;
    for (const schema::Field& field : instance.schema->fields()) {
      columns += Quote(field.name) + " " + ColumnType(*field.type) + ", ";
    }
    columns += "`__key` String, `__timestamp` Int64, `__group` String, `__seq` UInt32";
    // A row's sorting key names it (its key, its write group, its place in
    // the group): two copies of one row share it, and the ReplacingMergeTree
    // keeps one when it merges them (README.md, "Exactly once").
    auto made = http_.Query(fmt::format("CREATE TABLE IF NOT EXISTS {} ({}) ENGINE = ReplacingMergeTree PRIMARY KEY "
                                        "__key ORDER BY (__key, __group, __seq)",
                                        TableName(instance), columns));
    if (!made.ok()) {
      return made.status().WithContext(fmt::format("creating the warehouse table of {}", instance.instance_id.ToString()));
    }
    NoteRetention(instance);
    return Status::OK();
  }

  Status RemoveInstance(const InstanceInfo& instance) override {
    AQ_RETURN_IF_ERROR(http_.Query("DROP TABLE IF EXISTS " + TableName(instance)).status());
    // Its group claims: a mutation, which ClickHouse runs in the background.
    return http_.Query(fmt::format("ALTER TABLE {} DELETE WHERE instance = {}", GroupsTable(),
                                   Literal(instance.instance_id.Hex())))
        .status();
  }

  Status WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                          std::span<const driver::RecordGroup> groups) override;

  Result<driver::QueryAnalysis> AnalyzeQuery(std::string_view sql) override {
    return Analyze(std::string(driver::TrimStatement(sql)), nullptr);
  }
  Result<Job> StartQuery(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) override;
  Result<Job> PollJob(const Uuid& job_id) override;
  Result<driver::RowPage> ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) override;
  Result<driver::SmallResult> RunSmall(std::string_view sql, const driver::SmallQueryLimits& limits) override;

  Result<int64_t> PurgeExpired(const InstanceInfo& instance) override {
    NoteRetention(instance);
    if (instance.warehouse_retention_ms <= 0) return int64_t{0};
    const int64_t horizon = driver::RetentionHorizon(instance.warehouse_retention_ms, clock_->NowMillis());
    auto expired = Count(fmt::format("SELECT count() FROM {} WHERE __timestamp < {}", TableName(instance), horizon));
    if (!expired.ok()) {
      if (expired.status().code() == StatusCode::kNotFound) return int64_t{0};
      return expired.status();
    }
    if (*expired == 0) return int64_t{0};
    // A mutation: asynchronous in 18.16; waited for here.
    AQ_RETURN_IF_ERROR(
        http_.Query(fmt::format("ALTER TABLE {} DELETE WHERE __timestamp < {}", TableName(instance), horizon)).status());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (true) {
      AQ_ASSIGN_OR_RETURN(int64_t pending,
                          Count(fmt::format("SELECT count() FROM system.mutations WHERE database = {} AND table = {} "
                                            "AND is_done = 0",
                                            Literal(options_.database), Literal("i_" + instance.instance_id.Hex()))));
      if (pending == 0) break;
      if (std::chrono::steady_clock::now() > deadline) {
        return Timeout("deleting the expired rows of {}: the mutation did not finish within 60 s", TableName(instance));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return *expired;
  }

  Result<int64_t> CountStoredRows(const InstanceInfo& instance) override {
    auto counted = Count("SELECT count() FROM " + TableName(instance));
    if (!counted.ok() && counted.status().code() == StatusCode::kNotFound) return int64_t{0};
    return counted;
  }

  Status Reset() override {
    StopJobs();
    AQ_RETURN_IF_ERROR(http_.Query("DROP DATABASE IF EXISTS " + Quote(options_.database)).status());
    return Init();
  }

 private:
  std::string JobsTable() const { return Quote(options_.database) + ".`__aq_jobs`"; }
  std::string GroupsTable() const { return Quote(options_.database) + ".`__aq_groups`"; }
  std::string JobTable(const Uuid& id) const { return Quote(options_.database) + "." + Quote("j_" + id.Hex()); }
  std::string QueryId(const Uuid& id) const { return "aq_" + options_.database + "_" + id.Hex(); }

  // The first cell of a one-row answer as an integer.
  Result<int64_t> Count(const std::string& sql) {
    AQ_ASSIGN_OR_RETURN(std::string body, http_.Query(sql + " FORMAT JSONCompact", kReadSettings));
    AQ_ASSIGN_OR_RETURN(json answer, ParseCompact(body));
    const json data = answer.value("data", json::array());
    if (data.empty() || !data[0].is_array() || data[0].empty()) return int64_t{0};
    return AsInt(data[0][0]);
  }

  // A claim on a write group: who (a driver's random id), which of its
  // writes (a random id per call) and when (by the writer's clock).
  struct Claim {
    std::string writer;
    std::string attempt;
    int64_t at_ms = 0;
  };
  using GroupClaims = std::map<std::string, std::vector<Claim>>;  // group hex → its claims
  // What the instance's table holds of a group: rows, the seq after the
  // highest stored, distinct seqs (rows > distinct: copies).
  struct StoredGroup {
    int64_t rows = 0;
    size_t next_seq = 0;
    int64_t distinct = 0;
  };
  Result<GroupClaims> ReadClaims(const InstanceInfo& instance, const std::map<std::string, size_t>& groups);
  Result<std::map<std::string, StoredGroup>> ReadStored(const InstanceInfo& instance,
                                                        const std::vector<std::string>& groups);
  // After a grouped write: when another writer claimed one of its groups and
  // the table holds a row twice, OPTIMIZE ... FINAL so it holds it once.
  Status RemoveRacedCopies(const InstanceInfo& instance, const std::map<std::string, size_t>& groups);
  Result<driver::QueryAnalysis> Analyze(const std::string& sql, const std::atomic<bool>* stop);
  // ClickHouse 18.16 runs one JOIN per SELECT: `FROM t1 a, t2 b, t3 c ...`
  // (three or more tables, each with an alias) becomes left-deep nested
  // CROSS JOINs of subqueries whose columns are renamed `a.col`, so `a.col`
  // in the rest of the query names them. Anything else is left as it is.
  Result<std::string> ExpandCommaJoins(const std::string& sql);
  std::string WithRetention(const std::string& sql);
  void RunJob(std::shared_ptr<JobState> state);
  // Drops the result tables of done jobs past their result_ttl_ms (at most
  // once a minute by the driver's clock; best effort). Their `__aq_jobs` rows
  // stay: PollJob still says done, ReadJobRows says expired.
  void SweepExpiredResults();
  Status RunJobBody(const std::shared_ptr<JobState>& state);
  void Finish(const std::shared_ptr<JobState>& state, Status status);
  void StopJobs();
  Status SaveJob(const Job& job, int64_t finished_ms, int64_t ttl_ms);
  // Every job_heartbeat_ms: the running jobs of this driver saved again with
  // the time, so a driver elsewhere can tell a job whose driver stopped.
  void Heartbeats();
  // Drops the days of group claims older than applied_window_ms (at most
  // once an hour by the driver's clock; best effort).
  void SweepClaims(int64_t now);
  // A job from `__aq_jobs` (another driver's, or this one's before a restart).
  Result<Job> StoredJob(const Uuid& job_id, int64_t* finished_ms, int64_t* ttl_ms);

  void NoteRetention(const InstanceInfo& instance) {
    retention_.Note(TableName(instance), instance.warehouse_retention_ms);
  }

  const WarehouseOptions options_;
  Clock* const clock_;
  HttpClient http_;
  driver::RetentionByTable retention_;
  driver::InstanceLocks write_locks_;
  const std::string writer_ = Uuid::Random().Hex();  // this driver's id in group claims
  std::mutex save_mu_;  // orders a job's saves: a heartbeat never lands after its final state
  std::condition_variable beat_cv_;
  std::mutex beat_mu_;
  bool closing_ = false;  // guarded by beat_mu_
  std::thread heartbeat_;
  std::atomic<int64_t> last_claim_sweep_ms_{0};
  std::atomic<int64_t> version_{0};
  std::atomic<int64_t> last_sweep_ms_{0};
  driver::LocalJobs jobs_{kMaxRunningJobs};  // last: stopped (its threads use the members above) before they go
};

Status ChWarehouse::WriteToWarehouse(const InstanceInfo& instance, std::span<const Record> records,
                                     std::span<const driver::RecordGroup> groups) {
  const std::string who = instance.instance_id.ToString();
  if (instance.schema == nullptr) return InvalidArgument("writing to {}: no schema", who);
  if (Status checked = driver::CheckRecordGroups(records.size(), groups); !checked.ok()) {
    return checked.WithContext(fmt::format("writing to {}", who));
  }
  NoteRetention(instance);
  const int64_t now = clock_->NowMillis();
  // Each record's group (hex) and place in it; a group id repeated within
  // the call is kept once (the first), as the other drivers do.
  std::vector<std::string> group_of(records.size());
  std::vector<uint32_t> seq_of(records.size(), 0);
  std::vector<bool> repeated(records.size(), false);
  std::map<std::string, size_t> group_size;  // hex → records
  if (groups.empty()) {
    // Rows written without groups are distinct rows even when equal: a
    // group id of their own (never claimed), so no merge folds them.
    const std::string own = "u" + Uuid::Random().Hex();
    for (size_t idx = 0; idx < records.size(); ++idx) {
      group_of[idx] = own;
      seq_of[idx] = static_cast<uint32_t>(idx);
    }
  } else {
    size_t at = 0;
    for (const driver::RecordGroup& group : groups) {
      const std::string hex = HexEncode(group.id);
      const bool again = group_size.count(hex) > 0;
      if (!again) group_size[hex] = group.records;
      for (size_t i = 0; i < group.records; ++i, ++at) {
        group_of[at] = hex;
        seq_of[at] = static_cast<uint32_t>(i);
        repeated[at] = again;
      }
    }
  }
  // Records convert to JSONEachRow lines on a thread of their own while the
  // groups are claimed and the rows are sent: each INSERT's body streams
  // from what is converted. Without records or JSON-text columns the codec's
  // JSON is the line as it is (booleans go into UInt8 as true/false), so it
  // is not parsed and written again.
  bool flat = true;
  for (const schema::Field& field : instance.schema->fields()) {
    if (field.type->kind == Kind::kRecord || AsJson(*field.type, false)) flat = false;
  }
  LineFeed feed(records.size());
  auto convert = [&](size_t idx) -> Status {
    const Record& record = records[idx];
    if (repeated[idx]) return Status::OK();
    if (instance.warehouse_retention_ms > 0 &&
        record.timestamp_ms < driver::RetentionHorizon(instance.warehouse_retention_ms, now)) {
      return Status::OK();  // expired already: not stored
    }
    std::string& line = feed.lines[idx];
    if (flat) {
      // The codec's JSON object is already the row: the hidden columns go at its end.
      line.reserve(record.avro.size() * 2 + record.key.size() * 2 + group_of[idx].size() + 96);
      Status converted = schema::AppendAvroAsJson(*instance.schema, record.avro, &line);
      if (!converted.ok()) return converted.WithContext(fmt::format("writing to {}: record {}", who, idx));
      if (line.size() > 2 && line.back() == '}') {
        line.pop_back();
        AppendHiddenColumns(record, group_of[idx], seq_of[idx], &line);
        return Status::OK();
      }
      line.clear();
    }
    auto text = schema::AvroToJson(*instance.schema, record.avro);
    if (!text.ok()) return text.status().WithContext(fmt::format("writing to {}: record {}", who, idx));
    json value = json::parse(*text, nullptr, false);
    if (!value.is_object()) return Internal("writing to {}: record {}: the codec wrote no JSON object", who, idx);
    json row = json::object();
    for (const schema::Field& field : instance.schema->fields()) {
      auto it = value.find(field.name);
      row[field.name] = RowValue(*field.type, it == value.end() ? json() : *it);
    }
    row["__key"] = HexEncode(record.key);
    row["__timestamp"] = record.timestamp_ms;
    row["__group"] = group_of[idx];
    row["__seq"] = seq_of[idx];
    line = Dump(row);
    return Status::OK();
  };
  std::jthread converter;  // joined on every way out
  if (records.size() < kConvertOnThreadFrom) {
    for (size_t idx = 0; idx < records.size() && feed.error().ok(); ++idx) feed.Publish(idx + 1, convert(idx));
  } else {
    converter = std::jthread([&](std::stop_token stop) {
      for (size_t idx = 0; idx < records.size(); ++idx) {
        Status converted = stop.stop_requested() ? Aborted("the write ended") : convert(idx);
        if (!converted.ok() || (idx + 1) % 256 == 0 || idx + 1 == records.size()) {
          feed.Publish(idx + 1, std::move(converted));
          if (!feed.error().ok()) return;
        }
      }
    });
  }
  std::vector<bool> skip = repeated;  // stored already or repeated in the call
  // Exactly once (README.md, "Exactly once"): claim the groups, skip what an
  // earlier attempt stored, leave groups another live writer holds, and after
  // the rows check that no writer raced this one.
  int64_t write_until_ms = 0;  // no INSERT may run past this (0: no groups, no bound)
  std::shared_ptr<std::mutex> write_lock;
  std::unique_lock<std::mutex> hold;
  if (!groups.empty()) {
    write_lock = write_locks_.Of(instance.instance_id);
    hold = std::unique_lock<std::mutex>(*write_lock);
    SweepClaims(now);
    const int64_t claimed_ms = clock_->NowMillis();
    const std::string attempt = Uuid::Random().Hex();  // this call's claims, told from this driver's earlier ones
    write_until_ms = claimed_ms + options_.group_claim_ms / 2;
    std::string claims;
    for (const auto& [hex, size] : group_size) {
      claims += Dump(json{{"instance", instance.instance_id.Hex()}, {"group_id", hex}, {"writer", writer_},
                          {"attempt", attempt}, {"at_ms", claimed_ms}}) +
                "\n";
    }
    Request claim;
    claim.sql = "INSERT INTO " + GroupsTable() + " FORMAT JSONEachRow";
    claim.data = std::move(claims);
    AQ_RETURN_IF_ERROR(http_.Call(claim).status().WithContext(fmt::format("writing to {}: claiming its groups", who)));
    AQ_ASSIGN_OR_RETURN(GroupClaims seen, ReadClaims(instance, group_size));
    std::map<std::string, StoredGroup> stored;
    std::vector<std::string> earlier;  // groups claimed before this call: something may be stored
    for (const auto& [hex, size] : group_size) {
      if (size == 0) continue;  // nothing to write, nothing to wait for
      const std::vector<Claim>& all = seen[hex];
      if (std::any_of(all.begin(), all.end(), [&](const Claim& c) { return c.attempt != attempt; })) {
        earlier.push_back(hex);
      }
    }
    if (!earlier.empty()) {
      AQ_ASSIGN_OR_RETURN(stored, ReadStored(instance, earlier));
    }
    for (const std::string& hex : earlier) {
      const StoredGroup& has = stored[hex];
      const bool complete = has.rows > 0 && has.next_seq >= group_size[hex];
      if (complete) continue;
      // The owner: the earliest claim still fresh; a stale one is a writer
      // that stopped (or overran its claim) and no longer counts.
      const Claim* owner = nullptr;
      for (const Claim& c : seen[hex]) {
        if (c.at_ms < now - options_.group_claim_ms) continue;
        if (owner == nullptr || std::tie(c.at_ms, c.writer) < std::tie(owner->at_ms, owner->writer)) owner = &c;
      }
      if (owner != nullptr && owner->writer != writer_) {
        return Unavailable("writing to {}: group {} is being written by another writer (claimed {} ms ago); retry "
                           "after it finishes or its claim lapses (group_claim_ms = {})",
                           who, hex, now - owner->at_ms, options_.group_claim_ms);
      }
    }
    // What an earlier attempt stored of a group is a prefix of its records
    // (they go in order, each INSERT all or nothing): resume after it.
    for (size_t idx = 0; idx < records.size(); ++idx) {
      auto it = stored.find(group_of[idx]);
      if (it != stored.end() && it->second.rows > 0 && seq_of[idx] < it->second.next_seq) skip[idx] = true;
    }
  }
  // The rows, in order, in INSERTs of at most kInsertRows rows and about
  // kInsertBytes (each one part: all or nothing). A record that fails to
  // convert aborts the INSERT it would be in.
  Request request;
  request.sql = fmt::format("INSERT INTO {} FORMAT JSONEachRow", TableName(instance));
  request.settings = {{"input_format_skip_unknown_fields", "0"}};
  size_t next = 0;        // the next record to consider
  std::string_view rest;  // what is left to send of the current line, with its newline
  size_t rows = 0, bytes = 0;
  // The next record to send, converted; false at the end or on a failure.
  auto advance = [&]() -> bool {
    while (next < records.size()) {
      if (!feed.WaitFor(next)) return false;
      if (!skip[next] && !feed.lines[next].empty()) return true;
      ++next;
    }
    return false;
  };
  request.source = [&](char* buffer, size_t size) -> size_t {
    size_t out = 0;
    while (out < size) {
      if (rest.empty()) {
        if (rows >= kInsertRows || bytes >= kInsertBytes) break;  // this INSERT is full
        if (!advance()) {
          if (!feed.error().ok()) return kAbortBody;
          break;
        }
        std::string& line = feed.lines[next++];
        line.push_back('\n');
        rest = line;
        ++rows;
        bytes += line.size();
      }
      const size_t n = std::min(rest.size(), size - out);
      std::memcpy(buffer + out, rest.data(), n);
      rest.remove_prefix(n);
      out += n;
    }
    return out;
  };
  while (advance()) {
    if (write_until_ms > 0) {
      // The claim covers this INSERT only if it ends in time (README.md).
      const int64_t left = write_until_ms - clock_->NowMillis();
      if (left <= 0) {
        return Unavailable("writing to {}: the claim on its groups ran out before the rows were stored "
                           "(group_claim_ms = {}); retry",
                           who, options_.group_claim_ms);
      }
      request.timeout_ms = std::min(left, http_.options().timeout_ms);
    }
    rows = bytes = 0;
    auto answer = http_.Call(request);
    if (!feed.error().ok()) return feed.error();
    if (!answer.ok()) {
      if (answer.status().code() == StatusCode::kNotFound) {
        return NotFound("writing to {}: its warehouse table {} does not exist (register the instance)", who,
                        TableName(instance));
      }
      return answer.status().WithContext(fmt::format("writing to {}", who));
    }
  }
  if (!feed.error().ok()) return feed.error();
  if (groups.empty()) return Status::OK();
  return RemoveRacedCopies(instance, group_size);
}

Result<ChWarehouse::GroupClaims> ChWarehouse::ReadClaims(const InstanceInfo& instance,
                                                        const std::map<std::string, size_t>& groups) {
  std::string list;
  for (const auto& [hex, size] : groups) list += (list.empty() ? "" : ", ") + Literal(hex);
  auto body = http_.Query(fmt::format("SELECT group_id, writer, attempt, at_ms FROM {} WHERE instance = {} AND group_id IN ({}) "
                                      "FORMAT JSONCompact",
                                      GroupsTable(), Literal(instance.instance_id.Hex()), list),
                          kReadSettings);
  if (!body.ok()) {
    return body.status().WithContext(fmt::format("writing to {}: reading its group claims", instance.instance_id.ToString()));
  }
  AQ_ASSIGN_OR_RETURN(json answer, ParseCompact(*body));
  GroupClaims out;
  for (const json& row : answer.value("data", json::array())) {
    if (!row.is_array() || row.size() != 4 || !row[0].is_string() || !row[1].is_string() || !row[2].is_string()) {
      continue;
    }
    out[row[0].get<std::string>()].push_back({row[1].get<std::string>(), row[2].get<std::string>(), AsInt(row[3])});
  }
  return out;
}

Result<std::map<std::string, ChWarehouse::StoredGroup>> ChWarehouse::ReadStored(const InstanceInfo& instance,
                                                                               const std::vector<std::string>& groups) {
  std::string list;
  for (const std::string& hex : groups) list += (list.empty() ? "" : ", ") + Literal(hex);
  auto body = http_.Query(fmt::format("SELECT __group, count(), max(__seq) + 1, uniqExact(__seq) FROM {} WHERE __group "
                                      "IN ({}) GROUP BY __group FORMAT JSONCompact",
                                      TableName(instance), list),
                          kReadSettings);
  if (!body.ok()) {
    if (body.status().code() == StatusCode::kNotFound) {
      return NotFound("writing to {}: its warehouse table {} does not exist (register the instance)",
                      instance.instance_id.ToString(), TableName(instance));
    }
    return body.status().WithContext(
        fmt::format("writing to {}: reading what it holds of its groups", instance.instance_id.ToString()));
  }
  AQ_ASSIGN_OR_RETURN(json answer, ParseCompact(*body));
  std::map<std::string, StoredGroup> out;
  for (const json& row : answer.value("data", json::array())) {
    if (!row.is_array() || row.size() != 4 || !row[0].is_string()) continue;
    out[row[0].get<std::string>()] = {AsInt(row[1]), static_cast<size_t>(AsInt(row[2])), AsInt(row[3])};
  }
  return out;
}

Status ChWarehouse::RemoveRacedCopies(const InstanceInfo& instance, const std::map<std::string, size_t>& groups) {
  // Every writer re-reads the claims after its rows: of two writers that
  // raced, the later one to get here sees the other's claim and both writes.
  AQ_ASSIGN_OR_RETURN(GroupClaims seen, ReadClaims(instance, groups));
  std::vector<std::string> contested;
  for (const auto& [hex, claims] : seen) {
    if (std::any_of(claims.begin(), claims.end(), [&](const Claim& c) { return c.writer != writer_; })) {
      contested.push_back(hex);
    }
  }
  if (contested.empty()) return Status::OK();
  AQ_ASSIGN_OR_RETURN(auto stored, ReadStored(instance, contested));
  if (std::none_of(stored.begin(), stored.end(), [](const auto& entry) { return entry.second.rows > entry.second.distinct; })) {
    return Status::OK();
  }
  // Two copies of a row share their sorting key (__key, __group, __seq): the
  // ReplacingMergeTree keeps one when it merges, and OPTIMIZE FINAL merges now.
  AQ_LOG(Warn, "clickhouse: two writers stored groups of {} at once; merging {} so each row is kept once",
         instance.instance_id.ToString(), TableName(instance));
  auto merged = http_.Query("OPTIMIZE TABLE " + TableName(instance) + " FINAL");
  if (!merged.ok()) {
    return merged.status().WithContext(
        fmt::format("writing to {}: merging away the copies two racing writers stored", instance.instance_id.ToString()));
  }
  return Status::OK();
}

Result<driver::QueryAnalysis> ChWarehouse::Analyze(const std::string& sql, const std::atomic<bool>* stop) {
  AQ_RETURN_IF_ERROR(driver::CheckOneSelect(sql));
  // 18.16 has no EXPLAIN: DESCRIBE of the query types it without running it.
  AQ_ASSIGN_OR_RETURN(std::string expanded, ExpandCommaJoins(sql));
  Request request;
  request.sql = "DESCRIBE (" + expanded + "\n)";
  request.abort = stop;
  request.settings = {{"readonly", "2"}};
  auto described = http_.Call(request);
  if (!described.ok()) {
    const Status& status = described.status();
    if (status.code() == StatusCode::kInvalidArgument || status.code() == StatusCode::kNotFound) {
      return InvalidArgument("{}", status.message());
    }
    return status;
  }
  driver::QueryAnalysis analysis;
  std::set<std::string> seen;
  const std::string prefix = Quote(options_.database) + ".`i_";
  std::string names;
  for (size_t pos = sql.find(prefix); pos != std::string::npos; pos = sql.find(prefix, pos + 1)) {
    const size_t end = pos + prefix.size() + 32;
    if (end < sql.size() && sql[end] == '`') {
      std::string table = sql.substr(pos, end + 1 - pos);
      if (seen.insert(table).second) {
        analysis.tables.push_back(table);
        names += (names.empty() ? "" : ", ") + Literal(sql.substr(pos + prefix.size() - 2, 34));
      }
    }
  }
  // The bytes estimate: the uncompressed size of the active parts of the
  // tables read (an upper bound: no index pruning).
  if (!names.empty()) {
    AQ_ASSIGN_OR_RETURN(analysis.bytes_scanned_estimate,
                        Count(fmt::format("SELECT sum(data_uncompressed_bytes) FROM system.parts WHERE active AND "
                                          "database = {} AND table IN ({})",
                                          Literal(options_.database), names)));
  }
  return analysis;
}


Result<std::string> ChWarehouse::ExpandCommaJoins(const std::string& sql) {
  const std::vector<Token> tokens = TopLevelTokens(sql);
  size_t from = 0;
  while (from < tokens.size() && tokens[from].text != "FROM") ++from;
  if (from == tokens.size()) return sql;
  static const std::set<std::string> kEnds = {"WHERE", "GROUP", "ORDER", "LIMIT", "HAVING", "SETTINGS",
                                              "FORMAT", "UNION", "PREWHERE", "WITH"};
  // Items: [table tokens..., (AS), alias] separated by commas.
  struct Item {
    std::string table, alias;
  };
  std::vector<Item> items;
  size_t at = from + 1, end_pos = sql.size();
  std::vector<const Token*> current;
  auto close_item = [&]() -> bool {
    if (current.size() < 2) return false;
    const Token* alias = current.back();
    if (alias->text.empty() || alias->text == "(" || kEnds.count(alias->text)) return false;
    size_t last = current.size() - 1;
    if (last >= 2 && current[last - 1]->text == "AS") --last;
    const std::string table = sql.substr(current[0]->begin, current[last - 1]->end - current[0]->begin);
    for (size_t i = 1; i < last; ++i) {
      if (current[i]->text != ".") {
        if (current[i]->text.empty() && current[i - 1]->text == ".") continue;
        return false;
      }
    }
    items.push_back({table, sql.substr(alias->begin, alias->end - alias->begin)});
    current.clear();
    return true;
  };
  for (; at < tokens.size(); ++at) {
    const Token& token = tokens[at];
    if (kEnds.count(token.text) > 0) {
      end_pos = token.begin;
      break;
    }
    if (token.text == "JOIN" || token.text == "(" ) return sql;
    if (token.text == ",") {
      if (!close_item()) return sql;
      continue;
    }
    current.push_back(&token);
  }
  if (!close_item() || items.size() < 3) return sql;
  std::string nested;
  for (const Item& item : items) {
    AQ_ASSIGN_OR_RETURN(std::string body, http_.Query("DESCRIBE TABLE " + item.table + " FORMAT JSONCompact"));
    AQ_ASSIGN_OR_RETURN(json described, ParseCompact(body));
    std::string alias = item.alias;
    if (alias.size() >= 2 && alias.front() == '`') alias = alias.substr(1, alias.size() - 2);
    std::string columns;
    for (const json& row : described.value("data", json::array())) {
      if (!row.is_array() || row.empty() || !row[0].is_string()) continue;
      const std::string name = row[0].get<std::string>();
      columns += (columns.empty() ? "" : ", ") + Quote(name) + " AS " + Quote(alias + "." + name);
    }
    const std::string sub = "(SELECT " + columns + " FROM " + item.table + ")";
    nested = nested.empty() ? sub : "(SELECT * FROM " + nested + " CROSS JOIN " + sub + ")";
  }
  return sql.substr(0, tokens[from].end) + " " + nested + " " + sql.substr(end_pos);
}

std::string ChWarehouse::WithRetention(const std::string& sql) {
  return retention_.ReadThrough(sql, '`', clock_->NowMillis(), [](const std::string& table, int64_t horizon_ms) {
    return fmt::format("(SELECT * FROM {} WHERE __timestamp >= {})", table, horizon_ms);
  });
}

Status ChWarehouse::SaveJob(const Job& job, int64_t finished_ms, int64_t ttl_ms) {
  json row = {{"job_id", job.job_id.Hex()},
              {"version", clock_->NowMillis() * 1000 + (version_.fetch_add(1) % 1000)},
              {"status", static_cast<int>(job.status)},
              {"error", job.error},
              {"rows", job.rows},
              {"bytes", job.bytes_scanned},
              {"finished_ms", finished_ms},
              {"ttl_ms", ttl_ms},
              {"beat_ms", clock_->NowMillis()}};
  Request request;
  request.sql = "INSERT INTO " + JobsTable() + " FORMAT JSONEachRow";
  request.data = Dump(row) + "\n";
  return http_.Call(request).status();
}

Result<Job> ChWarehouse::StoredJob(const Uuid& job_id, int64_t* finished_ms, int64_t* ttl_ms) {
  AQ_ASSIGN_OR_RETURN(
      std::string body,
      http_.Query(fmt::format("SELECT argMax(status, version), argMax(error, version), argMax(rows, version), "
                              "argMax(bytes, version), argMax(finished_ms, version), argMax(ttl_ms, version), argMax(beat_ms, version) FROM {} "
                              "WHERE job_id = {} GROUP BY job_id FORMAT JSONCompact",
                              JobsTable(), Literal(job_id.Hex())),
                  kReadSettings));
  AQ_ASSIGN_OR_RETURN(json answer, ParseCompact(body));
  const json data = answer.value("data", json::array());
  if (data.empty()) return NotFound("job {} not found", job_id.ToString());
  const json& row = data[0];
  Job job;
  job.job_id = job_id;
  job.status = static_cast<JobStatus>(AsInt(row[0]));
  job.error = row[1].is_string() ? row[1].get<std::string>() : "";
  job.rows = AsInt(row[2]);
  job.bytes_scanned = AsInt(row[3]);
  if (finished_ms != nullptr) *finished_ms = AsInt(row[4]);
  if (ttl_ms != nullptr) *ttl_ms = AsInt(row[5]);
  const int64_t silent_ms = clock_->NowMillis() - AsInt(row[6]);
  if ((job.status == JobStatus::kPending || job.status == JobStatus::kRunning) &&
      silent_ms > 6 * options_.job_heartbeat_ms) {
    // Its driver stopped: the job is failed for good, and what the server
    // may still run of it is cancelled.
    job.status = JobStatus::kFailed;
    job.error = fmt::format("the process running the job stopped (no heartbeat for {} ms)", silent_ms);
    (void)http_.Query(fmt::format("KILL QUERY WHERE query_id = {} ASYNC", Literal(QueryId(job_id))));
    (void)SaveJob(job, clock_->NowMillis(), 0);
    (void)http_.Query("DROP TABLE IF EXISTS " + JobTable(job_id));
  }
  return job;
}

Result<Job> ChWarehouse::StartQuery(const Uuid& job_id, std::string_view sql, const driver::JobOptions& options) {
  if (jobs_.Find(job_id) != nullptr) return AlreadyExists("job {} already exists", job_id.ToString());
  auto existing = StoredJob(job_id, nullptr, nullptr);
  if (existing.ok()) return AlreadyExists("job {} already exists", job_id.ToString());
  if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  auto state = std::make_shared<JobState>();
  state->job.job_id = job_id;
  state->sql = driver::TrimStatement(sql);
  state->options = options;
  AQ_RETURN_IF_ERROR(SaveJob(state->job, 0, options.result_ttl_ms));
  const Job started = state->job;  // before its thread may change it
  AQ_RETURN_IF_ERROR(jobs_.Launch(state, [this, state] { RunJob(state); }));
  return started;
}

void ChWarehouse::SweepExpiredResults() {
  const int64_t now = clock_->NowMillis();
  int64_t last = last_sweep_ms_.load();
  if (now - last < 60'000 || !last_sweep_ms_.compare_exchange_strong(last, now)) return;
  auto body = http_.Query(fmt::format("SELECT job_id FROM (SELECT job_id, argMax(status, version) AS s, "
                                      "argMax(finished_ms, version) AS f, argMax(ttl_ms, version) AS t FROM {} "
                                      "GROUP BY job_id) WHERE s = {} AND t > 0 AND f + t <= {} FORMAT JSONCompact",
                                      JobsTable(), static_cast<int>(JobStatus::kDone), now),
                          kReadSettings);
  for (const std::string& hex : FirstColumn(body, "0123456789abcdef", 32)) {
    (void)http_.Query("DROP TABLE IF EXISTS " + Quote(options_.database) + "." + Quote("j_" + hex));
  }
}

void ChWarehouse::Heartbeats() {
  std::unique_lock<std::mutex> lock(beat_mu_);
  while (!closing_) {
    beat_cv_.wait_for(lock, std::chrono::milliseconds(options_.job_heartbeat_ms));
    if (closing_) break;
    lock.unlock();
    {
      std::lock_guard<std::mutex> saving(save_mu_);
      for (const std::shared_ptr<JobState>& state : jobs_.Unfinished()) {
        Job job;
        int64_t ttl_ms = 0;
        {
          std::lock_guard<std::mutex> state_lock(jobs_.mu());
          // Finish sets the final status before it saves, under save_mu_.
          if (state->job.status == JobStatus::kDone || state->job.status == JobStatus::kFailed) continue;
          job = state->job;
          ttl_ms = state->options.result_ttl_ms;
        }
        (void)SaveJob(job, 0, ttl_ms);
      }
    }
    lock.lock();
  }
}

void ChWarehouse::SweepClaims(int64_t now) {
  int64_t last = last_claim_sweep_ms_.load();
  if (now - last < 3'600'000 || !last_claim_sweep_ms_.compare_exchange_strong(last, now)) return;
  // A day's partition goes once the whole day is older than the window.
  auto body = http_.Query(fmt::format("SELECT DISTINCT partition FROM system.parts WHERE active AND database = {} AND "
                                      "table = '__aq_groups' AND toUInt32(partition) < toYYYYMMDD(toDateTime({})) "
                                      "FORMAT JSONCompact",
                                      Literal(options_.database), std::max<int64_t>(0, (now - options_.applied_window_ms) / 1000)),
                          kReadSettings);
  for (const std::string& day : FirstColumn(body, "0123456789", 8)) {
    (void)http_.Query(fmt::format("ALTER TABLE {} DROP PARTITION {}", GroupsTable(), day));
  }
}

void ChWarehouse::RunJob(std::shared_ptr<JobState> state) {
  SweepExpiredResults();
  {
    std::lock_guard<std::mutex> lock(jobs_.mu());
    if (state->finished) return;
    state->job.status = JobStatus::kRunning;
  }
  Finish(state, RunJobBody(state));
}

Status ChWarehouse::RunJobBody(const std::shared_ptr<JobState>& state) {
  const driver::JobOptions& options = state->options;
  const auto started = std::chrono::steady_clock::now();
  auto remaining_ms = [&]() -> int64_t {
    if (options.timeout_ms <= 0) return 0;
    auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    return std::max<int64_t>(1, options.timeout_ms - spent.count());
  };
  auto timed_out = [&] {
    return options.timeout_ms > 0 &&
           std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(options.timeout_ms);
  };
  const Uuid& id = state->job.job_id;
  const std::string table = JobTable(id);
  const std::string query_id = QueryId(id);
  auto drop = [&] { (void)http_.Query("DROP TABLE IF EXISTS " + table); };
  auto give_up = [&](Status status) -> Status {
    if (status.code() == StatusCode::kTimeout || status.code() == StatusCode::kAborted || timed_out()) {
      // The server may still run it: KILL QUERY by its id.
      (void)http_.Query(fmt::format("KILL QUERY WHERE query_id = {} SYNC", Literal(query_id)));
      drop();
      if (status.code() == StatusCode::kTimeout || timed_out()) {
        return Timeout("query exceeded its timeout of {} ms", options.timeout_ms);
      }
    }
    drop();
    return status;
  };
  auto analysis = Analyze(state->sql, &state->stop);
  if (!analysis.ok()) return give_up(analysis.status());
  if (options.max_bytes_scanned > 0 && analysis->bytes_scanned_estimate > options.max_bytes_scanned) {
    return ResourceExhausted("the query would scan about {} bytes, over the job's cap of {}",
                             analysis->bytes_scanned_estimate, options.max_bytes_scanned);
  }
  if (timed_out()) return give_up(Timeout("deadline"));
  auto expanded = ExpandCommaJoins(state->sql);
  if (!expanded.ok()) return give_up(expanded.status());
  // The result lands in a table of its own, numbered in result order; one
  // row over the cap is enough to know the cap is passed.
  Request request;
  request.sql = fmt::format("CREATE TABLE {} ENGINE = MergeTree ORDER BY __aq_row AS SELECT rowNumberInAllBlocks() AS "
                            "__aq_row, * FROM (\n{}\n){}",
                            table, WithRetention(*expanded),
                            options.max_result_rows > 0 ? fmt::format(" LIMIT {}", options.max_result_rows + 1) : "");
  request.settings = {{"query_id", query_id}};
  if (options.timeout_ms > 0) {
    request.settings["max_execution_time"] = std::to_string((options.timeout_ms + 999) / 1000);
    request.timeout_ms = remaining_ms();
  }
  request.abort = &state->stop;
  auto created = http_.Call(request);
  if (!created.ok()) return give_up(created.status());
  auto rows = Count("SELECT count() FROM " + table);
  if (!rows.ok()) return give_up(rows.status());
  if (options.max_result_rows > 0 && *rows > options.max_result_rows) {
    drop();
    return ResourceExhausted("result exceeds {} rows; add LIMIT", options.max_result_rows);
  }
  if (options.max_result_bytes > 0) {
    auto bytes = Count(fmt::format("SELECT sum(data_uncompressed_bytes) FROM system.parts WHERE active AND database = "
                                   "{} AND table = {}",
                                   Literal(options_.database), Literal("j_" + id.Hex())));
    if (!bytes.ok()) return give_up(bytes.status());
    if (*bytes + 16 * *rows > options.max_result_bytes) {
      drop();
      return ResourceExhausted("result exceeds {} bytes; add LIMIT or select fewer columns", options.max_result_bytes);
    }
  }
  std::lock_guard<std::mutex> lock(jobs_.mu());
  state->job.rows = *rows;
  state->job.bytes_scanned = analysis->bytes_scanned_estimate;
  return Status::OK();
}

void ChWarehouse::Finish(const std::shared_ptr<JobState>& state, Status status) {
  std::lock_guard<std::mutex> saving(save_mu_);
  Job job;
  int64_t finished_ms = 0;
  {
    std::lock_guard<std::mutex> lock(jobs_.mu());
    state->finished_ms = clock_->NowMillis();
    state->job.status = status.ok() ? JobStatus::kDone : JobStatus::kFailed;
    if (!status.ok()) state->job.error = status.message();
    job = state->job;
    finished_ms = state->finished_ms;
  }
  (void)SaveJob(job, finished_ms, state->options.result_ttl_ms);
  std::lock_guard<std::mutex> lock(jobs_.mu());
  state->finished = true;
}

Result<Job> ChWarehouse::PollJob(const Uuid& job_id) {
  if (std::shared_ptr<JobState> mine = jobs_.Find(job_id)) {
    std::lock_guard<std::mutex> lock(jobs_.mu());
    Job job = mine->job;
    // Done only once its state is saved, so a new driver agrees.
    if (!mine->finished && (job.status == JobStatus::kDone || job.status == JobStatus::kFailed)) {
      job.status = JobStatus::kRunning;
      job.error.clear();
    }
    return job;
  }
  auto job = StoredJob(job_id, nullptr, nullptr);
  if (!job.ok() && job.status().code() == StatusCode::kNotFound) return NotFound("job {} not found", job_id.ToString());
  return job;
}

Result<driver::RowPage> ChWarehouse::ReadJobRows(const Uuid& job_id, std::string_view page, int32_t limit) {
  Job job;
  int64_t finished_ms = 0, ttl_ms = 0;
  const std::shared_ptr<JobState> mine = jobs_.Find(job_id);
  if (mine != nullptr) {
    std::lock_guard<std::mutex> lock(jobs_.mu());
    if (!mine->finished) return FailedPrecondition("job {} is running", job_id.ToString());
    job = mine->job;
    finished_ms = mine->finished_ms;
    ttl_ms = mine->options.result_ttl_ms;
  }
  if (!mine) {
    auto stored = StoredJob(job_id, &finished_ms, &ttl_ms);
    if (!stored.ok()) return stored.status();
    job = *stored;
  }
  if (job.status != JobStatus::kDone) {
    return FailedPrecondition("job {} is {}{}", job_id.ToString(), driver::JobStatusName(job.status),
                              job.error.empty() ? "" : ": " + job.error);
  }
  if (const int64_t expires_ms = driver::ExpiresMs(finished_ms, ttl_ms); expires_ms > 0 && clock_->NowMillis() >= expires_ms) {
    (void)http_.Query("DROP TABLE IF EXISTS " + JobTable(job_id));
    return driver::ResultExpired(job_id, finished_ms, expires_ms);
  }
  if (limit < 1 || limit > kMaxPageRows) return InvalidArgument("limit {} is outside 1..{}", limit, kMaxPageRows);
  AQ_ASSIGN_OR_RETURN(int64_t offset, driver::ParsePageToken(page, job.rows, job_id));
  AQ_ASSIGN_OR_RETURN(std::string body,
                      http_.Query(fmt::format("SELECT * FROM {} WHERE __aq_row >= {} ORDER BY __aq_row LIMIT {} "
                                              "FORMAT JSONCompact",
                                              JobTable(job_id), offset, limit),
                                  kReadSettings));
  AQ_ASSIGN_OR_RETURN(json answer, ParseCompact(body));
  driver::RowPage out;
  CompactRows(answer, &out.columns, &out.rows);
  const int64_t next = offset + static_cast<int64_t>(out.rows.size());
  if (next < job.rows) {
    if (out.rows.empty()) return Internal("no rows at offset {} of {} for job {}", offset, job.rows, job_id.ToString());
    out.next = driver::PageToken(next);
  }
  return out;
}


Result<driver::SmallResult> ChWarehouse::RunSmall(std::string_view sql_text, const driver::SmallQueryLimits& limits) {
  const std::string sql(driver::TrimStatement(sql_text));
  AQ_ASSIGN_OR_RETURN(driver::QueryAnalysis analysis, Analyze(sql, nullptr));
  (void)analysis;
  AQ_ASSIGN_OR_RETURN(std::string expanded, ExpandCommaJoins(sql));
  const std::string query_id = "aq_small_" + options_.database + "_" + Uuid::Random().Hex();
  Request request;
  request.sql = fmt::format("SELECT * FROM (\n{}\n){} FORMAT JSONCompact", WithRetention(expanded),
                            limits.max_rows > 0 ? fmt::format(" LIMIT {}", limits.max_rows + 1) : "");
  request.settings = kReadSettings;
  request.settings["query_id"] = query_id;
  request.settings["readonly"] = "2";
  if (limits.timeout_ms > 0) {
    request.settings["max_execution_time"] = std::to_string((limits.timeout_ms + 999) / 1000);
    request.timeout_ms = limits.timeout_ms;
  }
  auto body = http_.Call(request);
  if (!body.ok()) {
    const Status& status = body.status();
    if (status.code() == StatusCode::kTimeout) {
      (void)http_.Query(fmt::format("KILL QUERY WHERE query_id = {} ASYNC", Literal(query_id)));
      return Timeout("query exceeded {} ms", limits.timeout_ms);
    }
    if (status.code() == StatusCode::kNotFound) return InvalidArgument("{}", status.message());
    return status;
  }
  AQ_ASSIGN_OR_RETURN(json answer, ParseCompact(*body));
  driver::SmallResult out;
  int64_t bytes = 0;
  CompactRows(answer, &out.columns, &out.rows, &bytes);
  if (limits.max_rows > 0 && static_cast<int64_t>(out.rows.size()) > limits.max_rows) {
    return TooLarge("result exceeds {} rows", limits.max_rows);
  }
  if (limits.max_bytes > 0 && bytes > limits.max_bytes) return TooLarge("result exceeds {} bytes", limits.max_bytes);
  return out;
}

void ChWarehouse::StopJobs() { jobs_.StopAll(); }

}  // namespace

Result<WarehouseOptions> ParseWarehouseOptions(const driver::Config& config) {
  WarehouseOptions options;
  options.http.endpoint = driver::ConfigString(config, "endpoint", "");
  if (!options.http.endpoint.starts_with("http://") && !options.http.endpoint.starts_with("https://")) {
    return InvalidArgument("config 'endpoint': '{}' is not an http:// or https:// URL of ClickHouse's HTTP interface",
                           options.http.endpoint);
  }
  options.database = driver::ConfigString(config, "database", options.database);
  if (options.database.empty() || options.database.size() > 200) return InvalidArgument("config 'database': 1..200 characters");
  for (char c : options.database) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') {
      return InvalidArgument("config 'database': '{}' may hold only letters, digits and underscores", options.database);
    }
  }
  options.http.user = driver::ConfigString(config, "user", options.http.user);
  const std::string password_env = driver::ConfigString(config, "password_env", "");
  if (!password_env.empty()) {
    const char* password = std::getenv(password_env.c_str());
    if (password == nullptr) {
      return Unauthenticated("clickhouse: the environment variable {} (password_env) is not set", password_env);
    }
    options.http.password = password;
  }
  AQ_ASSIGN_OR_RETURN(options.http.timeout_ms, driver::ConfigInt(config, "request_timeout_ms", options.http.timeout_ms));
  if (options.http.timeout_ms < 1) return InvalidArgument("config 'request_timeout_ms': must be positive");
  AQ_ASSIGN_OR_RETURN(options.group_claim_ms,
                      driver::ConfigIntWithin(config, "group_claim_ms", options.group_claim_ms, 3'600'000));
  AQ_ASSIGN_OR_RETURN(options.applied_window_ms, driver::ConfigIntWithin(config, "applied_window_ms",
                                                                         options.applied_window_ms, int64_t{1} << 45));
  AQ_ASSIGN_OR_RETURN(options.job_heartbeat_ms,
                      driver::ConfigIntWithin(config, "job_heartbeat_ms", options.job_heartbeat_ms, 600'000));
  const driver::Limits maxima{.max_key_size = 1 << 20, .max_record_size = 64 << 20, .max_records_in_batch = 1'000'000};
  AQ_RETURN_IF_ERROR(driver::ConfigureLimits(config, maxima, &options.limits));
  return options;
}

Result<std::shared_ptr<driver::WarehouseService>> MakeWarehouseService(const WarehouseOptions& options, Clock* clock) {
  auto service = std::make_shared<ChWarehouse>(options, clock != nullptr ? clock : Clock::System());
  Status init = service->Init();
  if (!init.ok()) return init.WithContext("clickhouse warehouse service");
  return std::shared_ptr<driver::WarehouseService>(std::move(service));
}

void Register(driver::Registry* registry) {
  registry->Register(
      "clickhouse",
      driver::Factory<driver::WarehouseService>(
          [](const driver::Config& config, const driver::DriverContext& context) -> Result<std::shared_ptr<driver::WarehouseService>> {
            AQ_ASSIGN_OR_RETURN(WarehouseOptions options, ParseWarehouseOptions(config));
            return MakeWarehouseService(options, context.clock);
          }));
}

}  // namespace aquifer::drivers::clickhouse
