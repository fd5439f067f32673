// Scheduler: decides which instance serves a call, when to start a new one, where to put it and
// when to let one go (seed 1.3 "How to improve resource utilization", 2.6). The same code serves
// the all-in-one server (LocalInvoker), the cluster controller and the simulator (src/sim).
//
//   acquire    routes the call to the least-loaded ready instance of the function's current
//              revision with a free concurrency slot (O(concurrency) at worst, no scan of the
//              instances). Otherwise the call queues and the scale policy decides:
//                naive          start an instance for every queued call not covered by a start
//                               in flight (the first version; what the seed's scenario 2 and 3
//                               warn about).
//                queue-or-scale wait when a busy slot is expected to free sooner than a new
//                               instance would be ready (per-function EWMAs of execution and
//                               cold-start time); starts in flight per function are bounded
//                               (max(maxConcurrentStarts, ready instances)), so slow starts
//                               cannot snowball. A call that has
//                               waited a whole cold-start estimate triggers a start anyway.
//              Up to maxInstances; a queued call fails with kResourceExhausted after maxQueueWait.
//   release    returns the slot; the oldest waiting call takes it at once.
//   keep-alive fixed, or the hybrid histogram policy (keep_alive.h). minInstances are never
//              reclaimed and are restored after a loss.
//   placement  every instance is placed on a host (placement.h): multi-resource, best-fit or
//              spread, zones, isolation. Without any addHost() the scheduler uses one implicit
//              host "local" with unbounded capacity (all-in-one mode).
//   health     with hostTimeout > 0, a host that has not sent heartbeat() for that long is marked
//              dead; its instances are forgotten (stop() is still called so the owner can clean
//              up) and replaced elsewhere.
//   drain      instances of an older revision take no new calls and stop when idle.
//
// Time comes from the injected Clock. tick() runs the timers that are due (keep-alive expiry,
// pre-warm, queue re-evaluation, host health); the owner calls it periodically (a 1 s timer in
// all-in-one mode) or, as the simulator does, exactly at nextTimer(). Thread-safe (one mutex);
// callbacks and launcher calls run outside the lock and may re-enter the scheduler.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "scheduler/keep_alive.h"
#include "scheduler/placement.h"

namespace stratus {

struct FunctionRef {
  std::string key;  // "tenant/name": unique per function
  int64_t revision = 1;
  int concurrency = 1;  // instanceConcurrency
  int maxInstances = 100;
  int memoryMb = 128;
  int minInstances = 0;   // kept warm even when idle
  int64_t cpuMillis = 0;  // 0: proportional to memory, 1000 per 2048 MB
  std::string tenant;     // empty: the part of key before '/'
  std::string vpc;        // for vpc isolation
  std::string runtime;    // for pre-warm pool targets
};

// A function's dense index inside one Scheduler, stable for that Scheduler's lifetime. A caller
// that serves many calls of the same functions intern()s each key once and passes the handle to
// acquire(), which then indexes a vector instead of hashing the key on every call.
struct FunctionHandle {
  int32_t index = -1;
  bool valid() const { return index >= 0; }
};

struct Lease {
  std::string functionKey;
  std::string instanceId;
  bool coldStart = false;      // this call waited for the instance to start
  int64_t initDurationUs = 0;  // that start's cost
  std::string hostId;
  TimePoint grantedAt{};  // when the slot was given (execution time is measured from here)
  uint64_t handle = 0;    // the scheduler's own reference to the instance; 0 = look up by id
};

// The scheduler's seam to workers: in process (all-in-one) or remote (cluster).
class InstanceLauncher {
 public:
  virtual ~InstanceLauncher() = default;
  // Starts an instance of fn; ready(initDurationUs or error) exactly once, on any thread.
  virtual void launch(const std::string& instanceId, const FunctionRef& fn,
                      std::function<void(Result<int64_t>)> ready) = 0;
  // The scheduler calls this one: a launcher that runs more than one host overrides it.
  virtual void launchOn(const std::string& hostId, const std::string& instanceId,
                        const FunctionRef& fn, std::function<void(Result<int64_t>)> ready) {
    launch(instanceId, fn, std::move(ready));
  }
  virtual void stop(const std::string& instanceId) = 0;
};

enum class ScalePolicy : int32_t { kNaive = 0, kQueueOrScale = 1 };
Result<ScalePolicy> parseScalePolicy(std::string_view name);
const char* toString(ScalePolicy p);

struct SchedulerOptions {
  Duration keepAlive = std::chrono::minutes(10);  // the fixed policy's window
  // Policy and hybrid-histogram parameters; its `fixed` is taken from keepAlive above.
  KeepAliveOptions keepAlivePolicy;
  Duration maxQueueWait = std::chrono::seconds(30);
  ScalePolicy scale = ScalePolicy::kQueueOrScale;
  // Starts in flight per function (queue-or-scale): at most max(this, its ready instances).
  int maxConcurrentStarts = 8;
  Duration defaultColdStart = std::chrono::milliseconds(100);  // before any start is measured
  double ewmaAlpha = 0.2;
  // Wait while the expected wait is below queueFactor x the cold-start estimate.
  double queueFactor = 1.0;
  PlacementStrategy placement = PlacementStrategy::kBestFit;
  // All-in-one has one host that every tenant shares; the cluster controller sets kTenant.
  IsolationLevel isolation = IsolationLevel::kMixed;
  Duration hostTimeout = Duration::zero();  // 0: no health checking
  bool deterministicIds = false;            // i-000000000001, ... (simulator, tests)
  // Pre-warm pool floor per runtime, per host.
  std::map<std::string, int> prewarmFloor;
  Duration poolRefill = std::chrono::milliseconds(200);  // time a worker needs to refill a slot
};

struct SchedulerStats {
  int64_t instances = 0;  // ready
  int64_t starting = 0;
  int64_t busySlots = 0;
  int64_t queued = 0;
  int64_t coldStarts = 0;  // launches requested
  int64_t instancesStopped = 0;
  int64_t placementFailures = 0;
  int64_t startsDeferred = 0;  // queue-or-scale chose to wait (or hit the start bound)
  int64_t queueTimeouts = 0;
  int64_t prewarmStarts = 0;
  int64_t hostsDead = 0;  // host deaths detected
  int64_t instancesReplaced = 0;
  PlacementStats placement;
};

struct FunctionEstimates {
  double execUs = -1;       // EWMA of execution time; -1 before the first release
  double coldStartUs = -1;  // EWMA of launch-to-ready time; -1 before the first start
  KeepAliveWindow window;   // the keep-alive window currently applied
};

class Scheduler {
 public:
  Scheduler(InstanceLauncher& launcher, const Clock& clock, SchedulerOptions options);
  ~Scheduler();

