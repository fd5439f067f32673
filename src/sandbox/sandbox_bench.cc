#include "sandbox/sandbox_bench.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include "common/fs.h"
#include "common/ids.h"
#include "sandbox/process_sandbox.h"

namespace stratus {
namespace {

using SteadyClock = std::chrono::steady_clock;

struct Profile {
  const char* name;
  bool seccomp;
  bool userNamespace;
  size_t netnsPool;
  std::unique_ptr<ProcessSandboxBackend> backend;
  std::vector<double> create, python;
};

double ms(SteadyClock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Waits for the sandbox's init to exit (its pidfd turns readable), bounded.
Status waitExit(Sandbox& s) {
  auto deadline = SteadyClock::now() + std::chrono::seconds(30);
  for (;;) {
    auto r = s.pollExit();
    if (!r.isOk()) return r.status();
    if (r->has_value()) {
      if ((*r)->exitCode != 0) {
        return internalError("sandbox " + s.id() + " exited " + std::to_string((*r)->exitCode));
      }
      return Status::ok();
    }
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) return Status(Code::kDeadlineExceeded, "sandbox " + s.id() + " runs on");
    pollfd p{s.pidFd(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
}

SandboxBenchRow summarize(const std::string& profile, const std::string& figure,
                          std::vector<double> v) {
  SandboxBenchRow row{profile, figure};
  if (v.empty()) return row;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  row.p50Ms = v[v.size() / 2];
  row.p90Ms = v[v.size() * 9 / 10];
  row.minMs = v.front();
  row.avgMs = sum / static_cast<double>(v.size());
  return row;
}

}  // namespace

Result<std::vector<SandboxBenchRow>> runSandboxBench(const SandboxBenchOptions& options) {
  std::filesystem::path dir = options.stateDir;
  bool ownDir = false;
  if (dir.empty()) {
    std::string t = "/tmp/stratus-bench-sandbox-XXXXXX";
    if (::mkdtemp(t.data()) == nullptr) return Status::fromErrno(errno, "mkdtemp");
    dir = t;
    ownDir = true;
  }
  // The first four create each network namespace with CLONE_NEWNET; "+netns-pool" is hardened
  // with 8 namespaces made ahead of time (ProcessSandboxOptions::netnsPool).
  Profile profiles[] = {{"plain", false, false, 0, {}, {}, {}},
                        {"+seccomp", true, false, 0, {}, {}, {}},
                        {"+userns", false, true, 0, {}, {}, {}},
                        {"hardened", true, true, 0, {}, {}, {}},
                        {"+netns-pool", true, true, 8, {}, {}, {}}};
  const std::string tag = randomHex(4);
  for (Profile& p : profiles) {
    ProcessSandboxOptions o;
    o.stateDir = dir / p.name;
    o.cgroupParent = "stratus-bench-" + tag + "-" + std::to_string(&p - profiles);
    o.seccomp = p.seccomp;
    o.userNamespace = p.userNamespace;
    o.netnsPool = p.netnsPool;
    ASSIGN_OR_RETURN(p.backend, ProcessSandboxBackend::create(o));
  }
  Status failed;
  for (int i = 0; i < options.rounds && failed.isOk(); ++i) {
    for (Profile& p : profiles) {
      SandboxSpec s;
      s.id = "b" + std::to_string(i);
      s.tenant = "bench";
      s.argv = {"/usr/bin/sleep", "1000"};
      auto t0 = SteadyClock::now();
      auto sb = p.backend->create(s);
      auto t1 = SteadyClock::now();
      if (!sb.isOk()) {
        failed = sb.status();
        break;
      }
      p.create.push_back(ms(t1 - t0));
      sb->reset();
      s.id = "p" + std::to_string(i);
      s.argv = {"/usr/bin/python3", "-c", "pass"};
      t0 = SteadyClock::now();
      auto py = p.backend->create(s);
      if (!py.isOk()) {
        failed = py.status();
        break;
      }
      if (Status st = waitExit(**py); !st.isOk()) {
        failed = st;
        break;
      }
      p.python.push_back(ms(SteadyClock::now() - t0));
    }
  }
  std::vector<SandboxBenchRow> rows;
  for (Profile& p : profiles) {
    rows.push_back(summarize(p.name, "create", p.create));
    rows.push_back(summarize(p.name, "python3", p.python));
    p.backend.reset();
  }
  if (ownDir) (void)removeTree(dir);
  if (!failed.isOk()) return failed.withContext("bench sandbox");
  return rows;
}

void addSandboxBenchCommand(CLI::App& bench) {
  auto options = std::make_shared<SandboxBenchOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "sandbox", "Cold-start cost of the sandbox hardening (seccomp, user namespace), same run");
  cmd->add_option("-n,--rounds", options->rounds, "Sandboxes per profile and figure")
      ->capture_default_str();
  cmd->add_flag("--json", options->json, "Machine-readable output");
  cmd->callback([options] {
    auto rows = runSandboxBench(*options);
    if (!rows.isOk()) {
      std::fprintf(stderr, "stratus bench sandbox: %s\n", rows.status().toString().c_str());
      throw CLI::RuntimeError(1);
    }
    if (options->json) {
      std::printf("[");
      for (size_t i = 0; i < rows->size(); ++i) {
        const auto& r = (*rows)[i];
        std::printf(
            "%s{\"profile\":\"%s\",\"figure\":\"%s\",\"p50Ms\":%.3f,\"p90Ms\":%.3f,"
            "\"minMs\":%.3f,\"avgMs\":%.3f}",
            i ? "," : "", r.profile.c_str(), r.figure.c_str(), r.p50Ms, r.p90Ms, r.minMs, r.avgMs);
      }
      std::printf("]\n");
      return;
    }
    std::printf("%-12s %-8s %9s %9s %9s %9s\n", "profile", "figure", "p50 ms", "p90 ms", "min ms",
                "avg ms");
    for (const auto& r : *rows) {
      std::printf("%-12s %-8s %9.2f %9.2f %9.2f %9.2f\n", r.profile.c_str(), r.figure.c_str(),
                  r.p50Ms, r.p90Ms, r.minMs, r.avgMs);
    }
  });
}

}  // namespace stratus
