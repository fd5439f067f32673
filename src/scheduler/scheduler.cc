#include "scheduler/scheduler.h"

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <climits>
#include <cmath>
#include <deque>
#include <mutex>
#include <queue>
#include <vector>

#include "common/ids.h"

namespace stratus {

Result<ScalePolicy> parseScalePolicy(std::string_view name) {
  if (name == "naive") return ScalePolicy::kNaive;
  if (name == "queue-or-scale" || name == "qos") return ScalePolicy::kQueueOrScale;
  return invalidArgument("unknown scale policy '" + std::string(name) +
                         "' (naive | queue-or-scale)");
}

const char* toString(ScalePolicy p) {
  return p == ScalePolicy::kNaive ? "naive" : "queue-or-scale";
}

namespace {

constexpr int32_t kNone = -1;

struct Ewma {
  double value = -1;
  void add(double x, double alpha) { value = value < 0 ? x : (1 - alpha) * value + alpha * x; }
  bool known() const { return value >= 0; }
};

enum class InstState : uint8_t { kFree, kStarting, kReady };

struct Instance {
  std::string id;
  uint64_t idNumber = 0;  // the hex number in id: the key of the id index
  uint32_t gen = 0;       // bumped whenever the slot is reused or freed: stale references die
  InstState state = InstState::kFree;
  int32_t fn = kNone;
  int32_t host = kNone;
  int64_t revision = 0;
  int concurrency = 1;
  int busy = 0;
  bool draining = false;  // takes no new calls; stops when idle
  bool prewarm = false;   // started by the keep-alive policy, not by a call
  bool wanted = true;     // starting: still for the current revision (counted in starting)
  TimePoint launchedAt{};
  TimePoint lastUsed{};
  TimePoint expiresAt = TimePoint::max();  // meaningful while idle
  TimePoint timerAt = TimePoint::max();    // the expiry timer pending for this instance, if any
  int64_t memoryMb = 128;
  int64_t cpuMillis = 0;
  // Free-slot list of its function, bucketed by busy count (level), and positions in the
  // per-function and per-host vectors for O(1) removal.
  int32_t level = kNone;
  int32_t prev = kNone;
  int32_t next = kNone;
  int32_t posInFn = kNone;
  int32_t posInHost = kNone;
};

struct Waiter {
  TimePoint enqueued;
  std::function<void(Result<Lease>)> done;
};

struct Function {
  FunctionRef ref;           // latest revision seen (only ref.key until initialized)
  bool initialized = false;  // false: interned by key, not yet seen by acquire/ensure
  bool deleted = false;
  std::vector<int32_t> levels;     // head of the free-slot list per busy count
  std::vector<int32_t> instances;  // every instance (starting or ready, any revision)
  int ready = 0;                   // ready instances, any revision
  int starting = 0;                // starts in flight for ref.revision
  int startingOld = 0;             // starts in flight for older revisions
  int busySlots = 0;               // busy slots on routable instances
  int inflight = 0;                // leases out
  std::deque<Waiter> queue;
  Ewma exec, cold;
  std::vector<int> zoneCounts;
  std::unique_ptr<IdleTimeHistogram> histogram;
  KeepAliveWindow window;
  TimePoint idleSince = TimePoint::min();  // when inflight and queue last became empty
  uint32_t epoch = 0;                      // bumped when the function becomes active
  TimePoint queueTimerAt = TimePoint::max();
  TimePoint lastReleaseAt{};  // a slot last freed (healthy release)
  int runtime = kNone;        // index into the runtime table

  int live() const { return static_cast<int>(instances.size()); }
  bool active() const { return inflight > 0 || !queue.empty(); }
};

enum class TimerKind : uint8_t { kExpire, kPrewarm, kQueue, kHealth };

struct Timer {
  TimePoint at;
  TimerKind kind;
  int32_t index;
  uint32_t gen;
  bool operator>(const Timer& o) const { return at > o.at; }
};

struct HostState {
  TimePoint lastSeen{};
  bool monitored = true;
  std::vector<int32_t> instances;
};

struct RuntimeState {
  std::string name;
  TimePoint windowStart{};
  int64_t startsInWindow = 0;
  double ratePerSec = 0;
};

}  // namespace

class Scheduler::Impl {
 public:
  Impl(InstanceLauncher& launcher, const Clock& clock, SchedulerOptions options)
      : launcher_(launcher),
        clock_(clock),
        options_(std::move(options)),
        placer_(options_.placement, options_.isolation) {
    options_.keepAlivePolicy.fixed = options_.keepAlive;
    if (!options_.deterministicIds) {
      std::string seed = randomHex(6);
      idBase_ = std::stoull(seed, nullptr, 16);
    }
  }

  // Work that must run after mu_ is released: callbacks and launcher calls may re-enter us.
  // Inline room for the few a decision usually queues: no heap allocation for the list itself.
  using Actions = boost::container::small_vector<std::function<void()>, 4>;
  static void run(Actions& actions) {
    for (auto& a : actions) a();
  }

