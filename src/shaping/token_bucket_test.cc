#include "shaping/token_bucket.h"

#include <gtest/gtest.h>

#include <chrono>

namespace hikyaku::shaping {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const TimePoint kStart = FromUnixMillis(1'700'000'000'000);

TEST(TokenBucketTest, StartsFullThenRefillsAtTheRate) {
  TokenBucket b(/*rate=*/2, /*burst=*/4, kStart);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(b.TryTake(1, kStart)) << i;
  EXPECT_FALSE(b.TryTake(1, kStart));
  EXPECT_FALSE(b.TryTake(1, kStart + milliseconds(499)));
  EXPECT_TRUE(b.TryTake(1, kStart + milliseconds(500)));
  // An hour idle refills only up to the burst.
  TimePoint later = kStart + std::chrono::hours(1);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(b.TryTake(1, later)) << i;
  EXPECT_FALSE(b.TryTake(1, later));
}

TEST(TokenBucketTest, WhenAvailableIsTheFirstMillisecondTryTakeSucceeds) {
  TokenBucket b(3, 3, kStart);
  ASSERT_TRUE(b.TryTake(3, kStart));
  TimePoint when = b.WhenAvailable(2, kStart);
  EXPECT_EQ(when, kStart + milliseconds(667));
  EXPECT_FALSE(b.TryTake(2, when - milliseconds(1)));
  EXPECT_TRUE(b.TryTake(2, when));
  EXPECT_EQ(b.WhenAvailable(0.5, when), when + milliseconds(167));
}

TEST(TokenBucketTest, ARequestLargerThanTheBurstWaitsForAFullBucketOnlyAndPaysItBack) {
  TokenBucket b(1, 5, kStart);
  ASSERT_TRUE(b.TryTake(5, kStart));
  EXPECT_EQ(b.WhenAvailable(50, kStart), kStart + seconds(5));
  EXPECT_FALSE(b.TryTake(50, kStart + seconds(4)));
  EXPECT_TRUE(b.TryTake(50, kStart + seconds(5)));
  // All 50 were taken: the bucket owes 45, and the rate holds over time.
  EXPECT_NEAR(b.Available(kStart + seconds(5)), -45, 1e-6);
  EXPECT_EQ(b.WhenAvailable(1, kStart + seconds(5)), kStart + seconds(51));
  EXPECT_FALSE(b.TryTake(1, kStart + seconds(50)));
  EXPECT_TRUE(b.TryTake(1, kStart + seconds(51)));
}

TEST(TokenBucketTest, LargeRequestsNeverExceedTheRateOverTime) {
  // 5 a second, burst 5, transactions of 50: in 100 s at most 5 + 500 + 50.
  TokenBucket b(5, 5, kStart);
  double taken = 0;
  for (TimePoint t = kStart; t < kStart + seconds(100); t += milliseconds(10))
    if (b.TryTake(50, t)) taken += 50;
  EXPECT_LE(taken, 5 + 5 * 100 + 50);
  EXPECT_GE(taken, 5 * 100 - 50);
}

TEST(TokenBucketTest, ZeroRateIsUnlimited) {
  TokenBucket b(0, 0, kStart);
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(b.TryTake(1000, kStart));
  EXPECT_EQ(b.WhenAvailable(1e9, kStart), kStart);
}

TEST(TokenBucketTest, SetRateKeepsTheFillProportional) {
  TokenBucket b(10, 10, kStart);
  ASSERT_TRUE(b.TryTake(6, kStart));  // 4 of 10 left: 40 %
  b.SetRate(100, 50, kStart);
  EXPECT_NEAR(b.Available(kStart), 20, 1e-9);
  b.SetRate(1, 5, kStart);
  EXPECT_NEAR(b.Available(kStart), 2, 1e-9);
  EXPECT_NEAR(b.Available(kStart + seconds(1)), 3, 1e-9);
  // Leaving "unlimited" starts full; going unlimited allows everything.
  b.SetRate(0, 0, kStart);
  EXPECT_TRUE(b.TryTake(1e6, kStart));
  b.SetRate(2, 8, kStart);
  EXPECT_NEAR(b.Available(kStart), 8, 1e-9);
}

TEST(TokenBucketTest, DefaultBurstIsOneSecondButAtLeastOneToken) {
  EXPECT_EQ(TokenBucket(20, 0, kStart).burst(), 20);
  EXPECT_EQ(TokenBucket(0.1, 0, kStart).burst(), 1);
}

TEST(TokenBucketTest, TimeGoingBackwardsAddsNoTokens) {
  TokenBucket b(1, 1, kStart);
  ASSERT_TRUE(b.TryTake(1, kStart));
  EXPECT_FALSE(b.TryTake(1, kStart - seconds(10)));
  EXPECT_FALSE(b.TryTake(1, kStart + milliseconds(999)));
  EXPECT_TRUE(b.TryTake(1, kStart + seconds(1)));
}

}  // namespace
}  // namespace hikyaku::shaping
