// `stratus up`: the all-in-one server -- gateway, API, scheduler and worker in one process on
// the embedded defaults (SQLite metadata, local process sandboxes, code and logs in the data
// dir). Data dir layout:
//   meta.db            SQLite (WAL) metadata: functions, API keys
//   admin-key          the admin API key (0600), created on first start
//   code/<sha256>/     unpacked code, shared read-only by every instance using it
//   logs/<tenant>/<function>.log   instance stdout/stderr
//   runtime/           the runtime bootstraps, mounted read-only into sandboxes
//   run/               per-sandbox and per-instance state (swept at start)
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace stratus {

struct UpOptions {
  std::string listen = "127.0.0.1:9000";
  std::filesystem::path dataDir;
  int httpThreads = 2;
  Duration keepAlive = std::chrono::minutes(10);
  std::string logLevel = "info";
  bool writeClientConfig = true;
  // Warm pool of pre-started python3/nodejs sandboxes (WarmPoolOptions): on by default.
  bool pool = true;
  int poolMaxPerKey = 16;
  int64_t poolBudgetMb = 512;
  // python3 runtimes forked from a template process (WorkerOptions::templates): on by default.
  bool templates = true;
};

// Runs until SIGINT/SIGTERM, then drains and removes every sandbox. Returns the exit code.
int runUp(const UpOptions& options);
void addUpCommand(CLI::App& app);

}  // namespace stratus
