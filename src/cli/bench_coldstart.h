// `stratus bench coldstart | startrate | density` (issue 4): how fast instances come to life and
// how many fit on one host, each next to baselines measured in the same run on the same machine.
//
//   coldstart  request -> response for functions with no instance, through a real all-in-one
//              server started by the bench: "pool hit" on a server with the warm pool (default),
//              "pool miss" on one started with --no-pool, per runtime, p50/p99; baselines
//              `bwrap --unshare-all python3 -c pass`, `node -e 0`, `runc run` of a container
//              running /usr/bin/true.
//   startrate  sandbox creations per second sustained for N seconds (ProcessSandboxBackend in
//              this process, the server's default hardened profile), creators on every core and a
//              destroyer draining behind them; baselines bwrap and runc, same run.
//   density    N idle instances of a hello function on a real server (one function each, one
//              shared code tree), PSS per instance from /proc/<pid>/smaps_rollup, host memory
//              used, and warm call latency with all N alive.
// Runs as root. Each command starts and removes what it needs (servers, temp dirs, cgroups).
// Not thread-safe: each runs from the calling thread.
#pragma once

#include <CLI/CLI.hpp>

namespace stratus {

// Registers coldstart, startrate and density under `stratus bench`.
void addColdStartBenchCommands(CLI::App& bench);

}  // namespace stratus
