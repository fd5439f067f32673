#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <climits>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace stratus {
namespace {

// Records launches and stops; the test decides when (and whether) a launch completes.
class FakeLauncher : public InstanceLauncher {
 public:
  struct Launch {
    std::string id;
    FunctionRef fn;
    std::function<void(Result<int64_t>)> ready;
    std::string host;
  };
  void launch(const std::string& id, const FunctionRef& fn,
              std::function<void(Result<int64_t>)> ready) override {
    launches.push_back({id, fn, std::move(ready), ""});
  }
  void launchOn(const std::string& host, const std::string& id, const FunctionRef& fn,
                std::function<void(Result<int64_t>)> ready) override {
    launches.push_back({id, fn, std::move(ready), host});
  }
  void stop(const std::string& id) override { stopped.push_back(id); }

  std::vector<Launch> launches;
  std::vector<std::string> stopped;
};

struct Outcome {
  std::optional<Result<Lease>> result;
};

class SchedulerTest : public ::testing::Test {
 protected:
  explicit SchedulerTest(SchedulerOptions o = options()) : scheduler_(launcher_, clock_, o) {}
  static SchedulerOptions options() {
    SchedulerOptions o;
    o.scale = ScalePolicy::kNaive;  // the first version's behaviour
    o.keepAlive = std::chrono::seconds(60);
    o.maxQueueWait = std::chrono::seconds(5);
    return o;
  }
  static FunctionRef fn(int concurrency = 1, int maxInstances = 100, int64_t revision = 1) {
    FunctionRef ref;
    ref.key = "t/f";
    ref.revision = revision;
    ref.concurrency = concurrency;
    ref.maxInstances = maxInstances;
    return ref;
  }
  std::shared_ptr<Outcome> acquire(const FunctionRef& ref) {
    auto out = std::make_shared<Outcome>();
    scheduler_.acquire(ref, [out](Result<Lease> r) { out->result = std::move(r); });
    return out;
  }

