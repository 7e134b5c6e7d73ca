#include "aquifer/cli/client_commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <tuple>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "aquifer/cli/client_http.h"
#include "aquifer/cli/client_subscribe.h"
#include "aquifer/cli/client_text.h"

namespace aquifer::cli {

using nlohmann::json;

// Every option of every client command; CLI11 writes into it while parsing.
struct ClientCommands::State {
  std::string url = "http://127.0.0.1:8080";
  std::string secret;

  std::string name;     // project create NAME, secret create PROJECT
  std::string table;    // PROJECT.TABLE
  bool json_out = false;

  // table create
  std::string schema_path;
  std::string key;
  bool no_log = false;
  bool no_index = false;
  bool no_warehouse = false;

  // write
  std::string input = "-";
  std::string format;
  int batch = 1000;
  std::string wait;
  bool no_idempotency = false;
  bool no_progress = false;

  // read, log, subscribe
  std::string filter;
  int limit = 100;
  bool all = false;
  bool table_out = false;
  int64_t from_ms = 0;
  std::string cursor;

  // sql
  std::string query;
  bool dry_run = false;
  int64_t timeout_s = 0;
  int max_width = 40;

  // project quota: "" = unchanged, "none" = unlimited, else bytes
  std::string quota_read;
  std::string quota_write;
  std::string quota_scan;

  // secret create
  std::string read_grants;
  std::string write_grants;
  bool manage = false;

