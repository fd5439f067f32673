// Worker: the node agent. Owns the instances on this host -- one sandbox each, running a
// function's runtime -- and carries calls to them.
//
//   startInstance  create a sandbox (SandboxBackend), wait for the runtime's hello, send the load
//                  message, wait for ready (bounded by the function's initializationTimeout + a
//                  start budget). Custom runtimes: poll-connect to the port inside the sandbox.
//   invoke         send the event, wait for the result, enforce the function's timeout: a call
//                  past its timeout gets kDeadlineExceeded and the instance is recycled (killed).
//   crash / OOM    an instance whose process exits is reported through the lost handler with a
//                  cause (kOutOfMemory when the cgroup OOM-killed it, else kUnavailable naming the
//                  exit code/signal); calls in flight on it fail with that cause.
//   logs           each instance's stdout/stderr is appended to
//                  <logDir>/<tenant>/<function>.log; a call that asked for it gets the last 4 KB
//                  written during the call.
//
// Threading: one internal I/O thread (epoll) drives all instance sockets, pipes, pidfds and
// timers; sandboxes are created on a dedicated long-lived spawner thread (PR_SET_PDEATHSIG is per
// thread). Public methods are thread-safe and never block on a sandbox; callbacks run on the
// worker's threads and must not block.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/function.h"
#include "common/invoke.h"
#include "common/status.h"
#include "sandbox/sandbox.h"

namespace stratus {

// The warm pool (issue 4): blank sandboxes per (tenant, runtime, memory size) whose runtime
// (python3, nodejs) has started and said hello, waiting for a function. A start that finds one
// takes it, attaches the function's code at /code (Sandbox::attachCode) and sends the load message:
// no sandbox creation and no interpreter start on the request path. The pool is refilled on the
// spawner thread after the request-path work queued there, sized by the cold starts seen in the
// last `demandWindow` (between the key's minimum and maxPerKey), and bounded by memoryBudgetBytes
// (the pooled sandboxes' measured cgroup memory).
// Functions whose configuration must be known when the interpreter starts are never served from
// the pool: environment variables read at startup (NODE_*, PYTHON* but PYTHONPATH, LD_*, LANG,
// LC_*, TZ), or an instanceConcurrency needing more pids than a pooled sandbox has.
struct WarmPoolOptions {
  bool enabled = false;
  // Keys kept at >= minPerKey blank sandboxes before any demand. Blanks belong to a tenant (its
  // user namespace uid range, SandboxSpec::tenant), exactly as that tenant's fresh sandboxes do:
  // the pool is per (tenant, runtime, memory size). "default" is the all-in-one's own tenant.
  struct Key {
    std::string tenant;
    std::string runtime;
    int memoryMb = 128;
  };
  std::vector<Key> prewarm = {{"default", "python3", 128}, {"default", "nodejs", 128}};
  int minPerKey = 1;
  int maxPerKey = 16;
  int64_t memoryBudgetBytes = 512LL << 20;
  Duration demandWindow = std::chrono::seconds(10);
  // Blank sandboxes being created/started at once (each costs an interpreter start of CPU).
  int maxCreating = 2;
};

struct WorkerOptions {
  std::filesystem::path stateDir;          // per-instance socket dirs
  std::filesystem::path logDir;            // per-function log files
  std::filesystem::path runtimeAssetsDir;  // runtime::installAssets() output, mounted read-only
  int64_t tmpfsBytes = 64LL << 20;
  // pids limit of a sandbox; raised to instanceConcurrency + 64 for functions that need more (the
  // python3 runtime runs a thread per call in flight).
  int64_t pidsMax = 128;
  Duration startBudget = std::chrono::seconds(10);  // process start + hello, before init
  WarmPoolOptions pool;
  // Templates (issue 4): python3 and nodejs runtimes are forked from a template process (Zygote,
  // an interpreter with the runtime loaded; nodejs: one per heap-size flag) into a freshly created
  // sandbox instead of starting the interpreter there; they share its memory copy-on-write.
  // Applies to pool blanks and to fresh starts of functions that could use the pool.
  bool templates = false;
};

struct InstanceReady {
  int64_t initDurationUs = 0;  // start request (or sandbox creation) -> handler loaded
  bool fromPool = false;       // a blank pooled sandbox was used
};

struct WarmPoolStats {
  int64_t hits = 0;      // starts served by a pooled sandbox
  int64_t misses = 0;    // poolable starts that found none
  int64_t bypassed = 0;  // starts of functions that cannot use the pool
  size_t warm = 0;       // blank sandboxes ready now
  size_t creating = 0;   // blank sandboxes being created or started
  int64_t bytes = 0;     // memory of the pooled sandboxes (measured; estimated while starting)
};

class Worker {
 public:
  Worker(WorkerOptions options, SandboxBackend& backend, const Clock& clock);
  ~Worker();  // shutdown()
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // done(Result) exactly once: the instance is ready for calls, or failed to start (then
  // everything it held is already released). instanceId: unique, [a-z0-9-].
  // A failure the *function* caused (handler not found, exception in module load or initializer,
  // runtime exited or timed out during init) is kFailedPrecondition whose message is the JSON
  // error body {"errorType","errorMessage","stackTrace"?} to show the caller; any other code is
  // a platform failure (sandbox creation failed, ...).
  // codeDir is bind-mounted read-only at /code (late, for a pooled blank of fn's tenant); it
  // must belong to codeOwner(fn) (codepack's HostCodeCache::acquire with that owner), since the
  // function runs as that host uid and nobody else may read it.
  void startInstance(const std::string& instanceId, const FunctionSpec& fn,
                     const std::filesystem::path& codeDir,
                     std::function<void(Result<InstanceReady>)> done);
  // The host uid/gid fn's runtime runs as (with user namespaces, in its tenant's range): the
  // owner its code directory must have. Thread-safe, cheap.
  Result<HostIds> codeOwner(const FunctionSpec& fn);
  // Runs one call on a ready instance. The caller (scheduler) respects instanceConcurrency.
  // Timeouts, OOM kills and crashes come back as function errors (see InvokeResult) with
  // instanceLost = true; the lost handler also fires once for that instance.
  void invoke(const std::string& instanceId, InvokeRequest req, InvokeCallback done);
  // Kills the instance; calls in flight fail with kAborted.
  void stopInstance(const std::string& instanceId);
  // Called when an instance dies or is recycled without stopInstance (crash, OOM, timeout).
  void setInstanceLostHandler(std::function<void(const std::string& instanceId, Status cause)> h);
  size_t instanceCount() const;  // function instances (starting or ready); not pooled blanks
  WarmPoolStats poolStats() const;
  // Stops every instance and the worker's threads. Idempotent.
  void shutdown();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stratus