  void acquire(const FunctionRef& fn, std::function<void(Result<Lease>)> done);
  // The same decision as acquire(fn, done), without the key lookup. A handle that does not name
  // fn.key in this scheduler (another scheduler's, or invalid) falls back to the lookup.
  void acquire(FunctionHandle handle, const FunctionRef& fn,
               std::function<void(Result<Lease>)> done);
  // The handle for functionKey, registering the key if it is new. Only names the function: no
  // start, no revision change; the function behaves as unknown until its first acquire/ensure.
  FunctionHandle intern(const std::string& functionKey);
  // healthy=false: the instance is gone (timeout recycle, crash); forget it.
  void release(const Lease& lease, bool healthy);
  // A worker reported the instance dead.
  void instanceLost(const std::string& instanceId);
  // Instances of fn.key with revision < keepRevision drain; keepRevision = INT64_MAX drains all
  // (delete). Queued calls for a deleted function fail with kNotFound.
  void drain(const std::string& functionKey, int64_t keepRevision);
  // Registers fn (or a new revision of it) without a call and starts its minInstances.
  void ensure(const FunctionRef& fn);
  // Runs the timers that are due: keep-alive expiry, pre-warm starts, queue re-evaluation and
  // expiry (maxQueueWait), host health.
  void tick();
  // When tick() next has work (TimePoint::max() if nothing is pending).
  TimePoint nextTimer() const;
  // Fails queued calls with kAborted and stops every instance.
  void shutdown();

  // Hosts. addHost on a known id revives and resizes it.
  void addHost(const HostSpec& host);
  void heartbeat(const std::string& hostId);
  // Marks the host dead now (e.g. its etcd lease expired) and replaces its instances.
  void hostDead(const std::string& hostId);

  SchedulerStats stats() const;
  PlacementStats placementStats() const;                       // O(1), unlike stats()
  size_t instanceCount(const std::string& functionKey) const;  // ready instances
  FunctionEstimates estimates(const std::string& functionKey) const;
  // Pre-warmed sandboxes each host's pool should hold per runtime: the floor, or what the
  // recent cold-start rate needs while a pool slot refills, spread over the alive hosts.
  std::map<std::string, int> prewarmTargets() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stratus