  FakeLauncher launcher_;
  ManualClock clock_;
  Scheduler scheduler_;
};

TEST_F(SchedulerTest, FirstCallStartsAnInstanceAndIsCold) {
  auto a = acquire(fn());
  ASSERT_EQ(launcher_.launches.size(), 1u);
  EXPECT_FALSE(a->result.has_value());
  launcher_.launches[0].ready(int64_t{1234});
  ASSERT_TRUE(a->result.has_value());
  ASSERT_TRUE(a->result->isOk());
  EXPECT_TRUE((*a->result)->coldStart);
  EXPECT_EQ((*a->result)->initDurationUs, 1234);
  EXPECT_EQ((*a->result)->instanceId, launcher_.launches[0].id);

  // Released: the next call reuses it, warm.
  scheduler_.release(**a->result, true);
  auto b = acquire(fn());
  ASSERT_TRUE(b->result.has_value() && b->result->isOk());
  EXPECT_FALSE((*b->result)->coldStart);
  EXPECT_EQ(launcher_.launches.size(), 1u);
}

TEST_F(SchedulerTest, ConcurrencyOneScalesToOneInstancePerParallelCall) {
  std::vector<std::shared_ptr<Outcome>> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(acquire(fn(1)));
  EXPECT_EQ(launcher_.launches.size(), 5u);
  for (auto& l : launcher_.launches) l.ready(int64_t{10});
  std::set<std::string> ids;
  for (auto& c : calls) {
    ASSERT_TRUE(c->result.has_value() && c->result->isOk());
    ids.insert((*c->result)->instanceId);
  }
  EXPECT_EQ(ids.size(), 5u);
}

TEST_F(SchedulerTest, ConcurrencyNPacksParallelCallsIntoOneInstance) {
  std::vector<std::shared_ptr<Outcome>> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(acquire(fn(5)));
  ASSERT_EQ(launcher_.launches.size(), 1u);
  launcher_.launches[0].ready(int64_t{10});
  for (auto& c : calls) {
    ASSERT_TRUE(c->result.has_value() && c->result->isOk());
    EXPECT_EQ((*c->result)->instanceId, launcher_.launches[0].id);
  }
  // A sixth call finds the instance full and scales out.
  auto sixth = acquire(fn(5));
  EXPECT_EQ(launcher_.launches.size(), 2u);
  EXPECT_FALSE(sixth->result.has_value());
}

TEST_F(SchedulerTest, MaxInstancesCapsScaleOutAndQueuedCallsTakeFreedSlots) {
  std::vector<std::shared_ptr<Outcome>> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(acquire(fn(1, 2)));
  ASSERT_EQ(launcher_.launches.size(), 2u);
  for (auto& l : launcher_.launches) l.ready(int64_t{1});
  EXPECT_TRUE(calls[0]->result.has_value());
  EXPECT_TRUE(calls[1]->result.has_value());
  EXPECT_FALSE(calls[2]->result.has_value());
  scheduler_.release(**calls[0]->result, true);
  ASSERT_TRUE(calls[2]->result.has_value() && calls[2]->result->isOk());
  EXPECT_FALSE((*calls[2]->result)->coldStart);
  EXPECT_EQ(launcher_.launches.size(), 2u);
}

TEST_F(SchedulerTest, QueuedCallsExpireAfterMaxQueueWait) {
  auto a = acquire(fn(1, 1));
  launcher_.launches[0].ready(int64_t{1});
  auto b = acquire(fn(1, 1));
  clock_.advance(std::chrono::seconds(4));
  scheduler_.tick();
  EXPECT_FALSE(b->result.has_value());
  clock_.advance(std::chrono::seconds(2));
  scheduler_.tick();
  ASSERT_TRUE(b->result.has_value());
  EXPECT_EQ(b->result->status().code(), Code::kResourceExhausted);
}

TEST_F(SchedulerTest, IdleInstancesAreReclaimedAfterKeepAlive) {
  auto a = acquire(fn());
  launcher_.launches[0].ready(int64_t{1});
  scheduler_.release(**a->result, true);
  clock_.advance(std::chrono::seconds(59));
  scheduler_.tick();
  EXPECT_TRUE(launcher_.stopped.empty());
  clock_.advance(std::chrono::seconds(2));
  scheduler_.tick();
  ASSERT_EQ(launcher_.stopped.size(), 1u);
  EXPECT_EQ(launcher_.stopped[0], launcher_.launches[0].id);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 0u);
}

TEST_F(SchedulerTest, BusyInstancesAreNotReclaimed) {
  auto a = acquire(fn());
  launcher_.launches[0].ready(int64_t{1});
  clock_.advance(std::chrono::minutes(5));
  scheduler_.tick();
  EXPECT_TRUE(launcher_.stopped.empty());
}

TEST_F(SchedulerTest, FailedStartFailsWaitingCallsWithItsCause) {
  auto a = acquire(fn());
  auto b = acquire(fn());
  ASSERT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[0].ready(Status(Code::kFailedPrecondition, "{\"errorType\":\"x\"}"));
  ASSERT_TRUE(a->result.has_value());
  EXPECT_EQ(a->result->status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(b->result.has_value());
  EXPECT_EQ(b->result->status().code(), Code::kFailedPrecondition);
}

TEST_F(SchedulerTest, NewRevisionDrainsOldInstances) {
  auto a = acquire(fn(1, 100, 1));
  auto b = acquire(fn(1, 100, 1));
  for (auto& l : launcher_.launches) l.ready(int64_t{1});
  scheduler_.release(**a->result, true);  // idle
  // b stays busy. Revision 2 arrives.
  scheduler_.drain("t/f", 2);
  ASSERT_EQ(launcher_.stopped.size(), 1u);
  EXPECT_EQ(launcher_.stopped[0], (*a->result)->instanceId);
  auto c = acquire(fn(1, 100, 2));
  ASSERT_EQ(launcher_.launches.size(), 3u);
  EXPECT_EQ(launcher_.launches[2].fn.revision, 2);
  // The busy old instance stops as soon as its call returns.
  scheduler_.release(**b->result, true);
  ASSERT_EQ(launcher_.stopped.size(), 2u);
  EXPECT_EQ(launcher_.stopped[1], (*b->result)->instanceId);
}

TEST_F(SchedulerTest, DeleteFailsQueuedCallsWithNotFound) {
  auto a = acquire(fn());
  scheduler_.drain("t/f", INT64_MAX);
  ASSERT_TRUE(a->result.has_value());
  EXPECT_EQ(a->result->status().code(), Code::kNotFound);
  // The launch that was in flight is stopped when it completes.
  launcher_.launches[0].ready(int64_t{1});
  ASSERT_EQ(launcher_.stopped.size(), 1u);
}

TEST_F(SchedulerTest, LostAndUnhealthyInstancesAreForgotten) {
  auto a = acquire(fn());
  launcher_.launches[0].ready(int64_t{1});
  scheduler_.instanceLost((*a->result)->instanceId);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 0u);
  scheduler_.release(**a->result, true);  // late release of a lost instance is harmless
  auto b = acquire(fn());
  ASSERT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[1].ready(int64_t{1});
  scheduler_.release(**b->result, /*healthy=*/false);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 0u);
  ASSERT_EQ(launcher_.stopped.size(), 1u);
}

