#include "sim/simulator.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <queue>
#include <random>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "common/json.h"

namespace stratus::sim {
namespace {

using SteadyClock = std::chrono::steady_clock;

double processCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Log-linear histogram of non-negative microsecond values: exact below 64 us, then 32 buckets
// per power of two (about 3 % resolution). Constant memory whatever the trace length.
class DelayHistogram {
 public:
  void add(int64_t us) {
    us = std::max<int64_t>(0, us);
    size_t idx = indexOf(us);
    if (idx >= counts_.size()) counts_.resize(idx + 1, 0);
    ++counts_[idx];
    ++n_;
    max_ = std::max(max_, us);
  }
  double percentileMs(double p) const {
    if (n_ == 0) return 0;
    auto target = static_cast<int64_t>(std::ceil(p * static_cast<double>(n_)));
    target = std::max<int64_t>(1, target);
    int64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= target) return static_cast<double>(std::min(valueOf(i), max_)) / 1e3;
    }
    return static_cast<double>(max_) / 1e3;
  }
  double maxMs() const { return static_cast<double>(max_) / 1e3; }

 private:
  static size_t indexOf(int64_t v) {
    if (v < 64) return static_cast<size_t>(v);
    int e = 63 - __builtin_clzll(static_cast<uint64_t>(v));
    int64_t sub = (v >> (e - 5)) & 31;
    return static_cast<size_t>(64 + (e - 6) * 32 + sub);
  }
  static int64_t valueOf(size_t idx) {
    if (idx < 64) return static_cast<int64_t>(idx);
    int e = static_cast<int>((idx - 64) / 32) + 6;
    int64_t sub = static_cast<int64_t>((idx - 64) % 32);
    return (32 + sub) << (e - 5);
  }
  std::vector<int64_t> counts_;
  int64_t n_ = 0;
  int64_t max_ = 0;
};

class Engine final : public InstanceLauncher {
 public:
  Engine(const Trace& trace, const SimOptions& options)
      : trace_(trace),
        options_(options),
        scheduler_(*this, clock_, options.scheduler),
        rng_(options.seed) {
    for (int h = 0; h < options_.hosts; ++h) {
      HostSpec spec;
      spec.id = "h" + std::to_string(h);
      spec.zone = "z" + std::to_string(h % std::max(1, options_.zones));
      spec.memoryMb = options_.hostMemoryMb;
      spec.cpuMillis = options_.hostCpuMillis;
      spec.maxInstances = options_.hostMaxInstances;
      scheduler_.addHost(spec);
    }
    refs_.reserve(trace.functions.size());
    handles_.resize(trace.functions.size());
    live_.reserve(1024);
    for (const auto& f : trace.functions) {
      FunctionRef ref;
      ref.key = f.key;
      ref.tenant = f.tenant;
      ref.memoryMb = f.memoryMb;
      ref.concurrency = f.concurrency;
      ref.maxInstances = 1 << 20;  // the simulated cluster, not a per-function cap, is the limit
      refs_.push_back(std::move(ref));
    }
  }

  SimResult run() {
    auto wallStart = SteadyClock::now();
    double cpuStart = processCpuSeconds();
    size_t next = 0;
    const auto& inv = trace_.invocations;
    while (true) {
      int64_t tArr = next < inv.size() ? inv[next].startUs * 1000 : INT64_MAX;
      int64_t tEv = events_.empty() ? INT64_MAX : events_.top().t;
      TimePoint timer = scheduler_.nextTimer();
      int64_t tTim = timer == TimePoint::max() ? INT64_MAX : timer.time_since_epoch().count();
      if (tArr == INT64_MAX && tEv == INT64_MAX && (outstanding_ == 0 || tTim == INT64_MAX)) {
        break;
      }
      if (tEv <= tTim && tEv <= tArr) {
        Event ev = events_.top();
        events_.pop();
        advance(ev.t);
        if (ev.ready) {
          onReadyEvent(ev.index);
        } else {
          onCompleteEvent(ev.index);
        }
      } else if (tTim <= tArr) {
        advance(tTim);
        timed([&] { scheduler_.tick(); });
      } else {
        advance(tArr);
        arrive(inv[next]);
        ++next;
      }
    }
    // Instances alive at the end are paid for until the last event.
    for (const auto& [id, rec] : live_) chargeInstance(rec);
    result_.failed += outstanding_;  // never served (e.g. no capacity ever freed)
    result_.wallSeconds = std::chrono::duration<double>(SteadyClock::now() - wallStart).count();
    result_.cpuSeconds = processCpuSeconds() - cpuStart;
    finish();
    return result_;
  }

