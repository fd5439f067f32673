// Scheduler: decides which instance serves a call, when to start a new one and when to let one
// go (seed 1.3). First version; the scheduler issue deepens placement, queue-or-scale and
// keep-alive policies.
//
//   acquire   gives the least-loaded instance of the function's current revision that has a free
//             concurrency slot; otherwise starts a new instance (if below maxInstances) and
//             queues the call until a slot frees or the instance is ready, whichever is first;
//             otherwise queues up to maxQueueWait, then kResourceExhausted.
//   release   returns the slot; a waiting call takes it at once.
//   keep-alive an instance idle for keepAlive is stopped by tick().
//   drain     instances of an older revision take no new calls and stop when idle.
//
// Time comes from the injected Clock; tick() is called periodically by the owner (a timer in
// all-in-one mode, the virtual clock in the simulator). Thread-safe (one mutex); callbacks run
// outside the lock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace stratus {

struct FunctionRef {
  std::string key;  // "tenant/name": unique per function
  int64_t revision = 1;
  int concurrency = 1;   // instanceConcurrency
  int maxInstances = 100;
  int memoryMb = 128;
};

struct Lease {
  std::string functionKey;
  std::string instanceId;
  bool coldStart = false;     // this call waited for the instance to start
  int64_t initDurationUs = 0;  // that start's cost
};

// The scheduler's seam to workers: in process (all-in-one) or remote (cluster).
class InstanceLauncher {
 public:
  virtual ~InstanceLauncher() = default;
  // Starts an instance of fn; ready(initDurationUs or error) exactly once, on any thread.
  virtual void launch(const std::string& instanceId, const FunctionRef& fn,
                      std::function<void(Result<int64_t>)> ready) = 0;
  virtual void stop(const std::string& instanceId) = 0;
};

struct SchedulerOptions {
  Duration keepAlive = std::chrono::minutes(10);
  Duration maxQueueWait = std::chrono::seconds(30);
};

struct SchedulerStats {
  int64_t instances = 0;
  int64_t starting = 0;
  int64_t busySlots = 0;
  int64_t queued = 0;
  int64_t coldStarts = 0;
};

class Scheduler {
 public:
  Scheduler(InstanceLauncher& launcher, const Clock& clock, SchedulerOptions options);
  ~Scheduler();

  void acquire(const FunctionRef& fn, std::function<void(Result<Lease>)> done);
  // healthy=false: the instance is gone (timeout recycle, crash); forget it.
  void release(const Lease& lease, bool healthy);
  // A worker reported the instance dead.
  void instanceLost(const std::string& instanceId);
  // Instances of fn.key with revision < keepRevision drain; keepRevision = INT64_MAX drains all
  // (delete). Queued calls for a deleted function fail with kNotFound.
  void drain(const std::string& functionKey, int64_t keepRevision);
  // Stops instances idle past keep-alive; fails queued calls older than maxQueueWait.
  void tick();
  // Fails queued calls with kAborted and stops every instance.
  void shutdown();
  SchedulerStats stats() const;
  size_t instanceCount(const std::string& functionKey) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace stratus