TEST_F(SchedulerTest, LostInstanceWithQueuedCallsStartsAReplacement) {
  auto a = acquire(fn(1, 1));
  launcher_.launches[0].ready(int64_t{1});
  auto b = acquire(fn(1, 1));  // queued: cap reached
  EXPECT_EQ(launcher_.launches.size(), 1u);
  scheduler_.instanceLost((*a->result)->instanceId);
  ASSERT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[1].ready(int64_t{1});
  ASSERT_TRUE(b->result.has_value() && b->result->isOk());
}

TEST_F(SchedulerTest, InternOnlyNamesTheFunctionAndHandlesRouteLikeKeys) {
  FunctionHandle h = scheduler_.intern("t/f");
  ASSERT_TRUE(h.valid());
  EXPECT_EQ(scheduler_.intern("t/f").index, h.index);
  FunctionHandle other = scheduler_.intern("t/g");
  EXPECT_NE(other.index, h.index);
  // Named, not registered: nothing starts and a delete of it changes nothing.
  EXPECT_TRUE(launcher_.launches.empty());
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 0u);
  scheduler_.drain("t/f", INT64_MAX);

  auto out = std::make_shared<Outcome>();
  auto into = [](const std::shared_ptr<Outcome>& o) {
    return [o](Result<Lease> r) { o->result = std::move(r); };
  };
  scheduler_.acquire(h, fn(), into(out));
  ASSERT_EQ(launcher_.launches.size(), 1u);
  EXPECT_EQ(launcher_.launches[0].fn.key, "t/f");
  launcher_.launches[0].ready(int64_t{5});
  ASSERT_TRUE(out->result.has_value() && out->result->isOk());
  EXPECT_TRUE((*out->result)->coldStart);
  EXPECT_EQ((*out->result)->functionKey, "t/f");
  scheduler_.release(**out->result, true);

  // By key, by handle, by another key's handle and by an invalid one: the same warm instance.
  auto byKey = acquire(fn());
  ASSERT_TRUE(byKey->result.has_value() && byKey->result->isOk());
  scheduler_.release(**byKey->result, true);
  for (FunctionHandle hh : {h, other, FunctionHandle{}, FunctionHandle{1000}}) {
    auto o = std::make_shared<Outcome>();
    scheduler_.acquire(hh, fn(), into(o));
    ASSERT_TRUE(o->result.has_value() && o->result->isOk());
    EXPECT_FALSE((*o->result)->coldStart);
    EXPECT_EQ((*o->result)->instanceId, launcher_.launches[0].id);
    scheduler_.release(**o->result, true);
  }
  EXPECT_EQ(launcher_.launches.size(), 1u);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 1u);
  EXPECT_EQ(scheduler_.instanceCount("t/g"), 0u);
}

