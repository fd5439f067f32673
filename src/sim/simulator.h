// Simulator: replays a trace through the real Scheduler on a virtual clock (discrete events:
// arrivals, instance ready, call completion, scheduler timers), on simulated hosts, and measures
// what the seed's section 1.3 cares about: cold starts, containers created, memory provisioned
// versus memory busy, queueing delay, placement failures, and the scheduler's own speed.
//
// Accounting: an instance costs memoryMb from launch to stop (cold start included). A call is
// busy for its duration and, on an instance of concurrency c, uses memoryMb / c of it.
// Instances still alive when the trace ends are counted until the last event. Single-threaded;
// one Simulator per run.
#pragma once

#include <cstdint>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "scheduler/scheduler.h"
#include "sim/trace.h"

namespace stratus::sim {

struct SimOptions {
  SchedulerOptions scheduler;  // scale, keep-alive, placement, isolation...
  int hosts = 100;
  int zones = 1;
  int64_t hostMemoryMb = 64 * 1024;
  int64_t hostCpuMillis = 32000;
  int hostMaxInstances = 2000;
  Duration coldStart = std::chrono::milliseconds(200);
  double coldStartJitter = 0;  // each start takes coldStart x (1 +- jitter), uniform
  uint64_t seed = 1;
};

struct SimResult {
  int64_t invocations = 0;
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t coldStarts = 0;  // calls that waited for an instance to start
  double coldStartRatio = 0;
  int64_t instancesCreated = 0;
  int64_t peakInstances = 0;
  double gbSecondsProvisioned = 0;
  double gbSecondsBusy = 0;
  double utilization = 0;  // busy / provisioned
  double queueDelayMsP50 = 0;
  double queueDelayMsP99 = 0;
  double queueDelayMsMax = 0;
  int64_t placementFailures = 0;
  int64_t startsDeferred = 0;
  int64_t peakHostsInUse = 0;
  double fragmentationAvg = 0;    // sampled at each instance start
  int64_t decisions = 0;          // acquire + release calls
  double decisionsPerSecond = 0;  // decisions / CPU seconds of the whole replay (one thread)
  double schedulerSeconds = 0;    // wall time inside scheduler calls
  double cpuSeconds = 0;
  double wallSeconds = 0;
  double simulatedSeconds = 0;
  double speedup = 0;                  // simulated / wall
  double peakColdStartsPerSecond = 0;  // most instance starts in one simulated second
};

Result<SimResult> simulate(const Trace& trace, const SimOptions& options);

// The fields above as one JSON object (snake_case keys), plus the policy names.
std::string toJson(const SimResult& r, const SimOptions& options);
// A few human-readable lines.
std::string toText(const SimResult& r, const SimOptions& options);

}  // namespace stratus::sim