  // dead-letters replay
  std::vector<std::string> write_ids;
};

namespace {

using State = ClientCommands::State;

[[noreturn]] void UsageError(const std::string& message) { throw CommandError(kExitUsage, message); }

TableRef RequireTableRef(const std::string& text) {
  std::string error;
  std::optional<TableRef> ref = ParseTableRef(text, &error);
  if (!ref) UsageError(error);
  return *ref;
}

// A number member, or `fallback` when it is missing or not a number.
int64_t IntOr(const json& object, const char* name, int64_t fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(name);
  if (it == object.end() || !it->is_number()) return fallback;
  return it->get<int64_t>();
}

std::string StringOr(const json& object, const char* name) {
  if (!object.is_object()) return std::string();
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string TablePath(const TableRef& ref) {
  return "/v1/projects/" + ref.project + "/tables/" + ref.table;
}

// Validates a --filter value so a typo is a usage error, not a server round trip.
std::string CheckFilter(const std::string& filter) {
  if (filter.empty()) return filter;
  json parsed = json::parse(filter, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    UsageError("--filter must be a JSON object, e.g. '{\"user\":\"ada\",\"ts\":{\"_gte\":5}}'");
  }
  return parsed.dump();
}

void PrintJson(const json& value, bool pretty) {
  std::string text = pretty ? value.dump(2) : value.dump();
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

// Writes a page of records as NDJSON; false when stdout was closed (| head).
bool PrintNdjson(const json& records) {
  if (!records.is_array()) return true;
  std::string out;
  for (const json& record : records) {
    out += record.dump(-1, ' ', false, json::error_handler_t::replace);
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0;
}

// --- project, table, secret, usage ------------------------------------------------------

void ProjectCreate(ServerClient& server, const State& s) {
  if (!IsValidName(s.name)) UsageError("bad project name '" + s.name + "' (names are [a-z][a-z0-9_]{0,62})");
  json body = {{"name", s.name}};
  json answer = server.Call("POST", "/v1/projects", &body);
  if (s.json_out) return PrintJson(answer, false);
  std::printf("created project %s\n", s.name.c_str());
}

// A --*-bytes value: a non-negative integer, or "none" (unlimited, JSON null).
json QuotaValue(const std::string& flag, const std::string& text) {
  if (text == "none" || text == "unlimited") return nullptr;
  int64_t bytes = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), bytes);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || bytes < 0) {
    UsageError(flag + " must be a number of bytes (0 or more) or 'none' for unlimited, got '" + text + "'");
  }
  return bytes;
}

// `project quota NAME [--read-bytes N|none] [--write-bytes N|none] [--scan-bytes N|none]`:
// sets the given monthly quotas (admin only), then prints them all; without flags, prints them.
void ProjectQuota(ServerClient& server, const State& s) {
  if (!IsValidName(s.name)) UsageError("bad project name '" + s.name + "' (names are [a-z][a-z0-9_]{0,62})");
  const std::string path = "/v1/projects/" + s.name + "/quotas";
  json body = json::object();
  for (const auto& [flag, key, text] : {std::tuple{"--read-bytes", "read_bytes", &s.quota_read},
                                        std::tuple{"--write-bytes", "write_bytes", &s.quota_write},
                                        std::tuple{"--scan-bytes", "scan_bytes", &s.quota_scan}}) {
    if (!text->empty()) body[key] = QuotaValue(flag, *text);
  }
  json answer = body.empty() ? server.Call("GET", path) : server.Call("PUT", path, &body);
  if (s.json_out) return PrintJson(answer, false);
  std::printf("project %s, monthly quotas (UTC months):\n", s.name.c_str());
  for (const char* key : {"read_bytes", "write_bytes", "scan_bytes"}) {
    const json* value = answer.contains(key) ? &answer[key] : nullptr;
    std::string shown = value == nullptr || value->is_null() ? "unlimited" : value->dump();
    std::printf("  %-12s %s\n", key, shown.c_str());
  }
}

void TableCreate(ServerClient& server, const State& s) {
  TableRef ref = RequireTableRef(s.table);
  std::ifstream file(s.schema_path);
  if (!file) UsageError("cannot open schema file " + s.schema_path);
  std::stringstream text;
  text << file.rdbuf();
  json schema = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (schema.is_discarded()) UsageError(s.schema_path + " is not valid JSON (an Avro schema is JSON)");
  std::vector<std::string> key = SplitList(s.key);
  if (key.empty()) UsageError("--key needs at least one field name");
  json body = {{"name", ref.table}, {"schema", schema}, {"key", key}};
  if (s.no_log) body["use_log"] = false;
  if (s.no_index) body["use_index"] = false;
  if (s.no_warehouse) body["use_warehouse"] = false;
  json answer = server.Call("POST", "/v1/projects/" + ref.project + "/tables", &body);
  if (s.json_out) return PrintJson(answer, false);
  std::printf("created table %s\n", ref.ToString().c_str());
}

void TableDescribe(ServerClient& server, const State& s) {
  TableRef ref = RequireTableRef(s.table);
  json answer = server.Call("GET", TablePath(ref));
  PrintJson(answer, !s.json_out);
}

void TableDelete(ServerClient& server, const State& s) {
  TableRef ref = RequireTableRef(s.table);
  server.Call("DELETE", TablePath(ref));
  std::printf("deleted table %s\n", ref.ToString().c_str());
}

void SecretCreate(ServerClient& server, const State& s) {
  if (!IsValidName(s.name)) UsageError("bad project name '" + s.name + "'");
  json body = {{"read", SplitList(s.read_grants)}, {"write", SplitList(s.write_grants)}, {"manage", s.manage}};
  json answer = server.Call("POST", "/v1/projects/" + s.name + "/secrets", &body);
  if (s.json_out) return PrintJson(answer, false);
  if (!answer.contains("secret") || !answer["secret"].is_string()) {
    throw CommandError(kExitServerError, "the server's answer has no \"secret\": " + answer.dump());
  }
  std::printf("%s\n", answer["secret"].get<std::string>().c_str());
}

void DeadLettersList(ServerClient& server, const State& s) {
  json answer = server.Call("GET", "/v1/admin/dead-letters?limit=" + std::to_string(s.limit));
  if (s.json_out) return PrintJson(answer, false);
  const json* letters = answer.contains("dead_letters") ? &answer["dead_letters"] : nullptr;
  if (letters == nullptr || !letters->is_array()) return PrintJson(answer, true);
  for (const json& letter : *letters) std::printf("%s\n", letter.dump().c_str());  // NDJSON
  std::fprintf(stderr, "(%zu dead letter%s)\n", letters->size(), letters->size() == 1 ? "" : "s");
}

void DeadLettersReplay(ServerClient& server, const State& s) {
  json body = json::object();
  if (!s.write_ids.empty()) body["write_ids"] = s.write_ids;
  json answer = server.Call("POST", "/v1/admin/dead-letters/replay", &body);
  if (s.json_out) return PrintJson(answer, false);
  std::printf("replayed %s dead letter(s)\n",
              answer.contains("replayed") ? answer["replayed"].dump().c_str() : "?");
}

void Usage(ServerClient& server, const State& s) {
  json answer = server.Call("GET", "/v1/usage");
  if (s.json_out) return PrintJson(answer, false);
  // {"projects":[{"project","hour":{counters},"month":{counters}}], "secret":{...}}:
  // one row per project and period, one column per counter.
  const json* projects = answer.contains("projects") ? &answer["projects"] : nullptr;
  if (projects == nullptr || !projects->is_array()) return PrintJson(answer, true);
  std::vector<std::string> counters;
  std::vector<json> rows;
  std::vector<json> entries(projects->begin(), projects->end());
  if (answer.contains("secret") && answer["secret"].is_object()) {
    entries.push_back(answer["secret"]);
    entries.back()["project"] = "(this secret)";
  }
  for (const json& entry : entries) {
    if (!entry.is_object()) continue;
    for (auto it = entry.begin(); it != entry.end(); ++it) {
      // Periods ("hour", "month") and non-empty quotas are objects of counters.
      if (!it.value().is_object() || it.value().empty()) continue;
      json row = {{"project", StringOr(entry, "project")}, {"period", it.key()}};
      for (auto counter = it.value().begin(); counter != it.value().end(); ++counter) {
        row[counter.key()] = counter.value();
        if (std::find(counters.begin(), counters.end(), counter.key()) == counters.end()) {
          counters.push_back(counter.key());
        }
      }
      rows.push_back(std::move(row));
    }
  }
  std::vector<std::string> headers = {"project", "period"};
  headers.insert(headers.end(), counters.begin(), counters.end());
  std::vector<std::vector<std::string>> cells;
  for (const json& row : rows) {
    std::vector<std::string> line;
    for (const std::string& header : headers) line.push_back(row.contains(header) ? CellText(row[header]) : "");
    cells.push_back(std::move(line));
  }
  std::string text = RenderTable(headers, cells, static_cast<size_t>(s.max_width));
  std::fwrite(text.data(), 1, text.size(), stdout);
}

// --- write ------------------------------------------------------------------------------

std::string Sha256Hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

// The longest Retry-After a write waits out before retrying a batch.
constexpr int64_t kMaxRetryWaitMs = 60'000;

// The write in progress: batches of NDJSON with the file line of each record.
class Writer {
 public:
  Writer(ServerClient* server, const State& s, TableRef ref, std::string display_name, uint64_t total_bytes)
      : server_(server), s_(s), ref_(std::move(ref)), display_name_(std::move(display_name)),
        total_bytes_(total_bytes), progress_(!s.no_progress && isatty(fileno(stderr)) != 0),
        start_(std::chrono::steady_clock::now()) {
    path_ = TablePath(ref_) + "/records";
    if (!s_.wait.empty()) path_ += "?wait=" + UrlEncode(s_.wait);
  }