  void acquire(FunctionHandle handle, const FunctionRef& fn,
               std::function<void(Result<Lease>)> done) {
    Actions actions;
    Lease lease;
    bool granted = false;
    {
      std::lock_guard lock(mu_);
      if (shutdown_) {
        actions.push_back([done] { done(Status(Code::kAborted, "scheduler is shutting down")); });
      } else {
        int32_t f = handle.index;
        if (f < 0 || f >= static_cast<int32_t>(functions_.size()) ||
            functions_[f].ref.key != fn.key) {
          f = internLocked(fn.key);
        }
        setupFunctionLocked(f, fn, actions);
        Function& fs = functions_[f];
        TimePoint now = clock_.now();
        if (!fs.active()) becomeActiveLocked(fs, now);
        if (int32_t i = pickLocked(fs); i != kNone) {
          lease = grantLocked(fs, i, now, /*cold=*/false, 0);
          granted = true;
        } else {
          fs.queue.push_back(Waiter{now, std::move(done)});
          scaleLocked(f, now, actions);
          armQueueTimerLocked(f, now);
        }
      }
    }
    if (granted) done(std::move(lease));
    run(actions);
  }

  void release(const Lease& lease, bool healthy) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      int32_t i = resolveLocked(lease);
      if (i == kNone) return;  // already lost or stopped
      Instance& inst = instances_[i];
      Function& fs = functions_[inst.fn];
      TimePoint now = clock_.now();
      if (healthy) fs.lastReleaseAt = now;
      if (healthy && lease.grantedAt != TimePoint{}) {
        fs.exec.add(static_cast<double>((now - lease.grantedAt).count()) / 1e3, options_.ewmaAlpha);
      }
      unlinkLocked(fs, i);
      inst.busy = std::max(0, inst.busy - 1);
      --busySlots_;
      if (!inst.draining && inst.revision == fs.ref.revision) --fs.busySlots;
      fs.inflight = std::max(0, fs.inflight - 1);
      inst.lastUsed = now;
      int32_t f = inst.fn;
      if (!healthy) {
        removeInstanceLocked(i, actions, /*stop=*/true);
        restoreLocked(f, now, actions);
      } else if (inst.draining || inst.revision != fs.ref.revision) {
        if (inst.busy == 0) removeInstanceLocked(i, actions, /*stop=*/true);
      } else {
        serveQueueLocked(fs, i, now, /*cold=*/false, 0, actions);
        linkLocked(fs, i);
      }
      uint32_t gen = instances_[i].gen;
      if (!functions_[f].active()) becomeIdleLocked(f, now, actions);
      if (instances_[i].gen == gen && instances_[i].state == InstState::kReady &&
          instances_[i].busy == 0) {
        idleLocked(i, now);
      }
    }
    run(actions);
  }

  FunctionHandle intern(const std::string& functionKey) {
    std::lock_guard lock(mu_);
    return FunctionHandle{internLocked(functionKey)};
  }

  void instanceLost(const std::string& instanceId) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      int32_t i = findIdLocked(instanceId);
      if (i == kNone) return;
      int32_t f = instances_[i].fn;
      removeInstanceLocked(i, actions, /*stop=*/false);
      restoreLocked(f, clock_.now(), actions);
    }
    run(actions);
  }

  void drain(const std::string& functionKey, int64_t keepRevision) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      auto it = fnIndex_.find(functionKey);
      if (it == fnIndex_.end() || !functions_[it->second].initialized) return;
      Function& fs = functions_[it->second];
      drainLocked(fs, keepRevision, actions);
      if (keepRevision == INT64_MAX) {
        fs.deleted = true;
        failQueueLocked(fs, notFound("function " + functionKey + " was deleted"), actions);
      }
    }
    run(actions);
  }

  void ensure(const FunctionRef& fn) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      if (shutdown_) return;
      setupFunctionLocked(internLocked(fn.key), fn, actions);
    }
    run(actions);
  }

  void tick() {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      TimePoint now = clock_.now();
      while (!timers_.empty() && timers_.top().at <= now) {
        Timer t = timers_.top();
        timers_.pop();
        switch (t.kind) {
          case TimerKind::kExpire:
            onExpireLocked(t, now, actions);
            break;
          case TimerKind::kPrewarm:
            onPrewarmLocked(t, now, actions);
            break;
          case TimerKind::kQueue:
            onQueueTimerLocked(t.index, now, actions);
            break;
          case TimerKind::kHealth:
            onHealthLocked(now, actions);
            break;
        }
      }
    }
    run(actions);
  }

  TimePoint nextTimer() const {
    std::lock_guard lock(mu_);
    return timers_.empty() ? TimePoint::max() : timers_.top().at;
  }

  void shutdown() {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
      for (auto& fs : functions_) {
        failQueueLocked(fs, Status(Code::kAborted, "server is shutting down"), actions);
      }
      for (size_t i = 0; i < instances_.size(); ++i) {
        if (instances_[i].state == InstState::kReady) {
          removeInstanceLocked(static_cast<int32_t>(i), actions, /*stop=*/true);
        }
      }
    }
    run(actions);
  }

  void addHost(const HostSpec& spec) {
    std::lock_guard lock(mu_);
    int h = placer_.addHost(spec);
    if (static_cast<size_t>(h) >= hosts_.size()) hosts_.resize(h + 1);
    hosts_[h].lastSeen = clock_.now();
    hosts_[h].monitored = true;
    armHealthLocked(clock_.now());
  }

  void heartbeat(const std::string& hostId) {
    std::lock_guard lock(mu_);
    int h = placer_.hostIndex(hostId);
    if (h < 0) return;
    hosts_[h].lastSeen = clock_.now();
    if (!placer_.alive(h)) placer_.setAlive(h, true);
  }

  void hostDead(const std::string& hostId) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      int h = placer_.hostIndex(hostId);
      if (h >= 0 && placer_.alive(h)) hostDeadLocked(h, clock_.now(), actions);
    }
    run(actions);
  }

  SchedulerStats stats() const {
    std::lock_guard lock(mu_);
    SchedulerStats s = counters_;
    s.instances = readyCount_;
    s.starting = startingCount_;
    s.busySlots = busySlots_;
    int64_t queued = 0;
    for (const auto& fs : functions_) queued += static_cast<int64_t>(fs.queue.size());
    s.queued = queued;
    s.placement = placer_.stats();
    return s;
  }

  PlacementStats placementStats() const {
    std::lock_guard lock(mu_);
    return placer_.stats();
  }

  size_t instanceCount(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto it = fnIndex_.find(key);
    return it == fnIndex_.end() ? 0 : static_cast<size_t>(functions_[it->second].ready);
  }

  FunctionEstimates estimates(const std::string& key) const {
    std::lock_guard lock(mu_);
    FunctionEstimates e;
    auto it = fnIndex_.find(key);
    if (it == fnIndex_.end()) return e;
    const Function& fs = functions_[it->second];
    e.execUs = fs.exec.value;
    e.coldStartUs = fs.cold.value;
    e.window = fs.window;
    return e;
  }

  std::map<std::string, int> prewarmTargets() const {
    std::lock_guard lock(mu_);
    std::map<std::string, int> out(options_.prewarmFloor.begin(), options_.prewarmFloor.end());
    int hosts = std::max(1, placer_.stats().hosts);
    double refillSec = std::chrono::duration<double>(options_.poolRefill).count();
    for (const auto& rt : runtimes_) {
      // Little's law: takes per second x seconds a slot stays empty, with 2x headroom for bursts.
      int need = static_cast<int>(std::ceil(2.0 * rt.ratePerSec * refillSec / hosts));
      int& target = out[rt.name];
      target = std::max(target, need);
    }
    return out;
  }

 private:
  // ---- functions ----

  // The key's slot, created (uninitialized) if new. Slots are never reused, so an index stays
  // valid as a handle.
  int32_t internLocked(const std::string& key) {
    auto [it, inserted] = fnIndex_.try_emplace(key, static_cast<int32_t>(functions_.size()));
    if (inserted) {
      functions_.emplace_back();
      functions_.back().ref.key = key;
    }
    return it->second;
  }

  // Function f, initialized from fn or moved to fn's revision (older instances drain) as needed.
  void setupFunctionLocked(int32_t f, const FunctionRef& fn, Actions& actions) {
    Function& fs = functions_[f];
    bool inserted = !fs.initialized;
    fs.initialized = true;
    bool fresh = inserted || fs.deleted;
    fs.deleted = false;
    if (inserted) {
      setRefLocked(fs, fn);
      fs.window = keepAliveWindow(options_.keepAlivePolicy, nullptr);
    } else if (fn.revision > fs.ref.revision) {
      // New revision: older instances drain; starts in flight for the old revision are stopped
      // when they complete.
      drainLocked(fs, fn.revision, actions);
      abandonStartsLocked(fs);
      setRefLocked(fs, fn);
      fresh = true;
    }
    if (fresh || fs.live() < fs.ref.minInstances) restoreLocked(f, clock_.now(), actions);
  }

  void setRefLocked(Function& fs, const FunctionRef& fn) {
    fs.ref = fn;
    fs.ref.concurrency = std::max(1, fn.concurrency);
    if (fs.ref.tenant.empty()) fs.ref.tenant = fn.key.substr(0, fn.key.find('/'));
    if (fs.ref.cpuMillis <= 0) fs.ref.cpuMillis = std::max<int64_t>(1, fn.memoryMb * 1000 / 2048);
    fs.levels.assign(static_cast<size_t>(fs.ref.concurrency), kNone);
    fs.busySlots = 0;
    // Routable instances of the new revision: none yet (all older ones drained).
    for (int32_t i : fs.instances) {
      Instance& inst = instances_[i];
      if (inst.state == InstState::kReady && !inst.draining && inst.revision == fs.ref.revision) {
        fs.busySlots += inst.busy;
        inst.level = kNone;
        linkLocked(fs, i);
      }
    }
    fs.runtime = kNone;
    if (!fn.runtime.empty()) {
      for (size_t r = 0; r < runtimes_.size(); ++r) {
        if (runtimes_[r].name == fn.runtime) fs.runtime = static_cast<int>(r);
      }
      if (fs.runtime == kNone) {
        runtimes_.push_back(RuntimeState{fn.runtime, clock_.now(), 0, 0});
        fs.runtime = static_cast<int>(runtimes_.size()) - 1;
      }
    }
  }

  void becomeActiveLocked(Function& fs, TimePoint now) {
    ++fs.epoch;  // cancels a pending pre-warm
    if (options_.keepAlivePolicy.policy == KeepAlivePolicy::kHybridHistogram &&
        fs.idleSince != TimePoint::min()) {
      if (!fs.histogram) fs.histogram = std::make_unique<IdleTimeHistogram>();
      fs.histogram->record(now - fs.idleSince, options_.keepAlivePolicy);
    }
  }

  void becomeIdleLocked(int32_t f, TimePoint now, Actions& actions) {
    Function& fs = functions_[f];
    fs.idleSince = now;
    fs.window = keepAliveWindow(options_.keepAlivePolicy, fs.histogram.get());
    if (fs.window.prewarm <= Duration::zero() || fs.deleted) return;
    // The next call is not expected before the pre-warm window: give the memory back now and
    // start one instance again shortly before it is.
    std::vector<int32_t> idle;
    for (int32_t i : fs.instances) {
      const Instance& inst = instances_[i];
      if (inst.state == InstState::kReady && inst.busy == 0) idle.push_back(i);
    }
    int keep = fs.ref.minInstances;
    for (int32_t i : idle) {
      if (keep > 0 && !instances_[i].draining) {
        --keep;
        continue;
      }
      removeInstanceLocked(i, actions, /*stop=*/true);
    }
    if (fs.window.keepAlive > Duration::zero() && fs.live() == 0) {
      pushTimer(Timer{now + fs.window.prewarm, TimerKind::kPrewarm, f, fs.epoch});
    }
  }

  // ---- routing ----

  void linkLocked(Function& fs, int32_t i) {
    Instance& inst = instances_[i];
    if (inst.level != kNone || inst.state != InstState::kReady || inst.draining ||
        inst.revision != fs.ref.revision || inst.busy >= inst.concurrency) {
      return;
    }
    // Newest first within a level: the most recently used idle instance is reused and the
    // others age out under keep-alive.
    int32_t& head = fs.levels[inst.busy];
    inst.level = inst.busy;
    inst.prev = kNone;
    inst.next = head;
    if (head != kNone) instances_[head].prev = i;
    head = i;
  }

  void unlinkLocked(Function& fs, int32_t i) {
    Instance& inst = instances_[i];
    if (inst.level == kNone) return;
    if (inst.prev != kNone) {
      instances_[inst.prev].next = inst.next;
    } else {
      fs.levels[inst.level] = inst.next;
    }
    if (inst.next != kNone) instances_[inst.next].prev = inst.prev;
    inst.level = inst.prev = inst.next = kNone;
  }

  // Least-loaded routable instance with a free slot.
  int32_t pickLocked(Function& fs) {
    for (int32_t head : fs.levels) {
      if (head != kNone) return head;
    }
    return kNone;
  }

  Lease grantLocked(Function& fs, int32_t i, TimePoint now, bool cold, int64_t initUs) {
    unlinkLocked(fs, i);
    Instance& inst = instances_[i];
    ++inst.busy;
    ++busySlots_;
    ++fs.busySlots;
    ++fs.inflight;
    inst.lastUsed = now;
    inst.expiresAt = TimePoint::max();
    linkLocked(fs, i);
    Lease lease;
    lease.functionKey = fs.ref.key;
    lease.instanceId = inst.id;
    lease.coldStart = cold;
    lease.initDurationUs = cold ? initUs : 0;
    lease.hostId = placer_.host(inst.host).id;
    lease.grantedAt = now;
    lease.handle = (static_cast<uint64_t>(inst.gen) << 32) | static_cast<uint32_t>(i + 1);
    return lease;
  }

  int32_t resolveLocked(const Lease& lease) const {
    if (lease.handle != 0) {
      int64_t i = static_cast<int64_t>(lease.handle & 0xffffffffu) - 1;
      auto gen = static_cast<uint32_t>(lease.handle >> 32);
      if (i >= 0 && i < static_cast<int64_t>(instances_.size()) && instances_[i].gen == gen &&
          instances_[i].state == InstState::kReady) {
        return static_cast<int32_t>(i);
      }
      return kNone;
    }
    int32_t i = findIdLocked(lease.instanceId);
    if (i == kNone || instances_[i].state != InstState::kReady) return kNone;
    return i;
  }

  // The instance (starting or ready) named id, or kNone. Ids are "i-" and 12 lowercase hex
  // digits (newIdLocked); the index is keyed by that number, so no string is hashed or stored.
  int32_t findIdLocked(const std::string& id) const {
    if (id.size() != 14 || id[0] != 'i' || id[1] != '-') return kNone;
    uint64_t n = 0;
    for (size_t k = 2; k < id.size(); ++k) {
      char c = id[k];
      int digit;
      if (c >= '0' && c <= '9') {
        digit = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        digit = c - 'a' + 10;
      } else {
        return kNone;
      }
      n = (n << 4) | static_cast<uint64_t>(digit);
    }
    auto it = idIndex_.find(n);
    return it == idIndex_.end() ? kNone : it->second;
  }

  // Gives inst's free slots to queued calls, oldest first.
  void serveQueueLocked(Function& fs, int32_t i, TimePoint now, bool cold, int64_t initUs,
                        Actions& actions) {
    while (!fs.queue.empty()) {
      Instance& inst = instances_[i];
      if (inst.busy >= inst.concurrency || inst.draining || inst.revision != fs.ref.revision) {
        break;
      }
      auto done = std::move(fs.queue.front().done);
      fs.queue.pop_front();
      Lease lease = grantLocked(fs, i, now, cold, initUs);
      actions.push_back(
          [done = std::move(done), lease = std::move(lease)]() mutable { done(std::move(lease)); });
    }
  }

  // ---- scaling ----

  // Starts instances for queued calls not covered by starts in flight, as the policy allows.
  void scaleLocked(int32_t f, TimePoint now, Actions& actions) {
    Function& fs = functions_[f];
    if (shutdown_ || fs.deleted) return;
    const int conc = fs.ref.concurrency;
    bool placementFailed = false;
    while (static_cast<int64_t>(fs.queue.size()) > static_cast<int64_t>(fs.starting) * conc) {
      if (fs.live() >= fs.ref.maxInstances) break;
      if (options_.scale == ScalePolicy::kQueueOrScale) {
        // Like TCP slow start: a function may have as many starts in flight as it has ready
        // instances, and at least maxConcurrentStarts. A burst on a cold function ramps up in
        // rounds instead of launching one start per call while nothing is known about it.
        int bound = std::max(options_.maxConcurrentStarts, fs.ready);
        if (fs.starting >= bound || !worthStartingLocked(fs, now)) {
          ++counters_.startsDeferred;
          break;
        }
      }
      if (!startLocked(f, now, /*prewarm=*/false, actions)) {
        placementFailed = true;
        break;
      }
    }
    // Nothing can ever serve these calls: no instance, no start, and no room for one.
    if (placementFailed && !fs.queue.empty() && fs.live() == 0) {
      failQueueLocked(fs, lastPlacementStatus_, actions);
    }
  }

  // Queue-or-scale: is a new instance ready sooner than a busy slot is expected to free?
  bool worthStartingLocked(const Function& fs, TimePoint now) const {
    if (!fs.exec.known()) return true;  // nothing to predict with
    const int conc = fs.ref.concurrency;
    double coldUs = coldEstimateUs(fs);
    auto covered = static_cast<size_t>(fs.starting) * conc;
    // The first call no start in flight will serve has waited a whole cold start and no slot
    // has freed for as long: the calls in flight take far longer than measured (or hang), so
    // the prediction is wrong and a start now is the better bet. While slots keep freeing, a
    // backlog is being worked through and the model below holds.
    double firstUncoveredWaitedUs =
        static_cast<double>((now - fs.queue[covered].enqueued).count()) / 1e3;
    double sinceReleaseUs = static_cast<double>((now - fs.lastReleaseAt).count()) / 1e3;
    if (firstUncoveredWaitedUs >= coldUs && sinceReleaseUs >= coldUs) return true;
    auto uncovered = static_cast<double>(fs.queue.size() - covered);
    double expectedWaitUs;
    if (fs.busySlots > 0) {
      // Busy slots free at about busySlots / exec per microsecond; the last uncovered call
      // waits for `uncovered` of them.
      expectedWaitUs = uncovered * fs.exec.value / fs.busySlots;
    } else if (fs.starting > 0) {
      // Only starts in flight: the oldest is about as old as the oldest waiter; after it is
      // ready, the new slots work through the backlog.
      double frontWaitedUs = static_cast<double>((now - fs.queue.front().enqueued).count()) / 1e3;
      expectedWaitUs = std::max(0.0, coldUs - frontWaitedUs) +
                       uncovered * fs.exec.value / (static_cast<double>(fs.starting) * conc);
    } else {
      return true;  // nothing busy and nothing starting: only a start can serve
    }
    return expectedWaitUs > options_.queueFactor * coldUs;
  }

  double coldEstimateUs(const Function& fs) const {
    return fs.cold.known() ? fs.cold.value
                           : static_cast<double>(options_.defaultColdStart.count()) / 1e3;
  }

  // Starts instances to restore minInstances and to serve queued calls.
  void restoreLocked(int32_t f, TimePoint now, Actions& actions) {
    Function& fs = functions_[f];
    if (shutdown_ || fs.deleted) return;
    while (fs.live() < std::min(fs.ref.minInstances, fs.ref.maxInstances)) {
      if (!startLocked(f, now, /*prewarm=*/true, actions)) break;
    }
    scaleLocked(f, now, actions);
  }

  bool startLocked(int32_t f, TimePoint now, bool prewarm, Actions& actions) {
    Function& fs = functions_[f];
    if (placer_.hostCount() == 0) addLocalHostLocked();
    PlacementRequest req;
    req.memoryMb = fs.ref.memoryMb;
    req.cpuMillis = fs.ref.cpuMillis;
    req.tenant = fs.ref.tenant;
    req.vpc = fs.ref.vpc;
    req.zoneCounts = fs.zoneCounts;
    auto host = placer_.place(req);
    if (!host.isOk()) {
      ++counters_.placementFailures;
      lastPlacementStatus_ = host.status();
      return false;
    }
    int32_t i = allocInstanceLocked();
    Instance& inst = instances_[i];
    inst.idNumber = newIdNumberLocked();
    inst.id = formatId(inst.idNumber);
    inst.state = InstState::kStarting;
    inst.fn = f;
    inst.host = *host;
    inst.revision = fs.ref.revision;
    inst.concurrency = fs.ref.concurrency;
    inst.prewarm = prewarm;
    inst.launchedAt = now;
    inst.lastUsed = now;
    inst.memoryMb = fs.ref.memoryMb;
    inst.cpuMillis = fs.ref.cpuMillis;
    idIndex_[inst.idNumber] = i;
    inst.posInFn = static_cast<int32_t>(fs.instances.size());
    fs.instances.push_back(i);
    HostState& hs = hosts_[inst.host];
    inst.posInHost = static_cast<int32_t>(hs.instances.size());
    hs.instances.push_back(i);
    int zone = placer_.zoneIndex(inst.host);
    if (static_cast<int>(fs.zoneCounts.size()) <= zone) fs.zoneCounts.resize(zone + 1, 0);
    ++fs.zoneCounts[zone];
    ++fs.starting;
    ++startingCount_;
    ++counters_.coldStarts;
    if (prewarm) ++counters_.prewarmStarts;
    if (fs.runtime != kNone) noteStartLocked(runtimes_[fs.runtime], now);
    actions.push_back([this, hostId = placer_.host(inst.host).id, id = inst.id,
                       idNumber = inst.idNumber, ref = fs.ref] {
      // The id's number names this start (unique, unlike the slot) and keeps the callback small
      // enough for std::function's inline storage: no allocation per start.
      launcher_.launchOn(hostId, id, ref,
                         [this, idNumber](Result<int64_t> r) { onReady(idNumber, r); });
    });
    return true;
  }

  void onReady(uint64_t idNumber, const Result<int64_t>& r) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      auto it = idIndex_.find(idNumber);
      if (it == idIndex_.end() || instances_[it->second].state != InstState::kStarting) {
        // Forgotten while starting (its host died): nothing waits for it.
        if (r.isOk()) actions.push_back([this, idNumber] { launcher_.stop(formatId(idNumber)); });
      } else {
        readyLocked(it->second, r, actions);
      }
    }
    run(actions);
  }

  void readyLocked(int32_t i, const Result<int64_t>& r, Actions& actions) {
    {
      Instance& inst = instances_[i];
      int32_t f = inst.fn;
      Function& fs = functions_[f];
      TimePoint now = clock_.now();
      bool current = inst.wanted;
      if (current) {
        --fs.starting;
      } else {
        --fs.startingOld;
      }
      --startingCount_;
      inst.state = InstState::kReady;  // so that removal below accounts it as ready
      ++readyCount_;
      ++fs.ready;
      if (!r.isOk()) {
        // The start failed. Calls waiting for it learn why; retrying at once would only fail
        // again (a bad handler) or pile more load on a struggling host.
        removeInstanceLocked(i, actions, /*stop=*/false);
        if (current) failQueueLocked(fs, r.status(), actions);
      } else if (shutdown_ || fs.deleted || !current) {
        removeInstanceLocked(i, actions, /*stop=*/true);
      } else {
        fs.cold.add(static_cast<double>((now - inst.launchedAt).count()) / 1e3, options_.ewmaAlpha);
        inst.lastUsed = now;
        serveQueueLocked(fs, i, now, /*cold=*/true, r.value(), actions);
        linkLocked(fs, i);
        if (instances_[i].busy == 0) idleLocked(i, now);
        // Calls still queued beyond what this instance took may warrant more starts.
        scaleLocked(f, now, actions);
      }
    }
  }

  // ---- keep-alive ----

  void idleLocked(int32_t i, TimePoint now) {
    Instance& inst = instances_[i];
    const Function& fs = functions_[inst.fn];
    inst.expiresAt = now + fs.window.keepAlive;
    if (inst.timerAt <= inst.expiresAt) return;  // a timer is already pending; it re-arms
    inst.timerAt = inst.expiresAt;
    pushTimer(Timer{inst.expiresAt, TimerKind::kExpire, i, inst.gen});
  }

  void onExpireLocked(const Timer& t, TimePoint now, Actions& actions) {
    Instance& inst = instances_[t.index];
    if (inst.gen != t.gen || inst.state != InstState::kReady) return;
    if (inst.timerAt != t.at) return;  // superseded by an earlier timer
    inst.timerAt = TimePoint::max();
    if (inst.busy > 0) return;   // re-armed when it next goes idle
    if (inst.expiresAt > now) {  // used since: wait for the new expiry
      inst.timerAt = inst.expiresAt;
      pushTimer(Timer{inst.expiresAt, TimerKind::kExpire, t.index, inst.gen});
      return;
    }
    Function& fs = functions_[inst.fn];
    if (!inst.draining && inst.revision == fs.ref.revision && fs.live() <= fs.ref.minInstances) {
      return;  // minInstances stay; re-armed when next used
    }
    removeInstanceLocked(t.index, actions, /*stop=*/true);
  }

  void onPrewarmLocked(const Timer& t, TimePoint now, Actions& actions) {
    Function& fs = functions_[t.index];
    if (fs.epoch != t.gen || fs.active() || fs.deleted || shutdown_) return;
    if (fs.live() > 0) return;
    startLocked(t.index, now, /*prewarm=*/true, actions);
  }

  // ---- queue ----

  void armQueueTimerLocked(int32_t f, TimePoint now) {
    Function& fs = functions_[f];
    if (fs.queue.empty()) return;
    TimePoint at = fs.queue.front().enqueued + options_.maxQueueWait;
    auto covered = static_cast<size_t>(fs.starting) * fs.ref.concurrency;
    if (options_.scale == ScalePolicy::kQueueOrScale && covered < fs.queue.size()) {
      // Re-evaluate when the first call no start covers has waited a cold start.
      auto cold = Duration(static_cast<int64_t>(coldEstimateUs(fs) * 1e3));
      TimePoint due = fs.queue[covered].enqueued + cold;
      at = std::min(at, due > now ? due : now + cold);  // then every cold start while it waits
    }
    if (fs.queueTimerAt <= at && fs.queueTimerAt >= now) return;
    fs.queueTimerAt = at;
    pushTimer(Timer{at, TimerKind::kQueue, f, 0});
  }

  void onQueueTimerLocked(int32_t f, TimePoint now, Actions& actions) {
    Function& fs = functions_[f];
    if (fs.queueTimerAt > now) return;  // a later one replaced it
    fs.queueTimerAt = TimePoint::max();
    bool expired = false;
    while (!fs.queue.empty() && now - fs.queue.front().enqueued >= options_.maxQueueWait) {
      auto done = std::move(fs.queue.front().done);
      fs.queue.pop_front();
      ++counters_.queueTimeouts;
      expired = true;
      int64_t waitedMs = toMillis(options_.maxQueueWait);
      actions.push_back([done = std::move(done), waitedMs, key = fs.ref.key] {
        done(Status(Code::kResourceExhausted, "no instance of " + key +
                                                  " became available within " +
                                                  std::to_string(waitedMs) + " ms"));
      });
    }
    scaleLocked(f, now, actions);
    armQueueTimerLocked(f, now);
    if (expired && !fs.active()) becomeIdleLocked(f, now, actions);
  }

  void failQueueLocked(Function& fs, const Status& status, Actions& actions) {
    while (!fs.queue.empty()) {
      auto done = std::move(fs.queue.front().done);
      fs.queue.pop_front();
      actions.push_back([done = std::move(done), status] { done(status); });
    }
  }

  // ---- hosts ----

  void addLocalHostLocked() {
    HostSpec local;
    local.id = "local";
    local.zone = "local";
    local.memoryMb = int64_t{1} << 40;
    local.cpuMillis = int64_t{1} << 40;
    local.maxInstances = INT_MAX;
    int h = placer_.addHost(local);
    if (static_cast<size_t>(h) >= hosts_.size()) hosts_.resize(h + 1);
    hosts_[h].monitored = false;
  }

  void armHealthLocked(TimePoint now) {
    if (options_.hostTimeout <= Duration::zero() || healthArmed_) return;
    healthArmed_ = true;
    pushTimer(Timer{now + options_.hostTimeout / 2, TimerKind::kHealth, 0, 0});
  }

  void onHealthLocked(TimePoint now, Actions& actions) {
    healthArmed_ = false;
    for (size_t h = 0; h < hosts_.size(); ++h) {
      if (!hosts_[h].monitored || !placer_.alive(static_cast<int>(h))) continue;
      if (now - hosts_[h].lastSeen > options_.hostTimeout) {
        hostDeadLocked(static_cast<int>(h), now, actions);
      }
    }
    armHealthLocked(now);
  }

  void hostDeadLocked(int h, TimePoint now, Actions& actions) {
    ++counters_.hostsDead;
    placer_.setAlive(h, false);
    std::vector<int32_t> lost = hosts_[h].instances;
    std::vector<std::pair<int32_t, int>> perFunction;  // function, instances to replace
    for (int32_t i : lost) {
      Instance& inst = instances_[i];
      bool replace = !inst.draining && inst.revision == functions_[inst.fn].ref.revision;
      if (replace) {
        auto it = std::find_if(perFunction.begin(), perFunction.end(),
                               [&](const auto& p) { return p.first == inst.fn; });
        if (it == perFunction.end()) {
          perFunction.push_back({inst.fn, 1});
        } else {
          ++it->second;
        }
      }
      removeInstanceLocked(i, actions, /*stop=*/true);
    }
    for (auto [f, n] : perFunction) {
      Function& fs = functions_[f];
      for (int k = 0; k < n && fs.live() < fs.ref.maxInstances && !fs.deleted && !shutdown_; ++k) {
        if (!startLocked(f, now, /*prewarm=*/true, actions)) break;
        ++counters_.instancesReplaced;
      }
      scaleLocked(f, now, actions);
    }
  }

  // ---- instances ----

  int32_t allocInstanceLocked() {
    if (!freeInstances_.empty()) {
      int32_t i = freeInstances_.back();
      freeInstances_.pop_back();
      return i;
    }
    instances_.emplace_back();
    return static_cast<int32_t>(instances_.size()) - 1;
  }

  uint64_t newIdNumberLocked() { return (idBase_ + ++idCounter_) & 0xffffffffffffULL; }

  // "i-%012llx" without snprintf's format parsing (one per start).
  static std::string formatId(uint64_t n) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(14, '0');
    id[0] = 'i';
    id[1] = '-';
    for (int k = 13; k >= 2; --k, n >>= 4) id[k] = kHex[n & 15];
    return id;
  }

  void drainLocked(Function& fs, int64_t keepRevision, Actions& actions) {
    std::vector<int32_t> stopNow;
    for (int32_t i : fs.instances) {
      Instance& inst = instances_[i];
      if (inst.revision >= keepRevision || inst.state != InstState::kReady) continue;
      if (!inst.draining && inst.revision == fs.ref.revision) fs.busySlots -= inst.busy;
      unlinkLocked(fs, i);
      inst.draining = true;
      if (inst.busy == 0) stopNow.push_back(i);
    }
    for (int32_t i : stopNow) removeInstanceLocked(i, actions, /*stop=*/true);
    // Deleted: starts in flight are stopped when they complete.
    if (keepRevision == INT64_MAX) abandonStartsLocked(fs);
  }

  // Starts in flight stop counting for the function's current revision; they are stopped when
  // they complete.
  void abandonStartsLocked(Function& fs) {
    for (int32_t i : fs.instances) {
      Instance& inst = instances_[i];
      if (inst.state == InstState::kStarting && inst.wanted) {
        inst.wanted = false;
        --fs.starting;
        ++fs.startingOld;
      }
    }
  }

  void removeInstanceLocked(int32_t i, Actions& actions, bool stop) {
    Instance& inst = instances_[i];
    if (inst.state == InstState::kFree) return;
    Function& fs = functions_[inst.fn];
    unlinkLocked(fs, i);
    if (inst.state == InstState::kReady) {
      --readyCount_;
      --fs.ready;
      busySlots_ -= inst.busy;
      fs.inflight = std::max(0, fs.inflight - inst.busy);
      if (!inst.draining && inst.revision == fs.ref.revision) fs.busySlots -= inst.busy;
    } else {  // starting: forgotten; its completion stops it (onReady)
      --startingCount_;
      if (inst.wanted) {
        --fs.starting;
      } else {
        --fs.startingOld;
      }
      stop = false;
    }
    // Swap-remove from the function's and the host's vectors.
    int32_t last = fs.instances.back();
    fs.instances[inst.posInFn] = last;
    instances_[last].posInFn = inst.posInFn;
    fs.instances.pop_back();
    HostState& hs = hosts_[inst.host];
    int32_t lastH = hs.instances.back();
    hs.instances[inst.posInHost] = lastH;
    instances_[lastH].posInHost = inst.posInHost;
    hs.instances.pop_back();
    int zone = placer_.zoneIndex(inst.host);
    --fs.zoneCounts[zone];
    PlacementRequest req;
    req.memoryMb = inst.memoryMb;
    req.cpuMillis = inst.cpuMillis;
    placer_.unplace(inst.host, req);
    idIndex_.erase(inst.idNumber);
    ++counters_.instancesStopped;
    if (stop) {
      actions.push_back([this, idNumber = inst.idNumber] { launcher_.stop(formatId(idNumber)); });
    }
    inst.state = InstState::kFree;
    ++inst.gen;
    inst.busy = 0;
    inst.draining = false;
    inst.wanted = true;
    inst.timerAt = TimePoint::max();
    inst.expiresAt = TimePoint::max();
    freeInstances_.push_back(i);
  }

  void noteStartLocked(RuntimeState& rt, TimePoint now) {
    constexpr auto kWindow = std::chrono::seconds(1);
    if (now - rt.windowStart >= kWindow) {
      double elapsed = std::chrono::duration<double>(now - rt.windowStart).count();
      double rate = static_cast<double>(rt.startsInWindow) / elapsed;
      rt.ratePerSec = 0.7 * rt.ratePerSec + 0.3 * rate;
      rt.windowStart = now;
      rt.startsInWindow = 0;
    }
    ++rt.startsInWindow;
  }

  void pushTimer(const Timer& t) { timers_.push(t); }

  InstanceLauncher& launcher_;
  const Clock& clock_;
  SchedulerOptions options_;
  mutable std::mutex mu_;
  Placer placer_;                    // GUARDED_BY(mu_)
  std::vector<HostState> hosts_;     // GUARDED_BY(mu_), by placer index
  std::vector<Function> functions_;  // GUARDED_BY(mu_)
  // Open addressing: one probe into a flat array, no node per key (100k+ functions).
  boost::unordered_flat_map<std::string, int32_t> fnIndex_;  // GUARDED_BY(mu_)
  std::vector<Instance> instances_;                          // GUARDED_BY(mu_), slots reused
  std::vector<int32_t> freeInstances_;                       // GUARDED_BY(mu_)
  boost::unordered_flat_map<uint64_t, int32_t> idIndex_;     // GUARDED_BY(mu_), id number -> slot
  std::vector<RuntimeState> runtimes_;                       // GUARDED_BY(mu_)
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;  // GUARDED_BY(mu_)
  SchedulerStats counters_;                                                // GUARDED_BY(mu_)
  int64_t readyCount_ = 0;                                                 // GUARDED_BY(mu_)
  int64_t startingCount_ = 0;                                              // GUARDED_BY(mu_)
  int64_t busySlots_ = 0;                                                  // GUARDED_BY(mu_)
  Status lastPlacementStatus_;                                             // GUARDED_BY(mu_)
  bool healthArmed_ = false;                                               // GUARDED_BY(mu_)
  uint64_t idBase_ = 0;
  uint64_t idCounter_ = 0;  // GUARDED_BY(mu_)
  bool shutdown_ = false;   // GUARDED_BY(mu_)
};

