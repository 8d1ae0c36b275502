// FlowController driven by hand with a manual clock: the contract of each
// call. The closed-loop behaviour is in flow_controller_sim_test.cc.
#include "shaping/flow_controller.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace hikyaku::shaping {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

const TimePoint kStart = FromUnixMillis(1'796'601'600'000);

bool AnyReasonContains(const std::vector<FlowController::Change>& changes, const std::string& text) {
  for (const auto& c : changes) {
    if (c.reason.find(text) != std::string::npos) return true;
  }
  return false;
}

// A receiver that accepts exactly `per_second` (one every 1/per_second s)
// and throttles everything else, offered `offered` transactions a second
// for `duration`. Returns the time reached.
TimePoint Drive(FlowController& fc, TimePoint from, Duration duration, double offered, double per_second) {
  Duration step(static_cast<int64_t>(1000 / offered));
  Duration token(static_cast<int64_t>(1000 / per_second));
  TimePoint next_token = from;
  TimePoint t = from;
  for (; t < from + duration; t += step) {
    if (!fc.TrySend(1, t)) continue;
    if (t >= next_token) {
      next_token += token;
      fc.OnAccepted(1, t);
    } else {
      fc.OnSignal(Signal::kThrottled, 1, t, "450 4.7.1 slow down");
    }
  }
  return t;
}

TEST(FlowControllerTest, StartsOpenAtTheConfiguredCapsOrUnlimited) {
  FlowController unlimited(FlowLimits{}, kStart);
  EXPECT_EQ(unlimited.rate(), 0);
  EXPECT_EQ(unlimited.connections(), 0u);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(unlimited.TrySend(1, kStart));
  EXPECT_TRUE(unlimited.MayOpen(5000, kStart));
  EXPECT_EQ(unlimited.view().state, "open");

  FlowController capped(FlowLimits{4, 2, 0}, kStart);
  EXPECT_EQ(capped.rate(), 2);
  EXPECT_EQ(capped.connections(), 4u);
  EXPECT_TRUE(capped.MayOpen(3, kStart));
  EXPECT_FALSE(capped.MayOpen(4, kStart));
  EXPECT_TRUE(capped.TrySend(1, kStart));
  EXPECT_TRUE(capped.TrySend(1, kStart));
  EXPECT_FALSE(capped.TrySend(1, kStart));
  EXPECT_EQ(capped.NextSend(1, kStart), kStart + milliseconds(500));
  EXPECT_TRUE(capped.TakeChanges().empty());
}

TEST(FlowControllerTest, ABigTransactionWaitsForAFullPacingBucketInsteadOfStarving) {
  FlowController fc(FlowLimits{0, 2, 0}, kStart);
  ASSERT_TRUE(fc.TrySend(2, kStart));
  TimePoint when = fc.NextSend(50, kStart);
  EXPECT_EQ(when, kStart + seconds(1));
  EXPECT_TRUE(fc.TrySend(50, when));
  // ... and the cap holds over time: the 50 are paid back at 2/s before
  // the next recipient goes (48 owed, then 1 more: 24.5 s).
  EXPECT_EQ(fc.NextSend(1, when), when + milliseconds(24500));
  EXPECT_FALSE(fc.TrySend(1, when + seconds(24)));
}

TEST(FlowControllerTest, ThrottlingMeasuresWhatTheReceiverAcceptsAndHoldsJustBelowIt) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  // Offered 20/s, the receiver takes 5/s.
  TimePoint t = Drive(fc, kStart, seconds(30), 20, 5);
  FlowController::View v = fc.view();
  EXPECT_EQ(v.state, "holding");
  EXPECT_NEAR(v.estimate, 5, 0.1);
  EXPECT_NEAR(fc.rate(), 0.96 * 5, 0.1);
  auto changes = fc.TakeChanges();
  ASSERT_FALSE(changes.empty());
  EXPECT_EQ(changes.front().old_rate, 0);  // from unlimited
  EXPECT_EQ(changes.back().new_rate, fc.rate());
  EXPECT_TRUE(AnyReasonContains(changes, "450 4.7.1 slow down")) << changes.back().reason;
  EXPECT_TRUE(AnyReasonContains(changes, "while throttled")) << changes.back().reason;
  EXPECT_TRUE(AnyReasonContains(changes, "holding 4.8")) << changes.back().reason;
  for (size_t i = 1; i < changes.size(); ++i) EXPECT_EQ(changes[i].old_rate, changes[i - 1].new_rate);
  // Quiet use at the held rate: after hold_wait it probes up by 3 %.
  double held = fc.rate();
  t = Drive(fc, t, seconds(31), held, 100);
  EXPECT_EQ(fc.view().state, "probing");
  EXPECT_NEAR(fc.rate(), held * 1.03, 1e-9);
  changes = fc.TakeChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_NE(changes[0].reason.find("quiet for 30s"), std::string::npos) << changes[0].reason;
  EXPECT_NE(changes[0].reason.find("probing up to"), std::string::npos) << changes[0].reason;
}

