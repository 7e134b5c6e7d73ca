#pragma once

// The `aquifer` client commands: project, table, write, read, log, subscribe,
// sql, secret and usage, each speaking the HTTP API of DESIGN.md to a server
// given by --url (AQUIFER_URL) with the secret --secret (AQUIFER_SECRET).
//
// Usage from main():
//
//   CLI::App app{...};
//   aquifer::cli::ClientCommands client(&app);   // adds the subcommands
//   ... app.parse(argc, argv) ...
//   if (client.Selected()) return client.Run();
//
// Run() prints results on stdout, errors on stderr ("aquifer: 404 not_found:
// table 'p.t' not found") and returns the exit code: 0 ok, 1 server error,
// 2 usage error, 3 server unreachable (see client_http.h).

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

namespace aquifer::cli {

class ClientCommands {
 public:
  // Registers the global client options (--url, --secret) on `app` and the
  // client subcommands under it. `app` must outlive this object.
  explicit ClientCommands(CLI::App* app);
  ClientCommands(const ClientCommands&) = delete;
  ClientCommands& operator=(const ClientCommands&) = delete;

  // True when the parsed command line named one of the client commands.
  bool Selected() const;
  // Runs the selected command; returns the process exit code.
  int Run();

  struct State;  // every option of every command (defined in client_commands.cc)

 private:
  CLI::App* Add(CLI::App* parent, const std::string& name, const std::string& description,
                std::function<void()> run);

  std::shared_ptr<State> state_;
  int exit_code_override_ = 0;  // set by a command that returns its own code (subscribe)
  std::vector<std::pair<CLI::App*, std::function<void()>>> commands_;
};

}  // namespace aquifer::cli
