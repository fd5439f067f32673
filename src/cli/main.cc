// The `stratus` command: wires the components together. Each subcommand lives in its own file.
#include <CLI/CLI.hpp>

#include "cli/bench.h"
#include "cli/client_commands.h"
#include "cli/cluster_commands.h"
#include "cli/up.h"
#include "sim/sim_command.h"

int main(int argc, char** argv) {
  CLI::App app{"Stratus: a self-hosted Function-as-a-Service platform", "stratus"};
  app.require_subcommand(1);
  stratus::addUpCommand(app);
  stratus::addClientCommands(app);
  stratus::addBenchCommand(app);
  stratus::addClusterCommands(app);
  stratus::addSimCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