  // InstanceLauncher
  void launch(const std::string& id, const FunctionRef& fn,
              std::function<void(Result<int64_t>)> ready) override {
    launchOn("", id, fn, std::move(ready));
  }
  void launchOn(const std::string&, const std::string& id, const FunctionRef& fn,
                std::function<void(Result<int64_t>)> ready) override {
    uint32_t slot = allocLaunch();
    Duration cold = options_.coldStart;
    if (options_.coldStartJitter > 0) {
      std::uniform_real_distribution<double> j(1 - options_.coldStartJitter,
                                               1 + options_.coldStartJitter);
      cold = Duration(static_cast<int64_t>(static_cast<double>(cold.count()) * j(rng_)));
    }
    launches_[slot] = Launch{std::move(ready), cold.count() / 1000};
    live_[id] = Live{now(), fn.memoryMb};
    ++result_.instancesCreated;
    result_.peakInstances =
        std::max<int64_t>(result_.peakInstances, static_cast<int64_t>(live_.size()));
    int64_t second = now() / 1'000'000'000;
    if (second != startSecond_) {
      startSecond_ = second;
      startsThisSecond_ = 0;
    }
    ++startsThisSecond_;
    peakStartsPerSecond_ = std::max(peakStartsPerSecond_, startsThisSecond_);
    PlacementStats ps = scheduler_.placementStats();
    result_.peakHostsInUse = std::max<int64_t>(result_.peakHostsInUse, ps.hostsInUse);
    fragmentationSum_ += ps.fragmentation;
    ++fragmentationSamples_;
    events_.push(Event{now() + cold.count(), seq_++, true, slot});
  }
  void stop(const std::string& id) override {
    auto it = live_.find(id);
    if (it == live_.end()) return;
    chargeInstance(it->second);
    live_.erase(it);
  }

 private:
  struct Event {
    int64_t t;
    uint64_t seq;
    bool ready;  // else: call completion
    uint32_t index;
    bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  struct Launch {
    std::function<void(Result<int64_t>)> ready;
    int64_t coldUs = 0;
  };
  struct Live {
    int64_t launchedNs;
    int memoryMb;
  };
  struct Call {
    Lease lease;
    int64_t arrivalNs = 0;
    int64_t durationNs = 0;
    int32_t function = 0;
  };

  int64_t now() const { return clock_.now().time_since_epoch().count(); }
  void advance(int64_t t) {
    if (t > now()) clock_.set(TimePoint(Duration(t)));
  }

  template <typename F>
  void timed(F&& f) {
    auto t0 = SteadyClock::now();
    f();
    schedulerNs_ += (SteadyClock::now() - t0).count();
  }

  void chargeInstance(const Live& rec) {
    double seconds = static_cast<double>(now() - rec.launchedNs) / 1e9;
    result_.gbSecondsProvisioned += seconds * rec.memoryMb / 1024.0;
  }

  uint32_t allocLaunch() {
    if (!freeLaunches_.empty()) {
      uint32_t s = freeLaunches_.back();
      freeLaunches_.pop_back();
      return s;
    }
    launches_.emplace_back();
    return static_cast<uint32_t>(launches_.size() - 1);
  }

  uint32_t allocCall() {
    if (!freeCalls_.empty()) {
      uint32_t s = freeCalls_.back();
      freeCalls_.pop_back();
      return s;
    }
    calls_.emplace_back();
    return static_cast<uint32_t>(calls_.size() - 1);
  }

