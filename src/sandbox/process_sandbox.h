// ProcessSandboxBackend: sandboxes made of Linux namespaces (pid, mount, ipc, uts, net, and --
// hardened -- user and cgroup), a cgroup per sandbox (v1 or v2, detected), pivot_root into a
// read-only root assembled from read-only bind mounts of the host's system directories, /code
// read-only, a size-limited tmpfs /tmp, a fresh /proc with runc's masks and a minimal /dev; the
// command runs without capabilities (empty bounding set), with NO_NEW_PRIVS, rlimits and a
// seccomp deny-list. See docs/sandbox.md.
//
// Thread-safety: create() may be called from several threads (the netns pool's refill thread
// is the backend's own, joined by its destructor). Sandboxes must be created from a
// thread that lives as long as they do (PR_SET_PDEATHSIG fires when the creating *thread* exits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "sandbox/cgroup.h"
#include "sandbox/sandbox.h"
#include "sandbox/tenant_ids.h"

namespace stratus {

struct ProcessSandboxOptions {
  // Host directory for per-sandbox state (mount points); one subdirectory per sandbox.
  std::filesystem::path stateDir;
  // Name of the cgroup subtree that holds all our sandboxes ("stratus" ->
  // /sys/fs/cgroup/memory/stratus/<id> on v1, /sys/fs/cgroup/stratus/<id> on v2). Tests pass a
  // unique name so they can run in parallel.
  std::string cgroupParent = "stratus";
  // Where the cgroup hierarchy is mounted, and which version to use there: 0 detects
  // (detectCgroupDriver), 1 or 2 forces it (tests run the v2 path on a controller-less cgroup2
  // mount).
  std::filesystem::path cgroupRoot = "/sys/fs/cgroup";
  int cgroupVersion = 0;
  // Hardening (docs/sandbox.md). userNamespace: a user namespace per sandbox whose ids
  // 0..65535 map onto the tenant's host range (tenantIds; null: an in-memory map of the
  // backend's own) -- plus a cgroup namespace. seccomp: the deny-list of seccomp_filter.h.
  // Both on by default; off only to measure what they cost.
  bool userNamespace = true;
  bool seccomp = true;
  std::shared_ptr<TenantIdMap> tenantIds;
  // rmdir stateDir (if empty) when the backend is destroyed.
  bool removeStateDirOnExit = false;
  // Network namespaces kept ready by a background thread of the backend (0: none, every
  // sandbox is cloned with CLONE_NEWNET). Creating a network namespace is the largest single
  // cost of a create() (copy_net_ns, docs/sandbox.md "Cost"); with a pool the sandbox's first
  // process joins a fresh, never-used one with setns instead. An empty pool never blocks a
  // create: it falls back to CLONE_NEWNET. Off by default: measured, it saves ~0.5 ms of an
  // isolated create() but lowered sustained creations/s on two busy cores (docs/sandbox.md).
  size_t netnsPool = 0;

  // What a server on data dir `dataDir` uses: cgroupParent "stratus-<hash of the dir>" (two
  // servers on one host never sweep each other's sandboxes) and a stateDir on tmpfs when the
  // host has one (/dev/shm/stratus-<hash>, removed with the backend if empty; else
  // <dataDir>/run/sandboxes). Each sandbox's root is assembled from ~20 fresh directories; on
  // ext4 every mkdir scans for recently deleted inodes, and `stratus bench startrate` measured
  // ~20% more creations/s and ~50% faster teardown with the state on tmpfs
  // (docs/benchmarks.md). The tmpfs directory is used only if it is ours: created 0711 by us, or
  // already a directory of our euid that nobody else may write (anything else in the
  // world-writable /dev/shm falls back to the data dir, with a warning).
  static ProcessSandboxOptions forDataDir(const std::filesystem::path& dataDir);
  // The name forDataDir gives both the cgroup parent and the tmpfs state directory
  // ("stratus-<12 hex of sha256 of the absolute path>"); pure, for tests and tools.
  static std::string nameForDataDir(const std::filesystem::path& dataDir);
};

class ProcessSandboxBackend final : public SandboxBackend {
 public:
  static Result<std::unique_ptr<ProcessSandboxBackend>> create(ProcessSandboxOptions options);
  ~ProcessSandboxBackend() override;
  std::string_view name() const override { return "process"; }
  Result<std::unique_ptr<Sandbox>> create(const SandboxSpec& spec) override;
  // With user namespaces, the tenant's range base + the id (the same map create() writes).
  Result<HostIds> hostIds(const std::string& tenant, uid_t uid, gid_t gid) override {
    if (!options_.userNamespace) return HostIds{uid, gid};
    if (uid >= TenantIdMap::kRangeSize || gid >= TenantIdMap::kRangeSize) {
      return invalidArgument("uid/gid must be below 65536 inside a user namespace");
    }
    ASSIGN_OR_RETURN(uint32_t base, tenantIds_->hostIdBase(tenant));
    return HostIds{base + uid, base + gid};
  }
  // Kills processes and removes cgroups and state directories left by an earlier run of this
  // host (after kill -9). Call once at startup before creating sandboxes.
  Status sweepLeftovers();
  // The host uid/gid ranges of tenants (user namespaces), e.g. to chown a tenant's code cache.
  TenantIdMap& tenantIds() { return *tenantIds_; }
  // The full profile (user namespaces and seccomp): what the `mixed` isolation level, where
  // tenants share a host, requires (docs/sandbox.md).
  bool hardened() const { return options_.userNamespace && options_.seccomp; }

  // The network namespace pool (ProcessSandboxOptions::netnsPool); all zero without one.
  struct NetnsPoolStats {
    size_t ready = 0;        // namespaces waiting in the pool now
    uint64_t made = 0;       // made by the refill thread so far
    uint64_t taken = 0;      // creates that joined a pooled namespace
    uint64_t fallbacks = 0;  // creates that found the pool empty (CLONE_NEWNET)
  };
  NetnsPoolStats netnsPoolStats() const;
  // Stops (false) or resumes (true) refilling the pool; for tests of an exhausted pool.
  void setNetnsPoolRefill(bool on);

 private:
  struct HostLayout;
  class NetnsPool;  // process_sandbox.cc  // the host's system directories, resolved once
                    // (process_sandbox.cc)
  ProcessSandboxBackend(ProcessSandboxOptions options, std::unique_ptr<CgroupDriver> cgroups,
                        std::unique_ptr<const HostLayout> host);
  ProcessSandboxOptions options_;
  std::shared_ptr<TenantIdMap> tenantIds_;
  std::unique_ptr<CgroupDriver> cgroups_;
  std::unique_ptr<const HostLayout> host_;
  std::unique_ptr<NetnsPool> netnsPool_;  // null when options_.netnsPool is 0
};

}  // namespace stratus