  void Add(std::string_view record_json, int64_t line) {
    body_.append(record_json);
    body_.push_back('\n');
    lines_.push_back(line);
    if (static_cast<int>(lines_.size()) >= s_.batch) Flush();
  }

  // Sends what is buffered. `bytes_read` feeds the progress bar.
  void Flush() {
    if (lines_.empty()) return;
    std::vector<std::string> headers;
    if (!s_.no_idempotency) {
      // Content-addressed: a rerun of the same input with the same --batch
      // sends the same key for each batch, so the server skips batches it
      // already took. Different bytes (or batch sizes) never share a key.
      std::string material = ref_.ToString() + '\n' + std::to_string(batch_index_) + '\n' + body_;
      headers.push_back("Idempotency-Key: aq-" + Sha256Hex(material).substr(0, 40));
    }
    HttpResponse response;
    for (int attempt = 0;; ++attempt) {
      response = server_->Send("POST", path_, body_, "application/x-ndjson", headers);
      bool retryable = response.status == 429 || response.status == 503;
      if (!retryable || attempt >= 5) break;
      int64_t wait_ms = response.retry_after_s >= 0 ? response.retry_after_s * 1000 : (200LL << attempt);
      // Over a monthly quota, Retry-After is the time until the month resets:
      // fail now with the server's message rather than sleep for days.
      if (wait_ms > kMaxRetryWaitMs) break;
      ClearProgress();
      std::fprintf(stderr, "aquifer: %s; retrying in %.1f s\n", ErrorMessage(response).c_str(),
                   static_cast<double>(wait_ms) / 1000.0);
      std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    }
    if (!response.ok()) Fail(response);
    json answer = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    int64_t count = static_cast<int64_t>(lines_.size());
    if (answer.is_object() && answer.contains("records") && answer["records"].is_number_integer()) {
      count = answer["records"].get<int64_t>();
    }
    written_ += count;
    ++batch_index_;
    body_.clear();
    lines_.clear();
  }

  void ShowProgress(uint64_t bytes_read, bool force) {
    if (!progress_) return;
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_progress_ < std::chrono::milliseconds(100)) return;
    last_progress_ = now;
    double seconds = std::chrono::duration<double>(now - start_).count();
    double percent = total_bytes_ > 0 ? 100.0 * static_cast<double>(bytes_read) / static_cast<double>(total_bytes_) : -1;
    std::string line = ProgressLine(written_, seconds, percent);
    std::fprintf(stderr, "\r%s\x1b[K", line.c_str());
    std::fflush(stderr);
    shown_ = true;
  }

  void ClearProgress() {
    if (!shown_) return;
    std::fprintf(stderr, "\r\x1b[K");
    std::fflush(stderr);
    shown_ = false;
  }

  // A client-side problem with the input at `line`, after what was written.
  [[noreturn]] void FailInput(const std::string& message) {
    ClearProgress();
    throw CommandError(kExitUsage, display_name_ + ": " + message + WrittenSoFar());
  }

  int64_t written() const { return written_; }

 private:
  std::string WrittenSoFar() const {
    if (written_ == 0) return " (nothing was written)";
    return " (" + WithThousands(written_) + " records of earlier batches were written to " + ref_.ToString() +
           (s_.no_idempotency ? ")" : "; a rerun skips them by idempotency key)");
  }