TEST_F(SchedulerTest, LeaseWithoutHandleIsResolvedByInstanceId) {
  auto a = acquire(fn());
  launcher_.launches[0].ready(int64_t{1});
  ASSERT_TRUE(a->result.has_value() && a->result->isOk());
  Lease byId = **a->result;
  byId.handle = 0;  // e.g. a lease that crossed the network
  // Ids that name no instance change nothing.
  std::string id = byId.instanceId;
  std::string upper = id;
  upper[0] = 'I';
  for (const std::string& bogus : {std::string("i-"), std::string("x"), upper, id + "0",
                                   id.substr(0, 13) + "g", std::string("i-ffffffffffff")}) {
    Lease l = byId;
    l.instanceId = bogus;
    scheduler_.release(l, true);
    scheduler_.instanceLost(bogus);
  }
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 1u);
  // The slot is still taken: a second call starts another instance.
  auto b = acquire(fn());
  EXPECT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[1].ready(int64_t{1});
  ASSERT_TRUE(b->result.has_value() && b->result->isOk());
  scheduler_.release(**b->result, true);
  // Released by id: the slot frees and the next call reuses the instance.
  scheduler_.release(byId, true);
  auto c = acquire(fn());
  auto d = acquire(fn());
  ASSERT_TRUE(c->result.has_value() && d->result.has_value());
  EXPECT_EQ(launcher_.launches.size(), 2u);
  scheduler_.instanceLost(id);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 1u);
}

TEST_F(SchedulerTest, ShutdownAbortsQueuedCallsAndStopsInstances) {
  auto a = acquire(fn(1, 1));
  launcher_.launches[0].ready(int64_t{1});
  auto b = acquire(fn(1, 1));
  scheduler_.shutdown();
  ASSERT_TRUE(b->result.has_value());
  EXPECT_EQ(b->result->status().code(), Code::kAborted);
  EXPECT_EQ(launcher_.stopped.size(), 1u);
  auto c = acquire(fn());
  ASSERT_TRUE(c->result.has_value());
  EXPECT_EQ(c->result->status().code(), Code::kAborted);
}

// ---- the policies added by the scheduler issue ----

using std::chrono::milliseconds;
using std::chrono::seconds;

SchedulerOptions qosOptions() {
  SchedulerOptions o;
  o.keepAlive = seconds(60);
  o.maxQueueWait = seconds(5);
  o.scale = ScalePolicy::kQueueOrScale;
  o.defaultColdStart = milliseconds(100);
  o.deterministicIds = true;
  return o;
}

class QueueOrScaleTest : public SchedulerTest {
 protected:
  QueueOrScaleTest() : SchedulerTest(qosOptions()) {}
  // One instance, started in 100 ms, that has served one 10 ms call: the estimates are known.
  void warmUp() {
    auto a = acquire(fn());
    clock_.advance(milliseconds(100));
    launcher_.launches[0].ready(int64_t{100000});
    clock_.advance(milliseconds(10));
    scheduler_.release(**a->result, true);
  }
};

TEST_F(QueueOrScaleTest, EstimatesAreMeasured) {
  warmUp();
  auto e = scheduler_.estimates("t/f");
  EXPECT_DOUBLE_EQ(e.coldStartUs, 100000);
  EXPECT_DOUBLE_EQ(e.execUs, 10000);
}

TEST_F(QueueOrScaleTest, WaitsForABusySlotThatFreesSoonerThanAColdStart) {
  warmUp();
  auto b = acquire(fn());
  ASSERT_TRUE(b->result.has_value());
  clock_.advance(milliseconds(1));
  auto c = acquire(fn());  // the only instance is busy for ~9 ms more; a start takes 100 ms
  EXPECT_EQ(launcher_.launches.size(), 1u);
  EXPECT_FALSE(c->result.has_value());
  EXPECT_EQ(scheduler_.stats().startsDeferred, 1);
  clock_.advance(milliseconds(8));
  scheduler_.release(**b->result, true);
  ASSERT_TRUE(c->result.has_value() && c->result->isOk());
  EXPECT_FALSE((*c->result)->coldStart);
  EXPECT_EQ((*c->result)->instanceId, launcher_.launches[0].id);
}