Scheduler::Scheduler(InstanceLauncher& launcher, const Clock& clock, SchedulerOptions options)
    : impl_(std::make_unique<Impl>(launcher, clock, std::move(options))) {}
Scheduler::~Scheduler() = default;

void Scheduler::acquire(const FunctionRef& fn, std::function<void(Result<Lease>)> done) {
  impl_->acquire(FunctionHandle{}, fn, std::move(done));
}
void Scheduler::acquire(FunctionHandle handle, const FunctionRef& fn,
                        std::function<void(Result<Lease>)> done) {
  impl_->acquire(handle, fn, std::move(done));
}
FunctionHandle Scheduler::intern(const std::string& functionKey) {
  return impl_->intern(functionKey);
}
void Scheduler::release(const Lease& lease, bool healthy) { impl_->release(lease, healthy); }
void Scheduler::instanceLost(const std::string& instanceId) { impl_->instanceLost(instanceId); }
void Scheduler::drain(const std::string& functionKey, int64_t keepRevision) {
  impl_->drain(functionKey, keepRevision);
}
void Scheduler::ensure(const FunctionRef& fn) { impl_->ensure(fn); }
void Scheduler::tick() { impl_->tick(); }
TimePoint Scheduler::nextTimer() const { return impl_->nextTimer(); }
void Scheduler::shutdown() { impl_->shutdown(); }
void Scheduler::addHost(const HostSpec& host) { impl_->addHost(host); }
void Scheduler::heartbeat(const std::string& hostId) { impl_->heartbeat(hostId); }
void Scheduler::hostDead(const std::string& hostId) { impl_->hostDead(hostId); }
SchedulerStats Scheduler::stats() const { return impl_->stats(); }
PlacementStats Scheduler::placementStats() const { return impl_->placementStats(); }
size_t Scheduler::instanceCount(const std::string& functionKey) const {
  return impl_->instanceCount(functionKey);
}
FunctionEstimates Scheduler::estimates(const std::string& functionKey) const {
  return impl_->estimates(functionKey);
}
std::map<std::string, int> Scheduler::prewarmTargets() const { return impl_->prewarmTargets(); }

}  // namespace stratus
