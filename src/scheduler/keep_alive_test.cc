#include "scheduler/keep_alive.h"

#include <gtest/gtest.h>

namespace stratus {
namespace {

using std::chrono::minutes;

// Windows come from double arithmetic: equal to within a millisecond is equal.
void expectNear(Duration a, Duration b) {
  EXPECT_LE(std::chrono::abs(a - b), std::chrono::milliseconds(1))
      << a.count() << " ns vs " << b.count() << " ns";
}

KeepAliveOptions hybrid() {
  KeepAliveOptions o;
  o.policy = KeepAlivePolicy::kHybridHistogram;
  return o;
}

TEST(KeepAliveTest, FixedIsTheConfiguredWindow) {
  KeepAliveOptions o;
  o.fixed = minutes(7);
  auto w = keepAliveWindow(o, nullptr);
  EXPECT_EQ(w.prewarm, Duration::zero());
  EXPECT_EQ(w.keepAlive, minutes(7));
}

TEST(KeepAliveTest, HybridWithoutEnoughSamplesKeepsTheWholeRange) {
  KeepAliveOptions o = hybrid();
  IdleTimeHistogram h;
  for (int i = 0; i < o.minSamples - 1; ++i) h.record(minutes(30), o);
  auto w = keepAliveWindow(o, &h);
  EXPECT_FALSE(w.fromHistogram);
  EXPECT_EQ(w.prewarm, Duration::zero());
  EXPECT_EQ(w.keepAlive, std::chrono::hours(4));
}

TEST(KeepAliveTest, HybridLearnsAPeriodicFunction) {
  // Called every 30 minutes: unload after each call, pre-warm shortly before the next.
  KeepAliveOptions o = hybrid();
  IdleTimeHistogram h;
  for (int i = 0; i < 50; ++i) h.record(minutes(30) + std::chrono::seconds(10), o);
  auto w = keepAliveWindow(o, &h);
  EXPECT_TRUE(w.fromHistogram);
  // Head and tail fall in bin 30 (30..31 min): pre-warm 30 min - 10 %, keep-alive covers to
  // 31 min + 10 %.
  expectNear(w.prewarm, minutes(27));
  expectNear(w.prewarm + w.keepAlive, std::chrono::duration_cast<Duration>(minutes(31) * 1.1));
  // The next call at 30 min 10 s lands inside the window.
  EXPECT_LT(w.prewarm, minutes(30) + std::chrono::seconds(10));
  EXPECT_GT(w.prewarm + w.keepAlive, minutes(30) + std::chrono::seconds(10));
}

TEST(KeepAliveTest, HybridShortIdleTimesMeanNoPrewarmAndAShortKeepAlive) {
  KeepAliveOptions o = hybrid();
  IdleTimeHistogram h;
  for (int i = 0; i < 100; ++i) h.record(std::chrono::seconds(20), o);
  auto w = keepAliveWindow(o, &h);
  EXPECT_TRUE(w.fromHistogram);
  EXPECT_EQ(w.prewarm, Duration::zero());
  expectNear(w.keepAlive, std::chrono::duration_cast<Duration>(minutes(1) * 1.1));
}

TEST(KeepAliveTest, HybridFlatHistogramIsNotRepresentative) {
  KeepAliveOptions o = hybrid();
  IdleTimeHistogram h;
  for (int i = 0; i < 240; ++i) h.record(minutes(i), o);  // one sample in every bin: CV 0
  auto w = keepAliveWindow(o, &h);
  EXPECT_FALSE(w.fromHistogram);
  EXPECT_EQ(w.keepAlive, std::chrono::hours(4));
}

TEST(KeepAliveTest, HybridOutOfRangeIdleTimesUseTheForecast) {
  KeepAliveOptions o = hybrid();
  IdleTimeHistogram h;
  for (int i = 0; i < 10; ++i) h.record(std::chrono::hours(10), o);
  auto w = keepAliveWindow(o, &h);
  expectNear(w.prewarm, std::chrono::duration_cast<Duration>(std::chrono::hours(10) * 0.85));
  expectNear(w.keepAlive, std::chrono::duration_cast<Duration>(std::chrono::hours(10) * 0.30));
}

TEST(KeepAliveTest, ParsesNames) {
  EXPECT_EQ(*parseKeepAlivePolicy("hybrid"), KeepAlivePolicy::kHybridHistogram);
  EXPECT_EQ(*parseKeepAlivePolicy("fixed"), KeepAlivePolicy::kFixed);
  EXPECT_FALSE(parseKeepAlivePolicy("forever").isOk());
}

}  // namespace
}  // namespace stratus