TEST_F(SchedulerTest, NaiveStartsAnInstanceForTheSameMomentaryBacklog) {
  auto a = acquire(fn());
  clock_.advance(milliseconds(100));
  launcher_.launches[0].ready(int64_t{100000});
  clock_.advance(milliseconds(10));
  scheduler_.release(**a->result, true);
  auto b = acquire(fn());
  clock_.advance(milliseconds(1));
  auto c = acquire(fn());
  EXPECT_EQ(launcher_.launches.size(), 2u);  // the seed's scenario 2: twice the containers
}

TEST_F(QueueOrScaleTest, ABacklogLongerThanAColdStartScalesOut) {
  warmUp();
  auto b = acquire(fn());
  std::vector<std::shared_ptr<Outcome>> waiting;
  // 10 queued calls x 10 ms on one slot = 100 ms: the tenth would wait as long as a start.
  for (int i = 0; i < 10; ++i) waiting.push_back(acquire(fn()));
  EXPECT_EQ(launcher_.launches.size(), 1u);
  waiting.push_back(acquire(fn()));
  EXPECT_EQ(launcher_.launches.size(), 2u);
}

TEST_F(QueueOrScaleTest, AWrongPredictionStartsAnInstanceAfterAColdStartEstimate) {
  warmUp();
  auto b = acquire(fn());
  clock_.advance(milliseconds(1));
  TimePoint queuedAt = clock_.now();
  auto c = acquire(fn());
  EXPECT_EQ(launcher_.launches.size(), 1u);
  // The call in b hangs. The scheduler re-evaluates when c has waited a cold start.
  EXPECT_EQ(scheduler_.nextTimer(), queuedAt + milliseconds(100));
  clock_.advance(milliseconds(99));
  scheduler_.tick();
  EXPECT_EQ(launcher_.launches.size(), 1u);
  clock_.advance(milliseconds(1));
  scheduler_.tick();
  ASSERT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[1].ready(int64_t{1});
  ASSERT_TRUE(c->result.has_value() && c->result->isOk());
  EXPECT_TRUE((*c->result)->coldStart);
}

TEST_F(QueueOrScaleTest, ConcurrentStartsPerFunctionAreBounded) {
  SchedulerOptions o = qosOptions();
  o.maxConcurrentStarts = 3;
  Scheduler bounded(launcher_, clock_, o);
  FunctionRef ref = fn();
  for (int i = 0; i < 10; ++i) bounded.acquire(ref, [](Result<Lease>) {});
  EXPECT_EQ(launcher_.launches.size(), 3u);
  // One start completes: the bound lets one more begin for the calls still uncovered.
  launcher_.launches[0].ready(int64_t{1});
  EXPECT_EQ(launcher_.launches.size(), 4u);
}

TEST_F(QueueOrScaleTest, ParallelCallsOfANewFunctionStillGetOneInstanceEach) {
  // Nothing is known about the function yet, so nothing argues for waiting (the e2e contract).
  std::vector<std::shared_ptr<Outcome>> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(acquire(fn()));
  EXPECT_EQ(launcher_.launches.size(), 4u);
}

TEST_F(QueueOrScaleTest, MinInstancesAreStartedKeptAndRestored) {
  FunctionRef ref = fn();
  ref.minInstances = 2;
  scheduler_.ensure(ref);
  ASSERT_EQ(launcher_.launches.size(), 2u);
  for (auto& l : launcher_.launches) l.ready(int64_t{1});
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 2u);
  clock_.advance(std::chrono::minutes(5));
  scheduler_.tick();
  EXPECT_TRUE(launcher_.stopped.empty());
  scheduler_.instanceLost(launcher_.launches[0].id);
  ASSERT_EQ(launcher_.launches.size(), 3u);
}