TEST(FlowControllerTest, AFailedSmallProbeGoesBackToHoldingAndWaitsLonger) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  TimePoint t = Drive(fc, kStart, seconds(30), 20, 5);
  double held = fc.rate();
  t = Drive(fc, t, seconds(31), held, 100);  // probing at +3 %
  ASSERT_EQ(fc.view().state, "probing");
  fc.TakeChanges();
  // Three throttles within the step: it failed.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(fc.TrySend(1, t));
    fc.OnSignal(Signal::kThrottled, 1, t, "450 4.7.1 slow down");
    t += milliseconds(300);
  }
  EXPECT_EQ(fc.view().state, "holding");
  EXPECT_NEAR(fc.rate(), held, 1e-9);
  EXPECT_EQ(fc.view().hold_wait, seconds(60));
  auto changes = fc.TakeChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_NE(changes[0].reason.find("failed"), std::string::npos) << changes[0].reason;
  EXPECT_NE(changes[0].reason.find("next probe in 60s"), std::string::npos) << changes[0].reason;
}

TEST(FlowControllerTest, AStrayThrottleAtAProbeOnlyPausesTheProbing) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  TimePoint t = Drive(fc, kStart, seconds(30), 20, 5);
  double held = fc.rate();
  t = Drive(fc, t, seconds(31), held, 100);
  ASSERT_EQ(fc.view().state, "probing");
  double probed = fc.rate();
  ASSERT_TRUE(fc.TrySend(1, t));
  fc.OnSignal(Signal::kThrottled, 1, t, "450 4.7.1 slow down");
  // While the throttle is fresh the rate neither falls nor steps up.
  t = Drive(fc, t + milliseconds(200), seconds(9), probed, 100);
  EXPECT_EQ(fc.rate(), probed);
  EXPECT_EQ(fc.view().state, "probing");
  // Quiet again: probing resumes.
  t = Drive(fc, t, seconds(40), probed * 1.2, 100);
  EXPECT_GT(fc.rate(), probed);
}

TEST(FlowControllerTest, AReceiverThatThrottlesEverythingIsTriedAtTheMinimumRate) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  TimePoint t = kStart;
  for (int i = 0; i < 2000 && t < kStart + seconds(90); ++i, t += milliseconds(50)) {
    if (fc.TrySend(1, t)) fc.OnSignal(Signal::kThrottled, 1, t, "450 4.7.1 go away");
  }
  // Held at the floor (each further throttle there starts a new measurement,
  // which paces at the same floor).
  EXPECT_EQ(fc.rate(), FlowTuning{}.min_rate);
  EXPECT_EQ(fc.view().estimate, 0);
  EXPECT_TRUE(AnyReasonContains(fc.TakeChanges(), "accepted 0.00/s while throttled"));
}

TEST(FlowControllerTest, ASingleStrayThrottleChangesNothing) {
  FlowController fc(FlowLimits{20, 10, 0}, kStart);
  TimePoint t = Drive(fc, kStart, seconds(20), 10, 100);
  ASSERT_TRUE(fc.TrySend(1, t));
  fc.OnSignal(Signal::kThrottled, 1, t, "451 4.7.1 try later");
  EXPECT_EQ(fc.view().state, "measuring");
  EXPECT_EQ(fc.rate(), 10);
  t = Drive(fc, t + milliseconds(100), seconds(60), 10, 100);
  EXPECT_EQ(fc.view().state, "open");
  EXPECT_EQ(fc.rate(), 10);
  EXPECT_TRUE(fc.TakeChanges().empty());
}