  void arrive(const Invocation& inv) {
    uint32_t slot = allocCall();
    Call& c = calls_[slot];
    c.arrivalNs = inv.startUs * 1000;
    c.durationNs = inv.durationUs * 1000;
    c.function = inv.function;
    ++result_.invocations;
    ++outstanding_;
    ++result_.decisions;
    timed([&] {
      // Interned at the function's first call (no scheduler work but naming it), then every
      // call indexes instead of hashing the key.
      FunctionHandle& handle = handles_[inv.function];
      if (!handle.valid()) handle = scheduler_.intern(refs_[inv.function].key);
      scheduler_.acquire(handle, refs_[inv.function],
                         [this, slot](Result<Lease> r) { onLease(slot, std::move(r)); });
    });
  }

  void onLease(uint32_t slot, Result<Lease> r) {
    Call& c = calls_[slot];
    if (!r.isOk()) {
      ++result_.failed;
      --outstanding_;
      freeCalls_.push_back(slot);
      return;
    }
    c.lease = std::move(r).value();
    delays_.add((now() - c.arrivalNs) / 1000);
    if (c.lease.coldStart) ++result_.coldStarts;
    const SimFunction& f = trace_.functions[c.function];
    result_.gbSecondsBusy +=
        static_cast<double>(c.durationNs) / 1e9 * f.memoryMb / 1024.0 / f.concurrency;
    events_.push(Event{now() + c.durationNs, seq_++, false, slot});
  }

  void onReadyEvent(uint32_t slot) {
    auto ready = std::move(launches_[slot].ready);
    int64_t coldUs = launches_[slot].coldUs;
    freeLaunches_.push_back(slot);
    timed([&] { ready(coldUs); });
  }

  void onCompleteEvent(uint32_t slot) {
    ++result_.decisions;
    timed([&] { scheduler_.release(calls_[slot].lease, true); });
    ++result_.completed;
    --outstanding_;
    freeCalls_.push_back(slot);
  }

  void finish() {
    SchedulerStats s = scheduler_.stats();
    result_.placementFailures = s.placementFailures;
    result_.startsDeferred = s.startsDeferred;
    result_.coldStartRatio = result_.invocations > 0 ? static_cast<double>(result_.coldStarts) /
                                                           static_cast<double>(result_.invocations)
                                                     : 0;
    result_.utilization =
        result_.gbSecondsProvisioned > 0 ? result_.gbSecondsBusy / result_.gbSecondsProvisioned : 0;
    result_.queueDelayMsP50 = delays_.percentileMs(0.50);
    result_.queueDelayMsP99 = delays_.percentileMs(0.99);
    result_.queueDelayMsMax = delays_.maxMs();
    result_.fragmentationAvg = fragmentationSamples_ > 0
                                   ? fragmentationSum_ / static_cast<double>(fragmentationSamples_)
                                   : 0;
    result_.schedulerSeconds = static_cast<double>(schedulerNs_) / 1e9;
    // Per CPU second of the whole replay (event loop and accounting included), so that the
    // figure neither flatters the scheduler nor depends on what else the machine runs.
    result_.decisionsPerSecond =
        result_.cpuSeconds > 0 ? static_cast<double>(result_.decisions) / result_.cpuSeconds : 0;
    result_.simulatedSeconds = static_cast<double>(now()) / 1e9;
    result_.speedup = result_.wallSeconds > 0 ? result_.simulatedSeconds / result_.wallSeconds : 0;
    result_.peakColdStartsPerSecond = static_cast<double>(peakStartsPerSecond_);
  }

  const Trace& trace_;
  const SimOptions& options_;
  ManualClock clock_;
  Scheduler scheduler_;
  std::mt19937_64 rng_;
  std::vector<FunctionRef> refs_;
  std::vector<FunctionHandle> handles_;  // by trace function, interned at its first call
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t seq_ = 0;
  std::vector<Launch> launches_;
  std::vector<uint32_t> freeLaunches_;
  std::vector<Call> calls_;
  std::vector<uint32_t> freeCalls_;
  // By instance id. Its iteration order decides the order in which the instances alive at the
  // end are added to gb_seconds_provisioned; another container would change that sum in its last
  // digits, so the experiments' outputs stay comparable bit for bit.
  std::unordered_map<std::string, Live> live_;
  int64_t outstanding_ = 0;
  DelayHistogram delays_;
  int64_t schedulerNs_ = 0;
  int64_t startSecond_ = -1;
  int64_t startsThisSecond_ = 0;
  int64_t peakStartsPerSecond_ = 0;
  double fragmentationSum_ = 0;
  int64_t fragmentationSamples_ = 0;
  SimResult result_;
};

}  // namespace

