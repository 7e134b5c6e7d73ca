#include "aquifer/gateway/serve_config.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include <toml++/toml.h>

extern char** environ;

namespace aquifer::gateway {
namespace {

constexpr std::array<std::string_view, 4> kDriverSections = {"queue", "lookup", "warehouse", "usage"};
constexpr std::array<std::string_view, 23> kServerKeys = {
    "host",           "port",           "data",           "role",
    "io_threads",     "handler_threads", "public_metrics", "max_body_bytes",
    "wait_timeout_ms", "catalog",        "worker_threads", "usage_flush_interval_ms",
    "idle_timeout_ms", "request_timeout_ms", "idempotency_lease_ms", "idempotency_wait_ms",
    "keys_dir",       "worker_ack_timeout_ms", "max_subscriptions", "max_subscriptions_per_secret",
    "rate_limit_per_secret", "rate_limit_burst", "warehouse_write_interval_ms"};

// [sql]: limits on SQL jobs (engine::SqlOptions).
constexpr std::array<std::string_view, 8> kSqlKeys = {"timeout_ms",          "max_result_rows",
                                                       "max_result_bytes",    "result_ttl_ms",
                                                       "max_jobs_per_secret", "job_heartbeat_ms",
                                                       "job_lease_ms",        "job_history_ms"};

bool IsSqlKey(std::string_view key) { return std::find(kSqlKeys.begin(), kSqlKeys.end(), key) != kSqlKeys.end(); }

// One value with where it came from, for messages.
struct Setting {
  std::string value;
  std::string source;  // "--port", "AQUIFER_PORT", "aquifer.toml [server] port"
};

constexpr std::array<std::string_view, 3> kQuotaKeys = {"read_bytes", "write_bytes", "scan_bytes"};

struct Layered {
  std::map<std::string, Setting> server;
  std::map<std::string, Setting> sql;
  std::map<std::string, Setting> quotas;  // [quotas]: defaults for new projects
  std::map<std::string, std::map<std::string, Setting>> drivers;  // section → key → value
};

bool IsServerKey(std::string_view key) {
  return std::find(kServerKeys.begin(), kServerKeys.end(), key) != kServerKeys.end();
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Join(auto const& names) {
  std::string out;
  for (std::string_view name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

Result<std::string> TomlScalar(const toml::node& node, const std::string& where) {
  if (const auto* text = node.as_string()) return text->get();
  if (const auto* integer = node.as_integer()) return std::to_string(integer->get());
  if (const auto* boolean = node.as_boolean()) return std::string(boolean->get() ? "true" : "false");
  if (const auto* floating = node.as_floating_point()) {
    std::ostringstream out;
    out << floating->get();
    return out.str();
  }
  return InvalidArgument("{}: expected a string, number or boolean", where);
}

Status ApplyFile(std::string_view text, const std::string& path, Layered* layered) {
  toml::table root;
  try {
    root = toml::parse(text, path);
  } catch (const toml::parse_error& error) {
    return InvalidArgument("config file {} line {} column {}: {}", path,
                           error.source().begin.line, error.source().begin.column,
                           error.description());
  }
  for (auto&& [section_key, section_node] : root) {
    std::string section(section_key.str());
    const toml::table* table = section_node.as_table();
    bool is_driver =
        std::find(kDriverSections.begin(), kDriverSections.end(), section) != kDriverSections.end();
    if (table == nullptr ||
        (section != "server" && section != "sql" && section != "quotas" && !is_driver)) {
      return InvalidArgument(
          "config file {}: unknown {} '{}'; the sections are [server], [sql], [quotas], [{}]", path,
          table == nullptr ? "top-level key" : "section", section, Join(kDriverSections));
    }
    for (auto&& [key, node] : *table) {
      std::string name(key.str());
      std::string where = fmt::format("config file {} [{}] {}", path, section, name);
      if (section == "server" && !IsServerKey(name)) {
        return InvalidArgument("{}: unknown key; [server] takes {}", where, Join(kServerKeys));
      }
      if (section == "sql" && !IsSqlKey(name)) {
        return InvalidArgument("{}: unknown key; [sql] takes {}", where, Join(kSqlKeys));
      }
      if (section == "quotas" &&
          std::find(kQuotaKeys.begin(), kQuotaKeys.end(), name) == kQuotaKeys.end()) {
        return InvalidArgument("{}: unknown key; [quotas] takes {}", where, Join(kQuotaKeys));
      }
      AQ_ASSIGN_OR_RETURN(std::string value, TomlScalar(node, where));
      Setting setting{std::move(value), where};
      if (section == "quotas") {
        layered->quotas[name] = std::move(setting);
      } else if (section == "server") {
        layered->server[name] = std::move(setting);
      } else if (section == "sql") {
        layered->sql[name] = std::move(setting);
      } else {
        layered->drivers[section][name] = std::move(setting);
      }
    }
  }
  return Status::OK();
}

Status ApplyEnvironment(const std::map<std::string, std::string>& env, Layered* layered) {
  static constexpr std::pair<std::string_view, std::string_view> kShort[] = {
      {"AQUIFER_DATA", "data"}, {"AQUIFER_PORT", "port"}, {"AQUIFER_HOST", "host"},
      {"AQUIFER_ROLE", "role"}, {"AQUIFER_CATALOG", "catalog"}};
  for (const auto& [variable, value] : env) {
    std::string_view name = variable;
    if (!name.starts_with("AQUIFER_")) continue;
    bool handled = false;
    for (const auto& [short_name, key] : kShort) {
      if (name == short_name) {
        layered->server[std::string(key)] = Setting{value, variable};
        handled = true;
      }
    }
    if (handled) continue;
    std::string_view rest = name.substr(std::string_view("AQUIFER_").size());
    if (rest.starts_with("SERVER_")) {
      std::string key = Lower(rest.substr(std::string_view("SERVER_").size()));
      if (!IsServerKey(key)) {
        return InvalidArgument("environment variable {}: unknown [server] key '{}'; [server] takes {}",
                               variable, key, Join(kServerKeys));
      }
      layered->server[key] = Setting{value, variable};
      continue;
    }
    if (rest.starts_with("SQL_")) {
      std::string key = Lower(rest.substr(std::string_view("SQL_").size()));
      if (!IsSqlKey(key)) {
        return InvalidArgument("environment variable {}: unknown [sql] key '{}'; [sql] takes {}", variable, key,
                               Join(kSqlKeys));
      }
      layered->sql[key] = Setting{value, variable};
      continue;
    }
    for (std::string_view section : kDriverSections) {
      std::string prefix = Lower(section) + "_";
      std::string lower_rest = Lower(rest);
      if (lower_rest.starts_with(prefix) && lower_rest.size() > prefix.size()) {
        layered->drivers[std::string(section)][lower_rest.substr(prefix.size())] =
            Setting{value, variable};
      }
    }
  }
  return Status::OK();
}

Result<int64_t> ToInt(const Setting& setting, int64_t min, int64_t max) {
  int64_t value = 0;
  const std::string& text = setting.value;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return InvalidArgument("{}: expected an integer from {} to {}, got '{}'", setting.source, min,
                           max, text);
  }
  return value;
}

Result<bool> ToBool(const Setting& setting) {
  std::string text = Lower(setting.value);
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  return InvalidArgument("{}: expected true or false, got '{}'", setting.source, setting.value);
}

}  // namespace

Result<engine::Role> ParseRole(std::string_view text) {
  if (text == "all") return engine::Role::kAll;
  if (text == "gateway") return engine::Role::kGateway;
  if (text == "worker") return engine::Role::kWorker;
  return InvalidArgument("role must be gateway, worker or all, got '{}'", text);
}

std::string_view RoleName(engine::Role role) {
  switch (role) {
    case engine::Role::kAll:
      return "all";
    case engine::Role::kGateway:
      return "gateway";
    case engine::Role::kWorker:
      return "worker";
  }
  return "all";
}

std::map<std::string, std::string> AquiferEnvironment() {
  std::map<std::string, std::string> out;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    if (!text.starts_with("AQUIFER_")) continue;
    size_t equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    out.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return out;
}

Result<ServeConfig> LoadServeConfig(const ServeFlags& flags,
                                    const std::map<std::string, std::string>& env,
                                    std::optional<std::string_view> config_text) {
  ServeConfig config;
  Layered layered;

  // File (lowest of the three sources).
  std::string path;
  if (flags.config) {
    path = *flags.config;
  } else if (auto it = env.find("AQUIFER_CONFIG"); it != env.end()) {
    path = it->second;
  }
  if (config_text) {
    AQ_RETURN_IF_ERROR(ApplyFile(*config_text, path.empty() ? "<config>" : path, &layered));
  } else if (!path.empty()) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return InvalidArgument("cannot read config file {}", path);
    std::stringstream contents;
    contents << file.rdbuf();
    AQ_RETURN_IF_ERROR(ApplyFile(contents.str(), path, &layered));
  }
  config.config_file = path;

  // Environment, then flags.
  AQ_RETURN_IF_ERROR(ApplyEnvironment(env, &layered));
  if (flags.data) layered.server["data"] = Setting{*flags.data, "--data"};
  if (flags.host) layered.server["host"] = Setting{*flags.host, "--host"};
  if (flags.port) layered.server["port"] = Setting{std::to_string(*flags.port), "--port"};
  if (flags.role) layered.server["role"] = Setting{*flags.role, "--role"};
  if (flags.catalog) layered.server["catalog"] = Setting{*flags.catalog, "--catalog"};

  engine::EngineOptions& options = config.engine;
  ServerOptions& server = config.server;
  for (const auto& [key, setting] : layered.server) {
    if (key == "host") {
      server.host = setting.value;
    } else if (key == "port") {
      AQ_ASSIGN_OR_RETURN(int64_t port, ToInt(setting, 0, 65535));
      server.port = static_cast<uint16_t>(port);
    } else if (key == "data") {
      if (setting.value.empty()) return InvalidArgument("{}: the data directory is empty", setting.source);
      options.data_dir = setting.value;
    } else if (key == "role") {
      Result<engine::Role> role = ParseRole(setting.value);
      if (!role.ok()) return role.status().WithContext(setting.source);
      options.role = *role;
    } else if (key == "io_threads") {
      AQ_ASSIGN_OR_RETURN(int64_t threads, ToInt(setting, 0, 1024));
      server.io_threads = static_cast<int>(threads);
    } else if (key == "handler_threads") {
      AQ_ASSIGN_OR_RETURN(int64_t threads, ToInt(setting, 1, 4096));
      server.handler_threads = static_cast<int>(threads);
    } else if (key == "public_metrics") {
      AQ_ASSIGN_OR_RETURN(server.api.public_metrics, ToBool(setting));
    } else if (key == "max_body_bytes") {
      AQ_ASSIGN_OR_RETURN(int64_t bytes, ToInt(setting, 1024, int64_t{1} << 40));
      options.max_body_bytes = static_cast<size_t>(bytes);
    } else if (key == "wait_timeout_ms") {
      AQ_ASSIGN_OR_RETURN(options.wait_timeout_ms, ToInt(setting, 1, int64_t{24} * 3600 * 1000));
    } else if (key == "catalog") {
      options.catalog = setting.value;
    } else if (key == "keys_dir") {
      if (setting.value.empty()) return InvalidArgument("{}: the keys directory is empty", setting.source);
      options.keys_dir = setting.value;
    } else if (key == "worker_threads") {
      AQ_ASSIGN_OR_RETURN(int64_t threads, ToInt(setting, 0, 1024));
      options.worker_threads = static_cast<int32_t>(threads);
    } else if (key == "worker_ack_timeout_ms") {
      AQ_ASSIGN_OR_RETURN(options.worker_ack_timeout_ms, ToInt(setting, 100, int64_t{24} * 3600 * 1000));
    } else if (key == "warehouse_write_interval_ms") {
      AQ_ASSIGN_OR_RETURN(options.warehouse_write_interval_ms, ToInt(setting, 0, 1'000));
    } else if (key == "usage_flush_interval_ms") {
      AQ_ASSIGN_OR_RETURN(options.usage_flush_interval_ms, ToInt(setting, 1, int64_t{3600} * 1000));
    } else if (key == "idempotency_lease_ms") {
      AQ_ASSIGN_OR_RETURN(options.idempotency_lease_ms, ToInt(setting, 1, int64_t{24} * 3600 * 1000));
    } else if (key == "idempotency_wait_ms") {
      AQ_ASSIGN_OR_RETURN(options.idempotency_wait_ms, ToInt(setting, 0, int64_t{3600} * 1000));
    } else if (key == "idle_timeout_ms") {
      AQ_ASSIGN_OR_RETURN(int64_t ms, ToInt(setting, 100, int64_t{24} * 3600 * 1000));
      server.idle_timeout = std::chrono::milliseconds(ms);
    } else if (key == "request_timeout_ms") {
      AQ_ASSIGN_OR_RETURN(int64_t ms, ToInt(setting, 100, int64_t{24} * 3600 * 1000));
      server.request_timeout = std::chrono::milliseconds(ms);
    } else if (key == "max_subscriptions") {
      AQ_ASSIGN_OR_RETURN(int64_t count, ToInt(setting, 0, 10'000'000));
      server.max_subscriptions = static_cast<int>(count);
    } else if (key == "max_subscriptions_per_secret") {
      AQ_ASSIGN_OR_RETURN(int64_t count, ToInt(setting, 0, 10'000'000));
      server.max_subscriptions_per_secret = static_cast<int>(count);
    } else if (key == "rate_limit_per_secret") {
      // A decimal: 0.5 is one request every two seconds.
      char* end = nullptr;
      double rate = std::strtod(setting.value.c_str(), &end);
      if (setting.value.empty() || end == nullptr || *end != '\0' || !(rate >= 0) || rate > 1e8) {
        return InvalidArgument("{}: expected requests per second, a number >= 0 (0: no limit), got '{}'",
                               setting.source, setting.value);
      }
      server.api.rate_limit_per_secret = rate;
    } else if (key == "rate_limit_burst") {
      AQ_ASSIGN_OR_RETURN(server.api.rate_limit_burst, ToInt(setting, 0, 100'000'000));
    }
  }
  constexpr int64_t kDayMs = int64_t{24} * 3600 * 1000;
  for (const auto& [key, setting] : layered.sql) {
    driver::JobLimits& job = options.sql.job;
    if (key == "timeout_ms") {
      AQ_ASSIGN_OR_RETURN(job.timeout_ms, ToInt(setting, 0, kDayMs));
    } else if (key == "max_result_rows") {
      AQ_ASSIGN_OR_RETURN(job.max_result_rows, ToInt(setting, 0, int64_t{1} << 40));
    } else if (key == "max_result_bytes") {
      AQ_ASSIGN_OR_RETURN(job.max_result_bytes, ToInt(setting, 0, int64_t{1} << 50));
    } else if (key == "result_ttl_ms") {
      AQ_ASSIGN_OR_RETURN(job.result_ttl_ms, ToInt(setting, 0, 30 * kDayMs));
    } else if (key == "max_jobs_per_secret") {
      AQ_ASSIGN_OR_RETURN(int64_t jobs, ToInt(setting, 0, 1'000'000));
      options.sql.max_jobs_per_secret = static_cast<int32_t>(jobs);
    } else if (key == "job_heartbeat_ms") {
      AQ_ASSIGN_OR_RETURN(options.sql.job_heartbeat_ms, ToInt(setting, 10, int64_t{3600} * 1000));
    } else if (key == "job_lease_ms") {
      AQ_ASSIGN_OR_RETURN(options.sql.job_lease_ms, ToInt(setting, 30, kDayMs));
    } else if (key == "job_history_ms") {
      AQ_ASSIGN_OR_RETURN(options.sql.job_history_ms, ToInt(setting, 0, 3650 * kDayMs));
    }
  }
  if (options.sql.job_lease_ms <= options.sql.job_heartbeat_ms) {
    return InvalidArgument("[sql] job_lease_ms ({}) must be longer than job_heartbeat_ms ({}), or every job "
                           "would look abandoned between two heartbeats; 3x is a good choice",
                           options.sql.job_lease_ms, options.sql.job_heartbeat_ms);
  }
  server.max_body_bytes = options.max_body_bytes;
  server.api.role = options.role;

  for (const auto& [key, setting] : layered.quotas) {
    AQ_ASSIGN_OR_RETURN(int64_t bytes, ToInt(setting, 0, std::numeric_limits<int64_t>::max()));
    if (key == "read_bytes") options.default_quotas.read_bytes = bytes;
    if (key == "write_bytes") options.default_quotas.write_bytes = bytes;
    if (key == "scan_bytes") options.default_quotas.scan_bytes = bytes;
  }

  for (auto& [section, settings] : layered.drivers) {
    engine::DriverChoice* choice = section == "queue"       ? &options.queue
                                   : section == "lookup"    ? &options.lookup
                                   : section == "warehouse" ? &options.warehouse
                                                            : &options.usage;
    for (auto& [key, setting] : settings) {
      if (key == "driver") {
        if (setting.value.empty()) return InvalidArgument("{}: the driver name is empty", setting.source);
        choice->name = setting.value;
      } else {
        choice->config[key] = setting.value;
      }
    }
  }

  if (auto it = env.find("AQUIFER_ADMIN_SECRET"); it != env.end() && !it->second.empty()) {
    options.admin_secret = it->second;
  }
  return config;
}

}  // namespace aquifer::gateway
