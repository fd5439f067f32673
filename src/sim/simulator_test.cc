#include "sim/simulator.h"

#include <gtest/gtest.h>

#include "common/json.h"

namespace stratus::sim {
namespace {

using std::chrono::milliseconds;

SimOptions options(ScalePolicy scale, Duration cold = milliseconds(100)) {
  SimOptions o;
  o.hosts = 4;
  o.hostMemoryMb = 16 * 1024;
  o.coldStart = cold;
  o.scheduler.scale = scale;
  o.scheduler.defaultColdStart = cold;
  o.scheduler.deterministicIds = true;
  o.scheduler.isolation = IsolationLevel::kTenant;
  return o;
}

Trace synthetic(const std::string& spec) {
  auto s = parseSyntheticSpec(spec);
  EXPECT_TRUE(s.isOk()) << s.status().toString();
  return generateSynthetic(*s);
}

SimResult run(const Trace& t, const SimOptions& o) {
  auto r = simulate(t, o);
  EXPECT_TRUE(r.isOk()) << r.status().toString();
  return r.isOk() ? *r : SimResult{};
}

// Scenario 1 of the seed: evenly spaced calls shorter than the gap need exactly one instance.
TEST(SimulatorTest, EvenlySpacedShortCallsNeedExactlyOneInstance) {
  Trace t = synthetic("uniform:rate=10,seconds=60,exec-ms=50");
  for (ScalePolicy p : {ScalePolicy::kNaive, ScalePolicy::kQueueOrScale}) {
    // The first call's cold start (20 ms) still ends before the second call.
    SimResult r = run(t, options(p, milliseconds(20)));
    EXPECT_EQ(r.invocations, 600);
    EXPECT_EQ(r.completed, 600);
    EXPECT_EQ(r.instancesCreated, 1) << toString(p);
    EXPECT_EQ(r.coldStarts, 1);
    EXPECT_EQ(r.peakInstances, 1);
    // Busy 50 ms of every 100 ms while the instance exists (keep-alive tail excluded: the
    // trace ends at the last call).
    EXPECT_NEAR(r.utilization, 0.5, 0.01);
    EXPECT_NEAR(r.queueDelayMsP99, 0, 0.01);
  }
}

// Scenario 2: calls arrive in pairs a millisecond apart, one pair every 200 ms, 50 ms each.
// Naive scaling starts a second container for the momentary overlap; queue-or-scale lets the
// second call of a pair wait ~50 ms for the first one's slot. (A lone call comes first so that
// the execution time is known when the first pair arrives.)
TEST(SimulatorTest, ClumpedArrivalsDoubleTheContainersOnlyUnderNaiveScaling) {
  Trace t = synthetic("clumped:rate=10,seconds=60,exec-ms=50,clump=2,clump-ms=1,warmup=1");
  ASSERT_EQ(t.invocations[0].startUs, 0);
  ASSERT_EQ(t.invocations[1].startUs / 1'000'000, 1);
  // A start (100 ms) takes longer than waiting for the first call of the pair (50 ms).
  SimResult naive = run(t, options(ScalePolicy::kNaive, milliseconds(100)));
  SimResult qos = run(t, options(ScalePolicy::kQueueOrScale, milliseconds(100)));
  EXPECT_EQ(naive.instancesCreated, 2);
  EXPECT_EQ(qos.instancesCreated, 1);
  EXPECT_NEAR(qos.utilization, 2 * naive.utilization, 0.02);
  EXPECT_LE(qos.queueDelayMsP99, 51);
  EXPECT_GE(qos.queueDelayMsP99, 45);
  EXPECT_EQ(qos.completed, naive.completed);
}

// Scenario 3: slow cold starts (1 s) and calls every 10 ms that take 12 ms. Every call that
// finds no free slot during a start triggers another start under naive scaling: an avalanche.
TEST(SimulatorTest, SlowColdStartsAvalancheOnlyUnderNaiveScaling) {
  Trace t = synthetic("uniform:rate=100,seconds=30,exec-ms=12");
  SimResult naive = run(t, options(ScalePolicy::kNaive, milliseconds(1000)));
  SimResult qos = run(t, options(ScalePolicy::kQueueOrScale, milliseconds(1000)));
  EXPECT_GE(naive.instancesCreated, 90);
  // At most maxConcurrentStarts (8) starts in flight while nothing is known (a start that
  // completes before the first call does lets one more begin); once execution time is measured
  // the backlog is worked through by the instances there are.
  EXPECT_LE(qos.instancesCreated, 12);
  EXPECT_GT(qos.utilization, 5 * naive.utilization);
  EXPECT_EQ(qos.failed, 0);
  EXPECT_EQ(qos.completed, naive.completed);
}

TEST(SimulatorTest, HybridKeepAliveAvoidsColdStartsOfAPeriodicFunction) {
  // One call every 30 minutes for a day: a 10-minute fixed keep-alive makes every call cold.
  Trace t = synthetic("uniform:rate=0.000555556,seconds=86000,exec-ms=100");
  SimOptions fixed = options(ScalePolicy::kQueueOrScale);
  fixed.scheduler.keepAlive = std::chrono::minutes(10);
  SimOptions hybrid = fixed;
  hybrid.scheduler.keepAlivePolicy.policy = KeepAlivePolicy::kHybridHistogram;
  SimResult f = run(t, fixed);
  SimResult h = run(t, hybrid);
  EXPECT_EQ(f.invocations, 48);
  EXPECT_DOUBLE_EQ(f.coldStartRatio, 1.0);
  EXPECT_LE(h.coldStarts, 2);
  // Pre-warming: the memory held is about a keep-alive window per call, not 4 hours of it.
  EXPECT_LT(h.gbSecondsProvisioned, 1.2 * f.gbSecondsProvisioned);
}

TEST(SimulatorTest, TooSmallAClusterReportsPlacementFailures) {
  Trace t = synthetic("poisson:rate=5,seconds=10,functions=50,exec-ms=200,memory-mb=512");
  SimOptions o = options(ScalePolicy::kQueueOrScale);
  o.hosts = 1;
  o.hostMemoryMb = 2048;  // four instances
  o.scheduler.isolation = IsolationLevel::kMixed;
  SimResult r = run(t, o);
  EXPECT_GT(r.placementFailures, 0);
  EXPECT_GT(r.failed, 0);
  EXPECT_LE(r.peakInstances, 4);
}

TEST(SimulatorTest, JsonCarriesTheFieldsTheIssueAsksFor) {
  Trace t = synthetic("poisson:rate=20,seconds=10,functions=3");
  SimOptions o = options(ScalePolicy::kQueueOrScale);
  SimResult r = run(t, o);
  auto j = parseJson(toJson(r, o));
  ASSERT_TRUE(j.isOk());
  const auto& obj = j->as_object();
  for (const char* k :
       {"invocations", "cold_starts", "cold_start_ratio", "instances_created", "peak_instances",
        "gb_seconds_provisioned", "gb_seconds_busy", "utilization", "queue_delay_ms_p50",
        "queue_delay_ms_p99", "placement_failures", "decisions_per_second"}) {
    EXPECT_TRUE(obj.contains(k)) << k;
  }
  EXPECT_EQ(obj.at("invocations").as_int64(), r.invocations);
  EXPECT_GT(r.decisionsPerSecond, 0);
  EXPECT_GT(r.speedup, 1);
}

TEST(SimulatorTest, RunsTheAzureFixtures) {
  const std::string data = STRATUS_SIM_TESTDATA;
  TraceOptions to;
  auto t2019 = loadTrace(data + "/azure2019-format-invocations.csv", "azure2019", to);
  ASSERT_TRUE(t2019.isOk());
  SimResult r = run(*t2019, options(ScalePolicy::kQueueOrScale));
  EXPECT_EQ(r.invocations, 4525);
  EXPECT_EQ(r.completed, 4525);
  EXPECT_GT(r.utilization, 0);
  auto t2021 = loadTrace(data + "/azure2021-format-synthetic-30.csv", "azure2021", to);
  ASSERT_TRUE(t2021.isOk());
  SimResult r2 = run(*t2021, options(ScalePolicy::kQueueOrScale));
  EXPECT_EQ(r2.completed, 29);
}

}  // namespace
}  // namespace stratus::sim