Result<SimResult> simulate(const Trace& trace, const SimOptions& options) {
  if (options.hosts <= 0) return invalidArgument("hosts must be > 0");
  if (options.hostMemoryMb < kMemoryUnitMb) return invalidArgument("host memory below 128 MB");
  for (const auto& inv : trace.invocations) {
    if (inv.function < 0 || static_cast<size_t>(inv.function) >= trace.functions.size()) {
      return invalidArgument("invocation refers to function " + std::to_string(inv.function) +
                             " of " + std::to_string(trace.functions.size()));
    }
  }
  Engine engine(trace, options);
  return engine.run();
}

std::string toJson(const SimResult& r, const SimOptions& o) {
  json::object j;
  j["invocations"] = r.invocations;
  j["completed"] = r.completed;
  j["failed"] = r.failed;
  j["cold_starts"] = r.coldStarts;
  j["cold_start_ratio"] = r.coldStartRatio;
  j["instances_created"] = r.instancesCreated;
  j["peak_instances"] = r.peakInstances;
  j["gb_seconds_provisioned"] = r.gbSecondsProvisioned;
  j["gb_seconds_busy"] = r.gbSecondsBusy;
  j["utilization"] = r.utilization;
  j["queue_delay_ms_p50"] = r.queueDelayMsP50;
  j["queue_delay_ms_p99"] = r.queueDelayMsP99;
  j["queue_delay_ms_max"] = r.queueDelayMsMax;
  j["placement_failures"] = r.placementFailures;
  j["starts_deferred"] = r.startsDeferred;
  j["peak_hosts_in_use"] = r.peakHostsInUse;
  j["fragmentation_avg"] = r.fragmentationAvg;
  j["peak_cold_starts_per_second"] = r.peakColdStartsPerSecond;
  j["decisions"] = r.decisions;
  j["decisions_per_second"] = r.decisionsPerSecond;
  j["scheduler_seconds"] = r.schedulerSeconds;
  j["cpu_seconds"] = r.cpuSeconds;
  j["wall_seconds"] = r.wallSeconds;
  j["simulated_seconds"] = r.simulatedSeconds;
  j["speedup"] = r.speedup;
  j["scale_policy"] = toString(o.scheduler.scale);
  j["keep_alive_policy"] = toString(o.scheduler.keepAlivePolicy.policy);
  j["placement"] = toString(o.scheduler.placement);
  j["isolation"] = toString(o.scheduler.isolation);
  j["hosts"] = o.hosts;
  return json::serialize(j);
}

std::string toText(const SimResult& r, const SimOptions& o) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(3);
  out << "policy            " << toString(o.scheduler.scale) << ", keep-alive "
      << toString(o.scheduler.keepAlivePolicy.policy) << ", " << toString(o.scheduler.placement)
      << ", isolation " << toString(o.scheduler.isolation) << ", " << o.hosts << " hosts\n"
      << "invocations       " << r.invocations << " (" << r.failed << " failed)\n"
      << "cold starts       " << r.coldStarts << " (ratio " << r.coldStartRatio << ")\n"
      << "instances         " << r.instancesCreated << " created, peak " << r.peakInstances
      << ", peak hosts in use " << r.peakHostsInUse << "\n"
      << "memory            " << r.gbSecondsProvisioned << " GB-s provisioned, " << r.gbSecondsBusy
      << " GB-s busy, utilization " << r.utilization << "\n"
      << "queue delay       p50 " << r.queueDelayMsP50 << " ms, p99 " << r.queueDelayMsP99
      << " ms, max " << r.queueDelayMsMax << " ms\n"
      << "placement         " << r.placementFailures << " failures, fragmentation avg "
      << r.fragmentationAvg << "\n"
      << "scheduler         " << r.decisions << " decisions, "
      << static_cast<int64_t>(r.decisionsPerSecond) << " per CPU second\n"
      << "time              " << r.simulatedSeconds << " s simulated in " << r.wallSeconds
      << " s (x" << static_cast<int64_t>(r.speedup) << ")\n";
  return out.str();
}

}  // namespace stratus::sim
