// The `aquifer` command: `serve` runs the server; the client commands speak the HTTP API.
#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "aquifer/base/logging.h"
#include "aquifer/cli/client_commands.h"
#include "aquifer/driver/registry.h"
#include "aquifer/drivers/builtin.h"

namespace {

int Serve(const std::string& data_dir, int port) {
  namespace driver = aquifer::driver;
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) {
    std::fprintf(stderr, "aquifer: cannot create data directory %s: %s\n", data_dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  driver::Registry registry;
  aquifer::drivers::RegisterBuiltinDrivers(&registry);
  driver::DriverContext context;
  context.data_dir = data_dir;
  auto queue = registry.MakeMessageQueue("embedded", {}, context);
  auto lookup = registry.MakeLookupService("embedded", {}, context);
  auto usage = registry.MakeUsageService("embedded", {}, context);
  auto warehouse = registry.MakeWarehouseService("embedded", {}, context);
  for (const aquifer::Status* status : {&queue.status(), &lookup.status(), &usage.status(),
                                        &warehouse.status()}) {
    if (!status->ok()) {
      std::fprintf(stderr, "aquifer: %s\n", status->ToString().c_str());
      return 1;
    }
  }
  std::printf("aquifer: embedded drivers open in %s (queue, lookup and usage on RocksDB, warehouse on DuckDB)\n",
              std::filesystem::absolute(data_dir).c_str());
  std::printf("aquifer: the HTTP gateway on port %d is not yet built (issue 5); nothing to serve, exiting\n",
              port);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Aquifer: a real-time data engine"};
  app.require_subcommand(1);

  std::string data_dir = "./data";
  int port = 8080;
  auto* serve = app.add_subcommand("serve", "Run the server (gateway and worker) on the embedded drivers");
  serve->add_option("--data", data_dir, "Data directory")->capture_default_str();
  serve->add_option("--port", port, "HTTP port")->capture_default_str();

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
  if (*serve) return Serve(data_dir, port);
  return 1;
}
