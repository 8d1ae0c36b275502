#include "queue/retry_policy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>

namespace hikyaku::queue {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::minutes;

const TimePoint kT0 = FromUnixMillis(1'700'000'000'000);

config::RetryConfig NoJitter() {
  config::RetryConfig c;
  c.initial = minutes(5);
  c.max = hours(4);
  c.max_age = days(3);
  c.jitter = 0;
  return c;
}

TEST(RetryPolicyTest, BackoffDoublesFromInitialAndStopsAtMax) {
  RetryPolicy policy(NoJitter(), 1);
  const int expected_minutes[] = {5, 10, 20, 40, 80, 160, 240, 240, 240};
  for (uint32_t n = 1; n <= 9; ++n) {
    auto next = policy.NextAttempt(kT0, kT0, n);
    ASSERT_TRUE(next) << n;
    EXPECT_EQ(*next - kT0, minutes(expected_minutes[n - 1])) << "attempt " << n;
  }
}

TEST(RetryPolicyTest, ZeroAttemptsIsTreatedAsFirstAndHugeCountsStayAtCap) {
  RetryPolicy policy(NoJitter(), 1);
  EXPECT_EQ(policy.BaseDelay(0), minutes(5));
  EXPECT_EQ(policy.BaseDelay(65535), hours(4));
  EXPECT_EQ(policy.BaseDelay(UINT32_MAX), hours(4));
}

TEST(RetryPolicyTest, ExpiresWhenNextAttemptWouldBePastMaxAge) {
  RetryPolicy policy(NoJitter(), 1);
  const TimePoint received = kT0;
  // Attempt 10 waits the 4 h cap.
  EXPECT_TRUE(policy.NextAttempt(received + days(2), received, 10));
  // Landing exactly on the deadline is still allowed ...
  auto at_deadline = policy.NextAttempt(received + days(3) - hours(4), received, 10);
  ASSERT_TRUE(at_deadline);
  EXPECT_EQ(*at_deadline, received + days(3));
  // ... one millisecond later is not: the recipient expires now.
  EXPECT_FALSE(policy.NextAttempt(received + days(3) - hours(4) + std::chrono::milliseconds(1),
                                  received, 10));
  EXPECT_FALSE(policy.NextAttempt(received + days(4), received, 1));
}

TEST(RetryPolicyTest, JitterStaysWithinBoundsAndSpreads) {
  config::RetryConfig c = NoJitter();
  c.jitter = 0.2;
  RetryPolicy policy(c, 42);
  const double base = static_cast<double>(Duration(minutes(5)).count());
  double lo = 10, hi = 0;
  for (int i = 0; i < 20000; ++i) {
    auto next = policy.NextAttempt(kT0, kT0, 1);
    ASSERT_TRUE(next);
    const double f = static_cast<double>((*next - kT0).count()) / base;
    ASSERT_GE(f, 0.8 - 1e-9);
    ASSERT_LE(f, 1.2 + 1e-9);
    lo = std::min(lo, f);
    hi = std::max(hi, f);
  }
  EXPECT_LT(lo, 0.81);
  EXPECT_GT(hi, 1.19);
}

TEST(RetryPolicyTest, JitterAppliesOnTopOfTheCap) {
  config::RetryConfig c = NoJitter();
  c.jitter = 0.2;
  RetryPolicy policy(c, 7);
  std::set<int64_t> delays;
  for (int i = 0; i < 100; ++i) delays.insert((*policy.NextAttempt(kT0, kT0, 20) - kT0).count());
  // Capped retries must not all land on the same instant (a herd).
  EXPECT_GT(delays.size(), 90u);
  EXPECT_GT(*delays.rbegin(), Duration(hours(4)).count());
}

TEST(RetryPolicyTest, SameSeedSameSequenceOtherSeedOtherSequence) {
  config::RetryConfig c = NoJitter();
  c.jitter = 0.2;
  RetryPolicy a(c, 99), b(c, 99), other(c, 100);
  int differences = 0;
  for (int i = 0; i < 50; ++i) {
    auto x = a.NextAttempt(kT0, kT0, 3);
    EXPECT_EQ(x, b.NextAttempt(kT0, kT0, 3));
    if (x != other.NextAttempt(kT0, kT0, 3)) ++differences;
  }
  EXPECT_GT(differences, 45);
}

TEST(RetryPolicyTest, KeyedJitterAgreesForSiblingsAndDiffersAcrossMessages) {
  config::RetryConfig c = NoJitter();
  c.jitter = 0.2;
  const RetryPolicy policy(c, 5);
  EXPECT_EQ(policy.NextAttempt(kT0, kT0, 2, 1234), policy.NextAttempt(kT0, kT0, 2, 1234));
  std::set<int64_t> delays;
  for (uint64_t key = 1; key <= 100; ++key) {
    delays.insert((*policy.NextAttempt(kT0, kT0, 2, key) - kT0).count());
  }
  EXPECT_GT(delays.size(), 90u);
  // The next attempt of the same message draws a new spread.
  const auto d2 = *policy.NextAttempt(kT0, kT0, 2, 1234) - kT0;
  const auto d3 = *policy.NextAttempt(kT0, kT0, 3, 1234) - kT0;
  EXPECT_NE(d3, 2 * d2);
}

}  // namespace
}  // namespace hikyaku::queue
