// Sandbox: one isolated instance environment, and SandboxBackend: what creates them.
//
// The worker only sees these two interfaces. ProcessSandboxBackend (process_sandbox.h) builds a
// sandbox from Linux namespaces, cgroups and pivot_root; a microVM backend (Firecracker, Cloud
// Hypervisor) can implement the same interface (docs/sandbox.md).
//
// Ownership: a Sandbox object owns everything the kernel holds for it -- the init process, its
// cgroup(s), its host-side directories. Destroying it kills every process inside (SIGKILL the
// whole cgroup), reaps them, removes the cgroup and the directories. Nothing survives it.
// A sandbox's processes also die if the Stratus process dies (PR_SET_PDEATHSIG), and
// ProcessSandboxBackend::sweepLeftovers() removes what a kill -9 left behind.
//
// Thread-safety: a Backend may be called from several threads. A Sandbox object is used by one
// owner at a time (the worker serialises calls on it).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"

namespace stratus {

struct BindMount {
  std::filesystem::path hostPath;
  std::string sandboxPath;  // absolute path inside the sandbox
  bool readOnly = true;
};

struct SandboxSpec {
  // Unique on the host: names the cgroup, the hostname and the host-side state directory.
  // [a-z0-9-], at most 48 characters.
  std::string id;
  // Command run inside the sandbox (argv[0] is a path inside the sandbox), its environment
  // (KEY=VALUE) and working directory.
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd = "/code";
  // Host directory with the function's code, mounted read-only at /code. Empty: an empty /code.
  std::filesystem::path codeDir;
  // More bind mounts (the runtime's bootstrap files, the worker socket directory).
  std::vector<BindMount> mounts;
  // Resource limits.
  int64_t memoryBytes = 128LL << 20;  // cgroup memory limit; swap is not allowed
  int64_t tmpfsBytes = 64LL << 20;    // size of /tmp
  int64_t pidsMax = 128;              // fork bombs stop here
  int64_t cpuShares = 1024;           // relative CPU weight
  // Host fds that become the sandboxed process's stdout and stderr (e.g. pipe write ends).
  // The backend dups them; the caller keeps ownership.
  int stdoutFd = -1;
  int stderrFd = -1;
  // uid/gid the command runs as inside the sandbox (unprivileged, no capabilities).
  uid_t uid = 65534;
  gid_t gid = 65534;
  // The tenant that owns the sandbox. With user namespaces (ProcessSandboxOptions) its ids map
  // onto the tenant's own host uid/gid range: sandboxes of different tenants never share a host
  // uid. The worker's warm pool is keyed by tenant, so a pooled blank sandbox is created in its
  // tenant's range too.
  std::string tenant;
  // RLIMIT_NOFILE of the command (capped at the worker's hard limit); cores are never dumped.
  int64_t openFilesMax = 4096;
};

struct ExitInfo {
  int exitCode = -1;       // valid when signal == 0
  int signal = 0;          // terminating signal, 0 if exited normally
  bool oomKilled = false;  // the cgroup's OOM killer fired at least once
};

struct ResourceUsage {
  int64_t memoryPeakBytes = 0;
  int64_t memoryCurrentBytes = 0;
  int64_t cpuTimeNs = 0;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  virtual const std::string& id() const = 0;
  // Host pid of the sandbox's first process.
  virtual pid_t pid() const = 0;
  // A pidfd for that process: becomes readable when it exits (for epoll).
  virtual int pidFd() const = 0;
  // Non-blocking: nullopt while running; once it has exited, its exit info (reaped).
  virtual Result<std::optional<ExitInfo>> pollExit() = 0;
  // Kills every process in the sandbox (idempotent). The destructor also does this.
  virtual void kill() = 0;
  // True if the cgroup's OOM killer has killed a process of this sandbox.
  virtual bool oomKilled() const = 0;
  virtual ResourceUsage usage() const = 0;
  // A TCP connection to 127.0.0.1:port inside the sandbox's network namespace, made without
  // giving the sandbox any host networking (the socket is created inside its netns).
  // Non-blocking connect: the returned fd may still be connecting (EINPROGRESS semantics).
  virtual Result<UniqueFd> connectTcp(uint16_t port) = 0;
  // Delayed code mount (issue 4): mounts host directory codeDir read-only at /code of the
  // running sandbox, which was created with an empty /code (spec.codeDir empty). Once per
  // sandbox. Backends that cannot do it return kFailedPrecondition (the worker then starts
  // instances with their code from the beginning).
  virtual Status attachCode(const std::filesystem::path& codeDir) {
    (void)codeDir;
    return Status(Code::kFailedPrecondition, "this sandbox backend cannot attach code late");
  }
};

// What ids inside a sandbox are on the host.
struct HostIds {
  uid_t uid = 0;
  gid_t gid = 0;
};

class SandboxBackend {
 public:
  virtual ~SandboxBackend() = default;
  virtual std::string_view name() const = 0;
  // The host uid/gid that a command of `tenant`'s sandboxes running as (uid, gid) inside has:
  // who must own host files only those sandboxes may read (their code, codepack CodeOwner).
  // Default: the same ids (no user namespace).
  virtual Result<HostIds> hostIds(const std::string& tenant, uid_t uid, gid_t gid) {
    (void)tenant;
    return HostIds{uid, gid};
  }
  // Creates and starts a sandbox running spec.argv. Returns once the command has been exec'd
  // (or failed to: then an error naming the step, e.g. "pivot_root: EPERM").
  virtual Result<std::unique_ptr<Sandbox>> create(const SandboxSpec& spec) = 0;
};

}  // namespace stratus