  [[noreturn]] void Fail(const HttpResponse& response) {
    ClearProgress();
    json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
    std::vector<std::string> details;
    if (body.is_object() && body.contains("error") && body["error"].is_object()) {
      const json& error = body["error"];
      if (error.contains("details") && error["details"].is_array()) {
        for (const json& detail : error["details"]) {
          std::string where = display_name_;
          int64_t record = IntOr(detail, "record", -1);
          if (record >= 0 && record < static_cast<int64_t>(lines_.size())) {
            where += ":" + std::to_string(lines_[static_cast<size_t>(record)]);
          } else if (record >= 0) {
            where += ": record " + std::to_string(record);
          }
          std::string field = StringOr(detail, "field");
          std::string message = StringOr(detail, "message");
          details.push_back(where + ": " + (field.empty() ? "" : field + ": ") + message);
        }
      }
    }
    std::string message = ErrorMessage(response);
    if (response.status == 413) message += " (try a smaller --batch)";
    if (!lines_.empty()) {
      message += "; nothing of the batch at lines " + std::to_string(lines_.front()) + "-" +
                 std::to_string(lines_.back()) + " was written";
    }
    throw CommandError(kExitServerError, message + WrittenSoFar(), std::move(details));
  }

  ServerClient* server_;
  const State& s_;
  TableRef ref_;
  std::string display_name_;
  std::string path_;
  uint64_t total_bytes_;
  bool progress_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_progress_{};
  std::string body_;
  std::vector<int64_t> lines_;
  int64_t batch_index_ = 0;
  int64_t written_ = 0;
};

void Write(ServerClient& server, const State& s) {
  TableRef ref = RequireTableRef(s.table);
  if (s.batch < 1 || s.batch > 100'000) UsageError("--batch must be 1..100000");
  bool from_stdin = s.input == "-";
  std::string format = s.format;
  if (format.empty()) {
    auto ends_with = [&](std::string_view suffix) {
      return s.input.size() >= suffix.size() && s.input.compare(s.input.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (ends_with(".csv") || ends_with(".CSV")) {
      format = "csv";
    } else if (ends_with(".ndjson") || ends_with(".jsonl") || ends_with(".json") || from_stdin) {
      format = "ndjson";
    } else {
      UsageError("cannot tell the format of " + s.input + " from its name: give --format ndjson|csv");
    }
  }
  if (format != "csv" && format != "ndjson") UsageError("--format must be ndjson or csv");

  // For CSV, the table's schema decides how each cell is typed; fetch it first
  // so a wrong table name fails before any input is read.
  std::optional<CsvSchema> schema;
  if (format == "csv") {
    json description = server.Call("GET", TablePath(ref));
    std::string error;
    schema = CsvSchema::FromDescription(description, &error);
    if (!schema) throw CommandError(kExitServerError, ref.ToString() + ": " + error);
  }

  std::FILE* file = from_stdin ? stdin : std::fopen(s.input.c_str(), "rb");
  if (file == nullptr) UsageError("cannot open " + s.input + ": " + std::strerror(errno));
  struct Closer {
    std::FILE* file;
    bool owned;
    ~Closer() {
      if (owned) std::fclose(file);
    }
  } closer{file, !from_stdin};
  uint64_t total_bytes = 0;
  struct stat info {};
  if (fstat(fileno(file), &info) == 0 && S_ISREG(info.st_mode)) total_bytes = static_cast<uint64_t>(info.st_size);

  std::string display_name = from_stdin ? "<stdin>" : s.input;
  Writer writer(&server, s, ref, display_name, total_bytes);
  InputReader input(file);
  if (format == "ndjson") {
    std::string line;
    int64_t line_number = 0;
    while (input.ReadLine(&line)) {
      ++line_number;
      size_t first = line.find_first_not_of(" \t");
      if (first == std::string::npos) continue;
      writer.Add(line, line_number);
      writer.ShowProgress(input.bytes_read(), false);
    }
  } else {
    CsvReader csv(&input);
    std::vector<CsvCell> cells;
    std::vector<std::string> header;
    int64_t line = 0;
    std::string error;
    if (!csv.Next(&cells, &line, &error)) {
      if (!error.empty()) writer.FailInput(error);
      writer.FailInput("empty CSV: the first row must name the fields");
    }
    for (const CsvCell& cell : cells) {
      if (cell.text.empty()) writer.FailInput("line " + std::to_string(line) + ": empty column name in the header");
      if (std::find(header.begin(), header.end(), cell.text) != header.end()) {
        writer.FailInput("line " + std::to_string(line) + ": column '" + cell.text + "' appears twice in the header");
      }
      header.push_back(cell.text);
    }
    while (csv.Next(&cells, &line, &error)) {
      if (cells.size() != header.size()) {
        writer.FailInput("line " + std::to_string(line) + ": " + std::to_string(cells.size()) +
                         " fields, but the header has " + std::to_string(header.size()));
      }
      writer.Add(schema->ToRecord(header, cells).dump(), line);
      writer.ShowProgress(input.bytes_read(), false);
    }
    if (!error.empty()) writer.FailInput(error);
  }
  if (input.error()) writer.FailInput(std::string("read error: ") + std::strerror(errno));
  writer.Flush();
  writer.ShowProgress(input.bytes_read(), true);
  writer.ClearProgress();
  std::printf("wrote %lld records to %s\n", static_cast<long long>(writer.written()), ref.ToString().c_str());
}

// --- read, log --------------------------------------------------------------------------

// Prints pages of records, following next_cursor through /v1/cursor with --all.
void PrintPages(ServerClient& server, const State& s, json page) {
  std::vector<json> collected;
  bool residual_noted = false;
  while (true) {
    if (page.contains("residual") && page["residual"].is_boolean() && page["residual"].get<bool>() && !residual_noted) {
      residual_noted = true;
      std::fprintf(stderr, "aquifer: note: the filter needed a record-by-record (residual) scan\n");
    }
    const json& data = page.contains("data") ? page["data"] : json::array();
    if (s.table_out) {
      if (data.is_array()) collected.insert(collected.end(), data.begin(), data.end());
    } else if (!PrintNdjson(data)) {
      return;
    }
    std::string next = page.contains("next_cursor") && page["next_cursor"].is_string()
                           ? page["next_cursor"].get<std::string>()
                           : std::string();
    if (!s.all || next.empty()) {
      if (!s.all && !next.empty()) {
        std::fprintf(stderr, "aquifer: more records follow (use --all)\n");
      }
      break;
    }
    page = server.Call("GET", "/v1/cursor?cursor=" + UrlEncode(next) + "&limit=" + std::to_string(s.limit));
  }
  if (s.table_out) {
    std::string text = RenderRecords(collected, static_cast<size_t>(s.max_width));
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::printf("(%zu records)\n", collected.size());
  }
}

void Read(ServerClient& server, const State& s) {
  TableRef ref = RequireTableRef(s.table);
  std::string filter = CheckFilter(s.filter);
  std::string path = TablePath(ref) + "/records?limit=" + std::to_string(s.limit);
  if (!filter.empty()) path += "&filter=" + UrlEncode(filter);
  PrintPages(server, s, server.Call("GET", path));
}

void Log(ServerClient& server, const State& s) {
  TableRef ref = RequireTableRef(s.table);
  std::string path = TablePath(ref) + "/log?limit=" + std::to_string(s.limit);
  if (s.from_ms > 0) path += "&from=" + std::to_string(s.from_ms);
  PrintPages(server, s, server.Call("GET", path));
}

// --- subscribe --------------------------------------------------------------------------

int Subscribe(ServerClient& server, const State& s) {
  TableRef ref = RequireTableRef(s.table);
  std::string filter = CheckFilter(s.filter);
  std::string cursor = s.cursor;
  std::string extra_filter = filter;
  if (cursor.empty()) {
    // A query's first page carries a change cursor for that query (and its
    // filter): changes after it are what the subscription delivers.
    std::string path = TablePath(ref) + "/records?limit=1";
    if (!filter.empty()) path += "&filter=" + UrlEncode(filter);
    json page = server.Call("GET", path);
    if (!page.contains("change_cursor") || !page["change_cursor"].is_string() ||
        page["change_cursor"].get<std::string>().empty()) {
      throw CommandError(kExitServerError, "the server gave no change_cursor for " + ref.ToString());
    }
    cursor = page["change_cursor"].get<std::string>();
    extra_filter.clear();  // the change cursor carries the filter
  }
  return RunSubscribe(server.options(), cursor, extra_filter);
}

// --- sql --------------------------------------------------------------------------------

std::string JobError(const json& job) {
  if (!job.contains("error") || job["error"].is_null()) return "no message";
  const json& error = job["error"];
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object()) {
    std::string code = StringOr(error, "code");
    std::string message = StringOr(error, "message");
    return code.empty() ? message : code + ": " + message;
  }
  return error.dump();
}

void Sql(ServerClient& server, const State& s) {
  if (s.query.empty()) UsageError("give the query, e.g. aquifer sql \"SELECT count(*) FROM p.t\"");
  json body = {{"query", s.query}, {"dry_run", s.dry_run}};
  if (!s.dry_run) {
    // The server waits this long for the job and answers its first rows with
    // it (a small result needs no second request); a slower job is polled.
    int64_t wait_ms = 10'000;
    if (s.timeout_s > 0) wait_ms = std::min<int64_t>(wait_ms, int64_t{s.timeout_s} * 1000);
    body["wait_ms"] = wait_ms;
    body["limit"] = 1000;
  }
  json answer = server.Call("POST", "/v1/sql", &body);
  if (s.dry_run) {
    if (s.json_out) return PrintJson(answer, false);
    std::vector<std::string> tables;
    if (answer.contains("tables") && answer["tables"].is_array()) {
      for (const json& table : answer["tables"]) tables.push_back(CellText(table));
    }
    std::string joined;
    for (const std::string& table : tables) joined += (joined.empty() ? "" : ", ") + table;
    int64_t bytes = IntOr(answer, "bytes_scanned_estimate", 0);
    std::printf("tables: %s\n", joined.empty() ? "(none)" : joined.c_str());
    std::printf("bytes scanned (estimate): %lld (%s)\n", static_cast<long long>(bytes),
                HumanBytes(static_cast<uint64_t>(bytes)).c_str());
    return;
  }
  if (!answer.contains("job_id") || !answer["job_id"].is_string()) {
    throw CommandError(kExitServerError, "the server's answer has no job_id: " + answer.dump());
  }
  std::string job_id = answer["job_id"].get<std::string>();
  std::string job_path = "/v1/jobs/" + UrlEncode(job_id);

  // Poll with backoff: quick queries finish in milliseconds, long ones are
  // asked about once a second.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(s.timeout_s);
  std::chrono::milliseconds delay(10);
  json job = answer;  // with wait_ms the answer is the job's status (and its first rows when done)
  bool answered = StringOr(answer, "status") == "done" && answer.contains("columns");
  while (true) {
    if (StringOr(job, "status").empty()) job = server.Call("GET", job_path);
    std::string status = StringOr(job, "status");
    if (status == "done") break;
    if (status == "failed") throw CommandError(kExitServerError, "job " + job_id + " failed: " + JobError(job));
    if (s.timeout_s > 0 && std::chrono::steady_clock::now() >= deadline) {
      throw CommandError(kExitServerError, "job " + job_id + " is still " + status + " after " +
                                               std::to_string(s.timeout_s) + " s (--timeout)");
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
    job = json::object();
  }

  json columns = json::array();
  json rows = json::array();
  std::string next;
  bool first = true;
  while (first || !next.empty()) {
    std::string path = job_path + "/rows?limit=1000";
    if (!first) path += "&cursor=" + UrlEncode(next);
    json page = first && answered ? answer : server.Call("GET", path);
    first = false;
    if (page.contains("columns") && page["columns"].is_array() && !page["columns"].empty()) {
      columns = page["columns"];
    }
    if (page.contains("data") && page["data"].is_array()) {
      for (json& row : page["data"]) rows.push_back(std::move(row));
    }
    next = page.contains("next_cursor") && page["next_cursor"].is_string() ? page["next_cursor"].get<std::string>()
                                                                           : std::string();
  }
  int64_t bytes = IntOr(job, "bytes_scanned", 0);
  if (s.json_out) {
    PrintJson({{"job_id", job_id}, {"columns", columns}, {"data", rows}, {"bytes_scanned", bytes}}, false);
    return;
  }
  std::vector<std::string> headers;
  for (const json& column : columns) {
    headers.push_back(column.is_object() ? (StringOr(column, "name").empty() ? std::string("?") : StringOr(column, "name")) : CellText(column));
  }
  std::vector<std::vector<std::string>> cells;
  for (const json& row : rows) {
    std::vector<std::string> line;
    if (row.is_array()) {
      for (const json& value : row) line.push_back(CellText(value));
    } else if (row.is_object()) {
      for (const std::string& header : headers) line.push_back(row.contains(header) ? CellText(row[header]) : "");
    }
    if (headers.empty()) headers.resize(line.size(), "?");
    cells.push_back(std::move(line));
  }
  std::string text = RenderTable(headers, cells, static_cast<size_t>(s.max_width));
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::printf("(%zu row%s, %s scanned)\n", rows.size(), rows.size() == 1 ? "" : "s",
              HumanBytes(static_cast<uint64_t>(bytes)).c_str());
}

}  // namespace

// --- registration -----------------------------------------------------------------------

CLI::App* ClientCommands::Add(CLI::App* parent, const std::string& name, const std::string& description,
                              std::function<void()> run) {
  CLI::App* command = parent->add_subcommand(name, description);
  command->fallthrough();  // global options (--url, --secret) may follow the command
  if (run) commands_.emplace_back(command, std::move(run));
  return command;
}

ClientCommands::ClientCommands(CLI::App* app) : state_(std::make_shared<State>()) {
  State& s = *state_;
  auto server = [this] {
    ServerOptions options;
    options.url = state_->url;
    options.secret = state_->secret;
    return std::make_unique<ServerClient>(options);
  };
  const std::string client_group = "Client options";
  app->add_option("--url", s.url, "Server URL")
      ->envname("AQUIFER_URL")
      ->capture_default_str()
      ->group(client_group);
  app->add_option("--secret", s.secret, "Bearer secret")
      ->envname("AQUIFER_SECRET")
      ->group(client_group);

  auto table_arg = [&s](CLI::App* command) {
    command->add_option("table", s.table, "PROJECT.TABLE")->required();
  };
  auto json_flag = [&s](CLI::App* command, const std::string& what) {
    command->add_flag("--json", s.json_out, what);
  };

  // project
  CLI::App* project = Add(app, "project", "Manage projects", nullptr);
  project->require_subcommand(1);
  CLI::App* project_create = Add(project, "create", "Create a project", [this, server] {
    auto client = server();
    ProjectCreate(*client, *state_);
  });
  project_create->add_option("name", s.name, "Project name ([a-z][a-z0-9_]{0,62})")->required();
  json_flag(project_create, "Print the server's answer as JSON");
  CLI::App* project_quota = Add(project, "quota",
                                "Show or set a project's monthly byte quotas (admin secret)",
                                [this, server] {
                                  auto client = server();
                                  ProjectQuota(*client, *state_);
                                });
  project_quota->add_option("name", s.name, "Project name")->required();
  project_quota->add_option("--read-bytes", s.quota_read, "Monthly read quota in bytes, or none");
  project_quota->add_option("--write-bytes", s.quota_write, "Monthly write quota in bytes, or none");
  project_quota->add_option("--scan-bytes", s.quota_scan, "Monthly SQL scan quota in bytes, or none");
  json_flag(project_quota, "Print the server's answer as JSON");

  // table
  CLI::App* table = Add(app, "table", "Manage tables", nullptr);
  table->require_subcommand(1);
  CLI::App* table_create = Add(table, "create", "Create a table from an Avro schema and its key fields",
                               [this, server] {
                                 auto client = server();
                                 TableCreate(*client, *state_);
                               });
  table_arg(table_create);
  table_create->add_option("--schema", s.schema_path, "Avro record schema file (.avsc, JSON)")->required();
  table_create->add_option("--key", s.key, "Key fields, comma-separated (id or id,id2)")->required();
  table_create->add_flag("--no-log", s.no_log, "Keep no replayable log");
  table_create->add_flag("--no-index", s.no_index, "Keep no index (no latest-per-key reads)");
  table_create->add_flag("--no-warehouse", s.no_warehouse, "Keep no warehouse table (no SQL)");
  json_flag(table_create, "Print the server's answer as JSON");
  CLI::App* table_describe = Add(table, "describe", "Print a table's description (schema, key, instances)",
                                 [this, server] {
                                   auto client = server();
                                   TableDescribe(*client, *state_);
                                 });
  table_arg(table_describe);
  json_flag(table_describe, "Compact JSON instead of indented");
  CLI::App* table_delete = Add(table, "delete", "Delete a table and all its data", [this, server] {
    auto client = server();
    TableDelete(*client, *state_);
  });
  table_arg(table_delete);

  // write
  CLI::App* write = Add(app, "write", "Write records from an NDJSON or CSV file (or stdin)", [this, server] {
    auto client = server();
    Write(*client, *state_);
  });
  table_arg(write);
  write->add_option("file", s.input, "FILE.ndjson, FILE.csv or - for stdin")->required();
  write->add_option("--format", s.format, "ndjson or csv (default: from the file name; stdin is ndjson)")
      ->check(CLI::IsMember({"ndjson", "csv"}));
  write->add_option("--batch", s.batch, "Records per request")->capture_default_str()->check(CLI::Range(1, 100000));
  write->add_option("--wait", s.wait, "Return once these stores have each batch: index, log, warehouse or a list");
  write->add_flag("--no-idempotency", s.no_idempotency,
                  "Send no Idempotency-Key (by default a rerun of the same input skips batches already written)");
  write->add_flag("--no-progress", s.no_progress, "No progress bar on stderr");
  write->footer(
      "CSV: the first row names the fields; cells are typed by the table's schema\n"
      "(numbers, booleans; an empty cell is null for a nullable field).");

  // read
  CLI::App* read = Add(app, "read", "Read the latest record per key, optionally filtered", [this, server] {
    auto client = server();
    Read(*client, *state_);
  });
  table_arg(read);
  read->add_option("--filter", s.filter, "JSON filter, e.g. '{\"user\":\"ada\",\"ts\":{\"_gte\":5}}'");
  read->add_option("--limit", s.limit, "Records per page (1..1000)")->capture_default_str()->check(CLI::Range(1, 1000));
  read->add_flag("--all", s.all, "Follow next_cursor until every record is printed");
  read->add_flag("--table", s.table_out, "Print an aligned table instead of NDJSON");
  read->add_option("--width", s.max_width, "Widest table cell (--table)")->capture_default_str()->check(CLI::Range(4, 1000));

  // log
  CLI::App* log = Add(app, "log", "Replay a table's records in write order", [this, server] {
    auto client = server();
    Log(*client, *state_);
  });
  table_arg(log);
  log->add_option("--from", s.from_ms, "Skip records with an earlier @timestamp (ms since the epoch)");
  log->add_option("--limit", s.limit, "Records per page (1..1000)")->capture_default_str()->check(CLI::Range(1, 1000));
  log->add_flag("--all", s.all, "Follow next_cursor to the end of the log");
  log->add_flag("--table", s.table_out, "Print an aligned table instead of NDJSON");
  log->add_option("--width", s.max_width, "Widest table cell (--table)")->capture_default_str()->check(CLI::Range(4, 1000));

  // subscribe
  CLI::App* subscribe = Add(app, "subscribe", "Print changes to a table as NDJSON until Ctrl-C", nullptr);
  commands_.emplace_back(subscribe, [this, server] {
    auto client = server();
    exit_code_override_ = Subscribe(*client, *state_);
  });
  table_arg(subscribe);
  subscribe->add_option("--filter", s.filter, "JSON filter on the changes");
  subscribe->add_option("--cursor", s.cursor, "Resume from this change cursor (default: from now)");

  // sql
  CLI::App* sql = Add(app, "sql", "Run a SQL query over project.table names and print the rows", [this, server] {
    auto client = server();
    Sql(*client, *state_);
  });
  sql->add_option("query", s.query, "One SELECT, e.g. \"SELECT user, count(*) FROM p.t GROUP BY user\"")->required();
  sql->add_flag("--dry-run", s.dry_run, "Print the tables read and the bytes-scanned estimate; run nothing");
  json_flag(sql, "Print {\"columns\",\"data\",\"bytes_scanned\"} as JSON");
  sql->add_option("--timeout", s.timeout_s, "Give up waiting for the job after this many seconds (0: never)");
  sql->add_option("--width", s.max_width, "Widest table cell")->capture_default_str()->check(CLI::Range(4, 1000));

  // secret
  CLI::App* secret = Add(app, "secret", "Manage secrets", nullptr);
  secret->require_subcommand(1);
  CLI::App* secret_create = Add(secret, "create", "Mint a secret scoped to a project and print it", [this, server] {
    auto client = server();
    SecretCreate(*client, *state_);
  });
  secret_create->add_option("project", s.name, "Project")->required();
  secret_create->add_option("--read", s.read_grants, "Tables it may read, comma-separated ('*' for all)");
  secret_create->add_option("--write", s.write_grants, "Tables it may write, comma-separated ('*' for all)");
  secret_create->add_flag("--manage", s.manage, "It may manage the project (tables, secrets)");
  json_flag(secret_create, "Print the server's answer as JSON");

  // dead letters (admin)
  CLI::App* dead = Add(app, "dead-letters", "List or replay writes the workers could not apply (admin secret)",
                       nullptr);
  dead->require_subcommand(1);
  CLI::App* dead_list = Add(dead, "list", "Print dead letters as NDJSON (write_id, table, store, reason, ...)",
                            [this, server] {
                              auto client = server();
                              DeadLettersList(*client, *state_);
                            });
  dead_list->add_option("--limit", s.limit, "At most this many (1..1000)")->capture_default_str()->check(CLI::Range(1, 1000));
  json_flag(dead_list, "Print the server's answer as JSON");
  CLI::App* dead_replay = Add(dead, "replay", "Queue dead letters again (all, or --write-id ones); each lands once",
                              [this, server] {
                                auto client = server();
                                DeadLettersReplay(*client, *state_);
                              });
  dead_replay->add_option("--write-id", s.write_ids, "Replay only this write (repeatable)");
  json_flag(dead_replay, "Print the server's answer as JSON");

  // usage
  CLI::App* usage = Add(app, "usage", "Show usage of your projects", [this, server] {
    auto client = server();
    Usage(*client, *state_);
  });
  json_flag(usage, "Print the server's answer as JSON");
}

bool ClientCommands::Selected() const {
  for (const auto& [command, run] : commands_) {
    if (command->parsed()) return true;
  }
  return false;
}

int ClientCommands::Run() {
  for (const auto& [command, run] : commands_) {
    if (!command->parsed()) continue;
    try {
      exit_code_override_ = 0;
      run();
      std::fflush(stdout);
      return exit_code_override_;
    } catch (const CommandError& error) {
      std::fflush(stdout);
      std::fprintf(stderr, "aquifer: %s\n", error.what());
      for (const std::string& detail : error.details()) std::fprintf(stderr, "  %s\n", detail.c_str());
      return error.exit_code();
    } catch (const std::exception& error) {
      std::fflush(stdout);
      std::fprintf(stderr, "aquifer: %s\n", error.what());
      return kExitServerError;
    }
  }
  return kExitUsage;
}

}  // namespace aquifer::cli