TEST_F(QueueOrScaleTest, HybridPolicyReleasesMemoryAndPrewarmsBeforeThePredictedCall) {
  SchedulerOptions o = qosOptions();
  o.keepAlivePolicy.policy = KeepAlivePolicy::kHybridHistogram;
  o.keepAlivePolicy.binWidth = seconds(1);
  o.keepAlivePolicy.bins = 60;
  o.keepAlivePolicy.minSamples = 3;
  Scheduler hybrid(launcher_, clock_, o);
  FunctionRef ref = fn();
  std::optional<Lease> lease;
  auto call = [&] { hybrid.acquire(ref, [&](Result<Lease> r) { lease = *r; }); };
  // A function called every 30 s. While the histogram learns: the standard keep-alive (60 s).
  call();
  launcher_.launches[0].ready(int64_t{1});
  for (int i = 0; i < 3; ++i) {
    hybrid.release(*lease, true);
    EXPECT_EQ(hybrid.estimates("t/f").window.prewarm, Duration::zero());
    clock_.advance(seconds(30));
    hybrid.tick();
    call();
    EXPECT_FALSE(lease->coldStart);
  }
  ASSERT_EQ(launcher_.launches.size(), 1u);
  // Three idle times of 30 s: pre-warm 27 s, keep-alive to 31 s + 10 %.
  hybrid.release(*lease, true);
  auto w = hybrid.estimates("t/f").window;
  EXPECT_TRUE(w.fromHistogram);
  EXPECT_EQ(w.prewarm, seconds(27));
  ASSERT_EQ(launcher_.stopped.size(), 1u);  // memory given back at once
  EXPECT_EQ(hybrid.instanceCount("t/f"), 0u);
  EXPECT_EQ(hybrid.nextTimer(), clock_.now() + seconds(27));
  clock_.advance(seconds(27));
  hybrid.tick();
  ASSERT_EQ(launcher_.launches.size(), 2u);  // pre-warm
  launcher_.launches[1].ready(int64_t{1});
  clock_.advance(seconds(3));
  hybrid.tick();
  lease.reset();
  call();
  ASSERT_TRUE(lease.has_value());
  EXPECT_FALSE(lease->coldStart);
  EXPECT_EQ(lease->instanceId, launcher_.launches[1].id);
  EXPECT_EQ(hybrid.stats().prewarmStarts, 1);
}

TEST_F(QueueOrScaleTest, StartForgottenWithItsHostIsStoppedByItsIdWhenItCompletes) {
  Scheduler s(launcher_, clock_, qosOptions());
  s.addHost(HostSpec{"small", "a", 1024, 4000, 100});
  s.addHost(HostSpec{"large", "b", 8192, 4000, 100});
  std::optional<Result<Lease>> lease;
  s.acquire(fn(), [&](Result<Lease> r) { lease = std::move(r); });
  ASSERT_EQ(launcher_.launches.size(), 1u);
  EXPECT_EQ(launcher_.launches[0].host, "small");
  s.hostDead("small");  // while the start is in flight: a replacement starts elsewhere
  ASSERT_EQ(launcher_.launches.size(), 2u);
  EXPECT_EQ(launcher_.launches[1].host, "large");
  EXPECT_TRUE(launcher_.stopped.empty());
  launcher_.launches[0].ready(int64_t{1});  // the forgotten start completes
  ASSERT_EQ(launcher_.stopped.size(), 1u);
  EXPECT_EQ(launcher_.stopped[0], launcher_.launches[0].id);
  EXPECT_FALSE(lease.has_value());
  launcher_.launches[1].ready(int64_t{1});
  ASSERT_TRUE(lease.has_value() && lease->isOk());
  EXPECT_EQ((*lease)->instanceId, launcher_.launches[1].id);
  EXPECT_TRUE((*lease)->coldStart);
  // Its host dies too: the ready instance is stopped by its id (no host left for another).
  s.hostDead("large");
  ASSERT_EQ(launcher_.stopped.size(), 2u);
  EXPECT_EQ(launcher_.stopped[1], launcher_.launches[1].id);
  s.release(**lease, true);  // late release of an instance of a dead host: harmless
  EXPECT_EQ(s.instanceCount("t/f"), 0u);
}

