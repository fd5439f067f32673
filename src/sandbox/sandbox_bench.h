// `stratus bench sandbox`: what the hardening costs a cold start, measured in one run.
//
// Five backends side by side -- plain (namespaces, cgroups, read-only root, no capabilities),
// +seccomp, +user namespace, hardened (both: the default), and hardened with a pool of 8
// pre-made network namespaces (+netns-pool, off by default) -- each measured round-robin on the
// same machine at the same time, so background load hits all of them alike. Two figures per
// profile: create() of a sandbox (until its command has exec'd), and a whole `python3 -c pass`
// (create, interpreter start under the filter, exit), the sandbox part of a pool-miss cold start.
// Runs as root. Not thread-safe.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"

namespace stratus {

struct SandboxBenchOptions {
  std::filesystem::path stateDir;  // empty: a fresh directory under /tmp
  int rounds = 40;                 // sandboxes per profile and figure
  bool json = false;
};

struct SandboxBenchRow {
  std::string profile;
  std::string figure;  // "create" or "python3"
  double p50Ms = 0, p90Ms = 0, minMs = 0, avgMs = 0;
};

Result<std::vector<SandboxBenchRow>> runSandboxBench(const SandboxBenchOptions& options);

// Registers `sandbox` under the `stratus bench` command.
void addSandboxBenchCommand(CLI::App& bench);

}  // namespace stratus
