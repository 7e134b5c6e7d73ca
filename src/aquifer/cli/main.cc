// The `aquifer` command: `serve` runs the server; the client commands speak the HTTP API.
#include <malloc.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/cli/client_commands.h"
#include "aquifer/engine/engine.h"
#include "aquifer/gateway/serve_config.h"
#include "aquifer/gateway/server.h"

namespace {

// `aquifer serve`: opens the engine, serves HTTP + WebSocket until SIGINT or
// SIGTERM, then stops gracefully. Configuration precedence: flags > env >
// config file > defaults (gateway/serve_config.h, gateway/README.md).
int Serve(const aquifer::gateway::ServeFlags& flags) {
  namespace gateway = aquifer::gateway;
  namespace engine = aquifer::engine;
  aquifer::Result<gateway::ServeConfig> config =
      gateway::LoadServeConfig(flags, gateway::AquiferEnvironment());
  if (!config.ok()) {
    std::fprintf(stderr, "aquifer: %s\n", config.status().message().c_str());
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(config->engine.data_dir, ec);
  if (ec) {
    std::fprintf(stderr, "aquifer: cannot create data directory %s: %s\n",
                 config->engine.data_dir.c_str(), ec.message().c_str());
    return 1;
  }
  // Block the stop signals before any thread starts, so every thread inherits
  // the mask and only sigwait() below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  aquifer::Result<std::unique_ptr<engine::Engine>> opened = engine::Engine::Open(config->engine);
  if (!opened.ok()) {
    std::fprintf(stderr, "aquifer: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<engine::Engine> core = std::move(*opened);
  if (aquifer::Status started = core->Start(); !started.ok()) {
    std::fprintf(stderr, "aquifer: %s\n", started.ToString().c_str());
    return 1;
  }
  gateway::Server server(core.get(), config->server);
  if (aquifer::Status listening = server.Start(); !listening.ok()) {
    std::fprintf(stderr, "aquifer: %s\n", listening.ToString().c_str());
    core->Stop();
    return 1;
  }
  if (std::optional<std::string> secret = core->NewAdminSecret()) {
    std::printf("admin secret: %s (shown once; set AQUIFER_ADMIN_SECRET to choose it)\n",
                secret->c_str());
  }
  std::printf("aquifer: data in %s, role %s%s\n",
              std::filesystem::absolute(config->engine.data_dir).c_str(),
              std::string(gateway::RoleName(config->engine.role)).c_str(),
              config->engine.role == engine::Role::kWorker ? " (HTTP: /healthz and /metrics only)"
                                                           : "");
  std::printf("aquifer: listening on http://%s:%u\n", config->server.host.c_str(),
              static_cast<unsigned>(server.port()));
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::printf("aquifer: %s received, stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  std::fflush(stdout);
  server.Stop();
  core->Stop();
  return 0;
}

}  // namespace

namespace {

// glibc's malloc raises its mmap threshold whenever a mapped block is freed (up
// to 32 MiB): after the first memtable flush, RocksDB's memtable arena blocks
// (8 MiB) and other large buffers come from the heap arenas instead, and their
// memory mostly stays with the process when the memtable is flushed. The
// server's RSS then rose ~30 MiB per million records ingested (README,
// "Benchmarks"). A fixed threshold (setting it turns the dynamic one off) maps
// every block of 1 MiB or more on its own and unmaps it on free. The
// environment's MALLOC_MMAP_THRESHOLD_ (or glibc.malloc.mmap_threshold in
// GLIBC_TUNABLES) wins.
void ApplyAllocatorDefaults() {
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr ||
      (tunables != nullptr && std::strstr(tunables, "glibc.malloc.mmap_threshold") != nullptr)) {
    return;
  }
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Aquifer: a real-time data engine"};
  app.require_subcommand(1);

  // Unset flags leave the environment and the config file in charge.
  std::string serve_data, serve_host, serve_role, serve_config, serve_catalog;
  int64_t serve_port = 0;
  auto* serve = app.add_subcommand(
      "serve", "Run the server: HTTP + WebSocket gateway and/or worker (flags > env > file)");
  auto* data_flag = serve->add_option("--data", serve_data, "Data directory (default ./data; AQUIFER_DATA)");
  auto* port_flag = serve->add_option("--port", serve_port,
                                      "HTTP port (default 8080; 0 picks a free one; AQUIFER_PORT)")
                        ->check(CLI::Range(0, 65535));
  auto* host_flag = serve->add_option("--host", serve_host,
                                      "Listen address (default 127.0.0.1; 0.0.0.0 for all; AQUIFER_HOST)");
  auto* role_flag = serve->add_option("--role", serve_role, "gateway, worker or all (default all; AQUIFER_ROLE)")
                        ->check(CLI::IsMember({"gateway", "worker", "all"}));
  auto* catalog_flag = serve->add_option(
      "--catalog", serve_catalog,
      "Catalog: sqlite (default, <data>/catalog.db), a SQLite path, or postgres://user@host/db"
      "[?schema=name] shared by several processes (AQUIFER_CATALOG)");
  auto* config_flag = serve->add_option("--config", serve_config,
                                        "TOML file: [server], [queue], [lookup], [warehouse], [usage] (AQUIFER_CONFIG)");

  auto* version = app.add_subcommand("version", "Print the version");
  aquifer::cli::ClientCommands client(&app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors exit 2, like the client commands'
  }
  if (client.Selected()) return client.Run();
  if (*version) {
    std::printf("aquifer 0.1.0\n");
    return 0;
  }
  if (*serve) {
    aquifer::gateway::ServeFlags flags;
    if (data_flag->count() > 0) flags.data = serve_data;
    if (port_flag->count() > 0) flags.port = serve_port;
    if (host_flag->count() > 0) flags.host = serve_host;
    if (role_flag->count() > 0) flags.role = serve_role;
    if (config_flag->count() > 0) flags.config = serve_config;
    if (catalog_flag->count() > 0) flags.catalog = serve_catalog;
    ApplyAllocatorDefaults();
    return Serve(flags);
  }
  return 1;
}