TEST_F(QueueOrScaleTest, HostThatStopsReportingIsDeclaredDeadAndItsInstancesReplaced) {
  SchedulerOptions o = qosOptions();
  o.hostTimeout = seconds(10);
  Scheduler s(launcher_, clock_, o);
  s.addHost(HostSpec{"small", "a", 1024, 4000, 100});
  s.addHost(HostSpec{"large", "b", 8192, 4000, 100});
  std::optional<Lease> lease;
  s.acquire(fn(), [&](Result<Lease> r) { lease = *r; });
  ASSERT_EQ(launcher_.launches.size(), 1u);
  EXPECT_EQ(launcher_.launches[0].host, "small");  // best fit
  launcher_.launches[0].ready(int64_t{1});
  ASSERT_TRUE(lease.has_value());
  EXPECT_EQ(lease->hostId, "small");
  s.release(*lease, true);
  for (int t = 0; t < 3; ++t) {
    clock_.advance(seconds(5));
    s.heartbeat("large");
    s.tick();
  }
  // 15 s without a heartbeat from "small".
  EXPECT_EQ(s.stats().hostsDead, 1);
  EXPECT_EQ(s.stats().placement.deadHosts, 1);
  ASSERT_EQ(launcher_.launches.size(), 2u);
  EXPECT_EQ(launcher_.launches[1].host, "large");
  EXPECT_EQ(s.stats().instancesReplaced, 1);
  ASSERT_EQ(launcher_.stopped.size(), 1u);
  EXPECT_EQ(launcher_.stopped[0], launcher_.launches[0].id);
  // A heartbeat brings it back.
  s.heartbeat("small");
  EXPECT_EQ(s.stats().placement.deadHosts, 0);
}

TEST_F(QueueOrScaleTest, NoRoomAnywhereFailsTheCallAtOnce) {
  SchedulerOptions o = qosOptions();
  Scheduler s(launcher_, clock_, o);
  s.addHost(HostSpec{"tiny", "a", 256, 4000, 100});
  FunctionRef big = fn();
  big.memoryMb = 512;
  std::optional<Result<Lease>> out;
  s.acquire(big, [&](Result<Lease> r) { out = std::move(r); });
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status().code(), Code::kResourceExhausted);
  EXPECT_EQ(s.stats().placementFailures, 1);
  EXPECT_TRUE(launcher_.launches.empty());
}

TEST_F(QueueOrScaleTest, TenantIsolationKeepsTenantsOnSeparateHosts) {
  SchedulerOptions o = qosOptions();
  o.isolation = IsolationLevel::kTenant;
  Scheduler s(launcher_, clock_, o);
  s.addHost(HostSpec{"h1", "a", 4096, 4000, 100});
  s.addHost(HostSpec{"h2", "a", 4096, 4000, 100});
  FunctionRef a = fn();
  a.key = "alice/f";
  FunctionRef b = fn();
  b.key = "bob/f";
  s.acquire(a, [](Result<Lease>) {});
  s.acquire(b, [](Result<Lease>) {});
  s.acquire(a, [](Result<Lease>) {});
  ASSERT_EQ(launcher_.launches.size(), 3u);
  EXPECT_NE(launcher_.launches[0].host, launcher_.launches[1].host);
  EXPECT_EQ(launcher_.launches[0].host, launcher_.launches[2].host);
}

TEST_F(QueueOrScaleTest, PrewarmTargetsFollowTheColdStartRate) {
  SchedulerOptions o = qosOptions();
  o.prewarmFloor["python3"] = 2;
  o.scale = ScalePolicy::kNaive;
  o.poolRefill = seconds(1);
  Scheduler s(launcher_, clock_, o);
  EXPECT_EQ(s.prewarmTargets()["python3"], 2);
  FunctionRef ref = fn();
  ref.runtime = "nodejs";
  for (int sec = 0; sec < 5; ++sec) {
    for (int i = 0; i < 10; ++i) s.acquire(ref, [](Result<Lease>) {});
    clock_.advance(seconds(1));
  }
  s.acquire(ref, [](Result<Lease>) {});
  EXPECT_GE(s.prewarmTargets()["nodejs"], 10);
  EXPECT_EQ(s.prewarmTargets()["python3"], 2);
}

}  // namespace
}  // namespace stratus
