#include "sim/sim_command.h"

#include <cstdio>
#include <memory>
#include <sstream>

#include "sim/simulator.h"
#include "sim/trace.h"

namespace stratus {
namespace {

struct SimArgs {
  std::string trace;
  std::string format = "azure2021";
  std::string synthetic;
  std::string policy = "queue-or-scale,fixed";
  std::string placement = "bestfit";
  std::string isolation = "tenant";
  std::string durations;
  std::string memory;
  double keepAliveSec = 600;
  int hosts = 100;
  int zones = 1;
  double hostMemoryGb = 64;
  double hostCpus = 32;
  int hostMaxInstances = 2000;
  double coldStartMs = 200;
  double coldStartJitter = 0;
  int maxStarts = 8;
  double queueFactor = 1.0;
  int memoryMb = 128;
  int concurrency = 1;
  int minutes = 1440;
  uint64_t seed = 1;
  bool json = false;
};

Status applyPolicy(const std::string& text, SchedulerOptions& o) {
  std::stringstream ss(text);
  std::string token;
  while (std::getline(ss, token, ',')) {
    if (token.empty()) continue;
    if (auto scale = parseScalePolicy(token); scale.isOk()) {
      o.scale = *scale;
    } else if (auto ka = parseKeepAlivePolicy(token); ka.isOk()) {
      o.keepAlivePolicy.policy = *ka;
    } else {
      return invalidArgument("unknown policy '" + token +
                             "' (naive | queue-or-scale, and fixed | hybrid; e.g. "
                             "--policy naive,hybrid)");
    }
  }
  return Status::ok();
}

int runSim(const SimArgs& a) {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "stratus sim: %s\n", s.toString().c_str());
    return 2;
  };
  sim::SimOptions o;
  if (Status s = applyPolicy(a.policy, o.scheduler); !s.isOk()) return fail(s);
  auto placement = parsePlacementStrategy(a.placement);
  if (!placement.isOk()) return fail(placement.status());
  auto isolation = parseIsolationLevel(a.isolation);
  if (!isolation.isOk()) return fail(isolation.status());
  o.scheduler.placement = *placement;
  o.scheduler.isolation = *isolation;
  o.scheduler.keepAlive =
      std::chrono::duration_cast<Duration>(std::chrono::duration<double>(a.keepAliveSec));
  o.scheduler.maxConcurrentStarts = a.maxStarts;
  o.scheduler.queueFactor = a.queueFactor;
  o.scheduler.deterministicIds = true;
  // The simulated cold start is the estimate before any start is measured.
  o.coldStart = std::chrono::duration_cast<Duration>(
      std::chrono::duration<double, std::milli>(a.coldStartMs));
  o.scheduler.defaultColdStart = o.coldStart;
  o.coldStartJitter = a.coldStartJitter;
  o.hosts = a.hosts;
  o.zones = a.zones;
  o.hostMemoryMb = static_cast<int64_t>(a.hostMemoryGb * 1024);
  o.hostCpuMillis = static_cast<int64_t>(a.hostCpus * 1000);
  o.hostMaxInstances = a.hostMaxInstances;
  o.seed = a.seed;

  Result<sim::Trace> trace = invalidArgument("give --trace FILE or --synthetic SPEC");
  if (!a.synthetic.empty()) {
    auto spec = sim::parseSyntheticSpec(a.synthetic);
    if (!spec.isOk()) return fail(spec.status());
    trace = sim::generateSynthetic(*spec);
  } else if (!a.trace.empty()) {
    sim::TraceOptions t;
    t.defaultMemoryMb = a.memoryMb;
    t.concurrency = a.concurrency;
    t.seed = a.seed;
    t.maxMinutes = a.minutes;
    trace = sim::loadTrace(a.trace, a.format, t, a.durations, a.memory);
  }
  if (!trace.isOk()) return fail(trace.status());
  auto result = sim::simulate(*trace, o);
  if (!result.isOk()) return fail(result.status());
  if (a.json) {
    std::printf("%s\n", sim::toJson(*result, o).c_str());
  } else {
    std::printf("%s", sim::toText(*result, o).c_str());
  }
  return 0;
}

}  // namespace

void addSimCommand(CLI::App& app) {
  auto a = std::make_shared<SimArgs>();
  CLI::App* sim = app.add_subcommand(
      "sim", "Replay a trace through the scheduler on a simulated cluster (virtual clock)");
  sim->add_option("--trace", a->trace, "Trace file (azure2019: the invocations file)");
  sim->add_option("--format", a->format, "azure2021 | azure2019")->capture_default_str();
  sim->add_option("--synthetic", a->synthetic,
                  "Instead of a trace: poisson|uniform|onoff|diurnal|clumped[:key=value,...], "
                  "e.g. poisson:rate=10,functions=100,seconds=60,exec-ms=100");
  sim->add_option("--durations", a->durations, "azure2019 durations file (default: beside)");
  sim->add_option("--memory", a->memory, "azure2019 memory file (default: beside)");
  sim->add_option("--policy", a->policy,
                  "Scale policy and/or keep-alive policy: naive | queue-or-scale, fixed | hybrid")
      ->capture_default_str();
  sim->add_option("--keep-alive", a->keepAliveSec, "Fixed keep-alive, seconds")
      ->capture_default_str();
  sim->add_option("--hosts", a->hosts, "Simulated hosts")->capture_default_str();
  sim->add_option("--zones", a->zones, "Zones the hosts are spread over")->capture_default_str();
  sim->add_option("--host-memory-gb", a->hostMemoryGb, "Memory per host")->capture_default_str();
  sim->add_option("--host-cpus", a->hostCpus, "Cores per host")->capture_default_str();
  sim->add_option("--host-max-instances", a->hostMaxInstances, "Instances per host")
      ->capture_default_str();
  sim->add_option("--placement", a->placement, "bestfit | spread")->capture_default_str();
  sim->add_option("--isolation", a->isolation, "tenant | vpc | mixed")->capture_default_str();
  sim->add_option("--cold-start-ms", a->coldStartMs, "Time to start an instance")
      ->capture_default_str();
  sim->add_option("--cold-start-jitter", a->coldStartJitter, "Each start x (1 +- jitter)")
      ->capture_default_str();
  sim->add_option("--max-starts", a->maxStarts, "Concurrent starts per function (queue-or-scale)")
      ->capture_default_str();
  sim->add_option("--queue-factor", a->queueFactor,
                  "Wait while the expected wait < factor x cold start")
      ->capture_default_str();
  sim->add_option("--memory-mb", a->memoryMb, "Function memory when the trace has none")
      ->capture_default_str();
  sim->add_option("--concurrency", a->concurrency, "instanceConcurrency of every function")
      ->capture_default_str();
  sim->add_option("--minutes", a->minutes, "azure2019: simulate the first N minutes")
      ->capture_default_str();
  sim->add_option("--seed", a->seed, "Random seed")->capture_default_str();
  sim->add_flag("--json", a->json, "One JSON object on stdout");
  sim->callback([a] {
    int rc = runSim(*a);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace stratus