TEST(FlowControllerTest, ConnectionSignalsLowerTheLimitToWhatWasOpenMinusOne) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  // The 4th connection got 421 at connect: 4 open counting it.
  fc.OnSignal(Signal::kTooManyConnections, 4, kStart, "421 4.7.0 too many connections");
  EXPECT_EQ(fc.connections(), 3u);
  EXPECT_TRUE(fc.MayOpen(2, kStart));
  EXPECT_FALSE(fc.MayOpen(3, kStart));
  auto changes = fc.TakeChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].old_connections, 20u);
  EXPECT_EQ(changes[0].new_connections, 3u);
  EXPECT_NE(changes[0].reason.find("at most 3 connections"), std::string::npos) << changes[0].reason;
  // An idle connection closed with 421 while 2 were open: 1. Never below 1.
  fc.OnSignal(Signal::kClosedIdle, 2, kStart + seconds(1));
  EXPECT_EQ(fc.connections(), 1u);
  fc.OnSignal(Signal::kClosedIdle, 1, kStart + seconds(2));
  EXPECT_EQ(fc.connections(), 1u);
  // Recovery: +1 per five quiet minutes only.
  fc.Tick(kStart + seconds(2) + minutes(5) - milliseconds(1));
  EXPECT_EQ(fc.connections(), 1u);
  fc.Tick(kStart + seconds(2) + minutes(5));
  EXPECT_EQ(fc.connections(), 2u);
  fc.Tick(kStart + seconds(2) + minutes(9));
  EXPECT_EQ(fc.connections(), 2u);
  fc.Tick(kStart + seconds(2) + minutes(10));
  EXPECT_EQ(fc.connections(), 3u);
  EXPECT_NE(fc.TakeChanges().back().reason.find("allowing 3 connections"), std::string::npos);
}

TEST(FlowControllerTest, RecoveredConnectionLimitIsForgottenAtTheCap) {
  FlowController fc(FlowLimits{3, 0, 0}, kStart);
  fc.OnSignal(Signal::kTooManyConnections, 3, kStart);
  EXPECT_EQ(fc.connections(), 2u);
  fc.Tick(kStart + minutes(5));
  EXPECT_EQ(fc.connections(), 3u);
  EXPECT_EQ(fc.view().learned_connections, 0u);
  fc.Tick(kStart + minutes(60));
  EXPECT_EQ(fc.connections(), 3u);  // the cap, never above
}

TEST(FlowControllerTest, ConnectRefusedLowersGentlyAndAtMostOncePerSpacing) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  fc.OnSignal(Signal::kConnectRefused, 5, kStart);
  EXPECT_EQ(fc.connections(), 18u);
  fc.OnSignal(Signal::kConnectRefused, 5, kStart + seconds(3));
  EXPECT_EQ(fc.connections(), 18u);
  fc.OnSignal(Signal::kConnectRefused, 5, kStart + seconds(10));
  EXPECT_EQ(fc.connections(), 17u);
  // Without a cap, the base is what is open.
  FlowController open(FlowLimits{}, kStart);
  open.OnSignal(Signal::kConnectRefused, 4, kStart);
  EXPECT_EQ(open.connections(), 3u);
}

TEST(FlowControllerTest, ConnectionRateCapGatesMayOpen) {
  FlowController fc(FlowLimits{0, 0, 0.5}, kStart);
  ASSERT_TRUE(fc.MayOpen(0, kStart));
  fc.Opened(kStart);
  EXPECT_FALSE(fc.MayOpen(1, kStart + seconds(1)));
  EXPECT_EQ(fc.NextOpen(kStart), kStart + seconds(2));
  EXPECT_TRUE(fc.MayOpen(1, kStart + seconds(2)));
}

TEST(FlowControllerTest, SetLimitsClampsLearnedStateAndKeepsIt) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  TimePoint t = Drive(fc, kStart, seconds(30), 20, 5);
  fc.OnSignal(Signal::kTooManyConnections, 6, t);
  double learned = fc.rate();
  ASSERT_NEAR(learned, 4.8, 0.1);
  ASSERT_EQ(fc.connections(), 5u);
  fc.TakeChanges();
  fc.SetLimits(FlowLimits{2, 1.5, 0}, t);
  EXPECT_EQ(fc.rate(), 1.5);
  EXPECT_EQ(fc.connections(), 2u);
  EXPECT_FALSE(fc.MayOpen(2, t));
  auto changes = fc.TakeChanges();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_NE(changes[0].reason.find("configuration reloaded"), std::string::npos);
  // Quiet time at the cap never probes above it.
  t = Drive(fc, t, minutes(10), 1.5, 100);
  EXPECT_EQ(fc.rate(), 1.5);
  // Caps removed: the learned connection limit was at/over the lowered cap
  // and forgotten; the learned rate, clamped to 1.5, probes up from there.
  fc.SetLimits(FlowLimits{}, t);
  EXPECT_EQ(fc.connections(), 0u);
  EXPECT_EQ(fc.rate(), 1.5);
}

}  // namespace
}  // namespace hikyaku::shaping
