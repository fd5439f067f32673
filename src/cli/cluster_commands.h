// The cluster daemons of the `stratus` binary (docs/cluster.md):
//   stratus controller --etcd URL --listen ADDR:PORT --data-dir DIR   API + scheduler (elected)
//   stratus worker --etcd URL --listen ADDR:PORT --zone NAME --data-dir DIR
//   stratus gateway --etcd URL --listen ADDR:PORT                      public front door
// Each runs until SIGINT/SIGTERM; a controller that loses leadership exits with status 3 so
// that its supervisor restarts it as a stand-by.
#pragma once

#include <CLI/CLI.hpp>

namespace stratus {

void addClusterCommands(CLI::App& app);

}  // namespace stratus
