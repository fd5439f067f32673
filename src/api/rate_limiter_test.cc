#include "api/rate_limiter.h"

#include <gtest/gtest.h>

namespace stratus {
namespace {

using std::chrono::milliseconds;

TEST(RateLimiterTest, BurstThenRefillAtTheRate) {
  ManualClock clock;
  RateLimiter rl(clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(rl.tryAcquire("t", 2, 3).allowed) << i;
  auto d = rl.tryAcquire("t", 2, 3);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(toMillis(d.retryAfter), 500);  // one token at 2/s
  clock.advance(milliseconds(499));
  EXPECT_FALSE(rl.tryAcquire("t", 2, 3).allowed);
  clock.advance(milliseconds(1));
  EXPECT_TRUE(rl.tryAcquire("t", 2, 3).allowed);
  EXPECT_FALSE(rl.tryAcquire("t", 2, 3).allowed);
  // A long pause refills only up to the burst.
  clock.advance(std::chrono::seconds(100));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(rl.tryAcquire("t", 2, 3).allowed) << i;
  EXPECT_FALSE(rl.tryAcquire("t", 2, 3).allowed);
}

TEST(RateLimiterTest, KeysAreIndependentAndZeroIsUnlimited) {
  ManualClock clock;
  RateLimiter rl(clock);
  EXPECT_TRUE(rl.tryAcquire("a", 1, 1).allowed);
  EXPECT_FALSE(rl.tryAcquire("a", 1, 1).allowed);
  EXPECT_TRUE(rl.tryAcquire("b", 1, 1).allowed);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(rl.tryAcquire("c", 0, 0).allowed);
  EXPECT_EQ(rl.size(), 2u);  // unlimited keys keep no bucket
}

TEST(RateLimiterTest, DefaultBurstIsOneSecondOfRate) {
  ManualClock clock;
  RateLimiter rl(clock);
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += rl.tryAcquire("t", 5, 0).allowed ? 1 : 0;
  EXPECT_EQ(allowed, 5);
}

TEST(RateLimiterTest, EraseForgetsBuckets) {
  ManualClock clock;
  RateLimiter rl(clock);
  EXPECT_TRUE(rl.tryAcquire("acme", 1, 1).allowed);
  EXPECT_TRUE(rl.tryAcquire("acme/f", 1, 1).allowed);
  EXPECT_TRUE(rl.tryAcquire("acme2/f", 1, 1).allowed);
  rl.erasePrefix("acme/");
  EXPECT_EQ(rl.size(), 2u);
  EXPECT_TRUE(rl.tryAcquire("acme/f", 1, 1).allowed);  // a fresh bucket
  rl.erase("acme");
  EXPECT_TRUE(rl.tryAcquire("acme", 1, 1).allowed);
}

}  // namespace
}  // namespace stratus
