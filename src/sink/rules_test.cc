#include "sink/rules.h"

#include <gtest/gtest.h>

namespace hikyaku::sink {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RateLimiterTest, BurstThenRefillAtTheRate) {
  ManualClock clock;
  RateLimiter limiter(/*per_minute=*/3, /*burst=*/3);
  EXPECT_TRUE(limiter.Allow("192.0.2.1", clock.Now()));
  EXPECT_TRUE(limiter.Allow("192.0.2.1", clock.Now()));
  EXPECT_TRUE(limiter.Allow("192.0.2.1", clock.Now()));
  EXPECT_FALSE(limiter.Allow("192.0.2.1", clock.Now()));
  EXPECT_TRUE(limiter.Allow("192.0.2.2", clock.Now()));  // buckets are per key
  clock.Advance(seconds(19));                            // 3/min = one token per 20 s
  EXPECT_FALSE(limiter.Allow("192.0.2.1", clock.Now()));
  clock.Advance(seconds(1));
  EXPECT_TRUE(limiter.Allow("192.0.2.1", clock.Now()));
  EXPECT_FALSE(limiter.Allow("192.0.2.1", clock.Now()));
  clock.Advance(std::chrono::hours(1));  // refills only up to the burst
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("192.0.2.1", clock.Now()));
  EXPECT_FALSE(limiter.Allow("192.0.2.1", clock.Now()));
}

TEST(RateLimiterTest, ForgetsIdleFullBuckets) {
  ManualClock clock;
  RateLimiter limiter(60, 1);
  for (int i = 0; i < 5000; ++i) limiter.Allow("10.0.0." + std::to_string(i), clock.Now());
  EXPECT_EQ(limiter.tracked_keys(), 5000u);
  clock.Advance(seconds(61));
  limiter.Allow("10.1.0.0", clock.Now());
  EXPECT_LE(limiter.tracked_keys(), 1u);
}

TEST(GreylistTest, FirstAttemptRefusedRetryAcceptedAfterTheDelay) {
  ManualClock clock;
  Greylist greylist(seconds(60));
  auto wait = greylist.Check("192.0.2.1", "s@x", "r@y", clock.Now());
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, seconds(60));
  clock.Advance(seconds(59));
  wait = greylist.Check("192.0.2.1", "s@x", "r@y", clock.Now());
  ASSERT_TRUE(wait.has_value());
  EXPECT_EQ(*wait, seconds(1));  // the clock runs from the first attempt, not the last
  // Another triple member changes: a new triple, greylisted on its own.
  EXPECT_TRUE(greylist.Check("192.0.2.2", "s@x", "r@y", clock.Now()).has_value());
  EXPECT_TRUE(greylist.Check("192.0.2.1", "t@x", "r@y", clock.Now()).has_value());
  EXPECT_TRUE(greylist.Check("192.0.2.1", "s@x", "q@y", clock.Now()).has_value());
  clock.Advance(seconds(1));
  EXPECT_EQ(greylist.Check("192.0.2.1", "s@x", "r@y", clock.Now()), std::nullopt);
  clock.Advance(seconds(3600));
  EXPECT_EQ(greylist.Check("192.0.2.1", "s@x", "r@y", clock.Now()), std::nullopt);
}

TEST(GreylistTest, TripleFieldsCannotRunTogether) {
  ManualClock clock;
  Greylist greylist(seconds(10));
  greylist.Check("1.2.3.4", "ab", "c", clock.Now());
  clock.Advance(seconds(10));
  EXPECT_TRUE(greylist.Check("1.2.3.4", "a", "bc", clock.Now()).has_value());
}

TEST(GreylistTest, EntriesExpireAndStartOver) {
  ManualClock clock;
  Greylist greylist(seconds(10), seconds(100));
  greylist.Check("c", "s", "r", clock.Now());
  clock.Advance(seconds(10));
  EXPECT_EQ(greylist.Check("c", "s", "r", clock.Now()), std::nullopt);
  clock.Advance(seconds(95));
  EXPECT_TRUE(greylist.Check("c", "s", "r", clock.Now()).has_value());
}

TEST(TempfailInjectorTest, SameSeedSameChoicesAndRoughlyTheRate) {
  TempfailInjector a(0.1, 42), b(0.1, 42), c(0.1, 43);
  std::vector<bool> seq_a, seq_b, seq_c;
  int failures = 0;
  for (int i = 0; i < 10000; ++i) {
    seq_a.push_back(a.Fail());
    seq_b.push_back(b.Fail());
    seq_c.push_back(c.Fail());
    failures += seq_a.back();
  }
  EXPECT_EQ(seq_a, seq_b);
  EXPECT_NE(seq_a, seq_c);
  EXPECT_GT(failures, 850);
  EXPECT_LT(failures, 1150);
}

TEST(TempfailInjectorTest, ZeroAndOne) {
  TempfailInjector never(0, 1), always(1, 1);
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(never.Fail());
    EXPECT_TRUE(always.Fail());
  }
}

TEST(UnknownUsersTest, MatchesLocalPartOrWholeAddressEntirely) {
  auto unknown = UnknownUsers::Compile("nouser.*|bad@example\\.org");
  ASSERT_TRUE(unknown.has_value());
  EXPECT_TRUE(unknown->Matches("nouser@example.com"));
  EXPECT_TRUE(unknown->Matches("nouser42@example.com"));
  EXPECT_TRUE(unknown->Matches("bad@example.org"));
  EXPECT_FALSE(unknown->Matches("bad@example.com"));
  EXPECT_FALSE(unknown->Matches("someone-nouser@example.com"));  // a full match, not a search
  EXPECT_FALSE(unknown->Matches("alice@example.com"));
}

TEST(UnknownUsersTest, BadPatternIsAnError) {
  auto unknown = UnknownUsers::Compile("(unclosed");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(unknown.error().message().find("(unclosed"), std::string::npos);
}

}  // namespace
}  // namespace hikyaku::sink
