#pragma once

// The configuration of `aquifer serve`: flags, environment, TOML file.
//
// Precedence, per key: command-line flags > environment > config file >
// defaults. Sources:
//
//   flags        --data --port --host --role --config
//   environment  AQUIFER_DATA, AQUIFER_PORT, AQUIFER_HOST, AQUIFER_ROLE,
//                AQUIFER_CONFIG (the file), AQUIFER_ADMIN_SECRET,
//                AQUIFER_SERVER_<KEY> for any other [server] key,
//                AQUIFER_<SECTION>_DRIVER and AQUIFER_<SECTION>_<KEY> for the
//                driver sections (QUEUE, LOOKUP, WAREHOUSE, USAGE); <KEY> is
//                lower-cased: AQUIFER_LOOKUP_BLOCK_CACHE_MB → block_cache_mb.
//   file (TOML)  [server] host, port, data, role, io_threads, handler_threads,
//                public_metrics, max_body_bytes, wait_timeout_ms, catalog,
//                worker_threads, usage_flush_interval_ms, idle_timeout_ms,
//                request_timeout_ms, idempotency_lease_ms, idempotency_wait_ms,
//                keys_dir, worker_ack_timeout_ms
//                [quotas] read_bytes, write_bytes, scan_bytes: the monthly quotas
//                every new project starts with (unset: unlimited; the admin
//                changes them per project with PUT /v1/projects/{p}/quotas)
//                [queue] [lookup] [warehouse] [usage]: driver = "name" and any
//                other keys, passed to that driver as its Config (strings;
//                numbers and booleans are written in TOML form).
//
// Unknown sections, unknown [server] keys and values of the wrong type are
// InvalidArgument naming the key and where it came from. Driver keys are the
// driver's business: its factory rejects what it does not know.

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "aquifer/base/status.h"
#include "aquifer/engine/engine.h"
#include "aquifer/gateway/server.h"

namespace aquifer::gateway {

struct ServeFlags {
  std::optional<std::string> data;
  std::optional<std::string> host;
  std::optional<int64_t> port;
  std::optional<std::string> role;
  std::optional<std::string> catalog;  // "sqlite", a path, or a postgres:// URL
  std::optional<std::string> config;  // path of a TOML file
};

struct ServeConfig {
  engine::EngineOptions engine;
  ServerOptions server;
  std::string config_file;  // the file read, "" when none
};

// "gateway", "worker" or "all".
Result<engine::Role> ParseRole(std::string_view text);
std::string_view RoleName(engine::Role role);

// Merges the three sources over the defaults. `env` holds the process
// environment (only AQUIFER_* entries matter). `config_text`, when set, is
// used instead of reading the file (tests); otherwise the file named by
// --config or AQUIFER_CONFIG is read.
Result<ServeConfig> LoadServeConfig(const ServeFlags& flags,
                                    const std::map<std::string, std::string>& env,
                                    std::optional<std::string_view> config_text = std::nullopt);

// The AQUIFER_* variables of this process.
std::map<std::string, std::string> AquiferEnvironment();

}  // namespace aquifer::gateway
